"""Monorepos: one repository holding the dbt project in `dbt-project/` and the semantic model in `bi/`,
with unrelated files at the root. Both commands work inside their folders, and everything a person
reads (results, commits, PR bodies) names repository-relative paths."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import git
import pytest

from bot.cli import main
from bot.demo.run import ANALYST, package_dir
from bot.dbt.changes import changes_between
from bot.errors import LayersyncError, RepoError
from bot.forge.local import LocalForge
from bot.pull_from_dbt import PullJob, run as pull
from bot.push_to_dbt import PushRequest, run as push
from bot.repo_paths import subdir
from bot.service_config import load_service_config

DBT, BI = "dbt-project", "bi"
ORDERS_SQL = f"{DBT}/models/marts/orders.sql"
MARTS_YML = f"{DBT}/models/marts/_marts__models.yml"
ORDERS_VIEW = f"{BI}/views/orders.view.yaml"
DECOY_VIEW = "archive/views/orders.view.yaml"         # an old copy outside the semantic model: not a view of it
DECOY_SQL = "examples/models/marts/orders.sql"         # SQL outside the dbt project: not a dbt change
LARGE = """\
  is_large_order:
    label: Large order
    description: Orders of more than 20 dollars
    sql: ${TABLE}.amount > 20
"""


class Mono:
    """The monorepo: a bare remote (what a forge hosts) and a clone where people commit and push."""

    def __init__(self, root: Path):
        self.remote = root / "mono.git"
        git.Repo.init(self.remote, bare=True, initial_branch="main")
        self.repo = git.Repo.clone_from(self.remote, root / "mono")
        self.root = Path(self.repo.working_tree_dir)
        self.state_db = root / "state.sqlite"
        shutil.copytree(package_dir("jaffle_shop"), self.root / DBT,
                        ignore=shutil.ignore_patterns("__pycache__", "target"))
        (self.root / DBT / "seeds").mkdir()
        for csv in sorted(package_dir("data").glob("*.csv")):
            shutil.copy(csv, self.root / DBT / "seeds" / csv.name)
        (self.root / DBT / ".gitignore").write_text("target/\nlogs/\ndbt_packages/\n*.duckdb\n")
        shutil.copytree(package_dir("semantic"), self.root / BI, ignore=shutil.ignore_patterns("__pycache__"))
        self.write("README.md", "# Acme analytics\n\nThe dbt project and the BI model, side by side.\n")
        self.write(DECOY_VIEW, (self.root / ORDERS_VIEW).read_text())
        self.write(DECOY_SQL, (self.root / ORDERS_SQL).read_text())
        self.commit("monorepo: dbt project, BI model, odds and ends")

    def write(self, rel: str, text: str) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def edit(self, rel: str, old: str, new: str) -> None:
        text = (self.root / rel).read_text()
        assert old in text, f"{old!r} not in {rel}"
        self.write(rel, text.replace(old, new, 1))

    def commit(self, message: str = "edit", force: tuple[str, ...] = ()) -> str:
        self.repo.git.add("-A")
        if force:
            self.repo.git.add("-f", *force)
        sha = self.repo.index.commit(message, author=ANALYST, committer=ANALYST).hexsha
        self.repo.git.push("origin", "HEAD:main")
        return sha

    def file(self, rev: str, rel: str) -> str | None:
        repo = git.Repo(self.remote)     # held while the blob is read: a collected Repo closes its cat-file pipe
        try:
            return (repo.commit(rev).tree / rel).data_stream.read().decode()
        except KeyError:
            return None

    def changed_files(self, rev: str) -> list[str]:
        commit = git.Repo(self.remote).commit(rev)
        return sorted(commit.stats.files)

    def add_large_order(self) -> None:
        self.edit(ORDERS_VIEW, "\nmeasures:", "\n" + LARGE.rstrip("\n") + "\nmeasures:")
        self.edit(DECOY_VIEW, "\nmeasures:", "\n  stale_field:\n    sql: ${TABLE}.amount * 2\nmeasures:")
        self.commit("analyst: large orders")


@pytest.fixture
def mono(tmp_path: Path) -> Mono:
    return Mono(tmp_path)


def _push(mono: Mono, **kw):
    request = PushRequest(semantic_repo=mono.root, dbt_repo=mono.remote, semantic_path=BI, dbt_path=DBT, **kw)
    return push(request, LocalForge(mono.state_db))


def test_a_dry_run_reads_only_the_model_and_names_repository_paths(mono) -> None:
    mono.add_large_order()
    result = _push(mono, dry_run=True)

    assert [(p.id, p.file, p.model, p.column, p.action) for p in result.pushed] == [
        ("orders.is_large_order", ORDERS_VIEW, "orders", "is_large_order", "added")]
    assert result.pushed[0].files == (ORDERS_SQL, MARTS_YML)
    assert result.skipped == [] and result.branch is None      # the archived copy's field is not the model's


def test_layersync_yml_beside_the_model_wins_over_the_root_one(mono) -> None:
    mono.write("layersync.yml", "branch_prefix: from-root/\n")
    mono.write(f"{BI}/layersync.yml", "dialect: duckdb\nbranch_prefix: from-model/\ndbt_check: false\n")
    mono.add_large_order()
    result = _push(mono, fields=["orders.is_large_order"])
    assert result.branch == "from-model/orders-is_large_order"

    (mono.root / BI / "layersync.yml").unlink()
    mono.write("layersync.yml", "branch_prefix: from-root/\ndbt_check: false\n")
    mono.commit("settings at the root only")
    assert _push(mono, fields=["orders.is_large_order"]).branch == "from-root/orders-is_large_order"


def test_a_broken_layersync_yml_beside_the_model_is_named_with_its_path(mono, capsys) -> None:
    mono.write(f"{BI}/layersync.yml", "dialect: duckdb\nbranch_prefx: x/\n")
    mono.add_large_order()
    code = main(["push-to-dbt", "--semantic-repo", str(mono.root), "--dbt-repo", str(mono.remote),
                 "--semantic-path", BI, "--dbt-path", DBT, "--state-db", str(mono.state_db)])
    assert code == 2
    assert "bi/layersync.yml: unknown setting(s): branch_prefx" in capsys.readouterr().err


@pytest.mark.slow
def test_a_push_checked_by_dbt_commits_under_the_dbt_folder_only(mono) -> None:
    mono.add_large_order()
    result = _push(mono)

    assert result.exit_code == 0 and result.branch == "layersync/push/orders-is_large_order"
    assert result.pushed[0].files == (ORDERS_SQL, MARTS_YML)
    assert mono.changed_files(result.branch) == [MARTS_YML, ORDERS_SQL]
    assert "select\n    *,\n    amount > 20 as is_large_order\nfrom final\n" in mono.file(result.branch, ORDERS_SQL)
    assert mono.file(result.branch, DECOY_SQL) == mono.file("main", DECOY_SQL)      # the lookalike is untouched
    assert mono.file(result.branch, "models/marts/orders.sql") is None              # nothing written at the root
    body = LocalForge(mono.state_db).list_prs()[0].body
    assert f"`{ORDERS_VIEW}`" in body or f"{ORDERS_VIEW}:" in body
    assert ORDERS_SQL in body and MARTS_YML in body


def test_the_cli_takes_both_paths_and_prints_repository_paths(mono, capsys) -> None:
    mono.write(f"{BI}/layersync.yml", "dbt_check: false\n")
    mono.add_large_order()
    args = ["push-to-dbt", "--semantic-repo", str(mono.root), "--dbt-repo", str(mono.remote),
            "--state-db", str(mono.state_db), "--json"]
    assert main([*args, "--semantic-path", f"{BI}/", "--dbt-path", f"./{DBT}"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(p["field"], p["file"], p["files"]) for p in out["pushed"]] == [
        ("orders.is_large_order", ORDERS_VIEW, [ORDERS_SQL, MARTS_YML])]


@pytest.mark.parametrize("flag, value, words", [
    ("--dbt-path", "../elsewhere", "must not contain `..`"),
    ("--semantic-path", "bi/../..", "must not contain `..`"),
    ("--dbt-path", "/abs/dbt-project", "not absolute"),
    ("--dbt-path", "dbt_project", "`dbt_project` is not a folder of the dbt repo"),
    ("--semantic-path", "omni/Model", "`omni/Model` is not a folder of the semantic-layer repo"),
    ("--semantic-path", "README.md", "`README.md` is not a folder"),
])
def test_a_bad_folder_is_one_line_and_exit_2(mono, capsys, flag, value, words) -> None:
    mono.add_large_order()
    paths = {"--semantic-path": BI, "--dbt-path": DBT, flag: value}
    code = main(["push-to-dbt", "--semantic-repo", str(mono.root), "--dbt-repo", str(mono.remote),
                 "--state-db", str(mono.state_db), *[x for item in paths.items() for x in item]])
    err = capsys.readouterr().err
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1


def test_pull_follows_a_rename_inside_the_dbt_folder(mono) -> None:
    decoy_before = mono.file("main", DECOY_VIEW)
    mono.edit(ORDERS_SQL, "as amount\n", "as order_amount\n")
    mono.edit(MARTS_YML, "      - name: amount\n", "      - name: order_amount\n")
    sha = mono.commit("dbt: amount is order_amount")
    forge = LocalForge(mono.state_db)
    result = pull(PullJob(dbt_repo=mono.remote, semantic_repo=mono.remote, head="main", dbt_label="acme/mono",
                          semantic_path=BI, dbt_path=DBT), forge)

    assert result.files == [ORDERS_VIEW] and result.pr_created
    assert mono.changed_files(result.branch) == [ORDERS_VIEW]
    view = mono.file(result.branch, ORDERS_VIEW)
    assert "order_amount:" in view and "sql: ${order_amount}" in view
    assert mono.file(result.branch, DECOY_VIEW) == decoy_before
    assert all(ORDERS_SQL in line or MARTS_YML in line for line in result.changes), result.changes
    renamed = [n for n in result.notes if n.kind == "renamed"]
    assert renamed and {n.file for n in renamed} == {ORDERS_VIEW} and {n.dbt_file for n in renamed} <= {
        ORDERS_SQL, MARTS_YML}
    body = forge.get_pr(str(mono.remote.resolve()), result.pr.number).body
    assert f"`{ORDERS_SQL}`" in body and f"{ORDERS_VIEW}:" in body and sha[:7] in body


def test_pull_ignores_a_change_outside_the_dbt_folder(mono) -> None:
    mono.edit(DECOY_SQL, "as amount\n", "as order_amount\n")
    mono.write("README.md", "# Acme analytics\n\nNow with a changelog.\n")
    mono.commit("docs and an example, no dbt change")
    result = pull(PullJob(dbt_repo=mono.remote, semantic_repo=mono.remote, head="main", semantic_path=BI,
                          dbt_path=DBT), LocalForge(mono.state_db))

    assert result.changes == [] and result.notes == [] and result.branch is None
    assert result.message == "the semantic layer is already in step with this dbt change"


def test_the_cli_pull_dry_run_takes_both_paths(mono, capsys) -> None:
    mono.edit(ORDERS_SQL, "as amount\n", "as order_amount\n")
    mono.edit(MARTS_YML, "      - name: amount\n", "      - name: order_amount\n")
    mono.commit("dbt: amount is order_amount")
    code = main(["pull-from-dbt", "--dbt-repo", str(mono.remote), "--semantic-repo", str(mono.remote),
                 "--semantic-path", BI, "--dbt-path", DBT, "--dry-run", "--json", "--state-db", str(mono.state_db)])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["files"] == [ORDERS_VIEW] and out["branch"] is None
    assert {e["file"] for e in out["edits"]} == {ORDERS_VIEW}


def test_a_manifest_committed_under_the_dbt_folder_is_read_there(mono) -> None:
    base = git.Repo(mono.remote).commit("main").hexsha
    mono.edit(ORDERS_SQL, "as amount\n", "as amount,\n        orders.order_date as first_seen\n")
    manifest = {"nodes": {"model.jaffle_shop.orders": {
        "resource_type": "model", "name": "orders", "original_file_path": "models/marts/orders.sql",
        "columns": {"first_seen": {"name": "first_seen", "data_type": "timestamp with time zone"}}}}}
    mono.write(f"{DBT}/target/manifest.json", json.dumps(manifest))
    head = mono.commit("dbt: first_seen, with the deploy's manifest", force=(f"{DBT}/target/manifest.json",))

    changes = changes_between(mono.remote, base, head, root=DBT)
    added = [c for c in changes.column_changes if c.kind == "added"]
    assert [(c.model, c.column, c.file) for c in added] == [("orders", "first_seen", ORDERS_SQL)]
    assert added[0].after.data_type == "timestamp with time zone" and changes.problems == []
    with pytest.raises(RepoError, match="examples/dbt_project.yml: not a dbt project"):
        changes_between(mono.remote, base, head, root="examples")          # a folder, but no dbt project


@pytest.mark.parametrize("text, folder", [(None, ""), ("", ""), (".", ""), ("bi/", "bi"), ("./a//b/", "a/b"),
                                          ("omni\\Model", "omni/Model")])
def test_folders_are_normalised(text, folder) -> None:
    assert subdir(text, "--x") == folder


def test_the_service_reads_both_folders_from_the_environment_or_its_file(tmp_path) -> None:
    env = {"LAYERSYNC_WEBHOOK_SECRET": "s", "LAYERSYNC_DBT_REPO": "acme/mono", "LAYERSYNC_SEMANTIC_REPO": "acme/mono",
           "LAYERSYNC_FORGE": "local"}
    assert (load_service_config(env).semantic_path, load_service_config(env).dbt_path) == ("", "")
    config = load_service_config({**env, "LAYERSYNC_SEMANTIC_PATH": "omni/Acme/", "LAYERSYNC_DBT_PATH": DBT})
    assert (config.semantic_path, config.dbt_path) == ("omni/Acme", DBT)
    file = tmp_path / "layersync-service.yml"
    file.write_text("semantic_path: bi\ndbt_path: dbt-project\n")
    config = load_service_config({**env, "LAYERSYNC_DBT_PATH": "other"}, config_file=file)
    assert (config.semantic_path, config.dbt_path) == ("bi", "other")              # the environment wins
    with pytest.raises(LayersyncError, match="LAYERSYNC_DBT_PATH `../x` must not contain"):
        load_service_config({**env, "LAYERSYNC_DBT_PATH": "../x"})
    file.write_text("dbt_path: [a, b]\n")
    with pytest.raises(LayersyncError, match="LAYERSYNC_DBT_PATH must be a folder path, not a list"):
        load_service_config(env, config_file=file)


def test_the_handlers_settings_carry_both_folders() -> None:
    from bot.service import build_handler
    from bot.service_config import ServiceConfig

    config = ServiceConfig(webhook_secret="s", dbt_repo="acme/mono", semantic_repo="acme/mono",
                           queue_db=Path("/nonexistent/q.sqlite"), forge="local", state_db=Path("/nonexistent/s"),
                           semantic_path=BI, dbt_path=DBT)
    settings = build_handler(config).context.settings
    assert (settings.semantic_path, settings.dbt_path) == (BI, DBT)


def test_the_format_is_read_from_layersync_yml_beside_the_model(mono) -> None:
    from bot.gitops import RevisionReader
    from bot.selection import format_at

    mono.write("layersync.yml", "format: omni\n")                   # another model's settings, at the root
    mono.write(f"{BI}/layersync.yml", "format: views\n")
    mono.commit("settings")
    reader = RevisionReader(mono.remote, "semantic-layer repo")
    assert format_at(reader, "main", BI).name == "views"
    assert format_at(reader, "main").name == "omni"


def test_adoption_after_the_dbt_pr_merges_edits_the_models_view(mono) -> None:
    from bot.adopt import adopt
    from bot.forge.base import PullRequest

    mono.add_large_order()
    mono.edit(DECOY_VIEW, "  stale_field:", "  is_large_order:\n    sql: ${TABLE}.amount > 99\n  stale_field:")
    mono.commit("the archived copy has the field too")
    forge = LocalForge(mono.state_db)
    dbt_pr = PullRequest(7, str(mono.remote), "push", "", "layersync/push/x", "main", "merged", "file:///pr/7", "", "")
    outcome = adopt(forge, str(mono.remote), dbt_pr, [["orders.is_large_order", ORDERS_VIEW, "orders",
                                                       "is_large_order"]], semantic_path=BI)

    assert outcome.adopted == ["orders.is_large_order"] and outcome.problems == []
    branch = "layersync/adopt/dbt-pr-7"
    assert mono.changed_files(branch) == [ORDERS_VIEW]
    assert "sql: ${TABLE}.is_large_order" in mono.file(branch, ORDERS_VIEW)


@pytest.mark.slow
def test_impact_builds_the_dbt_folder_and_compares_the_models_measures(mono, tmp_path, capsys) -> None:
    mono.repo.git.checkout("-b", "double")
    mono.edit(ORDERS_SQL, "coalesce(payments_per_order.total_amount, 0) as amount",
              "coalesce(payments_per_order.total_amount, 0) * 2 as amount")
    mono.edit(DECOY_SQL, "as amount", "as amount_elsewhere")         # outside the dbt folder: no model of it
    mono.repo.git.add("-A")
    mono.repo.index.commit("double the amounts", author=ANALYST, committer=ANALYST)
    mono.repo.git.push("origin", "double")

    report = tmp_path / "impact.json"
    code = main(["impact", "--dbt-repo", str(mono.remote), "--semantic-repo", str(mono.remote),
                 "--semantic-path", BI, "--dbt-path", DBT, "--base", "main", "--head", "double", "--pr", "7",
                 "--json", str(report), "--workdir", str(tmp_path / "impact")])
    capsys.readouterr()
    doc = json.loads(report.read_text())
    assert code == 0 and doc["build"]["ok"] and doc["build"]["selected"] == ["orders"]
    totals = [v for v in doc["semantic"]["measures"] if v["measure"] == "revenue" and v["dimension"] is None]
    assert [(v["prod"], v["dev"]) for v in totals] == [(1672.0, 3344.0)]     # the model's view, not the archive's
    assert doc["semantic"]["broken"] == []


@pytest.mark.slow
def test_a_preview_builds_the_dbt_folder_and_checks_the_models_views(mono, tmp_path, capsys) -> None:
    mono.repo.git.checkout("-b", "big-orders")
    mono.edit(ORDERS_SQL, "coalesce(payments_per_order.total_amount, 0) as amount",
              "coalesce(payments_per_order.total_amount, 0) as amount,\n"
              "        coalesce(payments_per_order.total_amount, 0) > 40 as is_big")
    mono.edit(DECOY_VIEW, "\nmeasures:", "\n  broken_field:\n    sql: ${TABLE}.no_such_column\nmeasures:")
    mono.repo.git.add("-A")
    mono.repo.index.commit("is_big", author=ANALYST, committer=ANALYST)
    mono.repo.git.push("origin", "big-orders")

    code = main(["preview", "--branch", "big-orders", "--dbt-repo", str(mono.remote), "--semantic-repo",
                 str(mono.remote), "--dbt-path", DBT, "--semantic-path", BI, "--registry",
                 str(tmp_path / "previews.sqlite"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["status"] == "ready", out
    semantic = out["semantic"]
    assert semantic["paired"] and semantic["views"] == 2 and semantic["broken"] == [] and semantic["problems"] == []


def test_a_model_layersync_cannot_edit_is_named_by_its_repository_path(mono) -> None:
    mono.edit(ORDERS_SQL, "select * from final", "select * from final;\nselect 1")
    mono.add_large_order()
    result = _push(mono, dry_run=True)

    (skipped,) = result.skipped
    assert skipped.file == ORDERS_VIEW and skipped.reason.startswith(f"{ORDERS_SQL}: "), skipped

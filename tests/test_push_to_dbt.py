"""push-to-dbt end to end on real git repos, with real dbt checks (`dbt build --empty`, `dbt compile`)."""
from __future__ import annotations

import difflib
import json

import pytest

from bot.cli import main
from bot.forge.local import LocalForge
from bot.push_to_dbt import PushRequest, run

ORDERS_SQL = "models/marts/orders.sql"
MARTS_YML = "models/marts/_marts__models.yml"
LARGE = """\
  is_large_order:
    label: Large order
    description: Orders of more than 20 dollars
    sql: ${TABLE}.amount > 20
"""


def added_and_removed(before: str, after: str) -> tuple[list[str], list[str]]:
    diff = list(difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0))
    added = [l[1:] for l in diff if l.startswith("+") and not l.startswith("+++")]
    removed = [l[1:] for l in diff if l.startswith("-") and not l.startswith("---")]
    return added, removed


def push(repos, **kwargs):
    return run(PushRequest(semantic_repo=repos.semantic, dbt_repo=repos.remote, **kwargs),
               LocalForge(repos.state_db))


def test_new_dimension_becomes_a_column_on_a_branch_with_a_pr(repos) -> None:
    repos.edit_view("orders", "\nmeasures:", "\n" + LARGE.rstrip("\n") + "\nmeasures:")
    sha = repos.commit_semantic()
    result = push(repos)

    assert result.exit_code == 0
    assert result.branch == "layersync/push/orders-is_large_order"
    assert [(p.id, p.model, p.column, p.action) for p in result.pushed] == [
        ("orders.is_large_order", "orders", "is_large_order", "added")]
    assert result.pushed[0].dbt_sql == "amount > 20"
    # The model: the final `select *` opened up one column per line, as the file writes its lists; the rest
    # byte-identical.
    before, after = repos.dbt_file("main", ORDERS_SQL), repos.dbt_file(result.branch, ORDERS_SQL)
    added, removed = added_and_removed(before, after)
    assert removed == ["select * from final"]
    assert added == ["select", "    *,", "    amount > 20 as is_large_order", "from final"]
    # The YAML: the column entry added, nothing else touched.
    added, removed = added_and_removed(repos.dbt_file("main", MARTS_YML), repos.dbt_file(result.branch, MARTS_YML))
    assert removed == []
    assert added == ["      - name: is_large_order", "        description: Orders of more than 20 dollars"]
    # The PR in the local forge.
    prs = LocalForge(repos.state_db).list_prs()
    assert len(prs) == 1 and prs[0].head == result.branch and prs[0].base == "main" and prs[0].state == "open"
    assert "<!-- layersync:push branch=layersync/push/orders-is_large_order -->" in prs[0].body
    assert sha[:12] in prs[0].body and "amount > 20" in prs[0].body


def test_rerun_is_idempotent_and_re_edit_updates_the_same_branch(repos) -> None:
    repos.edit_view("orders", "\nmeasures:", "\n" + LARGE.rstrip("\n") + "\nmeasures:")
    repos.commit_semantic()
    first = push(repos)
    tip = repos.branch_sha(first.branch)

    again = push(repos)
    assert again.commit is None and not again.pr_created
    assert again.pr.number == first.pr.number
    assert repos.branch_sha(first.branch) == tip
    assert [p.action for p in again.pushed] == ["unchanged"]
    # The PR still describes what it changes against main, not what the rerun changed.
    assert LocalForge(repos.state_db).get_pr(first.pr.repo, first.pr.number).body == first.pr.body

    repos.edit_view("orders", "sql: ${TABLE}.amount > 20", "sql: ${TABLE}.amount > 25")
    repos.commit_semantic("raise the bar")
    third = push(repos)
    assert third.branch == first.branch and third.pr.number == first.pr.number and not third.pr_created
    assert [p.action for p in third.pushed] == ["replaced"]
    assert third.pushed[0].previous_dbt_sql == "amount > 20"
    assert third.pushed[0].dbt_sql == "amount > 25"
    # Fast-forward on top of the bot's earlier commit, never a rewrite.
    new_tip = repos.branch_sha(first.branch)
    assert new_tip != tip
    import git
    assert git.Repo(repos.remote).is_ancestor(tip, new_tip)
    model = repos.dbt_file(first.branch, ORDERS_SQL)
    assert "amount > 25 as is_large_order" in model and "amount > 20" not in model
    assert len(LocalForge(repos.state_db).list_prs()) == 1
    body = LocalForge(repos.state_db).list_prs()[0].body
    assert "amount > 25" in body and "new column" in body and "amount > 20" not in body


def test_bad_fields_are_reported_and_good_ones_still_go_through(repos) -> None:
    repos.edit_view("orders", "\nmeasures:", "\n" + LARGE + """\
  broken:
    sql: ${TABLE}.amount +* (
  joined:
    sql: ${customers.first_name}
  big_revenue:
    sql: sum(${TABLE}.amount)
measures:""".rstrip("\n").replace("measures:", "", 1) + "\nmeasures:")
    repos.write_semantic("views/nowhere.view.yaml", "table_name: not_a_model\ndimensions:\n  x:\n    sql: ${TABLE}.a + 1\n")
    repos.commit_semantic()
    result = push(repos)

    assert result.exit_code == 1
    assert [p.id for p in result.pushed] == ["orders.is_large_order"]
    reasons = {s.id: (s.file, s.line, s.code, s.reason) for s in result.skipped}
    view_lines = (repos.semantic / "views/orders.view.yaml").read_text().splitlines()
    assert reasons["orders.broken"][:2] == ("views/orders.view.yaml", view_lines.index("  broken:") + 1)
    assert "invalid SQL" in reasons["orders.broken"][3]
    assert "needs a join" in reasons["orders.joined"][3]
    assert reasons["orders.big_revenue"][3].endswith("only row-level dimensions become dbt columns")
    assert reasons["nowhere.x"][2] == "unknown-model"
    pr = LocalForge(repos.state_db).list_prs()[0]
    assert "### Not pushed" in pr.body and f"views/orders.view.yaml:{view_lines.index('  broken:') + 1}" in pr.body


def test_unknown_column_on_an_explicit_model_is_refused(repos) -> None:
    repos.edit_view("customers", "\nmeasures:", "\n  ghost:\n    sql: ${TABLE}.no_such_column + 1\nmeasures:")
    repos.commit_semantic()
    result = push(repos)
    assert result.exit_code == 1 and result.pushed == [] and result.branch is None
    assert "no_such_column" in result.skipped[0].reason
    assert LocalForge(repos.state_db).list_prs() == []


def test_measures_are_pushed_as_metricflow_metrics_not_skipped_as_aggregates(repos) -> None:
    repos.write_semantic("views/orders.view.yaml",
                         (repos.semantic / "views/orders.view.yaml").read_text()
                         + "  big_count:\n    sql: ${order_id}\n    aggregate_type: count_distinct\n")
    repos.commit_semantic()
    result = push(repos, parity=False)           # parity: tests/test_push_metrics.py
    assert result.exit_code == 0 and result.pushed == [] and result.skipped == [] and result.pr is not None
    assert [(m.id, m.metric, m.action) for m in result.metrics] == [("orders.big_count", "orders_big_count", "added")]
    assert "name: orders_big_count" in repos.dbt_file(result.branch, MARTS_YML)


def test_named_fields_and_plain_column_documentation(repos) -> None:
    result = push(repos, fields=["customers.full_name", "orders.nope", "orders.status"])
    assert result.exit_code == 1
    assert {s.id: s.code for s in result.skipped} == {"orders.nope": "unknown-field"}
    assert {p.id: p.action for p in result.pushed} == {"customers.full_name": "added", "orders.status": "documented"} \
        or {p.id: p.action for p in result.pushed} == {"customers.full_name": "added", "orders.status": "unchanged"}
    model = repos.dbt_file(result.branch, "models/marts/customers.sql")
    assert "customers.first_name || ' ' || customers.last_name as full_name" in model


def test_cli_json_contract_and_exit_codes(repos, capsys) -> None:
    repos.edit_view("orders", "\nmeasures:", "\n" + LARGE.rstrip("\n") + "\nmeasures:")
    repos.commit_semantic()
    args = ["push-to-dbt", "--semantic-repo", str(repos.semantic), "--dbt-repo", str(repos.remote),
            "--state-db", str(repos.state_db)]
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["branch"] == "layersync/push/orders-is_large_order"
    assert out["pr"]["number"] == 1 and out["pr"]["created"] is True
    assert out["pushed"][0]["field"] == "orders.is_large_order" and out["skipped"] == []

    assert main(["prs", "--state-db", str(repos.state_db)]) == 0
    assert "layersync/push/orders-is_large_order" in capsys.readouterr().out

    assert main([*args, "--since", "no-such-rev"]) == 2
    assert "unknown revision `no-such-rev`" in capsys.readouterr().err
    assert main([*args, "--field", "no_dot"]) == 2
    assert "VIEW.FIELD" in capsys.readouterr().err
    assert main([*args, "--dialect", "klingon"]) == 2
    assert "unknown SQL dialect `klingon`" in capsys.readouterr().err
    repos.write_semantic("layersync.yml", "dialect: duckdb\nbranch_prefx: x/\n")
    repos.commit_semantic("typo in the settings")
    assert main(args) == 2
    assert "layersync.yml: unknown setting(s): branch_prefx" in capsys.readouterr().err


@pytest.mark.parametrize("argv, words", [
    (["push-to-dbt", "--semantic-repo", "/nonexistent", "--dbt-repo", "/nonexistent"], "does not exist"),
    (["push-to-dbt", "--dbt-repo", "/tmp"], "required"),
    (["frobnicate"], "invalid choice"),
])
def test_cli_usage_errors_exit_2_with_one_line(argv, words, capsys) -> None:
    with pytest.raises(SystemExit) as caught:
        code = main(argv)
        raise SystemExit(code)
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_not_a_git_repo_exits_2(tmp_path, capsys) -> None:
    (tmp_path / "plain").mkdir()
    assert main(["push-to-dbt", "--semantic-repo", str(tmp_path / "plain"), "--dbt-repo", str(tmp_path / "plain")]) == 2
    assert "is not a git repository" in capsys.readouterr().err


def test_a_model_dbt_rejects_drops_only_its_fields(repos, tmp_path) -> None:
    """A field whose model fails `dbt compile` is reported with dbt's words; the others still land."""
    import git

    work = git.Repo.clone_from(repos.remote, tmp_path / "dbt-edit")
    model = tmp_path / "dbt-edit" / "models" / "marts" / "legacy_orders.sql"
    model.write_text("{% if execute %}{{ exceptions.raise_compiler_error('legacy_orders is frozen') }}{% endif %}\n"
                     "select order_id, amount from {{ ref('orders') }}\n")
    work.git.add("-A")
    work.index.commit("a model that refuses to compile")
    work.git.push("origin", "HEAD:main")
    repos.write_semantic("views/legacy_orders.view.yaml",
                         "table_name: legacy_orders\ndimensions:\n  order_id:\n    primary_key: true\n"
                         "  doubled:\n    sql: ${TABLE}.amount * 2\n")
    repos.edit_view("customers", "\nmeasures:", "\n  is_new:\n    sql: ${number_of_orders} = 0\nmeasures:")
    repos.commit_semantic()

    result = push(repos)
    assert result.exit_code == 1
    assert [p.id for p in result.pushed] == ["customers.is_new"]
    failed = {s.id: s for s in result.skipped}
    assert failed["legacy_orders.doubled"].code == "dbt-error"
    assert "legacy_orders is frozen" in failed["legacy_orders.doubled"].reason
    # Nothing of the rejected field reached the branch.
    assert repos.dbt_file(result.branch, "models/marts/legacy_orders.sql") == model.read_text()
    assert "legacy_orders" not in (repos.dbt_file(result.branch, MARTS_YML) or "")
    assert "number_of_orders, 0) = 0 as is_new" in repos.dbt_file(result.branch, "models/marts/customers.sql")


def test_a_broken_view_file_is_reported_and_other_views_still_push(repos) -> None:
    repos.edit_view("orders", "dimensions:\n", "dimensions:\n  oops: [unclosed\n")
    repos.edit_view("customers", "\nmeasures:", "\n  is_new:\n    sql: ${number_of_orders} = 0\nmeasures:")
    repos.commit_semantic()
    result = push(repos)
    assert result.exit_code == 1
    assert [p.id for p in result.pushed] == ["customers.is_new"]
    (bad,) = result.skipped
    assert (bad.file, bad.code) == ("views/orders.view.yaml", "invalid-file")
    assert bad.line is not None and "invalid YAML" in bad.reason


def test_jinja_in_field_sql_never_reaches_dbt(repos, tmp_path) -> None:
    """The issue's `run_query` payload in a string literal: refused before dbt compiles anything,
    while the field next to it is still checked by dbt against the same warehouse."""
    import duckdb

    from bot.dbt.runner import write_duckdb_profile

    warehouse = tmp_path / "check.duckdb"
    with duckdb.connect(str(warehouse)) as connection:
        connection.execute("create schema prod")
    profiles = tmp_path / "profiles"
    write_duckdb_profile(profiles, "jaffle_shop", str(warehouse), schema="dev")
    payload = "sql: \"'{{ run_query(\\\"drop schema prod\\\") }}'\""
    repos.edit_view("orders", "\nmeasures:", "\n" + LARGE + f"  sneaky:\n    {payload}\nmeasures:")
    repos.commit_semantic()

    result = push(repos, profiles_dir=profiles)
    assert result.exit_code == 1
    assert [p.id for p in result.pushed] == ["orders.is_large_order"]
    (skip,) = result.skipped
    view_lines = (repos.semantic / "views/orders.view.yaml").read_text().splitlines()
    assert (skip.id, skip.code, skip.file, skip.line) == (
        "orders.sneaky", "unsafe-sql", "views/orders.view.yaml", view_lines.index("  sneaky:") + 1)
    assert "Jinja" in skip.reason
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        schemas = {row[0] for row in connection.execute("select schema_name from information_schema.schemata").fetchall()}
    assert "prod" in schemas
    assert "run_query" not in repos.dbt_file(result.branch, ORDERS_SQL)
    assert "run_query" not in (repos.dbt_file(result.branch, MARTS_YML) or "")


def test_a_300_character_field_name_is_one_reason_not_a_traceback(repos, capsys) -> None:
    """Alone, the field names the branch (`layersync/push/orders-<name>`), which git could not create."""
    long_name = "very_" * 59 + "long_"  # 300 characters
    repos.edit_view("orders", "\nmeasures:", f"\n  {long_name}:\n    sql: ${{TABLE}}.amount * 2\nmeasures:")
    repos.commit_semantic()
    args = ["push-to-dbt", "--semantic-repo", str(repos.semantic), "--dbt-repo", str(repos.remote),
            "--state-db", str(repos.state_db), "--json"]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    out = json.loads(captured.out)
    assert out["pushed"] == [] and out["branch"] is None
    (skip,) = out["skipped"]
    assert skip["field"] == f"orders.{long_name}" and skip["code"] == "invalid-name"
    assert "63 bytes" in skip["reason"] and skip["line"] is not None
    assert LocalForge(repos.state_db).list_prs() == []


@pytest.mark.parametrize("prefix, words", [("'bad prefix/'", "contains ` `"), ("a..b/", "contains `..`")])
def test_an_invalid_branch_prefix_is_one_line_naming_the_setting(repos, capsys, prefix: str, words: str) -> None:
    repos.edit_view("orders", "\nmeasures:", "\n" + LARGE.rstrip("\n") + "\nmeasures:")
    repos.write_semantic("layersync.yml", f"dialect: duckdb\nbranch_prefix: {prefix}\n")
    repos.commit_semantic("a team's own prefix")
    args = ["push-to-dbt", "--semantic-repo", str(repos.semantic), "--dbt-repo", str(repos.remote),
            "--state-db", str(repos.state_db)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "layersync.yml:2: `branch_prefix`" in err and words in err
    assert LocalForge(repos.state_db).list_prs() == []


@pytest.mark.slow
def test_a_column_the_model_lacks_is_caught_before_anything_is_pushed(repos) -> None:
    """`dbt compile` binds no column: the check builds the touched model with zero rows, so DuckDB's
    binder refuses `no_such_column` and nothing reaches a branch (orders ends `select * from final`,
    so the planner itself cannot tell)."""
    repos.edit_view("orders", "\nmeasures:", "\n  ghost:\n    sql: ${TABLE}.no_such_column + 1\nmeasures:")
    repos.commit_semantic()
    result = push(repos)
    assert result.exit_code == 1 and result.pushed == [] and result.branch is None
    (skip,) = result.skipped
    assert skip.id == "orders.ghost" and skip.code == "dbt-error"
    assert "Binder Error" in skip.reason and "no_such_column" in skip.reason
    assert LocalForge(repos.state_db).list_prs() == []
    assert repos.branch_sha("layersync/push/orders-ghost") is None

    # A good field on the same model is not dropped with it: dbt's error names the ghost's column only.
    repos.edit_view("orders", "\nmeasures:", "\n" + LARGE.rstrip("\n") + "\nmeasures:")
    repos.commit_semantic("and a good one")
    both = push(repos, since=None, fields=["orders.ghost", "orders.is_large_order"])
    assert both.exit_code == 1 and [p.id for p in both.pushed] == ["orders.is_large_order"]
    assert [(s.id, s.code) for s in both.skipped] == [("orders.ghost", "dbt-error")]
    model = repos.dbt_file(both.branch, ORDERS_SQL)
    assert "amount > 20 as is_large_order" in model and "no_such_column" not in model


@pytest.mark.slow
def test_with_no_warehouse_to_build_in_the_pr_says_only_a_static_check_ran(repos, tmp_path) -> None:
    """The team's own profiles dir is no warehouse layersync may write into: compile only, said plainly."""
    from bot.dbt.runner import write_duckdb_profile

    profiles = tmp_path / "profiles"
    write_duckdb_profile(profiles, "jaffle_shop", str(tmp_path / "team.duckdb"), schema="analytics")
    repos.edit_view("orders", "\nmeasures:", "\n" + LARGE.rstrip("\n") + "\nmeasures:")
    repos.commit_semantic()
    result = push(repos, profiles_dir=profiles)
    assert result.exit_code == 0 and result.check is not None and not result.check.bound
    body = LocalForge(repos.state_db).list_prs()[0].body
    assert "Only a static check ran: `dbt compile`" in body
    assert "were not checked (the given profiles dir is the team's, and no warehouse for the check is configured)" \
        in body
    assert "Checked before it was pushed" not in body


@pytest.mark.slow
def test_a_configured_warehouse_that_cannot_be_reached_leaves_a_static_check_said_plainly(repos) -> None:
    repos.edit_view("orders", "\nmeasures:", "\n" + LARGE.rstrip("\n") + "\nmeasures:")
    repos.commit_semantic()
    result = push(repos, warehouse="postgresql://layersync@127.0.0.1:1/analytics")    # nothing listens on port 1
    assert result.exit_code == 0 and result.check is not None and not result.check.bound
    assert "were not checked (the configured warehouse could not be read (OperationalError))" in result.pr.body


@pytest.mark.slow
def test_rerun_after_the_pr_merged_opens_no_duplicate_pr(repos, tmp_path, capsys) -> None:
    import git

    repos.edit_view("orders", "\nmeasures:", "\n" + LARGE.rstrip("\n") + "\nmeasures:")
    repos.commit_semantic()
    first = push(repos)
    assert "`dbt build --empty` of the touched models" in first.pr.body and "bound every column" in first.pr.body
    work = git.Repo.clone_from(repos.remote, tmp_path / "merge")
    work.git.merge("--no-ff", f"origin/{first.branch}", "-m", "Merge the layersync PR")
    work.git.push("origin", "HEAD:main")
    LocalForge(repos.state_db).close_pr(first.pr.repo, first.pr.number, merged=True)

    args = ["push-to-dbt", "--semantic-repo", str(repos.semantic), "--dbt-repo", str(repos.remote),
            "--state-db", str(repos.state_db), "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["pr"] is None and out["commit"] is None
    assert out["message"] == "the fields are already in the base branch `main`: no PR opened"
    assert [(pr.number, pr.state) for pr in LocalForge(repos.state_db).list_prs()] == [(1, "merged")]


@pytest.mark.slow
def test_a_model_that_fails_without_the_edit_too_is_not_blamed_and_the_pr_says_so(repos, tmp_path) -> None:
    """A model reading a source the scratch warehouse lacks cannot be built there, edit or not: the
    field is pushed on dbt compile's word, and the PR names the model as statically checked only."""
    import git

    work = git.Repo.clone_from(repos.remote, tmp_path / "dbt-edit")
    root = tmp_path / "dbt-edit" / "models" / "marts"
    (root / "legacy_orders.sql").write_text("select order_id, amount from {{ source('legacy', 'orders') }}\n")
    (root / "_legacy__sources.yml").write_text("version: 2\nsources:\n  - name: legacy\n    tables:\n"
                                               "      - name: orders\n")
    work.git.add("-A")
    work.index.commit("a model over a source only prod has")
    work.git.push("origin", "HEAD:main")
    repos.write_semantic("views/legacy_orders.view.yaml",
                         "table_name: legacy_orders\ndimensions:\n  order_id:\n    primary_key: true\n"
                         "  doubled:\n    sql: ${TABLE}.amount * 2\n")
    repos.commit_semantic()
    result = push(repos)
    assert result.exit_code == 0 and "legacy_orders.doubled" in [p.id for p in result.pushed]
    assert set(result.check.unbound) == {"legacy_orders"}
    assert result.check.unbound["legacy_orders"].startswith("fails without this edit too: Catalog Error")
    body = result.pr.body
    assert "_Only a static check ran: `dbt compile` of the touched models. `dbt build --empty`" in body
    assert "- `legacy_orders`: fails without this edit too: Catalog Error" in body
    assert "bound every column" not in body


@pytest.mark.slow
def test_a_configured_warehouse_checks_in_a_scratch_schema_deferring_to_prod(repos, tmp_path) -> None:
    """With the team's warehouse configured, the touched model is built empty in a scratch schema of
    its own, its unchanged parents read from prod; prod is never written, the scratch schema is dropped."""
    import duckdb
    import git

    from bot.impact.build import build_prod

    checkout = tmp_path / "prod-checkout"
    git.Repo.clone_from(repos.remote, checkout)
    warehouse = tmp_path / "warehouse.duckdb"
    built, _manifest = build_prod(checkout, warehouse, "prod")
    assert built.ok, built.errors

    def prod_tables() -> list[tuple]:
        with duckdb.connect(str(warehouse), read_only=True) as con:
            return con.execute("select table_schema, table_name from information_schema.tables "
                               "order by 1, 2").fetchall()

    before = prod_tables()
    repos.edit_view("orders", "\nmeasures:", "\n  ghost:\n    sql: ${TABLE}.no_such_column + 1\nmeasures:")
    repos.edit_view("customers", "\nmeasures:", "\n  is_new:\n    sql: ${number_of_orders} = 0\nmeasures:")
    repos.commit_semantic()
    result = push(repos, warehouse=str(warehouse))
    assert result.exit_code == 1
    assert {s.id: s.code for s in result.skipped} == {"orders.ghost": "dbt-error"}
    assert [p.id for p in result.pushed] == ["customers.is_new"]
    assert result.check.bound and "scratch schema `layersync_check_" in result.check.where
    assert str(warehouse) not in result.pr.body
    assert "bound every column" in result.pr.body
    assert prod_tables() == before            # prod untouched, and no scratch schema left behind

"""Branch previews on DuckDB, end to end: real git remotes, real dbt builds into one DuckDB file beside
prod (as the team's deploy job built it), the CLI as separate processes, and the service's handlers on
the local forge. Prod is never written: every test compares it, byte for byte, before and after."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import git
import pytest
from ruamel.yaml import YAML

from bot.demo.run import ANALYST, create_dbt_repo, create_semantic_repo
from bot.forge.local import LocalForge
from bot.handlers.context import Context, Settings
from bot.handlers.preview import reply_marker
from bot.handlers.router import Event
from bot.impact.build import Target, build_prod
from bot.impact.prod import ProdEnv
from bot.preview.build import PreviewConfig, build_preview
from bot.preview.names import preview_schema_name
from bot.preview.pairing import Remote
from bot.preview.registry import Registry
from bot.service import ROUTER
from payloads import issue_comment_created, pull_request
from payloads import push as push_payload
from warehouse_snapshots import schemas, snapshot

pytestmark = pytest.mark.slow

AMOUNT = "coalesce(payments_per_order.total_amount, 0) as amount"
FIRST_NAME = "customers.first_name,"
BROKEN = "\n  broken_field:\n    sql: ${TABLE}.no_such_column\nmeasures:"
GOOD = "\n  is_big:\n    sql: ${TABLE}.amount > 40\nmeasures:"


class World:
    root: Path
    remote: Path
    semantic: Path
    database: Path
    prod_manifest: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """The demo's dbt remote and semantic repo; prod built once into `prod` by "the deploy job"."""
    w = World()
    w.root = tmp_path_factory.mktemp("preview")
    w.remote, w.semantic = create_dbt_repo(w.root), create_semantic_repo(w.root)
    w.database = w.root / "warehouse.duckdb"
    deploy = w.root / "deploy"
    git.Repo.clone_from(w.remote, deploy)
    built, manifest = build_prod(deploy, w.database, "prod")
    assert built.ok, built.errors
    w.prod_manifest = w.root / "prod-state" / "manifest.json"
    w.prod_manifest.parent.mkdir()
    w.prod_manifest.write_text(manifest.read_text())
    return w


def dbt_branch(w: World, name: str, edits: dict[str, tuple[str, str]], start: str = "main",
               drop: tuple[str, ...] = (), add: dict[str, str] | None = None) -> str:
    """Commit `edits` (file: (old, new)) on `name` (from `start`) and push it; returns the commit."""
    work_dir = w.root / "work" / name.replace("/", "__").replace(";", "_")
    work = git.Repo(work_dir) if work_dir.exists() else git.Repo.clone_from(w.remote, work_dir)
    work.git.fetch("origin")
    work.git.checkout("-B", name, f"origin/{start}")
    for rel, (old, new) in edits.items():
        path = work_dir / rel
        text = path.read_text()
        assert old in text, (old, rel)
        path.write_text(text.replace(old, new, 1))
    for rel, text in (add or {}).items():
        (work_dir / rel).write_text(text)
    for rel in drop:
        (work_dir / rel).unlink()
    work.git.add("-A")
    work.index.commit(f"edit {name}", author=ANALYST, committer=ANALYST)
    work.git.push("--force", "origin", f"{name}:{name}")
    return work.head.commit.hexsha


def semantic_branch(w: World, name: str, old: str, new: str, start: str = "main") -> str:
    repo = git.Repo(w.semantic)
    repo.git.checkout("-B", name, start)
    path = w.semantic / "views" / "orders.view.yaml"
    path.write_text(path.read_text().replace(old, new, 1))
    repo.git.add("-A")
    sha = repo.index.commit(f"views on {name}", author=ANALYST, committer=ANALYST).hexsha
    repo.git.checkout("main")
    return sha


def scalar(database: Path, sql: str):
    with duckdb.connect(str(database), read_only=True) as con:
        return con.execute(sql).fetchone()[0]


def cli(*args: str) -> tuple[int, str, str]:
    """`layersync …` as its own process (what a person or a CI job runs)."""
    done = subprocess.run([sys.executable, "-m", "bot.cli", *args], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], env={**os.environ}, timeout=600)
    return done.returncode, done.stdout, done.stderr


def test_two_previews_at_once_from_the_cli_with_branches_named_like_prod(world: World, tmp_path: Path) -> None:
    w = world
    dbt_branch(w, "prod", {"models/marts/orders.sql": (AMOUNT, AMOUNT.replace(", 0)", ", 0) * 2"))})
    dbt_branch(w, "prod;drop_schema_prod", {"models/marts/orders.sql": (AMOUNT, AMOUNT.replace(", 0)", ", 0) + 1"))})
    semantic_branch(w, "prod", "\nmeasures:", BROKEN)
    before, schemas_before = snapshot(w.database), schemas(w.database)
    registry = tmp_path / "previews.sqlite"
    common = ["--dbt-repo", str(w.remote), "--semantic-repo", str(w.semantic), "--warehouse", str(w.database),
              "--prod-state", str(w.prod_manifest), "--registry", str(registry), "--json"]

    with ThreadPoolExecutor(max_workers=2) as pool:         # two processes, one DuckDB file
        runs = list(pool.map(lambda b: cli("preview", "--branch", b, *common), ["prod", "prod;drop_schema_prod"]))

    (code_a, out_a, err_a), (code_b, out_b, err_b) = runs
    assert code_a == 1 and code_b == 0, (err_a, err_b)       # `prod`'s semantic branch has a broken field
    a, b = json.loads(out_a), json.loads(out_b)
    assert a["status"] == b["status"] == "ready" and a["mode"] == b["mode"] == "full"
    # names depend on who claimed first: `prod` gets `layersync_preview_prod`, unless the other branch got a
    # name it would prefix-collide with (dbt's custom schemas `<schema>_<custom>`); then a hashed one
    assert a["schema"] in ("layersync_preview_prod", preview_schema_name("prod", others=[b["schema"]]))
    assert b["schema"].startswith("layersync_preview_prod_drop_schema_prod") or b["schema"].startswith("layersync_preview_h")
    assert a["schema"] != b["schema"] and not b["schema"].startswith(a["schema"] + "_") \
        and not a["schema"].startswith(b["schema"] + "_")
    for doc in (a, b):
        assert doc["build"]["ok"] and doc["build"]["built"] == ["orders"] == doc["built"]   # only what changed
        assert doc["override"]["schemas"] == {"prod": doc["schema"]} and doc["seconds"] > 0
        env = YAML(typ="safe").load(doc["env_file"]["text"])
        assert doc["env_file"]["path"] == f"environments/{doc['schema']}.yaml"
        assert env["views"]["orders"] == {"table_name": "orders", "schema": doc["schema"]}
        assert env["views"]["customers"]["schema"] == doc["schema"] and env["schemas"] == {"prod": doc["schema"]}
    assert a["semantic"]["paired"] and a["semantic"]["branch"] == "prod"
    (broken,) = a["semantic"]["broken"]
    assert broken["field"] == "orders.broken_field" and broken["file"] == "views/orders.view.yaml"
    assert broken["line"] > 1 and "no_such_column" in broken["reason"]
    assert not b["semantic"]["paired"] and b["semantic"]["branch"] == "main" and b["semantic"]["broken"] == []

    # the previews hold the branches' numbers; every other model is a view onto prod; prod as it was
    assert scalar(w.database, f"select sum(amount) from {a['schema']}.orders") == 3344
    assert scalar(w.database, f"select sum(amount) from {b['schema']}.orders") == 1672 + 99
    assert scalar(w.database, f"select count(*) from {a['schema']}.customers") == 100
    assert scalar(w.database, "select table_type from information_schema.tables where table_schema = "
                              f"'{a['schema']}' and table_name = 'customers'") == "VIEW"
    assert snapshot(w.database) == before
    assert schemas(w.database) - schemas_before == {a["schema"], b["schema"]}

    code, out, err = cli("preview", "--list", "--json", "--registry", str(registry), "--warehouse", str(w.database))
    listed = {d["branch"]: d for d in json.loads(out)}
    assert code == 0 and set(listed) == {"prod", "prod;drop_schema_prod"}, err
    assert listed["prod"]["rows"] == 99 and listed["prod"]["status"] == "ready"   # stored rows: the built table
    assert listed["prod"]["built_commit"] == git.Repo(w.remote).commit("prod").hexsha

    code, out, err = cli("preview", "--drop", "--branch", "prod", "--dbt-repo", str(w.remote), "--registry",
                         str(registry), "--warehouse", str(w.database))
    assert code == 0 and a["schema"] in out, err
    assert schemas(w.database) - schemas_before == {b["schema"]} and snapshot(w.database) == before


def test_an_older_build_is_cancelled_not_raced(world: World, tmp_path: Path) -> None:
    """Two real builds of one branch: the newer commit's build stops the older one's dbt and builds alone."""
    w = world
    slow = "select sum(a.range * b.range) as n from range(60000) a, range(60000) b"   # ~30 s of DuckDB work
    older = dbt_branch(w, "feature/cancel", {"models/marts/orders.sql": (AMOUNT, AMOUNT.replace(", 0)", ", 0) * 2"))},
                       add={"models/marts/slow.sql": slow})
    config = PreviewConfig(Registry(tmp_path / "previews.sqlite"), Target.duckdb(w.database),
                           ProdEnv(state=w.prod_manifest))
    logs: dict[str, list[tuple[float, str]]] = {"older": [], "newer": []}
    building = threading.Event()

    def log_for(name: str):
        def log(line: str) -> None:
            logs[name].append((time.monotonic(), line))
            if "START sql" in line:
                building.set()
        return log

    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(build_preview, "feature/cancel", Remote.local(w.remote), config, log=log_for("older"),
                            follow_head=False)
        assert building.wait(120), "the older build never reached `dbt build`"
        newer = dbt_branch(w, "feature/cancel", {"models/marts/orders.sql": (AMOUNT, AMOUNT.replace(", 0)", ", 0) + 1"))})
        second = pool.submit(build_preview, "feature/cancel", Remote.local(w.remote), config, log=log_for("newer"),
                             follow_head=False)
        old, new = first.result(timeout=300), second.result(timeout=300)

    assert old.status == "cancelled" and "superseded" in old.message and old.dbt_commit == older
    old_lines = [line for _, line in logs["older"]]
    assert "layersync: dbt was cancelled" in old_lines and not any("Completed successfully" in l for l in old_lines)
    assert max(t for t, _ in logs["older"]) < min(t for t, _ in logs["newer"])      # one after the other
    assert new.status == "ready" and new.dbt_commit == newer and new.mode == "full"  # a dirty schema: rebuilt whole
    assert new.build["built"] == ["orders"]
    row = config.registry.get(config.warehouse, Remote.local(w.remote).key, "feature/cancel")
    assert (row.status, row.built_commit, row.commit) == ("ready", newer, newer)
    assert scalar(w.database, f"select sum(amount) from {new.schema}.orders") == 1672 + 99
    assert "slow" not in {r[0] for r in duckdb.connect(str(w.database), read_only=True).execute(
        f"select table_name from information_schema.tables where table_schema = '{new.schema}'").fetchall()}


def test_the_service_previews_rebuilds_pairs_and_drops(world: World, tmp_path: Path) -> None:
    """`/preview` on a dbt PR, a push (incremental rebuild), `/preview` on the paired semantic PR, a push
    to the semantic branch, and the PR closing — each a webhook on the local forge."""
    w = world
    first = dbt_branch(w, "feature/tier", {"models/marts/orders.sql": (AMOUNT, AMOUNT.replace(", 0)", ", 0) * 2"))})
    semantic_branch(w, "feature/tier", "\nmeasures:", GOOD.removesuffix("\nmeasures:") + BROKEN)
    forge = LocalForge(tmp_path / "state.sqlite")
    dbt_key, sem_key = str(w.remote), str(w.semantic)
    dbt_pr, _ = forge.open_or_update_pr(dbt_key, head="feature/tier", base="main", title="tier", body="b")
    sem_pr, _ = forge.open_or_update_pr(sem_key, head="feature/tier", base="main", title="tier views", body="b")
    ctx = Context(forge, Settings(dbt_repo=dbt_key, semantic_repo=sem_key, warehouse=str(w.database),
                                  prod_state=w.prod_manifest, preview_db=tmp_path / "previews.sqlite"))
    before = snapshot(w.database)

    def dispatch(name: str, payload: dict) -> None:
        ROUTER.dispatch(Event(name, payload, "d"), ctx)

    def reply(repo: str, number: int) -> str:
        (comment,) = [c for c in forge.list_comments(repo, number) if reply_marker(number) in c.body]
        return comment.body

    payload = issue_comment_created(repo=dbt_key, number=dbt_pr.number, body="/preview", is_pr=True, comment_id=7)
    dispatch("issue_comment", payload)
    body = reply(dbt_key, dbt_pr.number)
    schema = "layersync_preview_feature_tier_" + body.split("layersync_preview_feature_tier_")[1][:8]
    assert f"is in schema **`{schema}`** (full build" in body and "**Built now:** `orders`." in body
    assert "`feature/tier` @ `" + first[:12] in body and "paired" in body
    assert "| `orders.broken_field` | views/orders.view.yaml:" in body and "`orders.is_big`" not in body
    assert f"`prod` → `{schema}`" in body and f"environments/{schema}.yaml" in body and "```yaml" in body
    assert forge.list_reactions(dbt_key, 7) == ["eyes"]
    assert scalar(w.database, f"select sum(amount) from {schema}.orders") == 3344

    second = dbt_branch(w, "feature/tier", {"models/marts/customers.sql": (FIRST_NAME, "upper(customers.first_name) as first_name,")},
                        start="feature/tier")
    dispatch("push", push_payload(repo=dbt_key, ref="refs/heads/feature/tier", before=first, after=second))
    body = reply(dbt_key, dbt_pr.number)
    assert "incremental: only what changed since the last preview build" in body
    assert "**Built now:** `customers`." in body and "**In the preview:** `customers`, `orders` built" in body
    assert scalar(w.database, f"select count(*) from {schema}.customers where first_name = upper(first_name)") == 100
    assert scalar(w.database, f"select sum(amount) from {schema}.orders") == 3344       # kept from the first build

    dispatch("push", push_payload(repo=dbt_key, ref="refs/heads/feature/tier", after=first))   # stale: ignored
    assert reply(dbt_key, dbt_pr.number) == body

    sem_payload = issue_comment_created(repo=sem_key, number=sem_pr.number, body="/layersync preview", is_pr=True)
    dispatch("issue_comment", sem_payload)
    sem_body = reply(sem_key, sem_pr.number)
    assert "already up to date" in sem_body and f"**`{schema}`**" in sem_body and "`orders.broken_field`" in sem_body

    repo = git.Repo(w.semantic)                                   # the analyst fixes the broken field
    fixed = semantic_branch(w, "feature/tier", "    sql: ${TABLE}.no_such_column", "    sql: ${TABLE}.status",
                            start="feature/tier")
    dispatch("push", push_payload(repo=sem_key, ref="refs/heads/feature/tier", after=fixed))
    for repo_key, number in ((dbt_key, dbt_pr.number), (sem_key, sem_pr.number)):
        updated = reply(repo_key, number)
        assert "every field compiles" in updated and fixed[:12] in updated, updated

    semantic_branch(w, "views-only", "\nmeasures:", BROKEN)       # a semantic PR with no dbt twin: checked on prod
    lone, _ = forge.open_or_update_pr(sem_key, head="views-only", base="main", title="views", body="b")
    dispatch("issue_comment", issue_comment_created(repo=sem_key, number=lone.number, body="/preview", is_pr=True))
    lone_body = reply(sem_key, lone.number)
    assert "There is no dbt branch `views-only`: nothing to build" in lone_body and "against prod" in lone_body
    assert "| `orders.broken_field` | views/orders.view.yaml:" in lone_body and "layersync_preview" not in lone_body

    forge.close_pr(dbt_key, dbt_pr.number)
    dispatch("pull_request", pull_request("closed", repo=dbt_key, number=dbt_pr.number, head_ref="feature/tier"))
    assert schema not in schemas(w.database)
    assert "was dropped: the PR was closed" in reply(dbt_key, dbt_pr.number)
    assert "was dropped: the PR was closed" in reply(sem_key, sem_pr.number)
    assert snapshot(w.database) == before
    assert repo.active_branch.name == "main"

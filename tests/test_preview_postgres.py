"""Branch previews on PostgreSQL, end to end: real dbt-postgres builds into a real server on loopback,
prod in schema `analytics` as the deploy job built it (read through `dbt parse` of the base), two
previews built side by side, an incremental rebuild whose older build (stuck in `pg_sleep`) is
cancelled, sizes as PostgreSQL reports them, and clean-up that leaves prod as it was."""
from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import git
import psycopg
import pytest
from ruamel.yaml import YAML

from bot.demo.run import ANALYST, create_dbt_repo, create_semantic_repo
from bot.impact.build import Target, build_prod
from bot.impact.prod import ProdEnv
from bot.preview.build import PreviewConfig, build_preview
from bot.preview.gc import gc, list_previews
from bot.preview.pairing import Remote
from bot.preview.registry import Registry
from pg_server import PgServer, pg_server  # noqa: F401 - the module-scoped server fixture

pytestmark = pytest.mark.slow

AMOUNT = "coalesce(payments_per_order.total_amount, 0) as amount"
FIRST_NAME = "customers.first_name,"


def _push(root: Path, remote: Path, name: str, edits: dict[str, tuple[str, str]], add: dict[str, str] | None = None,
          start: str = "main") -> str:
    work_dir = root / "work" / name.replace("/", "__")
    work = git.Repo(work_dir) if work_dir.exists() else git.Repo.clone_from(remote, work_dir)
    work.git.fetch("origin")
    work.git.checkout("-B", name, f"origin/{start}")
    for rel, (old, new) in edits.items():
        path = work_dir / rel
        assert old in path.read_text(), (old, rel)
        path.write_text(path.read_text().replace(old, new, 1))
    for rel, text in (add or {}).items():
        (work_dir / rel).write_text(text)
    work.git.add("-A")
    work.index.commit(f"edit {name}", author=ANALYST, committer=ANALYST)
    work.git.push("--force", "origin", f"{name}:{name}")
    return work.head.commit.hexsha


def _scalar(url: str, sql: str):
    with psycopg.connect(url, autocommit=True) as con:
        return con.execute(sql).fetchone()[0]


def _prod_checksum(url: str) -> tuple:
    with psycopg.connect(url, autocommit=True) as con:
        tables = [r[0] for r in con.execute("select tablename from pg_tables where schemaname = 'analytics' "
                                            "order by 1").fetchall()]
        return tuple((t, *con.execute(f'select count(*), md5(string_agg(x::text, \'|\' order by x::text)) '
                                      f'from analytics."{t}" x').fetchone()) for t in tables)


def test_previews_on_postgres(pg_server: PgServer, tmp_path: Path) -> None:  # noqa: F811
    database = pg_server.create_database("preview_" + uuid.uuid4().hex[:8])
    remote, semantic = create_dbt_repo(tmp_path), create_semantic_repo(tmp_path)
    deploy = tmp_path / "deploy"
    git.Repo.clone_from(remote, deploy)
    built, deployed = build_prod(deploy, database, "analytics")   # the team's deploy job
    assert built.ok, built.errors
    prod = _prod_checksum(database)
    _push(tmp_path, remote, "feature/double", {"models/marts/orders.sql": (AMOUNT, AMOUNT.replace(", 0)", ", 0) * 2"))})
    _push(tmp_path, remote, "feature/plus-one", {"models/marts/orders.sql": (AMOUNT, AMOUNT.replace(", 0)", ", 0) + 1"))})
    sem = git.Repo(semantic)                                       # the analyst's branch of the same name
    sem.git.checkout("-b", "feature/double")
    view = semantic / "views" / "orders.view.yaml"
    view.write_text(view.read_text().replace("\nmeasures:", "\n  big:\n    sql: ${TABLE}.amount > 40\n"
                                                            "  oops:\n    sql: ${TABLE}.amout * 2\nmeasures:", 1))
    sem.git.add("-A")
    sem.index.commit("big orders", author=ANALYST, committer=ANALYST)
    sem.git.checkout("main")
    config = PreviewConfig(Registry(tmp_path / "previews.sqlite"), Target.parse(database), ProdEnv(schema="analytics"))
    dbt = Remote.local(remote)

    def preview(branch: str, *, config: PreviewConfig = config, **kw):
        return build_preview(branch, dbt, config, semantic=Remote.local(semantic), follow_head=False, **kw)

    with ThreadPoolExecutor(max_workers=2) as pool:               # side by side: a lock per preview schema
        first, second = pool.map(preview, ["feature/double", "feature/plus-one"])

    for result in (first, second):
        assert result.status == "ready" and result.mode == "full" and result.build["built"] == ["orders"]
        assert result.prod == {"source": "parsed", "schemas": ["analytics"], "missing": [], "schema": "analytics"}
        assert result.override["schemas"] == {"analytics": result.schema}
        env = YAML(typ="safe").load(result.env_file["text"])
        assert env["views"]["orders"]["schema"] == result.schema and env["warehouse"] == config.warehouse
    assert first.schema != second.schema and {first.schema[:27], second.schema[:27]} == \
        {"layersync_preview_feature_d", "layersync_preview_feature_p"}
    assert _scalar(database, f"select sum(amount) from {first.schema}.orders") == 3344
    assert _scalar(database, f"select sum(amount) from {second.schema}.orders") == 1672 + 99
    assert _scalar(database, f"select count(*) from {first.schema}.customers") == 100          # a view onto prod
    assert first.semantic["paired"] and [b["field"] for b in first.semantic["broken"]] == ["orders.oops"]
    assert "amout" in first.semantic["broken"][0]["reason"]
    assert not second.semantic["paired"] and second.semantic["broken"] == []
    assert _prod_checksum(database) == prod

    listed = {item.preview.branch: item for item in list_previews(config.registry, lambda w: config.target)}
    assert listed["feature/double"].rows == 99 and listed["feature/double"].bytes > 0   # as PostgreSQL reports them

    # from here on prod's manifest is the deploy job's own (no `dbt parse` of the base each time): the same prod
    config = PreviewConfig(config.registry, config.target, ProdEnv(schema="analytics", state=deployed))

    # a push whose build is stuck (pg_sleep) is cancelled by the next push's build, which builds alone
    slow = "select 1 as x from (select pg_sleep(3600)) as s"     # only a cancel ends it within the test's timeouts
    customers = {"models/marts/customers.sql": (FIRST_NAME, "upper(customers.first_name) as first_name,")}
    stuck = _push(tmp_path, remote, "feature/double", customers, add={"models/marts/slow.sql": slow},
                  start="feature/double")
    started = threading.Event()
    older_log: list[str] = []

    def log(line: str) -> None:
        older_log.append(line)
        if "START sql" in line and "slow" in line:
            started.set()

    with ThreadPoolExecutor(max_workers=2) as pool:
        older = pool.submit(preview, "feature/double", log=log, config=config)
        assert started.wait(120), "the stuck build never started"
        newer_sha = _push(tmp_path, remote, "feature/double", customers, start="feature/double~1")
        newer = pool.submit(preview, "feature/double", config=config).result(timeout=300)
        old = older.result(timeout=300)
    assert old.status == "cancelled" and old.dbt_commit == stuck and "layersync: dbt was cancelled" in older_log
    assert _scalar(database, "select count(*) from pg_stat_activity where query like '%pg_sleep(3600)%' "
                             "and pid <> pg_backend_pid()") == 0  # dbt cancelled its query, not just its process
    assert newer.status == "ready" and newer.dbt_commit == newer_sha and newer.schema == first.schema
    assert sorted(newer.built) == ["customers", "orders"]           # a dirty schema: rebuilt whole, from prod
    assert _scalar(database, f"select count(*) from {first.schema}.customers where first_name = upper(first_name)") == 100
    assert _scalar(database, f"select count(*) from pg_tables where schemaname = '{first.schema}' and "
                             "tablename = 'slow'") == 0

    # and an incremental rebuild after that: only what changed since
    third = _push(tmp_path, remote, "feature/double", {"models/marts/orders.sql": ("* 2 as amount", "* 3 as amount")},
                  start="feature/double")
    again = preview("feature/double", config=config)
    assert again.mode == "incremental" and again.build["built"] == ["orders"] and again.dbt_commit == third
    assert _scalar(database, f"select sum(amount) from {first.schema}.orders") == 1672 * 3

    dropped = gc(config.registry, config.target, 0, prod_schema="analytics")
    assert sorted(row.branch for row, _ in dropped) == ["feature/double", "feature/plus-one"]
    assert _scalar(database, "select count(*) from pg_namespace where nspname like 'layersync%'") == 0
    assert _prod_checksum(database) == prod and config.registry.list() == []

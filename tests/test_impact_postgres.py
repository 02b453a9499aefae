"""`layersync impact` on PostgreSQL: real dbt-postgres builds (prod, then dev with defer) into a real
server on loopback, compared over a read-only connection."""
from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import git
import psycopg
import pytest

from bot.demo.run import ANALYST
from bot.impact.build import Target, dev_schema_name, drop_schema
from bot.impact.prod import ProdEnv
from bot.impact.run import run_impact
from bot.warehouse.postgres_warehouse import PostgresWarehouse
from pg_server import PgServer, pg_server  # noqa: F401 - the module-scoped server fixture

pytestmark = pytest.mark.slow

AMOUNT = "coalesce(payments_per_order.total_amount, 0) as amount"


def _branch(repos, tmp_path: Path, name: str, new_amount: str) -> str:
    """A PR branch on the demo remote whose orders.sql computes `amount` as `new_amount`."""
    work = git.Repo.clone_from(repos.remote, tmp_path / f"dbt-{name}")
    model = tmp_path / f"dbt-{name}" / "models" / "marts" / "orders.sql"
    text = model.read_text()
    assert AMOUNT in text
    model.write_text(text.replace(AMOUNT, new_amount))
    work.git.checkout("-b", name)
    work.git.add("-A")
    work.index.commit(f"edit amount: {name}", author=ANALYST, committer=ANALYST)
    work.git.push("origin", name)
    return name


@pytest.fixture
def database(pg_server: PgServer) -> str:  # noqa: F811
    """A fresh database per test, as a URL with a password (ignored: trust auth) that must never
    reach the report."""
    url = pg_server.create_database("impact_" + uuid.uuid4().hex[:8])
    return url.replace("postgresql://postgres@", "postgresql://postgres:s3cret-pw@")


def _scalar(url: str, sql: str):
    with psycopg.connect(url, autocommit=True) as con:
        return con.execute(sql).fetchone()[0]


def _revenue(doc: dict) -> dict:
    return [v for v in doc["semantic"]["measures"] if v["measure"] == "revenue" and v["dimension"] is None][0]


def test_a_dbt_pr_that_doubles_amounts_on_postgres(repos, tmp_path, database) -> None:
    head = _branch(repos, tmp_path, "double", "coalesce(payments_per_order.total_amount, 0) * 2 as amount")
    doc = run_impact(repos.remote, "main", head, semantic_repo=repos.semantic, pr=7,
                     workdir=tmp_path / "impact", max_measure_move_pct=5, warehouse=database,
                     prod=ProdEnv(build=True))

    assert doc["status"]["state"] == "failure"                      # revenue moved more than 5%
    assert doc["dev_schema"] == "layersync_pr_7" == dev_schema_name(7)
    assert doc["warehouse"] == "postgres" and "s3cret" not in json.dumps(doc)
    assert doc["build"]["ok"] and doc["build"]["selected"] == ["orders"]   # only the changed model
    assert doc["lineage"]["modified"] == ["orders"]
    (orders,) = [m for m in doc["models"] if m["model"] == "orders"]
    assert orders["rows"] == {"prod": 99, "dev": 99, "delta": 0, "pct": 0.0}
    assert orders["columns_added"] == orders["columns_removed"] == orders["types_changed"] == []
    diff = orders["value_diff"]
    assert (diff["added"], diff["removed"]) == (0, 0)
    assert diff["changed"] == diff["changed_by_column"]["amount"] == 98  # one order has amount 0
    revenue = _revenue(doc)
    assert (revenue["prod"], revenue["dev"], revenue["pct"]) == (1672, 3344, 100)
    assert doc["semantic"]["broken"] == []

    # dev holds only the changed model; its parents resolved to prod (defer); prod is untouched
    with PostgresWarehouse(database) as wh:
        assert wh.tables("layersync_pr_7") == ["orders"]
        assert "orders" in wh.tables("prod") and "raw_payments" in wh.tables("prod")
        assert wh.query("select sum(amount) from prod.orders")[0][0] == 1672
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):      # the comparison connection
            wh.query("create table layersync_pr_7.x (a int)")

    # clean-up: the dev schema goes, prod never does
    for bad in ("prod", "public", "layersync_", "layersync_pr_7; drop schema prod"):
        with pytest.raises(ValueError):
            drop_schema(database, bad, {"prod"})
    with pytest.raises(ValueError):
        drop_schema(database, "layersync_pr_7", {"prod", "layersync_pr_7"})
    drop_schema(database, "layersync_pr_7", {"prod"})
    drop_schema(Target.parse(database), "layersync_pr_7", {"prod"})   # idempotent: already gone
    assert _scalar(database, "select count(*) from pg_namespace where nspname = 'layersync_pr_7'") == 0
    assert _scalar(database, "select sum(amount) from prod.orders") == 1672


def test_two_prs_build_side_by_side_without_interfering(repos, tmp_path, database) -> None:
    double = _branch(repos, tmp_path, "double", "coalesce(payments_per_order.total_amount, 0) * 2 as amount")
    plus_one = _branch(repos, tmp_path, "plus-one", "coalesce(payments_per_order.total_amount, 0) + 1 as amount")

    def impact(head: str, pr: int) -> dict:
        return run_impact(repos.remote, "main", head, semantic_repo=repos.semantic, pr=pr,
                          workdir=tmp_path / f"impact-{pr}", warehouse=database, prod=ProdEnv(build=True))

    with ThreadPoolExecutor(max_workers=2) as pool:           # both at once, one warehouse
        first, second = pool.map(lambda args: impact(*args), [(double, 11), (plus_one, 12)])

    assert (first["dev_schema"], second["dev_schema"]) == ("layersync_pr_11", "layersync_pr_12")
    for doc in (first, second):
        assert doc["build"]["ok"] and doc["build"]["selected"] == ["orders"]
    diffs = [[m for m in d["models"] if m["model"] == "orders"][0]["value_diff"] for d in (first, second)]
    assert diffs[0]["changed"] == diffs[0]["changed_by_column"]["amount"] == 98
    assert diffs[1]["changed"] == diffs[1]["changed_by_column"]["amount"] == 99   # 0 → 1 counts too
    assert (_revenue(first)["prod"], _revenue(first)["dev"]) == (1672, 3344)
    assert (_revenue(second)["prod"], _revenue(second)["dev"]) == (1672, 1672 + 99)

    assert _scalar(database, "select sum(amount) from layersync_pr_11.orders") == 3344
    assert _scalar(database, "select sum(amount) from layersync_pr_12.orders") == 1771
    assert _scalar(database, "select sum(amount) from prod.orders") == 1672

    drop_schema(database, "layersync_pr_11", {"prod"})
    assert _scalar(database, "select sum(amount) from layersync_pr_12.orders") == 1771   # the other PR's stays
    drop_schema(database, "layersync_pr_12", {"prod"})
    assert _scalar(database, "select count(*) from pg_namespace where nspname like 'layersync_%'") == 0
    assert _scalar(database, "select sum(amount) from prod.orders") == 1672


def test_a_role_that_can_only_read_prod_is_enough(repos, tmp_path, database) -> None:
    """Prod as the deploy job built it (schema `analytics`, owned by another role); layersync connects as
    a role that may create its own schemas but only SELECT from prod — so the report provably writes
    nothing outside its dev schema."""
    from bot.impact.build import build_prod

    deploy = tmp_path / "deploy"
    git.Repo.clone_from(repos.remote, deploy)
    built, _ = build_prod(deploy, database, "analytics")
    assert built.ok, built.errors
    role = "layersync_ci_" + uuid.uuid4().hex[:6]
    dbname = database.rsplit("/", 1)[1]
    for sql in (f"create role {role} login", f"grant create on database {dbname} to {role}",
                f"grant usage on schema analytics to {role}",
                f"grant select on all tables in schema analytics to {role}"):
        with psycopg.connect(database, autocommit=True) as con:
            con.execute(sql)
    reader = database.replace("postgresql://postgres:s3cret-pw@", f"postgresql://{role}@")
    head = _branch(repos, tmp_path, "double", "coalesce(payments_per_order.total_amount, 0) * 2 as amount")

    doc = run_impact(repos.remote, "main", head, semantic_repo=repos.semantic, pr=21, workdir=tmp_path / "impact",
                     warehouse=reader, prod=ProdEnv(schema="analytics"))

    assert doc["prod"] == {"source": "parsed", "schemas": ["analytics"], "missing": []}
    assert doc["build"]["ok"] and doc["build"]["selected"] == ["orders"]
    assert _revenue(doc)["prod"] == 1672 and _revenue(doc)["dev"] == 3344
    with psycopg.connect(reader, autocommit=True) as con, pytest.raises(psycopg.errors.InsufficientPrivilege):
        con.execute("create table analytics.x (a int)")             # the role really cannot write prod
    assert _scalar(database, "select sum(amount) from analytics.orders") == 1672

"""Impact builds with real dbt: prod from the base, the PR's changed models into a dev schema with defer."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from bot.demo.run import package_dir
from bot.impact.build import (BuildResult, build_dev, build_prod, dev_schema_name, drop_schema,
                              drop_schema_sql)
from bot.impact.lineage import Lineage, lineage, mermaid
from bot.impact.schema_diff import count_sql, schema_and_rows
from bot.warehouse.duckdb_warehouse import DuckDBWarehouse

DEV = "layersync_pr_7"
BROKEN = "layersync_pr_8"
ORDERS = "models/marts/orders.sql"


def copy_demo_project(target: Path) -> Path:
    shutil.copytree(package_dir("jaffle_shop"), target,
                    ignore=shutil.ignore_patterns("__pycache__", "target"))
    (target / "seeds").mkdir(exist_ok=True)
    for csv in sorted(package_dir("data").glob("*.csv")):
        shutil.copy(csv, target / "seeds" / csv.name)
    return target


def edit(project: Path, rel: str, old: str, new: str) -> None:
    path = project / rel
    text = path.read_text()
    assert old in text, f"{old!r} not in {rel}"
    path.write_text(text.replace(old, new, 1))


class Built:
    project: Path
    database: Path
    prod: BuildResult
    prod_manifest: Path
    dev: BuildResult
    broken: BuildResult


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """One prod build, one dev build of an edited `orders`, one dev build of a broken `orders`."""
    root = tmp_path_factory.mktemp("impact")
    b = Built()
    b.project = copy_demo_project(root / "jaffle_shop")
    b.database = root / "warehouse.duckdb"
    b.prod, b.prod_manifest = build_prod(b.project, b.database)
    assert b.prod.ok, b.prod.errors
    # the PR: one new column, one changed expression
    edit(b.project, ORDERS, "        orders.status,\n",
         "        orders.status,\n        orders.order_id % 2 = 0 as is_even_order,\n")
    edit(b.project, ORDERS, "coalesce(payments_per_order.total_amount, 0) as amount",
         "round(coalesce(payments_per_order.total_amount, 0), 1) as amount")
    b.dev = build_dev(b.project, b.database, DEV, b.prod_manifest)
    # a later push breaks the model
    good = (b.project / ORDERS).read_text()
    edit(b.project, ORDERS, "select * from final", "select * from final where")
    b.broken = build_dev(b.project, b.database, BROKEN, b.prod_manifest.parent)
    (b.project / ORDERS).write_text(good)
    return b


# --------------------------------------------------------------------------- real dbt builds

def test_prod_builds_seeds_and_every_model(built: Built) -> None:
    assert built.prod.schema == "prod"
    assert set(built.prod.selected) == {"raw_customers", "raw_orders", "raw_payments", "stg_customers",
                                        "stg_orders", "stg_payments", "orders", "customers"}
    assert built.prod.failed == [] and built.prod.errors == []
    assert built.prod_manifest.name == "manifest.json" and built.prod_manifest.exists()
    assert built.prod.seconds > 0 and "Completed successfully" in built.prod.log


def test_dev_builds_only_the_changed_model_and_defers_the_rest_to_prod(built: Built) -> None:
    dev = built.dev
    assert dev.ok, dev.errors
    assert dev.schema == DEV
    assert dev.selected == ["orders"]             # orders has no descendants; stg_* and seeds not rebuilt
    assert not any(n.startswith(("stg_", "raw_")) for n in dev.selected)
    assert dev.failed == [] and dev.built == ["orders"]
    # run_results agrees: one model node ran, its tests too
    results = json.loads((dev.target_path / "run_results.json").read_text())["results"]
    assert [r["unique_id"] for r in results if r["unique_id"].startswith(("model.", "seed."))] == \
        ["model.jaffle_shop.orders"]
    # unchanged parents resolved to prod
    compiled = (dev.target_path / "compiled" / "jaffle_shop" / ORDERS).read_text()
    assert re.search(r'"?prod"?\."?stg_orders"?', compiled), compiled
    # the prod state was not overwritten by the dev run
    assert dev.manifest == dev.target_path / "manifest.json" and dev.manifest.exists()
    prod_nodes = json.loads(built.prod_manifest.read_text())["nodes"]
    assert prod_nodes["model.jaffle_shop.orders"]["schema"] == "prod"
    with DuckDBWarehouse(built.database) as wh:
        assert wh.tables(DEV) == ["orders"]
        assert "stg_orders" in wh.tables("prod")


def test_schema_and_rows_shows_the_added_column_and_equal_counts(built: Built) -> None:
    with DuckDBWarehouse(built.database) as wh:
        diff = schema_and_rows(wh, "orders", "prod", DEV)
        assert [c.name for c in diff.added] == ["is_even_order"]
        assert diff.added[0].type.upper() == "BOOLEAN"
        assert diff.removed == []
        assert diff.prod_rows == diff.dev_rows and diff.prod_rows > 0
        # a model only in prod (not built into dev): dev side absent
        absent = schema_and_rows(wh, "customers", "prod", DEV)
        assert absent.dev_rows is None and absent.prod_rows > 0
        assert [c.name for c in absent.removed][:1] == ["customer_id"]
        # a model on neither side
        nowhere = schema_and_rows(wh, "no_such_model", "prod", DEV)
        assert (nowhere.prod_rows, nowhere.dev_rows, nowhere.added) == (None, None, [])
    assert count_sql("prod", "orders", "duckdb") == 'SELECT COUNT(*) FROM "prod"."orders"'


def test_a_broken_model_is_a_failed_build_with_dbt_error_lines(built: Built) -> None:
    broken = built.broken
    assert not broken.ok
    assert broken.schema == BROKEN
    assert broken.failed == ["orders"]
    assert broken.errors and broken.errors[0].startswith("model orders:")
    assert any("syntax error" in e.lower() or "parser error" in e.lower() for e in broken.errors)
    with DuckDBWarehouse(built.database) as wh:
        assert wh.tables(BROKEN) == []


def test_lineage_from_the_two_manifests(built: Built) -> None:
    prod = json.loads(built.prod_manifest.read_text())
    dev = json.loads((built.dev.target_path / "manifest.json").read_text())
    found = lineage(prod, dev)
    assert found.modified == ["orders"]
    assert found.added == [] and found.removed == [] and found.descendants == []
    assert ("stg_orders", "orders") in found.edges and ("stg_payments", "orders") in found.edges
    text = mermaid(found, {"orders": ["orders.amount", "orders.status", "orders.order_id"]})
    assert 'm_orders["orders"]:::modified' in text
    assert 'v_orders(["view:orders (3 fields)"]):::view' in text
    assert "m_stg_orders --> m_orders" in text and "m_orders --> v_orders" in text


def test_drop_schema_drops_a_dev_schema_and_never_prod(tmp_path: Path) -> None:
    database = tmp_path / "w.duckdb"
    with DuckDBWarehouse(database, read_only=False) as wh:
        for schema in ("prod", DEV):
            wh.query(f'create schema "{schema}"')
            wh.query(f'create table "{schema}".t as select 1 as x')
    for bad in ("prod", "main", "public", "layersync_", "layersync", "dev", "layersync_pr_7; drop schema prod",
                "Layersync_pr_7", ""):
        with pytest.raises(ValueError):
            drop_schema(database, bad, {"prod"})
    with pytest.raises(ValueError):
        drop_schema(database, DEV, {"prod", DEV})
    with pytest.raises(NotImplementedError):
        drop_schema("mysql://host/db", DEV, {"prod"})
    drop_schema(database, DEV, {"prod"})
    drop_schema(database, DEV, {"prod"})            # idempotent: already gone
    with DuckDBWarehouse(database) as wh:
        assert wh.tables(DEV) == [] and wh.tables("prod") == ["t"]
    assert drop_schema_sql(DEV) == f'DROP SCHEMA IF EXISTS "{DEV}" CASCADE'


def test_build_dev_refuses_a_prod_schema(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"nodes": {"model.shop.x": {
        "name": "x", "resource_type": "model", "schema": "analytics"}}}))
    for schema in ("prod", "main", "public", "analytics", "ANALYTICS"):
        with pytest.raises(ValueError):
            build_dev(tmp_path, tmp_path / "w.duckdb", schema, tmp_path / "manifest.json")
    with pytest.raises(FileNotFoundError):
        build_dev(tmp_path, tmp_path / "w.duckdb", DEV, tmp_path / "nowhere")


# --------------------------------------------------------------------------- dev schema names

VALID = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def test_dev_schema_name_plain() -> None:
    assert dev_schema_name(12) == "layersync_pr_12"
    assert dev_schema_name("12") == "layersync_pr_12"
    assert dev_schema_name(3, "layersync_{number}_ci") == "layersync_3_ci"


@pytest.mark.parametrize("number, template", [
    ("Feature/Add-Órders!!", "layersync_pr_{number}"),
    ("x" * 200, "layersync_pr_{number}"),
    ("ÄÖÜ", "{number}"),
    ("", "{number}"),
    ("prod", "{number}"),
    ("main", "{number}"),
    ("PROD", "{number}"),
    ('"; drop schema prod; --', "{number}"),
    (7, "Team Schema {number}"),
])
def test_dev_schema_name_is_always_a_safe_layersync_identifier(number: object, template: str) -> None:
    name = dev_schema_name(number, template)
    assert VALID.match(name), name
    assert name.startswith("layersync_") and len(name) <= 63
    assert name not in {"prod", "main", "public"}
    assert not name.startswith(("prod_", "main_"))


def test_dev_schema_name_truncates_long_names_with_a_hash_that_keeps_them_apart() -> None:
    a = dev_schema_name("a" * 100 + "1")
    b = dev_schema_name("a" * 100 + "2")
    assert len(a) == len(b) == 63 and a != b
    assert a[:50] == b[:50]
    assert dev_schema_name("a" * 100 + "1") == a           # stable


def test_dev_schema_name_avoids_protected_schemas_and_prefix_collisions() -> None:
    assert dev_schema_name(1, protected={"layersync_pr_1"}) != "layersync_pr_1"
    taken = dev_schema_name(1, protected={"layersync_pr_1", "layersync_pr_1_extra"})
    assert VALID.match(taken) and not taken.startswith("layersync_pr_1_") and taken != "layersync_pr_1"
    # a prod schema whose dbt custom schemas (`<prod>_<custom>`) would meet ours
    named = dev_schema_name(5, protected={"layersync_pr"})
    assert not named.startswith("layersync_pr_") and VALID.match(named)
    with pytest.raises(ValueError):
        dev_schema_name(5, protected={"layersync"})


# --------------------------------------------------------------------------- lineage on synthetic manifests

def _node(kind: str, name: str, checksum: str, parents: list[str] = ()) -> tuple[str, dict]:
    uid = f"{kind}.shop.{name}"
    return uid, {"name": name, "resource_type": kind, "checksum": {"name": "sha256", "checksum": checksum},
                 "depends_on": {"nodes": list(parents)}}


def _manifest(*nodes: tuple[str, dict]) -> dict:
    return {"nodes": dict(nodes), "sources": {"source.shop.raw.events": {"name": "events", "source_name": "raw",
                                                                           "resource_type": "source"}}}


def test_lineage_modified_added_removed_and_descendants() -> None:
    prod = _manifest(
        _node("seed", "raw_orders", "s1"),
        _node("model", "stg_orders", "a", ["seed.shop.raw_orders"]),
        _node("model", "stg_events", "e", ["source.shop.raw.events"]),
        _node("model", "orders", "b", ["model.shop.stg_orders"]),
        _node("model", "order_facts", "c", ["model.shop.orders"]),
        _node("model", "daily", "d", ["model.shop.order_facts"]),
        _node("model", "legacy", "l", ["model.shop.stg_orders"]),
        _node("test", "unique_orders_id", "t", ["model.shop.orders"]),
    )
    dev = _manifest(
        _node("seed", "raw_orders", "s1"),
        _node("model", "stg_orders", "a", ["seed.shop.raw_orders"]),
        _node("model", "stg_events", "e2", ["source.shop.raw.events"]),
        _node("model", "orders", "b2", ["model.shop.stg_orders"]),
        _node("model", "order_facts", "c", ["model.shop.orders"]),
        _node("model", "daily", "d", ["model.shop.order_facts"]),
        _node("model", "new_mart", "n", ["model.shop.orders", "model.shop.stg_events"]),
        _node("test", "unique_orders_id", "t2", ["model.shop.orders"]),
    )
    found = lineage(prod, dev)
    assert found.modified == ["orders", "stg_events"]
    assert found.added == ["new_mart"]
    assert found.removed == ["legacy"]
    assert found.descendants == ["daily", "order_facts"]
    assert ("raw.events", "stg_events") in found.edges          # a source as parent
    assert ("stg_orders", "legacy") in found.edges              # where the removed model sat
    assert ("order_facts", "daily") in found.edges
    assert all("unique_orders_id" not in e for e in found.edges)


def test_mermaid_styles_changes_and_prunes() -> None:
    big = Lineage(modified=["orders"], added=["new mart"], removed=["legacy"],
                  descendants=[f"d{i}" for i in range(30)],
                  edges=[("stg_orders", "orders"), ("orders", "new mart"), ("stg_orders", "legacy")]
                  + [("orders", f"d{i}") for i in range(30)])
    text = mermaid(big, {"orders": ["orders.amount", "orders.status"], "d1": ["d_view"]}, max_nodes=5)
    assert text.startswith("graph LR\n")
    for cls in ("modified", "added", "removed", "view", "more"):
        assert f"classDef {cls} " in text
    assert 'm_orders["orders"]:::modified' in text
    assert 'm_new_mart["new mart"]:::added' in text              # id sanitised, label kept
    assert 'm_legacy["legacy"]:::removed' in text
    assert 'v_orders(["view:orders (2 fields)"]):::view' in text  # view on a changed model kept early
    node_lines = [l for l in text.splitlines() if re.match(r"\s+\w+\[|\s+\w+\(\[", l)]
    assert len(node_lines) == 5
    hidden = 3 + 1 + 1 + 30 + 1 - 4          # changed, view:orders, stg_orders, d0..d29, view:d_view; 4 kept + note
    assert f'more_nodes["… {hidden} more"]:::more' in text
    assert "m_orders --> m_new_mart" in text
    assert "d29" not in text
    # unpruned: every node and edge present, still small
    full = mermaid(big)
    assert "more_nodes" not in full and "m_d29" in full and "m_orders --> m_d29" in full
    assert "m_stg_orders -.-> m_legacy" in full
    assert len(full) < 4000


def test_mermaid_ids_stay_unique_and_labels_quoted() -> None:
    odd = Lineage(modified=["a-b", "a_b", 'q"x'], added=[], removed=[], descendants=[], edges=[("a-b", "a_b")])
    text = mermaid(odd)
    assert 'm_a_b["a-b"]:::modified' in text and 'm_a_b_2["a_b"]:::modified' in text
    assert "m_a_b --> m_a_b_2" in text
    assert '["q#quot;x"]' in text

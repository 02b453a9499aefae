"""Semantic measures on prod vs dev, and fields broken by a PR (real DuckDB)."""
from __future__ import annotations

import duckdb
import pytest

from bot.impact.semantic_diff import semantic_diff
from bot.semantic.reader import OmniYamlReader
from bot.warehouse.duckdb_warehouse import DuckDBWarehouse

VIEW = """\
table_name: orders
dimensions:
  order_id:
    primary_key: true
  status: {}
  is_big:
    sql: ${TABLE}.amount > 10
  discount:
    sql: ${TABLE}.discount * 2
measures:
  count:
    aggregate_type: count
  revenue:
    sql: ${TABLE}.amount
    aggregate_type: sum
  customers:
    sql: ${TABLE}.customer_id
    aggregate_type: count_distinct
  completed_count:
    aggregate_type: count
    filters:
      status:
        is: completed
  completed_share:
    sql: ${completed_count} / NULLIF(${count}, 0)
  statuses:
    sql: ${TABLE}.status
    aggregate_type: list
"""


@pytest.fixture
def warehouse(tmp_path):
    path = tmp_path / "w.duckdb"
    con = duckdb.connect(str(path))
    con.execute("create schema prod; create schema dev")
    con.execute("create table prod.orders as select range as order_id, range % 7 as customer_id, "
                "case when range % 3 = 0 then 'completed' else 'placed' end as status, "
                "(range % 20)::double as amount, 1 as discount from range(100)")
    # The PR changes amounts of completed orders and drops `discount`.
    con.execute("create table dev.orders as select order_id, customer_id, status, "
                "case when status = 'completed' then amount * 2 else amount end as amount from prod.orders")
    con.close()
    with DuckDBWarehouse(path) as wh:
        yield wh


def test_measures_move_in_total_and_by_group_and_broken_fields_are_named(warehouse) -> None:
    view = OmniYamlReader().read(VIEW, "views/orders.view.yaml")
    diff = semantic_diff(warehouse, [view], {"orders": "orders"}, "prod", "dev")
    totals = {(v.measure): v for v in diff.values if v.dimension is None}
    assert (totals["count"].prod, totals["count"].dev) == (100, 100)
    revenue = totals["revenue"]
    completed = sum(i % 20 for i in range(100) if i % 3 == 0)
    assert revenue.prod == sum(i % 20 for i in range(100)) and revenue.delta == completed
    assert totals["customers"].delta == 0
    by_status = {v.group: v for v in diff.values if v.dimension == "status" and v.measure == "revenue"}
    assert by_status["completed"].delta == completed and by_status["placed"].delta == 0
    assert [(b.id, b.line) for b in diff.broken] == [("orders.discount", 8)]
    assert "discount" in diff.broken[0].reason


def test_a_view_naming_an_aliased_model_gets_its_key_and_is_matched_to_the_model() -> None:
    from bot.impact.prod import models_by_relation
    from bot.dbt.project import model_named_by
    from bot.impact.run import _keys

    manifest = {"nodes": {
        "model.p.orders": {"resource_type": "model", "name": "orders", "alias": "fct_orders", "schema": "prod",
                           "config": {"materialized": "table"}},
        "model.p.customers": {"resource_type": "model", "name": "customers", "alias": "customers", "schema": "prod",
                              "config": {"materialized": "table"}},
    }}
    view = OmniYamlReader().read("table_name: analytics.FCT_ORDERS\ndimensions:\n  order_id:\n    primary_key: true\n",
                                 "orders.view.yaml")
    assert models_by_relation(manifest) == {"fct_orders": "orders"}
    assert model_named_by(view.table_name, models_by_relation(manifest)) == "orders"
    assert _keys(manifest, [view]) == {"orders": ["order_id"]}


def test_a_view_on_a_model_new_in_dev_is_checked_and_its_measures_have_no_prod_value(warehouse) -> None:
    view = OmniYamlReader().read(VIEW, "views/orders.view.yaml")
    diff = semantic_diff(warehouse, [view], {"orders": (None, ("dev", "orders"))})
    assert [b.id for b in diff.broken] == ["orders.discount"]
    totals = {v.measure: v for v in diff.values if v.dimension is None}
    assert totals["count"].prod is None and totals["count"].dev == 100 and totals["count"].delta is None
    assert {v.dimension for v in diff.values} == {None, "status", "is_big"}


def test_filtered_and_ratio_measures_are_the_bi_tools_numbers_and_a_list_is_no_breakage(warehouse) -> None:
    """Impact computes measures as the BI tool does (the same SQL as parity checks): a filtered count
    counts only its rows, a ratio divides two measures, and a `list` (no SQL can aggregate it the same
    way everywhere) is neither compared nor reported broken."""
    view = OmniYamlReader().read(VIEW, "views/orders.view.yaml")
    diff = semantic_diff(warehouse, [view], {"orders": "orders"}, "prod", "dev")
    totals = {v.measure: v for v in diff.values if v.dimension is None}
    completed = sum(1 for i in range(100) if i % 3 == 0)
    assert (totals["completed_count"].prod, totals["completed_count"].dev) == (completed, completed)
    assert totals["completed_share"].prod == pytest.approx(completed / 100)
    by_status = {v.group: v for v in diff.values if v.dimension == "status" and v.measure == "completed_count"}
    assert by_status["placed"].prod == 0 and by_status["completed"].prod == completed
    assert "statuses" not in totals and "orders.statuses" not in {b.id for b in diff.broken}


def test_a_group_that_vanishes_on_dev_ranks_by_all_it_held(tmp_path) -> None:
    """`status = returned` gone on dev (prod 49, dev none) moved more than any group that shifted a
    little: it is kept among the top groups, not cut as "moved 0"."""
    path = tmp_path / "groups.duckdb"
    con = duckdb.connect(str(path))
    con.execute("create schema prod; create schema dev")
    con.execute("create table prod.orders as select range as order_id, range % 7 as customer_id, "
                "case when range < 49 then 'returned' else 's' || (range % 6)::varchar end as status, "
                "1.0::double as amount, 1 as discount from range(200)")
    con.execute("create table dev.orders as select order_id, customer_id, status, amount * 1.5 as amount, discount "
                "from prod.orders where status <> 'returned'")
    con.close()
    view = OmniYamlReader().read(VIEW, "views/orders.view.yaml")
    with DuckDBWarehouse(path) as wh:
        diff = semantic_diff(wh, [view], {"orders": "orders"}, "prod", "dev", top_n=3)
    by_status = {v.group: v for v in diff.values if v.dimension == "status" and v.measure == "revenue"}
    assert "returned" in by_status and (by_status["returned"].prod, by_status["returned"].dev) == (49, None)
    assert len(by_status) == 3 and all(v.delta for g, v in by_status.items() if g != "returned")


def test_a_measure_over_a_column_new_in_the_pr_has_no_prod_value_and_a_dimension_it_broke_groups_nothing(
        tmp_path) -> None:
    """prod lacks the column a new measure reads (the PR adds it), and dev lacks the column a
    low-cardinality dimension reads (the PR drops it): the report says so instead of failing."""
    path = tmp_path / "new.duckdb"
    con = duckdb.connect(str(path))
    con.execute("create schema prod; create schema dev")
    con.execute("create table prod.orders as select range as order_id, range % 7 as customer_id, "
                "case when range % 3 = 0 then 'completed' else 'placed' end as status, "
                "(range % 20)::double as amount, range % 2 as discount from range(100)")
    con.execute("create table dev.orders as select order_id, customer_id, status, amount, 1.0 as tip from prod.orders")
    con.close()
    view = OmniYamlReader().read(VIEW + "  tips:\n    sql: ${TABLE}.tip\n    aggregate_type: sum\n",
                                 "views/orders.view.yaml")
    with DuckDBWarehouse(path) as wh:
        diff = semantic_diff(wh, [view], {"orders": "orders"}, "prod", "dev")
    tips = [v for v in diff.values if v.measure == "tips" and v.dimension is None]
    assert [(v.prod, v.dev) for v in tips] == [(None, 100.0)]
    assert "orders.discount" in {b.id for b in diff.broken}
    assert "discount" not in {v.dimension for v in diff.values}
    assert {v.dimension for v in diff.values} == {None, "status", "is_big"}

"""Measures pushed as MetricFlow definitions, on one real dbt project built on DuckDB: `dbt parse` and
`mf validate-configs` accept them, and `mf query` gives what direct SQL over the rows gives, for every
kind of measure (a filtered count with empty groups, a ratio, a median, a derived metric, and a
metric grouped by another view's dimension through a relationship). One project, built once, asked
many times: MetricFlow's start-up costs seconds."""
from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from bot.dbt.metricflow import check_semantics, query_metrics
from bot.dbt.project import DirStore
from bot.impact.build import Target, build_prod, write_build_profile
from bot.impact.metric_parity import check_parity, group_key
from bot.impact.prod import relations
from bot.semantic.formats import format_for
from bot.translate.metrics_write import plan_metrics
from bot.translate.push import FieldRequest

pytestmark = pytest.mark.slow

USERS = """# Reference this view as marts__users
schema: marts
table_name: users
dimensions:
  user_id:
    primary_key: true
  country: {}
  plan: {}
  is_churned: {}
  signup_date:
    timeframes: [date]
measures:
  count:
    aggregate_type: count
  churned:
    label: Churned users
    description: Users who cancelled.
    aggregate_type: count
    filters:
      is_churned:
        is: 1
  churn_rate:
    sql: ${marts__users.churned} / NULLIF(${marts__users.count}, 0)
  churn_pct:
    sql: SUM(CASE WHEN is_churned = 1 THEN 1 ELSE 0 END) * 100.0 / COUNT(*)
"""

ORDERS = """# Reference this view as marts__orders
schema: marts
table_name: orders
dimensions:
  order_id:
    primary_key: true
  user_id: {}
  amount: {}
  status: {}
  ordered_at:
    timeframes: [date]
measures:
  count:
    aggregate_type: count
  revenue:
    sql: ${marts__orders.amount}
    aggregate_type: sum
  avg_amount:
    sql: ${marts__orders.amount}
    aggregate_type: average
  min_amount:
    sql: amount
    aggregate_type: min
  max_amount:
    sql: amount
    aggregate_type: max
  median_amount:
    sql: ${marts__orders.amount}
    aggregate_type: median
  p90_amount:
    sql: ${marts__orders.amount}
    aggregate_type: percentile
    percentile: 90
  buyers:
    sql: ${marts__orders.user_id}
    aggregate_type: count_distinct
  returned:
    aggregate_type: count
    filters:
      status:
        is: returned
  returned_amount:
    sql: amount
    aggregate_type: sum
    filters:
      status:
        is: returned
"""

RELATIONSHIPS = """- join_from_view: marts__orders
  join_to_view: marts__users
  join_type: always_left
  on_sql: ${marts__orders.user_id} = ${marts__users.user_id}
  relationship_type: many_to_one
"""

USERS_CSV = """user_id,country,plan,is_churned,signup_date
1,fr,free,1,2024-01-01
2,fr,pro,0,2024-01-02
3,de,pro,0,2024-01-03
4,de,free,1,2024-02-01
5,us,pro,0,2024-02-02
"""
# `us` has users but no order; `placed` orders exist only in `de`: groups where a filter keeps no row
ORDERS_CSV = """order_id,user_id,amount,status,ordered_at
10,1,10,completed,2024-01-05
11,1,20,returned,2024-01-06
12,2,30,completed,2024-01-07
13,3,5,placed,2024-02-01
14,4,40,returned,2024-02-02
15,4,15,completed,2024-02-03
16,2,7,placed,2024-02-04
"""

MEASURE_IDS = [f"marts__orders.{m}" for m in ("count", "revenue", "avg_amount", "min_amount", "max_amount",
                                             "median_amount", "p90_amount", "buyers", "returned", "returned_amount")] \
    + [f"marts__users.{m}" for m in ("count", "churned", "churn_rate", "churn_pct")]


def semantic_model():
    return format_for("omni").read_model({"marts/users.view.yaml": USERS, "marts/orders.view.yaml": ORDERS,
                                          "relationships.yaml": RELATIONSHIPS, "model.yaml": "{}\n"})


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("mfproject")
    project = root / "project"
    (project / "models" / "marts").mkdir(parents=True)
    (project / "seeds").mkdir()
    (project / "dbt_project.yml").write_text("name: shop\nversion: '1.0'\nconfig-version: 2\nprofile: shop\n")
    (project / "seeds" / "raw_users.csv").write_text(USERS_CSV)
    (project / "seeds" / "raw_orders.csv").write_text(ORDERS_CSV)
    (project / "models" / "marts" / "users.sql").write_text("select * from {{ ref('raw_users') }}\n")
    (project / "models" / "marts" / "orders.sql").write_text("select * from {{ ref('raw_orders') }}\n")
    marts_yml = ("version: 2\n\n# the marts\nmodels:\n  - name: orders\n    description: One row per order.\n"
                 "    columns:\n      - name: order_id\n")
    (project / "models" / "marts" / "_marts__models.yml").write_text(marts_yml)
    model = semantic_model()
    requests = [FieldRequest(model.views[i.split(".")[0]], model.views[i.split(".")[0]].fields[i.split(".")[1]])
                for i in MEASURE_IDS]
    plan, files = plan_metrics(DirStore(project), model, requests)
    for path, text in files.items():
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        (project / path).write_text(text)
    database = root / "warehouse.duckdb"
    build, _ = build_prod(project, database, "layersync_metrics")
    profiles = root / "profiles"
    write_build_profile(profiles, project, database, "layersync_metrics")
    validated = check_semantics(project, "shop", profiles_dir=profiles, warehouse=True,
                                names=[p.metric for p in plan.pushed])
    return {"project": project, "plan": plan, "files": files, "build": build,
            "validated": validated, "profiles": profiles, "database": database, "model": model,
            "marts_yml": marts_yml}


def direct(database: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(database), read_only=True) as con:
        return con.execute(sql).fetchall()


def metric(built, field_id: str) -> str:
    return next(p.metric for p in built["plan"].pushed if p.id == field_id)


def test_every_measure_is_translated_and_accepted_by_dbt_and_metricflow(built) -> None:
    plan = built["plan"]
    assert plan.skipped == []
    assert sorted(p.id for p in plan.pushed) == sorted(MEASURE_IDS)
    assert {p.id: p.kind for p in plan.pushed}["marts__users.churn_rate"] == "ratio"
    assert {p.id: p.kind for p in plan.pushed}["marts__users.churn_pct"] == "derived"
    assert built["build"].ok, built["build"].errors
    assert built["validated"].ok, built["validated"].errors
    # names unique across the project though both views have `count`
    assert metric(built, "marts__orders.count") == "orders_count" and metric(built, "marts__users.count") == "users_count"
    # the existing properties file keeps every byte it had, the additions after it
    text = built["files"]["models/marts/_marts__models.yml"]
    assert text.startswith(built["marts_yml"]) and "semantic_models:" in text and "\nmetrics:\n" in text
    assert "models/metricflow_time_spine.sql" in built["files"]


def test_simple_aggregates_in_total_match_direct_sql(built) -> None:
    names = [metric(built, f"marts__orders.{m}") for m in ("count", "revenue", "avg_amount", "min_amount",
                                                            "max_amount", "median_amount", "p90_amount", "buyers")]
    result = query_metrics(built["project"], built["profiles"], names)
    assert result.ok, result.errors
    (row,) = result.rows
    (expected,) = direct(built["database"], """
        select count(*), sum(amount), avg(amount), min(amount), max(amount), median(amount),
               quantile_cont(amount, 0.9), count(distinct user_id) from layersync_metrics.raw_orders""")
    assert [float(row[n]) for n in names] == pytest.approx([float(v) for v in expected])


def test_filtered_count_keeps_its_empty_groups_and_ratio_and_derived_match(built) -> None:
    returned, returned_amount = metric(built, "marts__orders.returned"), metric(built, "marts__orders.returned_amount")
    result = query_metrics(built["project"], built["profiles"], [returned, returned_amount],
                           ["order_id__status"])
    assert result.ok, result.errors
    got = {r["order_id__status"]: (r[returned], r[returned_amount]) for r in result.rows}
    rows = direct(built["database"], """select status, count(case when status = 'returned' then 1 end),
        sum(case when status = 'returned' then amount end) from layersync_metrics.orders group by 1""")
    expected = {s: (str(c), "" if a is None else str(a)) for s, c, a in rows}
    assert got == expected and got["placed"][0] == "0"     # an empty group is 0, not a missing row
    rate, pct, churned = (metric(built, f"marts__users.{m}") for m in ("churn_rate", "churn_pct", "churned"))
    result = query_metrics(built["project"], built["profiles"], [rate, pct, churned], ["user_id__plan"])
    assert result.ok, result.errors
    got = {r["user_id__plan"]: (float(r[rate]), float(r[pct]), int(r[churned])) for r in result.rows}
    rows = direct(built["database"], """select plan, count(case when is_churned = 1 then 1 end) * 1.0
        / nullif(count(*), 0), sum(case when is_churned = 1 then 1 else 0 end) * 100.0 / count(*),
        count(case when is_churned = 1 then 1 end) from layersync_metrics.users group by 1""")
    assert got == {p: (pytest.approx(float(r)), pytest.approx(float(c)), n) for p, r, c, n in rows}


def test_a_metric_grouped_by_another_views_dimension_through_the_relationship(built) -> None:
    revenue, median = metric(built, "marts__orders.revenue"), metric(built, "marts__orders.median_amount")
    result = query_metrics(built["project"], built["profiles"], [revenue, median], ["user_id__country"])
    assert result.ok, result.errors
    got = {r["user_id__country"]: (float(r[revenue]), float(r[median])) for r in result.rows}
    rows = direct(built["database"], """select u.country, sum(o.amount), median(o.amount)
        from layersync_metrics.orders o left join layersync_metrics.users u on o.user_id = u.user_id group by 1""")
    assert got == {c: (pytest.approx(float(s)), pytest.approx(float(m))) for c, s, m in rows}
    assert set(got) == {"fr", "de"}


def test_parity_against_the_bi_definition_one_mf_query_per_grouping(built) -> None:
    project = built["project"]
    import json
    manifest = json.loads((project / "target" / "layersync-layersync_metrics" / "manifest.json").read_text())
    built_at = {name.lower(): rel for name, rel in relations(manifest).items()}
    parity = check_parity(project, built["profiles"], Target.duckdb(built["database"]), built["model"], built["plan"],
                          built_at)
    assert parity.errors == [], "\n".join(parity.errors)
    assert parity.ok, parity.failing()
    assert set(parity.rows) == set(MEASURE_IDS)
    assert parity.queries == 1 + len(set(parity.grouped_by.values()))
    churned = parity.rows["marts__users.churned"]
    assert churned[0] == {"group": None, "dbt": 2.0, "bi": 2.0, "ok": True}
    assert any(r["group"] is not None for r in churned)


def test_a_bi_definition_that_differs_is_a_cross_and_a_failing_status(built) -> None:
    project = built["project"]
    import json
    from dataclasses import replace
    from bot.push_metrics import MetricsOutcome, status
    manifest = json.loads((project / "target" / "layersync-layersync_metrics" / "manifest.json").read_text())
    built_at = {name.lower(): rel for name, rel in relations(manifest).items()}
    plan = built["plan"]
    revenue = [p for p in plan.pushed if p.id == "marts__orders.revenue"]
    # the analyst's definition moved on (doubled) while dbt's metric did not
    changed = format_for("omni").read_model({
        "marts/users.view.yaml": USERS, "relationships.yaml": RELATIONSHIPS, "model.yaml": "{}\n",
        "marts/orders.view.yaml": ORDERS.replace("sql: ${marts__orders.amount}\n    aggregate_type: sum",
                                                 "sql: ${marts__orders.amount} * 2\n    aggregate_type: sum")})
    parity = check_parity(project, built["profiles"], Target.duckdb(built["database"]), changed, plan, built_at,
                          pushed=revenue)
    rows = parity.rows["marts__orders.revenue"]
    assert rows[0]["group"] is None and not rows[0]["ok"] and rows[0]["bi"] == 2 * rows[0]["dbt"]
    assert parity.failing() == ["marts__orders.revenue"] and parity.queries == 2
    state, description = status(MetricsOutcome(replace(plan, pushed=revenue), parity=parity))
    assert state == "failure" and "1 of 1 metrics differ" in description


def test_group_keys_agree_between_mf_csv_and_the_warehouse() -> None:
    import datetime
    assert group_key("True") == group_key(True) == "true"
    assert group_key("2024-01-01") == group_key(datetime.date(2024, 1, 1))
    assert group_key("2024-01-01 00:00:00") == group_key(datetime.datetime(2024, 1, 1))
    assert group_key("3") == group_key(3) == group_key(3.0) and group_key("") is None

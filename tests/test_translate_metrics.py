"""Measures → MetricFlow definitions, pure: the mapping table, ratios and derived metrics, names,
extending the project's own semantic model, reruns, and every bad input with its file and line."""
from __future__ import annotations

import difflib

import pytest

from bot.dbt.project import DbtProject, MemoryStore
from bot.dbt.semantic_layer import read_semantic_layer
from bot.semantic.formats import format_for
from bot.translate.metrics import MetricTranslator, mf_name
from bot.translate.metrics_write import plan_metrics
from bot.translate.push import FieldRequest

USERS = """# Reference this view as marts__users
schema: marts
table_name: users
label: Users
dimensions:
  user_id:
    primary_key: true
  country: {}
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
    sql: amount
    aggregate_type: average
  low:
    sql: amount
    aggregate_type: min
  high:
    sql: amount
    aggregate_type: max
  median_amount:
    sql: amount
    aggregate_type: median
  p90:
    sql: amount
    aggregate_type: percentile
    percentile: 90
  buyers:
    sql: ${marts__orders.user_id}
    aggregate_type: count_distinct
  returned_amount:
    sql: amount
    aggregate_type: sum
    filters:
      status:
        is: returned
  total_again:
    sql: SUM(${marts__orders.amount})
  every_status:
    sql: ${marts__orders.status}
    aggregate_type: list
  dedup:
    sql: amount
    aggregate_type: sum_distinct_on
  weird:
    sql: amount
    aggregate_type: stddev
  ghost_filter:
    aggregate_type: count
    filters:
      no_such_field:
        is: 1
  running:
    sql: SUM(amount) OVER (ORDER BY ordered_at)
  row_level:
    sql: amount * 2
"""
RELATIONSHIPS = """- join_from_view: marts__orders
  join_to_view: marts__users
  on_sql: ${marts__orders.user_id} = ${marts__users.user_id}
  relationship_type: many_to_one
"""
MODELS_YML = """version: 2

# marts
models:
  - name: orders
    columns:
      - name: order_id
"""
PROJECT = {
    "dbt_project.yml": "name: shop\nprofile: shop\n",
    "models/marts/orders.sql": "select * from {{ ref('raw_orders') }}\n",
    "models/marts/users.sql": "select * from {{ ref('raw_users') }}\n",
    "models/marts/_models.yml": MODELS_YML,
}


def added_and_removed(before: str, after: str) -> tuple[list[str], list[str]]:
    diff = list(difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0))
    return ([l[1:] for l in diff if l.startswith("+") and not l.startswith("+++")],
            [l[1:] for l in diff if l.startswith("-") and not l.startswith("---")])


def model(users: str = USERS, orders: str = ORDERS, relationships: str = RELATIONSHIPS):
    return format_for("omni").read_model({"marts/users.view.yaml": users, "marts/orders.view.yaml": orders,
                                          "relationships.yaml": relationships, "model.yaml": "{}\n"})


def translate(semantic, files=None, fields=None):
    project = DbtProject(MemoryStore(files or PROJECT))
    requests = [FieldRequest(v, f) for v in semantic.views.values() for f in v.fields.values()
                if f.kind == "measure" and (fields is None or f.id in fields)]
    return MetricTranslator(semantic, project, read_semantic_layer(project)).translate(requests)


def measures_of(plan, model_name):
    return {m["name"]: m for m in plan.semantic_models[model_name].measures}


def skipped(plan):
    return {s.id: s for s in plan.skipped}


def test_the_mapping_table_of_aggregate_types() -> None:
    plan = translate(model())
    got = {n: (m["agg"], m["expr"], m.get("agg_params")) for n, m in measures_of(plan, "orders").items()}
    assert got["orders_count"] == ("count", "1", None)
    assert got["orders_revenue"] == ("sum", "amount", None)
    assert got["orders_avg_amount"][0] == "average" and got["orders_low"][0] == "min"
    assert got["orders_high"][0] == "max" and got["orders_median_amount"][0] == "median"
    assert got["orders_p90"] == ("percentile", "amount", {"percentile": 0.9, "use_discrete_percentile": False})
    assert got["orders_buyers"] == ("count_distinct", "user_id", None)
    # a filtered measure aggregates CASE WHEN: the groups no row passes stay (NULL for a sum)
    assert got["orders_returned_amount"] == ("sum", "CASE WHEN status = 'returned' THEN amount END", None)
    # one aggregate in custom SQL is a simple metric over that measure
    assert got["orders_total_again"] == ("sum", "amount", None)
    users = measures_of(plan, "users")
    assert users["users_churned"]["expr"] == "CASE WHEN is_churned = 1 THEN 1 END"
    assert users["users_churned"]["agg"] == "count"


def test_ratio_derived_labels_descriptions_and_markers() -> None:
    plan = translate(model(), fields={"marts__users.churn_rate", "marts__users.churn_pct", "marts__users.churned"})
    metrics = {m.name: m.definition for m in plan.metrics}
    assert metrics["users_churn_rate"]["type"] == "ratio"
    assert metrics["users_churn_rate"]["type_params"] == {"numerator": "users_churned", "denominator": "users_count"}
    derived = metrics["users_churn_pct"]
    assert derived["type"] == "derived"
    assert derived["type_params"]["expr"] == "users_churn_pct_part_1 * 100.0 / users_churn_pct_part_2"
    parts = measures_of(plan, "users")
    assert (parts["users_churn_pct_part_1"]["agg"], parts["users_churn_pct_part_1"]["expr"]) == \
        ("sum", "CASE WHEN is_churned = 1 THEN 1 ELSE 0 END")
    assert (parts["users_churn_pct_part_2"]["agg"], parts["users_churn_pct_part_2"]["expr"]) == ("count", "1")
    churned = metrics["users_churned"]
    assert churned["label"] == "Churned users" and churned["description"] == "Users who cancelled."
    assert churned["config"] == {"meta": {"layersync_field": "marts__users.churned"}}
    # the ratio's denominator is written too, though it was not asked for
    assert "users_count" in metrics
    assert {p.id: p.kind for p in plan.pushed}["marts__users.churn_rate"] == "ratio"


def test_semantic_models_entities_dimensions_and_the_time_dimension() -> None:
    plan = translate(model(), fields={"marts__orders.revenue"})
    orders = plan.semantic_models["orders"].document()
    assert orders["model"] == "ref('orders')" and orders["defaults"] == {"agg_time_dimension": "ordered_at"}
    assert orders["entities"] == [{"name": "order_id", "type": "primary"}, {"name": "user_id", "type": "foreign"}]
    dims = {d["name"]: d for d in orders["dimensions"]}
    assert dims["ordered_at"]["type"] == "time" and dims["ordered_at"]["type_params"] == {"time_granularity": "day"}
    assert dims["status"]["type"] == "categorical" and "user_id" not in dims   # the join column is an entity
    users = plan.semantic_models["users"].document()       # joined to: its dimensions group orders' metrics
    assert users["entities"] == [{"name": "user_id", "type": "primary"}] and "measures" not in users
    assert plan.time_spine
    assert plan.pushed[0].agg_time_dimension == "ordered_at"


def test_names_are_unique_across_views_and_follow_metricflow_rules() -> None:
    plan = translate(model(), fields={"marts__orders.count", "marts__users.count"})
    assert sorted(p.metric for p in plan.pushed) == ["orders_count", "users_count"]
    labels = [m.definition["label"] for m in plan.metrics]
    assert len(set(labels)) == len(labels)                  # MetricFlow wants labels unique as well
    assert mf_name("Order Total__x") == "order_total_x" and mf_name("9lives") == "m_9lives"


@pytest.mark.parametrize("field, code, words", [
    ("every_status", "not-translatable", "no list aggregation"),
    ("dedup", "not-translatable", "`sum_distinct_on`"),
    ("weird", "unknown-aggregate", "unknown aggregate_type `stddev`"),
    ("ghost_filter", "unknown-field", "no_such_field"),
    ("running", "not-translatable", "window function"),
    ("row_level", "not-translatable", "outside any aggregate"),
])
def test_what_is_not_translated_is_reported_with_file_and_line(field, code, words) -> None:
    plan = translate(model(), fields={f"marts__orders.{field}"})
    found = skipped(plan)[f"marts__orders.{field}"]
    assert found.code == code and words in found.reason
    line = next(i for i, l in enumerate(ORDERS.splitlines(), 1) if l == f"  {field}:")
    assert (found.file, found.line) == ("marts/orders.view.yaml", line)
    assert found.is_failure
    assert plan.pushed == []


def test_a_view_without_primary_key_or_time_dimension_is_refused() -> None:
    no_key = USERS.replace("    primary_key: true\n", "")
    plan = translate(model(users=no_key), fields={"marts__users.count"})
    assert skipped(plan)["marts__users.count"].code == "no-primary-key"
    assert skipped(plan)["marts__users.count"].file == "marts/users.view.yaml"
    no_time = USERS.replace("  signup_date:\n    timeframes: [date]\n", "")
    plan = translate(model(users=no_time), fields={"marts__users.count"})
    assert skipped(plan)["marts__users.count"].code == "no-time-dimension"


def test_a_relationship_joining_on_different_types_is_reported_and_the_measure_still_goes() -> None:
    files = dict(PROJECT)
    files["models/marts/_models.yml"] = MODELS_YML + """      - name: user_id
        data_type: varchar
  - name: users
    columns:
      - name: user_id
        data_type: integer
"""
    plan = translate(model(), files, fields={"marts__orders.revenue"})
    problem = skipped(plan)["marts__orders -> marts__users"]
    assert problem.code == "join-types" and "different types" in problem.reason
    assert (problem.file, problem.line) == ("relationships.yaml", 1)
    assert [p.id for p in plan.pushed] == ["marts__orders.revenue"]
    assert [e["name"] for e in plan.semantic_models["orders"].entities] == ["order_id"]


def test_a_humans_metric_is_never_overwritten() -> None:
    files = dict(PROJECT)
    files["models/marts/metrics.yml"] = """version: 2
metrics:
  - name: orders_revenue
    label: Revenue (finance)
    type: simple
    type_params:
      measure: revenue_finance
"""
    plan = translate(model(), files, fields={"marts__orders.revenue", "marts__orders.count"})
    found = skipped(plan)["marts__orders.revenue"]
    assert found.code == "name-collision" and "models/marts/metrics.yml:3" in found.reason
    assert [p.id for p in plan.pushed] == ["marts__orders.count"]


def test_a_project_on_the_newer_spec_gets_nothing() -> None:
    files = dict(PROJECT)
    files["models/marts/_models.yml"] = MODELS_YML.replace("  - name: orders\n",
                                                           "  - name: orders\n    semantic_model: true\n")
    plan = translate(model(), files)
    assert plan.pushed == [] and plan.semantic_models == {} and plan.metrics == []
    assert {s.code for s in plan.skipped} == {"newer-spec"}
    assert all((s.file, s.line) == ("models/marts/_models.yml", 6) for s in plan.skipped)


def test_the_projects_own_semantic_model_is_extended_not_doubled_and_reruns_change_nothing() -> None:
    files = dict(PROJECT)
    own = """version: 2

semantic_models:
  # ours, by hand
  - name: order_facts
    model: ref('orders')
    defaults:
      agg_time_dimension: ordered_at
    entities:
      - name: order
        type: primary
        expr: order_id
    dimensions:
      - name: ordered_at
        type: time
        type_params:
          time_granularity: day
    measures:
      - name: gross
        agg: sum
        expr: amount
"""
    files["models/marts/semantic.yml"] = own
    files["models/metricflow_time_spine.sql"] = "select 1\n"
    semantic = model()
    requests = [FieldRequest(semantic.views["marts__orders"], semantic.views["marts__orders"].fields["revenue"])]
    plan, written = plan_metrics(MemoryStore(files), semantic, requests)
    assert plan.semantic_models["orders"].name == "order_facts" and not plan.time_spine
    text = written["models/marts/semantic.yml"]
    added, removed = added_and_removed(own, text)
    assert removed == [] and "      - name: orders_revenue" in added and "      - name: status" in added
    assert text.count("model: ref('orders')") == 1 and "# ours, by hand" in text
    assert plan.pushed[0].semantic_model == "order_facts" and plan.pushed[0].agg_time_dimension == "ordered_at"
    # the rerun on the written project: same names, nothing to write
    again, rewritten = plan_metrics(MemoryStore({**files, **written}), semantic, requests)
    assert [(p.metric, p.action) for p in again.pushed] == [("orders_revenue", "unchanged")]
    assert rewritten == {}


def test_jinja_in_a_measure_is_refused_not_escaped() -> None:
    orders = ORDERS.replace("  revenue:\n", "  revenue:\n    description: \"{{ env_var('SECRET') }}\"\n")
    plan = translate(model(orders=orders), fields={"marts__orders.revenue", "marts__orders.returned_amount"})
    assert skipped(plan)["marts__orders.revenue"].code == "unsafe-sql"
    filtered = ORDERS.replace("        is: returned", "        is: \"{{ run_query('drop') }}\"")
    plan = translate(model(orders=filtered), fields={"marts__orders.returned_amount"})
    assert skipped(plan)["marts__orders.returned_amount"].code == "unsafe-sql"


def test_the_builds_column_types_find_a_time_dimension_a_name_does_not_tell() -> None:
    no_time_name = USERS.replace("  signup_date:\n    timeframes: [date]\n", "  first_order: {}\n")
    semantic = model(users=no_time_name)
    project = DbtProject(MemoryStore(PROJECT))
    requests = [FieldRequest(semantic.views["marts__users"], semantic.views["marts__users"].fields["count"])]
    guessed = MetricTranslator(semantic, project, read_semantic_layer(project)).translate(requests)
    assert skipped(guessed)["marts__users.count"].code == "no-time-dimension"
    typed = MetricTranslator(semantic, project, read_semantic_layer(project),
                             column_types={"users": {"first_order": "DATE", "country": "VARCHAR"}}).translate(requests)
    assert typed.skipped == [] and typed.pushed[0].agg_time_dimension == "first_order"

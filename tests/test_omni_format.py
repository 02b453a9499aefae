"""Omni's own git layout, read as Omni writes it: a model folder inside a larger repo (the dbt project
in another folder), views named `<schema>__<stem>`, self-qualified references, relationships, topics."""
from __future__ import annotations

from pathlib import Path

import git
import pytest

from bot.config import parse_config
from bot.errors import LayersyncError, TranslationError
from bot.forge.local import LocalForge
from bot.gitops import RevisionReader
from bot.push_to_dbt import PushRequest, run
from bot.selection import format_at, parse_field_id, select_named
from bot.semantic.formats import detect_format, format_for
from bot.semantic.formats.omni import OmniFormat
from bot.semantic.formats.views import ViewsFormat
from bot.semantic.refs import Resolver

ROOT = "omni/Shop"
FCT_ORDERS = """\
# Reference this view as omni_dbt_marts__fct_orders
schema: omni_dbt_marts
table_name: fct_orders
label: Orders
dbt:
  name: fct_orders
  target_schema: marts
  description: One row per order.
  config:
    materialized: table
  referenced_by: []

dimensions:
  order_id:
    primary_key: true
  customer_id: {}
  amount_cents: {}
  status:
    sql: '"STATUS"'
  is_test: {}
  age: {}
  amount:
    sql: ${omni_dbt_marts__fct_orders.amount_cents} / 100.0
    label: Amount
  is_large:
    sql: ${omni_dbt_marts__fct_orders.amount} > 100
  age_band:
    sql: CASE WHEN age < 30 THEN 'young' ELSE 'older' END
  customer_region:
    sql: ${omni_dbt_marts__dim_customers.region}
  is_churned:
    sql: ${status} = 'churned'

measures:
  count:
    aggregate_type: count
  churned_count:
    aggregate_type: count
    filters:
      is_churned:
        is: 1
  p90_amount:
    sql: ${amount}
    aggregate_type: percentile
    percentile: 90
  revenue:
    sql: ${omni_dbt_marts__fct_orders.amount}
    aggregate_type: sum_distinct_on
  revenue_per_order:
    sql: ${omni_dbt_marts__fct_orders.revenue} / NULLIF(${omni_dbt_marts__fct_orders.count}, 0)
"""
DIM_CUSTOMERS = """\
# Reference this view as omni_dbt_marts__dim_customers
dimensions:
  customer_id:
    primary_key: true
  customer_name: {}
  region: {}
"""
QUERY_VIEW = """\
query:
  base_view: omni_dbt_marts__fct_orders
  fields: [omni_dbt_marts__fct_orders.order_id]
dimensions:
  order_id: {}
"""
RELATIONSHIPS = """\
- join_from_view: omni_dbt_marts__fct_orders
  join_to_view: omni_dbt_marts__dim_customers
  join_type: always_left
  on_sql: ${omni_dbt_marts__fct_orders.customer_id} = ${omni_dbt_marts__dim_customers.customer_id}
  relationship_type: many_to_one
  reversible: false
"""
TOPIC = """\
base_view: omni_dbt_marts__fct_orders
label: Shop
joins:
  omni_dbt_marts__dim_customers: {}
fields:
  - omni_dbt_marts__fct_orders.*
  - -omni_dbt_marts__fct_orders.amount_cents
  - omni_dbt_marts__dim_customers.customer_name
default_filters:
  omni_dbt_marts__fct_orders.status:
    is: completed
always_where_sql: ${omni_dbt_marts__fct_orders.is_test} = false
"""


def model_texts(**replace: str) -> dict[str, str]:
    texts = {
        f"{ROOT}/model.yaml": "included_schemas:\n  - omni_dbt_marts\n",
        f"{ROOT}/relationships.yaml": RELATIONSHIPS,
        f"{ROOT}/Shop.topic.yaml": TOPIC,
        f"{ROOT}/omni_dbt_marts/fct_orders.view.yaml": FCT_ORDERS,
        f"{ROOT}/omni_dbt_marts/dim_customers.view.yaml": DIM_CUSTOMERS,
        f"{ROOT}/big_orders.query.view.yaml": QUERY_VIEW,
        "dbt-project/models/marts/fct_orders.sql": "select 1 as order_id\n",
        "dbt-project/models/marts/_marts.yml": "models: []\n",
    }
    texts.update({f"{ROOT}/{k}": v for k, v in replace.items()})
    return texts


def omni() -> OmniFormat:
    return format_for("omni", ROOT)  # type: ignore[return-value]


def read_fct_orders():
    return omni().read(FCT_ORDERS, f"{ROOT}/omni_dbt_marts/fct_orders.view.yaml")


def resolved(view, name: str) -> str:
    return Resolver(view, "duckdb").resolve(view.fields[name]).sql(dialect="duckdb")


# ---------------------------------------------------------------------- names and the dbt: block

def test_views_are_named_by_schema_folder_and_stem_as_omni_says() -> None:
    model = omni().read_model(model_texts())
    assert sorted(model.views) == ["big_orders", "omni_dbt_marts__dim_customers", "omni_dbt_marts__fct_orders"]
    for view in model.views.values():
        first = model_texts()[view.file].splitlines()[0]
        if first.startswith("# Reference this view as "):
            assert first.removeprefix("# Reference this view as ") == view.name
    customers = model.views["omni_dbt_marts__dim_customers"]
    # No `schema:` or `table_name:`: the folder and the file say them.
    assert (customers.schema, customers.table_name, customers.model_name) == ("omni_dbt_marts", "dim_customers",
                                                                               "dim_customers")
    assert customers.fields["region"].id == "omni_dbt_marts__dim_customers.region"
    assert model.problems == []


def test_dbt_block_is_read_as_written_and_names_the_model() -> None:
    view = read_fct_orders()
    assert view.dbt == {"name": "fct_orders", "target_schema": "marts", "description": "One row per order.",
                        "config": {"materialized": "table"}, "referenced_by": []}
    assert view.dbt_schema == "marts"          # omni_dbt_marts: Omni's virtual schema for dbt's `marts`
    renamed = omni().read(FCT_ORDERS.replace("table_name: fct_orders", "table_name: FCT_ORDERS_V2"),
                          f"{ROOT}/omni_dbt_marts/fct_orders.view.yaml")
    assert (renamed.table_name, renamed.model_name) == ("FCT_ORDERS_V2", "fct_orders")


def test_a_name_key_overrides_the_path() -> None:
    view = omni().read("name: orders\n" + DIM_CUSTOMERS, f"{ROOT}/omni_dbt_marts/dim_customers.view.yaml")
    assert view.name == "orders" and view.fields["region"].id == "orders.region"


# ---------------------------------------------------------------------- references

def test_self_qualified_references_resolve_inside_the_view() -> None:
    view = read_fct_orders()
    assert resolved(view, "amount") == "amount_cents / 100.0"
    assert resolved(view, "is_large") == "(amount_cents / 100.0) > 100"
    # The bug this fixes: read as the old `views` layout, the view is `fct_orders` and its own
    # fully qualified references look like another view's.
    old = ViewsFormat().read(FCT_ORDERS, f"{ROOT}/omni_dbt_marts/fct_orders.view.yaml")
    with pytest.raises(TranslationError, match="needs a join"):
        Resolver(old, "duckdb").resolve(old.fields["is_large"])


def test_quoted_bare_and_implicit_columns() -> None:
    view = read_fct_orders()
    assert resolved(view, "status") == '"STATUS"'
    assert resolved(view, "customer_id") == "customer_id"                  # no sql: the column of its name
    assert resolved(view, "age_band") == "CASE WHEN age < 30 THEN 'young' ELSE 'older' END"
    assert resolved(view, "is_churned") == "\"STATUS\" = 'churned'"


def test_another_views_field_is_reported_with_the_reason() -> None:
    view = read_fct_orders()
    with pytest.raises(TranslationError) as caught:
        Resolver(view, "duckdb").resolve(view.fields["customer_region"])
    message = caught.value.message
    assert "`omni_dbt_marts__dim_customers`" in message and "needs a join" in message
    assert "reported, not pushed" in message and "fct_orders" in message
    assert caught.value.line == FCT_ORDERS.splitlines().index("  customer_region:") + 1


def test_table_placeholder_is_a_problem_of_its_field_in_omni() -> None:
    text = FCT_ORDERS.replace("  age: {}\n", "  age:\n    sql: ${TABLE}.age\n")
    view = omni().read(text, f"{ROOT}/omni_dbt_marts/fct_orders.view.yaml")
    line = text.splitlines().index("  age:") + 1
    assert [(p.line, "Omni has no `${TABLE}`" in p.message) for p in view.problems] == [(line, True)]
    with pytest.raises(TranslationError, match=r"uses `\$\{TABLE\}`: Omni has no") as caught:
        Resolver(view, "duckdb").resolve(view.fields["age"])
    assert caught.value.line == line
    # The views layout keeps its `${TABLE}`.
    old = ViewsFormat().read(text, "views/fct_orders.view.yaml")
    assert resolved(old, "age") == "age" and old.problems == ()


# ---------------------------------------------------------------------- measures

def test_measures_read_aggregates_percentile_and_filters() -> None:
    view = read_fct_orders()
    churned = view.fields["churned_count"]
    assert (churned.kind, churned.aggregate_type, churned.filters) == ("measure", "count", {"is_churned": {"is": 1}})
    p90 = view.fields["p90_amount"]
    assert (p90.aggregate_type, p90.percentile) == ("percentile", 90.0)
    assert view.fields["revenue"].aggregate_type == "sum_distinct_on"
    custom = view.fields["revenue_per_order"]
    assert custom.aggregate_type is None and "NULLIF" in custom.sql
    assert all(f.type is None for f in view.fields.values())              # Omni writes no `type:`


def test_measure_mistakes_are_problems_not_unreadable_files() -> None:
    text = FCT_ORDERS.replace("    percentile: 90\n", "").replace("aggregate_type: sum_distinct_on",
                                                                    "aggregate_type: total")
    text = text.replace("        is: 1", "        equals: 1")
    view = omni().read(text, f"{ROOT}/omni_dbt_marts/fct_orders.view.yaml")
    messages = " | ".join(p.message for p in view.problems)
    assert "`p90_amount`: aggregate_type `percentile` needs `percentile: N`" in messages
    assert "unknown aggregate_type `total`" in messages
    assert "unknown filter operator(s) `equals` on `is_churned`" in messages
    assert "revenue" in view.fields


# ---------------------------------------------------------------------- the whole model

def test_read_model_relationships_topics_settings() -> None:
    model = omni().read_model(model_texts())
    assert model.settings == {"included_schemas": ["omni_dbt_marts"]}
    [join] = model.relationships
    assert (join.join_from_view, join.join_to_view, join.join_type, join.relationship_type, join.reversible) == (
        "omni_dbt_marts__fct_orders", "omni_dbt_marts__dim_customers", "always_left", "many_to_one", False)
    assert join.on_sql.startswith("${omni_dbt_marts__fct_orders.customer_id}")
    assert str(join.location) == f"{ROOT}/relationships.yaml:1"
    topic = model.topics["Shop"]
    assert topic.base_view == "omni_dbt_marts__fct_orders" and topic.label == "Shop"
    assert topic.fields[1] == "-omni_dbt_marts__fct_orders.amount_cents"
    assert topic.default_filters == {"omni_dbt_marts__fct_orders.status": {"is": "completed"}}
    assert topic.always_where_sql == "${omni_dbt_marts__fct_orders.is_test} = false"
    assert set(topic.joins) == {"omni_dbt_marts__dim_customers"}
    assert model.views["big_orders"].query and not omni().is_pushable(f"{ROOT}/big_orders.query.view.yaml")
    assert omni().is_pushable(f"{ROOT}/omni_dbt_marts/fct_orders.view.yaml")
    assert not omni().is_model_file("dbt-project/models/marts/_marts.yml")


@pytest.mark.parametrize("edit, file, line, words", [
    ({"relationships.yaml": "join_from_view: a\njoin_to_view: b\n"}, "relationships.yaml", 1,
     "relationships.yaml must be a list of joins"),
    ({"relationships.yaml": RELATIONSHIPS + "- join_from_view: omni_dbt_marts__fct_orders\n"
                                            "  join_to_view: omni_dbt_marts__dim_stores\n"},
     "relationships.yaml", 8, "`join_to_view: omni_dbt_marts__dim_stores` names no view of the model"),
    ({"omni_dbt_marts/dim_customers_copy.view.yaml": "name: omni_dbt_marts__dim_customers\n" + DIM_CUSTOMERS},
     "omni_dbt_marts/dim_customers_copy.view.yaml", 1, "two views are named `omni_dbt_marts__dim_customers`"),
    ({"stray.view.yaml": DIM_CUSTOMERS}, "stray.view.yaml", 1, "view file outside any schema folder"),
    ({"Shop.topic.yaml": TOPIC.replace("dim_customers.customer_name", "dim_customers.full_name")},
     "Shop.topic.yaml", 8, "view `omni_dbt_marts__dim_customers` has no field `full_name`"),
    ({"Shop.topic.yaml": TOPIC.replace("  omni_dbt_marts__fct_orders.status:", "  omni_dbt_marts__fct_orders.state:")},
     "Shop.topic.yaml", 10, "has no field `state`"),
    ({"Shop.topic.yaml": TOPIC.replace("base_view: omni_dbt_marts__fct_orders", "base_view: fct_orders")},
     "Shop.topic.yaml", 1, "base_view `fct_orders` names no view"),
])
def test_bad_input_is_a_problem_with_file_and_line_and_the_rest_still_reads(edit, file, line, words) -> None:
    model = omni().read_model(model_texts(**edit))
    found = [(p.file, p.line, p.message) for p in model.problems]
    assert [(f, n) for f, n, m in found if words in m] == [(f"{ROOT}/{file}", line)], found
    assert len(found) == 1, found
    assert {"omni_dbt_marts__fct_orders", "omni_dbt_marts__dim_customers"} <= set(model.views)
    assert "Shop" in model.topics or file == "Shop.topic.yaml"


# ---------------------------------------------------------------------- detection and settings

@pytest.mark.parametrize("paths, root, expected", [
    ([f"{ROOT}/model.yaml"], ROOT, "omni"),
    ([f"{ROOT}/Shop.topic.yaml"], ROOT, "omni"),
    ([f"{ROOT}/relationships.yaml"], ROOT, "omni"),
    ([f"{ROOT}/omni_dbt_marts/fct_orders.view.yaml"], ROOT, "omni"),
    (["views/orders.view.yaml", "layersync.yml"], "", "views"),
    ([f"{ROOT}/model.yaml"], "", "views"),                       # another folder's model is not this one
    (["dbt-project/models/schema.yml"], "", "views"),
])
def test_format_is_detected_from_the_model_root(paths, root, expected) -> None:
    assert detect_format(paths, root) == expected


def test_format_setting_chooses_and_unknown_names_are_refused_with_their_line() -> None:
    config = parse_config("dialect: duckdb\nformat: views\n")
    assert isinstance(config.semantic_format([f"{ROOT}/model.yaml"], ROOT), ViewsFormat)
    assert isinstance(parse_config("dialect: duckdb\n").semantic_format([f"{ROOT}/model.yaml"], ROOT), OmniFormat)
    with pytest.raises(LayersyncError) as caught:
        parse_config("dialect: duckdb\nformat: lookml\n")
    assert caught.value.line == 2 and "unknown semantic-layer format `lookml`" in caught.value.message


# ---------------------------------------------------------------------- --field names

@pytest.fixture
def monorepo(tmp_path: Path) -> RevisionReader:
    repo = git.Repo.init(tmp_path / "mono", initial_branch="main")
    texts = model_texts(**{"omni_dbt_staging/fct_orders.view.yaml": DIM_CUSTOMERS})
    for rel, text in texts.items():
        path = tmp_path / "mono" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    repo.git.add("-A")
    repo.index.commit("an Omni model beside its dbt project")
    return RevisionReader(tmp_path / "mono", "semantic-layer repo")


def test_field_ids_take_omni_names_and_unambiguous_stems(monorepo: RevisionReader) -> None:
    fmt = format_at(monorepo, "HEAD", ROOT)
    assert isinstance(fmt, OmniFormat)
    assert parse_field_id("omni_dbt_marts__fct_orders.amount") == ("omni_dbt_marts__fct_orders", "amount")
    chosen = select_named(monorepo, "HEAD", None, ["omni_dbt_marts__fct_orders.amount", "dim_customers.region",
                                                    "fct_orders.amount", "big_orders.order_id"], fmt, root=ROOT)
    assert [r.field.id for r in chosen.requests] == ["omni_dbt_marts__fct_orders.amount",
                                                    "omni_dbt_marts__dim_customers.region"]
    skipped = {s.id: (s.code, s.reason) for s in chosen.skipped}
    code, reason = skipped["fct_orders.amount"]
    assert code == "ambiguous-field"
    assert "`omni_dbt_marts__fct_orders`" in reason and "`omni_dbt_staging__fct_orders`" in reason
    assert skipped["big_orders.order_id"][0] == "nothing-to-push" and "query view" in skipped["big_orders.order_id"][1]


# ---------------------------------------------------------------------- end to end

ORDERS_VIEW = """\
# Reference this view as omni_dbt_main__orders
schema: omni_dbt_main
table_name: orders
dbt:
  name: orders
  target_schema: main
dimensions:
  order_id:
    primary_key: true
  order_date: {}
  status: {}
  amount: {}
"""
SELF_REFERENCING = """\
  is_large_order:
    description: Orders of more than 20 dollars
    sql: ${omni_dbt_main__orders.amount} > 20
  order_size:
    sql: CASE WHEN ${omni_dbt_main__orders.amount} >= 30 THEN 'large' ELSE 'small' END
  is_returned:
    sql: ${omni_dbt_main__orders.status} IN ('returned', 'return_pending')
  order_month:
    sql: date_trunc('month', ${omni_dbt_main__orders.order_date})
"""


def test_push_of_omni_self_referencing_dimensions_pushes_four_of_four(repos) -> None:
    semantic = git.Repo(repos.semantic)
    semantic.git.rm("-r", "-q", "views")
    repos.write_semantic("model.yaml", "included_schemas:\n  - omni_dbt_main\n")
    repos.write_semantic("omni_dbt_main/orders.view.yaml", ORDERS_VIEW)
    repos.commit_semantic("the model as Omni keeps it in git")
    repos.write_semantic("omni_dbt_main/orders.view.yaml", ORDERS_VIEW + SELF_REFERENCING)
    repos.commit_semantic("four dimensions that read their own view")

    result = run(PushRequest(semantic_repo=repos.semantic, dbt_repo=repos.remote), LocalForge(repos.state_db))

    assert result.skipped == []
    assert sorted((p.id, p.model, p.action) for p in result.pushed) == [
        (f"omni_dbt_main__orders.{name}", "orders", "added")
        for name in ("is_large_order", "is_returned", "order_month", "order_size")]
    by_id = {p.id: p for p in result.pushed}
    assert by_id["omni_dbt_main__orders.is_large_order"].dbt_sql == "amount > 20"
    model = repos.dbt_file(result.branch, "models/marts/orders.sql")
    assert "amount > 20 as is_large_order" in model and "status in ('returned', 'return_pending')" in model.lower()
    assert result.to_json()["pushed"][0]["field"].startswith("omni_dbt_main__orders.")


def test_a_view_that_now_reads_another_dbt_model_has_every_field_looked_at_again() -> None:
    from bot.semantic.diff import diff_views

    path = f"{ROOT}/omni_dbt_marts/fct_orders.view.yaml"
    old = read_fct_orders()
    new = omni().read(FCT_ORDERS.replace("  name: fct_orders", "  name: fct_orders_v2"), path)
    changes = diff_views({old.name: old}, {new.name: new})
    assert {c.field for c in changes} == set(new.fields) and {c.kind for c in changes} == {"changed"}


def test_a_views_header_names_it_when_omni_named_it_by_its_table_alone() -> None:
    # Seen in a real model: views of the connection's default schema are referenced by table name only.
    from bot.semantic.formats import format_for
    text = ("# Reference this view as dim_users\nschema: estore_marts\ntable_name: dim_users\ndimensions:\n"
            "  total_revenue: {}\n  revenue_bin:\n    sql: CASE WHEN ${dim_users.total_revenue} > 100 THEN 'high' END\n")
    view = format_for("omni").read(text, "estore_marts/dim_users.view.yaml")
    assert view.name == "dim_users"
    from bot.semantic.refs import Resolver
    assert Resolver(view, "duckdb").resolve(view.fields["revenue_bin"]).sql() == \
        "CASE WHEN total_revenue > 100 THEN 'high' END"


def test_a_topic_without_default_filters_reads() -> None:
    from bot.semantic.formats import format_for
    texts = {"model.yaml": "{}\n", "s/orders.view.yaml": "dimensions:\n  id: {}\n",
             "Orders.topic.yaml": "base_view: s__orders\nfields: [s__orders.*]\n"}
    model = format_for("omni").read_model(texts)
    assert list(model.topics) == ["Orders"] and model.problems == []

"""Which semantic fields depend on a dbt column, directly and through `${field}` chains."""
from __future__ import annotations

from pathlib import Path

from bot.semantic.dependents import DependencyIndex, reads
from bot.semantic.reader import OmniYamlReader

VIEWS = Path(__file__).resolve().parents[1] / "bot" / "demo" / "semantic" / "views"


def _views(extra: dict[str, str] | None = None):
    reader = OmniYamlReader()
    files = {p.name: p.read_text() for p in sorted(VIEWS.glob("*.view.yaml"))} | (extra or {})
    return [reader.read(text, f"views/{name}") for name, text in files.items()]


def test_a_column_is_read_by_the_dimension_named_after_it_and_every_field_built_on_that() -> None:
    index = DependencyIndex(_views())
    found = {d.id: d.via for d in index.dependents("orders", "amount")}
    assert found == {"orders.amount": ("orders.amount",),
                     "orders.revenue": ("orders.amount", "orders.revenue"),
                     "orders.average_order_value": ("orders.amount", "orders.average_order_value")}


def test_table_references_bare_columns_and_undeclared_refs_all_read_the_column() -> None:
    index = DependencyIndex(_views())
    assert [d.id for d in index.dependents("orders", "status")] == [
        "orders.status", "orders.is_returned", "orders.returned_count"]
    assert {d.id for d in index.dependents("customers", "number_of_orders")} == {
        "customers.number_of_orders", "customers.is_repeat_customer", "customers.total_orders"}
    view = _views({"x.view.yaml": "table_name: orders\ndimensions:\n  a:\n    sql: amount * 2\n"
                                  "  b:\n    sql: ${undeclared_col} + 1\n"})[-1]
    assert reads(view, view.fields["a"], "duckdb").columns == {"amount"}
    assert reads(view, view.fields["b"], "duckdb").columns == {"undeclared_col"}


def test_chains_cross_views_and_a_removed_model_takes_every_field_of_its_views() -> None:
    extra = {"x.view.yaml": "table_name: other\nmeasures:\n  big_revenue:\n    sql: ${orders.revenue} * 2\n"
                            "    aggregate_type: sum\n"}
    index = DependencyIndex(_views(extra))
    chain = {d.id: d.via for d in index.dependents("orders", "amount")}
    assert chain["x.big_revenue"] == ("orders.amount", "orders.revenue", "x.big_revenue")
    everything = {d.id for d in index.dependents("customers")}
    assert "customers.count" in everything and "customers.full_name" in everything
    assert not any(i.startswith("orders.") for i in everything)


def test_unparsable_sql_is_recorded_not_raised() -> None:
    index = DependencyIndex(_views({"x.view.yaml": "table_name: orders\ndimensions:\n  bad:\n    sql: '(('\n"}))
    assert [f.id for f in index.unparsed] == ["x.bad"]


def test_a_measures_filters_read_the_fields_they_name() -> None:
    """`churned_count` counts the rows `is_churned` keeps: when `status` goes, it breaks too."""
    from bot.semantic.formats import format_for
    text = ("dimensions:\n  status: {}\n  is_churned:\n    sql: ${omni_dbt_marts__subs.status} = 'churned'\n"
            "measures:\n  churned_count:\n    aggregate_type: count\n    filters:\n      is_churned:\n        is: true\n"
            "  other_count:\n    aggregate_type: count\n    filters:\n      omni_dbt_marts__subs.status:\n"
            "        is: open\n")
    view = format_for("omni", "m").read(text, "m/omni_dbt_marts/subs.view.yaml")
    found = {d.id: d.via for d in DependencyIndex([view]).dependents("subs", "status")}
    assert found["omni_dbt_marts__subs.churned_count"] == (
        "omni_dbt_marts__subs.status", "omni_dbt_marts__subs.is_churned", "omni_dbt_marts__subs.churned_count")
    assert found["omni_dbt_marts__subs.other_count"] == ("omni_dbt_marts__subs.status",
                                                         "omni_dbt_marts__subs.other_count")


def test_topics_and_relationships_name_fields_with_their_lines() -> None:
    from bot.semantic.dependents import model_mentions
    from bot.semantic.formats import format_for
    fmt = format_for("omni", "m")
    views = {v.name: v for v in (
        fmt.read("dimensions:\n  id: {}\n  status:\n    aliases: [state]\n", "m/s/orders.view.yaml"),
        fmt.read("dimensions:\n  id: {}\n", "m/s/users.view.yaml"))}
    texts = {
        "m/Shop.topic.yaml": "base_view: s__orders\nfields:\n  - s__orders.*\n  - -s__orders.state\n"
                             "default_filters:\n  s__orders.status: {is: x}\nalways_where_sql: ${s__users.id} > 0\n",
        "m/relationships.yaml": "- join_from_view: s__orders\n  join_to_view: s__users\n"
                                "  on_sql: ${s__orders.id} = ${s__users.id}\n",
        "m/s/orders.view.yaml": "dimensions: {}\n",
        "elsewhere/Other.topic.yaml": "fields: [s__orders.id]\n",                       # another model's
    }
    found = {k: [(m.file, m.line, m.what) for m in v] for k, v in model_mentions(texts, views, "m").items()}
    assert found == {
        "s__orders.status": [("m/Shop.topic.yaml", 4, "topic `Shop` excludes it in `fields`"),   # by its alias
                             ("m/Shop.topic.yaml", 6, "topic `Shop` filters on it in `default_filters`")],
        "s__users.id": [("m/Shop.topic.yaml", 7, "topic `Shop` reads it in `always_where_sql`"),
                        ("m/relationships.yaml", 3, "the join s__orders → s__users reads it in `on_sql`")],
        "s__orders.id": [("m/relationships.yaml", 3, "the join s__orders → s__users reads it in `on_sql`")]}

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

"""Resolving `${...}` references into SQL over the view's table."""
from __future__ import annotations

import pytest

from bot.errors import TranslationError
from bot.semantic.formats import format_for
from bot.semantic.refs import Ref, Resolver, is_aggregate, parse_field_sql, plain_column, scan

VIEW = """\
table_name: orders
dimensions:
  order_id:
    primary_key: true
  amount:
    sql: ${TABLE}.amount_cents / 100
  is_large:
    sql: ${amount} > 100
  large_and_done:
    sql: ${is_large} and ${orders.order_id} > 0
  order_month:
    sql: date_trunc('month', ${order_date})
  quoted:
    sql: '"ORDER_ID"'
  renamed:
    sql: ${old_name} + 1
  new_name:
    sql: ${TABLE}.x
    aliases: [old_name]
  cyc_a:
    sql: ${cyc_b} + 1
  cyc_b:
    sql: ${cyc_c} * 2
  cyc_c:
    sql: ${cyc_a}
  joined:
    sql: ${customers.name}
  bad_sql:
    sql: amount +* (
  uses_measure:
    sql: ${revenue} * 2
  agg_dim:
    sql: sum(${TABLE}.amount)
  windowed:
    sql: row_number() over (partition by ${TABLE}.customer_id order by ${order_date})
  table_alone:
    sql: ${TABLE} > 1
measures:
  revenue:
    sql: ${amount}
    aggregate_type: sum
"""


@pytest.fixture(scope="module")
def view():
    return format_for("views").read(VIEW, "views/orders.view.yaml")


def resolved(view, name: str, dialect: str = "duckdb") -> str:
    return Resolver(view, "duckdb").resolve(view.fields[name]).sql(dialect=dialect)


def test_scan_splits_sql_and_refs() -> None:
    assert scan("${TABLE}.a + ${b} - ${v.c}") == [Ref("TABLE"), ".a + ", Ref("b"), " - ", Ref("v.c")]
    with pytest.raises(ValueError, match="unclosed"):
        scan("${a + 1")
    with pytest.raises(ValueError, match="empty reference"):
        scan("${ } + 1")


@pytest.mark.parametrize("name, sql", [
    ("order_id", "order_id"),
    ("amount", "amount_cents / 100"),
    ("is_large", "(amount_cents / 100) > 100"),
    ("large_and_done", "((amount_cents / 100) > 100) AND order_id > 0"),
    ("order_month", "DATE_TRUNC('MONTH', order_date)"),
    ("quoted", '"ORDER_ID"'),
    ("renamed", "x + 1"),
    ("windowed", "ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY order_date)"),
])
def test_resolves_recursively_over_table_columns(view, name: str, sql: str) -> None:
    assert resolved(view, name) == sql


def test_resolved_sql_transpiles_to_other_dialects(view) -> None:
    assert resolved(view, "order_month", "postgres") == "DATE_TRUNC('MONTH', order_date)"
    assert resolved(view, "quoted", "bigquery") == "`ORDER_ID`"


@pytest.mark.parametrize("name, line, words", [
    ("cyc_a", 20, "reference cycle: cyc_a -> cyc_b -> cyc_c -> cyc_a"),
    ("joined", 26, "needs a join"),
    ("bad_sql", 28, "invalid SQL in `bad_sql`"),
    ("uses_measure", 30, "refers to measure `revenue`"),
    ("agg_dim", 32, "aggregates rows"),
    ("table_alone", 36, "must name a column"),
])
def test_untranslatable_fields_name_file_line_and_reason(view, name: str, line: int, words: str) -> None:
    with pytest.raises(TranslationError) as caught:
        resolved(view, name)
    assert caught.value.file == "views/orders.view.yaml"
    assert caught.value.line == line
    assert words in caught.value.message


def test_unknown_field_in_own_view_by_qualified_name() -> None:
    view = format_for("views").read("table_name: t\ndimensions:\n  a:\n    sql: ${t.nope} + 1\n", "views/t.view.yaml")
    with pytest.raises(TranslationError, match="unknown field `\\$\\{t.nope\\}`"):
        Resolver(view, "duckdb").resolve(view.fields["a"])


def test_another_views_field_says_which_views_and_that_it_is_only_reported(view) -> None:
    with pytest.raises(TranslationError) as caught:
        resolved(view, "joined")
    message = caught.value.message
    assert "reads another view, `customers` (this is `orders`)" in message
    assert "dbt model `orders`" in message and "reported, not pushed" in message


def test_plain_column_detection(view) -> None:
    assert plain_column(view.fields["order_id"], "duckdb") == "order_id"
    assert plain_column(view.fields["quoted"], "duckdb") == "ORDER_ID"
    assert plain_column(view.fields["is_large"], "duckdb") is None


def test_aggregate_detection_ignores_windows() -> None:
    assert is_aggregate(parse_field_sql("sum(x)", "duckdb")[0])
    assert not is_aggregate(parse_field_sql("sum(x) over (partition by y)", "duckdb")[0])
    with pytest.raises(ValueError, match="not a statement"):
        parse_field_sql("select 1", "duckdb")

"""The BI side of parity: measure_sql's SQL run on DuckDB against numbers computed by hand from the rows below."""
from __future__ import annotations


import duckdb
import pytest

from bot.semantic.formats import format_for
from bot.translate.measure_sql import (GroupBy, MeasureUnsupported, dbt_ref, measure_query, measure_sql,
                                       parse_group_by, time_dimensions)

USERS = """# Reference this view as marts__users
schema: marts
table_name: users
dimensions:
  user_id:
    primary_key: true
  country: {}
  is_churned: {}
  signup_date:
    timeframes: [date, month]
measures:
  count:
    aggregate_type: count
  churned:
    aggregate_type: count
    filters:
      is_churned:
        is: 1
  churn_rate:
    sql: ${marts__users.churned} / NULLIF(${marts__users.count}, 0)
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
  status_upper:
    sql: UPPER(${marts__orders.status})
  ordered_at:
    timeframes: [date, month]
  customer_country:
    sql: ${marts__users.country}
measures:
  count:
    aggregate_type: count
  total_amount:
    sql: ${marts__orders.amount}
    aggregate_type: sum
  avg_amount:
    sql: ${marts__orders.amount}
    aggregate_type: average
  min_amount:
    sql: amount
    aggregate_type: min
  max_amount:
    sql: ${amount}
    aggregate_type: max
  median_amount:
    sql: ${marts__orders.amount}
    aggregate_type: median
  p75_amount:
    sql: ${marts__orders.amount}
    aggregate_type: percentile
    percentile: 75
  distinct_users:
    sql: ${marts__orders.user_id}
    aggregate_type: count_distinct
  completed_count:
    aggregate_type: count
    filters:
      status:
        is: completed
  completed_amount:
    sql: ${marts__orders.amount}
    aggregate_type: sum
    filters:
      status:
        is: completed
  big_orders:
    aggregate_type: count
    filters:
      amount:
        greater_than: 50
  completed_share:
    sql: SUM(CASE WHEN ${marts__orders.status} = 'completed' THEN 1 ELSE 0 END) * 100.0 / COUNT(*)
  revenue_per_order:
    sql: ${marts__orders.total_amount} / NULLIF(${marts__orders.count}, 0)
  completed_revenue_per_order:
    sql: ${marts__orders.total_amount} / NULLIF(${marts__orders.count}, 0)
    filters:
      status:
        is: completed
  every_status:
    sql: ${marts__orders.status}
    aggregate_type: list
  dedup_amount:
    sql: amount
    aggregate_type: sum_distinct_on
    custom_primary_key_sql: order_id
"""

PRODUCTS = """# Reference this view as marts__products
schema: marts
table_name: products
dimensions:
  product_id:
    primary_key: true
  category: {}
measures:
  count:
    aggregate_type: count
"""

RELATIONSHIPS = """- join_from_view: marts__orders
  join_to_view: marts__users
  join_type: always_left
  on_sql: ${marts__orders.user_id} = ${marts__users.user_id}
  relationship_type: many_to_one
"""

#        order_id user_id amount status      ordered_at
ORDER_ROWS = [(1, 1, 10, "completed", "2024-01-06"),
              (2, 1, 20, "returned", "2024-01-07"),
              (3, 2, 30, "completed", "2024-02-01"),
              (4, 3, 100, "completed", "2024-02-15"),
              (5, 3, None, "pending", "2024-03-01"),
              (6, None, 40, "completed", "2024-03-02"),
              (7, 2, 5, None, "2024-03-10")]
USER_ROWS = [(1, "FR", 1, "2024-01-05"), (2, "FR", 0, "2024-01-20"), (3, "DE", 0, "2024-02-03"),
             (4, "US", None, "2024-02-10")]


def read(orders: str = ORDERS, extra: dict[str, str] | None = None):
    texts = {"omni/model.yaml": "{}\n", "omni/relationships.yaml": RELATIONSHIPS,
             "omni/marts/orders.view.yaml": orders, "omni/marts/users.view.yaml": USERS,
             "omni/marts/products.view.yaml": PRODUCTS, **(extra or {})}
    return format_for("omni", "omni").read_model(texts)


@pytest.fixture(scope="module")
def db():
    con = duckdb.connect()
    con.execute("create schema marts")
    con.execute("create table marts.orders (order_id int, user_id int, amount int, status varchar, ordered_at date)")
    con.executemany("insert into marts.orders values (?, ?, ?, ?, ?)", ORDER_ROWS)
    con.execute("create table marts.users (user_id int, country varchar, is_churned int, signup_date date)")
    con.executemany("insert into marts.users values (?, ?, ?, ?)", USER_ROWS)
    con.execute("create table marts.products (product_id int, category varchar)")
    yield con
    con.close()


def run(db, view, measures, group_by=(), orders: str = ORDERS):
    sql = measure_sql(read(orders), view, measures, group_by, dialect="duckdb")
    return [tuple(_round(v) for v in row) for row in db.execute(sql).fetchall()]


def _round(value):
    return round(float(value), 6) if isinstance(value, float) or type(value).__name__ == "Decimal" else value


def test_every_simple_aggregate_in_total(db) -> None:
    measures = ["count", "total_amount", "avg_amount", "min_amount", "max_amount", "median_amount", "p75_amount",
                "distinct_users"]
    # amounts 10, 20, 30, 100, NULL, 40, 5: six non-NULL values; users 1, 1, 2, 3, 3, NULL, 2
    assert run(db, "marts__orders", measures) == [
        (7, 205, round(205 / 6, 6), 5, 100, 25.0, 37.5, 3)]


def test_a_filtered_count_shows_zero_and_a_filtered_sum_null_for_groups_no_row_passes(db) -> None:
    assert run(db, "marts__orders", ["count", "completed_count", "completed_amount", "big_orders"],
               ["status"]) == [
        ("completed", 4, 4, 180, 1),
        ("pending", 1, 0, None, 0),
        ("returned", 1, 0, None, 0),
        (None, 1, 0, None, 0),
    ]


def test_filtered_count_and_ratio_of_measures_by_a_dimension(db) -> None:
    # users: FR churned 1 of 2; DE none of 1; US is_churned NULL (not churned)
    assert run(db, "marts__users", ["count", "churned", "churn_rate"], ["country"]) == [
        ("DE", 1, 0, 0), ("FR", 2, 1, 0.5), ("US", 1, 0, 0)]
    assert run(db, "marts__users", ["churn_rate"]) == [(0.25,)]


def test_custom_aggregates_over_row_expressions_and_over_measures(db) -> None:
    assert run(db, "marts__orders", ["completed_share", "revenue_per_order", "completed_revenue_per_order"]) == [
        (round(400 / 7, 6), round(205 / 7, 6), 45.0)]


def test_grouped_by_a_dimension_of_a_view_reached_through_a_many_to_one_relationship(db) -> None:
    # FR: orders 1, 2, 3, 7; DE: 4, 5; order 6 has no user: the NULL group
    assert run(db, "marts__orders", ["count", "total_amount", "completed_count"], ["marts__users.country"]) == [
        ("DE", 2, 100, 1), ("FR", 4, 65, 2), (None, 1, 40, 1)]
    # a dimension of the view that itself reads the other view groups the same way
    assert run(db, "marts__orders", ["count"], ["customer_country"]) == [("DE", 2), ("FR", 4), (None, 1)]


def test_grouped_by_two_dimensions_and_a_time_grain(db) -> None:
    assert run(db, "marts__orders", ["count", "total_amount"], [GroupBy("marts__orders.ordered_at", "month")]) == [
        (_date("2024-01-01"), 2, 30), (_date("2024-02-01"), 2, 130), (_date("2024-03-01"), 3, 45)]
    rows = run(db, "marts__orders", ["count"], ["marts__users.country", "status_upper"])
    assert rows == [("DE", "COMPLETED", 1), ("DE", "PENDING", 1), ("FR", "COMPLETED", 2), ("FR", "RETURNED", 1),
                    ("FR", None, 1), (None, "COMPLETED", 1)]


def _date(text: str):
    import datetime
    return datetime.date.fromisoformat(text)


OPERATORS = [
    ("status: {is: [completed, returned]}", 5),
    ("status: {not: completed}", 3),                 # returned, pending and the NULL status
    ("status: {not: [completed, returned]}", 2),
    ("status: {is: null}", 1),
    ("status: {not: null}", 6),
    ("amount: {greater_than: 30}", 2),
    ("amount: {less_than: 20}", 2),
    ("amount: {greater_than_or_equal_to: 30}", 3),
    ("amount: {less_than_or_equal_to: 10}", 2),
    ("amount: {between: [10, 30]}", 3),
    ("amount: {greater_than: 5, less_than: 40}", 3),
    ("status: {contains: plet}", 4),
    ("status: {contains: PLET}", 4),                 # case-insensitive
    ("status: {contains: '%'}", 0),                  # LIKE's wildcards are the value's own characters
    ("status: {not_contains: plet}", 3),
    ("status: {starts_with: ret}", 1),
    ("status: {ends_with: ing}", 1),
    ("ordered_at: {before: 2024-02-01}", 2),
    ("ordered_at: {on_or_after: 2024-03-01}", 3),
    ("marts__users.country: {is: FR}", 4),           # a filter through the relationship
    ("is_complete: {is: true}", 4),                  # a boolean dimension of the view
]


@pytest.mark.parametrize("condition,expected", OPERATORS)
def test_each_filter_operator(db, condition: str, expected: int) -> None:
    orders = ORDERS.replace("  customer_country:\n", "  is_complete:\n    sql: ${status} = 'completed'\n"
                                                     "  customer_country:\n")
    orders += f"  picked:\n    aggregate_type: count\n    filters:\n      {condition}\n"
    assert run(db, "marts__orders", ["picked"], orders=orders) == [(expected,)]
    # and grouped: the per-group counts add up to the total, groups no row passes included as 0
    grouped = run(db, "marts__orders", ["picked"], ["status"], orders=orders)
    assert len(grouped) == 4 and sum(r[1] for r in grouped) == expected


@pytest.mark.parametrize("measure,code,words", [
    ("every_status", "aggregate-type", "`list` gathers values"),
    ("dedup_amount", "aggregate-type", "`sum_distinct_on` de-duplicates"),
    ("nope", "unknown-measure", "has no measure `nope`"),
])
def test_measures_no_sql_can_compute_are_refused_with_the_reason(measure: str, code: str, words: str) -> None:
    with pytest.raises(MeasureUnsupported) as caught:
        measure_sql(read(), "marts__orders", [measure])
    assert caught.value.code == code and words in caught.value.message
    assert caught.value.file == "omni/marts/orders.view.yaml" and caught.value.line


def test_a_custom_measure_must_aggregate_and_may_not_read_another_views_measure() -> None:
    loose = ORDERS + "  loose:\n    sql: ${marts__orders.amount} + 1\n"
    with pytest.raises(MeasureUnsupported, match="outside any aggregate") as caught:
        measure_sql(read(loose), "marts__orders", ["loose"])
    assert caught.value.line == loose.splitlines().index("  loose:") + 1
    other = ORDERS + "  per_user:\n    sql: ${marts__orders.count} / ${marts__users.count}\n"
    with pytest.raises(MeasureUnsupported, match="a measure of another view"):
        measure_sql(read(other), "marts__orders", ["per_user"])
    cycle = ORDERS + "  a:\n    sql: ${marts__orders.b} + 1\n  b:\n    sql: ${marts__orders.a} * 2\n"
    with pytest.raises(MeasureUnsupported, match="reference cycle: a -> b -> a"):
        measure_sql(read(cycle), "marts__orders", ["a"])


def test_bad_groupings_are_one_clear_error_each() -> None:
    with pytest.raises(MeasureUnsupported, match="has no dimension `nope`") as caught:
        measure_sql(read(), "marts__orders", ["count"], ["nope"])
    assert str(caught.value).startswith("omni/marts/orders.view.yaml:")
    with pytest.raises(MeasureUnsupported, match="relationships.yaml has no join") as caught:
        measure_sql(read(), "marts__orders", ["count"], ["marts__products.category"])
    assert caught.value.code == "no-relationship"
    with pytest.raises(MeasureUnsupported, match="is a measure, not a dimension"):
        measure_sql(read(), "marts__orders", ["count"], ["total_amount"])
    with pytest.raises(MeasureUnsupported, match="unknown time grain `hour`"):
        measure_sql(read(), "marts__orders", ["count"], [GroupBy("ordered_at", "hour")])
    # the other direction is a fan-out: users' rows would repeat once per order
    with pytest.raises(MeasureUnsupported, match="fan-out"):
        measure_sql(read(extra={"omni/relationships.yaml": RELATIONSHIPS + "  reversible: true\n"}), "marts__users",
                    ["count"], ["marts__orders.status"])


def test_a_filter_on_a_field_that_does_not_exist_is_refused() -> None:
    broken = ORDERS + "  odd:\n    aggregate_type: count\n    filters:\n      marts__orders.nope:\n        is: 1\n"
    with pytest.raises(MeasureUnsupported, match="filters on `marts__orders.nope`"):
        measure_sql(read(broken), "marts__orders", ["odd"])


def test_the_same_query_reads_dbt_refs_and_renders_in_other_dialects() -> None:
    query = measure_query(read(), "marts__orders", ["count", "median_amount"], ["marts__users.country"],
                          relation=dbt_ref)
    text = query.sql("duckdb")
    assert "FROM {{ ref('orders') }} AS marts__orders" in text
    assert "LEFT JOIN {{ ref('users') }} AS marts__users" in text
    assert [c.name for c in query.dimensions] == ["country"] and [c.name for c in query.measures] == [
        "count", "median_amount"]
    assert "PERCENTILE_CONT(0.5) WITHIN GROUP" in query.sql("postgres")
    # a keyword as an output name is quoted; plain lower-case names stay bare (Snowflake upper-cases them)
    assert 'AS "count"' not in query.sql("snowflake") and "marts__orders.amount" in query.sql("snowflake")


def test_names_and_helpers() -> None:
    model = read()
    assert [f.name for f in time_dimensions(model.views["marts__orders"])] == ["ordered_at"]
    assert time_dimensions(model.views["marts__products"]) == []
    assert parse_group_by("marts__orders.ordered_at:Month") == GroupBy("marts__orders.ordered_at", "month")
    query = measure_query(model, "marts__orders", ["count"], ["status", "marts__users.user_id", "user_id"])
    assert [c.name for c in query.dimensions] == ["status", "marts__users__user_id", "marts__orders__user_id"]

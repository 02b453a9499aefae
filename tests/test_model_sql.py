"""Tests for bot.dbt.model_sql: minimal-diff column edits of dbt model SQL.

Every shape asserts the exact output text *and*, via difflib, that only the
expected lines changed — the property reviewers rely on.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import duckdb
import jinja2
import pytest
import sqlglot

from bot.dbt.model_sql import (
    ModelShape,
    ModelSqlError,
    analyse,
    column_sql,
    mask_jinja,
    upsert_column,
)


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    """(removed, added) lines between two texts."""
    diff = list(difflib.ndiff(before.splitlines(), after.splitlines()))
    removed = [line[2:] for line in diff if line.startswith("- ")]
    added = [line[2:] for line in diff if line.startswith("+ ")]
    return removed, added


@dataclass(frozen=True)
class Shape:
    id: str
    model: str
    name: str
    expression: str
    expected: str
    removed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    dialect: str = "duckdb"


JAFFLE_ORDERS = """\
{% set payment_methods = ['credit_card', 'coupon', 'bank_transfer', 'gift_card'] %}

with orders as (

    select * from {{ ref('stg_orders') }}

),

payments as (

    select * from {{ ref('stg_payments') }}

),

order_payments as (

    select
        order_id,

        {% for payment_method in payment_methods -%}
        sum(case when payment_method = '{{ payment_method }}' then amount else 0 end) as {{ payment_method }}_amount,
        {% endfor -%}

        sum(amount) as total_amount

    from payments

    group by order_id

),

final as (

    select
        orders.order_id,
        orders.customer_id,
        orders.order_date,
        orders.status,

        {% for payment_method in payment_methods -%}

        order_payments.{{ payment_method }}_amount,

        {% endfor -%}

        order_payments.total_amount as amount

    from orders

    left join order_payments
        on orders.order_id = order_payments.order_id

)

select * from final
"""

EXPLICIT_FINAL = """\
with order_lines as (
    select * from {{ ref('stg_order_lines') }}
),

final as (
    select
        order_id,
        sum(price * quantity) as gross,
        sum(discount) as discount
    from order_lines
    group by order_id
)

select
    order_id,
    gross - discount as net_amount,
    gross
from final
"""

UNION_ALL = """\
select
    order_id,
    amount_usd as amount,
    'web' as channel
from {{ ref('web_orders') }}

union all

select
    id,
    amount_cents / 100.0,
    'store'
from {{ ref('store_orders') }}
"""

WINDOWED = """\
select
    order_id,
    customer_id,
    order_date,
    row_number() over (partition by customer_id order by order_date) as order_seq,
    sum(amount) over (partition by customer_id) as customer_total
from {{ ref('orders') }}
"""

INCREMENTAL = """\
{{
    config(
        materialized='incremental',
        unique_key='event_id'
    )
}}

select
    event_id,
    user_id,
    event_type,
    occurred_at
from {{ source('app', 'events') }}
{% if is_incremental() %}
where occurred_at > (select max(occurred_at) from {{ this }})
{% endif %}
"""

COMMENTED = """\
{# customers, one row each -- owned by the growth team #}
/* a block comment
   over two lines */
select
    customer_id,
    -- the name as shown in the app
    first_name || ' ' || last_name as full_name,
    lifetime_value  -- in USD, refreshed nightly
from {{ ref('customers') }}  {# no filter: all customers #}
"""

QUOTED = """\
select
    "Order Id",
    "Unit Price" * qty as "Line Total",
    status
from {{ source('erp', 'lines') }}
"""

LEADING_COMMA = """\
select
    id
    , first_name
    , last_name
    , amount -- raw, unconverted
from {{ ref('stg_customers') }};
"""

GROUPED = """\
select
    customer_id,
    count(*) as order_count,
    sum(amount) as total_amount
from {{ ref('orders') }}
group by customer_id
"""

SHAPES = [
    Shape(
        "cte_chain_select_star_jaffle_loop",
        JAFFLE_ORDERS,
        "is_large_order",
        "amount > 100",
        # the file writes its select lists one column per line: `select * from final` is opened up so
        JAFFLE_ORDERS.replace(
            "select * from final\n", "select\n    *,\n    amount > 100 as is_large_order\nfrom final\n"
        ),
        removed=["select * from final"],
        added=["select", "    *,", "    amount > 100 as is_large_order", "from final"],
    ),
    Shape(
        "explicit_final_alias_substitution",
        EXPLICIT_FINAL,
        "discount_share",
        "1 - net_amount / gross",
        EXPLICIT_FINAL.replace(
            "    gross\nfrom final\n",
            "    gross,\n    1 - (gross - discount) / gross as discount_share\nfrom final\n",
        ),
        removed=["    gross"],
        added=["    gross,", "    1 - (gross - discount) / gross as discount_share"],
    ),
    Shape(
        "union_all_by_position",
        UNION_ALL,
        "is_large",
        "amount >= 100",
        UNION_ALL.replace("    'web' as channel\n", "    'web' as channel,\n    amount_usd >= 100 as is_large\n")
        .replace("    'store'\n", "    'store',\n    amount_cents / 100.0 >= 100 as is_large\n"),
        removed=["    'web' as channel", "    'store'"],
        added=[
            "    'web' as channel,",
            "    amount_usd >= 100 as is_large",
            "    'store',",
            "    amount_cents / 100.0 >= 100 as is_large",
        ],
    ),
    Shape(
        "window_functions",
        WINDOWED,
        "is_first_order",
        "order_seq = 1",
        WINDOWED.replace(
            "    sum(amount) over (partition by customer_id) as customer_total\n",
            "    sum(amount) over (partition by customer_id) as customer_total,\n"
            "    row_number() over (partition by customer_id order by order_date) = 1 as is_first_order\n",
        ),
        removed=["    sum(amount) over (partition by customer_id) as customer_total"],
        added=[
            "    sum(amount) over (partition by customer_id) as customer_total,",
            "    row_number() over (partition by customer_id order by order_date) = 1 as is_first_order",
        ],
    ),
    Shape(
        "config_block_source_and_is_incremental",
        INCREMENTAL,
        "is_click",
        "event_type = 'click'",
        INCREMENTAL.replace("    occurred_at\nfrom", "    occurred_at,\n    event_type = 'click' as is_click\nfrom"),
        removed=["    occurred_at"],
        added=["    occurred_at,", "    event_type = 'click' as is_click"],
    ),
    Shape(
        "jinja_and_sql_comments_trailing_line_comment",
        COMMENTED,
        "is_vip",
        "lifetime_value > 1000",
        COMMENTED.replace(
            "    lifetime_value  -- in USD, refreshed nightly\n",
            "    lifetime_value,  -- in USD, refreshed nightly\n    lifetime_value > 1000 as is_vip\n",
        ),
        removed=["    lifetime_value  -- in USD, refreshed nightly"],
        added=["    lifetime_value,  -- in USD, refreshed nightly", "    lifetime_value > 1000 as is_vip"],
    ),
    Shape(
        "quoted_identifiers",
        QUOTED,
        "Is Big Line",
        '"line total" > 50',
        QUOTED.replace(
            "    status\n", '    status,\n    "Unit Price" * qty > 50 as "Is Big Line"\n'
        ),
        removed=["    status"],
        added=["    status,", '    "Unit Price" * qty > 50 as "Is Big Line"'],
    ),
    Shape(
        "leading_comma_and_trailing_semicolon",
        LEADING_COMMA,
        "full_name",
        "first_name || ' ' || last_name",
        LEADING_COMMA.replace(
            "    , amount -- raw, unconverted\n",
            "    , amount -- raw, unconverted\n    , first_name || ' ' || last_name as full_name\n",
        ),
        added=["    , first_name || ' ' || last_name as full_name"],
    ),
    Shape(
        "single_line_select",
        "select id, price * qty as amount from {{ ref('lines') }}\n",
        "is_large",
        "amount > 100",
        "select id, price * qty as amount, price * qty > 100 as is_large from {{ ref('lines') }}\n",
        removed=["select id, price * qty as amount from {{ ref('lines') }}"],
        added=["select id, price * qty as amount, price * qty > 100 as is_large from {{ ref('lines') }}"],
    ),
    Shape(
        "group_by_final",
        GROUPED,
        "average_amount",
        "total_amount / order_count",
        GROUPED.replace(
            "    sum(amount) as total_amount\n",
            "    sum(amount) as total_amount,\n    sum(amount) / count(*) as average_amount\n",
        ),
        removed=["    sum(amount) as total_amount"],
        added=["    sum(amount) as total_amount,", "    sum(amount) / count(*) as average_amount"],
    ),
    Shape(
        "replace_existing_column_in_place",
        EXPLICIT_FINAL,
        "net_amount",
        "gross * 0.9",
        EXPLICIT_FINAL.replace("    gross - discount as net_amount,\n", "    gross * 0.9 as net_amount,\n"),
        removed=["    gross - discount as net_amount,"],
        added=["    gross * 0.9 as net_amount,"],
    ),
    Shape(
        "qualified_star_with_join",
        "select\n    o.*,\n    c.name as customer_name\nfrom {{ ref('orders') }} as o\n"
        "join {{ ref('customers') }} as c on o.customer_id = c.id\n",
        "is_named_large",
        "amount > 10 and customer_name <> ''",
        "select\n    o.*,\n    c.name as customer_name,\n    o.amount > 10 and c.name <> '' as is_named_large\n"
        "from {{ ref('orders') }} as o\njoin {{ ref('customers') }} as c on o.customer_id = c.id\n",
        removed=["    c.name as customer_name"],
        added=["    c.name as customer_name,", "    o.amount > 10 and c.name <> '' as is_named_large"],
    ),
    Shape(
        "jinja_projection_keeps_original_text",
        "select\n    id,\n    {{ dbt_utils.generate_surrogate_key(['id', 'channel']) }} as order_key\nfrom t\n",
        "key_and_id",
        "order_key || id",
        "select\n    id,\n    {{ dbt_utils.generate_surrogate_key(['id', 'channel']) }} as order_key,\n"
        "    ({{ dbt_utils.generate_surrogate_key(['id', 'channel']) }}) || id as key_and_id\nfrom t\n",
        removed=["    {{ dbt_utils.generate_surrogate_key(['id', 'channel']) }} as order_key"],
        added=[
            "    {{ dbt_utils.generate_surrogate_key(['id', 'channel']) }} as order_key,",
            # what the macro renders is unknown here: it is an operand only in parentheses
            "    ({{ dbt_utils.generate_surrogate_key(['id', 'channel']) }}) || id as key_and_id",
        ],
    ),
    Shape(
        "dbt_utils_star_and_duckdb_exclude",
        "select\n    * exclude (secret),\n    {{ dbt_utils.star(ref('extra')) }}\nfrom {{ ref('orders') }}\n",
        "is_paid",
        "status = 'paid'",
        "select\n    * exclude (secret),\n    {{ dbt_utils.star(ref('extra')) }},\n    status = 'paid' as is_paid\n"
        "from {{ ref('orders') }}\n",
        removed=["    {{ dbt_utils.star(ref('extra')) }}"],
        added=["    {{ dbt_utils.star(ref('extra')) }},", "    status = 'paid' as is_paid"],
    ),
    Shape(
        "parenthesised_final_and_distinct",
        "with x as (select 1 as a, 2 as b)\n(select distinct a, b + 1 as c from x)\n",
        "d",
        "a * c",
        "with x as (select 1 as a, 2 as b)\n(select distinct a, b + 1 as c, a * (b + 1) as d from x)\n",
        removed=["(select distinct a, b + 1 as c from x)"],
        added=["(select distinct a, b + 1 as c, a * (b + 1) as d from x)"],
    ),
    Shape(
        "postgres_cast_and_reserved_alias",
        "select\n    id,\n    amount::numeric(10, 2) as amount\nfrom {{ ref('payments') }}\n",
        "from",
        "amount * 2",
        "select\n    id,\n    amount::numeric(10, 2) as amount,\n    amount::numeric(10, 2) * 2 as \"from\"\n"
        "from {{ ref('payments') }}\n",
        removed=["    amount::numeric(10, 2) as amount"],
        added=["    amount::numeric(10, 2) as amount,", '    amount::numeric(10, 2) * 2 as "from"'],
        dialect="postgres",
    ),
]


@pytest.mark.parametrize("shape", SHAPES, ids=[s.id for s in SHAPES])
def test_upsert_exact_minimal_diff(shape: Shape) -> None:
    result = upsert_column(shape.model, shape.name, shape.expression, shape.dialect)
    assert result == shape.expected
    assert changed_lines(shape.model, result) == (shape.removed, shape.added)


@pytest.mark.parametrize("shape", SHAPES, ids=[s.id for s in SHAPES])
def test_upsert_is_idempotent(shape: Shape) -> None:
    once = upsert_column(shape.model, shape.name, shape.expression, shape.dialect)
    assert upsert_column(once, shape.name, shape.expression, shape.dialect) == once


def test_expression_may_be_a_sqlglot_node() -> None:
    node = sqlglot.parse_one("gross > 10", read="duckdb")
    result = upsert_column(EXPLICIT_FINAL, "is_big", node)
    assert "    gross,\n    gross > 10 as is_big\nfrom final\n" in result


def test_replace_keeps_a_bare_column_name() -> None:
    result = upsert_column("select id, amount, flag from t", "flag", "amount > 1")
    assert result == "select id, amount, amount > 1 as flag from t"


def test_crlf_line_endings_are_kept() -> None:
    model = "select\r\n    a,\r\n    b -- note\r\nfrom t\r\n"
    result = upsert_column(model, "c", "a * b")
    assert result == "select\r\n    a,\r\n    b, -- note\r\n    a * b as c\r\nfrom t\r\n"


def test_select_star_on_its_own_line() -> None:
    model = "with final as (select 1 as amount)\nselect\n    *\nfrom final\n"
    result = upsert_column(model, "is_large", "amount > 100")
    assert result == "with final as (select 1 as amount)\nselect\n    *,\n    amount > 100 as is_large\nfrom final\n"


def test_union_by_name_lines_up_by_name_and_allows_star() -> None:
    model = "select a, b from x\nunion all by name\nselect b, * from y\n"
    result = upsert_column(model, "c", "b + 1")
    assert result == "select a, b, b + 1 as c from x\nunion all by name\nselect b, *, b + 1 as c from y\n"


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


def test_unknown_column() -> None:
    with pytest.raises(ModelSqlError, match="unknown column 'nope'") as info:
        upsert_column(EXPLICIT_FINAL, "x", "nope + 1")
    assert info.value.line == 14  # the final SELECT


def test_excluded_column_is_unknown() -> None:
    with pytest.raises(ModelSqlError, match="unknown column 'secret'"):
        upsert_column("select * exclude (secret) from t", "x", "secret")


def test_invalid_sql_reports_line() -> None:
    model = "select\n    a,\n    b\nfrom t\nwhere (\n"
    with pytest.raises(ModelSqlError, match="invalid SQL") as info:
        upsert_column(model, "c", "a")
    assert info.value.line == 5


def test_unterminated_jinja_reports_line() -> None:
    model = "select\n    a,\n    {{ var('x')\nfrom t\n"
    with pytest.raises(ModelSqlError, match="unterminated Jinja") as info:
        mask_jinja(model)
    assert info.value.line == 3
    with pytest.raises(ModelSqlError):
        analyse("{% if x %}\nselect 1 as a\n{# never closed\n")


def test_union_branch_with_star_is_refused() -> None:
    with pytest.raises(ModelSqlError, match="cannot be lined up"):
        upsert_column("select a, b from x union all select * from y", "c", "a")


def test_column_from_jinja_loop_is_refused() -> None:
    model = "select\n    id,\n    {% for m in ms %}\n    sum(x) as {{ m }}_amount,\n    {% endfor %}\n    total\nfrom t\n"
    assert analyse(model).has_star
    with pytest.raises(ModelSqlError, match="Jinja"):
        upsert_column(model, "c", "card_amount + 1")
    assert upsert_column(model, "c", "total * 2").endswith("    total,\n    total * 2 as c\nfrom t\n")


def test_select_list_ending_inside_jinja_block_is_refused() -> None:
    model = "select\n    a,\n    {% if var('b') %}\n    b\n    {% endif %}\nfrom t\n"
    with pytest.raises(ModelSqlError, match="Jinja") as info:
        upsert_column(model, "c", "a")
    assert info.value.line == 4


def test_self_reference_and_subquery_are_refused() -> None:
    with pytest.raises(ModelSqlError, match="itself"):
        upsert_column("select a from t", "a", "a + 1")
    with pytest.raises(ModelSqlError, match="subquery"):
        upsert_column("select a from t", "b", "(select 1)")


def test_non_select_model_is_refused() -> None:
    with pytest.raises(ModelSqlError, match="SELECT"):
        analyse("{{ dbt_utils.union_relations(relations=[ref('a'), ref('b')]) }}\n")
    with pytest.raises(ModelSqlError, match="no SQL"):
        analyse("{{ config(materialized='view') }}\n")


# --------------------------------------------------------------------------
# Masking, analysis, column lookup
# --------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=[s.id for s in SHAPES])
def test_mask_preserves_length_and_lines(shape: Shape) -> None:
    masked = mask_jinja(shape.model)
    assert len(masked) == len(shape.model)
    assert [i for i, c in enumerate(masked) if c == "\n"] == [i for i, c in enumerate(shape.model) if c == "\n"]
    assert "{{" not in masked and "{%" not in masked and "{#" not in masked


def test_mask_keeps_literals_and_comments_intact() -> None:
    text = "select '{{ var(\"x\") }}' as v, \"{{ c }}\" -- {% if a %}\nfrom {{ ref('t') }}"
    masked = mask_jinja(text)
    assert masked.startswith("select '______________' as v, \"_______\" --")
    tokens = sqlglot.Dialect.get_or_raise("duckdb").tokenize(masked)
    assert [t.token_type.name for t in tokens] == ["SELECT", "STRING", "ALIAS", "VAR", "COMMA", "IDENTIFIER", "FROM", "VAR"]
    # A multi-line tag inside a line comment must not end the comment early.
    assert mask_jinja("-- {{ x(\n) }} more\nselect 1") == "--      \n  -- more\nselect 1"


def test_analyse_shapes() -> None:
    assert analyse(JAFFLE_ORDERS) == ModelShape(output_columns=[], has_star=True)
    assert analyse(QUOTED) == ModelShape(output_columns=["Order Id", "Line Total", "status"], has_star=False)
    assert analyse(UNION_ALL) == ModelShape(output_columns=["order_id", "amount", "channel"], has_star=False)
    assert analyse("select\n    id,\n    {{ dbt_utils.star(ref('o')) }}\nfrom t").has_star


def test_column_sql() -> None:
    assert column_sql(EXPLICIT_FINAL, "NET_AMOUNT") == "gross - discount"
    assert column_sql(EXPLICIT_FINAL, "gross") == "gross"
    assert column_sql(EXPLICIT_FINAL, "missing") is None
    assert column_sql(JAFFLE_ORDERS, "amount") is None  # hidden behind `select *`
    assert column_sql(QUOTED, "line total") == '"Unit Price" * qty'


# --------------------------------------------------------------------------
# The edited models actually run
# --------------------------------------------------------------------------


def render(model: str) -> str:
    """Trivial dbt stand-in: ref/source become table names, config nothing."""
    environment = jinja2.Environment()
    return environment.from_string(model).render(
        ref=lambda name: name,
        source=lambda schema, table: table,
        config=lambda **_: "",
        is_incremental=lambda: False,
        this="this",
    )


@pytest.fixture()
def db() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect(":memory:")
    connection.execute(
        "create table stg_orders as select * from (values "
        "(1, 10, date '2024-01-01', 'completed'), (2, 10, date '2024-01-05', 'placed'), "
        "(3, 20, date '2024-01-07', 'completed')) t(order_id, customer_id, order_date, status)"
    )
    connection.execute(
        "create table stg_payments as select * from (values "
        "(1, 1, 'credit_card', 80.0), (2, 1, 'coupon', 40.0), (3, 2, 'gift_card', 30.0), "
        "(4, 3, 'bank_transfer', 150.0)) t(payment_id, order_id, payment_method, amount)"
    )
    connection.execute(
        "create table web_orders as select * from (values (1, 120.0), (2, 50.0)) t(order_id, amount_usd)"
    )
    connection.execute(
        "create table store_orders as select * from (values (7, 25000), (8, 900)) t(id, amount_cents)"
    )
    connection.execute(
        "create table stg_order_lines as select * from (values "
        "(1, 10.0, 3, 5.0), (1, 20.0, 1, 0.0), (2, 8.0, 5, 10.0)) t(order_id, price, quantity, discount)"
    )
    return connection


def test_jaffle_orders_runs_in_duckdb(db: duckdb.DuckDBPyConnection) -> None:
    edited = upsert_column(JAFFLE_ORDERS, "is_large_order", "amount > 100")
    rows = db.execute(f"select order_id, amount, is_large_order from ({render(edited)}) order by 1").fetchall()
    assert rows == [(1, 120.0, True), (2, 30.0, False), (3, 150.0, True)]


def test_union_all_runs_in_duckdb(db: duckdb.DuckDBPyConnection) -> None:
    edited = upsert_column(UNION_ALL, "is_large", "amount >= 100")
    rows = db.execute(f"select order_id, is_large from ({render(edited)}) order by 1").fetchall()
    assert rows == [(1, True), (2, False), (7, True), (8, False)]


def test_substituted_aliases_run_in_duckdb(db: duckdb.DuckDBPyConnection) -> None:
    edited = upsert_column(EXPLICIT_FINAL, "discount_share", "1 - net_amount / gross")
    edited = upsert_column(edited, "net_amount", "gross * 0.9")
    rows = db.execute(f"select * from ({render(edited)}) order by 1").fetchall()
    rows = [(order_id, float(net), float(gross), round(float(share), 9)) for order_id, net, gross, share in rows]
    # discount_share still means 1 - (gross - discount) / gross: it was written before the replace.
    assert rows == [(1, 45.0, 50.0, 0.1), (2, 36.0, 40.0, 0.25)]


def test_new_sql_follows_the_files_keyword_case() -> None:
    lower = "select\n    id,\n    amount\nfrom {{ ref('orders') }}\n"
    upper = "SELECT\n    id,\n    amount\nFROM {{ ref('orders') }}\n"
    expression = "CASE WHEN COALESCE(amount, 0) > 10 THEN 'Big' ELSE 'small' END"
    assert upsert_column(lower, "size", expression).splitlines()[3] == (
        "    case when coalesce(amount, 0) > 10 then 'Big' else 'small' end as size")
    assert upsert_column(upper, "size", expression).splitlines()[3] == (
        "    CASE WHEN COALESCE(amount, 0) > 10 THEN 'Big' ELSE 'small' END AS size")


def test_jinja_calls_that_render_nothing_take_no_place_in_the_sql() -> None:
    model = ("{% if execute %}{{ exceptions.raise_compiler_error('frozen') }}{% endif %}\n"
             "{{ log('building', info=True) }}\n"
             "select order_id, amount from {{ ref('orders') }}\n")
    assert upsert_column(model, "doubled", "amount * 2").splitlines()[2] == (
        "select order_id, amount, amount * 2 as doubled from {{ ref('orders') }}")


# --------------------------------------------------------------------------
# Batches: many columns of one model for one parse
# --------------------------------------------------------------------------

from bot.dbt import model_sql  # noqa: E402
from bot.dbt.model_sql import ModelEditor, upsert_columns  # noqa: E402


def _batch_for(shape: Shape) -> list[tuple[str, str]]:
    """The shape's own column, a second new column, a third that reads the first, and the
    shape's column again with another expression (a second edit of one column)."""
    return [(shape.name, shape.expression), ("zz_second", shape.expression),
            ("zz_third", f"{shape.name} is null"), (shape.name, f"({shape.expression}) + 0")]


@pytest.mark.parametrize("shape", SHAPES, ids=[s.id for s in SHAPES])
def test_upsert_columns_writes_what_one_call_per_column_writes(shape: Shape) -> None:
    batch = _batch_for(shape)
    try:
        one_by_one = shape.model
        for name, expression in batch:
            one_by_one = upsert_column(one_by_one, name, expression, shape.dialect)
    except ModelSqlError as error:
        with pytest.raises(ModelSqlError) as raised:
            upsert_columns(shape.model, batch, shape.dialect)
        assert raised.value.message == error.message
        return
    assert upsert_columns(shape.model, batch, shape.dialect) == one_by_one
    assert upsert_columns(shape.model, batch[:3], shape.dialect) == upsert_column(
        upsert_column(upsert_column(shape.model, *batch[0], shape.dialect), *batch[1], shape.dialect),
        *batch[2], shape.dialect)


def _count_loads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = model_sql._load

    def counting(text: str, dialect: str):
        calls.append(len(text))
        return real(text, dialect)

    monkeypatch.setattr(model_sql, "_load", counting)
    return calls


def test_many_columns_parse_the_model_twice_not_per_column(monkeypatch: pytest.MonkeyPatch) -> None:
    """One parse to plan them all, one to validate the result: 200 columns cost what 2 do (the
    model was re-parsed ~4 times per column, so planning a wide view was quadratic)."""
    calls = _count_loads(monkeypatch)
    columns = [(f"c{k}", f"amount * {k}") for k in range(200)]
    result = upsert_columns("select\n    id,\n    amount\nfrom t\n", columns)
    assert result.count(" as c") == 200 and result.endswith("    amount * 199 as c199\nfrom t\n")
    assert len(calls) == 2


def test_editor_plans_on_top_of_the_columns_before() -> None:
    editor = ModelEditor("select id, amount from t\n")
    first = editor.plan("doubled", "amount * 2")
    editor.accept(first)
    second = editor.plan("quadrupled", "doubled * 2")
    assert (first.before, first.after, second.after) == (None, "amount * 2", "amount * 2 * 2")
    assert editor.column_sql("doubled") == "amount * 2" and "doubled" in editor.shape().output_columns
    editor.accept(second)
    assert editor.finish() == "select id, amount, amount * 2 as doubled, amount * 2 * 2 as quadrupled from t\n"
    assert editor.finish() == upsert_column(upsert_column("select id, amount from t\n", "doubled", "amount * 2"),
                                            "quadrupled", "doubled * 2")


def test_a_column_that_breaks_the_splice_fails_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the spliced model does not validate, the columns are written one at a time, so the one
    at fault is known and the others still go in."""
    real = model_sql._validate

    def picky(text: str, names: list[str], dialect: str) -> None:
        if "bad" in names:
            raise ModelSqlError("the edited model does not project 'bad'")
        real(text, names, dialect)

    monkeypatch.setattr(model_sql, "_validate", picky)
    editor = ModelEditor("select id, amount from t\n")
    edits = [editor.plan(name, "amount + 1") for name in ("good", "bad", "fine")]
    for edit in edits:
        editor.accept(edit)
    assert editor.finish() == "select id, amount, amount + 1 as good, amount + 1 as fine from t\n"
    assert [editor.failure(e) is not None for e in edits] == [False, True, False]
    with pytest.raises(ModelSqlError, match="does not project 'bad'"):
        upsert_columns("select id, amount from t\n", [("good", "amount"), ("bad", "amount")])


def test_a_macro_that_writes_ctes_is_not_taken_for_a_column() -> None:
    # Shaped like an incremental model in a real project: a macro emits the first CTE of the WITH list.
    text = ("{{ config(materialized='incremental', unique_key='id') }}\n\nwith\n\n"
            "{{ max_loaded_cte('events') }}\n\nsource as (\n\n    select * from {{ ref('events') }}\n"
            "    {{ incremental_filter() }}\n\n),\n\nfinal as (\n    select id, amount from source\n)\n\n"
            "select * from final\n")
    out = model_sql.upsert_column(text, "is_big", "amount > 10", "bigquery")
    assert out == text.replace("select * from final\n", "select *, amount > 10 as is_big from final\n")


# ---------------------------------------------------------------- joins (ModelEditor.join)

def _on(sql: str = "customer_id = __m.customer_id"):
    return sqlglot.parse_one(sql)


def test_join_is_spliced_after_the_from_clause_and_the_rest_is_byte_identical() -> None:
    text = ("-- keep me\nselect\n    order_id,\n    amount\nfrom {{ ref('stg_orders') }} as o  -- the orders\n"
            "where amount > 0\n")
    editor = ModelEditor(text)
    alias = editor.join("customers", _on("order_id = __m.customer_id"), "__m", ["customer_id", "name"])
    assert alias == "customers"
    assert editor.finish() == text.replace(
        "-- the orders\n", "-- the orders\nleft join {{ ref('customers') }} as customers\n"
                           "    on o.order_id = customers.customer_id\n")


def test_join_refuses_an_unqualified_column_the_joined_model_also_has() -> None:
    editor = ModelEditor("select customer_id, amount from final\n")
    with pytest.raises(ModelSqlError, match="names `customer_id` without qualifying it, and the joined model also"):
        editor.join("customers", _on(), "__m", ["customer_id", "name"])
    assert editor.finish() == "select customer_id, amount from final\n"


def test_join_refuses_a_jinja_relation_without_alias_and_a_name_that_is_no_identifier() -> None:
    with pytest.raises(ModelSqlError, match="Jinja relation without an alias"):
        ModelEditor("select * from {{ ref('x') }}\n").join("customers", _on(), "__m", ["customer_id"])
    with pytest.raises(ModelSqlError, match="no plain identifier"):
        ModelEditor("select * from final\n").join("c') }}{{ run_query('x", _on(), "__m", ["customer_id"])


def test_join_alias_avoids_a_cte_of_the_same_name() -> None:
    text = "with customers as (select 1 as n)\nselect * from final\n"
    editor = ModelEditor(text)
    assert editor.join("customers", _on(), "__m", ["customer_id"]) == "layersync_customers"
    assert "left join {{ ref('customers') }} as layersync_customers" in editor.finish()


# ---------------------------------------------------------------- substitutes keep their meaning

# Shaped like a real project's mart: a column computed by a macro that writes several tests joined by AND.
VALIDATE_EMAIL = ("{% macro validate_email(column) %}{{ column }} like '%@%.%' and {{ column }} not like '% %'"
                  " and {{ column }} not like '%@%@%'{% endmacro %}")
EMAIL_MART = """with tr as (
    select * from {{ ref('stg_customers') }}
)

select
    tr.customer_id,
    {{ validate_email('tr.normalized_email') }} as is_valid_email,
    tr.first_name || ' ' || tr.last_name as full_name
from tr
"""


def _render_with_macro(model: str) -> str:
    environment = jinja2.Environment()
    macros = environment.from_string(VALIDATE_EMAIL).module
    return environment.from_string(model).render(ref=lambda name: name, validate_email=macros.validate_email)


@pytest.mark.parametrize("expression, written", [
    ("not is_valid_email", "not ({{ validate_email('tr.normalized_email') }})"),
    ("coalesce(is_valid_email, false)", "coalesce(({{ validate_email('tr.normalized_email') }}), false)"),
    ("not (is_valid_email)", "not ({{ validate_email('tr.normalized_email') }})"),
    ("is_valid_email and full_name is not null",
     "({{ validate_email('tr.normalized_email') }}) and not tr.first_name || ' ' || tr.last_name is null"),
])
def test_a_macro_column_is_substituted_in_parentheses(expression: str, written: str) -> None:
    """A Jinja call parses as one identifier, but dbt renders the macro's SQL in its place: written
    bare, `not {{ validate_email(...) }}` negated the first LIKE only (issue 13, fault 1)."""
    out = upsert_column(EMAIL_MART, "flag", expression)
    assert out == EMAIL_MART.replace("full_name\nfrom", f"full_name,\n    {written} as flag\nfrom")


def test_a_negated_macro_column_computes_the_negation_in_duckdb() -> None:
    db = duckdb.connect(":memory:")
    db.execute("create table stg_customers as select * from (values (1, 'a@b.co', 'A', 'B'), "
               "(2, 'a b@c.co', 'C', 'D'), (3, 'nobody', 'E', 'F')) t(customer_id, normalized_email, first_name, "
               "last_name)")
    edited = upsert_column(EMAIL_MART, "is_invalid_email", "not is_valid_email")
    rows = db.execute(f"select customer_id, is_valid_email, is_invalid_email from ({_render_with_macro(edited)}) "
                      f"order by 1").fetchall()
    assert rows == [(1, True, False), (2, False, True), (3, False, True)]


def test_a_cast_of_a_macro_is_no_atom_but_a_macro_inside_a_call_is() -> None:
    text = ("select\n    {{ m('x') }}::int as a,\n    coalesce({{ m('x') }}, 0) as b,\n"
            "    {{ m('x') }} as c\nfrom t\n")
    out = upsert_column(text, "n", "a + b + c")
    assert out.splitlines()[4] == "    ({{ m('x') }}::int) + coalesce({{ m('x') }}, 0) + ({{ m('x') }}) as n"


def test_a_failing_column_among_many_is_found_by_halves(monkeypatch: pytest.MonkeyPatch) -> None:
    """One column of 128 that breaks the splice: the others go in, and finding it re-reads the model
    about 2·log2(128) times (writing the columns one at a time re-read the growing model 128 times)."""
    real = model_sql._validate
    loads = _count_loads(monkeypatch)

    def picky(text: str, names: list[str], dialect: str):
        if "c77" in names:
            raise ModelSqlError("the edited model does not project 'c77'")
        return real(text, names, dialect)

    monkeypatch.setattr(model_sql, "_validate", picky)
    editor = ModelEditor("select\n    id,\n    amount\nfrom t\n")
    edits = [editor.plan(f"c{k}", f"amount * {k}") for k in range(128)]
    for edit in edits:
        editor.accept(edit)
    text = editor.finish()
    assert [k for k, e in enumerate(edits) if editor.failure(e) is not None] == [77]
    assert text.count(" as c") == 127 and "as c77\n" not in text and "as c76,\n    amount * 78 as c78" in text
    assert len(loads) <= 2 * 7 + 4, len(loads)

"""Minimal, comment-preserving edits of view files (bot.semantic.editor), for "pull from dbt"."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bot.errors import SemanticError
from bot.semantic.editor import (
    add_dimension, label_from_name, mark_broken, rename_column_refs, rename_field, rename_field_refs,
    set_allowed_values, set_description, set_primary_key, set_table_name, unmark,
)
from bot.semantic.reader import OmniYamlReader

DEMO = Path(__file__).resolve().parents[1] / "bot" / "demo" / "semantic" / "views"
ORDERS_PATH = "views/orders.view.yaml"
ORDERS = (DEMO / "orders.view.yaml").read_text()
CUSTOMERS = (DEMO / "customers.view.yaml").read_text()

# Hand-written: 4-space indentation, blank lines between fields, comments, quoted key, explicit
# `sql: ${TABLE}.col` convention, `sql` written first, flow-style aliases.
HAND = """\
# orders, hand-written
table_name: orders   # dbt model

dimensions:

    order_id:
        sql: ${TABLE}.order_id   # the key
        primary_key: true

    'status':
        sql: ${TABLE}."STATUS"
        aliases: [state]

    # money
    amount:
        sql: "${TABLE}.amount / 100"
        description: Amount in dollars
        # more about amount

# measures below
measures:
    revenue:
        sql: ${amount}
        aggregate_type: sum
    big_revenue:
        sql: case when ${orders.amount} > 10 then ${AMOUNT} end
        aggregate_type: sum
"""

BLOCK_ALIASES = """\
table_name: t
dimensions:
  a:
    sql: ${TABLE}.a
    aliases:
      - a_old
  b:
    sql: ${TABLE}.b
"""


def read(text: str, path: str = ORDERS_PATH):
    return OmniYamlReader().read(text, path)


def crlf(text: str) -> str:
    return text.replace("\n", "\r\n")


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


# ---------------------------------------------------------------------------------------------
# add_dimension


def test_add_dimension_demo_follows_neighbours() -> None:
    result = add_dimension(ORDERS, ORDERS_PATH, "customer_lifetime_value")
    expected = replace_once(
        ORDERS,
        "    sql: ${TABLE}.status in ('returned', 'return_pending')\n\nmeasures:",
        "    sql: ${TABLE}.status in ('returned', 'return_pending')\n"
        "  customer_lifetime_value:\n"
        "    label: Customer lifetime value\n"
        "\nmeasures:",
    )
    assert result == expected
    assert add_dimension(result, ORDERS_PATH, "customer_lifetime_value") is result  # idempotent
    assert add_dimension(result, ORDERS_PATH, "Customer_Lifetime_Value") is result


def test_add_dimension_all_attributes_in_neighbour_key_order() -> None:
    result = add_dimension(
        ORDERS, ORDERS_PATH, "tier", sql="case when ${amount} > 100 then 'high' else 'low' end",
        description="Order tier: high or low", type="string", primary_key=True,
        allowed_values=["high", "low", "n/a, none"], meta_comment="added by layersync (dbt commit abc1234)",
    )
    assert result == replace_once(
        ORDERS, "'return_pending')\n\nmeasures:",
        "'return_pending')\n"
        "  # added by layersync (dbt commit abc1234)\n"
        "  tier:\n"
        "    primary_key: true\n"
        "    label: Tier\n"
        "    sql: case when ${amount} > 100 then 'high' else 'low' end\n"
        "    description: 'Order tier: high or low'\n"
        "    type: string\n"
        "    allowed_values: [high, low, 'n/a, none']\n"
        "\nmeasures:",
    )
    field = read(result).fields["tier"]
    assert (field.primary_key, field.type, field.attributes["allowed_values"]) == (True, "string",
                                                                                   ["high", "low", "n/a, none"])


def test_add_dimension_hand_written_style() -> None:
    result = add_dimension(HAND, ORDERS_PATH, "created_at", type="timestamp",
                           description="When the order was placed.\nIn UTC.")
    assert result == replace_once(
        HAND, "        # more about amount\n\n# measures below",
        "        # more about amount\n"
        "\n"
        "    created_at:\n"
        "        sql: ${TABLE}.created_at\n"
        "        description: |-\n"
        "            When the order was placed.\n"
        "            In UTC.\n"
        "        type: timestamp\n"
        "\n# measures below",
    )
    # CRLF files get CRLF lines.
    assert add_dimension(crlf(HAND), ORDERS_PATH, "created_at", type="timestamp",
                         description="When the order was placed.\nIn UTC.") == crlf(result)
    # Explicit `${TABLE}.<name>` given: written because the neighbours write theirs.
    assert add_dimension(HAND, ORDERS_PATH, "x", sql="${TABLE}.x") == replace_once(
        HAND, "        # more about amount\n\n",
        "        # more about amount\n\n    x:\n        sql: ${TABLE}.x\n\n")


def test_add_dimension_omits_default_sql_and_quotes_only_when_needed() -> None:
    # The demo's plain columns have no `sql:`: `${TABLE}.<name>` is omitted.
    result = add_dimension(ORDERS, ORDERS_PATH, "discount", sql="${TABLE}.discount", label="Discount: %")
    assert "  discount:\n    label: 'Discount: %'\n\nmeasures:" in result
    # A name that needs quoting as a key, with the column quoted in the default sql.
    view = "table_name: t\ndimensions:\n  a:\n    sql: ${TABLE}.a\n"
    assert add_dimension(view, "v.view.yaml", "b: c") == view + "  'b: c':\n    sql: '${TABLE}.\"b: c\"'\n"


def test_add_dimension_creates_the_section() -> None:
    view = "table_name: t\n\nmeasures:\n  n:\n    aggregate_type: count\n"
    assert add_dimension(view, "v.view.yaml", "a") == (
        "table_name: t\n\ndimensions:\n  a: {}\n\nmeasures:\n  n:\n    aggregate_type: count\n")
    four = "table_name: t\n# the measures\nmeasures:\n    n:\n        aggregate_type: count\n"
    assert add_dimension(four, "v.view.yaml", "a", label="A") == (
        "table_name: t\ndimensions:\n    a:\n        label: A\n# the measures\nmeasures:\n"
        "    n:\n        aggregate_type: count\n")
    assert add_dimension("table_name: t", "v.view.yaml", "a") == "table_name: t\ndimensions:\n  a: {}"
    assert add_dimension("table_name: t\ndimensions:\nmeasures: {}\n", "v.view.yaml", "a") == (
        "table_name: t\ndimensions:\n  a: {}\nmeasures: {}\n")
    assert add_dimension("table_name: t\ndimensions: {}  # none yet\n", "v.view.yaml", "a") == (
        "table_name: t\ndimensions:  # none yet\n  a: {}\n")


def test_add_dimension_customers_demo_with_meta_comment() -> None:
    path = "views/customers.view.yaml"
    result = add_dimension(CUSTOMERS, path, "first_order_amount", description="Amount of the first order",
                           meta_comment="added by layersync: dbt column customers.first_order_amount")
    assert result == replace_once(
        CUSTOMERS, "    sql: ${TABLE}.number_of_orders > 1\n\nmeasures:",
        "    sql: ${TABLE}.number_of_orders > 1\n"
        "  # added by layersync: dbt column customers.first_order_amount\n"
        "  first_order_amount:\n"
        "    label: First order amount\n"
        "    description: Amount of the first order\n"
        "\nmeasures:",
    )
    assert add_dimension(result, path, "first_order_amount") is result


def test_add_dimension_edge_cases() -> None:
    # A block scalar that ends the file with no line break keeps its value (`|` -> `|-`).
    view = "table_name: t\ndimensions:\n  a:\n    sql: |\n      ${TABLE}.a\n      + 1"
    assert add_dimension(view, "t.view.yaml", "b") == (
        "table_name: t\ndimensions:\n  a:\n    sql: |-\n      ${TABLE}.a\n      + 1\n  b: {}")
    # Neighbours written as `name:` (null) are mimicked.
    view = "table_name: t\ndimensions:\n  a:\n  b:\n"
    assert add_dimension(view, "t.view.yaml", "c") == view + "  c:\n"
    with pytest.raises(SemanticError, match="flow style") as error:
        add_dimension("table_name: t\ndimensions: {a: {}}\n", "t.view.yaml", "b")
    assert error.value.line == 2


def test_add_dimension_name_clashes() -> None:
    with pytest.raises(SemanticError, match="measure `revenue` already uses that name") as error:
        add_dimension(ORDERS, ORDERS_PATH, "revenue")
    assert error.value.line == 47 and error.value.file == ORDERS_PATH
    with pytest.raises(SemanticError, match=r"dimension `'?status'?` \(as an alias\)"):
        add_dimension(HAND, ORDERS_PATH, "state")


def test_label_from_name() -> None:
    assert label_from_name("customer_lifetime_value") == "Customer lifetime value"
    assert label_from_name("customer_id") == "Customer ID"
    assert label_from_name("orderDate") == "Order date"


# ---------------------------------------------------------------------------------------------
# set_description


def test_set_description_replace_in_place_keeps_comment() -> None:
    view = "table_name: t\ndimensions:\n  a:\n    description: old one   # keep me\n    sql: x\n"
    assert set_description(view, "v.view.yaml", "a", "new one") == view.replace("old one", "new one")


def test_set_description_add_follows_key_order_and_multiline() -> None:
    result = set_description(ORDERS, ORDERS_PATH, "status", "Where the order is.\nSee the docs.\n")
    assert result == replace_once(
        ORDERS, "    label: Status\n",
        "    label: Status\n    description: |\n      Where the order is.\n      See the docs.\n")
    assert set_description(result, ORDERS_PATH, "status", "Where the order is.\nSee the docs.\n") is result
    # Back to one line: the block becomes a single line again.
    single = set_description(result, ORDERS_PATH, "status", "Short")
    assert single == replace_once(ORDERS, "    label: Status\n", "    label: Status\n    description: Short\n")
    # None removes the key.
    assert set_description(single, ORDERS_PATH, "status", None) == ORDERS
    assert set_description(ORDERS, ORDERS_PATH, "status", None) is ORDERS


def test_set_description_needs_quotes_or_escapes() -> None:
    result = set_description(HAND, ORDERS_PATH, "amount", "yes")
    assert "        description: 'yes'\n" in result
    result = set_description(HAND, ORDERS_PATH, "amount", "  leading\nspaces\x07")
    assert read(result).fields["amount"].description == "  leading\nspaces\x07"
    result = set_description(HAND, ORDERS_PATH, "amount", "  leading\nspaces")
    assert "        description: |4-\n              leading\n            spaces\n" in result
    assert read(result).fields["amount"].description == "  leading\nspaces"


def test_set_description_crlf_and_flow_field() -> None:
    view = crlf("table_name: t\ndimensions:\n  a: {sql: x}  # flow\n  b:\n    sql: y\n")
    assert set_description(view, "v.view.yaml", "a", "A thing") == view.replace(
        "{sql: x}", "{sql: x, description: A thing}")
    assert set_description(view, "v.view.yaml", "b", "B") == view.replace("    sql: y\r\n",
                                                                          "    sql: y\r\n    description: B\r\n")


# ---------------------------------------------------------------------------------------------
# rename_column_refs


def test_rename_column_refs_demo() -> None:
    result = rename_column_refs(ORDERS, ORDERS_PATH, "order_date", "ordered_at")
    assert result == replace_once(ORDERS, "${TABLE}.order_date)", "${TABLE}.ordered_at)")
    assert rename_column_refs(result, ORDERS_PATH, "order_date", "ordered_at") is result
    assert rename_column_refs(result, ORDERS_PATH, "ordered_at", "order_date") == ORDERS
    # The `order_date` dimension itself has no `sql:`: left to the caller (rename_field).
    assert "  order_date:\n    label: Order date\n" in result


def test_rename_column_refs_quoted_case_and_styles() -> None:
    view = (
        "table_name: t\n"
        "dimensions:\n"
        "  a:\n"
        "    sql: ${TABLE}.\"STATUS\" || ${TABLE}.status || ${TABLE}.status_code  # c\n"
        "  b:\n"
        "    sql: '${TABLE}.Status = ''x'''\n"
        "  c:\n"
        "    sql: \"${TABLE}.\\\"status\\\" > 1\"\n"
        "  d:\n"
        "    sql: |\n"
        "      case when ${ TABLE }.`status` = 1\n"
        "      then ${status} end\n"
        "  status: {}\n"
    )
    result = rename_column_refs(view, "t.view.yaml", "status", "state")
    assert result == (
        "table_name: t\n"
        "dimensions:\n"
        "  a:\n"
        "    sql: ${TABLE}.\"STATE\" || ${TABLE}.state || ${TABLE}.status_code  # c\n"
        "  b:\n"
        "    sql: '${TABLE}.state = ''x'''\n"
        "  c:\n"
        "    sql: \"${TABLE}.\\\"state\\\" > 1\"\n"
        "  d:\n"
        "    sql: |\n"
        "      case when ${ TABLE }.`state` = 1\n"
        "      then ${status} end\n"
        "  status: {}\n"
    )
    fields = read(result, "t.view.yaml").fields
    assert fields["c"].sql == '${TABLE}."state" > 1'
    assert rename_column_refs(result, "t.view.yaml", "state", "status") == view.replace(
        "${TABLE}.Status", "${TABLE}.status")  # a mixed-case spelling comes back as given
    # A name that must be quoted in SQL, and in YAML.
    weird = rename_column_refs(view, "t.view.yaml", "status", "order status: now")
    assert read(weird, "t.view.yaml").fields["a"].sql == (
        '${TABLE}."ORDER STATUS: NOW" || ${TABLE}."order status: now" || ${TABLE}.status_code')
    assert "    sql: '${TABLE}.\"ORDER STATUS: NOW\" || " in weird  # re-quoted: `: ` needs it


def test_rename_column_refs_crlf_measures() -> None:
    view = crlf(HAND)
    result = rename_column_refs(view, ORDERS_PATH, "amount", "amount_cents")
    assert result == view.replace('"${TABLE}.amount / 100"', '"${TABLE}.amount_cents / 100"')


# ---------------------------------------------------------------------------------------------
# rename_field, rename_field_refs


def test_rename_field_demo_updates_refs_and_adds_alias() -> None:
    result = rename_field(ORDERS, ORDERS_PATH, "amount", "order_amount")
    expected = replace_once(ORDERS, "  amount:\n    label: Amount\n    format: usdcurrency\n",
                            "  order_amount:\n    label: Amount\n    format: usdcurrency\n    aliases: [amount]\n")
    expected = expected.replace("    sql: ${amount}\n", "    sql: ${order_amount}\n")
    assert result == expected
    assert rename_field(result, ORDERS_PATH, "amount", "order_amount") is result  # already done
    assert rename_field(result, ORDERS_PATH, "order_amount", "amount") == ORDERS  # reversible
    field = read(result).fields["order_amount"]
    assert field.aliases == ("amount",) and field.sql is None  # implicit column follows the name


def test_rename_field_hand_written_quoted_key_and_flow_aliases() -> None:
    result = rename_field(HAND, ORDERS_PATH, "status", "order_status")
    assert result == HAND.replace("    'status':\n", "    'order_status':\n").replace(
        "aliases: [state]", "aliases: [state, status]")
    assert rename_field(result, ORDERS_PATH, "order_status", "status") == HAND
    # Back to an older alias: that alias goes, the intermediate name is not added.
    assert rename_field(result, ORDERS_PATH, "order_status", "state") == HAND.replace(
        "    'status':\n", "    'state':\n").replace("aliases: [state]", "aliases: [status]")


def test_rename_field_refs_in_same_file_qualified_and_cased() -> None:
    result = rename_field(crlf(HAND), ORDERS_PATH, "amount", "amt", keep_alias=False)
    assert result == crlf(HAND).replace("    amount:\r\n", "    amt:\r\n").replace(
        "${amount}", "${amt}").replace("${orders.amount}", "${orders.amt}").replace("${AMOUNT}", "${AMT}")
    kept = rename_field(crlf(HAND), ORDERS_PATH, "amount", "amt")
    assert "        description: Amount in dollars\r\n        aliases: [amount]\r\n        # more" in kept
    assert rename_field(kept, ORDERS_PATH, "amt", "amount") == crlf(HAND)


def test_rename_field_block_aliases() -> None:
    result = rename_field(BLOCK_ALIASES, "t.view.yaml", "a", "a_new")
    assert result == BLOCK_ALIASES.replace("  a:\n", "  a_new:\n").replace(
        "      - a_old\n", "      - a_old\n      - a\n")
    assert rename_field(result, "t.view.yaml", "a_new", "a") == BLOCK_ALIASES
    created = rename_field(BLOCK_ALIASES, "t.view.yaml", "b", "b_new")  # block, like the file's other list
    assert created == BLOCK_ALIASES.replace("  b:\n    sql: ${TABLE}.b\n",
                                            "  b_new:\n    sql: ${TABLE}.b\n    aliases:\n      - b\n")
    assert rename_field(created, "t.view.yaml", "b_new", "b") == BLOCK_ALIASES


def test_rename_field_errors() -> None:
    with pytest.raises(SemanticError, match="field `customer_id` already uses that name"):
        rename_field(ORDERS, ORDERS_PATH, "status", "customer_id")
    with pytest.raises(SemanticError, match="no field `nope`"):
        rename_field(ORDERS, ORDERS_PATH, "nope", "other")
    with pytest.raises(SemanticError, match=r"already refers to `\$\{discount\}`") as error:
        rename_field("table_name: t\ndimensions:\n  a: {}\n  b:\n    sql: ${discount} + 1\n", "t.view.yaml",
                     "a", "discount")
    assert error.value.line == 4


def test_rename_field_refs_other_views() -> None:
    other = (
        "table_name: customers\n"
        "dimensions:\n"
        "  spend:\n"
        "    sql: ${orders.amount} + ${amount} + ${ orders . AMOUNT } + ${other.amount}  # joined\n"
    )
    result = rename_field_refs(other, "customers.view.yaml", "orders", "amount", "order_amount")
    assert result == other.replace("${orders.amount}", "${orders.order_amount}").replace(
        "${ orders . AMOUNT }", "${ orders . ORDER_AMOUNT }")
    assert rename_field_refs(result, "customers.view.yaml", "orders", "amount", "order_amount") is result
    assert rename_field_refs(result, "customers.view.yaml", "orders", "order_amount", "amount") == other


# ---------------------------------------------------------------------------------------------
# mark_broken, unmark


def test_mark_broken_and_unmark() -> None:
    reason = "dbt column orders.status was removed (dbt commit abc1234)"
    result = mark_broken(ORDERS, ORDERS_PATH, "status", reason)
    assert result == replace_once(ORDERS, "  status:\n", f"  # layersync: broken — {reason}\n  status:\n")
    assert mark_broken(result, ORDERS_PATH, "status", reason) is result
    again = mark_broken(result, ORDERS_PATH, "status", "gone\nfor good")
    assert again == replace_once(ORDERS, "  status:\n", "  # layersync: broken — gone for good\n  status:\n")
    assert unmark(again, ORDERS_PATH, "status") == ORDERS
    assert unmark(ORDERS, ORDERS_PATH, "status") is ORDERS


def test_mark_broken_below_user_comment_crlf_four_spaces() -> None:
    view = crlf(HAND)
    result = mark_broken(view, ORDERS_PATH, "amount", "x")
    assert result == view.replace("    # money\r\n    amount:", "    # money\r\n    # layersync: broken — x\r\n    amount:")
    assert unmark(result, ORDERS_PATH, "amount") == view
    measure = mark_broken(view, ORDERS_PATH, "revenue", "y")
    assert "measures:\r\n    # layersync: broken — y\r\n    revenue:\r\n" in measure


# ---------------------------------------------------------------------------------------------
# set_primary_key, set_allowed_values


def test_set_primary_key() -> None:
    result = set_primary_key(ORDERS, ORDERS_PATH, "status")
    assert result == replace_once(ORDERS, "  status:\n", "  status:\n    primary_key: true\n")
    assert set_primary_key(result, ORDERS_PATH, "status") is result
    assert set_primary_key(result, ORDERS_PATH, "status", False) == ORDERS
    assert set_primary_key(ORDERS, ORDERS_PATH, "status", False) is ORDERS
    view = "table_name: t\ndimensions:\n  a:\n    primary_key: false  # not yet\n"
    assert set_primary_key(view, "t.view.yaml", "a") == view.replace("false", "true")
    assert set_primary_key("table_name: t\ndimensions:\n  a:\n", "t.view.yaml", "a") == (
        "table_name: t\ndimensions:\n  a:\n    primary_key: true\n")


def test_set_allowed_values() -> None:
    result = set_allowed_values(HAND, ORDERS_PATH, "status", ["placed", "shipped", "yes", "a: b"])
    assert result == HAND.replace("        aliases: [state]\n",
                                  "        aliases: [state]\n        allowed_values: [placed, shipped, 'yes', 'a: b']\n")
    assert set_allowed_values(result, ORDERS_PATH, "status", ["placed", "shipped", "yes", "a: b"]) is result
    block = result.replace("allowed_values: [placed, shipped, 'yes', 'a: b']",
                           "allowed_values:\n          - placed\n          - shipped")
    assert set_allowed_values(block, ORDERS_PATH, "status", ["placed"]) == HAND.replace(
        "        aliases: [state]\n", "        aliases: [state]\n        allowed_values: [placed]\n")
    assert set_allowed_values(result, ORDERS_PATH, "status", []) == HAND
    assert read(result).fields["status"].attributes["allowed_values"] == ["placed", "shipped", "yes", "a: b"]


# ---------------------------------------------------------------------------------------------
# Errors and edge cases


@pytest.mark.parametrize("edit", [
    lambda t: add_dimension(t, "bad.view.yaml", "x"),
    lambda t: set_description(t, "bad.view.yaml", "a", "d"),
    lambda t: rename_column_refs(t, "bad.view.yaml", "a", "b"),
    lambda t: rename_field(t, "bad.view.yaml", "a", "b"),
    lambda t: mark_broken(t, "bad.view.yaml", "a", "r"),
    lambda t: set_primary_key(t, "bad.view.yaml", "a"),
    lambda t: set_allowed_values(t, "bad.view.yaml", "a", ["x"]),
    lambda t: rename_field_refs(t, "bad.view.yaml", "v", "a", "b"),
    lambda t: unmark(t, "bad.view.yaml", "a"),
])
def test_bad_yaml_is_a_semantic_error_with_line(edit) -> None:
    bad = "table_name: t\ndimensions:\n  a:\n    sql: [unclosed\n  b: {}\n"
    with pytest.raises(SemanticError) as error:
        edit(bad)
    assert error.value.file == "bad.view.yaml" and error.value.line is not None
    assert "invalid YAML" in error.value.message


def test_unknown_field_and_no_final_newline() -> None:
    with pytest.raises(SemanticError, match="no field `nope`"):
        set_description(ORDERS, ORDERS_PATH, "nope", "x")
    view = "table_name: t\ndimensions:\n  a:\n    sql: ${TABLE}.a"
    assert set_description(view, "t.view.yaml", "a", "A") == view + "\n    description: A"
    assert rename_column_refs(view, "t.view.yaml", "a", "b") == "table_name: t\ndimensions:\n  a:\n    sql: ${TABLE}.b"
    assert mark_broken(view, "t.view.yaml", "a", "r") == (
        "table_name: t\ndimensions:\n  # layersync: broken — r\n  a:\n    sql: ${TABLE}.a")


def test_alias_lookup_for_field_argument() -> None:
    # Fields can be named by an alias.
    assert set_primary_key(HAND, ORDERS_PATH, "state") == HAND.replace(
        "        aliases: [state]\n", "        primary_key: true\n        aliases: [state]\n")


# ---------------------------------------------------------------------------------------------
# Property: renames are reversible, byte for byte


NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True)


@st.composite
def views(draw):
    indent = " " * draw(st.sampled_from([2, 4]))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    columns = draw(st.lists(NAMES.map(lambda n: "c_" + n), min_size=1, max_size=4, unique=True))
    names = draw(st.lists(NAMES.map(lambda n: "f_" + n), min_size=1, max_size=6, unique=True))
    sections = {"dimensions": [], "measures": []}
    for index, name in enumerate(names):
        section = "measures" if index and draw(st.booleans()) and index > len(names) // 2 else "dimensions"
        sections[section].append(name)
    flow_aliases = draw(st.booleans())

    def column_ref() -> str:
        column = draw(st.sampled_from(columns))
        spelling = draw(st.sampled_from([column, column.upper()]))
        return draw(st.sampled_from(["${TABLE}.%s", '${TABLE}."%s"', "${ TABLE }.%s"])) % spelling

    def field_ref() -> str:
        target = draw(st.sampled_from(names))
        return draw(st.sampled_from(["${%s}", "${%s}", "${v.%s}", "${ %s }"])) % draw(
            st.sampled_from([target, target, target.upper()]))

    lines = ["# generated view", "table_name: t" + draw(st.sampled_from(["", "  # the model"]))]
    for section, fields in sections.items():
        if not fields:
            continue
        if draw(st.booleans()):
            lines.append("")
        lines.append(f"{section}:")
        for name in fields:
            if draw(st.booleans()):
                lines.append("")
            if draw(st.booleans()):
                lines.append(f"{indent}# about {name}")
            key = draw(st.sampled_from([name, name, f"'{name}'", f'"{name}"']))
            lines.append(f"{indent}{key}:" + draw(st.sampled_from(["", "  # note"])))
            body = []
            if draw(st.booleans()):
                body.append(f"label: {name.upper()}")
            if section == "measures" or draw(st.booleans()):
                pieces = [draw(st.one_of(st.builds(column_ref), st.builds(field_ref)))
                          for _ in range(draw(st.integers(1, 3)))]
                sql = " || ".join(pieces)
                style = draw(st.sampled_from(["plain", "single", "double", "block"]))
                if style == "plain":
                    body.append(f"sql: {sql} + 1" + draw(st.sampled_from(["", "  # c"])))
                elif style == "single":
                    body.append("sql: '" + (sql + " || 'x'").replace("'", "''") + "'")
                elif style == "double":
                    body.append('sql: "' + sql.replace('"', '\\"') + '"')
                else:
                    body.append("sql: |")
                    body.append(f"{indent}case when {pieces[0]} > 0")
                    body.append(f"{indent}then {sql} end")
            if draw(st.booleans()):
                if flow_aliases:
                    body.append(f"aliases: [old_{name}]")
                else:
                    body += ["aliases:", f"{indent}- old_{name}"]
            if section == "measures":
                body.append("aggregate_type: sum")
            if draw(st.booleans()):
                body.append(f"# end of {name}")
            lines += [indent * 2 + line for line in body]
            if not body:
                lines[-1] = lines[-1].split("  #")[0] + draw(st.sampled_from(["", " {}"]))
    text = newline.join(lines) + draw(st.sampled_from([newline, ""]))
    return text, columns, names


PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def fresh(draw, text: str) -> str:
    new = "n_" + draw(NAMES)
    assume(new not in text.lower())
    return new


@PROPERTY
@given(st.data())
def test_rename_column_refs_is_reversible(data) -> None:
    text, columns, _names = data.draw(views())
    old = data.draw(st.sampled_from(columns))
    new = fresh(data.draw, text)
    forward = rename_column_refs(text, "v.view.yaml", old, new)
    assert forward == text or old.lower() in text.lower()
    assert rename_column_refs(forward, "v.view.yaml", new, old) == text
    assert rename_column_refs(forward, "v.view.yaml", old, new) is forward


@PROPERTY
@given(st.data())
def test_rename_field_is_reversible(data) -> None:
    text, _columns, names = data.draw(views())
    old = data.draw(st.sampled_from(names))
    new = fresh(data.draw, text)
    forward = rename_field(text, "v.view.yaml", old, new)
    field = read(forward, "v.view.yaml").fields[new]
    assert old in field.aliases
    assert rename_field(forward, "v.view.yaml", old, new) is forward
    assert rename_field(forward, "v.view.yaml", new, old) == text
    without = rename_field(text, "v.view.yaml", old, new, keep_alias=False)
    assert rename_field(without, "v.view.yaml", new, old, keep_alias=False) == text


@PROPERTY
@given(st.data())
def test_column_and_field_rename_together_is_reversible(data) -> None:
    text, columns, names = data.draw(views())
    old_column = data.draw(st.sampled_from(columns))
    old_field = data.draw(st.sampled_from(names))
    new = fresh(data.draw, text)
    forward = rename_field(rename_column_refs(text, "v.view.yaml", old_column, new), "v.view.yaml", old_field, new)
    back = rename_column_refs(rename_field(forward, "v.view.yaml", new, old_field), "v.view.yaml", new, old_column)
    assert back == text


@settings(PROPERTY, max_examples=30)
@given(st.data())
def test_other_edits_round_trip(data) -> None:
    """set_* / mark_broken are undone by their inverse, byte for byte, and are idempotent."""
    text, _columns, names = data.draw(views())
    field = data.draw(st.sampled_from(names))
    path = "v.view.yaml"
    description = data.draw(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30))
    described = set_description(text, path, field, description)
    assert read(described, path).fields[field].description == description
    assert set_description(described, path, field, description) is described
    assert set_description(described, path, field, None) == text
    values = data.draw(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=3))
    allowed = set_allowed_values(text, path, field, values)
    assert read(allowed, path).fields[field].attributes["allowed_values"] == values
    assert set_allowed_values(allowed, path, field, []) == text
    keyed = set_primary_key(text, path, field)
    assert read(keyed, path).fields[field].primary_key
    assert set_primary_key(keyed, path, field, False) == text
    marked = mark_broken(text, path, field, data.draw(st.text(max_size=20)))
    assert mark_broken(marked, path, field, "again") == mark_broken(text, path, field, "again")
    assert unmark(marked, path, field) == text
    new = fresh(data.draw, text)
    added = add_dimension(text, path, new, description=description)
    assert read(added, path).fields[new].description == description
    assert add_dimension(added, path, new) is added


@pytest.mark.parametrize("line, relation, expected", [
    ("table_name: orders   # the mart\n", "fct_orders", "table_name: fct_orders   # the mart\n"),
    ("table_name: analytics.orders\n", "fct_orders", "table_name: analytics.fct_orders\n"),
    ("sql_table_name: 'db.analytics.\"Orders\"'\n", "fct_orders", "sql_table_name: db.analytics.\"fct_orders\"\n"),
])
def test_set_table_name_keeps_the_schema_quoting_and_comments(line: str, relation: str, expected: str) -> None:
    text = "# view\n" + line + "dimensions:\n  id: {}   # key\n"
    edited = set_table_name(text, "v.view.yaml", relation)
    assert edited == "# view\n" + expected + "dimensions:\n  id: {}   # key\n"
    assert set_table_name(edited, "v.view.yaml", relation) == edited


def test_set_table_name_without_a_table_name_is_an_error_with_the_file() -> None:
    with pytest.raises(SemanticError) as caught:
        set_table_name("dimensions:\n  id: {}\n", "v.view.yaml", "x")
    assert caught.value.file == "v.view.yaml"


# ---------------------------------------------------------------------- Omni's own files (`fmt` omni)

OMNI_PATH = "omni/Shop/omni_dbt_marts/fct_orders.view.yaml"
OMNI = """\
# Reference this view as omni_dbt_marts__fct_orders
schema: omni_dbt_marts
table_name: fct_orders
dbt:
  name: fct_orders
  target_schema: marts
  description: One row per order.
  config:
    materialized: table

dimensions:
  order_id:
    primary_key: true
  status: {}
  amount_cents: {}   # in cents
  amount:
    sql: ${omni_dbt_marts__fct_orders.amount_cents} / 100.0
  is_big:
    sql: CASE WHEN amount_cents > 2000 THEN 'big' ELSE lower('amount_cents') END

measures:
  revenue:
    sql: ${omni_dbt_marts__fct_orders.amount}
    aggregate_type: sum
"""


def omni_fmt():
    from bot.semantic.formats import format_for
    return format_for("omni", "omni/Shop")


def test_omni_add_dimension_writes_bare_columns_as_omni_does_with_no_type_and_all_values() -> None:
    added = add_dimension(OMNI, OMNI_PATH, "channel", type="string", allowed_values=["web", "store"],
                          description="Where it was sold.", dbt_description=True, fmt=omni_fmt())
    new = ("  channel:\n    #This description was pulled from dbt.\n    description: Where it was sold.\n"
           "    all_values: [web, store]\n")
    assert added == OMNI.replace("\nmeasures:", new + "\nmeasures:", 1)
    assert add_dimension(OMNI, OMNI_PATH, "region", fmt=omni_fmt()) == OMNI.replace(
        "\nmeasures:", "  region: {}\n\nmeasures:", 1)
    view = omni_fmt().read(added, OMNI_PATH)
    assert view.fields["channel"].type is None and view.name == "omni_dbt_marts__fct_orders"


@pytest.mark.parametrize("written, new", [("sql: status", "sql: channel"), ("sql: '\"STATUS\"'", "sql: '\"CHANNEL\"'")])
def test_omni_add_dimension_follows_a_file_that_writes_its_columns(written: str, new: str) -> None:
    text = OMNI.replace("  status: {}\n", f"  status:\n    {written}\n").replace(
        "  amount_cents: {}   # in cents\n", f"  amount_cents:   # in cents\n    {written.replace('status', 'amount_cents').replace('STATUS', 'AMOUNT_CENTS')}\n")
    text = text.replace("  order_id:\n    primary_key: true\n", f"  order_id:\n    primary_key: true\n    "
                        f"{written.replace('status', 'order_id').replace('STATUS', 'ORDER_ID')}\n")
    added = add_dimension(text, OMNI_PATH, "channel", sql="${TABLE}.channel", fmt=omni_fmt())
    assert added == text.replace("\nmeasures:", f"  channel:\n    {new}\n\nmeasures:", 1)


def test_omni_dbt_descriptions_are_marked_kept_marked_and_unmarked_with_their_key() -> None:
    from bot.semantic.editor import description_from_dbt
    fmt = omni_fmt()
    marked = set_description(OMNI, OMNI_PATH, "status", "Fulfilment status.", from_dbt=True, fmt=fmt)
    assert marked == OMNI.replace("  status: {}\n", "  status:\n    #This description was pulled from dbt.\n"
                                                    "    description: Fulfilment status.\n")
    assert description_from_dbt(marked, OMNI_PATH, "status", fmt=fmt)
    replaced = set_description(marked, OMNI_PATH, "status", "Where the order is.", from_dbt=True, fmt=fmt)
    assert replaced == marked.replace("Fulfilment status.", "Where the order is.")
    assert set_description(replaced, OMNI_PATH, "status", None, fmt=fmt) == OMNI
    analysts = set_description(OMNI, OMNI_PATH, "amount", "Dollars.", fmt=fmt)      # not from dbt: no marker
    assert not description_from_dbt(analysts, OMNI_PATH, "amount", fmt=fmt)
    remarked = set_description(analysts, OMNI_PATH, "amount", "Dollars.", from_dbt=True, fmt=fmt)
    assert remarked == analysts.replace("    description: Dollars.\n",
                                        "    #This description was pulled from dbt.\n    description: Dollars.\n")
    # the `views` layout has no marker
    assert "#This" not in set_description(ORDERS, ORDERS_PATH, "status", "x", from_dbt=True)


def test_omni_column_renames_rewrite_bare_columns_not_strings_and_renaming_back_restores_the_bytes() -> None:
    fmt = omni_fmt()
    renamed = rename_column_refs(OMNI, OMNI_PATH, "amount_cents", "cents", fmt=fmt)
    assert renamed == OMNI.replace("WHEN amount_cents > 2000", "WHEN cents > 2000")
    assert rename_column_refs(renamed, OMNI_PATH, "cents", "amount_cents", fmt=fmt) == OMNI
    assert rename_column_refs(OMNI, OMNI_PATH, "amount_cents", "cents") == OMNI        # views: only ${TABLE}.col


def test_omni_rename_field_follows_self_qualified_references() -> None:
    """Omni qualifies even a view's own fields: read as the `views` layout, the view is `fct_orders` and
    `${omni_dbt_marts__fct_orders.amount}` was left pointing at the old name."""
    renamed = rename_field(OMNI, OMNI_PATH, "amount", "amount_usd", fmt=omni_fmt())
    assert renamed == OMNI.replace("  amount:\n", "  amount_usd:\n").replace(
        "/ 100.0\n", "/ 100.0\n    aliases: [amount]\n").replace(
        "sql: ${omni_dbt_marts__fct_orders.amount}\n", "sql: ${omni_dbt_marts__fct_orders.amount_usd}\n")
    assert rename_field(renamed, OMNI_PATH, "amount_usd", "amount", fmt=omni_fmt()) == OMNI


def test_omni_accepted_values_are_all_values_and_the_views_layout_keeps_allowed_values() -> None:
    edited = set_allowed_values(OMNI, OMNI_PATH, "status", ["placed", "shipped"], fmt=omni_fmt())
    assert edited == OMNI.replace("  status: {}\n", "  status:\n    all_values: [placed, shipped]\n")
    assert set_allowed_values(edited, OMNI_PATH, "status", [], fmt=omni_fmt()) == OMNI
    assert "allowed_values: [a]" in set_allowed_values(ORDERS, ORDERS_PATH, "status", ["a"])


TOPIC_TEXT = """\
# the shop topic
base_view: omni_dbt_marts__fct_orders
fields: [omni_dbt_marts__fct_orders.*, -omni_dbt_marts__fct_orders.amount, "omni_dbt_marts__fct_orders.AMOUNT"]
default_filters:
  omni_dbt_marts__fct_orders.amount:   # positive only
    greater_than: 0
always_where_sql: |
  ${omni_dbt_marts__fct_orders.amount} > 0
  AND ${omni_dbt_marts__other.amount} > 0
"""


def test_a_topic_follows_a_rename_in_fields_filters_and_sql_and_nothing_else() -> None:
    from bot.semantic.editor import rename_field_in_topic
    edited = rename_field_in_topic(TOPIC_TEXT, "Shop.topic.yaml", "omni_dbt_marts__fct_orders", "amount", "usd")
    assert edited == TOPIC_TEXT.replace("-omni_dbt_marts__fct_orders.amount,", "-omni_dbt_marts__fct_orders.usd,") \
        .replace('"omni_dbt_marts__fct_orders.AMOUNT"', '"omni_dbt_marts__fct_orders.USD"') \
        .replace("  omni_dbt_marts__fct_orders.amount:", "  omni_dbt_marts__fct_orders.usd:") \
        .replace("  ${omni_dbt_marts__fct_orders.amount} > 0", "  ${omni_dbt_marts__fct_orders.usd} > 0")
    assert rename_field_in_topic(TOPIC_TEXT, "Shop.topic.yaml", "omni_dbt_marts__fct_orders", "status", "x") \
        is TOPIC_TEXT


def test_relationships_follow_a_rename_in_on_sql() -> None:
    from bot.semantic.editor import rename_field_in_relationships
    text = ("- join_from_view: a   # orders\n  join_to_view: b\n  on_sql: '${a.key} = ${b.key}'\n"
            "- join_from_view: b\n  join_to_view: c\n  on_sql: ${b.key} = ${c.b_key}\n")
    assert rename_field_in_relationships(text, "relationships.yaml", "b", "key", "id") == text.replace(
        "${b.key}", "${b.id}")
    with pytest.raises(SemanticError) as caught:
        rename_field_in_relationships("- on_sql: [\n", "relationships.yaml", "b", "key", "id")
    assert caught.value.file == "relationships.yaml"


def test_a_key_quoted_only_because_yaml_needed_it_is_plain_again_when_renamed_back() -> None:
    """`n` must be quoted (YAML 1.1 reads it as false); renaming back to `order_date` wrote `'order_date'`."""
    there = rename_field(ORDERS, ORDERS_PATH, "order_date", "n")
    assert "  'n':\n" in there
    assert rename_field(there, ORDERS_PATH, "n", "order_date") == ORDERS
    chosen = HAND.replace("'status':", "'state':")                  # quoted by choice: stays quoted
    assert "  'status':" in rename_field(chosen, "hand.view.yaml", "state", "status")


def test_a_description_ending_in_a_line_break_keeps_it_at_the_end_of_a_file_without_one() -> None:
    # Found by the round-trip property: `|` keeps its last line break only if the file has one.
    text = "table_name: t\ndimensions:\n  f_a:\n  f_b:"
    added = add_dimension(text, "v.view.yaml", "n_a", description="x\n")
    assert read(added, "v.view.yaml").fields["n_a"].description == "x\n"
    plain = add_dimension(text, "v.view.yaml", "n_a", description="x")
    assert not plain.endswith("\n")                     # otherwise the file keeps its missing break


def test_a_rename_inside_a_block_scalar_at_the_end_of_a_file_without_a_final_break_is_reversible() -> None:
    # Found by the reversibility property: there the block's value has no final line break.
    text = "table_name: t\ndimensions:\n  f_c:\n    sql: |\n      case when ${TABLE}.c_a > 0\n      then ${TABLE}.c_a end"
    renamed = rename_column_refs(text, "v.view.yaml", "c_a", "n_a")
    assert renamed == text.replace("c_a", "n_a")
    assert rename_column_refs(renamed, "v.view.yaml", "n_a", "c_a") == text

"""Tests for bot.dbt.schema_yaml: edits must leave hand-written YAML alone."""

from __future__ import annotations

import difflib
import io
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.dbt import schema_yaml
from bot.dbt.schema_yaml import (
    ColumnDoc,
    SchemaYamlError,
    column_entry,
    model_names,
    remove_column,
    upsert_column,
    upsert_columns,
)

LONG = (
    "One record per customer, with their order history and lifetime value; this sentence is long on purpose"
    " so that any re-wrapping would show up in the diff."
)
assert len(LONG) > 100

JAFFLE = f"""\
version: 2

models:
  - name: customers
    description: "{LONG}"
    config:
      materialized: table  # marts are tables
    meta:
      owner: 'analytics'
    columns:
      - name: customer_id
        description: Primary key
        data_tests:
          - unique
          - not_null

      - name: first_order
        description: 'Date (UTC) of a customer''s first order'

      # lifetime value, in dollars
      - name: customer_lifetime_value
        description: Total value (USD) of a customer's orders

  # orders come from stg_orders
  - name: orders
    description: Order overview data mart, offering key details for each order including if it's a customer's first order and a food vs. drink item breakdown.
    columns:
      - name: order_id
        data_tests:
          - unique
          - not_null
      - name: status
        description: "{{{{ doc('orders_status') }}}}"
        data_tests:
          - accepted_values:
              values: ['placed', 'shipped', 'completed', 'return_pending', 'returned']

  - name: stg_payments  # staging
    config: {{materialized: view}}
"""


def _diff(old: str, new: str) -> tuple[list[str], list[str]]:
    """(removed lines, added lines) between two texts."""
    removed: list[str] = []
    added: list[str] = []
    for line in difflib.ndiff(old.splitlines(True), new.splitlines(True)):
        if line.startswith("- "):
            removed.append(line[2:])
        elif line.startswith("+ "):
            added.append(line[2:])
    return removed, added


def _load(text: str) -> Any:
    """Read the way dbt does (PyYAML, YAML 1.1), which is stricter about plain `yes`/`on`."""
    return yaml.safe_load(io.StringIO(text))


# --------------------------------------------------------------------------
# upsert_column: exact output
# --------------------------------------------------------------------------


def test_fixture_is_valid_and_long_lines_exist() -> None:
    assert model_names(JAFFLE) == ["customers", "orders", "stg_payments"]
    assert any(len(line) > 100 for line in JAFFLE.splitlines())


def test_add_column_to_existing_model_only_adds_lines() -> None:
    result = upsert_column(JAFFLE, "orders", "amount", description="Total amount (USD) of the order", tests=["not_null"])
    expected = JAFFLE.replace(
        "              values: ['placed', 'shipped', 'completed', 'return_pending', 'returned']\n",
        "              values: ['placed', 'shipped', 'completed', 'return_pending', 'returned']\n"
        "      - name: amount\n"
        "        description: Total amount (USD) of the order\n"
        "        data_tests:\n"
        "          - not_null\n",
    )
    assert result == expected
    removed, added = _diff(JAFFLE, result)
    assert removed == []
    assert len(added) == 4


def test_add_column_keeps_blank_line_style_and_next_model_comment() -> None:
    """customers separates its columns with blank lines; the comment above `orders` stays there."""
    result = upsert_column(JAFFLE, "customers", "last_name", description="Customer's last name")
    expected = JAFFLE.replace(
        "        description: Total value (USD) of a customer's orders\n\n",
        "        description: Total value (USD) of a customer's orders\n\n"
        "      - name: last_name\n"
        "        description: Customer's last name\n\n",
    )
    assert result == expected
    assert _diff(JAFFLE, result)[0] == []


def test_add_model_entry() -> None:
    result = upsert_column(JAFFLE, "stg_customers", "customer_id", description="PK", tests=["unique", "not_null"])
    expected = JAFFLE + (
        "\n"
        "  - name: stg_customers\n"
        "    columns:\n"
        "      - name: customer_id\n"
        "        description: PK\n"
        "        data_tests:\n"
        "          - unique\n"
        "          - not_null\n"
    )
    assert result == expected


def test_add_columns_key_to_model_without_columns() -> None:
    result = upsert_column(JAFFLE, "stg_payments", "payment_id", description="PK")
    assert result == JAFFLE + ("    columns:\n      - name: payment_id\n        description: PK\n")


def test_columns_key_goes_after_description_and_before_comment_of_next_key() -> None:
    text = (
        "models:\n"
        "  - name: orders\n"
        "    description: Orders  # short\n"
        "    # how it is built\n"
        "    config:\n"
        "      materialized: table\n"
    )
    result = upsert_column(text, "orders", "order_id")
    assert result == (
        "models:\n"
        "  - name: orders\n"
        "    description: Orders  # short\n"
        "    columns:\n"
        "      - name: order_id\n"
        "    # how it is built\n"
        "    config:\n"
        "      materialized: table\n"
    )


def test_add_models_key_when_absent() -> None:
    text = "version: 2\n\nsources:\n  - name: raw  # landing zone\n    tables:\n      - name: orders\n"
    result = upsert_column(text, "orders", "order_id", description="PK")
    assert result == text + (
        "\nmodels:\n  - name: orders\n    columns:\n      - name: order_id\n        description: PK\n"
    )


def test_create_file_from_none() -> None:
    result = upsert_column(None, "orders", "order_id", description="Primary key", tests=["unique", "not_null"])
    assert result == (
        "version: 2\n"
        "models:\n"
        "  - name: orders\n"
        "    columns:\n"
        "      - name: order_id\n"
        "        description: Primary key\n"
        "        data_tests:\n"
        "          - unique\n"
        "          - not_null\n"
    )
    assert upsert_column("", "orders", "order_id", description="Primary key", tests=["unique", "not_null"]) == result


def test_comment_only_file_keeps_its_comment() -> None:
    result = upsert_column("# properties for marts\n", "orders", "order_id")
    assert result == (
        "# properties for marts\n"
        "version: 2\n"
        "models:\n"
        "  - name: orders\n"
        "    columns:\n"
        "      - name: order_id\n"
    )


def test_update_description_in_place_changes_one_line() -> None:
    result = upsert_column(JAFFLE, "customers", "first_order", description="Date of the first order")
    removed, added = _diff(JAFFLE, result)
    assert removed == ["        description: 'Date (UTC) of a customer''s first order'\n"]
    assert added == ["        description: 'Date of the first order'\n"]  # keeps the single quotes


def test_update_long_description_is_not_wrapped() -> None:
    new = LONG + " Updated."
    result = upsert_column(JAFFLE, "customers", "customer_id", description=new)
    removed, added = _diff(JAFFLE, result)
    assert removed == ["        description: Primary key\n"]
    assert added == [f"        description: {new}\n"]


def test_same_description_is_a_no_op() -> None:
    assert upsert_column(JAFFLE, "customers", "first_order", description="Date (UTC) of a customer's first order") is JAFFLE


def test_add_tests_to_column_with_other_tests() -> None:
    result = upsert_column(JAFFLE, "orders", "status", tests=["unique", "not_null", "accepted_values"])
    expected = JAFFLE.replace(
        "              values: ['placed', 'shipped', 'completed', 'return_pending', 'returned']\n",
        "              values: ['placed', 'shipped', 'completed', 'return_pending', 'returned']\n"
        "          - unique\n"
        "          - not_null\n",
    )
    assert result == expected


def test_only_missing_tests_are_added() -> None:
    result = upsert_column(JAFFLE, "customers", "customer_id", tests=["not_null", "relationships", "unique"])
    removed, added = _diff(JAFFLE, result)
    assert removed == []
    assert added == ["          - relationships\n"]


def test_custom_named_test_counts_by_test_name() -> None:
    text = (
        "models:\n"
        "  - name: orders\n"
        "    columns:\n"
        "      - name: id\n"
        "        data_tests:\n"
        "          - name: orders_id_unique\n"
        "            test_name: unique\n"
    )
    assert upsert_column(text, "orders", "id", tests=["unique"]) is text


LEGACY = """\
version: 2

models:
  - name: orders
    columns:
      - name: order_id
        tests:
          - unique
      - name: status
"""


def test_legacy_tests_key_is_kept_for_existing_column() -> None:
    result = upsert_column(LEGACY, "orders", "order_id", tests=["not_null"])
    assert result == LEGACY.replace("          - unique\n", "          - unique\n          - not_null\n")


def test_legacy_tests_key_is_used_for_new_tests_elsewhere_in_file() -> None:
    result = upsert_column(LEGACY, "orders", "status", tests=["not_null"])
    assert result == LEGACY + "        tests:\n          - not_null\n"
    result = upsert_column(LEGACY, "orders", "amount", tests=["not_null"])
    assert result == LEGACY + "      - name: amount\n        tests:\n          - not_null\n"


def test_flow_style_test_list_is_extended_in_place() -> None:
    text = "models:\n  - name: orders\n    columns:\n      - name: id\n        data_tests: [unique]\n"
    result = upsert_column(text, "orders", "id", tests=["not_null"])
    assert result == text.replace("[unique]", "[unique, not_null]")


# --------------------------------------------------------------------------
# Indentation styles
# --------------------------------------------------------------------------


def test_two_two_zero_style_preserved() -> None:
    text = (
        "version: 2\n"
        "models:\n"
        "- name: orders\n"
        "  description: Orders\n"
        "  columns:\n"
        "  - name: order_id\n"
        "    data_tests:\n"
        "    - unique\n"
    )
    result = upsert_column(text, "orders", "status", description="Order status", tests=["not_null"])
    assert result == text + (
        "  - name: status\n"
        "    description: Order status\n"
        "    data_tests:\n"
        "    - not_null\n"
    )


def test_four_space_style_preserved() -> None:
    text = (
        "version: 2\n"
        "\n"
        "models:\n"
        "    - name: orders\n"
        "      config:\n"
        "          materialized: table\n"
        "      columns:\n"
        "          - name: order_id\n"
        "            data_tests:\n"
        "                - unique\n"
    )
    result = upsert_column(text, "orders", "status", description="Order status", tests=["not_null"])
    assert result == text + (
        "          - name: status\n"
        "            description: Order status\n"
        "            data_tests:\n"
        "                - not_null\n"
    )


def test_four_space_dash_style_preserved() -> None:
    text = "models:\n-   name: orders\n    columns:\n    -   name: order_id\n"
    result = upsert_column(text, "orders", "status", tests=["unique"])
    assert result == text + "    -   name: status\n        data_tests:\n        -   unique\n"


def test_layout_ruamel_cannot_reproduce_still_gets_a_minimal_diff() -> None:
    """`~`, trailing blanks, extra spaces and mixed list offsets defeat a byte-identical round trip."""
    text = (
        "version: 2\n"
        "models:\n"
        "  - name: orders   \n"
        "    description:   Orders\n"
        "    meta: ~\n"
        "    columns:\n"
        "      - name: order_id\n"
        "        data_tests:\n"
        "        - unique\n"
        "      - name: status\n"
        "  - name: customers\n"
    )
    result = upsert_column(text, "orders", "amount", description="Amount")
    removed, added = _diff(text, result)
    assert removed == []
    assert added == ["      - name: amount\n", "        description: Amount\n"]
    assert result.index("      - name: amount") < result.index("  - name: customers")


def test_crlf_line_endings_are_kept() -> None:
    text = "version: 2\r\nmodels:\r\n  - name: orders\r\n    columns:\r\n      - name: id\r\n"
    result = upsert_column(text, "orders", "status", description="Status")
    assert result == text + "      - name: status\r\n        description: Status\r\n"


# --------------------------------------------------------------------------
# Idempotence and description round trips
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "column", "kwargs"),
    [
        ("orders", "amount", {"description": "Amount", "tests": ["not_null"]}),
        ("customers", "first_order", {"description": "New text", "tests": ["not_null"]}),
        ("orders", "status", {"tests": ["unique", "accepted_values"]}),
        ("stg_customers", "id", {"description": "PK", "meta": {"pii": False}}),
        ("customers", "customer_id", {"meta": {"owner": "bi", "tags": ["a", "b"]}}),
        ("orders", "note", {"description": "multi\nline\n"}),
    ],
)
def test_idempotent(model: str, column: str, kwargs: dict) -> None:
    once = upsert_column(JAFFLE, model, column, **kwargs)
    twice = upsert_column(once, model, column, **kwargs)
    assert twice == once


def test_description_with_colon_and_hash_round_trips() -> None:
    description = "Amount: gross, in USD # before refunds"
    result = upsert_column(JAFFLE, "orders", "amount", description=description)
    assert _load(result)["models"][1]["columns"][-1] == {"name": "amount", "description": description}
    assert column_entry(result, "orders", "amount")["description"] == description


def test_multiline_description_uses_literal_block() -> None:
    description = "First line.\nSecond line: with colon.\n  indented # not a comment"
    result = upsert_column(JAFFLE, "orders", "note", description=description)
    assert "        description: |-\n          First line.\n" in result
    assert _load(result)["models"][1]["columns"][-1]["description"] == description
    assert column_entry(result, "orders", "note")["description"] == description


@pytest.mark.parametrize(
    "description", ["yes", "on", "1:20", "123", "", " leading space", "- dash", "null", "@at", "'quoted'", "a\tb"]
)
def test_ambiguous_descriptions_stay_strings(description: str) -> None:
    result = upsert_column(JAFFLE, "orders", "x", description=description)
    assert _load(result)["models"][1]["columns"][-1]["description"] == description


COLUMN_WITH_FRIENDS = """\
version: 2

models:
  - name: orders  # the mart
    columns:
      - name: order_id
        description: 'Primary key'  # keep me
        data_tests:
          - unique

      - name: status
"""


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(description=st.text(max_size=80))
def test_any_description_round_trips_and_touches_nothing_else(description: str) -> None:
    added = upsert_column(COLUMN_WITH_FRIENDS, "orders", "amount", description=description)
    assert column_entry(added, "orders", "amount")["description"] == description
    assert _diff(COLUMN_WITH_FRIENDS, added)[0] == []
    assert upsert_column(added, "orders", "amount", description=description) == added

    updated = upsert_column(COLUMN_WITH_FRIENDS, "orders", "order_id", description=description)
    assert column_entry(updated, "orders", "order_id")["description"] == description
    removed, _ = _diff(COLUMN_WITH_FRIENDS, updated)
    assert removed in ([], ["        description: 'Primary key'  # keep me\n"])
    assert "# keep me\n" in updated


# --------------------------------------------------------------------------
# meta
# --------------------------------------------------------------------------


def test_meta_goes_under_config_by_default() -> None:
    result = upsert_column(LEGACY, "orders", "status", meta={"pii": True})
    assert result == LEGACY + "        config:\n          meta:\n            pii: true\n"
    assert column_entry(result, "orders", "status")["meta"] == {"pii": True}


def test_meta_follows_existing_top_level_meta() -> None:
    result = upsert_column(JAFFLE, "customers", "customer_id", meta={"pii": True})
    removed, added = _diff(JAFFLE, result)
    assert removed == []
    assert added == ["        meta:\n", "          pii: true\n"]


def test_meta_merges_into_existing_config_meta() -> None:
    text = (
        "models:\n"
        "  - name: orders\n"
        "    columns:\n"
        "      - name: id\n"
        "        config:\n"
        "          meta:\n"
        "            owner: bi  # team\n"
    )
    result = upsert_column(text, "orders", "id", meta={"owner": "bi", "pii": False})
    assert result == text + "            pii: false\n"


# --------------------------------------------------------------------------
# remove_column, model_names, column_entry
# --------------------------------------------------------------------------


def test_remove_last_column_of_model() -> None:
    result = remove_column(JAFFLE, "orders", "status")
    removed, added = _diff(JAFFLE, result)
    assert added == []
    assert removed == [
        "      - name: status\n",
        "        description: \"{{ doc('orders_status') }}\"\n",
        "        data_tests:\n",
        "          - accepted_values:\n",
        "              values: ['placed', 'shipped', 'completed', 'return_pending', 'returned']\n",
    ]


def test_remove_column_takes_its_header_comment_and_one_blank_line() -> None:
    result = remove_column(JAFFLE, "customers", "customer_lifetime_value")
    assert result == JAFFLE.replace(
        "      # lifetime value, in dollars\n"
        "      - name: customer_lifetime_value\n"
        "        description: Total value (USD) of a customer's orders\n\n",
        "",
    )
    assert "  # orders come from stg_orders\n  - name: orders\n" in result


def test_remove_first_column() -> None:
    result = remove_column(JAFFLE, "customers", "customer_id")
    assert "    columns:\n      - name: first_order\n" in result
    assert _diff(JAFFLE, result)[1] == []


def test_remove_only_column_drops_columns_key() -> None:
    text = "models:\n  - name: orders\n    columns:\n      - name: id\n\n  - name: customers\n"
    assert remove_column(text, "orders", "id") == "models:\n  - name: orders\n\n  - name: customers\n"


def test_remove_absent_column_is_unchanged() -> None:
    assert remove_column(JAFFLE, "orders", "nope") is JAFFLE
    assert remove_column(JAFFLE, "nope", "status") is JAFFLE


def test_add_then_remove_restores_the_file() -> None:
    for model, column in [("orders", "amount"), ("customers", "last_name"), ("stg_payments", "id")]:
        added = upsert_column(JAFFLE, model, column, description="x", tests=["unique"])
        assert remove_column(added, model, column) == JAFFLE


def test_model_names() -> None:
    assert model_names(JAFFLE) == ["customers", "orders", "stg_payments"]
    assert model_names("version: 2\n") == []
    assert model_names("") == []
    assert model_names("# nothing\n") == []
    assert model_names("models:\n") == []


def test_column_entry_view() -> None:
    assert column_entry(JAFFLE, "orders", "status") == {
        "name": "status",
        "description": "{{ doc('orders_status') }}",
        "tests": [{"accepted_values": {"values": ["placed", "shipped", "completed", "return_pending", "returned"]}}],
        "meta": {},
    }
    assert column_entry(LEGACY, "orders", "order_id") == {
        "name": "order_id",
        "description": None,
        "tests": ["unique"],
        "meta": {},
    }
    assert column_entry(JAFFLE, "orders", "missing") is None
    assert column_entry(JAFFLE, "missing", "status") is None


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


def test_invalid_yaml_reports_line() -> None:
    text = "version: 2\nmodels:\n  - name: orders\n    columns: [\n"
    with pytest.raises(SchemaYamlError) as info:
        model_names(text)
    assert info.value.line is not None and info.value.line >= 4
    assert isinstance(info.value, ValueError)


def test_bad_indentation_reports_line() -> None:
    text = "models:\n  - name: orders\n    columns:\n      - name: a\n     description: bad\n"
    with pytest.raises(SchemaYamlError) as info:
        upsert_column(text, "orders", "a", description="x")
    assert info.value.line == 5


def test_duplicate_key_reports_line() -> None:
    text = "version: 2\nmodels:\n  - name: orders\n    description: a\n    description: b\n"
    with pytest.raises(SchemaYamlError) as info:
        model_names(text)
    assert info.value.line == 5
    assert "duplicate" in info.value.message


def test_models_not_a_list() -> None:
    with pytest.raises(SchemaYamlError) as info:
        upsert_column("version: 2\nmodels:\n  orders: {}\n", "orders", "id")
    assert info.value.line == 2


def test_model_entry_not_a_mapping() -> None:
    with pytest.raises(SchemaYamlError) as info:
        model_names("version: 2\nmodels:\n  - name: orders\n  - just_a_string\n")
    assert info.value.line == 4


def test_column_entry_not_a_mapping() -> None:
    text = "models:\n  - name: orders\n    columns:\n      - id\n"
    with pytest.raises(SchemaYamlError) as info:
        upsert_column(text, "orders", "id")
    assert info.value.line == 4


def test_top_level_list_is_rejected() -> None:
    with pytest.raises(SchemaYamlError):
        upsert_column("- a\n- b\n", "orders", "id")


REWRITTEN_BY_RUAMEL = (
    "version: 2   \n"
    "models:\n"
    "  - name: orders\n"
    "    meta: ~\n"
    "    columns:\n"
    "      - name: id\n"
    "        data_tests: [ unique ]   \n"
    "  - name:   customers\n"
)


def test_lines_ruamel_rewrites_stay_as_written_when_the_entry_is_spliced() -> None:
    """The fast path never dumps the document, so lines ruamel would rewrite are not touched at all."""
    result = upsert_column(REWRITTEN_BY_RUAMEL, "orders", "amount", description="Amount")
    assert result == REWRITTEN_BY_RUAMEL.replace(
        "  - name:   customers\n", "      - name: amount\n        description: Amount\n  - name:   customers\n")


MIXED = """\
version: 2
models:
  - name: orders
    columns:
      - name: order_id
        data_tests:
        - unique
  - name: customers
    columns:
    - name: id
    - name: email
"""


def test_mixed_styles_take_the_local_style() -> None:
    """No single ruamel setting reproduces this file; each edit follows the lines around it."""
    result = upsert_column(MIXED, "customers", "tier", description="Tier")
    assert result == MIXED + "    - name: tier\n      description: Tier\n"
    result = upsert_column(MIXED, "orders", "status")
    assert _diff(MIXED, result) == ([], ["      - name: status\n"])


def test_replacing_block_description_keeps_blank_separator() -> None:
    text = (
        "models:\n"
        "  - name: orders\n"
        "    columns:\n"
        "      - name: status\n"
        "        description: >\n"
        "          Folded\n"
        "          text\n"
        "\n"
        "      - name: note\n"
    )
    result = upsert_column(text, "orders", "status", description="on")
    assert result == text.replace("        description: >\n          Folded\n          text\n", "        description: >-\n          on\n")
    assert _load(result)["models"][0]["columns"][0]["description"] == "on"


@pytest.mark.parametrize("description", ["\n", "a\n\n", "  indented\nsecond", "\nleading newline", "tail  \nx"])
def test_descriptions_with_blank_edges_are_quoted_not_block(description: str) -> None:
    text = "models:\n  - name: orders\n    columns:\n      - name: a\n\n  # next\n  - name: b\n"
    result = upsert_column(text, "orders", "a", description=description)
    assert column_entry(result, "orders", "a")["description"] == description
    assert _load(result)["models"][0]["columns"][0]["description"] == description
    assert "\n\n  # next\n  - name: b\n" in result


def test_batch_upsert_equals_one_at_a_time() -> None:
    docs = [ColumnDoc("orders", "is_large", "Large orders"), ColumnDoc("customers", "tier", "Tier", ("not_null",)),
            ColumnDoc("orders", "is_large", "Large orders, over 20 dollars"), ColumnDoc("new_model", "x")]
    for start in (JAFFLE, None):
        one_by_one = start
        for d in docs:
            one_by_one = upsert_column(one_by_one, d.model, d.column, description=d.description, tests=d.tests)
        assert upsert_columns(start, docs) == one_by_one
    assert upsert_columns(JAFFLE, []) == JAFFLE


def test_batch_keeps_blank_line_style_like_single_calls() -> None:
    docs = [ColumnDoc("customers", "a", "A"), ColumnDoc("customers", "b", "B"), ColumnDoc("orders", "c", "C"),
            ColumnDoc("orders", "d", "D")]
    one_by_one = JAFFLE
    for d in docs:
        one_by_one = upsert_column(one_by_one, d.model, d.column, description=d.description)
    assert "        description: Total value (USD) of a customer's orders\n\n      - name: a\n" in one_by_one
    assert "      - name: a\n        description: A\n\n      - name: b\n" in one_by_one
    assert upsert_columns(JAFFLE, docs) == one_by_one


# --------------------------------------------------------------------------
# fast path: splice without a ruamel round trip, same text as the round trip
# --------------------------------------------------------------------------

TWO_TWO_ZERO = "version: 2\nmodels:\n- name: orders\n  description: Orders\n  columns:\n  - name: order_id\n    data_tests:\n    - unique\n"
FOUR_SPACE = ("version: 2\n\nmodels:\n    - name: orders\n      columns:\n          - name: order_id\n"
              "            data_tests:\n                - unique\n")
FAST_CASES = [
    (JAFFLE, [ColumnDoc("orders", "amount", "Total amount", ("not_null",))]),
    (JAFFLE, [ColumnDoc("customers", "a", "A"), ColumnDoc("customers", "b", "B"), ColumnDoc("orders", "c", "C")]),
    (JAFFLE, [ColumnDoc("stg_customers", "id", "PK", ("unique", "not_null")), ColumnDoc("stg_customers", "name")]),
    (JAFFLE, [ColumnDoc("customers", "first_order", "First order date"), ColumnDoc("orders", "order_id", "Key")]),
    (JAFFLE, [ColumnDoc("customers", "customer_id", "Primary key")]),
    (COLUMN_WITH_FRIENDS, [ColumnDoc("orders", "order_id", "x"), ColumnDoc("orders", "amount", "yes")]),
    (COLUMN_WITH_FRIENDS, [ColumnDoc("orders", "order_id", "a much longer description than the one before it")]),
    (TWO_TWO_ZERO, [ColumnDoc("orders", "status", "Order status", ("not_null",))]),
    (FOUR_SPACE, [ColumnDoc("orders", "status", "Order status", ("not_null",))]),
    ("models:\n-   name: orders\n    columns:\n    -   name: order_id\n", [ColumnDoc("orders", "status", None, ("unique",))]),
    ("version: 2\nmodels:\n  - name: o\n    columns:\n      - name: a\n        description: |\n          two\n          lines\n"
     "\n# trailing\n", [ColumnDoc("o", "b", "B"), ColumnDoc("p", "c", "C")]),
    ("models:\n  - name: o\n    columns:\n      - name: a\n        data_tests: [unique]  # flow\n"
     "        # about a\n  # about p\n  - name: p\n", [ColumnDoc("o", "b", "B")]),
    ("\ufeffmodels:\r\n  - name: o\r\n    columns:\r\n      - name: a\r\n", [ColumnDoc("o", "b", "B")]),
]


def _column_entries(text: str | None) -> dict[tuple[str, str], Any]:
    """(model, column lower-cased) -> the column's entry, as dbt reads the file."""
    data = yaml.safe_load(text or "") or {}
    return {(str(m.get("name")), str(c["name"]).lower()): c for m in data.get("models") or []
            for c in m.get("columns") or [] if isinstance(c, dict)}


@pytest.mark.parametrize("text, docs", FAST_CASES)
def test_a_batch_writes_what_one_call_at_a_time_writes_touching_only_its_entries(text: str,
                                                                                docs: list[ColumnDoc]) -> None:
    one_by_one = text
    for d in docs:
        one_by_one = upsert_column(one_by_one, d.model, d.column, description=d.description, tests=d.tests)
    result = upsert_columns(text, docs)
    assert result == one_by_one
    removed, _added = _diff(text, result)
    assert all("description:" in line for line in removed)
    for d in docs:
        entry = _column_entries(result)[(d.model, d.column.lower())]
        assert d.description is None or entry["description"] == d.description
        assert set(d.tests) <= set(entry.get("data_tests") or entry.get("tests") or [])


@pytest.mark.parametrize("text, docs", FAST_CASES)
def test_no_ruamel_document_is_loaded(text: str, docs: list[ColumnDoc], monkeypatch: pytest.MonkeyPatch) -> None:
    """The cost of a push was one ruamel round trip per YAML file: edits now compose with libyaml once."""
    import ruamel.yaml

    monkeypatch.setattr(ruamel.yaml.YAML, "__init__", lambda *a, **k: pytest.fail("ruamel loaded"))
    upsert_columns(text, docs)


def test_edits_the_old_fast_path_refused_are_minimal_too() -> None:
    """Once left to the ruamel round trip: a flow-style model entry, tests added to an existing column,
    a list in a file mixing layouts (the local layout wins), one column twice in a batch."""
    assert upsert_columns(JAFFLE, [ColumnDoc("stg_payments", "id", "x")]) == JAFFLE + (
        "    columns:\n      - name: id\n        description: x\n")
    assert _diff(JAFFLE, upsert_columns(JAFFLE, [ColumnDoc("customers", "customer_id", None, ("relationships",))])) \
        == ([], ["          - relationships\n"])
    assert upsert_columns(MIXED, [ColumnDoc("customers", "tier", "Tier", ("unique",))]) == MIXED + (
        "    - name: tier\n      description: Tier\n      data_tests:\n      - unique\n")
    assert upsert_columns(JAFFLE, [ColumnDoc("orders", "x", "A"), ColumnDoc("orders", "X", "B")]) == \
        upsert_column(JAFFLE, "orders", "x", description="B")


def test_a_model_named_like_a_yaml_11_boolean_is_found_by_its_written_name() -> None:
    text = "models:\n  - name: yes\n    columns:\n      - name: a\n"
    assert upsert_columns(text, [ColumnDoc("yes", "b")]) == text + "      - name: b\n"


def test_lines_other_tools_would_rewrite_stay_as_written() -> None:
    """The file is never dumped, so lines a round trip would rewrite are not touched at all."""
    result = upsert_column(REWRITTEN_BY_RUAMEL, "orders", "amount", description="Amount")
    assert result == REWRITTEN_BY_RUAMEL.replace(
        "  - name:   customers\n", "      - name: amount\n        description: Amount\n  - name:   customers\n")


@pytest.mark.parametrize("text, docs", [*FAST_CASES, (JAFFLE, [ColumnDoc("stg_payments", "id", "x")]),
                                        (JAFFLE, [ColumnDoc("customers", "customer_id", None, ("relationships",))]),
                                        (None, [ColumnDoc("m", "a", "A"), ColumnDoc("m", "b")])])
def test_changes_name_exactly_the_entries_that_changed(text: str | None, docs: list[ColumnDoc]) -> None:
    """The changed entries are the ones a re-read tells apart."""
    updated, changed = schema_yaml.upsert_columns_changes(text, docs)
    before, after = _column_entries(text), _column_entries(updated)
    assert changed == {key for key, entry in after.items() if before.get(key) != entry}
    assert updated == upsert_columns(text, docs)
    assert schema_yaml.upsert_columns_changes(updated, docs) == (updated, set())

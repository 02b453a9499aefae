"""Replacing one field's SQL in a view file, every other byte kept."""
from __future__ import annotations

import pytest

from bot.errors import SemanticError
from bot.semantic.editor import set_field_sql

VIEW = """\
# orders view
table_name: orders
dimensions:
  big:
    label: Big   # shown in the UI
    sql: |
      case when ${TABLE}.amount > 20
      then true else false end

  small:
    sql: ${TABLE}.amount < 5  # tiny
    description: Small ones
measures:
  revenue:
    sql: ${amount}
    aggregate_type: sum
"""


def test_block_scalar_replaced_blank_line_and_comments_kept() -> None:
    assert set_field_sql(VIEW, "v", "big", "${TABLE}.big") == VIEW.replace(
        "    sql: |\n      case when ${TABLE}.amount > 20\n      then true else false end\n", "    sql: ${TABLE}.big\n")


def test_plain_value_followed_by_other_keys_and_its_comment_kept() -> None:
    result = set_field_sql(VIEW, "v", "small", "${TABLE}.small")
    assert result == VIEW.replace("    sql: ${TABLE}.amount < 5  # tiny\n", "    sql: ${TABLE}.small  # tiny\n")


def test_values_that_need_quotes_and_errors() -> None:
    assert "    sql: '${TABLE}.a: b'  # tiny\n" in set_field_sql(VIEW, "v", "small", "${TABLE}.a: b")
    with pytest.raises(SemanticError, match="no field `nope`"):
        set_field_sql(VIEW, "v", "nope", "x")

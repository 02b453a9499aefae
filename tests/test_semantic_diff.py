"""Structural diff of two revisions of views: added, changed (which keys), removed."""
from __future__ import annotations

from bot.semantic.diff import diff_views
from bot.semantic.reader import OmniYamlReader

BEFORE = """\
table_name: orders
dimensions:
  order_id:
    primary_key: true
  status: {}
  is_large:
    sql: ${TABLE}.amount > 100
    label: Large
  gone:
    sql: ${TABLE}.x
measures:
  revenue:
    sql: ${amount}
    aggregate_type: sum
"""

AFTER = """\
# a comment and reordering are not changes
table_name: orders
dimensions:
  status: {}
  order_id:
    primary_key: true
  is_large:
    label: Large
    sql: |
      ${TABLE}.amount   >   100
  new_one:
    sql: ${TABLE}.amount * 2
measures:
  revenue:
    sql: ${amount}
    aggregate_type: average
"""


def views(text: str, path: str = "views/orders.view.yaml"):
    view = OmniYamlReader().read(text, path)
    return {view.name: view}


def test_added_changed_removed_by_structure_not_text() -> None:
    changes = diff_views(views(BEFORE), views(AFTER))
    summary = [(c.id, c.kind, c.changed_keys) for c in changes]
    assert summary == [
        ("orders.gone", "removed", ()),
        ("orders.new_one", "added", ()),
        ("orders.revenue", "changed", ("aggregate_type",)),
    ]


def test_sql_change_and_description_change_are_reported() -> None:
    after = BEFORE.replace("${TABLE}.amount > 100", "${TABLE}.amount > 200").replace(
        "    label: Large\n", "    label: Large\n    description: big ones\n")
    changes = diff_views(views(BEFORE), views(after))
    assert [(c.id, c.changed_keys) for c in changes] == [("orders.is_large", ("description", "sql"))]
    assert changes[0].old.sql == "${TABLE}.amount > 100"
    assert changes[0].new.sql == "${TABLE}.amount > 200"


def test_reference_target_change_is_a_change() -> None:
    after = BEFORE.replace("sql: ${amount}", "sql: ${amount_usd}")
    assert [c.changed_keys for c in diff_views(views(BEFORE), views(after))] == [("sql",)]


def test_new_and_deleted_views() -> None:
    changes = diff_views({}, views(BEFORE))
    assert {c.kind for c in changes} == {"added"} and len(changes) == 5
    changes = diff_views(views(BEFORE), {})
    assert {c.kind for c in changes} == {"removed"} and len(changes) == 5


def test_view_pointing_at_another_table_rechecks_every_field() -> None:
    after = BEFORE.replace("table_name: orders", "table_name: orders_v2")
    changes = diff_views(views(BEFORE), views(after))
    assert {c.kind for c in changes} == {"changed"}
    assert all(c.changed_keys == ("table_name",) for c in changes)

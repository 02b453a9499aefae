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


OMNI_VIEW = """\
schema: omni_dbt_marts
table_name: orders
dimensions:
  order_id:
    primary_key: true
  status: {}
measures:
  revenue:
    sql: ${amount}
    aggregate_type: sum
"""


def omni(path: str, text: str = OMNI_VIEW):
    from bot.semantic.formats.omni import OmniFormat

    view = OmniFormat().read(text, path)
    return {view.name: view}


def test_a_view_file_moved_to_another_folder_is_a_move_not_its_fields_removed() -> None:
    """Omni names a view by its folder: moved, it has a new name, the same table and the same fields."""
    before, after = omni("omni_dbt_marts/orders.view.yaml"), omni("sales/orders.view.yaml")
    assert list(before) == ["omni_dbt_marts__orders"] and list(after) == ["sales__orders"]
    assert diff_views(before, after) == []
    edited = omni("sales/orders.view.yaml", OMNI_VIEW.replace("aggregate_type: sum", "aggregate_type: average"))
    changes = diff_views(before, edited)
    assert [(c.id, c.kind, c.changed_keys, c.moved_from) for c in changes] == [
        ("sales__orders.revenue", "changed", ("aggregate_type",), "omni_dbt_marts__orders")]


def test_two_look_alike_views_moving_are_not_paired_by_guess() -> None:
    before = {**omni("a/orders.view.yaml"), **omni("b/orders.view.yaml")}
    after = {**omni("c/orders.view.yaml"), **omni("d/orders.view.yaml")}
    assert {c.kind for c in diff_views(before, after)} == {"added", "removed"}


def test_moving_view_files_in_git_asks_to_push_and_remove_nothing(tmp_path) -> None:
    """Real git: an analyst moves Omni view files (without Omni's name header, so their names follow the
    folder) into another folder; the push selection sees neither removed nor new fields."""
    import git

    from bot.demo.run import create_semantic_repo
    from bot.gitops import RevisionReader
    from bot.selection import select_changed

    path = create_semantic_repo(tmp_path, layout="omni")
    repo = git.Repo(path)
    views = sorted((path / "omni_dbt_marts").glob("*.view.yaml"))
    for view in views:
        view.write_text("".join(l for l in view.read_text().splitlines(True) if not l.startswith("# Reference")))
    repo.git.add("-A")
    since = repo.index.commit("views without headers").hexsha
    (path / "sales").mkdir()
    for view in views:
        repo.git.mv(str(view), str(path / "sales" / view.name))
    head = repo.index.commit("move the views").hexsha

    selection = select_changed(RevisionReader(path), head, since, "duckdb")
    assert selection.requests == [] and selection.skipped == []

"""The `views` layout's reader (`views/<name>.view.yaml`, `${TABLE}`): fields with their file and line, and bad files as clear errors."""
from __future__ import annotations

import pytest

from bot.errors import SemanticError
from bot.semantic.formats.omni import OmniFormat
from bot.semantic.formats.views import ViewsFormat
from bot.semantic.reader import OmniYamlReader, reader_for

ORDERS = """\
# views/orders.view.yaml
table_name: orders          # the dbt model (by model name or alias)
schema: analytics           # optional
label: Orders
dimensions:
  order_id:
    primary_key: true
  status: {}
  is_large_order:
    sql: ${TABLE}.amount > 100
    label: Large order
    description: Orders over 100 dollars
  order_month:
    sql: date_trunc('month', ${order_date})
  quoted:
    sql: '"ORDER_ID"'
    aliases: [old_quoted]
measures:
  revenue:
    sql: ${amount}
    aggregate_type: sum
"""


def read(text: str, path: str = "views/orders.view.yaml"):
    return OmniYamlReader().read(text, path)


def test_reads_view_and_fields_with_lines() -> None:
    view = read(ORDERS)
    assert (view.name, view.table_name, view.schema, view.label) == ("orders", "orders", "analytics", "Orders")
    assert list(view.fields) == ["order_id", "status", "is_large_order", "order_month", "quoted", "revenue"]
    large = view.fields["is_large_order"]
    assert large.kind == "dimension"
    assert large.sql == "${TABLE}.amount > 100"
    assert (large.label, large.description) == ("Large order", "Orders over 100 dollars")
    assert str(large.location) == "views/orders.view.yaml:9"
    assert view.fields["order_id"].primary_key is True
    assert view.fields["status"].sql is None
    assert view.fields["revenue"].kind == "measure"
    assert view.fields["revenue"].aggregate_type == "sum"
    assert view.fields["revenue"].location.line == 19


def test_aliases_find_renamed_fields() -> None:
    view = read(ORDERS)
    assert view.field_named("old_quoted") is view.fields["quoted"]
    assert view.field_named("QUOTED") is view.fields["quoted"]
    assert view.field_named("nope") is None


def test_view_name_from_file_and_yml_suffix() -> None:
    view = read("table_name: x\ndimensions:\n  a: {}\n", "sub/dir/my_view.view.yml")
    assert view.name == "my_view"
    assert OmniYamlReader().is_view_file("views/a.view.yml")
    assert not OmniYamlReader().is_view_file("views/a.yml")


@pytest.mark.parametrize("text, line, words", [
    ("table_name: x\ndimensions:\n  a:\n    sql: [1\n", 5, "invalid YAML"),
    ("table_name: x\ndimensions:\n  a: {}\n  a: {}\n", 4, "invalid YAML"),
    ("table_name: x\ndimensions:\n  - a\n", 2, "must be a mapping"),
    ("table_name: x\ndimensions:\n  a: 3\n", 3, "must be a mapping of attributes"),
    ("table_name: x\ndimensions:\n  a:\n    sql: {x: 1}\n", 4, "must be text"),
    ("- just\n- a list\n", 1, "must be a mapping"),
    ("", 1, "empty view file"),
])
def test_bad_files_name_file_and_line(text: str, line: int, words: str) -> None:
    with pytest.raises(SemanticError) as caught:
        read(text, "views/bad.view.yaml")
    assert caught.value.file == "views/bad.view.yaml"
    assert caught.value.line == line
    assert words in caught.value.message
    assert str(caught.value).startswith(f"views/bad.view.yaml:{line}: ")


def test_field_declared_as_dimension_and_measure_is_an_error() -> None:
    with pytest.raises(SemanticError, match="declared twice"):
        read("table_name: x\ndimensions:\n  a: {}\nmeasures:\n  a:\n    aggregate_type: count\n")


def test_formats_by_name() -> None:
    """`omni` is Omni's own layout now; the layout this reader always read is `views`, and the old class
    name still imports as that format."""
    assert isinstance(reader_for("views"), ViewsFormat)
    assert ViewsFormat is OmniYamlReader
    omni = reader_for("omni", "omni/Shop")
    assert isinstance(omni, OmniFormat) and omni.root == "omni/Shop"
    with pytest.raises(SemanticError, match="unknown semantic-layer format"):
        reader_for("lookml-2")

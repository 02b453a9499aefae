"""The YAML edit kit (bot.yamledit): edits by path, byte-identical outside the edit, verified by a re-read."""
from __future__ import annotations

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.yamledit import Commented, Document, YamlEditError, plain
from test_schema_yaml import _diff as _changed

DBT = """\
version: 2

models:
  # the mart
  - name: orders   # one row per order
    description: 'Orders'
    columns:
      - name: order_id
        description: "Primary key"
        data_tests: [unique, not_null]

      - name: status
        description: >
          Folded
          text

  - name: customers
    config: {materialized: table}
    columns:
      - name: id
"""


def _edit(text: str, *ops) -> str:
    doc = Document(text, "x.yml")
    for op, *args in ops:
        getattr(doc, op)(*args)
    return doc.result()


def test_read_by_path_keys_indexes_and_names() -> None:
    doc = Document(DBT)
    assert doc.get(("models", {"name": "customers"}, "config", "materialized")) == "table"
    assert doc.get(("models", 0, "columns", -1, "name")) == "status"
    assert doc.get(("models", {"name": "nope"}), "absent") == "absent"
    assert doc.line(("models", {"name": "orders"}, "columns", {"name": "status"})) == 12
    assert doc.separated(("models", 0, "columns")) is True
    assert doc.separated(("models", 1, "columns")) is None


def test_scalar_replaced_in_place_keeping_quotes_comments_and_everything_else() -> None:
    result = _edit(DBT, ("set", ("models", 0, "description"), "All orders"),
                   ("set", ("models", 0, "columns", 0, "description"), "The key"))
    assert _changed(DBT, result) == (["    description: 'Orders'\n", '        description: "Primary key"\n'],
                                     ["    description: 'All orders'\n", '        description: "The key"\n'])


def test_block_scalar_keeps_its_style_and_the_blank_line_after_it() -> None:
    result = _edit(DBT, ("set", ("models", 0, "columns", 1, "description"), "on"))
    assert "        description: >-\n          on\n\n  - name: customers\n" in result
    assert yaml.safe_load(result)["models"][0]["columns"][1]["description"] == "on"


def test_nested_value_appended_to_a_block_list_in_the_lists_own_style() -> None:
    result = _edit(DBT, ("append", ("models", 0, "columns"),
                         {"name": "amount", "description": "Amount: gross # before refunds", "data_tests": ["not_null"],
                          "config": {"meta": {"pii": False}}}))
    assert result == DBT.replace("          text\n\n", "          text\n\n"
                                 "      - name: amount\n        description: 'Amount: gross # before refunds'\n"
                                 "        data_tests:\n          - not_null\n        config:\n          meta:\n"
                                 "            pii: false\n\n")


@pytest.mark.parametrize("text, expected", [
    ("models:\n- name: a\n  columns:\n  - name: x\n", "  - name: w\n    data_tests:\n    - unique\n"),
    ("models:\n    - name: a\n      columns:\n          - name: x\n",
     "          - name: w\n            data_tests:\n                - unique\n"),
    ("models:\n-   name: a\n    columns:\n    -   name: x\n", "    -   name: w\n        data_tests:\n        -   unique\n"),
])
def test_indentation_and_dash_layouts_follow_the_file(text: str, expected: str) -> None:
    assert _edit(text, ("append", ("models", 0, "columns"), {"name": "w", "data_tests": ["unique"]})) == text + expected


def test_flow_collections_stay_flow() -> None:
    result = _edit(DBT, ("append", ("models", 0, "columns", 0, "data_tests"), "relationships"),
                   ("set", ("models", 1, "config", "schema"), "marts"))
    assert "data_tests: [unique, not_null, relationships]\n" in result
    assert "config: {materialized: table, schema: marts}\n" in result
    assert len(_changed(DBT, result)[1]) == 2


def test_an_empty_flow_mapping_opens_into_block_style_unless_asked_not_to() -> None:
    text = "dimensions:\n  a: {}\n  b: 1\n"
    assert _edit(text, ("set", ("dimensions", "a", "label"), "A")) == "dimensions:\n  a:\n    label: A\n  b: 1\n"
    doc = Document(text)
    doc.set(("dimensions", "a", "label"), "A", open_empty=False)
    assert doc.result() == "dimensions:\n  a: {label: A}\n  b: 1\n"


def test_creating_semantic_models_and_metrics_then_adding_a_measure() -> None:
    doc = Document(DBT)
    doc.set(("semantic_models",), [{"name": "orders", "model": "ref('orders')",
                                    "entities": [{"name": "order_id", "type": "primary"}],
                                    "measures": [{"name": "order_total", "agg": "sum", "expr": "amount"}]}])
    doc.set(("metrics",), [{"name": "revenue", "type": "simple", "type_params": {"measure": "order_total"}}])
    created = doc.result()
    assert created.startswith(DBT)
    assert created[len(DBT):] == (
        "\nsemantic_models:\n  - name: orders\n    model: ref('orders')\n    entities:\n      - name: order_id\n"
        "        type: primary\n    measures:\n      - name: order_total\n        agg: sum\n        expr: amount\n"
        "\nmetrics:\n  - name: revenue\n    type: simple\n    type_params:\n      measure: order_total\n")
    added = _edit(created, ("append", ("semantic_models", {"name": "orders"}, "measures"),
                            {"name": "order_count", "agg": "count", "expr": "1"}))
    assert _changed(created, added) == ([], ["      - name: order_count\n", "        agg: count\n",
                                             "        expr: '1'\n"])
    assert yaml.safe_load(added)["semantic_models"][0]["measures"][1]["expr"] == "1"


def test_crlf_and_no_final_newline_are_kept() -> None:
    text = "a: 1\r\nb: [x]\r\nc:\r\n  - d\r\ntext: |\r\n  last"
    result = _edit(text, ("append", ("c",), "e"), ("set", ("z",), "multi\nline"))
    # after the block scalar that ends the file its value would gain a line break: the key goes before it
    assert result == "a: 1\r\nb: [x]\r\nc:\r\n  - d\r\n  - e\r\nz: |-\r\n  multi\r\n  line\r\ntext: |\r\n  last"
    assert yaml.safe_load(result)["text"] == "last"
    # inside a list there is no choosing: the block's header says `-` (strip)
    assert _edit("a:\n  - |\n    last", ("append", ("a",), "z")) == "a:\n  - |-\n    last\n  - z"


def test_insert_a_key_at_a_chosen_position_above_the_next_keys_comment() -> None:
    text = "- name: orders\n  description: Orders  # short\n  # how it is built\n  config:\n    materialized: table\n"
    result = _edit(text, ("set", (0, "columns"), [{"name": "id"}]))
    doc = Document(text)
    doc.set((0, "columns"), [{"name": "id"}], after="description")
    assert doc.result() == ("- name: orders\n  description: Orders  # short\n  columns:\n    - name: id\n"
                            "  # how it is built\n  config:\n    materialized: table\n")
    assert result.endswith("  columns:\n    - name: id\n")


def test_remove_takes_the_entrys_comments_and_one_blank_line() -> None:
    text = "a:\n  - x\n\n  # about y\n  - y\n\n  - z\nb: 1\n"
    assert _edit(text, ("remove", ("a", 1))) == "a:\n  - x\n\n  - z\nb: 1\n"
    assert _edit("a:\n  k: 1\nb: 2\n", ("remove", ("a", "k"))) == "a: {}\nb: 2\n"
    doc = Document("a:\n  k: 1\nb: 2\n")
    doc.remove(("a", "k"), empty=None)
    assert doc.result() == "a:\nb: 2\n"


def test_rename_and_comments() -> None:
    doc = Document("dims:\n  'status':   # quoted by choice\n    sql: x\n")
    doc.rename(("dims", "status"), "state")
    doc.add_comment(("dims", "status"), "# layersync: broken — gone")
    assert doc.result() == "dims:\n  # layersync: broken — gone\n  'state':   # quoted by choice\n    sql: x\n"
    doc = Document("a:\n  # one\n  # two\n  k: 1\n")
    assert doc.comment_lines(("a", "k")) == [2, 1]
    doc.remove_line(2)
    assert doc.result() == "a:\n  # one\n  k: 1\n"


def test_commented_values_write_their_comment_above_the_key() -> None:
    result = _edit("dimensions:\n  a: {}\n", ("set", ("dimensions", "b"),
                                               {"description": Commented("From dbt", ("#This description was pulled from dbt.",))}))
    assert result == "dimensions:\n  a: {}\n  b:\n    #This description was pulled from dbt.\n    description: From dbt\n"


def test_a_failed_verification_names_the_file_and_nothing_is_written() -> None:
    doc = Document("a: x\n", "models/x.yml")
    doc.set_source(("a",), "y", "not y")
    with pytest.raises(YamlEditError) as info:
        doc.result("setting a")
    assert info.value.file == "models/x.yml" and "setting a" in info.value.message


def test_invalid_yaml_and_duplicate_keys_name_their_line() -> None:
    with pytest.raises(YamlEditError) as info:
        Document("a: 1\nb: [\n", "f.yml")
    assert info.value.file == "f.yml" and info.value.line is not None
    with pytest.raises(YamlEditError) as info:
        Document("a: 1\na: 2\n")
    assert info.value.line == 2


def test_nothing_to_do_returns_the_same_string() -> None:
    doc = Document(DBT)
    assert doc.result() is DBT
    doc.set(("version",), 2)
    assert doc.result() is DBT


def test_plain_of_nodes_and_of_loaded_data() -> None:
    from ruamel.yaml import YAML

    from bot.yamledit import compose
    assert plain(compose(DBT)) == yaml.safe_load(DBT)
    assert plain(YAML(typ="rt").load(DBT)) == yaml.safe_load(DBT)
    shared = YAML(typ="rt").load("a: &x [1]\nb: *x\n")
    assert plain(shared) == {"a": [1], "b": [1]}
    with pytest.raises(YamlEditError):
        plain(shared, seen={})


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_TEXT, where=st.sampled_from(["replace", "append", "new_key", "flow"]))
def test_any_text_reads_back_and_nothing_else_moves(value: str, where: str) -> None:
    doc = Document(DBT)
    path = {"replace": ("models", 0, "description"), "new_key": ("models", 1, "label"),
            "append": ("models", 1, "columns"), "flow": ("models", 0, "columns", 0, "data_tests")}[where]
    if where in ("append", "flow"):
        doc.append(path, value)
    else:
        doc.set(path, value)
    result = doc.result()
    loaded = yaml.safe_load(result)
    got = loaded["models"][0]["description"] if where == "replace" else loaded["models"][1].get("label") \
        if where == "new_key" else loaded["models"][1]["columns"][-1] if where == "append" else \
        loaded["models"][0]["columns"][0]["data_tests"][-1]
    assert got == value
    removed, _added = _changed(DBT, result)
    assert removed in ([], ["    description: 'Orders'\n"], ["        data_tests: [unique, not_null]\n"])


def test_inner_and_outer_lists_appended_at_one_place_keep_their_nesting() -> None:
    """The last semantic model ends where its `measures:` list does: a measure appended to it and a
    semantic model appended after it go to the same offset, the inner entry first."""
    text = "semantic_models:\n  - name: orders\n    measures:\n      - name: total\n"
    doc = Document(text)
    doc.append(("semantic_models",), {"name": "trial", "measures": [{"name": "n"}]})
    doc.append(("semantic_models", {"name": "orders"}, "measures"), {"name": "count"})
    assert doc.result() == text + "      - name: count\n  - name: trial\n    measures:\n      - name: 'n'\n"


def test_a_document_of_only_comments_gets_its_keys_below_them() -> None:
    doc = Document("# properties for marts\n")
    doc.set(("version",), 2)
    doc.set(("models",), [{"name": "orders"}])
    assert doc.result() == "# properties for marts\nversion: 2\nmodels:\n  - name: orders\n"


def test_update_makes_the_fewest_edits() -> None:
    doc = Document(DBT)
    entry = doc.get(("models", 1))
    entry = {"name": "customers", "description": "People", **{k: v for k, v in entry.items() if k != "name"}}
    entry["config"]["materialized"] = "view"
    entry["columns"].append({"name": "email"})
    doc.update(("models", 1), entry)
    result = doc.result()
    assert _changed(DBT, result) == (["    config: {materialized: table}\n"],
                                     ["    description: People\n", "    config: {materialized: view}\n",
                                      "      - name: email\n"])
    assert result.index("description: People") < result.index("config:")


def test_an_alias_bomb_is_refused_with_a_line_before_anything_is_expanded() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"] + [
        f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 8)] + ["models: []"]
    with pytest.raises(YamlEditError) as info:
        Document("\n".join(lines) + "\n", "bomb.yml")
    assert "aliases expand" in info.value.message and info.value.line is not None and info.value.file == "bomb.yml"
    shared = Document("d: &d {materialized: table}\nm: *d\n")
    assert shared.data == {"d": {"materialized": "table"}, "m": {"materialized": "table"}}

"""Semantic-layer text is data: nothing a field says may become dbt Jinja or extra SQL in a model.

Pure tests (in-memory dbt project, no git, no dbt); the end-to-end proof that a payload never
reaches dbt is in tests/test_push_to_dbt.py.
"""
from __future__ import annotations

import json

import pytest
from sqlglot import exp

from bot.config import parse_config, ref_format_problem
from bot.dbt import model_sql
from bot.dbt.project import MemoryStore
from bot.errors import LayersyncError
from bot.push_to_dbt import branch_name
from bot.semantic.reader import OmniYamlReader
from bot.translate.push import FieldRequest, PushPlanner

MODEL = "models/marts/fct_orders.sql"
PROJECT = {
    "dbt_project.yml": "name: shop\nprofile: shop\nmodel-paths: [models]\n",
    MODEL: "select id as order_id, amount, status\nfrom {{ ref('stg_orders') }}\n",
}
TOKEN_PAYLOAD = "'{{ exceptions.raise_compiler_error(env_var(\"LAYERSYNC_GITHUB_TOKEN\")) }}'"
DROP_PAYLOAD = "'{{ run_query(\"drop schema prod\") }}'"


def plan_one(dimension: str, *names: str, dialect: str = "duckdb"):
    """Plan the named fields (default: `f`) of a view on fct_orders whose dimensions are `dimension`."""
    text = "table_name: fct_orders\ndimensions:\n" + dimension
    view = OmniYamlReader().read(text, "views/orders.view.yaml")
    planner = PushPlanner(MemoryStore(dict(PROJECT)), dialect=dialect)
    return planner.plan([FieldRequest(view, view.fields[n]) for n in (names or ("f",))])


def sql_field(sql: str, name: str = "f", extra: str = "") -> str:
    return f"  {name}:\n    sql: {json.dumps(sql)}\n{extra}"


def refused(result, code: str) -> str:
    """The single skip's reason, after checking nothing at all was written."""
    assert result.pushed == [] and result.files == {}, result.files
    (skip,) = result.skipped
    assert skip.code == code and skip.is_failure, skip
    return skip.reason


@pytest.mark.parametrize("sql", [
    TOKEN_PAYLOAD,                                            # the secret leak
    DROP_PAYLOAD,                                             # the warehouse write
    "${TABLE}.status || '{% do run_query(\"drop schema prod\") %}'",
    "${TABLE}.status || '{# a note #}'",
    "${TABLE}.amount + 1 -- {{ run_query('drop schema prod') }}",
    "${TABLE}.amount + 1 /* {%- do run_query('drop schema prod') -%} */",
    "${TABLE}.\"{{ run_query('drop schema prod') }}\" + 1",
    "${TABLE}.amount + ${ {{ x }} }",
])
def test_jinja_anywhere_in_the_sql_is_refused_with_the_fields_place(sql: str) -> None:
    result = plan_one(sql_field(sql))
    reason = refused(result, "unsafe-sql")
    assert "Jinja" in reason
    assert (result.skipped[0].file, result.skipped[0].line) == ("views/orders.view.yaml", 3)


def test_a_referenced_fields_jinja_counts() -> None:
    result = plan_one(sql_field(DROP_PAYLOAD, "base") + sql_field("${base} || 'x'", "f"), "f")
    reason = refused(result, "unsafe-sql")
    assert "`${base}`" in reason and "views/orders.view.yaml:3" in reason
    assert result.skipped[0].line == 5  # the refused field's own place


@pytest.mark.parametrize("key", ["description", "label"])
def test_jinja_in_text_written_to_the_models_yaml_is_refused(key: str) -> None:
    text = json.dumps("Big {{ env_var('LAYERSYNC_GITHUB_TOKEN') }}")
    extra = f"    {key}: {text}\n"
    reason = refused(plan_one(sql_field("${TABLE}.amount > 10", extra=extra)), "unsafe-sql")
    assert key in reason and "Jinja" in reason


def test_jinja_in_a_plain_columns_description_is_refused() -> None:
    """A field that only documents a column writes YAML only; that YAML is rendered by dbt too."""
    extra = "    description: \"{% do run_query('drop schema prod') %}\"\n"
    refused(plan_one("  amount:\n" + extra, "amount"), "unsafe-sql")


@pytest.mark.parametrize("name", [
    "\"{{ run_query('drop schema prod') }}\"",
    "\"x as y, (select 1) as z\"",
    "\"x -- \"",
    "\"big one\"",
    "a" * 64,
    "é" * 32,                                                 # 64 bytes in UTF-8
])
def test_a_name_that_is_not_a_plain_identifier_within_63_bytes_is_refused(name: str) -> None:
    result = plan_one(f"  {name}:\n    sql: ${{TABLE}}.amount > 10\n", json.loads(name) if name[0] == '"' else name)
    reason = refused(result, "invalid-name")
    assert "identifier" in reason or "63" in reason


def test_a_63_byte_name_is_pushed() -> None:
    name = "a" * 63
    result = plan_one(f"  {name}:\n    sql: ${{TABLE}}.amount > 10\n", name)
    assert [p.column for p in result.pushed] == [name] and result.skipped == []


@pytest.mark.parametrize("sql", [
    "${TABLE}.amount; drop schema prod",
    "${TABLE}.amount; select 1",
])
def test_more_than_one_statement_is_refused(sql: str) -> None:
    reason = refused(plan_one(sql_field(sql)), "unsafe-sql")
    assert "one SQL expression" in reason


@pytest.mark.parametrize("sql", [
    "1 as x, (select 1) as y",
    "1) union all select 1 --",
    "${TABLE}.amount /* */ ) union all select 1 /* */",
])
def test_sql_that_would_close_the_select_item_is_refused(sql: str) -> None:
    result = plan_one(sql_field(sql))
    assert result.pushed == [] and result.files == {} and result.skipped[0].is_failure


def test_comments_never_reach_the_model() -> None:
    """sqlglot keeps comments; a comment is the one piece of an expression that can swallow text."""
    result = plan_one(sql_field("${TABLE}.amount + 1 -- c */ , (select 2) as z --\n"))
    line = result.files[MODEL].splitlines()[0]
    assert line == "select id as order_id, amount, status, amount + 1 as f"
    assert result.pushed[0].dbt_sql == "amount + 1"


def test_an_escape_string_that_decodes_to_jinja_is_refused() -> None:
    """The check runs on what would be written, not only on what the analyst typed."""
    result = plan_one(sql_field("U&'\\007B\\007B x }}'"), dialect="postgres")
    refused(result, "unsafe-sql")


# --- the model editor's own guard, for any caller ---------------------------------------------

TEXT = PROJECT[MODEL]


@pytest.mark.parametrize("expression", [
    exp.Literal.string("{{ run_query('drop schema prod') }}"),
    exp.Literal.string("{% do x %}"),
    exp.Literal.string("{# c #}"),
])
def test_upsert_column_never_writes_new_jinja(expression: exp.Expression) -> None:
    with pytest.raises(model_sql.ModelSqlError, match="Jinja"):
        model_sql.upsert_column(TEXT, "f", exp.Add(this=exp.column("amount"), expression=expression))


@pytest.mark.parametrize("expression", ["amount; drop schema prod", "1 as x, 2", "amount) union all (select 1"])
def test_upsert_column_takes_exactly_one_expression(expression: str) -> None:
    with pytest.raises(model_sql.ModelSqlError):
        model_sql.upsert_column(TEXT, "f", expression)


def test_upsert_column_refuses_a_block_of_statements() -> None:
    block = exp.Block(expressions=[exp.column("amount"), exp.Drop(this=exp.to_table("prod"), kind="SCHEMA")])
    with pytest.raises(model_sql.ModelSqlError, match="one expression"):
        model_sql.upsert_column(TEXT, "f", block)


@pytest.mark.parametrize("name", ["{{ x }}", "x\ny", "a{%b"])
def test_upsert_column_refuses_a_name_that_could_carry_jinja(name: str) -> None:
    with pytest.raises(model_sql.ModelSqlError, match="name"):
        model_sql.upsert_column(TEXT, name, "amount + 1")


def test_upsert_column_drops_comments_of_the_expression() -> None:
    node = exp.Add(this=exp.column("amount"), expression=exp.Literal.number(1))
    node.add_comments(["c */ , (select 2) as z --"])
    assert model_sql.upsert_column(TEXT, "f", node).splitlines()[0] == (
        "select id as order_id, amount, status, amount + 1 as f")


# --- branch names and the settings that make them (fault 10) ---------------------------------

def requests_for(*ids: str) -> list[FieldRequest]:
    out = []
    for field_id in ids:
        view_name, _, name = field_id.partition(".")
        view = OmniYamlReader().read(f"table_name: t\ndimensions:\n  {name}:\n    sql: ${{TABLE}}.a\n",
                                     f"views/{view_name}.view.yaml")
        out.append(FieldRequest(view, view.fields[name]))
    return out


def test_a_long_field_name_gets_a_short_stable_valid_branch() -> None:
    long_a, long_b = "x" * 299 + "a", "x" * 299 + "b"
    branch = branch_name("layersync/push/", requests_for(f"orders.{long_a}"))
    assert branch == branch_name("layersync/push/", requests_for(f"orders.{long_a}"))
    assert branch != branch_name("layersync/push/", requests_for(f"orders.{long_b}"))
    assert branch.startswith("layersync/push/orders-xxx") and len(branch) <= len("layersync/push/") + 80
    assert ref_format_problem(branch) is None
    # Short names keep the branch they always had.
    assert branch_name("layersync/push/", requests_for("orders.is_large")) == "layersync/push/orders-is_large"


@pytest.mark.parametrize("field_id", ["v...w.x", "v.lock.x", "a.b.lock", ".hidden.x", "v.-x"])
def test_any_field_id_gives_a_valid_branch(field_id: str) -> None:
    view, _, name = field_id.rpartition(".")
    request = requests_for(f"{view}.x")[0]
    field = request.field.__class__(view, name, "dimension", request.field.location)
    assert ref_format_problem(branch_name("p/", [FieldRequest(request.view, field)])) is None


@pytest.mark.parametrize("branch, valid", [
    ("layersync/push/x", True), ("a/b.c", True), ("ok.lock.x", True), ("a@b", True), ("é/ü", True),
    ("", False), ("a..b", False), ("a b", False), ("-x", False), ("x/", False), ("/x", False),
    ("a//b", False), ("x.", False), ("a/.b", False), ("a.lock", False), ("a.lock/b", False),
    ("a@{b", False), ("@", False), ("a\\b", False), ("a~b", False), ("a^b", False), ("a:b", False),
    ("a?b", False), ("a*b", False), ("a[b", False), ("a\x01b", False), ("a\x7fb", False),
    ("a/" + "b" * 256, False),
])
def test_ref_format_follows_git_check_ref_format(branch: str, valid: bool) -> None:
    assert (ref_format_problem(branch) is None) is valid


@pytest.mark.parametrize("text, line, words", [
    ("dialect: duckdb\nbranch_prefix: 'bad prefix/'\n", 2, "contains ` `"),
    ("branch_prefix: feature..x/\n", 1, "contains `..`"),
    ("dialect: duckdb\n\nbranch_prefix: -x/\n", 3, "starts with `-`"),
    ("branch_prefix: a.lock/\n", 1, "ends with `.lock`"),
    ("branch_prefix: " + "p" * 101 + "/\n", 1, "longer than 100 bytes"),
    ("branch_prefix: 5\n", 1, "must be str"),
    ("auto_push: 'yes'\n", 1, "must be bool"),
    ("base_branch: 'main~1'\n", 1, "not a git branch name"),
])
def test_settings_git_would_trip_on_are_one_error_with_their_line(text: str, line: int, words: str) -> None:
    with pytest.raises(LayersyncError) as caught:
        parse_config(text)
    assert (caught.value.file, caught.value.line) == ("layersync.yml", line)
    assert words in caught.value.message


def test_good_settings_still_load() -> None:
    config = parse_config("branch_prefix: team/layersync-\nbase_branch: release/1.x\nauto_push: true\n")
    assert (config.branch_prefix, config.base_branch, config.auto_push) == ("team/layersync-", "release/1.x", True)


def test_a_push_plans_a_bounded_number_of_fields_and_says_what_to_do_with_the_rest() -> None:
    from bot.push_to_dbt import bounded_selection
    from bot.selection import Selection
    from bot.semantic.reader import OmniYamlReader
    from bot.translate.push import FieldRequest

    lines = ["table_name: orders", "dimensions:"]
    lines += [f"  d{i}:\n    sql: ${{TABLE}}.amount + {i}" for i in range(12)]
    lines += ["measures:", "  total:\n    sql: ${TABLE}.amount\n    aggregate_type: sum"]
    view = OmniYamlReader().read("\n".join(lines) + "\n", "views/orders.view.yaml")
    selection = Selection([FieldRequest(view, f) for f in view.fields.values()])
    bounded = bounded_selection(selection, limit=10)
    assert [r.field.name for r in bounded.requests] == [f"d{i}" for i in range(10)]
    assert [s.id for s in bounded.skipped] == ["orders.d10", "orders.d11", "orders.total"]
    assert {s.code for s in bounded.skipped} == {"too-many-fields"}
    assert bounded.skipped[0].line is not None and "at most 10 at once" in bounded.skipped[0].reason
    assert all(s.is_failure for s in bounded.skipped)

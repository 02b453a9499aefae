"""The push planner on in-memory dbt projects: pure, no git and no dbt."""
from __future__ import annotations

import pytest

from bot.dbt.project import DbtProject, MemoryStore
from bot.semantic.reader import OmniYamlReader
from bot.translate.push import FieldRequest, PushPlanner

PROJECT = {
    "dbt_project.yml": "name: shop\nprofile: shop\nmodel-paths: [models]\n",
    "models/marts/fct_orders.sql": "{{ config(materialized='table', alias='orders') }}\n"
                                   "select id as order_id, amount_cents / 100.0 as amount, status\n"
                                   "from {{ ref('stg_orders') }}\n",
    "models/marts/dim_customers.sql": "select id as customer_id, name from {{ ref('stg_customers') }}\n",
    "models/marts/_marts__models.yml": "version: 2\n\nmodels:\n  - name: dim_customers  # people\n"
                                       "    columns:\n      - name: customer_id\n",
}


def view(text: str):
    return OmniYamlReader().read(text, "views/v.view.yaml")


def plan(view_text: str, *names: str, files: dict[str, str] | None = None):
    v = view(view_text)
    store = MemoryStore(files or PROJECT)
    return PushPlanner(store).plan([FieldRequest(v, v.fields[n]) for n in names])


def test_model_found_by_config_alias_and_aliases_substituted() -> None:
    result = plan("table_name: analytics.ORDERS\ndimensions:\n  big:\n    sql: ${TABLE}.amount > 10\n"
                  "    description: Big ones\n", "big")
    assert [(p.model, p.action, p.dbt_sql) for p in result.pushed] == [("fct_orders", "added", "amount_cents / 100.0 > 10")]
    assert result.files["models/marts/fct_orders.sql"].splitlines()[1] == (
        "select id as order_id, amount_cents / 100.0 as amount, status, amount_cents / 100.0 > 10 as big")
    # fct_orders had no YAML entry: it joins the folder's models file, the other entry untouched.
    assert result.files["models/marts/_marts__models.yml"] == PROJECT["models/marts/_marts__models.yml"] + (
        "\n  - name: fct_orders\n    columns:\n      - name: big\n        description: Big ones\n")


def test_a_new_folder_gets_a_conventional_models_file() -> None:
    files = {**PROJECT, "models/finance/revenue.sql": "select order_id, amount from {{ ref('fct_orders') }}\n"}
    result = plan("table_name: revenue\ndimensions:\n  cents:\n    sql: ${TABLE}.amount * 100\n", "cents", files=files)
    assert result.files["models/finance/_finance__models.yml"] == (
        "version: 2\nmodels:\n  - name: revenue\n    columns:\n      - name: cents\n")


def test_primary_key_documents_with_unique_and_not_null_without_touching_sql() -> None:
    result = plan("table_name: dim_customers\ndimensions:\n  customer_id:\n    primary_key: true\n", "customer_id")
    assert [(p.action, p.files) for p in result.pushed] == [("documented", ("models/marts/_marts__models.yml",))]
    assert "models/marts/dim_customers.sql" not in result.files
    assert result.files["models/marts/_marts__models.yml"].endswith(
        "      - name: customer_id\n        data_tests:\n          - unique\n          - not_null\n")


def test_a_column_layersync_did_not_write_is_never_replaced() -> None:
    result = plan("table_name: fct_orders\ndimensions:\n  amount:\n    sql: ${TABLE}.status || 'x'\n", "amount")
    assert result.pushed == [] and result.files == {}
    (skip,) = result.skipped
    assert "already has a column `amount`" in skip.reason and (skip.file, skip.line) == ("views/v.view.yaml", 3)


def test_fields_of_one_file_share_one_edit_and_each_is_all_or_nothing() -> None:
    result = plan("table_name: dim_customers\ndimensions:\n  upper_name:\n    sql: upper(${name})\n"
                  "  ghost:\n    sql: ${TABLE}.nope || 'x'\n  lower_name:\n    sql: lower(${name})\n",
                  "upper_name", "ghost", "lower_name")
    assert [p.id for p in result.pushed] == ["v.upper_name", "v.lower_name"]
    assert [s.id for s in result.skipped] == ["v.ghost"]
    assert "models/marts/dim_customers.sql" in result.skipped[0].reason and "nope" in result.skipped[0].reason
    sql = result.files["models/marts/dim_customers.sql"]
    assert "upper(name) as upper_name" in sql and "lower(name) as lower_name" in sql and "nope" not in sql
    assert "ghost" not in result.files["models/marts/_marts__models.yml"]


def test_project_index() -> None:
    project = DbtProject(MemoryStore(PROJECT))
    assert sorted(project.models()) == ["dim_customers", "fct_orders"]
    assert project.find_model('"ORDERS"').name == "fct_orders"
    assert project.find_model("nothing") is None
    assert project.properties_file(project.models()["dim_customers"]) == ("models/marts/_marts__models.yml", True)


def _wide_view(n: int) -> str:
    return "table_name: dim_customers\ndimensions:\n" + "".join(
        f"  f{k}:\n    sql: upper(${{name}}) || '{k}'\n    description: field {k}\n" for k in range(n))


def test_a_models_fields_parse_it_twice_and_its_yaml_is_not_round_tripped(monkeypatch) -> None:
    """Planning N new columns of one model re-parsed the growing model ~4 times per column (N²) and
    round-tripped the YAML through ruamel: now one parse to plan, one to validate, and the YAML
    composed once (the kit's splice), for all of them."""
    from bot.dbt import model_sql, schema_yaml

    loads: list[int] = []
    real_load = model_sql._load
    monkeypatch.setattr(model_sql, "_load", lambda text, dialect: loads.append(1) or real_load(text, dialect))
    documents: list[str] = []
    real_document = schema_yaml.Document
    monkeypatch.setattr(schema_yaml, "Document", lambda text: documents.append(text) or real_document(text))
    result = plan(_wide_view(40), *(f"f{k}" for k in range(40)))
    assert len(result.pushed) == 40 and not result.skipped
    assert len(loads) == 2
    assert len(documents) == 1, "the properties file is composed once for all 40 columns"
    sql = result.files["models/marts/dim_customers.sql"]
    assert sql.startswith("select id as customer_id, name, upper(name) || '0' as f0, ") and "as f39 from" in sql


def test_a_column_its_models_splice_refuses_is_skipped_alone(monkeypatch) -> None:
    from bot.dbt import model_sql

    real = model_sql._validate

    def picky(text: str, names: list[str], dialect: str):
        if "f1" in names:
            raise model_sql.ModelSqlError("the edited model does not project 'f1'")
        return real(text, names, dialect)

    monkeypatch.setattr(model_sql, "_validate", picky)
    result = plan(_wide_view(3), "f0", "f1", "f2")
    assert [p.id for p in result.pushed] == ["v.f0", "v.f2"]
    (skip,) = result.skipped
    assert skip.id == "v.f1" and skip.reason.startswith("models/marts/dim_customers.sql: ") and skip.line == 6
    assert " as f1" not in result.files["models/marts/dim_customers.sql"]
    assert "f1" not in result.files["models/marts/_marts__models.yml"]

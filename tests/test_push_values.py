"""The values check (bot.translate.values): a pushed column, as dbt builds it, against the analyst's SQL
evaluated in the warehouse — on a dbt project with a real macro-built column (issue 13, fault 1) and a
column read through a join (issue 11)."""
from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from bot.dbt.project import DbtProject, DirStore, MemoryStore
from bot.dbt.runner import run_dbt, write_duckdb_profile
from bot.semantic.formats import format_for
from bot.translate import compiled, values
from bot.translate.push import FieldRequest, PushPlanner
from bot.warehouse.duckdb_warehouse import DuckDBWarehouse

MACRO = ("{% macro validate_email(column) %}{{ column }} like '%@%.%' and {{ column }} not like '% %' "
         "and {{ column }} not like '%@%@%'{% endmacro %}\n")
# Shaped like the real case: the mart computes the flag with the macro in its final select.
CUSTOMERS_SQL = """with tr as (
    select * from {{ ref('stg_customers') }}
)

select
    tr.customer_id,
    tr.first_name,
    {{ validate_email('tr.normalized_email') }} as is_valid_email
from tr
"""
DBT = {
    "dbt_project.yml": "name: shop\nprofile: shop\nversion: '1.0'\nmodel-paths: [models]\nseed-paths: [seeds]\n"
                       "macro-paths: [macros]\n",
    "macros/validate_email.sql": MACRO,
    "seeds/raw_customers.csv": "customer_id,email,first_name\n1,a@b.co,Ann\n2,a b@c.co,Bob\n3,nobody,Cy\n"
                               "4,x@y@z.com,Di\n",
    "seeds/raw_orders.csv": "order_id,customer_id,amount\n10,1,5\n11,2,7\n12,3,9\n13,4,11\n14,9,13\n",
    "models/stg_customers.sql": "select customer_id, lower(trim(email)) as normalized_email, first_name\n"
                                "from {{ ref('raw_customers') }}\n",
    "models/customers.sql": CUSTOMERS_SQL,
    "models/orders.sql": "with final as (\n    select * from {{ ref('raw_orders') }}\n)\n\nselect * from final\n",
    # a dbt source over the seeded table, as a project declares the raw tables it reads
    "models/_sources.yml": "version: 2\n\nsources:\n  - name: crm\n    schema: \"{{ target.schema }}\"\n    tables:\n"
                           "      - name: crm_customers\n        identifier: raw_customers\n",
}
CUSTOMERS_VIEW = """schema: marts
table_name: customers
dimensions:
  customer_id:
    primary_key: true
  first_name: {}
  is_valid_email: {}
  has_invalid_email:
    sql: NOT ${marts__customers.is_valid_email}
"""
ORDERS_VIEW = """schema: marts
table_name: orders
dimensions:
  order_id:
    primary_key: true
  customer_id: {}
  customer_email_ok:
    sql: ${marts__customers.is_valid_email}
  customer_greeting:
    sql: "'Dear ' || ${marts__customers.first_name}"
  customer_raw_email:
    sql: ${crm__crm_customers.email}
"""
CRM_VIEW = """schema: crm
table_name: crm_customers
dimensions:
  customer_id:
    primary_key: true
  email: {}
"""
JOIN = """- join_from_view: marts__orders
  join_to_view: marts__customers
  join_type: always_left
  on_sql: ${marts__orders.customer_id} = ${marts__customers.customer_id}
  relationship_type: many_to_one
- join_from_view: marts__orders
  join_to_view: crm__crm_customers
  on_sql: ${marts__orders.customer_id} = ${crm__crm_customers.customer_id}
  relationship_type: many_to_one
"""
FIELDS = ["marts__customers.has_invalid_email", "marts__orders.customer_email_ok", "marts__orders.customer_greeting",
          "marts__orders.customer_raw_email"]


def semantic_model():
    return format_for("omni", "omni").read_model({
        "omni/model.yaml": "{}\n", "omni/relationships.yaml": JOIN,
        "omni/marts/customers.view.yaml": CUSTOMERS_VIEW, "omni/marts/orders.view.yaml": ORDERS_VIEW,
        "omni/crm/crm_customers.view.yaml": CRM_VIEW})


def relation_in(schema: str):
    """Where a view's table is in the warehouse: models in the build's schema, the source by its identifier."""
    return lambda view: f"{schema}.raw_customers" if view.name == "crm__crm_customers" else f"{schema}.{view.model_name}"


def _write(root: Path, files: dict[str, str]) -> Path:
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


# ---------------------------------------------------------------- fast: the query on plain DuckDB tables

def test_a_joined_column_is_checked_through_the_relationship_join() -> None:
    model = semantic_model()
    orders = model.views["marts__orders"]
    check = values.build(orders, orders.fields["customer_greeting"], "customer_greeting", built="dev.orders",
                         relation=lambda view: f"prod.{view.model_name}", semantic=model)
    db = duckdb.connect(":memory:")
    db.execute("create schema prod; create schema dev")
    db.execute("create table prod.customers as select * from (values (1, 'Ann'), (2, 'Bob')) t(customer_id, first_name)")
    db.execute("create table prod.orders as select * from (values (10, 1), (11, 2), (12, 7)) t(order_id, customer_id)")
    db.execute("create table dev.orders as select * from (values (10, 1, 'Dear Ann'), (11, 2, 'Dear Ann'), "
               "(12, 7, null)) t(order_id, customer_id, customer_greeting)")
    result = values.run(check, lambda sql: db.execute(sql).fetchall())
    assert (result.total, result.wrong, result.ok) == (3, 1, False)   # order 11 has Bob's greeting wrong
    db.execute("update dev.orders set customer_greeting = 'Dear Bob' where order_id = 11")
    assert values.run(check, lambda sql: db.execute(sql).fetchall()).ok


def test_a_view_without_a_primary_key_cannot_be_checked() -> None:
    model = format_for("omni", "omni").read_model({
        "omni/model.yaml": "{}\n",
        "omni/marts/orders.view.yaml": "schema: marts\ntable_name: orders\ndimensions:\n  amount: {}\n"
                                       "  double:\n    sql: amount * 2\n"})
    view = model.views["marts__orders"]
    with pytest.raises(values.TranslationError, match="has no primary key"):
        values.build(view, view.fields["double"], "double", built="dev.orders", relation=lambda v: v.model_name)


# ---------------------------------------------------------------- the check step: dbt's compiled SQL

def _compile(model_sql: str) -> str:
    """What dbt compiles a model of DBT to: refs to relation names, the project's macro rendered."""
    import jinja2

    environment = jinja2.Environment()
    macros = environment.from_string(MACRO).module
    return environment.from_string(model_sql).render(
        ref=lambda name: f'"memory"."main"."{name}"', validate_email=macros.validate_email,
        source=lambda s, t: f'"memory"."main"."{t}"')


def _plan():
    model = semantic_model()
    requests = [FieldRequest(model.views[v], model.views[v].fields[f]) for v, f in (i.split(".") for i in FIELDS)]
    return PushPlanner(MemoryStore(DBT), semantic=lambda: model).plan(requests)


def test_the_compiled_columns_compute_the_fields() -> None:
    plan = _plan()
    code = {name: _compile(plan.files[f"models/{name}.sql"]) for name in ("customers", "orders")}
    assert len(plan.edits) == 4 and compiled.problems(plan, code, "duckdb") == []


def test_a_macro_negated_without_parentheses_is_caught_in_the_compiled_sql() -> None:
    """The PR of issue 13 passed its checks with exit 0: dbt compiled it fine. Its meaning did not survive."""
    plan = _plan()
    bare = plan.files["models/customers.sql"].replace("not ({{ validate_email('tr.normalized_email') }})",
                                                      "not {{ validate_email('tr.normalized_email') }}")
    code = {"customers": _compile(bare), "orders": _compile(plan.files["models/orders.sql"])}
    (problem,) = compiled.problems(plan, code, "duckdb")
    assert (problem.id, problem.code) == ("marts__customers.has_invalid_email", "meaning-changed")
    assert problem.is_failure and "not tr.normalized_email like '%@%.%' and" in problem.reason


# ---------------------------------------------------------------- slow: dbt builds prod and the pushed branch

@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    """prod: the project as it is; dev: with the pushed columns, plus `customers_bare`, the mart as the
    push wrote it before the fault was fixed (the macro negated bare). One DuckDB file, two builds."""
    root = tmp_path_factory.mktemp("values")
    model = semantic_model()
    requests = [FieldRequest(model.views[v], model.views[v].fields[f]) for v, f in (i.split(".") for i in FIELDS)]
    plan = PushPlanner(MemoryStore(DBT), semantic=lambda: model).plan(requests)
    pushed = {**DBT, **plan.files}
    negated = "not ({{ validate_email('tr.normalized_email') }}) as has_invalid_email"
    assert negated in pushed["models/customers.sql"], pushed["models/customers.sql"]
    assert "left join {{ source('crm', 'crm_customers') }} as crm_customers" in pushed["models/orders.sql"]
    pushed["models/customers_bare.sql"] = pushed["models/customers.sql"].replace(
        negated, "not {{ validate_email('tr.normalized_email') }} as has_invalid_email")
    database = root / "warehouse.duckdb"
    for schema, files in (("prod", DBT), ("dev", pushed)):
        project = _write(root / schema, files)
        write_duckdb_profile(root / f"profiles-{schema}", "shop", str(database), schema=schema)
        run = run_dbt(["build"], project, root / f"profiles-{schema}")
        assert run.ok, run.error_lines()
    return model, plan, database


@pytest.mark.slow
def test_every_pushed_column_equals_the_analysts_sql_on_the_warehouse(built) -> None:
    model, plan, database = built
    assert plan.skipped == [] and [p.id for p in plan.pushed] == FIELDS
    with DuckDBWarehouse(database) as warehouse:
        results = {}
        for pushed in plan.pushed:
            view_name, _, name = pushed.id.partition(".")
            view = model.views[view_name]
            check = values.build(view, view.fields[name], pushed.column, built=f"dev.{pushed.model}",
                                 relation=relation_in("prod"), semantic=model)
            results[pushed.id] = values.run(check, warehouse.query)
    code = DbtProject(DirStore(database.parent / "dev")).compiled_code(["customers", "orders", "customers_bare"])
    assert compiled.problems(plan, code, "duckdb") == []
    assert [s.id for s in compiled.problems(plan, {**code, "customers": code["customers_bare"]}, "duckdb")] == \
        ["marts__customers.has_invalid_email"]
    assert {i: (r.total, r.wrong) for i, r in results.items()} == {
        "marts__customers.has_invalid_email": (4, 0), "marts__orders.customer_email_ok": (5, 0),
        "marts__orders.customer_greeting": (5, 0), "marts__orders.customer_raw_email": (5, 0)}


@pytest.mark.slow
def test_the_check_flags_a_macro_negated_without_parentheses(built) -> None:
    """`not {{ validate_email(x) }}` renders `not x like .. and x not like ..`: wrong where the first test
    holds and a later one fails (`a b@c.co`, `x@y@z.com`), right elsewhere. The check counts both rows."""
    model, _, database = built
    view = model.views["marts__customers"]
    check = values.build(view, view.fields["has_invalid_email"], "has_invalid_email", built="dev.customers_bare",
                         relation=lambda v: f"prod.{v.model_name}", semantic=model)
    with DuckDBWarehouse(database) as warehouse:
        result = values.run(check, warehouse.query)
        wrong_ids = warehouse.query(
            "select b.customer_id from dev.customers_bare b join prod.customers p using (customer_id) "
            "where b.has_invalid_email is distinct from (not p.is_valid_email) order by 1")
    assert (result.total, result.wrong, result.ok) == (4, 2, False)
    assert wrong_ids == [(2,), (4,)]


# ---------------------------------------------------------------- slow: push-to-dbt's own check step

def _repos(root: Path) -> tuple[Path, Path]:
    import git

    remote = root / "dbt.git"
    git.Repo.init(remote, bare=True, initial_branch="main")
    work = git.Repo.clone_from(remote, root / "dbt")
    _write(Path(work.working_tree_dir), {**DBT, ".gitignore": "target/\nlogs/\n*.duckdb\n"})
    work.git.add("-A")
    work.index.commit("shop")
    work.git.push("origin", "HEAD:refs/heads/main")
    semantic = root / "semantic"
    repo = git.Repo.init(semantic, initial_branch="main")
    _write(semantic, {"omni/model.yaml": "{}\n", "omni/relationships.yaml": JOIN,
                      "omni/marts/customers.view.yaml": CUSTOMERS_VIEW.split("  has_invalid_email:")[0],
                      "omni/marts/orders.view.yaml": ORDERS_VIEW, "omni/crm/crm_customers.view.yaml": CRM_VIEW})
    repo.git.add("-A")
    repo.index.commit("views")
    _write(semantic, {"omni/marts/customers.view.yaml": CUSTOMERS_VIEW})
    repo.git.add("-A")
    repo.index.commit("has_invalid_email")
    return remote, semantic


@pytest.mark.slow
def test_push_to_dbt_reports_a_column_whose_compiled_sql_changes_its_meaning(tmp_path, monkeypatch) -> None:
    """With the fault put back (a macro column taken for an atom), dbt compiles the PR's SQL without a
    word; the check step reads the compiled column and refuses the field instead of opening the PR."""
    from bot.dbt import model_sql
    from bot.forge.local import LocalForge
    from bot.push_to_dbt import PushRequest, run

    remote, semantic = _repos(tmp_path)
    monkeypatch.setattr(model_sql, "_bare_jinja", lambda text: False)
    result = run(PushRequest(semantic_repo=semantic, dbt_repo=remote, semantic_path="omni"),
                 LocalForge(tmp_path / "state.sqlite"))
    assert result.pushed == [] and result.pr is None and result.exit_code == 1
    (skip,) = result.skipped
    assert (skip.id, skip.code) == ("marts__customers.has_invalid_email", "meaning-changed")
    assert "not tr.normalized_email like" in skip.reason

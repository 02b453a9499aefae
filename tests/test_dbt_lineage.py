"""Columns followed through the DAG (bot.dbt.lineage, used by bot.dbt.changes): the faults of issue 13
seen on public projects, each on a small project shaped like the real one."""
from __future__ import annotations

import pytest

from bot.dbt.changes import ProjectChanges, diff_projects, snapshot_project
from bot.dbt.lineage import ModelText, ProjectLineage, normalise_jinja
from bot.dbt import model_sql
from bot.dbt.project import MemoryStore

PROJECT = "name: shop\nconfig-version: 2\nmodel-paths: ['models']\nseed-paths: ['seeds']\n"

SOURCES = """\
version: 2
sources:
  - name: ecom
    schema: raw
    tables:
      - name: raw_orders
      - name: raw_customers
        columns:
          - name: id
          - name: name
"""

RAW_ORDERS_CSV = "id,customer,ordered_at,store_id,subtotal,tax_paid,order_total\n1,2,2024-01-01,3,100,8,108\n"

STG_ORDERS = """\
with source as (

    select * from {{ source('ecom', 'raw_orders') }}

),

renamed as (

    select
        id as order_id,
        store_id as location_id,
        customer as customer_id,
        subtotal,
        {{ cents_to_dollars('order_total') }} as order_total,
        ordered_at
    from source

)

select * from renamed
"""

# jaffle-shop's marts/orders.sql: `select orders.*` from a CTE over the staging model
ORDERS = """\
with

orders as (

    select * from {{ ref('stg_orders') }}

),

compute_booleans as (

    select
        orders.*,
        orders.subtotal > 100 as is_large_order
    from orders

)

select * from compute_booleans
"""

ORDERS_YML = """\
version: 2
models:
  - name: orders
    description: One row per order.
    columns:
      - name: order_id
        description: The order.
        data_tests: [unique, not_null]
      - name: location_id
        description: The location where the order was placed.
        data_tests:
          - relationships:
              to: ref('stg_locations')
              field: location_id
      - name: is_large_order
        description: Over 100.
"""


def project(**files: str | None) -> dict[str, str]:
    base = {
        "dbt_project.yml": PROJECT,
        "seeds/raw_orders.csv": RAW_ORDERS_CSV,
        "models/staging/__sources.yml": SOURCES,
        "models/staging/stg_orders.sql": STG_ORDERS,
        "models/marts/orders.sql": ORDERS,
        "models/marts/orders.yml": ORDERS_YML,
    }
    for path, text in files.items():
        path = path.replace("__", "/").replace("_sql", ".sql").replace("_yml", ".yml")
        if text is None:
            base.pop(path, None)
        else:
            base[path] = text
    return base


def diff(before: dict[str, str], after: dict[str, str], dialect: str = "duckdb") -> ProjectChanges:
    return diff_projects(snapshot_project(MemoryStore(before), dialect=dialect),
                         snapshot_project(MemoryStore(after), dialect=dialect))


def kinds(changes: ProjectChanges) -> list[tuple[str, str, str, str | None]]:
    return [(c.kind, c.model, c.column, c.new_column) for c in changes.column_changes]


# -------------------------------------------------------------------------- the lineage itself


def test_star_expands_through_upstream_models_and_the_seed_behind_a_source() -> None:
    snapshot = snapshot_project(MemoryStore(project()))
    orders = snapshot.models["orders"]
    assert orders.complete
    assert list(orders.columns) == ["order_id", "location_id", "customer_id", "subtotal", "order_total",
                                    "ordered_at", "is_large_order"]
    assert orders.columns["location_id"].in_sql
    assert orders.columns["is_large_order"].resolved == "stg_orders.subtotal > 100"


def test_pass_through_columns_compute_what_they_read() -> None:
    def text(sql: str) -> ModelText:
        return ModelText(sql, model_sql.mask_jinja(sql))

    lineage = ProjectLineage({
        "a": text("select id, amount * 2 as doubled from {{ source('s', 't') }}"),
        "b": text("with x as (select * from {{ ref('a') }}) select x.doubled as twice, id from x"),
    }, "duckdb", external={"source:s.t": ("id", "amount")})
    assert lineage.key("b", "twice") == lineage.key("a", "doubled")
    assert lineage.key("b", "id") == lineage.key("a", "id") != lineage.key("a", "doubled")


def test_jinja_is_compared_by_its_syntax_not_its_spacing() -> None:
    assert normalise_jinja("{{ ref('a') }}") == normalise_jinja('{{ref("a")}}') == normalise_jinja("{{- ref('a') -}}")
    assert normalise_jinja("{{ cents_to_dollars('a') }}") != normalise_jinja("{{ cents_to_dollars('b') }}")


# -------------------------------------------------------------------------- fault 2: YAML-only deletion


def test_deleted_yaml_entry_of_a_column_still_selected_through_star_is_a_doc_change() -> None:
    """jaffle-shop: `location_id`'s entry left orders.yml; the column still comes through `orders.*`."""
    yml = ORDERS_YML.replace("""      - name: location_id
        description: The location where the order was placed.
        data_tests:
          - relationships:
              to: ref('stg_locations')
              field: location_id
""", "")
    changes = diff(project(), project(models__marts__orders_yml=yml))
    assert kinds(changes) == [("description_changed", "orders", "location_id", None),
                              ("tests_changed", "orders", "location_id", None)]
    assert changes.column_changes[0].detail == "description 'The location where the order was placed.' → unset"


def test_column_gone_from_the_upstream_model_is_removed_downstream_too() -> None:
    stg = STG_ORDERS.replace("        store_id as location_id,\n", "")
    changes = diff(project(), project(models__staging__stg_orders_sql=stg))
    assert ("removed", "orders", "location_id", None) in kinds(changes)
    assert ("removed", "stg_orders", "location_id", None) in kinds(changes)


def test_deleted_yaml_entry_behind_a_star_of_unknown_columns_is_no_removal() -> None:
    """`select *` from a source that declares no columns (and no seed stands behind): the SQL says
    nothing, so a lost YAML entry is only a lost doc."""
    files = project(**{"seeds/raw_orders.csv": None})
    files["models/staging/stg_raw.sql"] = "select * from {{ source('ecom', 'raw_orders') }}"
    files["models/staging/stg_raw.yml"] = ("version: 2\nmodels:\n  - name: stg_raw\n    columns:\n"
                                           "      - name: id\n        description: Key.\n")
    after = dict(files, **{"models/staging/stg_raw.yml": "version: 2\nmodels:\n  - name: stg_raw\n"})
    assert kinds(diff(files, after)) == [("description_changed", "stg_raw", "id", None)]


# -------------------------------------------------------------------------- fault 3: pass-through renames


INT_SEATS = """\
select
    account_id,
    licensed_seats as telemetry_licensed_sesats
from {{ source('ecom', 'raw_customers') }}
"""


def test_rename_upstream_is_a_rename_in_the_pass_through_marts() -> None:
    """A typo fixed in an intermediate model, marts selecting the column through (by `*`, and by name)."""
    sources = SOURCES.replace("          - name: name\n",
                              "          - name: name\n          - name: account_id\n          - name: licensed_seats\n")
    before = project(**{
        "models/staging/__sources.yml": sources,
        "models/int/int_seats.sql": INT_SEATS,
        "models/marts/fct_seats.sql": "select * from {{ ref('int_seats') }}",
        "models/marts/fct_seats_named.sql": "select account_id, telemetry_licensed_sesats\nfrom {{ ref('int_seats') }}",
    })
    after = dict(before)
    after["models/int/int_seats.sql"] = INT_SEATS.replace("sesats", "seats")
    after["models/marts/fct_seats_named.sql"] = before["models/marts/fct_seats_named.sql"].replace("sesats", "seats")
    changes = diff(before, after)
    assert kinds(changes) == [
        ("renamed", "fct_seats", "telemetry_licensed_sesats", "telemetry_licensed_seats"),
        ("renamed", "fct_seats_named", "telemetry_licensed_sesats", "telemetry_licensed_seats"),
        ("renamed", "int_seats", "telemetry_licensed_sesats", "telemetry_licensed_seats"),
    ]


# -------------------------------------------------------------------------- fault 4: CTE-level logic


CUSTOMERS = """\
with orders as (
    select * from {{ ref('stg_orders') }}
),

customer_orders as (
    select
        customer_id,
        count(order_id) as number_of_orders,
        min(ordered_at) as first_order
    from orders
    group by 1
)

select
    customer_id,
    number_of_orders,
    first_order
from customer_orders
"""


def test_definition_changed_inside_a_cte_is_an_expression_change() -> None:
    after = CUSTOMERS.replace("count(order_id)", "count(distinct order_id)")
    changes = diff(project(**{"models/marts/customers.sql": CUSTOMERS}),
                   project(**{"models/marts/customers.sql": after}))
    assert kinds(changes) == [("expression_changed", "customers", "number_of_orders", None)]
    assert changes.column_changes[0].detail == (
        "through its CTEs: COUNT(stg_orders.order_id) → COUNT(DISTINCT stg_orders.order_id)")


def test_definition_changed_upstream_reaches_the_pass_through_columns() -> None:
    stg = STG_ORDERS.replace("        subtotal,\n", "        subtotal / 100.0 as subtotal,\n")
    changes = diff(project(), project(models__staging__stg_orders_sql=stg))
    assert ("expression_changed", "stg_orders", "subtotal", None) in kinds(changes)
    downstream = {(c.model, c.column): c.detail for c in changes.column_changes if c.model == "orders"}
    assert set(downstream) == {("orders", "subtotal"), ("orders", "is_large_order")}
    assert downstream[("orders", "subtotal")] == "upstream: stg_orders.subtotal changed"


# -------------------------------------------------------------------------- fault 5: refactors


def test_alias_swaps_and_jinja_spacing_change_nothing() -> None:
    refactored = ORDERS.replace("        orders.*,\n        orders.subtotal > 100",
                                "        o.*,\n        o.subtotal > 100").replace(
        "    from orders\n\n)", "    from orders as o\n\n)").replace("{{ ref('stg_orders') }}", '{{ref("stg_orders")}}')
    stg = STG_ORDERS.replace("{{ cents_to_dollars('order_total') }}", '{{cents_to_dollars("order_total")}}')
    assert refactored != ORDERS
    assert diff(project(), project(models__marts__orders_sql=refactored,
                                   models__staging__stg_orders_sql=stg)).changes == []


def test_a_real_change_of_a_jinja_argument_still_shows() -> None:
    stg = STG_ORDERS.replace("{{ cents_to_dollars('order_total') }}", "{{ cents_to_dollars('subtotal') }}")
    changes = diff(project(), project(models__staging__stg_orders_sql=stg))
    assert ("expression_changed", "stg_orders", "order_total", None) in kinds(changes)
    assert ("expression_changed", "orders", "order_total", None) in kinds(changes)


# -------------------------------------------------------------------------- fault 6: dialect


def test_snowflake_model_reads_with_the_snowflake_dialect() -> None:
    sql = ("select f.value:name::string as tag_name, o.id as order_id\n"
           "from {{ source('ecom', 'raw_orders') }} o, lateral flatten(input => o.tags) f\n")
    files = project(**{"models/staging/stg_tags.sql": sql})
    snapshot = snapshot_project(MemoryStore(files), dialect="snowflake")
    assert not [p for p in snapshot.problems if "stg_tags" in p.file]
    assert set(snapshot.models["stg_tags"].columns) == {"tag_name", "order_id"}
    renamed = dict(files, **{"models/staging/stg_tags.sql": sql.replace("as tag_name", "as tag")})
    assert kinds(diff(files, renamed, "snowflake")) == [("renamed", "stg_tags", "tag_name", "tag")]


# -------------------------------------------------------------------------- what the pull makes of it


ORDERS_VIEW = """\
table_name: orders
dimensions:
  order_id:
    primary_key: true
  location_id:
    description: The location where the order was placed.
  subtotal: {}
measures:
  total_subtotal:
    sql: ${subtotal}
    aggregate_type: sum
"""

CUSTOMERS_VIEW = """\
table_name: customers
dimensions:
  customer_id:
    primary_key: true
  number_of_orders: {}
measures:
  average_orders:
    sql: ${number_of_orders}
    aggregate_type: average
"""

SEATS_VIEW = """\
table_name: fct_seats
dimensions:
  account_id:
    primary_key: true
  telemetry_licensed_sesats: {}
measures:
  total_seats:
    sql: ${telemetry_licensed_sesats}
    aggregate_type: sum
"""


def plan(before: dict[str, str], after: dict[str, str], views: dict[str, str]):
    from bot.translate.pull import plan_pull

    return plan_pull(diff(before, after), views, dbt_commit="abcdef1234567")


def test_pull_marks_nothing_broken_when_only_a_yaml_entry_goes() -> None:
    yml = ORDERS_YML.split("      - name: location_id")[0] + "      - name: is_large_order\n        description: Over 100.\n"
    result = plan(project(), project(models__marts__orders_yml=yml), {"views/orders.view.yaml": ORDERS_VIEW})
    assert result.broken == []
    assert not [n for n in result.notes if n.kind == "problem"]


def test_pull_says_measures_may_change_when_a_cte_changes_their_column() -> None:
    after = CUSTOMERS.replace("count(order_id)", "count(distinct order_id)")
    result = plan(project(**{"models/marts/customers.sql": CUSTOMERS}),
                  project(**{"models/marts/customers.sql": after}), {"views/customers.view.yaml": CUSTOMERS_VIEW})
    assert [(n.kind, n.field) for n in result.notes] == [("altered", "customers.average_orders")]


def test_pull_follows_a_rename_made_upstream_of_the_mart_a_view_reads() -> None:
    sources = SOURCES.replace("          - name: name\n",
                              "          - name: name\n          - name: account_id\n          - name: licensed_seats\n")
    before = project(**{"models/staging/__sources.yml": sources, "models/int/int_seats.sql": INT_SEATS,
                        "models/marts/fct_seats.sql": "select * from {{ ref('int_seats') }}"})
    after = dict(before, **{"models/int/int_seats.sql": INT_SEATS.replace("sesats", "seats")})
    result = plan(before, after, {"views/fct_seats.view.yaml": SEATS_VIEW})
    assert result.broken == [] and not [n for n in result.notes if n.kind == "added"]
    text = result.files["views/fct_seats.view.yaml"]
    assert "telemetry_licensed_seats:" in text and "${telemetry_licensed_seats}" in text


# -------------------------------------------------------------------------- fault 6 end to end: dbt_dialect


def test_pull_and_pr_warnings_read_models_in_the_configured_dbt_dialect(repos, tmp_path) -> None:
    """A Snowflake project (`value:name::string`): pull-from-dbt and the dbt PR warnings parse its
    models as Snowflake, as `dbt_dialect` says, not as DuckDB."""
    import git

    from bot.dbt_pr_warnings import semantic_warnings
    from bot.forge.local import LocalForge
    from bot.pull_from_dbt import PullJob, run

    repos.write_semantic("layersync.yml", "dialect: duckdb\ndbt_dialect: snowflake\n")
    repos.commit_semantic("the warehouse is Snowflake")
    work = git.Repo.clone_from(repos.remote, tmp_path / "dbt-work")
    orders = tmp_path / "dbt-work" / "models/marts/orders.sql"
    orders.write_text(orders.read_text().replace(
        "        orders.status,\n", "        orders.status,\n        orders.status:code::string as status_code,\n", 1))
    work.git.add("-A")
    work.index.commit("status code from the payload")
    work.git.push("origin", "HEAD:main")

    result = run(PullJob(dbt_repo=repos.remote, semantic_repo=repos.semantic, head="main", dry_run=True),
                 LocalForge(repos.state_db))
    assert not [n for n in result.notes if n.kind == "problem"], [n.text for n in result.notes]
    assert [n.field for n in result.notes if n.kind == "added"] == ["orders.status_code"]
    warnings = semantic_warnings(repos.remote, "main~1", "main", repos.semantic)
    assert not [n for n in warnings if n.kind == "problem"], [n.text for n in warnings]


# -------------------------------------------------------------------------- fault 7: models written by macros


SPINE_MODEL = "{{ dbt_utils.date_spine(datepart='day', start_date=\"cast('2024-01-01' as date)\", end_date=\"cast('2024-02-01' as date)\") }}\n"


def test_a_model_that_is_one_macro_call_is_read_from_dbts_compiled_sql() -> None:
    files = project(**{"models/util/dim_dates.sql": SPINE_MODEL})
    statically = snapshot_project(MemoryStore(files))
    assert [p.model for p in statically.problems] == ["dim_dates"]
    manifest = {"nodes": {"model.shop.dim_dates": {
        "resource_type": "model", "name": "dim_dates", "original_file_path": "models/util/dim_dates.sql",
        "compiled_code": "with spine as (select range as date_day from range(date '2024-01-01', "
                         "date '2024-02-01', interval 1 day))\nselect cast(date_day as date) as date_day from spine"}}}
    snapshot = snapshot_project(MemoryStore(files), manifest)
    assert snapshot.problems == ()
    assert list(snapshot.models["dim_dates"].columns) == ["date_day"] and snapshot.models["dim_dates"].complete


def test_an_untouched_unreadable_model_no_view_reads_is_no_problem_row() -> None:
    before = project(**{"models/util/dim_dates.sql": SPINE_MODEL})
    after = dict(before, **{"models/marts/orders.yml": ORDERS_YML.replace("Over 100.", "Subtotal over 100.")})
    result = plan(before, after, {"views/orders.view.yaml": ORDERS_VIEW})
    assert not [n for n in result.notes if n.kind == "problem"]
    read_by_a_view = plan(before, after, {"views/orders.view.yaml": ORDERS_VIEW,
                                          "views/dim_dates.view.yaml": "table_name: dim_dates\ndimensions:\n  date_day: {}\n"})
    assert [n.dbt_file for n in read_by_a_view.notes if n.kind == "problem"] == ["models/util/dim_dates.sql"]


SPINE_MACRO = """\
{% macro day_spine(column_name, days) %}
with spine as (
    select range as day_at from range(date '2024-01-01', date '2024-01-01' + {{ days }}, interval 1 day)
)
select cast(day_at as date) as {{ column_name }} from spine
{% endmacro %}
"""


@pytest.mark.slow
def test_a_touched_macro_model_is_compiled_by_dbt_and_its_rename_followed(tmp_path) -> None:
    """No manifest committed: dbt compiles the touched model (real dbt, in a scratch copy of each revision)."""
    import subprocess

    from bot.dbt.changes import changes_between

    repo = tmp_path / "dbt"
    (repo / "macros").mkdir(parents=True)
    (repo / "models").mkdir()
    (repo / "dbt_project.yml").write_text("name: shop\nprofile: shop\nconfig-version: 2\n")
    (repo / "macros/day_spine.sql").write_text(SPINE_MACRO)
    (repo / "models/dim_dates.sql").write_text("{{ day_spine('date_day', 3) }}\n")

    def commit(message: str) -> str:
        for args in (["add", "-A"], ["commit", "-qm", message], ["rev-parse", "HEAD"]):
            out = subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout
        return out.strip()

    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    base = commit("a date spine")
    (repo / "models/dim_dates.sql").write_text("{{ day_spine('calendar_date', 3) }}\n")
    head = commit("rename the spine's column")

    changes = changes_between(repo, base, head)
    assert changes.problems == []
    assert kinds(changes) == [("renamed", "dim_dates", "date_day", "calendar_date")]
    statically = changes_between(repo, base, head, compile_unreadable=False)
    assert kinds(statically) == [] and [p.model for p in statically.problems] == ["dim_dates"]


def test_a_cte_a_macro_writes_is_no_invalid_sql() -> None:
    """`with {{ incremental_max_date_cte('x') }} events as (...)`: the macro's CTE is unknown, the rest reads."""
    sql = """\
with {{ incremental_max_date_cte('stg_orders') }}

orders as (
    select * from {{ ref('stg_orders') }}
    where ordered_at > (select max_date from max_date)
)

select order_id, subtotal * 2 as doubled from orders
"""
    before = project(**{"models/marts/recent.sql": sql})
    after = project(**{"models/marts/recent.sql": sql.replace("subtotal * 2", "subtotal * 3")})
    assert snapshot_project(MemoryStore(before)).problems == ()
    changes = diff(before, after)
    assert kinds(changes) == [("expression_changed", "recent", "doubled", None)]
    assert snapshot_project(MemoryStore(before)).models["recent"].columns["doubled"].resolved == \
        "stg_orders.subtotal * 2"

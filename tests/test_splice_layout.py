"""New columns are written in the model file's own layout and in the analyst's order (issue 13, fault 12).

The fixtures are shaped like jaffle-shop's marts: CTEs whose select lists are one column per line, and a
final `select * from <last cte>`."""
from __future__ import annotations

import difflib
from pathlib import Path

import git

from bot.dbt import model_sql
from bot.dbt.project import MemoryStore
from bot.gitops import RevisionReader
from bot.selection import select_changed
from bot.semantic.formats import format_for
from bot.translate.push import FieldRequest, PushPlanner

CUSTOMERS_SQL = """with

customers as (

    select * from {{ ref('stg_customers') }}

),

joined as (

    select
        customers.*,

        customer_orders_summary.lifetime_spend,

        case
            when customer_orders_summary.is_repeat_buyer then 'returning'
            else 'new'
        end as customer_type

    from customers

    left join customer_orders_summary
        on customers.customer_id = customer_orders_summary.customer_id

)

select * from joined
"""
VIEW = """# Reference this view as marts__customers
schema: marts
table_name: customers
dimensions:
  customer_id:
    primary_key: true
  lifetime_spend: {}
  customer_type: {}
  spend_band:
    label: Spend band
    sql: |
      CASE
        WHEN ${marts__customers.lifetime_spend} >= 100 THEN 'high'
        WHEN ${marts__customers.lifetime_spend} >= 10 THEN 'mid'
        ELSE 'low'
      END
  is_returning:
    sql: ${marts__customers.customer_type} = 'returning'
  doubled_spend:
    sql: ${marts__customers.lifetime_spend} * 2
"""
NEW = ["spend_band", "is_returning", "doubled_spend"]   # the view file's order, not the alphabet's


def _plan_files(files: dict[str, str], names: list[str] = NEW):
    model = format_for("omni", "omni").read_model({"omni/model.yaml": "{}\n", "omni/marts/customers.view.yaml": VIEW})
    view = model.views["marts__customers"]
    plan = PushPlanner(MemoryStore(files), semantic=lambda: model).plan([FieldRequest(view, view.fields[n]) for n in names])
    assert plan.skipped == []
    return plan


def _plan(sql: str, names: list[str] = NEW) -> str:
    files = {"dbt_project.yml": "name: shop\nprofile: shop\n", "models/customers.sql": sql}
    return _plan_files(files, names).files["models/customers.sql"]


def _added(before: str, after: str) -> list[str]:
    return [line[2:] for line in difflib.ndiff(before.splitlines(), after.splitlines()) if line.startswith("+ ")]


def test_select_star_is_opened_up_one_column_per_line_with_the_case_on_its_lines() -> None:
    after = _plan(CUSTOMERS_SQL)
    assert after == CUSTOMERS_SQL.replace("select * from joined\n", """select
    *,
    case
        when lifetime_spend >= 100 then 'high'
        when lifetime_spend >= 10 then 'mid'
        else 'low'
    end as spend_band,
    customer_type = 'returning' as is_returning,
    lifetime_spend * 2 as doubled_spend
from joined
""")


def test_leading_commas_and_two_space_indents_are_the_files_own() -> None:
    sql = ("with joined as (\n  select\n    customer_id\n    , lifetime_spend\n    , customer_type\n  from c\n)\n\n"
           "select * from joined\n")
    after = _plan(sql)
    assert _added(sql, after) == [
        "select", "  *", "  , case", "    when lifetime_spend >= 100 then 'high'", "    when lifetime_spend >= 10 then 'mid'",
        "    else 'low'", "  end as spend_band", "  , customer_type = 'returning' as is_returning",
        "  , lifetime_spend * 2 as doubled_spend", "from joined"]


def test_a_multi_line_case_is_re_indented_under_an_explicit_list() -> None:
    sql = "select\n    customer_id,\n    lifetime_spend,\n    customer_type\nfrom {{ ref('joined') }}\n"
    after = _plan(sql, ["spend_band"])
    assert after == sql.replace("    customer_type\nfrom", """    customer_type,
    case
        when lifetime_spend >= 100 then 'high'
        when lifetime_spend >= 10 then 'mid'
        else 'low'
    end as spend_band
from""")


def test_a_file_that_writes_its_lists_on_one_line_keeps_them_there() -> None:
    sql = "with joined as (select customer_id, lifetime_spend, customer_type from c)\n\nselect * from joined\n"
    after = _plan(sql, ["spend_band", "is_returning"])
    assert after == sql.replace(
        "select * from joined\n",
        "select *, case when lifetime_spend >= 100 then 'high' when lifetime_spend >= 10 then 'mid' else 'low' end "
        "as spend_band, customer_type = 'returning' as is_returning from joined\n")


def test_the_layout_is_only_whitespace_and_planning_again_changes_nothing() -> None:
    after = _plan(CUSTOMERS_SQL)
    flat = _plan("select * from joined\n")   # no list of the file says how it lays them out: one line
    assert "\n" not in model_sql.column_sql(flat, "spend_band") and "\n" in model_sql.column_sql(after, "spend_band")
    for name in NEW:
        assert model_sql._masked_node(model_sql.column_sql(after, name), "duckdb") == \
            model_sql._masked_node(model_sql.column_sql(flat, name), "duckdb")
    files = {"dbt_project.yml": "name: shop\nprofile: shop\n", "models/customers.sql": CUSTOMERS_SQL}
    files.update(_plan_files(files).files)
    again = _plan_files(files)
    assert again.files == {} and [p.action for p in again.pushed] == ["unchanged"] * 3


def test_the_push_takes_changed_fields_in_the_view_files_order(tmp_path: Path) -> None:
    repo = git.Repo.init(tmp_path, initial_branch="main")
    path = tmp_path / "omni" / "marts" / "customers.view.yaml"
    path.parent.mkdir(parents=True)
    (tmp_path / "omni" / "model.yaml").write_text("{}\n")
    head = VIEW.split("  spend_band:")[0]
    path.write_text(head)
    repo.git.add("-A")
    before = repo.index.commit("view").hexsha
    path.write_text(VIEW)
    repo.git.add("-A")
    after = repo.index.commit("three fields").hexsha
    fmt = format_for("omni", "omni")
    selection = select_changed(RevisionReader(tmp_path, "semantic-layer repo"), after, before, "duckdb", fmt,
                               root="omni")
    assert [r.field.name for r in selection.requests] == NEW


def test_a_multi_line_column_inlined_into_another_is_written_on_one_line() -> None:
    """Found pushing onto jaffle-shop: a CASE the file writes over four lines, inlined as an operand,
    kept its line breaks and the indentation of its own place."""
    sql = ("select\n    order_id,\n    case\n        when order_total >= 30 then 'large'\n        else 'small'\n"
           "    end as order_size\nfrom {{ ref('stg_orders') }}\n")
    out = model_sql.upsert_column(sql, "size_rank", "case when order_size = 'large' then 2 else 1 end")
    assert out == sql.replace("    end as order_size\n", "    end as order_size,\n    case when case when order_total "
                              ">= 30 then 'large' else 'small' end = 'large' then 2 else 1 end as size_rank\n")


def test_a_multi_line_column_of_the_same_push_is_inlined_on_one_line_and_crlf_files_keep_crlf() -> None:
    view = VIEW + "  band_rank:\n    sql: CASE WHEN spend_band = 'high' THEN 1 ELSE 2 END\n"  # the column just written
    model = format_for("omni", "omni").read_model({"omni/model.yaml": "{}\n", "omni/marts/customers.view.yaml": view})
    fields = model.views["marts__customers"]
    sql = CUSTOMERS_SQL.replace("\n", "\r\n")
    files = {"dbt_project.yml": "name: shop\nprofile: shop\n", "models/customers.sql": sql}
    plan = PushPlanner(MemoryStore(files), semantic=lambda: model).plan(
        [FieldRequest(fields, fields.fields[n]) for n in ("spend_band", "band_rank")])
    out = plan.files["models/customers.sql"]
    assert "\n" not in out.replace("\r\n", "")
    assert out.endswith("    end as spend_band,\r\n    case when case when lifetime_spend >= 100 then 'high' when "
                        "lifetime_spend >= 10 then 'mid' else 'low' end = 'high' then 1 else 2 end as band_rank\r\n"
                        "from joined\r\n")

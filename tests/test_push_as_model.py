"""push-to-dbt --as-model: measures materialised as one dbt model, built by dbt and compared with the BI SQL.

The dbt project is the demo's jaffle_shop (seeds, staging, marts) and the semantic model Omni's layout over
it; one real `dbt build` runs for the whole module (the `built` fixture). Everything else is planning and
parsing, in milliseconds."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import duckdb
import git
import pytest
from ruamel.yaml import YAML

from bot.cli import main
from bot.demo.run import ANALYST, OMNI_ORDERS, create_dbt_repo, create_semantic_repo, package_dir
from bot.dbt.project import DbtProject, MemoryStore
from bot.errors import LayersyncError, RepoError
from bot.forge.local import LocalForge
from bot.handlers.commands import Command, CommandError, parse_comment
from bot.handlers.context import Context, Settings
from bot.handlers.router import Event
from bot.push_as_model import ModelPlan, compare, plan_model, same_value
from bot.semantic.formats import format_for
from bot.service import ROUTER
from bot.translate.measure_sql import MeasureUnsupported
from payloads import issue_comment_created

ORDERS = "omni_dbt_marts__orders"
CUSTOMERS = "omni_dbt_marts__customers"
# What the analyst adds to the demo's orders view: a median, a ratio of two measures, a filtered sum.
MEASURES = """  median_amount:
    sql: ${omni_dbt_marts__orders.amount}
    aggregate_type: median
  returned_share:
    sql: ${omni_dbt_marts__orders.returned_count} / NULLIF(${omni_dbt_marts__orders.count}, 0)
  completed_revenue:
    sql: ${omni_dbt_marts__orders.amount}
    aggregate_type: sum
    filters:
      status:
        is: completed
  every_status:
    sql: ${omni_dbt_marts__orders.status}
    aggregate_type: list
"""
WANTED = ["count", "revenue", "returned_count", "median_amount", "returned_share", "completed_revenue"]


def _repos(root: Path) -> tuple[Path, Path]:
    remote = create_dbt_repo(root)
    semantic = create_semantic_repo(root, "omni")
    view = semantic / OMNI_ORDERS
    text = view.read_text()
    view.write_text(text.replace("\ndbt:", MEASURES + "\ndbt:", 1))
    repo = git.Repo(semantic)
    repo.git.add("-A")
    repo.index.commit("analyst: median, returned share, completed revenue, a list", author=ANALYST, committer=ANALYST)
    return remote, semantic


def _argv(remote: Path, semantic: Path, state: Path, *extra: str) -> list[str]:
    return ["push-to-dbt", "--semantic-repo", str(semantic), "--dbt-repo", str(remote), "--state-db", str(state),
            *extra]


def _fields(*names: str) -> list[str]:
    return [arg for name in names for arg in ("--field", f"{ORDERS}.{name}")]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One real run: six measures and a list, by the order's status, the customer's repeat flag (through the
    relationship) and the order month; dbt builds it on a scratch DuckDB and the values are compared."""
    root = tmp_path_factory.mktemp("as_model")
    remote, semantic = _repos(root)
    argv = _argv(remote, semantic, root / "state.sqlite", *_fields(*WANTED, "every_status"), "--as-model",
                 "order_summary", "--group-by", f"{ORDERS}.status", "--group-by", f"{CUSTOMERS}.is_repeat_customer",
                 "--grain", "month", "--json")
    import contextlib
    import io
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    return code, json.loads(out.getvalue()), remote, root


def _file(remote: Path, branch: str, path: str) -> str:
    return (git.Repo(remote).commit(branch).tree / path).data_stream.read().decode()


def _raw_orders() -> list[dict[str, str]]:
    with open(package_dir("data") / "raw_orders.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_the_model_is_built_and_every_group_equals_the_bi_definition(built) -> None:
    code, result, remote, _ = built
    # the list cannot be a number: reported with the reason, so the run exits 1 and the rest is pushed
    assert code == 1
    (skip,) = result["skipped"]
    assert skip["field"] == f"{ORDERS}.every_status" and skip["code"] == "aggregate-type"
    assert skip["file"] == OMNI_ORDERS and skip["line"] > 1
    assert [p["field"] for p in result["pushed"]] == [f"{ORDERS}.{m}" for m in WANTED]
    assert result["as_model"]["checked"] == "built"
    for pushed in result["pushed"]:
        assert pushed["model"] == "order_summary" and pushed["parity"], pushed["field"]
        assert all(row["ok"] for row in pushed["parity"]), pushed["field"]
    parity = {p["field"].split(".")[1]: p["parity"] for p in result["pushed"]}
    orders = _raw_orders()
    # the groups' counts add up to the seed's rows, the returned ones to its returned rows
    assert sum(r["dbt"] for r in parity["count"]) == len(orders)
    returned = sum(o["status"] in ("returned", "return_pending") for o in orders)
    assert sum(r["dbt"] for r in parity["returned_count"]) == returned
    # a filtered count shows 0 where no row of the group passes (every completed group), a filtered sum NULL
    completed_groups = [r for r in parity["returned_count"] if r["group"]["status"] == "completed"]
    assert completed_groups and all(r["dbt"] == 0 and r["bi"] == 0 for r in completed_groups)
    assert all(r["dbt"] is None for r in parity["completed_revenue"] if r["group"]["status"] != "completed")
    assert {tuple(r["group"]) for r in parity["count"]} == {("status", "is_repeat_customer", "order_date_month")}
    months = {r["group"]["order_date_month"] for r in parity["count"]}
    assert months == {o["order_date"][:7] + "-01" for o in orders}


@pytest.mark.slow
def test_the_branch_holds_the_model_its_properties_and_the_uniqueness_test(built) -> None:
    _, result, remote, root = built
    branch = result["branch"]
    assert branch == "layersync/push/model-order_summary" and result["pr"]["created"]
    sql = _file(remote, branch, "models/marts/order_summary.sql")
    assert "FROM {{ ref('orders') }} AS omni_dbt_marts__orders" in sql
    assert "LEFT JOIN {{ ref('customers') }} AS omni_dbt_marts__customers" in sql
    assert sql == result["as_model"]["sql"]
    properties = YAML(typ="safe").load(_file(remote, branch, "models/marts/order_summary.yml"))
    (model,) = properties["models"]
    assert model["name"] == "order_summary" and ORDERS in model["description"]
    assert [c["name"] for c in model["columns"]] == ["status", "is_repeat_customer", "order_date_month", *WANTED]
    assert all(c["description"] for c in model["columns"])
    assert "Is returned" not in model["columns"][0]["description"]
    test = _file(remote, branch, "tests/assert_order_summary_one_row_per_group.sql")
    assert "{{ ref('order_summary') }}" in test and "HAVING" in test
    assert "status, is_repeat_customer, order_date_month" in test.replace("\n  ", " ").replace(",\n", ", ")
    (pr,) = LocalForge(root / "state.sqlite").list_prs(str(remote))
    assert "✓" in pr.body and "order_summary" in pr.body and "every_status" in pr.body


# ---------------------------------------------------------------------------------------------- planning

PROJECT = {
    "dbt_project.yml": "name: shop\nprofile: shop\nmodel-paths: [models]\ntest-paths: [checks]\n",
    "models/marts/orders.sql": "select * from raw_orders\n",
    "models/marts/users.sql": "select * from raw_users\n",
    "models/marts/taken.sql": "select 1 as x\n",
}
VIEW_ORDERS = """# Reference this view as marts__orders
schema: marts
table_name: orders
dimensions:
  order_id:
    primary_key: true
  user_id: {}
  status: {}
  amount: {}
  shipped_at: {}
measures:
  count:
    aggregate_type: count
  total:
    sql: ${marts__orders.amount}
    aggregate_type: sum
"""
VIEW_USERS = """# Reference this view as marts__users
schema: marts
table_name: users
dimensions:
  user_id:
    primary_key: true
  country: {}
measures:
  count:
    aggregate_type: count
"""
VIEW_PRODUCTS = """# Reference this view as marts__products
schema: marts
table_name: products
dimensions:
  product_id:
    primary_key: true
  category: {}
measures:
  count:
    aggregate_type: count
"""
JOIN = """- join_from_view: marts__orders
  join_to_view: marts__users
  on_sql: ${marts__orders.user_id} = ${marts__users.user_id}
  relationship_type: many_to_one
"""


def _model():
    texts = {"omni/model.yaml": "{}\n", "omni/relationships.yaml": JOIN, "omni/marts/orders.view.yaml": VIEW_ORDERS,
             "omni/marts/users.view.yaml": VIEW_USERS, "omni/marts/products.view.yaml": VIEW_PRODUCTS}
    return format_for("omni", "omni").read_model(texts)


def _plan(group_by, measures=("count", "total"), view="marts__orders", name="orders_rollup", grain=None):
    model = _model()
    fields = [model.views[view].fields[m] for m in measures]
    return plan_model(model, fields, group_by, name, DbtProject(MemoryStore(PROJECT)), grain=grain)


def test_the_plan_writes_three_new_files_beside_the_views_model() -> None:
    plan = _plan(["marts__orders.status", "marts__users.country"], grain="week")
    assert sorted(plan.files) == ["checks/assert_orders_rollup_one_row_per_group.sql", "models/marts/orders_rollup.sql",
                                  "models/marts/orders_rollup.yml"]
    assert plan.group_by == ["marts__orders.status", "marts__users.country", "marts__orders.shipped_at:week"]
    assert [(p.column, p.dbt_sql) for p in plan.pushed] == [("count", "COUNT(*)"),
                                                           ("total", "SUM(marts__orders.amount)")]
    assert "DATE_TRUNC('WEEK'" in plan.files["models/marts/orders_rollup.sql"]


def test_a_grain_applies_to_the_time_dimension_the_groupings_name() -> None:
    plan = _plan(["shipped_at"], grain="month")
    assert plan.group_by == ["shipped_at:month"] and [c.name for c in plan.query.dimensions] == ["shipped_at_month"]


@pytest.mark.parametrize("group_by,grain,words,where", [
    (["marts__orders.nope"], None, "has no dimension `nope`", "omni/marts/orders.view.yaml:1:"),
    (["marts__products.category"], None, "relationships.yaml has no join from `marts__orders` to `marts__products`",
     "omni/marts/orders.view.yaml:1:"),
    (["marts__orders.total"], None, "is a measure, not a dimension", "omni/marts/orders.view.yaml:1:"),
])
def test_a_bad_grouping_is_one_error_with_file_and_line(group_by, grain, words, where) -> None:
    with pytest.raises(MeasureUnsupported) as caught:
        _plan(group_by, grain=grain)
    assert words in str(caught.value) and str(caught.value).startswith(where)
    assert "\n" not in str(caught.value)


def test_a_grain_on_a_view_without_a_time_dimension_names_the_view_file() -> None:
    with pytest.raises(LayersyncError, match="view `marts__products` has no time dimension") as caught:
        _plan(["category"], measures=("count",), view="marts__products", grain="month")
    assert str(caught.value).startswith("omni/marts/products.view.yaml:1: --grain month")


def test_a_taken_or_invalid_name_and_measures_of_two_views_are_refused() -> None:
    with pytest.raises(RepoError, match="already exists") as caught:
        _plan(["status"], name="taken")
    assert caught.value.file == "models/marts/taken.sql"
    with pytest.raises(LayersyncError, match="is no dbt model name"):
        _plan(["status"], name="Orders-Rollup")
    model = _model()
    both = [model.views["marts__orders"].fields["count"], model.views["marts__users"].fields["count"]]
    with pytest.raises(LayersyncError, match="measures of one view"):
        plan_model(model, both, ["status"], "x", DbtProject(MemoryStore(PROJECT)))


def test_compare_flags_a_group_whose_value_differs_and_a_group_missing_on_one_side() -> None:
    plan = _plan(["status"], measures=("count",))
    con = duckdb.connect()
    con.execute("create schema marts")
    con.execute("create table marts.orders as select * from (values (1, 'a'), (2, 'a'), (3, 'b')) v(order_id, status)")
    con.execute("create table marts.orders_rollup as select * from (values ('a', 2), ('c', 1)) v(status, count)")

    class Warehouse:
        def query(self, sql):
            return con.execute(sql).fetchall()

    relations = {"orders": ("marts", "orders"), "orders_rollup": ("marts", "orders_rollup")}
    rows = compare(Warehouse(), plan, _model(), relations)["marts__orders.count"]
    assert [(r.group, r.dbt, r.bi, r.ok) for r in rows] == [
        ({"status": "a"}, 2, 2, True), ({"status": "b"}, None, 1, False), ({"status": "c"}, 1, None, False)]
    assert same_value(0.1 + 0.2, 0.3) and not same_value(None, 0) and same_value(None, None)
    assert isinstance(plan, ModelPlan)


# ---------------------------------------------------------------------------------------------- the CLI

def test_cli_bad_inputs_are_one_line_with_file_and_line(tmp_path, capsys) -> None:
    remote, semantic = _repos(tmp_path)
    state = tmp_path / "state.sqlite"
    cases = [
        (["--group-by", f"{ORDERS}.nope"], f"{OMNI_ORDERS}:1: group-by `{ORDERS}.nope`"),
        (["--group-by", "omni_dbt_marts__nowhere.x"], f"{OMNI_ORDERS}:1: group-by `omni_dbt_marts__nowhere.x`"),
        (["--group-by", f"{ORDERS}.status", "--grain", "month", "--field", f"{CUSTOMERS}.count"],
         "omni_dbt_marts/customers.view.yaml:1: --grain month: view `omni_dbt_marts__customers` has no time "
         "dimension"),
    ]
    for extra, words in cases:
        fields = [] if "--field" in extra else _fields("count")
        code = main(_argv(remote, semantic, state, *fields, "--as-model", "x", *extra))
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and words in err, err
    assert main(_argv(remote, semantic, state, "--group-by", f"{ORDERS}.status")) == 2
    assert "--group-by and --grain go with --as-model NAME" in capsys.readouterr().err
    assert LocalForge(state).list_prs(str(remote)) == []


# ---------------------------------------------------------------------------------------------- comments

@pytest.mark.parametrize("body,expected", [
    (f"/push-to-dbt {ORDERS}.revenue as model revenue_by_status by {ORDERS}.status",
     Command("push-to-dbt", (f"{ORDERS}.revenue",), "revenue_by_status", (f"{ORDERS}.status",))),
    (f"/push-to-dbt as model monthly by {ORDERS}.status, {CUSTOMERS}.is_repeat_customer, month",
     Command("push-to-dbt", (), "monthly", (f"{ORDERS}.status", f"{CUSTOMERS}.is_repeat_customer"), "month")),
    ("/layersync push-to-dbt a.b as model m by a.c:week grain year",
     Command("push-to-dbt", ("a.b",), "m", ("a.c:week",), "year")),
    ("/push-to-dbt as model weekly grain week", Command("push-to-dbt", (), "weekly", (), "week")),
])
def test_the_comment_command_parses(body, expected) -> None:
    assert parse_comment(body) == [expected]


@pytest.mark.parametrize("body,words", [
    ("/push-to-dbt a.b as model", "write `as model NAME by VIEW.DIM,...`"),
    ("/push-to-dbt as model Bad by a.b", "is no dbt model name"),
    ("/push-to-dbt as model m", "say what `m` is grouped by"),
    ("/push-to-dbt as model m by status", "`status` is not a dimension to group by"),
    ("/push-to-dbt as model m by a.b grain hour", "`hour` is no time grain"),
])
def test_a_wrong_comment_command_gets_the_reason(body, words) -> None:
    (parsed,) = parse_comment(body)
    assert isinstance(parsed, CommandError) and words in parsed.problem
    assert "as model NAME by" in parsed.reply()          # the usage lists the form


def test_a_comment_with_a_bad_grouping_is_answered_with_the_one_line(tmp_path) -> None:
    remote, semantic = _repos(tmp_path)
    forge = LocalForge(tmp_path / "state.sqlite")
    pr, _ = forge.open_or_update_pr(str(semantic), head="main", base="main", title="t", body="b")
    ctx = Context(forge, Settings(dbt_repo=str(remote), semantic_repo=str(semantic)))
    body = f"/push-to-dbt {ORDERS}.count as model m by {ORDERS}.nope"
    payload = issue_comment_created(repo=str(semantic), number=pr.number, body=body, is_pr=False)
    ROUTER.dispatch(Event("issue_comment", payload, "delivery-1"), ctx)
    (reply,) = forge.list_comments(str(semantic), pr.number)
    assert f"{OMNI_ORDERS}:1: group-by `{ORDERS}.nope`" in reply.body and "Nothing was pushed" in reply.body
    assert forge.list_prs(str(remote)) == []


def test_a_rerun_changes_nothing_and_the_result_says_not_checked(tmp_path, capsys) -> None:
    """With `dbt_check: false` nothing is built (so this stays fast): the files land, and the same command
    again adds no commit and updates no PR."""
    remote, semantic = _repos(tmp_path)
    settings = semantic / "layersync.yml"
    settings.write_text(settings.read_text() + "dbt_check: false\n")
    repo = git.Repo(semantic)
    repo.git.add("-A")
    repo.index.commit("no dbt check", author=ANALYST, committer=ANALYST)
    argv = _argv(remote, semantic, tmp_path / "state.sqlite", *_fields("count", "revenue"), "--as-model", "by_status",
                 "--group-by", f"{ORDERS}.status", "--json")
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["as_model"]["checked"] == "not checked" and first["commit"] and first["pr"]["created"]
    assert all("parity" not in p for p in first["pushed"])
    assert main(argv) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["commit"] is None and not second["pr"]["created"] and "already up to date" in second["message"]
    (pr,) = LocalForge(tmp_path / "state.sqlite").list_prs(str(remote))
    assert "Not checked with dbt" in pr.body


@pytest.mark.slow
def test_a_project_for_another_warehouse_gets_the_static_check_and_says_so(tmp_path, capsys) -> None:
    remote, semantic = _repos(tmp_path)
    settings = semantic / "layersync.yml"
    settings.write_text(settings.read_text() + "dbt_dialect: snowflake\n")
    repo = git.Repo(semantic)
    repo.git.add("-A")
    repo.index.commit("the dbt project is Snowflake's", author=ANALYST, committer=ANALYST)
    argv = _argv(remote, semantic, tmp_path / "state.sqlite", *_fields("count", "median_amount"), "--as-model",
                 "by_status", "--group-by", f"{ORDERS}.status", "--json")
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["as_model"]["checked"] == "dbt compile only" and all("parity" not in p for p in result["pushed"])
    assert "MEDIAN(omni_dbt_marts__orders.amount)" in result["as_model"]["sql"]    # Snowflake's own median
    (pr,) = LocalForge(tmp_path / "state.sqlite").list_prs(str(remote))
    assert "Only a static check ran" in pr.body


def test_a_group_that_differs_fails_the_run_and_shows_in_the_json() -> None:
    from bot.push_as_model import AsModelResult, ParityRow, format_text
    from bot.translate.push import PushedField

    pushed = PushedField(f"{ORDERS}.count", OMNI_ORDERS, 34, "m", "count", "added", "count", "COUNT(*)", None, ())
    result = AsModelResult(semantic_commit="abc", pushed=[pushed], model="m", parity={pushed.id: [
        ParityRow({"status": "a"}, 2, 2, True), ParityRow({"status": "b"}, 1, 3, False)]})
    assert result.exit_code == 1
    assert result.to_json()["pushed"][0]["parity"][1] == {"group": {"status": "b"}, "dbt": 1, "bi": 3, "ok": False}
    assert "parity ✗ 1 of 2 group(s) differ" in format_text(result) and "status=b: dbt 1 / BI 3" in format_text(result)
    result.parity[pushed.id] = result.parity[pushed.id][:1]
    assert result.exit_code == 0


@pytest.mark.parametrize("output,expected", [
    ({"type": "duckdb", "path": "warehouse.duckdb"}, "PROJECT/warehouse.duckdb"),    # relative: dbt's cwd
    ({"type": "duckdb", "path": "/data/wh.duckdb"}, "/data/wh.duckdb"),
    ({"type": "duckdb", "path": ":memory:"}, None),
    ({"type": "duckdb", "path": "md:analytics"}, None),
    ({"type": "postgres", "host": "db"}, None),
])
def test_values_are_compared_on_a_duckdb_file_the_profile_names(tmp_path, output, expected) -> None:
    from bot.push_as_model import _duckdb_database

    (tmp_path / "profiles.yml").write_text(json.dumps({"shop": {"target": "ci", "outputs": {"ci": output}}}))
    found = _duckdb_database(tmp_path, "shop", Path("/srv/PROJECT"))
    assert (str(found).replace("/srv/", "") if found else None) == expected
    assert _duckdb_database(tmp_path, "other_profile", Path("/srv")) is None

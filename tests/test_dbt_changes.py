"""Tests for bot.dbt.changes: what changed in a dbt project between two revisions, from its files."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from bot.dbt.changes import (
    ColumnChange,
    ColumnInfo,
    ModelChange,
    ProjectChanges,
    changes_between,
    describe,
    diff_projects,
    snapshot_project,
)
from bot.dbt.project import MemoryStore

JAFFLE = Path(__file__).resolve().parent.parent / "bot" / "demo" / "jaffle_shop"

PROJECT = "name: shop\nconfig-version: 2\nmodel-paths: ['models']\n"

CUSTOMERS_SQL = """\
with source as (

    select * from {{ ref('raw_customers') }}

),

renamed as (

    select
        id as customer_id,
        first_name,
        last_name
    from source

)

select * from renamed
"""

CUSTOMERS_YML = """\
version: 2

models:
  - name: customers
    description: One row per customer.
    columns:
      - name: customer_id
        description: Primary key of the customer.
        data_tests:
          - unique
          - not_null
      - name: first_name
        description: First name.
      - name: last_name
        description: Last initial.
"""

ORDERS_SQL = """\
select
    id as order_id,
    user_id as customer_id,
    status
from {{ ref('raw_orders') }}
"""

ORDERS_YML = """\
version: 2

models:
  - name: orders
    columns:
      - name: order_id
        data_tests: [unique, not_null]
      - name: status
        description: Order status.
"""


def files(**overrides: str | None) -> dict[str, str]:
    """The base project; keyword names are short aliases for its files, None deletes a file."""
    paths = {
        "customers_sql": "models/customers.sql",
        "customers_yml": "models/_customers.yml",
        "orders_sql": "models/orders.sql",
        "orders_yml": "models/_orders.yml",
    }
    result = {
        "dbt_project.yml": PROJECT,
        paths["customers_sql"]: CUSTOMERS_SQL,
        paths["customers_yml"]: CUSTOMERS_YML,
        paths["orders_sql"]: ORDERS_SQL,
        paths["orders_yml"]: ORDERS_YML,
    }
    for key, text in overrides.items():
        path = paths.get(key, key)
        if text is None:
            result.pop(path, None)
        else:
            result[path] = text
    return result


def diff(before: dict[str, str], after: dict[str, str], **kwargs: object) -> ProjectChanges:
    return diff_projects(snapshot_project(MemoryStore(before), **kwargs),
                         snapshot_project(MemoryStore(after), **kwargs))


def kinds(changes: ProjectChanges) -> list[tuple[str, str, str | None, str | None]]:
    out = []
    for change in changes.changes:
        if isinstance(change, ModelChange):
            out.append((change.kind, change.model, change.new_model, None))
        else:
            out.append((change.kind, change.model, change.column, change.new_column))
    return out


# --------------------------------------------------------------------------
# Snapshot
# --------------------------------------------------------------------------


def test_snapshot_reads_final_select_through_ctes_and_merges_yaml() -> None:
    snapshot = snapshot_project(MemoryStore(files()))
    assert snapshot.problems == ()
    customers = snapshot.models["customers"]
    assert customers.complete and customers.sql_ok
    assert list(customers.columns) == ["customer_id", "first_name", "last_name"]
    key = customers.columns["customer_id"]
    assert key == ColumnInfo(
        model="customers", name="customer_id", expression="id", description="Primary key of the customer.",
        data_type=None, tests=("not_null", "unique"), accepted_values=None, meta={},
        file="models/customers.sql", line=10, yaml_file="models/_customers.yml", yaml_line=7,
    )
    orders = snapshot.models["orders"]
    assert orders.columns["customer_id"].expression == "user_id"
    assert orders.columns["order_id"].tests == ("not_null", "unique")


def test_expression_is_normalised_and_keeps_jinja() -> None:
    before = "select Coalesce( a ,0)   AS x, {{ dbt_utils.safe_add(['a', 'b']) }} as y from t"
    after = "select\n  COALESCE(a, 0) as x,\n  {{ dbt_utils.safe_add(['a', 'b']) }} as y\nfrom t"
    shots = [snapshot_project(MemoryStore(files(orders_sql=sql, orders_yml=None))) for sql in (before, after)]
    columns = shots[1].models["orders"].columns
    assert columns["x"].expression == "COALESCE(a, 0)"
    assert columns["y"].expression == "{{ dbt_utils.safe_add(['a', 'b']) }}"
    assert diff_projects(*shots).changes == []


def test_jinja_inside_a_string_literal_counts() -> None:
    def sql(var: str) -> str:
        return f"select id as order_id, status = '{{{{ var(\"{var}\") }}}}' as is_open from t"

    changes = diff(files(orders_sql=sql("open1")), files(orders_sql=sql("open2")))
    assert kinds(changes) == [("expression_changed", "orders", "is_open", None)]
    assert changes.changes[0].detail == """status = '{{ var("open1") }}' → status = '{{ var("open2") }}'"""


def test_star_from_table_and_jinja_loop_leave_columns_to_yaml() -> None:
    loop = """\
{% set methods = ['card', 'cash'] %}
select
    order_id,
    {% for m in methods %}
    sum(case when method = '{{ m }}' then amount end) as {{ m }}_amount,
    {% endfor %}
    sum(amount) as amount
from {{ ref('payments') }}
group by 1
"""
    yml = ORDERS_YML + "      - name: card_amount\n        description: Paid by card.\n"
    snapshot = snapshot_project(MemoryStore(files(orders_sql=loop, orders_yml=yml,
                                                  customers_sql="select * from {{ ref('raw') }}")))
    orders = snapshot.models["orders"]
    assert not orders.complete
    assert orders.columns["card_amount"].expression is None
    assert orders.columns["card_amount"].file == "models/_orders.yml"
    assert orders.columns["amount"].expression == "SUM(amount)"
    customers = snapshot.models["customers"]
    assert not customers.complete and customers.columns["customer_id"].expression is None


# --------------------------------------------------------------------------
# Columns
# --------------------------------------------------------------------------


def test_new_column() -> None:
    sql = ORDERS_SQL.replace("    status\n", "    status,\n    amount / 100.0 as amount_dollars\n")
    changes = diff(files(), files(orders_sql=sql))
    assert kinds(changes) == [("added", "orders", "amount_dollars", None)]
    change = changes.changes[0]
    assert isinstance(change, ColumnChange)
    assert change.after is not None and change.after.expression == "amount / 100.0"
    assert (change.file, change.line) == ("models/orders.sql", 5)
    assert "amount / 100.0" in describe(change)


def test_rename_by_alias_through_jinja_ref_and_ctes() -> None:
    sql = CUSTOMERS_SQL.replace("id as customer_id", "id as customer_key")
    yml = CUSTOMERS_YML.replace("name: customer_id", "name: customer_key")
    changes = diff(files(), files(customers_sql=sql, customers_yml=yml))
    assert kinds(changes) == [("renamed", "customers", "customer_id", "customer_key")]
    change = changes.changes[0]
    assert change.before.expression == change.after.expression == "id"
    assert change.before.description == change.after.description == "Primary key of the customer."
    assert (change.file, change.line) == ("models/customers.sql", 10)
    assert "customer_id → customer_key" in change.detail


def test_rename_of_a_bare_column_reference() -> None:
    before = files(orders_sql="select customer_id, status from {{ ref('stg_orders') }}")
    after = files(orders_sql="select customer_id as cust_id, status from {{ ref('stg_orders') }}")
    assert kinds(diff(before, after)) == [("renamed", "orders", "customer_id", "cust_id")]


def test_rename_with_yaml_left_behind_is_still_a_rename() -> None:
    """The YAML entry of the old name is a stale doc: the SQL says the column is gone, and the
    new name lost its description (which the PR should say)."""
    sql = ORDERS_SQL.replace("user_id as customer_id", "user_id as buyer_id")
    yml = ORDERS_YML + "      - name: customer_id\n        description: Who ordered.\n"
    changes = diff(files(orders_yml=yml), files(orders_sql=sql, orders_yml=yml))
    assert kinds(changes) == [
        ("renamed", "orders", "customer_id", "buyer_id"),
        ("description_changed", "orders", "customer_id", "buyer_id"),
    ]
    assert changes.changes[1].detail == "description 'Who ordered.' → unset"


def test_renamed_column_with_its_description_moved_and_changed() -> None:
    sql = CUSTOMERS_SQL.replace("id as customer_id", "id as customer_key")
    yml = CUSTOMERS_YML.replace("name: customer_id", "name: customer_key").replace(
        "Primary key of the customer.", "Surrogate key of the customer.")
    changes = diff(files(), files(customers_sql=sql, customers_yml=yml))
    assert kinds(changes) == [
        ("renamed", "customers", "customer_id", "customer_key"),
        ("description_changed", "customers", "customer_id", "customer_key"),
    ]
    described = changes.changes[1]
    assert described.before.description == "Primary key of the customer."
    assert described.after.description == "Surrogate key of the customer."
    assert (described.file, described.line) == ("models/_customers.yml", 7)


def test_ambiguous_rename_is_not_guessed() -> None:
    before = files(orders_sql="select id as a, id as b, status from t")
    after = files(orders_sql="select id as c, status from t")
    assert kinds(diff(before, after)) == [
        ("removed", "orders", "a", None), ("removed", "orders", "b", None), ("added", "orders", "c", None),
    ]
    before = files(orders_sql="select id as a, status from t")
    after = files(orders_sql="select id as b, id as c, status from t")
    assert kinds(diff(before, after)) == [
        ("removed", "orders", "a", None), ("added", "orders", "b", None), ("added", "orders", "c", None),
    ]


def test_same_alias_new_expression() -> None:
    sql = ORDERS_SQL.replace("user_id as customer_id", "coalesce(user_id, -1) as customer_id")
    changes = diff(files(), files(orders_sql=sql))
    assert kinds(changes) == [("expression_changed", "orders", "customer_id", None)]
    assert changes.changes[0].detail == "user_id → COALESCE(user_id, -1)"


def test_removed_column() -> None:
    sql = ORDERS_SQL.replace("    user_id as customer_id,\n", "")
    changes = diff(files(), files(orders_sql=sql))
    assert kinds(changes) == [("removed", "orders", "customer_id", None)]
    change = changes.changes[0]
    assert change.after is None and (change.file, change.line) == ("models/orders.sql", 3)


def test_description_change_and_rewrap_is_not_one() -> None:
    yml = CUSTOMERS_YML.replace("description: First name.", "description: Given name.")
    changes = diff(files(), files(customers_yml=yml))
    assert kinds(changes) == [("description_changed", "customers", "first_name", None)]
    assert changes.changes[0].detail == "description 'First name.' → 'Given name.'"
    assert (changes.changes[0].file, changes.changes[0].line) == ("models/_customers.yml", 12)
    folded = CUSTOMERS_YML.replace("description: First name.", "description: >\n          First\n          name.")
    assert diff(files(), files(customers_yml=folded)).changes == []


def test_data_type_change() -> None:
    typed = ORDERS_YML.replace("      - name: status\n", "      - name: status\n        data_type: varchar\n")
    retyped = typed.replace("data_type: varchar", "data_type: integer")
    upper = typed.replace("data_type: varchar", "data_type: VARCHAR")
    changes = diff(files(orders_yml=typed), files(orders_yml=retyped))
    assert kinds(changes) == [("type_changed", "orders", "status", None)]
    assert changes.changes[0].detail == "data_type varchar → integer"
    assert diff(files(orders_yml=typed), files(orders_yml=upper)).changes == []


def test_tests_added() -> None:
    yml = CUSTOMERS_YML.replace(
        "      - name: first_name\n",
        "      - name: first_name\n        tests:\n          - unique\n          - not_null\n")
    changes = diff(files(), files(customers_yml=yml))
    assert kinds(changes) == [("tests_changed", "customers", "first_name", None)]
    assert changes.changes[0].detail == "tests added: not_null, unique"
    assert changes.changes[0].after.tests == ("not_null", "unique")


@pytest.mark.parametrize("spelling", [
    "          - accepted_values:\n              values: [{values}]\n",
    "          - accepted_values:\n              arguments:\n                values: [{values}]\n",
])
def test_accepted_values_changed(spelling: str) -> None:
    def yml(values: str) -> str:
        return ORDERS_YML + "        data_tests:\n" + spelling.format(values=values)

    before, after = yml("'placed', 'shipped'"), yml("'placed', 'shipped', 'returned'")
    snapshot = snapshot_project(MemoryStore(files(orders_yml=before)))
    assert snapshot.models["orders"].columns["status"].accepted_values == ("placed", "shipped")
    changes = diff(files(orders_yml=before), files(orders_yml=after))
    assert kinds(changes) == [("tests_changed", "orders", "status", None)]
    assert changes.changes[0].detail == "accepted_values: +returned"
    assert changes.changes[0].after.accepted_values == ("placed", "shipped", "returned")


def test_accepted_values_respelled_for_dbt_1_10_is_no_change() -> None:
    old = ORDERS_YML + "        tests:\n          - accepted_values:\n              values: ['a', 'b']\n"
    new = ORDERS_YML + ("        data_tests:\n          - accepted_values:\n              arguments:\n"
                        "                values: ['b', 'a']\n")
    assert diff(files(orders_yml=old), files(orders_yml=new)).changes == []


def test_meta_and_config_meta() -> None:
    both = CUSTOMERS_YML.replace(
        "        description: First name.\n",
        "        description: First name.\n        meta: {pii: true, owner: sales}\n"
        "        config:\n          meta: {owner: crm}\n")
    snapshot = snapshot_project(MemoryStore(files(customers_yml=both)))
    assert snapshot.models["customers"].columns["first_name"].meta == {"pii": True, "owner": "crm"}

    moved = CUSTOMERS_YML.replace(
        "        description: First name.\n",
        "        description: First name.\n        config:\n          meta: {pii: true, owner: crm}\n")
    assert diff(files(customers_yml=both), files(customers_yml=moved)).changes == []

    changed = moved.replace("owner: crm", "owner: marketing")
    changes = diff(files(customers_yml=both), files(customers_yml=changed))
    assert kinds(changes) == [("meta_changed", "customers", "first_name", None)]
    assert changes.changes[0].detail == 'meta owner: "crm" → "marketing"'


def test_yaml_only_column_of_a_star_model() -> None:
    """Behind `select * from <table>` of unknown columns only the YAML knows them: a new entry is a
    new column; a lost entry is a lost doc, not a removed column (issue 13: the SQL still selects `*`)."""
    star = files(orders_sql="select * from {{ source('shop', 'orders') }}")
    yml = ORDERS_YML + "      - name: placed_at\n        description: When.\n"
    changes = diff(star, {**star, "models/_orders.yml": yml})
    assert kinds(changes) == [("added", "orders", "placed_at", None)]
    assert changes.changes[0].detail == "documented in models/_orders.yml"
    assert kinds(diff({**star, "models/_orders.yml": yml}, star)) == [("description_changed", "orders", "placed_at", None)]


def test_columns_that_may_come_through_a_star_are_not_claimed_removed() -> None:
    explicit = files(orders_sql="select id, status from {{ source('shop', 'orders') }}", orders_yml=None)
    star = files(orders_sql="select * from {{ source('shop', 'orders') }}", orders_yml=None)
    assert diff(explicit, star).changes == []
    before = files(orders_sql="select *, a + b as c from {{ source('shop', 'orders') }}", orders_yml=None)
    after = files(orders_sql="select *, a + b as d from {{ source('shop', 'orders') }}", orders_yml=None)
    assert kinds(diff(before, after)) == [("renamed", "orders", "c", "d")]


def test_star_exclude_and_set_operations() -> None:
    sql = """\
with final as (select id as order_id, status, secret from {{ ref('raw') }})
select * exclude (secret) from final
"""
    orders = snapshot_project(MemoryStore(files(orders_sql=sql))).models["orders"]
    assert list(orders.columns) == ["order_id", "status"] and orders.complete

    union = "select id as order_id, status from a\nunion all\nselect id, status from b"
    changed = "select id as order_id, status from a\nunion all\nselect id, lower(status) from b"
    changes = diff(files(orders_sql=union), files(orders_sql=changed))
    assert kinds(changes) == [("expression_changed", "orders", "status", None)]
    assert changes.changes[0].detail == "status | status → status | LOWER(status)"


def test_manifest_is_preferred_for_types_descriptions_and_meta() -> None:
    def manifest(data_type: str) -> dict:
        return {"nodes": {
            "model.shop.orders": {
                "resource_type": "model", "name": "orders", "original_file_path": "models/orders.sql",
                "columns": {"status": {"name": "status", "description": "Rendered {{ doc }} text.",
                                       "data_type": data_type, "meta": {"owner": "ops"}}},
            },
            "test.shop.unique_orders_order_id": {"resource_type": "test", "name": "unique_orders_order_id"},
        }}

    status = snapshot_project(MemoryStore(files()), manifest(data_type="varchar")).models["orders"].columns["status"]
    assert status.description == "Rendered {{ doc }} text."
    assert (status.data_type, status.meta) == ("varchar", {"owner": "ops"})
    assert status.expression == "status"
    changes = diff_projects(snapshot_project(MemoryStore(files()), manifest("varchar")),
                            snapshot_project(MemoryStore(files()), manifest("bigint")))
    assert kinds(changes) == [("type_changed", "orders", "status", None)]


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------


def test_model_removed() -> None:
    changes = diff(files(), files(orders_sql=None))
    assert kinds(changes) == [("model_removed", "orders", None, None)]
    assert changes.changes[0].file == "models/orders.sql"


def test_model_file_renamed_with_same_sql() -> None:
    moved = files(orders_sql=None)
    moved["models/marts/fct_orders.sql"] = ORDERS_SQL.replace("    status\n", "    STATUS\n")
    moved["models/_orders.yml"] = ORDERS_YML.replace("name: orders", "name: fct_orders")
    changes = diff(files(), moved)
    assert kinds(changes) == [("model_renamed", "orders", "fct_orders", None)]
    assert changes.changes[0].file == "models/marts/fct_orders.sql"
    assert "models/orders.sql → models/marts/fct_orders.sql" in describe(changes.changes[0])


def test_model_file_renamed_with_other_sql_is_removed_and_added() -> None:
    moved = files(orders_sql=None)
    moved["models/fct_orders.sql"] = ORDERS_SQL.replace("status", "status, 1 as one")
    assert kinds(diff(files(), moved)) == [
        ("model_added", "fct_orders", None, None), ("model_removed", "orders", None, None),
    ]


def test_order_is_by_model_then_column() -> None:
    sql_c = CUSTOMERS_SQL.replace("last_name\n", "last_name,\n        1 as b,\n        2 as a\n")
    sql_o = ORDERS_SQL.replace("    status\n", "    status,\n    3 as z\n")
    yml = CUSTOMERS_YML.replace("description: Last initial.", "description: Last name.")
    changes = diff(files(), files(customers_sql=sql_c, orders_sql=sql_o, customers_yml=yml))
    assert kinds(changes) == [
        ("added", "customers", "a", None), ("added", "customers", "b", None),
        ("description_changed", "customers", "last_name", None), ("added", "orders", "z", None),
    ]
    again = diff(files(), files(customers_sql=sql_c, orders_sql=sql_o, customers_yml=yml))
    assert again.changes == changes.changes


# --------------------------------------------------------------------------
# Problems
# --------------------------------------------------------------------------


def test_unparsable_model_is_a_problem_and_other_models_still_diff() -> None:
    broken = "select\n    id as order_id,\n    from from {{ ref('raw_orders') }}\n"
    yml = CUSTOMERS_YML.replace("description: First name.", "description: Given name.")
    changes = diff(files(), files(orders_sql=broken, customers_yml=yml))
    assert kinds(changes) == [("description_changed", "customers", "first_name", None)]
    assert len(changes.problems) == 1
    problem = changes.problems[0]
    assert problem.file == "models/orders.sql" and problem.line == 3
    assert "orders" in problem.message


def test_unparsable_model_keeps_its_yaml_columns() -> None:
    broken = "select id as order_id,, status from t"
    yml = ORDERS_YML.replace("description: Order status.", "description: Where the order is.")
    snapshot = snapshot_project(MemoryStore(files(orders_sql=broken)))
    orders = snapshot.models["orders"]
    assert not orders.sql_ok and set(orders.columns) == {"order_id", "status"}
    # SQL-only columns (customer_id) are unknown, not removed; YAML changes still show.
    changes = diff(files(), files(orders_sql=broken, orders_yml=yml))
    assert kinds(changes) == [("description_changed", "orders", "status", None)]


def test_duplicate_key_yaml_is_a_problem_with_its_line() -> None:
    dup = CUSTOMERS_YML.replace("        description: First name.\n",
                                "        description: First name.\n        description: Given name.\n")
    sql = ORDERS_SQL.replace("    status\n", "    status,\n    amount\n")
    changes = diff(files(), files(customers_yml=dup, orders_sql=sql))
    assert [(p.file, p.line) for p in changes.problems] == [("models/_customers.yml", 14)]
    assert "duplicate key" in changes.problems[0].message
    # The customers docs are unknown at head: no doc change is claimed for them; orders still diff.
    assert kinds(changes) == [("added", "orders", "amount", None)]


def test_invalid_yaml_is_a_problem_and_sql_changes_still_show() -> None:
    bad = CUSTOMERS_YML.replace("      - name: last_name\n", "      - name: last_name\n     oops: [\n")
    sql = CUSTOMERS_SQL.replace("id as customer_id", "id as customer_key")
    changes = diff(files(), files(customers_yml=bad, customers_sql=sql))
    assert [p.file for p in changes.problems] == ["models/_customers.yml"]
    assert changes.problems[0].line is not None
    assert kinds(changes) == [("renamed", "customers", "customer_id", "customer_key")]


def test_problems_of_both_snapshots_after_first() -> None:
    before = files(orders_sql="select ,")
    after = files(customers_sql="select from from")
    changes = diff(before, after)
    assert [p.file for p in changes.problems] == ["models/customers.sql", "models/orders.sql"]


# --------------------------------------------------------------------------
# Git: the demo's real dbt project
# --------------------------------------------------------------------------


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


@pytest.fixture
def jaffle_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "jaffle_shop"
    shutil.copytree(JAFFLE, repo)
    git(repo, "init", "-q", "-b", "main")
    commit_all(repo, "jaffle shop")
    return repo


def test_jaffle_shop_between_two_commits(jaffle_repo: Path) -> None:
    repo = jaffle_repo
    base = git(repo, "rev-parse", "HEAD")
    unchanged = changes_between(repo, base, base)
    assert unchanged.changes == [] and unchanged.problems == []

    # stg_orders renames customer_id (its docs follow); customers gains a column; orders' status
    # accepts one more value; stg_payments is moved to a new file name unchanged.
    edit(repo / "models/staging/stg_orders.sql", "user_id as customer_id", "user_id as ordered_by")
    edit(repo / "models/staging/_staging__models.yml",
         "      - name: customer_id\n        description: The customer who placed the order.",
         "      - name: ordered_by\n        description: The customer who placed the order.")
    edit(repo / "models/marts/customers.sql",
         "as customer_lifetime_value\n",
         "as customer_lifetime_value,\n    customer_orders.number_of_orders > 1 as is_repeat_customer\n")
    edit(repo / "models/marts/_marts__models.yml",
         "values: ['placed', 'shipped', 'completed', 'return_pending', 'returned']",
         "values: ['placed', 'shipped', 'completed', 'return_pending', 'returned', 'lost']")
    (repo / "models/staging/stg_payments.sql").rename(repo / "models/staging/stg_payment.sql")
    edit(repo / "models/staging/_staging__models.yml", "name: stg_payments", "name: stg_payment")
    head = commit_all(repo, "edits")

    changes = changes_between(repo, base, head)
    assert changes.problems == []
    assert kinds(changes) == [
        ("added", "customers", "is_repeat_customer", None),
        ("tests_changed", "orders", "status", None),
        ("renamed", "stg_orders", "customer_id", "ordered_by"),
        ("model_renamed", "stg_payments", "stg_payment", None),
    ]
    added, tests, renamed, moved = changes.changes
    assert added.after.expression == "customer_orders.number_of_orders > 1"
    assert (added.file, added.line) == ("models/marts/customers.sql", 57)
    assert tests.detail == "accepted_values: +lost"
    assert tests.file == "models/marts/_marts__models.yml"
    assert moved.file == "models/staging/stg_payment.sql"
    assert renamed.before.expression == renamed.after.expression == "user_id"
    assert renamed.after.description == "The customer who placed the order."
    assert (renamed.file, renamed.line) == ("models/staging/stg_orders.sql", 13)
    # the loop-generated columns of orders are known from the YAML only, and unchanged
    orders = changes.after.models["orders"]
    assert not orders.complete and orders.columns["credit_card_amount"].expression is None


def test_committed_manifest_is_read_at_each_revision(jaffle_repo: Path) -> None:
    repo = jaffle_repo
    def write_manifest(data_type: str) -> None:
        (repo / "target").mkdir(exist_ok=True)
        (repo / "target/manifest.json").write_text(json.dumps({"nodes": {"model.jaffle_shop.orders": {
            "resource_type": "model", "name": "orders", "original_file_path": "models/marts/orders.sql",
            "columns": {"amount": {"name": "amount", "description": "", "data_type": data_type, "meta": {}}},
        }}}))

    write_manifest("integer")
    base = commit_all(repo, "manifest")
    write_manifest("decimal(18,2)")
    head = commit_all(repo, "manifest with a new type")
    changes = changes_between(repo, base, head)
    assert kinds(changes) == [("type_changed", "orders", "amount", None)]
    change = changes.changes[0]
    assert change.after.description == "Total amount paid for the order, across all methods."
    assert change.detail == "data_type integer → decimal(18,2)"


# --------------------------------------------------------------------------
# Relations a view can name: aliases, seeds, sources, snapshots
# --------------------------------------------------------------------------


def test_relation_names_come_from_the_manifest_then_yaml_config_then_the_sql_config() -> None:
    project = files(orders_sql="{{ config(alias='fct_orders') }}\n" + ORDERS_SQL,
                    customers_yml=CUSTOMERS_YML.replace("  - name: customers\n",
                                                        "  - name: customers\n    config:\n      alias: dim_customers\n"))
    snapshot = snapshot_project(MemoryStore(project))
    assert snapshot.models["orders"].relation_name == "fct_orders"
    assert snapshot.models["customers"].relation_name == "dim_customers"
    assert snapshot.models_by_relation() == {"fct_orders": "orders", "dim_customers": "customers"}
    manifest = {"nodes": {"model.p.orders": {"resource_type": "model", "name": "orders", "alias": "orders_v2",
                                             "original_file_path": "models/orders.sql", "columns": {}}}}
    assert snapshot_project(MemoryStore(project), manifest).models["orders"].relation_name == "orders_v2"
    assert snapshot_project(MemoryStore(files())).models_by_relation() == {}


def test_seeds_sources_and_snapshots_are_known_relations_but_not_models() -> None:
    project = files(**{
        "seeds/raw_orders.csv": "id,user_id\n1,1\n",
        "models/_sources.yml": "version: 2\nsources:\n  - name: shop\n    tables:\n      - name: events\n"
                               "      - name: payments\n        identifier: PAYMENTS_V1\n",
        "snapshots/orders_snapshot.sql": "{% snapshot orders_history %}\nselect * from {{ ref('orders') }}\n"
                                         "{% endsnapshot %}\n",
    })
    snapshot = snapshot_project(MemoryStore(project))
    assert snapshot.others == {"raw_orders", "events", "payments_v1", "orders_history"}
    assert set(snapshot.models) == {"customers", "orders"}
    assert snapshot.knows("RAW_ORDERS") and snapshot.knows("orders") and not snapshot.knows("nowhere")


def test_a_new_alias_renames_the_relation_views_read() -> None:
    changes = diff(files(), files(orders_sql="{{ config(alias='fct_orders') }}\n" + ORDERS_SQL))
    assert kinds(changes) == [("model_renamed", "orders", "orders", None)]
    assert "orders → fct_orders" in describe(changes.changes[0])

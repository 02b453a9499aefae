"""pull-from-dbt on Omni's own layout: a model folder (model.yaml, relationships.yaml, a topic, one folder per
schema with `# Reference this view as` headers and `dbt:` blocks) over the demo's jaffle_shop dbt project,
diffed from real git commits. What the pull writes must be what Omni accepts, and every file stays
byte-identical outside the edit."""
from __future__ import annotations

import json
import re
from pathlib import Path

import git
import pytest

from bot.demo.run import ANALYST, create_dbt_repo
from bot.dbt.changes import changes_between
from bot.forge.local import LocalForge
from bot.pull_from_dbt import PullJob, render_body, run
from bot.semantic.editor import DBT_DESCRIPTION_MARK
from bot.semantic.formats import format_for
from bot.translate.pull import PullPlan, plan_pull

ROOT = "omni/Jaffle"
ORDERS = f"{ROOT}/omni_dbt_marts/orders.view.yaml"
CUSTOMERS = f"{ROOT}/omni_dbt_marts/customers.view.yaml"
TOPIC = f"{ROOT}/Jaffle.topic.yaml"
RELATIONSHIPS = f"{ROOT}/relationships.yaml"
MODEL = f"{ROOT}/model.yaml"
ORDERS_SQL = "models/marts/orders.sql"
MARTS_YML = "models/marts/_marts__models.yml"

ORDERS_VIEW = """\
# Reference this view as omni_dbt_marts__orders
schema: omni_dbt_marts
table_name: orders
label: Orders
dbt:
  name: orders
  target_schema: marts
  description: One row per order, with payment amounts broken out by payment method.
  config:
    materialized: table
  code: select * from final
  referenced_by: []

dimensions:
  order_id:
    primary_key: true
  customer_id:
    #This description was pulled from dbt.
    description: The customer who placed the order.
  order_date: {}
  status:
    sql: '"STATUS"'
    label: Status
  credit_card_amount: {}
  coupon_amount: {}
  bank_transfer_amount: {}
  gift_card_amount:
    description: Gift cards, including the 2018 promotion.   # the analyst's words
  amount:
    #This description was pulled from dbt.
    description: Total amount paid for the order, across all methods.
  is_returned:
    sql: ${omni_dbt_marts__orders.status} in ('returned', 'return_pending')
  is_big:
    sql: CASE WHEN amount > 20 THEN 'big' ELSE 'small' END

measures:
  count:
    aggregate_type: count
  revenue:
    sql: ${omni_dbt_marts__orders.amount}
    aggregate_type: sum
  returned_count:
    aggregate_type: count
    filters:
      is_returned:
        is: true
"""
CUSTOMERS_VIEW = """\
# Reference this view as omni_dbt_marts__customers
schema: omni_dbt_marts
table_name: customers
dbt:
  name: customers
  target_schema: marts
  config:
    materialized: table
  referenced_by: []

dimensions:
  customer_id:
    primary_key: true
  first_name: {}
  last_name: {}
  number_of_orders: {}
  is_repeat_customer:
    sql: number_of_orders > 1

measures:
  count:
    aggregate_type: count
  ordered_amount:
    sql: ${omni_dbt_marts__orders.amount}
    aggregate_type: sum
"""
RELATIONSHIPS_YAML = """\
# joins of the Jaffle model
- join_from_view: omni_dbt_marts__orders
  join_to_view: omni_dbt_marts__customers
  join_type: always_left
  on_sql: ${omni_dbt_marts__orders.customer_id} = ${omni_dbt_marts__customers.customer_id}
  relationship_type: many_to_one
  reversible: false
"""
TOPIC_YAML = """\
base_view: omni_dbt_marts__orders
label: Jaffle shop
joins:
  omni_dbt_marts__customers: {}
fields:
  - omni_dbt_marts__orders.*
  - -omni_dbt_marts__orders.coupon_amount
  - omni_dbt_marts__orders.is_returned   # returns matter here
  - omni_dbt_marts__customers.first_name
default_filters:
  omni_dbt_marts__orders.status:
    is: completed
always_where_sql: ${omni_dbt_marts__orders.amount} >= 0
"""


def model_texts() -> dict[str, str]:
    return {MODEL: "included_schemas:\n  - omni_dbt_marts\n", RELATIONSHIPS: RELATIONSHIPS_YAML, TOPIC: TOPIC_YAML,
            ORDERS: ORDERS_VIEW, CUSTOMERS: CUSTOMERS_VIEW}


def omni():
    return format_for("omni", ROOT)


@pytest.fixture
def dbt(tmp_path: Path):
    """The demo's jaffle_shop dbt project on a real remote; `change` commits edits and returns (base, head)."""
    remote = create_dbt_repo(tmp_path)
    work = git.Repo(tmp_path / "dbt")

    def change(edits: dict) -> tuple[str, str]:
        base = work.head.commit.hexsha
        for path, edit in edits.items():
            target = Path(work.working_tree_dir) / path
            target.write_text(edit(target.read_text()))
        work.git.add("-A")
        head = work.index.commit("dbt change", author=ANALYST, committer=ANALYST).hexsha
        work.git.push("origin", "HEAD:refs/heads/main")
        return base, head
    change.remote = remote
    change.work = work
    return change


def plan(dbt, edits: dict, texts: dict[str, str] | None = None) -> PullPlan:
    base, head = dbt(edits)
    return plan_pull(changes_between(dbt.work.working_tree_dir, base, head), texts or model_texts(),
                     dbt_commit=head, fmt=omni())


def dbt_block(text: str) -> str:
    return re.search(r"^dbt:\n(?:  .*\n)+", text, re.MULTILINE).group()


def unedited(after: str, before: str, *pairs: tuple[str, str]) -> None:
    """`after` is `before` with exactly these (old → new) snippets replaced, each once: nothing else moved."""
    undone = after
    for old, new in pairs:
        assert undone.count(new) == 1, new
        undone = undone.replace(new, old, 1)
    assert undone == before


def view(plan_: PullPlan, path: str = ORDERS, texts: dict[str, str] | None = None):
    return omni().read(plan_.files.get(path, (texts or model_texts())[path]), path)


NEW_COLUMN = {
    ORDERS_SQL: lambda t: t.replace("as amount\n", "as amount,\n        orders.order_date > '2018-03-01' as is_recent\n", 1),
    MARTS_YML: lambda t: t.replace("      - name: amount\n", "      - name: is_recent\n        description: Placed after "
                                   "March 2018.\n        data_type: boolean\n      - name: amount\n", 1)}


def test_a_new_column_is_written_the_way_omni_writes_one_with_no_type(dbt) -> None:
    result = plan(dbt, NEW_COLUMN)
    added = f"  is_recent:\n    {DBT_DESCRIPTION_MARK}\n    description: Placed after March 2018.\n"
    text = result.files[ORDERS]
    unedited(text, ORDERS_VIEW, ("    sql: CASE WHEN amount > 20 THEN 'big' ELSE 'small' END\n",
                                 "    sql: CASE WHEN amount > 20 THEN 'big' ELSE 'small' END\n" + added))
    assert not re.search(r"^ *type:", text, re.M) and "${TABLE}" not in text
    assert dbt_block(text) == dbt_block(ORDERS_VIEW)
    (note,) = [n for n in result.notes if n.kind == "added"]
    assert note.field == "omni_dbt_marts__orders.is_recent" and note.file == ORDERS
    assert note.line == view(result).fields["is_recent"].location.line
    assert "boolean in dbt's data_type; Omni reads the type from the warehouse" in note.text
    assert set(result.files) == {ORDERS} and not result.problems


def test_accepted_values_become_omnis_all_values(dbt) -> None:
    result = plan(dbt, {MARTS_YML: lambda t: t.replace("'placed', 'shipped', 'completed', 'return_pending', 'returned'",
                                                       "'placed', 'shipped', 'completed', 'returned'")})
    text = result.files[ORDERS]
    unedited(text, ORDERS_VIEW, ("    label: Status\n",
                                 "    label: Status\n    all_values: [placed, shipped, completed, returned]\n"))
    assert "allowed_values" not in text
    assert view(result).fields["status"].attributes["all_values"] == ["placed", "shipped", "completed", "returned"]
    (note,) = [n for n in result.notes if n.kind == "allowed_values"]
    assert "all_values" in note.text and note.field == "omni_dbt_marts__orders.status"


def test_dbts_descriptions_are_marked_replaced_later_and_the_analysts_kept(dbt) -> None:
    first = plan(dbt, {MARTS_YML: lambda t: t.replace("Date the order was placed.", "When the order was placed.")
                       .replace("The customer who placed the order.", "Who ordered.")
                       .replace("Amount paid with gift cards.", "Paid with gift cards.")})
    text = first.files[ORDERS]
    unedited(text, ORDERS_VIEW,
             ("    description: The customer who placed the order.\n", "    description: Who ordered.\n"),
             ("  order_date: {}\n", f"  order_date:\n    {DBT_DESCRIPTION_MARK}\n"
                                    f"    description: When the order was placed.\n"))
    fields = view(first).fields
    assert fields["gift_card_amount"].description == "Gift cards, including the 2018 promotion."
    assert [n.field for n in first.notes if n.kind == "description_kept"] == ["omni_dbt_marts__orders.gift_card_amount"]
    assert {n.field for n in first.notes if n.kind == "description"} == {
        "omni_dbt_marts__orders.customer_id", "omni_dbt_marts__orders.order_date"}

    # The analyst merges that PR; a later dbt change replaces the description the pull marked, keeping one marker.
    merged = {**model_texts(), ORDERS: text}
    second = plan(dbt, {MARTS_YML: lambda t: t.replace("When the order was placed.", "The day the order was placed.")},
                  merged)
    again = second.files[ORDERS]
    unedited(again, text, ("    description: When the order was placed.\n",
                           "    description: The day the order was placed.\n"))
    assert again.count(DBT_DESCRIPTION_MARK) == 3 and dbt_block(again) == dbt_block(ORDERS_VIEW)


def test_an_unmarked_description_is_the_analysts_even_when_it_is_dbts_old_text(dbt) -> None:
    """The `views` layout takes dbt's previous text as dbt's; in Omni's files only the marker says so."""
    texts = {**model_texts(), ORDERS: ORDERS_VIEW.replace(
        "  customer_id:\n    #This description was pulled from dbt.\n", "  customer_id:\n", 1)}
    result = plan(dbt, {MARTS_YML: lambda t: t.replace("The customer who placed the order.", "Who ordered.")}, texts)
    assert ORDERS not in result.files
    assert [n.field for n in result.notes if n.kind == "description_kept"] == ["omni_dbt_marts__orders.customer_id"]


RENAME_AMOUNT = {ORDERS_SQL: lambda t: t.replace("as amount\n", "as order_amount\n", 1),
                 MARTS_YML: lambda t: t.replace("      - name: amount\n", "      - name: order_amount\n", 1)}


def test_a_column_rename_is_followed_in_the_view_its_other_views_and_the_topic(dbt) -> None:
    result = plan(dbt, RENAME_AMOUNT)
    unedited(result.files[ORDERS], ORDERS_VIEW,
             ("  amount:\n", "  order_amount:\n"),
             ("across all methods.\n", "across all methods.\n    aliases: [amount]\n"),
             ("WHEN amount > 20", "WHEN order_amount > 20"),                                  # a bare column
             ("sql: ${omni_dbt_marts__orders.amount}\n", "sql: ${omni_dbt_marts__orders.order_amount}\n"))
    unedited(result.files[CUSTOMERS], CUSTOMERS_VIEW,
             ("${omni_dbt_marts__orders.amount}", "${omni_dbt_marts__orders.order_amount}"))
    unedited(result.files[TOPIC], TOPIC_YAML,
             ("${omni_dbt_marts__orders.amount} >= 0", "${omni_dbt_marts__orders.order_amount} >= 0"))
    renamed = view(result).fields["order_amount"]
    assert renamed.aliases == ("amount",) and "amount" not in view(result).fields
    topic_note = [n for n in result.notes if n.kind == "renamed" and n.file == TOPIC]
    assert [(n.line, n.field) for n in topic_note] == [(TOPIC_YAML.splitlines().index(
        "always_where_sql: ${omni_dbt_marts__orders.amount} >= 0") + 1, "omni_dbt_marts__orders.amount")]
    assert dbt_block(result.files[ORDERS]) == dbt_block(ORDERS_VIEW)
    assert not result.broken and not result.problems
    model = omni().read_model({**model_texts(), **result.files})       # the edited model still reads clean
    assert model.problems == []


def test_topic_fields_filters_and_relationships_follow_a_field_rename(dbt) -> None:
    result = plan(dbt, {ORDERS_SQL: lambda t: t.replace("        orders.status,\n", "        orders.status as state,\n", 1)
                        .replace("        orders.customer_id,\n", "        orders.customer_id as buyer_id,\n", 1)})
    unedited(result.files[TOPIC], TOPIC_YAML,
             ("  omni_dbt_marts__orders.status:\n", "  omni_dbt_marts__orders.state:\n"))
    unedited(result.files[RELATIONSHIPS], RELATIONSHIPS_YAML,
             ("${omni_dbt_marts__orders.customer_id} =", "${omni_dbt_marts__orders.buyer_id} ="))
    fields = view(result).fields
    assert fields["state"].sql == '"STATE"' and fields["state"].aliases == ("status",)      # quoted: follows, upper
    assert fields["is_returned"].sql == "${omni_dbt_marts__orders.state} in ('returned', 'return_pending')"
    assert fields["buyer_id"].aliases == ("customer_id",)
    relationship_note = [n for n in result.notes if n.file == RELATIONSHIPS]
    assert [n.line for n in relationship_note] == [5]
    model = omni().read_model({**model_texts(), **result.files})
    assert model.problems == [] and model.relationships[0].on_sql.startswith("${omni_dbt_marts__orders.buyer_id}")
    assert model.topics["Jaffle"].default_filters == {"omni_dbt_marts__orders.state": {"is": "completed"}}


def test_topic_entries_that_name_a_renamed_field_follow_it(dbt) -> None:
    """`fields:` entries, exclusions (`-view.field`) too, in any quoting, and always_where_filters keys."""
    topic = TOPIC_YAML.replace("  - omni_dbt_marts__customers.first_name\n", "  - omni_dbt_marts__customers.first_name\n"
                               "  - '-omni_dbt_marts__orders.customer_id'\n") + \
        "always_where_filters:\n  \"omni_dbt_marts__orders.customer_id\": {not: null}   # no guests\n"
    texts = {**model_texts(), TOPIC: topic}
    result = plan(dbt, {ORDERS_SQL: lambda t: t.replace("        orders.customer_id,\n",
                                                        "        orders.customer_id as buyer_id,\n", 1)}, texts)
    unedited(result.files[TOPIC], topic,
             ("  - '-omni_dbt_marts__orders.customer_id'\n", "  - '-omni_dbt_marts__orders.buyer_id'\n"),
             ('  "omni_dbt_marts__orders.customer_id": {', '  "omni_dbt_marts__orders.buyer_id": {'))
    assert omni().read_model({**texts, **result.files}).problems == []


def test_a_removed_column_breaks_the_topic_that_lists_its_field(dbt) -> None:
    result = plan(dbt, {ORDERS_SQL: lambda t: t.replace("        orders.status,\n", "", 1)})
    in_views = {n.field for n in result.broken if n.file == ORDERS}
    assert in_views == {"omni_dbt_marts__orders.status", "omni_dbt_marts__orders.is_returned",
                        "omni_dbt_marts__orders.returned_count"}                       # the filter on is_returned
    in_topic = {(n.field, n.line) for n in result.broken if n.file == TOPIC}
    lines = TOPIC_YAML.splitlines()
    assert in_topic == {("omni_dbt_marts__orders.status", lines.index("  omni_dbt_marts__orders.status:") + 1),
                        ("omni_dbt_marts__orders.is_returned",
                         lines.index("  - omni_dbt_marts__orders.is_returned   # returns matter here") + 1)}
    assert TOPIC not in result.files                                                   # reported, not edited
    text = result.files[ORDERS]
    assert text.count("# layersync: broken") == 3 and dbt_block(text) == dbt_block(ORDERS_VIEW)
    body = render_body(branch="layersync/pull/bbbbbbb", dbt_label="acme/dbt", dbt_commit="b" * 40, commit_line="x",
                       plan=result, changes=changes_between(dbt.work.working_tree_dir, "HEAD~1", "HEAD"), authors=[])
    broken = body.split("### ⚠️")[1].split("###")[0]
    assert f"| {TOPIC}:{lines.index('  omni_dbt_marts__orders.status:') + 1} |" in broken
    assert "topic `Jaffle` filters on it in `default_filters`" in broken
    assert "Topics and joins listed above name a broken field" in broken


def _semantic_repo(root: Path) -> Path:
    """The BI repo: the Omni model in omni/Jaffle/, next to unrelated files."""
    path = root / "bi"
    repo = git.Repo.init(path, initial_branch="main")
    for rel, text in {**model_texts(), "README.md": "# BI\n"}.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(text)
    repo.git.add("-A")
    repo.index.commit("Omni model", author=ANALYST, committer=ANALYST)
    return path


def test_pull_from_dbt_end_to_end_on_omnis_layout(dbt, tmp_path) -> None:
    semantic = _semantic_repo(tmp_path)
    _, head = dbt({**RENAME_AMOUNT, MARTS_YML: lambda t: RENAME_AMOUNT[MARTS_YML](t).replace(
        "'placed', 'shipped', 'completed', 'return_pending', 'returned'", "'placed', 'shipped', 'completed'")})
    forge = LocalForge(tmp_path / "state.sqlite")
    result = run(PullJob(dbt_repo=dbt.remote, semantic_repo=semantic, head="main", dbt_label="acme/dbt",
                         semantic_path=ROOT), forge)

    assert result.pr_created and result.exit_code == 0, result.notes
    assert result.files == sorted([ORDERS, CUSTOMERS, TOPIC])
    tree = git.Repo(semantic).commit(result.branch).tree
    files = {path: (tree / path).data_stream.read().decode() for path in model_texts()}
    assert files[MODEL] == model_texts()[MODEL] and files[RELATIONSHIPS] == RELATIONSHIPS_YAML
    orders = files[ORDERS]
    assert dbt_block(orders) == dbt_block(ORDERS_VIEW) and orders.startswith(
        "# Reference this view as omni_dbt_marts__orders\n")
    assert "    all_values: [placed, shipped, completed]\n" in orders and not re.search(r"^ *type:", orders, re.M)
    assert "${omni_dbt_marts__orders.order_amount} >= 0" in files[TOPIC]
    assert omni().read_model(files).problems == []
    doc = result.to_json()
    assert {e["field"] for e in doc["edits"]} >= {"omni_dbt_marts__orders.amount", "omni_dbt_marts__orders.status"}
    body = forge.get_pr(str(semantic.resolve()), result.pr.number).body
    assert f"{TOPIC}:" in body and "`omni_dbt_marts__orders.amount`" in body
    json.dumps(doc)


def test_adoption_reads_the_pushed_column_the_way_omni_names_a_column(tmp_path) -> None:
    """After the push-to-dbt PR merges, the field reads the new column: its bare name, no `${TABLE}`."""
    from bot.adopt import adopt
    from bot.forge.base import PullRequest

    semantic = _semantic_repo(tmp_path)
    large = "  is_large_order:\n    sql: ${omni_dbt_marts__orders.amount} > 20\n"
    path = semantic / ORDERS
    before = path.read_text().replace("\nmeasures:", large + "\nmeasures:", 1)
    path.write_text(before)
    repo = git.Repo(semantic)
    repo.git.add("-A")
    repo.index.commit("large orders", author=ANALYST, committer=ANALYST)
    forge = LocalForge(tmp_path / "state.sqlite")
    dbt_pr = PullRequest(7, "acme/dbt", "push", "", "layersync/push/x", "main", "merged", "file:///pr/7", "", "")
    outcome = adopt(forge, str(semantic), dbt_pr, [["omni_dbt_marts__orders.is_large_order", ORDERS, "orders",
                                                     "is_large_order"]], semantic_path=ROOT)

    assert outcome.adopted == ["omni_dbt_marts__orders.is_large_order"] and outcome.problems == []
    after = (repo.commit(outcome.pr.head).tree / ORDERS).data_stream.read().decode()
    unedited(after, before, ("    sql: ${omni_dbt_marts__orders.amount} > 20\n", "    sql: is_large_order\n"))
    assert "→ `is_large_order`" in outcome.pr.body and "${TABLE}" not in outcome.pr.body


def test_a_topic_that_cannot_follow_a_rename_is_a_problem_and_the_rest_still_follows(dbt) -> None:
    broken_topic = TOPIC_YAML + "sorts: [\n"                          # invalid YAML: the topic cannot be edited
    texts = {**model_texts(), TOPIC: broken_topic}
    result = plan(dbt, RENAME_AMOUNT, texts)
    assert TOPIC not in result.files and {ORDERS, CUSTOMERS} <= set(result.files)
    (problem,) = [n for n in result.problems if n.file == TOPIC]
    assert "could not follow the rename of `omni_dbt_marts__orders.amount`" in problem.text and problem.line
    assert [n.field for n in result.notes if n.kind == "renamed" and n.file == ORDERS][0] == \
        "omni_dbt_marts__orders.amount"


def test_the_dbt_block_names_the_model_a_view_follows(dbt) -> None:
    """`dbt.name` says which dbt model the view is, whatever its table is called in the warehouse."""
    texts = {**model_texts(), ORDERS: ORDERS_VIEW.replace("table_name: orders\n", "table_name: ORDERS_PROD_V2\n", 1)}
    result = plan(dbt, NEW_COLUMN, texts)
    assert "  is_recent:\n" in result.files[ORDERS] and not result.problems
    assert dbt_block(result.files[ORDERS]) == dbt_block(ORDERS_VIEW)

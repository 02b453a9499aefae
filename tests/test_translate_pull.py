"""dbt changes on the real jaffle_shop project → edits of the demo's semantic views (pure planning;
the dbt side is diffed from real git commits)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from bot.dbt.changes import changes_between
from bot.semantic.reader import OmniYamlReader
from bot.translate.pull import plan_pull, semantic_type

ROOT = Path(__file__).resolve().parents[1] / "bot" / "demo"


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def dbt(tmp_path: Path):
    repo = tmp_path / "dbt"
    shutil.copytree(ROOT / "jaffle_shop", repo)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-qm", "base")

    def change(edit: dict[str, callable]) -> tuple[str, str]:
        for path, fn in edit.items():
            target = repo / path
            target.write_text(fn(target.read_text()))
        _git(repo, "add", "-A")
        _git(repo, "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-qm", "edit")
        return _git(repo, "rev-parse", "HEAD~1"), _git(repo, "rev-parse", "HEAD")
    change.repo = repo
    return change


def _views() -> dict[str, str]:
    return {f"views/{p.name}": p.read_text() for p in sorted((ROOT / "semantic" / "views").glob("*.view.yaml"))}


def _plan(dbt, edit):
    base, head = dbt(edit)
    return plan_pull(changes_between(dbt.repo, base, head), _views(), dbt_commit=head)


ORDERS_SQL = "models/marts/orders.sql"
MARTS_YML = "models/marts/_marts__models.yml"


def test_a_new_column_becomes_a_dimension_like_its_neighbours(dbt) -> None:
    plan = _plan(dbt, {
        ORDERS_SQL: lambda t: t.replace("as amount\n", "as amount,\n    order_date > '2018-03-01' as is_recent\n", 1),
        MARTS_YML: lambda t: t.replace("      - name: amount\n", "      - name: is_recent\n        description: Placed "
                                       "after March 2018.\n        data_type: boolean\n      - name: amount\n", 1)})
    text = plan.files["views/orders.view.yaml"]
    assert "  is_recent:\n    label: Is recent\n    description: Placed after March 2018.\n    type: yesno\n" in text
    (note,) = [n for n in plan.notes if n.kind == "added"]
    assert note.field == "orders.is_recent" and note.dbt_file and note.file == "views/orders.view.yaml"
    view = OmniYamlReader().read(text, "views/orders.view.yaml")
    assert view.fields["is_recent"].location.line == note.line


def test_a_rename_follows_everywhere_and_keeps_the_old_name_as_an_alias(dbt) -> None:
    plan = _plan(dbt, {
        ORDERS_SQL: lambda t: t.replace("as amount\n", "as order_amount\n", 1),
        MARTS_YML: lambda t: t.replace("      - name: amount\n", "      - name: order_amount\n", 1)})
    view = OmniYamlReader().read(plan.files["views/orders.view.yaml"], "views/orders.view.yaml")
    renamed = view.fields["order_amount"]
    assert "amount" in renamed.aliases and "amount" not in view.fields
    assert view.fields["revenue"].sql == "${order_amount}"
    assert [n.field for n in plan.notes if n.kind == "renamed"] == ["orders.amount"]
    assert not plan.broken


def test_a_removed_column_breaks_its_fields_which_are_marked_not_deleted(dbt) -> None:
    plan = _plan(dbt, {ORDERS_SQL: lambda t: t.replace("    orders.status,\n", "", 1)})
    text = plan.files["views/orders.view.yaml"]
    broken = {n.field: n.via for n in plan.broken}
    assert broken == {"orders.status": ("orders.status",),
                      "orders.is_returned": ("orders.is_returned",),           # `${TABLE}.status`
                      "orders.returned_count": ("orders.is_returned", "orders.returned_count")}
    assert "  # layersync: broken" in text and "status:" in text       # marked, kept
    lines = text.splitlines()
    for note in plan.broken:                                            # lines point at the field in the new file
        assert lines[note.line - 1].strip().startswith(note.field.split(".")[1] + ":")


def test_descriptions_follow_dbt_only_where_they_came_from_dbt(dbt) -> None:
    views = _views()
    views["views/orders.view.yaml"] = views["views/orders.view.yaml"].replace(
        "  customer_id:\n    label: Customer ID\n    description: Joins to customers.customer_id.\n",
        "  customer_id:\n    label: Customer ID\n    description: The customer who placed the order.\n")
    base, head = dbt({MARTS_YML: lambda t: t.replace("The customer who placed the order.", "Who ordered.").replace(
        "Date the order was placed.", "When the order was placed.")})
    plan = plan_pull(changes_between(dbt.repo, base, head), views, dbt_commit=head)
    view = OmniYamlReader().read(plan.files["views/orders.view.yaml"], "views/orders.view.yaml")
    assert view.fields["customer_id"].description == "Who ordered."          # was dbt's: follows
    assert view.fields["order_date"].description == "When the order was placed."   # had none: synced


def test_an_analysts_description_is_kept_and_said_so(dbt) -> None:
    plan = _plan(dbt, {MARTS_YML: lambda t: t.replace("Amount paid by credit card.", "Paid by card.").replace(
        "description: The customer who placed the order.", "description: Who ordered.")})
    view = OmniYamlReader().read(plan.files["views/orders.view.yaml"], "views/orders.view.yaml")
    assert view.fields["customer_id"].description == "Joins to customers.customer_id."
    assert [n.field for n in plan.notes if n.kind == "description_kept"] == ["orders.customer_id"]


def test_tests_map_to_primary_key_and_allowed_values(dbt) -> None:
    plan = _plan(dbt, {MARTS_YML: lambda t: t.replace(
        "'placed', 'shipped', 'completed', 'return_pending', 'returned'",
        "'placed', 'shipped', 'completed', 'returned'").replace(
        "      - name: order_date\n        description: Date the order was placed.\n        data_tests:\n"
        "          - not_null\n",
        "      - name: order_date\n        description: Date the order was placed.\n        data_tests:\n"
        "          - not_null\n          - unique\n")})
    view = OmniYamlReader().read(plan.files["views/orders.view.yaml"], "views/orders.view.yaml")
    assert view.fields["order_date"].primary_key
    assert view.fields["status"].attributes["allowed_values"] == ["placed", "shipped", "completed", "returned"]


def test_a_changed_expression_reports_the_measures_it_alters(dbt) -> None:
    plan = _plan(dbt, {ORDERS_SQL: lambda t: t.replace("coalesce(payments_per_order.total_amount, 0) as amount",
                                                        "coalesce(payments_per_order.total_amount, 0) * 100 as amount")})
    assert not plan.files
    assert {n.field for n in plan.notes if n.kind == "altered"} == {"orders.revenue", "orders.average_order_value"}


def test_semantic_type() -> None:
    assert [semantic_type(t) for t in ("BIGINT", "varchar(20)", "timestamp with time zone", "DATE", "boolean",
                                       "numeric(10,2)", None, "struct")] == [
        "number", "string", "timestamp", "date", "yesno", "number", None, None]


ALIAS = "{{ config(alias='fct_orders') }}\n"


def _reading(views: dict[str, str], relation: str) -> dict[str, str]:
    return {**views, "views/orders.view.yaml": views["views/orders.view.yaml"].replace(
        "table_name: orders          #", f"table_name: {relation}  #", 1)}


def test_a_new_alias_points_the_views_at_the_new_relation(dbt) -> None:
    plan = _plan(dbt, {ORDERS_SQL: lambda t: ALIAS + t})
    text = plan.files["views/orders.view.yaml"]
    assert "table_name: fct_orders          # the dbt model (by model name or alias)\n" in text
    assert text.replace("fct_orders", "orders", 1) == _views()["views/orders.view.yaml"]   # nothing else moved
    (note,) = [n for n in plan.notes if n.kind == "renamed"]
    assert "now reads `fct_orders`" in note.text and note.file == "views/orders.view.yaml" and not plan.problems


def test_a_renamed_model_file_points_the_views_at_it(dbt) -> None:
    def move(text: str) -> str:
        (dbt.repo / "models/marts/fct_orders.sql").write_text(text)
        return text
    base, _ = dbt({ORDERS_SQL: move})
    (dbt.repo / ORDERS_SQL).unlink()
    head = _commit(dbt.repo, {MARTS_YML: lambda t: t.replace("  - name: orders\n", "  - name: fct_orders\n", 1)})
    plan = plan_pull(changes_between(dbt.repo, base, head), _views(), dbt_commit=head)
    view = OmniYamlReader().read(plan.files["views/orders.view.yaml"], "views/orders.view.yaml")
    assert view.table_name == "fct_orders" and not plan.broken and not plan.problems


def _commit(repo: Path, edit: dict) -> str:
    for path, fn in edit.items():
        (repo / path).write_text(fn((repo / path).read_text()))
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-qm", "edit")
    return _git(repo, "rev-parse", "HEAD")


def test_views_naming_an_alias_follow_its_models_columns(dbt) -> None:
    dbt({ORDERS_SQL: lambda t: ALIAS + t})
    views = _reading(_views(), "analytics.FCT_ORDERS")
    base, head = dbt({ORDERS_SQL: lambda t: t.replace("    orders.status,\n", "", 1)})
    plan = plan_pull(changes_between(dbt.repo, base, head), views, dbt_commit=head)
    assert {n.field for n in plan.broken} >= {"orders.status", "orders.is_returned"}
    assert not plan.problems


def test_views_on_seeds_and_sources_are_not_missing_models_but_unknown_tables_are(dbt) -> None:
    (dbt.repo / "seeds").mkdir()
    (dbt.repo / "seeds/raw_orders.csv").write_text("id,user_id,order_date,status\n")
    (dbt.repo / "models/_sources.yml").write_text(
        "version: 2\nsources:\n  - name: app\n    tables:\n      - name: events\n        identifier: app_events\n")
    views = _views()
    views["views/raw.view.yaml"] = "table_name: raw_orders\ndimensions:\n  id: {}\n"
    views["views/events.view.yaml"] = "table_name: app.app_events\ndimensions:\n  id: {}\n"
    views["views/ghost.view.yaml"] = "table_name: ghost_table\ndimensions:\n  id: {}\n"
    base, head = dbt({MARTS_YML: lambda t: t.replace("Date the order was placed.", "When the order was placed.")})
    plan = plan_pull(changes_between(dbt.repo, base, head), views, dbt_commit=head)
    assert [(n.file, n.line) for n in plan.problems] == [("views/ghost.view.yaml", 1)]
    assert "`ghost_table`, which is no model, seed, source" in plan.problems[0].text


def test_the_views_layout_keeps_its_own_keys_and_no_dbt_marker(dbt) -> None:
    """Omni's writes (no type:, all_values, the dbt marker) are the omni format's: this layout keeps today's."""
    plan = _plan(dbt, {
        ORDERS_SQL: lambda t: t.replace("as amount\n", "as amount,\n    'web' as channel\n", 1),
        MARTS_YML: lambda t: t.replace("      - name: amount\n", "      - name: channel\n        description: Where.\n"
                                       "        data_type: varchar\n        data_tests:\n          - accepted_values:\n"
                                       "              arguments:\n                values: ['web', 'store']\n"
                                       "      - name: amount\n", 1)})
    text = plan.files["views/orders.view.yaml"]
    assert "  channel:\n    label: Channel\n    description: Where.\n    type: string\n" \
           "    allowed_values: [web, store]\n" in text
    assert "pulled from dbt" not in text and "all_values" not in text

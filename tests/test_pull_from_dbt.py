"""`layersync pull-from-dbt` end to end on real git repos: the jaffle_shop dbt remote changes on main,
the bot opens (or updates) one PR on the semantic-layer repo that follows it."""
from __future__ import annotations

import json
from pathlib import Path

import git
import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from bot.cli import main
from bot.forge.local import LocalForge
from bot.impact.prod import ProdEnv
from bot.pull_from_dbt import PullJob, run
from bot.semantic.reader import OmniYamlReader

ORDERS_SQL = "models/marts/orders.sql"
MARTS_YML = "models/marts/_marts__models.yml"
AUTHOR = git.Actor("Dee Beetee", "dee@example.com")


class Dbt:
    """A clone of the dbt remote where an engineer commits to main and pushes."""

    def __init__(self, remote: Path, root: Path):
        self.remote = remote
        self.repo = git.Repo.clone_from(remote, root)
        self.root = root

    def commit(self, edits: dict, message: str = "dbt change") -> str:
        for path, edit in edits.items():
            target = self.root / path
            target.write_text(edit(target.read_text()) if callable(edit) else edit)
        self.repo.git.add("-A")
        sha = self.repo.index.commit(message, author=AUTHOR, committer=AUTHOR).hexsha
        self.repo.git.push("origin", "HEAD:main")
        return sha


@pytest.fixture
def dbt(repos, tmp_path) -> Dbt:
    return Dbt(repos.remote, tmp_path / "dbt-work")


def _pull(repos, **kw):
    forge = LocalForge(repos.state_db)
    result = run(PullJob(dbt_repo=repos.remote, semantic_repo=repos.semantic, head="main",
                         dbt_label="acme/dbt", **kw), forge)
    return forge, result


def _view(repos, branch: str, name: str = "orders"):
    blob = git.Repo(repos.semantic).commit(branch).tree / f"views/{name}.view.yaml"
    text = blob.data_stream.read().decode()
    return text, OmniYamlReader().read(text, f"views/{name}.view.yaml")


def test_a_new_column_opens_a_pr_with_a_dimension_and_its_provenance(repos, dbt) -> None:
    sha = dbt.commit({
        ORDERS_SQL: lambda t: t.replace("as amount\n", "as amount,\n        orders.order_date >= '2018-03-01' as "
                                                       "is_recent\n", 1),
        MARTS_YML: lambda t: t.replace("      - name: amount\n", "      - name: is_recent\n        description: "
                                       "Placed in March 2018 or later.\n      - name: amount\n", 1)})
    forge, result = _pull(repos)

    assert result.branch == f"layersync/pull/{sha[:7]}" and result.pr_created and result.exit_code == 0
    _, view = _view(repos, result.branch)
    assert view.fields["is_recent"].description == "Placed in March 2018 or later."
    assert view.fields["is_recent"].type == "yesno"            # a comparison: boolean, whatever the warehouse
    assert "(type yesno: boolean in the model's SQL)" in [n.text for n in result.notes if n.kind == "added"][0]
    body = forge.get_pr(str(repos.semantic.resolve()), result.pr.number).body
    assert "`orders.is_recent`" in body and f"`{sha[:7]}`" in body and "models/marts/orders.sql" in body

    again = _pull(repos)[1]                                   # the same dbt commit again: same PR, no new push
    assert again.pr.number == result.pr.number and not again.pr_created


FIRST_SEEN = {ORDERS_SQL: lambda t: t.replace("as amount\n", "as amount,\n        orders.order_date as first_seen\n", 1)}


def test_new_columns_take_their_type_from_prods_relations_in_the_warehouse(repos, dbt, tmp_path) -> None:
    """A plain column reference says nothing of its type: the warehouse does (read-only)."""
    import duckdb
    database = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(database)) as con:                 # as the deploy job left prod
        con.execute("create schema prod; create table prod.orders (order_id integer, first_seen timestamp)")
    before = database.read_bytes()
    dbt.commit(FIRST_SEEN)
    _, result = _pull(repos, warehouse=str(database), prod=ProdEnv(schema="prod"))
    _, view = _view(repos, result.branch)
    assert view.fields["first_seen"].type == "timestamp"
    assert "TIMESTAMP in the warehouse catalog" in [n.text for n in result.notes if n.kind == "added"][0]
    assert database.read_bytes() == before


def test_types_from_prods_catalog_json_and_an_unreachable_warehouse_costs_only_the_type(repos, dbt, tmp_path) -> None:
    state = tmp_path / "prod-state"
    state.mkdir()
    (state / "manifest.json").write_text(json.dumps({"nodes": {}}))
    (state / "catalog.json").write_text(json.dumps({"nodes": {"model.jaffle_shop.orders": {
        "metadata": {"name": "orders"}, "columns": {"FIRST_SEEN": {"name": "FIRST_SEEN", "type": "DATE"}}}}}))
    dbt.commit(FIRST_SEEN)
    _, result = _pull(repos, warehouse=str(tmp_path / "nowhere" / "missing.duckdb"), prod=ProdEnv(state=state))
    _, view = _view(repos, result.branch)
    assert view.fields["first_seen"].type == "date" and result.exit_code == 0


def test_a_rename_is_followed_and_a_reverse_rename_restores_the_bytes(repos, dbt) -> None:
    original = (repos.semantic / "views" / "orders.view.yaml").read_text()
    dbt.commit({ORDERS_SQL: lambda t: t.replace("as amount\n", "as order_amount\n", 1),
                MARTS_YML: lambda t: t.replace("      - name: amount\n", "      - name: order_amount\n", 1)})
    _, result = _pull(repos)
    text, view = _view(repos, result.branch)
    assert view.fields["order_amount"].aliases == ("amount",) and view.fields["revenue"].sql == "${order_amount}"

    # the analyst merges the PR; later dbt renames the column back: the views return to their first bytes
    semantic = git.Repo(repos.semantic)
    semantic.git.merge(result.branch)
    dbt.commit({ORDERS_SQL: lambda t: t.replace("as order_amount\n", "as amount\n", 1),
                MARTS_YML: lambda t: t.replace("      - name: order_amount\n", "      - name: amount\n", 1)})
    _, back = _pull(repos)
    assert _view(repos, back.branch)[0] == original


def test_a_removed_column_marks_dependants_and_asks_the_dbt_author(repos, dbt) -> None:
    dbt.commit({ORDERS_SQL: lambda t: t.replace("        orders.status,\n", "", 1)}, "drop status")
    forge, result = _pull(repos, authors=["dee"])

    assert result.exit_code == 1
    assert {n.field for n in result.notes if n.kind == "broken"} == {
        "orders.status", "orders.is_returned", "orders.returned_count"}
    text, view = _view(repos, result.branch)
    assert "status" in view.fields and text.count("# layersync: broken") == 3      # marked, nothing deleted
    body = forge.get_pr(str(repos.semantic.resolve()), result.pr.number).body
    assert "@dee" in body and "orders.is_returned → orders.returned_count" in body
    assert forge.review_requests(str(repos.semantic.resolve()), result.pr.number) == ["dee"]


def test_descriptions_and_tests_follow_but_an_analysts_words_stay(repos, dbt) -> None:
    dbt.commit({MARTS_YML: lambda t: t.replace("Date the order was placed.", "Day the order was placed (UTC).")
                .replace("The customer who placed the order.", "Who ordered.")
                .replace("'placed', 'shipped', 'completed', 'return_pending', 'returned'",
                         "'placed', 'shipped', 'completed', 'returned'")})
    forge, result = _pull(repos)
    _, view = _view(repos, result.branch)
    assert view.fields["order_date"].description == "Day the order was placed (UTC)."
    assert view.fields["customer_id"].description == "Joins to customers.customer_id."     # the analyst's
    assert view.fields["status"].attributes["allowed_values"] == ["placed", "shipped", "completed", "returned"]
    body = forge.get_pr(str(repos.semantic.resolve()), result.pr.number).body
    assert "Descriptions kept" in body and "`orders.customer_id`" in body


def test_bad_dbt_files_are_reported_and_the_rest_still_syncs(repos, dbt) -> None:
    repos.write_semantic("views/ghost.view.yaml", "table_name: no_such_model\ndimensions:\n  x: {}\n")
    repos.commit_semantic("a view on a missing model")
    dbt.commit({"models/marts/customers.sql": "select from from\n",
                "models/staging/_staging__models.yml": lambda t: t + "models: []\n",
                MARTS_YML: lambda t: t.replace("Date the order was placed.", "When it was placed.")})
    _, result = _pull(repos)
    problems = [n.text for n in result.notes if n.kind == "problem"]
    assert any("customers.sql" in p for p in problems)
    assert any("_staging__models.yml" in p and "duplicate" in p.lower() for p in problems)
    assert any("no_such_model" in p for p in problems)
    assert _view(repos, result.branch)[1].fields["order_date"].description == "When it was placed."


def test_a_moved_default_branch_rebuilds_the_bots_branch_but_an_analysts_commit_stops_it(repos, dbt) -> None:
    dbt.commit({MARTS_YML: lambda t: t.replace("Date the order was placed.", "When it was placed.")})
    forge, first = _pull(repos)
    repos.edit_view("customers", "label: Customers", "label: All customers")
    moved = repos.commit_semantic("unrelated analyst work on main")

    _, second = _pull(repos)                                  # rebuilt on the new main, same PR
    branch = git.Repo(repos.semantic).commit(second.branch)
    assert branch.parents[0].hexsha == moved and second.pr.number == first.pr.number, (second.message, second.commit, second.blocked_by)

    semantic = git.Repo(repos.semantic)                       # an analyst adds a commit to the bot's branch
    semantic.git.checkout(second.branch)
    repos.edit_view("orders", "label: Orders", "label: All orders")
    theirs = repos.commit_semantic("analyst tweak on the bot's branch")
    semantic.git.checkout("main")
    repos.edit_view("customers", "label: All customers", "label: Customers!")
    repos.commit_semantic("more work on main")

    _, third = _pull(repos)
    assert third.blocked_by and semantic.commit(third.branch).hexsha == theirs        # not force-pushed over
    comments = forge.list_comments(str(repos.semantic.resolve()), first.pr.number)
    assert any("will not rebuild the branch" in c.body for c in comments)


def test_cli_json_and_exit_codes(repos, dbt, capsys) -> None:
    dbt.commit({ORDERS_SQL: lambda t: t.replace("        orders.status,\n", "", 1)})
    code = main(["pull-from-dbt", "--dbt-repo", str(repos.remote), "--semantic-repo", str(repos.semantic),
                 "--head", "main", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["pr"]["created"] and {b["field"] for b in out["broken"]} >= {"orders.status"}
    assert main(["pull-from-dbt", "--dbt-repo", str(repos.remote), "--semantic-repo", "/nope"]) == 2


NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True).filter(
    lambda n: n not in {"amount", "order_id", "customer_id", "order_date", "status", "select", "from", "as",
                        "and", "or", "not", "in", "is", "null", "case", "when", "then", "else", "end", "true",
                        "false", "on", "by", "order", "group", "where", "having", "limit", "union", "all",
                        "join", "left", "right", "inner", "outer", "cross", "full", "with", "distinct",
                        # the orders view's own fields: a rename onto one of them is refused, not followed
                        "count", "revenue", "average_order_value", "credit_card_revenue", "customer_count",
                        "returned_count", "order_month", "is_returned", "orders", "payments", "final", "x"}
    and not n.endswith("_amount"))


def _rename(old: str, new: str) -> dict:
    """A dbt rename as an engineer makes it: the SQL alias and the model's YAML entry together."""
    def sql(text: str) -> str:
        for before, after in ((f"orders.{old},\n", f"orders.{old} as {new},\n"),
                              (f"orders.{new} as {old},\n", f"orders.{new},\n"),
                              (f" as {old}\n", f" as {new}\n")):
            if before in text:
                return text.replace(before, after, 1)
        raise AssertionError(f"no column {old} in orders.sql")
    return {ORDERS_SQL: sql, MARTS_YML: lambda t: t.replace(f"      - name: {old}\n", f"      - name: {new}\n", 1)}


@settings(max_examples=8, phases=[Phase.explicit, Phase.reuse, Phase.generate], deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(column=st.sampled_from(["amount", "status", "order_date", "customer_id"]), new=NAMES)
def test_rename_then_reverse_leaves_the_semantic_repo_byte_identical(tmp_path_factory, column, new) -> None:
    from conftest import Repos

    repos = Repos(tmp_path_factory.mktemp("roundtrip"))
    dbt = Dbt(repos.remote, repos.root / "dbt-work")
    before = {p.name: p.read_bytes() for p in (repos.semantic / "views").glob("*.yaml")}
    dbt.commit(_rename(column, new))
    _, there = _pull(repos)
    assert there.branch and not [n for n in there.notes if n.kind == "problem"]
    semantic = git.Repo(repos.semantic)
    semantic.git.merge(there.branch)
    dbt.commit(_rename(new, column))
    _, back = _pull(repos)
    semantic.git.merge(back.branch)
    after = {p.name: p.read_bytes() for p in (repos.semantic / "views").glob("*.yaml")}
    assert after == before


def test_authors_and_commit_text_in_the_pull_body_cannot_ping_a_team() -> None:
    from bot.dbt.changes import ProjectChanges
    from bot.pull_from_dbt import render_body
    from bot.translate.pull import Note, PullPlan

    plan = PullPlan(notes=[Note("broken", "reads the removed column `status`", field="orders.status",
                                file="views/orders.view.yaml", line=3)])
    body = render_body(branch="layersync/pull/abc", dbt_label="acme/dbt", dbt_commit="a" * 40,
                       commit_line="`aaaaaaaaaaaa` `fix @\u200dacme/admins`", plan=plan, changes=ProjectChanges(),
                       authors=["ada", "acme/admins"])
    assert "@ada " in body or "@ada:" in body           # a real login is still asked
    assert "@acme/admins" not in body                   # a team-shaped author is not a live mention



def test_problems_neither_the_change_nor_a_view_touches_fold_into_one_counted_line(repos, dbt, capsys) -> None:
    """On a large project most unreadable models are nobody's business in a one-line PR: they are
    counted under <details>, not listed as rows, and do not fail the pull; a problem in a file the
    change touches still does."""
    dbt.commit({"models/marts/legacy_a.sql": "select from from\n", "models/marts/legacy_b.sql": "select from from\n"},
               "two models layersync cannot read; no view reads them")
    dbt.commit({MARTS_YML: lambda t: t.replace("Date the order was placed.", "When it was placed.")})
    code = main(["pull-from-dbt", "--dbt-repo", str(repos.remote), "--semantic-repo", str(repos.semantic),
                 "--head", "main", "--json", "--state-db", str(repos.state_db)])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["problems"] == []
    assert sorted(p["dbt_file"] for p in out["problems_elsewhere"]) == ["models/marts/legacy_a.sql",
                                                                        "models/marts/legacy_b.sql"]
    body = LocalForge(repos.state_db).get_pr(out["pr"]["repo"], out["pr"]["number"]).body
    assert "<details><summary>2 other problems in dbt files this change and the semantic layer's views do not touch" \
        in body and "- `models/marts/legacy_a.sql`" in body
    assert "Could not be read or applied" not in body
    assert _view(repos, out["branch"])[1].fields["order_date"].description == "When it was placed."

    dbt.commit({"models/marts/legacy_a.sql": "select from from where\n",
                MARTS_YML: lambda t: t.replace("When it was placed.", "When it was placed, in UTC.")})
    _, touched = _pull(repos)
    assert touched.exit_code == 1
    assert {n.dbt_file for n in touched.notes if n.kind == "problem"} == {"models/marts/legacy_a.sql"}
    assert {n.dbt_file for n in touched.elsewhere} == {"models/marts/legacy_b.sql"}

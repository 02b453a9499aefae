"""Handlers on the local forge: real git repos, real dbt; payloads valid against GitHub's schemas."""
from __future__ import annotations

import git
import pytest

from bot.forge.local import LocalForge
from bot.handlers.context import Context, Settings
from bot.handlers.router import Event
from bot.service import ROUTER
from payloads import issue_comment_created, pull_request
from payloads import push as push_payload

LARGE = "\n  is_large_order:\n    description: Orders of more than 20 dollars\n    sql: ${TABLE}.amount > 20\nmeasures:"


@pytest.fixture
def world(repos):
    """The analyst's branch with a new field, and its PR on the semantic repo (local forge)."""
    forge = LocalForge(repos.state_db)
    semantic = git.Repo(repos.semantic)
    semantic.git.checkout("-b", "analyst/large-orders")
    repos.edit_view("orders", "\nmeasures:", LARGE)
    repos.commit_semantic("large orders")
    semantic.git.checkout("main")
    pr, _ = forge.open_or_update_pr(str(repos.semantic), head="analyst/large-orders", base="main",
                                    title="Large orders", body="adds orders.is_large_order")
    settings = Settings(dbt_repo=str(repos.remote), semantic_repo=str(repos.semantic))
    return repos, forge, pr, Context(forge, settings)


def dispatch(ctx, name: str, payload: dict) -> None:
    ROUTER.dispatch(Event(name, payload, "delivery-1"), ctx)


def comment(repos, pr, body: str, user: str = "ada", comment_id: int = 101, user_type: str = "User") -> dict:
    payload = issue_comment_created(repo=str(repos.semantic), number=pr.number, body=body, user=user,
                                    is_pr=True, user_type=user_type)
    payload["comment"]["id"] = comment_id
    return payload


def test_push_to_dbt_comment_opens_one_dbt_pr_and_replies_once(world) -> None:
    repos, forge, pr, ctx = world
    payload = comment(repos, pr, "/push-to-dbt")
    dispatch(ctx, "issue_comment", payload)
    dispatch(ctx, "issue_comment", payload)  # a retried job: same result, nothing twice

    (dbt_pr,) = forge.list_prs(str(repos.remote))
    assert dbt_pr.head == "layersync/push/orders-is_large_order"
    (reply,) = forge.list_comments(str(repos.semantic), pr.number)
    assert "<!-- layersync:push-to-dbt comment=101 -->" in reply.body
    assert dbt_pr.url in reply.body and "`orders.is_large_order`" in reply.body
    assert "amount > 20 as is_large_order" in repos.dbt_file(dbt_pr.head, "models/marts/orders.sql")


def test_readers_get_told_and_nothing_runs(world) -> None:
    repos, forge, pr, ctx = world
    forge.set_permission(str(repos.semantic), "mallory", "read")
    forge.set_permission(str(repos.semantic), "eve", "triage")
    dispatch(ctx, "issue_comment", comment(repos, pr, "/push-to-dbt", user="mallory"))
    (reply,) = forge.list_comments(str(repos.semantic), pr.number)
    assert "needs write access" in reply.body and "`read`" in reply.body
    for n in range(3):                     # more readers' commands: the one denial is edited, none added
        dispatch(ctx, "issue_comment", comment(repos, pr, "/push-to-dbt", user="eve", comment_id=200 + n))
    (reply,) = forge.list_comments(str(repos.semantic), pr.number)
    assert "@eve" in reply.body and "`triage`" in reply.body
    assert forge.list_prs(str(repos.remote)) == []


def test_readers_mistakes_and_help_get_no_reply(world) -> None:
    repos, forge, pr, ctx = world
    forge.set_permission(str(repos.semantic), "mallory", "read")
    for n, body in enumerate(["/layersync help", "/layersync frobnicate", "/push-to-dbt `x` @acme/admins",
                              "/preview now", "/push-to-dbt <!-- layersync:push-to-dbt comment=101 -->"]):
        dispatch(ctx, "issue_comment", comment(repos, pr, body, user="mallory", comment_id=300 + n))
    assert forge.list_comments(str(repos.semantic), pr.number) == []


def test_a_writers_mistake_is_echoed_inert(world) -> None:
    from test_commands import assert_inert

    repos, forge, pr, ctx = world
    line = "/push-to-dbt `x` @acme/admins <img src=x> #1"
    dispatch(ctx, "issue_comment", comment(repos, pr, line))
    (reply,) = forge.list_comments(str(repos.semantic), pr.number)
    echoed = reply.body.split("**layersync commands**")[0]
    assert_inert(echoed.replace("<!-- layersync:push-to-dbt comment=101 -->", ""), line)
    assert "@acme" not in reply.body


def test_a_preview_reply_quotes_the_branch_name(world) -> None:
    from test_commands import assert_inert

    repos, forge, pr, ctx = world
    branch = "x`@acme/admins`<b>#1"
    git.Repo(repos.semantic).git.branch(branch, "analyst/large-orders")
    hostile, _ = forge.open_or_update_pr(str(repos.semantic), head=branch, base="main", title="t", body="b")
    forge.close_pr(str(repos.semantic), hostile.number)
    payload = issue_comment_created(repo=str(repos.semantic), number=hostile.number, body="/preview", is_pr=True)
    dispatch(ctx, "issue_comment", payload)
    (reply,) = forge.list_comments(str(repos.semantic), hostile.number)
    assert "This PR is closed" in reply.body
    assert_inert(reply.body.replace(f"<!-- layersync:branch-preview pr={hostile.number} -->", ""), branch)


def test_help_usage_and_bots(world) -> None:
    repos, forge, pr, ctx = world
    dispatch(ctx, "issue_comment", comment(repos, pr, "/layersync help", comment_id=1))
    dispatch(ctx, "issue_comment", comment(repos, pr, "/layersync frobnicate", comment_id=2))
    dispatch(ctx, "issue_comment", comment(repos, pr, "/push-to-dbt", user="layersync[bot]", user_type="Bot",
                                           comment_id=3))
    dispatch(ctx, "issue_comment", comment(repos, pr, "nice work!", comment_id=4))
    replies = forge.list_comments(str(repos.semantic), pr.number)
    assert len(replies) == 2
    assert "**layersync commands**" in replies[0].body
    assert "`frobnicate` is not a layersync command" in replies[1].body
    assert forge.list_prs(str(repos.remote)) == []


def test_named_fields_on_the_pr(world) -> None:
    repos, forge, pr, ctx = world
    dispatch(ctx, "issue_comment", comment(repos, pr, "/push-to-dbt customers.full_name orders.nope"))
    (reply,) = forge.list_comments(str(repos.semantic), pr.number)
    assert "`customers.full_name`" in reply.body and "unknown field `nope`" in reply.body
    (dbt_pr,) = forge.list_prs(str(repos.remote))
    assert "full_name" in repos.dbt_file(dbt_pr.head, "models/marts/customers.sql")


def test_semantic_pr_gets_a_preview_comment_kept_in_place(world) -> None:
    repos, forge, pr, ctx = world
    head = git.Repo(repos.semantic).commit("analyst/large-orders").hexsha      # the event names the PR's head
    payload = pull_request("opened", repo=str(repos.semantic), number=pr.number, head_ref="analyst/large-orders",
                           base_ref="main", head_sha=head)
    dispatch(ctx, "pull_request", payload)
    payload = pull_request("synchronize", repo=str(repos.semantic), number=pr.number,
                           head_ref="analyst/large-orders", base_ref="main", head_sha=head)
    dispatch(ctx, "pull_request", payload)
    (preview,) = forge.list_comments(str(repos.semantic), pr.number)
    assert "<!-- layersync:preview pr=1 -->" in preview.body
    assert "`orders.is_large_order` | `orders.is_large_order` | added | `amount > 20`" in preview.body
    assert forge.list_prs(str(repos.remote)) == []  # a preview pushes nothing


def test_merged_dbt_pr_hands_the_fields_back_and_reports_to_the_origin(world) -> None:
    repos, forge, pr, ctx = world
    dispatch(ctx, "issue_comment", comment(repos, pr, "/push-to-dbt"))
    (dbt_pr,) = forge.list_prs(str(repos.remote))
    forge.close_pr(str(repos.remote), dbt_pr.number, merged=True)
    closed = pull_request("closed", repo=str(repos.remote), number=dbt_pr.number, head_ref=dbt_pr.head,
                          base_ref="main", merged=True, body=dbt_pr.body, user="layersync[bot]")
    dispatch(ctx, "pull_request", closed)
    dispatch(ctx, "pull_request", closed)  # redelivered: still one PR, one comment

    (adoption,) = [p for p in forge.list_prs(str(repos.semantic)) if p.head.startswith("layersync/adopt/")]
    view = (git.Repo(repos.semantic).commit(adoption.head).tree / "views/orders.view.yaml").data_stream.read().decode()
    assert "  is_large_order:\n    description: Orders of more than 20 dollars\n    sql: ${TABLE}.is_large_order\n" in view
    notes = [c for c in forge.list_comments(str(repos.semantic), pr.number) if "layersync:dbt-pr-closed" in c.body]
    assert adoption.base == "analyst/large-orders"  # the fields live on the open semantic PR's branch
    assert len(notes) == 1 and adoption.url in notes[0].body and dbt_pr.url in notes[0].body


def test_dbt_pr_closed_unmerged_is_reported(world) -> None:
    repos, forge, pr, ctx = world
    dispatch(ctx, "issue_comment", comment(repos, pr, "/push-to-dbt"))
    (dbt_pr,) = forge.list_prs(str(repos.remote))
    forge.close_pr(str(repos.remote), dbt_pr.number)
    dispatch(ctx, "pull_request", pull_request("closed", repo=str(repos.remote), number=dbt_pr.number,
                                               head_ref=dbt_pr.head, base_ref="main", body=dbt_pr.body))
    assert any("closed without merging" in c.body for c in forge.list_comments(str(repos.semantic), pr.number))
    assert [p.head for p in forge.list_prs(str(repos.semantic))] == ["analyst/large-orders"]


def test_auto_push_on_the_default_branch(world) -> None:
    repos, forge, pr, ctx = world
    semantic = git.Repo(repos.semantic)
    before = semantic.head.commit.hexsha
    semantic.git.merge("--ff-only", "analyst/large-orders")
    after = semantic.head.commit.hexsha
    payload = push_payload(repo=str(repos.semantic), before=before, after=after)
    dispatch(ctx, "push", payload)
    assert forge.list_prs(str(repos.remote)) == []  # auto_push is off by default
    auto = Context(forge, Settings(dbt_repo=str(repos.remote), semantic_repo=str(repos.semantic), auto_push=True))
    dispatch(auto, "push", payload)
    (dbt_pr,) = forge.list_prs(str(repos.remote))
    assert dbt_pr.head == "layersync/push/orders-is_large_order"


def test_a_job_that_fails_for_good_says_so_in_the_thread(world) -> None:
    from bot.jobs.queue import Job
    from bot.service import JobHandler

    repos, forge, pr, ctx = world
    payload = comment(repos, pr, "/push-to-dbt", comment_id=555)
    job = Job(id=1, delivery_id="d", event="issue_comment", payload=payload, key="k", attempts=8, state="failed",
              not_before=0.0, last_error=None, created_at=0.0)
    JobHandler(ctx).on_failure(job, "gave up after 8 attempts; last error: GitHub answered 502")
    (note,) = forge.list_comments(str(repos.semantic), pr.number)
    assert "<!-- layersync:push-to-dbt comment=555 -->" in note.body and "502" in note.body


@pytest.mark.slow
def test_dbt_pr_gets_an_impact_report_kept_in_place(world) -> None:
    repos, forge, pr, ctx = world
    dispatch(ctx, "issue_comment", comment(repos, pr, "/push-to-dbt"))
    (dbt_pr,) = forge.list_prs(str(repos.remote))
    sha = git.Repo(repos.remote).commit(dbt_pr.head).hexsha
    opened = pull_request("opened", repo=str(repos.remote), number=dbt_pr.number, head_ref=dbt_pr.head,
                          base_ref="main", head_sha=sha, body=dbt_pr.body, user="layersync[bot]")
    dispatch(ctx, "pull_request", opened)
    dispatch(ctx, "pull_request", opened)
    (report,) = forge.list_comments(str(repos.remote), dbt_pr.number)
    assert f"<!-- layersync:impact pr={dbt_pr.number} -->" in report.body
    assert "added `is_large_order` BOOLEAN" in report.body and "| 1 | 1 | 0 | 0 | 0 |" in report.body
    state, description = forge.statuses(str(repos.remote), sha)["layersync/impact"]
    assert state == "success" and "1 model(s) built" in description


def test_closing_a_dbt_pr_drops_its_dev_schema_and_nothing_else(repos, tmp_path) -> None:
    import duckdb

    from bot.impact.build import dev_schema_name

    warehouse = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute(f"create schema prod; create table prod.t as select 1 as x; create schema {dev_schema_name(4)}")
    ctx = Context(LocalForge(repos.state_db), Settings(dbt_repo="acme/dbt", semantic_repo="acme/semantic",
                                                       warehouse=str(warehouse)))
    dispatch(ctx, "pull_request", pull_request("closed", repo="acme/dbt", number=4, head_ref="feature",
                                               base_ref="main", merged=True))
    with duckdb.connect(str(warehouse), read_only=True) as con:
        schemas = {r[0] for r in con.execute("select schema_name from information_schema.schemata").fetchall()}
    assert "prod" in schemas and dev_schema_name(4) not in schemas

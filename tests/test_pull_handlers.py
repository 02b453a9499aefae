"""The pull direction through the webhook handlers (local forge, real git; payloads valid against
GitHub's schemas): a merge on dbt's main opens the semantic PR; a dbt PR is warned, in the same comment
as its impact report, about the semantic fields it breaks."""
from __future__ import annotations

import git
import pytest

from bot.demo.run import ANALYST
from bot.forge.local import LocalForge
from bot.handlers.context import Context, Settings
from bot.handlers.router import Event
from bot.service import ROUTER
from payloads import commit as commit_payload, pull_request
from payloads import push as push_payload

ORDERS_SQL = "models/marts/orders.sql"


def _dbt_commit(repos, tmp_path, branch: str, edit, message: str) -> str:
    work = git.Repo.clone_from(repos.remote, tmp_path / f"dbt-{branch.replace('/', '-')}")
    if branch != "main":
        work.git.checkout("-b", branch)
    path = tmp_path / f"dbt-{branch.replace('/', '-')}" / ORDERS_SQL
    path.write_text(edit(path.read_text()))
    work.git.add("-A")
    sha = work.index.commit(message, author=ANALYST, committer=ANALYST).hexsha
    work.git.push("origin", f"HEAD:{branch}")
    return sha


@pytest.fixture
def ctx(repos):
    forge = LocalForge(repos.state_db)
    return Context(forge, Settings(dbt_repo=str(repos.remote), semantic_repo=str(repos.semantic)))


def test_a_merge_on_dbt_main_opens_the_semantic_pr_and_asks_its_author(repos, ctx, tmp_path) -> None:
    before = git.Repo(repos.remote).commit("main").hexsha
    sha = _dbt_commit(repos, tmp_path, "main", lambda t: t.replace("        orders.status,\n", "", 1), "drop status")
    payload = push_payload(repo=str(repos.remote), before=before, after=sha,
                           commits=[commit_payload(sha=sha, repo=str(repos.remote), author="dee")], pusher="dee")
    ROUTER.dispatch(Event("push", payload, "d-1"), ctx)
    ROUTER.dispatch(Event("push", payload, "d-1"), ctx)          # a redelivery: still one PR

    (pr,) = ctx.forge.list_prs(str(repos.semantic))
    assert pr.head == f"layersync/pull/{sha[:7]}" and "`orders.returned_count`" in pr.body and "@dee" in pr.body
    assert ctx.forge.review_requests(str(repos.semantic), pr.number) == ["dee"]

    other = push_payload(repo=str(repos.remote), ref="refs/heads/feature", before=before, after=sha)
    ROUTER.dispatch(Event("push", other, "d-2"), ctx)             # not the default branch: nothing
    assert len(ctx.forge.list_prs(str(repos.semantic))) == 1


@pytest.mark.slow
def test_a_dbt_pr_is_warned_in_the_impact_comment_against_its_paired_semantic_branch(repos, ctx, tmp_path) -> None:
    # the analyst's semantic branch of the same name adds a field on `status`: the pairing must see it
    semantic = git.Repo(repos.semantic)
    semantic.git.checkout("-b", "drop-status")
    repos.edit_view("orders", "\nmeasures:", "\n  is_placed:\n    sql: ${TABLE}.status = 'placed'\nmeasures:")
    repos.commit_semantic("is_placed")
    semantic.git.checkout("main")
    sha = _dbt_commit(repos, tmp_path, "drop-status", lambda t: t.replace("        orders.status,\n", "", 1),
                      "drop status")
    pr, _ = ctx.forge.open_or_update_pr(str(repos.remote), head="drop-status", base="main", title="drop status",
                                        body="")
    opened = pull_request("opened", repo=str(repos.remote), number=pr.number, head_ref="drop-status",
                          base_ref="main", head_sha=sha)
    ROUTER.dispatch(Event("pull_request", opened, "d-3"), ctx)

    (comment,) = ctx.forge.list_comments(str(repos.remote), pr.number)
    body = comment.body
    assert "### layersync impact report" in body and "### Semantic layer: fields this PR breaks or alters" in body
    assert "@ `drop-status`" in body                                   # judged against the paired branch
    assert "| ❌ breaks | `orders.is_placed` | views/orders.view.yaml:" in body
    assert "`orders.returned_count`" in body

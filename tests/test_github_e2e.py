"""The service end to end against the GitHub stand-in: real HTTP, real git over HTTP, real dbt,
every API request checked against GitHub's published REST description."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import git
import pytest

from bot.demo.run import ANALYST, create_dbt_repo, create_semantic_repo
from github_standin import GitHubStandIn
from payloads import encode, issue_comment_created, signed_headers

pytestmark = pytest.mark.slow
SECRET = "webhook-secret-for-tests"
TOKEN = "ghs_layersyncTestToken0123456789"
LARGE = "\n  is_large_order:\n    description: Orders of more than 20 dollars\n    sql: ${TABLE}.amount > 20\nmeasures:"


@contextmanager
def analyst_pr_on_standin(tmp_path: Path, branch: str, addition: str, title: str, token: str = TOKEN):
    """acme/dbt (the demo's jaffle_shop) and acme/semantic on the stand-in, with ada's PR from `branch`,
    which adds `addition` to the orders view; the bot's token works for both repos."""
    source = tmp_path / "source"
    dbt_remote = create_dbt_repo(source)
    semantic = create_semantic_repo(source)
    repo = git.Repo(semantic)
    repo.git.checkout("-b", branch)
    view = semantic / "views" / "orders.view.yaml"
    view.write_text(view.read_text().replace("\nmeasures:", addition, 1))
    repo.git.add("-A")
    repo.index.commit(title, author=ANALYST, committer=ANALYST)
    repo.git.checkout("main")
    with GitHubStandIn() as standin:
        standin.create_repo("acme/dbt", from_path=dbt_remote)
        standin.create_repo("acme/semantic", from_path=semantic)
        standin.add_user("ada")
        standin.grant("acme/semantic", "ada", "write")
        standin.add_user("layersync-bot", type="Bot")
        standin.add_token(token, user="layersync-bot")
        yield standin, standin.create_pr("acme/semantic", head=branch, base="main", title=title, user="ada")


@pytest.fixture
def github(tmp_path):
    with analyst_pr_on_standin(tmp_path, "analyst/large-orders", LARGE, "Large orders") as world:
        yield world


def service_env(standin, tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "LAYERSYNC_WEBHOOK_SECRET": SECRET, "LAYERSYNC_GITHUB_TOKEN": TOKEN,
            "LAYERSYNC_GITHUB_API_URL": standin.api_url, "LAYERSYNC_DBT_REPO": "acme/dbt",
            "LAYERSYNC_SEMANTIC_REPO": "acme/semantic", "LAYERSYNC_QUEUE_DB": str(tmp_path / "jobs.sqlite"),
            "LAYERSYNC_LEASE_SECONDS": "3", "LAYERSYNC_BOT_LOGIN": "layersync-bot"}


def start(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, "-m", "bot.cli", *args], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    first_line = process.stdout.readline()
    threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()  # keep the pipe drained
    return process, first_line


def deliver(url: str, standin, pr, delivery: str = "d-1") -> int:
    comment = standin.add_comment("acme/semantic", pr.number, "/push-to-dbt", user="ada")
    payload = issue_comment_created(repo="acme/semantic", number=pr.number, body="/push-to-dbt", user="ada",
                                    is_pr=True)
    payload["comment"]["id"] = comment.id
    body = encode(payload)
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers=signed_headers(SECRET, body, "issue_comment", delivery))
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202
        json.loads(response.read())
    return comment.id


def wait_for(predicate, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError("timed out waiting")


def bot_replies(standin, pr) -> list:
    return [c for c in standin.comments("acme/semantic", pr.number) if c.user == "layersync-bot"]


def test_comment_to_dbt_pr_through_real_http(github, tmp_path) -> None:
    standin, pr = github
    server, banner = start(["serve", "--port", "0", "--with-worker"], service_env(standin, tmp_path))
    try:
        url = banner.split(" on ", 1)[1].split()[0]
        comment_id = deliver(url, standin, pr)
        wait_for(lambda: any("Pushed to dbt" in c.body for c in bot_replies(standin, pr)))
    finally:
        server.terminate()
        server.wait(10)
    (dbt_pr,) = standin.prs("acme/dbt")
    assert dbt_pr.head == "layersync/push/orders-is_large_order" and dbt_pr.base == "main"
    assert "amount > 20 as is_large_order" in standin.file_at("acme/dbt", dbt_pr.head, "models/marts/orders.sql")
    (reply,) = bot_replies(standin, pr)
    assert f"/acme/dbt/pull/{dbt_pr.number}" in reply.body
    reactions = [c for c in standin.comments("acme/semantic", pr.number) if c.id == comment_id][0].reactions
    assert [r.content for r in reactions] == ["eyes"]
    standin.assert_no_violations()


def test_worker_killed_between_branch_push_and_pr_leaves_one_pr_and_one_reply(github, tmp_path) -> None:
    standin, pr = github
    env = service_env(standin, tmp_path)
    reached, release = threading.Event(), threading.Event()
    serve_api = standin._serve_api

    def hold_first_pr_create(handler, parsed):
        if handler.command == "POST" and parsed.path.endswith("/repos/acme/dbt/pulls") and not reached.is_set():
            reached.set()
            release.wait(60)  # GitHub gets the request; the worker that sent it is dead by then
        return serve_api(handler, parsed)

    standin._serve_api = hold_first_pr_create
    receiver, banner = start(["serve", "--port", "0"], env)
    worker, _ = start(["worker"], env)
    try:
        deliver(banner.split(" on ", 1)[1].split()[0], standin, pr)
        assert reached.wait(180), "the worker never got to opening the PR"
        assert standin.branch_sha("acme/dbt", "layersync/push/orders-is_large_order"), "branch pushed first"
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
        release.set()
        worker, _ = start(["worker"], env)  # the job's lease runs out and it runs again
        wait_for(lambda: any("Pushed to dbt" in c.body for c in bot_replies(standin, pr)))
    finally:
        for process in (receiver, worker):
            process.terminate()
            process.wait(10)
    assert len(standin.prs("acme/dbt")) == 1
    assert len(bot_replies(standin, pr)) == 1
    standin.assert_no_violations()


def test_commit_status_through_the_github_forge(github) -> None:
    from bot.forge.github import GitHubForge

    standin, _ = github
    forge = GitHubForge.from_token(TOKEN, base_url=standin.api_url, bot_login="layersync-bot")
    sha = standin.branch_sha("acme/dbt", "main")
    forge.set_status("acme/dbt", sha, "pending", "building")
    forge.set_status("acme/dbt", sha, "failure", "x" * 200)
    statuses = standin.statuses("acme/dbt")
    assert [s["state"] for s in statuses] == ["pending", "failure"]
    assert len(statuses[-1]["description"]) == 140 and statuses[-1]["context"] == "layersync/impact"
    standin.assert_no_violations()

"""Issue 10, fault 1, end to end: a `/push-to-dbt` of fields whose SQL asks dbt's Jinja for the bot's
token and webhook secret, through the service (receiver → queue → worker → GitHub stand-in, real git
over HTTP, real dbt), posts no secret anywhere: comments, statuses, PR titles and bodies, the job
queue, and the log lines the service writes (the dbt output among them).

Whether the push is refused for its Jinja (fault 2) or reaches dbt, nothing may carry a secret."""
from __future__ import annotations

import argparse
import logging

import pytest

from bot import redact
from payloads import encode, issue_comment_created, signed_headers
from test_github_e2e import analyst_pr_on_standin

pytestmark = pytest.mark.slow

# No credential shape (no ghs_ prefix, no URL): only their registration as configured secrets masks them.
TOKEN = "tok-e2e-Marmot-Kestrel-4410"
WEBHOOK_SECRET = "whsec-e2e-Quokka-Zebra-7781"
# The issue's field, and the same with the inner quotes doubled, which every SQL parser takes for one
# string literal (with single quotes inside, some dialects' parsers refuse it before dbt sees it).
LEAKS = r"""
  leak_token:
    sql: "'{{ exceptions.raise_compiler_error(env_var('LAYERSYNC_GITHUB_TOKEN')) }}'"
  leak_token_quoted:
    sql: "'{{ exceptions.raise_compiler_error(env_var(\"LAYERSYNC_GITHUB_TOKEN\")) }}'"
  leak_secret:
    sql: "'{{ env_var(\"LAYERSYNC_WEBHOOK_SECRET\") }}'"
measures:"""


@pytest.fixture
def service(tmp_path, monkeypatch, caplog):
    """The service's settings as `layersync serve --with-worker` reads them, over a stand-in holding
    acme/dbt and acme/semantic with an analyst's PR that adds the two fields."""
    caplog.set_level(logging.DEBUG)
    with analyst_pr_on_standin(tmp_path, "analyst/leak", LEAKS, "Order flags", token=TOKEN) as (standin, pr):
        for name, value in {"LAYERSYNC_WEBHOOK_SECRET": WEBHOOK_SECRET, "LAYERSYNC_GITHUB_TOKEN": TOKEN,
                            "LAYERSYNC_GITHUB_API_URL": standin.api_url, "LAYERSYNC_DBT_REPO": "acme/dbt",
                            "LAYERSYNC_SEMANTIC_REPO": "acme/semantic",
                            "LAYERSYNC_QUEUE_DB": str(tmp_path / "jobs.sqlite"),
                            "LAYERSYNC_BOT_LOGIN": "layersync-bot"}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("LAYERSYNC_CONFIG", raising=False)
        yield standin, pr


def _serve_one_comment(standin, pr) -> tuple[list[str], int]:
    """What `layersync serve --with-worker` does with one signed `/push-to-dbt` comment: the same
    start-up (`main`'s secret registration, the logging set-up, the settings), the receiver app, and
    the worker run until the queue is empty. Returns the job's recorded errors and its id."""
    from bot.cli import _service_config
    from bot.jobs.queue import JobQueue
    from bot.jobs.worker import Worker
    from bot.service import build_handler
    from webhooks.app import ReceiverSettings, create_app

    redact.register_from_env()                       # as bot.cli.main does first
    config = _service_config(argparse.Namespace(config=None))
    queue = JobQueue(config.queue_db)
    app = create_app(ReceiverSettings(secret=config.webhook_secret), queue)
    comment = standin.add_comment("acme/semantic", pr.number, "/push-to-dbt", user="ada")
    payload = issue_comment_created(repo="acme/semantic", number=pr.number, body="/push-to-dbt", user="ada",
                                    is_pr=True)
    payload["comment"]["id"] = comment.id
    body = encode(payload)
    answer = app.test_client().post("/webhooks/github", data=body,
                                    headers=signed_headers(WEBHOOK_SECRET, body, "issue_comment", "leak-1"))
    assert answer.status_code == 202, answer.get_data(as_text=True)
    handler = build_handler(config)
    worker = Worker(queue, handler, threads=1, on_failure=handler.on_failure, max_attempts=1)
    while worker.run_once():
        pass
    job = queue.get_by_delivery("leak-1")
    assert job is not None and job.state in ("done", "failed"), job
    return [job.last_error or ""], job.id


def _everything_posted(standin) -> list[str]:
    texts: list[str] = []
    for repo in ("acme/semantic", "acme/dbt"):
        for pr in standin.prs(repo):
            texts += [pr.title, pr.body or ""]
            texts += [c.body for c in standin.comments(repo, pr.number)]
        texts += [str(s.get("description") or "") for s in standin.statuses(repo)]
    return texts


def test_push_of_fields_asking_for_secrets_posts_and_logs_none(service, caplog) -> None:
    standin, pr = service
    queue_errors, _ = _serve_one_comment(standin, pr)

    replies = [c.body for c in standin.comments("acme/semantic", pr.number) if c.user == "layersync-bot"]
    assert replies and "push-to-dbt started" not in replies[-1], replies     # the job finished and said so
    # what the service's log handlers write (scrubbing formatter), and the dbt lines as they were logged
    logged = [caplog.text] + [r.getMessage() for r in caplog.records if r.getMessage().startswith("dbt | ")]
    assert "layersync" in caplog.text and "job " in caplog.text                       # the log was captured
    everywhere = "\n".join(_everything_posted(standin) + queue_errors + logged)
    for secret in (TOKEN, WEBHOOK_SECRET):
        assert secret not in everywhere, [t for t in _everything_posted(standin) + queue_errors + logged
                                          if secret in t][:3]
    standin.assert_no_violations()

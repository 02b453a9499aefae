"""The GitHub webhook receiver: verify, dedupe, enqueue, acknowledge.

GitHub gives a delivery 10 seconds and does not retry a failed one by itself, so the request
path does only what must happen before the acknowledgment: bound the body, check the HMAC
signature, parse the JSON, and store the delivery durably in the job queue. Everything slow
(git, dbt, the GitHub API) happens in the workers. This module therefore imports neither git,
sqlglot, dbt nor PyGithub (a test checks), which also keeps the receiver's start-up fast.

Status codes, chosen so GitHub's delivery log tells the operator what went wrong:

* 202 — stored (``{"job": id}``), a redelivery of a stored delivery
  (``{"duplicate": true, "job": id}``), or an event we don't subscribe to (``{"ignored": event}``).
* 200 — ``ping`` (``{"ok": true, "zen": ...}``): answered, never queued.
* 400 — a body over ``max_body`` (GitHub caps payloads at 25 MB: anything larger is not GitHub;
  400 rather than 413 as the issue asks), missing ``X-GitHub-Event``/``X-GitHub-Delivery``, or
  a body that is not a JSON object.
* 401 — missing or wrong ``X-Hub-Signature-256``: nothing is parsed or stored.
* 503 — the queue could not store the delivery (disk full, lock timeout): GitHub shows the
  failure and the delivery can be redelivered from its UI.

Error bodies are short fixed reasons: never the secret, a header or the payload.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from dataclasses import dataclass, field

from flask import Flask, Response, jsonify, request

from bot.jobs.queue import JobQueue, job_key

__all__ = ["ReceiverSettings", "create_app", "signature_for"]

log = logging.getLogger(__name__)

DEFAULT_EVENTS: frozenset[str] = frozenset(
    {"issue_comment", "push", "pull_request", "delete", "installation", "installation_repositories"}
)

# GitHub's delivery ids are GUIDs and event names are snake_case words: anything else (or
# anything long) is not GitHub and must not reach the database or the logs unchecked.
_DELIVERY_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_EVENT_RE = re.compile(r"^[a-z_]{1,64}$")


@dataclass(frozen=True)
class ReceiverSettings:
    """What the receiver needs: the webhook secret, the body bound, the events it queues."""

    secret: str
    max_body: int = 25 * 1024 * 1024
    events: frozenset[str] = field(default=DEFAULT_EVENTS)


def signature_for(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body``: ``sha256=<hex HMAC>``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _error(status: int, reason: str) -> tuple[Response, int]:
    return jsonify({"error": reason}), status


def create_app(settings: ReceiverSettings, queue: JobQueue) -> Flask:
    """The receiver as a Flask app over ``queue``.

    Refuses an empty secret: an unsigned receiver would run jobs for anyone who can reach it.
    """
    if not settings.secret:
        raise ValueError("a webhook secret is required")
    if settings.max_body <= 0:
        raise ValueError("max_body must be positive")

    app = Flask(__name__)
    # Flask must never buffer or reject the body on its own: we read it ourselves, bounded.
    app.config["MAX_CONTENT_LENGTH"] = None
    app.json.sort_keys = False  # type: ignore[attr-defined]
    secret = settings.secret.encode("utf-8")

    @app.post("/webhooks/github")
    def github_webhook() -> tuple[Response, int]:
        """Verify, dedupe, enqueue and acknowledge one delivery (see the module docstring)."""
        declared = request.content_length
        if declared is not None and declared > settings.max_body:
            return _error(400, "body too large")
        # Read at most one byte past the bound: a chunked body with no Content-Length is
        # bounded too, and memory never grows past max_body + 1.
        raw = request.stream.read(settings.max_body + 1)
        if len(raw) > settings.max_body:
            return _error(400, "body too large")

        given = request.headers.get("X-Hub-Signature-256", "")
        expected = "sha256=" + hmac.new(secret, raw, hashlib.sha256).hexdigest()
        if not given or not hmac.compare_digest(expected.encode("ascii"), given.encode("utf-8", "replace")):
            log.warning("webhook rejected: %s signature", "missing" if not given else "bad")
            return _error(401, "missing or invalid signature")

        event = request.headers.get("X-GitHub-Event", "")
        delivery = request.headers.get("X-GitHub-Delivery", "")
        if not event or not delivery:
            return _error(400, "missing X-GitHub-Event or X-GitHub-Delivery header")
        if not _EVENT_RE.match(event) or not _DELIVERY_RE.match(delivery):
            return _error(400, "malformed X-GitHub-Event or X-GitHub-Delivery header")

        try:
            payload = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return _error(400, "body is not JSON")
        if not isinstance(payload, dict):
            return _error(400, "body is not a JSON object")

        if event == "ping":
            log.info("webhook ping (delivery %s)", delivery)
            return jsonify({"ok": True, "zen": payload.get("zen")}), 200
        if event not in settings.events:
            log.info("webhook %s ignored (delivery %s)", event, delivery)
            return jsonify({"ignored": event}), 202

        try:
            job_id, created = queue.enqueue(delivery, event, raw, job_key(event, payload))
        except Exception:  # noqa: BLE001 - any storage failure must be a visible 5xx, not a 202
            log.exception("webhook %s: could not enqueue delivery %s", event, delivery)
            return _error(503, "queue unavailable")
        if not created:
            log.info("webhook %s: redelivery %s is job %s", event, delivery, job_id)
            return jsonify({"duplicate": True, "job": job_id}), 202
        log.info("webhook %s: delivery %s queued as job %s", event, delivery, job_id)
        return jsonify({"job": job_id}), 202

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        """Liveness plus the backlog, so an operator (or a probe) sees a stuck worker."""
        try:
            return jsonify({"ok": True, "queue_depth": queue.depth(), "jobs": queue.counts()}), 200
        except Exception:  # noqa: BLE001
            log.exception("healthz: queue unreadable")
            return jsonify({"ok": False, "error": "queue unavailable"}), 503

    return app


def create_app_from_env() -> Flask:
    """The WSGI entry point for deployments: `gunicorn 'webhooks.app:create_app_from_env()'`.

    Settings come from `LAYERSYNC_*` variables (see deploy/README.md); only the secret and the queue
    matter here — the receiver verifies and records, the worker does the rest.
    """
    from bot.service_config import load_service_config

    config = load_service_config()
    config.queue_db.parent.mkdir(parents=True, exist_ok=True)
    return create_app(ReceiverSettings(secret=config.webhook_secret), JobQueue(config.queue_db))

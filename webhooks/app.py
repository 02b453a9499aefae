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
  a body that is not a JSON object GitHub could have sent (see ``parse_payload``: not UTF-8,
  nested past ``MAX_DEPTH``, a lone surrogate, NaN, a number past int64, a duplicate key).
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
from werkzeug.exceptions import ClientDisconnected

from bot.jobs.queue import JobQueue, job_key

__all__ = ["NotGitHubJSON", "ReceiverSettings", "create_app", "parse_payload", "signature_for"]

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


class NotGitHubJSON(ValueError):
    """A body Python's parser might accept but GitHub never sends; its message is the 400's reason."""


# GitHub's payloads nest about ten levels deep. A fixed bound, far below Python's recursion limit,
# means a body that passes here parses the same way wherever a worker reads it again.
MAX_DEPTH = 64
_INT64 = 2 ** 63
# After a strict UTF-8 decode, a surrogate can only come from a `\uD800`-`\uDFFF` escape; a body
# without one (almost all: GitHub sends non-ASCII text as UTF-8) skips the walk over its strings.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _refuse_constant(name: str) -> None:
    raise NotGitHubJSON("body is not JSON: NaN and Infinity are not JSON numbers")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise NotGitHubJSON("body is not JSON: a number out of range")
    return value


def _int64(text: str) -> int:
    value = int(text)      # Python refuses more than 4,300 digits itself (a ValueError)
    if not -_INT64 <= value < _INT64:
        raise NotGitHubJSON("body is not JSON: a number out of range")
    return value


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """Refuse duplicate keys: which one wins differs between JSON readers, so a body with them can
    mean one thing here and another to the next tool that reads the stored delivery."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise NotGitHubJSON("body is not JSON: a duplicate key")
    return obj


def _check_shape(payload: object, strings: bool) -> None:
    """Nesting within MAX_DEPTH and, when `strings`, no lone surrogate in any key or string (it
    could not be stored or posted as UTF-8 later). Iterative: the walk has no recursion limit."""
    stack: list[tuple[object, int]] = [(payload, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise NotGitHubJSON(f"body is not JSON GitHub sends: nested deeper than {MAX_DEPTH}")
        items = node.items() if isinstance(node, dict) else enumerate(node)  # type: ignore[union-attr]
        for key, value in items:
            if strings and (isinstance(key, str) and _SURROGATE.search(key)
                            or isinstance(value, str) and _SURROGATE.search(value)):
                raise NotGitHubJSON("body is not JSON: a lone surrogate in a string")
            if isinstance(value, (dict, list)):
                stack.append((value, depth + 1))


def parse_payload(raw: bytes) -> dict:
    """The delivery's JSON object, refusing what GitHub never sends (each a `NotGitHubJSON`).

    UTF-8 only (json.loads would guess UTF-16/32 and let encoded surrogates through), no
    NaN/Infinity or numbers outside int64/float, no duplicate keys, at most MAX_DEPTH levels, no
    lone surrogate: anything stored must re-encode, and parse identically, in the worker.
    """
    try:
        text = raw.decode("utf-8")
        payload = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_refuse_constant,
                             parse_float=_finite_float, parse_int=_int64)
    except NotGitHubJSON:
        raise
    except RecursionError:
        raise NotGitHubJSON(f"body is not JSON GitHub sends: nested deeper than {MAX_DEPTH}") from None
    except ValueError:     # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise NotGitHubJSON("body is not JSON") from None
    if not isinstance(payload, dict):
        raise NotGitHubJSON("body is not a JSON object")
    _check_shape(payload, strings=_SURROGATE_ESCAPE.search(text) is not None)
    return payload


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
        try:
            raw = request.stream.read(settings.max_body + 1)
        except (ClientDisconnected, OSError):   # the client stopped short of its Content-Length, or stalled
            return _error(400, "body incomplete")
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
            payload = parse_payload(raw)
        except NotGitHubJSON as exc:
            return _error(400, str(exc))

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
    from bot.redact import install_log_scrubber
    from bot.service_config import load_service_config

    config = load_service_config()                      # registers the secrets with the scrubber
    for name in ("", "gunicorn.error", "gunicorn.access"):   # the server's handlers, set up before the app
        install_log_scrubber(logging.getLogger(name) if name else None)
    config.queue_db.parent.mkdir(parents=True, exist_ok=True)
    return create_app(ReceiverSettings(secret=config.webhook_secret), JobQueue(config.queue_db))

"""The webhook receiver: real Flask test client over a real SQLite queue, plus one run over real
HTTP on loopback. Payloads come from tests/payloads.py (validated against GitHub's schemas)."""
from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from bot.jobs.queue import JobQueue
import payloads  # tests/payloads.py (pytest puts tests/ on sys.path)
from webhooks.app import ReceiverSettings, create_app, signature_for

SECRET = "s3cret-for-tests-only"
URL = "/webhooks/github"
REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def queue(tmp_path: Path) -> JobQueue:
    return JobQueue(tmp_path / "queue.sqlite")


@pytest.fixture
def app(queue: JobQueue) -> Flask:
    return create_app(ReceiverSettings(secret=SECRET), queue)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def deliver(client: FlaskClient, event: str, payload: dict | bytes, *, delivery: str | None = None,
            secret: str = SECRET, drop: tuple[str, ...] = (), **extra_headers: str):
    body = payload if isinstance(payload, bytes) else payloads.encode(payload)
    headers = payloads.signed_headers(secret, body, event, delivery or str(uuid.uuid4()))
    for name in drop:
        headers.pop(name)
    headers.update(extra_headers)
    return client.post(URL, data=body, headers=headers)


# -- fixtures are GitHub-valid ---------------------------------------------------------------


def test_payload_builders_are_valid_against_githubs_schema() -> None:
    # Each builder validates on return; these also exercise every variant the handlers use.
    payloads.issue_comment_created()
    payloads.issue_comment_created(is_pr=True, user_type="Bot", body="/push-to-dbt orders.x")
    payloads.push(commits=[payloads.commit("a"), payloads.commit("b", added=["views/x.view.yaml"])])
    for action in ("opened", "synchronize", "reopened", "edited"):
        payloads.pull_request(action)
    payloads.pull_request("closed", merged=True)
    payloads.pull_request("closed", merged=False)
    payloads.ping()


def test_validate_rejects_what_github_would_never_send() -> None:
    good = payloads.issue_comment_created()
    with pytest.raises(jsonschema.ValidationError, match="sender"):
        payloads.validate("issue_comment", payloads.mutated(good, sender={"login": "ada"}))
    with pytest.raises(jsonschema.ValidationError, match="installation"):
        payloads.validate("issue_comment", payloads.mutated(good, installation={"id": "4242"}))
    with pytest.raises(jsonschema.ValidationError, match="date-time"):
        bad = payloads.mutated(good)
        bad["comment"]["created_at"] = "yesterday"
        payloads.validate("issue_comment", bad)
    with pytest.raises(KeyError):
        payloads.validate("no_such_event", good)


def test_signed_headers_match_githubs_signature_scheme() -> None:
    body = b'{"zen":"x"}'
    headers = payloads.signed_headers("It's a Secret to Everybody", b"Hello, World!", "ping", "d-1")
    # The worked example in GitHub's "Validating webhook deliveries" documentation.
    assert headers["X-Hub-Signature-256"] == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )
    assert payloads.signed_headers(SECRET, body, "ping", "d")["X-Hub-Signature-256"] == signature_for(SECRET, body)


# -- signature -------------------------------------------------------------------------------


def test_valid_signature_is_queued_with_its_raw_body_and_key(client: FlaskClient, queue: JobQueue) -> None:
    payload = payloads.issue_comment_created(repo="acme/semantic", number=7, is_pr=True)
    resp = deliver(client, "issue_comment", payload, delivery="d-1")
    assert resp.status_code == 202
    job = queue.get(resp.get_json()["job"])
    assert (job.delivery_id, job.event, job.key, job.state) == ("d-1", "issue_comment", "acme/semantic#7", "queued")
    assert job.payload == payload


@pytest.mark.parametrize(
    "how",
    ["missing", "empty", "wrong-digest", "other-secret", "sha1-prefix", "no-prefix", "tampered-body", "non-ascii"],
)
def test_bad_signature_is_401_and_nothing_is_stored(client: FlaskClient, queue: JobQueue, how: str) -> None:
    body = payloads.encode(payloads.issue_comment_created())
    headers = payloads.signed_headers(SECRET, body, "issue_comment", "d-1")
    good = headers["X-Hub-Signature-256"]
    if how == "missing":
        del headers["X-Hub-Signature-256"]
    elif how == "empty":
        headers["X-Hub-Signature-256"] = ""
    elif how == "wrong-digest":
        headers["X-Hub-Signature-256"] = good[:-1] + ("0" if good[-1] != "0" else "1")
    elif how == "other-secret":
        headers = payloads.signed_headers("another-secret", body, "issue_comment", "d-1")
    elif how == "sha1-prefix":
        headers["X-Hub-Signature-256"] = "sha1=" + good.split("=", 1)[1]
    elif how == "no-prefix":
        headers["X-Hub-Signature-256"] = good.split("=", 1)[1]
    elif how == "tampered-body":
        body = body.replace(b"/push-to-dbt", b"/push-to-evil")
    elif how == "non-ascii":
        headers["X-Hub-Signature-256"] = "sha256=\u00e9" * 8
    resp = client.post(URL, data=body, headers=headers)
    assert resp.status_code == 401
    assert resp.get_json() == {"error": "missing or invalid signature"}
    assert queue.counts() == {"queued": 0, "running": 0, "done": 0, "failed": 0}


def test_errors_never_echo_the_secret_or_headers(client: FlaskClient) -> None:
    body = b"not json"
    headers = payloads.signed_headers(SECRET, body, "issue_comment", "d-echo")
    for resp in (
        client.post(URL, data=body, headers=headers),
        client.post(URL, data=body, headers={**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64}),
    ):
        text = resp.get_data(as_text=True)
        assert resp.status_code in (400, 401)
        assert SECRET not in text and headers["X-Hub-Signature-256"] not in text and "d-echo" not in text


def test_an_empty_secret_is_refused(queue: JobQueue) -> None:
    with pytest.raises(ValueError, match="secret"):
        create_app(ReceiverSettings(secret=""), queue)


# -- request shape ---------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe\x00", b"", b"[1, 2, 3]", b'"a string"'])
def test_a_body_that_is_not_a_json_object_is_400(client: FlaskClient, queue: JobQueue, body: bytes) -> None:
    resp = deliver(client, "issue_comment", body)
    assert resp.status_code == 400
    assert "JSON" in resp.get_json()["error"]
    assert queue.depth() == 0


def _comment_with(raw_json_value: bytes) -> bytes:
    """An otherwise valid issue_comment body whose comment text is ``raw_json_value`` (raw JSON)."""
    body = payloads.encode(payloads.issue_comment_created(body="PLACEHOLDER"))
    return body.replace(b'"PLACEHOLDER"', raw_json_value)


def _nested(depth: int) -> bytes:
    return b'{"action":"created","deep":' + b"[" * depth + b"]" * depth + b"}"


# JSON that Python's parser accepts but GitHub never sends: each must be a 400 and store nothing,
# never a 5xx (a 500 from the parser's recursion limit, a 503 from the queue failing to encode).
NOT_GITHUB_JSON = {
    "nested 1,000 deep": _nested(1000),
    "nested 100,000 deep": _nested(100_000),
    "nested past the bound": _nested(65),
    "lone high surrogate": _comment_with(rb'"\ud800"'),
    "lone low surrogate": _comment_with(rb'"x\udc00y"'),
    "high surrogate then a letter": _comment_with(rb'"\uD83Dx"'),
    "surrogate in a key": b'{"action":"created","\\udfff":1}',
    "surrogate in the repository name": payloads.encode(payloads.issue_comment_created()).replace(
        b'"full_name":"acme/semantic"', rb'"full_name":"\ud800"'),
    "UTF-8-encoded surrogate bytes": _comment_with(b'"\xed\xa0\x80"'),
    "NaN": _comment_with(b"NaN"),
    "Infinity": _comment_with(b"-Infinity"),
    "a float that overflows to infinity": _comment_with(b"1e999"),
    "an integer of 5,000 digits": _comment_with(b"9" * 5000),
    "an integer past 64 bits": _comment_with(b"18446744073709551616"),
    "a duplicate key": b'{"action":"created","action":"deleted"}',
}


@pytest.mark.parametrize("body", NOT_GITHUB_JSON.values(), ids=NOT_GITHUB_JSON.keys())
def test_json_github_never_sends_is_400_and_not_stored(client: FlaskClient, queue: JobQueue, body: bytes) -> None:
    resp = deliver(client, "issue_comment", body)
    assert resp.status_code == 400, resp.get_data(as_text=True)[:200]
    assert "JSON" in resp.get_json()["error"]
    assert queue.depth() == 0


@pytest.mark.parametrize("value", [rb'"\ud83d\ude00 \u00e9"', '"😀 é"'.encode(), rb'"\\ud800"', b"-12.5e3",
                                   b"9223372036854775807"])
def test_json_github_does_send_is_stored(client: FlaskClient, queue: JobQueue, value: bytes) -> None:
    """Escaped surrogate pairs, raw UTF-8, an escaped backslash before `ud800`, floats, int64."""
    body = _comment_with(value)
    resp = deliver(client, "issue_comment", body)
    assert resp.status_code == 202
    assert queue.get(resp.get_json()["job"]).payload["comment"]["body"] == json.loads(value)


def test_nesting_within_the_bound_is_stored(client: FlaskClient, queue: JobQueue) -> None:
    assert deliver(client, "issue_comment", _nested(63)).status_code == 202


@pytest.mark.parametrize("header", ["X-GitHub-Event", "X-GitHub-Delivery"])
def test_missing_event_or_delivery_header_is_400(client: FlaskClient, queue: JobQueue, header: str) -> None:
    resp = deliver(client, "issue_comment", payloads.issue_comment_created(), drop=(header,))
    assert resp.status_code == 400
    assert "X-GitHub-Event or X-GitHub-Delivery" in resp.get_json()["error"]
    assert queue.depth() == 0


def test_malformed_delivery_id_is_400(client: FlaskClient, queue: JobQueue) -> None:
    resp = deliver(client, "issue_comment", payloads.issue_comment_created(), delivery="x" * 500)
    assert resp.status_code == 400
    assert queue.depth() == 0


def test_a_body_over_max_body_is_400_and_not_stored(queue: JobQueue) -> None:
    client = create_app(ReceiverSettings(secret=SECRET, max_body=4096), queue).test_client()
    small = payloads.ping()
    assert deliver(client, "ping", small).status_code == 200
    big = payloads.issue_comment_created(body="x" * 5000)
    resp = deliver(client, "issue_comment", big)
    assert resp.status_code == 400
    assert resp.get_json() == {"error": "body too large"}
    assert queue.depth() == 0


def test_the_default_bound_is_githubs_25_mb(client: FlaskClient, queue: JobQueue) -> None:
    assert ReceiverSettings(secret="x").max_body == 25 * 1024 * 1024
    body = b'{"a":"' + b"x" * (25 * 1024 * 1024) + b'"}'
    resp = deliver(client, "issue_comment", body)
    assert resp.status_code == 400 and resp.get_json() == {"error": "body too large"}
    assert queue.depth() == 0


# -- events ----------------------------------------------------------------------------------


def test_ping_answers_200_with_zen_and_is_not_queued(client: FlaskClient, queue: JobQueue) -> None:
    resp = deliver(client, "ping", payloads.ping(zen="Design for failure."))
    assert resp.status_code == 200
    assert resp.get_json() == {"ok": True, "zen": "Design for failure."}
    assert queue.depth() == 0


def test_an_event_we_dont_handle_is_acknowledged_and_ignored(client: FlaskClient, queue: JobQueue) -> None:
    resp = deliver(client, "star", {"action": "created", "repository": {"full_name": "acme/semantic"}})
    assert resp.status_code == 202
    assert resp.get_json() == {"ignored": "star"}
    assert queue.counts()["queued"] == 0


def test_custom_event_set(queue: JobQueue) -> None:
    client = create_app(ReceiverSettings(secret=SECRET, events=frozenset({"push"})), queue).test_client()
    assert deliver(client, "push", payloads.push()).status_code == 202
    assert deliver(client, "issue_comment", payloads.issue_comment_created()).get_json() == {"ignored": "issue_comment"}
    assert queue.depth() == 1


@pytest.mark.parametrize(
    "event, payload, key",
    [
        ("push", lambda: payloads.push(repo="acme/semantic"), "acme/semantic"),
        ("pull_request", lambda: payloads.pull_request("opened", repo="acme/dbt", number=12), "acme/dbt#12"),
        ("issue_comment", lambda: payloads.issue_comment_created(repo="acme/semantic", number=3), "acme/semantic#3"),
        ("installation", lambda: {"action": "created", "installation": {"id": 5, "node_id": "x"}}, "installation:5"),
    ],
)
def test_each_handled_event_is_queued_under_its_key(client: FlaskClient, queue: JobQueue, event, payload, key) -> None:
    resp = deliver(client, event, payload())
    assert resp.status_code == 202
    assert queue.get(resp.get_json()["job"]).key == key


def test_a_redelivery_is_acknowledged_but_queued_once(client: FlaskClient, queue: JobQueue) -> None:
    payload = payloads.issue_comment_created()
    first = deliver(client, "issue_comment", payload, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    again = deliver(client, "issue_comment", payload, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    assert first.status_code == again.status_code == 202
    job_id = first.get_json()["job"]
    assert again.get_json() == {"duplicate": True, "job": job_id}
    assert queue.counts() == {"queued": 1, "running": 0, "done": 0, "failed": 0}


def test_a_queue_failure_is_a_503_not_a_false_ack(tmp_path: Path) -> None:
    class BrokenQueue(JobQueue):
        def enqueue(self, *args, **kwargs):  # type: ignore[override]
            raise OSError("disk full")

    client = create_app(ReceiverSettings(secret=SECRET), BrokenQueue(tmp_path / "q.sqlite")).test_client()
    resp = deliver(client, "push", payloads.push())
    assert resp.status_code == 503
    assert resp.get_json() == {"error": "queue unavailable"}


def test_healthz_reports_depth_and_counts(client: FlaskClient, queue: JobQueue) -> None:
    assert client.get("/healthz").get_json() == {
        "ok": True, "queue_depth": 0, "jobs": {"queued": 0, "running": 0, "done": 0, "failed": 0}
    }
    for n in range(3):
        deliver(client, "issue_comment", payloads.issue_comment_created(number=n + 1))
    job = queue.claim("w")
    assert job is not None
    queue.complete(job.id)
    queue.claim("w")
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.get_json() == {"ok": True, "queue_depth": 2, "jobs": {"queued": 1, "running": 1, "done": 1, "failed": 0}}


def test_only_post_is_accepted(client: FlaskClient) -> None:
    assert client.get(URL).status_code == 405


def test_the_receiver_imports_no_git_sqlglot_dbt_or_pygithub() -> None:
    code = (
        "import sys, webhooks.app, bot.jobs\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'git', 'sqlglot', 'dbt', 'github'})\n"
        "print(heavy)\n"
        "sys.exit(1 if heavy else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- over real HTTP --------------------------------------------------------------------------


@pytest.fixture
def server(app: Flask) -> Iterator[int]:
    srv = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv.server_port
    finally:
        srv.shutdown()
        thread.join(timeout=5)


def test_real_http_delivery_and_chunked_oversize(server: int, queue: JobQueue, tmp_path: Path) -> None:
    payload = payloads.pull_request("synchronize", repo="acme/dbt", number=12)
    body = payloads.encode(payload)
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    try:
        conn.request("POST", URL, body=body, headers=payloads.signed_headers(SECRET, body, "pull_request", "real-1"))
        resp = conn.getresponse()
        data = json.loads(resp.read())
        assert resp.status == 202
        assert queue.get(data["job"]).payload == payload
    finally:
        conn.close()

    # Chunked transfer encoding (no Content-Length): the body is still bounded by max_body.
    small = create_app(ReceiverSettings(secret=SECRET, max_body=1024), queue)
    srv = make_server("127.0.0.1", 0, small, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        big = payloads.encode(payloads.issue_comment_created(body="y" * 4096))
        conn = http.client.HTTPConnection("127.0.0.1", srv.server_port, timeout=10)
        chunks = (big[i:i + 512] for i in range(0, len(big), 512))
        conn.request("POST", URL, body=chunks, encode_chunked=True,
                     headers=payloads.signed_headers(SECRET, big, "issue_comment", "real-2"))
        resp = conn.getresponse()
        assert resp.status == 400
        assert json.loads(resp.read()) == {"error": "body too large"}
        conn.close()
    finally:
        srv.shutdown()
        thread.join(timeout=5)
    assert queue.get_by_delivery("real-2") is None
    assert queue.depth() == 1


# -- `layersync serve` itself ---------------------------------------------------------------


@pytest.fixture
def layersync_serve(tmp_path: Path) -> Iterator[int]:
    """A real `layersync serve` process on a free loopback port (stopped by this fixture only)."""
    import os
    import select

    env = {**os.environ, "LAYERSYNC_WEBHOOK_SECRET": SECRET, "LAYERSYNC_FORGE": "local",
           "LAYERSYNC_DBT_REPO": str(tmp_path / "dbt"), "LAYERSYNC_SEMANTIC_REPO": str(tmp_path / "semantic"),
           "LAYERSYNC_QUEUE_DB": str(tmp_path / "queue.sqlite"), "XDG_DATA_HOME": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1", "--port", "0"],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline().decode() if ready else ""
        assert "layersync receiver on http://127.0.0.1:" in line, line
        yield int(line.split("http://127.0.0.1:", 1)[1].split("/", 1)[0])
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _raw_exchange(port: int, head: bytes, first_bytes: bytes) -> tuple[bytes, bool]:
    """Send a request head and the first bytes of its body, then read: (what came back, whether the
    server closed the connection). The socket timeout bounds the wait: a server that keeps the
    socket open shows up as `closed == False`, however slow the machine."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + first_bytes)
        data, closed = b"", False
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    closed = True
                    break
                data += chunk
        except TimeoutError:
            pass
        except ConnectionResetError:
            closed = True
        return data, closed


@pytest.mark.parametrize("path, status, reason", [(URL, 400, b'{"error":"body too large"}'),
                                                   ("/elsewhere", 404, b"Not Found")])
def test_serve_closes_the_socket_after_refusing_a_body_it_did_not_read(layersync_serve: int, path: str,
                                                                       status: int, reason: bytes) -> None:
    """A client that announces 30 MB and sends its first 256 KiB (more than the server's read
    buffer: some of it waits in the socket) gets its answer and then EOF: the server neither waits
    for nor reads the rest of the body."""
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {30 * 1024 * 1024}\r\nX-GitHub-Event: push\r\nX-GitHub-Delivery: big-1\r\n"
            "X-Hub-Signature-256: sha256=00\r\n\r\n").encode()
    data, closed = _raw_exchange(layersync_serve, head, b'{"zen":"' + b"x" * 256 * 1024)
    status_line, _, rest = data.partition(b"\r\n")
    assert status_line.startswith(f"HTTP/1.1 {status}".encode()), data[:200]
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"connection: close" in headers.lower()
    assert reason in body
    assert closed, "the server kept the connection open"


def test_serve_still_acknowledges_a_delivery(layersync_serve: int) -> None:
    body = payloads.encode(payloads.push(repo="acme/semantic"))
    conn = http.client.HTTPConnection("127.0.0.1", layersync_serve, timeout=10)
    try:
        conn.request("POST", URL, body=body, headers=payloads.signed_headers(SECRET, body, "push", "serve-1"))
        resp = conn.getresponse()
        assert resp.status == 202 and "job" in json.loads(resp.read())
    finally:
        conn.close()

"""Load test of the webhook receiver against a bare Flask endpoint, on loopback only.

Why: GitHub waits at most 10 s for an acknowledgment and a busy org sends bursts (a push that
touches many PRs, a bot storm). The receiver's request path is verify + parse + one SQLite
insert; this measures what that costs over an endpoint that does no work at all, under
concurrency, and checks the queue afterwards: every distinct delivery stored exactly once, with
its exact body (1% of requests are redeliveries of an earlier delivery id, some of them racing
the original).

Both servers are real HTTP servers (werkzeug's threaded ``make_server``, HTTP/1.1 keep-alive)
in their own processes, so the client threads here don't share a GIL with them. The run stops
after ``--requests`` requests or ``--seconds`` seconds per target, whichever comes first.

    python benchmarks/webhook_load.py [--requests 20000] [--seconds 60] [--concurrency 16]
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import multiprocessing as mp
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # tests/payloads.py: GitHub-valid payloads

HOST = "127.0.0.1"  # loopback only, by design
SECRET = "benchmark-secret"
URL = "/webhooks/github"


# -- servers (each in its own process) -------------------------------------------------------


def _serve(kind: str, db_path: str, synchronous: str, port_out: "mp.connection.Connection", stop: "mp.synchronize.Event") -> None:
    """Child process: run one server until ``stop`` is set."""
    import logging

    from flask import Flask, request
    from werkzeug.serving import WSGIRequestHandler, make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    class KeepAlive(WSGIRequestHandler):
        protocol_version = "HTTP/1.1"  # keep connections open between requests

        def log_request(self, *args: object, **kwargs: object) -> None:  # no per-request log lines
            pass

    if kind == "receiver":
        from bot.jobs.queue import JobQueue
        from webhooks.app import ReceiverSettings, create_app

        app = create_app(ReceiverSettings(secret=SECRET), JobQueue(db_path, synchronous=synchronous))
    else:
        app = Flask("bare")

        @app.post(URL)
        def bare() -> tuple[str, int]:
            request.get_data()  # read the body as the receiver must, do nothing else
            return '{"ok":true}', 202

    srv = make_server(HOST, 0, app, threaded=True, request_handler=KeepAlive)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    port_out.send(srv.server_port)
    stop.wait()
    srv.shutdown()
    thread.join(timeout=10)


class Server:
    """A server process started and stopped by this benchmark (and only by it)."""

    def __init__(self, kind: str, db_path: Path, synchronous: str):
        ctx = mp.get_context("spawn")
        self._stop = ctx.Event()
        recv, send = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=_serve, args=(kind, str(db_path), synchronous, send, self._stop), daemon=True)
        self.proc.start()
        if not recv.poll(60):
            self.proc.kill()
            raise RuntimeError(f"{kind} server did not start")
        self.port: int = recv.recv()

    def close(self) -> None:
        self._stop.set()
        self.proc.join(timeout=15)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


# -- the deliveries ----------------------------------------------------------------------------


@dataclass
class Plan:
    """What to send: request i is (event, delivery id, body). About 1% re-send an earlier
    delivery id with the identical body, as GitHub's "Redeliver" does."""

    templates: list[tuple[str, bytes]]
    redeliver: float
    seed: int
    sent: list[tuple[str, str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def next(self) -> tuple[str, str, bytes, bool]:
        with self.lock:
            if self.sent and self.rng.random() < self.redeliver:
                event, delivery, body = self.rng.choice(self.sent[-200:])  # recent: some still in flight
                return event, delivery, body, True
            n = len(self.sent)
            event, template = self.templates[n % len(self.templates)]
            delivery = str(uuid.UUID(int=self.rng.getrandbits(128)))
            body = template.replace(b"__N__", str(n).encode())
            self.sent.append((event, delivery, body))
            return event, delivery, body, False


def templates() -> list[tuple[str, bytes]]:
    """Realistic bodies: comments on 40 issues/PRs (one key each) and PR synchronize events."""
    import payloads

    out: list[tuple[str, bytes]] = []
    for number in range(1, 41):
        p = payloads.issue_comment_created(repo="acme/semantic", number=number, is_pr=number % 2 == 0,
                                           body="/push-to-dbt orders.__N__", comment_id=number)
        out.append(("issue_comment", payloads.encode(p)))
    for number in range(100, 105):
        p = payloads.pull_request("synchronize", repo="acme/dbt", number=number, body="delivery __N__")
        out.append(("pull_request", payloads.encode(p)))
    return out


# -- the client --------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    elapsed: float = 0.0
    answers: list[tuple[str, bytes, int, dict, bool]] = field(default_factory=list)

    @property
    def done(self) -> int:
        return len(self.latencies)

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        data = sorted(self.latencies)
        return data[min(len(data) - 1, int(round(q * (len(data) - 1))))] * 1000


def drive(name: str, port: int, plan: Plan, requests: int, seconds: float, concurrency: int, keep: bool) -> Result:
    """``concurrency`` threads, one keep-alive connection each, until the budget is spent."""
    from webhooks.app import signature_for

    result = Result(name)
    budget = iter(range(requests))
    budget_lock = threading.Lock()
    deadline = time.monotonic() + seconds
    out_lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        local_lat: list[float] = []
        local_status: dict[int, int] = {}
        local_answers: list[tuple[str, bytes, int, dict, bool]] = []
        errors = 0
        while time.monotonic() < deadline:
            with budget_lock:
                if next(budget, None) is None:
                    break
            event, delivery, body, redelivery = plan.next()
            headers = {
                "Content-Type": "application/json",
                "X-GitHub-Event": event,
                "X-GitHub-Delivery": delivery,
                "X-Hub-Signature-256": signature_for(SECRET, body),
            }
            t0 = time.perf_counter()
            try:
                conn.request("POST", URL, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException):
                errors += 1
                conn.close()
                conn = http.client.HTTPConnection(HOST, port, timeout=30)
                continue
            local_lat.append(time.perf_counter() - t0)
            local_status[resp.status] = local_status.get(resp.status, 0) + 1
            if keep:
                local_answers.append((delivery, body, resp.status, json.loads(data or b"{}"), redelivery))
        conn.close()
        with out_lock:
            result.latencies.extend(local_lat)
            result.errors += errors
            result.answers.extend(local_answers)
            for k, v in local_status.items():
                result.statuses[k] = result.statuses.get(k, 0) + v

    threads = [threading.Thread(target=client, name=f"client-{i}") for i in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.elapsed = time.perf_counter() - t0
    return result


def check_queue(db_path: Path, result: Result) -> tuple[bool, list[str]]:
    """Every distinct delivery answered 202 is stored exactly once, with its exact body, under
    the job id the receiver answered; redeliveries got the original's job id."""
    lines: list[str] = []
    db = sqlite3.connect(db_path)
    stored = {d: (i, hashlib.sha256(b).digest()) for i, d, b in db.execute("SELECT id, delivery_id, body FROM jobs")}
    total_rows = db.execute("SELECT count(*) FROM jobs").fetchone()[0]
    db.close()
    sent: dict[str, bytes] = {}
    job_of: dict[str, set[int]] = {}
    created: dict[str, int] = {}
    dup_answers = redeliveries = 0
    bad_status = 0
    for delivery, body, status, answer, redelivery in result.answers:
        redeliveries += redelivery
        if status != 202 or "job" not in answer:
            bad_status += 1
            continue
        sent[delivery] = body
        job_of.setdefault(delivery, set()).add(answer["job"])
        if answer.get("duplicate"):
            dup_answers += 1
        else:
            created[delivery] = created.get(delivery, 0) + 1
    lost = [d for d in sent if d not in stored]
    extra = [d for d in stored if d not in sent]
    corrupted = [d for d, b in sent.items() if d in stored and stored[d][1] != hashlib.sha256(b).digest()]
    wrong_id = [d for d, ids in job_of.items() if d in stored and ids != {stored[d][0]}]
    twice_created = [d for d, n in created.items() if n != 1]
    ok = not (lost or extra or corrupted or wrong_id or twice_created or bad_status) and total_rows == len(sent)
    lines.append(f"distinct deliveries acknowledged  {len(sent)}")
    lines.append(f"jobs in the queue                 {total_rows}")
    lines.append(f"redeliveries sent                 {redeliveries}  (answered duplicate: {dup_answers})")
    lines.append(f"lost                              {len(lost)}")
    lines.append(f"duplicated                        {len(extra) + len(twice_created) + max(0, total_rows - len(stored))}")
    lines.append(f"body differs from what was sent   {len(corrupted)}")
    lines.append(f"answer named another job id       {len(wrong_id)}")
    lines.append(f"non-202 answers                   {bad_status}")
    return ok, lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=20_000, help="requests per target (default 20000)")
    ap.add_argument("--seconds", type=float, default=60.0, help="time budget per target (default 60)")
    ap.add_argument("--concurrency", type=int, default=16, help="client threads = keep-alive connections (default 16)")
    ap.add_argument("--redeliver", type=float, default=0.01, help="share of redeliveries (default 0.01)")
    ap.add_argument("--synchronous", default="NORMAL", help="queue's SQLite synchronous pragma (NORMAL or FULL)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    if args.requests < 1 or args.seconds <= 0 or args.concurrency < 1:
        ap.error("--requests, --seconds and --concurrency must be positive")
    args.seconds = min(args.seconds, 600.0)  # bounded whatever is asked

    tmpl = templates()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="layersync-bench-") as tmp:
        db_path = Path(tmp) / "queue.sqlite"
        for kind in ("bare", "receiver"):
            server = Server(kind, db_path, args.synchronous)
            try:
                plan = Plan(tmpl, args.redeliver, args.seed)
                results.append(drive(kind, server.port, plan, args.requests, args.seconds, args.concurrency,
                                     keep=kind == "receiver"))
            finally:
                server.close()
        ok, check_lines = check_queue(db_path, results[1])

    bare, recv = results
    print(f"webhook load: {HOST}, {args.concurrency} keep-alive connections, budget {args.requests} requests "
          f"or {args.seconds:g} s per target, {args.redeliver:.0%} redeliveries, "
          f"queue synchronous={args.synchronous.upper()}, body ~{statistics.mean(len(b) for _, b in tmpl) / 1024:.1f} KiB")
    print()
    header = f"{'target':<26}{'requests':>9}{'errors':>8}{'seconds':>9}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
    print(header)
    print("-" * len(header))
    for r, label in ((bare, "bare Flask (202, no work)"), (recv, "receiver (verify+enqueue)")):
        print(f"{label:<26}{r.done:>9}{r.errors:>8}{r.elapsed:>9.2f}{r.done / r.elapsed:>9.0f}{r.pct(0.50):>9.2f}{r.pct(0.99):>9.2f}")
    print("-" * len(header))
    thr = (recv.done / recv.elapsed) / (bare.done / bare.elapsed)
    print(f"{'receiver / bare':<26}{'':>9}{'':>8}{'':>9}{thr:>8.2f}x{recv.pct(0.5) / bare.pct(0.5):>8.2f}x"
          f"{recv.pct(0.99) / bare.pct(0.99):>8.2f}x")
    print()
    print("queue check (receiver run)")
    for line in check_lines:
        print("  " + line)
    print(f"  {'OK: every delivery stored exactly once' if ok else 'FAILED'}")
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(recv.statuses.items()))
    print(f"  receiver status codes: {statuses}")
    return 0 if ok and not bare.errors and not recv.errors else 1


if __name__ == "__main__":
    raise SystemExit(main())

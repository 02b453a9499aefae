"""The durable queue and its workers, on real SQLite files: ordering per key, concurrency across
keys, leases, a worker process killed with SIGKILL mid-job, retries with backoff, failures."""
from __future__ import annotations

import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import payloads  # tests/payloads.py (pytest puts tests/ on sys.path)
from bot.jobs import Job, JobQueue, TransientError, Worker, job_key
from bot.jobs.worker import retry_after_from_headers

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def queue(tmp_path: Path) -> JobQueue:
    return JobQueue(tmp_path / "queue.sqlite")


def put(queue: JobQueue, delivery: str, key: str = "acme/semantic#1", event: str = "issue_comment") -> int:
    job_id, created = queue.enqueue(delivery, event, b'{"n": "%s"}' % delivery.encode(), key)
    assert created
    return job_id


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


def _assert_state(queue: JobQueue, job_id: int, state: str) -> None:
    assert queue.get(job_id).state == state


def kill_once(args: list[str], ready, before_kill=lambda: None) -> int:
    """Start a worker process, SIGKILL it once `ready(pid)` (its marker files say it holds its jobs),
    and make sure it is gone whatever happens: a death at the worst moment, not a shutdown. The pid."""
    proc = subprocess.Popen(args)
    try:
        wait_until(lambda: ready(proc.pid), timeout=30)
        before_kill()
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.pid


# -- keys ------------------------------------------------------------------------------------


def test_job_key_serialises_per_issue_or_pr_and_per_repo_otherwise() -> None:
    assert job_key("issue_comment", payloads.issue_comment_created(repo="acme/semantic", number=7)) == "acme/semantic#7"
    assert job_key("issue_comment", payloads.issue_comment_created(number=9, is_pr=True)) == "acme/semantic#9"
    assert job_key("pull_request", payloads.pull_request("closed", repo="acme/dbt", number=12, merged=True)) == "acme/dbt#12"
    assert job_key("issues", {"repository": {"full_name": "acme/x"}, "issue": {"number": 3}}) == "acme/x#3"
    assert job_key("push", payloads.push(repo="acme/semantic")) == "acme/semantic"
    assert job_key("installation", {"installation": {"id": 5, "node_id": "n"}}) == "installation:5"
    assert job_key("meta", {}) == "global"


# -- enqueue ---------------------------------------------------------------------------------


def test_enqueue_stores_the_raw_body_and_dedupes_on_delivery_id(queue: JobQueue) -> None:
    body = payloads.encode(payloads.push())
    job_id, created = queue.enqueue("d-1", "push", body, "acme/semantic")
    assert created
    assert queue.enqueue("d-1", "push", body, "acme/semantic") == (job_id, False)
    assert queue.enqueue("d-1", "push", "{}", "other") == (job_id, False)  # nothing overwritten
    job = queue.get(job_id)
    assert job.payload == payloads.push() and job.key == "acme/semantic" and job.attempts == 0
    assert job.state == "queued" and job.last_error is None and job.not_before <= time.time()
    assert queue.depth() == 1
    assert queue.counts() == {"queued": 1, "running": 0, "done": 0, "failed": 0}
    with pytest.raises(KeyError):
        queue.get(999)


def test_jobs_survive_reopening_the_file(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.sqlite")
    job_id, _ = q.enqueue("d-1", "push", "{}", "k")
    q.close()
    again = JobQueue(tmp_path / "q.sqlite")
    assert again.get(job_id).delivery_id == "d-1"
    assert sqlite3.connect(tmp_path / "q.sqlite").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_concurrent_redeliveries_from_many_threads_store_each_delivery_once(queue: JobQueue) -> None:
    ids: dict[str, set[int]] = {}
    created_count: dict[str, int] = {}
    lock = threading.Lock()

    def send(thread: int) -> None:
        for n in range(40):
            delivery = f"d-{n}"
            job_id, created = queue.enqueue(delivery, "push", "{}", f"repo-{n % 5}")
            with lock:
                ids.setdefault(delivery, set()).add(job_id)
                created_count[delivery] = created_count.get(delivery, 0) + int(created)

    threads = [threading.Thread(target=send, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(len(v) == 1 for v in ids.values())
    assert set(created_count.values()) == {1}
    assert queue.depth() == 40


# -- claim: order and leases -----------------------------------------------------------------


def test_claim_keeps_order_within_a_key_and_runs_other_keys_meanwhile(queue: JobQueue) -> None:
    a1, a2, b1, a3 = put(queue, "a1", "A"), put(queue, "a2", "A"), put(queue, "b1", "B"), put(queue, "a3", "A")
    first = queue.claim("w1")
    assert first is not None and first.id == a1 and first.state == "running"
    second = queue.claim("w2")
    assert second is not None and second.id == b1  # a2 waits for a1
    assert queue.claim("w3") is None
    queue.complete(a1)
    assert queue.claim("w3").id == a2  # type: ignore[union-attr]
    queue.fail(a2, "boom")  # a failed job frees its key too
    assert queue.claim("w3").id == a3  # type: ignore[union-attr]
    assert queue.get(a2).state == "failed" and queue.get(a2).last_error == "boom"


def test_a_job_waiting_out_a_retry_holds_back_later_jobs_of_its_key(queue: JobQueue) -> None:
    a1, a2, b1 = put(queue, "a1", "A"), put(queue, "a2", "A"), put(queue, "b1", "B")
    assert queue.claim("w").id == a1  # type: ignore[union-attr]
    queue.retry(a1, 0.3, "TransientError: 502")
    job = queue.get(a1)
    assert (job.state, job.attempts, job.last_error) == ("queued", 1, "TransientError: 502")
    assert queue.claim("w").id == b1  # type: ignore[union-attr]
    assert queue.claim("w") is None  # a2 must not overtake a1
    time.sleep(0.35)
    assert queue.claim("w").id == a1  # type: ignore[union-attr]
    assert a2 > a1


def test_an_expired_lease_makes_a_running_job_claimable_again(queue: JobQueue) -> None:
    job_id = put(queue, "d-1")
    assert queue.claim("dead-worker", lease_seconds=0.2).id == job_id  # type: ignore[union-attr]
    assert queue.claim("w2") is None  # leased
    time.sleep(0.25)
    resumed = queue.claim("w2")
    assert resumed is not None and resumed.id == job_id
    assert resumed.attempts == 1 and "lease expired" in (resumed.last_error or "")
    # The dead worker coming back late must not overwrite the new holder's outcome.
    assert queue.complete(job_id, worker_id="dead-worker") is False
    assert queue.get(job_id).state == "running"
    assert queue.heartbeat(job_id, "dead-worker", 10) is False
    assert queue.heartbeat(job_id, "w2", 10) is True
    assert queue.complete(job_id, worker_id="w2") is True
    assert queue.get(job_id).state == "done"


def test_concurrent_claims_never_hand_out_a_job_twice(queue: JobQueue) -> None:
    for n in range(120):
        put(queue, f"d-{n}", key=f"repo-{n}")
    claimed: list[int] = []
    lock = threading.Lock()

    def take(name: str) -> None:
        while (job := queue.claim(name)) is not None:
            with lock:
                claimed.append(job.id)
            queue.complete(job.id, worker_id=name)

    threads = [threading.Thread(target=take, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(set(claimed)) and len(claimed) == 120
    assert queue.counts()["done"] == 120


def test_an_unreadable_body_fails_instead_of_blocking_its_key(queue: JobQueue) -> None:
    bad, _ = queue.enqueue("bad", "push", b"\x00not json", "A")
    good = put(queue, "good", "A")
    job = queue.claim("w")
    assert job is not None and job.id == good
    assert queue.get(bad).state == "failed" and "unreadable payload" in (queue.get(bad).last_error or "")


# -- worker ----------------------------------------------------------------------------------


def test_worker_runs_keys_concurrently_but_each_key_one_at_a_time_in_order(queue: JobQueue) -> None:
    for n in range(4):
        for key in ("A", "B"):
            put(queue, f"{key}{n}", key)
    intervals: list[tuple[str, int, float, float]] = []
    lock = threading.Lock()

    def handle(job: Job) -> None:
        start = time.monotonic()
        time.sleep(0.05)
        with lock:
            intervals.append((job.key, int(job.delivery_id[1:]), start, time.monotonic()))

    stop = threading.Event()
    worker = Worker(queue, handle, threads=3, poll_interval=0.01)
    runner = threading.Thread(target=worker.run, args=(stop,))
    runner.start()
    wait_until(lambda: queue.counts()["done"] == 8)
    stop.set()
    runner.join(timeout=10)
    assert not runner.is_alive()
    for key in ("A", "B"):
        mine = sorted((s, e, n) for k, n, s, e in intervals if k == key)
        assert [n for _, _, n in mine] == [0, 1, 2, 3]  # in order
        assert all(prev[1] <= nxt[0] for prev, nxt in zip(mine, mine[1:]))  # never overlapping
    a = [(s, e) for k, _, s, e in intervals if k == "A"]
    b = [(s, e) for k, _, s, e in intervals if k == "B"]
    assert any(sa < eb and sb < ea for sa, ea in a for sb, eb in b)  # the two keys did overlap


def test_run_once_returns_false_when_nothing_is_ready(queue: JobQueue) -> None:
    assert Worker(queue, lambda job: None).run_once() is False


def test_transient_errors_retry_with_backoff_honouring_retry_after(queue: JobQueue) -> None:
    job_id = put(queue, "d-1")
    calls: list[float] = []

    def handle(job: Job) -> None:
        calls.append(time.time())
        if len(calls) == 1:
            raise TransientError("GitHub 502")
        if len(calls) == 2:
            raise TransientError("rate limited", retry_after=0.4)

    worker = Worker(queue, handle, base_delay=0.02, max_delay=1.0)
    assert worker.run_once()
    job = queue.get(job_id)
    assert (job.state, job.attempts, job.last_error) == ("queued", 1, "TransientError: GitHub 502")
    assert 0.01 - 1e-3 <= job.not_before - calls[0] <= 0.02 + 0.5  # equal jitter: within [d/2, d] (+ slack)
    wait_until(lambda: worker.run_once())
    job = queue.get(job_id)
    assert (job.state, job.attempts) == ("queued", 2)
    assert job.not_before - calls[1] >= 0.4 - 1e-3  # the server's Retry-After wins over 0.04 s
    assert worker.run_once() is False  # not before then
    wait_until(lambda: worker.run_once(), timeout=5)
    assert calls[2] - calls[1] >= 0.4 - 1e-3
    assert queue.get(job_id).state == "done"


def test_backoff_grows_exponentially_with_jitter_and_is_capped(queue: JobQueue) -> None:
    worker = Worker(queue, lambda job: None, base_delay=2.0, max_delay=20.0, rng=random.Random(7))
    for attempts, ceiling in [(1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (5, 20.0), (12, 20.0)]:
        delays = [worker.backoff(attempts) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered
    assert worker.backoff(1, retry_after=3600) == 3600  # a rate-limit reset is never shortened


def test_transient_errors_give_up_after_max_attempts_and_report(queue: JobQueue) -> None:
    job_id = put(queue, "d-1")
    reported: list[tuple[int, str]] = []

    def handle(job: Job) -> None:
        raise TransientError("GitHub 503")

    worker = Worker(queue, handle, max_attempts=3, base_delay=0.001, max_delay=0.002,
                    on_failure=lambda job, reason: reported.append((job.id, reason)))
    for _ in range(3):
        wait_until(lambda: worker.run_once())
    job = queue.get(job_id)
    assert job.state == "failed" and job.attempts == 2
    assert job.last_error == "gave up after 3 attempts; last error: TransientError: GitHub 503"
    assert reported == [(job_id, job.last_error)]


def test_any_other_exception_fails_at_once_and_calls_on_failure(queue: JobQueue) -> None:
    job_id = put(queue, "d-1")
    reported: list[tuple[Job, str]] = []

    def handle(job: Job) -> None:
        raise ValueError("unknown field orders.nope")

    worker = Worker(queue, handle, on_failure=lambda job, reason: reported.append((job, reason)))
    assert worker.run_once() is True
    job = queue.get(job_id)
    assert (job.state, job.attempts, job.last_error) == ("failed", 0, "ValueError: unknown field orders.nope")
    assert len(reported) == 1 and reported[0][0].id == job_id
    assert reported[0][1] == "ValueError: unknown field orders.nope"


def test_a_failing_on_failure_never_kills_the_worker(queue: JobQueue, caplog: pytest.LogCaptureFixture) -> None:
    bad = put(queue, "bad", "A")
    good = put(queue, "good", "A")
    ran: list[str] = []

    def handle(job: Job) -> None:
        ran.append(job.delivery_id)
        if job.delivery_id == "bad":
            raise RuntimeError("handler bug")

    def on_failure(job: Job, reason: str) -> None:
        raise ConnectionError("cannot post the comment either")

    stop = threading.Event()
    worker = Worker(queue, handle, threads=1, on_failure=on_failure, poll_interval=0.01)
    runner = threading.Thread(target=worker.run, args=(stop,))
    with caplog.at_level(logging.ERROR, logger="bot.jobs.worker"):
        runner.start()
        wait_until(lambda: queue.get(good).state == "done")
        stop.set()
        runner.join(timeout=10)
    assert ran == ["bad", "good"]
    assert queue.get(bad).state == "failed" and queue.get(bad).last_error == "RuntimeError: handler bug"
    assert any("on_failure raised" in r.getMessage() for r in caplog.records)


def test_logs_never_carry_payload_bodies(queue: JobQueue, caplog: pytest.LogCaptureFixture) -> None:
    queue.enqueue("d-1", "issue_comment", b'{"token": "ghs_supersecret"}', "k")

    def handle(job: Job) -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.DEBUG):
        Worker(queue, handle).run_once()
    assert "ghs_supersecret" not in caplog.text and "d-1" in caplog.text


def test_a_long_job_keeps_its_lease_through_heartbeats(queue: JobQueue) -> None:
    job_id = put(queue, "d-1")
    seen_by_other: list[Job | None] = []

    def handle(job: Job) -> None:
        time.sleep(1.0)  # more than twice the lease
        seen_by_other.append(queue.claim("intruder", lease_seconds=0.45))

    Worker(queue, handle, lease_seconds=0.45).run_once()
    assert seen_by_other == [None]
    job = queue.get(job_id)
    assert job.state == "done" and job.attempts == 0


def test_a_job_whose_worker_keeps_dying_eventually_fails(queue: JobQueue) -> None:
    job_id = put(queue, "d-1")
    for _ in range(4):  # four workers die holding it: three attempts and the final run
        assert queue.claim("doomed", lease_seconds=0) is not None
    reported: list[str] = []
    ran: list[int] = []
    worker = Worker(queue, lambda job: ran.append(job.id), max_attempts=3,
                    on_failure=lambda job, reason: reported.append(reason))
    assert worker.run_once()
    job = queue.get(job_id)
    assert job.state == "failed" and ran == []
    assert job.last_error.startswith("gave up after 4 attempts (the worker stopped 4 times")  # type: ignore[union-attr]
    assert len(reported) == 1


def test_retry_after_from_headers() -> None:
    assert retry_after_from_headers({"Retry-After": "30"}, now=0) == 30
    assert retry_after_from_headers({"retry-after": "Thu, 01 Jan 1970 00:01:40 GMT"}, now=40) == 60
    assert retry_after_from_headers({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1000"}, now=900) == 100
    assert retry_after_from_headers({"X-RateLimit-Remaining": "12", "X-RateLimit-Reset": "1000"}, now=900) is None
    assert retry_after_from_headers({}, now=0) is None
    err = TransientError.from_headers("rate limited", {"Retry-After": "5"}, now=0)
    assert err.retry_after == 5 and str(err) == "rate limited"


# -- kill -9 ---------------------------------------------------------------------------------

# The handler both processes run. Idempotent like the real ones: its effect (a row keyed by
# delivery id, and a file written by atomic rename) is the same whether it runs once or twice;
# `runs` counts how often it was *started*, to prove the second process really re-ran it.
HANDLER = textwrap.dedent(
    """
    import os, sqlite3, sys, time
    from pathlib import Path

    def handle(job, effects_db, out_dir, hang_marker=None):
        db = sqlite3.connect(effects_db, timeout=30, isolation_level=None)
        db.execute("CREATE TABLE IF NOT EXISTS runs (delivery_id TEXT, pid INTEGER)")
        db.execute("CREATE TABLE IF NOT EXISTS effects (delivery_id TEXT PRIMARY KEY, n INTEGER)")
        db.execute("INSERT INTO runs VALUES (?, ?)", (job.delivery_id, os.getpid()))
        db.execute("INSERT OR IGNORE INTO effects VALUES (?, ?)", (job.delivery_id, job.payload["n"]))
        target = Path(out_dir) / f"{job.delivery_id}.txt"
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(f"comment for {job.payload['n']}\\n")
        os.replace(tmp, target)
        db.close()
        if hang_marker:
            Path(hang_marker).write_text(str(os.getpid()))
            time.sleep(600)  # killed here: after the effect, before the job is marked done

    if __name__ == "__main__":
        sys.path.insert(0, sys.argv[1])
        from bot.jobs import JobQueue, Worker
        queue_db, effects_db, out_dir, marker = sys.argv[2:6]
        worker = Worker(JobQueue(queue_db), lambda job: handle(job, effects_db, out_dir, marker),
                        threads=1, lease_seconds=1.0, worker_id="doomed")
        while not worker.run_once():
            time.sleep(0.02)
    """
)


def test_a_worker_killed_mid_job_is_resumed_by_another_and_the_effect_happens_once(tmp_path: Path) -> None:
    queue_db, effects_db, out_dir = tmp_path / "queue.sqlite", tmp_path / "effects.sqlite", tmp_path / "out"
    out_dir.mkdir()
    marker = tmp_path / "hanging"
    script = tmp_path / "killable_worker.py"
    script.write_text(HANDLER)
    queue = JobQueue(queue_db)
    job_id, _ = queue.enqueue("d-kill", "issue_comment", b'{"n": 42}', "acme/semantic#7")
    other_id, _ = queue.enqueue("d-next", "issue_comment", b'{"n": 43}', "acme/semantic#7")

    killed = kill_once([sys.executable, str(script), str(REPO_ROOT), str(queue_db), str(effects_db), str(out_dir),
                        str(marker)], lambda _pid: marker.exists(), lambda: _assert_state(queue, job_id, "running"))

    namespace: dict = {}
    exec(compile(HANDLER, str(script), "exec"), namespace)
    worker = Worker(queue, lambda job: namespace["handle"](job, str(effects_db), str(out_dir)),
                    lease_seconds=1.0, worker_id="survivor")
    assert queue.claim("impatient") is None  # the dead worker's lease has not expired yet
    wait_until(worker.run_once, timeout=10)  # resumes after at most one lease (1 s)
    assert worker.run_once()  # then the next job of the key, which had to wait
    job = queue.get(job_id)
    assert job.state == "done" and job.attempts == 1 and "lease expired: worker doomed" in (job.last_error or "")
    assert queue.get(other_id).state == "done"

    db = sqlite3.connect(effects_db)
    runs = db.execute("SELECT delivery_id, pid FROM runs ORDER BY rowid").fetchall()
    assert [r[0] for r in runs] == ["d-kill", "d-kill", "d-next"]  # started twice: killed, then resumed
    assert runs[0][1] == killed and runs[1][1] == os.getpid()
    assert db.execute("SELECT delivery_id, n FROM effects ORDER BY delivery_id").fetchall() == [("d-kill", 42), ("d-next", 43)]
    assert sorted(p.name for p in out_dir.iterdir()) == ["d-kill.txt", "d-next.txt"]  # no temp files left over
    assert (out_dir / "d-kill.txt").read_text() == "comment for 42\n"

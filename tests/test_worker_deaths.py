"""Workers that die (``kill -9``) while holding jobs, on a real SQLite queue: each death counts once
against each job it held, a job that only ever died gets a final run, giving up stays bounded, and
the give-up reply describes what exists (issue 10, fault 6). Also: ``last_error`` and the give-up
comment never carry a credential."""
from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

import payloads  # tests/payloads.py
from bot import pr_body
from bot.errors import RepoError
from bot.forge.local import LocalForge
from bot.handlers import push_command
from bot.handlers.context import Context, Settings
from bot.handlers.router import Router
from bot.jobs import Job, JobQueue, Worker
from bot.service import JobHandler
from test_jobs import kill_once, wait_until

REPO_ROOT = Path(__file__).resolve().parent.parent
TOKEN = "s3cr3tT0kenValue"


@pytest.fixture
def queue(tmp_path: Path) -> JobQueue:
    return JobQueue(tmp_path / "queue.sqlite")


def die_holding(queue: JobQueue, times: int) -> None:
    """``times`` workers take the ready job and die at once: a zero lease is expired by the next claim,
    which is exactly what a killed worker's lease becomes (without waiting for a clock)."""
    for n in range(times):
        assert queue.claim(f"doomed-{n}", lease_seconds=0) is not None


# -- a real worker process, killed with SIGKILL while it holds two jobs ------------------------

# Each run writes `<out>/<delivery>.<pid>.started`, then (in the doomed process) blocks: the test
# kills it only once both of its threads hold a job and have started, so the kills are not timed.
KILLABLE = textwrap.dedent(
    """
    import sys, threading, time
    from pathlib import Path

    def handle(job, out_dir, block):
        import os
        Path(out_dir, f"{job.delivery_id}.{os.getpid()}.started").write_text("")
        if block:
            threading.Event().wait()

    if __name__ == "__main__":
        sys.path.insert(0, sys.argv[1])
        from bot.jobs import JobQueue, Worker
        queue_db, out_dir, lease = sys.argv[2], sys.argv[3], float(sys.argv[4])
        worker = Worker(JobQueue(queue_db), lambda job: handle(job, out_dir, True), threads=2,
                        lease_seconds=lease, max_attempts=6, poll_interval=0.02)
        stop = threading.Event()
        worker.run(stop)
    """
)


def test_six_kills_of_a_two_thread_worker_count_six_against_each_job_and_both_still_finish(tmp_path: Path) -> None:
    queue_db, out_dir = tmp_path / "queue.sqlite", tmp_path / "out"
    out_dir.mkdir()
    script = tmp_path / "killable.py"
    script.write_text(KILLABLE)
    queue = JobQueue(queue_db)
    a, _ = queue.enqueue("d-a", "issue_comment", b'{"n": 1}', "acme/semantic#1")
    b, _ = queue.enqueue("d-b", "issue_comment", b'{"n": 2}', "acme/semantic#2")
    kills = 6
    for _ in range(kills):
        kill_once([sys.executable, str(script), str(REPO_ROOT), str(queue_db), str(out_dir), "0.3"],
                  lambda pid: all((out_dir / f"{d}.{pid}.started").exists() for d in ("d-a", "d-b")))

    namespace: dict = {}
    exec(compile(KILLABLE, str(script), "exec"), namespace)
    survivor = Worker(queue, lambda job: namespace["handle"](job, str(out_dir), False), lease_seconds=0.3,
                      max_attempts=6, worker_id="survivor")
    wait_until(survivor.run_once, timeout=10)
    wait_until(survivor.run_once, timeout=10)
    for job_id, delivery in ((a, "d-a"), (b, "d-b")):
        job = queue.get(job_id)
        # six deaths, six counted (not eight), and the job that only ever died got its final run
        assert (job.state, job.attempts, job.deaths) == ("done", kills, kills)
        assert len(list(out_dir.glob(f"{delivery}.*.started"))) == kills + 1
        assert (out_dir / f"{delivery}.{os.getpid()}.started").exists()


# -- the bound: a job that keeps killing its worker still stops ----------------------------------


def test_a_job_whose_final_run_died_too_gives_up_unrun_and_says_the_worker_stopped(queue: JobQueue) -> None:
    job_id, _ = queue.enqueue("d-1", "issue_comment", b"{}", "k")
    die_holding(queue, 4)  # three attempts, then the final run: all four died
    ran: list[int] = []
    reported: list[tuple[Job, str]] = []
    worker = Worker(queue, lambda job: ran.append(job.id), max_attempts=3,
                    on_failure=lambda job, reason: reported.append((job, reason)))
    assert worker.run_once()
    job = queue.get(job_id)
    assert ran == [] and job.state == "failed" and (job.attempts, job.deaths) == (4, 4)
    assert "the worker stopped 4 times while running it" in (job.last_error or "")
    ((reported_job, reason),) = reported
    assert reported_job.deaths == 4 and reason == job.last_error


def test_a_job_that_died_up_to_the_limit_gets_one_final_run(queue: JobQueue) -> None:
    job_id, _ = queue.enqueue("d-1", "issue_comment", b"{}", "k")
    die_holding(queue, 3)
    ran: list[int] = []
    worker = Worker(queue, lambda job: ran.append(job.attempts), max_attempts=3)
    assert worker.run_once()
    assert ran == [3] and queue.get(job_id).state == "done"


def test_a_job_that_raised_and_then_died_at_the_limit_is_not_run_again(queue: JobQueue) -> None:
    job_id, _ = queue.enqueue("d-1", "issue_comment", b"{}", "k")
    assert queue.claim("w") is not None
    assert queue.retry(job_id, 0, "TransientError: GitHub 502", worker_id="w")
    die_holding(queue, 2)  # attempts: 1 transient + 2 deaths = 3 = the limit
    ran: list[int] = []
    worker = Worker(queue, lambda job: ran.append(job.id), max_attempts=3)
    assert worker.run_once()
    job = queue.get(job_id)
    assert ran == [] and job.state == "failed" and (job.attempts, job.deaths) == (3, 2)
    assert job.last_error.startswith("gave up after 3 attempts (the worker stopped 2 times")  # type: ignore[union-attr]


def test_a_death_counts_only_against_the_job_its_worker_held(queue: JobQueue) -> None:
    held, _ = queue.enqueue("d-held", "issue_comment", b"{}", "A")
    waiting, _ = queue.enqueue("d-waiting", "issue_comment", b"{}", "A")  # same key: waits, never held
    other, _ = queue.enqueue("d-other", "issue_comment", b"{}", "B")
    assert queue.claim("doomed", lease_seconds=0).id == held  # type: ignore[union-attr]
    assert queue.claim("alive", lease_seconds=600).id == held  # type: ignore[union-attr]  # reclaimed: one death
    assert queue.claim("alive-2", lease_seconds=600).id == other  # type: ignore[union-attr]
    assert [(queue.get(j).attempts, queue.get(j).deaths) for j in (held, waiting, other)] == [(1, 1), (0, 0), (0, 0)]


def test_a_queue_file_from_before_deaths_were_counted_still_opens(tmp_path: Path) -> None:
    import sqlite3
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, delivery_id TEXT NOT NULL UNIQUE,"
                " event TEXT NOT NULL, body BLOB NOT NULL, key TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'queued',"
                " attempts INTEGER NOT NULL DEFAULT 0, not_before REAL NOT NULL, lease_until REAL, worker_id TEXT,"
                " last_error TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL)")
    old.execute("INSERT INTO jobs (delivery_id, event, body, key, not_before, created_at, updated_at)"
                " VALUES ('d-old', 'push', '{}', 'k', 0, 0, 0)")
    old.commit()
    old.close()
    queue = JobQueue(path)
    job = queue.claim("w")
    assert job is not None and job.delivery_id == "d-old" and job.deaths == 0


# -- the give-up reply describes what exists --------------------------------------------------


SEMANTIC, DBT, NUMBER = "acme/semantic", "acme/dbt", 1


@pytest.fixture
def service(tmp_path: Path):
    forge = LocalForge(tmp_path / "state.sqlite")
    ctx = Context(forge, Settings(dbt_repo=DBT, semantic_repo=SEMANTIC))
    semantic_pr, _ = forge.open_or_update_pr(SEMANTIC, head="analyst/large-orders", base="main", title="Large orders",
                                             body="adds orders.is_large_order")
    assert semantic_pr.number == NUMBER
    payload = payloads.issue_comment_created(repo=SEMANTIC, number=NUMBER, body="/push-to-dbt", user="ada", is_pr=True)
    payload["comment"]["id"] = 321
    return forge, JobHandler(ctx), payload


def dead_job(payload: dict, deaths: int) -> Job:
    return Job(id=1, delivery_id="d", event="issue_comment", payload=payload, key=f"{SEMANTIC}#{NUMBER}",
               attempts=deaths, state="failed", not_before=0.0, last_error=None, created_at=0.0, deaths=deaths)


def open_dbt_pr(forge: LocalForge, origin: tuple[str, int], fields: str = "orders-is_large_order"):
    """The PR a push from ``origin`` opens (its body carries the origin, as push_to_dbt writes it)."""
    branch = f"layersync/push/{fields}"
    body = pr_body.render(branch=branch, pushed=[], skipped=[], semantic_repo=SEMANTIC,
                          semantic_commit="0" * 40, origin=origin)
    pr, _ = forge.open_or_update_pr(DBT, head=branch, base="main", title=f"layersync: push {fields} to dbt",
                                    body=body)
    return pr


def reply(forge: LocalForge) -> str:
    (comment,) = [c for c in forge.list_comments(SEMANTIC, NUMBER) if push_command.reply_marker(321) in c.body]
    return comment.body


def test_giving_up_never_overwrites_a_success_reply(service) -> None:
    forge, handler, payload = service
    pr = open_dbt_pr(forge, (SEMANTIC, NUMBER))
    success = f"Pushed to dbt: **{pr.title}** — {pr.url} (branch `{pr.head}`)."
    forge.upsert_comment(SEMANTIC, NUMBER, success, push_command.reply_marker(321))
    handler.on_failure(dead_job(payload, 9), "gave up after 9 attempts (the worker stopped 9 times while running it)")
    assert "Pushed to dbt" in reply(forge) and pr.url in reply(forge) and "failed" not in reply(forge)


def test_giving_up_after_deaths_names_the_dbt_pr_that_exists(service) -> None:
    forge, handler, payload = service
    open_dbt_pr(forge, (SEMANTIC, 99))  # another semantic PR's push: not this one
    pr = open_dbt_pr(forge, (SEMANTIC, NUMBER), "customers-full_name")
    forge.upsert_comment(SEMANTIC, NUMBER, "⏳ push-to-dbt started for @ada…", push_command.reply_marker(321))
    handler.on_failure(dead_job(payload, 8), "gave up after 8 attempts (the worker stopped 8 times while running it)")
    text = reply(forge)
    assert "failed" not in text and "the worker stopped 8 times while running this" in text
    assert f"the dbt PR #{pr.number} exists: {pr.url}" in text


def test_giving_up_with_nothing_pushed_still_says_failed(service) -> None:
    forge, handler, payload = service
    handler.on_failure(dead_job(payload, 0), "gave up after 8 attempts; last error: TransientError: GitHub 502")
    assert "❌ push-to-dbt failed" in reply(forge) and "502" in reply(forge)


# -- no credential in last_error or the give-up comment -----------------------------------------


def test_last_error_of_a_retry_and_of_a_failure_is_scrubbed(queue: JobQueue, service) -> None:
    forge, _, payload = service
    url = f"http://x-access-token:{TOKEN}@git.example.com/acme/dbt.git"

    def fails(event, ctx) -> None:
        raise RepoError(f"cannot push to `{url}`: rejected")

    router = Router()
    router.register("issue_comment", action="created")(fails)
    handler = JobHandler(Context(forge, Settings(dbt_repo=DBT, semantic_repo=SEMANTIC)), router)
    job_id, _ = queue.enqueue("d-1", "issue_comment", payloads.encode(payload), f"{SEMANTIC}#{NUMBER}")
    worker = Worker(queue, handler, max_attempts=2, base_delay=0.001, max_delay=0.002, on_failure=handler.on_failure)
    assert worker.run_once()
    retried = queue.get(job_id)
    assert retried.state == "queued" and TOKEN not in (retried.last_error or "")
    assert "x-access-token:***@git.example.com" in (retried.last_error or "")
    wait_until(worker.run_once)
    failed = queue.get(job_id)
    assert failed.state == "failed" and TOKEN not in (failed.last_error or "") and "***" in (failed.last_error or "")
    assert TOKEN not in reply(forge) and "x-access-token:***@" in reply(forge)


def test_the_queue_scrubs_what_it_is_given(queue: JobQueue) -> None:
    job_id, _ = queue.enqueue("d-1", "push", b"{}", "k")
    queue.fail(job_id, f"RepoError: cannot fetch http://x-access-token:{TOKEN}@host/r.git")
    assert queue.get(job_id).last_error == "RepoError: cannot fetch http://x-access-token:***@host/r.git"

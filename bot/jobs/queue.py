"""A durable job queue in one SQLite file: the embedded default between the webhook receiver
and the workers.

Why SQLite: the receiver must acknowledge GitHub within seconds and never lose a delivery it
acknowledged, and the embedded default must need no server. A committed row in a WAL-mode
SQLite file survives the receiver or a worker being killed at any instant, and WAL lets the
receiver append while workers read. (At scale the same interface sits on Redis/RQ.)

Concurrency rules, all enforced here rather than by callers:

* Every write is one ``BEGIN IMMEDIATE`` transaction, so two processes or threads that claim at
  the same time serialise on SQLite's write lock and can never both take the same job.
  ``busy_timeout`` makes a contending writer wait instead of failing with "database is locked".
* Each thread (and each process) gets its own connection: ``sqlite3`` connections must not be
  shared across threads while a transaction is open.
* Jobs with the same *key* (one repo, or one issue/PR of a repo) run one at a time and in
  arrival order: a job is claimable only when no earlier job of its key is unfinished. Two
  comments on one PR therefore never race on the same branch, while different PRs run in
  parallel.
* A claimed job carries a lease. A worker that dies (``kill -9``, OOM, power loss) stops
  renewing it; once it expires the job is claimable again, which is how a restart resumes.
  Handlers must therefore be idempotent (the house rule anyway).
* A death is counted once, against the job whose lease expired, when that job is reclaimed:
  both in ``attempts`` (every failed attempt) and in ``deaths`` (the attempts that ended with the
  worker gone rather than the handler raising), so the worker can tell a job that only ever died
  (its handler may well have finished) from one that keeps failing.
* ``last_error`` passes through ``bot.redact.scrub``: it is shown by the CLI, logged and posted.
"""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from bot.redact import scrub
from bot.sqlite_tx import enable_wal, immediate

__all__ = ["Job", "JobQueue", "job_key", "STATES"]

STATES: tuple[str, ...] = ("queued", "running", "done", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id  TEXT    NOT NULL UNIQUE,
    event        TEXT    NOT NULL,
    body         BLOB    NOT NULL,
    key          TEXT    NOT NULL,
    state        TEXT    NOT NULL DEFAULT 'queued'
                 CHECK (state IN ('queued', 'running', 'done', 'failed')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    deaths       INTEGER NOT NULL DEFAULT 0,
    not_before   REAL    NOT NULL,
    lease_until  REAL,
    worker_id    TEXT,
    last_error   TEXT,
    created_at   REAL    NOT NULL,
    updated_at   REAL    NOT NULL
);
-- Only unfinished jobs are ever scanned by claim(): a partial index keeps that scan (and the
-- "earlier unfinished job of my key?" probe) proportional to the backlog, not to history.
CREATE INDEX IF NOT EXISTS jobs_unfinished_by_id  ON jobs (id)      WHERE state IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS jobs_unfinished_by_key ON jobs (key, id) WHERE state IN ('queued', 'running');
"""

_COLUMNS = "id, delivery_id, event, body, key, attempts, state, not_before, last_error, created_at, deaths"
_N_COLUMNS = len(_COLUMNS.split(","))


@dataclass(frozen=True)
class Job:
    """One webhook delivery to process. ``payload`` is the parsed JSON body as GitHub sent it."""

    id: int
    delivery_id: str
    event: str
    payload: dict
    key: str
    attempts: int
    state: str  # "queued" | "running" | "done" | "failed"
    not_before: float
    last_error: str | None
    created_at: float
    deaths: int = 0  # attempts that ended with the worker gone (lease expired), not the handler raising


def job_key(event: str, payload: dict) -> str:
    """The serialisation key of a delivery: jobs with one key run one at a time, in order.

    ``<repo full_name>#<number>`` for events about one issue or PR (``issue_comment``,
    ``pull_request``, ``issues`` and their review/review-comment cousins), so two commands on one
    PR never race on its branch; ``<repo full_name>`` for repo-wide events such as ``push``;
    ``installation:<id>`` for app-level events with no repository (``installation``,
    ``installation_repositories``); ``global`` when none of these is present.
    """
    repo = payload.get("repository") if isinstance(payload, dict) else None
    full_name = repo.get("full_name") if isinstance(repo, dict) else None
    if not full_name:
        inst = payload.get("installation") if isinstance(payload, dict) else None
        if isinstance(inst, dict) and inst.get("id") is not None:
            return f"installation:{inst['id']}"
        return "global"
    number: Any = None
    for field in ("issue", "pull_request"):
        obj = payload.get(field)
        if isinstance(obj, dict) and obj.get("number") is not None:
            number = obj["number"]
            break
    if number is None and event.startswith(("pull_request", "issue")):
        number = payload.get("number")
    return f"{full_name}#{number}" if number is not None else str(full_name)


class JobQueue:
    """The durable queue. Safe to use from many threads and many processes at once."""

    def __init__(self, db_path: str | Path, *, synchronous: str = "NORMAL", busy_timeout_ms: int = 30_000):
        """Open (creating if needed) the queue at ``db_path``.

        ``synchronous``: SQLite's ``PRAGMA synchronous``. ``NORMAL`` (default) in WAL mode keeps
        every committed job across a crash or ``kill -9`` of any process; only an OS crash or power
        loss may drop the last few commits. ``FULL`` also survives those at the cost of an fsync
        per enqueue, which is what slows the webhook acknowledgment most.
        """
        if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")
        self.db_path = Path(db_path)
        self._synchronous = synchronous.upper()
        self._busy_timeout_ms = int(busy_timeout_ms)
        self._local = threading.local()
        self._write_mutex = threading.Lock()
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._conn()
        # journal_mode=WAL is persistent in the file; creating the schema is idempotent. Both are
        # done under the write lock so several processes opening a fresh file at once don't clash.
        enable_wal(conn)
        with self._write(conn):
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
            if "deaths" not in columns:  # a queue file written before deaths were counted apart
                conn.execute("ALTER TABLE jobs ADD COLUMN deaths INTEGER NOT NULL DEFAULT 0")

    # -- connections -------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (one per thread and per process: never shared)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            return conn
        conn = sqlite3.connect(
            str(self.db_path),
            timeout=self._busy_timeout_ms / 1000,
            isolation_level=None,  # autocommit: transactions are explicit, see _write()
            check_same_thread=True,
        )
        conn.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        self._local.conn = conn
        self._local.pid = os.getpid()
        return conn

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @contextlib.contextmanager
    def _write(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on error): takes SQLite's write lock up
        front, so a read-then-write (claim) can't be overtaken by another writer in between.

        Threads of this process first queue on a ``threading.Lock``: SQLite's busy handler waits
        by sleeping (1, 2, 5 … 100 ms), which under many concurrent webhook requests turned into
        a long latency tail; a mutex hands the lock over at once. Other processes still meet on
        SQLite's own lock, bounded by ``busy_timeout``.
        """
        with self._write_mutex, immediate(conn):
            yield conn

    # -- producer side -----------------------------------------------------------------------

    def enqueue(self, delivery_id: str, event: str, body: bytes | str, key: str) -> tuple[int, bool]:
        """Store one delivery's raw JSON body; return ``(job id, created)``.

        The same ``delivery_id`` twice returns ``(existing id, False)`` and stores nothing: GitHub
        redelivers with the same id, and a redelivery must not run the job twice. One short
        transaction (an insert on a unique index), so it is cheap enough for the request path.
        """
        raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        now = time.time()
        conn = self._conn()
        with self._write(conn):
            cur = conn.execute(
                "INSERT OR IGNORE INTO jobs (delivery_id, event, body, key, not_before, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (delivery_id, event, raw, key, now, now, now),
            )
            if cur.rowcount == 1:
                return int(cur.lastrowid), True  # type: ignore[arg-type]
            row = conn.execute("SELECT id FROM jobs WHERE delivery_id = ?", (delivery_id,)).fetchone()
            return int(row[0]), False

    # -- consumer side -----------------------------------------------------------------------

    def claim(self, worker_id: str, lease_seconds: float = 600) -> Job | None:
        """Take the oldest ready job whose key is free; mark it running for ``lease_seconds``.

        Ready: queued with ``not_before <= now``, or running with an expired lease (its worker
        died: reclaiming it counts one failed attempt and one death, here and nowhere else, so a
        job that keeps killing its worker eventually exhausts ``max_attempts`` instead of looping
        forever). A key is free when no
        earlier job of it is unfinished, so a job waiting out a retry delay also holds back the
        later jobs of its key: order within a key is kept even across retries.
        """
        now = time.time()
        conn = self._conn()
        with self._write(conn):
            while True:
                row = conn.execute(
                    f"""
                    SELECT {_COLUMNS}, lease_until, worker_id FROM jobs AS j
                    WHERE j.state IN ('queued', 'running')
                      AND ((j.state = 'queued' AND j.not_before <= :now)
                           OR (j.state = 'running' AND j.lease_until <= :now))
                      AND NOT EXISTS (
                            SELECT 1 FROM jobs AS e
                            WHERE e.key = j.key AND e.id < j.id AND e.state IN ('queued', 'running'))
                    ORDER BY j.id
                    LIMIT 1
                    """,
                    {"now": now},
                ).fetchone()
                if row is None:
                    return None
                job_id, state = row[0], row[6]
                attempts, last_error, deaths = row[5], row[8], row[10]
                holder = row[_N_COLUMNS + 1]
                if state == "running":  # lease expired: its worker is gone
                    attempts += 1
                    deaths += 1
                    last_error = f"lease expired: worker {holder!s} stopped before finishing"
                try:
                    job = _job(row[:_N_COLUMNS], state="running", attempts=attempts, last_error=last_error,
                               deaths=deaths)
                except (ValueError, TypeError) as exc:
                    # A body that is not a JSON object can never be handled: fail it here rather
                    # than let it block its key (and every claim) forever.
                    conn.execute(
                        "UPDATE jobs SET state = 'failed', last_error = ?, lease_until = NULL, updated_at = ? WHERE id = ?",
                        (f"unreadable payload: {type(exc).__name__}", now, job_id),
                    )
                    continue
                conn.execute(
                    "UPDATE jobs SET state = 'running', worker_id = ?, lease_until = ?, attempts = ?, deaths = ?,"
                    " last_error = ?, updated_at = ? WHERE id = ?",
                    (worker_id, now + lease_seconds, attempts, deaths, last_error, now, job_id),
                )
                return job

    def heartbeat(self, job_id: int, worker_id: str, lease_seconds: float) -> bool:
        """Extend the lease of a job this worker still holds; False if it no longer does.

        Lets a long job (a dbt build) outlive ``lease_seconds`` while its worker is alive, so the
        lease can stay short and a dead worker's job is resumed quickly.
        """
        now = time.time()
        conn = self._conn()
        with self._write(conn):
            cur = conn.execute(
                "UPDATE jobs SET lease_until = ?, updated_at = ? WHERE id = ? AND state = 'running' AND worker_id = ?",
                (now + lease_seconds, now, job_id, worker_id),
            )
            return cur.rowcount == 1

    def _finish(self, job_id: int, worker_id: str | None, sql_set: str, params: tuple[Any, ...]) -> bool:
        conn = self._conn()
        with self._write(conn):
            where = "id = ?"
            args: tuple[Any, ...] = (job_id,)
            if worker_id is not None:
                # Only the current holder may finish a job: a worker whose lease expired (and whose
                # job another worker has taken over) must not overwrite the newer outcome.
                where += " AND state = 'running' AND worker_id = ?"
                args += (worker_id,)
            cur = conn.execute(f"UPDATE jobs SET {sql_set}, updated_at = ? WHERE {where}", params + (time.time(),) + args)
            if cur.rowcount == 0 and worker_id is None:
                raise KeyError(f"no job {job_id}")
            return cur.rowcount == 1

    def complete(self, job_id: int, *, worker_id: str | None = None) -> bool:
        """Mark the job done. With ``worker_id``, only if that worker still holds it (returns
        whether it did)."""
        return self._finish(job_id, worker_id, "state = 'done', lease_until = NULL", ())

    def retry(self, job_id: int, delay: float, error: str, *, worker_id: str | None = None) -> bool:
        """Back to queued after ``delay`` seconds, one more attempt counted, ``error`` recorded."""
        return self._finish(
            job_id,
            worker_id,
            "state = 'queued', attempts = attempts + 1, not_before = ?, last_error = ?, lease_until = NULL",
            (time.time() + max(0.0, delay), scrub(error)),
        )

    def fail(self, job_id: int, error: str, *, worker_id: str | None = None) -> bool:
        """Give up on the job for good, keeping the reason (and freeing its key for later jobs)."""
        return self._finish(job_id, worker_id, "state = 'failed', last_error = ?, lease_until = NULL", (scrub(error),))

    # -- inspection --------------------------------------------------------------------------

    def get(self, job_id: int) -> Job:
        """The job as stored now; ``KeyError`` if there is none."""
        row = self._conn().execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise KeyError(f"no job {job_id}")
        return _job(row, lenient=True)

    def get_by_delivery(self, delivery_id: str) -> Job | None:
        """The job stored for a GitHub delivery id, if any."""
        row = self._conn().execute(f"SELECT {_COLUMNS} FROM jobs WHERE delivery_id = ?", (delivery_id,)).fetchone()
        return _job(row, lenient=True) if row else None

    def depth(self) -> int:
        """Jobs not finished yet (queued + running): the backlog a health check reports."""
        row = self._conn().execute("SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')").fetchone()
        return int(row[0])

    def counts(self) -> dict[str, int]:
        """Number of jobs per state (every state present, zero when none)."""
        out = {state: 0 for state in STATES}
        for state, n in self._conn().execute("SELECT state, count(*) FROM jobs GROUP BY state"):
            out[state] = int(n)
        return out


def _job(row: tuple[Any, ...], *, lenient: bool = False, **override: Any) -> Job:
    """Build a Job from a row; an unreadable body raises, or (``lenient``, for inspection) reads as {}."""
    try:
        payload = json.loads(row[3])
        if not isinstance(payload, dict):
            raise TypeError("payload is not a JSON object")
    except (ValueError, TypeError):
        if not lenient:
            raise
        payload = {}
    fields = dict(
        id=int(row[0]),
        delivery_id=row[1],
        event=row[2],
        payload=payload,
        key=row[4],
        attempts=int(row[5]),
        state=row[6],
        not_before=float(row[7]),
        last_error=row[8],
        created_at=float(row[9]),
        deaths=int(row[10]),
    )
    fields.update(override)
    return Job(**fields)

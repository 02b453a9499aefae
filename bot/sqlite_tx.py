"""The one way layersync writes to its SQLite files (queue, local forge)."""
from __future__ import annotations

import contextlib
import sqlite3
import time
from typing import Iterator


@contextlib.contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A transaction holding the write lock from its first statement.

    A deferred BEGIN takes the lock only at the first write, so two processes could both read
    "no such row" and both insert; BEGIN IMMEDIATE makes check-then-write atomic.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def enable_wal(conn: sqlite3.Connection, *, attempts: int = 200, pause_s: float = 0.05) -> None:
    """Put the file in WAL mode (persistent), tolerating other processes opening it at the same moment.

    Switching the journal mode needs a brief exclusive lock, and SQLite reports "database is locked"
    at once for it instead of waiting on the busy handler; so several processes opening a fresh file
    together (two `layersync preview` runs, a worker and the receiver) must retry.
    """
    for attempt in range(attempts):
        try:
            conn.execute("PRAGMA journal_mode=WAL").fetchall()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(pause_s)

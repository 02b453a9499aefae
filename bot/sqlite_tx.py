"""The one way layersync writes to its SQLite files (queue, local forge)."""
from __future__ import annotations

import contextlib
import sqlite3
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

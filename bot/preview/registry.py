"""The record of every preview, in one SQLite file shared by the service's workers and the CLI.

One row per (warehouse, dbt repo, branch): the schema it got (kept for the preview's life), the commit
last asked for, the build status (`building`, `ready`, `failed`, `cancelled`), what is built in it, when,
how long it took, and a *build token*. Starting a build writes a fresh token; a build only records its
result while the token is still its own, and a running build polls its token, so a newer build (or a
drop) for the same branch cancels an older one instead of racing it — across threads and processes.

Every write is one `BEGIN IMMEDIATE` transaction (see `bot.sqlite_tx`), so two builds claiming a name or
the last slot under the cap at the same moment serialise.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from bot.errors import LayersyncError
from bot.preview.names import preview_schema_name
from bot.sqlite_tx import enable_wal, immediate

STATUSES = ("building", "ready", "failed", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS previews (
    warehouse        TEXT NOT NULL,          -- Target.describe(): a DuckDB path or a DSN without password
    repo             TEXT NOT NULL,          -- the dbt repo (forge name or remote path)
    branch           TEXT NOT NULL,
    schema_name      TEXT NOT NULL,
    status           TEXT NOT NULL,
    token            TEXT NOT NULL,
    commit_sha       TEXT,                   -- the commit last asked for (building) or built (ready)
    built_commit     TEXT,                   -- the commit the schema holds (last ready build)
    semantic_commit  TEXT,
    built            TEXT NOT NULL DEFAULT '[]',   -- models/seeds/snapshots built into the preview (all builds)
    last_built       TEXT NOT NULL DEFAULT '[]',   -- … by the last build
    schemas          TEXT NOT NULL DEFAULT '[]',   -- the preview schema and its dbt custom schemas
    mode             TEXT,                   -- full | incremental | unchanged
    manifest         TEXT,                   -- the last ready build's manifest.json (its --state next time)
    prod_fingerprint TEXT,
    error            TEXT,
    replies          TEXT NOT NULL DEFAULT '[]',   -- [[forge repo, number], …] where /preview was asked
    created_at       REAL NOT NULL,
    started_at       REAL,
    finished_at      REAL,
    seconds          REAL,
    PRIMARY KEY (warehouse, repo, branch)
);
CREATE UNIQUE INDEX IF NOT EXISTS previews_schema ON previews (warehouse, schema_name);
"""

_JSON = ("built", "last_built", "schemas", "replies")


class PreviewCapReached(LayersyncError):
    """A new preview would exceed the configured number of preview schemas."""

    def __init__(self, cap: int, existing: list["Preview"]):
        names = ", ".join(f"`{p.branch}`" for p in existing[:10]) + (" …" if len(existing) > 10 else "")
        super().__init__(f"the preview limit is reached: {len(existing)} of {cap} preview schemas exist "
                         f"({names}). Close a PR or delete a branch (its preview goes with it), or drop stale "
                         f"ones with `layersync preview --gc --older-than 7d`")
        self.cap = cap
        self.existing = existing


@dataclass
class Preview:
    warehouse: str
    repo: str
    branch: str
    schema: str
    status: str
    token: str
    commit: str | None = None
    built_commit: str | None = None
    semantic_commit: str | None = None
    built: list[str] = field(default_factory=list)
    last_built: list[str] = field(default_factory=list)
    schemas: list[str] = field(default_factory=list)
    mode: str | None = None
    manifest: str | None = None
    prod_fingerprint: str | None = None
    error: str | None = None
    replies: list[list[Any]] = field(default_factory=list)
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    seconds: float | None = None

    @property
    def touched_at(self) -> float:
        """The last time anything happened to the preview: what `--gc --older-than` measures."""
        return max(t for t in (self.created_at, self.started_at, self.finished_at) if t is not None)

    def as_json(self) -> dict[str, Any]:
        doc = {k: getattr(self, k) for k in ("branch", "schema", "status", "commit", "built_commit",
                                             "semantic_commit", "built", "last_built", "schemas", "mode",
                                             "error", "created_at", "started_at", "finished_at", "seconds",
                                             "repo", "warehouse")}
        return doc


@dataclass(frozen=True)
class Claim:
    preview: Preview                 # the row as this build left it (status building, its token)
    previous: Preview | None         # the row before: None for a new preview
    token: str


_COLUMNS = ("warehouse", "repo", "branch", "schema_name", "status", "token", "commit_sha", "built_commit",
            "semantic_commit", "built", "last_built", "schemas", "mode", "manifest", "prod_fingerprint", "error",
            "replies", "created_at", "started_at", "finished_at", "seconds")
_FIELD = {"schema_name": "schema", "commit_sha": "commit"}
_COLUMN = {v: k for k, v in _FIELD.items()}


def _row(row: sqlite3.Row) -> Preview:
    values: dict[str, Any] = {}
    for column in _COLUMNS:
        value = row[column]
        if column in _JSON:
            value = json.loads(value or "[]")
        values[_FIELD.get(column, column)] = value
    return Preview(**values)


class Registry:
    """The previews' SQLite file; safe from many threads (a connection each) and processes."""

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 30_000):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._busy = busy_timeout_ms
        self._local = threading.local()
        conn = self._conn()
        enable_wal(conn)
        with immediate(conn):
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)

    def __repr__(self) -> str:
        return f"Registry({str(self.path)!r})"

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(str(self.path), timeout=self._busy / 1000, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout={self._busy}")
            self._local.conn = conn
        return conn

    def artifacts(self, schema: str) -> Path:
        """Where a preview's last manifest lives (the `--state` of its next, incremental, build)."""
        return self.path.parent / f"{self.path.stem}-state" / schema

    # -- reads -----------------------------------------------------------------------------------

    def get(self, warehouse: str, repo: str, branch: str) -> Preview | None:
        row = self._conn().execute("SELECT * FROM previews WHERE warehouse = ? AND repo = ? AND branch = ?",
                                   (warehouse, repo, branch)).fetchone()
        return _row(row) if row else None

    def by_schema(self, warehouse: str, schema: str) -> Preview | None:
        row = self._conn().execute("SELECT * FROM previews WHERE warehouse = ? AND schema_name = ?",
                                   (warehouse, schema)).fetchone()
        return _row(row) if row else None

    def list(self, warehouse: str | None = None, repo: str | None = None) -> list[Preview]:
        sql, args = "SELECT * FROM previews WHERE 1 = 1", []
        if warehouse is not None:
            sql, args = sql + " AND warehouse = ?", [*args, warehouse]
        if repo is not None:
            sql, args = sql + " AND repo = ?", [*args, repo]
        return [_row(r) for r in self._conn().execute(sql + " ORDER BY created_at, branch", args).fetchall()]

    def is_current(self, warehouse: str, schema: str, token: str) -> bool:
        """Whether the build holding `token` is still the one wanted (no newer build, no drop)."""
        row = self._conn().execute("SELECT token FROM previews WHERE warehouse = ? AND schema_name = ?",
                                   (warehouse, schema)).fetchone()
        return row is not None and row["token"] == token

    # -- writes ----------------------------------------------------------------------------------

    def claim(self, warehouse: str, repo: str, branch: str, commit: str, *, protected: Iterable[str] = (),
              reserve: int = 0, cap: int | None = None, now: float | None = None, allocate: bool = True,
              reply: tuple[str, int] | None = None) -> Claim | None:
        """Start a build of `branch` at `commit`: the preview's schema (allocated, and the cap checked,
        for a new preview) and a fresh token that cancels any build still running for the branch.
        With `allocate=False` a branch without a preview gets nothing (None): a build claims an existing
        preview first thing, so an older build stops before this one waits for anything. `reply`: the
        PR that asked (forge repo, number), remembered so every later build of the branch reports there."""
        now = time.time() if now is None else now
        token = uuid.uuid4().hex
        conn = self._conn()
        with immediate(conn):
            row = conn.execute("SELECT * FROM previews WHERE warehouse = ? AND repo = ? AND branch = ?",
                               (warehouse, repo, branch)).fetchone()
            previous = _row(row) if row else None
            if previous is None and not allocate:
                return None
            if previous is None:
                existing = [_row(r) for r in conn.execute(
                    "SELECT * FROM previews WHERE warehouse = ? ORDER BY created_at", (warehouse,)).fetchall()]
                if cap is not None and len(existing) >= cap:
                    raise PreviewCapReached(cap, existing)
                schema = preview_schema_name(branch, others=[p.schema for p in existing], protected=protected,
                                             reserve=reserve)
                conn.execute("INSERT INTO previews (warehouse, repo, branch, schema_name, status, token, commit_sha,"
                             " created_at, started_at) VALUES (?, ?, ?, ?, 'building', ?, ?, ?, ?)",
                             (warehouse, repo, branch, schema, token, commit, now, now))
            else:
                conn.execute("UPDATE previews SET status = 'building', token = ?, commit_sha = ?, started_at = ?,"
                             " error = NULL WHERE warehouse = ? AND repo = ? AND branch = ?",
                             (token, commit, now, warehouse, repo, branch))
            if reply is not None:
                self._add_reply(conn, warehouse, repo, branch, reply)
            current = _row(conn.execute("SELECT * FROM previews WHERE warehouse = ? AND repo = ? AND branch = ?",
                                        (warehouse, repo, branch)).fetchone())
        return Claim(current, previous, token)

    def check_cap(self, warehouse: str, repo: str, branch: str, cap: int | None) -> None:
        """Fail fast (before any checkout or dbt run) when a new preview would exceed the cap."""
        if cap is None or self.get(warehouse, repo, branch) is not None:
            return
        existing = self.list(warehouse)
        if len(existing) >= cap:
            raise PreviewCapReached(cap, existing)

    def finish(self, warehouse: str, schema: str, token: str, **values: Any) -> bool:
        """Record a build's outcome, only if `token` is still current; False when a newer build or a
        drop took over (the caller was cancelled and must not report its result as the preview's)."""
        sets, args = [], []
        for key, value in values.items():
            column = _COLUMN.get(key, key)
            if column not in _COLUMNS or column in ("warehouse", "repo", "branch", "schema_name", "token"):
                raise ValueError(f"not a preview field: {key}")
            if column == "status" and value not in STATUSES:
                raise ValueError(f"unknown preview status {value!r}")
            sets.append(f"{column} = ?")
            args.append(json.dumps(value) if column in _JSON else value)
        conn = self._conn()
        with immediate(conn):
            done = conn.execute(f"UPDATE previews SET {', '.join(sets)} WHERE warehouse = ? AND schema_name = ?"
                                " AND token = ?", [*args, warehouse, schema, token]).rowcount
        return done == 1

    @staticmethod
    def _add_reply(conn: sqlite3.Connection, warehouse: str, repo: str, branch: str, where: tuple[str, int]) -> None:
        row = conn.execute("SELECT replies FROM previews WHERE warehouse = ? AND repo = ? AND branch = ?",
                           (warehouse, repo, branch)).fetchone()
        if row is None:
            return
        replies = [list(r) for r in json.loads(row["replies"] or "[]")]
        if [where[0], int(where[1])] not in replies:
            replies.append([where[0], int(where[1])])
            conn.execute("UPDATE previews SET replies = ? WHERE warehouse = ? AND repo = ? AND branch = ?",
                         (json.dumps(replies), warehouse, repo, branch))

    def revoke(self, warehouse: str, schema: str) -> str | None:
        """A new token for a preview about to be dropped: a build still running for it stops. Returns it."""
        token = uuid.uuid4().hex
        conn = self._conn()
        with immediate(conn):
            done = conn.execute("UPDATE previews SET token = ? WHERE warehouse = ? AND schema_name = ?",
                                (token, warehouse, schema)).rowcount
        return token if done else None

    def remove(self, warehouse: str, schema: str, token: str | None = None) -> bool:
        conn = self._conn()
        with immediate(conn):
            sql, args = "DELETE FROM previews WHERE warehouse = ? AND schema_name = ?", [warehouse, schema]
            if token is not None:
                sql, args = sql + " AND token = ?", [*args, token]
            return conn.execute(sql, args).rowcount == 1

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


"""A forge that keeps PRs and comments in a local SQLite file.

It lets layersync run end to end with no hosting service: the demo, the test
suite and air-gapped installs push branches to a bare git remote on disk and
record the "pull requests" here. The webhook server, the CLI and a running
sync may all touch the same file at once, so every write happens in a
``BEGIN IMMEDIATE`` transaction: the write lock is taken *before* the
"is there already an open PR for this head?" check, which is what stops two
processes from both deciding to create one. A partial unique index backs
that up at the schema level.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

import git
from git.exc import BadName, GitCommandError, InvalidGitRepositoryError, NoSuchPathError

from bot.forge.base import (
    BOT_AUTHOR,
    BODY_LIMIT,
    PR_STATES,
    Comment,
    ForgeError,
    NotFoundError,
    PullRequest,
    check_permission_level,
    check_reaction,
    check_status,
    check_title,
    format_pr_table,
    truncate_body,
)
from bot.sqlite_tx import enable_wal, immediate

__all__ = ["LocalForge", "format_pr_table"]

SCHEMA_VERSION = 1

# Milliseconds a connection waits for another process's write lock before
# giving up. Syncs hold the lock for microseconds, so hitting this means a
# genuinely stuck writer, not ordinary contention.
BUSY_TIMEOUT_MS = 30_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pull_requests (
    repo        TEXT    NOT NULL,
    number      INTEGER NOT NULL,
    title       TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    head        TEXT    NOT NULL,
    base        TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('open', 'closed', 'merged')),
    url         TEXT    NOT NULL,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL,
    PRIMARY KEY (repo, number)
);

-- At most one open PR per head/base in a repo, even if application logic
-- were ever bypassed. Closed and merged PRs are exempt so a head can be reused.
CREATE UNIQUE INDEX IF NOT EXISTS pull_requests_one_open_per_head
    ON pull_requests (repo, head, base) WHERE state = 'open';

CREATE TABLE IF NOT EXISTS comments (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    repo        TEXT    NOT NULL,
    pr_number   INTEGER NOT NULL,
    body        TEXT    NOT NULL,
    author      TEXT    NOT NULL,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL,
    FOREIGN KEY (repo, pr_number) REFERENCES pull_requests (repo, number)
);

CREATE INDEX IF NOT EXISTS comments_by_pr ON comments (repo, pr_number, id);

-- Grants set with set_permission(); a user with no row has DEFAULT_PERMISSION.
-- (Added after v1 shipped: CREATE ... IF NOT EXISTS upgrades old files in place.)
CREATE TABLE IF NOT EXISTS permissions (
    repo        TEXT    NOT NULL,
    user        TEXT    NOT NULL,
    level       TEXT    NOT NULL,
    PRIMARY KEY (repo, user)
);

-- No foreign key to comments: events fed to the local forge (tests, the demo)
-- may name comments it never recorded, and acknowledging one must not fail.
CREATE TABLE IF NOT EXISTS reactions (
    repo        TEXT    NOT NULL,
    comment_id  INTEGER NOT NULL,
    content     TEXT    NOT NULL,
    author      TEXT    NOT NULL,
    created_at  TEXT    NOT NULL,
    PRIMARY KEY (repo, comment_id, content, author)
);

CREATE TABLE IF NOT EXISTS review_requests (
    repo        TEXT    NOT NULL,
    pr_number   INTEGER NOT NULL,
    reviewer    TEXT    NOT NULL,
    created_at  TEXT    NOT NULL,
    PRIMARY KEY (repo, pr_number, reviewer)
);

CREATE TABLE IF NOT EXISTS statuses (
    repo        TEXT    NOT NULL,
    sha         TEXT    NOT NULL,
    context     TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    description TEXT    NOT NULL,
    target_url  TEXT,
    updated_at  TEXT    NOT NULL,
    PRIMARY KEY (repo, sha, context)
);
"""

#: The local forge is a single-user, on-disk setup: whoever can write the
#: SQLite file can do anything, so everybody is an admin unless a test or an
#: operator says otherwise with ``set_permission``.
DEFAULT_PERMISSION = "admin"


def _now() -> str:
    """UTC timestamp in GitHub's ``...Z`` style, with microseconds so successive edits sort correctly."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _pr_url(repo: str, number: int) -> str:
    """Give local PRs a stable, clickable-looking address shaped like a hosted one."""
    return f"local://{repo}/pull/{number}"


_Record = TypeVar("_Record", PullRequest, Comment)


def _row_to(record: type[_Record], row: sqlite3.Row) -> _Record:
    """Rows carry the records' field names as columns, so one mapping serves both kinds (a field with a
    default and no column, like a PR's `head_repo`, keeps its default: local PRs are never from forks)."""
    columns = set(row.keys())
    return record(**{f.name: row[f.name] for f in fields(record) if f.name in columns})


def _row_to_pr(row: sqlite3.Row) -> PullRequest:
    return _row_to(PullRequest, row)


def _row_to_comment(row: sqlite3.Row) -> Comment:
    return _row_to(Comment, row)


def _check_state(state: str | None) -> None:
    """Reject unknown states loudly; a typo would otherwise just return an empty list."""
    if state is not None and state not in PR_STATES:
        raise ValueError(f"unknown PR state {state!r}; expected one of {', '.join(PR_STATES)}")


class LocalForge:
    """SQLite-backed :class:`~bot.forge.base.Forge`, safe to share across threads and processes.

    A fresh connection is opened per operation rather than held for the
    instance's lifetime: sqlite3 connections must not be shared between
    threads, and short-lived connections mean a long-running webhook server
    never pins a stale lock or file handle.
    """

    def __init__(self, db_path: str | Path, *, bot_author: str = BOT_AUTHOR, body_limit: int = BODY_LIMIT) -> None:
        """``bot_author`` is the identity whose comments ``upsert_comment`` may edit.

        ``body_limit`` defaults to GitHub's limit so the local forge fails the
        same way the hosted one would; tests may lower it.
        """
        self.db_path = Path(db_path)
        self.bot_author = bot_author
        self.body_limit = body_limit
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalForge({str(self.db_path)!r})"

    # -- connection plumbing ------------------------------------------------

    def _raw_connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, because the
        # sqlite3 module's implicit (deferred) transactions are exactly what
        # lets two writers race between a SELECT and the following INSERT.
        conn = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def _ensure_schema(self) -> None:
        """Create the schema on first use, tolerating other processes doing the same at the same moment."""
        if self._schema_ready:
            return
        with self._schema_lock:
            if self._schema_ready:
                return
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._raw_connect()
            try:
                # WAL lets readers (e.g. `layersync prs`) proceed while a sync
                # writes. The mode is persistent in the file; switching needs a
                # brief exclusive lock, which a concurrent first use can
                # contend for, hence the retry.
                enable_wal(conn)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    version = conn.execute("PRAGMA user_version").fetchone()[0]
                    if version > SCHEMA_VERSION:
                        raise ForgeError(
                            f"{self.db_path} has forge schema v{version}, newer than this "
                            f"layersync understands (v{SCHEMA_VERSION}); upgrade layersync"
                        )
                    for statement in _statements(_SCHEMA):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            finally:
                conn.close()
            self._schema_ready = True

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """Connection for reads; each statement sees a consistent snapshot, no lock held in between."""
        self._ensure_schema()
        conn = self._raw_connect()
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """Transaction that holds the database write lock from its first statement.

        ``BEGIN IMMEDIATE`` (not the default deferred BEGIN) is the point: a
        deferred transaction only takes the write lock at its first write, so
        two processes could both read "no open PR", then both insert.
        """
        self._ensure_schema()
        conn = self._raw_connect()
        try:
            with immediate(conn):
                yield conn
        finally:
            conn.close()

    # -- pull requests --------------------------------------------------------

    def open_or_update_pr(
        self, repo: str, *, head: str, base: str, title: str, body: str
    ) -> tuple[PullRequest, bool]:
        title, body = check_title(title), truncate_body(body, self.body_limit)
        with self._write() as conn:
            row = conn.execute(
                "SELECT * FROM pull_requests WHERE repo = ? AND head = ? AND base = ? AND state = 'open'",
                (repo, head, base),
            ).fetchone()
            if row is not None:
                # Leave updated_at alone when nothing changed, so a no-op
                # re-run is visibly a no-op.
                if row["title"] != title or row["body"] != body:
                    conn.execute(
                        "UPDATE pull_requests SET title = ?, body = ?, updated_at = ? WHERE repo = ? AND number = ?",
                        (title, body, _now(), repo, row["number"]),
                    )
                return self._fetch_pr(conn, repo, row["number"]), False

            # Numbers are per repo and never reused, as on a hosted forge;
            # safe without AUTOINCREMENT because we hold the write lock.
            number = conn.execute(
                "SELECT COALESCE(MAX(number), 0) + 1 FROM pull_requests WHERE repo = ?", (repo,)
            ).fetchone()[0]
            now = _now()
            conn.execute(
                "INSERT INTO pull_requests (repo, number, title, body, head, base, state, url, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, 'open', ?, ?, ?)",
                (repo, number, title, body, head, base, _pr_url(repo, number), now, now),
            )
            return self._fetch_pr(conn, repo, number), True

    def get_pr(self, repo: str, number: int) -> PullRequest:
        with self._read() as conn:
            return self._fetch_pr(conn, repo, number)

    def list_prs(self, repo: str | None = None, state: str | None = None) -> list[PullRequest]:
        _check_state(state)
        clauses: list[str] = []
        params: list[object] = []
        if repo is not None:
            clauses.append("repo = ?")
            params.append(repo)
        if state is not None:
            clauses.append("state = ?")
            params.append(state)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._read() as conn:
            rows = conn.execute(f"SELECT * FROM pull_requests{where} ORDER BY repo, number", params).fetchall()
        return [_row_to_pr(r) for r in rows]

    def close_pr(self, repo: str, number: int, merged: bool = False) -> PullRequest:
        """Close or merge; closing a finished PR is a no-op, merging a closed one is an error.

        Mirrors GitHub, where re-closing is harmless but a closed PR cannot be
        merged; being lenient here would let demo flows pass that would fail
        against the real forge.
        """
        target = "merged" if merged else "closed"
        with self._write() as conn:
            pr = self._fetch_pr(conn, repo, number)
            if pr.state == "open":
                conn.execute(
                    "UPDATE pull_requests SET state = ?, updated_at = ? WHERE repo = ? AND number = ?",
                    (target, _now(), repo, number),
                )
                return self._fetch_pr(conn, repo, number)
            if merged and pr.state != "merged":
                raise ForgeError(f"{pr.url} is {pr.state}; only an open PR can be merged")
            return pr

    @staticmethod
    def _fetch_pr(conn: sqlite3.Connection, repo: str, number: int) -> PullRequest:
        row = conn.execute("SELECT * FROM pull_requests WHERE repo = ? AND number = ?", (repo, number)).fetchone()
        if row is None:
            raise NotFoundError(f"no pull request #{number} in {repo!r}")
        return _row_to_pr(row)

    # -- comments ------------------------------------------------------------

    def upsert_comment(self, repo: str, number: int, body: str, marker: str) -> tuple[Comment, bool]:
        """Edit the bot's comment carrying ``marker``, or post one.

        Only comments by ``bot_author`` are candidates: a human quoting the
        bot's report would copy the hidden marker too, and their comment must
        never be overwritten. The marker is guaranteed to survive in the
        stored body (added if missing, kept through truncation), since losing
        it would make every later run post a fresh duplicate.
        """
        if not marker:
            raise ValueError("marker must be a non-empty string")
        body = self._body_with_marker(body, marker)
        with self._write() as conn:
            self._fetch_pr(conn, repo, number)
            # instr() rather than LIKE: markers contain no wildcards by
            # contract, but '_' and '%' are legal in them and LIKE would
            # treat them as patterns.
            row = conn.execute(
                "SELECT * FROM comments WHERE repo = ? AND pr_number = ? AND author = ? AND instr(body, ?) > 0"
                " ORDER BY id LIMIT 1",
                (repo, number, self.bot_author, marker),
            ).fetchone()
            if row is not None:
                if row["body"] != body:
                    conn.execute("UPDATE comments SET body = ?, updated_at = ? WHERE id = ?", (body, _now(), row["id"]))
                return self._fetch_comment(conn, row["id"]), False
            comment_id = self._insert_comment(conn, repo, number, body, self.bot_author)
            return self._fetch_comment(conn, comment_id), True

    def _body_with_marker(self, body: str, marker: str) -> str:
        if marker not in body:
            body = f"{marker}\n{body}"
        cut = truncate_body(body, self.body_limit)
        if marker in cut:
            return cut
        # The marker sat in the part that was cut: put it first and cut the rest.
        rest = body.replace(marker, "")
        return f"{marker}\n" + truncate_body(rest, self.body_limit - len(marker) - 1)

    def list_comments(self, repo: str, number: int) -> list[Comment]:
        with self._read() as conn:
            self._fetch_pr(conn, repo, number)
            rows = conn.execute(
                "SELECT * FROM comments WHERE repo = ? AND pr_number = ? ORDER BY id", (repo, number)
            ).fetchall()
        return [_row_to_comment(r) for r in rows]

    def add_comment(self, repo: str, number: int, body: str, author: str = BOT_AUTHOR) -> Comment:
        body = truncate_body(body, self.body_limit)
        with self._write() as conn:
            self._fetch_pr(conn, repo, number)
            comment_id = self._insert_comment(conn, repo, number, body, author)
            return self._fetch_comment(conn, comment_id)

    @staticmethod
    def _insert_comment(conn: sqlite3.Connection, repo: str, number: int, body: str, author: str) -> int:
        now = _now()
        cur = conn.execute(
            "INSERT INTO comments (repo, pr_number, body, author, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            (repo, number, body, author, now, now),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    @staticmethod
    def _fetch_comment(conn: sqlite3.Connection, comment_id: int) -> Comment:
        row = conn.execute("SELECT * FROM comments WHERE id = ?", (comment_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no comment with id {comment_id}")
        return _row_to_comment(row)

    # -- permissions and reactions -------------------------------------------

    def permission(self, repo: str, user: str) -> str:
        with self._read() as conn:
            row = conn.execute("SELECT level FROM permissions WHERE repo = ? AND user = ?", (repo, user)).fetchone()
        return row["level"] if row is not None else DEFAULT_PERMISSION

    def set_permission(self, repo: str, user: str, level: str) -> None:
        """Grant ``user`` role ``level`` on ``repo`` (one of PERMISSION_LEVELS; "none" revokes everything)."""
        check_permission_level(level)
        with self._write() as conn:
            conn.execute(
                "INSERT INTO permissions (repo, user, level) VALUES (?, ?, ?)"
                " ON CONFLICT (repo, user) DO UPDATE SET level = excluded.level",
                (repo, user, level),
            )

    def react(self, repo: str, comment_id: int, content: str) -> None:
        """Record the bot's reaction; as on GitHub, the same reaction twice is one reaction.

        The comment need not be one this forge recorded: webhook payloads fed
        to a local setup (tests, the demo) carry comment ids of their own.
        """
        check_reaction(content)
        with self._write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO reactions (repo, comment_id, content, author, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (repo, int(comment_id), content, self.bot_author, _now()),
            )

    def request_review(self, repo: str, number: int, reviewers: list[str]) -> list[str]:
        """Recorded per PR; as on GitHub, a PR's author (the bot) cannot be asked to review it, and the PR
        must exist."""
        self.get_pr(repo, number)
        accepted = [r for r in dict.fromkeys(reviewers) if r and r != self.bot_author]
        with self._write() as conn:
            conn.executemany("INSERT OR IGNORE INTO review_requests (repo, pr_number, reviewer, created_at)"
                             " VALUES (?, ?, ?, ?)", [(repo, int(number), r, _now()) for r in accepted])
        return accepted

    def review_requests(self, repo: str, number: int) -> list[str]:
        with self._read() as conn:
            rows = conn.execute("SELECT reviewer FROM review_requests WHERE repo = ? AND pr_number = ? "
                                "ORDER BY created_at, reviewer", (repo, int(number))).fetchall()
        return [r[0] for r in rows]

    def set_status(self, repo: str, sha: str, state: str, description: str, context: str = "layersync/impact",
                   target_url: str | None = None) -> None:
        description = check_status(state, description)
        with self._write() as conn:
            conn.execute(
                "INSERT INTO statuses (repo, sha, context, state, description, target_url, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (repo, sha, context) DO UPDATE SET"
                " state = excluded.state, description = excluded.description,"
                " target_url = excluded.target_url, updated_at = excluded.updated_at",
                (repo, sha, context, state, description, target_url, _now()),
            )

    def statuses(self, repo: str, sha: str) -> dict[str, tuple[str, str]]:
        """context → (state, description) for a commit (for tests and the demo)."""
        with self._read() as conn:
            rows = conn.execute("SELECT context, state, description FROM statuses WHERE repo = ? AND sha = ?",
                                (repo, sha)).fetchall()
        return {row["context"]: (row["state"], row["description"]) for row in rows}

    def list_reactions(self, repo: str, comment_id: int) -> list[str]:
        """The reactions on a comment, in the order they were added (for tests and the demo)."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT content FROM reactions WHERE repo = ? AND comment_id = ? ORDER BY created_at, rowid",
                (repo, int(comment_id)),
            ).fetchall()
        return [r["content"] for r in rows]

    # -- the git remote --------------------------------------------------------

    def remote_url(self, repo: str) -> str:
        """The repo key *is* the remote: the path of a bare repository on disk."""
        return repo

    def git_env(self, repo: str) -> dict[str, str]:
        """A path on disk needs no credentials."""
        return {}

    def default_branch(self, repo: str) -> str:
        """The bare remote's HEAD, as a clone of it would check out."""
        remote = _open_remote(repo)
        try:
            ref = remote.git.symbolic_ref("HEAD").strip()
        except GitCommandError:
            ref = ""
        name = ref.removeprefix("refs/heads/")
        heads = [h.name for h in remote.heads]
        if name and name in heads:
            return name
        for candidate in ("main", "master"):
            if candidate in heads:
                return candidate
        if heads:
            return heads[0]
        if name:  # an empty repository: HEAD names the branch the first push will create
            return name
        raise ForgeError(f"{repo!r} has no branches")

    def pr_head_ref(self, repo: str, number: int) -> str:
        """GitHub's ``refs/pull/N/head``, kept in the bare remote: pointed at the PR's head branch when that
        branch exists there (every PR of the local forge is from a branch of the same repo; a fork's
        commits are put under this ref by whoever stands in for GitHub, as GitHub itself does)."""
        pr = self.get_pr(repo, number)
        ref = f"refs/pull/{int(number)}/head"
        remote = _open_remote(repo)
        try:
            head = remote.git.rev_parse("--verify", "--quiet", f"refs/heads/{pr.head}^{{commit}}").strip()
        except GitCommandError:
            head = ""
        if head and pr.state == "open":
            remote.git.update_ref(ref, head)
        return ref

    def pr_files(self, repo: str, number: int) -> list[str]:
        """``git diff --name-only base...head`` in the remote: what the PR changes since it left its base.

        ``--no-renames`` lists both sides of a rename, as GitHub's
        ``filename``/``previous_filename`` pair does.
        """
        pr = self.get_pr(repo, number)
        remote = _open_remote(repo)
        for branch in (pr.base, pr.head):
            try:
                remote.commit(f"refs/heads/{branch}")
            except (BadName, ValueError, GitCommandError):
                raise ForgeError(f"{pr.url}: branch {branch!r} no longer exists in {repo!r}") from None
        try:
            out = remote.git.diff(
                "--name-only", "--no-renames", "-z", f"refs/heads/{pr.base}...refs/heads/{pr.head}"
            )
        except GitCommandError as exc:
            raise ForgeError(f"{pr.url}: cannot diff {pr.base}...{pr.head}: {exc.stderr or exc}") from None
        return sorted({path for path in out.split("\0") if path})

    def find_pr_by_head(self, repo: str, head: str, state: str | None = "open") -> PullRequest | None:
        _check_state(state)
        sql = "SELECT * FROM pull_requests WHERE repo = ? AND head = ?"
        params: list[object] = [repo, head]
        if state is not None:
            sql += " AND state = ?"
            params.append(state)
        with self._read() as conn:
            row = conn.execute(sql + " ORDER BY number DESC LIMIT 1", params).fetchone()
        return _row_to_pr(row) if row is not None else None


def _open_remote(repo: str) -> git.Repo:
    """The git repository behind a local repo key; a key that is no repository is a missing repo."""
    try:
        return git.Repo(repo)
    except (InvalidGitRepositoryError, NoSuchPathError):
        raise NotFoundError(f"{repo!r} is not a git repository") from None


def _statements(script: str) -> Iterator[str]:
    """Split the schema script into statements for execution inside our own transaction.

    ``executescript`` would issue its own COMMIT first, releasing the
    IMMEDIATE lock that keeps concurrent first-use initialisation safe.
    """
    buffer = ""
    for line in script.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            statement = buffer.strip()
            if statement:
                yield statement
            buffer = ""
    if buffer.strip():
        yield buffer.strip()

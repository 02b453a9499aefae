"""Tests for the SQLite-backed local forge and the shared forge helpers."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from pathlib import Path

import pytest

from bot.forge.base import (
    BODY_LIMIT,
    Forge,
    ForgeError,
    NotFoundError,
    PullRequest,
    format_pr_table,
    truncate_body,
)
from bot.forge.local import LocalForge

REPO = "/srv/git/analytics.git"
OTHER_REPO = "/srv/git/semantic.git"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "forge.db"


@pytest.fixture
def forge(db_path: Path) -> LocalForge:
    return LocalForge(db_path)


def _open(forge: LocalForge, head: str = "layersync/sync-1", repo: str = REPO, **kw: str) -> tuple[PullRequest, bool]:
    args = {"base": "main", "title": "Sync semantic layer", "body": "Initial body"}
    args.update(kw)
    return forge.open_or_update_pr(repo, head=head, **args)


# -- protocol & schema -----------------------------------------------------------


def test_local_forge_satisfies_protocol(forge: LocalForge) -> None:
    assert isinstance(forge, Forge)


def test_schema_created_on_first_use_with_wal(forge: LocalForge, db_path: Path) -> None:
    assert not db_path.exists()
    assert forge.list_prs() == []
    assert db_path.exists()
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"pull_requests", "comments"} <= tables
    finally:
        conn.close()


def test_newer_schema_is_refused(db_path: Path) -> None:
    LocalForge(db_path).list_prs()
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(ForgeError, match="newer"):
        LocalForge(db_path).list_prs()


# -- open / update ---------------------------------------------------------------------


def test_create_pr_fields(forge: LocalForge) -> None:
    pr, created = _open(forge)
    assert created is True
    assert pr.number == 1
    assert pr.repo == REPO
    assert (pr.head, pr.base, pr.state) == ("layersync/sync-1", "main", "open")
    assert pr.title == "Sync semantic layer"
    assert pr.body == "Initial body"
    assert pr.url == f"local://{REPO}/pull/1"
    assert pr.created_at.endswith("Z") and "T" in pr.created_at
    assert pr.created_at == pr.updated_at


def test_open_is_idempotent_and_updates_title_and_body(forge: LocalForge) -> None:
    first, created = _open(forge)
    assert created
    again, created_again = _open(forge)
    assert created_again is False
    assert again == first  # nothing changed: not even updated_at moves

    updated, created3 = _open(forge, title="New title", body="New body")
    assert created3 is False
    assert updated.number == first.number
    assert (updated.title, updated.body) == ("New title", "New body")
    assert updated.created_at == first.created_at
    assert updated.updated_at > first.updated_at
    assert len(forge.list_prs()) == 1


def test_same_head_different_base_is_a_different_pr(forge: LocalForge) -> None:
    a, _ = _open(forge, base="main")
    b, created = _open(forge, base="release")
    assert created and a.number != b.number


def test_numbering_is_per_repo(forge: LocalForge) -> None:
    assert _open(forge, head="a")[0].number == 1
    assert _open(forge, head="b")[0].number == 2
    assert _open(forge, head="a", repo=OTHER_REPO)[0].number == 1
    assert _open(forge, head="c")[0].number == 3
    assert _open(forge, head="b", repo=OTHER_REPO)[0].number == 2
    assert forge.get_pr(OTHER_REPO, 2).url == f"local://{OTHER_REPO}/pull/2"


def test_numbers_are_not_reused_after_close(forge: LocalForge) -> None:
    pr, _ = _open(forge, head="a")
    forge.close_pr(REPO, pr.number)
    assert _open(forge, head="b")[0].number == 2


def test_get_and_list(forge: LocalForge) -> None:
    _open(forge, head="a")
    _open(forge, head="b")
    _open(forge, head="x", repo=OTHER_REPO)
    forge.close_pr(REPO, 2, merged=True)

    assert forge.get_pr(REPO, 1).head == "a"
    # Ordered by repo, then number.
    assert [(p.repo, p.number) for p in forge.list_prs()] == [(REPO, 1), (REPO, 2), (OTHER_REPO, 1)]
    assert [p.number for p in forge.list_prs(REPO)] == [1, 2]
    assert [p.number for p in forge.list_prs(REPO, state="open")] == [1]
    assert [p.number for p in forge.list_prs(REPO, state="merged")] == [2]
    assert forge.list_prs(state="closed") == []
    assert [p.repo for p in forge.list_prs(state="open")] == sorted([REPO, OTHER_REPO])

    with pytest.raises(NotFoundError):
        forge.get_pr(REPO, 99)
    with pytest.raises(LookupError):  # NotFoundError is also a LookupError
        forge.get_pr("/nowhere.git", 1)
    with pytest.raises(ValueError):
        forge.list_prs(state="draft")


# -- close / merge -------------------------------------------------------------------


def test_close_then_reopen_creates_new_pr(forge: LocalForge) -> None:
    pr, _ = _open(forge)
    closed = forge.close_pr(REPO, pr.number)
    assert closed.state == "closed"
    assert closed.updated_at >= pr.updated_at
    assert forge.get_pr(REPO, pr.number).state == "closed"

    again, created = _open(forge)
    assert created is True
    assert again.number == 2


def test_merge(forge: LocalForge) -> None:
    pr, _ = _open(forge)
    merged = forge.close_pr(REPO, pr.number, merged=True)
    assert merged.state == "merged"
    # Closing an already-finished PR is a harmless no-op.
    assert forge.close_pr(REPO, pr.number) == merged
    assert forge.close_pr(REPO, pr.number, merged=True) == merged


def test_cannot_merge_a_closed_pr(forge: LocalForge) -> None:
    pr, _ = _open(forge)
    forge.close_pr(REPO, pr.number)
    with pytest.raises(ForgeError):
        forge.close_pr(REPO, pr.number, merged=True)
    assert forge.get_pr(REPO, pr.number).state == "closed"


def test_close_missing_pr(forge: LocalForge) -> None:
    with pytest.raises(NotFoundError):
        forge.close_pr(REPO, 1)


# -- comments ------------------------------------------------------------------------


MARKER = "<!-- layersync:report pr=1 -->"


def test_add_and_list_comments(forge: LocalForge) -> None:
    pr, _ = _open(forge)
    c1 = forge.add_comment(REPO, pr.number, "first")
    c2 = forge.add_comment(REPO, pr.number, "second", author="alice")
    assert c1.author == "layersync[bot]"
    assert c2.author == "alice"
    assert c2.id > c1.id
    assert [c.body for c in forge.list_comments(REPO, pr.number)] == ["first", "second"]
    with pytest.raises(NotFoundError):
        forge.add_comment(REPO, 42, "nope")
    with pytest.raises(NotFoundError):
        forge.list_comments(REPO, 42)


def test_upsert_comment_edits_in_place(forge: LocalForge) -> None:
    pr, _ = _open(forge)
    first, created = forge.upsert_comment(REPO, pr.number, f"{MARKER}\nReport v1", MARKER)
    assert created is True
    forge.add_comment(REPO, pr.number, "unrelated chatter", author="alice")

    second, created2 = forge.upsert_comment(REPO, pr.number, f"{MARKER}\nReport v2", MARKER)
    assert created2 is False
    assert second.id == first.id
    assert second.body == f"{MARKER}\nReport v2"
    assert second.created_at == first.created_at
    assert second.updated_at > first.updated_at

    # Same body again: no change at all.
    third, created3 = forge.upsert_comment(REPO, pr.number, f"{MARKER}\nReport v2", MARKER)
    assert (third, created3) == (second, False)

    bodies = [c.body for c in forge.list_comments(REPO, pr.number)]
    assert bodies == [f"{MARKER}\nReport v2", "unrelated chatter"]


def test_upsert_distinguishes_markers_and_prs(forge: LocalForge) -> None:
    pr1, _ = _open(forge, head="a")
    pr2, _ = _open(forge, head="b")
    other = "<!-- layersync:report pr=2 -->"
    forge.upsert_comment(REPO, pr1.number, "one", MARKER)
    _, created = forge.upsert_comment(REPO, pr1.number, "two", other)
    assert created is True
    _, created = forge.upsert_comment(REPO, pr2.number, "three", MARKER)
    assert created is True
    assert len(forge.list_comments(REPO, pr1.number)) == 2
    assert len(forge.list_comments(REPO, pr2.number)) == 1


def test_upsert_adds_missing_marker(forge: LocalForge) -> None:
    pr, _ = _open(forge)
    c, _ = forge.upsert_comment(REPO, pr.number, "no marker here", MARKER)
    assert MARKER in c.body and "no marker here" in c.body
    c2, created = forge.upsert_comment(REPO, pr.number, "still none", MARKER)
    assert created is False and c2.id == c.id


def test_upsert_ignores_human_comments_quoting_the_marker(forge: LocalForge) -> None:
    pr, _ = _open(forge)
    human = forge.add_comment(REPO, pr.number, f"> {MARKER}\n> quoted report\nLooks wrong?", author="alice")
    bot, created = forge.upsert_comment(REPO, pr.number, f"{MARKER}\nreport", MARKER)
    assert created is True
    assert bot.id != human.id
    assert forge.list_comments(REPO, pr.number)[0].body.startswith("> ")


def test_marker_with_like_wildcards_matches_literally(forge: LocalForge) -> None:
    pr, _ = _open(forge)
    forge.upsert_comment(REPO, pr.number, "a", "<!-- layersync:x_y -->")
    _, created = forge.upsert_comment(REPO, pr.number, "b", "<!-- layersync:xzy -->")
    assert created is True


def test_upsert_requires_marker(forge: LocalForge) -> None:
    pr, _ = _open(forge)
    with pytest.raises(ValueError):
        forge.upsert_comment(REPO, pr.number, "body", "")


# -- truncation ------------------------------------------------------------------------


def test_truncate_body_short_bodies_untouched() -> None:
    assert truncate_body("hello") == "hello"
    exact = "x" * BODY_LIMIT
    assert truncate_body(exact) == exact


def test_truncate_body_long_body_gets_note_and_fits() -> None:
    body = "\n".join(f"| row {i} | value {i} |" for i in range(10_000))
    assert len(body) > BODY_LIMIT
    cut = truncate_body(body)
    assert len(cut) <= BODY_LIMIT
    assert "Truncated by layersync" in cut
    assert f"{len(body):,}" in cut
    # Cut on a line boundary: every kept table row is complete.
    kept = cut.split("\n\n---\n")[0]
    assert all(line.endswith("|") for line in kept.splitlines())


def test_truncate_body_single_giant_line() -> None:
    body = "y" * 200_000
    cut = truncate_body(body)
    assert len(cut) <= BODY_LIMIT
    assert cut.startswith("y" * 60_000)


def test_truncate_body_closes_open_code_fence() -> None:
    body = "Intro\n```sql\n" + "select 1;\n" * 20_000 + "```\n"
    cut = truncate_body(body, limit=5_000)
    assert len(cut) <= 5_000
    kept = cut.split("\n\n---\n")[0]
    assert sum(1 for line in kept.splitlines() if line.startswith("```")) % 2 == 0


def test_truncate_body_tiny_limit_hard_cuts() -> None:
    assert truncate_body("abcdefghij", limit=4) == "abcd"
    with pytest.raises(ValueError):
        truncate_body("abc", limit=0)


def test_forge_truncates_pr_bodies(forge: LocalForge) -> None:
    pr, _ = _open(forge, body="z" * (BODY_LIMIT + 10))
    assert len(pr.body) <= BODY_LIMIT
    assert "Truncated by layersync" in pr.body
    # Re-submitting the same over-long body is still a no-op update.
    again, created = _open(forge, body="z" * (BODY_LIMIT + 10))
    assert (again, created) == (pr, False)


def test_forge_truncates_comments_and_keeps_marker(db_path: Path) -> None:
    forge = LocalForge(db_path, body_limit=1_000)
    pr, _ = _open(forge)
    c = forge.add_comment(REPO, pr.number, "q" * 5_000)
    assert len(c.body) <= 1_000

    # Marker at the very end of an over-long body must survive the cut,
    # or every later run would post a duplicate.
    body = "r" * 5_000 + "\n" + MARKER
    c1, created = forge.upsert_comment(REPO, pr.number, body, MARKER)
    assert created and MARKER in c1.body and len(c1.body) <= 1_000
    c2, created2 = forge.upsert_comment(REPO, pr.number, body + " v2", MARKER)
    assert not created2 and c2.id == c1.id


# -- persistence & concurrency ------------------------------------------------------


def test_persistence_across_instances(db_path: Path) -> None:
    f1 = LocalForge(db_path)
    pr, _ = _open(f1)
    f1.upsert_comment(REPO, pr.number, "report", MARKER)

    f2 = LocalForge(str(db_path))  # str paths work too
    assert f2.get_pr(REPO, pr.number) == pr
    again, created = _open(f2)
    assert created is False and again.number == pr.number
    _, created = f2.upsert_comment(REPO, pr.number, "report v2", MARKER)
    assert created is False
    assert _open(f2, head="next")[0].number == 2


def test_threads_sharing_one_instance_get_one_pr(forge: LocalForge) -> None:
    n = 16
    barrier = threading.Barrier(n)
    results: list[tuple[int, bool]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        try:
            barrier.wait()
            pr, created = _open(forge, title=f"title {i}")
            with lock:
                results.append((pr.number, created))
        except BaseException as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == n
    assert {num for num, _ in results} == {1}
    assert sum(created for _, created in results) == 1
    assert len(forge.list_prs()) == 1


def test_threads_with_separate_instances_distinct_heads(db_path: Path) -> None:
    n = 12
    barrier = threading.Barrier(n)
    numbers: list[int] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        f = LocalForge(db_path)
        barrier.wait()
        pr, created = _open(f, head=f"branch-{i}")
        assert created
        with lock:
            numbers.append(pr.number)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(numbers) == list(range(1, n + 1))


def _process_open(db: str, head: str, start: "multiprocessing.synchronize.Event", out: "multiprocessing.Queue[tuple[int, bool]]") -> None:
    forge = LocalForge(db)
    start.wait()
    pr, created = forge.open_or_update_pr(REPO, head=head, base="main", title=head, body="from a process")
    out.put((pr.number, created))


def _run_processes(db: Path, heads: list[str]) -> list[tuple[int, bool]]:
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    out: multiprocessing.Queue[tuple[int, bool]] = ctx.Queue()
    procs = [ctx.Process(target=_process_open, args=(str(db), h, start, out)) for h in heads]
    for p in procs:
        p.start()
    start.set()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return results


def test_processes_opening_same_head_get_one_pr(db_path: Path) -> None:
    # Fresh database: the processes also race each other on schema creation.
    results = _run_processes(db_path, ["layersync/sync"] * 6)
    assert {num for num, _ in results} == {1}
    assert sum(created for _, created in results) == 1
    prs = LocalForge(db_path).list_prs()
    assert len(prs) == 1 and prs[0].state == "open"


def test_processes_opening_distinct_heads_get_distinct_numbers(db_path: Path) -> None:
    results = _run_processes(db_path, [f"branch-{i}" for i in range(6)])
    assert sorted(num for num, _ in results) == list(range(1, 7))
    assert all(created for _, created in results)


def test_unique_index_backs_up_application_logic(forge: LocalForge, db_path: Path) -> None:
    _open(forge)
    conn = sqlite3.connect(db_path)
    try:
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(
                "INSERT INTO pull_requests VALUES (?, 2, 't', 'b', 'layersync/sync-1', 'main', 'open', 'u', 'x', 'x')",
                (REPO,),
            )
    finally:
        conn.close()


# -- table formatting ---------------------------------------------------------------


def test_format_pr_table(forge: LocalForge) -> None:
    assert format_pr_table([]) == "No pull requests."
    _open(forge, head="layersync/a", title="Add orders.status dimension")
    _open(forge, head="layersync/b", title="T" * 100, repo=OTHER_REPO)
    forge.close_pr(REPO, 1, merged=True)
    table = format_pr_table(forge.list_prs())
    lines = table.splitlines()
    assert len(lines) == 3
    assert lines[0].split()[:2] == ["#", "STATE"]
    row = next(line for line in lines if "layersync/a" in line)
    assert "#1" in row and "merged" in row and "layersync/a → main" in row
    assert "Add orders.status dimension" in row and row.endswith(REPO)
    long_row = next(line for line in lines if "layersync/b" in line)
    assert "…" in long_row and "T" * 100 not in long_row
    # Columns line up: the title column starts at the same offset on every row.
    offsets = {line.index("Add") if "Add" in line else line.index("TTT") for line in lines[1:]}
    assert len(offsets) == 1
    # Also importable from the local module, where the CLI looks for it.
    from bot.forge import local

    assert local.format_pr_table is format_pr_table

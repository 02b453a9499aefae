"""Several processes opening one fresh SQLite file at the same instant must all succeed.

CI once failed with "database is locked" when two `layersync preview` runs created the registry
together: switching a new file to WAL does not wait on SQLite's busy handler.
"""
from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Callable

import pytest

from bot.forge.local import LocalForge
from bot.jobs.queue import JobQueue
from bot.preview.registry import Registry


def _open_registry(path: Path) -> None:
    Registry(path).list()


def _open_queue(path: Path) -> None:
    JobQueue(path)


def _open_forge(path: Path) -> None:
    LocalForge(path).list_prs()


def _worker(opener: Callable[[Path], None], path: Path, barrier, errors) -> None:  # type: ignore[no-untyped-def]
    barrier.wait()
    try:
        opener(path)
    except Exception as exc:  # reported to the parent, which fails the test
        errors.put(repr(exc))


@pytest.mark.parametrize("opener", [_open_registry, _open_queue, _open_forge], ids=["registry", "queue", "forge"])
def test_many_processes_open_a_fresh_file_together(opener: Callable[[Path], None], tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    errors = ctx.Queue()
    for round_ in range(25):
        path = tmp_path / f"round{round_}" / "db.sqlite"
        barrier = ctx.Barrier(4)
        procs = [ctx.Process(target=_worker, args=(opener, path, barrier, errors)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == []

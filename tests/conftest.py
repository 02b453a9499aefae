"""Shared fixtures: real git repos on disk, built from the demo's jaffle_shop project."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import git
import pytest
from hypothesis import settings

from bot.demo.run import ANALYST, create_dbt_repo, create_semantic_repo

# CI runs the property tests on a fixed sequence of examples, so a red run is this change's, never the
# luck of the draw; developers' runs keep exploring new examples (and keep the failures they find).
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may read or write the developer's own layersync state."""
    monkeypatch.setenv("LAYERSYNC_STATE_DB", str(tmp_path_factory.mktemp("state") / "state.sqlite"))
    monkeypatch.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")


@pytest.fixture(autouse=True)
def _no_secret_carried_over() -> Iterator[None]:
    """Secrets one test registers (`bot.redact`, e.g. by loading service settings) are not masked in
    the next test's text: a process keeps its secrets for its life, a test is not a process."""
    from bot import redact

    redact.forget_all()
    yield
    redact.forget_all()


class Repos:
    def __init__(self, root: Path):
        self.root = root
        self.remote = create_dbt_repo(root)
        self.semantic = create_semantic_repo(root)
        self.state_db = root / "state.sqlite"

    def edit_view(self, view: str, old: str, new: str) -> None:
        path = self.semantic / "views" / f"{view}.view.yaml"
        text = path.read_text()
        assert old in text, f"{old!r} not in {path}"
        path.write_text(text.replace(old, new, 1))

    def write_semantic(self, rel: str, text: str) -> None:
        path = self.semantic / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def commit_semantic(self, message: str = "analyst edit") -> str:
        repo = git.Repo(self.semantic)
        repo.git.add("-A")
        return repo.index.commit(message, author=ANALYST, committer=ANALYST).hexsha

    def dbt_file(self, branch: str, path: str) -> str | None:
        repo = git.Repo(self.remote)
        try:
            return (repo.commit(branch).tree / path).data_stream.read().decode()
        except (KeyError, git.BadName):
            return None

    def branch_sha(self, branch: str) -> str | None:
        repo = git.Repo(self.remote)
        return repo.heads[branch].commit.hexsha if branch in [h.name for h in repo.heads] else None


@pytest.fixture
def repos(tmp_path: Path) -> Repos:
    return Repos(tmp_path)


@pytest.fixture(scope="session", autouse=True)
def _git_identity() -> None:
    """Commits by the tests need an identity even on a machine with no global git config."""
    os.environ.setdefault("GIT_AUTHOR_NAME", "layersync tests")
    os.environ.setdefault("GIT_AUTHOR_EMAIL", "tests@layersync.invalid")
    os.environ.setdefault("GIT_COMMITTER_NAME", "layersync tests")
    os.environ.setdefault("GIT_COMMITTER_EMAIL", "tests@layersync.invalid")

"""A scratch clone of the semantic-layer repo at the revision an event is about."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from bot.forge.base import Forge
from bot.gitops import Workspace


@contextmanager
def semantic_clone(forge: Forge, repo: str, *, branch: str | None = None, sha: str | None = None
                   ) -> Iterator[Workspace]:
    with Workspace(forge.remote_url(repo), forge.git_env(repo)) as ws:
        if branch is not None:
            ws.repo.git.checkout("-B", branch, f"origin/{branch}")
        if sha is not None:
            ws.repo.git.checkout("--detach", sha)
        yield ws


def merge_base(ws: Workspace, base_branch: str) -> str:
    """Where a PR branch left its base: the PR's own changes are those since this commit."""
    return ws.repo.git.merge_base(f"origin/{base_branch}", "HEAD").strip()

"""A scratch clone of the semantic-layer repo at the revision an event is about."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from bot.forge.base import Forge
from bot.gitops import Workspace


@contextmanager
def semantic_clone(forge: Forge, repo: str, *, pr: int | None = None, head_sha: str | None = None,
                   sha: str | None = None) -> Iterator[Workspace]:
    """`pr`: the PR's own head (fetched from the forge's PR ref, so a fork's branch named like a base
    branch is still the fork's), at `head_sha` when the event names it; `sha`: that commit."""
    with Workspace(forge.remote_url(repo), forge.git_env(repo)) as ws:
        if pr is not None:
            ws.checkout_pr_head(forge.pr_head_ref(repo, pr), head_sha)
        elif sha is not None:
            ws.checkout_detached(sha)
        yield ws


def merge_base(ws: Workspace, base_branch: str) -> str:
    """Where a PR branch left its base: the PR's own changes are those since this commit."""
    return ws.merge_base(f"origin/{base_branch}", "HEAD")

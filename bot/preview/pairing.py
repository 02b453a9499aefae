"""Branches of the two repos, read straight from their remotes (`git ls-remote`: no clone needed).

A semantic-layer branch and a dbt branch with the same name form one environment: the semantic
branch's views are compiled against the dbt branch's preview. `paired_semantic_ref` and
`paired_dbt_ref` answer "is there a branch of that name on the other side, and at which commit?"
for any code that wants the pairing (the preview handler, impact reports).
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import git
from git.exc import BadName, GitCommandError

from bot.errors import LayersyncError, RepoError
from bot.gitops import git_reason


class PreviewError(LayersyncError):
    """A preview that cannot be made, said so that the person asking can act on it."""


@dataclass(frozen=True)
class Remote:
    """A git remote as layersync reaches it: what git clones (`url`), the forge's name for it (`key`:
    `owner/name`, or the path for local remotes), the environment carrying credentials, and the folder
    of the repo the project lives in (monorepos)."""
    url: str
    key: str
    env: Mapping[str, str] = field(default_factory=dict)
    path: str = ""          # the dbt project's / semantic model's folder in the repo ("": its root)

    @classmethod
    def local(cls, path: str | Path, folder: str = "") -> "Remote":
        from bot.gitops import remote_of
        resolved = remote_of(path)
        return cls(resolved, resolved, path=folder)

    def project_dir(self, checkout: Path) -> Path:
        """Where the project is in a checkout of this repo (dbt runs there)."""
        return checkout / self.path if self.path else checkout


def _git() -> git.Git:
    return git.Git(tempfile.gettempdir())


def check_branch_name(branch: str) -> str:
    """`branch` if git allows it as a branch name, else a PreviewError saying so."""
    text = str(branch or "")
    problem = not text or text.startswith("-") or any(ord(c) < 32 for c in text)
    if not problem:
        try:
            problem = _git().check_ref_format("--branch", text).strip() != text
        except GitCommandError:
            problem = True
    if problem:
        raise PreviewError(f"`{text[:100]}` is not a valid git branch name")
    return text


def _ls_remote(remote: Remote, *options: str, patterns: tuple[str, ...] = ()) -> str:
    g = _git()
    try:
        with g.custom_environment(**dict(remote.env)):
            return g.ls_remote(*options, "--", remote.url, *patterns)
    except GitCommandError as exc:
        raise RepoError(f"cannot read the branches of `{remote.key}`: {git_reason(exc)}") from None


def remote_branches(remote: Remote, *, only: str | None = None) -> dict[str, str]:
    """Every branch of the remote (or just `only`) → its commit."""
    heads: dict[str, str] = {}
    patterns = (f"refs/heads/{only}",) if only is not None else ()
    for line in _ls_remote(remote, "--heads", patterns=patterns).splitlines():
        sha, _, ref = line.partition("\t")
        if ref.startswith("refs/heads/"):
            heads[ref[len("refs/heads/"):]] = sha.strip()
    return heads


def remote_branch_sha(remote: Remote, branch: str) -> str | None:
    """The commit `branch` points at on the remote, or None when there is no such branch."""
    return remote_branches(remote, only=branch).get(branch)   # ls-remote's patterns match tails: exact here


def remote_default_branch(remote: Remote) -> str:
    """The remote's HEAD branch (what a clone checks out)."""
    for line in _ls_remote(remote, "--symref", patterns=("HEAD",)).splitlines():
        if line.startswith("ref: ") and line.endswith("\tHEAD"):
            return line[len("ref: "):-len("\tHEAD")].removeprefix("refs/heads/")
    heads = remote_branches(remote)
    for name in ("main", "master"):
        if name in heads:
            return name
    if heads:
        return sorted(heads)[0]
    raise RepoError(f"`{remote.key}` has no branches")


def paired_semantic_ref(semantic_remote: Remote | str, branch: str) -> str | None:
    """The commit of the semantic-layer branch named like dbt branch `branch` (None: no such branch).
    `semantic_remote`: a Remote, or a path/URL git can read without credentials."""
    remote = semantic_remote if isinstance(semantic_remote, Remote) else Remote(str(semantic_remote),
                                                                                 str(semantic_remote))
    return remote_branch_sha(remote, branch)


def paired_dbt_ref(dbt_remote: Remote | str, branch: str) -> str | None:
    """The commit of the dbt branch named like semantic-layer branch `branch` (None: no such branch)."""
    remote = dbt_remote if isinstance(dbt_remote, Remote) else Remote(str(dbt_remote), str(dbt_remote))
    return remote_branch_sha(remote, branch)


def clone_bare(remote: Remote, target: Path) -> git.Repo:
    """A clone without a working tree; check revisions out with `worktree`."""
    try:
        return git.Repo.clone_from(remote.url, target, no_checkout=True, env=dict(remote.env) or None)
    except GitCommandError as exc:
        raise RepoError(f"cannot clone `{remote.key}`: {git_reason(exc)}") from None


def worktree(repo: git.Repo, sha: str, target: Path) -> Path:
    repo.git.worktree("add", "--detach", str(target), sha)
    return target


def resolve(repo: git.Repo, rev: str, what: str) -> str:
    """A revision of a clone: `origin/<rev>` (a branch of the remote) first, then `rev` itself."""
    for candidate in (f"origin/{rev}", rev):
        try:
            return repo.commit(candidate).hexsha
        except (ValueError, GitCommandError, BadName):
            continue
    raise RepoError(f"unknown revision `{rev}` in {what}")

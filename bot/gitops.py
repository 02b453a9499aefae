"""Everything that runs git: reading revisions of the semantic repo, and a scratch clone of the
dbt repo in which the bot branches, commits and pushes — never the user's own working tree."""
from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import git
from git.exc import BadName, GitCommandError, InvalidGitRepositoryError, NoSuchPathError

from bot.errors import EncodingError, RepoError
from bot.redact import scrub

BOT_NAME = "layersync[bot]"
BOT_EMAIL = "layersync-bot@users.noreply.localhost"


def open_repo(path: Path | str, what: str) -> git.Repo:
    try:
        return git.Repo(path)
    except (InvalidGitRepositoryError, NoSuchPathError):
        raise RepoError(f"{what} `{path}` is not a git repository") from None


class RevisionReader:
    """Files of a repository at a given revision, read from git objects (no checkout needed)."""

    def __init__(self, path: Path | str, what: str = "repository"):
        self.path = Path(path)
        self.repo = open_repo(path, what)
        self.what = what

    def commit(self, rev: str) -> git.Commit:
        try:
            return self.repo.commit(rev)
        except (BadName, ValueError, GitCommandError):
            raise RepoError(f"unknown revision `{rev}` in {self.what} `{self.path}`") from None

    def has_revision(self, rev: str) -> bool:
        try:
            self.repo.commit(rev)
            return True
        except (BadName, ValueError, GitCommandError):
            return False

    def is_dir(self, rev: str, path: str) -> bool:
        """Whether `path` is a folder at `rev` (the repository's root always is)."""
        if not path:
            return True
        try:
            return (self.commit(rev).tree / path).type == "tree"
        except KeyError:
            return False

    def list_files(self, rev: str, keep: Callable[[str], bool]) -> list[str]:
        tree = self.commit(rev).tree
        return sorted(item.path for item in tree.traverse() if item.type == "blob" and keep(item.path))

    def read_many(self, rev: str, paths: list[str], *,
                  unreadable: dict[str, EncodingError] | None = None) -> dict[str, str | None]:
        """Several files of one revision: one `ls-tree` and git's object stream, instead of walking
        a large directory's tree object once per file. With `unreadable`, a file that is not UTF-8 is
        put there (and left out) instead of failing the others: one bad file costs only itself."""
        if not paths:
            return {}
        found: dict[str, str | None] = dict.fromkeys(paths)
        listing = self.repo.git.ls_tree("-z", self.commit(rev).hexsha, "--", *paths)
        for entry in listing.split("\0"):
            meta, _, path = entry.partition("\t")
            parts = meta.split()
            if len(parts) == 3 and parts[1] == "blob" and path in found:
                try:
                    found[path] = decode_text(self.repo.odb.stream(bytes.fromhex(parts[2])).read(), path)
                except EncodingError as error:
                    if unreadable is None:
                        raise
                    unreadable[path] = error
                    del found[path]
        return found

    def read(self, rev: str, path: str) -> str | None:
        try:
            blob = self.commit(rev).tree / path
        except KeyError:
            return None
        return decode_text(blob.data_stream.read(), path)

    def store(self, rev: str) -> "RevisionStore":
        return RevisionStore(self, rev)

    def changed_paths(self, old_rev: str | None, new_rev: str) -> list[str]:
        """Paths that differ between two revisions (both sides of a rename); all files if no old one."""
        new = self.commit(new_rev)
        if old_rev is None:
            return sorted(item.path for item in new.tree.traverse() if item.type == "blob")
        paths: set[str] = set()
        for change in self.commit(old_rev).diff(new):
            paths.update(p for p in (change.a_path, change.b_path) if p)
        return sorted(paths)


def decode_text(data: bytes, path: str) -> str:
    """A file's bytes as text; a file that is not UTF-8 is a user's error with its line, not a crash."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise EncodingError(f"not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8",
                            path, line) from None


def shown_url(remote: str) -> str:
    """A remote as it may appear in a message: credentials in its URL masked, whatever they are."""
    return scrub(remote)


def remote_of(path: Path | str) -> str:
    """Where the bot pushes for a dbt repo given as a path: the path itself if bare, else its origin."""
    repo = open_repo(path, "dbt repo")
    if repo.bare:
        return str(Path(repo.git_dir).resolve())
    if "origin" in [r.name for r in repo.remotes]:
        url = repo.remotes.origin.url
        local = Path(path, url) if not Path(url).is_absolute() and "://" not in url and ":" not in url else None
        return str(local.resolve()) if local is not None and local.exists() else url
    return str(Path(repo.working_tree_dir).resolve())


def repo_remote(forge: Any, hosted: str | None, local: Path | None, what: str) -> tuple[str, dict[str, str], str]:
    """Where to clone and push a repo the bot writes to: the forge's repo when hosted (its URL and
    credentials), else a local path's remote. Returns (remote, git env, the forge's name for it)."""
    if hosted is not None:
        return forge.remote_url(hosted), forge.git_env(hosted), hosted
    if local is not None:
        remote = remote_of(local)
        return remote, {}, remote
    raise RepoError(f"no {what} given")


class Workspace:
    """A throwaway clone of the remote: the bot's edits can never touch a user's uncommitted work."""

    def __init__(self, remote: str, env: Mapping[str, str] | None = None):
        """`env` carries credentials for hosted remotes (git reads an auth header from it), so no
        token is ever part of the URL or written into the clone's config."""
        self.remote = remote
        self.shown = shown_url(remote)
        self.env = dict(env or {})
        self._tmp = tempfile.mkdtemp(prefix="layersync-ws-")
        try:
            self.repo = git.Repo.clone_from(remote, Path(self._tmp) / "repo", env=self.env or None)
        except GitCommandError as exc:
            self.close()
            raise RepoError(f"cannot clone `{self.shown}`: {git_reason(exc, self._tmp)}") from None
        with self.repo.config_writer() as config:
            config.set_value("user", "name", BOT_NAME)
            config.set_value("user", "email", BOT_EMAIL)
        self.root = Path(self.repo.working_tree_dir)

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)

    def default_branch(self) -> str:
        """The remote's HEAD branch, as a clone records it in `origin/HEAD`."""
        try:
            ref = self.repo.git.symbolic_ref("refs/remotes/origin/HEAD")
            return ref.rsplit("/", 1)[-1] if ref.startswith("refs/remotes/origin/") else ref
        except GitCommandError:
            heads = [r.remote_head for r in self.repo.remotes.origin.refs if r.remote_head != "HEAD"]
            for name in ("main", "master"):
                if name in heads:
                    return name
            if heads:
                return heads[0]
            raise RepoError(f"`{self.shown}` has no branches") from None

    def remote_branch_sha(self, branch: str) -> str | None:
        for ref in self.repo.remotes.origin.refs:
            if ref.remote_head == branch:
                return ref.commit.hexsha
        return None

    @contextmanager
    def _git(self, doing: str) -> Iterator[None]:
        """git's refusal as one line a user can act on: no command line, no temp path, no credential."""
        try:
            yield
        except GitCommandError as exc:
            raise RepoError(f"{doing} in `{self.shown}` failed: {git_reason(exc, self._tmp)}") from None

    def fetch(self, refspec: str) -> None:
        try:
            with self.repo.git.custom_environment(**self.env):
                self.repo.git.fetch("origin", refspec)
        except GitCommandError as exc:
            raise RepoError(f"cannot fetch `{refspec}` from `{self.shown}`: {git_reason(exc, self._tmp)}") from None

    def checkout_pr_head(self, ref: str, expected_sha: str | None = None) -> str:
        """Check out a PR's own head, fetched from the forge's PR ref (`refs/pull/N/head` on GitHub), never a
        branch of the base repo that happens to share the head's name (a fork's `main`). With
        `expected_sha` (the event's head), that commit is what is checked out, and a PR ref that no longer
        contains it is an error rather than a silent switch to other commits. Returns the sha."""
        local = "refs/layersync/pr-head"
        self.fetch(f"+{ref}:{local}")
        with self._git(f"reading `{ref}`"):
            head = self.repo.git.rev_parse("--verify", f"{local}^{{commit}}").strip()
        sha = head
        if expected_sha and expected_sha != head:
            try:
                self.repo.git.merge_base("--is-ancestor", expected_sha, head)
                sha = self.repo.git.rev_parse("--verify", f"{expected_sha}^{{commit}}").strip()
            except GitCommandError:
                raise RepoError(f"the PR's head `{ref}` is at {head[:12]}, not at the event's commit "
                                f"{expected_sha[:12]}") from None
        with self._git(f"checking out {sha[:12]}"):
            self.repo.git.checkout("--detach", sha)
        return sha

    def checkout_detached(self, rev: str) -> str:
        """Check out a commit or `origin/<branch>` with no local branch; returns its sha."""
        with self._git(f"checking out `{rev}`"):
            self.repo.git.checkout("--detach", rev)
            return self.repo.head.commit.hexsha

    def merge_base(self, a: str, b: str = "HEAD") -> str:
        with self._git(f"finding where `{b}` left `{a}`"):
            return self.repo.git.merge_base(a, b).strip()

    def discard(self, paths: list[str]) -> None:
        """Put the work tree back as the last commit has it (files written for a check, new ones too)."""
        with self._git("discarding the checked edit"):
            self.repo.git.checkout("--", ".")
            if paths:
                self.repo.git.clean("-fdq", "--", *paths)

    def checkout(self, branch: str, base: str) -> bool:
        """Check out `branch`, continuing the remote's branch when it exists; True when it did."""
        with self._git(f"creating branch `{branch}`"):
            if self.remote_branch_sha(branch) is not None:
                self.repo.git.checkout("-B", branch, f"origin/{branch}")
                return True
            if self.remote_branch_sha(base) is None:
                raise RepoError(f"base branch `{base}` does not exist in `{self.shown}`")
            self.repo.git.checkout("-B", branch, f"origin/{base}")
            return False

    def start_branch(self, branch: str, start: str) -> None:
        """(Re)create `branch` at `start`, whatever it pointed at before (a branch the bot rebuilds)."""
        with self._git(f"creating branch `{branch}`"):
            self.repo.git.checkout("-B", branch, start)

    def write(self, files: dict[str, str]) -> None:
        for rel, text in files.items():
            target = self.root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")

    def commit(self, message: str, paths: list[str]) -> str | None:
        """Commit exactly `paths`; None when they hold no change (a rerun on the same input)."""
        try:
            self.repo.index.add(paths)
        except OSError as exc:                     # a path the file system refuses (name too long)
            raise RepoError(f"cannot stage the edit: {exc.strerror or exc}") from None
        if not self.repo.index.diff("HEAD"):
            return None
        identity = {"GIT_AUTHOR_NAME": BOT_NAME, "GIT_AUTHOR_EMAIL": BOT_EMAIL,    # over any GIT_AUTHOR_* the
                    "GIT_COMMITTER_NAME": BOT_NAME, "GIT_COMMITTER_EMAIL": BOT_EMAIL}  # process inherited
        with self._git("committing"), self.repo.git.custom_environment(**identity):
            self.repo.git.commit("-m", message, "--no-verify")
        return self.repo.head.commit.hexsha

    def foreign_commits(self, branch: str, base: str) -> list[str]:
        """Commits on the remote `branch` (not on `base`) that the bot did not make: someone edited its
        branch, so it must not be rebuilt over them. One line each: short sha, author, subject."""
        if self.remote_branch_sha(branch) is None:
            return []
        with self._git(f"reading the commits of `{branch}`"):
            log = self.repo.git.log(f"origin/{base}..origin/{branch}", "--format=%h%x09%ae%x09%an%x09%s")
        lines = [line.split("\t") for line in log.splitlines() if line.strip()]
        return [f"{sha} {name}: {subject}" for sha, email, name, subject in lines if email != BOT_EMAIL]

    def push(self, branch: str, *, replacing: str | None = None) -> None:
        """A plain push: if someone else moved the branch meanwhile, git refuses and so do we.
        `replacing`: the remote sha this push may overwrite (a branch the bot rebuilds on a moved base),
        and only that one (`--force-with-lease`): a push by anyone else since still makes git refuse."""
        lease = [f"--force-with-lease=refs/heads/{branch}:{replacing}"] if replacing else []
        try:
            with self.repo.git.custom_environment(**self.env):
                self.repo.git.push(*lease, "origin", f"refs/heads/{branch}:refs/heads/{branch}")
        except GitCommandError as exc:
            raise RepoError(f"push of `{branch}` to `{self.shown}` was refused: {git_reason(exc, self._tmp)}") from None


def git_reason(exc: GitCommandError, scratch: str | None = None) -> str:
    """git's last word on a failure (its stderr, never GitPython's command line), with the scratch
    clone's path left out and credentials masked: the text goes into comments and logs."""
    stderr = exc.stderr if isinstance(exc.stderr, str) and exc.stderr.strip() else ""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    reason = lines[-1].strip("'") if lines else f"git exited with status {exc.status}"
    reason = reason.removeprefix("stderr: ").strip("'")
    if scratch:
        reason = reason.replace(str(Path(scratch) / "repo") + "/", "").replace(scratch, "<scratch>")
    return scrub(reason)


class RevisionStore:
    """A `FileStore` over one revision, so planners can compare with a branch they have not checked out."""

    def __init__(self, reader: RevisionReader, rev: str):
        self.reader = reader
        self.rev = reader.commit(rev).hexsha

    def read_text(self, path: str) -> str | None:
        return self.reader.read(self.rev, path)

    def list_files(self, under: str) -> list[str]:
        prefix = under.rstrip("/") + "/"
        return self.reader.list_files(self.rev, lambda p: p.startswith(prefix))

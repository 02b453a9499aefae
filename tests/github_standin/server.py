"""A local stand-in for api.github.com and github.com's git smart HTTP, checked against GitHub's REST description.

Usage::

    with GitHubStandIn() as gh:
        gh.add_token("ghp_test", user="layersync-bot")
        gh.create_repo("acme/dbt", files={"models/a.sql": "select 1"})
        g = github.Github(auth=github.Auth.Token("ghp_test"), base_url=gh.api_url)
        ...  # drive the bot; clone/push gh.git_url("acme", "dbt") with the token
        gh.assert_no_violations()

Every API request is matched to an operation of GitHub's published description
(``openapi.py``) and validated (path/query parameters, request body schema,
undeclared body keys). A non-conforming request is answered 422 and recorded in
``.violations``; a path GitHub does not document is answered 404 and recorded
there too; a documented operation the stand-in does not implement is answered
501 and recorded in ``.unhandled``. Successful responses are completed to the
documented response schema (every ``required`` property present) and checked
against it; a stand-in response that does not conform lands in ``.response_errors``.

Permissions model (deliberately small): any valid token may read every repo
(installation tokens: only the repos of their installation); a token added with
``read_only=True`` gets 403 on every write and on ``git push``; check runs may
only be created by installation tokens (as on GitHub). ``grant()`` only feeds
``GET /repos/{o}/{r}/collaborators/{u}/permission``.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from . import git_http
from .git_http import GIT_PATH, ZERO_SHA, GitRequest, Push, RefUpdate
from .openapi import Operation, Spec, Synth, load_spec

__all__ = [
    "ApiError",
    "GitHubStandIn",
    "Injection",
    "RecordedRequest",
    "Violation",
]

DOCS = "https://docs.github.com/rest"
PERMISSION_LEVELS = ("none", "read", "triage", "write", "maintain", "admin")
REACTIONS = ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes")
#: Operations that take an app JWT (``Authorization: Bearer <jwt>``) rather than a token.
JWT_OPERATIONS = {
    "apps/get-authenticated",
    "apps/get-repo-installation",
    "apps/get-org-installation",
    "apps/get-user-installation",
    "apps/get-installation",
    "apps/list-installations",
    "apps/create-installation-access-token",
}
BODY_LIMIT = 65536


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _iso(dt: datetime | None) -> str | None:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ") if dt else None


def _node_id(kind: str, ident: int) -> str:
    return base64.b64encode(f"0:{kind}{ident}".encode()).decode().rstrip("=")


# --------------------------------------------------------------------------- records


@dataclass
class RecordedRequest:
    method: str
    path: str  # as requested, without the query string
    route: str  # path below the API prefix
    query: dict[str, Any]
    body: Any
    headers: dict[str, str]
    operation_id: str | None = None
    status: int | None = None
    user: str | None = None
    injected: bool = False

    @property
    def json(self) -> Any:
        return self.body


@dataclass
class Violation:
    method: str
    path: str
    query: dict[str, Any]
    body: Any
    errors: list[str]
    operation_id: str | None = None

    def __str__(self) -> str:
        op = f" ({self.operation_id})" if self.operation_id else ""
        return f"{self.method} {self.path}{op}: " + "; ".join(self.errors)


@dataclass
class Injection:
    method: str  # "*" for any
    pattern: re.Pattern
    status: int
    headers: dict[str, str]
    body: Any
    remaining: int


class ApiError(Exception):
    """A GitHub-shaped error answer (not a spec violation: GitHub itself would answer so)."""

    def __init__(self, status: int, message: str, errors: list[Any] | None = None, headers: dict | None = None):
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.errors = errors
        self.headers = headers or {}

    def body(self) -> dict:
        out: dict[str, Any] = {"message": self.message, "documentation_url": DOCS, "status": str(self.status)}
        if self.errors is not None:
            out["errors"] = self.errors
        return out


def _validation_failed(resource: str, field_: str | None = None, code: str = "invalid", message: str | None = None) -> ApiError:
    err: dict[str, Any] = {"resource": resource, "code": code}
    if field_:
        err["field"] = field_
    if message:
        err["message"] = message
    return ApiError(422, "Validation Failed", [err])


# --------------------------------------------------------------------------- state


@dataclass
class User:
    login: str
    id: int
    type: str = "User"  # "User" | "Organization" | "Bot"
    name: str | None = None
    email: str | None = None


@dataclass
class Token:
    token: str
    login: str
    kind: str = "user"  # "user" | "installation"
    installation_id: int | None = None
    expires_at: datetime | None = None
    read_only: bool = False
    repositories: list[str] | None = None  # installation tokens narrowed to these repo names


@dataclass
class Installation:
    id: int
    app_id: int
    account: str
    repos: list[str] | None  # full names; None = all repos of the account
    created_at: datetime


@dataclass
class App:
    id: int
    slug: str
    name: str
    owner: str
    public_key: Any | None  # a cryptography public key, or None to skip signature checks
    created_at: datetime

    @property
    def bot_login(self) -> str:
        return f"{self.slug}[bot]"


@dataclass
class PullRequest:
    number: int
    id: int
    title: str
    body: str | None
    head: str
    base: str
    user: str
    state: str = "open"  # "open" | "closed"
    draft: bool = False
    maintainer_can_modify: bool = False
    merged: bool = False
    created_at: datetime = field(default_factory=_now)
    updated_at: datetime = field(default_factory=_now)
    closed_at: datetime | None = None
    merged_at: datetime | None = None
    merged_by: str | None = None
    merge_commit_sha: str | None = None
    head_sha: str = ZERO_SHA
    base_sha: str = ZERO_SHA
    frozen_base: str | None = None  # the merge base once merged/closed, so files stay the PR's own diff
    head_deleted: bool = False
    requested_reviewers: list[str] = field(default_factory=list)
    fork_owner: str | None = None   # the head branch lives in this user's fork (its commits: refs/pull/N/head)
    pull_ref_sha: str = ""          # what refs/pull/N/head points at in the bare repo


@dataclass
class Issue:
    number: int
    id: int
    title: str
    body: str | None
    user: str
    state: str = "open"
    created_at: datetime = field(default_factory=_now)
    updated_at: datetime = field(default_factory=_now)
    closed_at: datetime | None = None


@dataclass
class Reaction:
    id: int
    content: str
    user: str
    created_at: datetime = field(default_factory=_now)


@dataclass
class Comment:
    id: int
    issue_number: int
    body: str
    user: str
    app_id: int | None = None
    created_at: datetime = field(default_factory=_now)
    updated_at: datetime = field(default_factory=_now)
    reactions: list[Reaction] = field(default_factory=list)


@dataclass
class Repo:
    owner: str
    name: str
    id: int
    bare: Path
    default_branch: str
    private: bool = False
    description: str | None = None
    created_at: datetime = field(default_factory=_now)
    pushed_at: datetime = field(default_factory=_now)
    prs: dict[int, PullRequest] = field(default_factory=dict)
    issues: dict[int, Issue] = field(default_factory=dict)
    comments: dict[int, Comment] = field(default_factory=dict)
    grants: dict[str, str] = field(default_factory=dict)
    statuses: list[dict] = field(default_factory=list)
    check_runs: dict[int, dict] = field(default_factory=dict)
    next_number: int = 1
    push_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass
class Call:
    """One API request, as the operation handlers see it."""

    op: Operation
    params: dict[str, Any]
    query: dict[str, Any]
    body: Any
    token: Token | None
    app: App | None
    repo: Repo | None
    path: str
    raw_query: str

    @property
    def login(self) -> str | None:
        if self.token is not None:
            return self.token.login
        return self.app.bot_login if self.app else None

    def q(self, name: str, default: Any = None) -> Any:
        v = self.query.get(name, default)
        return v[-1] if isinstance(v, list) else v

    def b(self, name: str, default: Any = None) -> Any:
        return (self.body or {}).get(name, default) if isinstance(self.body, dict) else default


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "GitHubStandIn/1"
    timeout = 60
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _dispatch(self) -> None:
        self.server.standin._serve(self)  # type: ignore[attr-defined]

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


# --------------------------------------------------------------------------- the stand-in


class GitHubStandIn:
    """api.github.com + git smart HTTP on 127.0.0.1:<random port>. Use as a context manager."""

    def __init__(
        self,
        *,
        api_prefix: str = "",
        spec: Spec | None = None,
        validate_responses: bool = True,
        root: str | Path | None = None,
        keep: bool = False,
    ):
        self.spec = spec or load_spec(prefix=api_prefix)
        if spec is not None and api_prefix and spec.prefix != api_prefix.rstrip("/"):
            raise ValueError("spec prefix and api_prefix differ")
        self.api_prefix = self.spec.prefix
        self.validate_responses = validate_responses
        self._keep = keep
        self._own_root = root is None
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="github-standin-"))
        self.git_root = self.root / "git"
        self.git_root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._ids = iter(range(1000, 10**9))
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        # state
        self.users: dict[str, User] = {}
        self.tokens: dict[str, Token] = {}
        self.apps: dict[int, App] = {}
        self.installations: dict[int, Installation] = {}
        self.repos: dict[str, Repo] = {}
        # records
        self.requests: list[RecordedRequest] = []
        self.violations: list[Violation] = []
        self.unhandled: list[RecordedRequest] = []
        self.response_errors: list[str] = []
        self.pushes: list[Push] = []
        self.git_requests: list[GitRequest] = []
        self._injections: list[Injection] = []

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "GitHubStandIn":
        if self._server is None:
            self._server = _Server(("127.0.0.1", 0), _Handler)
            self._server.standin = self  # type: ignore[attr-defined]
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="github-standin", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._own_root and not self._keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "GitHubStandIn":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the stand-in is not started")
        return self._server.server_address[1]

    @property
    def web_url(self) -> str:
        """Stands in for https://github.com."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """Stands in for https://api.github.com: PyGithub's ``base_url``."""
        return f"http://127.0.0.1:{self.port}{self.api_prefix}"

    def git_url(self, owner: str, repo: str | None = None) -> str:
        """Clone URL of ``owner/repo`` (also accepts ``git_url("owner/repo")``)."""
        if repo is None:
            owner, repo = owner.split("/", 1)
        return f"{self.web_url}/{owner}/{repo}.git"

    # ------------------------------------------------------------------ setup
    def _next_id(self) -> int:
        return next(self._ids)

    def add_user(self, login: str, *, type: str | None = None, name: str | None = None, email: str | None = None) -> User:  # noqa: A002
        with self._lock:
            user = self.users.get(login)
            if user is None:
                kind = type or ("Bot" if login.endswith("[bot]") else "User")
                user = self.users[login] = User(login, self._next_id(), kind, name, email)
            else:
                if type:
                    user.type = type
                if name is not None:
                    user.name = name
                if email is not None:
                    user.email = email
            return user

    def add_token(self, token: str, user: str = "layersync-bot", *, read_only: bool = False, expires_at: datetime | None = None) -> Token:
        """Accept ``token`` (API ``Authorization: token``/``Bearer``, git Basic password) as ``user``."""
        self.add_user(user)
        with self._lock:
            t = self.tokens[token] = Token(token, user, "user", None, expires_at, read_only)
            return t

    def expire_token(self, token: str) -> None:
        self.tokens[token].expires_at = _now() - timedelta(seconds=1)

    @staticmethod
    def new_app_key() -> str:
        """A fresh RSA private key (PEM) for a test GitHub App."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()

    def register_app(
        self,
        app_id: int,
        slug: str,
        *,
        name: str | None = None,
        owner: str = "acme",
        private_key: str | None = None,
        public_key: str | None = None,
    ) -> App:
        """A GitHub App whose JWTs are verified with ``public_key`` (or the public half of ``private_key``).

        With neither key, JWTs are decoded and their claims checked but the signature is not.
        """
        from cryptography.hazmat.primitives import serialization

        key = None
        if private_key:
            key = serialization.load_pem_private_key(private_key.encode(), password=None).public_key()
        elif public_key:
            key = serialization.load_pem_public_key(public_key.encode())
        self.add_user(owner, type="Organization" if owner not in self.users else None)
        app = App(app_id, slug, name or slug, owner, key, _now())
        self.add_user(app.bot_login, type="Bot")
        with self._lock:
            self.apps[app_id] = app
        return app

    def install_app(self, app_id: int, repos: list[str] | None = None, *, account: str | None = None) -> int:
        """Install app ``app_id`` on ``repos`` (full names) or on every repo of ``account``; returns the installation id."""
        if account is None:
            if not repos:
                raise ValueError("give repos or account")
            account = repos[0].split("/", 1)[0]
        with self._lock:
            inst = Installation(self._next_id(), app_id, account, list(repos) if repos else None, _now())
            self.installations[inst.id] = inst
            return inst.id

    def issue_installation_token(self, installation_id: int, *, expires_in: int = 3600) -> str:
        """What ``POST /app/installations/{id}/access_tokens`` would mint, without the JWT dance."""
        inst = self.installations[installation_id]
        token = "ghs_" + secrets.token_urlsafe(27)[:36]
        with self._lock:
            self.tokens[token] = Token(
                token, self.apps[inst.app_id].bot_login, "installation", installation_id,
                _now() + timedelta(seconds=expires_in),
            )
        return token

    def grant(self, repo: str, user: str, permission: str) -> None:
        """Make ``user`` a collaborator on ``repo`` with ``permission`` (read|triage|write|maintain|admin|none)."""
        if permission not in PERMISSION_LEVELS:
            raise ValueError(f"permission must be one of {PERMISSION_LEVELS}")
        self.add_user(user)
        with self._lock:
            self._repo(repo).grants[user] = permission

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int = 502,
        *,
        headers: dict[str, str] | None = None,
        body: Any = None,
        times: int = 1,
    ) -> Injection:
        """Answer the next ``times`` requests whose method and path (below the API prefix) match with ``status``.

        The request is still validated and recorded. ``method`` may be "*".
        """
        inj = Injection(
            method.upper(), re.compile(path_regex), status, dict(headers or {}),
            body if body is not None else {"message": f"Injected failure {status}", "documentation_url": DOCS},
            times,
        )
        with self._lock:
            self._injections.append(inj)
        return inj

    # ------------------------------------------------------------------ git-backed repos
    def _git_env(self) -> dict[str, str]:
        import os

        env = dict(os.environ)
        env.update({
            "GIT_AUTHOR_NAME": "GitHub", "GIT_AUTHOR_EMAIL": "noreply@github.com",
            "GIT_COMMITTER_NAME": "GitHub", "GIT_COMMITTER_EMAIL": "noreply@github.com",
            "GIT_TERMINAL_PROMPT": "0",
        })
        for k in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
            env.pop(k, None)
        return env

    def _git(self, repo: Repo | Path, *args: str, input: bytes | None = None, check: bool = True, env: dict | None = None) -> str:  # noqa: A002
        cwd = repo.bare if isinstance(repo, Repo) else repo
        proc = subprocess.run(
            ["git", *args], cwd=cwd, input=input, capture_output=True, env=env or self._git_env(),
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)} failed: {proc.stderr.decode(errors='replace')}")
        return proc.stdout.decode("utf-8", "replace")

    def _git_ok(self, repo: Repo, *args: str) -> bool:
        return subprocess.run(["git", *args], cwd=repo.bare, capture_output=True, env=self._git_env()).returncode == 0

    def create_repo(
        self,
        full_name: str,
        *,
        default_branch: str | None = None,
        files: dict[str, str | bytes] | None = None,
        from_path: str | Path | None = None,
        private: bool = False,
        description: str | None = None,
        owner_type: str | None = None,
    ) -> Repo:
        """A repo backed by a bare git repo: seeded with ``files`` (one commit) or cloned from ``from_path``."""
        owner, name = full_name.split("/", 1)
        if full_name in self.repos:
            raise ValueError(f"{full_name} exists")
        self.add_user(owner, type=owner_type or (None if owner in self.users else "Organization"))
        bare = self.git_root / owner / f"{name}.git"
        bare.parent.mkdir(parents=True, exist_ok=True)
        if from_path is not None:
            self._git(self.git_root, "clone", "--bare", "--quiet", str(Path(from_path).resolve()), str(bare))
            if default_branch is None:
                head = self._git(bare, "symbolic-ref", "--quiet", "HEAD", check=False).strip()
                default_branch = head.removeprefix("refs/heads/") or "main"
            else:
                self._git(bare, "symbolic-ref", "HEAD", f"refs/heads/{default_branch}")
        else:
            default_branch = default_branch or "main"
            self._git(self.git_root, "init", "--bare", "--quiet", "-b", default_branch, str(bare))
        self._git(bare, "config", "http.receivepack", "true")
        self._git(bare, "config", "uploadpack.allowAnySHA1InWant", "true")
        repo = Repo(owner, name, self._next_id(), bare, default_branch, private, description)
        with self._lock:
            self.repos[full_name] = repo
        if from_path is None:
            self.commit(full_name, default_branch, files if files is not None else {"README.md": f"# {name}\n"},
                        message="Initial commit")
        return repo

    def commit(
        self,
        repo: str,
        branch: str,
        files: dict[str, str | bytes | None],
        *,
        message: str = "Update files",
        parent: str | None = None,
    ) -> str:
        """Commit ``files`` (None deletes a path) onto ``branch`` directly in the bare repo; returns the new sha.

        The branch is created from ``parent`` (a branch or sha; default: the default branch) when missing.
        """
        r = self._repo(repo)
        with r.push_lock:
            before = git_http.ref_snapshot(r.bare)
            ref = f"refs/heads/{branch}"
            start = before.get(ref)
            if start is None and parent is not None:
                start = self._git(r, "rev-parse", "--verify", f"{parent}^{{commit}}").strip()
            elif start is None:
                start = before.get(f"refs/heads/{r.default_branch}")
            with tempfile.TemporaryDirectory(prefix="standin-index-") as tmp:
                env = self._git_env()
                env["GIT_INDEX_FILE"] = str(Path(tmp) / "index")
                if start:
                    self._git(r, "read-tree", start, env=env)
                for path, content in files.items():
                    if content is None:
                        self._git(r, "update-index", "--force-remove", "--", path, env=env)
                        continue
                    data = content.encode() if isinstance(content, str) else content
                    blob = self._git(r, "hash-object", "-w", "--stdin", input=data, env=env).strip()
                    self._git(r, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
                tree = self._git(r, "write-tree", env=env).strip()
            args = ["commit-tree", tree, "-m", message] + (["-p", start] if start else [])
            sha = self._git(r, *args).strip()
            self._git(r, "update-ref", ref, sha, before.get(ref, ZERO_SHA))
            updates = git_http.diff_refs(before, git_http.ref_snapshot(r.bare))
        self._after_push(r, "GitHub", updates, via="standin")
        return sha

    def branch_sha(self, repo: str, branch: str) -> str | None:
        r = self._repo(repo)
        out = self._git(r, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}", check=False).strip()
        return out or None

    def branches(self, repo: str) -> dict[str, str]:
        r = self._repo(repo)
        return {
            ref.removeprefix("refs/heads/"): sha
            for ref, sha in git_http.ref_snapshot(r.bare).items()
            if ref.startswith("refs/heads/")
        }

    def file_at(self, repo: str, ref: str, path: str) -> str | None:
        r = self._repo(repo)
        proc = subprocess.run(["git", "show", f"{ref}:{path}"], cwd=r.bare, capture_output=True)
        return proc.stdout.decode() if proc.returncode == 0 else None

    def bare_path(self, repo: str) -> Path:
        return self._repo(repo).bare

    def _after_push(self, r: Repo, user: str, updates: list[RefUpdate], via: str = "git") -> None:
        if not updates:
            return
        with self._lock:
            push = Push(r.full_name, user, updates)
            push.via = via  # type: ignore[attr-defined]
            if via != "standin":
                self.pushes.append(push)
            r.pushed_at = _now()
            for u in updates:
                if not u.ref.startswith("refs/heads/"):
                    continue
                branch = u.ref.removeprefix("refs/heads/")
                for pr in r.prs.values():
                    if pr.head == branch and pr.state == "open" and pr.fork_owner is None:
                        if u.deleted:
                            # GitHub closes a PR whose head branch is deleted.
                            pr.head_deleted = True
                            pr.frozen_base = self._merge_base(r, pr)
                            pr.state, pr.closed_at = "closed", _now()
                        else:
                            pr.head_sha = u.new
                        pr.updated_at = _now()

    # ------------------------------------------------------------------ PR helpers (tests)
    def prs(self, repo: str) -> list[PullRequest]:
        return [self._refresh(self._repo(repo), pr) for _, pr in sorted(self._repo(repo).prs.items())]

    def pr(self, repo: str, number: int) -> PullRequest:
        r = self._repo(repo)
        return self._refresh(r, r.prs[number])

    def comments(self, repo: str, number: int) -> list[Comment]:
        return sorted((c for c in self._repo(repo).comments.values() if c.issue_number == number), key=lambda c: c.id)

    def statuses(self, repo: str) -> list[dict]:
        return list(self._repo(repo).statuses)

    def check_runs(self, repo: str) -> list[dict]:
        return [self._repo(repo).check_runs[k] for k in sorted(self._repo(repo).check_runs)]

    def create_issue(self, repo: str, title: str, body: str = "", *, user: str = "octocat") -> Issue:
        r = self._repo(repo)
        self.add_user(user)
        with self._lock:
            issue = Issue(r.next_number, self._next_id(), title, body, user)
            r.next_number += 1
            r.issues[issue.number] = issue
            return issue

    def create_pr(self, repo: str, head: str, base: str | None = None, *, title: str = "A pull request", body: str = "", user: str = "octocat") -> PullRequest:
        """Open a PR as a human would (no API call, no validation of commits between)."""
        r = self._repo(repo)
        self.add_user(user)
        with self._lock:
            pr = PullRequest(r.next_number, self._next_id(), title, body, head, base or r.default_branch, user)
            r.next_number += 1
            r.prs[pr.number] = pr
            return self._refresh(r, pr)

    def create_fork_pr(self, repo: str, fork_owner: str, head: str, head_sha: str, base: str | None = None, *,
                       title: str = "A pull request from a fork", body: str = "") -> PullRequest:
        """A PR from ``fork_owner``'s fork: its head branch (which may share a name with a base branch) is
        not in this repo; its commit ``head_sha`` must already be in the bare repo (push it to any ref),
        and is kept at refs/pull/N/head, as GitHub does."""
        r = self._repo(repo)
        self.add_user(fork_owner)
        with self._lock:
            pr = PullRequest(r.next_number, self._next_id(), title, body, head, base or r.default_branch, fork_owner,
                             head_sha=head_sha, fork_owner=fork_owner)
            r.next_number += 1
            r.prs[pr.number] = pr
            return self._refresh(r, pr)

    def add_comment(self, repo: str, number: int, body: str, *, user: str = "octocat") -> Comment:
        """A comment by someone else (e.g. a human reviewer) on issue/PR ``number``."""
        r = self._repo(repo)
        self.add_user(user)
        with self._lock:
            if number not in r.prs and number not in r.issues:
                raise KeyError(f"{repo}#{number} does not exist")
            c = Comment(self._next_id(), number, body, user)
            r.comments[c.id] = c
            return c

    def merge_pr(self, repo: str, number: int, *, by: str = "octocat", method: str = "merge",
                 title: str | None = None, message: str | None = None) -> str:
        """Merge PR ``number`` for real in the bare repo (merge commit or squash); returns the new base sha."""
        r = self._repo(repo)
        with self._lock:
            pr = self._refresh(r, r.prs[number])
            if pr.state != "open":
                raise ApiError(405, "Pull Request is not mergeable")
            head, base = pr.head_sha, self.branch_sha(repo, pr.base)
            if base is None:
                raise ApiError(422, f"base branch {pr.base} does not exist")
            mb = self._merge_base(r, pr)
            merged_tree = subprocess.run(
                ["git", "merge-tree", "--write-tree", base, head], cwd=r.bare, capture_output=True, text=True,
                env=self._git_env(),
            )
            if merged_tree.returncode != 0:
                raise ApiError(405, "Pull Request is not mergeable")
            tree = merged_tree.stdout.split("\n", 1)[0].strip()
            default_title = (
                f"Merge pull request #{number} from {r.owner}/{pr.head}" if method == "merge" else f"{pr.title} (#{number})"
            )
            msg = (title or default_title) + ("\n\n" + (message if message is not None else pr.title) if method == "merge" else ("\n\n" + message if message else ""))
            parents = ["-p", base, "-p", head] if method == "merge" else ["-p", base]
            sha = self._git(r, "commit-tree", tree, *parents, "-m", msg).strip()
            before = git_http.ref_snapshot(r.bare)
            self._git(r, "update-ref", f"refs/heads/{pr.base}", sha, base)
            pr.frozen_base = mb
            pr.base_sha = base
            pr.state, pr.merged = "closed", True
            pr.merged_at = pr.closed_at = pr.updated_at = _now()
            pr.merged_by = by
            pr.merge_commit_sha = sha
            self.add_user(by)
        self._after_push(r, by, git_http.diff_refs(before, git_http.ref_snapshot(r.bare)), via="merge")
        return sha

    def close_pr(self, repo: str, number: int) -> PullRequest:
        r = self._repo(repo)
        with self._lock:
            pr = self._refresh(r, r.prs[number])
            if pr.state == "open":
                pr.frozen_base = self._merge_base(r, pr)
                pr.state, pr.closed_at, pr.updated_at = "closed", _now(), _now()
            return pr

    # ------------------------------------------------------------------ assertions / inspection
    def assert_no_violations(self, *, include_unhandled: bool = True) -> None:
        problems = [f"request not allowed by GitHub's REST description: {v}" for v in self.violations]
        problems += [f"stand-in response does not conform: {e}" for e in self.response_errors]
        if include_unhandled:
            problems += [
                f"operation not implemented by the stand-in: {r.method} {r.path} ({r.operation_id})" for r in self.unhandled
            ]
        if problems:
            raise AssertionError("\n".join(problems))

    def requests_for(self, operation_id: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.operation_id == operation_id]

    # ------------------------------------------------------------------ HTTP plumbing
    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        parsed = urllib.parse.urlsplit(h.path)
        git = GIT_PATH.match(parsed.path)
        if git and not (self.api_prefix and parsed.path.startswith(self.api_prefix + "/")):
            self._serve_git(h, git, parsed.query)
            return
        self._serve_api(h, parsed)

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        h.send_response(status)
        reset = int(time.time()) + 3600
        base_headers = {
            "Content-Type": "application/json; charset=utf-8",
            "X-GitHub-Media-Type": "github.v3; format=json",
            "X-GitHub-Request-Id": secrets.token_hex(8).upper(),
            "X-RateLimit-Limit": "5000",
            "X-RateLimit-Remaining": "4999",
            "X-RateLimit-Reset": str(reset),
            "X-RateLimit-Used": "1",
            "X-RateLimit-Resource": "core",
        }
        base_headers.update(headers or {})
        for k, v in base_headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)

    def _take_injection(self, method: str, path: str) -> Injection | None:
        with self._lock:
            for inj in self._injections:
                if inj.remaining > 0 and inj.method in ("*", method) and inj.pattern.search(path):
                    inj.remaining -= 1
                    return inj
        return None

    def _authenticate_token(self, header: str | None) -> tuple[Token | None, str | None]:
        """(token, error) for an ``Authorization: token|Bearer|Basic`` header."""
        if not header:
            return None, "Requires authentication"
        scheme, _, value = header.strip().partition(" ")
        scheme = scheme.lower()
        if scheme in ("token", "bearer"):
            secret = value.strip()
        elif scheme == "basic":
            secret = git_http.basic_auth_token(header)
        else:
            return None, "Bad credentials"
        tok = self.tokens.get(secret or "")
        if tok is None:
            return None, "Bad credentials"
        if tok.expires_at is not None and tok.expires_at <= _now():
            return None, "Bad credentials"
        return tok, None

    def _authenticate_jwt(self, header: str | None) -> tuple[App | None, str | None]:
        import jwt

        if not header or header.split(" ", 1)[0].lower() != "bearer":
            return None, "A JSON web token could not be decoded"
        raw = header.split(" ", 1)[1].strip()
        try:
            hdr = jwt.get_unverified_header(raw)
            claims = jwt.decode(raw, options={"verify_signature": False})
        except jwt.PyJWTError:
            return None, "A JSON web token could not be decoded"
        if hdr.get("alg") != "RS256":
            return None, "'alg' must be RS256"
        try:
            app_id = int(claims.get("iss"))
        except (TypeError, ValueError):
            return None, "'Issuer' claim ('iss') must be an Integer"
        app = self.apps.get(app_id)
        if app is None:
            return None, "Integration not found"
        if app.public_key is not None:
            try:
                jwt.decode(raw, app.public_key, algorithms=["RS256"], options={"verify_exp": False, "verify_iat": False})
            except jwt.PyJWTError:
                return None, "A JSON web token could not be decoded"
        now = int(time.time())
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, int) or not isinstance(iat, int):
            return None, "'Expiration time' and 'Issued at' claims are required"
        if exp <= now - 30:
            return None, "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires"
        if exp - now > 600 + 30:
            return None, "'Expiration time' claim ('exp') is too far in the future"
        if iat > now + 30:
            return None, "'Issued at' claim ('iat') must be an Integer representing a time in the past"
        return app, None

    def _serve_api(self, h: BaseHTTPRequestHandler, parsed: urllib.parse.SplitResult) -> None:
        method = h.command
        raw = b"".join(git_http._iter_body(h.rfile, h.headers))
        path = parsed.path
        query: dict[str, Any] = {}
        for k, v in urllib.parse.parse_qsl(parsed.query, keep_blank_values=True):
            query.setdefault(k, []).append(v)
        query = {k: v[0] if len(v) == 1 else v for k, v in query.items()}
        route = self.spec.strip_prefix(path)
        body: Any = None
        errors: list[str] = []
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
                errors.append("body: not valid JSON (GitHub answers 400 'Problems parsing JSON')")
        rec = RecordedRequest(method, path, route or path, query, body, dict(h.headers.items()))
        with self._lock:
            self.requests.append(rec)

        def finish(status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            rec.status = status
            self._send(h, status, payload, headers)

        op = self.spec.match(method, path) if route is not None else None
        if op is None:
            allowed = self.spec.allowed_methods(path) if route is not None else []
            why = (
                f"GitHub documents {path} only for {', '.join(allowed)}" if allowed
                else f"{path} is not a path GitHub documents"
                + (f" (API prefix is {self.api_prefix!r})" if self.api_prefix and route is None else "")
            )
            with self._lock:
                self.violations.append(Violation(method, path, query, body, [why]))
            inj = self._take_injection(method, route or path)
            if inj:
                rec.injected = True
                return finish(inj.status, inj.body, inj.headers)
            return finish(404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"})
        rec.operation_id = op.operation_id
        if not errors:
            errors = op.validate_request(query, body, content_type=h.headers.get("Content-Type"))
        if errors:
            with self._lock:
                self.violations.append(Violation(method, path, query, body, errors, op.operation_id))
        inj = self._take_injection(method, route)
        if inj:
            rec.injected = True
            return finish(inj.status, inj.body, inj.headers)
        if errors:
            return finish(422, {
                "message": "Request does not conform to GitHub's REST description (stand-in check)",
                "errors": errors, "documentation_url": DOCS, "status": "422",
            })
        # authentication
        token = app = None
        auth = h.headers.get("Authorization")
        if op.operation_id in JWT_OPERATIONS:
            app, err = self._authenticate_jwt(auth)
        else:
            token, err = self._authenticate_token(auth)
        if err:
            return finish(401, {"message": err, "documentation_url": DOCS, "status": "401"})
        rec.user = token.login if token else app.bot_login if app else None
        handler = getattr(self, "_op_" + re.sub(r"\W", "_", op.operation_id), None)
        if handler is None:
            with self._lock:
                self.unhandled.append(rec)
            return finish(501, {"message": f"The GitHub stand-in does not implement {op.operation_id}", "status": "501"})
        try:
            with self._lock:
                repo = self._authorize(op, token, app)
                call = Call(op, dict(op.path_params), query, body, token, app, repo, path, parsed.query)
                result = handler(call)
        except ApiError as e:
            return finish(e.status, e.body(), e.headers)
        except Exception as e:  # a stand-in bug: answer 500 and make the test fail loudly
            import traceback

            with self._lock:
                self.response_errors.append(f"{op.operation_id} crashed in the stand-in: {traceback.format_exc()}")
            return finish(500, {"message": f"stand-in error: {e!r}", "status": "500"})
        status, payload, headers = result if len(result) == 3 else (*result, {})
        if payload is not None and 200 <= status < 300:
            payload = self._shape(op, status, payload)
        return finish(status, payload, headers)

    def _authorize(self, op: Operation, token: Token | None, app: App | None) -> Repo | None:
        repo = None
        params = op.path_params
        if "owner" in params and "repo" in params:
            repo = self.repos.get(f"{params['owner']}/{params['repo']}")
            if repo is None or (token is not None and not self._token_sees(token, repo)):
                raise ApiError(404, "Not Found")
            if token is None and app is not None:
                pass  # app JWT endpoints under /repos (installation lookup)
        if token is not None and op.method != "GET" and token.read_only:
            raise ApiError(403, "Resource not accessible by personal access token")
        return repo

    def _token_sees(self, token: Token, repo: Repo) -> bool:
        if token.kind != "installation":
            return True
        inst = self.installations.get(token.installation_id or -1)
        if inst is None:
            return False
        in_install = (inst.repos is None and repo.owner == inst.account) or (inst.repos is not None and repo.full_name in inst.repos)
        return in_install and (token.repositories is None or repo.name in token.repositories)

    def _shape(self, op: Operation, status: int, payload: Any) -> Any:
        schema = op.response_schema(status)
        ctx = Synth(self.api_url, _iso(_now()) or "")
        if schema is not None:
            payload = self.spec.conform(schema, payload, ctx)
        payload = self._localize(payload)
        if self.validate_responses and op.documents_status(status):
            errs = op.validate_response(status, payload)
            if errs:
                with self._lock:
                    self.response_errors.extend(f"{op.method} {op.template} ({op.operation_id}): {e}" for e in errs)
        elif self.validate_responses:
            with self._lock:
                self.response_errors.append(f"{op.operation_id}: status {status} is not documented")
        return payload

    def _localize(self, value: Any) -> Any:
        """GitHub's own URLs (from examples) rewritten to the stand-in, so a client never follows one out."""
        if isinstance(value, str):
            if value.startswith("https://api.github.com"):
                return self.api_url + value[len("https://api.github.com"):]
            if value.startswith(("https://github.com", "https://uploads.github.com")):
                return self.web_url + value.split(".com", 1)[1]
            return value
        if isinstance(value, list):
            return [self._localize(v) for v in value]
        if isinstance(value, dict):
            return {k: self._localize(v) for k, v in value.items()}
        return value

    def _serve_git(self, h: BaseHTTPRequestHandler, m: re.Match, query: str) -> None:
        owner, name, sub = m.group("owner"), m.group("repo"), m.group("sub")
        full = f"{owner}/{name}"
        service = urllib.parse.parse_qs(query).get("service", [None])[0] or (sub.lstrip("/") if sub.startswith("/git-") else None)
        record = GitRequest(
            h.command, h.path, service, None, 0,
            gzip=(h.headers.get("Content-Encoding") or "").lower() in ("gzip", "x-gzip"),
            chunked="chunked" in (h.headers.get("Transfer-Encoding") or "").lower(),
        )
        with self._lock:
            self.git_requests.append(record)

        def refuse(status: int, text: str, headers: dict[str, str] | None = None) -> None:
            git_http.drain(h.rfile, h.headers)
            data = (text + "\n").encode()
            h.send_response(status)
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.send_header("Content-Type", "text/plain; charset=utf-8")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
            record.status = status

        inj = self._take_injection(h.command, h.path.split("?", 1)[0])
        if inj:
            return refuse(inj.status, json.dumps(inj.body), inj.headers)
        token, err = self._authenticate_token(h.headers.get("Authorization"))
        if token is None or git_http.basic_auth_token(h.headers.get("Authorization")) is None:
            return refuse(401, "Invalid username or token. Password authentication is not supported for Git operations.",
                          {"WWW-Authenticate": 'Basic realm="GitHub"'})
        record.user = token.login
        repo = self.repos.get(full)
        if repo is None or not self._token_sees(token, repo):
            return refuse(404, "Repository not found.")
        if service == "git-receive-pack" and token.read_only:
            return refuse(403, f"Permission to {full}.git denied to {token.login}.")
        record.status = git_http.serve(
            h,
            project_root=self.git_root,
            owner=owner,
            repo=name,
            sub=sub,
            query=query,
            user=token.login,
            lock=repo.push_lock,
            on_push=lambda updates: self._after_push(repo, token.login, updates),
        )

    # ------------------------------------------------------------------ JSON builders
    def _repo(self, full_name: str) -> Repo:
        try:
            return self.repos[full_name]
        except KeyError:
            raise KeyError(f"no repo {full_name!r} in the stand-in (create_repo first)") from None

    def _user_json(self, login: str) -> dict:
        u = self.add_user(login)
        api, web = self.api_url, self.web_url
        url = f"{api}/users/{urllib.parse.quote(login)}"
        return {
            "login": u.login, "id": u.id, "node_id": _node_id("User", u.id),
            "avatar_url": f"{web}/avatars/{u.id}", "gravatar_id": "",
            "url": url,
            "html_url": f"{web}/apps/{login.removesuffix('[bot]')}" if u.type == "Bot" else f"{web}/{urllib.parse.quote(login)}",
            "followers_url": f"{url}/followers", "following_url": f"{url}/following{{/other_user}}",
            "gists_url": f"{url}/gists{{/gist_id}}", "starred_url": f"{url}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{url}/subscriptions", "organizations_url": f"{url}/orgs",
            "repos_url": f"{url}/repos", "events_url": f"{url}/events{{/privacy}}",
            "received_events_url": f"{url}/received_events", "type": u.type, "site_admin": False,
            "user_view_type": "public",
        }

    def _repo_json(self, r: Repo, token: Token | None = None) -> dict:
        api, web = self.api_url, self.web_url
        url = f"{api}/repos/{r.full_name}"
        open_count = sum(1 for p in r.prs.values() if p.state == "open") + sum(1 for i in r.issues.values() if i.state == "open")
        perm = self._permission(r, token.login) if token and token.kind == "user" else "write"
        rank = PERMISSION_LEVELS.index(perm)
        out = {
            "id": r.id, "node_id": _node_id("Repository", r.id), "name": r.name, "full_name": r.full_name,
            "owner": self._user_json(r.owner), "private": r.private, "visibility": "private" if r.private else "public",
            "html_url": f"{web}/{r.full_name}", "description": r.description, "fork": False, "url": url,
            "archive_url": f"{url}/{{archive_format}}{{/ref}}", "assignees_url": f"{url}/assignees{{/user}}",
            "blobs_url": f"{url}/git/blobs{{/sha}}", "branches_url": f"{url}/branches{{/branch}}",
            "collaborators_url": f"{url}/collaborators{{/collaborator}}", "comments_url": f"{url}/comments{{/number}}",
            "commits_url": f"{url}/commits{{/sha}}", "compare_url": f"{url}/compare/{{base}}...{{head}}",
            "contents_url": f"{url}/contents/{{+path}}", "contributors_url": f"{url}/contributors",
            "deployments_url": f"{url}/deployments", "downloads_url": f"{url}/downloads", "events_url": f"{url}/events",
            "forks_url": f"{url}/forks", "git_commits_url": f"{url}/git/commits{{/sha}}",
            "git_refs_url": f"{url}/git/refs{{/sha}}", "git_tags_url": f"{url}/git/tags{{/sha}}",
            "git_url": f"git://127.0.0.1/{r.full_name}.git", "issue_comment_url": f"{url}/issues/comments{{/number}}",
            "issue_events_url": f"{url}/issues/events{{/number}}", "issues_url": f"{url}/issues{{/number}}",
            "keys_url": f"{url}/keys{{/key_id}}", "labels_url": f"{url}/labels{{/name}}", "languages_url": f"{url}/languages",
            "merges_url": f"{url}/merges", "milestones_url": f"{url}/milestones{{/number}}",
            "notifications_url": f"{url}/notifications{{?since,all,participating}}", "pulls_url": f"{url}/pulls{{/number}}",
            "releases_url": f"{url}/releases{{/id}}", "ssh_url": f"git@127.0.0.1:{r.full_name}.git",
            "stargazers_url": f"{url}/stargazers", "statuses_url": f"{url}/statuses/{{sha}}",
            "subscribers_url": f"{url}/subscribers", "subscription_url": f"{url}/subscription", "tags_url": f"{url}/tags",
            "teams_url": f"{url}/teams", "trees_url": f"{url}/git/trees{{/sha}}", "clone_url": self.git_url(r.owner, r.name),
            "mirror_url": None, "hooks_url": f"{url}/hooks", "svn_url": f"{web}/{r.full_name}", "homepage": None,
            "language": None, "forks_count": 0, "forks": 0, "stargazers_count": 0, "watchers_count": 0, "watchers": 0,
            "size": 0, "default_branch": r.default_branch, "open_issues_count": open_count, "open_issues": open_count,
            "is_template": False, "topics": [], "has_issues": True, "has_projects": True, "has_wiki": True,
            "has_pages": False, "has_downloads": True, "has_discussions": False, "archived": False, "disabled": False,
            "pushed_at": _iso(r.pushed_at), "created_at": _iso(r.created_at), "updated_at": _iso(r.pushed_at),
            "permissions": {
                "admin": rank >= 5, "maintain": rank >= 4, "push": rank >= 3, "triage": rank >= 2, "pull": rank >= 1,
            },
            "allow_rebase_merge": True, "allow_squash_merge": True, "allow_merge_commit": True,
            "allow_auto_merge": False, "delete_branch_on_merge": False, "allow_forking": True,
            "web_commit_signoff_required": False, "license": None, "network_count": 0, "subscribers_count": 0,
        }
        if self.users[r.owner].type == "Organization":
            out["organization"] = self._user_json(r.owner)
        return out

    def _permission(self, r: Repo, login: str) -> str:
        if login == r.owner:
            return "admin"
        if login in r.grants:
            return r.grants[login]
        return "none" if r.private else "read"

    def _merge_base(self, r: Repo, pr: PullRequest) -> str | None:
        if pr.frozen_base:
            return pr.frozen_base
        base = self.branch_sha(r.full_name, pr.base) or pr.base_sha
        if not base or base == ZERO_SHA or pr.head_sha == ZERO_SHA:
            return None
        out = self._git(r, "merge-base", base, pr.head_sha, check=False).strip()
        return out or None

    def _refresh(self, r: Repo, pr: PullRequest) -> PullRequest:
        if pr.state == "open":
            head = self.branch_sha(r.full_name, pr.head) if pr.fork_owner is None else None
            if head:
                pr.head_sha = head
            base = self.branch_sha(r.full_name, pr.base)
            if base:
                pr.base_sha = base
        if pr.head_sha != ZERO_SHA and pr.pull_ref_sha != pr.head_sha:
            # GitHub keeps every PR's head (a fork's too) at refs/pull/N/head of the base repo.
            self._git(r, "update-ref", f"refs/pull/{pr.number}/head", pr.head_sha)
            pr.pull_ref_sha = pr.head_sha
        return pr

    def _diff_stats(self, r: Repo, pr: PullRequest) -> list[dict]:
        """Files changed by the PR (merge base ... head), as GitHub's diff-entry objects."""
        mb = self._merge_base(r, pr)
        if not mb or pr.head_sha == ZERO_SHA:
            return []
        raw = self._git(r, "diff", "--raw", "-z", "-M", "--no-abbrev", mb, pr.head_sha)
        num = self._git(r, "diff", "--numstat", "-z", "-M", mb, pr.head_sha)
        parts = raw.split("\0")
        entries = []
        i = 0
        while i < len(parts) - 1:
            meta = parts[i]
            if not meta.startswith(":"):
                i += 1
                continue
            fields_ = meta[1:].split()
            _om, _nm, old_sha, new_sha, status = fields_[:5]
            if status[0] in "RC":
                old_path, new_path = parts[i + 1], parts[i + 2]
                i += 3
            else:
                old_path = new_path = parts[i + 1]
                i += 2
            entries.append((status[0], old_sha, new_sha, old_path, new_path))
        stats: dict[str, tuple[int, int]] = {}
        nparts = num.split("\0")
        j = 0
        while j < len(nparts):
            rec = nparts[j]
            if not rec:
                j += 1
                continue
            a, d, path = rec.split("\t", 2)
            if path == "":
                path = nparts[j + 2]  # rename: "a\td\t" then old\0new\0
                j += 3
            else:
                j += 1
            stats[path] = (int(a) if a != "-" else 0, int(d) if d != "-" else 0)
        out = []
        names = {"A": "added", "D": "removed", "M": "modified", "R": "renamed", "C": "copied", "T": "changed"}
        for status, old_sha, new_sha, old_path, new_path in entries:
            adds, dels = stats.get(new_path, (0, 0))
            sha = new_sha if status != "D" else old_sha
            ref = pr.head_sha
            quoted = urllib.parse.quote(new_path)
            entry = {
                "sha": sha, "filename": new_path, "status": names.get(status, "modified"),
                "additions": adds, "deletions": dels, "changes": adds + dels,
                "blob_url": f"{self.web_url}/{r.full_name}/blob/{ref}/{quoted}",
                "raw_url": f"{self.web_url}/{r.full_name}/raw/{ref}/{quoted}",
                "contents_url": f"{self.api_url}/repos/{r.full_name}/contents/{quoted}?ref={ref}",
            }
            patch = self._git(r, "diff", "-M", "--no-color", mb, pr.head_sha, "--", *({old_path, new_path}), check=False)
            if "@@" in patch:
                entry["patch"] = patch[patch.index("@@"):].rstrip("\n")
            if status == "R":
                entry["previous_filename"] = old_path
            out.append(entry)
        return out

    def _pr_json(self, r: Repo, pr: PullRequest, *, full: bool) -> dict:
        self._refresh(r, pr)
        api, web = self.api_url, self.web_url
        url = f"{api}/repos/{r.full_name}/pulls/{pr.number}"
        issue_url = f"{api}/repos/{r.full_name}/issues/{pr.number}"
        html = f"{web}/{r.full_name}/pull/{pr.number}"
        statuses = f"{api}/repos/{r.full_name}/statuses/{pr.head_sha}"
        repo_json = self._repo_json(r)

        def side(branch: str, sha: str, owner: str | None = None) -> dict:
            owner = owner or r.owner
            where = repo_json if owner == r.owner else {
                **repo_json, "full_name": f"{owner}/{r.full_name.split('/', 1)[1]}", "fork": True,
                "owner": self._user_json(owner)}
            return {"label": f"{owner}:{branch}", "ref": branch, "sha": sha, "user": self._user_json(owner), "repo": where}

        out: dict[str, Any] = {
            "url": url, "id": pr.id, "node_id": _node_id("PullRequest", pr.id), "html_url": html,
            "diff_url": f"{html}.diff", "patch_url": f"{html}.patch", "issue_url": issue_url,
            "commits_url": f"{url}/commits", "review_comments_url": f"{url}/comments",
            "review_comment_url": f"{api}/repos/{r.full_name}/pulls/comments{{/number}}",
            "comments_url": f"{issue_url}/comments", "statuses_url": statuses,
            "number": pr.number, "state": pr.state, "locked": False, "title": pr.title,
            "user": self._user_json(pr.user), "body": pr.body, "labels": [], "milestone": None,
            "active_lock_reason": None, "created_at": _iso(pr.created_at), "updated_at": _iso(pr.updated_at),
            "closed_at": _iso(pr.closed_at), "merged_at": _iso(pr.merged_at), "merge_commit_sha": pr.merge_commit_sha,
            "assignee": None, "assignees": [],
            "requested_reviewers": [self._user_json(u) for u in pr.requested_reviewers], "requested_teams": [],
            "head": side(pr.head, pr.head_sha, pr.fork_owner), "base": side(pr.base, pr.base_sha),
            "_links": {
                "self": {"href": url}, "html": {"href": html}, "issue": {"href": issue_url},
                "comments": {"href": f"{issue_url}/comments"}, "review_comments": {"href": f"{url}/comments"},
                "review_comment": {"href": f"{api}/repos/{r.full_name}/pulls/comments{{/number}}"},
                "commits": {"href": f"{url}/commits"}, "statuses": {"href": statuses},
            },
            "author_association": self._association(r, pr.user), "auto_merge": None, "draft": pr.draft,
        }
        if full:
            files = self._diff_stats(r, pr)
            mb = self._merge_base(r, pr)
            commits = 0
            if mb and pr.head_sha != ZERO_SHA:
                commits = int(self._git(r, "rev-list", "--count", f"{mb}..{pr.head_sha}", check=False).strip() or 0)
            mergeable: bool | None = None
            state = "unknown"
            if pr.state == "open" and pr.base_sha != ZERO_SHA and pr.head_sha != ZERO_SHA:
                ok = subprocess.run(
                    ["git", "merge-tree", "--write-tree", pr.base_sha, pr.head_sha], cwd=r.bare, capture_output=True,
                ).returncode == 0
                mergeable, state = ok, ("clean" if ok else "dirty")
                if pr.draft:
                    state = "draft"
            out.update({
                "merged": pr.merged, "mergeable": mergeable, "rebaseable": mergeable, "mergeable_state": state,
                "merged_by": self._user_json(pr.merged_by) if pr.merged_by else None,
                "comments": sum(1 for c in r.comments.values() if c.issue_number == pr.number),
                "review_comments": 0, "maintainer_can_modify": pr.maintainer_can_modify, "commits": commits,
                "additions": sum(f["additions"] for f in files), "deletions": sum(f["deletions"] for f in files),
                "changed_files": len(files),
            })
        return out

    def _association(self, r: Repo, login: str) -> str:
        if login == r.owner:
            return "OWNER"
        perm = r.grants.get(login)
        if perm in ("write", "maintain", "admin"):
            return "COLLABORATOR"
        if login.endswith("[bot]"):
            return "NONE"
        return "CONTRIBUTOR" if perm else "NONE"

    def _reactions_rollup(self, r: Repo, c: Comment) -> dict:
        counts = {k: sum(1 for x in c.reactions if x.content == k) for k in REACTIONS}
        return {"url": f"{self.api_url}/repos/{r.full_name}/issues/comments/{c.id}/reactions",
                "total_count": len(c.reactions), **counts}

    def _comment_json(self, r: Repo, c: Comment) -> dict:
        api = self.api_url
        kind = "pull" if c.issue_number in r.prs else "issues"
        app = self.apps.get(c.app_id) if c.app_id else None
        return {
            "id": c.id, "node_id": _node_id("IssueComment", c.id),
            "url": f"{api}/repos/{r.full_name}/issues/comments/{c.id}",
            "html_url": f"{self.web_url}/{r.full_name}/{kind}/{c.issue_number}#issuecomment-{c.id}",
            "body": c.body, "user": self._user_json(c.user), "created_at": _iso(c.created_at),
            "updated_at": _iso(c.updated_at), "issue_url": f"{api}/repos/{r.full_name}/issues/{c.issue_number}",
            "author_association": self._association(r, c.user), "reactions": self._reactions_rollup(r, c),
            "performed_via_github_app": self._app_json(app) if app else None,
        }

    def _app_json(self, app: App) -> dict:
        return {
            "id": app.id, "slug": app.slug, "node_id": _node_id("Integration", app.id), "client_id": f"Iv1.{app.id:016x}",
            "owner": self._user_json(app.owner), "name": app.name, "description": None,
            "external_url": f"{self.web_url}/apps/{app.slug}", "html_url": f"{self.web_url}/apps/{app.slug}",
            "created_at": _iso(app.created_at), "updated_at": _iso(app.created_at),
            "permissions": {"contents": "write", "pull_requests": "write", "issues": "write", "checks": "write",
                            "statuses": "write", "metadata": "read"},
            "events": ["pull_request", "push", "issue_comment"],
            "installations_count": sum(1 for i in self.installations.values() if i.app_id == app.id),
        }

    def _installation_json(self, inst: Installation) -> dict:
        app = self.apps[inst.app_id]
        account = self.add_user(inst.account)
        return {
            "id": inst.id, "account": self._user_json(inst.account),
            "repository_selection": "all" if inst.repos is None else "selected",
            "access_tokens_url": f"{self.api_url}/app/installations/{inst.id}/access_tokens",
            "repositories_url": f"{self.api_url}/installation/repositories",
            "html_url": f"{self.web_url}/organizations/{inst.account}/settings/installations/{inst.id}",
            "app_id": app.id, "app_slug": app.slug, "client_id": f"Iv1.{app.id:016x}", "target_id": account.id,
            "target_type": "Organization" if account.type == "Organization" else "User",
            "permissions": {"contents": "write", "pull_requests": "write", "issues": "write", "checks": "write",
                            "statuses": "write", "metadata": "read"},
            "events": ["pull_request", "push", "issue_comment"], "created_at": _iso(inst.created_at),
            "updated_at": _iso(inst.created_at), "single_file_name": None, "has_multiple_single_files": False,
            "single_file_paths": [], "suspended_by": None, "suspended_at": None,
        }

    def _issue_json(self, r: Repo, number: int) -> dict:
        api = self.api_url
        url = f"{api}/repos/{r.full_name}/issues/{number}"
        if number in r.prs:
            pr = self._refresh(r, r.prs[number])
            title, body, user, state = pr.title, pr.body, pr.user, pr.state
            created, updated, closed, ident = pr.created_at, pr.updated_at, pr.closed_at, pr.id
            html = f"{self.web_url}/{r.full_name}/pull/{number}"
            extra = {"pull_request": {
                "url": f"{api}/repos/{r.full_name}/pulls/{number}", "html_url": html,
                "diff_url": f"{html}.diff", "patch_url": f"{html}.patch", "merged_at": _iso(pr.merged_at),
            }, "draft": pr.draft}
            state_reason = "completed" if pr.merged else None
        else:
            issue = r.issues[number]
            title, body, user, state = issue.title, issue.body, issue.user, issue.state
            created, updated, closed, ident = issue.created_at, issue.updated_at, issue.closed_at, issue.id
            html = f"{self.web_url}/{r.full_name}/issues/{number}"
            extra = {}
            state_reason = None
        n_comments = sum(1 for c in r.comments.values() if c.issue_number == number)
        return {
            "id": ident, "node_id": _node_id("Issue", ident), "url": url, "repository_url": f"{api}/repos/{r.full_name}",
            "labels_url": f"{url}/labels{{/name}}", "comments_url": f"{url}/comments", "events_url": f"{url}/events",
            "html_url": html, "number": number, "state": state, "state_reason": state_reason, "title": title,
            "body": body, "user": self._user_json(user), "labels": [], "assignee": None, "assignees": [],
            "milestone": None, "locked": False, "active_lock_reason": None, "comments": n_comments,
            "closed_at": _iso(closed), "created_at": _iso(created), "updated_at": _iso(updated),
            "closed_by": None, "author_association": self._association(r, user),
            "reactions": {"url": f"{url}/reactions", "total_count": 0, **{k: 0 for k in REACTIONS}},
            **extra,
        }

    # ------------------------------------------------------------------ pagination
    def _paginate(self, c: Call, items: list[Any]) -> tuple[list[Any], dict[str, str]]:
        per_page = int(c.q("per_page", 30))
        per_page = max(1, min(per_page, 100))
        page = max(1, int(c.q("page", 1)))
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page: page * per_page]
        links = []

        def link(p: int, rel: str) -> str:
            q = [(k, v) for k, v in urllib.parse.parse_qsl(c.raw_query, keep_blank_values=True) if k != "page"]
            q.append(("page", str(p)))
            return f'<{self.web_url}{c.path}?{urllib.parse.urlencode(q)}>; rel="{rel}"'

        if page > 1:
            links += [link(page - 1, "prev"), link(1, "first")]
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        return chunk, ({"Link": ", ".join(links)} if links else {})

    # ------------------------------------------------------------------ operations
    # Each _op_<operationId with non-word chars as "_"> gets a Call and returns (status, json[, headers]).

    def _op_users_get_authenticated(self, c: Call):
        if c.token.kind == "installation":
            raise ApiError(403, "Resource not accessible by integration")
        u = self.users[c.token.login]
        out = self._user_json(u.login)
        out.update({
            "name": u.name, "company": None, "blog": "", "location": None, "email": u.email, "hireable": None,
            "bio": None, "twitter_username": None, "public_repos": 0, "public_gists": 0, "followers": 0,
            "following": 0, "created_at": "2020-01-01T00:00:00Z", "updated_at": "2020-01-01T00:00:00Z",
            "private_gists": 0, "total_private_repos": 0, "owned_private_repos": 0, "disk_usage": 0,
            "collaborators": 0, "two_factor_authentication": True, "user_view_type": "private",
            "plan": {"name": "free", "space": 976562499, "private_repos": 10000, "collaborators": 0},
        })
        return 200, out

    def _op_apps_get_authenticated(self, c: Call):
        return 200, self._app_json(c.app)

    def _op_apps_get_repo_installation(self, c: Call):
        for inst in self.installations.values():
            if inst.app_id == c.app.id and (
                (inst.repos is None and inst.account == c.repo.owner) or (inst.repos and c.repo.full_name in inst.repos)
            ):
                return 200, self._installation_json(inst)
        raise ApiError(404, "Not Found")

    def _op_apps_get_installation(self, c: Call):
        inst = self.installations.get(int(c.params["installation_id"]))
        if inst is None or inst.app_id != c.app.id:
            raise ApiError(404, "Not Found")
        return 200, self._installation_json(inst)

    def _op_apps_create_installation_access_token(self, c: Call):
        inst = self.installations.get(int(c.params["installation_id"]))
        if inst is None or inst.app_id != c.app.id:
            raise ApiError(404, "Not Found")
        token = self.issue_installation_token(inst.id)
        names = c.b("repositories")
        ids = c.b("repository_ids")
        if names or ids:
            allowed = [r for r in self.repos.values() if self._token_sees(self.tokens[token], r)]
            chosen = [r.name for r in allowed if (names and r.name in names) or (ids and r.id in ids)]
            if len(chosen) != len(set(names or [])) + len(set(ids or [])):
                raise _validation_failed("Installation", "repositories", "invalid")
            self.tokens[token].repositories = chosen
        out = {
            "token": token, "expires_at": _iso(self.tokens[token].expires_at),
            "permissions": c.b("permissions") or self._installation_json(inst)["permissions"],
            "repository_selection": "all" if inst.repos is None and not (names or ids) else "selected",
        }
        if names or ids:
            out["repositories"] = [self._repo_json(self.repos[f"{inst.account}/{n}"]) for n in chosen]
        return 201, out

    def _op_rate_limit_get(self, c: Call):
        reset = int(time.time()) + 3600
        core = {"limit": 5000, "remaining": 4999, "reset": reset, "used": 1}
        return 200, {"resources": {"core": core, "search": dict(core, limit=30, remaining=30, used=0),
                                   "graphql": dict(core)}, "rate": core}

    def _op_repos_get(self, c: Call):
        return 200, self._repo_json(c.repo, c.token)

    def _op_repos_get_collaborator_permission_level(self, c: Call):
        login = c.params["username"]
        if login not in self.users:
            raise ApiError(404, "Not Found")
        perm = self._permission(c.repo, login)
        legacy = {"maintain": "write", "triage": "read"}.get(perm, perm)
        rank = PERMISSION_LEVELS.index(perm)
        user = self._user_json(login)
        user.update({
            "role_name": perm if perm != "none" else "read",
            "permissions": {"admin": rank >= 5, "maintain": rank >= 4, "push": rank >= 3, "triage": rank >= 2, "pull": rank >= 1},
        })
        return 200, {"permission": legacy, "role_name": perm, "user": user}

    # -- branches and refs
    def _op_repos_list_branches(self, c: Call):
        items = [
            {"name": name, "commit": {"sha": sha, "url": f"{self.api_url}/repos/{c.repo.full_name}/commits/{sha}"},
             "protected": False}
            for name, sha in sorted(self.branches(c.repo.full_name).items())
        ]
        page, headers = self._paginate(c, items)
        return 200, page, headers

    def _commit_json(self, r: Repo, sha: str) -> dict:
        fmt = "%H%x00%T%x00%P%x00%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%B"
        parts = self._git(r, "show", "-s", f"--format={fmt}", sha).split("\0")
        h, tree, parents, an, ae, ad, cn, ce, cd, msg = parts[:10]
        api = f"{self.api_url}/repos/{r.full_name}"
        return {
            "sha": h, "node_id": _node_id("Commit", int(h[:8], 16)), "url": f"{api}/commits/{h}",
            "html_url": f"{self.web_url}/{r.full_name}/commit/{h}", "comments_url": f"{api}/commits/{h}/comments",
            "commit": {
                "url": f"{api}/git/commits/{h}", "message": msg.rstrip("\n"), "comment_count": 0,
                "author": {"name": an, "email": ae, "date": ad}, "committer": {"name": cn, "email": ce, "date": cd},
                "tree": {"sha": tree, "url": f"{api}/git/trees/{tree}"},
                "verification": {"verified": False, "reason": "unsigned", "signature": None, "payload": None, "verified_at": None},
            },
            "author": None, "committer": None,
            "parents": [{"sha": p, "url": f"{api}/commits/{p}", "html_url": f"{self.web_url}/{r.full_name}/commit/{p}"}
                        for p in parents.split()],
        }

    def _op_repos_get_branch(self, c: Call):
        name = c.params["branch"]
        sha = self.branch_sha(c.repo.full_name, name)
        if sha is None:
            raise ApiError(404, "Branch not found")
        url = f"{self.api_url}/repos/{c.repo.full_name}/branches/{urllib.parse.quote(name)}"
        return 200, {
            "name": name, "commit": self._commit_json(c.repo, sha), "protected": False,
            "protection": {"enabled": False, "required_status_checks": {"enforcement_level": "off", "contexts": [], "checks": []}},
            "protection_url": f"{url}/protection",
            "_links": {"self": url, "html": f"{self.web_url}/{c.repo.full_name}/tree/{name}"},
        }

    def _op_git_delete_ref(self, c: Call):
        # No push_lock here: handlers run under self._lock, and a push holds push_lock while it records
        # itself under self._lock. "update-ref -d REF OLD" is atomic on its own.
        ref = "refs/" + c.params["ref"]
        r = c.repo
        old = self._git(r, "rev-parse", "--verify", "--quiet", ref, check=False).strip()
        if not old or not self._git_ok(r, "update-ref", "-d", ref, old):
            raise ApiError(422, "Reference does not exist")
        self._after_push(r, c.login or "", [RefUpdate(ref, old, ZERO_SHA)], via="api")
        return 204, None

    # -- pulls
    def _op_pulls_list(self, c: Call):
        r = c.repo
        state = c.q("state", "open")
        prs = [self._refresh(r, p) for p in r.prs.values()]
        if state != "all":
            prs = [p for p in prs if p.state == state]
        head = c.q("head")
        if head and ":" in head:
            # GitHub needs "owner:branch"; a bare branch name is silently ignored (a classic client bug).
            owner, _, branch = head.partition(":")
            prs = [p for p in prs if owner == r.owner and p.head == branch]
        base = c.q("base")
        if base:
            prs = [p for p in prs if p.base == base]
        sort = c.q("sort", "created")
        direction = c.q("direction", "desc" if sort == "created" else "asc")
        key = {"created": lambda p: (p.created_at, p.number), "updated": lambda p: (p.updated_at, p.number),
               "popularity": lambda p: (sum(1 for x in r.comments.values() if x.issue_number == p.number), p.number),
               "long-running": lambda p: (p.created_at, p.number)}[sort]
        prs.sort(key=key, reverse=direction == "desc")
        page, headers = self._paginate(c, prs)
        return 200, [self._pr_json(r, p, full=False) for p in page], headers

    def _check_body_len(self, resource: str, body: Any) -> None:
        if isinstance(body, str) and len(body) > BODY_LIMIT:
            raise _validation_failed(resource, "body", "custom", f"body is too long (maximum is {BODY_LIMIT} characters)")

    def _op_pulls_create(self, c: Call):
        r = c.repo
        head = c.b("head")
        base = c.b("base")
        title = c.b("title")
        if c.b("issue") is not None:
            raise ApiError(422, "The stand-in does not convert issues to pull requests")
        if not title:
            raise _validation_failed("PullRequest", "title", "missing_field")
        self._check_body_len("PullRequest", c.b("body"))
        owner, sep, branch = head.partition(":")
        if not sep:
            owner, branch = r.owner, head
        if owner != r.owner:
            raise _validation_failed("PullRequest", "head", "invalid")
        head_sha = self.branch_sha(r.full_name, branch)
        base_sha = self.branch_sha(r.full_name, base)
        if base_sha is None:
            raise _validation_failed("PullRequest", "base", "invalid")
        if head_sha is None:
            raise _validation_failed("PullRequest", "head", "invalid")
        for p in r.prs.values():
            self._refresh(r, p)
            if p.state == "open" and p.head == branch and p.base == base:
                raise _validation_failed("PullRequest", None, "custom", f"A pull request already exists for {r.owner}:{branch}.")
        if self._git_ok(r, "merge-base", "--is-ancestor", head_sha, base_sha):
            raise _validation_failed("PullRequest", None, "custom", f"No commits between {base} and {branch}")
        pr = PullRequest(
            r.next_number, self._next_id(), title, c.b("body"), branch, base, c.login or "ghost",
            draft=bool(c.b("draft", False)), maintainer_can_modify=bool(c.b("maintainer_can_modify", False)),
            head_sha=head_sha, base_sha=base_sha,
        )
        r.next_number += 1
        r.prs[pr.number] = pr
        out = self._pr_json(r, pr, full=True)
        return 201, out, {"Location": out["url"]}

    def _get_pr(self, c: Call) -> PullRequest:
        pr = c.repo.prs.get(int(c.params["pull_number"]))
        if pr is None:
            raise ApiError(404, "Not Found")
        return self._refresh(c.repo, pr)

    def _op_pulls_get(self, c: Call):
        return 200, self._pr_json(c.repo, self._get_pr(c), full=True)

    def _op_pulls_update(self, c: Call):
        r, pr = c.repo, self._get_pr(c)
        body = c.body or {}
        if "body" in body:
            self._check_body_len("PullRequest", body["body"])
        if "base" in body:
            if self.branch_sha(r.full_name, body["base"]) is None:
                raise _validation_failed("PullRequest", "base", "invalid")
        if body.get("state") == "open" and pr.state == "closed":
            if pr.merged or self.branch_sha(r.full_name, pr.head) is None:
                raise _validation_failed("PullRequest", "state", "invalid", "state cannot be changed. The branch has been deleted or the pull request was merged.")
            if any(p.state == "open" and p.head == pr.head and p.base == pr.base and p is not pr for p in r.prs.values()):
                raise _validation_failed("PullRequest", "state", "custom", f"A pull request already exists for {r.owner}:{pr.head}.")
            pr.state, pr.closed_at, pr.frozen_base = "open", None, None
        elif body.get("state") == "closed" and pr.state == "open":
            pr.frozen_base = self._merge_base(r, pr)
            pr.state, pr.closed_at = "closed", _now()
        for key in ("title", "body", "base", "maintainer_can_modify"):
            if key in body:
                setattr(pr, key, body[key])
        pr.updated_at = _now()
        return 200, self._pr_json(r, pr, full=True)

    def _op_pulls_request_reviewers(self, c: Call):
        """As GitHub: only collaborators may be asked, never the PR's author; one bad login fails the call."""
        r, pr = c.repo, self._get_pr(c)
        logins = list((c.body or {}).get("reviewers") or [])
        for login in logins:
            if login == pr.user:
                raise _validation_failed("PullRequest", None, "custom",
                                         "Review cannot be requested from pull request author.")
            if login not in r.grants:
                raise _validation_failed("PullRequest", None, "custom",
                                         "Reviews may only be requested from collaborators. One or more of the "
                                         f"users or teams you specified is not a collaborator of the {r.full_name} "
                                         "repository.")
        pr.requested_reviewers += [u for u in logins if u not in pr.requested_reviewers]
        pr.updated_at = _now()
        return 201, self._pr_json(r, pr, full=False)

    def _op_pulls_list_files(self, c: Call):
        pr = self._get_pr(c)
        page, headers = self._paginate(c, self._diff_stats(c.repo, pr))
        return 200, page, headers

    def _op_pulls_check_if_merged(self, c: Call):
        pr = self._get_pr(c)
        if not pr.merged:
            raise ApiError(404, "Not Found")
        return 204, None

    def _op_pulls_merge(self, c: Call):
        pr = self._get_pr(c)
        if c.b("sha") and c.b("sha") != pr.head_sha:
            raise ApiError(409, "Head branch was modified. Review and try the merge again.")
        method = c.b("merge_method", "merge")
        if method == "rebase":
            method = "squash"  # close enough for a stand-in: one commit on base, PR marked merged
        sha = self.merge_pr(c.repo.full_name, pr.number, by=c.login or "ghost", method=method,
                            title=c.b("commit_title"), message=c.b("commit_message"))
        return 200, {"sha": sha, "merged": True, "message": "Pull Request successfully merged"}

    # -- issues and comments
    def _op_issues_get(self, c: Call):
        n = int(c.params["issue_number"])
        if n not in c.repo.prs and n not in c.repo.issues:
            raise ApiError(404, "Not Found")
        return 200, self._issue_json(c.repo, n)

    def _op_issues_list_comments(self, c: Call):
        r = c.repo
        n = int(c.params["issue_number"])
        if n not in r.prs and n not in r.issues:
            raise ApiError(404, "Not Found")
        items = self.comments(r.full_name, n)
        since = c.q("since")
        if since:
            cutoff = datetime.fromisoformat(since.replace("Z", "+00:00"))
            items = [x for x in items if x.updated_at >= cutoff]
        page, headers = self._paginate(c, items)
        return 200, [self._comment_json(r, x) for x in page], headers

    def _op_issues_create_comment(self, c: Call):
        r = c.repo
        n = int(c.params["issue_number"])
        if n not in r.prs and n not in r.issues:
            raise ApiError(404, "Not Found")
        self._check_body_len("IssueComment", c.b("body"))
        app_id = self.installations[c.token.installation_id].app_id if c.token and c.token.kind == "installation" else None
        comment = Comment(self._next_id(), n, c.b("body"), c.login or "ghost", app_id)
        r.comments[comment.id] = comment
        out = self._comment_json(r, comment)
        return 201, out, {"Location": out["url"]}

    def _get_comment(self, c: Call) -> Comment:
        comment = c.repo.comments.get(int(c.params["comment_id"]))
        if comment is None:
            raise ApiError(404, "Not Found")
        return comment

    def _op_issues_get_comment(self, c: Call):
        return 200, self._comment_json(c.repo, self._get_comment(c))

    def _op_issues_update_comment(self, c: Call):
        comment = self._get_comment(c)
        self._check_body_len("IssueComment", c.b("body"))
        comment.body = c.b("body")
        comment.updated_at = _now()
        return 200, self._comment_json(c.repo, comment)

    def _op_issues_delete_comment(self, c: Call):
        comment = self._get_comment(c)
        del c.repo.comments[comment.id]
        return 204, None

    def _reaction_json(self, x: Reaction) -> dict:
        return {"id": x.id, "node_id": _node_id("Reaction", x.id), "user": self._user_json(x.user),
                "content": x.content, "created_at": _iso(x.created_at)}

    def _op_reactions_create_for_issue_comment(self, c: Call):
        comment = self._get_comment(c)
        content, login = c.b("content"), c.login or "ghost"
        for x in comment.reactions:
            if x.user == login and x.content == content:
                return 200, self._reaction_json(x)
        x = Reaction(self._next_id(), content, login)
        comment.reactions.append(x)
        return 201, self._reaction_json(x)

    def _op_reactions_list_for_issue_comment(self, c: Call):
        comment = self._get_comment(c)
        items = [x for x in comment.reactions if not c.q("content") or x.content == c.q("content")]
        page, headers = self._paginate(c, items)
        return 200, [self._reaction_json(x) for x in page], headers

    # -- statuses and checks
    def _resolve_commit(self, r: Repo, ref: str) -> str:
        sha = self._git(r, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False).strip()
        if not sha:
            raise _validation_failed("Status", "sha", "invalid", f"No commit found for SHA: {ref}")
        return sha

    def _op_repos_create_commit_status(self, c: Call):
        r = c.repo
        sha = self._resolve_commit(r, c.params["sha"])
        ident = self._next_id()
        now = _iso(_now())
        status = {
            "url": f"{self.api_url}/repos/{r.full_name}/statuses/{sha}", "avatar_url": None, "id": ident,
            "node_id": _node_id("StatusContext", ident), "state": c.b("state"), "description": c.b("description"),
            "target_url": c.b("target_url"), "context": c.b("context", "default"), "created_at": now,
            "updated_at": now, "creator": self._user_json(c.login or "ghost"), "sha": sha,
        }
        r.statuses.append(status)
        out = {k: v for k, v in status.items() if k != "sha"}
        return 201, out, {"Location": out["url"]}

    def _op_repos_list_commit_statuses_for_ref(self, c: Call):
        sha = self._resolve_commit(c.repo, c.params["ref"])
        items = [{k: v for k, v in s.items() if k != "sha"} for s in reversed(c.repo.statuses) if s["sha"] == sha]
        page, headers = self._paginate(c, items)
        return 200, page, headers

    def _op_repos_get_combined_status_for_ref(self, c: Call):
        r = c.repo
        sha = self._resolve_commit(r, c.params["ref"])
        latest: dict[str, dict] = {}
        for s in r.statuses:
            if s["sha"] == sha:
                latest[s["context"]] = s
        states = [s["state"] for s in latest.values()]
        state = ("failure" if any(s in ("failure", "error") for s in states)
                 else "pending" if not states or "pending" in states else "success")
        return 200, {
            "state": state, "statuses": [
                {k: v for k, v in s.items() if k not in ("sha", "creator")} | {"required": False}
                for s in latest.values()
            ],
            "sha": sha, "total_count": len(latest), "repository": self._repo_json(r),
            "commit_url": f"{self.api_url}/repos/{r.full_name}/commits/{sha}",
            "url": f"{self.api_url}/repos/{r.full_name}/commits/{sha}/status",
        }

    def _check_run_json(self, r: Repo, run: dict) -> dict:
        app = self.apps[run["app_id"]]
        url = f"{self.api_url}/repos/{r.full_name}/check-runs/{run['id']}"
        prs = []
        for pr in r.prs.values():
            self._refresh(r, pr)
            if pr.state == "open" and pr.head_sha == run["head_sha"]:
                side = lambda b, s: {"ref": b, "sha": s, "repo": {"id": r.id, "url": f"{self.api_url}/repos/{r.full_name}", "name": r.name}}  # noqa: E731
                prs.append({"id": pr.id, "number": pr.number, "url": f"{self.api_url}/repos/{r.full_name}/pulls/{pr.number}",
                            "head": side(pr.head, pr.head_sha), "base": side(pr.base, pr.base_sha)})
        out = dict(run["fields"])
        output = out.pop("output", None) or {}
        out.update({
            "id": run["id"], "node_id": _node_id("CheckRun", run["id"]), "head_sha": run["head_sha"],
            "url": url, "html_url": f"{self.web_url}/{r.full_name}/runs/{run['id']}",
            "details_url": out.get("details_url") or f"{self.web_url}/{r.full_name}/runs/{run['id']}",
            "external_id": out.get("external_id", ""),
            "status": out.get("status", "queued"), "conclusion": out.get("conclusion"),
            "started_at": out.get("started_at"), "completed_at": out.get("completed_at"),
            "output": {"title": output.get("title"), "summary": output.get("summary"), "text": output.get("text"),
                       "annotations_count": len(output.get("annotations") or []),
                       "annotations_url": f"{url}/annotations"},
            "check_suite": {"id": run["suite_id"]}, "app": self._app_json(app), "pull_requests": prs,
        })
        out.pop("actions", None)
        out.pop("images", None)
        return out

    def _op_checks_create(self, c: Call):
        if c.token is None or c.token.kind != "installation":
            raise ApiError(403, "You must authenticate via a GitHub App.")
        r = c.repo
        sha = self._resolve_commit(r, c.b("head_sha"))
        fields_ = {k: v for k, v in (c.body or {}).items() if k != "head_sha"}
        if fields_.get("conclusion") and "status" not in fields_:
            fields_["status"] = "completed"
        if fields_.get("status") == "completed" and not fields_.get("completed_at"):
            fields_["completed_at"] = _iso(_now())
        if fields_.get("status") in ("in_progress", "completed") and not fields_.get("started_at"):
            fields_["started_at"] = _iso(_now())
        run = {"id": self._next_id(), "suite_id": self._next_id(), "head_sha": sha, "fields": fields_,
               "app_id": self.installations[c.token.installation_id].app_id}
        r.check_runs[run["id"]] = run
        out = self._check_run_json(r, run)
        return 201, out, {"Location": out["url"]}

    def _get_check_run(self, c: Call) -> dict:
        run = c.repo.check_runs.get(int(c.params["check_run_id"]))
        if run is None:
            raise ApiError(404, "Not Found")
        return run

    def _op_checks_get(self, c: Call):
        return 200, self._check_run_json(c.repo, self._get_check_run(c))

    def _op_checks_update(self, c: Call):
        if c.token is None or c.token.kind != "installation":
            raise ApiError(403, "You must authenticate via a GitHub App.")
        run = self._get_check_run(c)
        if self.installations[c.token.installation_id].app_id != run["app_id"]:
            raise ApiError(403, "Invalid app_id `%d` - check run can only be modified by the GitHub App that created it." % self.installations[c.token.installation_id].app_id)
        run["fields"].update(copy.deepcopy(c.body or {}))
        f = run["fields"]
        if f.get("conclusion") and f.get("status") != "completed":
            f["status"] = "completed"
        if f.get("status") == "completed" and not f.get("completed_at"):
            f["completed_at"] = _iso(_now())
        return 200, self._check_run_json(c.repo, run)

    def _op_checks_list_for_ref(self, c: Call):
        r = c.repo
        sha = self._resolve_commit(r, c.params["ref"])
        runs = [self._check_run_json(r, run) for run in r.check_runs.values() if run["head_sha"] == sha]
        if c.q("check_name"):
            runs = [x for x in runs if x.get("name") == c.q("check_name")]
        if c.q("status"):
            runs = [x for x in runs if x["status"] == c.q("status")]
        page, headers = self._paginate(c, runs)
        return 200, {"total_count": len(runs), "check_runs": page}, headers

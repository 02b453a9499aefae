"""GitHub as a forge: pull requests, comments, permissions and reactions through PyGithub.

Two ways to authenticate:

* :meth:`GitHubForge.from_token` — a personal access token (or any token that
  GitHub accepts as ``Authorization: token …``). Good for trying layersync out.
* :meth:`GitHubForge.from_app` — a GitHub App: the App's private key signs a
  short-lived JWT, which buys an *installation access token* (one hour) per
  installation. Tokens are renewed :data:`TOKEN_REFRESH_MARGIN` before they
  expire, so a token handed to git (:meth:`GitHubForge.git_env`) outlives a
  clone or push. Without an installation id, the installation of each repo is
  looked up (``GET /repos/{owner}/{repo}/installation``) and cached.

Failures are mapped onto the forge-neutral exceptions of :mod:`bot.forge.base`:
404 → :class:`NotFoundError`; 5xx, 429, rate-limit 403s and network errors →
:class:`TransientForgeError` with ``retry_after`` when GitHub gave a wait; any
other 4xx → :class:`ForgeError` carrying GitHub's message. PyGithub's own
retrying is switched off (``retry=None``): the job worker owns retries, and a
worker thread sleeping for an hour inside an HTTP client is a stuck worker.

Secrets — the token, installation tokens, the private key — never appear in
an exception message, a ``repr``, a log line or :meth:`remote_url`: every
message built here is scrubbed of them, and git gets its credentials through
the environment (an ``http.extraHeader`` in ``GIT_CONFIG_*`` variables).
"""

from __future__ import annotations

import base64
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import requests
from github import Auth, Consts, Github, GithubException, GithubIntegration
from github.GithubException import RateLimitExceededException
from github.Requester import Requester

from bot import redact
from bot.forge.base import (
    BODY_LIMIT,
    PERMISSION_LEVELS,
    PR_STATES,
    Comment,
    ForgeError,
    NotFoundError,
    PullRequest,
    TransientForgeError,
    body_with_marker,
    check_reaction,
    check_status,
    check_title,
    truncate_body,
)

__all__ = [
    "DEFAULT_API_URL",
    "GitHubForge",
    "TOKEN_REFRESH_MARGIN",
]

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.github.com"

#: Seconds before an HTTP request to GitHub is abandoned (then retried by the worker).
DEFAULT_TIMEOUT = 20

#: Renew an installation token when it has less than this left. PyGithub's
#: own AppInstallationAuth renews 20 s before expiry, which is enough for one
#: API call but not for a git clone or push of a large repo that starts with
#: the token in hand; five minutes is.
TOKEN_REFRESH_MARGIN = timedelta(minutes=5)

#: GitHub's advice when a secondary rate limit comes with no wait in the
#: headers: "wait for at least one minute before retrying".
SECONDARY_RATE_LIMIT_WAIT = 60.0

_REPO_RE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")

#: Token shapes GitHub issues (classic/fine-grained PATs, OAuth, installation,
#: user-to-server, refresh). Scrubbed from every message even if we never saw
#: the token ourselves (say, one echoed back in an error body).
_TOKEN_RE = re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9_]{16,}|github_pat_[A-Za-z0-9_]{20,})")
_PEM_RE = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.DOTALL)

#: Longest GitHub message quoted in an exception (after scrubbing, so a cut never splits a secret).
_MESSAGE_LIMIT = 1000

#: role_name values older GitHub Enterprise servers use for the built-in roles.
_ROLE_ALIASES = {"pull": "read", "push": "write"}

_T = TypeVar("_T")


class _InstallationToken(Auth.Auth):
    """An installation access token that renews itself :data:`TOKEN_REFRESH_MARGIN` before it expires.

    Thread-safe: the webhook worker may use one forge from several threads,
    and only one of them should mint the next token.
    """

    def __init__(
        self,
        integration: GithubIntegration,
        installation_id: int,
        on_token: Callable[[str], None],
        margin: timedelta = TOKEN_REFRESH_MARGIN,
    ) -> None:
        self._integration = integration
        self.installation_id = installation_id
        self._on_token = on_token
        self._margin = margin
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at: datetime | None = None

    def __repr__(self) -> str:
        return f"_InstallationToken(installation_id={self.installation_id})"

    @property
    def token_type(self) -> str:
        return "token"

    @property
    def token(self) -> str:
        with self._lock:
            now = datetime.now(timezone.utc)
            if self._token is None or self._expires_at is None or self._expires_at - self._margin <= now:
                grant = self._integration.get_access_token(self.installation_id)  # POST /app/installations/{id}/access_tokens
                expires_at = grant.expires_at
                if expires_at is None:  # never seen, but then assume GitHub's documented hour
                    expires_at = now + timedelta(hours=1)
                elif expires_at.tzinfo is None:
                    expires_at = expires_at.replace(tzinfo=timezone.utc)
                self._token, self._expires_at = grant.token, expires_at
                self._on_token(grant.token)
                log.debug("minted an installation token for installation %s, valid until %s",
                          self.installation_id, expires_at.isoformat())
            return self._token

    @property
    def _masked_token(self) -> str:
        return "token (installation token removed)"


class GitHubForge:
    """:class:`~bot.forge.base.Forge` on GitHub (or GitHub Enterprise Server via ``base_url``).

    ``repo`` strings are ``owner/name``; PR URLs are the PRs' ``html_url``.
    Build one with :meth:`from_token`, :meth:`from_app` or :meth:`from_env`.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        app_id: int | str | None = None,
        private_key: str | None = None,
        installation_id: int | None = None,
        base_url: str = DEFAULT_API_URL,
        bot_login: str | None = None,
        timeout: int = DEFAULT_TIMEOUT,
        seconds_between_requests: float | None = Consts.DEFAULT_SECONDS_BETWEEN_REQUESTS,
        seconds_between_writes: float | None = Consts.DEFAULT_SECONDS_BETWEEN_WRITES,
        body_limit: int = BODY_LIMIT,
    ) -> None:
        """Prefer the ``from_*`` constructors; exactly one of ``token`` or ``app_id`` + ``private_key``.

        ``bot_login`` is the login whose comments :meth:`upsert_comment` may
        edit; by default it is asked of GitHub (``GET /user`` for a token,
        ``<app slug>[bot]`` from ``GET /app`` for an App). The two
        ``seconds_between_*`` throttles are PyGithub's, following GitHub's
        advice for avoiding secondary rate limits; tests set them to None.
        """
        if (token is None) == (app_id is None):
            raise ValueError("GitHubForge needs a token or an app_id with its private key (exactly one of the two)")
        if app_id is not None and not private_key:
            raise ValueError("a GitHub App needs its private key")
        if token is not None and not token.strip():
            raise ValueError("the GitHub token is empty")
        self.base_url = base_url.rstrip("/")
        self.body_limit = body_limit
        self._secrets: set[str] = set()
        self._lock = threading.Lock()
        self._bot_login = bot_login
        self._bot_login_known = bot_login is not None
        self._clone_urls: dict[str, str] = {}
        self._client_kwargs: dict[str, Any] = {
            "base_url": self.base_url,
            "timeout": timeout,
            "user_agent": "layersync",
            "per_page": 100,
            "retry": None,  # the job worker retries (TransientForgeError); PyGithub must not sleep on its own
            "seconds_between_requests": seconds_between_requests,
            "seconds_between_writes": seconds_between_writes,
            "lazy": True,  # no GET for objects we only use as URL holders (repo, PR, issue)
        }

        self._token_client: Github | None = None
        self._token_auth: Auth.Token | None = None
        self._integration: GithubIntegration | None = None
        self.app_id: str | None = None
        self._fixed_installation = installation_id
        self._installation_ids: dict[str, int] = {}
        self._installations: dict[int, tuple[Github, _InstallationToken]] = {}

        if token is not None:
            token = token.strip()
            self._remember_secret(token)
            self._token_auth = Auth.Token(token)
            self._token_client = Github(auth=self._token_auth, **self._client_kwargs)
        else:
            assert private_key is not None
            if "\\n" in private_key and "\n" not in private_key.strip():
                private_key = private_key.replace("\\n", "\n")  # a PEM squeezed onto one line by an .env file
            self.app_id = str(app_id)
            self._remember_secret(private_key.strip())
            app_auth = Auth.AppAuth(self.app_id, private_key)
            try:  # fail at start-up, not at the first webhook, on a key that cannot sign
                app_auth.create_jwt()
            except Exception:
                raise ValueError("the GitHub App private key is not a usable PEM RSA private key") from None
            integration_kwargs = {k: v for k, v in self._client_kwargs.items() if k != "lazy"}
            self._integration = GithubIntegration(auth=app_auth, **integration_kwargs)

    # -- construction ----------------------------------------------------------

    @classmethod
    def from_token(cls, token: str, base_url: str = DEFAULT_API_URL, **kwargs: Any) -> "GitHubForge":
        """A forge acting as the token's owner."""
        return cls(token=token, base_url=base_url, **kwargs)

    @classmethod
    def from_app(
        cls,
        app_id: int | str,
        private_key_pem: str,
        installation_id: int | None = None,
        base_url: str = DEFAULT_API_URL,
        **kwargs: Any,
    ) -> "GitHubForge":
        """A forge acting as a GitHub App installation (``installation_id``, or each repo's own)."""
        return cls(app_id=app_id, private_key=private_key_pem, installation_id=installation_id,
                   base_url=base_url, **kwargs)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kwargs: Any) -> "GitHubForge":
        """Build from ``LAYERSYNC_GITHUB_*`` variables (see deploy/README.md).

        An App (``LAYERSYNC_GITHUB_APP_ID`` with ``LAYERSYNC_GITHUB_PRIVATE_KEY``
        or ``LAYERSYNC_GITHUB_PRIVATE_KEY_FILE``, optional
        ``LAYERSYNC_GITHUB_INSTALLATION_ID``) wins over
        ``LAYERSYNC_GITHUB_TOKEN``; ``LAYERSYNC_GITHUB_API_URL`` points at a
        GitHub Enterprise Server. Raises ValueError naming what is missing.
        """
        env = os.environ if env is None else env
        base_url = env.get("LAYERSYNC_GITHUB_API_URL") or DEFAULT_API_URL
        if env.get("LAYERSYNC_BOT_LOGIN"):
            kwargs.setdefault("bot_login", env["LAYERSYNC_BOT_LOGIN"])
        app_id = env.get("LAYERSYNC_GITHUB_APP_ID")
        if app_id:
            key = env.get("LAYERSYNC_GITHUB_PRIVATE_KEY")
            key_file = env.get("LAYERSYNC_GITHUB_PRIVATE_KEY_FILE")
            if not key and key_file:
                try:
                    with open(key_file, encoding="utf-8") as fh:
                        key = fh.read()
                except OSError as exc:
                    raise ValueError(f"cannot read LAYERSYNC_GITHUB_PRIVATE_KEY_FILE {key_file!r}: {exc.strerror}") from None
            if not key:
                raise ValueError("LAYERSYNC_GITHUB_APP_ID is set but neither LAYERSYNC_GITHUB_PRIVATE_KEY "
                                 "nor LAYERSYNC_GITHUB_PRIVATE_KEY_FILE is")
            installation = env.get("LAYERSYNC_GITHUB_INSTALLATION_ID")
            try:
                installation_id = int(installation) if installation else None
            except ValueError:
                raise ValueError(f"LAYERSYNC_GITHUB_INSTALLATION_ID must be a number, got {installation!r}") from None
            return cls.from_app(app_id, key, installation_id, base_url, **kwargs)
        token = env.get("LAYERSYNC_GITHUB_TOKEN")
        if token:
            return cls.from_token(token, base_url, **kwargs)
        raise ValueError("no GitHub credentials: set LAYERSYNC_GITHUB_APP_ID and LAYERSYNC_GITHUB_PRIVATE_KEY "
                         "(or _FILE), or LAYERSYNC_GITHUB_TOKEN")

    def __repr__(self) -> str:
        who = f"app_id={self.app_id}" if self.app_id is not None else "token=***"
        return f"GitHubForge({self.base_url!r}, {who})"

    def close(self) -> None:
        """Close pooled HTTP connections."""
        clients = [self._token_client] if self._token_client is not None else []
        clients += [client for client, _ in self._installations.values()]
        for client in clients:
            client.close()
        if self._integration is not None:
            self._integration.close()

    # -- secrets ---------------------------------------------------------------

    def _remember_secret(self, secret: str) -> None:
        """Also registered process-wide: an installation token minted here is as secret as the
        configured one, and may turn up in a git or dbt message posted far from this forge."""
        if not secret:
            return
        with self._lock:
            self._secrets.add(secret)
            self._secrets.add(_basic_credentials(secret))
        redact.register(secret, _basic_credentials(secret))

    def _scrub(self, text: str) -> str:
        """``text`` with every secret this forge (or the process) knows of, and anything shaped like a
        credential, masked."""
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return redact.scrub(_PEM_RE.sub("***", _TOKEN_RE.sub("***", text)))

    # -- clients -----------------------------------------------------------------

    def _client(self, repo: str) -> Github:
        _check_repo(repo)
        if self._token_client is not None:
            return self._token_client
        return self._installation(repo)[0]

    def _installation(self, repo: str) -> tuple[Github, _InstallationToken]:
        installation_id = self._installation_id(repo)
        with self._lock:
            found = self._installations.get(installation_id)
            if found is None:
                assert self._integration is not None
                auth = _InstallationToken(self._integration, installation_id, self._remember_secret)
                found = (Github(auth=auth, **self._client_kwargs), auth)
                self._installations[installation_id] = found
            return found

    def _installation_id(self, repo: str) -> int:
        if self._fixed_installation is not None:
            return self._fixed_installation
        with self._lock:
            cached = self._installation_ids.get(repo)
        if cached is not None:
            return cached
        assert self._integration is not None
        owner, name = repo.split("/", 1)
        try:
            with self._api(f"find the GitHub App installation for {repo}"):
                installation_id = int(self._integration.get_repo_installation(owner, name).id)
        except NotFoundError:
            raise NotFoundError(f"the GitHub App {self.app_id} is not installed on {repo} "
                                "(or the repository does not exist)") from None
        with self._lock:
            self._installation_ids[repo] = installation_id
        return installation_id

    def _repo(self, repo: str) -> Any:
        """A lazy Repository: no request until an attribute that needs one is read."""
        return self._client(repo).get_repo(repo)

    def _requester(self, repo: str) -> Requester:
        return self._client(repo).requester

    # -- errors ------------------------------------------------------------------

    @contextmanager
    def _api(self, what: str) -> Iterator[None]:
        """Translate PyGithub and network failures raised inside into forge errors (scrubbed of secrets)."""
        try:
            yield
        except GithubException as exc:
            raise self._translate(exc, what) from None
        except requests.exceptions.RequestException as exc:
            reason = f"{type(exc).__name__}: {exc}"
            raise TransientForgeError(self._scrub(f"{what}: cannot reach GitHub ({reason})")) from None

    def _translate(self, exc: GithubException, what: str) -> ForgeError:
        status = exc.status
        headers = {str(k).lower(): str(v) for k, v in (exc.headers or {}).items()}
        message = self._scrub(_github_message(exc))
        if len(message) > _MESSAGE_LIMIT:
            message = message[:_MESSAGE_LIMIT] + "…"
        text = self._scrub(f"{what}: GitHub answered {status}: {message}")
        if status == 404:
            return NotFoundError(text)
        if status >= 500:
            return TransientForgeError(text, _header_wait(headers))
        if status == 429 or (status in (403, 429) and _is_rate_limit(exc, headers)):
            wait = _header_wait(headers)
            return TransientForgeError(text, SECONDARY_RATE_LIMIT_WAIT if wait is None else wait)
        return ForgeError(text)

    # -- who we are --------------------------------------------------------------

    def _own_login(self, repo: str) -> str | None:
        """The login our comments carry, or None when GitHub will not say (then: any Bot is us)."""
        if self._bot_login_known:
            return self._bot_login
        login: str | None
        try:
            if self._integration is not None:
                with self._api("look up the GitHub App"):
                    login = f"{self._integration.get_app().slug}[bot]"
            else:
                with self._api("look up the token's user"):
                    login = self._client(repo).get_user().login
        except TransientForgeError:
            raise  # try again next time rather than caching a guess
        except ForgeError as exc:  # e.g. a GITHUB_TOKEN, which may not read /user
            log.warning("cannot tell which GitHub user layersync is (%s); treating every bot's comment as ours", exc)
            login = None
        with self._lock:
            self._bot_login, self._bot_login_known = login, True
        return login

    @staticmethod
    def _is_own(user: Any, own_login: str | None) -> bool:
        if user is None:
            return False
        if own_login is not None:
            return str(user.login).lower() == own_login.lower()
        return user.type == "Bot"

    # -- pull requests -------------------------------------------------------------

    def open_or_update_pr(
        self, repo: str, *, head: str, base: str, title: str, body: str
    ) -> tuple[PullRequest, bool]:
        title, body = check_title(title), truncate_body(body, self.body_limit)
        gh_repo = self._repo(repo)
        owner = repo.split("/", 1)[0]
        with self._api(f"open or update the PR {head} → {base} in {repo}"):
            existing = _first(gh_repo.get_pulls(state="open", head=f"{owner}:{head}", base=base))
            if existing is None:
                try:
                    created = gh_repo.create_pull(base=base, head=head, title=title, body=body)
                    return self._pr(repo, created), True
                except GithubException as exc:
                    # Another worker opened it between our list and our create.
                    if exc.status != 422 or "already exists" not in _github_message(exc).lower():
                        raise
                    existing = _first(gh_repo.get_pulls(state="open", head=f"{owner}:{head}", base=base))
                    if existing is None:
                        raise
            if existing.title != title or (existing.body or "") != body:
                existing.edit(title=title, body=body)
            return self._pr(repo, existing), False

    def get_pr(self, repo: str, number: int) -> PullRequest:
        gh_repo = self._repo(repo)
        with self._api(f"get PR #{number} of {repo}"):
            return self._pr(repo, gh_repo.get_pull(number))

    def list_prs(self, repo: str | None = None, state: str | None = None) -> list[PullRequest]:
        """PRs of one repo, oldest first. GitHub has no "all repos": ``repo`` is required."""
        _check_state(state)
        if repo is None:
            raise ForgeError("listing pull requests on GitHub needs a repo (owner/name)")
        gh_repo = self._repo(repo)
        api_state = {"open": "open", None: "all"}.get(state, "closed")
        with self._api(f"list PRs of {repo}"):
            prs = [self._pr(repo, p) for p in gh_repo.get_pulls(state=api_state, sort="created", direction="asc")]
        return [pr for pr in prs if state is None or pr.state == state]

    def close_pr(self, repo: str, number: int, merged: bool = False) -> PullRequest:
        """Close or merge; as on the local forge, re-closing is a no-op and a closed PR cannot be merged."""
        gh_repo = self._repo(repo)
        with self._api(f"{'merge' if merged else 'close'} PR #{number} of {repo}"):
            gh_pr = gh_repo.get_pull(number)
            pr = self._pr(repo, gh_pr)
            if pr.state == "open":
                if merged:
                    gh_pr.merge()
                    return self._pr(repo, gh_repo.get_pull(number))
                gh_pr.edit(state="closed")
                return self._pr(repo, gh_pr)
        if merged and pr.state != "merged":
            raise ForgeError(f"{pr.url} is {pr.state}; only an open PR can be merged")
        return pr

    def find_pr_by_head(self, repo: str, head: str, state: str | None = "open") -> PullRequest | None:
        _check_state(state)
        gh_repo = self._repo(repo)
        owner = repo.split("/", 1)[0]
        api_state = {"open": "open", None: "all"}.get(state, "closed")
        with self._api(f"find the PR from {head} in {repo}"):
            # Newest first (GitHub's default order), so the first match is the latest PR.
            for gh_pr in gh_repo.get_pulls(state=api_state, head=f"{owner}:{head}"):
                pr = self._pr(repo, gh_pr)
                if state is None or pr.state == state:
                    return pr
        return None

    def pr_head_ref(self, repo: str, number: int) -> str:
        """GitHub keeps every PR's head, a fork's too, at ``refs/pull/N/head`` of the base repo."""
        return f"refs/pull/{int(number)}/head"

    def pr_files(self, repo: str, number: int) -> list[str]:
        """``GET /pulls/{n}/files`` (all pages; GitHub lists at most 3,000), both sides of a rename."""
        gh_repo = self._repo(repo)
        paths: set[str] = set()
        with self._api(f"list the files of PR #{number} of {repo}"):
            for f in gh_repo.get_pull(number).get_files():
                paths.add(f.filename)
                if f.previous_filename:
                    paths.add(f.previous_filename)
        return sorted(paths)

    @staticmethod
    def _pr(repo: str, p: Any) -> PullRequest:
        state = "merged" if p.merged_at is not None else p.state
        return PullRequest(
            number=p.number,
            repo=repo,
            title=p.title or "",
            body=p.body or "",
            head=p.head.ref,
            base=p.base.ref,
            state=state,
            url=p.html_url,
            created_at=_iso(p.created_at),
            updated_at=_iso(p.updated_at),
            head_repo=_head_repo(repo, p),
        )

    # -- comments --------------------------------------------------------------------

    def upsert_comment(self, repo: str, number: int, body: str, marker: str) -> tuple[Comment, bool]:
        """Edit our comment that carries ``marker`` (only if its text changed), else post one.

        Only our own comments are candidates (see ``bot_login``): a human who
        quotes the bot's report copies the hidden marker too, and their comment
        is never touched.
        """
        body = body_with_marker(body, marker, self.body_limit)
        issue = self._repo(repo).get_issue(number)
        own = self._own_login(repo)
        with self._api(f"post or update the comment {marker} on #{number} of {repo}"):
            for c in issue.get_comments():
                if marker in (c.body or "") and self._is_own(c.user, own):
                    if c.body != body:
                        c.edit(body)
                    return _comment(c), False
            return _comment(issue.create_comment(body)), True

    def list_comments(self, repo: str, number: int) -> list[Comment]:
        issue = self._repo(repo).get_issue(number)
        with self._api(f"list the comments on #{number} of {repo}"):
            return [_comment(c) for c in issue.get_comments()]

    def add_comment(self, repo: str, number: int, body: str, author: str | None = None) -> Comment:
        """Post a new comment. ``author`` is ignored: on GitHub the credentials decide who posts."""
        issue = self._repo(repo).get_issue(number)
        with self._api(f"comment on #{number} of {repo}"):
            return _comment(issue.create_comment(truncate_body(body, self.body_limit)))

    def react(self, repo: str, comment_id: int, content: str) -> None:
        """``POST /repos/{repo}/issues/comments/{id}/reactions``; GitHub answers 200 for a repeat, 201 for new."""
        check_reaction(content)
        requester = self._requester(repo)
        with self._api(f"react {content} to comment {comment_id} in {repo}"):
            requester.requestJsonAndCheck(
                "POST", f"/repos/{repo}/issues/comments/{int(comment_id)}/reactions", input={"content": content}
            )

    def set_status(self, repo: str, sha: str, state: str, description: str, context: str = "layersync/impact",
                   target_url: str | None = None) -> None:
        """``POST /repos/{repo}/statuses/{sha}``."""
        body: dict[str, Any] = {"state": state, "description": check_status(state, description), "context": context}
        if target_url:
            body["target_url"] = target_url
        requester = self._requester(repo)
        with self._api(f"set status {context} on {sha[:12]} in {repo}"):
            requester.requestJsonAndCheck("POST", f"/repos/{repo}/statuses/{sha}", input=body)

    def request_review(self, repo: str, number: int, reviewers: list[str]) -> list[str]:
        """``POST /repos/{repo}/pulls/{n}/requested_reviewers``, one login at a time: GitHub refuses the
        whole request (422) when any login is not a collaborator, and one outsider must not cost the rest."""
        accepted: list[str] = []
        requester = self._requester(repo)
        for login in dict.fromkeys(r for r in reviewers if r):
            try:
                with self._api(f"request a review from {login} on {repo}#{number}"):
                    requester.requestJsonAndCheck("POST", f"/repos/{repo}/pulls/{int(number)}/requested_reviewers",
                                                  input={"reviewers": [login]})
                accepted.append(login)
            except (ForgeError, GithubException) as exc:
                if isinstance(exc, TransientForgeError):
                    raise
                log.info("GitHub did not accept %s as a reviewer of %s#%s: %s", login, repo, number, exc)
        return accepted

    # -- permissions -------------------------------------------------------------------

    def permission(self, repo: str, user: str) -> str:
        """``GET /repos/{repo}/collaborators/{user}/permission``: ``role_name``, or ``permission`` for a custom role.

        A 404 (no such user, or not visible to us) is "none".
        """
        requester = self._requester(repo)
        try:
            with self._api(f"check {user}'s permission on {repo}"):
                _, data = requester.requestJsonAndCheck(
                    "GET", f"/repos/{repo}/collaborators/{quote(user, safe='')}/permission"
                )
        except NotFoundError:
            return "none"
        data = data or {}
        role = _ROLE_ALIASES.get(data.get("role_name"), data.get("role_name"))
        if role in PERMISSION_LEVELS:
            return role
        base = _ROLE_ALIASES.get(data.get("permission"), data.get("permission"))
        return base if base in PERMISSION_LEVELS else "none"

    # -- git ----------------------------------------------------------------------------

    def remote_url(self, repo: str) -> str:
        """The repo's ``clone_url`` (https, no credentials; cached)."""
        with self._lock:
            cached = self._clone_urls.get(repo)
        if cached is not None:
            return cached
        gh_repo = self._repo(repo)
        with self._api(f"look up {repo}"):
            url = _without_userinfo(gh_repo.clone_url)
        with self._lock:
            self._clone_urls[repo] = url
        return url

    def git_env(self, repo: str) -> dict[str, str]:
        """``GIT_CONFIG_*`` variables that make git send ``AUTHORIZATION: basic …`` to this repo's host only.

        The header is scoped to the host of :meth:`remote_url`
        (``http.https://github.com/.extraheader``), so neither a redirect nor a
        submodule on another host ever sees the token. Config slots are
        appended after any ``GIT_CONFIG_COUNT`` already in the environment.
        Needs git ≥ 2.31. Call again for every git operation: it renews an
        installation token that is close to expiry.
        """
        parts = urlsplit(self.remote_url(repo))
        scope = urlunsplit((parts.scheme, parts.netloc, "/", "", ""))
        token = self._git_token(repo)
        try:
            index = int(os.environ.get("GIT_CONFIG_COUNT", "0") or 0)
        except ValueError:
            index = 0
        return {
            "GIT_CONFIG_COUNT": str(index + 1),
            f"GIT_CONFIG_KEY_{index}": f"http.{scope}.extraheader",
            f"GIT_CONFIG_VALUE_{index}": f"AUTHORIZATION: basic {_basic_credentials(token)}",
            "GIT_TERMINAL_PROMPT": "0",  # a bad token must fail, not hang waiting for a password
        }

    def _git_token(self, repo: str) -> str:
        if self._token_auth is not None:
            return self._token_auth.token
        _, auth = self._installation(repo)
        with self._api(f"get an installation token for {repo}"):
            return auth.token

    def default_branch(self, repo: str) -> str:
        gh_repo = self._repo(repo)
        with self._api(f"look up {repo}"):
            return gh_repo.default_branch


# -- helpers ------------------------------------------------------------------------------


def _check_repo(repo: str) -> None:
    if not isinstance(repo, str) or not _REPO_RE.match(repo):
        raise ValueError(f"a GitHub repo is 'owner/name', got {repo!r}")


def _check_state(state: str | None) -> None:
    if state is not None and state not in PR_STATES:
        raise ValueError(f"unknown PR state {state!r}; expected one of {', '.join(PR_STATES)}")


def _basic_credentials(token: str) -> str:
    """What git sends for user ``x-access-token`` and password ``token``: GitHub's documented form for App tokens."""
    return base64.b64encode(f"x-access-token:{token}".encode()).decode("ascii")


def _first(items: Iterable[_T]) -> _T | None:
    for item in items:
        return item
    return None


def _iso(value: datetime | None) -> str:
    """GitHub's own timestamp shape (``…Z``), like the local forge's records."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _comment(c: Any) -> Comment:
    return Comment(
        id=c.id,
        body=c.body or "",
        author=c.user.login if c.user is not None else "",
        created_at=_iso(c.created_at),
        updated_at=_iso(c.updated_at),
    )


def _without_userinfo(url: str) -> str:
    """Drop any ``user:password@`` from a URL: credentials travel in git_env, never in a URL."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _github_message(exc: GithubException) -> str:
    """GitHub's ``message`` plus any validation ``errors``, or the raw body."""
    data = exc.data
    if isinstance(data, dict):
        message = str(data.get("message") or data.get("data") or "").strip()
        details = []
        for err in data.get("errors") or []:
            if isinstance(err, dict):
                details.append(str(err.get("message") or err.get("code") or err))
            else:
                details.append(str(err))
        if details:
            message = f"{message} ({'; '.join(details)})" if message else "; ".join(details)
        return message or "no message"
    return str(data) if data else "no message"


def _is_rate_limit(exc: GithubException, headers: Mapping[str, str]) -> bool:
    """GitHub's rules: x-ratelimit-remaining 0 (primary), or a retry-after / rate-limit message (secondary)."""
    return (
        isinstance(exc, RateLimitExceededException)
        or headers.get("x-ratelimit-remaining") == "0"
        or "retry-after" in headers
        or "rate limit" in _github_message(exc).lower()
    )


def _header_wait(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait: ``retry-after`` (seconds or HTTP date), else ``x-ratelimit-reset`` − now when exhausted."""
    retry_after = headers.get("retry-after")
    if retry_after:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            try:
                when = parsedate_to_datetime(retry_after)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                if when.tzinfo is None:
                    when = when.replace(tzinfo=timezone.utc)
                return max(0.0, when.timestamp() - time.time())
    if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset"):
        try:
            return max(0.0, float(headers["x-ratelimit-reset"]) - time.time())
        except ValueError:
            return None
    return None


def _head_repo(repo: str, p: Any) -> str | None:
    """The fork a PR comes from (GitHub's `head.repo`; null once the fork is deleted), None for the repo itself."""
    head_repo = p.head.repo                 # part of the PR's JSON: no request
    full_name = getattr(head_repo, "full_name", None) or ""
    return None if full_name.lower() == repo.lower() else full_name

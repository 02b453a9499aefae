"""The forge interface: where layersync's pull requests and comments live.

The engine only ever talks to a :class:`Forge`, so it cannot tell a local
SQLite-backed forge (used for demos, tests and air-gapped setups) from a
hosted one such as GitHub. Everything in this module is therefore
forge-neutral: plain records, the protocol, and helpers whose rules (such as
the body size limit) every implementation must apply identically so that a
run behaves the same whichever forge it targets.

The helpers here are also the doors through which text leaves for a forge: every PR title and body,
comment and commit status passes :func:`check_title`, :func:`truncate_body` (directly or through
:func:`body_with_marker`) or :func:`check_status`, and each of them scrubs it of every secret the
process knows (:mod:`bot.redact`) — so neither forge, nor a handler, has to remember to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Protocol, runtime_checkable

from bot.redact import scrub

__all__ = [
    "BOT_AUTHOR",
    "BODY_LIMIT",
    "PERMISSION_LEVELS",
    "PR_STATES",
    "REACTIONS",
    "Comment",
    "Forge",
    "ForgeError",
    "NotFoundError",
    "PullRequest",
    "TransientForgeError",
    "body_with_marker",
    "check_permission_level",
    "check_reaction",
    "check_status",
    "check_title",
    "format_pr_table",
    "has_permission",
    "truncate_body",
]

#: Hosted forges reject bodies above this size (GitHub: 65,536 characters for
#: both PR bodies and comments). Applying it locally too means a report that
#: works in the demo cannot start failing once pointed at GitHub.
BODY_LIMIT = 65536

#: The only states a pull request can be in. "merged" is kept distinct from
#: "closed" because the engine treats a merged sync PR as done and a closed
#: one as rejected.
PR_STATES: tuple[str, ...] = ("open", "closed", "merged")

#: Repository roles, weakest first: GitHub's ``role_name`` values for the
#: built-in roles, plus "none" for a user with no access. A forge maps
#: anything else it knows (a custom role, say) onto the closest of these.
PERMISSION_LEVELS: tuple[str, ...] = ("none", "read", "triage", "write", "maintain", "admin")

#: The reactions GitHub accepts on a comment; other forges accept the same set
#: so a handler cannot rely on one that would be refused in production.
REACTIONS: tuple[str, ...] = ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes")

#: Identity the bot posts under unless told otherwise; matches the login a
#: GitHub App named "layersync" gets, so local and hosted runs look alike.
BOT_AUTHOR = "layersync[bot]"


class ForgeError(Exception):
    """Base class so callers can catch forge failures without knowing which forge raised them."""


class NotFoundError(ForgeError, LookupError):
    """Raised for a missing PR or comment; also a LookupError so ``except KeyError``-style code reads naturally."""


class TransientForgeError(ForgeError):
    """A failure that is expected to go away: the forge is down (5xx), rate-limited us, or unreachable.

    The job worker retries these (and only these) with backoff. ``retry_after``
    is the number of seconds the forge asked us to wait, when it said so
    (``Retry-After``, or the rate-limit reset time); ``None`` means "use your
    own backoff".
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class PullRequest:
    """Immutable snapshot of a PR, so callers never mistake a stale copy for a live handle."""

    number: int
    repo: str
    title: str
    body: str
    head: str
    base: str
    state: str  # "open" | "closed" | "merged"
    url: str
    created_at: str  # ISO-8601, UTC
    updated_at: str  # ISO-8601, UTC
    head_repo: str | None = None  # where the head branch lives when not in `repo` (a fork; "" if deleted)

    @property
    def from_fork(self) -> bool:
        """A fork's PR: its branch name says nothing about this repo's branches of that name."""
        return self.head_repo is not None and self.head_repo != self.repo


@dataclass(frozen=True)
class Comment:
    """Immutable snapshot of a PR comment; ``id`` is what an in-place edit targets."""

    id: int
    body: str
    author: str
    created_at: str  # ISO-8601, UTC
    updated_at: str  # ISO-8601, UTC


@runtime_checkable
class Forge(Protocol):
    """What the engine needs from a forge, and nothing forge-specific.

    ``repo`` is an opaque key chosen by the caller: ``owner/name`` on GitHub,
    the absolute path of a bare remote for the local forge. Implementations
    must not reinterpret it, or PRs would silently split across two keys.

    Every mutating call is idempotent where the engine may retry it (a crashed
    or re-triggered run must not open a second PR or post a second report).
    """

    def open_or_update_pr(
        self, repo: str, *, head: str, base: str, title: str, body: str
    ) -> tuple[PullRequest, bool]:
        """Open a PR for ``head`` → ``base``, or refresh the open one; the bool is True if it was created.

        An OPEN PR with the same head and base is updated in place rather than
        duplicated, so re-running a sync only ever touches one PR. A closed or
        merged PR does not count: a new one is opened, as on GitHub.
        """
        ...

    def get_pr(self, repo: str, number: int) -> PullRequest:
        """Fetch one PR; raises :class:`NotFoundError` if it does not exist."""
        ...

    def list_prs(self, repo: str | None = None, state: str | None = None) -> list[PullRequest]:
        """List PRs, optionally for one repo and/or one state, oldest first."""
        ...

    def close_pr(self, repo: str, number: int, merged: bool = False) -> PullRequest:
        """Close a PR, recording it as merged when ``merged`` is True."""
        ...

    def upsert_comment(self, repo: str, number: int, body: str, marker: str) -> tuple[Comment, bool]:
        """Post or edit the bot's comment identified by ``marker``; the bool is True if it was created.

        ``marker`` is a hidden HTML comment such as
        ``<!-- layersync:report pr=12 -->``. The bot's own comment containing
        it is edited in place, so repeated runs keep one up-to-date report
        instead of stacking new ones.
        """
        ...

    def list_comments(self, repo: str, number: int) -> list[Comment]:
        """All comments on a PR, oldest first."""
        ...

    def add_comment(self, repo: str, number: int, body: str, author: str = BOT_AUTHOR) -> Comment:
        """Always post a new comment (for one-off messages that must not be edited away)."""
        ...

    def permission(self, repo: str, user: str) -> str:
        """``user``'s role on ``repo``: one of :data:`PERMISSION_LEVELS` (GitHub's ``role_name`` semantics).

        A user unknown to the forge has "none". Comment commands use this to
        decide who may make the bot push.
        """
        ...

    def react(self, repo: str, comment_id: int, content: str) -> None:
        """Put reaction ``content`` (one of :data:`REACTIONS`) on a comment; reacting twice is a no-op."""
        ...

    def remote_url(self, repo: str) -> str:
        """Where git clones and pushes ``repo``. Never carries a credential: see :meth:`git_env`."""
        ...

    def git_env(self, repo: str) -> dict[str, str]:
        """Environment variables to add to git commands that talk to :meth:`remote_url`.

        This is how credentials reach git without touching disk or the URL
        (git ≥ 2.31 reads ``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n``/
        ``GIT_CONFIG_VALUE_n``). The values are secrets: never log them. Ask
        again for every git command (or batch of them): tokens expire.
        """
        ...

    def default_branch(self, repo: str) -> str:
        """The branch PRs target when nobody says otherwise."""
        ...

    def pr_files(self, repo: str, number: int) -> list[str]:
        """Paths a PR changes relative to its base (both sides of a rename), sorted."""
        ...

    def find_pr_by_head(self, repo: str, head: str, state: str | None = "open") -> PullRequest | None:
        """The most recently opened PR from branch ``head`` in ``state`` (None: any state), or None."""
        ...

    def pr_head_ref(self, repo: str, number: int) -> str:
        """The ref of :meth:`remote_url` that holds PR ``number``'s head commit, whichever repo the head
        branch lives in (``refs/pull/N/head`` on GitHub, also for forks). A PR's head is fetched from
        here, never by its branch name: a fork's ``main`` is not the base repo's ``main``."""
        ...

    def set_status(self, repo: str, sha: str, state: str, description: str, context: str = "layersync/impact",
                   target_url: str | None = None) -> None:
        """A commit status (``pending``, ``success``, ``failure``, ``error``) that branch protection can
        require; the same context again replaces the previous one, as on GitHub."""
        ...

    def request_review(self, repo: str, number: int, reviewers: list[str]) -> list[str]:
        """Ask ``reviewers`` (logins) to review PR ``number``; returns those the forge accepted. A login
        the forge refuses (not a collaborator, the PR's own author) is left out, never an error: a
        review request is a courtesy, the PR stands without it."""
        ...


STATUS_STATES: tuple[str, ...] = ("error", "failure", "pending", "success")


def check_status(state: str, description: str) -> str:
    """GitHub refuses other states and descriptions over 140 characters; shorten instead of failing.

    Scrubbed before the cut, so a cut never leaves half a secret the scrubber no longer recognises."""
    if state not in STATUS_STATES:
        raise ValueError(f"unknown status state {state!r}; expected one of {', '.join(STATUS_STATES)}")
    description = scrub(description)
    return description if len(description) <= 140 else description[:139] + "…"


def check_title(title: str) -> str:
    """A PR title as a forge may show it: scrubbed of secrets (titles quote field and model names,
    which are user text)."""
    return scrub(title)


def check_permission_level(level: str) -> str:
    """Return ``level`` if it is one of :data:`PERMISSION_LEVELS`, else raise ValueError."""
    if level not in PERMISSION_LEVELS:
        raise ValueError(f"unknown permission level {level!r}; expected one of {', '.join(PERMISSION_LEVELS)}")
    return level


def has_permission(level: str, minimum: str) -> bool:
    """True when role ``level`` is at least ``minimum`` ("maintain" ≥ "write", "triage" < "write")."""
    return PERMISSION_LEVELS.index(check_permission_level(level)) >= PERMISSION_LEVELS.index(
        check_permission_level(minimum)
    )


def check_reaction(content: str) -> str:
    """Return ``content`` if the forge would accept it as a reaction, else raise ValueError."""
    if content not in REACTIONS:
        raise ValueError(f"unknown reaction {content!r}; expected one of {', '.join(REACTIONS)}")
    return content


def body_with_marker(body: str, marker: str, limit: int = BODY_LIMIT) -> str:
    """``body`` cut to ``limit`` with ``marker`` guaranteed to survive (added first if absent).

    Losing the marker to truncation would make every later run post a fresh
    duplicate instead of editing its comment, so it is kept even when the
    text around it is cut.
    """
    if not marker:
        raise ValueError("marker must be a non-empty string")
    if marker not in body:
        body = f"{marker}\n{body}"
    cut = truncate_body(body, limit)
    if marker in cut:
        return cut
    rest = body.replace(marker, "")
    return f"{marker}\n" + truncate_body(rest, limit - len(marker) - 1)


def _truncation_note(original_len: int, limit: int) -> str:
    """Build the note appended to cut bodies; depends only on the inputs so its length is known up front."""
    return (
        "\n\n---\n"
        f"> :warning: **Truncated by layersync:** this text was {original_len:,} characters, "
        f"over the {limit:,}-character limit, so the end was cut. "
        "Run layersync locally to see the full output."
    )


def truncate_body(body: str, limit: int = BODY_LIMIT) -> str:
    """Fit ``body`` within ``limit`` characters, saying visibly that it was cut.

    Hosted forges reject over-long bodies outright, which would turn a large
    but otherwise fine sync into a failed run; a cut body with a note is far
    more useful. The cut prefers a line boundary (so a Markdown table row or
    list item is not left half-written) and closes a code fence left open by
    the cut, so the note renders as prose rather than inside a code block.
    The result is guaranteed to be at most ``limit`` characters, and scrubbed of secrets: every body
    a forge posts or stores passes here.
    """
    if limit <= 0:
        raise ValueError(f"limit must be positive, got {limit}")
    body = scrub(body)       # before the cut: a cut must never leave a fragment the scrubber misses
    if len(body) <= limit:
        return body

    note = _truncation_note(len(body), limit)
    fence_close = "\n```"
    budget = limit - len(note) - len(fence_close)
    if budget <= 0:
        # Limit too small for any note: a hard cut is the only honest option.
        return body[:limit]

    kept = body[:budget]
    # Back up to the last newline if it is reasonably close; otherwise (one
    # giant line) accept a mid-line cut rather than dropping most of the text.
    newline = kept.rfind("\n")
    if newline >= budget - 2000 and newline > 0:
        kept = kept[:newline]
    kept = kept.rstrip()

    # An odd number of ``` lines means the cut landed inside a fenced block.
    fences = sum(1 for line in kept.splitlines() if line.lstrip().startswith("```"))
    if fences % 2 == 1:
        kept += fence_close

    result = kept + note
    assert len(result) <= limit
    return result


def format_pr_table(prs: Iterable[PullRequest]) -> str:
    """Render PRs as an aligned plain-text table for ``layersync prs``.

    Lives here rather than in the CLI so every forge's PRs print the same
    way. Titles are clipped so one long title cannot push the repo column
    off-screen; the repo is last because local repo keys are long paths.
    """
    rows = [
        (
            f"#{pr.number}",
            pr.state,
            f"{pr.head} → {pr.base}",
            _clip(pr.title.replace("\n", " "), 60),
            pr.repo,
        )
        for pr in prs
    ]
    if not rows:
        return "No pull requests."
    header = ("#", "STATE", "HEAD → BASE", "TITLE", "REPO")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]

    def line(cells: tuple[str, ...]) -> str:
        padded = [cell.ljust(width) for cell, width in zip(cells, widths)]
        return "  ".join([*padded, cells[-1]]).rstrip()

    return "\n".join([line(header), *(line(r) for r in rows)])


def _clip(text: str, width: int) -> str:
    """Shorten ``text`` to ``width`` characters with an ellipsis, so table columns stay aligned."""
    return text if len(text) <= width else text[: width - 1] + "…"

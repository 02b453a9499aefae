"""Branch previews from GitHub events.

- `/preview` (or `/layersync preview`) on a PR of the dbt or the semantic-layer repo, by someone with
  write access: 👀, a reply that says it started, edited into the result (schema, what was built, how
  long, how to query it, the semantic layer's fields that do not compile, the environment file). One
  reply per PR, kept in place.
- A push to a dbt branch that has a preview rebuilds it (only what changed since its last build), and
  a push to the semantic-layer branch of the same name compiles its views against the preview again;
  both edit the replies of the PRs that asked for the preview.
- A dbt PR that closes or merges, or a dbt branch deleted (`delete`, or a push that deletes it), drops
  the branch's preview. Only schemas the registry recorded for that branch, with the preview prefix,
  can be dropped — whatever the branch is called.

Every failure is a one-line reply or log line, never a crashed worker.
"""
from __future__ import annotations

import threading
from pathlib import Path

from bot.errors import LayersyncError, RepoError
from bot.forge.base import ForgeError
from bot.handlers.commands import CommandError, is_preview, mention, parse_comment, quote
from bot.handlers.context import Context, Settings, can_write, is_bot, may_write
from bot.handlers.router import Event, Router
from bot.preview.build import PreviewConfig, build_preview, warehouse_target
from bot.preview.gc import drop_preview
from bot.preview.pairing import Remote, remote_branch_sha
from bot.preview.registry import PreviewCapReached, Registry
from bot.preview.report import to_markdown

router = Router()
NULL_SHA = "0" * 40
_REGISTRIES: dict[Path, Registry] = {}
_REGISTRIES_LOCK = threading.Lock()


def reply_marker(number: int) -> str:
    """One preview reply per PR, edited by every later `/preview`, rebuild and drop."""
    return f"<!-- layersync:branch-preview pr={number} -->"


def preview_db(settings: Settings) -> Path:
    from bot.service_config import data_dir
    return Path(settings.preview_db) if settings.preview_db else data_dir() / "previews.sqlite"


def preview_config(settings: Settings) -> PreviewConfig:
    """Previews go into the configured warehouse; without one, into a DuckDB file beside the registry
    that layersync owns (prod is built there from the base, as `Settings.prod_env` says)."""
    db = preview_db(settings)
    with _REGISTRIES_LOCK:
        registry = _REGISTRIES.get(db) or _REGISTRIES.setdefault(db, Registry(db))
    target = warehouse_target(settings.warehouse or db.parent / "previews.duckdb")
    return PreviewConfig(registry, target, settings.prod_env(), settings.preview_max)


def _remote(ctx: Context, repo: str, folder: str = "") -> Remote:
    return Remote(ctx.forge.remote_url(repo), repo, ctx.forge.git_env(repo), path=folder)


def _head(branch: str, body: str, marker: str) -> str:
    return f"{marker}\n### layersync preview of {quote(branch)}\n\n{body}"


def _run(ctx: Context, branch: str, *, base: str | None, reply: tuple[str, int] | None) -> None:
    """Build the preview and say how it went: a finished build to every PR that asked for this preview
    (read when it is done, so a PR that asked meanwhile hears the newest result); anything else — a
    cancelled build, an error — only to the PR that asked this time (`reply`; None for a push)."""
    config = preview_config(ctx.settings)
    dbt = _remote(ctx, ctx.settings.dbt_repo, ctx.settings.dbt_path)

    def tell(body: str) -> None:
        if reply is not None:
            _upsert(ctx, reply, _head(branch, body, reply_marker(reply[1])))
        else:
            ctx.log.warning("preview of %s: %s", branch, body)

    try:
        semantic = _remote(ctx, ctx.settings.semantic_repo, ctx.settings.semantic_path)
        result = build_preview(branch, dbt, config, semantic=semantic, base=base,
                               log=lambda line: ctx.log.debug("dbt | %s", line), reply=reply)
    except PreviewCapReached as exc:
        return tell(f"🚫 No preview: {exc}.")
    except RepoError as exc:
        tell(f"❌ The preview could not be made: {exc}")     # and the job is retried: clones fail for a while
        raise
    except (LayersyncError, ValueError) as exc:
        return tell(f"❌ The preview could not be made: {exc}")
    except Exception as exc:  # noqa: BLE001 - a warehouse or dbt surprise is a reply, never a dead worker
        ctx.log.exception("preview of %s failed", branch)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return tell(f"❌ The preview failed: {type(exc).__name__}: {reason[:300]}")
    ctx.log.info("preview of %s: %s %s (%s)", branch, result.status, result.schema, result.mode)
    targets = [reply] if reply is not None else []
    if result.status != "cancelled" and result.schema is not None:
        row = config.registry.get(config.warehouse, dbt.key, branch)
        targets += [(str(r), int(n)) for r, n in (row.replies if row else []) if (str(r), int(n)) != reply]
    for where in targets:
        _upsert(ctx, where, to_markdown(result, reply_marker(where[1])))


def _upsert(ctx: Context, where: tuple[str, int], body: str) -> None:
    try:
        ctx.forge.upsert_comment(where[0], int(where[1]), body, reply_marker(int(where[1])))
    except ForgeError as exc:
        ctx.log.warning("could not update the preview reply on %s#%s: %s", where[0], where[1], exc)


def _tell(ctx: Context, replies: list, render) -> None:
    for repo, number in replies:
        _upsert(ctx, (str(repo), int(number)), render((str(repo), int(number))))


# --------------------------------------------------------------------------- `/preview`

@router.register("issue_comment", action="created")
def on_preview_comment(event: Event, ctx: Context) -> None:
    payload = event.payload
    comment, issue = payload["comment"], payload["issue"]
    if event.repo not in (ctx.settings.dbt_repo, ctx.settings.semantic_repo):
        return
    if is_bot(comment.get("user")) or is_bot(payload.get("sender")):
        return
    commands = parse_comment(comment.get("body") or "")
    if not commands or not is_preview(commands[0]):
        return
    first = commands[0]
    repo, number = event.repo, int(issue["number"])
    marker = reply_marker(number)
    login = str(comment["user"]["login"])
    if isinstance(first, CommandError) or not issue.get("pull_request"):
        if not can_write(ctx, repo, login):      # mistakes are answered for those who can run commands only
            ctx.log.info("%s#%s: no /preview usage reply to %s (no write access)", repo, number, login)
            return
        ctx.forge.upsert_comment(repo, number, first.reply() if isinstance(first, CommandError) else
                                 f"{marker}\n`/preview` works on pull requests: it previews the PR's branch. "
                                 "Comment it on a PR of the dbt or the semantic-layer repo.", marker)
        return
    if not may_write(ctx, repo, number, login, "/preview"):
        return
    ctx.forge.react(repo, int(comment["id"]), "eyes")
    pr = ctx.forge.get_pr(repo, number)
    if pr.state != "open":
        ctx.forge.upsert_comment(repo, number, _head(pr.head, f"This PR is {pr.state}: its branch gets no preview.",
                                                     marker), marker)
        return
    if pr.from_fork:
        # A preview builds a branch of this repo into the warehouse: a fork's branch is not one, and its SQL
        # is an outsider's. (Its name may even be that of one of this repo's branches.)
        fork = quote(pr.head_repo) if pr.head_repo else "a deleted fork"
        ctx.forge.upsert_comment(repo, number, _head(pr.head, f"This PR comes from the fork {fork}: previews build "
                                                     "branches of this repository only.", marker), marker)
        return
    started = f"⏳ Building the preview of {quote(pr.head)} for {mention(login)}…"
    ctx.forge.upsert_comment(repo, number, _head(pr.head, started, marker), marker)
    _run(ctx, pr.head, base=pr.base if repo == ctx.settings.dbt_repo else None, reply=(repo, number))


def failure_reply(payload: dict, reason: str) -> tuple[str, int, str, str] | None:
    """For a `/preview` comment whose job failed for good: (repo, number, body, marker), else None."""
    comment, issue = payload.get("comment") or {}, payload.get("issue") or {}
    commands = parse_comment(comment.get("body") or "")
    if not commands or not is_preview(commands[0]) or "number" not in issue:
        return None
    number = int(issue["number"])
    body = f"❌ The preview failed: {reason}\n\nThe job is recorded; fix the cause and comment `/preview` again."
    return str(payload["repository"]["full_name"]), number, body, reply_marker(number)


# --------------------------------------------------------------------------- pushes

def _base_for(ctx: Context, branch: str) -> str | None:
    try:
        pr = ctx.forge.find_pr_by_head(ctx.settings.dbt_repo, branch)
    except ForgeError:
        return None
    return pr.base if pr is not None else None


@router.register("push")
def on_push(event: Event, ctx: Context) -> None:
    """A push to a previewed branch (either repo) brings its preview up to date; deleting it drops it."""
    payload = event.payload
    ref = str(payload.get("ref") or "")
    if event.repo not in (ctx.settings.dbt_repo, ctx.settings.semantic_repo) or not ref.startswith("refs/heads/"):
        return
    branch = ref[len("refs/heads/"):]
    deleted = bool(payload.get("deleted")) or payload.get("after") == NULL_SHA
    if deleted:
        if event.repo == ctx.settings.dbt_repo:
            _drop(ctx, branch, "the branch was deleted")
        return
    config = preview_config(ctx.settings)
    row = config.registry.get(config.warehouse, ctx.settings.dbt_repo, branch)
    if row is None or not row.replies and event.repo == ctx.settings.semantic_repo:
        return                                   # nobody asked for a preview of this branch
    if event.repo == ctx.settings.dbt_repo:
        current = remote_branch_sha(_remote(ctx, event.repo), branch)
        if current != payload.get("after"):       # a later push is queued behind this one: it rebuilds
            ctx.log.info("push of %s@%s is superseded by %s: not rebuilt", branch, str(payload.get("after"))[:12],
                         (current or "deletion")[:12])
            return
    _run(ctx, branch, base=_base_for(ctx, branch), reply=None)


# --------------------------------------------------------------------------- drops

def _drop(ctx: Context, branch: str, why: str) -> list[str]:
    config = preview_config(ctx.settings)
    row = config.registry.get(config.warehouse, ctx.settings.dbt_repo, branch)
    if row is None:
        return []
    try:
        dropped = drop_preview(config.registry, config.target, ctx.settings.dbt_repo, branch,
                               prod_schema=ctx.settings.prod_schema)
    except (ValueError, LayersyncError) as exc:
        ctx.log.error("preview of %s not dropped: %s", branch, exc)
        return []
    ctx.log.info("dropped the preview of %s (%s): %s", branch, why, ", ".join(dropped) or "nothing left")
    _tell(ctx, row.replies, lambda where: _head(branch, f"🗑️ The preview schema `{row.schema}` was dropped: {why}.",
                                                reply_marker(where[1])))
    return dropped


@router.register("pull_request", action="closed")
def on_pr_closed(event: Event, ctx: Context) -> None:
    if event.repo != ctx.settings.dbt_repo:
        return
    head = event.payload["pull_request"]["head"]
    if ((head.get("repo") or {}).get("full_name") or event.repo) != event.repo:
        return                                   # a fork's branch: never previewed here
    merged = bool(event.payload["pull_request"].get("merged"))
    _drop(ctx, str(head["ref"]), "the PR was merged" if merged else "the PR was closed")


@router.register("delete")
def on_delete(event: Event, ctx: Context) -> None:
    payload = event.payload
    if event.repo != ctx.settings.dbt_repo or payload.get("ref_type") != "branch":
        return
    _drop(ctx, str(payload.get("ref") or "").removeprefix("refs/heads/"), "the branch was deleted")


__all__ = ["router", "reply_marker", "preview_config", "failure_reply"]

"""`/push-to-dbt` commented on an issue or PR of the semantic-layer repo."""
from __future__ import annotations

from bot import push_as_model
from bot.errors import LayersyncError
from bot.handlers.commands import (USAGE, Command, CommandError, field_ids_in_text, is_preview, mention, parse_comment,
                                   quote)
from bot.handlers.context import Context, can_write, is_bot, may_write
from bot.handlers.router import Event, Router
from bot.handlers.semantic_checkout import merge_base, semantic_clone
from bot.push_to_dbt import PushRequest, PushResult, run
from bot.selection import ViewSource, format_at
from bot.gitops import RevisionReader

router = Router()


def reply_marker(comment_id: int) -> str:
    """One reply per command comment, edited as the job goes on (and on any rerun)."""
    return f"<!-- layersync:push-to-dbt comment={comment_id} -->"


PUSHED = "Pushed to dbt:"  # how a reply that reports an opened/updated dbt PR begins (bot.service reads it)


def render_result(result: PushResult) -> str:
    lines: list[str] = []
    if result.pr is not None:
        lines.append(f"{PUSHED} **{result.pr.title}** — {result.pr.url} (branch {quote(result.branch)}).")
    elif result.message:
        lines.append(f"Nothing was pushed: {result.message}.")
    if result.pushed:
        lines += ["", "| field | dbt column | change |", "|---|---|---|"]
        lines += [f"| {quote(p.id, table=True)} | {quote(f'{p.model}.{p.column}', table=True)} | {p.action} |"
                  for p in result.pushed]
    metrics = getattr(result, "metrics", [])
    if metrics:
        lines += ["", "| measure | MetricFlow metric | change | parity |", "|---|---|---|---|"]
        lines += [f"| {quote(m.id, table=True)} | {quote(m.metric, table=True)} | {m.action} | "
                  f"{_parity_word(m.parity)} |" for m in metrics]
    if isinstance(result, push_as_model.AsModelResult) and result.parity:
        lines += ["", push_as_model.parity_summary(result)]
    if result.skipped:
        lines += ["", "<details><summary>Not pushed (" + str(len(result.skipped)) + ")</summary>", "",
                  "| field | where | why |", "|---|---|---|"]
        for s in result.skipped:
            where = f"{s.file}:{s.line}" if s.file and s.line else (s.file or "")
            lines.append(f"| {quote(s.id, table=True)} | {quote(where, table=True) if where else ''} "
                         f"| {s.reason.replace('|', '/')} |")
        lines += ["", "</details>"]
    return "\n".join(lines)


def _parity_word(rows) -> str:
    if rows is None:
        return "not checked"
    if not rows:
        return "✗ not compared"
    bad = sum(1 for r in rows if not r["ok"])
    return f"✗ {bad} of {len(rows)} rows differ" if bad else f"✓ {len(rows)} rows"


def _existing_fields(ws_root, candidates: list[str], root: str = "") -> list[str]:
    """The `view.field` words of an issue that name real fields (issues mention other dotted things)."""
    reader = RevisionReader(ws_root, "semantic-layer repo")
    try:
        source = ViewSource(reader, "HEAD", format_at(reader, "HEAD", root), root)
    except LayersyncError:
        return candidates  # a bad layersync.yml: the push itself reports it, with its line
    keep = []
    for candidate in candidates:
        view_name, _, field_name = candidate.partition(".")
        try:
            view = source.find(view_name)
        except LayersyncError:
            continue
        if view is not None and view.field_named(field_name) is not None:
            keep.append(candidate)
    return keep


@router.register("issue_comment", action="created")
def on_comment(event: Event, ctx: Context) -> None:
    payload = event.payload
    comment, issue = payload["comment"], payload["issue"]
    if event.repo != ctx.settings.semantic_repo or is_bot(comment.get("user")) or is_bot(payload.get("sender")):
        return
    commands = parse_comment(comment.get("body") or "")
    if not commands:
        return
    repo, number, marker = event.repo, int(issue["number"]), reply_marker(int(comment["id"]))
    first = commands[0]
    if is_preview(first):            # `/preview` (and its mistakes) is bot.handlers.preview's
        return
    login = str(comment["user"]["login"])
    if isinstance(first, CommandError) or first.name == "help":
        # Help and the usage are for those who can run commands: anyone else's mistake gets no reply,
        # so a reader cannot make the bot post (or echo) anything by typing near-commands.
        if not can_write(ctx, repo, login):
            ctx.log.info("%s#%s: no usage reply to %s (no write access)", repo, number, login)
            return
        ctx.forge.upsert_comment(repo, number, first.reply() if isinstance(first, CommandError) else USAGE, marker)
        return
    if not may_write(ctx, repo, number, login, "/push-to-dbt"):
        return
    ctx.forge.react(repo, int(comment["id"]), "eyes")
    ctx.forge.upsert_comment(repo, number, f"⏳ push-to-dbt started for {mention(login)}…", marker)
    result = _push(ctx, first, issue, repo, number)
    ctx.forge.upsert_comment(repo, number, render_result(result), marker)
    ctx.log.info("push-to-dbt for %s#%s: %s", repo, number, result.message)


def _push(ctx: Context, command: Command, issue: dict, repo: str, number: int) -> PushResult:
    is_pr = bool(issue.get("pull_request"))
    pr = ctx.forge.get_pr(repo, number) if is_pr else None
    with semantic_clone(ctx.forge, repo, pr=pr.number if pr else None) as ws:
        fields = list(command.fields)
        since = None
        if pr is not None:
            since = merge_base(ws, pr.base)
        elif not fields:
            named = field_ids_in_text(f"{issue.get('title', '')}\n{issue.get('body') or ''}")
            fields = _existing_fields(ws.root, named, ctx.settings.semantic_path)
            if not fields:
                return PushResult(semantic_commit=ws.repo.head.commit.hexsha,
                                  message="this issue names no field; use `/push-to-dbt VIEW.FIELD`")
        request = PushRequest(semantic_repo=ws.root, fields=fields, since=since, dbt_forge_repo=ctx.settings.dbt_repo,
                              profiles_dir=ctx.settings.profiles_dir, origin=(repo, number),
                              semantic_path=ctx.settings.semantic_path, dbt_path=ctx.settings.dbt_path,
                              warehouse=ctx.settings.warehouse, prod_schema=ctx.settings.prod_schema,
                              prod_state=ctx.settings.prod_state)
        if command.as_model is not None:
            return push_as_model.run_for_comment(
                push_as_model.AsModelRequest(request, command.as_model, list(command.group_by), command.grain),
                ctx.forge, log=lambda line: ctx.log.debug("dbt | %s", line))
        return run(request, ctx.forge, log=lambda line: ctx.log.debug("dbt | %s", line))

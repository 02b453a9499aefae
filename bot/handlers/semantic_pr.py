"""A semantic-layer PR gets (and keeps up to date) a comment on what `/push-to-dbt` would do."""
from __future__ import annotations

from bot.handlers.context import Context, is_bot
from bot.handlers.router import Event, Router
from bot.handlers.semantic_checkout import merge_base, semantic_clone
from bot.push_to_dbt import PushRequest, PushResult, run

router = Router()


def preview_marker(number: int) -> str:
    return f"<!-- layersync:preview pr={number} -->"


def render_preview(result: PushResult) -> str:
    would = [p for p in result.pushed if p.action != "unchanged"]
    lines = ["**layersync** — what `/push-to-dbt` would push into dbt from this PR:", ""]
    metrics = [m for m in getattr(result, "metrics", []) if m.action != "unchanged"]
    if would:
        lines += ["| field | dbt column | change | SQL in dbt |", "|---|---|---|---|"]
        lines += [f"| `{p.id}` | `{p.model}.{p.column}` | {p.action} | `{(p.dbt_sql or '').replace('|', '/')}` |"
                  for p in would]
    elif not metrics:
        lines.append("_No field of this PR would change the dbt project._")
    if metrics:
        lines += ["", "| measure | MetricFlow metric | type | semantic model |", "|---|---|---|---|"]
        lines += [f"| `{m.id}` | `{m.metric}` | {m.kind} | `{m.semantic_model}` |" for m in metrics]
    if result.skipped:
        lines += ["", "Not pushed:", ""]
        lines += [f"- `{s.id}` ({s.file}:{s.line}): {s.reason}" if s.file and s.line else f"- `{s.id}`: {s.reason}"
                  for s in result.skipped]
    lines += ["", "Comment `/push-to-dbt` to open the dbt PR."]
    return "\n".join(lines)


@router.register("pull_request", action="opened")
@router.register("pull_request", action="synchronize")
@router.register("pull_request", action="reopened")
def on_semantic_pr(event: Event, ctx: Context) -> None:
    if event.repo != ctx.settings.semantic_repo or is_bot(event.payload.get("sender")):
        return
    pr = event.payload["pull_request"]
    number = int(pr["number"])
    with semantic_clone(ctx.forge, event.repo, pr=number, head_sha=(pr.get("head") or {}).get("sha")) as ws:
        request = PushRequest(semantic_repo=ws.root, since=merge_base(ws, pr["base"]["ref"]),
                              dbt_forge_repo=ctx.settings.dbt_repo, dry_run=True,
                              semantic_path=ctx.settings.semantic_path, dbt_path=ctx.settings.dbt_path)
        result = run(request, ctx.forge)
    ctx.forge.upsert_comment(event.repo, number, render_preview(result), preview_marker(number))

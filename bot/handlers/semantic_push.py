"""A push to the semantic-layer repo's default branch pushes its changed fields, if `auto_push` is on."""
from __future__ import annotations

from bot.handlers.context import Context, is_bot
from bot.handlers.router import Event, Router
from bot.handlers.semantic_checkout import semantic_clone
from bot.push_to_dbt import PushRequest, run

router = Router()
NULL_SHA = "0" * 40


@router.register("push")
def on_semantic_push(event: Event, ctx: Context) -> None:
    payload = event.payload
    if event.repo != ctx.settings.semantic_repo or not ctx.settings.auto_push or is_bot(payload.get("sender")):
        return
    default = (payload.get("repository") or {}).get("default_branch") or "main"
    if payload.get("ref") != f"refs/heads/{default}" or payload.get("deleted"):
        return
    before = payload.get("before")
    with semantic_clone(ctx.forge, event.repo, sha=payload["after"]) as ws:
        request = PushRequest(semantic_repo=ws.root, since=None if before in (None, NULL_SHA) else before,
                              dbt_forge_repo=ctx.settings.dbt_repo, profiles_dir=ctx.settings.profiles_dir,
                              semantic_path=ctx.settings.semantic_path, dbt_path=ctx.settings.dbt_path,
                              warehouse=ctx.settings.warehouse, prod_schema=ctx.settings.prod_schema,
                              prod_state=ctx.settings.prod_state)
        result = run(request, ctx.forge, log=lambda line: ctx.log.debug("dbt | %s", line))
    ctx.log.info("auto push-to-dbt for %s@%s: %s", event.repo, str(payload["after"])[:12], result.message)

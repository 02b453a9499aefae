"""A push to the dbt repo's default branch (a merge, usually): the semantic layer follows by a PR."""
from __future__ import annotations

from bot.gitops import Workspace
from bot.handlers.context import Context, is_bot
from bot.handlers.router import Event, Router
from bot.pull_from_dbt import PullJob, run

router = Router()
NULL_SHA = "0" * 40


def commit_authors(payload: dict) -> list[str]:
    """GitHub logins of the pushed commits' authors (those GitHub could match), bots left out: they are
    asked to review when their change breaks semantic fields."""
    logins = []
    for commit in payload.get("commits") or []:
        login = ((commit or {}).get("author") or {}).get("username")
        if login and not login.endswith("[bot]") and login not in logins:
            logins.append(login)
    return logins


@router.register("push")
def on_dbt_push(event: Event, ctx: Context) -> None:
    payload = event.payload
    if event.repo != ctx.settings.dbt_repo or is_bot(payload.get("sender")) or payload.get("deleted"):
        return
    default = (payload.get("repository") or {}).get("default_branch") or "main"
    if payload.get("ref") != f"refs/heads/{default}":
        return
    before, after = payload.get("before"), str(payload["after"])
    with Workspace(ctx.forge.remote_url(event.repo), ctx.forge.git_env(event.repo)) as dbt:
        job = PullJob(dbt_repo=dbt.root, semantic_forge_repo=ctx.settings.semantic_repo, head=after,
                      since=None if before in (None, NULL_SHA) else before, dbt_label=event.repo,
                      authors=commit_authors(payload), warehouse=ctx.settings.warehouse,
                      prod=ctx.settings.prod_env(), semantic_path=ctx.settings.semantic_path,
                      dbt_path=ctx.settings.dbt_path)
        result = run(job, ctx.forge, log=lambda line: ctx.log.debug("pull | %s", line))
    ctx.log.info("pull-from-dbt for %s@%s: %s", event.repo, after[:12], result.message)

"""A bot-opened dbt PR closed: merged closes the loop (the semantic layer adopts the columns);
closed unmerged is reported where the push was asked for."""
from __future__ import annotations

from bot import pr_body
from bot.adopt import adopt
from bot.forge.base import ForgeError
from bot.handlers.context import Context
from bot.handlers.router import Event, Router

router = Router()


def origin_marker(number: int) -> str:
    return f"<!-- layersync:dbt-pr-closed pr={number} -->"


def _open_pr_branch(ctx: Context, origin: list | None) -> str | None:
    """Fields pushed from a semantic PR still open live on its branch: the hand-back targets it."""
    if not origin or str(origin[0]) != ctx.settings.semantic_repo:
        return None
    try:
        pr = ctx.forge.get_pr(str(origin[0]), int(origin[1]))
    except ForgeError:  # an issue, not a PR
        return None
    return pr.head if pr.state == "open" else None


@router.register("pull_request", action="closed")
def on_dbt_pr_closed(event: Event, ctx: Context) -> None:
    pull = event.payload["pull_request"]
    if event.repo != ctx.settings.dbt_repo or not str(pull["head"]["ref"]).startswith(ctx.settings.branch_prefix):
        return
    facts = pr_body.read_hidden_json(pull.get("body"), "facts")
    if not isinstance(facts, dict):
        ctx.log.info("dbt PR %s#%s carries no layersync facts; nothing to do", event.repo, pull["number"])
        return
    origin = facts.get("origin")
    dbt_pr = ctx.forge.get_pr(event.repo, int(pull["number"]))
    if not pull.get("merged"):
        message = (f"The dbt PR {dbt_pr.url} was closed without merging: the fields keep their SQL in the "
                   f"semantic layer. Comment `/push-to-dbt` to try again.")
    else:
        outcome = adopt(ctx.forge, ctx.settings.semantic_repo, dbt_pr, list(facts.get("fields") or []),
                        base=_open_pr_branch(ctx, origin), semantic_path=ctx.settings.semantic_path)
        message = f"The dbt PR {dbt_pr.url} merged."
        if outcome.pr is not None:
            message += f" {outcome.pr.url} makes the semantic layer read the new dbt columns."
        if outcome.problems:
            message += "\n\nNot adopted:\n" + "\n".join(f"- {p}" for p in outcome.problems)
    if origin:
        ctx.forge.upsert_comment(str(origin[0]), int(origin[1]), message, origin_marker(dbt_pr.number))

"""Every dbt PR (the bot's and people's) gets an impact report, one comment edited on each push."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from bot.errors import LayersyncError
from bot.gitops import Workspace
from bot.handlers.context import Context
from bot.handlers.router import Event, Router
from bot.impact.report import marker, to_markdown
from bot.impact.build import dev_schema_name, drop_schema
from bot.impact.run import run_impact

router = Router()


@router.register("pull_request", action="opened")
@router.register("pull_request", action="synchronize")
@router.register("pull_request", action="reopened")
def on_dbt_pr(event: Event, ctx: Context) -> None:
    if event.repo != ctx.settings.dbt_repo:
        return
    pull = event.payload["pull_request"]
    number, sha = int(pull["number"]), str(pull["head"]["sha"])
    ctx.forge.set_status(event.repo, sha, "pending", "building the changed models into a dev schema")
    state, description = "error", "the impact report could not be made"
    workdir = Path(tempfile.mkdtemp(prefix="layersync-impact-"))
    try:
        with Workspace(ctx.forge.remote_url(event.repo), ctx.forge.git_env(event.repo)) as dbt, \
                Workspace(ctx.forge.remote_url(ctx.settings.semantic_repo),
                          ctx.forge.git_env(ctx.settings.semantic_repo)) as semantic:
            dbt.fetch(f"+refs/heads/{pull['head']['ref']}:refs/remotes/origin/{pull['head']['ref']}")
            try:
                doc = run_impact(dbt.root, f"origin/{pull['base']['ref']}", sha,
                                 semantic_repo=semantic.root, workdir=workdir, pr=number,
                                 warehouse=ctx.settings.warehouse, prod=ctx.settings.prod_env())
                body = to_markdown(doc)
                state, description = doc["status"]["state"], doc["status"]["description"]
            except LayersyncError as exc:
                body = f"{marker(number)}\n### layersync impact report\n\nThe report could not be made: {exc}"
        comment, _ = ctx.forge.upsert_comment(event.repo, number, body, marker(number))
        ctx.forge.set_status(event.repo, sha, state, description)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # the embedded warehouse and its dev schema go with it


@router.register("pull_request", action="closed")
def on_dbt_pr_closed(event: Event, ctx: Context) -> None:
    """A closed or merged PR's dev schema goes; only `layersync_` schemas can be dropped, never prod."""
    if event.repo != ctx.settings.dbt_repo or not ctx.settings.warehouse:
        return
    number = int(event.payload["pull_request"]["number"])
    dropped = drop_schema(ctx.settings.warehouse, dev_schema_name(number), protected={ctx.settings.prod_schema},
                          prod_schema=ctx.settings.prod_schema)
    ctx.log.info("dropped the dev schema(s) %s of %s#%s", ", ".join(dropped), event.repo, number)

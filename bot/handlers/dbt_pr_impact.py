"""Every dbt PR (the bot's and people's) gets an impact report, one comment edited on each push."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from bot.errors import LayersyncError
from bot.gitops import Workspace
from bot.handlers.context import Context
from bot.handlers.router import Event, Router
from bot.dbt_pr_warnings import TITLE, semantic_warnings, warnings_markdown
from bot.forge.base import BODY_LIMIT
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
            dbt.checkout_pr_head(ctx.forge.pr_head_ref(event.repo, number), sha)    # a fork's head too
            semantic_ref = paired_ref(semantic, pull["head"]["ref"])
            semantic.checkout_detached(f"origin/{semantic_ref}")
            section = _warnings(ctx, dbt, semantic, pull, sha, semantic_ref)
            ctx.forge.upsert_comment(event.repo, number, f"{marker(number)}\n{section}\n\n_The impact report is "
                                     "being built; it will appear here._", marker(number))
            try:
                doc = run_impact(dbt.root, f"origin/{pull['base']['ref']}", sha,
                                 semantic_repo=semantic.root, workdir=workdir, pr=number,
                                 warehouse=ctx.settings.warehouse, prod=ctx.settings.prod_env(),
                                 semantic_path=ctx.settings.semantic_path, dbt_path=ctx.settings.dbt_path)
                body = to_markdown(doc, limit=BODY_LIMIT - len(section) - 2) + "\n" + section
                state, description = doc["status"]["state"], doc["status"]["description"]
            except LayersyncError as exc:
                body = (f"{marker(number)}\n### layersync impact report\n\nThe report could not be made: {exc}"
                        f"\n\n{section}")
        comment, _ = ctx.forge.upsert_comment(event.repo, number, body, marker(number))
        ctx.forge.set_status(event.repo, sha, state, description)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # the embedded warehouse and its dev schema go with it


def paired_ref(semantic: Workspace, dbt_branch: str) -> str:
    """A semantic-layer branch named like the dbt PR's branch pairs with it: its views are the ones
    this PR is judged against. Otherwise the semantic repo's default branch."""
    return dbt_branch if semantic.remote_branch_sha(dbt_branch) is not None else semantic.default_branch()


def _warnings(ctx: Context, dbt: Workspace, semantic: Workspace, pull: dict, sha: str, semantic_ref: str) -> str:
    """Static: which semantic fields the PR breaks or alters. A failure here must not cost the report."""
    try:
        base = dbt.merge_base(f"origin/{pull['base']['ref']}", sha)
        notes = semantic_warnings(dbt.root, base, sha, semantic.root, semantic_path=ctx.settings.semantic_path,
                                  dbt_path=ctx.settings.dbt_path)
    except LayersyncError as exc:
        return f"{TITLE}\n\nThe semantic layer could not be checked: {exc}"
    return warnings_markdown(notes, ctx.settings.semantic_repo, semantic_ref)


@router.register("pull_request", action="closed")
def on_dbt_pr_closed(event: Event, ctx: Context) -> None:
    """A closed or merged PR's dev schema goes; only `layersync_` schemas can be dropped, never prod."""
    if event.repo != ctx.settings.dbt_repo or not ctx.settings.warehouse:
        return
    number = int(event.payload["pull_request"]["number"])
    dropped = drop_schema(ctx.settings.warehouse, dev_schema_name(number), protected={ctx.settings.prod_schema},
                          prod_schema=ctx.settings.prod_schema)
    ctx.log.info("dropped the dev schema(s) %s of %s#%s", ", ".join(dropped), event.repo, number)

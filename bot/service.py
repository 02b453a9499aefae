"""The running service: settings from the environment (and an optional file), the forge, and the
job handler the worker calls — webhook event → router → handlers."""
from __future__ import annotations

import json
import logging

from bot import pr_body, progress
from bot.errors import RepoError
from bot.forge.base import Forge, ForgeError, PullRequest, TransientForgeError
from bot.handlers import dbt_pr_closed, dbt_pr_impact, dbt_push, push_command, semantic_pr, semantic_push
from bot.handlers import preview as preview_handler
from bot.handlers.context import Context, Settings
from bot.handlers.router import Event, Router
from bot.jobs.queue import Job
from bot.jobs.worker import TransientError
from bot.redact import scrub
from bot.service_config import ServiceConfig, data_dir

log = logging.getLogger("layersync.service")
ROUTER = Router(push_command.router, semantic_pr.router, semantic_push.router, dbt_pr_closed.router,
                dbt_pr_impact.router, dbt_push.router, preview_handler.router)


def make_forge(config: ServiceConfig) -> Forge:
    if config.forge == "local":
        from bot.forge.local import LocalForge
        return LocalForge(config.state_db or data_dir() / "state.sqlite")
    from bot.forge.github import GitHubForge
    extra = {"bot_login": config.bot_login} if config.bot_login else {}
    if config.github_app_id and config.github_private_key:
        installation = int(config.github_installation_id) if config.github_installation_id else None
        return GitHubForge.from_app(config.github_app_id, config.github_private_key, installation,
                                    base_url=config.github_api_url, **extra)
    return GitHubForge.from_token(str(config.github_token), base_url=config.github_api_url, **extra)


class JobHandler:
    """What the worker runs for each job; forge and git failures that may pass become retries."""

    def __init__(self, context: Context, router: Router = ROUTER):
        self.context = context
        self.router = router

    def __call__(self, job: Job) -> None:
        event = Event(job.event, job.payload, job.delivery_id)
        try:
            # the job's dbt runs log their steps and nodes (`job 12: [3/36] model orders ok`)
            with progress.reporting(progress.Logged(log, f"{job.id} ({job.event})")):
                self.router.dispatch(event, self.context)
        except TransientForgeError as exc:
            raise TransientError(str(exc), exc.retry_after) from exc
        except RepoError as exc:
            # Clones and pushes fail when the network or the host does; a rerun is safe (idempotent).
            raise TransientError(str(exc)) from exc

    def on_failure(self, job: Job, reason: str) -> None:
        """A job that failed for good says so where the user asked for it, describing what exists:
        a worker killed after the push (before the job was marked done) leaves a dbt PR, and the
        reply must not then say "failed"."""
        reason = scrub(reason)
        payload = job.payload
        if job.event != "issue_comment" or "comment" not in payload:
            log.error("job %s (%s) failed: %s", job.id, job.event, reason)
            return
        repo = payload["repository"]["full_name"]
        number = int(payload["issue"]["number"])
        marker = push_command.reply_marker(int(payload["comment"]["id"]))
        try:
            preview = preview_handler.failure_reply(payload, reason)   # a `/preview` job: its own reply
            if preview is not None:
                repo, number, body, marker = preview
            else:
                body = self._push_give_up_reply(job, repo, number, marker, reason)
            if body is None:
                log.warning("job %s gave up, but its reply already reports the push; left in place", job.id)
                return
            self.context.forge.upsert_comment(repo, number, scrub(body), marker)
        except ForgeError as exc:
            log.error("could not report failure of job %s: %s", job.id, scrub(str(exc)))

    def _push_give_up_reply(self, job: Job, repo: str, number: int, marker: str, reason: str) -> str | None:
        """None to keep a reply that already says "Pushed to dbt"; else what exists, then why."""
        forge = self.context.forge
        reply = next((c.body for c in forge.list_comments(repo, number) if marker in c.body), "")
        if any(line.startswith(push_command.PUSHED) for line in reply.splitlines()):
            return None
        pr = self._dbt_pr_from(repo, number)
        why = f"<details><summary>Why the job stopped</summary>\n\n{reason}\n\n</details>"
        if pr is not None and job.deaths:
            return (f"⚠️ push-to-dbt did not finish: the worker stopped {job.deaths} times while running this; "
                    f"the dbt PR #{pr.number} exists: {pr.url}\n\nIt may not have this comment's latest "
                    f"result: check it, or comment `/push-to-dbt` again to refresh it.\n\n{why}")
        body = f"❌ push-to-dbt failed: {reason}\n\nThe job is recorded; fix the cause and comment again."
        if pr is not None:
            body += f"\n\nA dbt PR pushed from here exists: #{pr.number} {pr.url}"
        return body

    def _dbt_pr_from(self, repo: str, number: int) -> PullRequest | None:
        """The newest open dbt PR whose hidden facts name this issue or PR as its origin (the branch
        depends on the fields pushed, which only a rerun of the selection could tell)."""
        origin = [repo, number]
        mine = [pr for pr in self.context.forge.list_prs(self.context.settings.dbt_repo, state="open")
                if _origin(pr) == origin]
        return max(mine, key=lambda pr: pr.number, default=None)


def _origin(pr: PullRequest) -> object:
    facts = pr_body.read_hidden_json(pr.body, "facts")
    return facts.get("origin") if isinstance(facts, dict) else None


def build_handler(config: ServiceConfig, forge: Forge | None = None) -> JobHandler:
    settings = Settings(dbt_repo=config.dbt_repo, semantic_repo=config.semantic_repo, auto_push=config.auto_push,
                        profiles_dir=config.profiles_dir, warehouse=config.warehouse,
                        prod_schema=config.prod_schema, prod_state=config.prod_state,
                        build_prod=config.build_prod, preview_db=config.preview_db,
                        preview_max=config.preview_max, semantic_path=config.semantic_path,
                        dbt_path=config.dbt_path)
    return JobHandler(Context(forge or make_forge(config), settings))


def describe(config: ServiceConfig) -> str:
    return json.dumps({"forge": config.forge, "dbt_repo": config.dbt_repo, "semantic_repo": config.semantic_repo,
                       "queue_db": str(config.queue_db), "auto_push": config.auto_push})

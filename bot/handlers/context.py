"""What every handler needs: the forge, the two repos, settings, a logger."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bot.forge.base import Forge
from bot.handlers.commands import mention, quote

if TYPE_CHECKING:
    from bot.impact.prod import ProdEnv

WRITE_LEVELS = frozenset({"write", "maintain", "admin"})


@dataclass(frozen=True)
class Settings:
    dbt_repo: str                      # the forge's name for it: "owner/name" (GitHub) or a path (local)
    semantic_repo: str
    auto_push: bool = False
    profiles_dir: Path | None = None
    branch_prefix: str = "layersync/push/"
    warehouse: str | None = None       # a persistent warehouse for impact reports (DuckDB path or postgresql:// DSN)
    prod_schema: str = "prod"          # the schema the dbt project's prod target builds into
    prod_state: Path | None = None     # the prod job's manifest.json (else `dbt parse` of the base as prod)
    build_prod: bool = False           # layersync builds the base into prod (a warehouse only layersync uses)
    preview_db: Path | None = None     # branch previews' registry (default: <data dir>/previews.sqlite)
    preview_max: int = 10              # at most this many preview schemas at once (per warehouse)
    semantic_path: str = ""            # the semantic model's folder in its repo (monorepos; "": the root)
    dbt_path: str = ""                 # the dbt project's folder in its repo (dbt runs there)

    def prod_env(self) -> "ProdEnv":
        """Prod as configured; without a warehouse each run has a scratch DuckDB, so prod is built there."""
        from bot.impact.prod import ProdEnv
        return ProdEnv(schema=self.prod_schema, state=self.prod_state,
                       build=self.build_prod or not self.warehouse)


@dataclass
class Context:
    forge: Forge
    settings: Settings
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("layersync"))


def is_bot(user: dict | None) -> bool:
    """Bots (ourselves included) never trigger work: no loops, no bot-to-bot ping-pong."""
    user = user or {}
    return user.get("type") == "Bot" or str(user.get("login", "")).endswith("[bot]")


def can_write(ctx: Context, repo: str, login: str) -> bool:
    return ctx.forge.permission(repo, login) in WRITE_LEVELS


def denial_marker(number: int) -> str:
    """One "needs write access" reply per thread, whoever asks and however often."""
    return f"<!-- layersync:needs-write-access issue={number} -->"


def may_write(ctx: Context, repo: str, number: int, login: str, command: str) -> bool:
    """Whether `login` may run `command` on `repo`. If not, the thread is told why, in its one
    denial reply (edited in place): a reader's comment never runs anything and never goes
    unanswered, yet readers can neither make the bot post a comment per comment nor overwrite one
    of its reports (a preview's, a push's) with the refusal."""
    level = ctx.forge.permission(repo, login)
    if level in WRITE_LEVELS:
        return True
    marker = denial_marker(number)
    ctx.forge.upsert_comment(repo, number, f"{marker}\n{mention(login)} {quote(command)} needs write access to "
                                           f"{quote(repo)} (you have {quote(level)}). Ask a maintainer to run it.",
                             marker)
    return False

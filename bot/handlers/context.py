"""What every handler needs: the forge, the two repos, settings, a logger."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from bot.forge.base import Forge

WRITE_LEVELS = frozenset({"write", "maintain", "admin"})


@dataclass(frozen=True)
class Settings:
    dbt_repo: str                      # the forge's name for it: "owner/name" (GitHub) or a path (local)
    semantic_repo: str
    auto_push: bool = False
    profiles_dir: Path | None = None
    branch_prefix: str = "layersync/push/"
    warehouse: str | None = None       # a persistent warehouse for impact reports (DuckDB path or postgresql:// DSN)


@dataclass
class Context:
    forge: Forge
    settings: Settings
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("layersync"))


def is_bot(user: dict | None) -> bool:
    """Bots (ourselves included) never trigger work: no loops, no bot-to-bot ping-pong."""
    user = user or {}
    return user.get("type") == "Bot" or str(user.get("login", "")).endswith("[bot]")

"""Service settings from the environment and an optional YAML file (no git, SQL or HTTP here:
the webhook receiver reads these too)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ruamel.yaml import YAML

from bot import redact, repo_paths
from bot.errors import LayersyncError

TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class ServiceConfig:
    webhook_secret: str
    dbt_repo: str
    semantic_repo: str
    queue_db: Path
    forge: str = "github"                 # "github" | "local"
    github_api_url: str = "https://api.github.com"
    github_token: str | None = None
    github_app_id: str | None = None
    github_private_key: str | None = None
    github_installation_id: str | None = None
    bot_login: str | None = None          # the bot's own login, when GitHub cannot tell it (tokens of a bot user)
    auto_push: bool = False
    state_db: Path | None = None          # local forge only
    profiles_dir: Path | None = None
    lease_seconds: float = 600.0          # a job whose worker died runs again after this long
    warehouse: str | None = None          # impact reports: DuckDB path or postgresql:// DSN (default: a scratch DuckDB per run)
    prod_schema: str = "prod"             # the schema the dbt project's prod target builds into
    prod_state: Path | None = None        # the prod job's manifest.json (default: `dbt parse` of the base as prod)
    build_prod: bool = False              # layersync builds the base into prod (only for a warehouse it owns)
    preview_db: Path | None = None        # branch previews' registry (default: <data dir>/previews.sqlite)
    preview_max: int = 10                 # cap on concurrent preview schemas (per warehouse)
    semantic_path: str = ""               # the semantic model's folder in its repo (monorepos; "": the root)
    dbt_path: str = ""                    # the dbt project's folder in its repo (dbt runs there)

    def __repr__(self) -> str:  # never print secrets, even by accident in a traceback or log
        return (f"ServiceConfig(forge={self.forge!r}, dbt_repo={self.dbt_repo!r}, "
                f"semantic_repo={self.semantic_repo!r}, queue_db={str(self.queue_db)!r})")


def data_dir() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "layersync"


def load_service_config(env: Mapping[str, str] | None = None, config_file: Path | None = None) -> ServiceConfig:
    """Environment variables win over the file, so a deployment can override one setting.

    Every secret read here (the file's or the environment's) is registered with `bot.redact` before
    anything else can quote it: from then on every door out of the process masks it."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    path = config_file or (Path(env["LAYERSYNC_CONFIG"]) if env.get("LAYERSYNC_CONFIG") else None)
    if path is not None:
        values.update(_read_config_file(path))
    for key in ("webhook_secret", "dbt_repo", "semantic_repo", "queue_db", "forge", "github_api_url",
                "github_token", "github_app_id", "github_private_key", "github_installation_id", "bot_login",
                "auto_push", "state_db", "profiles_dir", "lease_seconds", "warehouse", "prod_schema",
                "prod_state", "build_prod", "preview_db", "preview_max", "semantic_path", "dbt_path"):
        if env.get(f"LAYERSYNC_{key.upper()}"):
            values[key] = env[f"LAYERSYNC_{key.upper()}"]
    problems: list[str] = []             # every one at once: a deployment is fixed in one round
    key_file = env.get("LAYERSYNC_GITHUB_PRIVATE_KEY_FILE") or values.pop("github_private_key_file", None)
    if key_file and not values.get("github_private_key"):
        try:
            values["github_private_key"] = Path(key_file).read_text()
        except OSError as exc:
            problems.append(f"LAYERSYNC_GITHUB_PRIVATE_KEY_FILE `{key_file}` cannot be read ({exc.strerror or exc})")
    _register_secrets(values)
    missing = [k for k in ("webhook_secret", "dbt_repo", "semantic_repo") if not values.get(k)]
    if missing:
        problems.insert(0, "missing setting(s): " + ", ".join(f"LAYERSYNC_{k.upper()}" for k in missing))
    forge = str(values.get("forge", "github"))
    if forge == "github" and not (values.get("github_token") or (values.get("github_app_id")
                                                                 and values.get("github_private_key"))):
        if not any("PRIVATE_KEY_FILE" in p for p in problems):
            problems.append("GitHub needs LAYERSYNC_GITHUB_TOKEN, or LAYERSYNC_GITHUB_APP_ID with "
                            "LAYERSYNC_GITHUB_PRIVATE_KEY(_FILE)")
    if problems:
        raise LayersyncError("; ".join(problems))
    return ServiceConfig(
        webhook_secret=str(values["webhook_secret"]), dbt_repo=str(values["dbt_repo"]),
        semantic_repo=str(values["semantic_repo"]),
        queue_db=Path(values.get("queue_db") or data_dir() / "jobs.sqlite"), forge=forge,
        github_api_url=str(values.get("github_api_url") or "https://api.github.com"),
        github_token=values.get("github_token"), github_app_id=values.get("github_app_id"),
        github_private_key=values.get("github_private_key"),
        github_installation_id=values.get("github_installation_id"), bot_login=values.get("bot_login"),
        auto_push=str(values.get("auto_push", "")).lower() in TRUE or values.get("auto_push") is True,
        state_db=Path(values["state_db"]) if values.get("state_db") else None,
        profiles_dir=Path(values["profiles_dir"]) if values.get("profiles_dir") else None,
        lease_seconds=_positive_number(values.get("lease_seconds"), "LAYERSYNC_LEASE_SECONDS", 600.0),
        warehouse=str(values["warehouse"]) if values.get("warehouse") else None,
        prod_schema=str(values.get("prod_schema") or "prod"),
        prod_state=Path(values["prod_state"]) if values.get("prod_state") else None,
        build_prod=str(values.get("build_prod", "")).lower() in TRUE or values.get("build_prod") is True,
        preview_db=Path(values["preview_db"]) if values.get("preview_db") else None,
        preview_max=_positive_int(values.get("preview_max"), "LAYERSYNC_PREVIEW_MAX", 10),
        semantic_path=repo_paths.subdir(_text(values.get("semantic_path"), "LAYERSYNC_SEMANTIC_PATH"),
                                        "LAYERSYNC_SEMANTIC_PATH"),
        dbt_path=repo_paths.subdir(_text(values.get("dbt_path"), "LAYERSYNC_DBT_PATH"), "LAYERSYNC_DBT_PATH"),
    )


def _read_config_file(path: Path) -> dict[str, Any]:
    """The settings file as a mapping; anything else is one error naming the file (and line)."""
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    if not path.is_file():
        raise LayersyncError(f"config file `{path}` " + ("is a folder" if path.is_dir() else "does not exist"))
    try:
        doc = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise LayersyncError(f"config file is not valid YAML: {exc.problem}", str(path),
                             mark.line + 1 if mark is not None else None) from None
    except (YAMLError, UnicodeDecodeError) as exc:
        raise LayersyncError(f"config file `{path}` is not valid YAML: {exc}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise LayersyncError(f"config file `{path}` must be a mapping of settings (`webhook_secret: …`), "
                             f"not a {type(doc).__name__}")
    return doc


def _positive_number(value: Any, name: str, default: float) -> float:
    if value in (None, ""):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if not number > 0:
        raise LayersyncError(f"{name} must be a number of seconds above 0, not `{value}`")
    return number


def _text(value: Any, name: str) -> str:
    """A folder setting: text (a YAML list or number there is a mistake, said so)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise LayersyncError(f"{name} must be a folder path, not a {type(value).__name__}")
    return value


def _register_secrets(values: Mapping[str, Any]) -> None:
    """The token, webhook secret, private key and the warehouse DSN's password, as configured."""
    key = values.get("github_private_key")
    secrets = [values.get("github_token"), values.get("webhook_secret"), key]
    if isinstance(key, str) and "\\n" in key:
        secrets.append(key.replace("\\n", "\n"))      # a PEM squeezed onto one line, as the forge unfolds it
    secrets.append(redact.url_password(str(values["warehouse"])) if values.get("warehouse") else None)
    redact.register(*(str(s) for s in secrets if s))


def _positive_int(value: Any, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(str(value).strip())
    except ValueError:
        number = 0
    if number < 1:
        raise LayersyncError(f"{name} must be a whole number of at least 1, not `{value}`")
    return number

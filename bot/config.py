"""Settings a team keeps in `layersync.yml` at the semantic-layer repo's root (all optional)."""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import sqlglot
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from bot.errors import LayersyncError

CONFIG_FILE = "layersync.yml"


@dataclass(frozen=True)
class Config:
    dialect: str = "duckdb"            # SQL dialect of the semantic layer's `sql:` expressions
    dbt_dialect: str = "duckdb"        # dialect of the dbt project's warehouse
    format: str = "omni"               # semantic-layer file format (reader)
    branch_prefix: str = "layersync/push/"
    base_branch: str | None = None     # dbt repo branch PRs target; None: the remote's default
    auto_push: bool = False
    dbt_check: bool = True             # run `dbt parse` + `dbt compile` before committing

    def with_overrides(self, **values: Any) -> "Config":
        return replace(self, **{k: v for k, v in values.items() if v is not None})

    def validated(self, source: str = CONFIG_FILE) -> "Config":
        """A dialect sqlglot does not know would fail on the first field; say so up front instead."""
        for key in ("dialect", "dbt_dialect"):
            name = getattr(self, key)
            try:
                sqlglot.Dialect.get_or_raise(name)
            except ValueError:
                raise LayersyncError(f"unknown SQL dialect `{name}` for `{key}`", source) from None
        return self


def parse_config(text: str | None, source: str = CONFIG_FILE) -> Config:
    """Unknown keys are errors: a typo silently ignored would push with the wrong dialect."""
    if not text or not text.strip():
        return Config()
    try:
        data = YAML(typ="safe").load(text) or {}
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise LayersyncError(f"invalid YAML: {getattr(exc, 'problem', exc)}", source,
                             mark.line + 1 if mark else None) from None
    if not isinstance(data, dict):
        raise LayersyncError("must be a mapping of settings", source, 1)
    known = {f.name for f in fields(Config)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise LayersyncError(f"unknown setting(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})", source)
    return Config().with_overrides(**data)

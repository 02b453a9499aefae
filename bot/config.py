"""Settings a team keeps in `layersync.yml` at the semantic-layer repo's root (all optional)."""
from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from typing import Any, Iterable

import sqlglot
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from bot.errors import LayersyncError
from bot.semantic.formats import SemanticFormat, detect_format, format_for, format_names
from bot.yamlbounds import bounded

CONFIG_FILE = "layersync.yml"
MAX_PREFIX_BYTES = 100       # leaves room for the field's part of the branch name (see push_to_dbt)
MAX_COMPONENT_BYTES = 255    # what a file name may hold: git stores each ref component as one
_TYPES: dict[str, tuple[type, ...]] = {
    "dialect": (str,), "dbt_dialect": (str,), "format": (str, type(None)), "branch_prefix": (str,),
    "base_branch": (str, type(None)), "auto_push": (bool,), "dbt_check": (bool,),
}
# What `git check-ref-format` refuses anywhere in a name (besides control characters).
_REF_FORBIDDEN = re.compile(r"[ ~^:?*\[\\]|\.\.|@\{|//")


def ref_format_problem(branch: str) -> str | None:
    """Why git would refuse `branch` as a branch name, if it would: `git check-ref-format --branch`'s
    rules, in Python so a bad name is a one-line error before any git command runs."""
    if not branch:
        return "it is empty"
    if branch.startswith("-"):
        return "it starts with `-`"
    if branch == "@":
        return "it is `@`"
    bad = next((c for c in branch if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        return f"it contains the control character {bad!r}"
    forbidden = _REF_FORBIDDEN.search(branch)
    if forbidden:
        return f"it contains `{forbidden.group()}`"
    if branch.startswith("/") or branch.endswith("/"):
        return "it starts or ends with `/`"
    if branch.endswith("."):
        return "it ends with `.`"
    for component in branch.split("/"):
        if component.startswith("."):
            return f"its part `{component[:40]}` starts with `.`"
        if component.endswith(".lock"):
            return f"its part `{component[:40]}` ends with `.lock`"
        if len(component.encode()) > MAX_COMPONENT_BYTES:
            return f"its part `{component[:40]}…` is longer than {MAX_COMPONENT_BYTES} bytes"
    return None


@dataclass(frozen=True)
class Config:
    dialect: str = "duckdb"            # SQL dialect of the semantic layer's `sql:` expressions
    dbt_dialect: str = "duckdb"        # dialect of the dbt project's warehouse
    format: str | None = None          # semantic-layer format (omni, views); None: detected from the files
    branch_prefix: str = "layersync/push/"
    base_branch: str | None = None     # dbt repo branch PRs target; None: the remote's default
    auto_push: bool = False
    dbt_check: bool = True             # let dbt judge the edit before committing (`dbt build --empty`, else `dbt compile`)

    def semantic_format(self, paths: Iterable[str], root: str = "") -> SemanticFormat:
        """The format `format` names, else the one the model's files show (see `detect_format`):
        `paths` are the repo's files, or only those `bot.semantic.formats.is_detection_path` keeps."""
        return format_for(self.format or detect_format(paths, root), root)

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

    def checked(self, text: str, source: str = CONFIG_FILE) -> "Config":
        """Settings git or the code would trip on later (with a traceback, or a git error naming temp
        paths) are refused here, with the line of `text` they are on."""
        for item in fields(self):
            value = getattr(self, item.name)
            if not isinstance(value, _TYPES[item.name]):
                wanted = " or ".join("null" if t is type(None) else t.__name__ for t in _TYPES[item.name])
                # A list or mapping is named, never printed: str() of YAML aliases expands them all.
                shown = f"a {type(value).__name__}" if isinstance(value, (dict, list)) else f"`{str(value)[:80]}`"
                raise LayersyncError(f"`{item.name}` must be {wanted}, not {shown}",
                                     source, _key_line(text, item.name))
        if self.format is not None and self.format not in format_names():
            raise LayersyncError(f"unknown semantic-layer format `{self.format[:80]}` for `format` (known: "
                                 f"{', '.join(format_names())}; leave it out to detect it)", source,
                                 _key_line(text, "format"))
        problem = ref_format_problem(self.branch_prefix + "x")
        if problem is None and len(self.branch_prefix.encode()) > MAX_PREFIX_BYTES:
            problem = f"it is longer than {MAX_PREFIX_BYTES} bytes"
        if problem:
            raise LayersyncError(f"`branch_prefix` `{self.branch_prefix[:80]}` cannot start a git branch name: "
                                 f"{problem}", source, _key_line(text, "branch_prefix"))
        if self.base_branch is not None and (problem := ref_format_problem(self.base_branch)):
            raise LayersyncError(f"`base_branch` `{self.base_branch[:80]}` is not a git branch name: {problem}",
                                 source, _key_line(text, "base_branch"))
        return self


def _key_line(text: str, key: str) -> int | None:
    """1-based line of a top-level key, read again with positions (only when reporting an error)."""
    try:
        data = YAML().load(text)
        return data.lc.key(key)[0] + 1
    except (YAMLError, AttributeError, KeyError, TypeError):
        return None


def parse_config(text: str | None, source: str = CONFIG_FILE) -> Config:
    """Unknown keys are errors: a typo silently ignored would push with the wrong dialect."""
    if not text or not text.strip():
        return Config()
    try:
        data = bounded(YAML(typ="safe").load(text)) or {}
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
    return Config().with_overrides(**data).checked(text, source)

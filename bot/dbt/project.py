"""Where things are in a dbt project: models by name or alias, and the YAML that documents them.

Reads through a `FileStore` so the same code serves a checkout on disk and in-memory tests, and
opens only the files it needs: a project of thousands of models is indexed by file names alone.
"""
from __future__ import annotations

import ast
import json
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable, Mapping, Protocol

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from bot import repo_paths
from bot.errors import RepoError
from bot.yamlbounds import bounded

YAML_SUFFIXES = (".yml", ".yaml")
_FastLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class FileStore(Protocol):
    def read_text(self, path: str) -> str | None: ...

    def list_files(self, under: str) -> list[str]: ...


class DirStore:
    """Files of a checkout on disk; paths are POSIX and relative to the root."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def read_text(self, path: str) -> str | None:
        full = self.root / path
        return full.read_text(encoding="utf-8") if full.is_file() else None

    def list_files(self, under: str) -> list[str]:
        base = self.root / under
        if not base.is_dir():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in base.rglob("*")
                      if p.is_file() and not any(part.startswith(".") for part in p.relative_to(self.root).parts))


class MemoryStore:
    """Files in a dict, with pending edits layered on top (what the checkout will look like)."""

    def __init__(self, files: Mapping[str, str], base: FileStore | None = None):
        self.files = dict(files)
        self.base = base

    def read_text(self, path: str) -> str | None:
        if path in self.files:
            return self.files[path]
        return self.base.read_text(path) if self.base else None

    def list_files(self, under: str) -> list[str]:
        prefix = under.rstrip("/") + "/"
        own = {p for p in self.files if p.startswith(prefix)}
        return sorted(own | set(self.base.list_files(under) if self.base else []))


class SubStore:
    """A dbt project in a folder of its repository (a monorepo's `dbt-project/`), read through a
    store of the whole repository: paths in and out are relative to the project, as dbt's are."""

    def __init__(self, store: FileStore, root: str):
        self.store = store
        self.root = root.strip("/")

    def read_text(self, path: str) -> str | None:
        return self.store.read_text(repo_paths.join(self.root, path))

    def list_files(self, under: str) -> list[str]:
        listed = self.store.list_files(repo_paths.join(self.root, under.strip("/")))
        inner = (repo_paths.inside(self.root, p) for p in listed)
        return [p for p in inner if p is not None]


def project_store(store: FileStore, root: str) -> FileStore:
    """`store` itself for a project at the repository's root, else the project's folder of it."""
    return SubStore(store, root) if root else store


@dataclass(frozen=True)
class Model:
    name: str
    path: str          # the model's .sql file
    directory: str


@dataclass(frozen=True)
class Source:
    """One table of a dbt `sources:` entry: a model reads it as `{{ source('<source>', '<table>') }}`."""

    source: str
    table: str
    schema: str                      # the warehouse schema (`schema:`, else the source's name)
    path: str                        # the YAML file declaring it
    columns: tuple[str, ...] | None  # the columns it lists, None when it lists none


def config_alias(sql: str) -> str | None:
    """`alias=` from a `{{ config(...) }}` call; Jinja call syntax is Python's, so `ast` reads it."""
    start = sql.find("config(")
    while start >= 0:
        depth, end = 0, start + len("config")
        for end in range(start + len("config"), len(sql)):
            depth += {"(": 1, ")": -1}.get(sql[end], 0)
            if depth == 0:
                break
        try:
            call = ast.parse(sql[start:end + 1], mode="eval").body
        except SyntaxError:
            call = None
        if isinstance(call, ast.Call):
            for keyword in call.keywords:
                if keyword.arg == "alias" and isinstance(keyword.value, ast.Constant):
                    return str(keyword.value.value)
        start = sql.find("config(", end)
    return None


def normalise_table_name(table_name: str) -> str:
    """`analytics."ORDERS"` → `orders`: views name tables as the warehouse sees them."""
    last = table_name.strip().split(".")[-1]
    return last.strip('"`[]').lower()


def model_named_by(table_name: str, aliases: Mapping[str, str]) -> str:
    """The model (lower case) a view's `table_name` reads: through `aliases` (relation → model, for
    models dbt aliases), else the relation's own name."""
    relation = normalise_table_name(table_name)
    return aliases.get(relation, relation)


def _paths(data: Mapping, *keys: str, default: str) -> list[str]:
    """A `*-paths` setting of dbt_project.yml (the first key set; older dbt spellings after it)."""
    for key in keys:
        value = data.get(key)
        if isinstance(value, list) and value:
            return [str(p).rstrip("/") for p in value]
    return [default]


class DbtProject:
    def __init__(self, store: FileStore):
        self.store = store
        text = store.read_text("dbt_project.yml")
        if text is None:
            raise RepoError("not a dbt project: no dbt_project.yml", "dbt_project.yml")
        try:
            data = bounded(YAML(typ="safe").load(text)) or {}
        except YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise RepoError(f"invalid YAML: {getattr(exc, 'problem', exc)}", "dbt_project.yml",
                            mark.line + 1 if mark else None) from None
        self.name: str = str(data.get("name", ""))
        self.profile: str = str(data.get("profile") or self.name)
        self.model_paths: list[str] = _paths(data, "model-paths", "source-paths", default="models")
        self.seed_paths: list[str] = _paths(data, "seed-paths", "data-paths", default="seeds")
        self.snapshot_paths: list[str] = _paths(data, "snapshot-paths", default="snapshots")
        target = data.get("target-path")
        self.target_path: str = str(target).strip("/") if isinstance(target, str) and target.strip("/") else "target"
        self._models: dict[str, Model] | None = None
        self._listing: list[str] | None = None
        self._declared: dict[tuple[str, int], list[str]] = {}

    def _files(self) -> list[str]:
        """Listed once per project object: a planner asks for every field, the tree does not change
        under it (files the plan creates are known to it by path)."""
        if self._listing is None:
            self._listing = [path for root in self.model_paths for path in self.store.list_files(root)]
        return self._listing

    def models(self) -> dict[str, Model]:
        if self._models is None:
            self._models = {}
            for path in self._files():
                if path.endswith(".sql"):
                    posix = PurePosixPath(path)
                    self._models[posix.stem.lower()] = Model(posix.stem, path, str(posix.parent))
        return self._models

    def find_model(self, table_name: str) -> Model | None:
        """By model name first, then by a `config(alias=...)`; the alias scan reads files only when needed."""
        wanted = normalise_table_name(table_name)
        models = self.models()
        if wanted in models:
            return models[wanted]
        for model in models.values():
            text = self.store.read_text(model.path) or ""
            if "alias" in text and (config_alias(text) or "").lower() == wanted:
                return model
        for path in self._yaml_files():
            text = self.store.read_text(path) or ""
            if "alias" not in text:
                continue
            match = _yaml_alias_owner(text, wanted)
            if match and match.lower() in models:
                return models[match.lower()]
        return None

    def find_seed(self, name: str) -> str | None:
        """The seed's CSV file, by name: a seed depends on no model, so any model may `ref` it."""
        wanted = normalise_table_name(name)
        for root in self.seed_paths:
            for path in self.store.list_files(root):
                posix = PurePosixPath(path)
                if posix.suffix.lower() == ".csv" and posix.stem.lower() == wanted:
                    return path
        return None

    def find_source(self, table_name: str) -> list[Source]:
        """The source tables a view's `table_name` may be, by their warehouse name (`identifier`) or dbt's
        (`name`); a source depends on no model, so any model may read it. Several when several sources
        declare that name."""
        wanted = normalise_table_name(table_name)
        found: list[Source] = []
        for path in self._yaml_files():
            text = self.store.read_text(path) or ""
            if "sources" not in text or wanted not in text.lower():
                continue
            data = fast_yaml(text)
            for entry in data.get("sources") or [] if isinstance(data, dict) else []:
                if not isinstance(entry, dict) or not isinstance(entry.get("tables"), list):
                    continue
                for table in entry["tables"]:
                    if not isinstance(table, dict) or table.get("name") is None:
                        continue
                    names = {str(table["name"]).lower(), str(table.get("identifier") or table["name"]).lower()}
                    if wanted not in names:
                        continue
                    columns = [c.get("name") for c in table.get("columns") or [] if isinstance(c, dict)]
                    found.append(Source(str(entry.get("name")), str(table["name"]),
                                        str(entry.get("schema") or entry.get("name")), path,
                                        tuple(str(c) for c in columns if c is not None) or None))
        return found

    def compiled_code(self, names: Iterable[str]) -> dict[str, str]:
        """The SQL dbt compiled for these models (macros expanded, refs resolved), from the manifest the
        last `dbt compile` left in the target path; by model name (lower case), only those compiled."""
        text = self.store.read_text(f"{self.target_path}/manifest.json")
        try:
            nodes = json.loads(text).get("nodes", {}) if text else {}
        except (ValueError, AttributeError):
            return {}
        wanted = {n.lower() for n in names}
        found: dict[str, str] = {}
        for node in nodes.values() if isinstance(nodes, dict) else ():
            if isinstance(node, dict) and node.get("resource_type") == "model" and \
                    str(node.get("name", "")).lower() in wanted and node.get("package_name") == self.name and \
                    isinstance(node.get("compiled_code"), str):
                found[str(node["name"]).lower()] = node["compiled_code"]
        return found

    def refs(self, model_name: str) -> list[str]:
        """The models `model_name` refs directly (its SQL as the store has it now)."""
        model = self.models().get(model_name.lower())
        return refs_in(self.store.read_text(model.path) or "") if model is not None else []

    def dependency_path(self, start: str, goal: str) -> list[str] | None:
        """`start -> ... -> goal` through `ref()`s, shortest first, or None when `start` does not depend on
        `goal`: a join from `goal` to `start` would then close that chain into a cycle. Only the models
        reached are read."""
        start, goal = start.lower(), goal.lower()
        came_from: dict[str, str | None] = {start: None}
        pending = deque([start])
        while pending:
            current = pending.popleft()
            if current == goal:
                chain = [current]
                while came_from[chain[-1]] is not None:
                    chain.append(came_from[chain[-1]])  # type: ignore[arg-type]
                return chain[::-1]
            for parent in self.refs(current):
                if parent not in came_from:
                    came_from[parent] = current
                    pending.append(parent)
        return None

    def _yaml_files(self) -> list[str]:
        return [p for p in self._files() if p.endswith(YAML_SUFFIXES)]

    def properties_file(self, model: Model) -> tuple[str, bool]:
        """The YAML file documenting `model`, and whether it already declares it.

        Where none does, the conventional place: a models file in the model's own directory
        (`_<dir>__models.yml` style or any that declares models), else a new `_<dir>__models.yml`.
        """
        candidates = self._yaml_files()
        for path in candidates:
            text = self.store.read_text(path) or ""
            if model.name in text and model.name in self._declared_models(path, text):
                return path, True
        siblings = sorted(p for p in candidates if str(PurePosixPath(p).parent) == model.directory)
        dir_name = PurePosixPath(model.directory).name
        preferred = [p for p in siblings if PurePosixPath(p).name.startswith(f"_{dir_name}__models")]
        for path in preferred + siblings:
            if self._declared_models(path, self.store.read_text(path) or ""):
                return path, False
        return f"{model.directory}/_{dir_name}__models.yml", False

    def _declared_models(self, path: str, text: str) -> list[str]:
        """Models a YAML file declares; parsed once per content, since big projects ask often.

        Only to locate files, so libyaml's fast loader does; the edit itself re-reads the file
        strictly (duplicate keys, exact lines) through `schema_yaml`.
        """
        key = (path, hash(text))
        if key not in self._declared:
            self._declared[key] = _fast_model_names(text)
        return self._declared[key]


def fast_yaml(text: str) -> object:
    """libyaml's safe loader: ten times ruamel's round-trip speed, for reading where no edit follows.
    None when the text is not YAML (callers that edit find out why, with a line, from `schema_yaml`)."""
    try:
        return bounded(yaml.load(text, Loader=_FastLoader))
    except yaml.YAMLError:
        return None


def _fast_model_names(text: str) -> list[str]:
    data = fast_yaml(text)
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, list):
        return []
    return [str(entry["name"]) for entry in models if isinstance(entry, dict) and entry.get("name") is not None]


_REF = re.compile(r"""\bref\(\s*['"]([^'"]+)['"]\s*(?:,\s*['"]([^'"]+)['"]\s*)?[,)]""")


def refs_in(sql: str) -> list[str]:
    """Models a model's SQL `ref()`s (lower case, in order, each once); `ref('pkg', 'model')` is the model."""
    found: dict[str, None] = {}
    for match in _REF.finditer(sql):
        found.setdefault((match.group(2) or match.group(1)).lower(), None)
    return list(found)


def _yaml_alias_owner(text: str, alias: str) -> str | None:
    try:
        data = bounded(YAML(typ="safe").load(text)) or {}
    except YAMLError:
        return None
    for entry in data.get("models") or [] if isinstance(data, dict) else []:
        if isinstance(entry, dict):
            config = entry.get("config") or {}
            if isinstance(config, dict) and str(config.get("alias", "")).lower() == alias:
                return str(entry.get("name"))
    return None

"""Minimal-diff edits of dbt properties YAML (`models:` / `columns:`), through `bot.yamledit`.

layersync opens pull requests against files people maintain by hand, so a reviewer must see only
the lines the bot had to touch. What is dbt's here is the policy: where a column is documented
(a model's `columns:` list, created after `description:`), which key tests go under (`data_tests:`,
or the legacy `tests:` the file already uses), where `meta` lives (`config: meta:` since dbt 1.10,
unless the file writes `meta:`), that a column is found by name case-insensitively when the name
is unique that way, and that a repeated call changes nothing. Splicing in the file's own layout and
proving by a re-read that nothing else changed is the kit's.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.yamledit import Document, Spaced, YamlEditError

__all__ = [
    "ColumnDoc",
    "SchemaYamlError",
    "column_entry",
    "model_names",
    "remove_column",
    "upsert_column",
    "upsert_columns",
    "upsert_columns_changes",
]

_TEST_KEYS = ("data_tests", "tests")


class SchemaYamlError(ValueError):
    """A YAML file layersync cannot edit; .line is 1-based or None."""

    def __init__(self, message: str, line: int | None = None):
        self.message = message
        self.line = line
        super().__init__(f"line {line}: {message}" if line is not None else message)


@dataclass(frozen=True)
class ColumnDoc:
    """One column to document: the arguments of `upsert_column`, for batches."""

    model: str
    column: str
    description: str | None = None
    tests: tuple[str, ...] = ()
    meta: Mapping[str, Any] | None = None


# --------------------------------------------------------------------------
# Reading the dbt structure (with validation that yields line numbers)
# --------------------------------------------------------------------------


class _File:
    """A properties file opened for edits: the kit's document and its validated `models:` list."""

    def __init__(self, text: str):
        try:
            self.doc = Document(text)
        except YamlEditError as exc:
            raise SchemaYamlError(exc.message, exc.line) from None
        data = self.doc.data
        if data is not None and not isinstance(data, dict):
            raise SchemaYamlError("top level of a dbt properties file must be a mapping", 1)
        models = (data or {}).get("models")
        if models is not None and not isinstance(models, list):
            raise SchemaYamlError("`models:` must be a list", self.doc.line(("models",)))
        self.models: list[dict] = models or []
        self._check(self.models, ("models",))

    def _check(self, entries: list, path: tuple) -> None:
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise SchemaYamlError(f"entry {index + 1} of `{path[-1]}:` is not a mapping",
                                      self.doc.line((*path, index)))

    def model(self, name: str) -> int | None:
        """By name as read, else as written (YAML 1.1 reads a model named `yes` as a boolean)."""
        found = next((i for i, m in enumerate(self.models) if str(m.get("name")) == name), None)
        if found is None:
            found = next((i for i in range(len(self.models))
                          if getattr(self.doc.node(("models", i, "name")), "value", None) == name), None)
        return found

    def columns(self, model: int) -> list[dict] | None:
        columns = self.models[model].get("columns")
        if columns is None:
            return None
        path = ("models", model, "columns")
        if not isinstance(columns, list):
            raise SchemaYamlError("`columns:` must be a list", self.doc.line(path))
        self._check(columns, path)
        return columns

    def entries(self) -> Iterable[dict]:
        """Model and column entries in document order: where the file's conventions live."""
        for model in self.models:
            yield model
            if isinstance(model.get("columns"), list):
                yield from (c for c in model["columns"] if isinstance(c, dict))

    def result(self, what: str) -> str:
        try:
            return self.doc.result(what)
        except YamlEditError as exc:
            raise SchemaYamlError(exc.message, exc.line) from None


def _find(columns: Sequence[Mapping] | None, column: str) -> int | None:
    """Exact name first; dbt column names are usually case-insensitive, so fall back when unique."""
    names = [str(entry.get("name")) for entry in columns or ()]
    if column in names:
        return names.index(column)
    folded = [i for i, name in enumerate(names) if name.casefold() == column.casefold()]
    return folded[0] if len(folded) == 1 else None


def _test_name(test: Any) -> str:
    """`unique`, `{accepted_values: {...}}` and `{name: x, test_name: y}` all name a test."""
    if isinstance(test, Mapping):
        return str(test["test_name"]) if "test_name" in test else str(next(iter(test), ""))
    return str(test)


def _tests_key(nodes: Iterable[Mapping]) -> str:
    """Follow the file: `tests:` in legacy projects, `data_tests:` (dbt ≥ 1.8) otherwise."""
    return next((str(k) for node in nodes for k in node if k in _TEST_KEYS), "data_tests")


def _prefers_config_meta(nodes: Iterable[Mapping]) -> bool:
    """The first model or column entry that writes `meta` says how the file writes it; dbt ≥ 1.10
    wants `config: {meta: ...}`."""
    for node in nodes:
        if "meta" in node:
            return False
        config = node.get("config")
        if isinstance(config, Mapping) and "meta" in config:
            return True
    return True


# --------------------------------------------------------------------------
# Planning a batch: what one call at a time would do, as kit edits on one document
# --------------------------------------------------------------------------


class _Batch:
    """The entries as one call at a time would leave them, then written with one `update` per model."""

    def __init__(self, file: _File):
        self.file = file
        self.tests_key = _tests_key(file.entries())
        self.meta_in_config = _prefers_config_meta(file.entries())
        self.models = list(file.models)    # a model is copied when the batch first touches it
        self.touched: list[int] = []
        self.new_models: list[dict] = []

    def add(self, doc: ColumnDoc) -> None:
        index = self.file.model(doc.model)
        if index is None:
            index = next((i for i, m in enumerate(self.new_models) if m["name"] == doc.model), None)
            index = None if index is None else len(self.file.models) + index
        if index is None:
            self.new_models.append({"name": doc.model, "columns": []})
            self.models.append(self.new_models[-1])
            index = len(self.models) - 1
        if index < len(self.file.models):
            self.file.columns(index)   # validated, with its line
            if index not in self.touched:
                self.touched.append(index)
                self.models[index] = copy.deepcopy(self.models[index])
        model = self.models[index]
        if model.get("columns") is None:
            _insert_after(model, "columns", [], "description")
        columns = model["columns"]
        found = _find(columns, doc.column)
        if found is None:
            columns.append({"name": doc.column})
            found = len(columns) - 1
        self._update(columns[found], doc, (index, found))

    def _update(self, entry: dict, doc: ColumnDoc, where: tuple[int, int]) -> None:
        if doc.description is not None and (entry.get("description") is None
                                            or str(entry["description"]) != doc.description):
            _insert_after(entry, "description", doc.description, "name")
        if doc.meta:
            config = entry.get("config")
            if isinstance(entry.get("meta"), dict):
                holder = entry["meta"]
            elif isinstance(config, dict) and isinstance(config.get("meta"), dict):
                holder = config["meta"]
            elif self.meta_in_config and "meta" not in entry:
                if not isinstance(config, dict):
                    entry["config"] = config = {}
                holder = config.setdefault("meta", {})
            else:
                holder = entry.setdefault("meta", {})
            holder.update(doc.meta)
        tests = (doc.tests,) if isinstance(doc.tests, str) else doc.tests
        if tests:
            present = next((k for k in _TEST_KEYS if k in entry), None)
            current = entry.get(present) if present else None
            if current is not None and not isinstance(current, list):
                line = self.file.doc.line(("models", *where[:1], "columns", where[1], present))
                raise SchemaYamlError(f"`{present}:` must be a list", line)
            names = {_test_name(t) for t in current or ()}
            missing = [t for t in dict.fromkeys(tests) if t not in names]
            if missing:
                entry[present or self.tests_key] = list(current or ()) + missing

    def apply(self) -> set[tuple[str, str]]:
        doc, changed = self.file.doc, set()
        for index in self.touched:
            before, after = self.file.models[index], self.models[index]
            old = {str(c.get("name")): c for c in before.get("columns") or ()}
            changed |= {(str(after.get("name")), str(c["name"]).lower()) for c in after["columns"]
                        if old.get(str(c["name"])) != c}
            doc.update(("models", index), after)
        if self.new_models:
            changed |= {(m["name"], str(c["name"]).lower()) for m in self.new_models for c in m["columns"]}
            separate = doc.separated(("models",))
            separate = True if separate is None else separate
            if not self.file.models:
                doc.set(("models",), Spaced(self.new_models) if separate else self.new_models)
            else:
                for model in self.new_models:
                    doc.append(("models",), model, separate=separate)
        return changed


def _insert_after(entry: dict, key: str, value: Any, anchor: str) -> None:
    """`key` set; a new key goes right after `anchor` (dbt's docs put `description:` after `name:`,
    `columns:` after `description:`), else last."""
    if key in entry or anchor not in entry:
        entry[key] = value
        return
    items = list(entry.items())
    items.insert(list(entry).index(anchor) + 1, (key, value))
    entry.clear()
    entry.update(items)


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------


def model_names(text: str) -> list[str]:
    """Names of the models declared in a dbt properties YAML text (the `models:` list); [] if none.
    Raises SchemaYamlError (with line) on invalid YAML, including duplicate keys."""
    return [str(m["name"]) for m in _File(text or "").models if m.get("name") is not None]


def upsert_column(text: str | None, model: str, column: str, *, description: str | None = None,
                  tests: Sequence[str] = (), meta: Mapping[str, Any] | None = None) -> str:
    """Return the YAML text with `column` documented under `model`.

    Creates the file (`text` None/empty), the `models:` key, the model entry, its `columns:` and the
    column entry as needed; on an existing column sets the description when it differs, merges
    `meta` keys and appends missing tests (by test name, never removing or reordering). Tests go
    under the key the file already uses (`data_tests:` or legacy `tests:`), meta under `meta:` or
    `config: meta:` likewise (default: `config:`, dbt >= 1.10).

    Why the care: the result lands in a reviewed pull request, so only the lines the change
    requires differ from `text`, and a repeated call with the same arguments returns `text` itself.
    """
    if isinstance(tests, str):  # a lone "unique" would otherwise be split into letters
        tests = (tests,)
    return upsert_columns(text, [ColumnDoc(model, column, description, tuple(tests), meta)])


def upsert_columns(text: str | None, columns: Sequence[ColumnDoc]) -> str:
    """`upsert_column` for several columns with one parse and one re-read: the same result as
    calling it in turn."""
    return upsert_columns_changes(text, columns)[0]


def upsert_columns_changes(text: str | None, columns: Sequence[ColumnDoc]) -> tuple[str, set[tuple[str, str]]]:
    """`upsert_columns`, and which entries it changed, as (model, column lower-cased): a planner
    reports a field as documented only when its entry changed."""
    if not columns:
        return text or "", set()
    file = _File(text or "")
    if file.doc.root is None:   # new, or only comments (kept above it)
        file.doc.set(("version",), 2)
    batch = _Batch(file)
    for doc in columns:
        batch.add(doc)
    changed = batch.apply()
    return file.result("documenting columns"), changed


def remove_column(text: str, model: str, column: str) -> str:
    """Drop the column's entry (used when a pushed field is withdrawn); unchanged text if absent.
    A model left without columns loses its `columns:` key."""
    if not text.strip():
        return text
    file = _File(text)
    index = file.model(model)
    columns = file.columns(index) if index is not None else None
    found = _find(columns, column)
    if columns is None or found is None:
        return text
    path = ("models", index, "columns")
    file.doc.remove(path if len(columns) == 1 else (*path, found))
    return file.result(f"removing column `{column}` of `{model}`")


def column_entry(text: str, model: str, column: str) -> dict | None:
    """Plain-Python view of the column's entry, or None.

    Keys: `name`, `description` (str or None), `tests` (list of str or mappings, from `data_tests:`
    or `tests:`) and `meta` (`meta:` merged with `config: meta:`; the latter wins).
    """
    file = _File(text or "")
    index = file.model(model)
    columns = file.columns(index) if index is not None else None
    found = _find(columns, column)
    if columns is None or found is None:
        return None
    entry = columns[found]
    description = entry.get("description")
    tests = next((entry[k] for k in _TEST_KEYS if entry.get(k) is not None), [])
    config = entry.get("config")
    meta = dict(entry.get("meta") or {})
    if isinstance(config, Mapping) and isinstance(config.get("meta"), Mapping):
        meta.update(config["meta"])
    return {"name": str(entry.get("name")), "description": None if description is None else str(description),
            "tests": tests, "meta": meta}

"""A MetricsPlan written into the dbt project's properties files with the YAML edit kit (pure).

A new semantic model goes into the properties file of its dbt model (the one documenting its
columns), its metrics beside it; an extended one is edited where the project wrote it. Each file
is edited once, for all its additions, and re-read by the kit: the rest of it stays byte-identical.
The time spine MetricFlow needs is added as a model of its own when the project has none.
"""
from __future__ import annotations

from dataclasses import dataclass, field as dc_field, replace
from pathlib import PurePosixPath
from typing import Any

from bot.dbt.project import DbtProject, FileStore
from bot.dbt.semantic_layer import TIME_SPINE_LEGACY, read_semantic_layer
from bot.errors import LayersyncError
from bot.semantic.model import SemanticModel
from bot.translate.metrics import MetricsPlan, MetricTranslator, SemanticModelDraft
from bot.translate.push import FieldRequest, Skipped
from bot.yamledit import Document

TIME_SPINE_SQL = """\
-- One row per day: the calendar MetricFlow joins time-based metrics to. Written by layersync
-- because the project had no time spine; extend the range when your data needs it.
{{ config(materialized='table') }}

with days as (

    {{ dbt.date_spine('day', "cast('2000-01-01' as date)", "cast('2040-01-01' as date)") }}

)

select cast(date_day as date) as date_day
from days
"""
TIME_SPINE_MODEL = {
    "name": TIME_SPINE_LEGACY,
    "description": "One row per day, for MetricFlow's time-based joins (written by layersync).",
    "time_spine": {"standard_granularity_column": "date_day"},
    "columns": [{"name": "date_day", "granularity": "day"}],
}


@dataclass
class Written:
    files: dict[str, str] = dc_field(default_factory=dict)          # path → new text
    failed: dict[str, LayersyncError] = dc_field(default_factory=dict)   # path → why it could not be edited
    homes: dict[str, str] = dc_field(default_factory=dict)          # semantic model → the file it is in


class _Files:
    def __init__(self, store: FileStore):
        self.store = store
        self.docs: dict[str, Document] = {}
        self.created: dict[str, str] = {}

    def doc(self, path: str) -> Document:
        held = self.docs.get(path)
        if held is None:
            text = self.store.read_text(path)
            if text is None:
                self.created[path] = text = "version: 2\n"
            held = self.docs[path] = Document(text, path)
        return held


def write_plan(plan: MetricsPlan, project: DbtProject) -> Written:
    """The files the plan changes; a file the kit cannot edit is in `failed`, the rest still written."""
    files = _Files(project.store)
    written = Written()
    new_models: dict[str, list[dict[str, Any]]] = {}
    for draft in plan.semantic_models.values():
        if not draft.changes:
            written.homes[draft.name] = draft.existing.file if draft.existing else project.properties_file(draft.model)[0]
            continue
        if draft.is_new:
            path = project.properties_file(draft.model)[0]
            new_models.setdefault(path, []).append(draft.document())
            written.homes[draft.name] = path
        else:
            assert draft.existing is not None
            written.homes[draft.name] = draft.existing.file
            _extend(files.doc(draft.existing.file), draft)
    for path, models in new_models.items():
        _add_list(files.doc(path), "semantic_models", models)
    new_metrics: dict[str, list[dict[str, Any]]] = {}
    for metric in plan.metrics:
        if metric.existing is not None:
            files.doc(metric.existing.file).set(("metrics", {"name": metric.name}), metric.definition)
            continue
        new_metrics.setdefault(written.homes[metric.semantic_model], []).append(metric.definition)
    for path, metrics in new_metrics.items():
        _add_list(files.doc(path), "metrics", metrics)
    for path, doc in files.docs.items():
        try:
            text = doc.result(f"adding MetricFlow definitions to {path}")
        except LayersyncError as exc:
            written.failed[path] = exc
            continue
        if text != project.store.read_text(path):
            written.files[path] = text
    if plan.time_spine:
        root = project.model_paths[0] if project.model_paths else "models"
        sql_path, yaml_path = f"{root}/{TIME_SPINE_LEGACY}.sql", f"{root}/{TIME_SPINE_LEGACY}.yml"
        if project.store.read_text(sql_path) is None and project.store.read_text(yaml_path) is None:
            doc = Document("version: 2\n", yaml_path)
            doc.set(("models",), [TIME_SPINE_MODEL])
            written.files[sql_path] = TIME_SPINE_SQL
            written.files[yaml_path] = doc.result("writing the time spine")
    return written


def _add_list(doc: Document, key: str, items: list[dict[str, Any]]) -> None:
    if isinstance(doc.get((key,)), list):
        for item in items:
            doc.append((key,), item)
    else:
        doc.set((key,), items)


def _extend(doc: Document, draft: SemanticModelDraft) -> None:
    """Additions to the project's own semantic model: entities, dimensions, our measures, a default."""
    assert draft.existing is not None
    at = ("semantic_models", {"name": draft.existing.name})
    for key in ("entities", "dimensions"):
        items = getattr(draft, key)
        if items:
            _add_list_at(doc, (*at, key), items)
    fresh = []
    for measure in draft.measures:
        if measure["name"] in draft.existing.measures:
            doc.set((*at, "measures", {"name": measure["name"]}), measure)
        else:
            fresh.append(measure)
    if fresh:
        _add_list_at(doc, (*at, "measures"), fresh)
    if draft.set_agg_time and draft.agg_time_dimension:
        if isinstance(doc.get((*at, "defaults")), dict):
            doc.set((*at, "defaults", "agg_time_dimension"), draft.agg_time_dimension)
        else:
            doc.set((*at, "defaults"), {"agg_time_dimension": draft.agg_time_dimension})


def _add_list_at(doc: Document, path: tuple, items: list[dict[str, Any]]) -> None:
    if isinstance(doc.get(path), list):
        for item in items:
            doc.append(path, item)
    else:
        doc.set(path, items)


def files_of(plan: MetricsPlan, written: Written) -> MetricsPlan:
    """Each pushed metric with the files its definitions went into."""
    spine = tuple(p for p in written.files if PurePosixPath(p).stem == TIME_SPINE_LEGACY)
    pushed = []
    for item in plan.pushed:
        home = written.homes.get(item.semantic_model)
        files = tuple(p for p in (home,) if p in written.files) + spine if item.action != "unchanged" else ()
        pushed.append(replace(item, files=files))
    plan.pushed = pushed
    return plan


def plan_metrics(store: FileStore, semantic: SemanticModel, requests: list[FieldRequest], *,
                 dialect: str = "duckdb", dbt_dialect: str = "duckdb",
                 excluded: dict[str, Skipped] | None = None,
                 leave_out: set[str] | None = None,
                 column_types: dict[str, dict[str, str]] | None = None) -> tuple[MetricsPlan, dict[str, str]]:
    """Translate and write; the measures of a file the kit cannot edit are skipped with why, and the
    rest planned again without them, so nothing of theirs stays half-written."""
    excluded = dict(excluded or {})
    while True:
        project = DbtProject(store)
        layer = read_semantic_layer(project)
        plan = MetricTranslator(semantic, project, layer, dialect=dialect, dbt_dialect=dbt_dialect,
                                leave_out=leave_out, column_types=column_types).translate(
            [r for r in requests if r.field.id not in excluded])
        written = write_plan(plan, project)
        if not written.failed:
            break
        before = len(excluded)
        for item in plan.pushed:
            path = written.homes.get(item.semantic_model)
            failure = written.failed.get(path or "") or (next(iter(written.failed.values())) if path is None else None)
            if failure is not None:
                excluded[item.id] = Skipped(item.id, item.file, item.line,
                                            f"cannot edit {path}: {failure.message}", "yaml-error")
        if len(excluded) == before:             # a file no pushed measure lives in: fail them all
            for item in plan.pushed:
                path, failure = next(iter(written.failed.items()))
                excluded[item.id] = Skipped(item.id, item.file, item.line, f"cannot edit {path}: {failure.message}",
                                            "yaml-error")
    plan.skipped.extend(s for s in excluded.values() if s.id not in {k.id for k in plan.skipped})
    return files_of(plan, written), written.files

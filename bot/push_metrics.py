"""push-to-dbt for measures: MetricFlow definitions planned, judged by dbt and MetricFlow, and their
numbers compared with the BI definition's, all before anything is committed.

Round one: `dbt parse` (it validates the semantic manifest) and `mf validate-configs --skip-dw`; a
measure either blames is dropped with their words and the rest planned again. Round two, when
parity is on: the branch is built (every model, into a layersync schema of its own), MetricFlow's
warehouse checks run on the build, and each metric is queried beside its BI measure.
"""
from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass, field as dc_field, replace
from pathlib import Path
from typing import Any, Callable

from bot import repo_paths
from bot.dbt.catalog import from_warehouse
from bot.dbt.metricflow import SemanticCheck, check_semantics
from bot.dbt.project import DbtProject, DirStore, FileStore, MemoryStore
from bot.impact.build import Target, build_prod, dev_schema_name, drop_schema, write_build_profile
from bot.impact.metric_parity import Parity, check_parity
from bot.impact.prod import relations
from bot.semantic.model import SemanticModel
from bot.translate.metrics import MetricsPlan, PushedMetric
from bot.translate.metrics_write import plan_metrics
from bot.translate.push import FieldRequest, Skipped

Log = Callable[[str], None]


@dataclass
class MetricsOutcome:
    plan: MetricsPlan
    files: dict[str, str] = dc_field(default_factory=dict)     # dbt-project paths → text
    parity: Parity | None = None
    parity_error: str | None = None                           # why values could not be checked

    @property
    def pushed(self) -> list[PushedMetric]:
        return self.plan.pushed


def measure_requests(requests: list[FieldRequest]) -> list[FieldRequest]:
    return [r for r in requests if r.field.kind == "measure"]


def dry_run(store: FileStore, semantic: Callable[[], SemanticModel] | None, requests: list[FieldRequest],
            config: Any) -> MetricsOutcome:
    """The plan against the base revision: nothing checked, nothing written."""
    measures = measure_requests(requests)
    if not measures or semantic is None:
        return MetricsOutcome(MetricsPlan())
    plan, files = plan_metrics(store, semantic(), measures, dialect=config.dialect, dbt_dialect=config.dbt_dialect)
    return MetricsOutcome(plan, files)


def _owner(plan: MetricsPlan, name: str) -> PushedMetric | None:
    for item in plan.pushed:
        names = {item.metric, *(m["name"] for m in item.measures)}
        if name in names or name.startswith(item.metric + "_part_"):
            return item
    return None


def _names(plan: MetricsPlan) -> tuple[list[str], dict[str, str]]:
    """Every name an error may blame: metrics and measures (→ their field), and our dimensions."""
    names = [n for p in plan.pushed for n in (p.metric, *(m["name"] for m in p.measures))]
    names += [m.name for m in plan.metrics]
    dimensions = {f"{d.name}.{dim['name']}": dim["name"] for d in plan.semantic_models.values() for dim in d.dimensions}
    return list(dict.fromkeys(names)), dimensions


def _blame(plan: MetricsPlan, check: SemanticCheck, excluded: dict[str, Skipped], leave_out: set[str],
           who: str) -> None:
    """Drop what the check names: a measure or metric (its field is skipped with the message), or one of
    our dimensions (left out); when it names nothing of ours, every changed field of the round."""
    reason = f"{who} rejected the definition: " + " / ".join(check.errors[:6])
    _, dimensions = _names(plan)
    hit = False
    for name in check.blamed:
        owner = _owner(plan, name)
        if owner is not None:
            excluded[owner.id] = Skipped(owner.id, owner.file, owner.line, reason, "dbt-error")
            hit = True
        elif name in dimensions.values():
            leave_out.add(name)
            plan.notes.append(f"dimension `{name}` left out: " + " / ".join(check.errors[:2]))
            hit = True
    if not hit:
        for item in plan.pushed:
            if item.action != "unchanged":
                excluded[item.id] = Skipped(item.id, item.file, item.line, reason, "dbt-error")


def plan_and_check(ws: Any, dbt_path: str, requests: list[FieldRequest], config: Any,
                   semantic: Callable[[], SemanticModel] | None, column_files: dict[str, str], *,
                   profiles_dir: Path | None = None, parity: bool = True, warehouse: str | Path | None = None,
                   log: Log | None = None) -> MetricsOutcome:
    """`column_files`: the columns' edits (dbt-project paths) the metrics are planned on top of."""
    measures = measure_requests(requests)
    if not measures or semantic is None:
        return MetricsOutcome(MetricsPlan())
    model = semantic()
    project_dir = ws.root / dbt_path if dbt_path else ws.root
    profile = DbtProject(DirStore(project_dir)).profile
    excluded: dict[str, Skipped] = {}
    leave_out: set[str] = set()

    types: dict[str, dict[str, str]] = {}        # the build's column types, once there is a build

    def planned() -> tuple[MetricsPlan, dict[str, str]]:
        store = MemoryStore(dict(column_files), base=DirStore(project_dir))
        return plan_metrics(store, model, measures, dialect=config.dialect, dbt_dialect=config.dbt_dialect,
                            excluded=excluded, leave_out=leave_out, column_types=types)

    with_parity = parity and config.dbt_check

    def checked(plan: MetricsPlan, files: dict[str, str], profiles: Path | None, dw: bool,
                metricflow: bool = True) -> bool:
        written = _write(ws, dbt_path, {**column_files, **files})
        try:
            names, dimensions = _names(plan)
            # with parity, MetricFlow's checks run once, on the build (its warehouse checks included)
            check = check_semantics(project_dir, profile, profiles_dir=profiles, warehouse=dw,
                                    metricflow=metricflow, names=[*names, *dimensions.values()],
                                    log=log)
        finally:
            ws.discard(written)
        if check.ok:
            return True
        _blame(plan, check, excluded, leave_out, "dbt" if check.stage == "dbt parse" else "MetricFlow")
        return False

    while True:                      # each failed round drops at least one field or dimension, so this ends
        plan, files = planned()
        if not files or not config.dbt_check or checked(plan, files, profiles_dir, False, not with_parity):
            break
    outcome = MetricsOutcome(plan, files)
    if not (with_parity and files and plan.pushed):
        return outcome
    with tempfile.TemporaryDirectory(prefix="layersync-parity-") as tmp:
        target = Target.parse(warehouse) if warehouse is not None else Target.duckdb(Path(tmp) / "warehouse.duckdb")
        schema = dev_schema_name("metrics_" + hashlib.sha1("\n".join(sorted(files)).encode()).hexdigest()[:8])
        written = _write(ws, dbt_path, {**column_files, **files})
        try:
            build, _ = build_prod(project_dir, target, schema, log=log)
        finally:
            ws.discard(written)
        try:
            return _checked_on_build(build, target, schema, tmp, planned, checked, project_dir, model,
                                     config, profiles_dir, log, types)
        finally:
            if warehouse is not None:            # a warehouse of the user's: leave no schema of ours behind
                drop_schema(target, schema, set())


def _checked_on_build(build: Any, target: Target, schema: str, tmp: str,
                      planned: Callable[[], tuple[MetricsPlan, dict[str, str]]], checked: Callable[..., bool],
                      project_dir: Path, model: SemanticModel, config: Any, profiles_dir: Path | None,
                      log: Log | None, types: dict[str, dict[str, str]]) -> MetricsOutcome:
    """MetricFlow's checks against the build, then parity; a failed data test does not stop either (the
    models were built), a model that failed does. The build's column types replace guesses from names:
    a date column is a time dimension whatever it is called, and joins are checked on real types."""
    if not build.selected or build.failed:
        while True:              # MetricFlow's own checks still run, without the warehouse
            plan, files = planned()
            if not files or checked(plan, files, profiles_dir, False):
                break
        outcome = MetricsOutcome(plan, files, parity_error="the branch did not build, so values were not "
                                                           "compared: " + " / ".join(build.errors[:4]))
        return outcome
    profiles = Path(tmp) / "profiles"
    write_build_profile(profiles, project_dir, target, schema)
    assert build.manifest is not None
    built = {name.lower(): rel for name, rel in relations(json.loads(build.manifest.read_text())).items()}
    with target.open(read_only=True) as wh:
        types.update(from_warehouse(wh, built))
    while True:
        plan, files = planned()
        if not files or checked(plan, files, profiles, True):
            break
    outcome = MetricsOutcome(plan, files)
    if not plan.pushed:
        return outcome
    # mf reads target/semantic_manifest.json, which the last check parsed with the build's profile
    outcome.parity = check_parity(project_dir, profiles, target, model, plan, built, dialect=target.dialect,
                                  read_dialect=config.dialect, log=log)
    outcome.plan.pushed = [replace(p, parity=tuple(outcome.parity.rows.get(p.id, ()))) for p in plan.pushed]
    return outcome


def _write(ws: Any, dbt_path: str, files: dict[str, str]) -> list[str]:
    paths = {repo_paths.join(dbt_path, p): t for p, t in files.items()}
    ws.write(paths)
    return list(paths)


def status(outcome: MetricsOutcome) -> tuple[str, str] | None:
    """The commit status the metrics' parity gives the branch, when values were compared (or could not be)."""
    if outcome.parity_error:
        return "failure", outcome.parity_error
    if outcome.parity is None:
        return None
    failing = outcome.parity.failing()
    if outcome.parity.errors or failing:
        return "failure", (f"metric parity: {len(failing)} of {len(outcome.parity.rows)} metrics differ from the BI "
                           f"definition" if failing else "metric parity: " + outcome.parity.errors[0])
    return "success", f"metric parity: {len(outcome.parity.rows)} metrics match the BI definition"


def metric_json(item: PushedMetric) -> dict[str, Any]:
    """A pushed measure in `push-to-dbt --json`'s `pushed` list."""
    doc: dict[str, Any] = {"field": item.id, "file": item.file, "line": item.line, "semantic_model": item.semantic_model,
                           "metric": item.metric, "kind": item.kind, "action": item.action,
                           "agg_time_dimension": item.agg_time_dimension, "semantic_sql": item.semantic_sql,
                           "files": list(item.files)}
    if item.parity is not None:
        doc["parity"] = [dict(r) for r in item.parity]
    return doc

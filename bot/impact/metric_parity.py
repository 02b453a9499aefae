"""Parity of pushed metrics: `mf query` of each metric on the branch's build, beside the BI measure's
own definition evaluated directly in the warehouse, in total and by one low-cardinality dimension.

MetricFlow starts in seconds, so it is asked once per grouping for all the metrics that use it; the
BI side is one SELECT per view and grouping (bot.translate.measure_sql, the SQL a BI tool runs).
"""
from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field as dc_field
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Sequence

from sqlglot import exp

from bot.dbt.metricflow import query_metrics
from bot.errors import LayersyncError
from bot.impact.semantic_diff import MAX_GROUP_VALUES
from bot.semantic.model import SemanticModel, View
from bot.semantic.refs import Resolver
from bot.translate.measure_sql import measure_query
from bot.translate.metrics import MetricsPlan, PushedMetric, SemanticModelDraft

Relation = tuple[str, str]                 # (schema, table) of a built model


@dataclass
class Parity:
    rows: dict[str, list[dict[str, Any]]] = dc_field(default_factory=dict)   # field id → parity rows
    grouped_by: dict[str, str] = dc_field(default_factory=dict)              # field id → BI dimension id
    errors: list[str] = dc_field(default_factory=list)
    queries: int = 0                                                         # `mf query` runs

    @property
    def ok(self) -> bool:
        return not self.errors and all(r["ok"] for rows in self.rows.values() for r in rows)

    def failing(self) -> list[str]:
        return [i for i, rows in self.rows.items() if not rows or not all(r["ok"] for r in rows)]


def _number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def group_key(value: Any) -> str | None:
    """One spelling for a group value as DuckDB/PostgreSQL return it and as MetricFlow's CSV writes it."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (_dt.datetime, _dt.date)):
        text = value.isoformat(sep=" ") if isinstance(value, _dt.datetime) else value.isoformat()
        return text[:-9] if text.endswith(" 00:00:00") else text
    if isinstance(value, (int, float, Decimal)):
        number = float(value)
        return str(int(number)) if number.is_integer() else repr(number)
    text = str(value)
    if text.lower() in ("true", "false"):
        return text.lower()
    if text.endswith(" 00:00:00"):
        text = text[:-9]
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() and "e" not in text.lower() else repr(number)


def same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (_dt.date, _dt.datetime)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def low_cardinality(wh: Any, view: View, draft: SemanticModelDraft, table: exp.Expression,
                    dialect: str) -> str | None:
    """The first categorical dimension of the semantic model with 2 to 12 values on the build, words
    before numbers: the grouping a reviewer reads at a glance."""
    types = {d["name"]: d.get("type") for d in draft.dimensions}
    if draft.existing is not None:
        types.update({n: d.data.get("type") for n, d in draft.existing.dimensions.items()})
    words: list[str] = []
    numbers: list[str] = []
    for field_id, name in draft.dimension_fields.items():
        if types.get(name) != "categorical":
            continue
        item = view.field_named(field_id.split(".", 1)[1]) if field_id.startswith(view.name + ".") else None
        if item is None:
            continue
        try:
            expression = Resolver(view, dialect).resolve(item)
            sql = exp.select(exp.Count(this=exp.Distinct(expressions=[expression])),
                             exp.Max(this=expression.copy())).from_(table.copy()).sql(dialect)
            (distinct, sample), = wh.query(sql)
        except Exception:  # noqa: BLE001 - a dimension that does not run is no grouping
            continue
        if 1 < int(distinct or 0) <= MAX_GROUP_VALUES:
            numeric = isinstance(sample, (int, float, Decimal)) and not isinstance(sample, bool)
            (numbers if numeric else words).append(field_id)
    return (words + numbers)[0] if words or numbers else None


def check_parity(project_dir: Path, profiles_dir: Path, target: Any, semantic: SemanticModel, plan: MetricsPlan,
                 relations: dict[str, Relation], *, dialect: str = "duckdb", read_dialect: str = "duckdb",
                 semantic_manifest: Path | None = None, log: Callable[[str], None] | None = None,
                 pushed: Sequence[PushedMetric] | None = None) -> Parity:
    """`relations`: dbt model (lower case) → where the build put it. `target`: the build's warehouse (a
    bot.impact.build.Target), opened read-only for the BI side and closed before `mf` opens it (DuckDB
    lets one process write a file at a time)."""
    parity = Parity()
    items = list(pushed if pushed is not None else plan.pushed)
    if not items:
        return parity
    with target.open(read_only=True) as wh:
        bi, bi_groups, groupings = _bi_side(wh, parity, semantic, plan, items, relations, dialect, read_dialect)
    _mf_side(parity, project_dir, profiles_dir, bi, bi_groups, groupings, semantic_manifest, log)
    return parity


def _bi_side(wh: Any, parity: Parity, semantic: SemanticModel, plan: MetricsPlan, items: list[PushedMetric],
             relations: dict[str, Relation], dialect: str, read_dialect: str):

    def table(view: View) -> exp.Expression:
        schema, name = relations[view.model_name.lower()]
        return exp.table_(exp.to_identifier(name), db=exp.to_identifier(schema))

    # the BI side first: which grouping each metric gets, and its numbers
    bi: dict[str, dict[Any, float | None]] = {}
    bi_groups: dict[str, dict[str | None, Any]] = {}
    groupings: dict[tuple[str, ...], list[PushedMetric]] = {(): items}
    for item in items:
        view_name, _, name = item.id.partition(".")
        view = semantic.views.get(view_name)
        draft = plan.semantic_models.get(view.model_name.lower()) if view else None
        if view is None or draft is None or view.model_name.lower() not in relations:
            parity.rows[item.id] = []
            parity.errors.append(f"`{item.id}`: its model was not built, so its values were not checked")
            continue
        dimension = low_cardinality(wh, view, draft, table(view), dialect)
        mf_group = f"{draft.primary_entity}__{draft.dimension_fields[dimension]}" if dimension else None
        if dimension:
            parity.grouped_by[item.id] = dimension
            groupings.setdefault((mf_group,), []).append(item)
        for grouping in ([], [dimension] if dimension else None):
            if grouping is None:
                continue
            key = f"{item.id}|{grouping[0] if grouping else ''}"
            try:
                query = measure_query(semantic, view, [name], [g.split(".", 1)[1] for g in grouping],
                                      relation=table, read_dialect=read_dialect)
                rows = wh.query(query.sql(dialect))
            except (LayersyncError, Exception) as exc:  # noqa: BLE001 - the BI side failing is a parity failure
                parity.errors.append(f"`{item.id}`: the BI definition did not run: "
                                     f"{getattr(exc, 'message', str(exc)).splitlines()[0] if str(exc) else exc}")
                bi[key] = {}
                continue
            if grouping:
                bi[key] = {group_key(r[0]): _number(r[1]) for r in rows}
                bi_groups[key] = {group_key(r[0]): _jsonable(r[0]) for r in rows}
            else:
                bi[key] = {None: _number(rows[0][0]) if rows else None}
    return bi, bi_groups, groupings


def _mf_side(parity: Parity, project_dir: Path, profiles_dir: Path, bi: dict, bi_groups: dict,
             groupings: dict[tuple[str, ...], list[PushedMetric]], semantic_manifest: Path | None,
             log: Callable[[str], None] | None) -> None:
    """MetricFlow: one query per grouping, all its metrics at once."""
    for grouping, members in groupings.items():
        names = list(dict.fromkeys(m.metric for m in members))
        result = query_metrics(project_dir, profiles_dir, names, list(grouping), semantic_manifest=semantic_manifest,
                               log=log)
        parity.queries += 1
        if not result.ok:
            parity.errors.append(f"`mf query --metrics {','.join(names)}"
                                 f"{' --group-by ' + grouping[0] if grouping else ''}` failed: "
                                 + " / ".join(result.errors[:3]))
            for m in members:
                parity.rows.setdefault(m.id, [])
            continue
        column = grouping[0] if grouping else None
        header = next((c for c in result.columns if column and c.lower() == column.lower()), column)
        for member in members:
            dimension = parity.grouped_by.get(member.id) if grouping else None
            key = f"{member.id}|{dimension or ''}"
            theirs = bi.get(key, {})
            ours: dict[str | None, float | None] = {}
            for row in result.rows:
                ours[group_key(row.get(header)) if header else None] = _number(row.get(member.metric))
            rows = parity.rows.setdefault(member.id, [])
            groups = list(dict.fromkeys([*theirs, *ours])) if grouping else [None]
            for group in sorted(groups, key=lambda g: (g is None, str(g))):
                dbt_value, bi_value = ours.get(group), theirs.get(group)
                shown = bi_groups.get(key, {}).get(group, group)
                rows.append({"group": None if not grouping else {dimension: shown}, "dbt": dbt_value,
                             "bi": bi_value, "ok": same(dbt_value, bi_value) and (group in ours) == (group in theirs)
                             if grouping else same(dbt_value, bi_value)})

"""The semantic layer's own numbers on prod and on dev: every measure of every view that reads a
changed model, in total and by the view's low-cardinality dimensions; and the fields whose SQL no
longer runs against dev (broken by the PR)."""
from __future__ import annotations

from dataclasses import dataclass, field as dc_field, replace
from typing import Any, Iterable

from sqlglot import exp

from bot.semantic.model import Field, SemanticModel, View
from bot.semantic.refs import Resolver
from bot.translate.measure_sql import MeasureUnsupported, measure_query
from bot.warehouse.base import Warehouse

MAX_GROUP_VALUES = 12


@dataclass(frozen=True)
class MeasureValue:
    view: str
    measure: str
    dimension: str | None          # None: the total
    group: Any
    prod: float | None
    dev: float | None

    @property
    def delta(self) -> float | None:
        return None if self.prod is None or self.dev is None else self.dev - self.prod

    @property
    def pct(self) -> float | None:
        if self.delta is None or not self.prod:
            return None
        return 100.0 * self.delta / abs(self.prod)


@dataclass(frozen=True)
class BrokenField:
    id: str
    file: str
    line: int
    reason: str


@dataclass
class SemanticDiff:
    values: list[MeasureValue] = dc_field(default_factory=list)
    broken: list[BrokenField] = dc_field(default_factory=list)
    views: list[str] = dc_field(default_factory=list)


def _table(schema: str, table: str) -> exp.Table:
    return exp.table_(exp.to_identifier(table), db=exp.to_identifier(schema))


def _expression(view: View, item: Field, dialect: str) -> exp.Expression:
    """A measure's row-level input (or a dimension) as SQL over the view's table."""
    if item.kind == "measure" and item.sql is None:
        return exp.Star()
    return Resolver(view, dialect).resolve(replace(item, kind="dimension"))


def _alone(view: View) -> SemanticModel:
    """The view as a model of its own: impact compares one view's numbers on one relation per side."""
    return SemanticModel(format="", views={view.name: view})


def measure_select(view: View, measures: list[Field], schema: str, table: str, dialect: str,
                   dimension: Field | None = None) -> exp.Select:
    """The measures as the BI tool computes them (`bot.translate.measure_sql`: filters, every
    aggregate type, measures over measures), over `schema.table`, grouped by `dimension` first."""
    query = measure_query(_alone(view), view, measures, [dimension.name] if dimension is not None else [],
                          relation=lambda _: _table(schema, table), read_dialect=dialect, order=False)
    return query.select


def _computable(view: View, measure: Field, dialect: str) -> bool:
    """False for a measure no BI SQL can be built for whatever the data (a `list`, an unknown type):
    nothing the PR broke, so neither compared nor reported."""
    try:
        measure_select(view, [measure], "s", "t", dialect)
    except MeasureUnsupported as exc:
        return exc.code != "aggregate-type"
    except Exception:  # noqa: BLE001 - other failures are the field's to report as broken
        return True
    return True


def _select(view: View, measures: list[Field], schema: str, table: str, dialect: str,
            dimension: Field | None = None) -> str:
    return measure_select(view, measures, schema, table, dialect, dimension).sql(dialect=dialect)


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def _values_by_group(wh: Warehouse, sql: str, grouped: bool) -> dict[Any, tuple[Any, ...]]:
    rows = wh.query(sql)
    return {row[0]: row[1:] for row in rows} if grouped else {None: rows[0] if rows else ()}


def _low_cardinality(wh: Warehouse, view: View, schema: str, table: str, dialect: str, limit: int,
                     broken: set[str] = frozenset()) -> list[Field]:
    """Dimensions with few values on prod: the groupings a BI user would look at first (never one
    the PR broke: dev could not be grouped by it)."""
    picked: list[Field] = []
    for dim in view.fields.values():
        if dim.kind != "dimension" or dim.primary_key or dim.id in broken or len(picked) >= limit:
            continue
        try:
            inner = _expression(view, dim, dialect)
            sql = exp.select(exp.Count(this=exp.Distinct(expressions=[inner]))).from_(_table(schema, table)).sql(dialect)
            (distinct,), = wh.query(sql)
        except Exception:  # noqa: BLE001 - a dimension that does not run is reported as broken elsewhere
            continue
        if 1 < distinct <= MAX_GROUP_VALUES:
            picked.append(dim)
    return picked


def _runs_on(wh: Warehouse, view: View, measure: Field, schema: str, table: str, dialect: str) -> bool:
    """Whether the measure's SQL runs against `schema.table` (LIMIT 0): prod may lack a column the PR
    adds, and a measure new with it has no prod value rather than failing the whole report."""
    try:
        wh.query(measure_select(view, [measure], schema, table, dialect).limit(0).sql(dialect=dialect))
    except Exception:  # noqa: BLE001 - any failure means prod cannot compute it
        return False
    return True


def broken_fields(wh: Warehouse, view: View, schema: str, table: str, dialect: str) -> list[BrokenField]:
    """Fields whose SQL no longer compiles or runs against `schema` (checked with LIMIT 0)."""
    broken = []
    for item in view.fields.values():
        if item.kind == "measure" and not _computable(view, item, dialect):
            continue
        try:
            query = measure_select(view, [item], schema, table, dialect) if item.kind == "measure" else \
                exp.select(_expression(view, item, dialect)).from_(_table(schema, table))
            wh.query(query.limit(0).sql(dialect=dialect))
        except Exception as exc:  # noqa: BLE001 - any failure means the field is broken on dev
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            broken.append(BrokenField(item.id, item.location.file, item.location.line, message))
    return broken


Relation = tuple[str, str]


def _moved(value: MeasureValue) -> float:
    """How far a group's value moved: |Δ|, or the whole value of a group only one side has."""
    if value.delta is not None:
        return abs(value.delta)
    return abs(value.prod if value.prod is not None else value.dev or 0)


def semantic_diff(wh: Warehouse, views: Iterable[View], tables: dict[str, str | tuple[Relation | None, Relation]],
                  prod_schema: str = "", dev_schema: str = "", *, dialect: str = "duckdb", top_n: int = 5,
                  group_dimensions: int = 2) -> SemanticDiff:
    """`tables`: for each view that reads a changed model, its relation name in both schemas, or the
    pair ((prod schema, table), (dev schema, table)) when dbt put prod and dev apart (custom schemas).
    A prod side of None is a model new in this PR: its views are still checked on dev, and their
    measures reported with no prod value."""
    result = SemanticDiff()
    for view in views:
        if view.name not in tables:
            continue
        pair = tables[view.name]
        prod_side, (dev_schema, table) = pair if not isinstance(pair, str) else \
            ((prod_schema, pair), (dev_schema, pair))
        result.views.append(view.name)
        result.broken.extend(broken_fields(wh, view, dev_schema, table, dialect))
        broken_ids = {b.id for b in result.broken}
        measures = [m for m in view.fields.values() if m.kind == "measure" and m.id not in broken_ids
                    and _computable(view, m, dialect)]
        if not measures:
            continue
        usual = prod_side or (dev_schema, table)          # groupings a BI user knows: prod's when it has them
        groupings: list[Field | None] = [None, *_low_cardinality(wh, view, *usual, dialect, group_dimensions,
                                                                 broken_ids)]
        on_prod = [m for m in measures if _runs_on(wh, view, m, *prod_side, dialect)] if prod_side else []
        for dimension in groupings:
            prod = _values_by_group(wh, _select(view, on_prod, *prod_side, dialect, dimension),
                                    dimension is not None) if on_prod else {}
            dev = _values_by_group(wh, _select(view, measures, dev_schema, table, dialect, dimension),
                                   dimension is not None)
            groups = list(dict.fromkeys([*prod, *dev]))
            for index, measure in enumerate(measures):
                at = on_prod.index(measure) if measure in on_prod else None
                values = [MeasureValue(view.name, measure.name, dimension.name if dimension else None, g,
                                       _number(prod[g][at]) if at is not None and g in prod else None,
                                       _number(dev[g][index]) if g in dev else None) for g in groups]
                if dimension is not None:  # the groups that moved most first; one gone or new moved by all of it
                    values.sort(key=lambda v: (-_moved(v), v.group is None, str(v.group)))
                    values = values[:top_n]
                result.values.extend(values)
    return result

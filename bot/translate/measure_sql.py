"""The SQL a BI tool runs for measures of a view: the BI side of every parity check (pure, sqlglot-built).

`measure_query(model, view, measures, group_by, relation=...)` is one `SELECT` that aggregates the
measures over the view's relation, in total or grouped by dimensions of the view itself or of views
reached through a many_to_one / one_to_one relationship (`bot.translate.joins`: the same reading of
`relationships.yaml` that pushes joined dimensions). `relation` maps a view to the relation it reads, so
the same query runs on the warehouse (`warehouse_table`) and becomes a dbt model (`dbt_ref`).

What each Omni definition computes, as decided here (the metrics' parity check mirrors these):
- `count` with no `sql:` is `COUNT(*)`; with `sql:` it counts the non-NULL values (`COUNT(x)`);
  `count_distinct` is `COUNT(DISTINCT x)`; `average` is `AVG`; `median` and `percentile: N` are the
  continuous (interpolating) percentile, `PERCENTILE_CONT(N / 100)`, as Omni's warehouses compute them.
- A measure with no `sql:` reads the column of its own name, as a dimension with no `sql:` does.
- `filters:` keep the rows they match inside the aggregate: `AGG(CASE WHEN <filters> THEN x END)`
  (count: `THEN 1`), which is what Omni documents a filtered measure to be. So a group whose rows
  all fail the filter shows **0** for a count or count_distinct (COUNT of no values) and **NULL** for
  sum, average, min, max, median and percentile (an aggregate of no values), never a missing row;
  the group itself exists whenever the view has rows for it.
- Operators: `is` (`=`, a list is `IN`, `null` is `IS NULL`), `not` (`<>` / `NOT IN` / `IS NOT NULL`,
  keeping the NULL rows: "not X" in a BI filter means everything that is not X, and NULL is not X),
  `greater_than`, `less_than`, `*_or_equal_to`, `before`/`after`/`on_or_*` (the same comparisons on
  time), `between: [a, b]` (inclusive, `not_between` its complement), `contains`, `starts_with`,
  `ends_with` (case-insensitive `LIKE` with the value's `%` and `_` escaped; the `not_` forms keep
  NULL rows like `not`). Several operators or several fields: all must hold.
- A custom aggregate (`sql:` with no `aggregate_type`) may combine other measures of the view
  (`${v.a} / NULLIF(${v.b}, 0)`: each replaced by its own aggregate) and aggregate row expressions
  (`SUM(CASE WHEN ${v.x} ... END) * 100.0 / COUNT(*)`); every column it reads must sit inside an
  aggregate. Its `filters:` apply inside every aggregate it contains.
- `list` and the `*_distinct_on` aggregates are refused (`MeasureUnsupported`, with the reason), as is a
  custom measure that aggregates nothing, a measure of another view, a reference cycle.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Callable, Sequence

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, TokenError

from bot.errors import RefusedTranslation, TranslationError
from bot.semantic.model import Field, SemanticModel, View
from bot.semantic.refs import JOIN_PREFIX, TABLE_PLACEHOLDER, Resolver, parse_field_sql
from bot.translate import joins

GRAINS = ("day", "week", "month", "quarter", "year")
SIMPLE_AGGREGATES = ("sum", "count", "count_distinct", "average", "min", "max", "median", "percentile")
REFUSED_AGGREGATES = {
    "list": "`list` gathers values into a list: it is no number a dbt model or metric can hold",
    "sum_distinct_on": "`sum_distinct_on` de-duplicates by a key (`custom_primary_key_sql`) before summing, "
                       "which no plain aggregate expresses",
    "average_distinct_on": "`average_distinct_on` de-duplicates by a key before averaging, which no plain "
                           "aggregate expresses",
    "median_distinct_on": "`median_distinct_on` de-duplicates by a key before the median, which no plain "
                          "aggregate expresses",
    "percentile_distinct_on": "`percentile_distinct_on` de-duplicates by a key before the percentile, which no "
                              "plain aggregate expresses",
}
_COMPARISONS: dict[str, type[exp.Expression]] = {
    "greater_than": exp.GT, "less_than": exp.LT, "greater_than_or_equal_to": exp.GTE,
    "less_than_or_equal_to": exp.LTE, "after": exp.GT, "before": exp.LT, "on_or_after": exp.GTE,
    "on_or_before": exp.LTE,
}
_PATTERNS = {"contains": ("%", "%"), "starts_with": ("", "%"), "ends_with": ("%", "")}
_LIKE_ESCAPE = "!"

Relation = Callable[[View], exp.Expression]


class MeasureUnsupported(RefusedTranslation):
    """A measure (or a grouping) no SQL here can compute as the BI tool does; `code` says which reason."""


@dataclass(frozen=True)
class GroupBy:
    """One grouping: `view.dimension` (or a bare dimension of the measures' view), truncated to `grain`
    when given (a time dimension)."""

    field: str
    grain: str | None = None


@dataclass(frozen=True)
class Column:
    """One output column: its name in the result, the field it computes, and what kind it is."""

    name: str
    field: Field
    kind: str                           # "dimension" or "measure"
    grain: str | None = None


@dataclass(frozen=True)
class MeasureQuery:
    select: exp.Select
    dimensions: tuple[Column, ...]
    measures: tuple[Column, ...]
    views: tuple[str, ...]              # the views it reads: the measures' view first, then the joined ones

    def sql(self, dialect: str = "duckdb", pretty: bool = False) -> str:
        return quote_reserved(self.select, dialect).sql(dialect=dialect, pretty=pretty)


def quote_reserved(expression: exp.Expression, dialect: str) -> exp.Expression:
    """A copy with every identifier quoted that `dialect` would otherwise misread (a keyword such as
    `order`, a name with capitals or spaces); plain lower-case names stay bare, so Snowflake's upper-casing
    and PostgreSQL's lower-casing of unquoted names keep meaning the same column."""
    keywords = Dialect.get_or_raise(dialect).tokenizer_class.KEYWORDS
    copy = expression.copy()
    for identifier in copy.find_all(exp.Identifier):
        name = identifier.name
        if not identifier.args.get("quoted") and (name.upper() in keywords or not _is_simple(name)):
            identifier.set("quoted", True)
    return copy


def _is_simple(name: str) -> bool:
    return bool(name) and name.replace("_", "a").isalnum() and not name[:1].isdigit() and name == name.lower()


def warehouse_table(view: View) -> exp.Expression:
    """The view's table in the warehouse: dbt's schema for Omni's `omni_dbt_<x>`, else the view's own."""
    return exp.table_(exp.to_identifier(view.table_name, quoted=not _is_simple(view.table_name)),
                      db=exp.to_identifier(view.dbt_schema, quoted=not _is_simple(view.dbt_schema))
                      if view.dbt_schema else None)


def dbt_ref(view: View) -> exp.Expression:
    """`{{ ref('<model>') }}` of the dbt model the view reads, as a relation sqlglot renders verbatim."""
    return exp.Table(this=exp.Var(this="{{ ref('" + view.model_name + "') }}"))


def measure_query(model: SemanticModel, view: str | View, measures: Sequence[str | Field],
                  group_by: Sequence[str | GroupBy] = (), *, relation: Relation = warehouse_table,
                  read_dialect: str = "duckdb", order: bool = True) -> MeasureQuery:
    """One SELECT of `measures` (of `view`) grouped by `group_by` (none: the total row).

    `read_dialect` is the dialect the semantic layer's SQL is written in; render the result with
    `MeasureQuery.sql(dialect)` in the warehouse's. Anything that cannot be computed as the BI tool
    computes it raises MeasureUnsupported (a TranslationError) with the field's file and line."""
    base = model.views.get(view) if isinstance(view, str) else view
    if base is None:
        raise MeasureUnsupported(f"`{view}` is no view of the semantic model", "unknown-view")
    if not measures:
        raise MeasureUnsupported(f"no measure of `{base.name}` to compute", "no-measure", base.file, base.line)
    builder = _Builder(model, base, read_dialect)
    dims = [builder.dimension(g if isinstance(g, GroupBy) else GroupBy(g)) for g in group_by]
    aggregates = [builder.measure(m) for m in measures]
    names = _output_names([(c, base) for c, _ in dims] + [(c, base) for c, _ in aggregates])
    dim_columns = tuple(Column(n, c.field, "dimension", c.grain) for n, (c, _) in zip(names, dims))
    measure_columns = tuple(Column(n, c.field, "measure") for n, (c, _) in zip(names[len(dims):], aggregates))
    select = exp.select(*[exp.alias_(e, c.name) for c, (_, e) in zip(dim_columns, dims)],
                        *[exp.alias_(e, c.name) for c, (_, e) in zip(measure_columns, aggregates)])
    select = select.from_(exp.alias_(relation(base), builder.alias(base.name), table=True))
    for name in builder.join_order:
        join = builder.joined[name]
        kind = "INNER" if (join.relationship.join_type or "").lower() == "inner" else "LEFT"
        select = select.join(exp.alias_(relation(join.view), builder.alias(name), table=True),
                             on=builder.on(join), join_type=kind)
    if dims:
        positions = [exp.Literal.number(i + 1) for i in range(len(dims))]
        select = select.group_by(*positions)
        if order:
            select = select.order_by(*[exp.Ordered(this=p.copy(), nulls_first=False) for p in positions])
    return MeasureQuery(select, dim_columns, measure_columns, (base.name, *builder.join_order))


def measure_sql(model: SemanticModel, view: str | View, measures: Sequence[str | Field],
                group_by: Sequence[str | GroupBy] = (), *, relation: Relation = warehouse_table,
                dialect: str = "duckdb", read_dialect: str | None = None, pretty: bool = False) -> str:
    """`measure_query(...)` rendered in `dialect` (the semantic SQL read in `read_dialect`, default the same)."""
    query = measure_query(model, view, measures, group_by, relation=relation, read_dialect=read_dialect or dialect)
    return query.sql(dialect, pretty=pretty)


def time_dimensions(view: View) -> list[Field]:
    """The view's time dimensions: Omni's `timeframes:` marks one (Omni takes types from the warehouse,
    so that is what its files say); the older layout's `type:` does too."""
    found = []
    for candidate in view.fields.values():
        if candidate.kind != "dimension":
            continue
        if "timeframes" in candidate.attributes or (candidate.type or "").lower() in (
                "time", "date", "datetime", "timestamp", "timestamp_ntz", "timestamp_tz"):
            found.append(candidate)
    return found


# ---------------------------------------------------------------------------------------------- builder

@dataclass(frozen=True)
class _Resolved:
    field: Field
    grain: str | None = None


class _Builder:
    """Resolves fields into expressions over aliased relations, collecting the joins they need."""

    def __init__(self, model: SemanticModel, base: View, dialect: str):
        self.model = model
        self.base = base
        self.dialect = dialect
        self.joined: dict[str, joins.Join] = {}
        self.join_order: list[str] = []
        self._resolvers: dict[str, Resolver] = {}
        self._aliases: dict[str, str] = {}

    # ------------------------------------------------------------------ names and joins

    def alias(self, view: str) -> str:
        return self._aliases.setdefault(view, view)

    def _join(self, other: str, where: tuple[str | None, int | None]) -> joins.Join:
        join = self.joined.get(other)
        if join is None:
            join = joins.find_join(self.model, self.base, other, (where[0] or self.base.file, where[1] or 1))
            self.joined[other] = join
            self.join_order.append(other)
        return join

    def resolver(self, view: View) -> Resolver:
        held = self._resolvers.get(view.name)
        if held is None:
            find = (lambda other, where: self._join(other, where)) if view is self.base else None
            held = self._resolvers[view.name] = Resolver(view, self.dialect, find)
        return held

    def qualify(self, expression: exp.Expression, view: View) -> exp.Expression:
        """Columns of `view`'s relation get its alias; `__layersync_join__<v>` columns the joined view's."""
        for column in list(expression.find_all(exp.Column)):
            table = column.table
            if not table or table == TABLE_PLACEHOLDER:
                column.set("table", exp.to_identifier(self.alias(view.name)))
            elif table.startswith(JOIN_PREFIX):
                column.set("table", exp.to_identifier(self.alias(table[len(JOIN_PREFIX):])))
        return expression

    def on(self, join: joins.Join) -> exp.Expression:
        where = (join.relationship.location.file, join.relationship.location.line)
        conditions = []
        for mine, theirs in join.pairs:
            left = self.qualify(self.resolver(self.base).resolve_sql(mine, where), self.base)
            right = self.qualify(self.resolver(join.view).resolve_sql(theirs, where), join.view)
            conditions.append(exp.EQ(this=left, expression=right))
        return exp.and_(*conditions) if len(conditions) > 1 else conditions[0]

    # ------------------------------------------------------------------ dimensions

    def find_dimension(self, name: str, where: tuple[str | None, int | None],
                       what: str) -> tuple[View, Field | None, str]:
        """`view.field` or a bare field of the base view: (its view, the field or None for a raw column,
        the column name). Another view must be reachable through a relationship."""
        view_name, dot, field_name = name.partition(".")
        if not dot:
            view_name, field_name = self.base.name, name
        if view_name == self.base.name:
            view = self.base
        else:
            try:
                view = self._join(view_name, where).view
            except joins.JoinRefused as exc:
                raise MeasureUnsupported(f"{what} `{name}`: {exc.message}", exc.code, exc.file, exc.line) from None
        found = view.field_named(field_name)
        if found is not None and found.kind == "measure":
            raise MeasureUnsupported(f"{what} `{name}` is a measure, not a dimension", "not-a-dimension", *where)
        return view, found, field_name

    def dimension(self, group: GroupBy) -> tuple[_Resolved, exp.Expression]:
        where = (self.base.file, self.base.line)
        if group.grain is not None and group.grain not in GRAINS:
            raise MeasureUnsupported(f"unknown time grain `{group.grain}` (one of {', '.join(GRAINS)})",
                                     "unknown-grain", *where)
        view, found, name = self.find_dimension(group.field, where, "group-by")
        if found is None:
            raise MeasureUnsupported(f"group-by `{group.field}`: `{view.name}` has no dimension `{name}` "
                                     f"(its dimensions: {', '.join(_dimension_names(view)) or 'none'})",
                                     "unknown-dimension", view.file, view.line)
        expression = self.qualify(self.resolver(view).resolve(found), view)
        if group.grain is not None:
            expression = exp.TimestampTrunc(this=exp.cast(expression, exp.DataType.Type.TIMESTAMP),
                                            unit=exp.var(group.grain.upper()))
            expression = exp.cast(expression, exp.DataType.Type.DATE)
        return _Resolved(found, group.grain), expression

    # ------------------------------------------------------------------ measures

    def measure(self, wanted: str | Field) -> tuple[_Resolved, exp.Expression]:
        found = wanted if isinstance(wanted, Field) else self._own_measure(wanted)
        return _Resolved(found), self._aggregate(found, ())

    def _own_measure(self, name: str) -> Field:
        view_name, dot, field_name = name.partition(".")
        if not dot:
            view_name, field_name = self.base.name, name
        if view_name != self.base.name:
            raise MeasureUnsupported(f"`{name}` is a measure of another view than `{self.base.name}`",
                                     "other-view-measure", self.base.file, self.base.line)
        found = self.base.field_named(field_name)
        if found is None or found.kind != "measure":
            raise MeasureUnsupported(f"`{self.base.name}` has no measure `{field_name}` (its measures: "
                                     f"{', '.join(_measure_names(self.base)) or 'none'})",
                                     "unknown-measure", self.base.file, self.base.line)
        return found

    def _aggregate(self, measure: Field, stack: tuple[str, ...]) -> exp.Expression:
        where = (measure.location.file, measure.location.line)
        if measure.name in stack:
            cycle = " -> ".join((*stack[stack.index(measure.name):], measure.name))
            raise MeasureUnsupported(f"reference cycle: {cycle}", "cycle", *where)
        aggregate = measure.aggregate_type
        if aggregate in REFUSED_AGGREGATES:
            raise MeasureUnsupported(f"measure `{measure.name}`: {REFUSED_AGGREGATES[aggregate]}", "aggregate-type",
                                     *where)
        if aggregate is not None and aggregate not in SIMPLE_AGGREGATES:
            raise MeasureUnsupported(f"measure `{measure.name}`: unknown aggregate_type `{aggregate}` (Omni's: "
                                     f"{', '.join((*SIMPLE_AGGREGATES, *REFUSED_AGGREGATES))})",
                                     "aggregate-type", *where)
        predicate = self._filters(measure)
        if aggregate is None:
            return self._custom(measure, predicate, (*stack, measure.name))
        row: exp.Expression | None
        if measure.sql is None and aggregate == "count":
            row = None
        else:
            sql = measure.sql if measure.sql is not None else "${" + measure.name + "}"
            row = self._row(measure, sql)
        if predicate is not None:
            row = exp.Case(ifs=[exp.If(this=predicate, true=row if row is not None else exp.Literal.number(1))])
        return _apply(aggregate, row, measure)

    def _row(self, measure: Field, sql: str) -> exp.Expression:
        """A measure's row-level `sql:` over the base relation (a dimension of the view, or a raw column)."""
        where = (measure.location.file, measure.location.line)
        if sql == "${" + measure.name + "}":           # no sql: the column of the measure's own name
            return exp.column(measure.name, table=self.alias(self.base.name), quoted=not _is_simple(measure.name))
        try:
            resolved = self.resolver(self.base).resolve_sql(sql, where)
        except joins.JoinRefused as exc:
            raise MeasureUnsupported(f"measure `{measure.name}`: {exc.message}", exc.code, *where) from None
        except TranslationError as exc:
            raise MeasureUnsupported(f"measure `{measure.name}`: {_reworded(exc.message)}", "row-sql", *where) from None
        return self.qualify(resolved, self.base)

    def _custom(self, measure: Field, predicate: exp.Expression | None, stack: tuple[str, ...]) -> exp.Expression:
        """`sql:` with no aggregate_type: other measures replaced by their aggregates, dimensions by their
        row expressions; it must aggregate every column it reads."""
        where = (measure.location.file, measure.location.line)
        if not measure.sql:
            raise MeasureUnsupported(f"measure `{measure.name}` has neither `aggregate_type` nor `sql`",
                                     "no-definition", *where)
        try:
            expression, refs = parse_field_sql(measure.sql, self.dialect)
        except (ValueError, ParseError, TokenError) as exc:
            raise MeasureUnsupported(f"invalid SQL in measure `{measure.name}`: {_first_line(exc)}", "invalid-sql",
                                     *where) from None

        def substitute(node: exp.Expression) -> exp.Expression:
            if not isinstance(node, exp.Column):
                return node
            ref = refs.get(node.name)
            if ref is None:
                if node.table and node.table != TABLE_PLACEHOLDER:
                    return node
                return exp.column(node.name, table=self.alias(self.base.name),
                                  quoted=node.this.args.get("quoted", False))
            if ref.view is not None and ref.view != self.base.name:
                other = self.model.views.get(ref.view)
                target = other.field_named(ref.field) if other is not None else None
                if target is not None and target.kind == "measure":
                    raise MeasureUnsupported(
                        f"measure `{measure.name}` combines `${{{ref.target}}}`, a measure of another view: "
                        f"its rows are not `{self.base.name}`'s, so no one query of `{self.base.name}` computes it",
                        "other-view-measure", *where)
                return _wrap(self._row(measure, "${" + ref.target + "}"))
            target = self.base.field_named(ref.field)
            if target is None and ref.view is not None:
                raise MeasureUnsupported(f"unknown field `${{{ref.target}}}` in view `{self.base.name}`",
                                         "unknown-field", *where)
            if target is not None and target.kind == "measure":
                return _wrap(self._aggregate(target, stack))
            return _wrap(self._row(measure, "${" + ref.field + "}") if target is not None
                         else exp.column(ref.field, table=self.alias(self.base.name), quoted=not _is_simple(ref.field)))

        result = expression.transform(substitute)
        loose = [c for c in result.find_all(exp.Column) if not _inside_aggregate(c)]
        if loose:
            raise MeasureUnsupported(
                f"measure `{measure.name}` reads `{loose[0].sql()}` outside any aggregate: a measure's `sql:` "
                f"with no aggregate_type must aggregate (SUM(...), COUNT(...), or other measures)",
                "not-aggregate", *where)
        if not any(not a.find_ancestor(exp.Window) for a in result.find_all(exp.AggFunc)):
            raise MeasureUnsupported(f"measure `{measure.name}` aggregates nothing: give it an aggregate_type or "
                                     f"write its aggregate in `sql:`", "not-aggregate", *where)
        if predicate is not None:
            result = _filter_aggregates(result, predicate)
        return result

    # ------------------------------------------------------------------ filters

    def _filters(self, measure: Field) -> exp.Expression | None:
        where = (measure.location.file, measure.location.line)
        conditions: list[exp.Expression] = []
        for key, condition in measure.filters.items():
            view, found, name = self.find_dimension(str(key), where, f"the filter of measure `{measure.name}` on")
            if found is None and "." in str(key):
                raise MeasureUnsupported(f"measure `{measure.name}` filters on `{key}`, which `{view.name}` does not "
                                         f"have", "unknown-field", *where)
            subject = (_wrap(self.qualify(self.resolver(view).resolve(found), view)) if found is not None
                       else exp.column(name, table=self.alias(view.name), quoted=not _is_simple(name)))
            if not isinstance(condition, dict) or not condition:
                raise MeasureUnsupported(f"measure `{measure.name}`: the filter on `{key}` must be an operator mapping "
                                         f"such as `{{is: 1}}`", "filter", *where)
            for operator, value in condition.items():
                conditions.append(filter_condition(subject.copy(), str(operator), value, measure, str(key)))
        if not conditions:
            return None
        return exp.and_(*[_paren(c) for c in conditions]) if len(conditions) > 1 else conditions[0]


# ---------------------------------------------------------------------------------------------- helpers

def _apply(aggregate: str, row: exp.Expression | None, measure: Field) -> exp.Expression:
    if aggregate == "count":
        return exp.Count(this=row if row is not None else exp.Star())
    assert row is not None
    if aggregate == "count_distinct":
        return exp.Count(this=exp.Distinct(expressions=[row]))
    if aggregate == "sum":
        return exp.Sum(this=row)
    if aggregate == "average":
        return exp.Avg(this=row)
    if aggregate == "min":
        return exp.Min(this=row)
    if aggregate == "max":
        return exp.Max(this=row)
    if aggregate == "median":
        return exp.Median(this=row)
    fraction = _fraction(measure)
    return exp.WithinGroup(this=exp.PercentileCont(this=exp.Literal.number(fraction)),
                           expression=exp.Order(expressions=[exp.Ordered(this=row)]))


def _fraction(measure: Field) -> float:
    value = measure.percentile
    if value is None or not 0 <= float(value) <= 100:
        raise MeasureUnsupported(f"measure `{measure.name}`: `percentile` must be a number from 0 to 100, not "
                                 f"{value!r}", "percentile", measure.location.file, measure.location.line)
    return round(float(value) / 100, 10)


def _literal(value: Any, measure: Field, key: str) -> exp.Expression:
    if value is None:
        return exp.Null()
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, (int, float)):
        return exp.Literal.number(value)
    if isinstance(value, (datetime, date)):
        return exp.Literal.string(value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat())
    if isinstance(value, str):
        return exp.Literal.string(value)
    raise MeasureUnsupported(f"measure `{measure.name}`: the filter on `{key}` compares with {type(value).__name__} "
                             f"`{value!r}`; a filter value is a number, text, a date, true/false or null",
                             "filter", measure.location.file, measure.location.line)


def filter_condition(subject: exp.Expression, operator: str, value: Any, measure: Field, key: str) -> exp.Expression:
    """One operator of a measure's filter on `subject` (the filtered field's expression), as the BI tool
    evaluates it; shared with the MetricFlow translation so both sides filter alike."""
    where = (measure.location.file, measure.location.line)
    negated = operator == "not" or (operator.startswith("not_") and operator != "not")
    base = "is" if operator in ("is", "not") else operator[len("not_"):] if operator.startswith("not_") else operator
    if base == "is":
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        nulls = [v for v in values if v is None]
        others = [_literal(v, measure, key) for v in values if v is not None]
        parts: list[exp.Expression] = []
        if others:
            parts.append(exp.EQ(this=subject.copy(), expression=others[0]) if len(others) == 1
                         else exp.In(this=subject.copy(), expressions=others))
        if nulls:
            parts.append(exp.Is(this=subject.copy(), expression=exp.Null()))
        if not parts:
            raise MeasureUnsupported(f"measure `{measure.name}`: `{operator}` on `{key}` lists no value", "filter",
                                     *where)
        matched = exp.or_(*[_paren(p) for p in parts]) if len(parts) > 1 else parts[0]
    elif base in _COMPARISONS and not operator.startswith("not_"):
        return _COMPARISONS[base](this=subject, expression=_literal(value, measure, key))
    elif base == "between":
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise MeasureUnsupported(f"measure `{measure.name}`: `{operator}` on `{key}` needs two values, "
                                     f"`[low, high]`", "filter", *where)
        matched = exp.Between(this=subject.copy(), low=_literal(value[0], measure, key),
                              high=_literal(value[1], measure, key))
    elif base in _PATTERNS:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise MeasureUnsupported(f"measure `{measure.name}`: `{operator}` on `{key}` needs a text value",
                                     "filter", *where)
        before, after = _PATTERNS[base]
        text = str(value)
        for special in (_LIKE_ESCAPE, "%", "_"):
            text = text.replace(special, _LIKE_ESCAPE + special)
        matched = exp.Escape(this=exp.ILike(this=exp.cast(subject.copy(), exp.DataType.Type.VARCHAR),
                                            expression=exp.Literal.string(before + text + after)),
                             expression=exp.Literal.string(_LIKE_ESCAPE))
    else:
        raise MeasureUnsupported(f"measure `{measure.name}`: filter operator `{operator}` on `{key}` is not "
                                 f"translated (translated: is, not, greater_than, less_than, *_or_equal_to, "
                                 f"before, after, between, contains, starts_with, ends_with and their not_ forms)",
                                 "filter", *where)
    if not negated:
        return matched
    if isinstance(matched, exp.Is) or (isinstance(value, (list, tuple)) and None in value) or value is None:
        return exp.Not(this=_paren(matched))           # not null: the NULL rows are what it excludes
    # "not X" keeps the rows whose value is NULL: NULL is not X.
    return exp.or_(exp.Not(this=_paren(matched)), exp.Is(this=subject.copy(), expression=exp.Null()))


_condition = filter_condition      # the name bot.translate.metrics first imported


def _filter_aggregates(expression: exp.Expression, predicate: exp.Expression) -> exp.Expression:
    """Every aggregate of a custom measure reads only the rows the filters keep."""
    def gate(node: exp.Expression) -> exp.Expression:
        if not isinstance(node, exp.AggFunc) or node.find_ancestor(exp.Window):
            return node
        argument = node.this
        if isinstance(argument, exp.Star):
            node.set("this", exp.Case(ifs=[exp.If(this=predicate.copy(), true=exp.Literal.number(1))]))
        elif isinstance(argument, exp.Distinct):
            argument.set("expressions", [exp.Case(ifs=[exp.If(this=predicate.copy(), true=e)])
                                         for e in argument.expressions])
        elif argument is not None:
            node.set("this", exp.Case(ifs=[exp.If(this=predicate.copy(), true=argument)]))
        return node

    return expression.transform(gate, copy=True)


def _inside_aggregate(column: exp.Column) -> bool:
    node = column.parent
    while node is not None:
        if isinstance(node, (exp.AggFunc, exp.WithinGroup)) and not node.find_ancestor(exp.Window):
            return True
        node = node.parent
    return False


def _output_names(columns: list[tuple[_Resolved, View]]) -> list[str]:
    """A field's own name (with its grain); `<view>__<name>` where two would be called the same."""
    plain = [c.field.name + (f"_{c.grain}" if c.grain else "") for c, _ in columns]
    names = []
    for (column, _), name in zip(columns, plain):
        if plain.count(name) > 1:
            name = f"{column.field.view}__{name}"
        names.append(name)
    return names


def _dimension_names(view: View) -> list[str]:
    return [f.name for f in view.fields.values() if f.kind == "dimension"]


def _measure_names(view: View) -> list[str]:
    return [f.name for f in view.fields.values() if f.kind == "measure"]


def _wrap(expression: exp.Expression) -> exp.Expression:
    if isinstance(expression, (exp.Column, exp.Literal, exp.Func, exp.Paren, exp.Boolean, exp.Null, exp.Cast,
                               exp.WithinGroup)):
        return expression
    return exp.Paren(this=expression)


def _paren(expression: exp.Expression) -> exp.Expression:
    return expression if isinstance(expression, (exp.Paren, exp.Column, exp.Func)) else exp.Paren(this=expression)


def _reworded(message: str) -> str:
    return message.replace("only row-level dimensions become dbt columns", "a measure's `sql:` with an "
                           "aggregate_type is the row expression it aggregates")


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def parse_group_by(text: str) -> GroupBy:
    """`view.dim` or `view.dim:month` as a person writes a grouping."""
    name, _, grain = text.partition(":")
    return GroupBy(name.strip(), grain.strip().lower() or None)


__all__ = ["GRAINS", "Column", "GroupBy", "filter_condition", "MeasureQuery", "MeasureUnsupported", "dbt_ref", "measure_query",
           "measure_sql", "parse_group_by", "time_dimensions", "quote_reserved", "warehouse_table"]

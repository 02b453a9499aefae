"""Semantic-layer measures → MetricFlow definitions, in the spec dbt-core 1.10/1.11 parses (pure).

One semantic model per dbt model a view reads (the project's own extended, never a second), its
primary entity from the view's primary key and a foreign entity per many_to_one / one_to_one
relationship, so metrics group by the other view's dimensions. A measure becomes a MetricFlow
measure plus a `simple` metric; `${a} / NULLIF(${b}, 0)` a `ratio`; other custom SQL a `derived`
metric over measures made from its aggregates. A filtered measure aggregates
`CASE WHEN <filters> THEN … END`: a metric `filter:` would drop the groups no row passes, where the
BI tool shows 0 (count) or NULL. What cannot be translated exactly is reported with the reason.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field as dc_field, replace
from typing import Any, Iterable

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from bot.dbt.project import DbtProject, Model
from bot.dbt.semantic_layer import OWNER_KEY, DeclaredSemanticModel, SemanticLayer, is_time_type
from bot.errors import LayersyncError, RefusedTranslation
from bot.semantic.model import Field, Relationship, SemanticModel, View
from bot.semantic.refs import REF_PREFIX, Resolver, is_aggregate, parse_field_sql
from bot.translate import joins
from bot.translate.measure_sql import filter_condition
from bot.translate.push import FieldRequest, Skipped, unsafe_expression, unsafe_text

# Omni's aggregate_type → MetricFlow's `agg`.
AGGREGATIONS = {"sum": "sum", "count": "count", "count_distinct": "count_distinct", "average": "average",
                "min": "min", "max": "max", "median": "median", "percentile": "percentile"}
NOT_TRANSLATED = {
    "list": "a `list` aggregate collects values into a list; MetricFlow has no list aggregation",
    "sum_distinct_on": "`sum_distinct_on` sums one value per distinct key; MetricFlow has no such aggregation",
    "average_distinct_on": "`average_distinct_on` averages one value per distinct key; MetricFlow has no such "
                           "aggregation",
    "median_distinct_on": "`median_distinct_on` takes one value per distinct key; MetricFlow has no such aggregation",
    "percentile_distinct_on": "`percentile_distinct_on` takes one value per distinct key; MetricFlow has no such "
                              "aggregation",
}
TIME_GRANULARITY = "day"
_TIME_NAME = re.compile(r"(^|_)(date|day|at|time|timestamp|ts|datetime)$")


class NotTranslated(RefusedTranslation):
    """A measure with no exact MetricFlow definition; `code` says which reason."""


def mf_name(text: str) -> str:
    """A name MetricFlow accepts: lower-case letters, digits and single underscores, starting with a
    letter, at least two characters."""
    name = re.sub(r"[^a-z0-9]+", "_", text.lower())
    name = re.sub(r"_+", "_", name).strip("_")
    if not name or not name[0].isalpha():
        name = "m_" + name
    return name if len(name) >= 2 else name + "_x"


def _label(item: Field) -> str:
    return item.label or item.name.replace("_", " ").strip().capitalize() or item.name


def _meta(owner: str) -> dict[str, Any]:
    return {"meta": {OWNER_KEY: owner}}


@dataclass
class SemanticModelDraft:
    """A semantic model to write: all of it when new, else what layersync adds to the project's own."""

    name: str
    model: Model
    existing: DeclaredSemanticModel | None
    description: str | None = None
    primary_entity: str | None = None
    entities: list[dict[str, Any]] = dc_field(default_factory=list)
    dimensions: list[dict[str, Any]] = dc_field(default_factory=list)
    measures: list[dict[str, Any]] = dc_field(default_factory=list)
    agg_time_dimension: str | None = None
    set_agg_time: bool = False                      # the project's model has no default yet
    dimension_fields: dict[str, str] = dc_field(default_factory=dict)   # BI field id → MetricFlow dimension

    @property
    def is_new(self) -> bool:
        return self.existing is None

    def document(self) -> dict[str, Any]:
        """The whole semantic model, for one the project does not have yet."""
        doc: dict[str, Any] = {"name": self.name}
        if self.description:
            doc["description"] = self.description
        doc["model"] = f"ref('{self.model.name}')"
        if self.agg_time_dimension:
            doc["defaults"] = {"agg_time_dimension": self.agg_time_dimension}
        for key in ("entities", "dimensions", "measures"):
            if getattr(self, key):
                doc[key] = list(getattr(self, key))
        return doc

    @property
    def changes(self) -> bool:
        return self.is_new or bool(self.entities or self.dimensions or self.measures or self.set_agg_time)


@dataclass
class MetricDraft:
    definition: dict[str, Any]
    semantic_model: str                             # where it is written (its measures' semantic model)
    existing: Any = None                            # our earlier definition of it (Declared), to replace

    @property
    def name(self) -> str:
        return str(self.definition["name"])


@dataclass(frozen=True)
class PushedMetric:
    id: str
    file: str
    line: int
    semantic_model: str
    metric: str
    kind: str                                       # simple | ratio | derived
    action: str                                     # added | replaced | unchanged
    agg_time_dimension: str | None
    semantic_sql: str | None
    definition: dict[str, Any] = dc_field(default_factory=dict, compare=False, hash=False)
    measures: tuple[dict[str, Any], ...] = ()
    files: tuple[str, ...] = ()
    parity: tuple[dict[str, Any], ...] | None = None


@dataclass
class MetricsPlan:
    semantic_models: dict[str, SemanticModelDraft] = dc_field(default_factory=dict)   # by dbt model (lower)
    metrics: list[MetricDraft] = dc_field(default_factory=list)
    time_spine: bool = False                        # the project has none: one is added
    pushed: list[PushedMetric] = dc_field(default_factory=list)
    skipped: list[Skipped] = dc_field(default_factory=list)
    notes: list[str] = dc_field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.time_spine or any(m.changes for m in self.semantic_models.values()) or \
            any(p.action != "unchanged" for p in self.pushed)


@dataclass
class _Translated:
    view: View
    field: Field
    metric: str
    kind: str
    measures: list[dict[str, Any]]                  # new measures, on the view's semantic model
    metrics: list[dict[str, Any]]                   # its metric last; helper metrics before it
    deps: list["_Translated"] = dc_field(default_factory=list)   # measures its metric reads


class MetricTranslator:
    """Plans MetricFlow definitions for measures against a dbt project and its semantic layer."""

    def __init__(self, semantic: SemanticModel, project: DbtProject, layer: SemanticLayer, *,
                 dialect: str = "duckdb", dbt_dialect: str = "duckdb",
                 column_types: dict[str, dict[str, str]] | None = None, leave_out: set[str] | None = None):
        """`leave_out`: dimension names not to write (dbt or MetricFlow rejected them)."""
        self.semantic = semantic
        self.leave_out = set(leave_out or ())
        self.project = project
        self.layer = layer
        self.dialect = dialect
        self.dbt_dialect = dbt_dialect
        self.column_types = {**layer.column_types, **(column_types or {})}
        self._done: dict[str, _Translated | LayersyncError] = {}
        self._models: dict[str, SemanticModelDraft | LayersyncError] = {}
        self._taken: dict[str, str] = {}            # metric/measure name → who has it (a field id, or "")
        self._skipped_relationships: list[Skipped] = []
        self._notes: list[str] = []
        self._labels: set[str] = set()
        self._label_of: dict[str, str] = {}
        for name, declared in layer.metrics.items():
            self._taken[name] = declared.owner or ""
            label = declared.data.get("label")
            if label and not declared.owner:
                self._labels.add(str(label))
        for model in layer.semantic_models.values():
            for name, declared in model.measures.items():
                self._taken.setdefault(name, declared.owner or "")

    # ------------------------------------------------------------------ the plan

    def translate(self, requests: Iterable[FieldRequest]) -> MetricsPlan:
        requests = sorted((r for r in requests if r.field.kind == "measure"), key=lambda r: r.field.id)
        plan = MetricsPlan()
        if self.layer.newer_spec is not None:
            where = self.layer.newer_spec
            for request in requests:
                plan.skipped.append(Skipped(
                    request.field.id, where.file, where.line,
                    f"the dbt project is on dbt's newer semantic-layer spec (`{where.name}` at {where}): layersync "
                    f"writes the spec dbt-core 1.10/1.11 parses (top-level `semantic_models:` and `metrics:`), and "
                    f"mixing the two is refused; nothing was written", "newer-spec"))
            return plan
        for problem in self.layer.problems:
            plan.notes.append(f"{problem}: its semantic models and metrics were not read")
        translated: list[_Translated] = []
        for request in requests:
            try:
                translated.append(self._measure(request.view, request.field, ()))
            except LayersyncError as exc:
                loc = request.field.location
                plan.skipped.append(Skipped(request.field.id, exc.file or loc.file, exc.line or loc.line,
                                            exc.message, getattr(exc, "code", "not-translatable")))
        # dependencies (measures a ratio or derived metric reads) are written too, each once
        every: dict[str, _Translated] = {}
        for item in translated:
            for dep in self._closure(item):
                every.setdefault(dep.field.id, dep)
        for item in every.values():
            draft = self._model_draft(item.view)
            assert isinstance(draft, SemanticModelDraft)
            plan.semantic_models.setdefault(draft.model.name.lower(), draft)
            for measure in item.measures:
                self._add_measure(draft, measure)
            for metric in item.metrics:
                existing = self.layer.metrics.get(metric["name"])
                plan.metrics.append(MetricDraft(metric, draft.name, existing))
        for draft in list(plan.semantic_models.values()):
            for other in self._related(draft):
                plan.semantic_models.setdefault(other.model.name.lower(), other)
        for draft in plan.semantic_models.values():
            _drop_entity_columns(draft)
        plan.metrics = [m for m in plan.metrics if not _same(m.existing, m.definition)]
        plan.time_spine = self.layer.time_spine is None and bool(every)
        changed_metrics = {m.name for m in plan.metrics}
        for item in translated:
            draft = self._models[item.view.model_name.lower()]
            assert isinstance(draft, SemanticModelDraft)
            own = item.metrics[-1]
            prior = self.layer.metrics.get(item.metric)
            names = {m["name"] for m in self._closure_metrics(item)}
            action = ("added" if prior is None else "replaced") if names & changed_metrics or \
                any(m in draft.measures for m in item.measures) else "unchanged"
            plan.pushed.append(PushedMetric(
                item.field.id, item.field.location.file, item.field.location.line, draft.name, item.metric,
                item.kind, action, draft.agg_time_dimension, item.field.sql, own,
                tuple(item.measures)))
        plan.skipped.extend(self._skipped_relationships)
        plan.notes.extend(dict.fromkeys(self._notes))
        return plan

    def _closure(self, item: _Translated) -> list[_Translated]:
        found: dict[str, _Translated] = {}
        pending = [item]
        while pending:
            current = pending.pop()
            if current.field.id in found:
                continue
            found[current.field.id] = current
            pending.extend(current.deps)
        return list(found.values())

    def _closure_metrics(self, item: _Translated) -> list[dict[str, Any]]:
        return [m for dep in self._closure(item) for m in dep.metrics]

    def _add_measure(self, draft: SemanticModelDraft, measure: dict[str, Any]) -> None:
        existing = draft.existing.measures.get(measure["name"]) if draft.existing else None
        if existing is not None and _same(existing, measure):
            return
        if all(m["name"] != measure["name"] for m in draft.measures):
            draft.measures.append(measure)

    # ------------------------------------------------------------------ names

    def _name(self, owner: str, base: str) -> str:
        """Stable on reruns (ours is found by its marker), unique across the project, never a human's."""
        for name, who in self._taken.items():
            if who == owner:
                return name
        holder = self._taken.get(base)
        if holder == "":
            where = self.layer.metrics.get(base) or next(
                (m.measures[base] for m in self.layer.semantic_models.values() if base in m.measures), None)
            raise NotTranslated(f"the MetricFlow name `{base}` is taken by a metric or measure the project already "
                                f"has ({where}), which layersync did not write and never overwrites; rename the "
                                f"measure or that metric", "name-collision")
        name, n = base, 1
        while name in self._taken and self._taken[name] != owner:
            n += 1
            name = f"{base}_{n}"
        self._taken[name] = owner
        return name

    def _metric_label(self, item: Field, owner: str, text: str | None = None) -> str:
        """MetricFlow wants every metric's label unique too: a taken one gets its view's label after it."""
        if owner in self._label_of:
            return self._label_of[owner]
        label = text or _label(item)
        view = self.semantic.views.get(item.view)
        if label in self._labels:
            label = f"{label} ({(view.label if view and view.label else item.view)})"
        base, n = label, 1
        while label in self._labels:
            n += 1
            label = f"{base} {n}"
        self._labels.add(label)
        self._label_of[owner] = label
        return label

    def _metric_base(self, view: View, item: Field) -> str:
        prefix = mf_name(view.model_name)
        own = mf_name(item.name)
        return own if own.startswith(prefix + "_") else mf_name(f"{prefix}_{item.name}")

    # ------------------------------------------------------------------ one measure

    def _measure(self, view: View, item: Field, stack: tuple[str, ...]) -> _Translated:
        done = self._done.get(item.id)
        if isinstance(done, LayersyncError):
            raise done
        if done is not None:
            return done
        if item.id in stack:
            raise NotTranslated(f"measures refer to each other in a cycle: {' -> '.join((*stack, item.id))}",
                                "reference-cycle", item.location.file, item.location.line)
        try:
            result = self._translate(view, item, (*stack, item.id))
        except LayersyncError as exc:
            if exc.file is None:
                exc.file, exc.line = item.location.file, item.location.line
            self._done[item.id] = exc
            raise
        self._done[item.id] = result
        return result

    def _translate(self, view: View, item: Field, stack: tuple[str, ...]) -> _Translated:
        where = (item.location.file, item.location.line)
        problem = unsafe_text(view, item)
        if problem:
            raise NotTranslated(problem, "unsafe-sql", *where)
        kind = (item.aggregate_type or "").lower() or None
        if kind in NOT_TRANSLATED:
            raise NotTranslated(f"not translated: {NOT_TRANSLATED[kind]}", "not-translatable", *where)
        if kind is not None and kind not in AGGREGATIONS:
            raise NotTranslated(f"unknown aggregate_type `{kind}` (known: {', '.join(sorted(AGGREGATIONS))}, "
                                f"{', '.join(sorted(NOT_TRANSLATED))})", "unknown-aggregate", *where)
        draft = self._model_draft(view)
        if isinstance(draft, LayersyncError):
            raise draft
        if not draft.agg_time_dimension:
            raise NotTranslated(
                f"MetricFlow aggregates every measure over a time dimension, and `{view.name}` has none it can tell: "
                f"mark a date or timestamp dimension with `timeframes:` in the view, or give its dbt column a "
                f"`data_type`", "no-time-dimension", view.file, view.line)
        if kind is None:
            return self._custom(view, item, draft, stack)
        metric = self._name(item.id, self._metric_base(view, item))
        measure = self._direct_measure(view, item, kind, metric, item.id)
        return _Translated(view, item, metric, "simple", [measure], [self._simple(metric, item, metric, item.id)])

    def _simple(self, name: str, item: Field, measure: str, owner: str, label: str | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": name, "label": self._metric_label(item, owner, label)}
        if item.description and label is None:
            doc["description"] = item.description
        doc.update({"type": "simple", "type_params": {"measure": measure}, "config": _meta(owner)})
        return doc

    def _direct_measure(self, view: View, item: Field, kind: str, name: str, owner: str) -> dict[str, Any]:
        inner = None if item.sql is None else self._row(view, replace(item, kind="dimension", filters={}))
        predicate = self._filters(view, item)
        if predicate is not None:
            inner = exp.Case(ifs=[exp.If(this=predicate, true=inner if inner is not None else exp.Literal.number(1))])
        if inner is None:
            if kind != "count":
                raise NotTranslated(f"`{item.name}` ({kind}) has no `sql:`: nothing to aggregate", "not-translatable",
                                    item.location.file, item.location.line)
            inner = exp.Literal.number(1)
        measure: dict[str, Any] = {"name": name, "label": _label(item)}
        if item.description:
            measure["description"] = item.description
        measure.update({"agg": AGGREGATIONS[kind], "expr": self._sql(inner, item)})
        if kind == "percentile":
            pct = item.percentile
            if pct is None or not 0 <= float(pct) <= 100:
                raise NotTranslated(f"`{item.name}`: a percentile needs `percentile: N` with N from 0 to 100 "
                                    f"(got {pct!r})", "bad-percentile", item.location.file, item.location.line)
            measure["agg_params"] = {"percentile": round(float(pct) / 100, 10), "use_discrete_percentile": False}
        measure["config"] = _meta(owner)
        return measure

    def _sql(self, expression: exp.Expression, item: Field) -> str:
        problem = unsafe_expression(expression, self.dbt_dialect)
        if problem:
            raise NotTranslated(problem, "unsafe-sql", item.location.file, item.location.line)
        return expression.sql(dialect=self.dbt_dialect)

    def _row(self, view: View, item: Field) -> exp.Expression:
        """A row-level expression over the view's table (its `${}` references inlined)."""
        return Resolver(view, self.dialect).resolve(item)

    # ------------------------------------------------------------------ filters

    def _filters(self, view: View, item: Field) -> exp.Expression | None:
        where = (item.location.file, item.location.line)
        predicates: list[exp.Expression] = []
        for target, condition in item.filters.items():
            target = str(target)
            owner, _, name = target.rpartition(".")
            if owner and owner != view.name:
                raise NotTranslated(f"the filter on `{target}` reads another view: a MetricFlow measure reads only its "
                                    f"own model's rows", "filter-join", *where)
            dimension = view.field_named(name)
            if dimension is None:
                raise NotTranslated(f"filter on `{target}`, which is no field of view `{view.name}`", "unknown-field",
                                    *where)
            if dimension.kind == "measure":
                raise NotTranslated(f"filter on measure `{target}`: a measure's rows are filtered by dimensions",
                                    "not-translatable", *where)
            if not isinstance(condition, dict) or not condition:
                raise NotTranslated(f"the filter on `{target}` must be an operator mapping such as `{{is: 1}}`",
                                    "bad-filter", *where)
            column = self._row(view, dimension)
            if not isinstance(column, (exp.Column, exp.Literal, exp.Func, exp.Paren, exp.Boolean)):
                column = exp.paren(column)
            for operator, value in condition.items():
                # the BI tool's own meaning of each operator (NULLs, ILIKE escapes): one definition for both sides
                predicates.append(filter_condition(column.copy(), str(operator), value, item, target))
        if not predicates:
            return None
        return predicates[0] if len(predicates) == 1 else exp.and_(*(exp.paren(p) for p in predicates))

    # ------------------------------------------------------------------ custom SQL aggregates

    def _custom(self, view: View, item: Field, draft: SemanticModelDraft, stack: tuple[str, ...]) -> _Translated:
        where = (item.location.file, item.location.line)
        if not item.sql:
            raise NotTranslated(f"measure `{item.name}` has neither `aggregate_type` nor `sql:`", "not-translatable",
                                *where)
        if item.filters:
            raise NotTranslated("filters on a custom SQL measure are not translated (which of its aggregates they "
                                "apply to is Omni's to decide)", "not-translatable", *where)
        try:
            expression, refs = parse_field_sql(item.sql, self.dialect)
        except (ValueError, ParseError, TokenError) as exc:
            raise NotTranslated(f"invalid SQL in `{item.name}`: {str(exc).strip().splitlines()[0]}", "invalid-sql",
                                *where) from None
        metric = self._name(item.id, self._metric_base(view, item))
        deps: list[_Translated] = []
        parts: dict[str, tuple[str, dict[str, Any]]] = {}     # aggregate SQL → (metric, measure)
        part_metrics: list[dict[str, Any]] = []

        def measure_ref(node: exp.Expression) -> Field | None:
            if not isinstance(node, exp.Column) or node.table or node.name not in refs:
                return None
            ref = refs[node.name]
            other = self.semantic.views.get(ref.view) if ref.view else view
            if other is None:
                raise NotTranslated(f"`${{{ref.target}}}`: no view `{ref.view}`", "unknown-field", *where)
            target = other.field_named(ref.field)
            if target is not None and target.kind == "measure":
                return target
            return None

        def leaf_aggregate(node: exp.Expression) -> exp.Expression:
            key = node.sql(dialect=self.dialect)
            if key not in parts:
                agg, arg, params = self._aggregate(view, node, refs, item)
                name = self._name(f"{item.id}#{len(parts) + 1}", f"{metric}_part_{len(parts) + 1}")
                measure: dict[str, Any] = {"name": name, "label": f"{_label(item)} (part {len(parts) + 1})",
                                           "agg": agg, "expr": self._sql(arg, item)}
                if params:
                    measure["agg_params"] = params
                measure["config"] = _meta(f"{item.id}#{len(parts) + 1}")
                parts[key] = (name, measure)
                part_metrics.append(self._simple(name, item, name, f"{item.id}#{len(parts)}",
                                                 label=f"{_label(item)} (part {len(parts)})"))
            return exp.column(parts[key][0])

        def rewrite(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.WithinGroup) or (isinstance(node, exp.AggFunc)
                                                     and not node.find_ancestor(exp.WithinGroup)):
                if node.find_ancestor(exp.Window) or isinstance(node.parent, exp.Window):
                    raise NotTranslated("a window function (`OVER`) is no combination of aggregates MetricFlow "
                                        "can define", "not-translatable", *where)
                return leaf_aggregate(node)
            target = measure_ref(node)
            if target is not None:
                other = self.semantic.views[target.view]
                dep = self._measure(other, target, stack)
                deps.append(dep)
                return exp.column(dep.metric)
            if isinstance(node, exp.Column):
                raise NotTranslated(f"`{node.sql()}` is read outside any aggregate: a metric combines aggregates, "
                                    f"not row values".replace(REF_PREFIX, "ref "), "not-translatable", *where)
            for key, value in list(node.args.items()):
                if isinstance(value, exp.Expression):
                    node.set(key, rewrite(value))
                elif isinstance(value, list):
                    node.set(key, [rewrite(v) if isinstance(v, exp.Expression) else v for v in value])
            return node

        if isinstance(expression, exp.Column) and measure_ref(expression) is None:
            raise NotTranslated(f"`{item.name}` aggregates nothing: its SQL is a row value", "not-translatable",
                                *where)
        combined = rewrite(expression)
        if not parts and not deps:
            raise NotTranslated(f"`{item.name}` aggregates nothing: its SQL has no aggregate and reads no measure",
                                "not-translatable", *where)
        leaves = [m for m, _ in parts.values()] + [d.metric for d in deps]
        doc: dict[str, Any] = {"name": metric, "label": self._metric_label(item, item.id)}
        if item.description:
            doc["description"] = item.description
        ratio = _ratio(combined)
        if ratio is not None:
            doc.update({"type": "ratio", "type_params": {"numerator": ratio[0], "denominator": ratio[1]}})
            kind = "ratio"
        else:
            if isinstance(combined, exp.Column) and len(set(leaves)) == 1 and parts and not deps:
                # one aggregate and nothing else: a simple metric over that measure, under the field's name
                (name, measure), = parts.values()
                measure = {**measure, "name": metric, "label": _label(item), "config": _meta(item.id)}
                self._taken.pop(name, None)
                return _Translated(view, item, metric, "simple", [measure],
                                   [self._simple(metric, item, metric, item.id)], deps)
            doc.update({"type": "derived", "type_params": {
                "expr": self._sql(combined, item), "metrics": [{"name": n} for n in dict.fromkeys(leaves)]}})
            kind = "derived"
        doc["config"] = _meta(item.id)
        return _Translated(view, item, metric, kind, [m for _, m in parts.values()], [*part_metrics, doc], deps)

    def _aggregate(self, view: View, node: exp.Expression, refs: dict, item: Field
                   ) -> tuple[str, exp.Expression, dict[str, Any] | None]:
        """One aggregate of a custom measure as (MetricFlow agg, row expression, agg_params)."""
        where = (item.location.file, item.location.line)
        params = None
        if isinstance(node, exp.WithinGroup):
            func, order = node.this, node.expression
            ordered = order.expressions if isinstance(order, exp.Order) else []
            if not isinstance(func, (exp.PercentileCont, exp.PercentileDisc)) or len(ordered) != 1:
                raise NotTranslated(f"`{node.sql()}` has no MetricFlow aggregation", "not-translatable", *where)
            arg, fraction = ordered[0].this, func.this
            agg, params = "percentile", self._fraction(fraction, func, item)
        elif isinstance(node, (exp.PercentileCont, exp.PercentileDisc)) and node.expression is not None:
            arg, agg, params = node.this, "percentile", self._fraction(node.expression, node, item)
        elif isinstance(node, exp.Count):
            inner = node.this
            if isinstance(inner, exp.Star) or inner is None:
                agg, arg = "count", exp.Literal.number(1)
            elif isinstance(inner, exp.Distinct):
                if len(inner.expressions) != 1:
                    raise NotTranslated("COUNT(DISTINCT a, b) has no MetricFlow aggregation", "not-translatable",
                                        *where)
                agg, arg = "count_distinct", inner.expressions[0]
            else:
                agg, arg = "count", inner
        else:
            simple = {exp.Sum: "sum", exp.Avg: "average", exp.Min: "min", exp.Max: "max", exp.Median: "median"}
            agg = next((v for k, v in simple.items() if type(node) is k), None)
            if agg is None or node.expressions:
                raise NotTranslated(f"`{node.sql(dialect=self.dialect)}`: {type(node).__name__.upper()} has no "
                                    f"MetricFlow aggregation".replace(REF_PREFIX, "ref "), "not-translatable",
                                    *where)
            arg = node.this
        if isinstance(arg, exp.Distinct):
            raise NotTranslated(f"`{node.sql()}`: only COUNT takes DISTINCT in MetricFlow", "not-translatable", *where)
        resolved = self._resolve_inside(view, arg.copy(), refs, item)
        if is_aggregate(resolved):
            raise NotTranslated("an aggregate inside an aggregate has no MetricFlow definition", "not-translatable",
                                *where)
        return agg, resolved, params

    def _fraction(self, value: exp.Expression, func: exp.Expression, item: Field) -> dict[str, Any]:
        try:
            fraction = float(value.name) if isinstance(value, exp.Literal) else None
        except ValueError:
            fraction = None
        if fraction is None or not 0 <= fraction <= 1:
            raise NotTranslated("a percentile's fraction must be a number from 0 to 1", "bad-percentile",
                                item.location.file, item.location.line)
        return {"percentile": fraction, "use_discrete_percentile": isinstance(func, exp.PercentileDisc)}

    def _resolve_inside(self, view: View, arg: exp.Expression, refs: dict, item: Field) -> exp.Expression:
        """An aggregate's argument with its `${}` references replaced by the dimensions' SQL."""
        where = (item.location.file, item.location.line)
        resolver = Resolver(view, self.dialect)

        def substitute(node: exp.Expression) -> exp.Expression:
            if not isinstance(node, exp.Column) or node.table or node.name not in refs:
                return node
            ref = refs[node.name]
            if ref.view is not None and ref.view != view.name:
                raise NotTranslated(f"`${{{ref.target}}}` inside an aggregate reads another view: a MetricFlow measure "
                                    f"reads only its own model's rows", "filter-join", *where)
            target = view.field_named(ref.field)
            if target is None:
                return exp.column(ref.field)
            if target.kind == "measure":
                raise NotTranslated(f"`${{{ref.target}}}` is a measure inside an aggregate", "not-translatable",
                                    *where)
            resolved = resolver.resolve(target)
            atomic = isinstance(resolved, (exp.Column, exp.Literal, exp.Func, exp.Paren))
            return resolved if atomic else exp.paren(resolved)

        return arg.transform(substitute)

    # ------------------------------------------------------------------ semantic models

    def _model_draft(self, view: View) -> SemanticModelDraft | LayersyncError:
        key = view.model_name.lower()
        held = self._models.get(key)
        if held is not None:
            return held
        try:
            held = self._build_model(view)
        except LayersyncError as exc:
            held = exc
        self._models[key] = held
        return held

    def _build_model(self, view: View) -> SemanticModelDraft:
        model = self.project.find_model(view.model_name)
        if model is None:
            raise NotTranslated(f"view `{view.name}` reads table `{view.model_name}`, which is not a model of the dbt "
                                f"project", "unknown-model", view.file, view.line)
        existing = self.layer.for_model(model.name)
        name = existing.name if existing else mf_name(model.name)
        if existing is None and name in self.layer.semantic_models:
            name = mf_name(f"{model.name}_model")
        draft = SemanticModelDraft(name, model, existing, description=view.label)
        keys = [f for f in view.fields.values() if f.kind == "dimension" and f.primary_key]
        primary = [e for e in (existing.entities.values() if existing else []) if e.data.get("type") == "primary"]
        if primary:
            draft.primary_entity = primary[0].name
        elif len(keys) == 1:
            entity = self._entity_for(view, keys[0], "primary")
            draft.entities.append(entity)
            draft.primary_entity = entity["name"]
        elif not keys:
            raise NotTranslated(f"view `{view.name}` has no primary key: MetricFlow needs one (its primary entity) to "
                                f"count rows and join; mark its key dimension `primary_key: true`", "no-primary-key",
                                view.file, view.line)
        else:
            raise NotTranslated(f"view `{view.name}` has a composite primary key ({', '.join(k.name for k in keys)}); "
                                f"MetricFlow's primary entity is one expression", "no-primary-key",
                                view.file, view.line)
        entity_columns = {_expr_key(e.data.get("expr") or e.name) for e in
                          (existing.entities.values() if existing else [])}
        entity_columns |= {_expr_key(e.get("expr") or e["name"]) for e in draft.entities}
        taken = set(existing.dimensions) | set(existing.entities) | set(existing.measures) if existing else set()
        taken |= {e["name"] for e in draft.entities}
        times: list[str] = []
        for item in view.fields.values():
            if item.kind != "dimension" or item.primary_key:
                continue
            try:
                if unsafe_text(view, item):
                    continue
                expression = self._row(view, item)
                expr_sql = expression.sql(dialect=self.dbt_dialect)
                if unsafe_expression(expression, self.dbt_dialect):
                    continue
            except LayersyncError:
                continue                           # a dimension dbt cannot read (a join, bad SQL) is left out
            dim_name = mf_name(item.name)
            if _expr_key(expr_sql) in entity_columns or dim_name in self.leave_out:
                continue
            is_time = self._is_time(model, item, expression)
            declared = existing.dimensions.get(dim_name) if existing else None
            if declared is not None:
                draft.dimension_fields[item.id] = dim_name
                if declared.data.get("type") == "time":
                    times.append(dim_name)
                continue
            if dim_name in taken:
                continue
            dimension: dict[str, Any] = {"name": dim_name}
            if item.label or item.description:
                dimension["description"] = item.description or item.label
            dimension["type"] = "time" if is_time else "categorical"
            if expr_sql != dim_name:
                dimension["expr"] = expr_sql
            if is_time:
                dimension["type_params"] = {"time_granularity": TIME_GRANULARITY}
                times.append(dim_name)
            draft.dimensions.append(dimension)
            draft.dimension_fields[item.id] = dim_name
            taken.add(dim_name)
        draft.agg_time_dimension = existing.agg_time_dimension if existing and existing.agg_time_dimension else \
            (times[0] if times else None)
        draft.set_agg_time = existing is not None and not existing.agg_time_dimension and bool(times)
        return draft

    def _entity_for(self, view: View, key: Field, kind: str) -> dict[str, Any]:
        expression = self._row(view, key)
        expr_sql = self._sql(expression, key)
        entity: dict[str, Any] = {"name": mf_name(key.name), "type": kind}
        if expr_sql != entity["name"]:
            entity["expr"] = expr_sql
        return entity

    def _is_time(self, model: Model, item: Field, expression: exp.Expression) -> bool:
        attributes = item.attributes or {}
        if attributes.get("timeframes") or str(attributes.get("type") or item.type or "").lower() in (
                "time", "date", "timestamp", "datetime"):
            return True
        column = expression.name.lower() if isinstance(expression, exp.Column) else None
        declared = self.column_types.get(model.name.lower(), {}).get(column or "")
        if declared:
            return is_time_type(declared)
        if isinstance(expression, exp.Cast):
            return is_time_type(expression.to.sql())
        if isinstance(expression, (exp.DateTrunc, exp.TimestampTrunc)):
            return True
        return bool(column and _TIME_NAME.search(column))

    def _related(self, draft: SemanticModelDraft) -> list[SemanticModelDraft]:
        """Foreign entities for the view's many_to_one / one_to_one joins, and the joined views' semantic models
        (entities and dimensions), so metrics group by their dimensions too."""
        views = [v for v in self.semantic.views.values() if v.model_name.lower() == draft.model.name.lower()
                 and not v.query]
        found: list[SemanticModelDraft] = []
        for view in views:
            for relationship, other_name in self._joins_from(view):
                other = self.semantic.views.get(other_name)
                if other is None:
                    continue
                at = (relationship.location.file, relationship.location.line)
                target = self._model_draft(other)
                if isinstance(target, LayersyncError):
                    self._notes.append(f"{relationship.location}: `{view.name}` → `{other.name}` is not written as an "
                                       f"entity: {target.message}")
                    continue
                try:
                    entity = self._foreign_entity(view, other, relationship, target, draft, at)
                except NotTranslated as exc:
                    self._skipped_relationships.append(Skipped(f"{view.name} -> {other.name}", *at, exc.message,
                                                               exc.code))
                    continue
                if entity is not None:
                    draft.entities.append(entity)
                found.append(target)
        return found

    def _joins_from(self, view: View) -> list[tuple[Relationship, str]]:
        pairs = []
        for relationship in self.semantic.relationships:
            if relationship.join_from_view == view.name and relationship.relationship_type in joins.SAFE_TYPES:
                pairs.append((relationship, relationship.join_to_view))
            elif relationship.reversible and relationship.join_to_view == view.name and \
                    relationship.relationship_type == "one_to_one":
                pairs.append((relationship, relationship.join_from_view))
        return pairs

    def _foreign_entity(self, view: View, other: View, relationship: Relationship, target: SemanticModelDraft,
                        draft: SemanticModelDraft, at: tuple[str, int]) -> dict[str, Any] | None:
        try:
            pairs = joins.on_pairs(relationship, view.name, other.name, at)
        except joins.JoinRefused as exc:
            raise NotTranslated(exc.message, exc.code, *at) from None
        if len(pairs) != 1:
            raise NotTranslated(f"the join `{view.name}` → `{other.name}` is on {len(pairs)} column pairs; a MetricFlow "
                                f"entity is one expression", "join-types", *at)
        mine, theirs = pairs[0]
        left = Resolver(view, self.dialect).resolve_sql(mine, at)
        right = Resolver(other, self.dialect).resolve_sql(theirs, at)
        keys = [f for f in other.fields.values() if f.kind == "dimension" and f.primary_key]
        key_sql = self._row(other, keys[0]).sql(dialect=self.dbt_dialect) if keys else None
        if key_sql != right.sql(dialect=self.dbt_dialect) or target.primary_entity is None:
            raise NotTranslated(
                f"the join `{view.name}` → `{other.name}` is on `{right.sql()}`, which is not `{other.name}`'s primary "
                f"key: the two semantic models would join a foreign entity to one that is not primary (MetricFlow "
                f"joins foreign to primary or unique)", "join-types", *at)
        name = target.primary_entity
        if target.existing is not None and name in target.existing.entities and \
                target.existing.entities[name].data.get("type") not in ("primary", "unique", "natural"):
            declared = target.existing.entities[name]
            raise NotTranslated(f"entity `{name}` is `{declared.data.get('type')}` in `{target.name}` ({declared}): "
                                f"`{view.name}` → `{other.name}` would join on two different entity types",
                                "join-types", *at)
        left_type = self._column_type(draft.model, left)
        right_type = self._column_type(target.model, right)
        if left_type and right_type and _type_family(left_type) != _type_family(right_type):
            raise NotTranslated(f"`{view.name}` → `{other.name}` joins `{left.sql()}` ({left_type}) to `{right.sql()}` "
                                f"({right_type}): the two semantic models would join on different types",
                                "join-types", *at)
        left_sql = self._sql(left, Field(view.name, "on_sql", "dimension", relationship.location))
        existing = draft.existing
        if existing is not None:
            for declared in existing.entities.values():
                if declared.name == name or _expr_key(declared.data.get("expr") or declared.name) == \
                        _expr_key(left_sql):
                    if declared.data.get("type") == "primary" and declared.name == name:
                        raise NotTranslated(f"entity `{name}` is primary in `{existing.name}` ({declared}) too",
                                            "join-types", *at)
                    return None
        if any(e["name"] == name for e in draft.entities):
            return None
        entity: dict[str, Any] = {"name": name, "type": "foreign"}
        if left_sql != name:
            entity["expr"] = left_sql
        return entity

    def _column_type(self, model: Model, expression: exp.Expression) -> str | None:
        if not isinstance(expression, exp.Column):
            return None
        return self.column_types.get(model.name.lower(), {}).get(expression.name.lower())


def _drop_entity_columns(draft: SemanticModelDraft) -> None:
    """A join column is its entity, not also a dimension: MetricFlow names each element once."""
    keys = {_expr_key(e.get("expr") or e["name"]) for e in draft.entities} | {e["name"] for e in draft.entities}
    kept = [d for d in draft.dimensions if d["name"] not in keys and _expr_key(d.get("expr") or d["name"]) not in keys]
    dropped = {d["name"] for d in draft.dimensions} - {d["name"] for d in kept}
    draft.dimensions = kept
    draft.dimension_fields = {k: v for k, v in draft.dimension_fields.items() if v not in dropped}


def _expr_key(text: Any) -> str:
    """An entity's or dimension's `expr` as sqlglot reads it, so `"Order_ID"` and `order_id` are one column."""
    raw = str(text).strip()
    try:
        node = sqlglot.parse_one(raw)
    except (ParseError, TokenError):
        return raw.lower()
    for identifier in node.find_all(exp.Identifier):
        identifier.set("quoted", False)
    return node.sql().lower()


def _type_family(data_type: str) -> str:
    text = data_type.lower()
    if any(w in text for w in ("int", "numeric", "decimal", "number", "double", "float", "real")):
        return "number"
    if any(w in text for w in ("char", "text", "string")):
        return "text"
    if is_time_type(text):
        return "time"
    return text


def _ratio(expression: exp.Expression) -> tuple[str, str] | None:
    """`a / NULLIF(b, 0)` of two metrics: MetricFlow's ratio computes exactly that."""
    node = expression.unnest() if isinstance(expression, exp.Paren) else expression
    if not isinstance(node, exp.Div):
        return None
    left, right = node.this.unnest(), node.expression.unnest()
    if not (isinstance(left, exp.Column) and isinstance(right, exp.Nullif)):
        return None
    denominator, zero = right.this.unnest(), right.expression
    if isinstance(denominator, exp.Column) and isinstance(zero, exp.Literal) and not zero.is_string and \
            float(zero.name) == 0:
        return left.name, denominator.name
    return None


def _same(existing: Any, definition: dict[str, Any]) -> bool:
    """Our earlier definition equals the new one: nothing to write."""
    return existing is not None and existing.data == definition

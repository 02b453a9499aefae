"""Which semantic fields depend on a dbt column: directly (`${TABLE}.col`, a bare `col`, a dimension
named like the column with no `sql:`, an undeclared `${col}`) or through chains of `${field}` and
`${view.field}` references, across every view. Pure: the views in, the dependants out.

A dbt change that removes, renames or retypes a column is judged by what reads it; the chain is kept
so a PR can say *why* `orders.revenue` breaks when `orders.amount` goes.
"""
from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Iterable, Mapping

from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from bot.dbt.project import model_named_by
from bot.semantic.model import Field, Location, View
from bot.semantic.refs import TABLE_PLACEHOLDER, parse_field_sql

FieldKey = tuple[str, str]          # (view, field)


@dataclass(frozen=True)
class Reads:
    columns: frozenset[str]          # columns of the view's own table, lower case
    fields: frozenset[FieldKey]      # other fields, resolved to (view, field name)
    parsed: bool = True              # False when the SQL did not parse (nothing is known)


@dataclass(frozen=True)
class Dependent:
    view: str
    field: str
    kind: str                        # "dimension" | "measure"
    location: Location
    via: tuple[str, ...]             # field ids from the one reading the column to this one
    aggregate_type: str | None = None

    @property
    def id(self) -> str:
        return f"{self.view}.{self.field}"

    @property
    def direct(self) -> bool:
        return len(self.via) <= 1


def reads(view: View, item: Field, dialect: str, views: dict[str, View] | None = None) -> Reads:
    """What `item` reads. A measure without `sql:` (a plain count) reads no column."""
    if item.sql is None:
        return Reads(frozenset({item.name.lower()}) if item.kind == "dimension" else frozenset(), frozenset())
    try:
        expression, refs = parse_field_sql(item.sql, dialect)
    except (ValueError, ParseError, TokenError):
        return Reads(frozenset(), frozenset(), parsed=False)
    columns: set[str] = set()
    fields: set[FieldKey] = set()
    for node in expression.find_all(exp.Column):
        if node.table == TABLE_PLACEHOLDER or (not node.table and node.name not in refs
                                               and node.name != TABLE_PLACEHOLDER):
            columns.add(node.name.lower())
    for ref in refs.values():
        owner = view if ref.view in (None, view.name) else (views or {}).get(ref.view)
        target = owner.field_named(ref.field) if owner is not None else None
        if target is not None:
            fields.add((owner.name, target.name))
        elif ref.view is None:
            columns.add(ref.field.lower())          # an undeclared `${col}` is the table's column
    return Reads(frozenset(columns), frozenset(fields))


class DependencyIndex:
    """Every field's reads, inverted: column → readers, field → fields that refer to it."""

    def __init__(self, views: Iterable[View], dialect: str = "duckdb", relations: Mapping[str, str] | None = None):
        """`relations`: model by relation name for models dbt aliases, so a view naming the alias
        (`table_name: analytics.fct_orders`) depends on the model (`orders`)."""
        self.views = {v.name: v for v in views}
        self.dialect = dialect
        self._relations = {k.lower(): v.lower() for k, v in (relations or {}).items()}
        self._column_readers: dict[tuple[str, str], list[FieldKey]] = defaultdict(list)
        self._referrers: dict[FieldKey, list[FieldKey]] = defaultdict(list)
        self.unparsed: list[Field] = []
        for view in self.views.values():
            model = self.model_of(view)
            for item in view.fields.values():
                found = reads(view, item, dialect, self.views)
                if not found.parsed:
                    self.unparsed.append(item)
                for column in sorted(found.columns):
                    self._column_readers[(model, column)].append((view.name, item.name))
                for key in sorted(found.fields):
                    self._referrers[key].append((view.name, item.name))

    def model_of(self, view: View) -> str:
        """The dbt model (lower case) a view reads."""
        return model_named_by(view.model_name, self._relations)

    def views_reading(self, model: str) -> list[View]:
        return [v for v in self.views.values() if self.model_of(v) == model.lower()]

    def direct_readers(self, model: str, column: str) -> list[Field]:
        return [self.views[v].fields[f] for v, f in self._column_readers.get((model.lower(), column.lower()), [])]

    def dependents(self, model: str, column: str | None = None) -> list[Dependent]:
        """Fields reading `model.column` (every column when None: a removed model), then the fields
        that refer to those, breadth first; each once, with the shortest chain."""
        if column is None:
            start = [(v.name, f) for v in self.views_reading(model) for f in v.fields]
        else:
            start = list(self._column_readers.get((model.lower(), column.lower()), []))
        seen: dict[FieldKey, tuple[str, ...]] = {}
        queue: deque[tuple[FieldKey, tuple[str, ...]]] = deque((key, (f"{key[0]}.{key[1]}",)) for key in start)
        while queue:
            key, via = queue.popleft()
            if key in seen:
                continue
            seen[key] = via
            for referrer in self._referrers.get(key, []):
                if referrer not in seen:
                    queue.append((referrer, (*via, f"{referrer[0]}.{referrer[1]}")))
        found = []
        for (view, name), via in seen.items():
            item = self.views[view].fields[name]
            found.append(Dependent(view, name, item.kind, item.location, via, item.aggregate_type))
        return sorted(found, key=lambda d: (len(d.via), d.location.file, d.location.line))

"""Which semantic fields depend on a dbt column: directly (`${TABLE}.col`, a bare `col`, a dimension
named like the column with no `sql:`, an undeclared `${col}`) or through chains of `${field}` and
`${view.field}` references, across every view. Pure: the views in, the dependants out.

A dbt change that removes, renames or retypes a column is judged by what reads it; the chain is kept
so a PR can say *why* `orders.revenue` breaks when `orders.amount` goes. A measure's `filters:` read
the fields they name too. Topics and relationships name fields as well (`model_mentions`), so a
broken field breaks the topics that list it and the joins that read it.
"""
from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Iterable, Mapping

from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from bot.dbt.project import model_named_by
from bot.errors import SemanticError
from bot.semantic.formats import TOPIC_SUFFIXES, relative, strip_suffix
from bot.semantic.model import Field, Location, View
from bot.semantic.reader import _line_of, load_view_yaml
from bot.semantic.refs import TABLE_PLACEHOLDER, Ref, parse_field_sql, scan

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
        return Reads(frozenset({item.name.lower()}) if item.kind == "dimension" else frozenset(),
                     frozenset(_filtered_on(view, item, views)))
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
    return Reads(frozenset(columns), frozenset(fields | _filtered_on(view, item, views)))


def _filtered_on(view: View, item: Field, views: Mapping[str, View] | None) -> set[FieldKey]:
    """The fields a measure's `filters:` name (`{is_churned: {is: 1}}`): it counts only the rows they keep."""
    found: set[FieldKey] = set()
    for name in item.filters:
        owner_name, dot, field_name = str(name).rpartition(".")
        owner = view if not dot or owner_name == view.name else (views or {}).get(owner_name)
        target = owner.field_named(field_name) if owner is not None else None
        if target is not None and (owner.name, target.name) != (view.name, item.name):
            found.add((owner.name, target.name))
    return found


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


@dataclass(frozen=True)
class Mention:
    """A place outside the views that names a field: a topic's `fields`, filters or SQL, or a join's SQL."""

    field: str                       # the field's id, as its view names it (an alias resolved)
    file: str
    line: int
    what: str                        # "topic `Shop` lists it in `fields`", "the join a → b reads it in `on_sql`"


def model_mentions(texts: Mapping[str, str], views: Mapping[str, View], root: str = "") -> dict[str, list[Mention]]:
    """Every field the model's topics and `relationships.yaml` name, by field id, with file and line.
    Files that do not read are skipped here: reading the model reports them."""
    found: dict[str, list[Mention]] = defaultdict(list)
    for path in sorted(texts):
        rel = relative(path, root)
        if rel is None or not (rel.endswith(TOPIC_SUFFIXES) or rel in ("relationships.yaml", "relationships.yml")):
            continue
        try:
            data = load_view_yaml(texts[path], path)
        except SemanticError:
            continue
        mentions = _topic_mentions(data, path, views) if rel.endswith(TOPIC_SUFFIXES) else \
            _relationship_mentions(data, path, views)
        for mention in mentions:
            found[mention.field].append(mention)
    return dict(found)


def _field_id(text: str, views: Mapping[str, View]) -> str | None:
    view_name, dot, name = text.strip().lstrip("-").strip().partition(".")
    view = views.get(view_name) if dot else None
    target = view.field_named(name) if view is not None and name != "*" else None
    return target.id if target is not None else None


def _sql_mentions(sql: Any, path: str, line: int, what: str, views: Mapping[str, View]) -> list[Mention]:
    try:
        parts = scan(str(sql))
    except ValueError:
        return []
    ids = {_field_id(p.target, views) for p in parts if isinstance(p, Ref) and not p.is_table}
    return [Mention(i, path, line, what) for i in sorted(i for i in ids if i)]


def _topic_mentions(data: Any, path: str, views: Mapping[str, View]) -> list[Mention]:
    if not isinstance(data, dict):
        return []
    name = str(data.get("name") or strip_suffix(PurePosixPath(path).name, TOPIC_SUFFIXES))
    topic = f"topic `{name}`"
    found = []
    listed = data.get("fields")
    if isinstance(listed, list):
        for index, entry in enumerate(listed):
            field_id = _field_id(entry, views) if isinstance(entry, str) else None
            if field_id is not None:
                excluded = entry.strip().startswith("-")
                found.append(Mention(field_id, path, _item_line(listed, index, _line_of(data, "fields", 1)),
                                     f"{topic} {'excludes' if excluded else 'lists'} it in `fields`"))
    for key in ("default_filters", "always_where_filters"):
        block = data.get(key)
        if isinstance(block, dict):
            for filter_key in block:
                field_id = _field_id(str(filter_key), views)
                if field_id is not None:
                    found.append(Mention(field_id, path, _line_of(block, filter_key, 1),
                                         f"{topic} filters on it in `{key}`"))
    for key, value in data.items():
        if str(key).endswith("_sql") and isinstance(value, str):
            found += _sql_mentions(value, path, _line_of(data, key, 1), f"{topic} reads it in `{key}`", views)
    return found


def _relationship_mentions(data: Any, path: str, views: Mapping[str, View]) -> list[Mention]:
    if not isinstance(data, list):
        return []
    found = []
    for index, entry in enumerate(data):
        if not isinstance(entry, dict):
            continue
        join = f"the join {entry.get('join_from_view')} → {entry.get('join_to_view')}"
        for key, value in entry.items():
            if str(key).endswith("_sql") and isinstance(value, str):
                found += _sql_mentions(value, path, _line_of(entry, key, _item_line(data, index, 1)),
                                       f"{join} reads it in `{key}`", views)
    return found


def _item_line(seq: Any, index: int, default: int) -> int:
    try:
        return int(seq.lc.item(index)[0]) + 1
    except (AttributeError, KeyError, TypeError, IndexError):
        return default

"""The values check of a pushed column: what dbt built, row by row, against the analyst's SQL evaluated
directly in the warehouse (pure: it writes the query; the caller runs it through bot/warehouse).

The expected side is the field's own semantics, not the model's column: its `${}` references resolved
over the view's table, and a `${other_view.field}` read through the relationship's join of the other
view's table. So a column whose meaning changed on the way into the model (an operator binding
differently around a macro it inlined, a join on the wrong key) is counted, not assumed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from sqlglot import exp

from bot.errors import TranslationError  # noqa: F401  (raised by build; callers catch it from here)
from bot.semantic.model import Field, SemanticModel, View
from bot.semantic.refs import JOIN_PREFIX, Resolver, plain_column
from bot.translate import joins

BASE = "layersync_base"
BUILT = "layersync_built"
EXPECTED = "layersync_expected"
KEY = "layersync_key"


@dataclass(frozen=True)
class ValueCheck:
    field_id: str
    column: str
    key: str
    expected_sql: str      # the analyst's SQL as the warehouse evaluates it, over the base relations
    sql: str               # one row: (rows compared, rows whose built value differs from the expected one)


@dataclass(frozen=True)
class ValueResult:
    check: ValueCheck
    total: int
    wrong: int

    @property
    def ok(self) -> bool:
        return self.total > 0 and self.wrong == 0


def _identifier(name: str, dialect: str) -> str:
    return exp.to_identifier(name).sql(dialect=dialect)


def key_column(view: View, dialect: str) -> str:
    """The column rows are lined up by: the view's primary key, which must be a column as it is."""
    keys = [f for f in view.fields.values() if f.primary_key and f.kind == "dimension"]
    column = plain_column(keys[0], dialect) if len(keys) == 1 else None
    if column is None:
        why = "has no primary key" if not keys else ("has several primary keys" if len(keys) > 1
                                                      else f"has primary key `{keys[0].name}`, which is no plain column")
        raise TranslationError(f"view `{view.name}` {why}: the values of its columns cannot be lined up row by row",
                               view.file, view.line)
    return column


def build(view: View, field: Field, column: str, *, built: str, relation: Callable[[View], str],
          dialect: str = "duckdb", semantic: SemanticModel | None = None) -> ValueCheck:
    """The query comparing `built.<column>` (the relation dbt built from the pushed model) with `field`'s
    SQL evaluated over `relation(view)` (the relation the model was built from before, e.g. prod), each
    joined view read through `relation(other_view)`, rows lined up by the view's primary key.
    TranslationError when the field cannot be evaluated (no key, a reference no join expresses)."""
    finder = joins.finder(lambda: semantic, view) if semantic is not None else None
    resolver = Resolver(view, dialect, finder)
    expression = resolver.resolve(field)
    aliases = {name: f"layersync_join_{index}" for index, name in enumerate(resolver.joined)}
    _qualify(expression, aliases)
    clauses = []
    for name, join in resolver.joined.items():
        on = joins.condition(join, resolver, dialect)
        _qualify(on, aliases)
        clauses.append(f" left join {relation(join.view)} as {aliases[name]} on {on.sql(dialect=dialect)}")
    key = _identifier(key_column(view, dialect), dialect)
    expected = expression.sql(dialect=dialect)
    inner = (f"select {BASE}.{key} as {KEY}, {expected} as {EXPECTED} from {relation(view)} as {BASE}"
             + "".join(clauses))
    differs = exp.NullSafeNEQ(this=exp.column(column, BUILT), expression=exp.column(EXPECTED, "e")).sql(dialect=dialect)
    sql = (f"select count(*), coalesce(sum(case when {differs} then 1 else 0 end), 0) "
           f"from {built} as {BUILT} join ({inner}) as e on {BUILT}.{key} = e.{KEY}")
    return ValueCheck(field.id, column, key, expected, sql)


def _qualify(expression: exp.Expression, aliases: dict[str, str]) -> None:
    """The view's own columns read from the base relation, a joined view's from its join's alias."""
    for node in expression.find_all(exp.Column):
        if node.table.startswith(JOIN_PREFIX):
            node.set("table", exp.to_identifier(aliases[node.table[len(JOIN_PREFIX):]]))
        elif not node.table:
            node.set("table", exp.to_identifier(BASE))


def run(check: ValueCheck, query: Callable[[str], list[tuple]]) -> ValueResult:
    """`query`: a warehouse's query method (bot.warehouse)."""
    (total, wrong), = query(check.sql)
    return ValueResult(check, int(total), int(wrong or 0))

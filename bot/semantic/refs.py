"""`${...}` references in semantic-layer SQL, and their resolution into SQL over a table's columns.

The `${}` syntax is the semantic layer's own template language, so it is scanned here by hand;
everything between the references is SQL and goes to sqlglot.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from bot.errors import TranslationError
from bot.semantic.model import Field, Location, View

TABLE_PLACEHOLDER = "__layersync_table__"
REF_PREFIX = "__layersync_ref_"
# A column of a joined view in a resolved expression: `__layersync_join__<view>.<column>`; the planner
# puts the join's alias in its place once it knows it.
JOIN_PREFIX = "__layersync_join__"
# Inlining copies each referenced field's SQL: twenty fields each referring twice to the one before
# would make a million-node expression. Past this size a dimension is refused, not built.
MAX_RESOLVED_NODES = 5_000
OMNI_NO_TABLE = ("Omni has no `${TABLE}` (its validator fails with `Column \"__omni_scoped\" not found`): "
                 "write the column's bare name (`amount`) or refer to a field (`${amount}`)")


@dataclass(frozen=True)
class Ref:
    """One `${...}`: `${TABLE}`, `${field}` or `${view.field}`."""

    target: str

    @property
    def is_table(self) -> bool:
        return self.target.upper() == "TABLE"

    @property
    def view(self) -> str | None:
        return self.target.split(".", 1)[0] if "." in self.target else None

    @property
    def field(self) -> str:
        return self.target.split(".", 1)[1] if "." in self.target else self.target


def scan(sql: str) -> list[str | Ref]:
    """Split template text into SQL pieces and references; an unclosed `${` is an error."""
    parts: list[str | Ref] = []
    pos = 0
    while True:
        start = sql.find("${", pos)
        if start < 0:
            if pos < len(sql):
                parts.append(sql[pos:])
            return parts
        end = sql.find("}", start + 2)
        if end < 0:
            raise ValueError(f"unclosed `${{` at character {start + 1}")
        if start > pos:
            parts.append(sql[pos:start])
        target = sql[start + 2:end].strip()
        if not target:
            raise ValueError(f"empty reference `${{}}` at character {start + 1}")
        parts.append(Ref(target))
        pos = end + 1


def parse_field_sql(sql: str, dialect: str) -> tuple[exp.Expression, dict[str, Ref]]:
    """Parse a field's SQL with placeholders standing in for references."""
    refs: dict[str, Ref] = {}
    text: list[str] = []
    for part in scan(sql):
        if isinstance(part, Ref):
            if part.is_table:
                text.append(TABLE_PLACEHOLDER)
            else:
                placeholder = f"{REF_PREFIX}{len(refs)}"
                refs[placeholder] = part
                text.append(placeholder)
        else:
            text.append(part)
    source = "".join(text).strip()
    if not source:
        raise ValueError("empty SQL expression")
    expression = sqlglot.parse_one(source, dialect=dialect)
    if isinstance(expression, (exp.Query, exp.Command)) or expression is None:
        raise ValueError("a field's SQL must be an expression, not a statement")
    return expression, refs


def is_aggregate(expression: exp.Expression) -> bool:
    """True when the expression aggregates rows (outside a window), so it is no row-level column."""
    for node in expression.find_all(exp.AggFunc):
        if not node.find_ancestor(exp.Window):
            return True
    return False


def plain_column(field: Field, dialect: str) -> str | None:
    """The column a dimension simply exposes (no `sql:`, `${TABLE}.col`, or a bare/quoted identifier)."""
    if field.sql is None:
        return field.name
    try:
        expression, refs = parse_field_sql(field.sql, dialect)
    except (ValueError, ParseError, TokenError):
        return None
    if isinstance(expression, exp.Column) and not refs:
        table = expression.table
        if not table or table == TABLE_PLACEHOLDER:
            return expression.name
    return None


def _wrap(expression: exp.Expression) -> exp.Expression:
    """Parenthesise a substituted expression unless it is atomic, so precedence survives."""
    if isinstance(expression, (exp.Column, exp.Literal, exp.Func, exp.Paren, exp.Boolean, exp.Null, exp.Cast)):
        return expression
    return exp.Paren(this=expression)


class Resolver:
    """Turns a dimension into one SQL expression over its view's table columns.

    References to other fields of the same view are inlined recursively; a cycle, an unknown
    field, an aggregate or a reference into another view (a join) cannot become a column of
    the view's own dbt model and is reported with the field's file and line.
    """

    def __init__(self, view: View, dialect: str, joins: Callable[[str, tuple[str, int]], Any] | None = None):
        self.view = view
        self.dialect = dialect
        # `${other.field}`: finds the join (bot.translate.joins.Join) or raises why there is none; without
        # it a reference into another view is refused as needing a join.
        self.joins = joins
        self.joined: dict[str, Any] = {}          # view name -> the Join its fields were read through
        self._foreign: dict[str, Resolver] = {}
        # Resolved fields with their node counts. A success does not depend on the path that reached
        # the field (a cycle through it would have failed its own resolution), so one entry serves
        # every reference: each field is parsed once per resolver, not once per path to it.
        self._done: dict[str, tuple[exp.Expression, int]] = {}

    def resolve(self, field: Field) -> exp.Expression:
        return self._resolve(field, ())[0].copy()

    def _resolve(self, field: Field, stack: tuple[str, ...]) -> tuple[exp.Expression, int]:
        own = self.view.fields.get(field.name) is field  # not e.g. the field's previous revision
        done = self._done.get(field.name) if own else None
        if done is not None:
            return done
        resolved = self._resolve_new(field, stack)
        if own:
            self._done[field.name] = resolved
        return resolved

    def _resolve_new(self, field: Field, stack: tuple[str, ...]) -> tuple[exp.Expression, int]:
        if field.name in stack:
            cycle = " -> ".join((*stack[stack.index(field.name):], field.name))
            raise TranslationError(f"reference cycle: {cycle}", field.location.file, field.location.line)
        if field.kind == "measure":
            origin = self.view.fields.get(stack[-1]) if stack else None
            where = origin.location if origin else field.location
            raise TranslationError(
                f"refers to measure `{field.name}`, an aggregate: a row-level column cannot contain it",
                where.file, where.line,
            )
        if field.sql is None:
            return exp.column(field.name, quoted=not _is_simple_identifier(field.name)), 1
        self._refuse_table(field)
        try:
            expression, refs = parse_field_sql(field.sql, self.dialect)
        except (ValueError, ParseError, TokenError) as exc:
            raise TranslationError(f"invalid SQL in `{field.name}`: {_first_line(exc)}",
                                   field.location.file, field.location.line) from None
        if is_aggregate(expression):
            raise TranslationError(
                f"`{field.name}` aggregates rows; only row-level dimensions become dbt columns",
                field.location.file, field.location.line,
            )
        inner_stack = (*stack, field.name)
        size = sum(1 for _ in expression.walk())

        def substitute(node: exp.Expression) -> exp.Expression:
            nonlocal size
            if not isinstance(node, exp.Column):
                return node
            if node.table == TABLE_PLACEHOLDER:
                return exp.column(node.name, quoted=node.this.args.get("quoted", False))
            if node.name == TABLE_PLACEHOLDER:
                raise TranslationError(f"`${{TABLE}}` in `{field.name}` must name a column: `${{TABLE}}.column`",
                                       field.location.file, field.location.line)
            ref = refs.get(node.name)
            if ref is None:
                return node
            if ref.view is not None and ref.view != self.view.name and self.joins is not None:
                return _wrap(self._through_join(ref, field))
            target = self._target(ref, field)
            if target is None:  # not a declared field: the table's column of that name
                return exp.column(ref.field, quoted=not _is_simple_identifier(ref.field))
            inlined, inlined_size = self._resolve(target, inner_stack)
            size += inlined_size
            if size > MAX_RESOLVED_NODES:
                raise TranslationError(
                    f"`{field.name}` expands to more than {MAX_RESOLVED_NODES:,} SQL nodes once its references are "
                    f"inlined; refer to fewer fields, or to each field fewer times",
                    field.location.file, field.location.line)
            return _wrap(inlined.copy())

        return expression.transform(substitute), size

    def _through_join(self, ref: Ref, origin: Field) -> exp.Expression:
        """`${other.field}` as the other view's SQL over its own table, its columns marked as the joined
        view's (`__layersync_join__<view>.col`); the other view's field may not read a third view."""
        assert self.joins is not None and ref.view is not None
        join = self.joined.get(ref.view) or self.joins(ref.view, (origin.location.file, origin.location.line))
        self.joined[ref.view] = join
        other = self._foreign.get(ref.view)
        if other is None:
            other = self._foreign[ref.view] = Resolver(join.view, self.dialect)
        target = join.view.field_named(ref.field)
        expression = (exp.column(ref.field, quoted=not _is_simple_identifier(ref.field)) if target is None
                      else other.resolve(target))
        table = f"{JOIN_PREFIX}{ref.view}"
        for column in expression.find_all(exp.Column):
            column.set("table", exp.to_identifier(table))
        return expression

    def resolve_sql(self, sql: str, where: tuple[str, int]) -> exp.Expression:
        """SQL that is no field (one side of a join's `on_sql`) resolved as a dimension of this view."""
        probe = Field(self.view.name, "__layersync_on__", "dimension", Location(*where), sql=sql)
        return self._resolve_new(probe, ())[0]

    def _refuse_table(self, field: Field) -> None:
        """`${TABLE}` belongs to the `views` layout; in Omni's files it is a mistake Omni itself rejects."""
        if self.view.format != "omni":
            return
        try:
            parts = scan(field.sql or "")
        except ValueError:
            return  # parsing reports the malformed reference with its place
        if any(isinstance(part, Ref) and part.is_table for part in parts):
            raise TranslationError(f"`{field.name}` uses `${{TABLE}}`: {OMNI_NO_TABLE}",
                                   field.location.file, field.location.line)

    def _target(self, ref: Ref, origin: Field) -> Field | None:
        where = (origin.location.file, origin.location.line)
        if ref.view is not None and ref.view != self.view.name:
            raise TranslationError(
                f"`${{{ref.target}}}` reads another view, `{ref.view}` (this is `{self.view.name}`): that needs a "
                f"join, which a column of dbt model `{self.view.model_name}` cannot express on its own; layersync "
                f"does not push joins yet, so this field is reported, not pushed", *where,
            )
        target = self.view.field_named(ref.field)
        if target is None and ref.view is not None:
            raise TranslationError(f"unknown field `${{{ref.target}}}` in view `{self.view.name}`", *where)
        return target


def _is_simple_identifier(name: str) -> bool:
    return name.replace("_", "a").isalnum() and not name[:1].isdigit() and name == name.lower()


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__

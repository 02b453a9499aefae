"""Which join a `${other_view.field}` needs, from the model's relationships (pure: plain data in and out).

A column of view A's dbt model can read view B only through a join that keeps A's rows as they are:
one B row at most per A row (many_to_one / one_to_one), on equalities of A's and B's columns, with no
filter of its own. Anything else is refused with the reason, so the field is reported, not pushed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from bot.errors import RefusedTranslation
from bot.semantic.model import Relationship, SemanticModel, View
from bot.semantic.refs import JOIN_PREFIX, REF_PREFIX, Ref, Resolver, scan

SAFE_TYPES = ("many_to_one", "one_to_one")
_MIRROR = {"many_to_one": "one_to_many", "one_to_many": "many_to_one"}


class JoinRefused(RefusedTranslation):
    """A reference into another view that no join can express; `code` says which reason."""


@dataclass(frozen=True)
class Join:
    """How A reads B: `pairs` are (A-side SQL, B-side SQL) of the `on_sql` equalities, with their references."""

    view: View                        # B, the view joined to
    relationship: Relationship
    relationship_type: str            # as seen from A (a mirrored reversible join flips it)
    pairs: tuple[tuple[str, str], ...]


def find_join(model: SemanticModel, view: View, other: str, where: tuple[str, int]) -> Join:
    """The relationship letting `view` read `other`, or JoinRefused with why not."""
    target = model.views.get(other)
    if target is None:
        raise JoinRefused(f"`{other}` is no view of the model (this is `{view.name}`)", "unknown-view", *where)
    candidates = [(r, r.relationship_type) for r in model.relationships
                  if r.join_from_view == view.name and r.join_to_view == other]
    candidates += [(r, _MIRROR.get(r.relationship_type or "", r.relationship_type)) for r in model.relationships
                   if r.reversible and r.join_from_view == other and r.join_to_view == view.name]
    if not candidates:
        raise JoinRefused(
            f"reads another view, `{other}` (this is `{view.name}`): that needs a join, and relationships.yaml has "
            f"no join from `{view.name}` to `{other}` (nor a reversible one back); add one (many_to_one or "
            f"one_to_one) to push this field", "no-relationship", *where)
    relationship, kind = candidates[0]
    at = (relationship.location.file, relationship.location.line)
    if relationship.attributes.get("where_sql") not in (None, ""):
        raise JoinRefused(
            f"the join `{view.name}` → `{other}` ({relationship.location}) has a `where_sql`: a filtered join is "
            f"no plain column of `{view.model_name}`; this field is reported, not pushed", "join-filtered", *where)
    if kind not in SAFE_TYPES:
        said = f"`{kind}`" if kind else "no relationship_type"
        raise JoinRefused(
            f"fan-out: the join `{view.name}` → `{other}` ({relationship.location}) is {said}, so it could repeat "
            f"`{view.name}`'s rows; only many_to_one and one_to_one joins become columns", "fan-out", *where)
    pairs = on_pairs(relationship, view.name, other, at)
    return Join(target, relationship, kind, pairs)


def on_pairs(relationship: Relationship, view: str, other: str, where: tuple[str, int]) -> tuple[tuple[str, str], ...]:
    """`on_sql` as (A side, B side) equalities; anything but an AND of equalities between the two views
    is refused, because only those keep the join at most one B row per A row as declared."""
    text = relationship.on_sql or ""
    try:
        parts = scan(text)
    except ValueError as exc:
        raise JoinRefused(f"`on_sql` of `{view}` → `{other}`: {exc}", "join-unsupported", *where) from None
    refs: dict[str, Ref] = {}
    source: list[str] = []
    for part in parts:
        if isinstance(part, Ref):
            placeholder = f"{REF_PREFIX}{len(refs)}"
            refs[placeholder] = part
            source.append(placeholder)
        else:
            source.append(part)
    try:
        condition = sqlglot.parse_one("".join(source)) if "".join(source).strip() else None
    except (ParseError, TokenError):
        condition = None
    if condition is None:
        raise JoinRefused(f"`on_sql` of `{view}` → `{other}` is no SQL condition", "join-unsupported", *where)
    pairs: list[tuple[str, str]] = []
    for equality in _conjuncts(condition):
        if not isinstance(equality, exp.EQ):
            raise JoinRefused(f"`on_sql` of `{view}` → `{other}` is not an AND of equalities "
                              f"(`{equality.sql()}`): layersync writes only equality joins", "join-unsupported", *where)
        sides = [_side(equality.this, refs, view, other), _side(equality.expression, refs, view, other)]
        if {s[0] for s in sides} != {view, other}:
            raise JoinRefused(f"`on_sql` of `{view}` → `{other}`: `{equality.sql()}` does not compare a field of "
                              f"`{view}` with one of `{other}`", "join-unsupported", *where)
        mine, theirs = sides if sides[0][0] == view else sides[::-1]
        pairs.append((mine[1], theirs[1]))
    return tuple(pairs)


def _conjuncts(node: exp.Expression) -> list[exp.Expression]:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.And):
        return _conjuncts(node.this) + _conjuncts(node.expression)
    return [node]


def _side(node: exp.Expression, refs: dict[str, Ref], view: str, other: str) -> tuple[str | None, str]:
    """Which view one side of an equality reads, and its text with `${view.field}` written back."""
    views: set[str | None] = set()
    for column in node.find_all(exp.Column):
        ref = refs.get(column.name)
        views.add(ref.view if ref is not None else None)
    if len(views) != 1 or None in views:
        return None, node.sql()
    text = node.sql()
    for placeholder, ref in refs.items():
        text = text.replace(placeholder, f"${{{ref.target}}}")
    return views.pop(), text


JoinFinder = Callable[[str, tuple[str, int]], Join]


def finder(load: Callable[[], SemanticModel], view: View) -> JoinFinder:
    """`find_join` for `view`, reading the whole model only when a field first needs a join."""
    held: list[SemanticModel] = []

    def find(other: str, where: tuple[str, int]) -> Join:
        if not held:
            held.append(load())
        return find_join(held[0], view, other, where)

    return find


def _paren(expression: exp.Expression) -> exp.Expression:
    return expression if isinstance(expression, (exp.Column, exp.Literal, exp.Func, exp.Paren)) \
        else exp.Paren(this=expression)


def condition(join: Join, resolver: Resolver, dialect: str) -> exp.Expression:
    """The join's `on_sql` as one SQL condition: `resolver`'s view's side over its own columns
    (unqualified), the other view's columns qualified by `marker(join)`. The push writes it into the
    model and the values check evaluates it in the warehouse: one condition for both."""
    other_resolver = Resolver(join.view, dialect)
    at = (join.relationship.location.file, join.relationship.location.line)
    conditions = []
    for mine, theirs in join.pairs:
        right = other_resolver.resolve_sql(theirs, at)
        for column in right.find_all(exp.Column):
            column.set("table", exp.to_identifier(marker(join)))
        conditions.append(exp.EQ(this=_paren(resolver.resolve_sql(mine, at)), expression=_paren(right)))
    return conditions[0] if len(conditions) == 1 else exp.and_(*conditions)


def marker(join: Join) -> str:
    """The qualifier a resolved expression gives the joined view's columns (see bot.semantic.refs)."""
    return f"{JOIN_PREFIX}{join.view.name}"

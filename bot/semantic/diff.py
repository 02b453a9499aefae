"""Structural diff of two revisions of the semantic layer: per view, fields added, changed, removed."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping

from sqlglot.errors import ParseError, TokenError

from bot.semantic.model import Field, View
from bot.semantic.refs import parse_field_sql

ChangeKind = Literal["added", "changed", "removed"]


@dataclass(frozen=True)
class FieldChange:
    view: str
    field: str
    kind: ChangeKind
    old: Field | None
    new: Field | None
    changed_keys: tuple[str, ...] = ()
    moved_from: str | None = None   # the view's name before its file moved (a move is no field change)

    @property
    def id(self) -> str:
        return f"{self.view}.{self.field}"


def _normalised_sql(sql: str | None, dialect: str) -> object:
    """Whitespace and keyword case are not a change; the expression and what it references are."""
    if sql is None:
        return None
    try:
        expression, refs = parse_field_sql(sql, dialect)
    except (ParseError, TokenError, ValueError):
        return " ".join(sql.split())
    return expression.sql(dialect=dialect), tuple(ref.target for ref in refs.values())


def changed_keys(old: Field, new: Field, dialect: str = "duckdb") -> tuple[str, ...]:
    keys = sorted(set(old.attributes) | set(new.attributes))
    changed = []
    for key in keys:
        before, after = old.attributes.get(key), new.attributes.get(key)
        if key == "sql":
            if _normalised_sql(before, dialect) != _normalised_sql(after, dialect):
                changed.append(key)
        elif before != after:
            changed.append(key)
    if old.kind != new.kind:
        changed.append("kind")
    return tuple(changed)


def _fields_key(view: View) -> tuple[str, str, frozenset[str]]:
    return view.table_name.lower(), view.model_name.lower(), frozenset(f.lower() for f in view.fields)


def moved_views(old: Mapping[str, View], new: Mapping[str, View]) -> dict[str, str]:
    """Old view name → new one, for a view whose file moved (another folder, so another name where
    the name comes from the path) with the same table and the same fields: each pair must be the only
    candidate both ways, so two look-alike views are never guessed."""
    gone = [name for name in old if name not in new]
    arrived = [name for name in new if name not in old]
    pairs: dict[str, str] = {}
    for name in gone:
        key = _fields_key(old[name])
        targets = [other for other in arrived if _fields_key(new[other]) == key]
        rivals = [other for other in gone if _fields_key(old[other]) == key]
        if len(targets) == 1 and len(rivals) == 1:
            pairs[name] = targets[0]
    return pairs


def _field_changes(view_name: str, before: Mapping[str, Field], after: Mapping[str, Field], dialect: str,
                   moved_from: str | None = None) -> list[FieldChange]:
    changes: list[FieldChange] = []
    for name in sorted(set(before) | set(after)):
        if name not in before:
            changes.append(FieldChange(view_name, name, "added", None, after[name], moved_from=moved_from))
        elif name not in after:
            changes.append(FieldChange(view_name, name, "removed", before[name], None, moved_from=moved_from))
        else:
            keys = changed_keys(before[name], after[name], dialect)
            if keys:
                changes.append(FieldChange(view_name, name, "changed", before[name], after[name], keys,
                                           moved_from=moved_from))
    return changes


def diff_views(old: Mapping[str, View], new: Mapping[str, View], dialect: str = "duckdb") -> list[FieldChange]:
    """Changes between two {view name: View} maps, in a stable order (view, then field). A view file
    moved to another folder (same table, same fields) is compared with itself under its new name."""
    moved = moved_views(old, new)
    arrived = {target: source for source, target in moved.items()}
    changes: list[FieldChange] = []
    for view_name in sorted((set(old) - set(moved)) | set(new)):
        source = arrived.get(view_name, view_name)
        before = old[source].fields if source in old else {}
        after = new[view_name].fields if view_name in new else {}
        if source in old and view_name in new and (old[source].table_name, old[source].model_name) != (
                new[view_name].table_name, new[view_name].model_name):
            # The view now reads another table: every field of it must be looked at again.
            for name in sorted(after):
                changes.append(FieldChange(view_name, name, "changed", before.get(name), after[name], ("table_name",)))
            for name in sorted(set(before) - set(after)):
                changes.append(FieldChange(view_name, name, "removed", before[name], None))
            continue
        changes += _field_changes(view_name, before, after, dialect, source if source != view_name else None)
    return changes

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


def diff_views(old: Mapping[str, View], new: Mapping[str, View], dialect: str = "duckdb") -> list[FieldChange]:
    """Changes between two {view name: View} maps, in a stable order (view, then field)."""
    changes: list[FieldChange] = []
    for view_name in sorted(set(old) | set(new)):
        before = old[view_name].fields if view_name in old else {}
        after = new[view_name].fields if view_name in new else {}
        if view_name in old and view_name in new and (old[view_name].table_name, old[view_name].model_name) != (
                new[view_name].table_name, new[view_name].model_name):
            # The view now reads another table: every field of it must be looked at again.
            for name in sorted(after):
                changes.append(FieldChange(view_name, name, "changed", before.get(name), after[name], ("table_name",)))
            for name in sorted(set(before) - set(after)):
                changes.append(FieldChange(view_name, name, "removed", before[name], None))
            continue
        for name in sorted(set(before) | set(after)):
            if name not in before:
                changes.append(FieldChange(view_name, name, "added", None, after[name]))
            elif name not in after:
                changes.append(FieldChange(view_name, name, "removed", before[name], None))
            else:
                keys = changed_keys(before[name], after[name], dialect)
                if keys:
                    changes.append(FieldChange(view_name, name, "changed", before[name], after[name], keys))
    return changes

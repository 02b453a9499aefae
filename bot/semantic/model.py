"""The semantic layer as plain data: what every reader produces and every engine consumes."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

FieldKind = Literal["dimension", "measure"]


@dataclass(frozen=True)
class Location:
    """Where a field is written, so every message can point the analyst at it."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Field:
    view: str
    name: str
    kind: FieldKind
    location: Location
    sql: str | None = None
    label: str | None = None
    description: str | None = None
    type: str | None = None
    primary_key: bool = False
    aggregate_type: str | None = None
    aliases: tuple[str, ...] = ()
    # Every attribute as written, for structural diffs that must notice any key.
    attributes: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def id(self) -> str:
        return f"{self.view}.{self.name}"


@dataclass(frozen=True)
class View:
    name: str
    table_name: str
    file: str
    line: int = 1
    schema: str | None = None
    label: str | None = None
    fields: dict[str, Field] = field(default_factory=dict, compare=False, hash=False)

    def field_named(self, name: str) -> Field | None:
        """A field by its name or one of its aliases (old names keep working after a rename)."""
        found = self.fields.get(name)
        if found is not None:
            return found
        return self._by_lower_name.get(name.lower())

    @cached_property
    def _by_lower_name(self) -> dict[str, Field]:
        """Lower-cased names and aliases, the first field in file order winning, built once per view:
        a reference to a raw column misses every field, and scanning them per reference made
        reading a view quadratic in its fields."""
        index: dict[str, Field] = {}
        for candidate in self.fields.values():
            index.setdefault(candidate.name.lower(), candidate)
            for alias in candidate.aliases:
                index.setdefault(alias.lower(), candidate)
        return index

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
    # Measures: `percentile: N` of a percentile aggregate; `filters:` as written (field -> operator object,
    # e.g. {"is_churned": {"is": 1}}): the measure aggregates only the rows they keep.
    percentile: float | None = None
    filters: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    # Every attribute as written, for structural diffs that must notice any key.
    attributes: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def id(self) -> str:
        return f"{self.view}.{self.name}"


@dataclass(frozen=True)
class Problem:
    """Bad input that does not stop the rest of the model from being read: said with its place."""

    message: str
    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.file and self.line else (self.file or "")
        return f"{where}: {self.message}" if where else self.message


OMNI_VIRTUAL_SCHEMA_PREFIX = "omni_dbt_"


@dataclass(frozen=True)
class View:
    name: str
    table_name: str
    file: str
    line: int = 1
    schema: str | None = None
    label: str | None = None
    fields: dict[str, Field] = field(default_factory=dict, compare=False, hash=False)
    format: str = "views"          # the format that read it: what its SQL may contain (`${TABLE}` or not)
    query: bool = False            # a query view (`*.query.view.yaml`): read, never pushed
    # Omni's read-only `dbt:` block as written (name, target_schema, config, ...): never edited.
    dbt: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    problems: tuple[Problem, ...] = field(default=(), compare=False, hash=False)

    @property
    def model_name(self) -> str:
        """The dbt model the view reads: the one Omni's `dbt:` block names, else its table."""
        name = self.dbt.get("name")
        return str(name) if isinstance(name, str) and name else self.table_name

    @property
    def dbt_schema(self) -> str | None:
        """dbt's schema for an Omni virtual schema `omni_dbt_<x>` (`<x>`, in whichever environment the
        model points at); a real warehouse schema as it is."""
        if self.schema and self.schema.startswith(OMNI_VIRTUAL_SCHEMA_PREFIX):
            return self.schema[len(OMNI_VIRTUAL_SCHEMA_PREFIX):]
        return self.schema

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


@dataclass(frozen=True)
class Relationship:
    """One entry of Omni's `relationships.yaml`: how two views join."""

    join_from_view: str
    join_to_view: str
    location: Location
    join_type: str | None = None            # always_left, inner, full_outer, ...
    on_sql: str | None = None               # `${a.user_id} = ${b.user_id}`
    relationship_type: str | None = None    # many_to_one, one_to_one, one_to_many, many_to_many
    reversible: bool = False
    attributes: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Topic:
    """A `<Name>.topic.yaml`: the views a topic joins and the fields it shows; it names fields, so a
    renamed or broken field concerns it too."""

    name: str
    location: Location
    base_view: str | None = None
    joins: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    fields: tuple[str, ...] = ()
    default_filters: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    always_where_sql: str | None = None
    label: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass
class SemanticModel:
    """A whole semantic model as one format read it; `problems` is the bad input it read around."""

    format: str
    root: str = ""
    views: dict[str, View] = field(default_factory=dict)
    relationships: list[Relationship] = field(default_factory=list)
    topics: dict[str, Topic] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def find_field(self, field_id: str) -> Field | None:
        view_name, _, name = field_id.partition(".")
        view = self.views.get(view_name)
        return view.field_named(name) if view is not None and name else None

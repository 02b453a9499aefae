"""Column types as the warehouse has them, for dimensions the pull adds.

dbt's `data_type` is what a YAML author declared (often nothing); the warehouse knows what the
column really is. Two readings of the warehouse catalog: dbt's own `catalog.json` (`dbt docs
generate`, shipped by a deploy job next to the manifest) and a read-only look at the relations
in the prod schema. Where neither has the column (the deploy has not run yet), the SQL itself can
still tell for the unambiguous cases: a cast, a comparison, a count.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from bot.warehouse.base import Warehouse

Catalog = dict[str, dict[str, str]]   # model name (lower case) → column (lower case) → warehouse type
CATALOG_FILE = "catalog.json"


def from_catalog_json(data: Mapping[str, Any]) -> Catalog:
    """Model columns' types from dbt's catalog.json (nodes keyed `model.<project>.<name>[.v<n>]`)."""
    found: Catalog = {}
    nodes = data.get("nodes") if isinstance(data, Mapping) else None
    for unique_id, node in (nodes or {}).items() if isinstance(nodes, Mapping) else []:
        parts = str(unique_id).split(".")
        if len(parts) < 3 or parts[0] != "model" or not isinstance(node, Mapping):
            continue
        columns = node.get("columns") if isinstance(node.get("columns"), Mapping) else {}
        types = {str(name).lower(): str(col["type"]) for name, col in columns.items()
                 if isinstance(col, Mapping) and col.get("type")}
        if types:
            found.setdefault(parts[2].lower(), {}).update(types)
    return found


def read_catalog_json(path: Path) -> Catalog:
    """A catalog.json file, or the one in a dbt target/state folder; unreadable is empty (types are a nicety)."""
    file = path / CATALOG_FILE if path.is_dir() else path
    try:
        return from_catalog_json(json.loads(file.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def from_warehouse(wh: Warehouse, relations: Mapping[str, tuple[str, str]]) -> Catalog:
    """Types of the given models' columns where their relations (model → (schema, table)) exist."""
    found: Catalog = {}
    for model, (schema, table) in relations.items():
        types = {c.name.lower(): c.type for c in wh.columns(schema, table)}
        if types:
            found[model.lower()] = types
    return found


def merged(*catalogs: Catalog) -> Catalog:
    """Earlier catalogs win column by column."""
    out: Catalog = {}
    for catalog in reversed(catalogs):
        for model, columns in catalog.items():
            out.setdefault(model, {}).update(columns)
    return out


_PREDICATES = (exp.Predicate, exp.Connector, exp.Not, exp.Boolean)


def sql_type(expression: str | None, dialect: str = "duckdb") -> str | None:
    """The type an expression certainly has, from its shape alone; None when it takes the inputs' types."""
    if not expression:
        return None
    try:
        node = sqlglot.parse_one(expression, read=dialect)
    except (SqlglotError, ValueError):
        return None
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, (exp.Cast, exp.TryCast)):
        return node.to.sql(dialect=dialect)
    if isinstance(node, _PREDICATES):
        return "boolean"
    if isinstance(node, exp.Count):
        return "bigint"
    return None

"""Previews' end of life, and the list of those alive.

A preview is dropped when its PR closes or merges, when its branch is deleted, or by
`layersync preview --gc --older-than 7d`. Dropping goes through the registry only: a branch name
from a webhook is looked up there, never turned into a schema name and dropped, so a branch called
`prod`, `../prod` or `prod; drop schema prod` can at most drop its own `layersync_preview_…` schema.
Every schema dropped is checked once more (`check_preview_schema` and `drop_schema`'s own checks)
right before the `DROP SCHEMA`.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from bot.impact.build import Target
from bot.preview.build import drop_preview_schemas, writing, file_lock
from bot.preview.names import check_preview_schema
from bot.preview.registry import Preview, Registry


def drop_row(registry: Registry, target: Target, row: Preview, *, prod_schema: str,
             protected: Iterable[str] = ()) -> list[str]:
    """Drop one preview: cancel a build still running for it, wait for its lock, drop its schemas,
    forget it. Returns the schemas dropped."""
    guard = {prod_schema.lower(), *(p.lower() for p in protected)}
    check_preview_schema(row.schema, guard)
    token = registry.revoke(row.warehouse, row.schema)       # a build still running stops at once
    with writing(target, row.schema, prod_schema):
        dropped = drop_preview_schemas(target, row.schema, list(row.schemas), guard, prod_schema)
        forgotten = token is not None and registry.remove(row.warehouse, row.schema, token)
    if forgotten:
        shutil.rmtree(registry.artifacts(row.schema), ignore_errors=True)
    return dropped


def drop_preview(registry: Registry, target: Target, repo: str, branch: str, *, prod_schema: str,
                 protected: Iterable[str] = ()) -> list[str]:
    """Drop the preview of `branch` of dbt repo `repo`, if it has one (else nothing: [])."""
    row = registry.get(target.describe(), repo, branch)
    if row is None:
        return []
    return drop_row(registry, target, row, prod_schema=prod_schema, protected=protected)


def stale(registry: Registry, warehouse: str, older_than: float, now: float | None = None) -> list[Preview]:
    now = time.time() if now is None else now
    return [row for row in registry.list(warehouse) if now - row.touched_at > older_than]


def gc(registry: Registry, target: Target, older_than: float, *, prod_schema: str, now: float | None = None
       ) -> list[tuple[Preview, list[str]]]:
    """Drop every preview of `target` untouched (built, rebuilt or asked for) for `older_than` seconds."""
    return [(row, drop_row(registry, target, row, prod_schema=prod_schema))
            for row in stale(registry, target.describe(), older_than, now)]


# --------------------------------------------------------------------------- listing

@dataclass
class Listed:
    preview: Preview
    rows: int | None = None            # as the warehouse reports them (None: unknown)
    bytes: int | None = None           # PostgreSQL reports bytes; DuckDB only rows
    note: str = ""                     # why the size is unknown

    def as_json(self, now: float) -> dict:
        return {**self.preview.as_json(), "age_seconds": round(now - self.preview.touched_at, 1),
                "rows": self.rows, "bytes": self.bytes, "size_note": self.note or None}


def sizes(target: Target, schemas: list[str]) -> dict[str, tuple[int | None, int | None]]:
    """Rows (and bytes, where the warehouse reports them) stored in each schema's tables; views onto
    prod store nothing and count for nothing."""
    if not schemas:
        return {}
    if target.kind == "duckdb":
        if not Path(str(target.path)).exists():
            return {}
        with file_lock(target, exclusive=False, wait=False), target.open(read_only=True) as wh:
            marks = ", ".join("?" for _ in schemas)
            rows = wh.query(f"select schema_name, sum(estimated_size) from duckdb_tables() "
                            f"where schema_name in ({marks}) group by 1", list(schemas))
        return {str(s): (int(n or 0), None) for s, n in rows}
    with target.open(read_only=True) as wh:
        rows = wh.query("select n.nspname, coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint, "
                        "coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint from pg_catalog.pg_class c "
                        "join pg_catalog.pg_namespace n on n.oid = c.relnamespace where n.nspname = any(%s) "
                        "and c.relkind in ('r', 'm', 'p') group by 1", [list(schemas)])
    return {str(s): (int(n), int(b)) for s, n, b in rows}


def list_previews(registry: Registry, target_for: Callable[[str], Target | None]) -> list[Listed]:
    """Every preview in the registry with its size; `target_for(warehouse)` gives a connectable Target
    for a registry's warehouse name (None when it cannot be reached: no password, say)."""
    listed: list[Listed] = []
    by_warehouse: dict[str, list[Preview]] = {}
    for row in registry.list():
        by_warehouse.setdefault(row.warehouse, []).append(row)
    for warehouse, rows in by_warehouse.items():
        target = target_for(warehouse)
        measured: dict[str, tuple[int | None, int | None]] = {}
        note = ""
        if target is None:
            note = "warehouse not reachable from here: give --warehouse"
        else:
            try:
                measured = sizes(target, sorted({s for r in rows for s in (r.schemas or [r.schema])}))
            except BlockingIOError:
                note = "busy: a build holds the DuckDB file"
            except Exception as exc:  # noqa: BLE001 - a list must list, whatever the warehouse says
                note = f"size unknown: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
        for row in rows:
            got = [measured[s] for s in (row.schemas or [row.schema]) if s in measured]
            count = sum(r for r, _ in got if r is not None) if got else (0 if target is not None and not note else None)
            size = sum(b for _, b in got if b is not None) if any(b is not None for _, b in got) else None
            listed.append(Listed(row, count, size, note))
    return listed

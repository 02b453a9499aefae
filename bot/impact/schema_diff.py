"""Schema and row-count diff of one model between the prod and dev schemas."""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlglot import exp

from bot.warehouse.base import Column, Warehouse


@dataclass
class ModelDiff:
    model: str
    added: list[Column] = field(default_factory=list)
    removed: list[Column] = field(default_factory=list)
    type_changed: list[tuple[str, str, str]] = field(default_factory=list)   # (column, prod type, dev type)
    prod_rows: int | None = None      # None when the relation is absent in prod (a new model)
    dev_rows: int | None = None       # None when absent in dev (a removed model, or not built)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.type_changed or self.prod_rows != self.dev_rows)


def count_sql(schema: str, table: str, dialect: str) -> str:
    query = exp.select(exp.Count(this=exp.Star())).from_(exp.table_(table, db=schema, quoted=True))
    return query.sql(dialect=dialect)


def _rows(wh: Warehouse, schema: str, table: str) -> int:
    return int(wh.query(count_sql(schema, table, wh.dialect))[0][0])


Side = str | tuple[str, str] | None     # a schema holding the model's own name, (schema, table), or absent


def _relation(side: Side, model: str) -> tuple[str, str] | None:
    return (side, model) if isinstance(side, str) else side


def schema_and_rows(wh: Warehouse, model: str, prod_side: Side, dev_side: Side) -> ModelDiff:
    """Columns added / removed / retyped from prod to dev (by name, case-insensitive), and count(*) each side.

    A side is a schema (the relation is named like the model), a (schema, table) pair — dbt's custom
    schemas and aliases put a model elsewhere — or None for a model one side does not have."""
    prod_rel, dev_rel = _relation(prod_side, model), _relation(dev_side, model)
    prod = wh.columns(*prod_rel) if prod_rel else []
    dev = wh.columns(*dev_rel) if dev_rel else []
    prod_by = {c.name.lower(): c for c in prod}
    dev_by = {c.name.lower(): c for c in dev}
    return ModelDiff(
        model=model,
        added=[c for c in dev if c.name.lower() not in prod_by],
        removed=[c for c in prod if c.name.lower() not in dev_by],
        type_changed=[(c.name, prod_by[c.name.lower()].type, c.type) for c in dev
                      if c.name.lower() in prod_by and prod_by[c.name.lower()].type.upper() != c.type.upper()],
        prod_rows=_rows(wh, *prod_rel) if prod_rel and prod else None,
        dev_rows=_rows(wh, *dev_rel) if dev_rel and dev else None,
    )

"""DuckDB, the embedded default: one file holds the prod and dev schemas side by side."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import duckdb

from bot.warehouse.base import Column


class DuckDBWarehouse:
    dialect = "duckdb"

    def __init__(self, path: str | Path, *, read_only: bool = True):
        """Read-only by default: impact queries must never be able to write."""
        self.connection = duckdb.connect(str(path), read_only=read_only)

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        return self.connection.execute(sql, list(params) if params else None).fetchall()

    def columns(self, schema: str, table: str) -> list[Column]:
        rows = self.query("select column_name, data_type from information_schema.columns "
                          "where table_schema = ? and table_name = ? order by ordinal_position", [schema, table])
        return [Column(name, str(kind)) for name, kind in rows]

    def tables(self, schema: str) -> list[str]:
        return [r[0] for r in self.query("select table_name from information_schema.tables "
                                         "where table_schema = ? order by 1", [schema])]

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> "DuckDBWarehouse":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

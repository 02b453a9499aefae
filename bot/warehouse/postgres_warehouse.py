"""PostgreSQL, for warehouses that outgrow one DuckDB file (psycopg 3)."""
from __future__ import annotations

from typing import Any, Sequence

import psycopg

from bot.warehouse.base import Column


class PostgresWarehouse:
    dialect = "postgres"

    def __init__(self, dsn: str, *, read_only: bool = True, connect_timeout: int = 10):
        """Read-only by default: every transaction of the session is READ ONLY, so impact queries
        can never write. Autocommit: each query is its own (read-only) transaction."""
        self.read_only = read_only
        self.connection = psycopg.connect(dsn, autocommit=True, connect_timeout=connect_timeout)
        if read_only:
            self.connection.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            self.connection.execute("SET default_transaction_read_only = on")

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        with self.connection.cursor() as cur:
            cur.execute(sql, list(params) if params else None)
            return cur.fetchall() if cur.description is not None else []

    def columns(self, schema: str, table: str) -> list[Column]:
        rows = self.query(
            "select a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) "
            "from pg_catalog.pg_attribute a "
            "join pg_catalog.pg_class c on c.oid = a.attrelid "
            "join pg_catalog.pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname = %s and c.relname = %s and a.attnum > 0 and not a.attisdropped "
            "and c.relkind in ('r', 'v', 'm', 'p', 'f') "
            "order by a.attnum", [schema, table])
        return [Column(name, str(kind)) for name, kind in rows]

    def tables(self, schema: str) -> list[str]:
        return [r[0] for r in self.query(
            "select c.relname from pg_catalog.pg_class c "
            "join pg_catalog.pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname = %s and c.relkind in ('r', 'v', 'm', 'p', 'f') order by 1", [schema])]

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> "PostgresWarehouse":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""One interface over the warehouses layersync compares in: run a query, list a table's columns."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence


@dataclass(frozen=True)
class Column:
    name: str
    type: str


class Warehouse(Protocol):
    dialect: str                       # the sqlglot dialect its SQL is written in

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]: ...

    def columns(self, schema: str, table: str) -> list[Column]: ...   # [] when the table does not exist

    def tables(self, schema: str) -> list[str]: ...

    def close(self) -> None: ...

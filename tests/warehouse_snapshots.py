"""What tests compare before and after a run to prove it wrote nothing it should not have."""
from __future__ import annotations

from pathlib import Path

import duckdb


def snapshot(database: Path) -> dict[tuple[str, str], tuple]:
    """Every relation outside layersync's schemas, with its row count and an order-free checksum."""
    with duckdb.connect(str(database), read_only=True) as con:
        tables = con.execute("select table_schema, table_name from information_schema.tables "
                             "where table_schema not like 'layersync%' order by 1, 2").fetchall()
        return {(s, t): con.execute(f'select count(*), bit_xor(hash(x)) from "{s}"."{t}" as x').fetchone()
                for s, t in tables}


def schemas(database: Path) -> set[str]:
    with duckdb.connect(str(database), read_only=True) as con:
        return {r[0] for r in con.execute("select schema_name from information_schema.schemata").fetchall()}

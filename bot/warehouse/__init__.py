"""The only place that opens database connections (DuckDB by default, PostgreSQL at scale)."""

"""Build a PR's changed models into a dev schema, next to prod, with dbt itself.

prod: `dbt build` of the base commit into schema `prod`; its manifest is the state dev defers to.
dev:  `dbt build --select state:modified+ --defer --state <prod>` into a per-PR schema: only the
      changed models (and seeds) and their descendants are built; unchanged parents resolve to prod.

Every build writes to its own dbt target path (`target/layersync-<schema>/`, `BuildResult.target_path`),
so building prod and then dev in one checkout never overwrites the state dev compares against, and
`run_results.json` is always this run's; the latest build's manifest.json and run_results.json are
also copied to `target/` where dbt keeps them by default.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import quote

from ruamel.yaml import YAML
from sqlglot import exp

from bot.dbt.runner import DbtRun, deps_failure, install_packages, run_dbt, write_duckdb_profile, write_postgres_profile
from bot.yamlbounds import bounded

MAX_IDENTIFIER = 63                      # PostgreSQL's limit (NAMEDATALEN - 1); DuckDB has none
DEV_PREFIX = "layersync_"
# Schemas no dev schema may ever be, or collide with (besides the prod schemas a caller names).
RESERVED_SCHEMAS = frozenset({"prod", "main", "public", "information_schema", "pg_catalog", "pg_toast",
                              "temp", "pg_temp"})
BUILT_TYPES = ("model", "seed", "snapshot")

Log = Callable[[str], None]


# --------------------------------------------------------------------------- schema names

def _collides(name: str, protected: Iterable[str]) -> bool:
    """Equal to a protected schema, or a prefix-collision with one: dbt names custom schemas
    `<target>_<custom>`, so `prod_x` as a dev target could write into prod's `prod_x_<custom>`."""
    for other in protected:
        other = other.lower()
        if name == other or name.startswith(other + "_") or other.startswith(name + "_"):
            return True
    return False


def _fit(name: str, digest_of: str) -> str:
    if len(name) <= MAX_IDENTIFIER:
        return name
    digest = hashlib.sha1(digest_of.encode()).hexdigest()[:8]
    return name[:MAX_IDENTIFIER - len(digest) - 1].rstrip("_") + "_" + digest


def dev_schema_name(number: int | str, template: str = "layersync_pr_{number}", *,
                    protected: Iterable[str] = ()) -> str:
    """A dev schema for PR `number`: `[a-z0-9_]`, lower case, ≤ 63 chars, always `layersync_…`.

    Long names are truncated with a short hash of the full name (two long names stay apart); a name
    equal to or prefix-colliding with `protected` (and `prod`, `main`, `public`, …) is never returned.
    """
    raw = template.format(number=number)
    name = re.sub(r"[^a-z0-9_]+", "_", raw.lower())
    name = re.sub(r"_+", "_", name).strip("_")
    if not name.startswith(DEV_PREFIX):
        name = DEV_PREFIX + name if name else DEV_PREFIX + "pr"
    name = _fit(name, raw)
    guard = set(RESERVED_SCHEMAS) | {p.lower() for p in protected}
    digest = hashlib.sha1(raw.encode()).hexdigest()
    for candidate in (name, _fit(f"{name}_{digest[:8]}", raw), f"{DEV_PREFIX}{digest[:12]}",
                      f"{DEV_PREFIX}h{digest[:20]}"):
        if not _collides(candidate, guard):
            return candidate
    raise ValueError(f"no dev schema name for {number!r} avoids the protected schemas {sorted(guard)}")


# --------------------------------------------------------------------------- warehouse targets

_POSTGRES_SCHEMES = ("postgresql", "postgres")
_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*)://", re.IGNORECASE)


@dataclass(frozen=True)
class Target:
    """Where dbt builds and layersync compares: one DuckDB file, or one PostgreSQL database.

    `Target.parse` takes a DuckDB path, a `postgresql://` (or `postgres://`) URI, or a Target;
    a bare path or str is DuckDB, so callers that pass a path keep working. Prod and every dev
    schema live side by side in the one database."""
    kind: str = "duckdb"                 # "duckdb" | "postgres"
    path: str | None = None              # duckdb
    host: str = "localhost"              # postgres
    port: int = 5432
    user: str = ""
    password: str | None = field(default=None, repr=False)
    dbname: str = ""
    sslmode: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("duckdb", "postgres"):
            raise ValueError(f"unknown warehouse kind {self.kind!r} (duckdb or postgres)")
        if self.kind == "duckdb" and not self.path:
            raise ValueError("a DuckDB target needs a path")
        if self.kind == "postgres" and not self.dbname:
            raise ValueError("a PostgreSQL target needs a database name")

    @classmethod
    def duckdb(cls, path: Path | str) -> "Target":
        return cls("duckdb", path=str(path))

    @classmethod
    def postgres_dsn(cls, dsn: str) -> "Target":
        """From a `postgresql://user:password@host:port/dbname?sslmode=…` URI. A password left out
        comes from PGPASSWORD, as libpq would take it; user and database default as libpq's do."""
        from psycopg.conninfo import conninfo_to_dict

        try:
            parts = conninfo_to_dict(dsn)
        except Exception as error:  # noqa: BLE001 - psycopg.ProgrammingError; never echo the password
            raise ValueError(f"not a PostgreSQL DSN: {redact_dsn(dsn)}") from error
        user = str(parts.get("user") or os.environ.get("PGUSER") or _login_user())
        host = str(parts.get("host") or os.environ.get("PGHOST") or "localhost")
        if "," in host:
            raise ValueError("a PostgreSQL DSN with several hosts is not supported")
        return cls("postgres", host=host, port=int(parts.get("port") or os.environ.get("PGPORT") or 5432),
                   user=user, password=parts.get("password") or os.environ.get("PGPASSWORD"),
                   dbname=str(parts.get("dbname") or os.environ.get("PGDATABASE") or user),
                   sslmode=parts.get("sslmode") or None)

    @classmethod
    def parse(cls, value: "Target | Path | str") -> "Target":
        if isinstance(value, Target):
            return value
        if isinstance(value, Path):
            return cls.duckdb(value)
        text = str(value)
        scheme = _SCHEME.match(text)
        if scheme is None:
            return cls.duckdb(text)
        if scheme.group(1).lower() in _POSTGRES_SCHEMES:
            return cls.postgres_dsn(text)
        raise NotImplementedError(f"no warehouse for {scheme.group(1)}:// DSNs (DuckDB paths and "
                                  "postgresql:// DSNs are supported)")

    @property
    def dialect(self) -> str:
        return self.kind

    @property
    def dsn(self) -> str:
        """A connection string: the DuckDB path, or a libpq URI (with the password, for connecting)."""
        if self.kind == "duckdb":
            return str(self.path)
        return self._uri(self.password)

    def describe(self) -> str:
        """For reports and logs: the DuckDB path, or the URI without its password."""
        if self.kind == "duckdb":
            return str(self.path)
        return self._uri("***" if self.password else None)

    def _uri(self, password: str | None) -> str:
        auth = quote(self.user, safe="")
        if password is not None:
            auth += ":" + (password if password == "***" else quote(password, safe=""))
        host = f"[{self.host}]" if ":" in self.host else self.host
        uri = f"postgresql://{auth}@{host}:{self.port}/{quote(self.dbname, safe='')}"
        return uri + (f"?sslmode={quote(self.sslmode)}" if self.sslmode else "")

    def write_profile(self, profiles_dir: Path, profile: str, schema: str, threads: int = 4) -> Path:
        if self.kind == "duckdb":
            return write_duckdb_profile(profiles_dir, profile, str(self.path), schema=schema, threads=threads)
        return write_postgres_profile(profiles_dir, profile, host=self.host, port=self.port, user=self.user,
                                      password=self.password, dbname=self.dbname, schema=schema,
                                      threads=threads, sslmode=self.sslmode)

    def open(self, *, read_only: bool = True):
        """A Warehouse on this target (read-only unless asked): DuckDBWarehouse or PostgresWarehouse."""
        if self.kind == "duckdb":
            from bot.warehouse.duckdb_warehouse import DuckDBWarehouse
            return DuckDBWarehouse(str(self.path), read_only=read_only)
        from bot.warehouse.postgres_warehouse import PostgresWarehouse
        return PostgresWarehouse(self.dsn, read_only=read_only)


def _login_user() -> str:
    try:
        import getpass
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (containers): libpq would fail the same way
        return "postgres"


def redact_dsn(dsn: str) -> str:
    """A DSN with any password replaced by `***` (URI `user:pw@` and key=value `password=pw`)."""
    text = re.sub(r"(://[^:/@?#]*:)[^@/?#]*@", r"\1***@", str(dsn))
    text = re.sub(r"(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", text)
    return re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", text)


@contextlib.contextmanager
def _schema_lock(target: Target, schema: str, *, shared: bool = False) -> Iterator[None]:
    """On PostgreSQL, builds into one schema take turns (a session advisory lock per schema): two
    impact runs rebuilding prod (or the same PR) at once would collide on dbt's `<model>__dbt_tmp`
    relations. Builds into different schemas run side by side. DuckDB files lock themselves."""
    if target.kind != "postgres":
        yield
        return
    import psycopg

    key = int.from_bytes(hashlib.sha1(f"layersync:build:{schema}".encode()).digest()[:8], "big", signed=True)
    with psycopg.connect(target.dsn, autocommit=True, connect_timeout=10) as con:
        suffix = "_shared" if shared else ""
        con.execute(f"select pg_advisory_lock{suffix}(%s)", [key])
        try:
            yield
        finally:
            con.execute(f"select pg_advisory_unlock{suffix}(%s)", [key])


def reading_schema(target: Target, schema: str):
    """Hold while reading `schema` (deferring to it, comparing against it): another run's rebuild of
    the same schema waits until every reader is done, and a reader waits for a rebuild in progress."""
    return _schema_lock(target, schema, shared=True)


# --------------------------------------------------------------------------- builds

@dataclass
class BuildResult:
    ok: bool
    schema: str
    selected: list[str] = field(default_factory=list)    # models/seeds/snapshots dbt ran (built or tried)
    failed: list[str] = field(default_factory=list)      # models/seeds/snapshots that errored
    errors: list[str] = field(default_factory=list)      # dbt's error lines
    log: str = ""
    seconds: float = 0.0
    failed_tests: list[str] = field(default_factory=list)   # data tests that failed or errored
    skipped: list[str] = field(default_factory=list)     # models skipped because a parent failed
    target_path: Path | None = None                      # where this run's manifest/run_results live

    @property
    def manifest(self) -> Path | None:
        """This run's manifest.json (the head's DAG for a dev build; the defer state for prod)."""
        return self.target_path / "manifest.json" if self.target_path else None

    @property
    def built(self) -> list[str]:
        return [n for n in self.selected if n not in self.failed and n not in self.skipped]


def _project_profile(project_dir: Path) -> str:
    doc = bounded(YAML(typ="safe").load((project_dir / "dbt_project.yml").read_text(encoding="utf-8"))) or {}
    return str(doc.get("profile") or doc.get("name") or "default")


def target_path_for(project_dir: Path, schema: str) -> Path:
    return project_dir / "target" / f"layersync-{schema}"


def write_build_profile(profiles_dir: Path, project_dir: Path, database: "Target | Path | str", schema: str,
                        threads: int = 4) -> Path:
    """A profile for `project_dir`'s profile name, writing into `schema` of `database` (a DuckDB path,
    a `postgresql://` DSN or a Target)."""
    return Target.parse(database).write_profile(profiles_dir, _project_profile(project_dir), schema, threads)


def _node_names(manifest_path: Path) -> dict[str, str]:
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {uid: node.get("name", uid) for uid, node in manifest.get("nodes", {}).items()}


def _result(run: DbtRun, schema: str, target: Path, seconds: float) -> BuildResult:
    names = _node_names(target / "manifest.json")
    selected: list[str] = []
    failed: list[str] = []
    skipped: list[str] = []
    failed_tests: list[str] = []
    messages: list[str] = []
    try:
        results = json.loads((target / "run_results.json").read_text(encoding="utf-8")).get("results", [])
    except (OSError, ValueError):
        results = []                     # dbt stopped before running anything (parse error, …)
    for item in results:
        uid = item.get("unique_id", "")
        kind = uid.split(".", 1)[0]
        name = names.get(uid) or (uid.split(".")[2] if uid.count(".") >= 2 else uid)
        status = item.get("status")
        if kind in BUILT_TYPES:
            selected.append(name)
            if status in ("error", "runtime error"):
                failed.append(name)
            elif status == "skipped":
                skipped.append(name)
        elif kind == "test" and status in ("fail", "error"):
            failed_tests.append(name)
        if status in ("error", "fail", "runtime error") and item.get("message"):
            messages.append(f"{kind} {name}: {item['message'].strip()}")
    # dbt's message per failed node says it all; its log lines only when no node carries one (a parse
    # error), else the report would show the same error twice between progress lines.
    errors = list(dict.fromkeys(messages or (run.error_lines() if not run.ok else [])))
    return BuildResult(ok=run.ok, schema=schema, selected=selected, failed=failed, errors=errors,
                       log=run.output, seconds=round(seconds, 3), failed_tests=failed_tests,
                       skipped=skipped, target_path=target)


@contextlib.contextmanager
def dbt_session(project_dir: Path, database: "Target | Path | str", schema: str, *, log: Log | None = None,
                cancel: Callable[[], bool] | None = None) -> Iterator[tuple[Path, DbtRun | None]]:
    """A profiles dir of layersync's own (target schema `schema`), and `dbt deps` run once when the
    project has packages not installed yet: every dbt run of a build or parse starts here. Yields the
    profiles dir and the deps run (None when none was needed; the caller decides what a failure means)."""
    with tempfile.TemporaryDirectory(prefix="layersync-profiles-") as tmp:
        profiles = Path(tmp)
        write_build_profile(profiles, project_dir, database, schema)
        yield profiles, install_packages(project_dir, profiles, log=log, cancel=cancel)


def _build(project_dir: Path, database: "Target | Path | str", schema: str, extra: list[str],
           log: Log | None, cancel: Callable[[], bool] | None = None) -> BuildResult:
    project_dir = Path(project_dir)
    target = target_path_for(project_dir, schema)
    target.mkdir(parents=True, exist_ok=True)
    (target / "run_results.json").unlink(missing_ok=True)    # never read a previous run's results
    started = time.monotonic()
    with dbt_session(project_dir, database, schema, log=log, cancel=cancel) as (profiles, deps):
        if deps is not None and not deps.ok:
            return BuildResult(False, schema, errors=[deps_failure(deps)],
                               log=deps.output, seconds=round(time.monotonic() - started, 3),
                               target_path=target)
        run = run_dbt(["build", "--target-path", str(target), *extra], project_dir, profiles, log=log,
                      cancel=cancel)
    # a copy where dbt (and people) look by default: target/manifest.json is the latest build's
    for name in ("manifest.json", "run_results.json"):
        if (target / name).exists():
            shutil.copy(target / name, project_dir / "target" / name)
    return _result(run, schema, target, time.monotonic() - started)


def build_prod(project_dir: Path, database: "Target | Path | str", schema: str = "prod", *,
               log: Log | None = None) -> tuple[BuildResult, Path]:
    """`dbt build` of the base commit (seeds included) into `schema`; returns the result and its
    manifest.json, the state a dev build defers to.

    `database`: a DuckDB path, a `postgresql://` DSN, or a Target. On PostgreSQL, concurrent prod
    builds into the same schema wait for each other."""
    target = Target.parse(database)
    with _schema_lock(target, schema):
        result = _build(project_dir, target, schema, [], log)
    assert result.target_path is not None
    return result, result.target_path / "manifest.json"


def _manifest_schemas(manifest_path: Path) -> set[str]:
    """Every schema the prod manifest's models, seeds and snapshots live in: never a dev target."""
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    return {str(n["schema"]).lower() for n in (manifest.get("nodes") or {}).values()
            if n.get("resource_type") in BUILT_TYPES and n.get("schema")}


def build_dev(project_dir: Path, database: "Target | Path | str", schema: str, prod_state: Path, *,
              log: Log | None = None, cancel: Callable[[], bool] | None = None) -> BuildResult:
    """`dbt build --select state:modified+ --defer --state <prod>` into `schema`.

    `database`: a DuckDB path, a `postgresql://` DSN, or a Target (the one prod was built into).

    `prod_state` is the prod manifest.json or the directory holding it. A failed build is returned
    (ok False, the failed models and dbt's error lines), never raised: it is itself a report.
    `cancel`: polled while dbt runs; True stops dbt (see `run_dbt`) and the result is not ok.
    """
    state = Path(prod_state)
    state_dir = state.parent if state.suffix == ".json" else state
    if not (state_dir / "manifest.json").exists():
        raise FileNotFoundError(f"no prod manifest in {state_dir}: build prod first")
    prod_schemas = _manifest_schemas(state_dir / "manifest.json")
    if schema.lower() in RESERVED_SCHEMAS | prod_schemas:
        raise ValueError(f"refusing to build a PR into schema {schema!r}: it is a prod or reserved schema")
    target = Target.parse(database)
    with _schema_lock(target, schema):
        return _build(project_dir, target, schema,
                      ["--select", "state:modified+", "--defer", "--state", str(state_dir.resolve())], log,
                      cancel)


# --------------------------------------------------------------------------- clean-up

def drop_schema_sql(schema: str, dialect: str = "duckdb") -> str:
    target = exp.Table(db=exp.to_identifier(schema, quoted=True))
    where = {"tables": [target]} if "tables" in exp.Drop.arg_types else {"this": target}   # sqlglot ≥ 28 / older
    sql = exp.Drop(kind="SCHEMA", exists=True, cascade=True, **where).sql(dialect=dialect)
    if schema not in sql:
        raise RuntimeError(f"could not render a DROP SCHEMA for {schema!r}: {sql}")
    return sql


def _check_droppable(schema: str, protected: set[str]) -> None:
    lowered = {p.lower() for p in protected} | set(RESERVED_SCHEMAS)
    if not re.fullmatch(r"[a-z0-9_]{1,63}", schema or ""):
        raise ValueError(f"refusing to drop schema {schema!r}: not a layersync dev schema name")
    if not schema.startswith(DEV_PREFIX) or not schema[len(DEV_PREFIX):].strip("_"):
        raise ValueError(f"refusing to drop schema {schema!r}: only {DEV_PREFIX}* schemas are dropped")
    if schema in lowered:
        raise ValueError(f"refusing to drop protected schema {schema!r}")


def _schemata(wh: Any) -> list[str]:
    return [str(r[0]) for r in wh.query("select schema_name from information_schema.schemata")]


def custom_dev_schemas(wh: Any, schema: str, prod_schema: str | None) -> list[str]:
    """dbt's custom schemas of a dev build: `<dev>_<custom>` for every prod `<prod>_<custom>` there is.
    Derived from prod's names, not from a prefix scan, so `layersync_pr_1` never takes `layersync_pr_1_x`
    of another environment with it unless prod has a custom schema `x`."""
    if not prod_schema:
        return []
    prefix = prod_schema.lower() + "_"
    present = set(_schemata(wh))
    return sorted(f"{schema}_{name[len(prefix):]}" for name in present
                  if name.lower().startswith(prefix) and f"{schema}_{name[len(prefix):]}" in present)


def drop_schema(warehouse_path_or_dsn: Any, schema: str, protected: set[str], *,
                prod_schema: str | None = None) -> list[str]:
    """Drop a PR's dev schema (and, given `prod_schema`, its dbt custom schemas). Refuses (ValueError)
    unless every schema dropped starts with `layersync_` and is not protected — prod is never dropped.
    Takes a DuckDB file path, a `postgresql://` DSN, a Target, or an open writable Warehouse; other DSN
    schemes raise NotImplementedError. Returns the schemas dropped (or already absent)."""
    _check_droppable(schema, protected)
    if hasattr(warehouse_path_or_dsn, "query"):
        return _drop(warehouse_path_or_dsn, schema, protected, prod_schema)
    target = Target.parse(warehouse_path_or_dsn)
    with target.open(read_only=False) as wh:
        return _drop(wh, schema, protected, prod_schema)


def _drop(wh: Any, schema: str, protected: set[str], prod_schema: str | None) -> list[str]:
    schemas = [schema, *custom_dev_schemas(wh, schema, prod_schema)]
    for name in schemas:
        _check_droppable(name, protected)
    for name in schemas:
        wh.query(drop_schema_sql(name, getattr(wh, "dialect", "duckdb")))
    return schemas

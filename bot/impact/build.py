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

import hashlib
import json
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from ruamel.yaml import YAML
from sqlglot import exp

from bot.dbt.runner import DbtRun, run_dbt, write_duckdb_profile

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
    doc = YAML(typ="safe").load((project_dir / "dbt_project.yml").read_text(encoding="utf-8")) or {}
    return str(doc.get("profile") or doc.get("name") or "default")


def target_path_for(project_dir: Path, schema: str) -> Path:
    return project_dir / "target" / f"layersync-{schema}"


def write_build_profile(profiles_dir: Path, project_dir: Path, database: Path | str, schema: str,
                        threads: int = 4) -> Path:
    """A DuckDB profile for `project_dir`'s profile name, writing into `schema` of `database`."""
    return write_duckdb_profile(profiles_dir, _project_profile(project_dir), str(database),
                                schema=schema, threads=threads)


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
    errors = list(dict.fromkeys(messages + (run.error_lines() if not run.ok else [])))
    return BuildResult(ok=run.ok, schema=schema, selected=selected, failed=failed, errors=errors,
                       log=run.output, seconds=round(seconds, 3), failed_tests=failed_tests,
                       skipped=skipped, target_path=target)


def _build(project_dir: Path, database: Path, schema: str, extra: list[str], log: Log | None) -> BuildResult:
    project_dir = Path(project_dir)
    target = target_path_for(project_dir, schema)
    target.mkdir(parents=True, exist_ok=True)
    (target / "run_results.json").unlink(missing_ok=True)    # never read a previous run's results
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="layersync-profiles-") as tmp:
        profiles = Path(tmp)
        write_build_profile(profiles, project_dir, database, schema)
        if any((project_dir / f).exists() for f in ("packages.yml", "dependencies.yml")) \
                and not (project_dir / "dbt_packages").exists():
            deps = run_dbt(["deps"], project_dir, profiles, log=log)
            if not deps.ok:
                return BuildResult(False, schema, errors=["dbt deps failed:", *deps.error_lines()],
                                   log=deps.output, seconds=round(time.monotonic() - started, 3),
                                   target_path=target)
        run = run_dbt(["build", "--target-path", str(target), *extra], project_dir, profiles, log=log)
    # a copy where dbt (and people) look by default: target/manifest.json is the latest build's
    for name in ("manifest.json", "run_results.json"):
        if (target / name).exists():
            shutil.copy(target / name, project_dir / "target" / name)
    return _result(run, schema, target, time.monotonic() - started)


def build_prod(project_dir: Path, database: Path, schema: str = "prod", *,
               log: Log | None = None) -> tuple[BuildResult, Path]:
    """`dbt build` of the base commit (seeds included) into `schema`; returns the result and its
    manifest.json, the state a dev build defers to."""
    result = _build(project_dir, database, schema, [], log)
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


def build_dev(project_dir: Path, database: Path, schema: str, prod_state: Path, *,
              log: Log | None = None) -> BuildResult:
    """`dbt build --select state:modified+ --defer --state <prod>` into `schema`.

    `prod_state` is the prod manifest.json or the directory holding it. A failed build is returned
    (ok False, the failed models and dbt's error lines), never raised: it is itself a report.
    """
    state = Path(prod_state)
    state_dir = state.parent if state.suffix == ".json" else state
    if not (state_dir / "manifest.json").exists():
        raise FileNotFoundError(f"no prod manifest in {state_dir}: build prod first")
    prod_schemas = _manifest_schemas(state_dir / "manifest.json")
    if schema.lower() in RESERVED_SCHEMAS | prod_schemas:
        raise ValueError(f"refusing to build a PR into schema {schema!r}: it is a prod or reserved schema")
    return _build(project_dir, database, schema,
                  ["--select", "state:modified+", "--defer", "--state", str(state_dir.resolve())], log)


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


def drop_schema(warehouse_path_or_dsn: Any, schema: str, protected: set[str]) -> None:
    """Drop a PR's dev schema. Refuses (ValueError) unless `schema` starts with `layersync_` and is
    not protected — prod is never dropped. Takes a DuckDB file path, or an open writable Warehouse."""
    _check_droppable(schema, protected)
    if hasattr(warehouse_path_or_dsn, "query"):
        warehouse_path_or_dsn.query(drop_schema_sql(schema, getattr(warehouse_path_or_dsn, "dialect", "duckdb")))
        return
    target = str(warehouse_path_or_dsn)
    if re.match(r"^[a-z][a-z0-9+]*://", target):
        raise NotImplementedError(f"no warehouse for {target.split('://')[0]}:// DSNs yet; pass an open Warehouse")
    from bot.warehouse.duckdb_warehouse import DuckDBWarehouse

    with DuckDBWarehouse(target, read_only=False) as wh:
        wh.query(drop_schema_sql(schema, wh.dialect))

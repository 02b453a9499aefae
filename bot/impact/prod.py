"""Prod, as the dbt project's prod target built it: the schema(s) and the manifest a PR defers to.

Three ways to get prod's manifest, from most to least faithful:
- `state`: the prod job's own artifacts (a `manifest.json`, e.g. downloaded from the deploy job);
- parsed: `dbt parse` of the base commit with the target schema set to the configured prod schema —
  the same relation names dbt's prod target builds, computed without touching the warehouse;
- `build`: layersync builds the base commit into the prod schema itself. Only for a warehouse that
  layersync owns (the scratch DuckDB of a local run, a test database): in any other case prod belongs
  to the team's deploy job and is only ever read.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bot.dbt.runner import run_dbt
from bot.errors import RepoError
from bot.impact.build import BUILT_TYPES, BuildResult, Log, Target, build_prod, dbt_session, target_path_for

DEFAULT_PROD_SCHEMA = "prod"
Relation = tuple[str, str]      # (schema, identifier)


@dataclass(frozen=True)
class ProdEnv:
    schema: str = DEFAULT_PROD_SCHEMA     # the prod target's schema (dbt's `target.schema` in prod)
    state: Path | None = None             # the prod job's manifest.json, or the directory holding it
    build: bool = False                   # build the base commit into `schema` (layersync-owned warehouses only)


@dataclass
class ProdState:
    manifest: Path                        # the manifest dev defers to (`--state` is its directory)
    source: str                           # "state" | "parsed" | "built"
    schemas: list[str] = field(default_factory=list)    # every schema prod's relations live in
    missing: list[str] = field(default_factory=list)    # models the manifest names that prod lacks
    build: BuildResult | None = None

    def as_json(self) -> dict:
        return {"source": self.source, "schemas": self.schemas, "missing": self.missing}


def relations(manifest: dict) -> dict[str, Relation]:
    """Model/seed/snapshot name → the relation dbt built it as (ephemeral models have none)."""
    found: dict[str, Relation] = {}
    for node in (manifest.get("nodes") or {}).values():
        if node.get("resource_type") not in BUILT_TYPES:
            continue
        if (node.get("config") or {}).get("materialized") == "ephemeral" or not node.get("schema"):
            continue
        found.setdefault(str(node["name"]), (str(node["schema"]), str(node.get("alias") or node["name"])))
    return found


def models_by_relation(*manifests: dict) -> dict[str, str]:
    """Aliased nodes by the relation name a semantic view uses (`fct_orders` → `orders`)."""
    return {alias.lower(): name for manifest in manifests for name, (_schema, alias) in relations(manifest).items()
            if alias.lower() != name.lower()}


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise RepoError(f"the prod manifest `{path}` cannot be read: {error}") from error


def _from_state(state: Path) -> Path:
    path = Path(state)
    manifest = path if path.suffix == ".json" else path / "manifest.json"
    if not manifest.is_file():
        raise RepoError(f"no prod manifest at `{manifest}` (give the prod job's manifest.json or its folder)")
    _load(manifest)
    if manifest.name != "manifest.json":      # dbt's --state wants a folder holding manifest.json
        folder = Path(tempfile.mkdtemp(prefix="layersync-prod-state-"))
        shutil.copy(manifest, folder / "manifest.json")
        manifest = folder / "manifest.json"
    return manifest


def _parsed(base_dir: Path, target: Target, schema: str, log: Log | None) -> Path:
    """`dbt parse` of the base commit as the prod target: no relation is read or written."""
    out = target_path_for(base_dir, schema)
    out.mkdir(parents=True, exist_ok=True)
    with dbt_session(base_dir, target, schema, log=log) as (profiles, _deps):
        run = run_dbt(["parse", "--target-path", str(out)], base_dir, profiles, log=log)
    if not run.ok or not (out / "manifest.json").exists():
        raise RepoError("the base commit does not parse: " + "; ".join(run.error_lines()[:3]))
    return out / "manifest.json"


def _missing(target: Target, wanted: dict[str, Relation]) -> list[str]:
    if target.kind == "duckdb" and not Path(str(target.path)).exists():
        return sorted(wanted)
    with target.open(read_only=True) as wh:
        present = {schema: {t.lower() for t in wh.tables(schema)} for schema in {s for s, _ in wanted.values()}}
    return sorted(name for name, (schema, table) in wanted.items() if table.lower() not in present[schema])


def prepare_prod(base_dir: Path, target: Target, env: ProdEnv, *, log: Log | None = None) -> ProdState:
    """Prod's manifest and schemas for a PR to defer to and be compared with.

    Unless `env.build`, nothing is written: the manifest comes from `env.state` or a `dbt parse`, and
    prod must already hold the project's relations (built by the team's deploy job) — a prod with
    none of them is an error that says how to fix it, not an empty comparison."""
    built: BuildResult | None = None
    if env.build:
        built, manifest = build_prod(base_dir, target, env.schema, log=log)
        if not built.ok:
            raise RepoError(f"the base commit does not build into `{env.schema}`: {'; '.join(built.errors[:3])}")
        source = "built"
    elif env.state is not None:
        manifest, source = _from_state(env.state), "state"
    else:
        manifest, source = _parsed(Path(base_dir), target, env.schema, log), "parsed"
    wanted = relations(_load(manifest))
    missing = _missing(target, wanted) if wanted else []
    if wanted and len(missing) == len(wanted):
        raise RepoError(f"prod ({', '.join(sorted({s for s, _ in wanted.values()}))} in {target.describe()}) "
                        "holds none of the project's models: point the prod schema setting at the schema your "
                        "deploy job builds, give its manifest.json as the prod state, or build prod first")
    return ProdState(manifest=manifest, source=source, schemas=sorted({s for s, _ in wanted.values()}),
                     missing=missing, build=built)

"""Build a branch's preview: its changed models in `layersync_preview_<branch>`, the rest pointing at prod.

1. The branch's commit and its pair (the semantic-layer branch of the same name) come from the remotes.
2. Prod is prepared as for impact reports (`bot.impact.prod`): the deploy job's manifest, or `dbt parse`
   of the base as prod, or — in a warehouse layersync owns — a build of the base.
3. The registry hands out the preview's schema (kept for its life) and a build token; the token cancels
   any older build of the branch still running (its dbt process is stopped, see `run_dbt(cancel=)`).
4. Under the warehouse's locks — on PostgreSQL an advisory lock per schema (previews of different
   branches build side by side), on DuckDB a lock file next to the database (DuckDB admits one writing
   process, so builds into one file take turns) — dbt runs:
   - `dbt parse` first: every relation the branch would write must be inside the preview schema (or
     its `<preview>_<custom>` schemas), else nothing is built. A custom `generate_schema_name` or a
     snapshot's fixed `target_schema` cannot make a preview write prod;
   - `dbt build --select state:modified+ --defer --state <prod>` the first time (and whenever the last
     build did not finish, or prod moved): the schema is emptied first, so nothing stale shadows prod;
   - on later pushes, `dbt build --select state:modified+ --defer --state <last preview manifest>
     --defer-state <prod manifest>`: only what changed since the last preview build; unselected parents
     resolve to the preview's own relation when it has one (dbt defers only missing relations), else prod;
   - `dbt clone --state <prod>`: every model the preview does not build becomes a view onto prod, so the
     preview schema is a whole environment that a BI tool can point at by swapping one schema.
5. The semantic branch's views (or the default branch's) are compiled against the preview, field by
   field (`LIMIT 0`), and the environment file maps each view to its schema in the preview.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from bot.dbt.runner import deps_failure, run_dbt
from bot.errors import LayersyncError, RepoError, SemanticError
from bot.gitops import RevisionReader
from bot.impact.build import (BUILT_TYPES, BuildResult, Log, Target, _build, _schema_lock, _schemata,
                              dbt_session, drop_schema, reading_schema, target_path_for, write_build_profile)
from bot.impact.prod import ProdEnv, ProdState, prepare_prod, relations
from bot.impact.semantic_diff import BrokenField, broken_fields
from bot.preview.envfile import env_file_path, render_env_file, schema_overrides, view_targets
from bot.preview.names import check_preview_schema, custom_suffix_reserve
from bot.preview.pairing import (PreviewError, Remote, check_branch_name, clone_bare, remote_branch_sha,
                                 remote_default_branch, resolve, worktree)
from bot.preview.registry import Claim, Registry
from bot.push_to_dbt import check_folder
from bot.selection import ViewSource, format_at
from bot.semantic.model import View

DEFAULT_MAX_PREVIEWS = 10
HEAD_POLL_SECONDS = 10.0        # how often a running build checks that its branch has not moved on
LOCK_POLL_SECONDS = 0.2


class Cancelled(Exception):
    """The build was superseded (a newer build or a drop of the same preview) or its branch moved."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class PreviewConfig:
    """Where previews live and what they defer to."""
    registry: Registry
    target: Target
    prod: ProdEnv = field(default_factory=ProdEnv)
    cap: int | None = DEFAULT_MAX_PREVIEWS

    @property
    def warehouse(self) -> str:
        """The registry's name for the warehouse (never holds a password)."""
        return self.target.describe()


def warehouse_target(value: "Target | Path | str") -> Target:
    """A Target for previews: a DuckDB path made absolute, since its text is the registry's key."""
    target = Target.parse(value)
    if target.kind == "duckdb" and str(target.path) != ":memory:":
        return Target.duckdb(Path(str(target.path)).expanduser().resolve())
    return target


@dataclass
class PreviewResult:
    branch: str
    status: str                                 # ready | failed | cancelled | semantic-only
    warehouse: str
    schema: str | None = None
    dbt_commit: str | None = None
    base_commit: str | None = None
    mode: str = "none"                          # full | incremental | unchanged | none
    build: dict[str, Any] = field(default_factory=dict)
    built: list[str] = field(default_factory=list)          # everything built into the preview so far
    schemas: list[str] = field(default_factory=list)        # the preview schema and its custom schemas
    prod: dict[str, Any] = field(default_factory=dict)
    override: dict[str, Any] = field(default_factory=dict)
    semantic: dict[str, Any] = field(default_factory=dict)
    env_file: dict[str, str] | None = None
    clone_errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    message: str = ""

    @property
    def broken(self) -> list[dict[str, Any]]:
        return list(self.semantic.get("broken") or [])

    @property
    def ok(self) -> bool:
        """Ready, every data test passing, every semantic field compiling (the CLI's exit code 0)."""
        return self.status in ("ready", "semantic-only") and not self.broken \
            and not self.build.get("failed_tests")

    def to_json(self) -> dict[str, Any]:
        return {"branch": self.branch, "status": self.status, "warehouse": self.warehouse, "schema": self.schema,
                "dbt_commit": self.dbt_commit, "base_commit": self.base_commit, "mode": self.mode,
                "build": self.build, "built": self.built, "schemas": self.schemas, "prod": self.prod,
                "override": self.override, "semantic": self.semantic, "env_file": self.env_file,
                "clone_errors": self.clone_errors, "seconds": round(self.seconds, 2), "message": self.message}


# --------------------------------------------------------------------------- locks

def _lock_path(target: Target) -> Path:
    path = Path(str(target.path))
    return path.with_name(path.name + ".layersync-lock")


@contextlib.contextmanager
def file_lock(target: Target, *, exclusive: bool, cancel: Callable[[], bool] | None = None,
               wait: bool = True) -> Iterator[None]:
    """DuckDB admits one writing process per file (and no reader beside it): previews, their drops and
    their reads take turns on a lock file beside the database. Waiting stops when `cancel` says so
    (Cancelled); with `wait=False` a held lock raises BlockingIOError at once."""
    path = _lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        while True:
            try:
                fcntl.flock(handle, mode)
                break
            except BlockingIOError:
                if not wait:
                    raise
                if cancel is not None and cancel():
                    raise Cancelled("superseded while waiting for the warehouse") from None
                time.sleep(LOCK_POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def writing(target: Target, schema: str, prod_schema: str, cancel: Callable[[], bool] | None = None
            ) -> Iterator[None]:
    """Hold while writing a preview: nobody else writes (or, on DuckDB, reads) it meanwhile."""
    if target.kind == "duckdb":
        with file_lock(target, exclusive=True, cancel=cancel):
            yield
    else:
        with reading_schema(target, prod_schema), _schema_lock(target, schema):
            yield


@contextlib.contextmanager
def reading(target: Target, schema: str | None = None) -> Iterator[None]:
    """Hold while reading the warehouse (a preview, or prod)."""
    if target.kind == "duckdb":
        with file_lock(target, exclusive=False):
            yield
    elif schema is not None:
        with reading_schema(target, schema):
            yield
    else:
        yield


# --------------------------------------------------------------------------- small pieces

def prod_fingerprint(manifest: dict) -> str:
    """What prod is, for deciding whether a preview built on it is still current: every built node's
    code checksum and relation (a new deploy of different code changes it; a re-parse does not)."""
    items = sorted((uid, (node.get("checksum") or {}).get("checksum", ""), node.get("schema"), node.get("alias"))
                   for uid, node in (manifest.get("nodes") or {}).items()
                   if node.get("resource_type") in BUILT_TYPES)
    return hashlib.sha1(json.dumps(items).encode()).hexdigest()[:16]


def _load(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _database_name(target: Target) -> str:
    return Path(str(target.path)).stem if target.kind == "duckdb" else target.dbname


def writes_outside(manifest: dict, schema: str, target: Target, protected: set[str]) -> list[str]:
    """Relations a build of `manifest` would write outside the preview (`schema`, `<schema>_*`)."""
    database = _database_name(target).lower()
    outside: list[str] = []
    for node in (manifest.get("nodes") or {}).values():
        kind = node.get("resource_type")
        if kind not in (*BUILT_TYPES, "test"):
            continue
        if kind != "test" and (node.get("config") or {}).get("materialized") == "ephemeral":
            continue
        if kind == "test" and not (node.get("config") or {}).get("store_failures"):
            continue
        where = str(node.get("schema") or "").lower()
        inside = where == schema or where.startswith(schema + "_")
        if not inside or where in protected or str(node.get("database") or database).lower() != database:
            outside.append(f"{node.get('database')}.{node.get('schema')}.{node.get('alias') or node.get('name')}")
    return sorted(outside)


def _schema_exists(target: Target, schema: str) -> bool:
    if target.kind == "duckdb" and not Path(str(target.path)).exists():
        return False
    with target.open(read_only=True) as wh:
        return schema in _schemata(wh)


def drop_preview_schemas(target: Target, schema: str, extra: list[str], protected: set[str],
                         prod_schema: str) -> list[str]:
    """Drop a preview schema, its dbt custom schemas (derived from prod's, and those the registry
    recorded) — each checked to be a preview schema first. The caller holds the write lock."""
    check_preview_schema(schema, protected)
    extras = [s for s in extra if s != schema]
    for name in extras:
        check_preview_schema(name, protected)
        if not name.startswith(schema + "_"):
            raise ValueError(f"refusing to drop {name!r} with preview {schema!r}: not one of its schemas")
    if target.kind == "duckdb" and not Path(str(target.path)).exists():
        return []
    with target.open(read_only=False) as wh:
        present = set(_schemata(wh))
        dropped = drop_schema(wh, schema, protected, prod_schema=prod_schema)
        for name in extras:
            if name in present and name not in dropped:
                dropped += drop_schema(wh, name, protected)
    return dropped


def _analyze(target: Target, schemas: list[str]) -> None:
    """PostgreSQL: fresh statistics, so the row counts the warehouse reports for the preview are true."""
    if target.kind != "postgres":
        return
    with target.open(read_only=False) as wh:
        rows = wh.query("select n.nspname, c.relname from pg_catalog.pg_class c join pg_catalog.pg_namespace n "
                        "on n.oid = c.relnamespace where n.nspname = any(%s) and c.relkind in ('r', 'm', 'p')",
                        [list(schemas)])
        for schema, table in rows:
            wh.query('analyze "{}"."{}"'.format(schema.replace('"', '""'), table.replace('"', '""')))


def _run_results(path: Path) -> list[dict]:
    try:
        return _load(path).get("results", [])
    except (OSError, ValueError):
        return []


class _Canceller:
    """The cancel hook of one build: its token no longer current, or its branch moved on."""

    def __init__(self, registry: Registry, warehouse: str, schema: str, token: str,
                 head: Callable[[], str | None] | None, commit: str):
        self.registry, self.warehouse, self.schema, self.token = registry, warehouse, schema, token
        self.head, self.commit = head, commit
        self.reason: str | None = None
        self._next_head = time.monotonic() + HEAD_POLL_SECONDS

    def __call__(self) -> bool:
        if self.reason:
            return True
        try:
            if not self.registry.is_current(self.warehouse, self.schema, self.token):
                self.reason = "a newer build of the branch (or a drop of its preview) superseded it"
            elif self.head is not None and time.monotonic() >= self._next_head:
                self._next_head = time.monotonic() + HEAD_POLL_SECONDS
                now = self.head()
                if now != self.commit:
                    self.reason = (f"the branch moved on to {now[:12]}" if now else "the branch was deleted")
        except Exception:  # noqa: BLE001 - a hiccup reading the registry or the remote is no reason to stop
            return False
        return bool(self.reason)

    def check(self) -> None:
        if self():
            raise Cancelled(self.reason or "cancelled")


# --------------------------------------------------------------------------- the semantic side

def load_views(remote: Remote, sha: str, workdir: Path) -> tuple[list[View], list[str]]:
    """The views of the semantic repo at `sha`, and the files that could not be read (file:line: why)."""
    repo = clone_bare(remote, workdir)
    reader = RevisionReader(repo.git_dir, "semantic-layer repo")
    try:
        check_folder(reader, sha, remote.path, "the semantic path")
    except LayersyncError as exc:           # the dbt preview stands; the semantic check says why it is empty
        return [], [str(exc)]
    views, problems = [], []
    try:
        source = ViewSource(reader, sha, format_at(reader, sha, remote.path), remote.path)
    except LayersyncError as exc:
        return views, [str(exc)]
    for path in source.paths():
        try:
            view = source.read(path)
        except SemanticError as exc:
            problems.append(str(exc))
            continue
        if view is not None:
            views.append(view)
    return views, problems


def compile_views(target: Target, views: list[View], manifest: dict) -> tuple[list[BrokenField], list[str]]:
    """Every field of every view compiled against the relation its table has under `manifest`
    (`SELECT <field> … LIMIT 0` on a read-only connection). Returns the broken fields and the views
    whose table is no dbt model (left alone)."""
    targets = {t.view: t for t in view_targets(views, manifest)}
    broken: list[BrokenField] = []
    unmatched: list[str] = []
    if target.kind == "duckdb" and not Path(str(target.path)).exists():
        return broken, unmatched
    with target.open(read_only=True) as wh:
        tables: dict[str, set[str]] = {}
        for view in sorted(views, key=lambda v: v.name):
            where = targets[view.name]
            if where.schema is None or where.table is None:
                unmatched.append(view.name)
                continue
            present = tables.setdefault(where.schema, {t.lower() for t in wh.tables(where.schema)})
            if where.table.lower() not in present:
                broken.append(BrokenField(f"{view.name}.*", view.file, view.line,
                                          f"table {where.schema}.{where.table} does not exist (its model did not build)"))
                continue
            broken.extend(broken_fields(wh, view, where.schema, where.table, wh.dialect))
    return broken, unmatched


def _semantic(target: Target, semantic: Remote | None, branch: str, manifest: dict, workdir: Path,
              lock_schema: str | None) -> tuple[dict[str, Any], list[View], str | None]:
    if semantic is None:
        return {}, [], None
    sha = remote_branch_sha(semantic, branch)
    paired = sha is not None
    ref = branch if paired else remote_default_branch(semantic)
    if sha is None:
        sha = remote_branch_sha(semantic, ref)
    if sha is None:
        return {"branch": ref, "commit": None, "paired": False, "views": 0, "broken": [], "unmatched": [],
                "problems": [f"the semantic-layer repo has no branch `{ref}`"]}, [], None
    views, problems = load_views(semantic, sha, workdir / "semantic")
    with reading(target, lock_schema):
        broken, unmatched = compile_views(target, views, manifest)
    return {"branch": ref, "commit": sha, "paired": paired, "views": len(views),
            "broken": [{"field": b.id, "file": b.file, "line": b.line, "reason": b.reason} for b in broken],
            "unmatched": unmatched, "problems": problems}, views, sha


# --------------------------------------------------------------------------- the build

def _prepare_prod(base_dir: Path, config: PreviewConfig, log: Log | None) -> ProdState:
    target = config.target
    if target.kind == "duckdb":
        with file_lock(target, exclusive=config.prod.build):
            return prepare_prod(base_dir, target, config.prod, log=log)
    return prepare_prod(base_dir, target, config.prod, log=log)


def _guard(project: Path, target: Target, schema: str, protected: set[str], log: Log | None,
           cancel: _Canceller) -> dict:
    """`dbt parse` of the branch as the preview target; refuses a project that would write elsewhere.
    Parses into the build's own target path, so the build that follows parses partially (faster)."""
    out = target_path_for(project, schema)
    out.mkdir(parents=True, exist_ok=True)
    with dbt_session(project, target, schema, log=log, cancel=cancel) as (profiles, deps):
        cancel.check()
        if deps is not None and not deps.ok:
            raise PreviewError(deps_failure(deps))
        run = run_dbt(["parse", "--target-path", str(out)], project, profiles, log=log, cancel=cancel)
    cancel.check()
    if not run.ok or not (out / "manifest.json").exists():
        raise PreviewError("the branch does not parse: " + "; ".join(run.error_lines()[:3]))
    manifest = _load(out / "manifest.json")
    outside = writes_outside(manifest, schema, target, protected)
    if outside:
        raise PreviewError(f"refusing to build: dbt would write {', '.join(outside[:5])}"
                           f"{' …' if len(outside) > 5 else ''} outside the preview schema `{schema}` (a custom "
                           "generate_schema_name, a database config or a snapshot's target_schema?)")
    return manifest


def _clone(project: Path, target: Target, schema: str, prod_dir: Path, exclude: list[str], log: Log | None,
           cancel: _Canceller) -> list[str]:
    """`dbt clone` of every node the preview does not hold yet: views onto prod's relations."""
    out = target_path_for(project, schema)
    args = ["clone", "--state", str(prod_dir), "--target-path", str(out)]
    if exclude:
        args += ["--exclude", *exclude]
    with tempfile.TemporaryDirectory(prefix="layersync-profiles-") as tmp:
        write_build_profile(Path(tmp), project, target, schema)
        (out / "run_results.json").unlink(missing_ok=True)
        run = run_dbt(args, project, Path(tmp), log=log, cancel=cancel)
    cancel.check()
    errors = [f"{item.get('unique_id', '').split('.')[-1]}: {(item.get('message') or '').strip()}"
              for item in _run_results(out / "run_results.json") if item.get("status") in ("error", "fail")]
    return errors or ([] if run.ok else run.error_lines(5))


def _missing_relations(target: Target, manifest: dict, schema: str, built: BuildResult) -> list[str]:
    """Relations of the branch's project the preview does not hold yet (what `dbt clone` would add);
    the nodes that failed or were skipped stay missing on purpose: no view onto prod stands in for them."""
    wanted = {name: rel for name, rel in relations(manifest).items()
              if name not in built.failed and name not in built.skipped}
    with target.open(read_only=True) as wh:
        present = {(s.lower(), t.lower()) for s in {r[0] for r in wanted.values()} for t in wh.tables(s)}
    return sorted(name for name, (s, t) in wanted.items() if (s.lower(), t.lower()) not in present)


def _build_json(result: BuildResult) -> dict[str, Any]:
    return {"ok": result.ok, "selected": result.selected, "built": result.built, "failed": result.failed,
            "skipped": result.skipped, "failed_tests": result.failed_tests, "errors": result.errors[:20],
            "seconds": round(result.seconds, 2)}


def _preview_schemas(manifest: dict, schema: str) -> list[str]:
    found = {s for s, _ in relations(manifest).values() if s == schema or s.startswith(schema + "_")}
    return sorted(found | {schema})


def build_preview(branch: str, dbt: Remote, config: PreviewConfig, *, semantic: Remote | None = None,
                  base: str | None = None, log: Log | None = None, follow_head: bool = True,
                  workdir: Path | None = None, reply: tuple[str, int] | None = None) -> PreviewResult:
    """Build (or bring up to date) the preview of dbt branch `branch`, and check the semantic layer
    against it. Without a dbt branch of that name, the semantic branch is checked against prod.

    Raises LayersyncError subclasses for what the user must fix (no such branch, the cap, prod missing,
    a project that would write outside the preview); a failed dbt build is a result (status `failed`),
    as is a cancelled one (`cancelled`: a newer build took over, or the branch moved on). `reply`: the PR
    that asked, recorded with the preview (see `Registry.claim`)."""
    started = time.monotonic()
    check_branch_name(branch)
    if config.target.kind == "duckdb" and str(config.target.path) == ":memory:":
        raise PreviewError("previews need a warehouse that outlives the build: a DuckDB file or PostgreSQL")
    dbt_sha = remote_branch_sha(dbt, branch)
    if dbt_sha is None and (semantic is None or remote_branch_sha(semantic, branch) is None):
        raise PreviewError(f"there is no branch `{branch}` in the dbt repo"
                           + (" nor in the semantic-layer repo" if semantic is not None else ""))
    if dbt_sha is not None:
        config.registry.check_cap(config.warehouse, dbt.key, branch, config.cap)
    root = Path(workdir or tempfile.mkdtemp(prefix="layersync-preview-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        result = _preview(branch, dbt_sha, dbt, config, semantic, base, log, follow_head, root, reply)
    finally:
        if workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    result.seconds = time.monotonic() - started
    return result


def _preview(branch: str, dbt_sha: str | None, dbt: Remote, config: PreviewConfig, semantic: Remote | None,
             base: str | None, log: Log | None, follow_head: bool, root: Path,
             reply: tuple[str, int] | None) -> PreviewResult:
    repo = clone_bare(dbt, root / "dbt")
    base_ref = base or remote_default_branch(dbt)
    base_sha = resolve(repo, base_ref, f"the dbt repo `{dbt.key}`")
    if dbt_sha is not None:        # before anything is claimed: a dbt path missing on the branch is a typo
        check_folder(RevisionReader(repo.git_dir, "dbt repo"), dbt_sha, dbt.path, "the dbt path")
    base_dir = _project_dir(dbt, repo, worktree(repo, base_sha, root / "base"), base_sha)
    early = config.registry.claim(config.warehouse, dbt.key, branch, dbt_sha, allocate=False, reply=reply) \
        if dbt_sha is not None else None           # an older build of the branch stops now, not once prod is read
    try:
        prod_state = _prepare_prod(base_dir, config, log)
    except Exception as error:
        if early is not None:
            config.registry.finish(config.warehouse, early.preview.schema, early.token, status="failed",
                                   error=str(error)[:2000], finished_at=time.time())
        if isinstance(error, RepoError):
            raise PreviewError(f"prod for `{base_ref}` ({base_sha[:12]}): {error}") from error
        raise
    prod_manifest = _load(prod_state.manifest)
    result = PreviewResult(branch=branch, status="ready", warehouse=config.warehouse, dbt_commit=dbt_sha,
                           base_commit=base_sha, prod={**prod_state.as_json(), "schema": config.prod.schema})
    if dbt_sha is None:
        result.status = "semantic-only"
        result.message = (f"there is no dbt branch `{branch}`: nothing to build; the semantic-layer branch was "
                          f"checked against prod")
        result.semantic, views, sem_sha = _semantic(config.target, semantic, branch, prod_manifest, root,
                                                    config.prod.schema)
        result.env_file = _env_file(result, config.prod.schema, views, prod_manifest, prod_manifest, sem_sha)
        return result
    head_dir = dbt.project_dir(worktree(repo, dbt_sha, root / "head"))
    head = (lambda: remote_branch_sha(dbt, branch)) if follow_head else None
    _build_branch(result, head_dir, dbt, config, prod_state, prod_manifest, head, log, early, reply)
    if result.status not in ("ready", "failed"):
        return result
    row = config.registry.get(config.warehouse, dbt.key, branch)
    manifest = _load(Path(row.manifest)) if row is not None and row.manifest and Path(row.manifest).exists() \
        else prod_manifest
    result.semantic, views, sem_sha = _semantic(config.target, semantic, branch, manifest, root, result.schema)
    result.env_file = _env_file(result, str(result.schema), views, prod_manifest, manifest, sem_sha)
    if sem_sha is not None and row is not None:
        config.registry.finish(config.warehouse, row.schema, row.token, semantic_commit=sem_sha)
    return result


def _project_dir(dbt: Remote, repo: Any, checkout: Path, sha: str) -> Path:
    """The dbt project's folder of a checkout; a dbt path missing at `sha` is said in one line."""
    check_folder(RevisionReader(repo.git_dir, "dbt repo"), sha, dbt.path, "the dbt path")
    return dbt.project_dir(checkout)


def _env_file(result: PreviewResult, environment: str, views: list[View], prod_manifest: dict, manifest: dict,
              semantic_commit: str | None) -> dict[str, str]:
    overrides = schema_overrides(prod_manifest, manifest)
    result.override = {"warehouse": result.warehouse, "schemas": {k: v for k, v in overrides.items() if k != v}}
    text = render_env_file(environment=environment, branch=result.branch, warehouse=result.warehouse,
                           dbt_commit=result.dbt_commit, semantic_commit=semantic_commit,
                           overrides=overrides, targets=view_targets(views, manifest))
    return {"path": env_file_path(environment), "text": text}


def _build_branch(result: PreviewResult, project: Path, dbt: Remote, config: PreviewConfig, prod_state: ProdState,
                  prod_manifest: dict, head: Callable[[], str | None] | None, log: Log | None,
                  early: Claim | None, reply: tuple[str, int] | None) -> None:
    registry, target, warehouse = config.registry, config.target, config.warehouse
    sha = str(result.dbt_commit)
    protected = {config.prod.schema.lower(), *(s.lower() for s in prod_state.schemas)}
    fingerprint = prod_fingerprint(prod_manifest)
    claim = early or registry.claim(warehouse, dbt.key, result.branch, sha, protected=protected, cap=config.cap,
                                    reserve=custom_suffix_reserve(config.prod.schema, prod_state.schemas),
                                    reply=reply)
    assert claim is not None
    schema = check_preview_schema(claim.preview.schema, protected)
    result.schema = schema
    previous = claim.previous
    cancel = _Canceller(registry, warehouse, schema, claim.token, head, sha)
    last_state = Path(previous.manifest) if previous is not None and previous.manifest else None
    prod_dir = prod_state.manifest.parent.resolve()
    try:
        with writing(target, schema, config.prod.schema, cancel):
            cancel.check()
            current = (previous is not None and previous.status == "ready" and last_state is not None
                       and previous.prod_fingerprint == fingerprint and last_state.exists())
            exists = _schema_exists(target, schema)
            if current and exists and previous is not None and previous.built_commit == sha:
                result.mode, result.built, result.schemas = "unchanged", list(previous.built), list(previous.schemas)
                result.build = {"ok": True, "selected": [], "built": [], "failed": [], "skipped": [],
                                "failed_tests": [], "errors": [], "seconds": 0.0}
                assert last_state is not None
                nothing = BuildResult(True, schema)
                if _missing_relations(target, _load(last_state), schema, nothing):   # prod's rebuild took
                    result.clone_errors = _clone(project, target, schema, prod_dir, [], log, cancel)  # views along
                registry.finish(warehouse, schema, claim.token, status="ready", mode="unchanged",
                                finished_at=time.time())
                result.message = f"already up to date with {sha[:12]}"
                return
            incremental = current and exists
            result.mode = "incremental" if incremental else "full"
            if not incremental:                 # start clean: nothing stale may shadow prod
                drop_preview_schemas(target, schema, list(previous.schemas) if previous else [], protected,
                                     config.prod.schema)
            manifest = _guard(project, target, schema, protected, log, cancel)
            state = ["--state", str(last_state.parent.resolve()), "--defer-state", str(prod_dir)] \
                if incremental and last_state is not None else ["--state", str(prod_dir)]
            built = _build(project, target, schema, ["--select", "state:modified+", "--defer", *state], log, cancel)
            cancel.check()
            saved = registry.artifacts(schema) / claim.token / "manifest.json"     # dbt's --state is a folder
            saved.parent.mkdir(parents=True, exist_ok=True)
            if built.manifest is not None and built.manifest.exists():
                shutil.copy(built.manifest, saved)
            else:
                saved.write_text(json.dumps(manifest))
            if (built.ok or built.selected) and _missing_relations(target, manifest, schema, built):
                result.clone_errors = _clone(project, target, schema, prod_dir, [*built.failed, *built.skipped],
                                             log, cancel)
            schemas = _preview_schemas(_load(saved), schema)
            existing = set(_schemata_of(target))
            schemas = [s for s in schemas if s in existing] or [schema]
            _analyze(target, schemas)
            cancel.check()
            so_far = set(previous.built) if incremental and previous is not None else set()
            total = sorted((so_far | set(built.built)) - set(built.failed))
            result.build, result.built, result.schemas = _build_json(built), total, schemas
            # every model built (data tests may still fail: reported, the environment is usable) or not
            usable = built.ok or (bool(built.selected) and not built.failed and not built.skipped)
            result.status = "ready" if usable else "failed"
            if not built.ok:
                result.message = ("data tests failed: " if usable else "dbt build failed: ") + \
                    "; ".join(built.errors[:3])
            recorded = registry.finish(
                warehouse, schema, claim.token, status=result.status, built_commit=sha if usable else None,
                built=total, last_built=built.built, schemas=schemas, mode=result.mode, manifest=str(saved),
                prod_fingerprint=fingerprint, error=None if built.ok else result.message[:2000],
                finished_at=time.time(), seconds=round(built.seconds, 2))
            if not recorded:
                shutil.rmtree(saved.parent, ignore_errors=True)
                raise Cancelled("a newer build of the branch (or a drop of its preview) superseded it")
            for old in saved.parent.parent.iterdir():
                if old != saved.parent:
                    shutil.rmtree(old, ignore_errors=True)
    except Cancelled as stop:
        result.status, result.message = "cancelled", f"cancelled: {cancel.reason or stop.reason}"
        if registry.is_current(warehouse, schema, claim.token):      # the branch moved: nobody took over
            registry.finish(warehouse, schema, claim.token, status="cancelled", error=result.message,
                            finished_at=time.time())
    except BaseException as error:
        message = str(error) if isinstance(error, LayersyncError) else f"{type(error).__name__}: {error}"
        registry.finish(warehouse, schema, claim.token, status="failed", error=message[:2000],
                        finished_at=time.time())
        raise


def _schemata_of(target: Target) -> list[str]:
    with target.open(read_only=True) as wh:
        return _schemata(wh)


__all__ = ["PreviewConfig", "PreviewResult", "Cancelled", "build_preview", "compile_views", "load_views",
           "prod_fingerprint", "writes_outside", "drop_preview_schemas", "writing", "reading"]

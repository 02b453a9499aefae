"""`layersync impact`: build head's changed models into a dev schema deferring to prod, compare, report."""
from __future__ import annotations

import json
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import git

from bot.dbt.project import model_named_by
from bot.errors import LayersyncError, RepoError
from bot.gitops import RevisionReader
from bot.impact.build import BuildResult, Target, build_dev, dev_schema_name, reading_schema
from bot.impact.lineage import lineage, mermaid
from bot.impact.prod import DEFAULT_PROD_SCHEMA, ProdEnv, models_by_relation, prepare_prod, relations
from bot.impact.report import SCHEMA_VERSION, gate
from bot.impact.schema_diff import schema_and_rows
from bot.impact.semantic_diff import semantic_diff
from bot.impact.value_diff import value_diff
from bot.push_to_dbt import check_folder
from bot.selection import ViewSource, format_at
from bot.semantic.model import View

PROD_SCHEMA = DEFAULT_PROD_SCHEMA


def _checkout(source: Path, sha: str, target: Path) -> Path:
    repo = git.Repo.clone_from(str(source), target, no_checkout=True)
    repo.git.checkout("--detach", sha)
    return target


def _views(semantic_repo: Path | None, rev: str = "HEAD", root: str = "") -> list[View]:
    if semantic_repo is None:
        return []
    reader = RevisionReader(semantic_repo, "semantic-layer repo")
    check_folder(reader, rev, root, "--semantic-path")
    try:
        source = ViewSource(reader, rev, format_at(reader, rev, root), root)
    except LayersyncError:  # a bad layersync.yml is the push/pull reports' business too
        return []
    views = []
    for path in source.paths():
        try:
            view = source.read(path)
        except Exception:  # noqa: BLE001 - a broken view file is the push/pull reports' business
            continue
        if view is not None:
            views.append(view)
    return views


def _keys(manifest: dict, views: list[View]) -> dict[str, list[str]]:
    """Primary keys per model: the semantic layer's `primary_key`, else dbt's unique + not_null tests."""
    keys: dict[str, list[str]] = {}
    tested: dict[tuple[str, str], set[str]] = {}
    for node in manifest.get("nodes", {}).values():
        meta = node.get("test_metadata") or {}
        attached, column = node.get("attached_node") or "", node.get("column_name")
        if node.get("resource_type") == "test" and meta.get("name") in ("unique", "not_null") and column:
            tested.setdefault((attached.rsplit(".", 1)[-1], column), set()).add(meta["name"])
    for (model, column), names in tested.items():
        if names == {"unique", "not_null"}:
            keys.setdefault(model, [column])
    aliases = models_by_relation(manifest)
    for view in views:
        pk = [f.name for f in view.fields.values() if f.primary_key and f.kind == "dimension"]
        if pk:
            keys[model_named_by(view.model_name, aliases)] = pk
    return keys


def run_impact(dbt_repo: Path, base: str, head: str, *, semantic_repo: Path | None = None,
               workdir: Path | None = None, pr: Any = None, max_measure_move_pct: float | None = None,
               log: Callable[[str], None] | None = None, warehouse: str | Path | Target | None = None,
               prod: ProdEnv | None = None, semantic_path: str = "", dbt_path: str = "") -> dict:
    """Build `head`'s changed models into the PR's dev schema, deferring to prod; compare; return the report.

    `warehouse`: a DuckDB file path or a `postgresql://user:pw@host:port/db` DSN (or a Target); None
    is a fresh DuckDB file in the workdir. `prod`: where prod is (see bot.impact.prod); by default the
    schema `prod`, read as it is in a given warehouse, and built from `base` in a scratch one (it has
    nothing else to compare with). The comparisons open the warehouse read-only. `semantic_path`,
    `dbt_path`: the model's and the project's folders in their repos (monorepos; dbt runs in the latter).
    """
    reader = RevisionReader(dbt_repo, "dbt repo")
    base_sha, head_sha = reader.commit(base).hexsha, reader.commit(head).hexsha
    for sha in (base_sha, head_sha):
        check_folder(reader, sha, dbt_path, "--dbt-path")
    root = Path(workdir or tempfile.mkdtemp(prefix="layersync-impact-"))
    root.mkdir(parents=True, exist_ok=True)
    target = Target.parse(warehouse if warehouse is not None else root / "warehouse.duckdb")
    prod = prod or ProdEnv(build=warehouse is None)
    dev_schema = dev_schema_name(pr if pr is not None else head_sha[:10])
    base_dir = _checkout(Path(reader.repo.git_dir if reader.repo.bare else reader.repo.working_tree_dir),
                         base_sha, root / "base")
    head_dir = _checkout(Path(reader.repo.git_dir if reader.repo.bare else reader.repo.working_tree_dir),
                         head_sha, root / "head")
    if dbt_path:                                    # dbt runs in the project's folder of each checkout
        base_dir, head_dir = base_dir / dbt_path, head_dir / dbt_path
    try:
        prod_state = prepare_prod(base_dir, target, prod, log=log)
    except RepoError as error:
        raise RepoError(f"prod for the base commit {base_sha[:12]}: {error}") from error
    with reading_schema(target, prod.schema):  # no rebuild of prod while this run reads it
        dev_build = build_dev(head_dir, target, dev_schema, prod_state.manifest, log=log)
        before = json.loads(prod_state.manifest.read_text())
        after_path = dev_build.manifest
        after = json.loads(after_path.read_text()) if after_path is not None and after_path.exists() else before
        graph = lineage(before, after)
        views = _views(semantic_repo, root=semantic_path)
        changed = list(dict.fromkeys([*graph.modified, *graph.added, *graph.descendants]))
        prod_rel, dev_rel = relations(before), relations(after) if after is not before else {}
        aliases = models_by_relation(before, after)
        reading = {v.name: model_named_by(v.model_name, aliases) for v in views
                   if model_named_by(v.model_name, aliases) in changed}
        doc: dict[str, Any] = {
            "version": SCHEMA_VERSION, "pr": pr, "base": base_sha, "head": head_sha, "prod_schema": prod.schema,
            "dev_schema": dev_schema, "database": target.describe(), "warehouse": target.kind,
            "prod": prod_state.as_json(),
            "build": {"ok": dev_build.ok, "selected": dev_build.selected, "failed": dev_build.failed,
                      "skipped": dev_build.skipped, "built": dev_build.built,
                      "errors": dev_build.errors, "seconds": round(dev_build.seconds, 2)},
            "lineage": {"modified": graph.modified, "added": graph.added, "removed": graph.removed,
                        "descendants": graph.descendants, "edges": [list(e) for e in graph.edges],
                        "mermaid": mermaid(graph, {m: [v for v, t in reading.items() if t == m] for m in changed})},
            "models": [], "semantic": {"views": [], "measures": [], "broken": []},
        }
        keys = _keys(after, views)
        with target.open(read_only=True) as wh:
            for model in changed:
                unbuilt = _not_built(model, dev_build)
                if unbuilt is not None:     # no dev relation to compare: every column would read "removed"
                    doc["models"].append(unbuilt)
                    continue
                diff = schema_and_rows(wh, model, prod_rel.get(model), dev_rel.get(model))
                entry = {"model": model, "status": "built", "columns_added": [[c.name, c.type] for c in diff.added],
                         "columns_removed": [[c.name, c.type] for c in diff.removed],
                         "types_changed": [list(t) for t in diff.type_changed],
                         "rows": _rows(diff.prod_rows, diff.dev_rows), "value_diff": None}
                if model in keys and diff.prod_rows is not None and diff.dev_rows is not None:
                    entry["value_diff"] = _jsonable(asdict(value_diff(wh, prod_rel[model], dev_rel[model],
                                                                      keys[model])))
                doc["models"].append(entry)
            if dev_build.ok:
                pairs = {view: (prod_rel.get(model), dev_rel[model]) for view, model in reading.items()
                         if model in dev_rel}                 # not in prod: new in this PR
                sem = semantic_diff(wh, views, pairs, dialect=wh.dialect)
                doc["semantic"] = {
                    "views": sem.views,
                    "measures": [{"view": v.view, "measure": v.measure, "dimension": v.dimension, "group": _jsonable(v.group),
                                  "prod": v.prod, "dev": v.dev, "delta": v.delta, "pct": v.pct} for v in sem.values],
                    "broken": [{"field": b.id, "file": b.file, "line": b.line, "reason": b.reason} for b in sem.broken]}
    state, description = gate(doc, max_measure_move_pct)
    doc["status"] = {"state": state, "description": description}
    return doc


def _not_built(model: str, build: BuildResult) -> dict[str, Any] | None:
    """The report entry of a changed model dev has no fresh relation for (failed, skipped after a parent
    failed, or not run at all), with dbt's error; None for a model that built."""
    if model in build.built or (build.ok and model not in build.failed + build.skipped):
        return None                 # built, or nothing of dbt's to run (an ephemeral model)
    status = "failed" if model in build.failed else "skipped" if model in build.skipped else "not built"
    prefix = f"model {model}:"
    errors = [e for e in build.errors if e.startswith(prefix)] if status == "failed" else []
    return {"model": model, "status": status, "error": "\n".join(e[len(prefix):].strip() for e in errors) or None,
            "columns_added": [], "columns_removed": [], "types_changed": [], "rows": None, "value_diff": None}


def _rows(prod: int | None, dev: int | None) -> dict[str, Any]:
    delta = None if prod is None or dev is None else dev - prod
    return {"prod": prod, "dev": dev, "delta": delta, "pct": (100.0 * delta / prod) if delta is not None and prod else None}


def _jsonable(value: Any) -> Any:
    """Dates, decimals and the like as JSON can hold them (the report is also a file for CI)."""
    return json.loads(json.dumps(value, default=str))

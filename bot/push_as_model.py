"""push-to-dbt --as-model: measures of one view materialised as one dbt model, grouped by dimensions.

For teams without MetricFlow, the BI definitions become a plain dbt model: `SELECT <dimensions>,
<aggregates> FROM {{ ref('<the view's model>') }} [LEFT JOIN {{ ref(...) }}] GROUP BY ...`, the very SQL
`bot.translate.measure_sql` says a BI tool runs, with its properties YAML (descriptions, `meta`) and a
singular test (`tests/assert_<name>_one_row_per_group.sql`: no group-by combination twice; NULL groups
count as groups, which dbt's own `unique` would skip). Before anything is pushed dbt builds the model and
its parents into a scratch DuckDB file, runs the test, and the model's rows are compared with the BI SQL
evaluated over the same built parents: the PR shows that parity.

The files are new, written whole; a model of that name that already exists in the base branch is never
overwritten (choose another name). Branch, workspace, forge and PR go through push_to_dbt's helpers.
"""
from __future__ import annotations

import json
import math
import re
import tempfile
from dataclasses import dataclass, field as dc_field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Sequence

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from sqlglot import exp

from bot import pr_body
from bot.dbt.project import DbtProject, DirStore, FileStore, fast_yaml, project_store
from bot.dbt.runner import check_project, deps_failure, install_packages, run_dbt, write_duckdb_profile
from bot.errors import LayersyncError, RepoError
from bot.forge.base import Forge
from bot.gitops import RevisionReader, Workspace, repo_remote
from bot.impact.prod import relations as built_relations
from bot.push_to_dbt import (MAX_SLUG, PushRequest, PushResult, InRepo, branch_slug, check_folder, load_config,
                             select)
from bot.semantic.model import Field, SemanticModel, View
from bot.translate import measure_sql
from bot.translate.measure_sql import GroupBy, MeasureQuery, MeasureUnsupported, dbt_ref, quote_reserved
from bot.translate.push import MAX_COLUMN_BYTES, PushedField, PushPlan, Skipped
from bot.untrusted import quote
from bot.yamledit import Document
from bot.warehouse.duckdb_warehouse import DuckDBWarehouse

MODEL_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
HEADER = "-- Materialised by layersync from the semantic layer (push-to-dbt --as-model): measures of `{view}`."
# A dimension named like this reads time, when the view does not say (Omni takes types from the warehouse,
# so its files mark no time dimension unless they give `timeframes:`).
_TIME_NAME = re.compile(r"(^|_)(date|day|time|timestamp|datetime|at|on|month|week)$")
FLOAT_TOLERANCE = 1e-9


@dataclass
class AsModelRequest:
    push: PushRequest                        # repos, --field (measures), --since, dialects, folders, dry run
    name: str                                # the dbt model to write
    group_by: list[str] = dc_field(default_factory=list)   # VIEW.DIM (or VIEW.DIM:GRAIN)
    grain: str | None = None                 # day | week | month | quarter | year, on the view's time dimension


@dataclass(frozen=True)
class ParityRow:
    group: dict[str, Any] | None
    dbt: Any
    bi: Any
    ok: bool

    def to_json(self) -> dict[str, Any]:
        return {"group": self.group, "dbt": _jsonable(self.dbt), "bi": _jsonable(self.bi), "ok": self.ok}


@dataclass
class AsModelResult(PushResult):
    model: str | None = None
    model_sql: str | None = None
    group_by: list[str] = dc_field(default_factory=list)
    parity: dict[str, list[ParityRow]] = dc_field(default_factory=dict)   # measure id -> rows
    checked: str = "not checked"            # "built" (dbt build + parity), "dbt build only", "dbt compile only"

    @property
    def parity_ok(self) -> bool:
        return all(row.ok for rows in self.parity.values() for row in rows)

    @property
    def exit_code(self) -> int:
        return 1 if super().exit_code or not self.parity_ok else 0

    def to_json(self) -> dict[str, Any]:
        data = super().to_json()
        for entry in data["pushed"]:
            if entry["field"] in self.parity:
                entry["parity"] = [row.to_json() for row in self.parity[entry["field"]]]
        data["as_model"] = {"name": self.model, "group_by": self.group_by, "sql": self.model_sql,
                            "checked": self.checked}
        return data


@dataclass
class ModelPlan:
    """The model's files (paths in the dbt project) and what each measure became."""

    name: str
    view: View
    query: MeasureQuery | None          # None when no measure could be computed
    files: dict[str, str]
    sql_path: str
    pushed: list[PushedField]
    skipped: list[Skipped]
    group_by: list[str]

    @property
    def measures(self) -> list[Field]:
        return [c.field for c in self.query.measures] if self.query is not None else []


# ---------------------------------------------------------------------------------------------- planning

def check_name(name: str) -> None:
    if not MODEL_NAME.match(name or "") or len(name.encode()) > MAX_COLUMN_BYTES:
        raise LayersyncError(f"--as-model `{name[:80]}` is no dbt model name: lower-case letters, digits and `_`, "
                             f"starting with a letter or `_`, at most {MAX_COLUMN_BYTES} bytes")


def grain_target(view: View, groups: list[GroupBy], grain: str) -> list[GroupBy]:
    """`--grain` applies to the view's time dimension: the one the groupings name, else the one the view
    has (marked `timeframes:`/a time `type:`, else named like time: `*_date`, `*_at`, ...; of several, the
    one that is a column of the table rather than computed from one)."""
    if grain not in measure_sql.GRAINS:
        raise LayersyncError(f"--grain `{grain}` is no time grain: one of {', '.join(measure_sql.GRAINS)}")
    candidates = measure_sql.time_dimensions(view) or [
        f for f in view.fields.values() if f.kind == "dimension" and _TIME_NAME.search(f.name)]
    names = {f.name for f in candidates}
    for index, group in enumerate(groups):
        view_name, _, dim = group.field.rpartition(".")
        if (view_name in ("", view.name)) and dim in names and group.grain is None:
            return [*groups[:index], GroupBy(group.field, grain), *groups[index + 1:]]
    if not candidates:
        raise LayersyncError(f"--grain {grain}: view `{view.name}` has no time dimension (none marked with "
                             f"`timeframes:`, none named like a date); group by one with "
                             f"`--group-by {view.name}.DIM:{grain}`", view.file, view.line)
    if len(candidates) > 1:   # a column of the table over one the view computes (`order_month` from `order_date`)
        columns = [f for f in candidates if f.sql is None]
        candidates = columns if len(columns) == 1 else candidates
    if len(candidates) > 1:
        listed = ", ".join(f"`{f.name}` ({f.location})" for f in candidates)
        raise LayersyncError(f"--grain {grain}: view `{view.name}` has several time dimensions ({listed}); name "
                             f"the one to use with `--group-by {view.name}.DIM:{grain}`", view.file, view.line)
    chosen = candidates[0]
    return [*groups, GroupBy(f"{view.name}.{chosen.name}", grain)]


def plan_model(model: SemanticModel, measures: Sequence[Field], group_by: Sequence[str], name: str,
               project: DbtProject, *, grain: str | None = None, dialect: str = "duckdb",
               dbt_dialect: str = "duckdb") -> ModelPlan:
    """The model's SQL, YAML and test for `measures` (of one view) grouped by `group_by` (pure).

    A measure no SQL can compute (list, *_distinct_on, ...) is skipped with the reason; a grouping or a
    name that cannot work is a LayersyncError, one line with its file and line: nothing is written."""
    check_name(name)
    views = sorted({m.view for m in measures})
    if len(views) != 1:
        raise LayersyncError(f"--as-model aggregates the measures of one view; these are of {', '.join(views)}: "
                             f"choose with --field VIEW.MEASURE")
    view = model.views.get(views[0])
    if view is None:
        raise LayersyncError(f"`{views[0]}` is no view of the semantic model")
    groups = [measure_sql.parse_group_by(g) for g in group_by]
    if grain is not None:
        groups = grain_target(view, groups, grain)
    if not groups:
        raise LayersyncError("--as-model needs at least one --group-by VIEW.DIM (or a --grain)")
    existing = project.models().get(name)
    if existing is not None:
        raise RepoError(f"a dbt model named `{name}` already exists ({existing.path}); --as-model writes new "
                        f"models only: choose another name", existing.path, 1)
    base_model = project.find_model(view.model_name)
    if base_model is None and project.find_seed(view.model_name) is None:
        raise LayersyncError(f"view `{view.name}` reads `{view.model_name}`, which is no model or seed of the dbt "
                             f"project", view.file, view.line)
    kept, skipped = [], []
    for measure in measures:
        try:   # each measure alone first: one that cannot be computed is reported, the others still go
            measure_sql.measure_query(model, view, [measure], [], relation=dbt_ref, read_dialect=dialect)
            kept.append(measure)
        except MeasureUnsupported as exc:
            skipped.append(Skipped(measure.id, exc.file or measure.location.file, exc.line or measure.location.line,
                                   exc.message, exc.code))
    if not kept:
        return ModelPlan(name, view, None, {}, "", [], skipped, [g.field for g in groups])
    query = measure_sql.measure_query(model, view, kept, groups, relation=dbt_ref, read_dialect=dialect,
                                      order=False)
    for other in query.views[1:]:
        joined = model.views[other]
        if project.find_model(joined.model_name) is None and project.find_seed(joined.model_name) is None:
            raise LayersyncError(f"grouping by `{other}` joins `{joined.model_name}`, which is no model or seed of the "
                                 f"dbt project", joined.file, joined.line)
    directory = base_model.directory if base_model is not None else project.model_paths[0]
    sql_path = f"{directory}/{name}.sql"
    yml_path = f"{directory}/{name}.yml"
    test_path = f"{_test_paths(project)[0]}/assert_{name}_one_row_per_group.sql"
    sql = _model_sql(query, view, dbt_dialect)
    files = {sql_path: sql, yml_path: _properties(name, view, query, groups),
             test_path: _uniqueness_test(name, query, dbt_dialect)}
    rendered = {c.name: e for c, e in zip(query.measures, query.select.expressions[len(query.dimensions):])}
    pushed = [PushedField(c.field.id, c.field.location.file, c.field.location.line, name, c.name, "added",
                          _semantic_sql(c.field), quote_reserved(rendered[c.name].unalias(), dbt_dialect).sql(
                              dialect=dbt_dialect), None, (sql_path, yml_path, test_path))
              for c in query.measures]
    return ModelPlan(name, view, query, files, sql_path, pushed, skipped, [g.field + (f":{g.grain}" if g.grain else "")
                                                                         for g in groups])


def _test_paths(project: DbtProject) -> list[str]:
    data = fast_yaml(project.store.read_text("dbt_project.yml") or "")
    paths = data.get("test-paths") if isinstance(data, dict) else None
    if isinstance(paths, list) and paths and all(isinstance(p, str) and p for p in paths):
        return [p.rstrip("/") for p in paths]
    return ["tests"]


def _model_sql(query: MeasureQuery, view: View, dialect: str) -> str:
    groups = ", ".join(c.name for c in query.dimensions)
    return (f"{HEADER.format(view=view.name)}\n-- One row per {groups}; edit the measures in the semantic layer and "
            f"push again rather than here.\n\n{query.sql(dialect, pretty=True)}\n")


def _uniqueness_test(name: str, query: MeasureQuery, dialect: str) -> str:
    columns = [exp.column(c.name) for c in query.dimensions]
    select = (exp.select(*columns, exp.alias_(exp.Count(this=exp.Star()), "rows_per_group"))
              .from_(exp.Table(this=exp.Var(this="{{ ref('" + name + "') }}")))
              .group_by(*[c.copy() for c in columns])
              .having(exp.GT(this=exp.Count(this=exp.Star()), expression=exp.Literal.number(1))))
    listed = ", ".join(c.name for c in query.dimensions)
    return (f"-- layersync: `{name}` has one row per group ({listed}); a group-by combination twice would mean a "
            f"join repeated rows.\n-- NULL groups count as groups here (dbt's `unique` test skips NULLs).\n\n"
            f"{quote_reserved(select, dialect).sql(dialect=dialect, pretty=True)}\n")


def _properties(name: str, view: View, query: MeasureQuery, groups: list[GroupBy]) -> str:
    grouped = ", ".join(f"`{g.field}`" + (f" by {g.grain}" if g.grain else "") for g in groups)
    label = f" ({view.label})" if view.label else ""
    columns = []
    for column in query.dimensions:
        what = _said(column.field)
        grain = f", truncated to the {column.grain}" if column.grain else ""
        columns.append({"name": column.name, "description": f"{what}Group-by: `{column.field.id}`{grain}."})
    for column in query.measures:
        what = _said(column.field)
        columns.append({"name": column.name,
                        "description": f"{what}{_semantic_sql(column.field).capitalize()}: `{column.field.id}`."})
    document = {"version": 2, "models": [{
        "name": name,
        "description": (f"Measures of `{view.name}`{label} aggregated by {grouped}, materialised by layersync from "
                        f"the semantic layer ({view.file}); one row per group."),
        "meta": {"layersync": {"view": view.name, "measures": [c.field.name for c in query.measures],
                               "group_by": [g.field + (f":{g.grain}" if g.grain else "") for g in groups]}},
        "columns": columns,
    }]}
    doc = Document("", f"{name}.yml")
    for key, value in document.items():
        doc.set((key,), value)
    return doc.result(f"writing the properties of model {name}")


def _said(field: Field) -> str:
    """The analyst's own words for a field (description, else label), as a sentence to go first."""
    text = " ".join((field.description or field.label or "").split()).rstrip(".")
    return f"{text}. " if text else ""


def _semantic_sql(field: Field) -> str:
    aggregate = field.aggregate_type or "custom aggregate"
    parts = [aggregate + (f" {field.percentile:g}" if field.percentile is not None else "")]
    if field.sql:
        parts.append(f"of `{' '.join(field.sql.split())}`")
    if field.filters:
        parts.append("filtered by " + json.dumps(field.filters, default=str, sort_keys=True))
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------- the check

@dataclass
class BuildCheck:
    ok: bool
    errors: list[str] = dc_field(default_factory=list)
    parity: dict[str, list[ParityRow]] = dc_field(default_factory=dict)
    checked: str = "not checked"            # "built" (dbt build + parity), "dbt build only", "dbt compile only"


def build_and_compare(project_dir: Path, plan: ModelPlan, model: SemanticModel, *, profile: str,
                      profiles_dir: Path | None, dialect: str, log: Callable[[str], None],
                      dbt_dialect: str = "duckdb") -> BuildCheck:
    """`dbt build` of the model and its parents (the uniqueness test included); on DuckDB (the embedded
    scratch file, or the file a `--profiles-dir` DuckDB target writes) the model's rows are then compared
    with the BI SQL over the same built parents. A project written for
    another warehouse cannot run on the embedded DuckDB: without a profiles dir it gets dbt's static check
    (`dbt compile`), and the result says so."""
    if profiles_dir is None and dbt_dialect != "duckdb":
        static = check_project(project_dir, [plan.name], profile=profile, log=log)
        return BuildCheck(static.ok, static.errors, checked="dbt compile only")
    with tempfile.TemporaryDirectory(prefix="layersync-as-model-") as tmp:
        scratch = Path(tmp)
        database = scratch / "build.duckdb"
        embedded = profiles_dir is None
        if embedded:
            profiles_dir = scratch / "profiles"
            write_duckdb_profile(profiles_dir, profile, str(database))
        ran = install_packages(project_dir, profiles_dir, log=log)     # once per package files' content
        if ran is not None and not ran.ok:
            return BuildCheck(False, [deps_failure(ran)])
        target = scratch / "target"
        built = run_dbt(["build", "--select", f"+{plan.name}", "--indirect-selection", "cautious",
                         "--target-path", str(target)], project_dir, profiles_dir, log=log)
        if not built.ok:
            errors = built.error_lines()
            if embedded and not any(plan.name in line for line in errors):
                errors.append(f"(a parent of `{plan.name}` failed on the scratch DuckDB, which holds only what the "
                              f"project's seeds and models build: pass --profiles-dir to build on your warehouse)")
            return BuildCheck(False, errors)
        if not embedded:
            database = _duckdb_database(profiles_dir, profile, project_dir)
            if database is None:           # another warehouse: layersync compares values on DuckDB only
                return BuildCheck(True, checked="dbt build only")
        manifest = json.loads((target / "manifest.json").read_text(encoding="utf-8"))
        relations = {name.lower(): rel for name, rel in built_relations(manifest).items()}
        with DuckDBWarehouse(database) as warehouse:
            parity = compare(warehouse, plan, model, relations, dialect)
        return BuildCheck(True, parity=parity, checked="built")


def _duckdb_database(profiles_dir: Path, profile: str, project_dir: Path) -> Path | None:
    """The DuckDB file the profile's default target writes, when it is DuckDB (a file, not `:memory:`)."""
    try:
        profiles = YAML(typ="safe").load((profiles_dir / "profiles.yml").read_text(encoding="utf-8")) or {}
    except (OSError, ValueError, YAMLError):
        return None
    entry = profiles.get(profile) if isinstance(profiles, dict) else None
    if not isinstance(entry, dict) or not isinstance(entry.get("outputs"), dict):
        return None
    output = entry["outputs"].get(entry.get("target") or "dev")
    if not isinstance(output, dict) or output.get("type") != "duckdb":
        return None
    path = str(output.get("path") or "")
    if not path or path == ":memory:" or "{{" in path or path.startswith(("md:", "motherduck:")):
        return None
    database = Path(path)
    return database if database.is_absolute() else project_dir / database


def compare(warehouse: Any, plan: ModelPlan, model: SemanticModel, relations: dict[str, tuple[str, str]],
            dialect: str = "duckdb") -> dict[str, list[ParityRow]]:
    """The model's rows against the BI SQL over the built parents, group by group, measure by measure."""
    def relation(view: View) -> exp.Expression:
        schema, table = relations.get(view.model_name.lower(), (None, view.model_name))
        return exp.table_(exp.to_identifier(table), db=exp.to_identifier(schema) if schema else None)

    query = plan.query
    assert query is not None
    dims = [c.name for c in query.dimensions]
    names = [c.name for c in query.measures]
    bi_query = measure_sql.measure_query(model, plan.view, [c.field for c in query.measures],
                                         _groups_of(plan), relation=relation, read_dialect=dialect)
    schema, table = relations[plan.name.lower()]
    built = exp.select(*[exp.column(n) for n in dims + names]).from_(exp.table_(table, db=schema))
    dbt_rows = {tuple(r[:len(dims)]): r[len(dims):] for r in warehouse.query(quote_reserved(built, "duckdb").sql("duckdb"))}
    bi_rows = {tuple(r[:len(dims)]): r[len(dims):] for r in warehouse.query(bi_query.sql("duckdb"))}
    keys = list(bi_rows) + [k for k in dbt_rows if k not in bi_rows]
    parity: dict[str, list[ParityRow]] = {}
    for index, column in enumerate(query.measures):
        rows = []
        for key in keys:
            ours, theirs = dbt_rows.get(key), bi_rows.get(key)
            dbt_value = ours[index] if ours is not None else None
            bi_value = theirs[index] if theirs is not None else None
            ok = ours is not None and theirs is not None and same_value(dbt_value, bi_value)
            rows.append(ParityRow({d: _jsonable(v) for d, v in zip(dims, key)}, dbt_value, bi_value, ok))
        parity[column.field.id] = rows
    return parity


def _groups_of(plan: ModelPlan) -> list[GroupBy]:
    return [measure_sql.parse_group_by(g) for g in plan.group_by]


def same_value(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, (int, float, Decimal)) and isinstance(b, (int, float, Decimal)):
        x, y = float(a), float(b)
        return math.isclose(x, y, rel_tol=FLOAT_TOLERANCE, abs_tol=FLOAT_TOLERANCE) or (math.isnan(x) and math.isnan(y))
    return a == b


def _shown(value: Any) -> str:
    """A value as a reviewer reads it: NULL is SQL's word for no value."""
    return "NULL" if value is None else str(_jsonable(value))


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


# ---------------------------------------------------------------------------------------------- the use case

def branch_for(prefix: str, name: str) -> str:
    return prefix + branch_slug(f"model-{name}", name)[:MAX_SLUG]


def run(request: AsModelRequest, forge: Forge, log: Callable[[str], None] = lambda _: None) -> AsModelResult:
    push = request.push
    check_name(request.name)
    semantic = RevisionReader(push.semantic_repo, "semantic-layer repo")
    head = semantic.commit("HEAD").hexsha
    check_folder(semantic, head, push.semantic_path, "--semantic-path")
    config = load_config(semantic, head, push)
    selection = select(semantic, head, push, config)
    result = AsModelResult(semantic_commit=head, skipped=list(selection.skipped), model=request.name)
    measures = [r.field for r in selection.requests if r.field.kind == "measure"]
    for r in selection.requests:
        if r.field.kind != "measure":
            result.skipped.append(Skipped(r.field.id, r.field.location.file, r.field.location.line,
                                          "a dimension: --as-model aggregates measures; group by it with --group-by",
                                          "not-a-measure" if push.fields else "aggregate"))
    if not measures:
        result.message = "nothing to push: no measure " + ("named" if push.fields else "changed")
        return result
    assert selection.semantic is not None
    model = selection.semantic()
    semantic_label = push.origin[0] if push.origin else str(semantic.path)
    remote, env, forge_repo = repo_remote(forge, push.dbt_forge_repo, push.dbt_repo, "dbt repo")
    with Workspace(remote, env) as ws:
        base = push.base or config.base_branch or ws.default_branch()
        branch = branch_for(config.branch_prefix, request.name)
        ws.checkout(branch, base)
        dbt_reader = RevisionReader(ws.root, "dbt repo")
        check_folder(dbt_reader, f"origin/{base}", push.dbt_path, "--dbt-path")
        base_store: FileStore = project_store(dbt_reader.store(f"origin/{base}"), push.dbt_path)
        project = DbtProject(base_store)
        plan = plan_model(model, measures, request.group_by, request.name, project, grain=request.grain,
                          dialect=config.dialect, dbt_dialect=config.dbt_dialect)
        in_repo = InRepo(push.dbt_path, base_store)
        placed = in_repo.plan(PushPlan(files=plan.files, pushed=plan.pushed, skipped=plan.skipped))
        result.pushed, result.skipped = placed.pushed, result.skipped + placed.skipped
        result.group_by = plan.group_by
        if not plan.files:
            result.message = "nothing pushed: " + "; ".join(s.reason for s in plan.skipped)
            return result
        result.model_sql = plan.files[plan.sql_path]
        if push.dry_run:
            result.message = "dry run: nothing written"
            return result
        if config.dbt_check:
            project_dir = ws.root / push.dbt_path if push.dbt_path else ws.root
            ws.write(placed.files)
            try:
                check = build_and_compare(project_dir, plan, model, profile=DbtProject(DirStore(project_dir)).profile,
                                          profiles_dir=push.profiles_dir, dialect=config.dialect, log=log,
                                          dbt_dialect=config.dbt_dialect)
            finally:
                ws.discard(list(placed.files))
            if not check.ok:
                reason = "dbt rejected the model: " + " / ".join(check.errors[:6])
                result.skipped += [Skipped(p.id, p.file, p.line, reason, "dbt-error") for p in result.pushed]
                result.pushed = []
                result.message = f"nothing pushed: dbt could not build `{request.name}`"
                return result
            result.parity = check.parity
            result.checked = check.checked
        ws.write(placed.files)
        result.commit = ws.commit(_commit_message(plan, semantic_label, head), sorted(placed.files))
        if result.commit is not None:
            ws.push(branch)
            log(f"pushed {branch} ({result.commit[:12]}) to {forge_repo}")
        result.branch = branch
        body = render_body(branch=branch, result=result, plan=plan, semantic_repo=semantic_label, semantic_commit=head,
                           origin=push.origin)
        title = f"layersync: materialise {len(plan.pushed)} measure(s) of {plan.view.name} as model {plan.name}"
        result.pr, result.pr_created = forge.open_or_update_pr(forge_repo, head=branch, base=base, title=title,
                                                               body=body)
        result.message = (f"{'opened' if result.pr_created else 'updated'} PR #{result.pr.number}"
                          if result.commit or result.pr_created else f"PR #{result.pr.number} is already up to date")
    return result


def _commit_message(plan: ModelPlan, semantic_repo: str, head: str) -> str:
    body = "\n".join(f"- {p.id} -> {p.model}.{p.column}" for p in plan.pushed)
    return (f"layersync: materialise measures of {plan.view.name} as model {plan.name}\n\n"
            f"Grouped by {', '.join(plan.group_by)}; from semantic-layer commit {head} of {semantic_repo}.\n\n{body}\n")


def render_body(*, branch: str, result: AsModelResult, plan: ModelPlan, semantic_repo: str, semantic_commit: str,
                origin: tuple[str, int] | None = None) -> str:
    facts = {"semantic_repo": semantic_repo, "semantic_commit": semantic_commit,
             "origin": list(origin) if origin else None, "as_model": plan.name,
             "fields": [[p.id, p.file, p.model, p.column] for p in result.pushed]}
    lines = [pr_body.marker(branch), pr_body.hidden_json("facts", facts), "",
             f"This PR materialises measures of `{plan.view.name}` as the dbt model `{plan.name}`, one row per "
             f"{', '.join(f'`{g}`' for g in plan.group_by)}, from semantic-layer commit `{semantic_commit[:12]}` of "
             f"`{semantic_repo}`.", "",
             "| measure | column | definition | parity |", "|---|---|---|---|"]
    for p in result.pushed:
        rows = result.parity.get(p.id)
        verdict = ("—" if rows is None else
                   f"✓ {len(rows)} group(s)" if all(r.ok for r in rows) else
                   f"✗ {sum(not r.ok for r in rows)} of {len(rows)} group(s) differ")
        lines.append(f"| `{p.id}` ({p.file}:{p.line}) | `{p.column}` | {quote(p.semantic_sql or '', table=True)} "
                     f"| {verdict} |")
    sql = result.model_sql.strip() if result.model_sql else ""
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall("`+", sql)), default=0))
    lines += ["", "**Model SQL:**", fence + "sql", sql, fence, ""]
    if result.parity:
        lines += ["<details><summary>Parity: the model's rows against the BI definition over the same build</summary>",
                  "", "| measure | group | dbt | BI | |", "|---|---|---|---|---|"]
        for measure, rows in result.parity.items():
            shown = [r for r in rows if not r.ok][:10] or rows[:10]
            for r in shown:
                group = ", ".join(f"{k}={_shown(v)}" for k, v in (r.group or {}).items())
                lines.append(f"| `{measure}` | {quote(group, table=True)} | {quote(_shown(r.dbt), table=True)} | "
                             f"{quote(_shown(r.bi), table=True)} | "
                             f"{'✓' if r.ok else '✗'} |")
            if len(rows) > len(shown):
                lines.append(f"| `{measure}` | … {len(rows) - len(shown)} more group(s) | | | |")
        lines += ["", "</details>", ""]
    if result.skipped:
        lines += ["### Not pushed", "", "| field | where | why |", "|---|---|---|"]
        for s in result.skipped:
            where = f"{s.file}:{s.line}" if s.file and s.line else (s.file or "")
            lines.append(f"| `{s.id}` | {where} | {s.reason.replace('|', '/').replace(chr(10), ' ')} |")
        lines.append("")
    lines.append({"built": "_Checked before it was pushed: `dbt build` of the model and its parents on a scratch DuckDB "
                           "(the one-row-per-group test included), and every group's values compared with the BI "
                           "definition evaluated over the same build._",
                  "dbt build only": "_Checked before it was pushed: `dbt build` of the model and its parents on the "
                                    "configured target (the one-row-per-group test included); values not compared._",
                  "dbt compile only": "_Only a static check ran: `dbt compile` of the model (a project for another "
                                      "warehouse cannot be built on the embedded DuckDB; pass --profiles-dir to build "
                                      "it); values not compared._",
                  }.get(result.checked, "_Not checked with dbt (`dbt_check: false` in layersync.yml)._"))
    return "\n".join(lines)




def format_text(result: AsModelResult) -> str:
    """The CLI's lines: each measure with its parity verdict, what was not pushed, then branch and PR."""
    lines = []
    for p in result.pushed:
        rows = result.parity.get(p.id)
        verdict = ("" if rows is None else f"  parity ✓ {len(rows)} group(s)" if all(r.ok for r in rows)
                   else f"  parity ✗ {sum(not r.ok for r in rows)} of {len(rows)} group(s) differ")
        lines.append(f"pushed   {p.id} -> {p.model}.{p.column}{verdict}")
        for r in [r for r in rows or [] if not r.ok][:5]:
            group = ", ".join(f"{k}={v}" for k, v in (r.group or {}).items())
            lines.append(f"         {group}: dbt {_shown(r.dbt)} / BI {_shown(r.bi)}")
    for s in result.skipped:
        where = f"{s.file}:{s.line}: " if s.file and s.line else ""
        lines.append(f"skipped  {s.id}: {where}{s.reason}")
    if result.branch:
        lines.append(f"{'branch':<9}{result.branch}" + (f" @ {result.commit[:12]}" if result.commit else " (no new commit)"))
    if result.pr:
        lines.append(f"{'PR':<9}#{result.pr.number} {result.pr.url} ({result.message})")
    elif result.message:
        lines.append(result.message)
    return "\n".join(lines)


def parity_summary(result: AsModelResult) -> str:
    """One line a comment reply shows: how many groups of how many measures matched the BI definition."""
    rows = [r for measure_rows in result.parity.values() for r in measure_rows]
    bad = sum(not r.ok for r in rows)
    if not bad:
        return f"Parity with the BI definition: ✓ {len(rows)} value(s) of {len(result.parity)} measure(s) match."
    return f"Parity with the BI definition: ✗ {bad} of {len(rows)} value(s) differ (see the dbt PR)."


def run_for_comment(request: AsModelRequest, forge: Forge, log: Callable[[str], None] = lambda _: None
                    ) -> AsModelResult:
    """`run`, with a mistake in the command (an unknown dimension, a grain on a view with no time dimension,
    a taken name) answered as the reply's one line instead of failing the job."""
    try:
        return run(request, forge, log=log)
    except LayersyncError as exc:
        return AsModelResult(semantic_commit="", model=request.name, message=str(exc))

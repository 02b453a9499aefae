"""The push-to-dbt job: select fields, plan the dbt edits, check them with dbt, branch, push, PR.

The CLI and (later) the webhook handlers both call `run`, so a comment command and a terminal
command do exactly the same thing.
"""
from __future__ import annotations

import contextlib
import hashlib
import re
import tempfile
from dataclasses import dataclass, field as dc_field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import sqlglot
from sqlglot import exp

from bot import pr_body, push_metrics
from bot.config import CONFIG_FILE, Config, ref_format_problem
from bot import repo_paths
from bot.dbt.project import DbtProject, DirStore, project_store
from bot.dbt.runner import DbtCheck, EmptyBuild, check_project, warehouse_words
from bot.errors import LayersyncError, RepoError
from bot.forge.base import Forge, PullRequest
from bot.gitops import RevisionReader, Workspace, repo_remote
from bot.selection import Selection, format_at, model_reader, select_changed, select_named
from bot.translate import compiled
from bot.translate.metrics import PushedMetric
from bot.translate.push import FieldRequest, PushedField, PushPlan, PushPlanner, Skipped


@dataclass
class PushRequest:
    semantic_repo: Path                   # a local checkout (the bot clones hosted ones first)
    dbt_repo: Path | None = None          # local: a bare remote or a clone whose origin is pushed to
    fields: list[str] = dc_field(default_factory=list)
    since: str | None = None
    base: str | None = None
    dialect: str | None = None
    dbt_dialect: str | None = None
    profiles_dir: Path | None = None
    dbt_forge_repo: str | None = None     # hosted: the forge's name for the dbt repo ("owner/name")
    dry_run: bool = False                 # plan only: no dbt check, no commit, no push, no PR
    origin: tuple[str, int] | None = None # the semantic issue/PR that asked (repo, number)
    semantic_path: str = ""               # the semantic model's folder in its repo ("": the root)
    dbt_path: str = ""                    # the dbt project's folder in its repo ("": the root)
    parity: bool = True                   # pushed metrics: build the branch and compare with the BI numbers
    warehouse: str | None = None          # builds go here (DuckDB path or DSN): the push check's, in a scratch
                                          # schema deferring to prod, and the metrics' parity build
    prod_schema: str = "prod"             # the check defers unchanged parents to prod: read, never written
    prod_state: Path | None = None        # prod's manifest.json (default: `dbt parse` of the base as prod)


@dataclass
class PushResult:
    semantic_commit: str
    branch: str | None = None
    commit: str | None = None
    pr: PullRequest | None = None
    pr_created: bool = False
    pushed: list[PushedField] = dc_field(default_factory=list)
    skipped: list[Skipped] = dc_field(default_factory=list)
    message: str = ""
    check: DbtCheck | None = None         # dbt's verdict on the pushed edit (None: nothing was checked)
    metrics: list[PushedMetric] = dc_field(default_factory=list)   # measures pushed as MetricFlow metrics
    metric_status: tuple[str, str] | None = None                   # their parity as a commit status

    @property
    def exit_code(self) -> int:
        return 1 if any(s.is_failure for s in self.skipped) else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "semantic_commit": self.semantic_commit,
            "branch": self.branch,
            "commit": self.commit,
            "pr": None if self.pr is None else {
                "number": self.pr.number, "url": self.pr.url, "repo": self.pr.repo, "state": self.pr.state,
                "created": self.pr_created, "title": self.pr.title, "base": self.pr.base, "head": self.pr.head},
            "pushed": [{"field": p.id, "file": p.file, "line": p.line, "model": p.model, "column": p.column,
                        "action": p.action, "semantic_sql": p.semantic_sql, "dbt_sql": p.dbt_sql,
                        "previous_dbt_sql": p.previous_dbt_sql, "files": list(p.files)} for p in self.pushed]
                      + [push_metrics.metric_json(m) for m in self.metrics],
            "skipped": [{"field": s.id, "file": s.file, "line": s.line, "reason": s.reason, "code": s.code}
                        for s in self.skipped],
            "message": self.message,
            "check": None if self.check is None else pr_body.check_facts(self.check),
        }


MAX_SLUG = 80  # the field's part of a branch name; with the prefix's 100 bytes well within git's limits


def branch_name(prefix: str, requests: list[FieldRequest]) -> str:
    """Named by the fields, not the commit, so a rerun after another edit updates the same branch.

    A long name is cut and gets a short hash of the exact field id, so the same field always
    gets the same branch and two long names sharing a start never share one.
    """
    ids = sorted({r.field.id for r in requests})
    if len(ids) == 1:
        view, _, name = ids[0].partition(".")
        slug = branch_slug(f"{view}-{name}", ids[0])
    else:
        slug = "batch-" + _short_hash("\n".join(ids))
    branch = prefix + slug
    problem = ref_format_problem(branch)
    if problem:  # the slug is always valid, so only a prefix that slipped past the settings' check
        raise LayersyncError(f"`branch_prefix` `{prefix[:80]}` gives no valid git branch name: {problem}",
                             CONFIG_FILE)
    return branch


def branch_slug(text: str, key: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", text)
    slug = re.sub(r"\.{2,}", ".", slug).strip("-.") or "fields"
    if slug.endswith(".lock"):
        slug = slug[:-len(".lock")] + "-lock"
    if len(slug) > MAX_SLUG:
        slug = slug[:MAX_SLUG - 11].rstrip("-.") + "-" + _short_hash(key)
    return slug


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def read_config(reader: RevisionReader, rev: str, semantic_path: str = "") -> Config:
    """`layersync.yml` beside the semantic model, else at the repo's root (see repo_paths)."""
    return repo_paths.read_config(lambda path: reader.read(rev, path), semantic_path)


def load_config(reader: RevisionReader, head: str, request: PushRequest) -> Config:
    config = read_config(reader, head, request.semantic_path)
    return config.with_overrides(dialect=request.dialect, dbt_dialect=request.dbt_dialect).validated()


def check_folder(reader: RevisionReader, rev: str, path: str, flag: str) -> None:
    """A `--semantic-path`/`--dbt-path` that is no folder at `rev` is a typo: one line, before any work."""
    repo_paths.check_folder(lambda root: reader.is_dir(rev, root), path, flag, f"the {reader.what} at `{rev[:40]}`")


def select(reader: RevisionReader, head: str, request: PushRequest, config: Config) -> Selection:
    fmt = format_at(reader, head, request.semantic_path, config=config)
    since = request.since
    if since is None:
        parents = reader.commit(head).parents
        since = parents[0].hexsha if parents else None
    elif not reader.has_revision(since):
        raise RepoError(f"unknown revision `{since}` in semantic-layer repo `{reader.path}`")
    root = request.semantic_path
    if request.fields:
        selection = bounded_selection(select_named(reader, head, since, request.fields, fmt, root=root))
    else:
        selection = bounded_selection(select_changed(reader, head, since, config.dialect, fmt, root=root))
    selection.semantic = model_reader(reader, head, fmt, root)
    return selection


# Every PR gets a dry run and every push a dbt check: one event's work is bounded so that no PR author
# can hold a worker for long with a file of thousands of fields (planning is linear, the dbt check and the
# PR that a reviewer must read are not).
MAX_FIELDS_PER_PUSH = 300


def bounded_selection(selection: Selection, limit: int = MAX_FIELDS_PER_PUSH) -> Selection:
    """The first `limit` fields (dimensions first: measures cost nothing), the rest skipped with
    the reason and what to do instead."""
    ordered = sorted(selection.requests, key=lambda r: r.field.kind != "dimension")
    if len(ordered) <= limit:
        return selection
    kept, rest = ordered[:limit], ordered[limit:]
    reason = (f"this push has {len(ordered)} fields; layersync plans at most {limit} at once: push the rest "
              f"by name (`/push-to-dbt VIEW.FIELD …`, `--field`) or in a later change")
    selection.skipped.extend(Skipped(r.field.id, r.field.location.file, r.field.location.line, reason,
                                     "too-many-fields") for r in rest)
    chosen = {id(r) for r in kept}
    selection.requests = [r for r in selection.requests if id(r) in chosen]
    return selection


def run(request: PushRequest, forge: Forge, log: Callable[[str], None] = lambda _: None) -> PushResult:
    semantic = RevisionReader(request.semantic_repo, "semantic-layer repo")
    head = semantic.commit("HEAD").hexsha
    check_folder(semantic, head, request.semantic_path, "--semantic-path")
    config = load_config(semantic, head, request)
    selection = select(semantic, head, request, config)
    semantic_label = request.origin[0] if request.origin else str(semantic.path)
    result = PushResult(semantic_commit=head, skipped=list(selection.skipped))
    candidates = [r for r in selection.requests if r.field.kind == "dimension"]
    if not selection.requests:
        result.message = "nothing to push: no semantic-layer field changed" if not request.fields else "nothing to push"
        return result
    remote, env, forge_repo = repo_remote(forge, request.dbt_forge_repo, request.dbt_repo, "dbt repo")
    with Workspace(remote, env) as ws:
        base = request.base or config.base_branch or ws.default_branch()
        branch = branch_name(config.branch_prefix, candidates or selection.requests)
        existed = ws.checkout(branch, base)
        dbt_reader = RevisionReader(ws.root, "dbt repo")
        check_folder(dbt_reader, f"origin/{base}", request.dbt_path, "--dbt-path")
        base_store = project_store(dbt_reader.store(f"origin/{base}"), request.dbt_path)
        in_repo = InRepo(request.dbt_path, base_store)
        if request.dry_run:
            plan = in_repo.plan(PushPlanner(base_store, dialect=config.dialect, dbt_dialect=config.dbt_dialect,
                                            semantic=selection.semantic).plan(candidates))
            metrics = _metrics_in_repo(in_repo, push_metrics.dry_run(base_store, selection.semantic,
                                                                    selection.requests, config))
            result.pushed, result.skipped = plan.pushed, result.skipped + plan.skipped + metrics.plan.skipped
            result.metrics = metrics.pushed
            result.message = "dry run: nothing written"
            return result
        column_plan, check = _plan_and_check(ws, request.dbt_path, candidates, config, base_store,
                                             request, log, selection.semantic, branch)
        metrics = _metrics_in_repo(in_repo, push_metrics.plan_and_check(
            ws, request.dbt_path, selection.requests, config, selection.semantic, column_plan.files,
            profiles_dir=request.profiles_dir, parity=request.parity, warehouse=request.warehouse, log=log))
        plan = in_repo.plan(column_plan)
        plan.files.update(metrics.files)
        result.pushed, result.skipped = plan.pushed, result.skipped + plan.skipped + metrics.plan.skipped
        result.metrics, result.check = metrics.pushed, check
        changed = [p for p in plan.pushed if p.action != "unchanged"] + \
            [m for m in metrics.pushed if m.action != "unchanged"]
        if not (plan.pushed or metrics.pushed) or (not existed and not changed):
            result.message = ("nothing pushed: " + "; ".join(s.reason for s in result.skipped)
                              if not (plan.pushed or metrics.pushed) else
                              "dbt already has these columns and metrics; no branch needed")
            return result
        # The PR tells what it changes against its base, whatever earlier runs already pushed.
        pushed_ids = {p.id for p in plan.pushed}
        described = in_repo.plan(PushPlanner(base_store, dialect=config.dialect, dbt_dialect=config.dbt_dialect,
                                             semantic=selection.semantic).plan(
            [r for r in candidates if r.field.id in pushed_ids])).pushed
        described_metrics = _described_metrics(in_repo, base_store, selection, config, metrics)
        if not changed and all(p.action == "unchanged" for p in [*described, *described_metrics]):
            # A rerun after the PR merged: the branch holds nothing the base lacks, so no PR (not an
            # empty duplicate of the merged one).
            result.message = f"the fields are already in the base branch `{base}`: no PR opened"
            return result
        ws.write(plan.files)
        message = _push_message(plan.pushed, metrics.pushed, semantic_label, head)
        result.commit = ws.commit(message, sorted(plan.files)) if plan.files else None
        if result.commit is not None:
            ws.push(branch)
            log(f"pushed {branch} ({result.commit[:12]}) to {forge_repo}")
        result.branch = branch
        if check is None and config.dbt_check:     # a rerun: the branch's edits were checked when pushed
            earlier = forge.find_pr_by_head(forge_repo, branch)
            check_note = pr_body.read_hidden_json(earlier.body if earlier else None, "check")
        else:
            check_note = pr_body.check_facts(check) if check is not None else None
        body = pr_body.render(branch=branch, pushed=described, skipped=result.skipped,
                              semantic_repo=semantic_label,
                              semantic_commit=head, dbt_checked=config.dbt_check,
                              origin=request.origin, check=check_note)
        body += pr_body.metrics_section(described_metrics, metrics.plan.notes, metrics.parity_error,
                                        checked=config.dbt_check)
        result.pr, result.pr_created = forge.open_or_update_pr(forge_repo, head=branch, base=base,
                                                               title=pr_body.title(described, described_metrics),
                                                               body=body)
        result.metric_status = _set_metric_status(forge, forge_repo, ws, branch, result.commit, metrics)
        result.message = (f"{'opened' if result.pr_created else 'updated'} PR #{result.pr.number}"
                          if result.commit or result.pr_created else f"PR #{result.pr.number} is already up to date")
    return result


class InRepo:
    """A plan made inside the dbt project (its paths relative to `dbt_project.yml`) as the repository
    sees it: files to write and commit, and the paths PRs and results name, under the dbt folder."""

    def __init__(self, dbt_path: str, project: Any):
        self.root = dbt_path
        self.project = project            # the dbt project's files (a FileStore), to tell its paths apart

    def path(self, path: str) -> str:
        return repo_paths.join(self.root, path)

    def plan(self, plan: PushPlan) -> PushPlan:
        if not self.root:
            return plan
        return PushPlan(files={self.path(p): t for p, t in plan.files.items()},
                        pushed=[replace(p, files=tuple(self.path(f) for f in p.files)) for p in plan.pushed],
                        skipped=[self._skipped(s) for s in plan.skipped])

    def _skipped(self, skipped: Skipped) -> Skipped:
        """A dbt file a skip names (a model or YAML file that cannot be edited) under the dbt folder;
        the semantic files (views, relationships) are repository paths already."""
        reason = self._reason(skipped.reason)
        if skipped.file is None or self.project.read_text(skipped.file) is None:
            return replace(skipped, reason=reason)
        return replace(skipped, file=self.path(skipped.file), reason=reason)

    def _reason(self, reason: str) -> str:
        """The dbt file a reason starts with (`models/x.sql:12: …`, `cannot edit models/x.yml: …`)."""
        lead = "cannot edit " if reason.startswith("cannot edit ") else ""
        path = reason[len(lead):].split(":", 1)[0]
        if path and self.project.read_text(path) is not None:
            return lead + self.path(path) + reason[len(lead) + len(path):]
        return reason


def _plan_and_check(ws: Workspace, dbt_path: str, requests: list[FieldRequest], config: Config, base_store: Any,
                    request: PushRequest, log: Callable[[str], None],
                    semantic: Callable[[], Any] | None = None,
                    branch: str = "") -> tuple[PushPlan, DbtCheck | None]:
    """Plan, then let dbt judge; fields on models dbt rejects, and fields whose column dbt compiles to
    something else than the field computes (bot.translate.compiled), are dropped and the rest re-planned.
    The plan's paths are the dbt project's (`dbt_path` is its folder in the checkout). Returns the
    plan and dbt's last verdict (None when nothing needed checking)."""
    excluded: dict[str, Skipped] = {}
    project_dir = ws.root / dbt_path if dbt_path else ws.root
    project = DbtProject(DirStore(project_dir))
    with contextlib.ExitStack() as stack:
        where: list[tuple[EmptyBuild | None, str]] = []   # set up once, only when something needs checking
        while True:  # each failed round excludes at least one field, so this ends
            live = [r for r in requests if r.field.id not in excluded]
            planner = PushPlanner(DirStore(project_dir), dialect=config.dialect, dbt_dialect=config.dbt_dialect,
                                  base_store=base_store, semantic=semantic)
            plan = planner.plan(live)
            plan.skipped.extend(excluded.values())
            if not plan.files or not config.dbt_check:
                return plan, None
            if not where:
                where.append(stack.enter_context(_check_warehouse(request, config, project_dir, project.profile,
                                                                  branch, log)))
            empty, because = where[0]
            written = [repo_paths.join(dbt_path, p) for p in plan.files]
            ws.write({repo_paths.join(dbt_path, p): t for p, t in plan.files.items()})
            try:
                check = check_project(project_dir, plan.models, profile=project.profile,
                                      profiles_dir=request.profiles_dir, log=log, build=empty,
                                      target_path=project_dir / project.target_path)
            finally:
                ws.discard(written)
            if empty is None:
                check.unbuilt_because = because
            if not check.ok and empty is not None and check.failing_models:
                check = _not_the_edits(check, project_dir, project.profile, empty, log)
            if check.ok:
                # dbt accepted the SQL; now what it means, read from dbt's compiled SQL (macros rendered)
                changed = compiled.problems(plan, project.compiled_code(plan.models), config.dbt_dialect)
                if not changed:
                    return plan, check
                excluded.update((s.id, s) for s in changed)
                continue
            blamed = check.failing_models or set(plan.models)
            reason = "dbt rejected the edit: " + " / ".join(check.errors[:6])
            for p in _culprits(plan.pushed, blamed, check.errors, config.dbt_dialect):
                excluded[p.id] = Skipped(p.id, p.file, p.line, reason, "dbt-error")


def _culprits(pushed: list[PushedField], blamed: set[str], errors: list[str], dialect: str) -> list[PushedField]:
    """The fields of the models dbt rejected that its error names: a column the warehouse says is not
    there (`Referenced column "no_such_column" not found`) is one field's fault, not its neighbours'
    on the same model. When the error names none of their columns, every field of the model goes."""
    fields = [p for p in pushed if p.model in blamed and p.action != "unchanged"]
    said = " ".join(errors).lower()
    named = [p for p in fields if any(f'"{c}"' in said or f"'{c}'" in said for c in _columns_read(p.dbt_sql, dialect))]
    return named or fields


def _columns_read(sql: str | None, dialect: str) -> set[str]:
    if not sql:
        return set()
    try:
        tree = sqlglot.parse_one(sql, read=dialect)
    except sqlglot.errors.ParseError:
        return set()
    return {column.name.lower() for column in tree.find_all(exp.Column) if column.name}


def _not_the_edits(check: DbtCheck, project_dir: Path, profile: str, empty: EmptyBuild,
                   log: Callable[[str], None]) -> DbtCheck:
    """A model that fails the empty build without the edit too, in the warehouse (a source the
    check's warehouse lacks, SQL only the team's warehouse runs), is not the edit's fault: it is
    reported as not bound. A model that does not even compile stays a failure, as `dbt compile` said."""
    before = check_project(project_dir, sorted(check.failing_models), profile=profile, log=log, build=empty)
    if before.ok:
        return check
    also = {m for m in (before.failing_models | set(before.unbound)) & check.failing_models
            if not any(e.startswith(f"{m}: Compilation Error") for e in before.errors)}
    if not before.failing_models and not before.unbound:      # the branch does not parse without the edit
        also = set()
    if not also:
        return check
    reason = _first([e for e in before.errors if any(e.startswith(f"{m}: ") for m in also)])
    unbound = {**check.unbound, **{m: f"fails without this edit too: {reason}" for m in sorted(also)}}
    failing = check.failing_models - also
    errors = [e for e in check.errors if not any(e.startswith(f"{m}: ") for m in also)]
    return replace(check, ok=not failing, failing_models=failing, errors=errors if failing else [], unbound=unbound)


def _first(errors: list[str]) -> str:
    return next((warehouse_words(e) for e in errors if e.strip()), "") or "it does not build there"


@contextlib.contextmanager
def _check_warehouse(request: PushRequest, config: Config, project_dir: Path, profile: str, branch: str,
                     log: Callable[[str], None]) -> Iterator[tuple[EmptyBuild | None, str]]:
    """Where the push check builds the touched models with zero rows — or None, with the reason that
    only a static check can run (the PR says it).

    The configured warehouse (`request.warehouse`): a scratch schema of its own per branch, deferring
    unchanged parents to prod's relations (prod's manifest: the given state, else `dbt parse` of the
    base as prod; bot.impact.prod) — prod is only read — and dropped afterwards. Without one, a scratch
    DuckDB of layersync's own when the project is DuckDB SQL and no profiles dir of the team's is
    given. Otherwise there is nothing to bind columns against."""
    if request.warehouse is None:
        if request.profiles_dir is not None:
            yield None, "the given profiles dir is the team's, and no warehouse for the check is configured"
        elif config.dbt_dialect != "duckdb":
            yield None, f"the project's SQL is {config.dbt_dialect} and no warehouse for the check is configured"
        else:
            yield EmptyBuild(), ""
        return
    from bot.impact.build import Target, dev_schema_name, drop_schema, reading_schema
    from bot.impact.prod import ProdEnv, prepare_prod

    try:
        target = Target.parse(request.warehouse)
    except (ValueError, NotImplementedError) as error:
        raise LayersyncError(f"the warehouse for the push check: {error}") from None
    state: Path | None = None
    schemas = {request.prod_schema}
    try:
        prod = prepare_prod(project_dir, target, ProdEnv(schema=request.prod_schema, state=request.prod_state),
                            log=log)
        state, schemas = prod.manifest, schemas | set(prod.schemas)
    except RepoError as error:        # no prod to defer to: the parents are built too, with zero rows
        log(f"the push check builds the parents too: {error}")
    except Exception as error:  # noqa: BLE001 - a warehouse that is down leaves the static check, said in the PR
        log(f"the push check's warehouse cannot be read ({type(error).__name__}: {error}); dbt compile only")
        yield None, f"the configured warehouse could not be read ({type(error).__name__})"
        return
    schema = dev_schema_name(f"check_{_short_hash(branch or request.prod_schema)}", "layersync_{number}",
                             protected=schemas)
    with tempfile.TemporaryDirectory(prefix="layersync-check-profiles-") as tmp:
        target.write_profile(Path(tmp), profile, schema)
        try:
            with reading_schema(target, request.prod_schema):
                # the PR names the schema, not the warehouse's address (a DSN's host is nobody's business there)
                yield EmptyBuild(Path(tmp), state, f"scratch schema `{schema}` of the configured {target.kind} warehouse"), ""
        finally:
            try:
                drop_schema(target, schema, schemas, prod_schema=request.prod_schema)
            except Exception as error:  # noqa: BLE001 - a scratch schema left behind is not the push's failure
                log(f"could not drop the check's scratch schema {schema}: {error}")


def _metrics_in_repo(in_repo: "InRepo", outcome: push_metrics.MetricsOutcome) -> push_metrics.MetricsOutcome:
    """The metrics' files and skips as the repository names them (under the dbt folder)."""
    if not in_repo.root:
        return outcome
    outcome.files = {in_repo.path(p): t for p, t in outcome.files.items()}
    outcome.plan.pushed = [replace(m, files=tuple(in_repo.path(f) for f in m.files)) for m in outcome.plan.pushed]
    outcome.plan.skipped = [in_repo._skipped(s) for s in outcome.plan.skipped]
    return outcome


def _described_metrics(in_repo: "InRepo", base_store: Any, selection: Selection, config: Config,
                       outcome: push_metrics.MetricsOutcome) -> list[PushedMetric]:
    """The pushed metrics as the PR shows them: their change against the base branch, with the parity
    this run measured."""
    if not outcome.pushed:
        return []
    pushed_ids = {m.id for m in outcome.pushed}
    against_base = _metrics_in_repo(in_repo, push_metrics.dry_run(
        base_store, selection.semantic, [r for r in selection.requests if r.field.id in pushed_ids], config))
    measured = {m.id: m for m in outcome.pushed}
    return [replace(m, parity=measured[m.id].parity, files=measured[m.id].files or m.files)
            for m in against_base.pushed if m.id in measured]


def _set_metric_status(forge: Forge, repo: str, ws: Workspace, branch: str, commit: str | None,
                       outcome: push_metrics.MetricsOutcome) -> tuple[str, str] | None:
    """A failing commit status on any parity ✗ (or values that could not be compared), green otherwise."""
    state = push_metrics.status(outcome)
    sha = commit or ws.remote_branch_sha(branch)
    if state is not None and sha:
        forge.set_status(repo, sha, state[0], state[1], context="layersync/metrics")
    return state


def _push_message(columns: list[PushedField], metrics: list[PushedMetric], semantic_repo: str, head: str) -> str:
    """The commit message: the columns' as before, and a line per metric; a push of metrics only says so."""
    changed = [m for m in metrics if m.action != "unchanged"]
    lines = "".join(f"- {m.id} -> metric {m.metric} in semantic model {m.semantic_model} ({m.action})\n"
                    for m in changed)
    if any(p.action != "unchanged" for p in columns) or not changed:
        return _commit_message(columns, semantic_repo, head) + lines
    subject = (f"layersync: push {changed[0].id} to dbt's semantic layer" if len(changed) == 1
               else f"layersync: push {len(changed)} measures to dbt's semantic layer")
    return f"{subject}\n\nFrom semantic-layer commit {head} of {semantic_repo}.\n\n{lines}"


def _commit_message(pushed: list[PushedField], semantic_repo: str, head: str) -> str:
    changed = [p for p in pushed if p.action != "unchanged"]
    subject = (f"layersync: push {changed[0].id} to dbt" if len(changed) == 1
               else f"layersync: push {len(changed)} semantic-layer fields to dbt")
    body = "\n".join(f"- {p.id} -> {p.model}.{p.column} ({p.action})" for p in changed)
    return f"{subject}\n\nFrom semantic-layer commit {head} of {semantic_repo}.\n\n{body}\n"

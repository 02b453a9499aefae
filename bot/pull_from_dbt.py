"""The pull-from-dbt job: what changed in dbt → one PR on the semantic-layer repo that follows it.

The CLI and the webhook handler (a push to the dbt repo's default branch) both call `run`. The bot's
branch `layersync/pull/<short-sha>` is rebuilt from the semantic repo's latest default branch on every
run, so a moved default branch never leaves it stale; but once someone else has committed on it, the
bot stops touching it and says so on the PR instead (their work is never overwritten).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field as dc_field
from pathlib import Path
from typing import Any, Callable

from bot import repo_paths
from bot.dbt.catalog import Catalog, from_warehouse, merged, read_catalog_json
from bot.dbt.changes import ProjectChanges, changes_between, describe
from bot.errors import RepoError
from bot.forge.base import Forge, PullRequest, truncate_body
from bot.gitops import RevisionReader, Workspace, repo_remote
from bot.impact.build import Target
from bot.impact.prod import ProdEnv, relations
from bot.pr_body import hidden_json
from bot.push_to_dbt import check_folder, read_config
from bot.config import Config
from bot.selection import format_at
from bot.translate.pull import Note, PullPlan, plan_pull
from bot.semantic.dependents import DependencyIndex
from bot.semantic.model import View
from bot.untrusted import mention, quote

BRANCH_PREFIX = "layersync/pull/"
SECTIONS = (("added", "New dimensions"), ("renamed", "Renames followed"), ("description", "Descriptions from dbt"),
            ("description_kept", "Descriptions kept (written in the semantic layer)"),
            ("primary_key", "Primary keys"), ("allowed_values", "Allowed values"),
            ("broken", "⚠️ Fields this dbt change breaks (marked, not deleted)"),
            ("altered", "Fields whose numbers may change"), ("skipped", "Skipped"),
            ("problem", "Could not be read or applied"))


@dataclass
class PullJob:
    dbt_repo: Path                        # a local clone or bare repo holding `head` (the bot fetches first)
    semantic_repo: Path | None = None     # local: a bare remote or a clone whose origin is pushed to
    semantic_forge_repo: str | None = None  # hosted: the forge's name for it ("owner/name")
    head: str = "HEAD"
    since: str | None = None              # default: head's first parent
    dbt_label: str | None = None          # how the PR names the dbt repo ("owner/name", or its path)
    authors: list[str] = dc_field(default_factory=list)   # logins of the dbt commit's authors (review requests)
    dry_run: bool = False
    # where new columns' types are read (read-only): prod's relations in this warehouse, and dbt's
    # catalog.json next to prod's manifest (ProdEnv.state); without them, dbt's data_type or the SQL
    warehouse: str | None = None          # DuckDB path or postgresql:// DSN
    prod: ProdEnv | None = None
    semantic_path: str = ""               # the semantic model's folder in its repo ("": the root)
    dbt_path: str = ""                    # the dbt project's folder in its repo: changes elsewhere are not dbt's


@dataclass
class PullResult:
    dbt_commit: str
    since: str | None
    branch: str | None = None
    commit: str | None = None
    pr: PullRequest | None = None
    pr_created: bool = False
    notes: list[Note] = dc_field(default_factory=list)
    changes: list[str] = dc_field(default_factory=list)
    files: list[str] = dc_field(default_factory=list)
    reviewers: list[str] = dc_field(default_factory=list)
    message: str = ""
    blocked_by: list[str] = dc_field(default_factory=list)   # others' commits on the bot's branch
    elsewhere: list[Note] = dc_field(default_factory=list)   # problems in dbt files neither the change nor a view touches

    @property
    def exit_code(self) -> int:
        """1 when a human must act: fields break, or something this change or a view touches could not be
        read or applied (problems elsewhere in the dbt project are counted, not failed on)."""
        return 1 if any(n.kind in ("broken", "problem") for n in self.notes) or self.blocked_by else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "dbt_commit": self.dbt_commit, "since": self.since, "branch": self.branch, "commit": self.commit,
            "pr": None if self.pr is None else {"number": self.pr.number, "url": self.pr.url, "repo": self.pr.repo,
                                                "created": self.pr_created, "title": self.pr.title},
            "changes": self.changes, "files": self.files, "reviewers": self.reviewers,
            "edits": [asdict(n) for n in self.notes if n.kind not in ("broken", "problem", "altered")],
            "broken": [asdict(n) for n in self.notes if n.kind == "broken"],
            "altered": [asdict(n) for n in self.notes if n.kind == "altered"],
            "problems": [asdict(n) for n in self.notes if n.kind == "problem"],
            "problems_elsewhere": [asdict(n) for n in self.elsewhere],
            "blocked_by": self.blocked_by, "message": self.message,
        }


def branch_name(dbt_commit: str) -> str:
    return f"{BRANCH_PREFIX}{dbt_commit[:7]}"


def marker(branch: str) -> str:
    return f"<!-- layersync:pull branch={branch} -->"


def view_texts(reader: RevisionReader, rev: str, fmt_name: str, root: str = "") -> dict[str, str]:
    """The semantic model's files at `rev` by repository path (the pull edits them there): its views,
    and the topics and relationships that follow a renamed field (Omni's layout)."""
    fmt = format_at(reader, rev, root, config=Config(format=fmt_name))
    inside = repo_paths.under(root)
    paths = reader.list_files(rev, lambda p: inside(p) and (fmt.is_view_file(p) or fmt.is_model_file(p)))
    return {p: t for p, t in reader.read_many(rev, paths).items() if t is not None}


def _commit_line(reader: RevisionReader, sha: str) -> str:
    commit = reader.commit(sha)
    subject = (commit.message or "").strip().splitlines()[0] if commit.message else ""
    return f"`{sha[:12]}` {quote(subject)} — {quote(commit.author.name or '')}"    # anyone's text: inert


DBT_PROBLEM = "dbt: "                     # how the planner words a dbt file it could not read


def touched_paths(changes: ProjectChanges, changed: list[str], views: list[View], dialect: str,
                  dbt_path: str = "") -> set[str]:
    """The repository paths a problem must be in to matter to this pull: the files the dbt change
    touched, the SQL and YAML of every model a view reads, and the project's own settings."""
    relations = {**(changes.before.models_by_relation() if changes.before else {}),
                 **(changes.after.models_by_relation() if changes.after else {})}
    index = DependencyIndex(views, dialect, relations)
    read = {index.model_of(view) for view in views}
    paths = set(changed) | {repo_paths.join(dbt_path, "dbt_project.yml")}
    for snapshot in (changes.before, changes.after):
        for name in read & set(snapshot.models if snapshot else {}):
            model = snapshot.models[name]
            paths |= {repo_paths.join(dbt_path, p) for p in (model.path, model.yaml_file) if p}
    return paths


def triage(notes: list[Note], touched: set[str]) -> tuple[list[Note], list[Note]]:
    """(the notes to list, the problems to fold): a dbt file that cannot be read matters only when the
    change or a view touches it; on a large project the rest are dozens of rows nobody asked about.
    Problems of the semantic files and of applying a change always matter."""
    kept: list[Note] = []
    folded: list[Note] = []
    for note in notes:
        elsewhere = note.kind == "problem" and note.text.startswith(DBT_PROBLEM) and note.dbt_file not in touched
        (folded if elsewhere else kept).append(note)
    return kept, folded


def _views_of(texts: dict[str, str], fmt: Any) -> list[View]:
    views = []
    for path, text in sorted(texts.items()):
        if fmt.is_view_file(path):
            try:
                views.append(fmt.read(text, path))
            except Exception:  # noqa: BLE001 - an unreadable view is the planner's own problem row
                continue
    return views


def _elsewhere_lines(folded: list[Note], shown: int = 20) -> list[str]:
    """One counted line, the files folded under it (a few: the JSON has them all)."""
    if not folded:
        return []
    files = sorted({n.dbt_file or "" for n in folded})
    more = [f"- … and {len(files) - shown} more (the JSON output lists them)"] if len(files) > shown else []
    word = "problem" if len(folded) == 1 else "problems"
    return [f"<details><summary>{len(folded)} other {word} in dbt files this change and the semantic layer's "
            "views do not touch (not this PR's business)</summary>", "",
            *[f"- `{f}`" for f in files[:shown]], *more, "", "</details>", ""]


def render_body(*, branch: str, dbt_label: str, dbt_commit: str, commit_line: str, plan: PullPlan,
                changes: ProjectChanges, authors: list[str], elsewhere: list[Note] | None = None) -> str:
    facts = {"dbt_repo": dbt_label, "dbt_commit": dbt_commit,
             "fields": sorted({n.field for n in plan.notes if n.field and n.kind != "altered"})}
    lines = [marker(branch), hidden_json("facts", facts), "",
             f"dbt changed in `{dbt_label}` at {commit_line}; this PR keeps the semantic layer in step.", ""]
    for kind, title in SECTIONS:
        notes = [n for n in plan.notes if n.kind == kind]
        if not notes:
            continue
        lines += [f"### {title}", "", "| semantic field | where | what | from dbt |", "|---|---|---|---|"]
        for n in notes:
            where = f"{n.file}:{n.line}" if n.file and n.line else (n.file or "")
            origin = f"`{n.dbt_file}`" + (f":{n.dbt_line}" if n.dbt_line else "") if n.dbt_file else ""
            origin += f" @ `{dbt_commit[:7]}`" if origin else ""
            lines.append(f"| {'`' + n.field + '`' if n.field else ''} | {where} | "
                         f"{n.text.replace('|', '/').replace(chr(10), ' ')} | {origin} |")
        lines.append("")
        if kind == "broken":
            ask = " ".join(mention(a) for a in authors) or "the author of the dbt commit"
            named = " Topics and joins listed above name a broken field: they break with it (not edited)." \
                if any(n.file and not n.file.endswith((".view.yaml", ".view.yml")) for n in notes) else ""
            lines += [f"{ask}: this dbt change breaks the fields above. Please restore the column(s), or "
                      "update or remove these fields here; layersync marked them with a `# layersync: broken` "
                      f"comment and deleted nothing.{named}", ""]
    lines += _elsewhere_lines(elsewhere or [])
    if changes.changes:
        lines += ["<details><summary>Every dbt change considered</summary>", "",
                  *[f"- {describe(c)}" for c in changes.changes], "", "</details>"]
    return truncate_body("\n".join(lines))


def run(job: PullJob, forge: Forge, log: Callable[[str], None] = lambda _: None) -> PullResult:
    dbt = RevisionReader(job.dbt_repo, "dbt repo")
    head = dbt.commit(job.head).hexsha
    since = job.since
    if since is None:
        parents = dbt.commit(head).parents
        since = parents[0].hexsha if parents else None
    elif not dbt.has_revision(since):
        raise RepoError(f"unknown revision `{since}` in dbt repo `{job.dbt_repo}`")
    check_folder(dbt, head, job.dbt_path, "--dbt-path")
    result = PullResult(dbt_commit=head, since=since)
    if since is None:
        result.message = "nothing to compare: the dbt commit has no parent (give --since)"
        return result
    remote, env, forge_repo = repo_remote(forge, job.semantic_forge_repo, job.semantic_repo, "semantic-layer repo")
    branch = branch_name(head)
    with Workspace(remote, env) as ws:
        base = ws.default_branch()
        ws.start_branch(branch, f"origin/{base}")                 # always rebuilt on the latest default branch
        semantic = RevisionReader(ws.root, "semantic-layer repo")
        check_folder(semantic, "HEAD", job.semantic_path, "--semantic-path")
        config = read_config(semantic, "HEAD", job.semantic_path).validated()
        # the models are read in the warehouse's dialect (`dbt_dialect`), the views in `dialect`
        changes = changes_between(job.dbt_repo, since, head, dialect=config.dbt_dialect, root=job.dbt_path)
        result.changes = [describe(c) for c in changes.changes]
        catalog = column_types(job, changes, log)
        texts = view_texts(semantic, "HEAD", config.format, job.semantic_path)
        fmt = format_at(semantic, "HEAD", job.semantic_path, config=config)
        plan = plan_pull(changes, texts, dbt_commit=head, dialect=config.dialect, catalog=catalog, fmt=fmt)
        touched = touched_paths(changes, dbt.changed_paths(since, head), _views_of(texts, fmt), config.dialect,
                                job.dbt_path)
        kept, folded = triage(plan.notes, touched)
        listed = {n.text for n in plan.notes if n.kind == "problem"}
        # the planner leaves out models the change did not touch and no view reads: counted here too
        result.elsewhere = folded + [Note("problem", f"{DBT_PROBLEM}{p}", dbt_file=p.file, dbt_line=p.line)
                                     for p in changes.problems if f"{DBT_PROBLEM}{p}" not in listed]
        plan = PullPlan(files=plan.files, notes=kept)
        result.notes, result.files = plan.notes, sorted(plan.files)
        if job.dry_run or not plan.files:
            result.message = ("dry run: nothing written" if job.dry_run else
                              "the semantic layer is already in step with this dbt change" if not plan.problems
                              else "nothing to change; some dbt files could not be read")
            return result
        body = render_body(branch=branch, dbt_label=job.dbt_label or str(job.dbt_repo), dbt_commit=head,
                           commit_line=_commit_line(dbt, head), plan=plan, changes=changes, authors=job.authors,
                           elsewhere=result.elsewhere)
        existing = forge.find_pr_by_head(forge_repo, branch)
        others = ws.foreign_commits(branch, base)
        if others:
            result.blocked_by, result.branch, result.pr = others, branch, existing
            result.message = f"`{branch}` has commits by others; not rebuilt"
            if existing is not None:
                forge.upsert_comment(forge_repo, existing.number, _blocked_comment(branch, others, plan),
                                     f"<!-- layersync:pull-blocked branch={branch} -->")
            return result
        ws.write(plan.files)
        previous = ws.remote_branch_sha(branch)
        result.commit = ws.commit(f"layersync: follow dbt commit {head[:12]}\n\n" + "\n".join(
            f"- {n.text}" for n in plan.notes if n.kind not in ("altered", "problem")), sorted(plan.files))
        result.branch = branch
        if previous is None or not _same_change(ws, previous, base):
            ws.push(branch, replacing=previous)
            log(f"pushed {branch} to {forge_repo}")
        result.pr, result.pr_created = forge.open_or_update_pr(
            forge_repo, head=branch, base=base, title=f"layersync: follow dbt commit {head[:7]}", body=body)
        if plan.broken and job.authors and result.pr_created:
            result.reviewers = forge.request_review(forge_repo, result.pr.number, job.authors)
        result.message = f"{'opened' if result.pr_created else 'updated'} PR #{result.pr.number}"
    return result


def column_types(job: PullJob, changes: ProjectChanges, log: Callable[[str], None]) -> Catalog:
    """Warehouse types of the new columns' models: the live prod relations first, then prod's
    catalog.json. Unreadable sources only cost the types (dbt's data_type and the SQL remain)."""
    models = sorted({c.model.lower() for c in changes.column_changes if c.kind == "added"})
    if not models or (job.warehouse is None and (job.prod is None or job.prod.state is None)):
        return {}
    prod = job.prod or ProdEnv()
    found: list[Catalog] = []
    placed: dict[str, tuple[str, str]] = {}
    if prod.state is not None:
        state = Path(prod.state)
        folder = state if state.is_dir() else state.parent
        found.append(read_catalog_json(folder))
        try:
            placed = relations(json.loads((folder / "manifest.json").read_text(encoding="utf-8")))
        except (OSError, ValueError):
            placed = {}
    if job.warehouse is not None:
        after = changes.after.models if changes.after else {}
        wanted = {m: placed.get(m) or (prod.schema, after[m].relation_name if m in after else m) for m in models}
        try:
            with Target.parse(job.warehouse).open(read_only=True) as wh:
                found.insert(0, from_warehouse(wh, wanted))
        except Exception as error:  # noqa: BLE001 - a warehouse that is down must not stop the pull
            log(f"column types: prod could not be read ({type(error).__name__}: {error}); using dbt's and the SQL's")
    return merged(*found)


def _same_change(ws: Workspace, previous: str, base: str) -> bool:
    """The remote branch already holds exactly this edit on this base: nothing to push."""
    remote = ws.repo.commit(previous)
    return bool(remote.parents) and remote.parents[0].hexsha == ws.repo.commit(f"origin/{base}").hexsha \
        and remote.tree.hexsha == ws.repo.head.commit.tree.hexsha


def _blocked_comment(branch: str, others: list[str], plan: PullPlan) -> str:
    return "\n".join([
        f"<!-- layersync:pull-blocked branch={branch} -->",
        f"`{branch}` has commits that layersync did not make, so it will not rebuild the branch over them:", "",
        *[f"- {line}" for line in others], "",
        "What layersync would change now:", "",
        *[f"- {n.text}" + (f" ({n.file}:{n.line})" if n.file and n.line else "") for n in plan.notes
          if n.kind not in ("altered",)]])

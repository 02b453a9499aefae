"""After a push-to-dbt PR merges, the semantic layer reads the new dbt columns instead of computing
them: one PR on the semantic repo replaces each pushed field's SQL by the column, written as the
view's format writes one (Omni: its bare name; the `views` layout: `${TABLE}.<column>`), keeping its
name, label and description — the logic now lives in one place, dbt."""
from __future__ import annotations

from dataclasses import dataclass, field as dc_field

from bot.errors import LayersyncError
from bot.forge.base import Forge, PullRequest
from bot.gitops import RevisionReader, Workspace
from bot.selection import ViewSource, format_at
from bot.semantic.editor import set_field_sql


@dataclass
class Adoption:
    pr: PullRequest | None = None
    adopted: list[str] = dc_field(default_factory=list)
    problems: list[str] = dc_field(default_factory=list)


def adopt(forge: Forge, semantic_repo: str, dbt_pr: PullRequest, fields: list[list[str]],
          base: str | None = None, semantic_path: str = "") -> Adoption:
    """`fields` are [field id, view file, model, column] as the dbt PR recorded them; `base` is the
    branch the fields live on (an open semantic PR's branch), else the default branch; `semantic_path`
    the model's folder in its repo."""
    outcome = Adoption()
    branch = f"layersync/adopt/dbt-pr-{dbt_pr.number}"
    with Workspace(forge.remote_url(semantic_repo), forge.git_env(semantic_repo)) as ws:
        base = base or forge.default_branch(semantic_repo)
        ws.checkout(branch, base)
        reader = RevisionReader(ws.root, "semantic-layer repo")
        fmt = format_at(reader, "HEAD", semantic_path)
        source = ViewSource(reader, "HEAD", fmt, semantic_path)
        edits: dict[str, str] = {}
        for field_id, _file, _model, column in fields:
            view_name, _, field_name = field_id.partition(".")
            try:
                view = source.find(view_name)
                if view is None or field_name not in view.fields:
                    raise LayersyncError(f"`{field_id}` no longer exists")
                text = edits.get(view.file) or (ws.root / view.file).read_text(encoding="utf-8")
                target = fmt.column_sql(column)
                if view.fields[field_name].sql == target:
                    outcome.adopted.append(field_id)
                    continue
                edits[view.file] = set_field_sql(text, view.file, field_name, target, fmt=fmt)
                outcome.adopted.append(field_id)
            except LayersyncError as exc:
                outcome.problems.append(f"`{field_id}`: {exc}")
        if edits:
            ws.write(edits)
            if ws.commit(f"layersync: read {len(edits)} view(s) from dbt columns merged in {dbt_pr.url}",
                         sorted(edits)):
                ws.push(branch)
        if ws.remote_branch_sha(branch) is None and not edits:
            return outcome
        body = (f"<!-- layersync:adopt dbt-pr={dbt_pr.number} -->\n"
                f"{dbt_pr.url} merged: these fields' logic now lives in dbt, so the semantic layer reads the "
                f"columns instead of computing them again (names, labels and descriptions unchanged).\n\n"
                + "\n".join(f"- `{field_id}` → `{fmt.column_sql(column)}` (dbt model `{model}`)"
                            for field_id, _f, model, column in fields if field_id in outcome.adopted))
        outcome.pr, _ = forge.open_or_update_pr(semantic_repo, head=branch, base=base,
                                                title=f"layersync: read fields pushed in dbt PR #{dbt_pr.number}",
                                                body=body)
    return outcome

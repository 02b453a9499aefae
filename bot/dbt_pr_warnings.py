"""Before a dbt PR merges: which semantic fields would it break or alter? Static analysis only (the
dbt diff and the views' `${}` references), so it is on the PR in seconds, ahead of the impact report
it then joins as the second section of one comment."""
from __future__ import annotations

from pathlib import Path

from bot.dbt.changes import changes_between
from bot.gitops import RevisionReader
from bot.pull_from_dbt import view_texts
from bot.push_to_dbt import check_folder, read_config
from bot.selection import format_at
from bot.translate.pull import Note, plan_pull

SECTION_LIMIT = 16_000
TITLE = "### Semantic layer: fields this PR breaks or alters"


def semantic_warnings(dbt_repo: Path, base: str, head: str, semantic_repo: Path, semantic_rev: str = "HEAD", *,
                      semantic_path: str = "", dbt_path: str = "") -> list[Note]:
    """The fields a merge of `base..head` would break (removed columns and models), rename (renamed
    columns: layersync follows them after the merge) or alter (types; expressions that measures aggregate).
    `semantic_path`, `dbt_path`: the model's and the project's folders in their repos (monorepos)."""
    semantic = RevisionReader(semantic_repo, "semantic-layer repo")
    check_folder(semantic, semantic_rev, semantic_path, "semantic_path")
    config = read_config(semantic, semantic_rev, semantic_path)
    texts = view_texts(semantic, semantic_rev, config.format, semantic_path)
    dbt = RevisionReader(dbt_repo, "dbt repo")
    head_sha = dbt.commit(head).hexsha
    check_folder(dbt, head_sha, dbt_path, "dbt_path")
    changes = changes_between(dbt_repo, base, head, dialect=config.dbt_dialect, root=dbt_path)
    plan = plan_pull(changes, texts, dbt_commit=head_sha,
                     dialect=config.dialect, fmt=format_at(semantic, semantic_rev, semantic_path, config=config))
    return [n for n in plan.notes if n.kind in ("broken", "renamed", "altered", "problem")]


def warnings_markdown(notes: list[Note], semantic_label: str, semantic_ref: str) -> str:
    where = f"`{semantic_label}` @ `{semantic_ref}`"
    if not [n for n in notes if n.kind != "problem"]:
        return f"{TITLE}\n\nNo semantic-layer field in {where} reads what this PR changes."
    lines = [TITLE, "", f"Read from the views in {where}:", "",
             "| | semantic field | where | why |", "|---|---|---|---|"]
    icons = {"broken": "❌ breaks", "renamed": "↪️ renamed", "altered": "⚠️ may change", "problem": "❔"}
    for n in sorted(notes, key=lambda n: ("broken", "renamed", "altered", "problem").index(n.kind)):
        at = f"{n.file}:{n.line}" if n.file and n.line else (n.file or "")
        lines.append(f"| {icons[n.kind]} | {'`' + n.field + '`' if n.field else ''} | {at} | "
                     f"{n.text.replace('|', '/').replace(chr(10), ' ')} |")
    if any(n.kind == "renamed" for n in notes):
        lines += ["", "_Renamed columns: after this merges, layersync opens a semantic-layer PR that follows the "
                      "new names and keeps the old ones as aliases._"]
    text = "\n".join(lines)
    if len(text) > SECTION_LIMIT:
        text = text[:SECTION_LIMIT].rsplit("\n", 1)[0] + "\n\n_List cut to fit the comment; run `layersync " \
               "pull-from-dbt --dry-run --json` for all of it._"
    return text

"""A preview's result for people: the PR reply (Markdown) and the CLI's lines."""
from __future__ import annotations

import time
from typing import Iterable

from bot.preview.build import PreviewResult
from bot.preview.gc import Listed
from bot.preview.names import format_age, format_bytes
from bot.untrusted import quote


def _names(items: Iterable[str], limit: int = 25) -> str:
    items = list(items)
    shown = ", ".join(f"`{i}`" for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "") if items else "nothing"


def _cell(text: object) -> str:
    return str(text).replace("|", "/").replace("\n", " ")


def _connect(result: PreviewResult) -> str:
    schemas = result.override.get("schemas") or {}
    swaps = ", ".join(f"`{prod}` → `{env}`" for prod, env in schemas.items())
    return f"the prod connection (`{result.warehouse}`) with the schema swapped: {swaps or f'`{result.schema}`'}."


def _timing(result: PreviewResult) -> str:
    dbt = result.build.get("seconds")
    return f"{result.seconds:.1f} s" + (f", of which `dbt build` {dbt:.1f} s" if dbt else "")


def to_markdown(result: PreviewResult, marker: str = "") -> str:
    lines = [marker] if marker else []
    branch = quote(result.branch)                     # a branch name is anyone's text
    lines.append(f"### layersync preview of {branch}")
    lines.append("")
    short = (result.dbt_commit or "")[:12]
    if result.status == "semantic-only":
        lines.append(f"ℹ️ {result.message[0].upper() + result.message[1:]} (`{result.prod.get('schema')}`).")
    elif result.status == "cancelled":
        lines.append(f"⏹️ The build of `{short}` was {result.message}. The newer build reports here when it is done.")
    elif result.status == "failed":
        lines.append(f"❌ `dbt build` of `{short}` into **`{result.schema}`** failed ({result.mode} build, "
                     f"{_timing(result)}). Fix the branch and push: the preview rebuilds.")
        errors = result.build.get("errors") or [result.message]
        lines += ["", "```", *[str(e)[:500] for e in errors[:10]], "```"]
    else:
        how = {"full": "full build: the branch's changes against prod",
               "incremental": "incremental: only what changed since the last preview build",
               "unchanged": "already up to date: nothing to build"}.get(result.mode, result.mode)
        lines.append(f"✅ {branch} @ `{short}` is in schema **`{result.schema}`** ({how}; {_timing(result)}).")
        if result.build.get("failed_tests"):
            lines.append(f"⚠️ Every model built, but data tests fail: {_names(result.build['failed_tests'])}.")
    if result.status in ("ready", "failed") and result.schema:
        built = result.build.get("built") or []
        lines += ["", f"**Built now:** {_names(built)}.",
                  f"**In the preview:** {_names(result.built)} built from the branch; every other model is a "
                  f"view onto prod."]
        if result.build.get("failed"):
            lines.append(f"**Failed:** {_names(result.build['failed'])}; skipped: {_names(result.build.get('skipped') or [])}.")
        if result.clone_errors:
            lines.append(f"**Not linked to prod:** {'; '.join(_cell(e) for e in result.clone_errors[:5])}.")
        lines += ["", f"**Query it:** {_connect(result)}"]
    lines += _semantic_markdown(result)
    if result.env_file:
        lines += ["", f"<details><summary>Environment file <code>{result.env_file['path']}</code> "
                      f"(each view's schema in this environment)</summary>", "", "```yaml",
                  result.env_file["text"].rstrip(), "```", "", "</details>"]
    if result.schema:
        lines += ["", f"_Rebuilt on every push to {branch} (only what changed); dropped when the PR "
                      f"closes or the branch is deleted._"]
    return "\n".join(lines)


def _semantic_markdown(result: PreviewResult) -> list[str]:
    sem = result.semantic
    if not sem:
        return []
    where = "this environment" if result.schema else "prod"
    pairing = "paired: the branch of the same name" if sem.get("paired") else \
        f"no semantic-layer branch {quote(result.branch)}, so the default branch"
    lines = ["", f"**Semantic layer** (`{sem.get('branch')}` @ `{(sem.get('commit') or '')[:12]}`, {pairing}): "
                 f"{sem.get('views', 0)} view(s) compiled against {where}"]
    broken = sem.get("broken") or []
    if broken:
        lines[-1] += f"; ⚠️ {len(broken)} field(s) do not compile:"
        lines += ["", "| field | where | why |", "|---|---|---|"]
        lines += [f"| `{b['field']}` | {b['file']}:{b['line']} | {_cell(b['reason'])[:300]} |" for b in broken[:50]]
    else:
        lines[-1] += ", every field compiles."
    for problem in sem.get("problems") or []:
        lines.append(f"- not read: {_cell(problem)}")
    if sem.get("unmatched"):
        lines.append(f"- not on a dbt model (left as they are): {_names(sem['unmatched'])}")
    return lines


def to_text(result: PreviewResult) -> str:
    """The CLI's lines: what, where, how long, how to query it, what does not compile, the env file."""
    out = [f"preview  {result.branch} -> {result.schema or '(nothing built)'} in {result.warehouse}",
           f"status   {result.status}" + (f": {result.message}" if result.message else "")]
    if result.dbt_commit:
        out.append(f"commit   {result.dbt_commit[:12]} ({result.mode} build, {result.seconds:.1f} s)")
    if result.schema:
        out.append(f"built    {', '.join(result.build.get('built') or []) or 'nothing new'}")
        out.append(f"holds    {', '.join(result.built) or 'nothing'} built; every other model a view onto prod")
        for error in (result.build.get("errors") or [])[:10]:
            out.append(f"error    {error}")
        swaps = ", ".join(f"{p} -> {e}" for p, e in (result.override.get("schemas") or {}).items())
        out.append(f"connect  schema {swaps or result.schema} (same connection as prod)")
    sem = result.semantic
    if sem:
        out.append(f"semantic {sem.get('branch')} @ {(sem.get('commit') or '')[:12]}"
                   f"{' (paired)' if sem.get('paired') else ''}: {sem.get('views', 0)} view(s), "
                   f"{len(sem.get('broken') or [])} broken field(s)")
        for b in sem.get("broken") or []:
            out.append(f"broken   {b['field']} {b['file']}:{b['line']}: {b['reason']}")
        for problem in sem.get("problems") or []:
            out.append(f"unread   {problem}")
    if result.env_file:
        out += [f"env file {result.env_file['path']}", result.env_file["text"].rstrip()]
    return "\n".join(out)


def list_text(listed: list[Listed], now: float | None = None) -> str:
    now = time.time() if now is None else now
    if not listed:
        return "no previews"
    header = ("BRANCH", "SCHEMA", "COMMIT", "STATUS", "AGE", "ROWS", "SIZE", "WAREHOUSE")
    rows = [(item.preview.branch if len(item.preview.branch) <= 40 else item.preview.branch[:39] + "…",
             item.preview.schema, (item.preview.built_commit or item.preview.commit or "")[:12],
             item.preview.status, format_age(now - item.preview.touched_at),
             "-" if item.rows is None else str(item.rows), format_bytes(item.bytes),
             item.preview.warehouse + (f"  ({item.note})" if item.note else "")) for item in listed]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(r, widths)), r[-1]]).rstrip() for r in [header, *rows])

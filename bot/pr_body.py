"""The push-to-dbt PR description: what a reviewer needs to trust the bot's change."""
from __future__ import annotations

import json
import re
from typing import Any, Sequence

from bot.dbt.runner import DbtCheck
from bot.translate.metrics import PushedMetric
from bot.translate.push import PushedField, Skipped
from bot.untrusted import quote

ACTION_WORDS = {"added": "new column", "replaced": "expression replaced", "documented": "documented",
                "unchanged": "already up to date"}


def hidden_json(kind: str, value: object) -> str:
    """Machine-readable facts in an HTML comment; `-` escaped so no `--` can end the comment early."""
    return f"<!-- layersync:{kind} " + json.dumps(value, sort_keys=True).replace("-", "\\u002d") + " -->"


def read_hidden_json(body: str | None, kind: str) -> object | None:
    prefix = f"<!-- layersync:{kind} "
    start = (body or "").find(prefix)
    if start < 0:
        return None
    end = body.find(" -->", start)
    try:
        return json.loads(body[start + len(prefix):end])
    except ValueError:
        return None


def marker(branch: str) -> str:
    """Hidden in every body so a rerun finds and updates its own PR instead of adding another."""
    return f"<!-- layersync:push branch={branch} -->"


def _code(sql: str | None) -> str:
    if not sql:
        return "_(none)_"
    return "\n```sql\n" + sql.strip() + "\n```\n"


def _inline(text: str | None) -> str:
    return "`" + (text or "").replace("`", "'").replace("\n", " ") + "`"


def check_facts(check: DbtCheck) -> dict[str, Any]:
    """What dbt's check established, kept in the PR (hidden) so a rerun that checks nothing new
    still tells the reviewer how the branch's edits were checked."""
    return {"how": check.how, "where": check.where, "bound": check.bound, "models": list(check.models),
            "unbound": dict(sorted(check.unbound.items())), "unbuilt_because": check.unbuilt_because}


def check_lines(check: dict[str, Any] | None, dbt_checked: bool = True) -> list[str]:
    """How far the pushed edit was checked, in plain words: a static check is never passed off as a build."""
    if not dbt_checked:
        return ["_Not checked with dbt (`dbt_check: false` in layersync.yml)._"]
    if not isinstance(check, dict) or not check.get("how"):
        return ["_Not checked again: the branch already held these edits (see its earlier runs)._"]
    how = str(check["how"])
    unbound = check.get("unbound") if isinstance(check.get("unbound"), dict) else {}
    models = [str(m) for m in check.get("models") or []]
    reasons = [f"- `{m}`: {str(why).replace(chr(10), ' ')}" for m, why in unbound.items()]
    if check.get("bound") and (not models or set(models) - set(unbound)):
        lines = [f"_Checked before it was pushed: `dbt {how}` of the touched models (zero rows) in "
                 f"{check.get('where') or 'a warehouse'}: dbt bound every column they read._"]
        if unbound:
            lines[0] = lines[0].replace("the touched models", "the touched models "
                                        + ", ".join(f"`{m}`" for m in models if m not in unbound))
            lines += ["", "**Only a static check ran for** (the check could not build them):", "", *reasons]
        return lines
    if check.get("bound"):              # built, but none of the touched models could be judged there
        return [f"_Only a static check ran: `dbt compile` of the touched models. `dbt {how}` in "
                f"{check.get('where') or 'a warehouse'} could not build them, so the columns they read were "
                "not checked:_", "", *reasons]
    because = str(check.get("unbuilt_because") or "no warehouse was available to build them in")
    return [f"_Only a static check ran: `dbt {how}` of the touched models, after dbt parsed the whole project. "
            f"The columns they read were not checked ({because}): a column the model does not have shows "
            "only when the branch is built._"]


def title(pushed: Sequence[PushedField], metrics: Sequence[PushedMetric] = ()) -> str:
    every = [p.id for p in pushed] + [m.id for m in metrics]
    if len(every) == 1:
        return f"layersync: push {every[0]} to dbt"
    return f"layersync: push {len(every)} semantic-layer fields to dbt"


def render(*, branch: str, pushed: Sequence[PushedField], skipped: Sequence[Skipped],
           semantic_repo: str, semantic_commit: str, dbt_checked: bool = True,
           origin: tuple[str, int] | None = None, check: dict[str, Any] | None = None) -> str:
    """`origin` is the semantic-layer issue or PR that asked for the push: when this PR merges,
    the bot reports there and hands the fields back (see `bot.handlers.dbt_pr_closed`). `check`: what
    dbt's check established (`check_facts`), said plainly at the end and kept hidden for reruns."""
    facts = {"semantic_repo": semantic_repo, "semantic_commit": semantic_commit,
             "origin": list(origin) if origin else None,
             "fields": [[p.id, p.file, p.model, p.column] for p in pushed if p.dbt_sql]}
    lines = [marker(branch), hidden_json("facts", facts), *([hidden_json("check", check)] if check else []), "",
             f"This PR moves logic from the semantic layer into dbt, from semantic-layer commit "
             f"`{semantic_commit[:12]}` of `{semantic_repo}`.", ""]
    if pushed:
        lines += ["| field | dbt model | column | change |", "|---|---|---|---|"]
        for p in pushed:
            lines.append(f"| `{p.id}` ({p.file}:{p.line}) | `{p.model}` | `{p.column}` | {ACTION_WORDS[p.action]} |")
        lines.append("")
        for p in pushed:
            lines += [f"### `{p.id}` → `{p.model}.{p.column}`", "",
                      f"**Semantic layer (before)** — {p.file}:{p.line}:", _code(p.semantic_sql)]
            if p.previous_dbt_sql:
                lines += ["**dbt column until now:**", _code(p.previous_dbt_sql)]
            if p.dbt_sql:
                lines += ["**dbt (after):**", _code(p.dbt_sql)]
            if p.files:
                lines.append("Files: " + ", ".join(_inline(f) for f in p.files))
            lines.append("")
    if skipped:
        lines += ["### Not pushed", "", "| field | where | why |", "|---|---|---|"]
        for s in skipped:
            where = f"{s.file}:{s.line}" if s.file and s.line else (s.file or "")
            lines.append(f"| `{s.id}` | {where} | {s.reason.replace('|', '/').replace(chr(10), ' ')} |")
        lines.append("")
    lines += check_lines(check, dbt_checked)
    return "\n".join(lines)


METRIC_ACTIONS = {"added": "new metric", "replaced": "definition replaced", "unchanged": "already up to date"}


def _number(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def metrics_section(metrics: Sequence[PushedMetric], notes: Sequence[str] = (), parity_error: str | None = None,
                    *, checked: bool = True) -> str:
    """Measures pushed as MetricFlow metrics: what each became, and its numbers beside the BI tool's."""
    if not metrics and not notes:
        return ""
    lines = ["", "### Metrics (dbt semantic layer)", "",
             "| field | semantic model | metric | type | time dimension | change |", "|---|---|---|---|---|---|"]
    for m in metrics:
        lines.append(f"| `{m.id}` ({m.file}:{m.line}) | `{m.semantic_model}` | `{m.metric}` | {m.kind} | "
                     f"`{m.agg_time_dimension}` | {METRIC_ACTIONS.get(m.action, m.action)} |")
    lines.append("")
    if parity_error:
        lines += [f"**Parity not checked:** {parity_error.replace(chr(10), ' ')}", ""]
    for m in metrics:
        lines += [f"#### `{m.id}` → metric `{m.metric}`", "", _fenced(_yaml(m.definition)), ""]
        if m.parity is not None:
            lines += ["| group | dbt (`mf query`) | BI definition | |", "|---|---|---|---|"]
            for row in m.parity:
                group = "total" if row["group"] is None else ", ".join(
                    f"{quote(str(k), table=True)} = {quote(str(v), table=True)}" for k, v in row["group"].items())
                lines.append(f"| {group} | {_number(row['dbt'])} | {_number(row['bi'])} | "
                             f"{'✓' if row['ok'] else '✗'} |")
            if not m.parity:
                lines.append("| — | — | — | ✗ (not compared) |")
            lines.append("")
        if m.files:
            lines += ["Files: " + ", ".join(_inline(f) for f in m.files), ""]
    for note in notes:
        lines.append(f"- {note.replace(chr(10), ' ')}")
    if checked:
        lines += ["", "_Metrics checked before they were pushed: `dbt parse` (the semantic manifest) and "
                      "`mf validate-configs`; values: `mf query` on a build of this branch beside the BI "
                      "definition run in the warehouse._"]
    return "\n".join(lines)


def _fenced(text: str) -> str:
    """A YAML block no backtick run in it can close, and no `<!--` in it can turn into a marker."""
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}yaml\n" + text.replace("<!--", "<\u200d!--") + fence


def _yaml(definition: dict) -> str:
    from bot.yamledit import Document
    doc = Document("")
    doc.set(("metric",), definition)
    text = doc.result("showing a metric")
    return "\n".join(line[2:] for line in text.splitlines()[1:]) + "\n"

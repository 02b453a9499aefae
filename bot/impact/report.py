"""The impact report: one JSON document of facts (the contract CI gates read), and the Markdown PR
comment rendered from it — summary first, details folded, always under GitHub's size limit."""
from __future__ import annotations

from typing import Any

from bot.forge.base import BODY_LIMIT
from bot.readable import squeeze_blank_lines

SCHEMA_VERSION = 1


def marker(pr: Any) -> str:
    return f"<!-- layersync:impact pr={pr} -->"


def fmt_number(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{int(value):,}"


def fmt_delta(value: Any) -> str:
    if value is None:
        return "–"
    if value == 0:
        return "0"
    sign = "+" if value > 0 else "−"
    return sign + fmt_number(abs(value))


def fmt_pct(value: float | None) -> str:
    if value is None:
        return "–"
    if value == 0:
        return "0%"
    digits = 0 if abs(value) >= 10 else 1 if abs(value) >= 1 else 2
    sign = "+" if value > 0 else "−"
    return f"{sign}{abs(value):.{digits}f}%"


def summary(doc: dict) -> dict[str, int]:
    models = doc.get("models", [])
    semantic = doc.get("semantic", {})
    return {
        "models_built": _built_count(doc.get("build", {})),
        "schema_changes": sum(len(m.get("columns_added", [])) + len(m.get("columns_removed", []))
                              + len(m.get("types_changed", [])) for m in models),
        "rows_changed": sum((m.get("value_diff") or {}).get("added", 0) + (m.get("value_diff") or {}).get("removed", 0)
                            + (m.get("value_diff") or {}).get("changed", 0) for m in models),
        "measures_moved": len({(v["view"], v["measure"]) for v in semantic.get("measures", [])
                               if v.get("dimension") is None and (v.get("delta") or 0) != 0}),
        "fields_broken": len(semantic.get("broken", [])),
    }


def _built_count(build: dict) -> int:
    """Models dbt built: what it tried, less what failed or was skipped (a failed model is not built)."""
    if "built" in build:
        return len(build["built"])
    not_built = set(build.get("failed", [])) | set(build.get("skipped", []))
    return len([m for m in build.get("selected", []) if m not in not_built])


def gate(doc: dict, max_measure_move_pct: float | None = None) -> tuple[str, str]:
    """The commit status: failure when dbt failed, fields broke, or a measure moved past the threshold."""
    build = doc.get("build", {})
    if not build.get("ok", True):
        return "failure", f"dbt build failed: {', '.join(build.get('failed', [])) or 'see the report'}"
    broken = doc.get("semantic", {}).get("broken", [])
    if broken:
        return "failure", f"{len(broken)} semantic field(s) broken by this PR"
    if max_measure_move_pct is not None:
        for value in doc.get("semantic", {}).get("measures", []):
            if value.get("dimension") is None and value.get("pct") is not None \
                    and abs(value["pct"]) > max_measure_move_pct:
                return "failure", (f"{value['view']}.{value['measure']} moved {fmt_pct(value['pct'])} "
                                   f"(limit {max_measure_move_pct}%)")
    s = summary(doc)
    return "success", (f"{s['models_built']} model(s) built, {fmt_number(s['rows_changed'])} row(s) changed, "
                       f"{s['measures_moved']} measure(s) moved")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
            *["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]]


def _details(title: str, lines: list[str]) -> list[str]:
    return ["<details><summary>" + title + "</summary>", "", *lines, "", "</details>", ""]


def _schema_section(doc: dict) -> list[str]:
    rows = []
    for m in doc.get("models", []):
        rows += [[f"`{m['model']}`", f"added `{c[0]}` {c[1]}", ""] for c in m.get("columns_added", [])]
        rows += [[f"`{m['model']}`", f"removed `{c[0]}` {c[1]}", ""] for c in m.get("columns_removed", [])]
        rows += [[f"`{m['model']}`", f"`{c[0]}` type", f"{c[1]} → {c[2]}"] for c in m.get("types_changed", [])]
    return _details(f"Schema changes ({len(rows)})", _table(["model", "change", "detail"], rows)) if rows else []


def _rows_section(doc: dict) -> list[str]:
    rows = [[f"`{m['model']}`", fmt_number(m["rows"].get("prod")), fmt_number(m["rows"].get("dev")),
             fmt_delta(m["rows"].get("delta")), fmt_pct(m["rows"].get("pct"))]
            for m in doc.get("models", []) if m.get("rows")]
    return _details("Row counts", _table(["model", "prod", "dev", "Δ", "%"], rows)) if rows else []


def _value_section(doc: dict, with_samples: bool) -> list[str]:
    lines: list[str] = []
    for m in doc.get("models", []):
        diff = m.get("value_diff")
        if not diff:
            continue
        lines += [f"**`{m['model']}`** by key ({', '.join(diff.get('key', []))}):", ""]
        for problem in diff.get("key_problems", []):
            lines.append(f"- ⚠️ {problem}")
        if not diff.get("key_problems"):
            lines += _table(["added", "removed", "changed", "unchanged"],
                            [[fmt_number(diff.get(k)) for k in ("added", "removed", "changed", "unchanged")]])
            changed_cols = [[f"`{c}`", fmt_number(n)] for c, n in (diff.get("changed_by_column") or {}).items() if n]
            if changed_cols:
                lines += ["", *_table(["column", "rows changed"], changed_cols)]
            if with_samples:
                for kind, samples in (diff.get("samples") or {}).items():
                    if samples:
                        lines += ["", f"_{kind}, e.g._ `" + "`, `".join(str(s) for s in samples[:3]) + "`"]
        lines.append("")
    return _details("Value diffs", lines) if lines else []


def _one_sided(value: dict) -> bool:
    """A group only one side has: it vanished on dev (prod 49, dev none) or appeared there."""
    return (value.get("prod") is None) != (value.get("dev") is None)


def _group(value: dict) -> str:
    if value.get("dimension") is None:
        return "total"
    label = f"{value['dimension']} = {value['group']}"
    if _one_sided(value):
        label += " (gone on dev)" if value.get("dev") is None else " (new on dev)"
    return label


def _measures_section(doc: dict, max_rows: int) -> list[str]:
    # Totals always; a group only where it moved, vanished or appeared — unchanged groups are noise.
    values = [v for v in doc.get("semantic", {}).get("measures", [])
              if v.get("dimension") is None or (v.get("delta") or 0) != 0 or _one_sided(v)]
    if not values:
        return []
    rows = [[f"`{v['view']}.{v['measure']}`", _group(v),
             fmt_number(v.get("prod")), fmt_number(v.get("dev")), fmt_delta(v.get("delta")), fmt_pct(v.get("pct"))]
            for v in values[:max_rows]]
    more = [f"_… {len(values) - max_rows} more rows in the JSON report_"] if len(values) > max_rows else []
    moved = summary(doc)["measures_moved"]
    return _details(f"Semantic-layer measures ({moved} moved)",
                    [*_table(["measure", "group", "prod", "dev", "Δ", "%"], rows), *more])


def to_markdown(doc: dict, *, limit: int = BODY_LIMIT) -> str:
    """Detail is trimmed before the summary: samples, then measure rows, then whole sections."""
    for with_samples, max_rows, keep_sections in ((True, 200, 5), (False, 200, 5), (False, 40, 5),
                                                  (False, 10, 3), (False, 0, 0)):
        text = _render(doc, with_samples, max_rows, keep_sections)
        if len(text) <= limit:
            return text
    return text[: limit - 80] + "\n\n_Report cut to fit GitHub's limit; the JSON report has everything._"


def _render(doc: dict, with_samples: bool, max_rows: int, keep_sections: int) -> str:
    s = summary(doc)
    state, description = doc.get("status", {}).get("state"), doc.get("status", {}).get("description", "")
    lines = [marker(doc.get("pr") or doc.get("head", "")[:12]), "### layersync impact report", "",
             f"`{doc.get('base', '')[:12]}` → `{doc.get('head', '')[:12]}`, dev schema `{doc.get('dev_schema')}` "
             f"vs prod `{doc.get('prod_schema')}`" + (f" — **{state}**: {description}" if state else ""), "",
             *_table(["models built", "schema changes", "rows changed", "measures moved", "fields broken"],
                     [[fmt_number(s["models_built"]), fmt_number(s["schema_changes"]), fmt_number(s["rows_changed"]),
                       fmt_number(s["measures_moved"]), fmt_number(s["fields_broken"])]]), ""]
    build = doc.get("build", {})
    if not build.get("ok", True):
        lines += [f"❌ **These models failed to build:** {', '.join(f'`{m}`' for m in build.get('failed', []))}",
                  "", "```", *build.get("errors", [])[:20], "```", ""]
        unbuilt = [m for m in doc.get("models", []) if m.get("status") in ("failed", "skipped", "not built")]
        if unbuilt:
            lines += ["Not compared (dev has no relation for them):", ""]
            lines += [f"- `{m['model']}`: " + ("failed to build" if m["status"] == "failed" else
                                               "skipped: a model it reads failed" if m["status"] == "skipped"
                                               else "not built") for m in unbuilt] + [""]
    broken = doc.get("semantic", {}).get("broken", [])
    if broken:
        lines += ["**Broken by this PR** (semantic fields whose SQL no longer runs on dev):", ""]
        lines += [f"- `{b['field']}` ({b['file']}:{b['line']}): {b['reason']}" for b in broken] + [""]
    mermaid = doc.get("lineage", {}).get("mermaid")
    if mermaid:
        lines += ["```mermaid", mermaid.strip(), "```", ""]
    sections = [_schema_section(doc), _rows_section(doc), _value_section(doc, with_samples),
                _measures_section(doc, max_rows)]
    kept = [section for section in sections if section][:keep_sections]
    for section in kept:
        lines += section
    left_out = len([x for x in sections if x]) - len(kept)
    if left_out:
        lines.append(f"_{left_out} detail section(s) left out to stay under GitHub's size limit; "
                     f"the JSON report has everything._")
    return squeeze_blank_lines("\n".join(lines)).rstrip() + "\n"

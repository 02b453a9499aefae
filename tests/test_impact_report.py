"""The impact report's Markdown and gate, from the JSON document."""
from __future__ import annotations

from bot.impact.report import fmt_delta, fmt_number, fmt_pct, gate, summary, to_markdown


def doc(**extra) -> dict:
    base = {
        "version": 1, "pr": 12, "base": "a" * 40, "head": "b" * 40, "prod_schema": "prod",
        "dev_schema": "layersync_pr_12",
        "build": {"ok": True, "selected": ["orders", "customers"], "failed": [], "errors": []},
        "lineage": {"mermaid": "graph LR\n  orders --> customers"},
        "models": [{"model": "orders", "columns_added": [["is_big", "BOOLEAN"]], "columns_removed": [],
                    "types_changed": [], "rows": {"prod": 1234567, "dev": 1234560, "delta": -7, "pct": -0.000567},
                    "value_diff": {"key": ["order_id"], "added": 0, "removed": 7, "changed": 12, "unchanged": 1234548,
                                   "changed_by_column": {"amount": 12}, "key_problems": [],
                                   "samples": {"removed": [{"order_id": 3}]}}}],
        "semantic": {"views": ["orders"], "broken": [], "measures": [
            {"view": "orders", "measure": "revenue", "dimension": None, "group": None, "prod": 1000.0,
             "dev": 1100.5, "delta": 100.5, "pct": 10.05},
            {"view": "orders", "measure": "count", "dimension": None, "group": None, "prod": 99, "dev": 99,
             "delta": 0, "pct": 0.0}]},
    }
    base.update(extra)
    return base


def test_numbers_for_people() -> None:
    assert (fmt_number(1234567), fmt_number(1100.5), fmt_number(None)) == ("1,234,567", "1,100.50", "–")
    assert (fmt_delta(-7), fmt_delta(100.5), fmt_delta(0)) == ("−7", "+100.50", "0")
    assert (fmt_pct(10.05), fmt_pct(-0.000567), fmt_pct(2.345), fmt_pct(None)) == ("+10%", "−0.00%", "+2.3%", "–")


def test_summary_and_markdown_layout() -> None:
    d = doc()
    assert summary(d) == {"models_built": 2, "schema_changes": 1, "rows_changed": 19, "measures_moved": 1,
                          "fields_broken": 0}
    text = to_markdown(d)
    assert text.startswith("<!-- layersync:impact pr=12 -->\n### layersync impact report")
    assert "| 2 | 1 | 19 | 1 | 0 |" in text
    assert "```mermaid\ngraph LR\n  orders --> customers\n```" in text
    assert "<details><summary>Schema changes (1)</summary>" in text
    assert "| `orders` | 1,234,567 | 1,234,560 | −7 | −0.00% |" in text
    assert "| `orders.revenue` | total | 1,000 | 1,100.50 | +100.50 | +10% |" in text


def test_gate() -> None:
    assert gate(doc())[0] == "success"
    assert gate(doc(), max_measure_move_pct=1.0) == ("failure", "orders.revenue moved +10% (limit 1.0%)")
    broken = doc(semantic={"broken": [{"field": "orders.x", "file": "v.yaml", "line": 3, "reason": "no column"}]})
    assert gate(broken) == ("failure", "1 semantic field(s) broken by this PR")
    assert "- `orders.x` (v.yaml:3): no column" in to_markdown(broken)
    failed = doc(build={"ok": False, "selected": ["orders"], "failed": ["orders"], "errors": ["Parser Error"]})
    assert gate(failed)[0] == "failure" and "failed to build:** `orders`" in to_markdown(failed)


def test_always_under_the_limit_detail_trimmed_first() -> None:
    many = [{"view": "v", "measure": f"m{i}", "dimension": "d", "group": "g" * 50, "prod": i, "dev": i + 1,
             "delta": 1, "pct": 1.0} for i in range(3000)]
    d = doc(semantic={"views": ["v"], "broken": [], "measures": many})
    text = to_markdown(d, limit=20000)
    assert len(text) <= 20000
    assert "| 2 | 1 | 19 | 0 | 0 |" in text  # the summary survives
    assert "more rows in the JSON report" in text or "left out" in text


def test_a_model_that_failed_is_neither_counted_as_built_nor_compared() -> None:
    """The only selected model failed: no "models built 1", its error shown, no comparison rows."""
    failed = doc(build={"ok": False, "selected": ["orders"], "failed": ["orders"], "skipped": [],
                        "errors": ["model orders: Binder Error: Referenced column \"nope\" not found"]},
                 models=[{"model": "orders", "status": "failed", "error": "Binder Error", "columns_added": [],
                          "columns_removed": [], "types_changed": [], "rows": None, "value_diff": None}],
                 semantic={"views": [], "broken": [], "measures": []})
    assert summary(failed)["models_built"] == 0
    text = to_markdown(failed)
    assert "| 0 | 0 | 0 | 0 | 0 |" in text
    assert "Binder Error: Referenced column \"nope\" not found" in text
    assert "- `orders`: failed to build" in text
    assert "Schema changes" not in text and "Row counts" not in text


def test_groups_that_vanish_or_appear_on_dev_are_in_the_markdown() -> None:
    measures = [
        {"view": "orders", "measure": "count", "dimension": None, "group": None, "prod": 99, "dev": 50,
         "delta": -49, "pct": -49.5},
        {"view": "orders", "measure": "count", "dimension": "status", "group": "returned", "prod": 49, "dev": None,
         "delta": None, "pct": None},
        {"view": "orders", "measure": "count", "dimension": "status", "group": "lost", "prod": None, "dev": 1,
         "delta": None, "pct": None},
        {"view": "orders", "measure": "count", "dimension": "status", "group": "placed", "prod": 50, "dev": 50,
         "delta": 0, "pct": 0.0}]
    text = to_markdown(doc(semantic={"views": ["orders"], "broken": [], "measures": measures}))
    assert "| `orders.count` | status = returned (gone on dev) | 49 | – | – | – |" in text
    assert "| `orders.count` | status = lost (new on dev) | – | 1 | – | – |" in text
    assert "status = placed" not in text            # unchanged groups stay out


def test_the_posted_markdown_has_no_run_of_blank_lines() -> None:
    """GitHub shows two blank lines as a gap in the report: sections join with one."""
    failed = doc(build={"ok": False, "selected": ["orders"], "failed": ["orders"], "errors": ["boom"]})
    for d in (doc(), failed):
        assert "\n\n\n" not in to_markdown(d)

"""`layersync demo`: the README's main job, end to end with real dbt builds in DuckDB."""
from __future__ import annotations

import re

import pytest

from bot.demo.run import run_demo


@pytest.mark.slow
def test_demo_pushes_builds_and_verifies_values(tmp_path, capsys) -> None:
    assert run_demo(tmp_path) == 0
    out = capsys.readouterr().out
    # Each new column equals the analyst's SQL evaluated on prod, on every row.
    assert "ok       orders.is_large_order: 99/99 rows" in out
    assert "ok       orders.order_size: 99/99 rows" in out
    assert "ok       customers.customer_tier: 100/100 rows" in out
    assert "MISMATCH" not in out
    # The measure became a MetricFlow metric, its numbers equal to the BI definition's, in total and by group.
    assert "-> metric orders_large_order_revenue in semantic model orders (simple, added)" in out
    assert re.search(r"✓ total: dbt (\S+)  bi \1\n", out) and "✗" not in out
    assert "pushed   omni_dbt_marts__orders.is_large_order -> orders.is_large_order (added)" in out
    assert out.rstrip().splitlines()[-1].startswith("demo ok")
    assert ("the field is renamed to `omni_dbt_marts__customers.order_count` and keeps `number_of_orders` as an "
            "alias") in out                                   # Omni's view names, in Omni's layout
    # The impact report for the PR it opened: three new columns, no row moved, no field broken.
    assert "<!-- layersync:impact pr=1 -->" in out and "| 3 | 4 | 0 | 0 | 0 |" in out  # + the time spine MetricFlow needs

"""`layersync demo`: the README's main job, end to end with real dbt builds in DuckDB.

The demo runs once for the module, through the command line as a user runs it: what it prints on
stdout (the story), on stderr (progress), and the `$ layersync …` lines it tells the user to paste."""
from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import main


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[int, str, str, Path]:
    root = tmp_path_factory.mktemp("demo") / "workdir"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["demo", "--workdir", str(root)])
    return code, out.getvalue(), err.getvalue(), root


@pytest.mark.slow
def test_demo_pushes_builds_and_verifies_values(demo) -> None:
    code, out, _, _ = demo
    assert code == 0
    # Each new column equals the analyst's SQL evaluated on prod, on every row.
    assert "ok       orders.is_large_order: 99/99 rows" in out
    assert "ok       orders.order_size: 99/99 rows" in out
    assert "ok       customers.customer_tier: 100/100 rows" in out
    assert "MISMATCH" not in out
    # The measure became a MetricFlow metric, its numbers equal to the BI definition's, in total and by group.
    assert "-> metric orders_large_order_revenue in semantic model orders (simple, added)" in out
    assert "-> metric orders_large_order_share in semantic model orders (ratio, added)" in out
    assert re.search(r"✓ total: dbt (\S+)  bi \1\n", out) and "✗" not in out
    assert "pushed   omni_dbt_marts__orders.is_large_order -> orders.is_large_order (added)" in out
    assert out.rstrip().splitlines()[-1].startswith("demo ok")
    assert ("the field is renamed to `omni_dbt_marts__customers.order_count` and keeps `number_of_orders` as an "
            "alias") in out                                   # Omni's view names, in Omni's layout
    # The impact report for the PR it opened: three new columns, no row moved, no field broken.
    assert "<!-- layersync:impact pr=1 -->" in out and "| 3 | 4 | 0 | 0 | 0 |" in out  # + the time spine MetricFlow needs


@pytest.mark.slow
def test_demo_output_is_for_people(demo) -> None:
    _, out, _, root = demo
    bodies = out.split("----- PR body -----", 1)[1]
    assert "<!--" not in bodies.split("$ dbt build", 1)[0]          # the PR body without its hidden markers
    assert "\\u002d" not in out and "layersync:facts" not in out
    assert "\n\n\n" not in out
    state = root / "state.sqlite"
    assert out.rstrip().splitlines()[-1] == (f"demo ok: list its PRs with `layersync prs --state-db {state}`; "
                                              f"its repos, PR database and warehouse are in {root}")


@pytest.mark.slow
def test_demo_shows_progress_on_stderr(demo) -> None:
    _, _, err, _ = demo
    steps = [line.strip() for line in err.splitlines() if line.startswith("  … ")]
    assert "… dbt build -> schema prod" in steps and "… dbt build -> schema dev" in steps
    # the push's check: the touched models built with zero rows in the check's scratch schema
    assert any(s.startswith("… dbt build --empty") and s.endswith("-> schema layersync_check") for s in steps)
    assert any(s.startswith("… dbt build --select state:modified+") for s in steps)  # the impact report's dev build
    assert "[21/36] model orders ok" in err


@pytest.mark.slow
def test_the_commands_the_demo_prints_run_as_printed(demo) -> None:
    """Pasted into a shell exactly as printed, each `$ layersync …` line runs (exit 0, or 1 for a
    partial result) — never a usage error."""
    _, out, _, root = demo
    commands = [line[2:] for line in out.splitlines() if line.startswith("$ layersync ")]
    assert [shlex.split(c)[1] for c in commands] == ["push-to-dbt", "prs", "impact", "pull-from-dbt"]
    assert all("--state-db" in c for c in commands if shlex.split(c)[1] != "impact")
    assert "--pr 1" in next(c for c in commands if " impact " in c)
    last = out.rstrip().splitlines()[-1]
    commands.append(last.split("`")[1])                             # the one its last line suggests
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("LAYERSYNC_STATE_DB", None)
    for line in commands:
        done = subprocess.run(["bash", "-c", line], cwd=root, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode in (0, 1), f"{line}\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr and "error:" not in done.stderr, done.stderr
    listed = subprocess.run(["bash", "-c", commands[-1]], cwd=root, env=env, capture_output=True, text=True)
    assert "layersync/push/" in listed.stdout and "layersync/pull/" in listed.stdout

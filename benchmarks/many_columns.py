"""How planning many new columns in ONE model grows with their number.

One view of N derived dimensions over one dbt model (10 columns, YAML documenting it), all N
pushed at once: the planner writes N columns into the model's final SELECT and N entries into
its YAML. Times `PushPlanner.plan` alone (no git, no dbt), for N = 100, 200, 400 by default,
and prints each time, its ratio to the baseline measured before the model was parsed once per
plan, and the growth per doubling of N (near 2 = linear, near 4 = quadratic).

Baseline (commit 9253980, before `ModelEditor`: every field re-parsed the growing model ~4
times), measured on the shared 2-core machine of issue 11:
    100 columns   3.67 s
    200 columns  13.73 s   (x3.74 per doubling)
    400 columns  62.63 s   (x4.56 per doubling)

    python benchmarks/many_columns.py [--sizes 100,200,400] [--repeat 1]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.dbt.project import MemoryStore  # noqa: E402
from bot.semantic.reader import OmniYamlReader  # noqa: E402
from bot.translate.push import FieldRequest, PushPlanner  # noqa: E402

BASELINE = {100: 3.67, 200: 13.73, 400: 62.63}


def project() -> dict[str, str]:
    cols = ",\n".join(f"    src.c{k} as c{k}" for k in range(1, 10))
    return {
        "dbt_project.yml": "name: synth\nprofile: synth\nmodel-paths: [models]\n",
        "models/marts/wide.sql": ("{{ config(materialized='table') }}\n\nwith src as (\n    select * from "
                                  "{{ ref('base') }}\n)\n\nselect\n    src.id as id,\n" + cols + "\nfrom src\n"),
        "models/marts/_marts__models.yml": ("version: 2\n\nmodels:\n  - name: wide\n    description: one wide model\n"
                                            "    columns:\n      - name: id\n        data_tests:\n"
                                            "          - unique\n          - not_null\n"),
    }


def view_yaml(n: int) -> str:
    lines = ["table_name: wide", "dimensions:", "  id:", "    primary_key: true"]
    for k in range(n):
        lines += [f"  derived_{k}:", f"    sql: ${{TABLE}}.c{k % 9 + 1} * {k + 2} + ${{TABLE}}.c{(k + 1) % 9 + 1}",
                  f"    description: derived field {k}"]
    return "\n".join(lines) + "\n"


def measure(n: int, repeat: int) -> float:
    view = OmniYamlReader().read(view_yaml(n), "views/wide.view.yaml")
    requests = [FieldRequest(view, f) for name, f in view.fields.items() if name.startswith("derived_")]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        plan = PushPlanner(MemoryStore(project())).plan(requests)
        times.append(time.perf_counter() - t0)
        assert not plan.skipped and len(plan.pushed) == n, plan.skipped[:3]
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,200,400", help="new columns in the one model")
    parser.add_argument("--repeat", type=int, default=1, help="runs per size; the median is shown")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    print(f"{'columns':>7} {'plan s':>8} {'baseline s':>10} {'speed-up':>8} {'x per doubling':>14}")
    previous: tuple[int, float] | None = None
    for n in sizes:
        took = measure(n, args.repeat)
        base = BASELINE.get(n)
        growth = ""
        if previous is not None:
            growth = f"{(took / previous[1]) ** (1 / max(1e-9, __import__('math').log2(n / previous[0]))):.2f}"
        print(f"{n:>7} {took:>8.3f} {base if base else '-':>10} "
              f"{(f'{base / took:.1f}x' if base else '-'):>8} {growth:>14}")
        previous = (n, took)
    print("x per doubling: near 2 is linear, near 4 quadratic")
    return 0


if __name__ == "__main__":
    sys.exit(main())

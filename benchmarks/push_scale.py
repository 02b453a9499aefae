"""How push-to-dbt's detect + translate time grows with the size of the projects.

Builds, for each size, a synthetic dbt project of N models (10 columns each, YAML per folder of
50 models) and a semantic repo of one view per model with 10 fields each (20,000 fields at 2,000
models), commits a change to 50 derived fields in 50 views, and times:
  detect    = git diff of the two revisions + reading and diffing the changed view files
  translate = planning the dbt edits (model SQL splice + YAML round-trip) for those 50 fields
`dbt parse` is not included: it is dbt's cost, not ours, and is run once per push regardless.
Prints each time, the speed-up against the baseline below, the time ratio to the smallest size
next to the size ratio, and the growth per doubling of the project (near 2 = linear, or below).

Baseline (commit a938e38, before issue 11: one ruamel round trip per YAML file edited, each
model re-parsed ~4 times per field), measured on the shared 2-core machine of issue 11
(issue 11 reports 12.7 s at 2,000 models on a busier run of the same machine):
     500 models  detect 0.376 s  translate 1.209 s  total 1.585 s
    1000 models  detect 0.351 s  translate 1.941 s  total 2.293 s
    2000 models  detect 0.351 s  translate 3.715 s  total 4.065 s

    python benchmarks/push_scale.py [--sizes 500,1000,2000] [--changed 50] [--repeat 3]
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import git

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.dbt.project import DirStore  # noqa: E402
from bot.gitops import RevisionReader  # noqa: E402
from bot.selection import select_changed  # noqa: E402
from bot.translate.push import PushPlanner  # noqa: E402

BASELINE = {500: 1.585, 1000: 2.293, 2000: 4.065}   # total s, see the docstring
FIELDS_PER_VIEW = 10
MODELS_PER_FOLDER = 50


def model_sql(i: int) -> str:
    cols = ",\n".join(f"    src.c{k} as c{k}" for k in range(1, 8))
    return (f"{{{{ config(materialized='table') }}}}\n\nwith src as (\n    select * from {{{{ ref('base') }}}}\n)\n\n"
            f"select\n    src.id as id,\n{cols}\nfrom src\nwhere src.id % {i + 2} >= 0\n")


def folder_yaml(models: range) -> str:
    out = ["version: 2", "", "models:"]
    for i in models:
        out += [f"  - name: m{i:05d}", f"    description: synthetic model {i}", "    columns:",
                "      - name: id", "        data_tests:", "          - unique", "          - not_null"]
    return "\n".join(out) + "\n"


def view_yaml(i: int) -> str:
    lines = [f"table_name: m{i:05d}", f"label: Model {i}", "dimensions:", "  id:", "    primary_key: true"]
    lines += [f"  c{k}: {{}}" for k in range(1, 5)]
    for k in range(1, FIELDS_PER_VIEW - 4):
        lines += [f"  derived_{k}:", f"    sql: ${{TABLE}}.c{k} * {k} + ${{c{k + 1}}}",
                  f"    description: derived field {k}"]
    return "\n".join(lines) + "\n"


def build(root: Path, n_models: int, n_changed: int) -> tuple[Path, Path, str, str]:
    dbt = root / "dbt"
    (dbt / "models").mkdir(parents=True)
    (dbt / "dbt_project.yml").write_text("name: synth\nprofile: synth\nmodel-paths: [models]\n")
    for start in range(0, n_models, MODELS_PER_FOLDER):
        folder = dbt / "models" / f"g{start // MODELS_PER_FOLDER:03d}"
        folder.mkdir()
        members = range(start, min(start + MODELS_PER_FOLDER, n_models))
        (folder / f"_g{start // MODELS_PER_FOLDER:03d}__models.yml").write_text(folder_yaml(members))
        for i in members:
            (folder / f"m{i:05d}.sql").write_text(model_sql(i))
    repo = git.Repo.init(dbt)
    repo.git.add("-A")
    repo.git.commit("-qm", "synthetic dbt project")

    sem = root / "semantic"
    (sem / "views").mkdir(parents=True)
    for i in range(n_models):
        (sem / "views" / f"m{i:05d}.view.yaml").write_text(view_yaml(i))
    srepo = git.Repo.init(sem)
    srepo.git.add("-A")
    srepo.git.commit("-qm", "views")
    before = srepo.head.commit.hexsha
    step = max(1, n_models // n_changed)
    for i in range(0, n_models, step)[:n_changed]:
        edited = view_yaml(i).replace("sql: ${TABLE}.c1 * 1 +", "sql: ${TABLE}.c1 * 3 +", 1)
        assert edited != view_yaml(i)
        (sem / "views" / f"m{i:05d}.view.yaml").write_text(edited)
    srepo.git.add("-A")
    srepo.git.commit("-qm", "analyst edits")
    return dbt, sem, before, srepo.head.commit.hexsha


def measure(n_models: int, n_changed: int, repeat: int) -> tuple[float, float, int, int]:
    with tempfile.TemporaryDirectory(prefix="layersync-bench-") as tmp:
        dbt, sem, before, after = build(Path(tmp), n_models, n_changed)
        detect_times, translate_times = [], []
        for _ in range(repeat):
            t0 = time.perf_counter()
            selection = select_changed(RevisionReader(sem), after, before, "duckdb")
            t1 = time.perf_counter()
            plan = PushPlanner(DirStore(dbt)).plan(selection.requests)
            t2 = time.perf_counter()
            detect_times.append(t1 - t0)
            translate_times.append(t2 - t1)
        assert not plan.skipped, plan.skipped[:3]
        return statistics.median(detect_times), statistics.median(translate_times), len(selection.requests), \
            len(plan.pushed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="500,1000,2000", help="model counts, smallest is the baseline")
    parser.add_argument("--changed", type=int, default=50, help="derived fields changed (one per view)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size; the median is shown")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    print(f"{'models':>7} {'fields':>7} {'changed':>7} {'detect s':>9} {'translate s':>11} {'total s':>8} "
          f"{'baseline s':>10} {'speed-up':>8} {'size x':>7} {'time x':>7} {'x/doubling':>10}")
    smallest: float | None = None
    previous: tuple[int, float] | None = None
    for n in sizes:
        detect, translate, changed, pushed = measure(n, args.changed, args.repeat)
        total = detect + translate
        smallest = smallest or total
        base = BASELINE.get(n)
        versus = f"{base:>10.3f} {base / total:>7.1f}x" if base else f"{'-':>10} {'-':>8}"
        growth = f"{(total / previous[1]) ** (1 / math.log2(n / previous[0])):>10.2f}" if previous else f"{'':>10}"
        print(f"{n:>7} {n * FIELDS_PER_VIEW:>7} {changed:>7} {detect:>9.3f} {translate:>11.3f} {total:>8.3f} "
              f"{versus} {n / sizes[0]:>7.1f} {total / smallest:>7.2f} {growth}")
        previous = (n, total)
    print(f"'time x' is against {sizes[0]} models; linear growth keeps it at or below 'size x' "
          f"(x/doubling near 2 or below)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

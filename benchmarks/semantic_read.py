"""How reading one large view file grows with its number of fields.

Generates one realistic view of N fields (80% dimensions: `${TABLE}.col` arithmetic, chains of
`${field}` / `${view.field}` references, references to undeclared raw columns `${raw_k}`, case
expressions; 20% measures over dimensions; labels and descriptions), and a second revision in
which a quarter of the dimensions change. Times, median of --repeat runs:
  select   = select_changed between the two commits of a git repo (git + read + structural diff),
             what the semantic-PR dry run and push-to-dbt do first
  read     = OmniYamlReader.read of one revision
  diff     = diff_views of the two revisions
  resolve  = Resolver of every dimension (what planning a push inlines)
  deps     = DependencyIndex over the view (pull-from-dbt / impact)
and prints the ratio of each total to the one before it: sizes double, so ~2 is linear, ~4 quadratic.

Baseline "d5d0623" (before the fix; this script run on an export of commit d5d0623, 2 shared
cores, --repeat 1):
 fields  select s    read s    diff s resolve s    deps s  total s  x prev
    500      0.57      0.21      0.11      0.16      0.05     1.11
   1000      1.07      0.41      0.27      0.38      0.13     2.26    2.04
   2000      2.29      0.89      0.46      1.20      0.37     5.22    2.31
   4000      7.29      2.94      1.34      5.77      2.43    19.77    3.79
`resolve` and `deps` grew ~4x per doubling: each reference to an undeclared column scanned every
field of the view. After (same machine, --repeat 1): totals 1.16, 2.25, 4.49, 9.16 s (x 1.94, 2.00,
2.04), resolve 0.15/0.27/0.61/1.06 s, deps 0.10/0.10/0.17/0.37 s.

Not timed here: the dbt edits a push plans for the fields (bot/dbt/model_sql.py parses the whole,
growing model about four times per added column, so N new columns of one model cost N^2), and files
past the bounds in bot.semantic.reader (MAX_VIEW_FILE_BYTES, refused before parsing; MAX_YAML_NODES,
during it; MAX_FIELDS_PER_FILE, after it).

    python benchmarks/semantic_read.py [--sizes 500,1000,2000,4000] [--repeat 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import git

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.errors import LayersyncError  # noqa: E402
from bot.gitops import RevisionReader  # noqa: E402
from bot.selection import select_changed  # noqa: E402
from bot.semantic.dependents import DependencyIndex  # noqa: E402
from bot.semantic.diff import diff_views  # noqa: E402
from bot.semantic.reader import OmniYamlReader  # noqa: E402
from bot.semantic.refs import Resolver  # noqa: E402

PATH = "views/big.view.yaml"


def view_yaml(n: int, revision: int = 0) -> str:
    """A view of `n` fields; `revision` changes the `${TABLE}` arithmetic of every fourth dimension."""
    lines = ["# generated", "name: big", "table_name: orders", "label: Big orders", "dimensions:",
             "  id:", "    primary_key: true", "    description: the key"]
    n_dim = max(1, int(n * 0.8)) - 1
    for i in range(n_dim):
        lines.append(f"  d{i}:")
        if i % 4 == 0:
            lines.append(f"    sql: ${{TABLE}}.col_{i % 50} * {i + revision}")
        elif i % 4 == 1:
            lines.append(f"    sql: ${{d{i - 1}}} + ${{raw_{i % 37}}}")
        elif i % 4 == 2:
            lines.append(f"    sql: case when ${{d{i - 1}}} > 10 then 'big' else 'small' end")
        else:
            lines.append(f"    sql: coalesce(${{d{i - 3}}}, ${{big.d{i - 2}}}, 0)")
        lines.append(f"    label: Dimension {i}")
        lines.append(f"    description: A generated dimension number {i} for testing the reader")
        if i % 10 == 0:
            lines.append("    group_label: Group")
    lines.append("measures:")
    for i in range(n - n_dim - 1):
        lines += [f"  m{i}:", f"    sql: ${{d{(i * 7) % n_dim}}}", "    aggregate_type: sum", f"    description: Measure {i}"]
    return "\n".join(lines) + "\n"


def semantic_repo(root: Path, n: int) -> tuple[Path, str, str]:
    (root / "views").mkdir(parents=True)
    repo = git.Repo.init(root)
    shas = []
    for revision in (0, 1):
        (root / PATH).write_text(view_yaml(n, revision))
        repo.git.add("-A")
        repo.git.commit("-qm", f"revision {revision}", "--no-gpg-sign")
        shas.append(repo.head.commit.hexsha)
    return root, shas[0], shas[1]


def resolve_all(view) -> int:
    resolved = 0
    for field in view.fields.values():
        if field.kind == "dimension":
            try:
                Resolver(view, "duckdb").resolve(field)
                resolved += 1
            except LayersyncError:
                pass
    return resolved


def timed(action: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(n: int, repeat: int) -> dict[str, float]:
    reader = OmniYamlReader()
    old_text, new_text = view_yaml(n), view_yaml(n, 1)
    old, new = reader.read(old_text, PATH), reader.read(new_text, PATH)
    assert len(new.fields) == n, len(new.fields)
    with tempfile.TemporaryDirectory(prefix="layersync-bench-") as tmp:
        root, before, after = semantic_repo(Path(tmp), n)
        figures = {"select": timed(lambda: select_changed(RevisionReader(root), after, before, "duckdb"), repeat)}
    figures["read"] = timed(lambda: reader.read(new_text, PATH), repeat)
    figures["diff"] = timed(lambda: diff_views({"big": old}, {"big": new}), repeat)
    figures["resolve"] = timed(lambda: resolve_all(new), repeat)
    figures["deps"] = timed(lambda: DependencyIndex([new]), repeat)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="500,1000,2000,4000", help="fields in the view, each run doubling")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size; the median is shown")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    columns = ("select", "read", "diff", "resolve", "deps")
    print(f"{'fields':>7} " + " ".join(f"{c + ' s':>9}" for c in columns) + f" {'total s':>8} {'x prev':>7}")
    previous: float | None = None
    for n in sizes:
        figures = measure(n, args.repeat)
        total = sum(figures.values())
        ratio = f"{total / previous:>7.2f}" if previous else f"{'':>7}"
        print(f"{n:>7} " + " ".join(f"{figures[c]:>9.2f}" for c in columns) + f" {total:>8.2f} {ratio}", flush=True)
        previous = total
    print("sizes double: 'x prev' near 2 is linear, near 4 quadratic (baseline figures in this file's docstring)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

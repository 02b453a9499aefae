"""Writing N new columns into ONE model: the batch path against the old per-column path, measured live.

Three ways, each on the same model and the same N columns, timed side by side:
  per-column  `model_sql.upsert_column` once per column on the growing text: the path planning took
              before `ModelEditor` (the model re-parsed ~4 times per column, quadratic);
  batch       `PushPlanner.plan` of the N fields (one parse to plan, one splice and one re-read to check);
  joined      `PushPlanner.plan` of N fields that read another view through one `left join` (each joined
              column used to flush and re-read the growing model: 200 took 13.6 s on this machine).
Both written models are compared: the batch must write exactly what the per-column path writes. The
model is jaffle-shop-shaped (CTEs one column per line, a final `select * from final`), so the columns
are written one per line as the file does.

    python benchmarks/splice_batch.py [--sizes 50,100,250] [--repeat 1]
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.dbt import model_sql  # noqa: E402
from bot.dbt.project import MemoryStore  # noqa: E402
from bot.semantic.formats import format_for  # noqa: E402
from bot.semantic.refs import Resolver  # noqa: E402
from bot.translate.push import FieldRequest, PushPlanner  # noqa: E402

# measured on the shared 2-core machine before the joined path stopped re-reading the model per column
JOINED_BASELINE = {50: 0.95, 100: 4.47, 200: 13.64}

ORDERS_SQL = """{{ config(materialized='table') }}

with orders as (

    select * from {{ ref('stg_orders') }}

),

final as (

    select
        orders.order_id,
        orders.customer_id,
""" + "".join(f"        orders.c{k},\n" for k in range(1, 10)) + """        orders.amount
    from orders

)

select * from final
"""
FILES = {
    "dbt_project.yml": "name: synth\nprofile: synth\nmodel-paths: [models]\n",
    "models/marts/orders.sql": ORDERS_SQL,
    "models/marts/customers.sql": "select\n    customer_id,\n    first_name\nfrom {{ ref('stg_customers') }}\n",
}
RELATIONSHIPS = ("- join_from_view: marts__orders\n  join_to_view: marts__customers\n"
                 "  on_sql: ${marts__orders.customer_id} = ${marts__customers.customer_id}\n"
                 "  relationship_type: many_to_one\n")
CUSTOMERS = "schema: marts\ntable_name: customers\ndimensions:\n  customer_id:\n    primary_key: true\n  first_name: {}\n"


def semantic(n: int, joined: bool):
    head = "schema: marts\ntable_name: orders\ndimensions:\n  order_id:\n    primary_key: true\n  customer_id: {}\n"
    if joined:
        fields = "".join(f"  greeting_{k}:\n    sql: \"'{k} ' || ${{marts__customers.first_name}}\"\n" for k in range(n))
    else:
        fields = "".join(f"  derived_{k}:\n    sql: c{k % 9 + 1} * {k + 2} + amount\n" for k in range(n))
    return format_for("omni", "omni").read_model({
        "omni/model.yaml": "{}\n", "omni/relationships.yaml": RELATIONSHIPS,
        "omni/marts/orders.view.yaml": head + fields, "omni/marts/customers.view.yaml": CUSTOMERS})


def requests(model, n: int, joined: bool) -> list[FieldRequest]:
    view = model.views["marts__orders"]
    prefix = "greeting_" if joined else "derived_"
    return [FieldRequest(view, view.fields[f"{prefix}{k}"]) for k in range(n)]


def batch(n: int, joined: bool = False) -> tuple[float, str]:
    model = semantic(n, joined)
    wanted = requests(model, n, joined)
    t0 = time.perf_counter()
    plan = PushPlanner(MemoryStore(FILES), semantic=lambda: model).plan(wanted)
    took = time.perf_counter() - t0
    assert not plan.skipped and len(plan.pushed) == n, plan.skipped[:3]
    return took, plan.files["models/marts/orders.sql"]


def per_column(n: int) -> tuple[float, str]:
    model = semantic(n, False)
    view = model.views["marts__orders"]
    resolver = Resolver(view, "duckdb")
    columns = [(r.field.name, resolver.resolve(r.field)) for r in requests(model, n, False)]
    text = ORDERS_SQL
    t0 = time.perf_counter()
    for name, expression in columns:
        text = model_sql.upsert_column(text, name, expression)
    return time.perf_counter() - t0, text


def _median(run, repeat: int) -> tuple[float, str]:
    results = [run() for _ in range(repeat)]
    return statistics.median(r[0] for r in results), results[0][1]


def _growth(previous: tuple[int, float] | None, n: int, took: float) -> str:
    if previous is None:
        return "-"
    return f"{(took / previous[1]) ** (1 / max(1e-9, math.log2(n / previous[0]))):.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="50,100,250", help="new columns in the one model")
    parser.add_argument("--repeat", type=int, default=1, help="runs per size; the median is shown")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    print(f"{'columns':>7} {'per-column s':>12} {'batch s':>8} {'ratio':>7} {'joined s':>9} {'joined was s':>12} "
          f"{'x/doubling per-col':>18} {'batch':>6} {'joined':>6}")
    before: dict[str, tuple[int, float] | None] = {"per": None, "batch": None, "joined": None}
    for n in sizes:
        slow, one_by_one = _median(lambda: per_column(n), args.repeat)
        fast, batched = _median(lambda: batch(n), args.repeat)
        joined, _ = _median(lambda: batch(n, joined=True), args.repeat)
        if batched != one_by_one:
            print(f"{n}: the batch wrote another model than the per-column path", file=sys.stderr)
            return 1
        was = JOINED_BASELINE.get(n)
        print(f"{n:>7} {slow:>12.3f} {fast:>8.3f} {slow / fast:>6.1f}x {joined:>9.3f} {was if was else '-':>12} "
              f"{_growth(before['per'], n, slow):>18} {_growth(before['batch'], n, fast):>6} "
              f"{_growth(before['joined'], n, joined):>6}")
        before = {"per": (n, slow), "batch": (n, fast), "joined": (n, joined)}
    print("ratio: per-column time / batch time; x per doubling: near 2 is linear, near 4 quadratic")
    return 0


if __name__ == "__main__":
    sys.exit(main())

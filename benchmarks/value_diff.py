"""How fast value_diff compares a prod table with its dev build, against the alternatives.

Builds two tables of N rows (8 columns of mixed types: int key, bigint, double, decimal, varchar,
date, timestamp, boolean). dev = prod with a planted fraction of the rows touched (--change-rate, the
total fraction, split evenly: a third changed in one column, a third removed, and as many added).
Times, on the same tables in the same run:
  (a) value_diff                       bot.impact.value_diff (bucket pass, then detail on differing rows)
  (b) reladiff join-diff               reladiff.diff_tables(algorithm=JOINDIFF) (DuckDB, and
                                       PostgreSQL through psycopg2, which dbt-postgres installs)
  (c) per-column FULL OUTER JOIN       one query counting each column's differences (Recce / audit-helper)
  (d) floor                            one scan of each table: count(*), bit_xor(hash(all columns))
checks that (a), (b), (c) agree on added/removed/changed and prints the times and a/b, a/c, a/d.

    python benchmarks/value_diff.py [--rows 10000000] [--engine duckdb|postgres] [--change-rate 0.001]
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.impact.value_diff import value_diff  # noqa: E402

COLS = ["id", "amount", "score", "price", "name", "d", "ts", "flag"]


def build_duckdb(path: Path, n: int, rate: float) -> tuple[int, int, int]:
    import duckdb
    k = max(1, int(n * rate / 3))               # per kind
    step = max(1, n // k)
    con = duckdb.connect(str(path))
    con.execute("set enable_progress_bar = false")
    con.execute("create schema prod; create schema dev")
    con.execute(f"""create table prod.t as select i::integer as id, (i * 7919)::bigint as amount,
        (i * 0.5)::double as score, (i % 100000 / 100.0)::decimal(12,2) as price,
        'customer_' || (i % 50000)::varchar as name, date '2020-01-01' + (i % 2000)::integer as d,
        timestamp '2020-01-01' + to_seconds(i) as ts, (i % 3 = 0) as flag from range({n}) r(i)""")
    # changed: one column each, rotating over the 7 value columns; removed: another residue
    con.execute(f"""create table dev.t as select id,
        case when id % {step} = 1 and (id // {step}) % 7 = 0 then amount + 1 else amount end as amount,
        case when id % {step} = 1 and (id // {step}) % 7 = 1 then score * 2 else score end as score,
        case when id % {step} = 1 and (id // {step}) % 7 = 2 then price + 1 else price end as price,
        case when id % {step} = 1 and (id // {step}) % 7 = 3 then name || '_x' else name end as name,
        case when id % {step} = 1 and (id // {step}) % 7 = 4 then d + 1 else d end as d,
        case when id % {step} = 1 and (id // {step}) % 7 = 5 then null else ts end as ts,
        case when id % {step} = 1 and (id // {step}) % 7 = 6 then not flag else flag end as flag
        from prod.t where id % {step} <> 2
        union all select ({n} + i)::integer, i, 0.25, 1.00, 'new', date '2024-01-01', timestamp '2024-01-01', false
        from range({k}) r(i)""")
    con.execute("checkpoint")
    changed = con.execute(f"select count(*) from prod.t where id % {step} = 1").fetchone()[0]
    removed = con.execute(f"select count(*) from prod.t where id % {step} = 2").fetchone()[0]
    con.close()
    return k, removed, changed


def join_sql(prod: str, dev: str, hash_fn: str) -> tuple[str, str]:
    vals = COLS[1:]
    per_col = ", ".join(f'count(*) filter (where p.id is not null and d.id is not null and '
                        f'p.{c} is distinct from d.{c})' for c in vals)
    anyd = " or ".join(f"p.{c} is distinct from d.{c}" for c in vals)
    c = (f"select count(*) filter (where p.id is null), count(*) filter (where d.id is null), "
         f"count(*) filter (where p.id is not null and d.id is not null and ({anyd})), {per_col} "
         f"from {prod} p full outer join {dev} d on p.id = d.id")
    floor = (f"select count(*), bit_xor({hash_fn}) from {prod} union all "
             f"select count(*), bit_xor({hash_fn}) from {dev}")
    return c, floor


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def reladiff_counts(url: Path | str) -> tuple[int, int, int]:
    """`url`: a DuckDB file, or a postgresql:// URL (reladiff drives PostgreSQL through psycopg2,
    which dbt-postgres installs)."""
    import reladiff
    db = reladiff.connect(url if isinstance(url, str) else f"duckdb://main@{url}")
    try:
        t1 = reladiff.connect_to_table(db, "prod.t", "id", extra_columns=tuple(COLS[1:]))
        t2 = reladiff.connect_to_table(db, "dev.t", "id", extra_columns=tuple(COLS[1:]))
        minus, plus = set(), set()
        with reladiff.diff_tables(t1, t2, algorithm=reladiff.Algorithm.JOINDIFF) as diff:
            for sign, row in diff:
                (plus if sign == "+" else minus).add(row[0])
        return len(plus - minus), len(minus - plus), len(plus & minus)
    finally:
        db.close()


def run_duckdb(n: int, rate: float, repeat: int) -> None:
    from bot.warehouse.duckdb_warehouse import DuckDBWarehouse
    tmp = Path(tempfile.mkdtemp(prefix="vd-bench-"))
    try:
        path = tmp / "bench.duckdb"
        t, planted = timed(lambda: build_duckdb(path, n, rate))
        print(f"built 2 x {n:,} rows in {t:.1f}s; planted added/removed/changed = {planted}")
        c_sql, floor_sql = join_sql('"prod"."t"', '"dev"."t"', f"hash({', '.join(COLS)})")
        times: dict[str, float] = {}
        results: dict[str, tuple] = {}

        def best(name, fn):
            for _ in range(repeat):
                t, out = timed(fn)
                times[name] = min(times.get(name, t), t)
                results[name] = out

        with DuckDBWarehouse(path) as wh:
            best("d", lambda: wh.query(floor_sql))
            best("a", lambda: value_diff(wh, ("prod", "t"), ("dev", "t"), ["id"]))
            best("c", lambda: wh.query(c_sql)[0])
        best("b", lambda: reladiff_counts(path))
        report(results, times, planted, reladiff_note=None)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def report(results, times, planted, reladiff_note):
    a = results["a"]
    got = {"a": (a.added, a.removed, a.changed), "c": tuple(results["c"][:3])}
    if "b" in results:
        got["b"] = results["b"]
    print(f"value_diff: method={a.method} buckets={a.buckets} differing={a.differing_buckets} "
          f"per column={a.changed_by_column}")
    for k, v in got.items():
        status = "ok" if v == planted else "MISMATCH"
        print(f"  ({k}) added/removed/changed = {v}  {status}")
    assert all(v == planted for v in got.values()), "engines disagree"
    labels = {"a": "value_diff", "b": "reladiff join-diff", "c": "per-column full outer join",
              "d": "floor (scan + hash)"}
    for k in "abcd":
        if k in times:
            print(f"  ({k}) {labels[k]:30s} {times[k]:8.3f}s")
        else:
            print(f"  ({k}) {labels[k]:30s}      n/a  {reladiff_note}")
    for k in "bcd":
        if k in times:
            print(f"  a/{k} = {times['a'] / times[k]:.2f}")


# --- PostgreSQL ------------------------------------------------------------------------------------

def start_postgres(root: Path) -> tuple[str, callable]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        sys.exit("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin "
                 "(apt-get install -y postgresql)")
    bindir = Path(found[-1]).parent
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
        os.chmod(root, 0o755)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = root / "data"
    subprocess.run(as_user + [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                              "--no-sync"], check=True, capture_output=True)
    subprocess.run(as_user + [str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "log"),
                              "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                                    "-c shared_buffers=512MB -c work_mem=256MB -c max_parallel_workers_per_gather=2",
                              "start"], check=True, capture_output=True)

    def stop():
        subprocess.run(as_user + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
                       capture_output=True)
    return f"host=127.0.0.1 port={port} user=postgres dbname=postgres", stop, \
        f"postgresql://postgres@127.0.0.1:{port}/postgres"


def run_postgres(n: int, rate: float, repeat: int) -> None:
    import psycopg
    from bot.warehouse.postgres_warehouse import PostgresWarehouse
    root = Path(tempfile.mkdtemp(prefix="vd-bench-pg-"))
    dsn, stop, url = start_postgres(root)
    try:
        k = max(1, int(n * rate / 3))
        step = max(1, n // k)
        with psycopg.connect(dsn, autocommit=True) as con:
            t = time.perf_counter()
            con.execute("create schema prod; create schema dev")
            con.execute(f"""create table prod.t as select i::integer as id, (i::bigint * 7919) as amount,
                (i * 0.5)::double precision as score, (i % 100000 / 100.0)::numeric(12,2) as price,
                'customer_' || (i % 50000)::text as name, date '2020-01-01' + (i % 2000)::integer as d,
                timestamp '2020-01-01' + i * interval '1 second' as ts, (i % 3 = 0) as flag
                from generate_series(0, {n - 1}) i""")
            sel = ", ".join(
                f"case when id % {step} = 1 and (id / {step}) % 7 = {j} then {expr} else {c} end as {c}"
                for j, (c, expr) in enumerate([("amount", "amount + 1"), ("score", "score * 2"),
                                               ("price", "price + 1"), ("name", "name || '_x'"),
                                               ("d", "d + 1"), ("ts", "null"), ("flag", "not flag")]))
            con.execute(f"create table dev.t as select id, {sel} from prod.t where id % {step} <> 2 "
                        f"union all select ({n} + i)::integer, i, 0.25, 1.00, 'new', date '2024-01-01', "
                        f"timestamp '2024-01-01', false from generate_series(0, {k - 1}) i")
            con.execute("vacuum analyze prod.t")
            con.execute("vacuum analyze dev.t")
            changed = con.execute(f"select count(*) from prod.t where id % {step} = 1").fetchone()[0]
            removed = con.execute(f"select count(*) from prod.t where id % {step} = 2").fetchone()[0]
            planted = (k, removed, changed)
            print(f"built 2 x {n:,} rows in PostgreSQL in {time.perf_counter() - t:.1f}s; "
                  f"planted added/removed/changed = {planted}")
        c_sql, floor_sql = join_sql('"prod"."t"', '"dev"."t"', "hashtextextended(t::text, 0)")
        floor_sql = floor_sql.replace('from "prod"."t"', 'from "prod"."t" t').replace('from "dev"."t"', 'from "dev"."t" t')
        times: dict[str, float] = {}
        results: dict[str, tuple] = {}
        with PostgresWarehouse(dsn) as wh:
            for name, fn in (("d", lambda: wh.query(floor_sql)),
                             ("a", lambda: value_diff(wh, ("prod", "t"), ("dev", "t"), ["id"])),
                             ("c", lambda: wh.query(c_sql)[0]),
                             ("b", lambda: reladiff_counts(url))):
                for _ in range(repeat):
                    t, out = timed(fn)
                    times[name] = min(times.get(name, t), t)
                    results[name] = out
        report(results, times, planted, reladiff_note=None)
    finally:
        stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--engine", choices=["duckdb", "postgres"], default="duckdb")
    ap.add_argument("--change-rate", type=float, default=0.001)
    ap.add_argument("--repeat", type=int, default=2, help="best of N runs per method")
    args = ap.parse_args()
    print(f"engine={args.engine} rows={args.rows:,} change-rate={args.change_rate} cpus={os.cpu_count()}")
    if args.engine == "duckdb":
        run_duckdb(args.rows, args.change_rate, args.repeat)
    else:
        run_postgres(args.rows, args.change_rate, args.repeat)


if __name__ == "__main__":
    main()

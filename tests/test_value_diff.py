"""Value diff (prod vs dev by primary key): exact counts on planted changes, DuckDB and PostgreSQL."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
from pg_server import pg_server  # noqa: F401 - a fixture

from bot.impact.value_diff import value_diff
from bot.warehouse.duckdb_warehouse import DuckDBWarehouse


# ---------------------------------------------------------------------------------------------
# fixtures

@pytest.fixture
def db(tmp_path: Path):
    """A DuckDB file with prod and dev schemas; yields (writer connection, path)."""
    import duckdb
    path = tmp_path / "wh.duckdb"
    con = duckdb.connect(str(path))
    con.execute("create schema prod; create schema dev")
    yield con, path
    con.close()


@pytest.fixture
def wh(db):
    con, _ = db
    class _Wh(DuckDBWarehouse):
        def __init__(self):   # share the writer's connection (one file, one process)
            self.connection = con
    return _Wh()


def orders(con, schema: str, rows: list[tuple]) -> None:
    con.execute(f"create or replace table {schema}.orders (order_id integer, amount decimal(10,2), "
                "status varchar, placed date, note varchar)")
    if rows:
        con.executemany(f"insert into {schema}.orders values (?, ?, ?, ?, ?)", rows)


BASE = [(i, 10.0 + i, "placed", f"2024-01-{1 + i % 28:02d}", None if i % 3 else "n") for i in range(1, 21)]


# ---------------------------------------------------------------------------------------------
# DuckDB

@pytest.mark.parametrize("method", ["single-pass", "buckets"])
def test_planted_changes_exact(wh, db, method):
    con, _ = db
    orders(con, "prod", BASE)
    dev = {r[0]: list(r) for r in BASE}
    del dev[2], dev[5]                                # removed
    dev[3][1] = 99.0                                  # changed: amount
    dev[4][1], dev[4][2] = 1.0, "shipped"             # changed: amount + status
    dev[6][4] = "now set"                             # NULL -> value (6 % 3 == 0 → 'n'? no: 'n')
    dev[7][4] = None if dev[7][4] else "x"            # value <-> NULL flip
    dev[21] = [21, 5.0, "placed", "2024-02-01", None]  # added
    dev[22] = [22, 6.0, "placed", "2024-02-02", None]
    dev[23] = [23, 7.0, "placed", "2024-02-03", None]
    orders(con, "dev", [tuple(v) for v in dev.values()])
    r = value_diff(wh, ("prod", "orders"), ("dev", "orders"), ["order_id"], method=method, buckets=8)
    assert r.key_problems == []
    assert (r.prod_rows, r.dev_rows) == (20, 21)
    assert (r.added, r.removed, r.changed) == (3, 2, 4)
    assert r.unchanged == 20 - 2 - 4
    assert r.changed_by_column == {"amount": 2, "status": 1, "placed": 0, "note": 2}
    assert r.method == method
    assert [s["order_id"] for s in r.samples["added"]] == [21, 22, 23]
    assert [s["order_id"] for s in r.samples["removed"]] == [2, 5]
    changed = {s["order_id"]: s for s in r.samples["changed"]}
    assert list(changed) == [3, 4, 6]                     # first 3 by key
    assert changed[3] == {"order_id": 3, "amount": [13, 99]}
    assert changed[4]["status"] == ["placed", "shipped"]
    assert changed[6]["note"] == ["n", "now set"]
    assert r.key_checks["prod"].unique and r.key_checks["dev"].unique


def test_null_to_value_and_back(wh, db):
    con, _ = db
    con.execute("create table prod.t (id int, v varchar); create table dev.t (id int, v varchar)")
    con.execute("insert into prod.t values (1, null), (2, 'a'), (3, null), (4, 'b')")
    con.execute("insert into dev.t values (1, 'x'), (2, null), (3, null), (4, 'b')")
    for m in ("single-pass", "buckets"):
        r = value_diff(wh, ("prod", "t"), ("dev", "t"), ["id"], method=m, buckets=4)
        assert (r.added, r.removed, r.changed, r.unchanged) == (0, 0, 2, 2)
        assert r.changed_by_column == {"v": 2}
        assert {s["id"]: s["v"] for s in r.samples["changed"]} == {1: [None, "x"], 2: ["a", None]}


def test_composite_key(wh, db):
    con, _ = db
    for s in ("prod", "dev"):
        con.execute(f"create table {s}.t (region varchar, day date, sales bigint, cost double)")
    con.execute("insert into prod.t values ('eu', '2024-01-01', 10, 1.5), ('eu', '2024-01-02', 11, 2.5),"
                " ('us', '2024-01-01', 12, 3.5), ('us', '2024-01-02', 13, 4.5)")
    con.execute("insert into dev.t values ('eu', '2024-01-01', 10, 1.5), ('eu', '2024-01-02', 99, 2.5),"
                " ('us', '2024-01-02', 13, 4.0), ('apac', '2024-01-01', 1, 1.0)")
    for m in ("single-pass", "buckets"):
        r = value_diff(wh, ("prod", "t"), ("dev", "t"), ["region", "day"], method=m, buckets=2)
        assert (r.added, r.removed, r.changed, r.unchanged) == (1, 1, 2, 1)
        assert r.changed_by_column == {"sales": 1, "cost": 1}
        assert r.samples["added"][0]["region"] == "apac"
        assert r.samples["removed"][0]["region"] == "us"


@pytest.mark.parametrize("full", [False, True])
def test_duplicate_and_null_keys_reported(wh, db, full):
    con, _ = db
    orders(con, "prod", BASE)
    rows = BASE + [BASE[0], BASE[1], BASE[1], BASE[4]]            # 4 extra rows for 3 key values
    orders(con, "dev", rows + [(None, 1.0, "x", "2024-01-01", None)])
    r = value_diff(wh, ("prod", "orders"), ("dev", "orders"), ["order_id"], full_key_check=full)
    assert r.added is None and r.changed is None and r.removed is None
    assert r.method == "not-run"
    assert r.key_problems == ["key (order_id) is not unique in dev: 4 duplicate rows; 1 null"] or \
        r.key_problems == ["key (order_id) is not unique in dev: 1 null"]   # nulls stop before dup check
    assert r.key_checks["dev"].nulls == 1
    assert any("not computed" in n for n in r.notes)


@pytest.mark.parametrize("method", ["auto", "buckets", "single-pass"])
def test_duplicate_keys_without_nulls(wh, db, method):
    con, _ = db
    orders(con, "prod", BASE)
    orders(con, "dev", BASE + [BASE[0], BASE[1], BASE[1]])
    r = value_diff(wh, ("prod", "orders"), ("dev", "orders"), ["order_id"], method=method, buckets=8)
    assert r.key_problems == ["key (order_id) is not unique in dev: 3 duplicate rows"]
    assert r.key_checks["dev"].duplicates == 3 and not r.key_checks["dev"].unique
    assert r.key_checks["prod"].unique
    assert r.changed is None


def test_duplicates_identical_on_both_sides_need_full_check(wh, db):
    con, _ = db
    orders(con, "prod", BASE + [BASE[0]])
    orders(con, "dev", BASE + [BASE[0]])
    r = value_diff(wh, ("prod", "orders"), ("dev", "orders"), ["order_id"], full_key_check=True)
    assert r.key_problems == ["key (order_id) is not unique in prod: 1 duplicate row",
                              "key (order_id) is not unique in dev: 1 duplicate row"]
    # single-pass always checks exactly (it matches every row)
    r = value_diff(wh, ("prod", "orders"), ("dev", "orders"), ["order_id"], method="single-pass")
    assert len(r.key_problems) == 2


def test_columns_on_one_side_and_type_change(wh, db):
    con, _ = db
    con.execute("create table prod.t (id int, a int, gone varchar, code int)")
    con.execute("create table dev.t (id int, a int, code varchar, fresh double)")
    con.execute("insert into prod.t values (1, 1, 'x', 10), (2, 2, 'y', 20), (3, 3, 'z', 30)")
    con.execute("insert into dev.t values (1, 1, '10', 0.5), (2, 5, '20', 0.5), (3, 3, 'thirty', 0.5)")
    for m in ("single-pass", "buckets"):
        r = value_diff(wh, ("prod", "t"), ("dev", "t"), ["id"], method=m, buckets=2)
        assert r.only_in_prod == ["gone"] and r.only_in_dev == ["fresh"]
        assert r.columns_compared == ["a", "code"]
        assert r.cast_columns == ["code"]
        assert (r.added, r.removed, r.changed, r.unchanged) == (0, 0, 2, 1)
        assert r.changed_by_column == {"a": 1, "code": 1}
        assert {s["id"]: s for s in r.samples["changed"]}[3] == {"id": 3, "code": ["30", "thirty"]}
        assert any("compared as text" in n for n in r.notes)


def test_columns_argument_restricts(wh, db):
    con, _ = db
    con.execute("create table prod.t (id int, a int, b int); create table dev.t (id int, a int, b int)")
    con.execute("insert into prod.t values (1, 1, 1); insert into dev.t values (1, 1, 2)")
    r = value_diff(wh, ("prod", "t"), ("dev", "t"), ["id"], columns=["a"])
    assert r.columns_compared == ["a"] and r.changed == 0 and r.unchanged == 1


@pytest.mark.parametrize("method", ["auto", "buckets", "single-pass"])
def test_empty_tables(wh, db, method):
    con, _ = db
    orders(con, "prod", [])
    orders(con, "dev", [])
    r = value_diff(wh, ("prod", "orders"), ("dev", "orders"), ["order_id"], method=method)
    assert (r.prod_rows, r.dev_rows, r.added, r.removed, r.changed, r.unchanged) == (0, 0, 0, 0, 0, 0)
    orders(con, "dev", BASE[:2])
    r = value_diff(wh, ("prod", "orders"), ("dev", "orders"), ["order_id"], method=method)
    assert (r.added, r.removed, r.changed, r.unchanged) == (2, 0, 0, 0)
    assert len(r.samples["added"]) == 2


@pytest.mark.parametrize("method", ["auto", "buckets", "single-pass"])
def test_identical_tables(wh, db, method):
    con, _ = db
    orders(con, "prod", BASE)
    orders(con, "dev", BASE)
    r = value_diff(wh, ("prod", "orders"), ("dev", "orders"), ["order_id"], method=method, buckets=16)
    assert (r.added, r.removed, r.changed, r.unchanged) == (0, 0, 0, 20)
    assert r.changed_by_column == {"amount": 0, "status": 0, "placed": 0, "note": 0}
    assert r.samples == {"added": [], "removed": [], "changed": []}
    assert not r.has_changes
    if method == "buckets":
        assert r.differing_buckets == 0


def test_quoted_identifiers(wh, db):
    con, _ = db
    con.execute('create schema "My Schema"')
    con.execute('create table "My Schema"."Order Lines" ("Key" int, "select" varchar, "a""b" int)')
    con.execute('create table dev."Order Lines" ("Key" int, "select" varchar, "a""b" int)')
    con.execute('insert into "My Schema"."Order Lines" values (1, \'x\', 1), (2, \'y\', 2)')
    con.execute('insert into dev."Order Lines" values (1, \'x\', 1), (2, \'z\', 3)')
    for m in ("single-pass", "buckets"):
        r = value_diff(wh, ("My Schema", "Order Lines"), ("dev", "Order Lines"), ["Key"], method=m, buckets=2)
        assert (r.changed, r.changed_by_column) == (1, {"select": 1, 'a"b': 1})


def test_missing_table_and_key(wh, db):
    con, _ = db
    orders(con, "prod", BASE)
    with pytest.raises(LookupError):
        value_diff(wh, ("prod", "orders"), ("dev", "orders"), ["order_id"])
    orders(con, "dev", BASE)
    with pytest.raises(ValueError, match="nope"):
        value_diff(wh, ("prod", "orders"), ("dev", "orders"), ["nope"])


def test_dense_changes_fall_back_to_single_pass(wh, db):
    con, _ = db
    con.execute("create table prod.t as select i as id, i as v from range(30000) r(i)")
    con.execute("create table dev.t as select i as id, i + (i % 2) as v from range(30000) r(i)")
    r = value_diff(wh, ("prod", "t"), ("dev", "t"), ["id"])
    assert r.method == "single-pass" and r.changed == 15000 and r.differing_buckets > 0
    assert any("dense" in n for n in r.notes)
    r = value_diff(wh, ("prod", "t"), ("dev", "t"), ["id"], method="buckets")
    assert r.method == "buckets" and r.changed == 15000


def _random_tables(con, seed: int, n: int) -> tuple[int, int, int]:
    rnd = random.Random(seed)
    con.execute("create or replace table prod.r (k1 int, k2 varchar, a bigint, b double, c varchar, d boolean)")
    con.execute("create or replace table dev.r (k1 int, k2 varchar, a bigint, b double, c varchar, d boolean)")
    prod, dev = [], []
    added = removed = changed = 0
    for i in range(n):
        row = [i // 3, f"k{i % 3}", rnd.choice([None, rnd.randint(-5, 5)]), rnd.choice([None, rnd.random()]),
               rnd.choice([None, "x", "y", ""]), rnd.choice([None, True, False])]
        prod.append(tuple(row))
        roll = rnd.random()
        if roll < 0.05:
            removed += 1
            continue
        if roll < 0.15:
            new = list(row)
            col = rnd.randint(2, 5)
            new[col] = {2: 99, 3: -1.0, 4: "changed", 5: None if row[5] is not None else True}[col]
            changed += 1
            row = new
        dev.append(tuple(row))
    for j in range(rnd.randint(0, n // 10)):
        dev.append((n + j, "new", 1, 1.0, "n", True))
        added += 1
    con.executemany("insert into prod.r values (?, ?, ?, ?, ?, ?)", prod)
    con.executemany("insert into dev.r values (?, ?, ?, ?, ?, ?)", dev)
    return added, removed, changed


@pytest.mark.parametrize("seed", range(6))
def test_bucket_and_single_pass_agree_on_random_data(wh, db, seed):
    con, _ = db
    expected = _random_tables(con, seed, 400 + 100 * seed)
    results = [value_diff(wh, ("prod", "r"), ("dev", "r"), ["k1", "k2"], method="buckets", buckets=b)
               for b in (1, 64, 1024)]
    results.append(value_diff(wh, ("prod", "r"), ("dev", "r"), ["k1", "k2"], method="single-pass"))
    for r in results:
        assert (r.added, r.removed, r.changed) == expected
        assert r.changed_by_column == results[-1].changed_by_column
        assert r.samples == results[-1].samples


def test_sql_is_dialect_specific_and_quoted():
    from sqlglot import exp
    from bot.impact.value_diff import _Dialect, _col
    duck = _Dialect("duckdb").hash([_col("a b")]).sql(dialect="duckdb")
    pg = _Dialect("postgres").hash([_col("a b")]).sql(dialect="postgres")
    assert duck == 'HASH("a b")'
    assert _Dialect("duckdb").hash([_col("a"), _col("b")]).sql(dialect="duckdb") == 'HASH(HASH("a", "b"))'
    assert pg == 'HASHTEXTEXTENDED(CAST(ROW("a b") AS TEXT), 0)'
    assert isinstance(_col("x"), exp.Column)


# ---------------------------------------------------------------------------------------------
# PostgreSQL: a real server on loopback in a temp dir

@pytest.fixture(scope="module")
def postgres_dsn(pg_server):
    """The shared throwaway server of tests/pg_server.py, as a libpq DSN."""
    return pg_server.dsn


def test_postgres_counts_match(postgres_dsn):
    import psycopg
    from bot.warehouse.postgres_warehouse import PostgresWarehouse
    with psycopg.connect(postgres_dsn, autocommit=True) as con:
        con.execute("drop schema if exists prod cascade; drop schema if exists dev cascade;"
                    "create schema prod; create schema dev")
        for s in ("prod", "dev"):
            con.execute(f'create table {s}.orders (order_id int, region text, amount numeric(10,2), '
                        f'status text, "Note" text)')
        con.execute("insert into prod.orders select i, case when i % 2 = 0 then 'eu' else 'us' end, i * 1.5, "
                    "'placed', case when i % 3 = 0 then null else 'n' end from generate_series(1, 3000) i")
        con.execute("insert into dev.orders select * from prod.orders where order_id % 100 <> 7")   # 30 removed
        con.execute("update dev.orders set amount = amount + 1 where order_id % 100 = 1")          # 30 changed
        con.execute("update dev.orders set status = 'shipped', \"Note\" = null "
                    "where order_id % 100 = 2")                                                    # 30 changed
        con.execute("update dev.orders set \"Note\" = 'x' where order_id % 300 = 3")               # 10 NULL->val
        con.execute("insert into dev.orders values (5001, 'eu', 1, 'placed', null), (5002, 'us', 2, 'placed', 'n')")
        # composite-key and type-changed tables
        con.execute("create table prod.c (a int, b text, v int); create table dev.c (a int, b text, v text)")
        con.execute("insert into prod.c values (1, 'x', 1), (1, 'y', 2), (2, 'x', 3)")
        con.execute("insert into dev.c values (1, 'x', '1'), (1, 'y', 'two'), (3, 'x', '3')")
        con.execute("create table dev.dup as select * from prod.orders union all select * from prod.orders limit 3005")

    with PostgresWarehouse(postgres_dsn) as wh:
        assert [c.name for c in wh.columns("prod", "orders")] == ["order_id", "region", "amount", "status", "Note"]
        assert wh.columns("prod", "orders")[2].type == "numeric(10,2)"
        assert wh.columns("prod", "nope") == []
        assert wh.tables("dev") == ["c", "dup", "orders"]
        with pytest.raises(Exception, match="read-only"):
            wh.query("create table prod.x (i int)")
        results = {m: value_diff(wh, ("prod", "orders"), ("dev", "orders"), ["order_id"], method=m, buckets=256)
                   for m in ("buckets", "single-pass")}
        for m, r in results.items():
            assert r.method == m
            assert (r.prod_rows, r.dev_rows) == (3000, 2972)
            assert (r.added, r.removed, r.changed) == (2, 30, 70), m
            assert r.changed_by_column == {"region": 0, "amount": 30, "status": 30, "Note": 30}
            assert r.samples["removed"][0]["order_id"] == 7
        assert results["buckets"].samples == results["single-pass"].samples

        r = value_diff(wh, ("prod", "c"), ("dev", "c"), ["a", "b"], method="buckets", buckets=2)
        assert (r.added, r.removed, r.changed, r.unchanged) == (1, 1, 1, 1)
        assert r.cast_columns == ["v"]
        assert r.samples["changed"] == [{"a": 1, "b": "y", "v": ["2", "two"]}]

        r = value_diff(wh, ("prod", "orders"), ("dev", "dup"), ["order_id"])
        assert r.key_problems == ["key (order_id) is not unique in dev: 5 duplicate rows"]


def test_same_change_in_two_rows_of_one_bucket_is_not_cancelled(wh, db):
    """DuckDB's multi-argument hash() is nearly linear: without re-mixing, the same change in two rows
    of one bucket changes both row hashes by the same delta and the bucket's xor stays equal."""
    con, _ = db
    con.execute("create table prod.t (id int, flag boolean); create table dev.t (id int, flag boolean)")
    con.execute("insert into prod.t values (1, false), (2, false), (3, true)")
    con.execute("insert into dev.t values (1, null), (2, null), (3, true)")
    r = value_diff(wh, ("prod", "t"), ("dev", "t"), ["id"], method="buckets", buckets=1)
    assert r.changed == 2 and r.differing_buckets == 1


# ---------------------------------------------------------------------------------------------
# speed-motivated paths: widened types, perfect-hash buckets, two bucketings

def test_width_only_type_change_is_compared_natively(wh, db):
    """DECIMAL(12,2) vs DECIMAL(13,2), INTEGER vs BIGINT, FLOAT vs DOUBLE: compared in the common type
    (not as text), so 1.5 = 1.50 as a join would say; only a real value change counts."""
    con, _ = db
    con.execute("create table prod.t (id int, p decimal(12,2), q decimal(10,1), n int, f float, s varchar)")
    con.execute("create table dev.t (id bigint, p decimal(13,2), q decimal(10,2), n bigint, f double, s varchar)")
    con.execute("insert into prod.t values (1, 1.50, 1.5, 1, 0.5, 'a'), (2, 2.00, 2.0, 2, 1.5, 'b'), "
                "(3, 3.00, 3.0, 3, 2.5, 'c')")
    con.execute("insert into dev.t values (1, 1.50, 1.50, 1, 0.5, 'a'), (2, 2.01, 2.0, 2, 1.5, 'b'), "
                "(3, 3.00, 3.05, 4, 2.5, 'c')")
    for m in ("single-pass", "buckets"):
        r = value_diff(wh, ("prod", "t"), ("dev", "t"), ["id"], method=m, buckets=2)
        assert r.cast_columns == []
        assert r.widened_columns == {"id": "BIGINT", "p": "DECIMAL(13,2)", "q": "DECIMAL(11,2)",
                                     "n": "BIGINT", "f": "DOUBLE"}
        assert (r.added, r.removed, r.changed, r.unchanged) == (0, 0, 2, 1), m
        assert r.changed_by_column == {"p": 1, "q": 1, "n": 1, "f": 0, "s": 0}
        assert any("widened" in n for n in r.notes)


def test_bucket_pass_restores_duckdb_setting(wh, db):
    con, _ = db
    orders(con, "prod", BASE)
    orders(con, "dev", BASE[1:])
    before = con.execute("select current_setting('perfect_ht_threshold')").fetchone()[0]
    r = value_diff(wh, ("prod", "orders"), ("dev", "orders"), ["order_id"], method="buckets")
    assert r.removed == 1
    assert con.execute("select current_setting('perfect_ht_threshold')").fetchone()[0] == before


@pytest.mark.parametrize("buckets", [16, 4096])
def test_crowded_buckets_use_two_bucketings_and_stay_exact(wh, db, buckets):
    """Many rows per bucket: the bucket pass groups by two independent bucketings at once and only rows
    differing in both are joined; counts must equal the single-pass join's."""
    from bot.impact.value_diff import _Dialect, _bucket_fns
    con, _ = db
    n = 300_000
    con.execute(f"create table prod.t as select i::integer id, i * 3 a, 'v' || (i % 97) s from range({n}) r(i)")
    con.execute(f"""create table dev.t as select id, case when id % 997 = 5 then a + 1 else a end a,
        case when id % 1499 = 7 then null else s end s from prod.t where id % 2003 <> 11
        union all select {n} + i, i, 'new' from range(50) r(i)""")
    bits = buckets.bit_length() - 1
    assert _bucket_fns(_Dialect("duckdb"), bits, n) == 2
    r = value_diff(wh, ("prod", "t"), ("dev", "t"), ["id"], method="buckets", buckets=buckets)
    s = value_diff(wh, ("prod", "t"), ("dev", "t"), ["id"], method="single-pass")
    assert (r.added, r.removed, r.changed) == (s.added, s.removed, s.changed) == (50, 150, s.changed)
    assert s.changed == len({i for i in range(n) if i % 2003 != 11 and (i % 997 == 5 or i % 1499 == 7)})
    assert r.changed_by_column == s.changed_by_column
    assert r.samples == s.samples

"""`${other_view.field}` pushed as a join through relationships.yaml, or refused with the reason."""
from __future__ import annotations

import pytest

from bot.dbt import model_sql
from bot.dbt.project import DbtProject, MemoryStore
from bot.semantic.formats import format_for
from bot.translate.push import FieldRequest, PushPlanner

PROJECT = {
    "dbt_project.yml": "name: shop\nprofile: shop\nmodel-paths: [models]\n",
    "models/stg_orders.sql": "select * from raw_orders\n",
    "models/orders.sql": "with final as (\n    select * from {{ ref('stg_orders') }}\n)\n\nselect * from final\n",
    "models/customers.sql": "select\n    customer_id,\n    first_name,\n    last_name\nfrom raw_customers\n",
}

ORDERS = """# Reference this view as marts__orders
schema: marts
table_name: orders
dimensions:
  order_id:
    primary_key: true
  customer_id: {}
  customer_name:
    sql: ${marts__customers.first_name} || ' ' || ${marts__customers.last_name}
  customer_first:
    sql: UPPER(${marts__customers.first_name})
"""
CUSTOMERS = """# Reference this view as marts__customers
schema: marts
table_name: customers
dimensions:
  customer_id:
    primary_key: true
  first_name: {}
  last_name: {}
  order_status:
    sql: ${marts__orders.customer_id}
"""
JOIN = """- join_from_view: marts__orders
  join_to_view: marts__customers
  join_type: always_left
  on_sql: ${marts__orders.customer_id} = ${marts__customers.customer_id}
  relationship_type: many_to_one
"""


def model(relationships: str = JOIN, extra: dict[str, str] | None = None):
    fmt = format_for("omni", "omni")
    texts = {"omni/model.yaml": "{}\n", "omni/relationships.yaml": relationships,
             "omni/marts/orders.view.yaml": ORDERS, "omni/marts/customers.view.yaml": CUSTOMERS, **(extra or {})}
    return fmt.read_model(texts)


def plan(field_ids: list[str], relationships: str = JOIN, files: dict[str, str] | None = None):
    semantic = model(relationships)
    requests = []
    for field_id in field_ids:
        view_name, name = field_id.split(".")
        view = semantic.views[view_name]
        requests.append(FieldRequest(view, view.fields[name]))
    return PushPlanner(MemoryStore(files or PROJECT), semantic=lambda: semantic).plan(requests)


def test_a_field_reading_a_many_to_one_view_is_pushed_with_one_join() -> None:
    result = plan(["marts__orders.customer_name", "marts__orders.customer_first"])
    assert [(p.id, p.action) for p in result.pushed] == [("marts__orders.customer_name", "added"),
                                                         ("marts__orders.customer_first", "added")]
    assert result.skipped == []
    text = result.files["models/orders.sql"]
    assert text == PROJECT["models/orders.sql"].replace(
        "select * from final\n",
        "select final.*, customers.first_name || ' ' || customers.last_name as customer_name, "
        "upper(customers.first_name) as customer_first from final\n"
        "left join {{ ref('customers') }} as customers\n"
        "    on final.customer_id = customers.customer_id\n")
    assert text.count("ref('customers')") == 1
    assert [p.dbt_sql for p in result.pushed] == ["customers.first_name || ' ' || customers.last_name",
                                                  "upper(customers.first_name)"]


def test_planning_again_on_the_pushed_model_reuses_the_join_and_changes_nothing() -> None:
    first = plan(["marts__orders.customer_name"])
    files = {**PROJECT, **first.files}
    again = plan(["marts__orders.customer_name"], files=files)
    assert [p.action for p in again.pushed] == ["unchanged"] and again.files == {}


def test_a_reversible_join_written_the_other_way_is_mirrored() -> None:
    back = ("- join_from_view: marts__customers\n  join_to_view: marts__orders\n"
            "  on_sql: ${marts__customers.customer_id} = ${marts__orders.customer_id}\n"
            "  relationship_type: one_to_many\n  reversible: true\n")
    result = plan(["marts__orders.customer_first"], relationships=back)
    assert [p.action for p in result.pushed] == ["added"]
    assert "on final.customer_id = customers.customer_id" in result.files["models/orders.sql"]


@pytest.mark.parametrize("relationships, code, words", [
    ("[]\n", "no-relationship", "no join from `marts__orders` to `marts__customers`"),
    (JOIN.replace("many_to_one", "many_to_many"), "fan-out", "fan-out"),
    (JOIN.replace("relationship_type: many_to_one", "relationship_type: one_to_many"), "fan-out",
     "could repeat `marts__orders`'s rows"),
    (JOIN + "  where_sql: ${marts__customers.first_name} <> ''\n", "join-filtered", "`where_sql`"),
    (JOIN.replace("= ${marts__customers.customer_id}", "> ${marts__customers.customer_id}"), "join-unsupported",
     "not an AND of equalities"),
    (JOIN.replace("- join_from_view", "- reversible: false\n  join_from_view").replace(
        "join_from_view: marts__orders\n  join_to_view: marts__customers",
        "join_from_view: marts__customers\n  join_to_view: marts__orders"), "no-relationship", "nor a reversible"),
])
def test_a_join_that_cannot_be_expressed_is_refused_with_its_reason(relationships: str, code: str, words: str) -> None:
    result = plan(["marts__orders.customer_name"], relationships=relationships)
    assert result.pushed == [] and result.files == {}
    (skip,) = result.skipped
    assert (skip.id, skip.code) == ("marts__orders.customer_name", code)
    assert words in skip.reason
    # the join's own condition is the relationship's fault; everything else is said where the field is
    expected = ("omni/relationships.yaml", 1) if code == "join-unsupported" else ("omni/marts/orders.view.yaml", 8)
    assert (skip.file, skip.line) == expected


def test_a_join_that_would_close_a_cycle_names_it_model_by_model() -> None:
    files = {**PROJECT, "models/customers.sql": "select c.customer_id, c.first_name, c.last_name, o.order_id\n"
                                                "from raw_customers as c\nleft join {{ ref('orders') }} as o "
                                                "on o.customer_id = c.customer_id\n"}
    result = plan(["marts__orders.customer_name"], files=files)
    assert result.files == {} and result.pushed == []
    (skip,) = result.skipped
    assert skip.code == "join-cycle"
    assert "orders -> customers -> orders" in skip.reason


def test_reading_a_model_that_already_refs_this_one_is_no_cycle_but_its_join_is_not_ours() -> None:
    """customers refs orders already: a customers field reading orders adds no edge, so no cycle; the
    model's own join to orders (another alias, another condition) is not reused as if it were ours."""
    files = {**PROJECT, "models/customers.sql": "select c.customer_id, c.first_name, c.last_name, o.order_id\n"
                                                "from raw_customers as c\nleft join {{ ref('orders') }} as o "
                                                "on o.customer_id = c.customer_id\n"}
    back = JOIN.replace("relationship_type: many_to_one", "relationship_type: one_to_one\n  reversible: true")
    result = plan(["marts__customers.order_status"], relationships=back, files=files)
    (skip,) = result.skipped
    assert skip.code == "error" and "already joins ref('orders') (as `o`)" in skip.reason
    assert "__j" not in skip.reason


def test_a_transitive_cycle_is_named_through_every_model() -> None:
    files = {**PROJECT, "models/mid.sql": "select * from {{ ref('orders') }}\n",
             "models/customers.sql": "select customer_id, first_name, last_name from {{ ref('mid') }}\n"}
    result = plan(["marts__orders.customer_name"], files=files)
    (skip,) = result.skipped
    assert skip.code == "join-cycle" and "orders -> customers -> mid -> orders" in skip.reason


def test_a_view_whose_table_is_no_model_or_seed_is_refused() -> None:
    files = {k: v for k, v in PROJECT.items() if k != "models/customers.sql"}
    result = plan(["marts__orders.customer_name"], files=files)
    (skip,) = result.skipped
    assert skip.code == "unknown-model" and "`customers` is no model, seed or source" in skip.reason


def test_a_seed_is_joined_by_ref() -> None:
    files = {k: v for k, v in PROJECT.items() if k != "models/customers.sql"}
    files["seeds/customers.csv"] = "customer_id,first_name,last_name\n1,A,B\n"
    result = plan(["marts__orders.customer_first"], files=files)
    assert [p.action for p in result.pushed] == ["added"]
    assert "left join {{ ref('customers') }} as customers" in result.files["models/orders.sql"]


def test_dependency_path_follows_refs() -> None:
    project = DbtProject(MemoryStore({**PROJECT, "models/mid.sql": "select * from {{ ref('orders') }}\n"}))
    assert project.dependency_path("mid", "stg_orders") == ["mid", "orders", "stg_orders"]
    assert project.dependency_path("stg_orders", "mid") is None


# ---------------------------------------------------------------- end to end on the demo's jaffle_shop

FULL_NAME = """  customer_full_name:
    label: Customer's full name
    sql: ${omni_dbt_marts__customers.full_name}
"""
ORDERS_VIEW = "omni_dbt_marts/orders.view.yaml"


def _omni_repos(tmp_path):
    import git

    from bot.demo.run import ANALYST, create_dbt_repo, create_semantic_repo

    remote = create_dbt_repo(tmp_path)
    semantic = create_semantic_repo(tmp_path, layout="omni")
    path = semantic / ORDERS_VIEW
    text = path.read_text()
    path.write_text(text.replace("\nmeasures:", "\n" + FULL_NAME.rstrip("\n") + "\n\nmeasures:", 1))
    repo = git.Repo(semantic)
    repo.git.add("-A")
    repo.index.commit("orders: the customer's full name", author=ANALYST, committer=ANALYST)
    return remote, semantic


def _push(tmp_path, remote, semantic):
    from bot.forge.local import LocalForge
    from bot.push_to_dbt import PushRequest, run

    return run(PushRequest(semantic_repo=semantic, dbt_repo=remote), LocalForge(tmp_path / "state.sqlite"))


def _file(remote, branch: str, path: str) -> str:
    import git

    return (git.Repo(remote).commit(branch).tree / path).data_stream.read().decode()


@pytest.mark.slow
def test_push_to_dbt_writes_the_join_and_dbt_accepts_it(tmp_path) -> None:
    remote, semantic = _omni_repos(tmp_path)
    result = _push(tmp_path, remote, semantic)
    assert [(p.id, p.action) for p in result.pushed] == [("omni_dbt_marts__orders.customer_full_name", "added")], \
        result.skipped
    before = _file(remote, "main", "models/marts/orders.sql")
    after = _file(remote, result.branch, "models/marts/orders.sql")
    assert after == before.replace(
        "select * from final\n",
        "select\n    final.*,\n    (customers.first_name || ' ' || customers.last_name) as customer_full_name\n"
        "from final\n"
        "left join {{ ref('customers') }} as customers\n"
        "    on final.customer_id = customers.customer_id\n")


@pytest.mark.slow
def test_push_to_dbt_refuses_a_join_that_would_make_a_cycle(tmp_path) -> None:
    import git

    from bot.demo.run import ANALYST

    remote, semantic = _omni_repos(tmp_path)
    work = git.Repo.clone_from(remote, tmp_path / "dbt-edit")
    customers = tmp_path / "dbt-edit" / "models/marts/customers.sql"
    customers.write_text(customers.read_text().replace("{{ ref('stg_orders') }}", "{{ ref('orders') }}"))
    work.git.add("-A")
    work.index.commit("customers reads the orders mart", author=ANALYST, committer=ANALYST)
    work.git.push("origin", "HEAD:refs/heads/main")
    result = _push(tmp_path, remote, semantic)
    assert result.pushed == []
    (skip,) = [s for s in result.skipped if s.id == "omni_dbt_marts__orders.customer_full_name"]
    assert skip.code == "join-cycle" and "orders -> customers -> orders" in skip.reason
    assert (skip.file, skip.line) == (ORDERS_VIEW, _line_of(semantic / ORDERS_VIEW, "customer_full_name:"))


def _line_of(path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


# ---------------------------------------------------------------- sources, and nothing half-written

SOURCES = """version: 2

sources:
  - name: shop_raw
    schema: raw
    tables:
      - name: customers
        columns:
          - name: customer_id
          - name: first_name
          - name: last_name
"""


def test_a_source_table_is_joined_by_source() -> None:
    files = {k: v for k, v in PROJECT.items() if k != "models/customers.sql"}
    files["models/_sources.yml"] = SOURCES
    result = plan(["marts__orders.customer_name"], files=files)
    assert [(p.id, p.action) for p in result.pushed] == [("marts__orders.customer_name", "added")], result.skipped
    assert result.files["models/orders.sql"] == PROJECT["models/orders.sql"].replace(
        "select * from final\n",
        "select final.*, customers.first_name || ' ' || customers.last_name as customer_name from final\n"
        "left join {{ source('shop_raw', 'customers') }} as customers\n"
        "    on final.customer_id = customers.customer_id\n")
    again = plan(["marts__orders.customer_name"], files={**files, **result.files})
    assert [p.action for p in again.pushed] == ["unchanged"] and again.files == {}


def test_two_sources_of_one_name_are_told_apart_by_the_views_schema_or_refused() -> None:
    files = {k: v for k, v in PROJECT.items() if k != "models/customers.sql"}
    other = SOURCES.replace("shop_raw", "crm").replace("schema: raw", "schema: crm")
    files["models/_sources.yml"] = SOURCES + other.split("sources:\n", 1)[1]
    result = plan(["marts__orders.customer_first"], files=files)
    (skip,) = result.skipped
    assert skip.code == "ambiguous-source" and "source('shop_raw', 'customers')" in skip.reason \
        and "source('crm', 'customers')" in skip.reason and result.files == {}
    semantic = model(extra={"omni/marts/customers.view.yaml": CUSTOMERS.replace("schema: marts", "schema: crm")})
    view = semantic.views["marts__orders"]
    result = PushPlanner(MemoryStore(files), semantic=lambda: semantic).plan(
        [FieldRequest(view, view.fields["customer_first"])])
    assert "left join {{ source('crm', 'customers') }} as customers" in result.files["models/orders.sql"]


def test_a_joined_column_that_fails_at_the_final_splice_leaves_no_join(monkeypatch: pytest.MonkeyPatch) -> None:
    """The join is written before its column; a column refused only when the model is spliced (here: the
    re-read finds it missing) took the field out but left its join in the model (issue 11)."""
    real = model_sql._validate

    def picky(text: str, names: list[str], dialect: str):
        if "customer_first" in names:
            raise model_sql.ModelSqlError("the edited model does not project 'customer_first'")
        return real(text, names, dialect)

    monkeypatch.setattr(model_sql, "_validate", picky)
    result = plan(["marts__orders.customer_first"])
    assert result.pushed == [] and result.files == {}
    (skip,) = result.skipped
    assert skip.id == "marts__orders.customer_first" and "does not project 'customer_first'" in skip.reason
    # a field that still needs the join keeps it, once, with its column only
    result = plan(["marts__orders.customer_first", "marts__orders.customer_name"])
    assert [p.id for p in result.pushed] == ["marts__orders.customer_name"]
    text = result.files["models/orders.sql"]
    assert text.count("left join {{ ref('customers') }}") == 1 and "customer_first" not in text


def _many_joined(n: int) -> tuple:
    fields = "".join(f"  greeting_{k}:\n    sql: \"'{k} ' || ${{marts__customers.first_name}}\"\n" for k in range(n))
    semantic = model(extra={"omni/marts/orders.view.yaml": ORDERS + fields})
    view = semantic.views["marts__orders"]
    return semantic, [FieldRequest(view, view.fields[f"greeting_{k}"]) for k in range(n)]


def test_columns_through_one_join_cost_a_few_parses_not_some_per_column(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every joined column flushed the columns before it and re-read the growing model to reuse the join:
    200 such columns took 13.6 s, quadratic. The join is written once; the columns after it are spliced once."""
    loads: list[int] = []
    real = model_sql._load

    def counting(text: str, dialect: str):
        if "greeting_" in text or "raw_orders" in text or "stg_orders" in text:
            loads.append(len(text))
        return real(text, dialect)

    monkeypatch.setattr(model_sql, "_load", counting)
    for n in (10, 40):
        loads.clear()
        semantic, requests = _many_joined(n)
        result = PushPlanner(MemoryStore(PROJECT), semantic=lambda: semantic).plan(requests)
        assert len(result.pushed) == n and result.skipped == []
        assert result.files["models/orders.sql"].count("left join") == 1
        assert len(loads) <= 6, (n, len(loads))


def test_a_ctes_unqualified_columns_do_not_block_a_join_of_the_final_select() -> None:
    """jaffle-shop's orders ends `select * from customer_order_count`, a CTE that partitions by an
    unqualified `customer_id`: that column is the CTE's, and the join of the final select cannot make it
    ambiguous (the join was refused for it)."""
    files = {**PROJECT, "models/orders.sql": (
        "with customer_order_count as (\n    select\n        *,\n        row_number() over (\n"
        "            partition by customer_id\n            order by order_id asc\n        ) as customer_order_number\n"
        "    from {{ ref('stg_orders') }}\n)\n\nselect * from customer_order_count\n")}
    result = plan(["marts__orders.customer_first"], files=files)
    assert [p.action for p in result.pushed] == ["added"], result.skipped
    assert "left join {{ ref('customers') }} as customers\n    on customer_order_count.customer_id = " \
           "customers.customer_id\n" in result.files["models/orders.sql"]


def test_columns_planned_before_a_join_are_planned_again_over_it_in_their_order() -> None:
    """Found on jaffle-shop: the view's plain columns came first in the file, were written unqualified, and
    the join after them was refused, since the joined model selects `*` and might have those names too."""
    semantic = model(extra={"omni/marts/orders.view.yaml": ORDERS.replace(
        "  customer_name:", "  is_big:\n    sql: amount > 10\n  customer_name:")})
    view = semantic.views["marts__orders"]
    files = {**PROJECT, "models/customers.sql": "select * from raw_customers\n"}
    result = PushPlanner(MemoryStore(files), semantic=lambda: semantic).plan(
        [FieldRequest(view, view.fields[n]) for n in ("is_big", "customer_first")])
    assert [(p.id, p.action) for p in result.pushed] == [("marts__orders.is_big", "added"),
                                                         ("marts__orders.customer_first", "added")], result.skipped
    assert result.files["models/orders.sql"] == PROJECT["models/orders.sql"].replace(
        "select * from final\n",
        "select final.*, final.amount > 10 as is_big, upper(customers.first_name) as customer_first from final\n"
        "left join {{ ref('customers') }} as customers\n"
        "    on final.customer_id = customers.customer_id\n")
    assert [p.dbt_sql for p in result.pushed] == ["final.amount > 10", "upper(customers.first_name)"]

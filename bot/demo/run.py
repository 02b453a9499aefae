"""`layersync demo`: an analyst's edit pushed to dbt, built, and checked against the semantic SQL.

Everything happens in a scratch directory on the embedded defaults: git repos on disk, the local
forge in SQLite, dbt-duckdb writing one DuckDB file.
"""
from __future__ import annotations

import shlex
import shutil
import tempfile
from importlib import resources
from pathlib import Path

import git

from bot import progress
from bot.dbt.runner import run_dbt, write_duckdb_profile
from bot.errors import LayersyncError
from bot.forge.base import format_pr_table
from bot.forge.local import LocalForge
from bot.impact.report import to_markdown
from bot.impact.run import run_impact
from bot.push_to_dbt import PushRequest, PushResult, run
from bot.readable import for_people, squeeze_blank_lines
from bot.gitops import RevisionReader
from bot.selection import format_at, model_reader
from bot.translate import values
from bot.warehouse.duckdb_warehouse import DuckDBWarehouse

ANALYST = git.Actor("Ada Analyst", "ada@example.com")
ORDERS_EDIT = """\
  is_large_order:
    label: Large order
    description: Orders of more than 20 dollars
    sql: ${TABLE}.amount > 20
  order_size:
    label: Order size
    description: small (< 10), medium (< 30) or large
    sql: case when ${amount} >= 30 then 'large' when ${amount} >= 10 then 'medium' else 'small' end
"""
ORDERS_MEASURE = """\
  large_order_revenue:
    label: Revenue from large orders
    sql: case when ${is_large_order} then ${amount} else 0 end
    aggregate_type: sum
"""
CUSTOMERS_EDIT = """\
  customer_tier:
    label: Customer tier
    description: gold from 50 dollars of lifetime value
    sql: case when ${customer_lifetime_value} >= 50 then 'gold' else 'standard' end
"""

# The same edit in Omni's own layout and references: self-references fully qualified, as Omni writes
# them, a raw column by its bare name, and a filtered measure.
OMNI_ORDERS = "omni_dbt_marts/orders.view.yaml"
OMNI_CUSTOMERS = "omni_dbt_marts/customers.view.yaml"
OMNI_ORDERS_EDIT = """\
  is_large_order:
    label: Large order
    description: Orders of more than 20 dollars
    sql: ${omni_dbt_marts__orders.amount} > 20
  order_size:
    label: Order size
    description: small (< 10), medium (< 30) or large
    sql: CASE WHEN ${omni_dbt_marts__orders.amount} >= 30 THEN 'large' WHEN ${omni_dbt_marts__orders.amount} >= 10 THEN 'medium' ELSE 'small' END
"""
OMNI_ORDERS_MEASURE = """\
  large_order_revenue:
    label: Revenue from large orders
    sql: ${omni_dbt_marts__orders.amount}
    aggregate_type: sum
    filters:
      is_large_order:
        is: true
  large_order_share:
    label: Share of revenue from large orders
    sql: ${omni_dbt_marts__orders.large_order_revenue} / NULLIF(${omni_dbt_marts__orders.revenue}, 0)
"""
OMNI_CUSTOMERS_EDIT = """\
  customer_tier:
    label: Customer tier
    description: gold from 50 dollars of lifetime value
    sql: CASE WHEN customer_lifetime_value >= 50 THEN 'gold' ELSE 'standard' END
"""
LAYOUTS = ("omni", "views")      # Omni's real layout (the demo's), and the older `views/` one


def package_dir(name: str) -> Path:
    return Path(str(resources.files("bot.demo") / name))


def _copy_tree(source: Path, target: Path) -> None:
    shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "target"))


def create_dbt_repo(root: Path) -> Path:
    """A bare remote (what a forge hosts) seeded with the jaffle_shop project on `main`."""
    remote = root / "dbt.git"
    git.Repo.init(remote, bare=True, initial_branch="main")
    work = git.Repo.clone_from(remote, root / "dbt")
    _copy_tree(package_dir("jaffle_shop"), Path(work.working_tree_dir))
    seeds = Path(work.working_tree_dir) / "seeds"
    seeds.mkdir(exist_ok=True)
    for csv in sorted(package_dir("data").glob("*.csv")):
        shutil.copy(csv, seeds / csv.name)
    (Path(work.working_tree_dir) / ".gitignore").write_text("target/\nlogs/\ndbt_packages/\n*.duckdb\n")
    work.git.add("-A")
    work.index.commit("jaffle_shop dbt project", author=ANALYST, committer=ANALYST)
    work.git.push("origin", "HEAD:refs/heads/main")
    return remote


def create_semantic_repo(root: Path, layout: str = "views") -> Path:
    """The semantic-layer repo over jaffle_shop: Omni's real layout (`omni`: model.yaml, relationships,
    a topic, `omni_dbt_marts/<table>.view.yaml`) or the older `views/<name>.view.yaml` one."""
    path = root / "semantic"
    repo = git.Repo.init(path, initial_branch="main")
    _copy_tree(package_dir("omni" if layout == "omni" else "semantic"), path)
    repo.git.add("-A")
    repo.index.commit("Semantic layer over jaffle_shop", author=ANALYST, committer=ANALYST)
    return path


def _insert_before(text: str, marker: str, addition: str) -> str:
    index = text.index(marker)
    return text[:index] + addition + text[index:]


def analyst_edit(semantic: Path, layout: str = "views") -> str:
    """The analyst adds dimensions (and a measure) and commits, as they would in their BI tool."""
    if layout == "omni":
        orders = semantic / OMNI_ORDERS
        text = _insert_before(orders.read_text(), "\nmeasures:", OMNI_ORDERS_EDIT)
        orders.write_text(_insert_before(text, "\ndbt:", OMNI_ORDERS_MEASURE))
        customers = semantic / OMNI_CUSTOMERS
        customers.write_text(_insert_before(customers.read_text(), "\nmeasures:", OMNI_CUSTOMERS_EDIT))
    else:
        orders = semantic / "views" / "orders.view.yaml"
        text = _insert_before(orders.read_text(), "\nmeasures:", ORDERS_EDIT)
        orders.write_text(text.rstrip("\n") + "\n" + ORDERS_MEASURE)
        customers = semantic / "views" / "customers.view.yaml"
        customers.write_text(_insert_before(customers.read_text(), "\nmeasures:", CUSTOMERS_EDIT))
    repo = git.Repo(semantic)
    repo.git.add("-A")
    return repo.index.commit("Add order size, large orders and customer tier", author=ANALYST,
                             committer=ANALYST).hexsha


def build(remote: Path, branch: str, root: Path, database: Path, schema: str) -> bool:
    """`dbt build` of one branch into its own schema of the shared DuckDB file."""
    checkout = root / f"build-{schema}"
    git.Repo.clone_from(remote, checkout, branch=branch)
    profiles = root / f"profiles-{schema}"
    write_duckdb_profile(profiles, "jaffle_shop", str(database), schema=schema)
    print(f"\n$ dbt build   # branch {branch} -> schema {schema}")
    result = run_dbt(["build"], checkout, profiles)
    summary = [line for line in result.output.splitlines() if "PASS=" in line or "Completed" in line]
    print("  " + ("\n  ".join(s.strip() for s in summary[-2:]) if summary else "\n  ".join(result.error_lines())))
    return result.ok


def verify(semantic: Path, database: Path, result: PushResult) -> bool:
    """Each new dbt column (dev) against the analyst's SQL evaluated directly on the prod tables (a
    joined view's field through its relationship's join): bot.translate.values."""
    reader = RevisionReader(semantic, "semantic-layer repo")
    model = model_reader(reader, "HEAD", format_at(reader, "HEAD"))()
    ok = True
    with DuckDBWarehouse(database) as warehouse:
        for pushed in result.pushed:
            if not pushed.dbt_sql:
                continue
            view_name, _, field_name = pushed.id.partition(".")
            view = model.views[view_name]
            check = values.build(view, view.fields[field_name], pushed.column, built=f"dev.{pushed.model}",
                                 relation=lambda v: f"prod.{v.model_name}", semantic=model)
            outcome = values.run(check, warehouse.query)
            sample = warehouse.query(f"select {check.key}, {pushed.column} from dev.{pushed.model} "
                                     f"order by {check.key} limit 3")
            ok = ok and outcome.ok
            mark = "ok" if outcome.ok else "MISMATCH"
            print(f"  {mark:8} {pushed.model}.{pushed.column}: {outcome.total - outcome.wrong}/{outcome.total} rows "
                  f"equal `{check.expected_sql}` on prod; e.g. {sample}")
    return ok


def command(*words: object) -> str:
    """A `$ layersync …` line that works when pasted into a shell as printed."""
    return "$ " + " ".join(shlex.quote(str(w)) for w in ("layersync", *words))


def demo_root(workdir: Path | None) -> Path:
    """The demo's folder: a new temp dir, or `workdir` when it is new or empty (the demo creates
    repos in it by fixed names, and must never write into someone's files)."""
    if workdir is None:
        return Path(tempfile.mkdtemp(prefix="layersync-demo-"))
    root = Path(workdir)
    if root.exists() and not root.is_dir():
        raise LayersyncError(f"--workdir `{root}` is a file: pass a new or empty folder")
    if root.is_dir() and any(root.iterdir()):
        raise LayersyncError(f"--workdir `{root}` is not empty: pass another folder, or remove it first")
    root.mkdir(parents=True, exist_ok=True)
    return root


def show_body(title: str, body: str) -> None:
    """A PR body as a reviewer reads it on GitHub (the markers stay in what was posted)."""
    rule = "-" * (len(title) + 12)
    print(f"----- {title} -----\n{for_people(body)}\n{rule}")


def run_demo(workdir: Path | None = None, layout: str = "omni") -> int:
    root = demo_root(workdir)
    print(f"layersync demo in {root} ({'Omni model layout' if layout == 'omni' else 'views/ layout'})\n")
    step = progress.current().step
    step("creating the demo's dbt and semantic-layer repos")
    remote = create_dbt_repo(root)
    semantic = create_semantic_repo(root, layout)
    commit = analyst_edit(semantic, layout)
    orders, customers = ("omni_dbt_marts__orders", "omni_dbt_marts__customers") if layout == "omni" else \
        ("orders", "customers")
    measures = f"{orders}.large_order_revenue (a measure)" + (f", {orders}.large_order_share (a ratio of two)"
                                                              if layout == "omni" else "")
    print(f"analyst committed {commit[:12]} to the semantic layer: {orders}.is_large_order, {orders}.order_size, "
          f"{measures}, {customers}.customer_tier\n")
    state = root / "state.sqlite"
    forge = LocalForge(state)
    progress.current().done()
    print(command("push-to-dbt", "--semantic-repo", semantic, "--dbt-repo", remote, "--state-db", state))
    step("push-to-dbt: planning the edits and checking them with dbt")
    result = run(PushRequest(semantic_repo=semantic, dbt_repo=remote), forge)
    progress.current().done()
    from bot.cli import format_push_result

    print(format_push_result(result))
    if result.pr is None or result.branch is None:
        print("demo failed: no PR was opened")
        return 1
    print(f"\n{command('prs', '--state-db', state)}\n{format_pr_table(forge.list_prs())}\n")
    show_body("PR body", result.pr.body)
    database = root / "warehouse.duckdb"
    if not (build(remote, "main", root, database, "prod") and build(remote, result.branch, root, database, "dev")):
        print("demo failed: dbt build failed")
        return 1
    print("\nnew columns on the bot's branch (dev) vs. the semantic SQL on main's tables (prod):")
    if not verify(semantic, database, result):
        print("demo failed: values differ")
        return 1
    # main's commit, not `main`: the demo moves main on below, and the pasted command must still
    # report what the demo printed
    base = git.Repo(remote).commit("main").hexsha[:12]
    print("\n" + command("impact", "--dbt-repo", remote, "--semantic-repo", semantic, "--base", base,
                         "--head", result.branch, "--pr", result.pr.number))
    doc = run_impact(remote, base, result.branch, semantic_repo=semantic, workdir=root / "impact",
                     pr=result.pr.number)
    progress.current().done()
    print(squeeze_blank_lines(to_markdown(doc)).rstrip("\n"))
    if not pull_back(remote, semantic, root, forge):
        return 1
    print(f"demo ok: list its PRs with `{command('prs', '--state-db', state)[2:]}`; "
          f"its repos, PR database and warehouse are in {root}")
    return 0


def pull_back(remote: Path, semantic: Path, root: Path, forge: LocalForge) -> bool:
    """The other direction: the bot's dbt PR merges, then a dbt engineer renames a column on main;
    pull-from-dbt opens the semantic PR that follows the rename (the old name kept as an alias)."""
    from bot.cli import format_pull_result
    from bot.pull_from_dbt import PullJob, run as pull

    work = git.Repo.clone_from(remote, root / "dbt-engineer")
    dbt_pr = forge.list_prs(str(remote))[0]
    work.git.merge(f"origin/{dbt_pr.head}")
    forge.close_pr(str(remote), dbt_pr.number, merged=True)
    sql = root / "dbt-engineer" / "models" / "marts" / "customers.sql"
    yml = root / "dbt-engineer" / "models" / "marts" / "_marts__models.yml"
    sql.write_text(sql.read_text().replace(", 0) as number_of_orders", ", 0) as order_count", 1))
    yml.write_text(yml.read_text().replace("- name: number_of_orders", "- name: order_count", 1))
    work.git.add("-A")
    engineer = git.Actor("A dbt engineer", "engineer@example.com")
    work.index.commit("Rename customers.number_of_orders to order_count", author=engineer, committer=engineer)
    work.git.push("origin", "HEAD:main")
    print(f"\ndbt engineer merged PR #{dbt_pr.number} and renamed customers.number_of_orders -> order_count on main")
    print("\n" + command("pull-from-dbt", "--dbt-repo", remote, "--semantic-repo", semantic, "--head", "main",
                         "--state-db", forge.db_path))
    progress.current().step("pull-from-dbt: reading the dbt change")
    result = pull(PullJob(dbt_repo=remote, semantic_repo=semantic, head="main", dbt_label=str(remote)), forge)
    progress.current().done()
    print(format_pull_result(result))
    if result.pr is None or not any(n.kind == "renamed" for n in result.notes):
        print("demo failed: the rename was not pulled back")
        return False
    show_body("semantic PR body", result.pr.body)
    return True

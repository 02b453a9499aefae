"""Branch previews without dbt: schema names, the registry, the environment file, the guard against
writing outside the preview, commands, pairing over real git remotes, the cancel hook, and the
lifecycle (drop, gc, list) on a real DuckDB file whose schemas are made by hand."""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import git
import pytest
from ruamel.yaml import YAML

from bot.cli import main
from bot.dbt.runner import _watch
from bot.errors import LayersyncError
from bot.forge.local import LocalForge
from bot.handlers import push_command
from bot.handlers.commands import USAGE, Command, CommandError, is_preview, parse_comment
from bot.handlers.context import Context, Settings, denial_marker
from bot.handlers.preview import reply_marker
from bot.handlers.router import Event
from bot.impact.build import Target
from bot.preview.build import file_lock, prod_fingerprint, warehouse_target, writes_outside
from bot.preview.envfile import render_env_file, schema_overrides, view_targets
from bot.preview.gc import drop_preview, list_previews, sizes
from bot.preview.names import (PREVIEW_PREFIX, candidates, check_preview_schema, custom_suffix_reserve,
                               format_age, format_bytes, is_preview_schema, parse_age, preview_schema_name,
                               sanitise)
from bot.preview.pairing import (PreviewError, Remote, check_branch_name, paired_dbt_ref, paired_semantic_ref,
                                 remote_default_branch)
from bot.preview.registry import PreviewCapReached, Registry
from bot.semantic.reader import OmniYamlReader
from bot.service import ROUTER
from bot.service_config import load_service_config
from payloads import delete as delete_payload
from payloads import issue_comment_created, pull_request
from payloads import push as push_payload

PRODLIKE = ["prod", "main", "public", "PROD", "../prod", "prod; drop schema prod", "prod_finance",
            "layersync_preview_x", "x" * 300, "prod\"; drop schema prod; --", "", "___", "Ünïcödé/ブランチ"]


# --------------------------------------------------------------------------- names

def test_names_are_sanitised_bounded_and_never_prod() -> None:
    seen = set()
    for branch in PRODLIKE:
        name = preview_schema_name(branch, protected={"prod", "prod_finance"})
        assert is_preview_schema(name) and name.startswith(PREVIEW_PREFIX) and len(name) <= 63, (branch, name)
        assert name not in {"prod", "main", "public", "prod_finance"} and not name.startswith("prod")
        assert name == preview_schema_name(branch, protected={"prod", "prod_finance"})     # stable
        seen.add(name)
    assert len(seen) == len(PRODLIKE)                                    # all different
    assert preview_schema_name("feature_x") == "layersync_preview_feature_x"   # written as it is: kept
    assert sanitise("Feature/Add-X") == "feature_add_x"


def test_branches_that_sanitise_alike_get_different_schemas() -> None:
    names = {b: preview_schema_name(b) for b in ("feature/x", "feature-x", "Feature/X", "feature_x")}
    assert len(set(names.values())) == 4
    assert names["feature_x"] == "layersync_preview_feature_x"
    assert names["feature/x"].startswith("layersync_preview_feature_x_")   # readable, with a hash of the name


def test_names_avoid_prefix_collisions_with_other_previews_and_protected_schemas() -> None:
    first = preview_schema_name("feat")
    second = preview_schema_name("feat_finance", others=[first])
    assert first == "layersync_preview_feat" and not second.startswith(first + "_") and is_preview_schema(second)
    third = preview_schema_name("feat", others=["layersync_preview_feat_finance"])
    assert third != "layersync_preview_feat" and not "layersync_preview_feat_finance".startswith(third + "_")
    with pytest.raises(ValueError):                          # a prod named like the prefix itself
        preview_schema_name("x", protected={"layersync"})
    long = preview_schema_name("y" * 300, reserve=custom_suffix_reserve("prod", ["prod", "prod_finance"]))
    assert len(long) + len("_finance") <= 63
    assert all(len(c) <= 63 for c in candidates("z" * 500))


@pytest.mark.parametrize("bad", ["prod", "main", "layersync_pr_1", "layersync_preview_", "layersync_preview___",
                                 "layersync_preview_x; drop schema prod", "layersync_preview_" + "a" * 50,
                                 "LAYERSYNC_PREVIEW_X", "layersync_preview_x\"", ""])
def test_only_preview_schemas_pass_the_last_check(bad: str) -> None:
    with pytest.raises(ValueError):
        check_preview_schema(bad, {"prod"})


def test_ages_and_sizes() -> None:
    assert parse_age("7d") == 7 * 86400 and parse_age("12h") == 43200 and parse_age(" 30m ") == 1800
    for bad in ("7", "d", "-1d", "7 days", ""):
        with pytest.raises(ValueError):
            parse_age(bad)
    assert format_age(90) == "1.5m" and format_age(3 * 86400) == "3.0d" and format_age(None) == "-"
    assert format_bytes(None) == "-" and format_bytes(2048) == "2.0 kB"


# --------------------------------------------------------------------------- registry

def test_registry_claims_a_stable_schema_and_a_token_that_supersedes(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "previews.sqlite")
    first = registry.claim("wh", "dbt", "feature/x", "a" * 40)
    assert first.previous is None and first.preview.status == "building"
    schema = first.preview.schema
    assert registry.is_current("wh", schema, first.token)
    second = registry.claim("wh", "dbt", "feature/x", "b" * 40)
    assert second.preview.schema == schema and second.previous.commit == "a" * 40
    assert not registry.is_current("wh", schema, first.token)                  # the older build stops
    assert not registry.finish("wh", schema, first.token, status="ready")      # and records nothing
    assert registry.finish("wh", schema, second.token, status="ready", built=["orders"], built_commit="b" * 40)
    row = registry.get("wh", "dbt", "feature/x")
    assert (row.status, row.built, row.built_commit) == ("ready", ["orders"], "b" * 40)
    assert registry.claim("wh", "dbt", "feature-x", "c" * 40).preview.schema != schema
    assert registry.claim("other-wh", "dbt", "feature/x", "c" * 40).preview.schema == schema   # per warehouse
    with pytest.raises(ValueError):
        registry.finish("wh", schema, second.token, status="done")
    registry.claim("wh", "dbt", "feature/x", "b" * 40, reply=("acme/dbt", 4))      # who asked is remembered
    registry.claim("wh", "dbt", "feature/x", "b" * 40, reply=("acme/semantic", 4), allocate=False)
    registry.claim("wh", "dbt", "feature/x", "b" * 40, reply=("acme/dbt", 4))
    assert registry.get("wh", "dbt", "feature/x").replies == [["acme/dbt", 4], ["acme/semantic", 4]]
    assert registry.claim("wh", "dbt", "nope", "b" * 40, allocate=False, reply=("acme/dbt", 5)) is None
    assert registry.get("wh", "dbt", "nope") is None
    token = registry.revoke("wh", schema)
    assert not registry.is_current("wh", schema, second.token) and registry.remove("wh", schema, token)
    assert registry.get("wh", "dbt", "feature/x") is None


def test_the_cap_is_a_clear_error_and_rebuilds_stay_allowed(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "previews.sqlite")
    registry.claim("wh", "dbt", "a", "1" * 40, cap=2)
    registry.claim("wh", "dbt", "b", "1" * 40, cap=2)
    with pytest.raises(PreviewCapReached) as caught:
        registry.claim("wh", "dbt", "c", "1" * 40, cap=2)
    assert "2 of 2 preview schemas" in str(caught.value) and "`a`, `b`" in str(caught.value)
    assert "--gc --older-than" in str(caught.value)
    with pytest.raises(PreviewCapReached):
        registry.check_cap("wh", "dbt", "c", 2)
    registry.check_cap("wh", "dbt", "a", 2)
    assert registry.claim("wh", "dbt", "a", "2" * 40, cap=2).previous is not None   # a rebuild is no new preview


def test_concurrent_claims_never_share_a_schema(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "previews.sqlite")
    branches = [f"feature/{i % 5}-x" if i % 2 else f"feature-{i % 5}/x" for i in range(40)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        claims = list(pool.map(lambda b: registry.claim("wh", "dbt", b, "1" * 40), branches))
    by_branch = {}
    for branch, claim in zip(branches, claims):
        by_branch.setdefault(branch, set()).add(claim.preview.schema)
    assert all(len(s) == 1 for s in by_branch.values())
    schemas = [s.pop() for s in by_branch.values()]
    assert len(set(schemas)) == len(schemas)
    assert not any(a != b and a.startswith(b + "_") for a in schemas for b in schemas)


# --------------------------------------------------------------------------- environment file, guard

MANIFEST = {"nodes": {
    "model.p.orders": {"resource_type": "model", "name": "orders", "alias": "orders", "schema": "layersync_preview_x",
                       "database": "wh", "config": {"materialized": "table"}, "checksum": {"checksum": "1"}},
    "model.p.fin": {"resource_type": "model", "name": "fin", "alias": "finance_orders",
                    "schema": "layersync_preview_x_finance", "database": "wh", "config": {}, "checksum": {"checksum": "2"}},
    "model.p.eph": {"resource_type": "model", "name": "eph", "alias": "eph", "schema": "analytics", "database": "wh",
                    "config": {"materialized": "ephemeral"}},
    "test.p.t": {"resource_type": "test", "name": "t", "schema": "layersync_preview_x_dbt_test__audit",
                 "database": "wh", "config": {"store_failures": True}},
}}
PROD = {"nodes": {
    "model.p.orders": {"resource_type": "model", "name": "orders", "alias": "orders", "schema": "prod", "config": {},
                       "checksum": {"checksum": "1"}},
    "model.p.fin": {"resource_type": "model", "name": "fin", "alias": "finance_orders", "schema": "prod_finance",
                    "config": {}, "checksum": {"checksum": "2"}},
}}


def _view(text: str, path: str = "views/orders.view.yaml"):
    return OmniYamlReader().read(text, path)


def test_the_environment_file_maps_each_view_to_its_schema_in_the_preview() -> None:
    views = [_view("table_name: ORDERS\nschema: main\ndimensions:\n  id: {}\n"),
             _view("table_name: analytics.finance_orders\ndimensions:\n  a: {}\n", "views/finance.view.yaml"),
             _view("table_name: raw_events\nschema: events\n", "views/events.view.yaml")]
    targets = {t.view: t for t in view_targets(views, MANIFEST)}
    assert (targets["orders"].schema, targets["orders"].table) == ("layersync_preview_x", "orders")
    assert (targets["finance"].schema, targets["finance"].table) == ("layersync_preview_x_finance", "finance_orders")
    assert targets["events"].schema is None
    overrides = schema_overrides(PROD, MANIFEST)
    assert overrides == {"prod": "layersync_preview_x", "prod_finance": "layersync_preview_x_finance"}
    text = render_env_file(environment="layersync_preview_x", branch="feat: x #1", warehouse="/w.duckdb",
                           dbt_commit="a" * 40, semantic_commit=None, overrides=overrides, targets=list(targets.values()))
    doc = YAML(typ="safe").load(text)
    assert doc["branch"] == "feat: x #1" and doc["environment"] == "layersync_preview_x"
    assert doc["views"]["orders"] == {"table_name": "ORDERS", "schema": "layersync_preview_x"}
    assert doc["views"]["events"] == {"table_name": "raw_events", "schema": "events"}     # not a model: as it was
    assert doc["schemas"]["prod_finance"] == "layersync_preview_x_finance"
    assert text.startswith("# layersync preview environment for branch `feat: x #1`")


def test_a_project_that_would_write_outside_the_preview_is_refused() -> None:
    target = Target.duckdb("/tmp/wh.duckdb")
    assert writes_outside(MANIFEST, "layersync_preview_x", target, {"prod"}) == []
    bad = {"nodes": {**MANIFEST["nodes"],
                     "snapshot.p.s": {"resource_type": "snapshot", "name": "s", "alias": "s", "schema": "snapshots",
                                      "database": "wh", "config": {}},
                     "model.p.p": {"resource_type": "model", "name": "p", "alias": "p", "schema": "prod",
                                   "database": "wh", "config": {}},
                     "seed.p.other_db": {"resource_type": "seed", "name": "o", "alias": "o",
                                         "schema": "layersync_preview_x", "database": "elsewhere", "config": {}}}}
    assert writes_outside(bad, "layersync_preview_x", target, {"prod"}) == [
        "elsewhere.layersync_preview_x.o", "wh.prod.p", "wh.snapshots.s"]
    assert prod_fingerprint(PROD) == prod_fingerprint({"nodes": dict(reversed(list(PROD["nodes"].items())))})
    assert prod_fingerprint(PROD) != prod_fingerprint(MANIFEST)


# --------------------------------------------------------------------------- commands

def test_preview_commands() -> None:
    assert parse_comment("/preview") == [Command("preview")] == parse_comment("/layersync preview")
    (bad,) = parse_comment("/preview now please")
    assert isinstance(bad, CommandError) and bad.command == "preview" and is_preview(bad)
    assert "takes no arguments" in bad.reply() and USAGE in bad.reply() and "`/preview`" in USAGE
    assert is_preview(Command("preview")) and not is_preview(Command("push-to-dbt"))
    assert not is_preview(parse_comment("/previewx")[0])
    assert parse_comment("> /preview") == [] and parse_comment("```\n/preview\n```") == []
    assert parse_comment("/push-to-dbt\n/preview") == [Command("push-to-dbt"), Command("preview")]


def test_push_to_dbt_ignores_preview_commands(tmp_path: Path) -> None:
    forge = LocalForge(tmp_path / "state.sqlite")
    pr, _ = forge.open_or_update_pr("acme/semantic", head="feature", base="main", title="t", body="b")
    ctx = Context(forge, Settings(dbt_repo="acme/dbt", semantic_repo="acme/semantic"))
    for body in ("/preview", "/layersync preview", "/preview now"):
        payload = issue_comment_created(number=pr.number, body=body, is_pr=True)
        push_command.router.dispatch(Event("issue_comment", payload), ctx)
    assert forge.list_comments("acme/semantic", pr.number) == []
    push_command.router.dispatch(Event("issue_comment", issue_comment_created(number=pr.number, body="/previewx",
                                                                              is_pr=True)), ctx)
    (usage,) = forge.list_comments("acme/semantic", pr.number)        # not a preview command: push's usage
    assert "`/previewx` is not a command" in usage.body


# --------------------------------------------------------------------------- pairing over real remotes

def test_pairing_reads_branches_from_the_remotes(tmp_path: Path) -> None:
    dbt = git.Repo.init(tmp_path / "dbt.git", bare=True, initial_branch="main")
    sem = git.Repo.init(tmp_path / "semantic", initial_branch="main")
    (tmp_path / "semantic" / "a").write_text("a")
    sem.git.add("-A")
    sem.index.commit("a")
    sem.git.branch("feature/x")
    sem.git.branch("other/feature/x")
    assert paired_semantic_ref(str(tmp_path / "semantic"), "feature/x") == sem.head.commit.hexsha
    assert paired_semantic_ref(Remote.local(tmp_path / "semantic"), "x") is None      # no tail matches
    assert paired_dbt_ref(str(dbt.git_dir), "feature/x") is None
    assert remote_default_branch(Remote.local(tmp_path / "semantic")) == "main"
    for bad in ("../prod", "prod; drop schema prod", "-x", "a\nb", ""):
        with pytest.raises(PreviewError):
            check_branch_name(bad)
    assert check_branch_name("prod") == "prod"
    with pytest.raises(LayersyncError, match="cannot read the branches"):
        paired_dbt_ref(str(tmp_path / "nowhere"), "x")


# --------------------------------------------------------------------------- the cancel hook

# The child must be listening before it is stopped. A hook that fired at a fixed time (0.5 s) raced
# the child's start: SIGINT sent while the interpreter was still starting up, or to a child that
# inherited SIGINT as ignored (a test run started in the background by a non-interactive shell:
# POSIX shells ignore SIGINT for `&` jobs, and an ignored signal stays ignored across exec), was
# lost, and after the grace period SIGTERM ended the child instead. So the child says when its
# SIGINT handler is Python's default one, and the hook fires only then.
SIGINT_READY = ("import signal, time; signal.signal(signal.SIGINT, signal.default_int_handler); "
                "print('ready', flush=True); time.sleep(3600)")


def test_the_cancel_hook_stops_the_process() -> None:
    """An hour-long child: it can only have ended because the hook stopped it (SIGINT first)."""
    process = subprocess.Popen([sys.executable, "-c", SIGINT_READY], stdout=subprocess.PIPE, text=True)
    ready = threading.Event()
    threading.Thread(target=lambda: process.stdout.readline() == "ready\n" and ready.set(), daemon=True).start()
    stopped = threading.Event()
    _watch(process, ready.is_set, stopped, interval=0.05, grace=30)
    assert ready.is_set(), "the child ended before it was ready"
    assert stopped.is_set() and process.returncode == -signal.SIGINT


def test_the_cancel_hook_is_deterministic_when_sigint_is_inherited_ignored() -> None:
    """The flaky case made certain: a test process whose children start with SIGINT ignored."""
    code = ("import signal, subprocess, sys, threading\n"
            "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            "from bot.dbt.runner import _watch\n"
            f"p = subprocess.Popen([sys.executable, '-c', {SIGINT_READY!r}], stdout=subprocess.PIPE, text=True)\n"
            "ready = threading.Event()\n"
            "threading.Thread(target=lambda: p.stdout.readline() == 'ready\\n' and ready.set(), daemon=True).start()\n"
            "stopped = threading.Event()\n"
            "_watch(p, ready.is_set, stopped, interval=0.05, grace=30)\n"
            "print(p.returncode)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == str(-signal.SIGINT), done.stdout + done.stderr


def test_the_cancel_hook_escalates_when_the_process_ignores_sigint_and_sigterm() -> None:
    ignore = ("import signal, sys, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
              "signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(3600)")
    process = subprocess.Popen([sys.executable, "-c", ignore], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "ready\n"           # its handlers are in place
    stopped = threading.Event()
    _watch(process, lambda: True, stopped, interval=0.05, grace=0.5)
    assert stopped.is_set() and process.returncode == -signal.SIGKILL


def test_a_build_stops_when_superseded_or_when_its_branch_moves(tmp_path: Path, monkeypatch) -> None:
    from bot.preview import build

    registry = Registry(tmp_path / "previews.sqlite")
    claim = registry.claim("wh", "dbt", "feature/x", "a" * 40)
    heads = iter(["a" * 40, "b" * 40])
    monkeypatch.setattr(build, "HEAD_POLL_SECONDS", 0.0)
    cancel = build._Canceller(registry, "wh", claim.preview.schema, claim.token, lambda: next(heads), "a" * 40)
    assert not cancel() and cancel() and cancel.reason == "the branch moved on to " + "b" * 12
    deleted = build._Canceller(registry, "wh", claim.preview.schema, claim.token, lambda: None, "a" * 40)
    assert deleted() and deleted.reason == "the branch was deleted"
    quiet = build._Canceller(registry, "wh", claim.preview.schema, claim.token, None, "a" * 40)
    assert not quiet()
    registry.claim("wh", "dbt", "feature/x", "c" * 40)
    assert quiet() and "superseded" in quiet.reason
    with pytest.raises(build.Cancelled):
        quiet.check()


def test_a_busy_duckdb_file_is_reported_not_waited_on(tmp_path: Path) -> None:
    target = Target.duckdb(tmp_path / "wh.duckdb")
    with file_lock(target, exclusive=True):
        with pytest.raises(BlockingIOError):
            with file_lock(target, exclusive=False, wait=False):
                pass


# --------------------------------------------------------------------------- lifecycle without dbt

@pytest.fixture
def warehouse(tmp_path: Path):
    """A DuckDB file with prod (and a prod custom schema) and previews made by hand, registered."""
    path = tmp_path / "wh.duckdb"
    registry = Registry(tmp_path / "previews.sqlite")
    key = warehouse_target(path).describe()
    made = {}
    with duckdb.connect(str(path)) as con:
        con.execute("create schema prod; create table prod.orders as select range as id from range(10)")
        con.execute("create schema prod_finance; create table prod_finance.t as select 1 as x")
        con.execute("create schema layersync_pr_3; create table layersync_pr_3.t as select 1 as x")
        for branch, rows in (("feature/a", 5), ("prod", 7)):
            claim = registry.claim(key, "acme/dbt", branch, "1" * 40, protected={"prod", "prod_finance"})
            schema = claim.preview.schema
            con.execute(f"create schema {schema}; create table {schema}.orders as select range as id from range({rows})")
            con.execute(f"create schema {schema}_finance; create table {schema}_finance.t as select 1 as x")
            con.execute(f"create view {schema}.customers as select * from prod.orders")
            registry.finish(key, schema, claim.token, status="ready", schemas=[schema, f"{schema}_finance"])
            made[branch] = schema
    return path, registry, made


def _schemas(path: Path) -> set[str]:
    with duckdb.connect(str(path), read_only=True) as con:
        return {r[0] for r in con.execute("select schema_name from information_schema.schemata").fetchall()}


def _prod_rows(path: Path) -> int:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute("select count(*) from prod.orders").fetchone()[0]


def test_webhooks_for_branches_named_like_prod_drop_only_their_own_preview(warehouse, tmp_path) -> None:
    path, registry, made = warehouse
    forge = LocalForge(tmp_path / "state.sqlite")
    ctx = Context(forge, Settings(dbt_repo="acme/dbt", semantic_repo="acme/semantic", warehouse=str(path),
                                  preview_db=registry.path))
    before = _schemas(path)
    for ref in ("main", "../prod", "prod; drop schema prod", "prod_finance", "layersync_pr_3", "x" * 300,
                "layersync_preview_prod", "public"):
        ROUTER.dispatch(Event("delete", delete_payload(repo="acme/dbt", ref=ref)), ctx)
        ROUTER.dispatch(Event("push", push_payload(repo="acme/dbt", ref=f"refs/heads/{ref}", after="0" * 40,
                                                   commits=[])), ctx)
    ROUTER.dispatch(Event("pull_request", pull_request("closed", repo="acme/dbt", number=3, head_ref="main",
                                                       merged=True)), ctx)
    assert _schemas(path) == before - {"layersync_pr_3"}            # only the impact handler's own dev schema
    ROUTER.dispatch(Event("delete", delete_payload(repo="acme/dbt", ref="prod")), ctx)   # the branch `prod`
    assert _schemas(path) == before - {"layersync_pr_3", made["prod"], made["prod"] + "_finance"}
    assert {"prod", "prod_finance", made["feature/a"]} <= _schemas(path) and _prod_rows(path) == 10
    ROUTER.dispatch(Event("delete", delete_payload(repo="acme/dbt", ref="v1", ref_type="tag")), ctx)
    ROUTER.dispatch(Event("pull_request", pull_request("closed", repo="acme/dbt", number=4,
                                                       head_ref="feature/a")), ctx)
    assert not {s for s in _schemas(path) if s.startswith(PREVIEW_PREFIX)} and _prod_rows(path) == 10
    assert registry.list() == []


def test_a_tampered_registry_cannot_drop_prod(warehouse) -> None:
    path, registry, made = warehouse
    con = registry._conn()
    con.execute("update previews set schema_name = 'prod', schemas = '[\"prod\", \"prod_finance\"]' "
                "where branch = 'feature/a'")
    with pytest.raises(ValueError):
        drop_preview(registry, Target.duckdb(path), "acme/dbt", "feature/a", prod_schema="prod")
    con.execute(f"update previews set schema_name = '{made['feature/a']}', schemas = '[\"prod_finance\"]' "
                "where branch = 'feature/a'")
    with pytest.raises(ValueError):
        drop_preview(registry, Target.duckdb(path), "acme/dbt", "feature/a", prod_schema="prod")
    assert {"prod", "prod_finance"} <= _schemas(path) and _prod_rows(path) == 10


def test_list_and_gc_on_the_command_line(warehouse, tmp_path, capsys) -> None:
    path, registry, made = warehouse
    assert sizes(Target.duckdb(path), [made["prod"]]) == {made["prod"]: (7, None)}
    rows = {item.preview.branch: item for item in list_previews(registry, lambda w: Target.parse(w))}
    assert (rows["prod"].rows, rows["feature/a"].rows) == (7 + 1, 5 + 1)      # tables only, custom schemas too
    old = time.time() - 9 * 86400
    registry._conn().execute("update previews set created_at = ?, started_at = ?, finished_at = ? "
                             "where branch = 'feature/a'", (old, old, old))
    base = ["preview", "--registry", str(registry.path), "--warehouse", str(path)]
    assert main([*base, "--list"]) == 0
    out = capsys.readouterr().out
    assert "BRANCH" in out and "feature/a" in out and made["prod"] in out and "9.0d" in out and "ready" in out
    assert main([*base, "--list", "--json"]) == 0
    listed = {d["branch"]: d for d in __import__("json").loads(capsys.readouterr().out)}
    assert listed["prod"]["rows"] == 8 and listed["feature/a"]["age_seconds"] > 8 * 86400
    assert main([*base, "--gc", "--older-than", "7d"]) == 0
    assert f"dropped  feature/a  {made['feature/a']}" in capsys.readouterr().out
    assert made["feature/a"] not in _schemas(path) and made["prod"] in _schemas(path) and _prod_rows(path) == 10
    assert main([*base, "--gc", "--older-than", "7d"]) == 0
    assert "no preview" in capsys.readouterr().out
    assert main([*base, "--gc"]) == 2 and main([*base, "--gc", "--older-than", "a week"]) == 2
    assert main([*base, "--list", "--older-than", "7d"]) == 2
    err = capsys.readouterr().err
    assert "--gc needs --older-than" in err and "not an age" in err and "Traceback" not in err
    with file_lock(Target.duckdb(path), exclusive=True):        # a build holds the file: listed anyway
        assert main([*base, "--list"]) == 0
    assert "busy" in capsys.readouterr().out


def test_cli_errors_are_one_line(tmp_path, capsys) -> None:
    dbt = git.Repo.init(tmp_path / "dbt.git", bare=True, initial_branch="main")
    base = ["preview", "--registry", str(tmp_path / "r.sqlite"), "--warehouse", str(tmp_path / "wh.duckdb")]
    assert main([*base, "--branch", "x"]) == 2
    assert main([*base, "--branch", "x", "--dbt-repo", str(tmp_path / "missing")]) == 2
    assert main([*base, "--branch", "../prod", "--dbt-repo", str(dbt.git_dir)]) == 2
    assert main([*base, "--branch", "nope", "--dbt-repo", str(dbt.git_dir)]) == 2
    assert main([*base, "--branch", "nope", "--dbt-repo", str(dbt.git_dir), "--max", "0"]) == 2
    assert main(["preview", "--warehouse", "mysql://x/y", "--registry", str(tmp_path / "r.sqlite"), "--list"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 6 and all(line.startswith("layersync: error: ") for line in err)
    assert "not a valid git branch name" in err[2] and "no branch `nope`" in err[3]
    assert main([*base, "--drop", "--branch", "x", "--dbt-repo", str(dbt.git_dir)]) == 0
    assert "no preview of `x`" in capsys.readouterr().out


def test_settings_for_previews() -> None:
    env = {"LAYERSYNC_WEBHOOK_SECRET": "s", "LAYERSYNC_DBT_REPO": "a/b", "LAYERSYNC_SEMANTIC_REPO": "a/c",
           "LAYERSYNC_FORGE": "local"}
    config = load_service_config({**env, "LAYERSYNC_PREVIEW_MAX": "3", "LAYERSYNC_PREVIEW_DB": "/x/p.sqlite"})
    assert config.preview_max == 3 and config.preview_db == Path("/x/p.sqlite")
    assert load_service_config(env).preview_max == 10
    with pytest.raises(LayersyncError, match="LAYERSYNC_PREVIEW_MAX"):
        load_service_config({**env, "LAYERSYNC_PREVIEW_MAX": "zero"})


# --------------------------------------------------------------------------- `/preview` replies without a build

@pytest.fixture
def dbt_world(repos, tmp_path):
    forge = LocalForge(repos.state_db)
    pr, _ = forge.open_or_update_pr(str(repos.remote), head="main", base="main", title="t", body="b")
    ctx = Context(forge, Settings(dbt_repo=str(repos.remote), semantic_repo=str(repos.semantic),
                                  warehouse=str(tmp_path / "wh.duckdb"), preview_db=tmp_path / "p.sqlite",
                                  preview_max=1))
    return repos, forge, pr, ctx


def _comment(repo: str, number: int, body: str, user: str = "ada", is_pr: bool = True, **kw) -> dict:
    return issue_comment_created(repo=repo, number=number, body=body, user=user, is_pr=is_pr, **kw)


def test_preview_replies_that_need_no_build(dbt_world) -> None:
    repos, forge, pr, ctx = dbt_world
    repo = str(repos.remote)
    forge.set_permission(repo, "mallory", "read")
    ROUTER.dispatch(Event("issue_comment", _comment(repo, pr.number, "/preview", user="mallory")), ctx)
    (denial,) = forge.list_comments(repo, pr.number)
    assert denial_marker(pr.number) in denial.body and "needs write access" in denial.body and "`read`" in denial.body
    assert reply_marker(pr.number) not in denial.body              # a reader's refusal never overwrites the preview's
    ROUTER.dispatch(Event("issue_comment", _comment(repo, pr.number, "/preview now", user="mallory")), ctx)
    assert forge.list_comments(repo, pr.number) == [denial]        # and a reader's mistake gets no reply at all
    ROUTER.dispatch(Event("issue_comment", _comment(repo, pr.number, "/preview now")), ctx)
    _, reply = forge.list_comments(repo, pr.number)
    assert "takes no arguments" in reply.body and "**layersync commands**" in reply.body
    ROUTER.dispatch(Event("issue_comment", _comment(repo, pr.number, "/preview", user="layersync[bot]",
                                                    user_type="Bot")), ctx)
    issue, _ = forge.open_or_update_pr(repo, head="issue", base="main", title="t", body="b")   # its number
    ROUTER.dispatch(Event("issue_comment", _comment(repo, issue.number, "/preview", is_pr=False)), ctx)
    (issue_reply,) = forge.list_comments(repo, issue.number)
    assert "works on pull requests" in issue_reply.body
    forge.close_pr(repo, pr.number)
    ROUTER.dispatch(Event("issue_comment", _comment(repo, pr.number, "/preview")), ctx)
    _, reply = forge.list_comments(repo, pr.number)                                       # edited in place
    assert "This PR is closed" in reply.body
    ROUTER.dispatch(Event("issue_comment", _comment("acme/elsewhere", 1, "/preview")), ctx)   # not ours: no reply
    assert [p.repo for p in forge.list_prs()] == [repo, repo]         # (a reply there would have raised: no such PR)


def test_the_cap_is_a_clear_reply(dbt_world) -> None:
    repos, forge, pr, ctx = dbt_world
    registry = Registry(ctx.settings.preview_db)
    registry.claim(warehouse_target(ctx.settings.warehouse).describe(), str(repos.remote), "other", "1" * 40)
    work = git.Repo.clone_from(repos.remote, repos.root / "work")
    work.git.checkout("-b", "feature/capped")
    work.git.commit("--allow-empty", "-m", "x")
    work.git.push("origin", "feature/capped")
    capped, _ = forge.open_or_update_pr(str(repos.remote), head="feature/capped", base="main", title="t", body="b")
    ROUTER.dispatch(Event("issue_comment", _comment(str(repos.remote), capped.number, "/preview")), ctx)
    (reply,) = forge.list_comments(str(repos.remote), capped.number)
    assert "🚫 No preview: the preview limit is reached: 1 of 1 preview schemas exist (`other`)" in reply.body
    assert "Traceback" not in reply.body


# --------------------------------------------------------------------------- what people read

def test_replies_and_cli_lines_for_every_outcome() -> None:
    from bot.preview.build import PreviewResult
    from bot.preview.report import to_markdown, to_text

    base = dict(branch="feature/x", warehouse="/w.duckdb", schema="layersync_preview_feature_x_1a2b3c4d",
                dbt_commit="c" * 40, built=["orders"], schemas=["layersync_preview_feature_x_1a2b3c4d"],
                override={"warehouse": "/w.duckdb", "schemas": {"prod": "layersync_preview_feature_x_1a2b3c4d"}},
                env_file={"path": "environments/x.yaml", "text": "environment: x\n"}, seconds=12.5)
    build = {"ok": True, "built": ["orders"], "failed": [], "skipped": [], "failed_tests": [], "errors": [],
             "seconds": 4.0}
    ready = PreviewResult(status="ready", mode="incremental", build=build, **base)
    text = to_markdown(ready, reply_marker(3))
    assert text.startswith(reply_marker(3)) and "✅ `feature/x` @ `cccccccccccc`" in text
    assert "incremental: only what changed" in text and "12.5 s, of which `dbt build` 4.0 s" in text
    assert "`prod` → `layersync_preview_feature_x_1a2b3c4d`" in text and "```yaml\nenvironment: x\n```" in text
    assert ready.ok and "connect  schema prod -> layersync_preview_feature_x_1a2b3c4d" in to_text(ready)

    tests_fail = PreviewResult(status="ready", mode="full", build={**build, "ok": False, "failed_tests": ["unique_x"]},
                               **base)
    assert not tests_fail.ok and "⚠️ Every model built, but data tests fail: `unique_x`" in to_markdown(tests_fail)
    failed = PreviewResult(status="failed", mode="full", message="dbt build failed: boom",
                           build={**build, "ok": False, "failed": ["orders"], "errors": ["model orders: boom"]}, **base)
    assert "❌ `dbt build` of `cccccccccccc`" in to_markdown(failed) and "model orders: boom" in to_markdown(failed)
    assert "error    model orders: boom" in to_text(failed) and not failed.ok
    cancelled = PreviewResult(status="cancelled", message="cancelled: the branch moved on to dddddddddddd", **base)
    assert "⏹️ The build of `cccccccccccc` was cancelled: the branch moved on" in to_markdown(cancelled)
    broken = {"branch": "feature/x", "commit": "e" * 40, "paired": True, "views": 2, "unmatched": ["events"],
              "problems": ["views/bad.view.yaml:3: invalid YAML"],
              "broken": [{"field": "orders.x", "file": "views/orders.view.yaml", "line": 9, "reason": "no | column"}]}
    lone = PreviewResult(status="semantic-only", message="there is no dbt branch `feature/x`: nothing to build",
                         branch="feature/x", warehouse="/w.duckdb", semantic=broken, prod={"schema": "prod"})
    text = to_markdown(lone)
    assert "ℹ️ There is no dbt branch `feature/x`" in text and "(`prod`)" in text and not lone.ok
    assert "| `orders.x` | views/orders.view.yaml:9 | no / column |" in text and "not read: views/bad.view.yaml:3" in text
    assert "not on a dbt model (left as they are): `events`" in text and "_Rebuilt on every push" not in text
    assert "broken   orders.x views/orders.view.yaml:9: no | column" in to_text(lone)

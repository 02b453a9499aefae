"""Progress on long work: dbt's node count read from its structured log, shown as a person's terminal,
a log file and the service each want it."""
from __future__ import annotations

import io
import logging
import shutil
from pathlib import Path

import pytest

from bot import progress
from bot.dbt.runner import read_event, run_dbt, write_duckdb_profile


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def step(self, text: str) -> None:
        self.events.append(("step", text))

    def node(self, index: int, total: int, text: str, status: str | None = None) -> None:
        self.events.append(("node", index, total, text, status))

    def done(self, ok: bool = True) -> None:
        self.events.append(("done", ok))


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory) -> tuple[Recorder, object]:
    """One real `dbt build` of a three-model project (one failing, its child skipped), recorded."""
    root = tmp_path_factory.mktemp("tiny")
    (root / "models").mkdir()
    (root / "dbt_project.yml").write_text("name: tiny\nversion: '1.0'\nconfig-version: 2\nprofile: tiny\n")
    (root / "models" / "a.sql").write_text("select 1 as id\n")
    (root / "models" / "b.sql").write_text("select id, no_such_column from {{ ref('a') }}\n")
    (root / "models" / "c.sql").write_text("select * from {{ ref('b') }}\n")
    write_duckdb_profile(root / "profiles", "tiny", str(root / "tiny.duckdb"), schema="dev")
    recorder = Recorder()
    logged: list[str] = []
    with progress.reporting(recorder):
        run = run_dbt(["build"], root, root / "profiles", log=logged.append)
    shutil.rmtree(root, ignore_errors=True)
    return recorder, run


@pytest.mark.slow
def test_a_dbt_build_reports_its_step_and_every_node(tiny_build) -> None:
    recorder, run = tiny_build
    assert recorder.events[0] == ("step", "dbt build -> schema dev")
    nodes = [e[1:] for e in recorder.events if e[0] == "node"]
    assert nodes == [(1, 3, "model a", None), (1, 3, "model a", "ok"),
                     (2, 3, "model b", None), (2, 3, "model b", "error"), (3, 3, "model c", "skipped")]
    assert recorder.events[len(nodes) + 1] == ("done", False)      # the run ends its step, failed


@pytest.mark.slow
def test_the_output_is_dbts_text_not_its_json(tiny_build) -> None:
    _, run = tiny_build
    assert not run.ok
    assert not any(line.lstrip().startswith("{") for line in run.output.splitlines())
    assert "Done. PASS=1 WARN=0 ERROR=1 SKIP=1" in run.output
    assert any("no_such_column" in line for line in run.error_lines())


def test_a_line_that_is_not_dbts_json_is_kept_as_it_is() -> None:
    assert read_event("Traceback (most recent call last):\n") == (["Traceback (most recent call last):"], None)
    assert read_event('{"not": "an event"}') == (['{"not": "an event"}'], None)
    line = ('{"info": {"name": "LogTestResult", "msg": "3 of 9 FAIL 2 unique_orders_order_id"}, "data": '
            '{"index": 3, "num_models": 9, "status": "fail", "node_info": {"resource_type": "test", '
            '"node_name": "unique_orders_order_id"}}}')
    assert read_event(line) == (["3 of 9 FAIL 2 unique_orders_order_id"], (3, 9, "test unique_orders_order_id", "fail"))
    skipped = ('{"info": {"name": "SkippingDetails", "msg": "17 of 50 SKIP test not_null_x"}, "data": {"index": 17, '
               '"total": 50, "node_name": "not_null_x", "resource_type": "test"}}')     # as dbt 1.11 writes it
    assert read_event(skipped)[1] == (17, 50, "test not_null_x", "skipped")


def test_plain_lines_off_a_terminal_and_nothing_when_quiet() -> None:
    out = io.StringIO()
    shown = progress.for_terminal(stream=out, environ={})
    assert isinstance(shown, progress.Lines)
    shown.step("dbt build -> schema prod")
    shown.node(1, 12, "model orders")              # a start: a log gets the result only
    shown.node(1, 12, "model orders", "ok")
    assert out.getvalue() == "  … dbt build -> schema prod\n    [ 1/12] model orders ok\n"
    assert isinstance(progress.for_terminal(quiet=True, stream=out), progress.Silent)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_live_line_but_not_in_ci() -> None:
    assert isinstance(progress.for_terminal(stream=FakeTerminal(), environ={"TERM": "xterm"}), progress.Live)
    assert isinstance(progress.for_terminal(stream=FakeTerminal(), environ={"CI": "true"}), progress.Lines)
    screen = FakeTerminal()
    live = progress.Live(screen)
    live.step("dbt build -> schema dev")
    live.node(3, 36, "model orders")
    live.node(3, 36, "model orders", "ok")
    live.done(True)
    assert "✓ dbt build -> schema dev (3 nodes)" in screen.getvalue()


def test_the_service_logs_each_jobs_progress(caplog) -> None:
    from bot.jobs.queue import Job
    from bot.service import JobHandler

    class Router:
        def dispatch(self, event, context) -> None:
            progress.current().step("dbt build -> schema layersync_pr_3")
            progress.current().node(12, 36, "model orders", "ok")

    job = Job(id=7, delivery_id="d", event="pull_request", payload={}, key="k", attempts=1, state="running",
              not_before=0.0, last_error=None, created_at=0.0)
    with caplog.at_level(logging.INFO, logger="layersync.service"):
        JobHandler(context=None, router=Router())(job)
    assert [r.getMessage() for r in caplog.records] == [
        "job 7 (pull_request): dbt build -> schema layersync_pr_3", "job 7 (pull_request): [12/36] model orders ok"]
    assert isinstance(progress.current(), progress.Silent)          # the job's reporter ends with the job


def test_serve_logs_carry_no_colour_codes_in_a_file(tmp_path) -> None:
    import threading
    import urllib.request

    from webhooks.server import make_receiver_server

    def app(environ, start_response):
        start_response("404 NOT FOUND", [("Content-Length", "0")])
        return [b""]

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    werkzeug = logging.getLogger("werkzeug")
    werkzeug.addHandler(handler)
    level = werkzeug.level
    werkzeug.setLevel(logging.INFO)
    server = make_receiver_server("127.0.0.1", 0, app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(Exception):
            urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/nope", timeout=10)
    finally:
        server.shutdown()
        werkzeug.removeHandler(handler)
        werkzeug.setLevel(level)
    assert '"GET /nope HTTP/1.1" 404' in stream.getvalue()
    assert "\x1b[" not in stream.getvalue()

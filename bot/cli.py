"""`layersync` command line: push-to-dbt, pull-from-dbt, impact, preview, prs, demo, serve and worker.
Errors are one line and an exit code; progress goes to stderr, results to stdout."""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Sequence

from bot import progress, redact
from bot.errors import LayersyncError
from bot.service_config import data_dir

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2


def default_state_db() -> Path:
    """The local forge's PR records; XDG's data dir, like other per-user tools keep state."""
    if os.environ.get("LAYERSYNC_STATE_DB"):
        return Path(os.environ["LAYERSYNC_STATE_DB"])
    return data_dir() / "state.sqlite"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, as the contract says
        self.exit(EXIT_USAGE, redact.scrub(f"{self.prog}: error: {message}") + "\n")   # it may echo an argument


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("layersync")
    except PackageNotFoundError:       # run from a source tree that was never installed
        return "unknown"


def _command(sub, name: str, summary: str, details: str = "") -> argparse.ArgumentParser:
    """A subcommand whose `--help` starts with what it does (the summary is also its line in
    `layersync --help`)."""
    return sub.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + "."
                          + (f" {details}" if details else ""))


def _quiet_option(parser: argparse.ArgumentParser) -> None:
    """Long work shows what runs and how far it is on stderr (a live line on a terminal)."""
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress on stderr (results and errors are still printed)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="layersync", description="Keep a dbt project and a BI semantic layer in step.")
    parser.add_argument("--version", action="version", version=f"layersync {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    push = _command(sub, "push-to-dbt", "push semantic-layer fields into the dbt project as a PR",
                    "Each field becomes a column of its dbt model, documented in the model's YAML and "
                    "checked with dbt before anything is pushed.")
    push.add_argument("--semantic-repo", type=Path, required=True, help="path of the semantic-layer git repo")
    push.add_argument("--dbt-repo", type=Path, required=True,
                      help="path of the dbt repo (a bare remote, or a clone whose origin is pushed to)")
    _path_options(push)
    push.add_argument("--field", action="append", default=[], metavar="VIEW.FIELD",
                      help="a field to push (repeatable); default: every field changed since --since")
    push.add_argument("--since", metavar="REV", help="semantic-repo revision to diff against (default: HEAD~1)")
    push.add_argument("--base", metavar="BRANCH", help="dbt branch the PR targets (default: the remote's default)")
    push.add_argument("--dialect", help="SQL dialect of the semantic layer (default: layersync.yml, else duckdb)")
    push.add_argument("--dbt-dialect", help="SQL dialect of the dbt project (default: layersync.yml, else duckdb)")
    push.add_argument("--profiles-dir", type=Path, help="dbt profiles dir for a static check (`dbt compile`); "
                      "default: the touched models are built with zero rows in a scratch DuckDB")
    _prod_options(push, "default: dbt parse of the base branch", schema_default="prod")
    push.add_argument("--state-db", type=Path, default=None,
                      help="local forge database (default: $LAYERSYNC_STATE_DB, else ~/.local/share/layersync/state.sqlite)")
    push.add_argument("--no-parity", dest="parity", action="store_false",
                      help="pushed metrics: skip the build of the branch that compares mf query with the BI numbers")
    push.add_argument("--warehouse", metavar="PATH|DSN",
                      help="a DuckDB file or postgresql:// DSN for the builds: the check builds the touched models "
                           "with zero rows in a scratch schema there, reading unchanged parents from prod (never "
                           "written), and pushed metrics' parity build goes there (default: a scratch DuckDB)")
    push.add_argument("--as-model", metavar="NAME",
                      help="write one dbt model NAME aggregating the measures (--field, default: the changed ones) "
                           "by --group-by, checked with dbt build and compared with the BI definition")
    push.add_argument("--group-by", action="append", default=[], metavar="VIEW.DIM",
                      help="with --as-model: a dimension to group by (repeatable; of the view or of one it joins "
                           "many_to_one); VIEW.DIM:GRAIN truncates a time dimension")
    push.add_argument("--grain", choices=("day", "week", "month", "quarter", "year"),
                      help="with --as-model: also group by the view's time dimension at this grain")
    push.add_argument("--json", action="store_true", help="print a machine-readable result")
    push.add_argument("-v", "--verbose", action="store_true", help="stream dbt's output to stderr")
    _quiet_option(push)

    pull = _command(sub, "pull-from-dbt", "open a semantic-layer PR that follows a dbt change",
                    "New columns become dimensions, renames are followed, removed columns mark the "
                    "fields they break.")
    pull.add_argument("--dbt-repo", type=Path, required=True, help="path of the dbt git repo")
    pull.add_argument("--semantic-repo", type=Path, required=True,
                      help="path of the semantic-layer repo (a bare remote, or a clone whose origin is pushed to)")
    _path_options(pull)
    pull.add_argument("--since", metavar="REV", help="dbt revision to diff against (default: the head's parent)")
    pull.add_argument("--head", default="HEAD", metavar="REV", help="dbt revision to follow (default: HEAD)")
    pull.add_argument("--dry-run", action="store_true", help="plan only: no branch, no PR")
    pull.add_argument("--warehouse", metavar="PATH|DSN",
                      help="read new columns' types from prod's relations in this DuckDB file or postgresql:// DSN "
                           "(read-only; default: dbt's data_type, else the type the SQL makes certain)")
    _prod_options(pull, "a catalog.json beside it gives column types too", schema_default="prod")
    pull.add_argument("--state-db", type=Path, default=None,
                      help="local forge database (default: $LAYERSYNC_STATE_DB, else ~/.local/share/layersync/state.sqlite)")
    pull.add_argument("--json", action="store_true", help="print a machine-readable result")
    _quiet_option(pull)

    prs = _command(sub, "prs", "list pull requests recorded by the local forge",
                   "The local forge keeps the PRs that push-to-dbt, pull-from-dbt and the demo open "
                   "when no GitHub is configured.")
    prs.add_argument("--repo", help="only this repo (the remote's path)")
    prs.add_argument("--state", choices=["open", "closed", "merged"], help="only PRs in this state")
    prs.add_argument("--state-db", type=Path, default=None, metavar="FILE",
                     help="local forge database (default: $LAYERSYNC_STATE_DB, else ~/.local/share/layersync/state.sqlite)")
    prs.add_argument("--json", action="store_true", help="print a machine-readable list")
    prs.add_argument("--show", type=int, metavar="N",
                     help="print PR N's body as a person reads it (needs --repo if several repos)")
    prs.add_argument("--raw", action="store_true", help="with --show: the body as posted, hidden markers included")

    serve = _command(sub, "serve", "run the GitHub webhook receiver (and optionally the worker)",
                     "Settings come from LAYERSYNC_* environment variables and --config.")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on (default: 8080; 0 picks a free one)")
    serve.add_argument("--with-worker", action="store_true", help="also run the job worker in this process")
    serve.add_argument("--threads", type=int, default=2, help="worker threads (with --with-worker)")
    serve.add_argument("--config", type=Path, help="YAML settings file (environment variables win)")

    worker = _command(sub, "worker", "run the job worker",
                      "It runs the jobs the receiver queued: pushes, pulls, impact reports, previews.")
    worker.add_argument("--threads", type=int, default=2, help="jobs run at once (default: 2)")
    worker.add_argument("--config", type=Path, help="YAML settings file (environment variables win)")

    impact = _command(sub, "impact", "build base and head of the dbt repo, compare dev with prod, report",
                      "Lineage, schema changes, row counts, value diffs and the semantic layer's measures.")
    impact.add_argument("--dbt-repo", type=Path, required=True,
                        help="path of the dbt git repo (a bare remote, or a clone)")
    impact.add_argument("--semantic-repo", type=Path, help="semantic-layer repo whose measures are compared")
    _path_options(impact)
    impact.add_argument("--base", required=True, metavar="REV", help="dbt revision built into prod")
    impact.add_argument("--head", required=True, metavar="REV", help="dbt revision built into the dev schema")
    impact.add_argument("--json", type=Path, metavar="FILE", help="write the JSON report here")
    impact.add_argument("--markdown", type=Path, metavar="FILE", help="write the Markdown report here")
    impact.add_argument("--workdir", type=Path, help="keep checkouts and the DuckDB file here")
    impact.add_argument("--pr", help="PR number (names the dev schema layersync_pr_<n>)")
    impact.add_argument("--warehouse", metavar="PATH|DSN",
                        help="a DuckDB file or a postgresql:// DSN (default: a scratch DuckDB in the workdir)")
    _prod_options(impact, "default: dbt parse of --base", schema_default="prod")
    impact.add_argument("--build-prod", action="store_true",
                        help="build --base into the prod schema first (only for a warehouse layersync owns; "
                             "implied when --warehouse is not given)")
    impact.add_argument("--fail-on-measure-move", type=float, metavar="PCT",
                        help="fail when a measure's total moves more than PCT percent")
    _quiet_option(impact)

    demo = _command(sub, "demo", "run push-to-dbt end to end on a generated jaffle_shop project",
                    "It builds both branches with dbt, checks every new column against the analyst's SQL, "
                    "prints the impact report, then pulls a dbt rename back into the semantic layer.")
    demo.add_argument("--workdir", type=Path,
                      help="keep the demo's repos here instead of a temp dir (a new or empty folder)")
    demo.add_argument("--layout", choices=("omni", "views"), default="omni",
                      help="the semantic model's layout: Omni's own (default) or the older views/ folder")
    _quiet_option(demo)
    _add_preview_parser(sub)
    return parser


def _path_options(parser: argparse.ArgumentParser) -> None:
    """Monorepos: where in each repository the semantic model and the dbt project are."""
    parser.add_argument("--semantic-path", metavar="DIR", default="",
                        help="folder of the semantic-layer repo holding the semantic model, relative to its root "
                             "(default: the root); layersync.yml is read there first, then at the root")
    parser.add_argument("--dbt-path", metavar="DIR", default="",
                        help="folder of the dbt repo holding dbt_project.yml, relative to its root (default: the root)")


def _folders(args: argparse.Namespace) -> tuple[str, str]:
    """`--semantic-path` and `--dbt-path` checked (relative, no `..`): a bad one is a one-line error."""
    from bot.repo_paths import subdir

    return subdir(args.semantic_path, "--semantic-path"), subdir(args.dbt_path, "--dbt-path")


def _cmd_push(args: argparse.Namespace) -> int:
    from bot.forge.local import LocalForge
    from bot.push_to_dbt import PushRequest, run

    for label, path in (("--semantic-repo", args.semantic_repo), ("--dbt-repo", args.dbt_repo)):
        if not path.exists():
            raise LayersyncError(f"{label} `{path}` does not exist")
    _require_paths(profiles_dir=args.profiles_dir)
    semantic_path, dbt_path = _folders(args)
    forge = LocalForge(args.state_db or default_state_db())
    request = PushRequest(semantic_repo=args.semantic_repo, dbt_repo=args.dbt_repo, fields=args.field,
                          since=args.since, base=args.base, dialect=args.dialect, dbt_dialect=args.dbt_dialect,
                          profiles_dir=args.profiles_dir, semantic_path=semantic_path, dbt_path=dbt_path,
                          parity=args.parity, warehouse=args.warehouse, prod_schema=args.prod_schema,
                          prod_state=args.prod_state)
    def log(line: str) -> None:
        if args.verbose:
            print(f"  dbt | {line}", file=sys.stderr)

    if args.as_model is not None or args.group_by or args.grain:
        from bot import push_as_model

        if args.as_model is None:
            raise LayersyncError("--group-by and --grain go with --as-model NAME")
        as_model = push_as_model.AsModelRequest(request, args.as_model, args.group_by, args.grain)
        return _emit(push_as_model.run(as_model, forge, log=log), args.json, push_as_model.format_text)
    return _emit(run(request, forge, log=log), args.json, format_push_result)


def _emit(result, as_json: bool, text) -> int:
    """A job's result as JSON or as text (scrubbed: it quotes dbt and git), and its exit code."""
    print(redact.scrub(json.dumps(result.to_json(), indent=2) if as_json else text(result)))
    return result.exit_code


def _require_paths(**paths: Path | None) -> None:
    for flag, path in paths.items():
        if path is not None and not path.exists():
            raise LayersyncError(f"--{flag.replace('_', '-')} `{path}` does not exist")


def format_push_result(result) -> str:
    lines = []
    for p in result.pushed:
        lines.append(f"pushed   {p.id} -> {p.model}.{p.column} ({p.action})")
    lines += _metric_lines(getattr(result, "metrics", []))
    for s in result.skipped:
        where = f"{s.file}:{s.line}: " if s.file and s.line else (f"{s.file}: " if s.file and s.file != s.id else "")
        lines.append(f"skipped  {s.id}: {where}{s.reason}")
    return "\n".join(lines + _outcome_lines(result, 9, " (no new commit)"))


def _metric_lines(metrics) -> list[str]:
    """A pushed measure, its MetricFlow metric and its parity rows (✓/✗: mf query vs the BI definition)."""
    lines = []
    for m in metrics:
        lines.append(f"pushed   {m.id} -> metric {m.metric} in semantic model {m.semantic_model} ({m.kind}, {m.action})")
        for row in m.parity or ():
            group = "total" if row["group"] is None else ", ".join(f"{k} = {v}" for k, v in row["group"].items())
            lines.append(f"         {'✓' if row['ok'] else '✗'} {group}: dbt {row['dbt']}  bi {row['bi']}")
    return lines


def _outcome_lines(result, width: int, no_commit: str) -> list[str]:
    """The branch, the PR and the message a job ends with, labels padded to `width`."""
    lines = []
    if result.branch:
        lines.append(f"{'branch':<{width}}{result.branch}" + (f" @ {result.commit[:12]}" if result.commit else no_commit))
    if result.pr:
        lines.append(f"{'PR':<{width}}#{result.pr.number} {result.pr.url} ({result.message})")
    elif result.message:
        lines.append(result.message)
    return lines


def _prod_options(parser: argparse.ArgumentParser, state_note: str, schema_default: str | None = None) -> None:
    """Where prod is: the commands that read it name it the same way."""
    parser.add_argument("--prod-schema", default=schema_default, metavar="SCHEMA",
                        help="the schema your prod target builds into (default: prod)")
    parser.add_argument("--prod-state", type=Path, metavar="PATH",
                        help=f"prod's manifest.json (or its folder) from your deploy job; {state_note}")


def _cmd_pull(args: argparse.Namespace) -> int:
    from bot.forge.local import LocalForge
    from bot.impact.prod import ProdEnv
    from bot.pull_from_dbt import PullJob, run

    _require_paths(dbt_repo=args.dbt_repo, semantic_repo=args.semantic_repo)
    semantic_path, dbt_path = _folders(args)
    job = PullJob(dbt_repo=args.dbt_repo, semantic_repo=args.semantic_repo, head=args.head, since=args.since,
                  dry_run=args.dry_run, warehouse=args.warehouse,
                  prod=ProdEnv(schema=args.prod_schema, state=args.prod_state),
                  semantic_path=semantic_path, dbt_path=dbt_path)
    return _emit(run(job, LocalForge(args.state_db or default_state_db())), args.json, format_pull_result)


def format_pull_result(result) -> str:
    lines = [f"{n.kind:<16} {n.field or ''}{': ' if n.field else ''}{n.text}"
             + (f" ({n.file}:{n.line})" if n.file and n.line else "") for n in result.notes]
    return "\n".join(lines + _outcome_lines(result, 17, ""))


def _cmd_prs(args: argparse.Namespace) -> int:
    from bot.forge.local import LocalForge, format_pr_table
    from bot.readable import for_people

    path = args.state_db or default_state_db()
    if path.is_dir():
        raise LayersyncError(f"--state-db `{path}` is a folder: name the database file (state.sqlite)")
    if not path.is_file():
        if args.state_db is not None:       # a typo must not become a new, empty database
            raise LayersyncError(f"--state-db `{path}` does not exist (the demo prints the path of its own)")
        print("[]" if args.json else f"no pull requests (no local forge database at {path} yet)")
        return EXIT_OK
    if args.raw and args.show is None:
        raise LayersyncError("--raw goes with --show N")
    forge = LocalForge(path)
    try:
        prs = forge.list_prs(args.repo, args.state)
    except sqlite3.DatabaseError as exc:
        raise LayersyncError(f"`{path}` is not a layersync state database ({exc})") from None
    if args.show is not None:
        matches = [pr for pr in prs if pr.number == args.show]
        if len(matches) != 1:
            raise LayersyncError(f"PR #{args.show} " + ("not found" if not matches else "exists in several repos: add --repo"))
        print(matches[0].body if args.raw else for_people(matches[0].body))
        return EXIT_OK
    if args.json:
        print(json.dumps([pr.__dict__ for pr in prs], indent=2))
    else:
        print(format_pr_table(prs) if prs else "no pull requests")
    return EXIT_OK


def _cmd_impact(args: argparse.Namespace) -> int:
    from bot.impact.prod import ProdEnv
    from bot.impact.report import to_markdown
    from bot.impact.run import run_impact
    from bot.readable import squeeze_blank_lines

    _require_paths(dbt_repo=args.dbt_repo, semantic_repo=args.semantic_repo)
    semantic_path, dbt_path = _folders(args)
    doc = run_impact(args.dbt_repo, args.base, args.head, semantic_repo=args.semantic_repo, workdir=args.workdir,
                     semantic_path=semantic_path, dbt_path=dbt_path,
                     pr=args.pr, max_measure_move_pct=args.fail_on_measure_move, warehouse=args.warehouse,
                     prod=ProdEnv(schema=args.prod_schema, state=args.prod_state,
                                  build=args.build_prod or args.warehouse is None))
    markdown = squeeze_blank_lines(to_markdown(doc))
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2, default=str))
    if args.markdown:
        args.markdown.write_text(markdown)
    if not args.markdown:
        print(markdown)
    return EXIT_OK if doc["status"]["state"] == "success" else EXIT_PARTIAL


def _cmd_demo(args: argparse.Namespace) -> int:
    from bot.demo.run import run_demo

    return run_demo(args.workdir, args.layout)


def _worker(config, threads: int):
    """The job worker for a service config, and the event that stops it."""
    import threading

    from bot.jobs.queue import JobQueue
    from bot.jobs.worker import Worker
    from bot.service import build_handler

    config.queue_db.parent.mkdir(parents=True, exist_ok=True)
    handler = build_handler(config)
    worker = Worker(JobQueue(config.queue_db), handler, threads=threads, on_failure=handler.on_failure,
                    lease_seconds=config.lease_seconds)
    return worker, threading.Event()


def configure_logging() -> None:
    """The service's log lines, each scrubbed of secrets (`bot.redact`) by the handler that writes it."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    redact.install_log_scrubber()


def _scrub_last_resort_logs() -> None:
    """The one-shot commands configure no logging: Python then prints warnings through its
    last-resort handler, which must scrub them too."""
    import logging

    last = logging.lastResort
    if last is not None and not isinstance(last.formatter, redact.ScrubbingFormatter):
        last.setFormatter(redact.ScrubbingFormatter(last.formatter))


def _scrubbed_traceback(kind, value, tb) -> None:
    """A crash the commands did not foresee still prints no secret (its message may quote one)."""
    import traceback

    sys.stderr.write(redact.scrub("".join(traceback.format_exception(kind, value, tb))))


def _service_config(args: argparse.Namespace):
    from bot.service_config import load_service_config

    configure_logging()
    config = load_service_config(config_file=args.config)
    config.queue_db.parent.mkdir(parents=True, exist_ok=True)
    return config


def _cmd_serve(args: argparse.Namespace) -> int:
    import threading

    from bot.jobs.queue import JobQueue
    from webhooks.app import ReceiverSettings, create_app
    from webhooks.server import make_receiver_server

    config = _service_config(args)
    app = create_app(ReceiverSettings(secret=config.webhook_secret), JobQueue(config.queue_db))
    stop = None
    if args.with_worker:
        worker, stop = _worker(config, args.threads)
        threading.Thread(target=worker.run, args=(stop,), name="layersync-worker", daemon=True).start()
    server = make_receiver_server(args.host, args.port, app)
    print(f"layersync receiver on http://{args.host}:{server.server_port}/webhooks/github"
          f"{' with worker' if stop else ''}", flush=True)
    try:
        server.serve_forever()
    finally:
        if stop is not None:
            stop.set()
    return EXIT_OK


def _cmd_worker(args: argparse.Namespace) -> int:
    config = _service_config(args)
    worker, stop = _worker(config, args.threads)
    print(f"layersync worker on {config.queue_db}", flush=True)
    worker.run(stop)
    return EXIT_OK


# --------------------------------------------------------------------------- preview (branch previews)

def _add_preview_parser(sub) -> None:
    preview = _command(sub, "preview", "build a branch's changed models into layersync_preview_<branch>; "
                                       "list previews, drop them, or drop stale ones",
                       "Every other model is cloned as a view onto prod, so the schema is a whole environment.")
    preview.add_argument("--branch", metavar="NAME", help="the branch to preview (or drop, with --drop)")
    preview.add_argument("--dbt-repo", type=Path, help="path of the dbt repo (a bare remote, or a clone with an origin)")
    preview.add_argument("--semantic-repo", type=Path,
                         help="semantic-layer repo: its branch NAME (else its default branch) is compiled against the preview")
    _path_options(preview)
    preview.add_argument("--warehouse", metavar="PATH|DSN",
                         help="a DuckDB file or a postgresql:// DSN (default: $LAYERSYNC_WAREHOUSE, else a DuckDB file "
                              "beside the registry, with prod built there)")
    _prod_options(preview, "default: dbt parse of --base")
    preview.add_argument("--build-prod", action="store_true",
                         help="build --base into the prod schema first (only for a warehouse layersync owns)")
    preview.add_argument("--base", metavar="REV", help="the dbt revision prod is (default: the remote's default branch)")
    preview.add_argument("--registry", type=Path, metavar="FILE",
                         help="previews' registry (default: $LAYERSYNC_PREVIEW_DB, else ~/.local/share/layersync/previews.sqlite)")
    preview.add_argument("--max", type=int, metavar="N",
                         help="at most N preview schemas in the warehouse (default: $LAYERSYNC_PREVIEW_MAX, else 10)")
    preview.add_argument("--env-file", type=Path, metavar="FILE", help="also write the environment file here")
    preview.add_argument("--json", action="store_true", help="print a machine-readable result")
    preview.add_argument("-v", "--verbose", action="store_true", help="stream dbt's output to stderr")
    _quiet_option(preview)
    what = preview.add_mutually_exclusive_group()
    what.add_argument("--list", action="store_true", help="list previews: branch, schema, commit, status, age, size")
    what.add_argument("--gc", action="store_true", help="drop previews untouched for --older-than")
    what.add_argument("--drop", action="store_true", help="drop the preview of --branch")
    preview.add_argument("--older-than", metavar="AGE", help="with --gc: an age such as 7d, 12h, 30m")


def _preview_registry(args: argparse.Namespace):
    from bot.preview.registry import Registry

    path = args.registry or (Path(os.environ["LAYERSYNC_PREVIEW_DB"]) if os.environ.get("LAYERSYNC_PREVIEW_DB")
                             else data_dir() / "previews.sqlite")
    return Registry(path)


def _preview_target(args: argparse.Namespace, registry) -> tuple[object, bool]:
    """The warehouse, and whether layersync owns it (then prod is built there)."""
    from bot.preview.build import warehouse_target

    given = args.warehouse or os.environ.get("LAYERSYNC_WAREHOUSE")
    if given:
        return warehouse_target(given), False
    return warehouse_target(registry.path.parent / "previews.duckdb"), True


def _cmd_preview(args: argparse.Namespace) -> int:
    try:
        return _preview(args)
    except LayersyncError:
        raise
    except (ValueError, NotImplementedError) as exc:
        raise LayersyncError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback (warehouse locked, server gone, …)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise LayersyncError(f"{type(exc).__name__}: {reason}".rstrip(": ")) from None


def _preview(args: argparse.Namespace) -> int:
    import time

    from bot.impact.build import Target
    from bot.impact.prod import ProdEnv
    from bot.preview.build import PreviewConfig, build_preview
    from bot.preview.gc import drop_preview, gc, list_previews
    from bot.preview.names import parse_age
    from bot.preview.pairing import Remote
    from bot.preview.report import list_text, to_text

    if args.older_than and not args.gc:
        raise LayersyncError("--older-than goes with --gc")
    registry = _preview_registry(args)
    target, owned = _preview_target(args, registry)
    prod_schema = args.prod_schema or os.environ.get("LAYERSYNC_PROD_SCHEMA") or "prod"
    if args.list:
        def target_for(warehouse: str):
            if target.describe() == warehouse:
                return target
            return None if "***" in warehouse else Target.parse(warehouse)
        now = time.time()
        listed = list_previews(registry, target_for)
        print(json.dumps([item.as_json(now) for item in listed], indent=2) if args.json else list_text(listed, now))
        return EXIT_OK
    if args.gc:
        if not args.older_than:
            raise LayersyncError("--gc needs --older-than AGE (e.g. --older-than 7d)")
        dropped = gc(registry, target, parse_age(args.older_than), prod_schema=prod_schema)
        if args.json:
            print(json.dumps([{"branch": row.branch, "schema": row.schema, "dropped": schemas}
                              for row, schemas in dropped], indent=2))
        else:
            print("\n".join(f"dropped  {row.branch}  {', '.join(schemas) or row.schema}" for row, schemas in dropped)
                  or f"no preview in {target.describe()} is older than {args.older_than}")
        return EXIT_OK
    if not args.branch or not args.dbt_repo:
        raise LayersyncError("give --branch NAME and --dbt-repo PATH (or --list, or --gc --older-than AGE)")
    for label, path in (("--dbt-repo", args.dbt_repo), ("--semantic-repo", args.semantic_repo)):
        if path is not None and not path.exists():
            raise LayersyncError(f"{label} `{path}` does not exist")
    semantic_path, dbt_path = _folders(args)
    dbt = Remote.local(args.dbt_repo, dbt_path)
    if args.drop:
        dropped = drop_preview(registry, target, dbt.key, args.branch, prod_schema=prod_schema)
        if args.json:
            print(json.dumps({"branch": args.branch, "dropped": dropped}))
        else:
            print(f"dropped  {', '.join(dropped)}" if dropped else f"no preview of `{args.branch}` in {target.describe()}")
        return EXIT_OK
    cap = args.max if args.max is not None else int(os.environ.get("LAYERSYNC_PREVIEW_MAX") or 10)
    if cap < 1:
        raise LayersyncError("--max must be at least 1")
    config = PreviewConfig(registry, target, ProdEnv(schema=prod_schema, state=args.prod_state,
                                                     build=args.build_prod or owned), cap)

    def log(line: str) -> None:
        if args.verbose:
            print(f"  dbt | {line}", file=sys.stderr)

    result = build_preview(args.branch, dbt, config, log=log, base=args.base,
                           semantic=Remote.local(args.semantic_repo, semantic_path) if args.semantic_repo else None)
    if args.env_file and result.env_file:
        args.env_file.write_text(result.env_file["text"])
    print(json.dumps(result.to_json(), indent=2) if args.json else to_text(result))
    return EXIT_OK if result.ok else EXIT_PARTIAL


def main(argv: Sequence[str] | None = None) -> int:
    redact.register_from_env()          # before anything can quote a secret the environment holds
    _scrub_last_resort_logs()
    sys.excepthook = _scrubbed_traceback
    args = build_parser().parse_args(argv)
    redact.register(redact.url_password(getattr(args, "warehouse", None)))   # a DSN typed on the command line
    handlers = {"push-to-dbt": _cmd_push, "prs": _cmd_prs, "demo": _cmd_demo, "serve": _cmd_serve,
                "worker": _cmd_worker, "impact": _cmd_impact,
                "pull-from-dbt": _cmd_pull, "preview": _cmd_preview}
    try:
        with progress.reporting(progress.for_terminal(quiet=getattr(args, "quiet", False))):
            return handlers[args.command](args)
    except LayersyncError as exc:
        return _fail(str(exc))
    except OSError as exc:              # a path that cannot be read or written, a port in use, …
        where = f" `{exc.filename}`" if exc.filename else ""
        return _fail(f"{exc.strerror or type(exc).__name__}{where}" if exc.strerror else str(exc))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - a fault of ours: one line, unless asked for the traceback
        if os.environ.get("LAYERSYNC_TRACEBACK"):
            raise
        return _fail(f"internal error, {type(exc).__name__}: {exc} (LAYERSYNC_TRACEBACK=1 shows where; "
                     "please report it)")


def _fail(message: str) -> int:
    """The one line every user mistake ends with (scrubbed: it may quote a path or a DSN)."""
    first = "; ".join(l.strip() for l in message.strip().splitlines() if l.strip()) or "failed"
    print(redact.scrub(f"layersync: error: {first}"), file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())

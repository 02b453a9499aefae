"""dbt as a subprocess, with a profiles dir written by layersync so runs never touch users' targets."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from ruamel.yaml import YAML

from bot import progress
from bot.redact import scrub


@dataclass
class DbtRun:
    args: list[str]
    returncode: int
    output: str
    cancelled: bool = False              # stopped by the caller's cancel hook (see run_dbt)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def error_lines(self, limit: int = 20) -> list[str]:
        """dbt's own words for what failed, without its progress chatter."""
        picked: list[str] = []
        lines = self.output.splitlines()
        for i, line in enumerate(lines):
            text = _strip_timestamp(line)
            if any(word in text for word in ("Error", "error:", "ERROR", "FAIL ")) and "ERROR=0" not in text:
                picked.append(text)
                picked.extend(_strip_timestamp(x) for x in lines[i + 1:i + 4] if _strip_timestamp(x))
        seen: dict[str, None] = dict.fromkeys(t for t in picked if t)
        return list(seen)[:limit] or [_strip_timestamp(l) for l in lines[-5:] if l.strip()]


@dataclass
class DbtCheck:
    ok: bool
    errors: list[str] = field(default_factory=list)
    failing_models: set[str] = field(default_factory=set)
    how: str = ""                        # the dbt command that judged: "compile", "build --empty"
    where: str = ""                      # the warehouse it built in, in words ("" for a static check)
    bound: bool = False                  # columns were bound: the touched models were built in a warehouse
    unbound: dict[str, str] = field(default_factory=dict)   # touched models the build could not judge, and why
    models: list[str] = field(default_factory=list)          # the touched models it judged
    unbuilt_because: str = ""            # a static check: why nothing was built (for the PR body)


def _strip_timestamp(line: str) -> str:
    """`12:01:02  Some text` → `Some text` (dbt prefixes each log line with the time)."""
    line = line.rstrip()
    if len(line) > 10 and line[2] == ":" and line[5] == ":" and line[:2].isdigit():
        return line[8:].strip()
    return line.strip()


def dbt_command() -> list[str]:
    """The dbt beside this interpreter (our venv), else whatever `dbt` is on PATH."""
    beside = Path(sys.executable).parent / "dbt"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("dbt")
    return [found] if found else [sys.executable, "-m", "dbt.cli.main"]


def write_duckdb_profile(profiles_dir: Path, profile: str, database: str, schema: str = "main",
                         threads: int = 1) -> Path:
    profiles_dir.mkdir(parents=True, exist_ok=True)
    doc = {profile: {"target": "layersync", "outputs": {"layersync": {
        "type": "duckdb", "path": database, "schema": schema, "threads": threads}}}}
    target = profiles_dir / "profiles.yml"
    with target.open("w", encoding="utf-8") as handle:
        YAML(typ="safe").dump(doc, handle)
    return target


def write_postgres_profile(profiles_dir: Path, profile: str, *, host: str, port: int, user: str,
                           password: str | None, dbname: str, schema: str, threads: int = 4,
                           sslmode: str | None = None) -> Path:
    """A dbt-postgres profile named `profile` (target `layersync`) writing into `schema` of `dbname`.

    The file may hold the password, so it is written owner-readable only; layersync writes it into a
    temporary profiles dir that is deleted after the run."""
    profiles_dir.mkdir(parents=True, exist_ok=True)
    output: dict = {"type": "postgres", "host": host, "port": int(port), "user": user,
                    "password": password or "", "dbname": dbname, "schema": schema,
                    "threads": int(threads)}
    if sslmode:
        output["sslmode"] = sslmode
    doc = {profile: {"target": "layersync", "outputs": {"layersync": output}}}
    target = profiles_dir / "profiles.yml"
    with target.open("w", encoding="utf-8") as handle:
        YAML(typ="safe").dump(doc, handle)
    try:
        os.chmod(target, 0o600)          # it may hold a password
    except OSError:
        pass
    return target


# -------------------------------------------------------------------------- the environment dbt sees
#
# dbt renders Jinja, and Jinja reads the environment (`env_var`): whatever the worker's environment
# holds, a model, a macro or a field pushed from the semantic layer could print into dbt's output —
# which layersync quotes in PR comments. So a dbt process gets only what dbt needs to run, never the
# worker's whole environment. Decisions, for the record:
#   - PATH, HOME (dbt's and DuckDB's caches, ~/.dbt, ~/.pgpass), USER/LOGNAME, locale, TZ, temp dirs;
#   - `DBT_*` (dbt's own settings; it scrubs its `DBT_ENV_SECRET_*` itself, but those only pass when
#     the profile asks for them, like any secret-named variable);
#   - the variables the profiles.yml of the run names with `env_var('NAME')`: the profile is the
#     operator's (layersync's own, or the configured profiles dir), never the repository's;
#   - libpq's `PG*` settings (sslmode, root certificate, service file, passfile) for dbt-postgres; not
#     PGPASSWORD: the password reaches dbt through the profile layersync writes;
#   - proxies and CA bundles, which `dbt deps` needs behind a corporate proxy;
#   - the venv and Python's own settings (VIRTUAL_ENV, PYTHONPATH, …), so dbt finds its adapters.
# Never passed, whatever the profile says: `LAYERSYNC_*`. Never passed unless the profile asks for it
# by name: `GITHUB_*`, `GIT_*` (a forge's git credentials travel as GIT_CONFIG_*), and anything named
# like a secret (*TOKEN*, *SECRET*, *PASSWORD*, *PRIVATE_KEY*, …).

_ENV_NAMES = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP",
    "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONUTF8", "PYTHONIOENCODING", "PYTHONDONTWRITEBYTECODE",
    "PYTHONUNBUFFERED", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
})
_ENV_PREFIXES = ("LC_", "DBT_", "PG")
_NEVER_PREFIX = "LAYERSYNC_"
_SECRET_PREFIXES = ("GITHUB_", "GIT_")
_SECRET_WORDS = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|PRIVATE_KEY|API_KEY|ACCESS_KEY|CREDENTIAL", re.I)
_ENV_VAR_CALL = re.compile(r"""env_var\(\s*['"]([A-Za-z_][A-Za-z0-9_]*)['"]""")

#: Set for every dbt run: no telemetry, no colour codes in the output layersync parses.
_DBT_FIXED = {"DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DO_NOT_TRACK": "1", "DBT_USE_COLORS": "false"}


def profile_env_names(profiles_dir: Path | None) -> set[str]:
    """The variables the run's profiles.yml reads with `env_var(...)`: dbt fails without them."""
    if profiles_dir is None:
        return set()
    try:
        text = (Path(profiles_dir) / "profiles.yml").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    return set(_ENV_VAR_CALL.findall(text))


def _passes(name: str, asked: set[str]) -> bool:
    if name.upper().startswith(_NEVER_PREFIX):
        return False
    if name in asked:
        return True
    if name.upper().startswith(_SECRET_PREFIXES) or _SECRET_WORDS.search(name):
        return False
    return name in _ENV_NAMES or name.startswith(_ENV_PREFIXES)


def dbt_environment(profiles_dir: Path | None, environ: Mapping[str, str] | None = None, *,
                    log_dir: Path | None = None) -> dict[str, str]:
    """The environment a dbt (or MetricFlow `mf`) process starts with: the allow-list above, taken
    from `environ` (default: this process's), plus layersync's fixed dbt settings."""
    source = os.environ if environ is None else environ
    asked = profile_env_names(profiles_dir)
    env = {name: value for name, value in source.items() if _passes(name, asked)}
    env.update(_DBT_FIXED)
    if profiles_dir is not None:
        env["DBT_PROFILES_DIR"] = str(profiles_dir)
    if log_dir is not None:
        env["DBT_LOG_PATH"] = str(log_dir)
    return env


def run_dbt(args: Sequence[str], project_dir: Path, profiles_dir: Path, *,
            log: Callable[[str], None] | None = None, timeout: float = 1800,
            cancel: Callable[[], bool] | None = None) -> DbtRun:
    """Run one dbt command; its output streams to `log` line by line and is kept for reports.

    Every dbt process layersync starts comes through here: it gets `dbt_environment`, never this
    process's whole environment, and its output is scrubbed of secrets as it is read.

    dbt writes its structured log (`DBT_LOG_FORMAT=json`): each event's own text is what `log` and
    `output` get (the words dbt prints, without the time), and the events that start and finish a
    node report `[12/36] model orders` to `bot.progress.current()`, with the run as the step.

    `cancel`, if given, is polled while dbt runs (a few times a second); once it returns True the dbt
    process is stopped — SIGINT first (dbt cancels its open queries), then SIGTERM, then SIGKILL — and
    the run comes back with `cancelled` set (and `ok` False). A hook that raises counts as "go on"."""
    scratch = Path(tempfile.mkdtemp(prefix="layersync-dbt-"))
    env = dbt_environment(profiles_dir, log_dir=scratch / "logs")
    env["DBT_LOG_FORMAT"] = "json"
    command = [*dbt_command(), *args, "--project-dir", str(project_dir), "--profiles-dir", str(profiles_dir)]
    lines: list[str] = []
    if cancel is not None and _wants_cancel(cancel):
        shutil.rmtree(scratch, ignore_errors=True)
        return DbtRun(command, -1, "cancelled before dbt started", cancelled=True)
    reporter = progress.current()
    reporter.step(describe_run(args, profiles_dir))
    stopped = threading.Event()
    returncode = 127
    try:
        process = subprocess.Popen(command, cwd=project_dir, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        watcher = None
        if cancel is not None:
            watcher = threading.Thread(target=_watch, args=(process, cancel, stopped), daemon=True,
                                       name=f"dbt-cancel-{process.pid}")
            watcher.start()
        assert process.stdout is not None
        for raw in process.stdout:
            texts, node = read_event(raw)
            if node is not None:
                reporter.node(*node)
            for text in texts:
                # scrubbed as it is read: dbt's output is quoted in comments, logs and CLI errors
                lines.append(scrub(text))
                if log:
                    log(lines[-1])
        returncode = process.wait(timeout=timeout)
        if watcher is not None:
            watcher.join(timeout=30)
    except FileNotFoundError:
        return DbtRun(command, 127, "dbt is not installed")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        reporter.done(returncode == 0)
    if stopped.is_set():
        lines.append("layersync: dbt was cancelled")
        if log:
            log(lines[-1])
    return DbtRun(command, returncode, "\n".join(lines), cancelled=stopped.is_set())


#: dbt's events that finish a node, and how a person reads their status.
_STATUS_WORDS = {"success": "ok", "ok": "ok", "pass": "pass", "error": "error", "fail": "fail",
                 "warn": "warn", "skipped": "skipped", "skip": "skipped", "no-op": "no-op"}


def read_event(raw: str) -> tuple[list[str], tuple[int, int, str, str | None] | None]:
    """One line of dbt's JSON log: the text dbt would have printed for it (its `msg`, one entry per
    line), and the node progress it carries — (index, total, `model orders`, None when the node
    starts, else its status). A line that is not one of dbt's events (a crash's traceback, a warning
    from a library) is kept as it is."""
    line = raw.rstrip("\n")
    if not line.startswith("{"):
        return [line], None
    try:
        event = json.loads(line)
        info, data = event["info"], event.get("data") or {}
        texts = str(info.get("msg", "")).split("\n")
    except (ValueError, KeyError, TypeError, AttributeError):
        return [line], None
    return texts, _node_progress(str(info.get("name", "")), data)


def _node_progress(name: str, data: dict) -> tuple[int, int, str, str | None] | None:
    node = data.get("node_info") or {}
    index, total = data.get("index"), data.get("total") or data.get("num_models")
    node_name = node.get("node_name") or data.get("node_name")
    if not isinstance(index, int) or not isinstance(total, int) or not node_name:
        return None
    label = f"{node.get('resource_type') or data.get('resource_type') or 'node'} {node_name}"
    if name == "LogStartLine":
        return index, total, label, None
    if name in ("SkippingDetails", "LogSkipMessage"):           # a parent failed: dbt skips the node
        return index, total, label, "skipped"
    if name.endswith("Result"):
        status = str(data.get("status") or "done").lower()
        return index, total, label, _STATUS_WORDS.get(status, status)
    return None


def describe_run(args: Sequence[str], profiles_dir: Path | None) -> str:
    """`dbt build --select state:modified+ -> schema dev`: the step a person sees while dbt runs
    (the command and its selection, not the paths layersync passes it)."""
    words, skip = [], False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in ("--target-path", "--state", "--project-dir", "--profiles-dir", "--vars"):
            skip = True
            continue
        words.append(arg)
    schema = _profile_schema(profiles_dir)
    builds = words[:1] in (["build"], ["run"], ["seed"], ["snapshot"], ["test"], ["clone"])
    return "dbt " + " ".join(words) + (f" -> schema {schema}" if schema and builds else "")


def _profile_schema(profiles_dir: Path | None) -> str | None:
    """The schema of the one output in a profiles.yml layersync wrote (None for anything else)."""
    try:
        doc = YAML(typ="safe").load((Path(profiles_dir) / "profiles.yml").read_text(encoding="utf-8"))
        outputs = [o for p in doc.values() for o in p["outputs"].values()]
    except Exception:  # noqa: BLE001 - a label only: an operator's profiles dir may say anything
        return None
    schemas = {o.get("schema") for o in outputs if isinstance(o, dict)}
    return str(schemas.pop()) if len(schemas) == 1 and None not in schemas else None


def _wants_cancel(cancel: Callable[[], bool]) -> bool:
    try:
        return bool(cancel())
    except Exception:  # noqa: BLE001 - a failing hook must not stop a build it knows nothing about
        return False


def _watch(process: subprocess.Popen, cancel: Callable[[], bool], stopped: threading.Event,
           interval: float = 0.25, grace: float = 5.0) -> None:
    """Poll `cancel` while `process` runs; stop it (SIGINT, SIGTERM, SIGKILL) once it says so."""
    while process.poll() is None:
        if _wants_cancel(cancel):
            stopped.set()
            for stop in (lambda: process.send_signal(signal.SIGINT), process.terminate, process.kill):
                try:
                    stop()
                    process.wait(timeout=grace)
                    return
                except subprocess.TimeoutExpired:
                    continue
                except OSError:          # already gone
                    return
            return
        time.sleep(interval)


# ------------------------------------------------------------------------------- dbt packages
#
# Every check, build and preview works in a scratch clone, and a project with packages needs
# `dbt deps` in each: the network, seconds every time, and a failure wherever the hub is out of
# reach. The packages a project gets depend only on its package files (and dbt's version), so they
# are installed once per content and copied into each clone from a cache keyed by that content.

PACKAGE_FILES = ("packages.yml", "package-lock.yml", "dependencies.yml")


def cache_dir() -> Path:
    """layersync's downloads and installs (the tests keep theirs there too): `$LAYERSYNC_CACHE`, else
    `$XDG_CACHE_HOME/layersync`, else `~/.cache/layersync`."""
    if os.environ.get("LAYERSYNC_CACHE"):
        return Path(os.environ["LAYERSYNC_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "layersync"


def packages_install_path(project_dir: Path) -> Path:
    """Where dbt installs the project's packages: `packages-install-path` of dbt_project.yml (its
    older name `modules-path`), else `dbt_packages`."""
    try:
        doc = YAML(typ="safe").load((project_dir / "dbt_project.yml").read_text(encoding="utf-8")) or {}
        configured = doc.get("packages-install-path") or doc.get("modules-path")
    except Exception:  # noqa: BLE001 - dbt reports a broken dbt_project.yml in its own words
        configured = None
    path = Path(str(configured)) if isinstance(configured, str) and "{{" not in configured else Path("dbt_packages")
    return path if path.is_absolute() else project_dir / path


def packages_key(project_dir: Path) -> str | None:
    """The cache key of the project's packages: a hash of its package files and dbt's version.
    None when it has no packages, or has a `local:` package (its files live outside the package
    files, so their content says nothing of it: those projects run `dbt deps` every time)."""
    digest = hashlib.sha256()
    found = False
    for name in PACKAGE_FILES:
        path = project_dir / name
        if not path.is_file():
            continue
        data = path.read_bytes()
        if name != "package-lock.yml" and _has_local_package(data):
            return None
        found = True
        digest.update(name.encode() + b"\0" + data + b"\0")
    if not found:
        return None
    digest.update(_dbt_version().encode())
    return digest.hexdigest()[:24]


def _has_local_package(data: bytes) -> bool:
    try:
        doc = YAML(typ="safe").load(data.decode("utf-8", errors="replace"))
    except Exception:  # noqa: BLE001 - dbt deps reports it; the cache just stays out of the way
        return True
    entries = doc.get("packages") if isinstance(doc, dict) else None
    return any(isinstance(e, dict) and "local" in e for e in entries or [])


def _dbt_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dbt-core")
    except PackageNotFoundError:
        return "unknown"


def install_packages(project_dir: Path, profiles_dir: Path, *, log: Callable[[str], None] | None = None,
                     cancel: Callable[[], bool] | None = None, cache: Path | None = None) -> DbtRun | None:
    """The project's dbt packages in place before a parse, compile or build: copied from the cache
    when these package files were installed before, else `dbt deps` once, whose result is cached.

    None when nothing was needed (no package files, or packages already installed); else the run
    (a copy from the cache is a run that succeeded). A failed run is for `deps_failure`."""
    project_dir = Path(project_dir)
    if not any((project_dir / name).is_file() for name in PACKAGE_FILES):
        return None
    installed = packages_install_path(project_dir)
    if installed.exists():
        return None
    key = packages_key(project_dir)
    if key is None:
        return run_dbt(["deps"], project_dir, profiles_dir, log=log, cancel=cancel)
    entry = (cache or cache_dir() / "dbt-packages") / key
    if (entry / "packages").is_dir():
        progress.current().step(f"dbt packages from the cache ({entry.name})")
        shutil.copytree(entry / "packages", installed, symlinks=True)
        progress.current().done()
        return DbtRun(["dbt", "deps"], 0, f"layersync: packages copied from {entry}")
    run = run_dbt(["deps"], project_dir, profiles_dir, log=log, cancel=cancel)
    if run.ok and installed.is_dir():
        _store(installed, entry)
    return run


def _store(installed: Path, entry: Path) -> None:
    """Into the cache whole or not at all: copied aside, then renamed (a concurrent install of the
    same packages may win the rename; either copy is the same)."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=entry.parent))
    try:
        shutil.copytree(installed, staging / "packages", symlinks=True)
        os.replace(staging, entry)
    except OSError:
        pass                              # the cache is a convenience: the install itself succeeded
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def deps_failure(run: DbtRun) -> str:
    """`dbt deps failed: <dbt's reason>` on one line: what dbt said after "Encountered an error",
    or the exception a traceback ends with — never the traceback's frames."""
    lines = [_strip_timestamp(l) for l in run.output.splitlines()]
    frames = next((i for i, l in enumerate(lines) if l.startswith("Traceback (most recent call last)")), None)
    if frames is not None:
        last = next((l for l in reversed(lines[frames:]) if l and not l.startswith(("File ", "[Previous"))), "")
        reason = re.sub(r"^[\w.]+(Error|Exception):\s*", "", last)
        host = re.search(r"host='([^']+)'", reason)
        if host:
            reason = f"could not reach {host.group(1)}" + (" (its name does not resolve: no network?)"
                                                          if "resolve" in reason else f": {reason.split(' (Caused by')[0]}")
    else:
        after = lines[next((i + 1 for i, l in enumerate(lines) if l.startswith("Encountered an error")), 0):]
        words = [l for l in after if l and l not in ("Internal Error", "Runtime Error", "Compilation Error")
                 and not l.startswith("Running with dbt")]
        reason = ": ".join(words[:2]) or f"exit code {run.returncode}"
    return f"dbt deps failed: {reason}"


@dataclass(frozen=True)
class EmptyBuild:
    """Where the push check may build the touched models with zero rows (`dbt build --empty`), so
    dbt binds every column they read: `dbt compile` alone lets `no_such_column + 1` through.

    `profiles_dir`: a profile whose target schema is a scratch schema of the configured warehouse
    (never prod: the caller writes it); None is a scratch DuckDB of layersync's own, deleted after.
    `state`: prod's manifest (or its folder) to defer the unchanged parents to; None builds the
    parents too, with zero rows. `where`: the warehouse in words, for the PR body."""
    profiles_dir: Path | None = None
    state: Path | None = None
    where: str = "a scratch DuckDB"


@dataclass
class BuiltNode:
    status: str                          # dbt's: success, error, skipped, …
    message: str = ""
    parents: tuple[str, ...] = ()


def check_project(project_dir: Path, models: Sequence[str], *, profile: str,
                  profiles_dir: Path | None = None, log: Callable[[str], None] | None = None,
                  build: EmptyBuild | None = None, target_path: Path | None = None) -> DbtCheck:
    """dbt's own verdict on the edit of `models`.

    With `build`, `dbt build --empty` of the touched models (see EmptyBuild): a column a model reads
    and does not have fails here, before anything is pushed. Without it, `dbt compile` of the touched
    models (after dbt's parse of the project): syntax, refs and Jinja only — the check says so
    (`DbtCheck.bound` is False). Without a profiles dir, an in-memory DuckDB target is written for the
    compile, which is enough for any project whose models do not query the warehouse while compiling.
    `target_path`: where the empty build leaves its manifest (the touched models' compiled SQL, read
    afterwards); default a scratch folder. A compile leaves it where the project says.
    """
    if build is not None and models:
        return _empty_build_check(project_dir, models, profile=profile, build=build, log=log,
                                  target_path=target_path)
    with tempfile.TemporaryDirectory(prefix="layersync-profiles-") as tmp:
        if profiles_dir is None:
            profiles_dir = Path(tmp)
            write_duckdb_profile(profiles_dir, profile, ":memory:")
        failed = _deps(project_dir, profiles_dir, log)
        if failed is not None:
            return failed
        # `dbt compile` parses the whole project first, so one run answers both questions.
        args = ["compile", "--select", *models] if models else ["parse"]
        checked = run_dbt(args, project_dir, profiles_dir, log=log)
        if not checked.ok:
            return DbtCheck(False, checked.error_lines(), _models_named(checked.output, models), how="compile",
                            models=sorted(models))
    return DbtCheck(True, how="compile" if models else "parse", models=sorted(models))


def _deps(project_dir: Path, profiles_dir: Path, log: Callable[[str], None] | None) -> DbtCheck | None:
    """The project's packages (installed once per package files, see install_packages); a failed
    check, in one line, when they cannot be had."""
    deps = install_packages(project_dir, profiles_dir, log=log)
    if deps is not None and not deps.ok:
        return DbtCheck(False, [deps_failure(deps)])
    return None


CHECK_SCHEMA = "layersync_check"         # the scratch DuckDB's schema (a dev-style name, never prod's)


def _empty_build_check(project_dir: Path, models: Sequence[str], *, profile: str, build: EmptyBuild,
                       log: Callable[[str], None] | None, target_path: Path | None = None) -> DbtCheck:
    """`dbt build --empty` of `models` (tests left out: zero rows pass every test), judged node by node.

    A touched model that errors is the edit's failure (the caller confirms against the base); one
    skipped because a parent failed could not be judged, and neither could a parent that failed: the
    check then says which models were not bound and why, instead of blaming the edit."""
    with tempfile.TemporaryDirectory(prefix="layersync-check-") as tmp:
        scratch = Path(tmp)
        profiles_dir = build.profiles_dir
        if profiles_dir is None:
            profiles_dir = scratch / "profiles"
            write_duckdb_profile(profiles_dir, profile, str(scratch / "check.duckdb"), schema=CHECK_SCHEMA)
        failed = _deps(project_dir, profiles_dir, log)
        if failed is not None:
            return failed
        target = target_path or scratch / "target"
        (target / "run_results.json").unlink(missing_ok=True)       # never read an earlier run's results
        selected = list(models) if build.state is not None else [f"+{m}" for m in models]
        args = ["build", "--empty", "--target-path", str(target),
                "--exclude-resource-type", "test", "--exclude-resource-type", "unit_test", "--select", *selected]
        if build.state is not None:
            state = Path(build.state)
            args += ["--defer", "--state", str((state.parent if state.suffix == ".json" else state).resolve())]
        run = run_dbt(args, project_dir, profiles_dir, log=log)
        verdict = DbtCheck(True, how="build --empty", where=build.where, bound=True, models=sorted(models))
        nodes = _built_nodes(target)
        if not nodes:                      # dbt stopped before building anything: a parse or compile error
            if not run.ok:
                verdict.ok, verdict.errors = False, run.error_lines()
                verdict.failing_models, verdict.bound = _models_named(run.output, models), False
            return verdict
        touched = set(models)
        failing = {m for m in touched if nodes.get(m, BuiltNode("")).status in ("error", "runtime error")}
        errors = [f"{m}: {nodes[m].message}" for m in sorted(failing) if nodes[m].message]
        for m in sorted(touched - failing):
            node = nodes.get(m)
            if node is None or node.status != "skipped":
                continue
            broken = [p for p in _ancestors(m, nodes) if nodes[p].status in ("error", "runtime error")]
            why = "; ".join(f"`{p}` does not build here: {warehouse_words(nodes[p].message)}" for p in broken[:2])
            verdict.unbound[m] = why or "dbt skipped it"
        if verdict.unbound:        # dbt compiles no model it skips: the static check still runs for those
            skipped = sorted(verdict.unbound)
            # all touched models, so the manifest left in `target` holds every one's compiled SQL
            compiled = run_dbt(["compile", "--target-path", str(target), "--select", *sorted(models)],
                               project_dir, profiles_dir, log=log)
            if not compiled.ok:
                named = _models_named(compiled.output, models)
                blamed = named & set(skipped) if named else set(skipped)
                failing |= blamed
                errors += [f"{m}: " + " / ".join(compiled.error_lines()[:3]) for m in sorted(blamed)]
                verdict.unbound = {m: why for m, why in verdict.unbound.items() if m not in blamed}
    if failing:
        verdict.ok, verdict.failing_models, verdict.errors = False, failing, errors or run.error_lines()
    return verdict


def _built_nodes(target: Path) -> dict[str, BuiltNode]:
    """Model/seed/snapshot name → how dbt's build of it went (run_results) and its parents (manifest)."""
    try:
        results = json.loads((target / "run_results.json").read_text(encoding="utf-8")).get("results", [])
        manifest = json.loads((target / "manifest.json").read_text(encoding="utf-8")).get("nodes", {})
    except (OSError, ValueError):
        return {}
    names = {uid: node.get("name", uid) for uid, node in manifest.items()}
    nodes: dict[str, BuiltNode] = {}
    for item in results:
        uid = str(item.get("unique_id", ""))
        if uid.split(".", 1)[0] not in ("model", "seed", "snapshot"):
            continue
        parents = tuple(names[p] for p in (manifest.get(uid, {}).get("depends_on") or {}).get("nodes", [])
                        if p in names)
        nodes[names.get(uid, uid)] = BuiltNode(str(item.get("status") or ""), scrub(str(item.get("message") or "")),
                                               parents)
    return nodes


def _ancestors(name: str, nodes: dict[str, BuiltNode]) -> list[str]:
    seen: list[str] = []
    todo = list(nodes[name].parents)
    while todo:
        parent = todo.pop(0)
        if parent in seen or parent not in nodes:
            continue
        seen.append(parent)
        todo.extend(nodes[parent].parents)
    return seen


def warehouse_words(message: str) -> str:
    """The warehouse's own line of a dbt node error (`Catalog Error: Table … does not exist!`), not
    dbt's `Runtime Error in model x (path)` heading above it."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if lines and lines[0].startswith(f"{lines[0].split(':')[0]}: "):     # `orders: Runtime Error …`
        lines[0] = lines[0].split(": ", 1)[1]
    body = [line for line in lines[1:] if "Error" in line] if lines and " Error in " in lines[0] else []
    return (body or lines or [""])[0]


def _models_named(output: str, models: Sequence[str]) -> set[str]:
    """Which of the touched models dbt's error output blames (`... in model orders (...)`)."""
    return {m for m in models if f"model {m} " in output or f"model {m}\n" in output or f"/{m}.sql" in output}

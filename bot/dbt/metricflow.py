"""MetricFlow's `mf` as a subprocess: validate a project's semantic layer, and query its metrics.

Like every dbt process, `mf` starts with `dbt_environment` (the allow-list in bot.dbt.runner), never
the worker's whole environment, and its output is scrubbed as it is read: it quotes the project's
SQL and the warehouse's errors, which end up in PR bodies. `mf` has no `--project-dir`: it runs in
the project's folder and reads `target/semantic_manifest.json` there, which `dbt parse` writes.
"""
from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from bot.dbt.runner import DbtRun, dbt_environment, run_dbt, write_duckdb_profile
from bot.redact import scrub

SEMANTIC_MANIFEST = "semantic_manifest.json"
_SPINNER = re.compile(r"[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏✔✖🎉•]")
_NAMED = re.compile(r"`([a-z][a-z0-9_]*)`")


@dataclass
class SemanticCheck:
    ok: bool
    errors: list[str] = field(default_factory=list)
    blamed: set[str] = field(default_factory=set)     # names of metrics/measures/models the errors name
    stage: str = ""                                   # "dbt parse" or "mf validate-configs"


@dataclass
class MetricQuery:
    ok: bool
    columns: list[str] = field(default_factory=list)
    rows: list[dict[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=list)


def mf_command() -> list[str]:
    """The `mf` beside this interpreter (our venv), else whatever `mf` is on PATH."""
    beside = Path(sys.executable).parent / "mf"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("mf")
    return [found] if found else [sys.executable, "-m", "dbt_metricflow.cli.main"]


def run_mf(args: Sequence[str], project_dir: Path, profiles_dir: Path, *, log: Callable[[str], None] | None = None,
           timeout: float = 900) -> DbtRun:
    """One `mf` command in `project_dir`, with dbt's environment (its profiles dir, nothing secret)."""
    scratch = Path(tempfile.mkdtemp(prefix="layersync-mf-"))
    env = dbt_environment(profiles_dir, log_dir=scratch / "logs")
    env["DBT_PROJECT_DIR"] = str(project_dir)
    command = [*mf_command(), *args]
    try:
        done = subprocess.run(command, cwd=project_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout)
    except FileNotFoundError:
        return DbtRun(command, 127, "mf (dbt-metricflow) is not installed")
    except subprocess.TimeoutExpired as exc:
        return DbtRun(command, -1, scrub(str(exc.output or "")) + f"\nmf did not finish in {timeout:.0f} s")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    lines = [scrub(line.rstrip()) for line in done.stdout.splitlines()]
    if log:
        for line in lines:
            log(line)
    return DbtRun(command, done.returncode, "\n".join(lines))


def mf_errors(output: str, limit: int = 12) -> list[str]:
    """MetricFlow's issues (`• ERROR: with metric `x` - …` and the lines explaining it), without the spinner."""
    found: list[str] = []
    current: list[str] = []
    for raw in output.splitlines():
        line = raw.strip()
        if "ERROR:" in line or line.startswith(("✖", "Error", "Exception")):
            if current:
                found.append(" ".join(current))
            current = [_SPINNER.sub("", line).strip()]
        elif current and line and len(current) < 6 and not line.startswith(("[", "->", "Issue Location")):
            current.append(line)
    if current:
        found.append(" ".join(current))
    return [f for f in dict.fromkeys(found) if f][:limit] or \
        [_SPINNER.sub("", l).strip() for l in output.splitlines()[-5:] if l.strip()]


_CHATTER = ("Running with dbt", "Registered adapter", "Performance info", "To see warnings", "Encountered an error",
            "Parsing Error", "Unable to do partial parsing", "Found ")


def parse_errors(output: str, limit: int = 12) -> list[str]:
    """dbt parse's own words for what it refused (semantic validation prints them before its summary)."""
    kept = [_strip(line) for line in output.splitlines()]
    kept = [line for line in kept if line and not line.startswith(_CHATTER)]
    return list(dict.fromkeys(kept))[:limit] or ["dbt parse failed"]


def _strip(line: str) -> str:
    line = re.sub(r"\x1b\[[0-9;]*m", "", line).strip()
    if len(line) > 10 and line[2] == ":" and line[5] == ":" and line[:2].isdigit():
        return line[8:].strip()
    return line


def named_in(text: str, names: Iterable[str]) -> set[str]:
    """Which of `names` an error text names (in backticks, quotes or as a word)."""
    words = set(_NAMED.findall(text)) | set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))
    return {n for n in names if n in words}


def check_semantics(project_dir: Path, profile: str, *, profiles_dir: Path | None = None,
                    names: Iterable[str] = (), warehouse: bool = False, metricflow: bool = True,
                    log: Callable[[str], None] | None = None) -> SemanticCheck:
    """`dbt parse` (it validates the semantic manifest), then `mf validate-configs` on what it wrote.

    `warehouse`: also MetricFlow's checks against the warehouse (the profile's target must hold the
    built models); without it `--skip-dw`, which needs no data. `names`: the metrics and measures to
    blame when an error names them. `metricflow=False`: dbt parse only (a later round with the
    warehouse runs MetricFlow's checks)."""
    names = list(names)
    with tempfile.TemporaryDirectory(prefix="layersync-profiles-") as tmp:
        if profiles_dir is None:
            profiles_dir = Path(tmp)
            write_duckdb_profile(profiles_dir, profile, ":memory:")
        manifest = Path(project_dir) / "target" / SEMANTIC_MANIFEST
        manifest.unlink(missing_ok=True)          # never validate an earlier parse's manifest
        parsed = run_dbt(["parse"], Path(project_dir), profiles_dir, log=log)
        if not parsed.ok:
            errors = parse_errors(parsed.output)
            return SemanticCheck(False, errors, named_in(parsed.output, names), "dbt parse")
        if not manifest.exists():
            return SemanticCheck(False, ["dbt parse wrote no semantic manifest"], set(), "dbt parse")
        if not metricflow:
            return SemanticCheck(True)
        validated = run_mf(["validate-configs", *([] if warehouse else ["--skip-dw"])], Path(project_dir),
                           profiles_dir, log=log)
        if not validated.ok:
            return SemanticCheck(False, mf_errors(validated.output), named_in(validated.output, names),
                                 "mf validate-configs")
    return SemanticCheck(True)


def query_metrics(project_dir: Path, profiles_dir: Path, metrics: Sequence[str], group_by: Sequence[str] = (), *,
                  semantic_manifest: Path | None = None, log: Callable[[str], None] | None = None) -> MetricQuery:
    """One `mf query` of several metrics, grouped by `group_by` (MetricFlow names, `entity__dimension`);
    rows as MetricFlow wrote them to CSV. `semantic_manifest`: a build's manifest (dbt builds into a
    target path of their own), copied where `mf` reads it."""
    project_dir = Path(project_dir)
    if semantic_manifest is not None and semantic_manifest.resolve() != \
            (project_dir / "target" / SEMANTIC_MANIFEST).resolve():
        (project_dir / "target").mkdir(parents=True, exist_ok=True)
        shutil.copy(semantic_manifest, project_dir / "target" / SEMANTIC_MANIFEST)
    with tempfile.TemporaryDirectory(prefix="layersync-mfq-") as tmp:
        out = Path(tmp) / "result.csv"
        args = ["query", "--metrics", ",".join(metrics), "--csv", str(out), "--quiet"]
        if group_by:
            args[3:3] = ["--group-by", ",".join(group_by)]
        run = run_mf(args, project_dir, profiles_dir, log=log)
        if not run.ok or not out.exists():
            return MetricQuery(False, errors=mf_errors(run.output), command=run.args)
        with out.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            rows = [dict(r) for r in reader]
            columns = list(reader.fieldnames or [])
    return MetricQuery(True, columns, rows, command=run.args)

"""dbt's own rendering of models that cannot be read statically.

A model that is one macro call (`{{ dbt_utils.date_spine(...) }}`) or whose CTEs a macro writes
has no SQL until dbt renders it. Rather than calling such a model "invalid SQL", the dbt-change
reader asks dbt: the project's files at one revision are written to a scratch folder, `dbt compile`
runs on the models wanted (through `runner.run_dbt`, like every dbt process layersync starts) against
an in-memory DuckDB target, and the manifest's `compiled_code` is the SQL read instead.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Mapping, Sequence

from bot.dbt.project import DbtProject, DirStore
from bot.dbt.runner import run_dbt, write_duckdb_profile

_SKIPPED = ("target", "dbt_packages", "logs", "dbt_modules")  # dbt's outputs: rebuilt here, never copied
_PACKAGE_FILES = ("packages.yml", "dependencies.yml")


@dataclass(frozen=True)
class Compiled:
    """Compiled SQL by the model's project-relative path; `error`: why dbt gave none (one line)."""

    sql: dict[str, str] = field(default_factory=dict)
    error: str | None = None


def _write(files: Mapping[str, str], folder: Path) -> None:
    for path, text in files.items():
        parts = PurePosixPath(path).parts
        if not parts or parts[0] in _SKIPPED or ".." in parts:
            continue
        target = folder.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


def compile_models(files: Mapping[str, str], models: Sequence[str], *, profile: str,
                   log: Callable[[str], None] | None = None, timeout: float = 600) -> Compiled:
    """`dbt compile` of `models` (names) in a project made of `files` (project-relative path → text)."""
    if not models:
        return Compiled()
    with tempfile.TemporaryDirectory(prefix="layersync-compile-") as tmp:
        project = Path(tmp) / "project"
        profiles = Path(tmp) / "profiles"
        project.mkdir()
        _write(files, project)
        write_duckdb_profile(profiles, profile, ":memory:")
        if any((project / name).exists() for name in _PACKAGE_FILES):
            deps = run_dbt(["deps"], project, profiles, log=log, timeout=timeout)
            if not deps.ok:
                return Compiled(error="dbt deps failed: " + "; ".join(deps.error_lines(2)))
        run = run_dbt(["compile", "--select", *models], project, profiles, log=log, timeout=timeout)
        dbt = DbtProject(DirStore(project))
        found = dbt.compiled_code(models)
        wanted = {model.path: found[key] for key, model in dbt.models().items() if key in found}
        if run.ok or wanted:
            return Compiled(wanted)
        return Compiled(error="dbt compile failed: " + "; ".join(run.error_lines(2)))

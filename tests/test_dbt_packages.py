"""dbt packages: installed once per content of the package files, then copied into every scratch clone;
a `dbt deps` that fails is one line. The package is a real git repo on disk (no network)."""
from __future__ import annotations

import shutil
from pathlib import Path

import git
import pytest

from bot.dbt.runner import check_project, packages_key

PROJECT = "name: shop\nversion: '1.0'\nconfig-version: 2\nprofile: shop\n"
MODEL = "select {{ tiny_pkg.tiny_double('1') }} as two\n"


def make_package(root: Path) -> Path:
    path = root / "tiny_pkg"
    (path / "macros").mkdir(parents=True)
    (path / "dbt_project.yml").write_text("name: tiny_pkg\nversion: '1.0.0'\nconfig-version: 2\n")
    (path / "macros" / "tiny.sql").write_text("{% macro tiny_double(x) %}({{ x }} * 2){% endmacro %}\n")
    repo = git.Repo.init(path, initial_branch="main")
    repo.git.add("-A")
    repo.index.commit("tiny package")
    return path


def make_project(root: Path, name: str, packages: str) -> Path:
    """What a scratch clone is: the project's files, no dbt_packages/ yet."""
    path = root / name
    (path / "models").mkdir(parents=True)
    (path / "dbt_project.yml").write_text(PROJECT)
    (path / "models" / "m.sql").write_text(MODEL)
    (path / "packages.yml").write_text(packages)
    return path


def git_package(source: Path) -> str:
    return f'packages:\n  - git: "{source}"\n    revision: main\n'


@pytest.mark.slow
def test_packages_are_installed_once_and_copied_into_every_clone(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LAYERSYNC_CACHE", str(tmp_path / "cache"))
    source = make_package(tmp_path)
    first = make_project(tmp_path, "clone-1", git_package(source))
    key = packages_key(first)                                        # before dbt deps writes its lock file
    assert check_project(first, ["m"], profile="shop").ok            # `dbt deps` ran: the package is there
    entries = list((tmp_path / "cache" / "dbt-packages").iterdir())
    assert [e.name for e in entries] == [key]
    shutil.rmtree(source)                                            # dbt deps cannot run again
    second = make_project(tmp_path, "clone-2", git_package(source))
    checked = check_project(second, ["m"], profile="shop")
    assert checked.ok, checked.errors                                # so these came from the cache
    assert (second / "dbt_packages" / "tiny_pkg" / "macros" / "tiny.sql").is_file()


@pytest.mark.slow
def test_a_deps_failure_is_one_line(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LAYERSYNC_CACHE", str(tmp_path / "cache"))
    project = make_project(tmp_path, "clone", git_package(tmp_path / "no-such-package"))
    checked = check_project(project, ["m"], profile="shop")
    assert not checked.ok
    assert len(checked.errors) == 1, checked.errors
    line = checked.errors[0]
    assert line.startswith("dbt deps failed: ") and "no-such-package" in line and "does not exist" in line
    assert "Traceback" not in line and "\n" not in line
    assert not (tmp_path / "cache" / "dbt-packages").exists() or not any((tmp_path / "cache" / "dbt-packages").iterdir())


def test_the_cache_key_is_the_package_files_content(tmp_path) -> None:
    one = make_project(tmp_path, "one", "packages:\n  - package: dbt-labs/dbt_utils\n    version: 1.1.1\n")
    same = make_project(tmp_path, "same", "packages:\n  - package: dbt-labs/dbt_utils\n    version: 1.1.1\n")
    other = make_project(tmp_path, "other", "packages:\n  - package: dbt-labs/dbt_utils\n    version: 1.3.0\n")
    assert packages_key(one) == packages_key(same) != packages_key(other)
    (same / "package-lock.yml").write_text("packages:\n  - package: dbt-labs/dbt_utils\n    version: 1.1.1\nsha1_hash: x\n")
    assert packages_key(same) != packages_key(one)                   # the lock file counts too
    local = make_project(tmp_path, "local", "packages:\n  - local: ../shared\n")
    assert packages_key(local) is None                               # its files are outside: never cached
    (local / "packages.yml").unlink()
    assert packages_key(local) is None

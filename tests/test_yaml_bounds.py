"""dbt allows YAML aliases, so layersync reads them — but never lets a few hundred bytes of them expand
into gigabytes in the code that walks what was loaded (dbt properties files, dbt_project.yml,
layersync.yml): the expansion is measured without being done, and a document past the bound is a YAML
error with its line, like any other."""
from __future__ import annotations

import tracemalloc
from pathlib import Path

import git
import pytest
import yaml as pyyaml
from ruamel.yaml import YAML

from bot.dbt import schema_yaml
from bot.dbt.changes import changes_between
from bot.dbt.project import fast_yaml
from bot.demo.run import ANALYST, create_dbt_repo
from bot.yamlbounds import MAX_EXPANDED_NODES, AliasExpansionError, bounded, expanded_size


def bomb(levels: int = 9, indent: str = "") -> str:
    """The classic: each level lists the one before nine times (9**levels values, ~40 bytes a line)."""
    lines = [f"{indent}l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"{indent}l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


LOADERS = {
    "ruamel round-trip": lambda text: YAML().load(text),
    "ruamel safe": lambda text: YAML(typ="safe").load(text),
    "libyaml": lambda text: pyyaml.load(text, Loader=pyyaml.CSafeLoader),
}


def test_sizes_count_every_value_with_aliases_followed() -> None:
    data = YAML(typ="safe").load("a: &x {b: 1, c: [1, 2]}\nd: *x\ne: 3\n")
    # top mapping (1) + 3 keys + a (1 + 2 keys + 1 + list 1+2) twice + 3
    assert expanded_size(data) == 1 + 3 + 2 * (1 + 2 + 1 + 3) + 1


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_a_billion_laughs_is_refused_without_being_expanded(loader: str) -> None:
    data = LOADERS[loader](bomb())
    tracemalloc.start()
    with pytest.raises(AliasExpansionError) as raised:
        bounded(data)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2_000_000                               # 9**9 values would be gigabytes
    assert f"past {MAX_EXPANDED_NODES:,} values" in str(raised.value)


def test_a_value_that_contains_itself_is_refused() -> None:
    with pytest.raises(AliasExpansionError, match="cycle"):
        bounded(YAML(typ="safe").load("a: &a [1, *a]\n"))


def test_ordinary_anchors_stay_readable() -> None:
    text = "defaults: &d {materialized: table}\nmodels:\n  - name: a\n    config: *d\n  - name: b\n    config: *d\n"
    assert bounded(YAML().load(text))["models"][1]["config"]["materialized"] == "table"
    assert fast_yaml(text)["models"][0]["config"] == {"materialized": "table"}


def test_a_bomb_in_a_properties_file_is_a_schema_error_with_its_line() -> None:
    text = "version: 2\n" + bomb() + "models:\n  - name: orders\n"
    with pytest.raises(schema_yaml.SchemaYamlError) as raised:
        schema_yaml.upsert_column(text, "orders", "is_big", description="big")
    assert "aliases expand" in raised.value.message and raised.value.line is not None
    assert fast_yaml(text) is None                        # the fast reader treats it as unreadable


def test_a_bomb_in_a_dbt_properties_file_is_a_problem_of_the_diff(tmp_path: Path) -> None:
    remote = create_dbt_repo(tmp_path)
    work = git.Repo.clone_from(remote, tmp_path / "work")
    target = tmp_path / "work" / "models" / "bomb.yml"
    target.write_text("version: 2\n" + bomb() + "models:\n  - name: orders\n    columns:\n"
                      "      - name: order_id\n        meta: {owners: *l8}\n")     # where the diff walks meta
    work.git.add("-A")
    head = work.index.commit("a bomb", author=ANALYST, committer=ANALYST).hexsha
    tracemalloc.start()
    changes = changes_between(tmp_path / "work", "HEAD~1", head)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 200_000_000
    problems = [p for p in changes.problems if p.file == "models/bomb.yml"]
    assert problems and "aliases expand" in problems[0].message

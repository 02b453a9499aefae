"""Impact reports against a prod that the team's deploy job built: layersync reads prod (its schema from
config, its manifest from `dbt parse` of the base or the deploy job's artifacts) and writes only the PR's
dev schema. Real dbt builds, real DuckDB."""
from __future__ import annotations

import json
from pathlib import Path

import git
import pytest

from bot.cli import main
from bot.demo.run import ANALYST
from bot.impact.build import build_prod, drop_schema
from warehouse_snapshots import schemas as _schemas, snapshot as _snapshot

pytestmark = pytest.mark.slow

AMOUNT = "coalesce(payments_per_order.total_amount, 0) as amount"


def _commit_branch(remote: Path, tmp_path: Path, name: str, start: str, edit) -> str:
    work = git.Repo.clone_from(remote, tmp_path / f"dbt-{name}")
    work.git.checkout("-b", name, f"origin/{start}")
    model = tmp_path / f"dbt-{name}" / "models" / "marts" / "orders.sql"
    model.write_text(edit(model.read_text()))
    work.git.add("-A")
    work.index.commit(f"edit orders: {name}", author=ANALYST, committer=ANALYST)
    work.git.push("origin", name)
    return name


def _deploy(remote: Path, tmp_path: Path, rev: str, database: Path, schema: str) -> Path:
    """The team's deploy job: `dbt build` of `rev` into the prod schema. Returns its manifest."""
    checkout = tmp_path / f"deploy-{rev}"
    git.Repo.clone_from(remote, checkout).git.checkout(rev)
    result, manifest = build_prod(checkout, database, schema)
    assert result.ok, result.errors
    return manifest


def _impact(repos, tmp_path: Path, head: str, database: Path, *extra: str, base: str = "main",
            pr: str = "7") -> tuple[int, dict]:
    report = tmp_path / f"impact-{pr}-{len(extra)}.json"
    code = main(["impact", "--dbt-repo", str(repos.remote), "--semantic-repo", str(repos.semantic),
                 "--base", base, "--head", head, "--pr", pr, "--json", str(report), "--markdown",
                 str(tmp_path / "impact.md"), "--warehouse", str(database), "--workdir",
                 str(tmp_path / f"work-{pr}-{len(extra)}"), *extra])
    return code, (json.loads(report.read_text()) if report.exists() else {})


def test_prod_is_read_as_the_deploy_job_built_it_and_never_written(repos, tmp_path, capsys) -> None:
    database = tmp_path / "warehouse.duckdb"
    deploy_manifest = _deploy(repos.remote, tmp_path, "main", database, "analytics")
    head = _commit_branch(repos.remote, tmp_path, "double", "main",
                          lambda text: text.replace(AMOUNT, AMOUNT.replace(", 0)", ", 0) * 2")))
    before, schemas_before = _snapshot(database), _schemas(database)

    code, doc = _impact(repos, tmp_path, head, database, "--prod-schema", "analytics")

    assert code == 0, capsys.readouterr().err
    assert doc["prod"] == {"source": "parsed", "schemas": ["analytics"], "missing": []}
    assert doc["prod_schema"] == "analytics" and doc["build"]["selected"] == ["orders"]
    (orders,) = [m for m in doc["models"] if m["model"] == "orders"]
    assert orders["value_diff"]["changed_by_column"]["amount"] == 98
    revenue = [v for v in doc["semantic"]["measures"] if v["measure"] == "revenue" and v["dimension"] is None][0]
    assert (revenue["prod"], revenue["dev"]) == (1672.0, 3344.0)
    assert _snapshot(database) == before                         # prod byte-for-byte as the deploy left it
    assert _schemas(database) - schemas_before == {"layersync_pr_7"}   # the only thing written

    # the deploy job's own manifest as the state: the same report
    code, from_state = _impact(repos, tmp_path, head, database, "--prod-schema", "analytics",
                               "--prod-state", str(deploy_manifest))
    assert code == 0 and from_state["prod"]["source"] == "state"
    assert from_state["models"] == doc["models"] and from_state["semantic"] == doc["semantic"]
    assert _snapshot(database) == before


def test_a_prod_schema_without_the_project_is_a_clear_error_not_an_empty_report(repos, tmp_path, capsys) -> None:
    database = tmp_path / "warehouse.duckdb"
    _deploy(repos.remote, tmp_path, "main", database, "analytics")
    head = _commit_branch(repos.remote, tmp_path, "double", "main", lambda text: text.replace(AMOUNT, AMOUNT + " "))

    code, _ = _impact(repos, tmp_path, head, database, "--prod-schema", "prod")

    err = capsys.readouterr().err
    assert code == 2 and "holds none of the project's models" in err and "Traceback" not in err
    assert "layersync_pr_7" not in _schemas(database)


def test_custom_schemas_are_compared_relation_by_relation(repos, tmp_path, capsys) -> None:
    """`{{ config(schema='finance') }}` puts orders in `<target>_finance` in prod and in dev alike."""
    database = tmp_path / "warehouse.duckdb"
    base = _commit_branch(repos.remote, tmp_path, "finance", "main",
                          lambda text: "{{ config(schema='finance') }}\n" + text)
    _deploy(repos.remote, tmp_path, base, database, "analytics")
    head = _commit_branch(repos.remote, tmp_path, "finance-double", base,
                          lambda text: text.replace(AMOUNT, AMOUNT.replace(", 0)", ", 0) * 2")))

    code, doc = _impact(repos, tmp_path, head, database, "--prod-schema", "analytics", base=base, pr="8")

    assert code == 0, capsys.readouterr().err
    assert doc["prod"]["schemas"] == ["analytics", "analytics_finance"]
    (orders,) = [m for m in doc["models"] if m["model"] == "orders"]
    assert orders["rows"]["prod"] == orders["rows"]["dev"] == 99
    assert orders["value_diff"]["changed_by_column"]["amount"] == 98
    assert "layersync_pr_8_finance" in _schemas(database)
    revenue = [v for v in doc["semantic"]["measures"] if v["measure"] == "revenue" and v["dimension"] is None][0]
    assert (revenue["prod"], revenue["dev"]) == (1672.0, 3344.0)

    # clean-up takes the custom dev schema along, and nothing of prod's
    assert drop_schema(database, "layersync_pr_8", {"analytics"}, prod_schema="analytics") == \
        ["layersync_pr_8", "layersync_pr_8_finance"]
    assert not {s for s in _schemas(database) if s.startswith("layersync")}
    assert {"analytics", "analytics_finance"} <= _schemas(database)

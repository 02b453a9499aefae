"""`layersync impact` end to end: real dbt builds (prod, then dev with defer), real DuckDB."""
from __future__ import annotations

import json

import git
import pytest

from bot.cli import main
from bot.demo.run import ANALYST

pytestmark = pytest.mark.slow


def test_a_dbt_pr_that_doubles_amounts(repos, tmp_path, capsys) -> None:
    work = git.Repo.clone_from(repos.remote, tmp_path / "dbt-edit")
    model = tmp_path / "dbt-edit" / "models" / "marts" / "orders.sql"
    model.write_text(model.read_text().replace("coalesce(payments_per_order.total_amount, 0) as amount",
                                               "coalesce(payments_per_order.total_amount, 0) * 2 as amount"))
    work.git.checkout("-b", "double")
    work.git.add("-A")
    work.index.commit("double the amounts", author=ANALYST, committer=ANALYST)
    work.git.push("origin", "double")

    report = tmp_path / "impact.json"
    code = main(["impact", "--dbt-repo", str(repos.remote), "--semantic-repo", str(repos.semantic),
                 "--base", "main", "--head", "double", "--pr", "7", "--json", str(report),
                 "--workdir", str(tmp_path / "impact"), "--fail-on-measure-move", "5"])
    markdown = capsys.readouterr().out
    doc = json.loads(report.read_text())

    assert code == 1 and doc["status"]["state"] == "failure"  # revenue moved more than 5%
    assert doc["dev_schema"] == "layersync_pr_7"
    assert doc["build"]["ok"] and doc["build"]["selected"] == ["orders"]   # only the changed model
    assert doc["lineage"]["modified"] == ["orders"]
    (orders,) = [m for m in doc["models"] if m["model"] == "orders"]
    assert orders["rows"] == {"prod": 99, "dev": 99, "delta": 0, "pct": 0.0}
    diff = orders["value_diff"]
    assert (diff["added"], diff["removed"]) == (0, 0)
    assert diff["changed"] == diff["changed_by_column"]["amount"] == 98  # one order has amount 0
    revenue = [v for v in doc["semantic"]["measures"] if v["measure"] == "revenue" and v["dimension"] is None][0]
    assert (revenue["prod"], revenue["dev"], revenue["pct"]) == (1672.0, 3344.0, 100.0)
    assert doc["semantic"]["broken"] == []
    assert "<!-- layersync:impact pr=7 -->" in markdown and "| `orders.revenue` | total | 1,672 | 3,344 |" in markdown


def test_a_model_that_does_not_build_is_reported_failed_not_compared(repos, tmp_path, capsys) -> None:
    """The only changed model fails: reported as failed with dbt's error; no "models built 1" and
    none of its columns listed as "removed" (dev has no relation to compare)."""
    work = git.Repo.clone_from(repos.remote, tmp_path / "dbt-edit")
    model = tmp_path / "dbt-edit" / "models" / "marts" / "orders.sql"
    model.write_text(model.read_text().replace("select * from final", "select *, no_such_column + 1 as ghost from final"))
    work.git.checkout("-b", "ghost")
    work.git.add("-A")
    work.index.commit("a column orders does not have", author=ANALYST, committer=ANALYST)
    work.git.push("origin", "ghost")

    report = tmp_path / "impact.json"
    code = main(["impact", "--dbt-repo", str(repos.remote), "--semantic-repo", str(repos.semantic),
                 "--base", "main", "--head", "ghost", "--pr", "8", "--json", str(report),
                 "--workdir", str(tmp_path / "impact")])
    markdown = capsys.readouterr().out
    doc = json.loads(report.read_text())
    assert code == 1 and not doc["build"]["ok"] and doc["build"]["failed"] == ["orders"]
    assert doc["build"]["built"] == []
    (orders,) = [m for m in doc["models"] if m["model"] == "orders"]
    assert orders["status"] == "failed" and "no_such_column" in orders["error"]
    assert orders["columns_removed"] == [] and orders["rows"] is None
    assert "| 0 | 0 | 0 | 0 | 0 |" in markdown          # nothing built, nothing compared
    assert "removed `" not in markdown and "- `orders`: failed to build" in markdown
    assert "no_such_column" in markdown

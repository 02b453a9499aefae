"""push-to-dbt of measures end to end: real git, real dbt parse, mf validate-configs, a build of the
branch, and `mf query` beside the BI definition in the PR, the JSON and a commit status."""
from __future__ import annotations

import json

import pytest

from bot.forge.local import LocalForge
from bot.push_to_dbt import PushRequest, run

pytestmark = pytest.mark.slow

MARTS_YML = "models/marts/_marts__models.yml"
MEASURES = """  big_count:
    label: Distinct orders
    sql: ${order_id}
    aggregate_type: count_distinct
  returned_orders:
    aggregate_type: count
    filters:
      status:
        is: returned
  return_rate:
    label: Return rate
    sql: ${orders.returned_orders} / NULLIF(${orders.big_count}, 0)
  broken_list:
    sql: ${status}
    aggregate_type: list
"""


def push(repos, **kwargs):
    return run(PushRequest(semantic_repo=repos.semantic, dbt_repo=repos.remote, **kwargs),
               LocalForge(repos.state_db))


def test_measures_become_metrics_with_parity_in_the_pr_json_and_status(repos) -> None:
    before = repos.dbt_file("main", MARTS_YML)
    repos.write_semantic("views/orders.view.yaml", (repos.semantic / "views/orders.view.yaml").read_text() + MEASURES)
    repos.commit_semantic()
    result = push(repos)

    # the list aggregate cannot be translated: reported, exit code 1, the rest still pushed
    assert result.exit_code == 1
    assert [(s.id, s.code) for s in result.skipped] == [("orders.broken_list", "not-translatable")]
    assert "MetricFlow has no list aggregation" in result.skipped[0].reason
    pushed = {m.id: m for m in result.metrics}
    assert set(pushed) == {"orders.big_count", "orders.returned_orders", "orders.return_rate"}
    assert pushed["orders.return_rate"].kind == "ratio" and pushed["orders.big_count"].kind == "simple"
    assert {m.semantic_model for m in pushed.values()} == {"orders"}
    assert pushed["orders.big_count"].agg_time_dimension == "order_date"

    doc = result.to_json()
    entries = {p["field"]: p for p in doc["pushed"] if "metric" in p}
    assert entries["orders.return_rate"]["metric"] == "orders_return_rate"
    assert entries["orders.return_rate"]["action"] == "added"
    assert MARTS_YML in entries["orders.return_rate"]["files"]
    parity = entries["orders.returned_orders"]["parity"]
    assert parity[0]["group"] is None and parity[0]["ok"] and parity[0]["dbt"] == parity[0]["bi"]
    grouped = [r for r in parity if r["group"] is not None]
    assert grouped and all(r["ok"] for r in grouped)
    assert all(r["ok"] for m in entries.values() for r in m["parity"])
    json.dumps(doc)                                          # the contract is JSON

    # the properties file: its old text kept byte for byte, the definitions added after it
    after = repos.dbt_file(result.branch, MARTS_YML)
    assert after.startswith(before.rstrip("\n")) and "semantic_models:" in after and "metrics:" in after
    assert repos.dbt_file(result.branch, "models/metricflow_time_spine.sql") is not None

    forge = LocalForge(repos.state_db)
    pr = forge.list_prs()[0]
    assert "### Metrics (dbt semantic layer)" in pr.body and "✓" in pr.body and "✗" not in pr.body
    assert "`orders_return_rate`" in pr.body and "orders.broken_list" in pr.body
    assert result.metric_status is not None and result.metric_status[0] == "success"

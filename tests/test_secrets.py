"""No secret leaves the process: dbt starts with an allow-listed environment, and every text a forge
posts or stores (comments, PR titles and bodies, commit statuses), every CLI error and every log line
passes through `bot.redact.scrub`."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from bot import redact
from bot.dbt.runner import dbt_environment, profile_env_names, run_dbt, write_duckdb_profile
from bot.forge.base import body_with_marker, check_status, check_title, truncate_body
from bot.forge.local import LocalForge

TOKEN = "ghs_leakTestToken0123456789abcdefABCDEF"
WEBHOOK_SECRET = "whsec-quokka-zebra-7781"       # no credential shape: only its registration masks it
KEY = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAsecretkeymaterialline0123456789\n-----END RSA PRIVATE KEY-----"


# ------------------------------------------------------------------ the environment dbt starts with

WORKER_ENV = {
    "PATH": "/usr/bin:/bin", "HOME": "/home/bot", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC",
    "TMPDIR": "/tmp", "VIRTUAL_ENV": "/opt/venv", "PYTHONPATH": "/opt/lib",
    "DBT_TARGET_PATH": "target", "DBT_ENV_CUSTOM_ENV_TEAM": "data", "PGSSLMODE": "require",
    "PGSSLROOTCERT": "/etc/ssl/pg.crt", "HTTPS_PROXY": "http://proxy:3128",
    "LAYERSYNC_GITHUB_TOKEN": TOKEN, "LAYERSYNC_WEBHOOK_SECRET": WEBHOOK_SECRET,
    "LAYERSYNC_GITHUB_PRIVATE_KEY": KEY, "LAYERSYNC_WAREHOUSE": "postgresql://bot:pw-123456@db/prod",
    "LAYERSYNC_DBT_REPO": "acme/dbt", "GITHUB_TOKEN": "ghp_other0123456789abcdefghij", "GITHUB_ACTIONS": "true",
    "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraheader",
    "GIT_CONFIG_VALUE_0": "Authorization: Basic eC1hY2Nlc3M=", "AWS_SECRET_ACCESS_KEY": "aws-secret-value",
    "PGPASSWORD": "pg-password-value", "SNOWFLAKE_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----x",
    "DBT_ENV_SECRET_GIT_TOKEN": "dbt-secret", "DBT_CLOUD_API_TOKEN": "dbt-cloud-token",
    "MY_APP_SETTING": "unrelated", "SSH_AUTH_SOCK": "/tmp/agent.sock",
}


def test_dbt_environment_keeps_what_dbt_needs_and_drops_every_secret() -> None:
    env = dbt_environment(None, WORKER_ENV)
    kept = {"PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH", "DBT_TARGET_PATH",
            "DBT_ENV_CUSTOM_ENV_TEAM", "PGSSLMODE", "PGSSLROOTCERT", "HTTPS_PROXY"}
    assert {name: env[name] for name in kept} == {name: WORKER_ENV[name] for name in kept}
    dropped = set(WORKER_ENV) - kept
    assert not dropped & set(env), sorted(dropped & set(env))
    assert not any(name.startswith(("LAYERSYNC_", "GITHUB_", "GIT_")) for name in env)
    assert env["DBT_SEND_ANONYMOUS_USAGE_STATS"] == "false" and env["DBT_USE_COLORS"] == "false"


def test_the_profiles_own_variables_pass_but_never_a_layersync_one(tmp_path: Path) -> None:
    (tmp_path / "profiles.yml").write_text(
        "shop:\n  target: prod\n  outputs:\n    prod:\n      type: postgres\n"
        "      host: \"{{ env_var('WAREHOUSE_HOST') }}\"\n"
        "      password: \"{{ env_var('PGPASSWORD') }}\"\n"
        "      user: \"{{ env_var( \"DBT_ENV_SECRET_GIT_TOKEN\" , 'x') }}\"\n"
        "      dbname: \"{{ env_var('LAYERSYNC_WAREHOUSE') }}\"\n      schema: prod\n")
    environ = {**WORKER_ENV, "WAREHOUSE_HOST": "db.internal"}
    assert profile_env_names(tmp_path) == {"WAREHOUSE_HOST", "PGPASSWORD", "DBT_ENV_SECRET_GIT_TOKEN",
                                           "LAYERSYNC_WAREHOUSE"}
    env = dbt_environment(tmp_path, environ)
    assert env["WAREHOUSE_HOST"] == "db.internal"
    assert env["PGPASSWORD"] == "pg-password-value"                 # the profile asks for it by name
    assert env["DBT_ENV_SECRET_GIT_TOKEN"] == "dbt-secret"
    assert "LAYERSYNC_WAREHOUSE" not in env                          # never, even when asked for
    assert "AWS_SECRET_ACCESS_KEY" not in env and "LAYERSYNC_GITHUB_TOKEN" not in env
    assert env["DBT_PROFILES_DIR"] == str(tmp_path)


LEAK_MODEL = """{{ log('token=' ~ env_var('LAYERSYNC_GITHUB_TOKEN', 'absent'), info=True) }}
{{ log('gh=' ~ env_var('GITHUB_TOKEN', 'absent'), info=True) }}
select '{{ env_var('LAYERSYNC_GITHUB_TOKEN', 'absent') }}' as seen,
       '{{ env_var('DBT_LAYERSYNC_PROBE', 'absent') }}' as probe
"""


@pytest.mark.slow
def test_a_real_dbt_run_does_not_see_the_workers_secrets(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LAYERSYNC_GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_other0123456789abcdefghij")
    monkeypatch.setenv("DBT_LAYERSYNC_PROBE", "dbt-settings-pass")
    project = tmp_path / "leak"
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text("name: leak\nversion: '1.0'\nconfig-version: 2\nprofile: leak\n")
    (project / "models" / "probe.sql").write_text(LEAK_MODEL)
    profiles = tmp_path / "profiles"
    write_duckdb_profile(profiles, "leak", ":memory:")

    lines: list[str] = []
    run = run_dbt(["compile", "--select", "probe"], project, profiles, log=lines.append)

    assert run.ok, run.output
    assert "token=absent" in run.output and "gh=absent" in run.output
    compiled = next(project.glob("target/compiled/leak/models/probe.sql")).read_text()
    assert "'absent' as seen" in compiled
    assert "'dbt-settings-pass' as probe" in compiled               # DBT_* settings still reach dbt
    assert TOKEN not in run.output and TOKEN not in "\n".join(lines) and TOKEN not in compiled


def test_dbt_output_is_scrubbed_as_it_is_read(tmp_path: Path, monkeypatch) -> None:
    """A secret dbt prints anyway (say the operator's profile hands it one) is masked in the run's
    output and in every line streamed to the log."""
    redact.register(WEBHOOK_SECRET)
    script = tmp_path / "fake-dbt"
    script.write_text(f"#!/bin/sh\necho 'Compilation Error: {WEBHOOK_SECRET}'\nexit 1\n")
    script.chmod(0o755)
    monkeypatch.setattr("bot.dbt.runner.dbt_command", lambda: [str(script)])
    lines: list[str] = []
    run = run_dbt(["compile"], tmp_path, tmp_path, log=lines.append)
    assert not run.ok
    assert lines == ["Compilation Error: ***"]
    assert run.error_lines() == ["Compilation Error: ***"]


# ------------------------------------------------------------------ the forge's choke points

def test_bodies_titles_and_statuses_are_scrubbed_at_the_forge_helpers() -> None:
    redact.register(WEBHOOK_SECRET)
    assert truncate_body(f"dbt rejected the edit: {WEBHOOK_SECRET}") == "dbt rejected the edit: ***"
    marked = body_with_marker(f"error {TOKEN}", "<!-- layersync:x -->")
    assert marked == "<!-- layersync:x -->\nerror ***"
    assert check_title(f"Push {WEBHOOK_SECRET}") == "Push ***"
    assert check_status("failure", f"dbt: {WEBHOOK_SECRET}") == "dbt: ***"
    long = check_status("failure", "x" * 130 + WEBHOOK_SECRET)        # scrubbed before the cut
    assert WEBHOOK_SECRET[:8] not in long and len(long) <= 140


def test_local_forge_stores_every_text_scrubbed(tmp_path: Path) -> None:
    redact.register(WEBHOOK_SECRET, redact.url_password("postgresql://bot:Pa55-word-x@db/prod"))
    forge = LocalForge(tmp_path / "state.sqlite")
    pr, _ = forge.open_or_update_pr("r", head="h", base="main", title=f"t {WEBHOOK_SECRET}",
                                    body=f"body {WEBHOOK_SECRET} and Pa55-word-x")
    forge.upsert_comment("r", pr.number, f"reply {WEBHOOK_SECRET}", "<!-- m -->")
    forge.add_comment("r", pr.number, f"once {TOKEN}")
    forge.set_status("r", "abc", "failure", f"failed: {WEBHOOK_SECRET}")
    stored = forge.get_pr("r", pr.number)
    assert (stored.title, stored.body) == ("t ***", "body *** and ***")
    assert [c.body for c in forge.list_comments("r", pr.number)] == ["<!-- m -->\nreply ***", "once ***"]
    assert forge.statuses("r", "abc") == {"layersync/impact": ("failure", "failed: ***")}
    # the same text again is a no-op, not an edit (the stored text is compared scrubbed)
    again, created = forge.open_or_update_pr("r", head="h", base="main", title=f"t {WEBHOOK_SECRET}",
                                             body=f"body {WEBHOOK_SECRET} and Pa55-word-x")
    assert not created and again.updated_at == stored.updated_at


# ------------------------------------------------------------------ settings register, CLI and logs scrub

def test_load_service_config_registers_every_configured_secret(tmp_path: Path) -> None:
    from bot.service_config import load_service_config

    key_file = tmp_path / "app.pem"
    key_file.write_text(KEY)
    load_service_config({"LAYERSYNC_WEBHOOK_SECRET": WEBHOOK_SECRET, "LAYERSYNC_DBT_REPO": "a/d",
                         "LAYERSYNC_SEMANTIC_REPO": "a/s", "LAYERSYNC_GITHUB_TOKEN": "tok-plain-value-1",
                         "LAYERSYNC_GITHUB_APP_ID": "1", "LAYERSYNC_GITHUB_PRIVATE_KEY_FILE": str(key_file),
                         "LAYERSYNC_WAREHOUSE": "postgresql://bot:whpass-9876@db/prod"})
    text = f"{WEBHOOK_SECRET} tok-plain-value-1 whpass-9876 MIIEowIBAAKCAQEAsecretkeymaterialline0123456789"
    assert redact.scrub(text) == "*** *** *** ***"


def test_load_service_config_registers_secrets_from_the_config_file(tmp_path: Path) -> None:
    from bot.service_config import load_service_config

    config = tmp_path / "layersync.yml"
    config.write_text(f"webhook_secret: {WEBHOOK_SECRET}\ndbt_repo: a/d\nsemantic_repo: a/s\nforge: local\n")
    load_service_config({}, config)
    assert redact.scrub(f"x {WEBHOOK_SECRET}") == "x ***"


def test_cli_errors_are_scrubbed(tmp_path: Path, monkeypatch, capsys) -> None:
    from bot import cli

    monkeypatch.setenv("LAYERSYNC_WEBHOOK_SECRET", WEBHOOK_SECRET)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)        # main() installs a scrubbing one
    missing = tmp_path / f"repo-{WEBHOOK_SECRET}"
    code = cli.main(["push-to-dbt", "--semantic-repo", str(missing), "--dbt-repo", str(missing)])
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE
    assert "does not exist" in err and WEBHOOK_SECRET not in err and "repo-***" in err


def test_a_dsn_given_with_warehouse_registers_its_password(tmp_path: Path, capsys, monkeypatch) -> None:
    from bot import cli

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    code = cli.main(["pull-from-dbt", "--dbt-repo", str(tmp_path / "nope"), "--semantic-repo", str(tmp_path),
                     "--warehouse", "postgresql://bot:cli-pass-4242@db/prod"])
    assert code == cli.EXIT_USAGE
    assert redact.scrub("password was cli-pass-4242") == "password was ***"


def test_service_logging_is_scrubbed(monkeypatch, caplog) -> None:
    from bot import cli

    caplog.set_level(logging.DEBUG)
    cli.configure_logging()
    redact.register(WEBHOOK_SECRET)
    logging.getLogger("layersync.test").warning("dbt said %s", WEBHOOK_SECRET)
    assert "dbt said ***" in caplog.text and WEBHOOK_SECRET not in caplog.text


def test_cli_results_are_scrubbed(capsys) -> None:
    from types import SimpleNamespace

    from bot import cli

    redact.register(WEBHOOK_SECRET)
    result = SimpleNamespace(exit_code=1, to_json=lambda: {"message": f"dbt rejected: {WEBHOOK_SECRET}"})
    assert cli._emit(result, True, str) == 1
    assert cli._emit(result, False, lambda r: r.to_json()["message"]) == 1
    out = capsys.readouterr().out
    assert out.count("dbt rejected: ***") == 2 and WEBHOOK_SECRET not in out

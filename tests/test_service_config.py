"""Service settings: environment over file, clear errors, secrets never printed."""
from __future__ import annotations

import pytest

from bot.errors import LayersyncError
from bot.service_config import load_service_config

BASE = {"LAYERSYNC_WEBHOOK_SECRET": "s3cret-value", "LAYERSYNC_DBT_REPO": "acme/dbt",
        "LAYERSYNC_SEMANTIC_REPO": "acme/semantic", "LAYERSYNC_GITHUB_TOKEN": "ghp_supersecret"}


def test_environment_wins_over_the_file(tmp_path) -> None:
    file = tmp_path / "layersync.yml"
    file.write_text("dbt_repo: file/dbt\nauto_push: true\nqueue_db: /tmp/q.sqlite\n")
    config = load_service_config(BASE, file)
    assert (config.dbt_repo, config.auto_push, str(config.queue_db)) == ("acme/dbt", True, "/tmp/q.sqlite")
    assert "s3cret" not in repr(config) and "ghp_" not in repr(config)


def test_missing_settings_are_named() -> None:
    with pytest.raises(LayersyncError, match="LAYERSYNC_WEBHOOK_SECRET, LAYERSYNC_SEMANTIC_REPO"):
        load_service_config({"LAYERSYNC_DBT_REPO": "a/b"})
    with pytest.raises(LayersyncError, match="GitHub needs LAYERSYNC_GITHUB_TOKEN"):
        load_service_config({k: v for k, v in BASE.items() if k != "LAYERSYNC_GITHUB_TOKEN"})


def test_app_key_from_a_file_and_local_forge(tmp_path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("-----BEGIN RSA PRIVATE KEY-----\n...\n")
    env = {**{k: v for k, v in BASE.items() if k != "LAYERSYNC_GITHUB_TOKEN"},
           "LAYERSYNC_GITHUB_APP_ID": "42", "LAYERSYNC_GITHUB_PRIVATE_KEY_FILE": str(key)}
    assert load_service_config(env).github_private_key.startswith("-----BEGIN")
    local = load_service_config({**env, "LAYERSYNC_FORGE": "local"})
    assert local.forge == "local"

"""The command line as a new user meets it: --version, --help, one-line errors, honest file names."""
from __future__ import annotations

import argparse
import re

import pytest

from bot.cli import build_parser, main


def one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_version_is_printed(capsys) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.strip() == f"layersync {version('layersync')}"


def test_every_subcommand_help_starts_with_a_description() -> None:
    parser = build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    subcommands = actions[0].choices
    assert {"push-to-dbt", "pull-from-dbt", "prs", "serve", "worker", "impact", "demo", "preview"} <= set(subcommands)
    for name, sub in subcommands.items():
        assert sub.description, f"`layersync {name} --help` has no description"
        text = sub.format_help()
        assert sub.description.split(".")[0] in " ".join(text.split()), name
        undocumented = [a.option_strings for a in sub._actions if a.option_strings and not a.help]
        assert undocumented == [], f"{name}: options without help: {undocumented}"


def test_readme_lists_every_subcommand() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    commands = readme.split("## Commands", 1)[1].split("```", 2)[1]
    listed = set(re.findall(r"^layersync ([a-z][a-z-]*)", commands, re.M))
    parser = build_parser()
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(subcommands) == listed


def test_demo_refuses_a_folder_that_is_not_empty_in_one_line(tmp_path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    assert main(["demo", "--workdir", str(tmp_path)]) == 2
    err = one_line_error(capsys)
    assert f"`{tmp_path}` is not empty" in err and "pass another folder, or remove it" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]      # nothing written into it
    (tmp_path / "file").write_text("")
    assert main(["demo", "--workdir", str(tmp_path / "file")]) == 2
    assert "is a file" in one_line_error(capsys)


def test_prs_with_a_missing_state_db_is_an_error_not_a_new_database(tmp_path, capsys) -> None:
    missing = tmp_path / "typo.sqlite"
    assert main(["prs", "--state-db", str(missing)]) == 2
    assert f"`{missing}` does not exist" in one_line_error(capsys)
    assert not missing.exists()
    assert main(["prs", "--state-db", str(missing), "--show", "1"]) == 2
    assert not missing.exists()


def test_prs_without_any_database_yet_says_so_and_creates_none(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("LAYERSYNC_STATE_DB", str(tmp_path / "state.sqlite"))
    assert main(["prs"]) == 0
    assert "no pull requests" in capsys.readouterr().out
    assert not (tmp_path / "state.sqlite").exists()


def test_prs_show_prints_the_body_a_person_reads(repos, capsys) -> None:
    from bot.forge.local import LocalForge
    from bot.pr_body import hidden_json

    body = (f"<!-- layersync:push branch=x -->\n{hidden_json('facts', {'semantic_repo': '/tmp/a-b'})}\n"
            "Moves logic into dbt.\n\n\n\n<details><summary>Every change</summary>\n\n- one\n\n</details>\n")
    forge = LocalForge(repos.state_db)
    pr, _ = forge.open_or_update_pr(str(repos.remote), head="layersync/push/x", base="main", title="a title", body=body)
    assert main(["prs", "--state-db", str(repos.state_db), "--show", str(pr.number)]) == 0
    shown = capsys.readouterr().out
    assert "<!--" not in shown and "\\u002d" not in shown and "<details>" not in shown
    assert "Moves logic into dbt." in shown and "Every change:" in shown and "- one" in shown
    assert "\n\n\n" not in shown
    assert main(["prs", "--state-db", str(repos.state_db), "--show", str(pr.number), "--raw"]) == 0
    assert capsys.readouterr().out.rstrip("\n") == body.rstrip("\n")          # as posted, markers and all


def test_an_unknown_field_names_the_view_file_without_a_line(repos, capsys) -> None:
    args = ["push-to-dbt", "--semantic-repo", str(repos.semantic), "--dbt-repo", str(repos.remote),
            "--state-db", str(repos.state_db), "--field", "orders.nope"]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "skipped  orders.nope: views/orders.view.yaml: unknown field `nope` in view `orders`" in out
    assert "orders.view.yaml:1" not in out


def test_a_port_in_use_is_one_line(tmp_path, monkeypatch, capsys) -> None:
    import socket

    monkeypatch.setenv("LAYERSYNC_WEBHOOK_SECRET", "s3cret-for-the-test")
    monkeypatch.setenv("LAYERSYNC_DBT_REPO", "acme/dbt")
    monkeypatch.setenv("LAYERSYNC_SEMANTIC_REPO", "acme/semantic")
    monkeypatch.setenv("LAYERSYNC_FORGE", "local")
    monkeypatch.setenv("LAYERSYNC_QUEUE_DB", str(tmp_path / "jobs.sqlite"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["serve", "--port", str(taken.getsockname()[1])]) == 2
    assert "Address already in use" in one_line_error(capsys)


def test_serve_reports_every_missing_setting_at_once(tmp_path, monkeypatch, capsys) -> None:
    for name in ("LAYERSYNC_WEBHOOK_SECRET", "LAYERSYNC_DBT_REPO", "LAYERSYNC_SEMANTIC_REPO", "LAYERSYNC_GITHUB_TOKEN",
                 "LAYERSYNC_GITHUB_APP_ID", "LAYERSYNC_GITHUB_PRIVATE_KEY", "LAYERSYNC_GITHUB_PRIVATE_KEY_FILE",
                 "LAYERSYNC_FORGE", "LAYERSYNC_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert main(["serve", "--port", "0"]) == 2
    err = one_line_error(capsys)
    for name in ("LAYERSYNC_WEBHOOK_SECRET", "LAYERSYNC_DBT_REPO", "LAYERSYNC_SEMANTIC_REPO", "LAYERSYNC_GITHUB_TOKEN"):
        assert name in err
    monkeypatch.setenv("LAYERSYNC_GITHUB_PRIVATE_KEY_FILE", str(tmp_path / "no-such.pem"))
    monkeypatch.setenv("LAYERSYNC_GITHUB_APP_ID", "12")
    assert main(["serve", "--port", "0"]) == 2
    err = one_line_error(capsys)
    assert "LAYERSYNC_WEBHOOK_SECRET" in err and f"`{tmp_path / 'no-such.pem'}`" in err


@pytest.mark.parametrize("setup, argv, words", [
    (lambda d: (d / "bad.yaml").write_text("a: [\n"), ["serve", "--config", "{d}/bad.yaml"],
     "bad.yaml:2: config file is not valid YAML"),
    (lambda d: (d / "list.yaml").write_text("- 1\n"), ["worker", "--config", "{d}/list.yaml"],
     "must be a mapping of settings"),
    (lambda d: (d / "lease.yaml").write_text("webhook_secret: s3cret-x\ndbt_repo: a/b\nsemantic_repo: a/c\n"
                                             "forge: local\nlease_seconds: soon\n"),
     ["worker", "--config", "{d}/lease.yaml"], "LAYERSYNC_LEASE_SECONDS must be a number"),
    (lambda d: (d / "folder").mkdir(), ["prs", "--state-db", "{d}/folder"], "is a folder"),
    (lambda d: (d / "notes.sqlite").write_text("not a database\n" * 100), ["prs", "--state-db", "{d}/notes.sqlite"],
     "is not a layersync state database"),
    (lambda d: None, ["push-to-dbt", "--semantic-repo", "{d}", "--dbt-repo", "{d}", "--profiles-dir", "{d}/nope"],
     "--profiles-dir `"),
])
def test_bad_input_is_one_line_never_a_traceback(setup, argv, words, tmp_path, monkeypatch, capsys) -> None:
    for name in ("LAYERSYNC_WEBHOOK_SECRET", "LAYERSYNC_DBT_REPO", "LAYERSYNC_SEMANTIC_REPO", "LAYERSYNC_CONFIG",
                 "LAYERSYNC_LEASE_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    setup(tmp_path)
    assert main([a.format(d=tmp_path) for a in argv]) == 2
    assert words in one_line_error(capsys)

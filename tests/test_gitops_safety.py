"""git's failures as users may see them (no token, no command line, no scratch path), files that are not
UTF-8, and PR heads fetched from the forge's PR ref — a fork's `main` is never the base repo's `main`."""
from __future__ import annotations

from pathlib import Path

import git
import pytest

from bot.cli import main
from bot.demo.run import ANALYST, create_dbt_repo, create_semantic_repo
from bot.errors import EncodingError, RepoError
from bot.forge.github import GitHubForge
from bot.forge.local import LocalForge
from bot.gitops import RevisionReader, Workspace
from bot.handlers.context import Context, Settings
from bot.handlers.router import Event
from bot.service import ROUTER
from github_standin import GitHubStandIn
from payloads import issue_comment_created, pull_request

TOKEN = "ghs_gitopsSafetyToken0123456789abcd"
QUIET = {"seconds_between_requests": None, "seconds_between_writes": None}
FORK_FIELD = "\n  is_fork_order:\n    sql: ${TABLE}.amount > 7\nmeasures:"


def _commit(repo: git.Repo, message: str) -> str:
    repo.git.add("-A")
    return repo.index.commit(message, author=ANALYST, committer=ANALYST).hexsha


def test_a_file_that_is_not_utf8_is_an_error_with_its_line(tmp_path: Path) -> None:
    repo = git.Repo.init(tmp_path / "r", initial_branch="main")
    (tmp_path / "r" / "v.view.yaml").write_bytes(b"table_name: orders\ndimensions:\n  caf\xe9: {}\n")
    _commit(repo, "latin-1")
    reader = RevisionReader(tmp_path / "r")
    with pytest.raises(EncodingError) as read:
        reader.read("HEAD", "v.view.yaml")
    with pytest.raises(EncodingError) as many:
        reader.read_many("HEAD", ["v.view.yaml"])
    for error in (read.value, many.value):
        assert (error.file, error.line) == ("v.view.yaml", 3)
        assert "not UTF-8" in str(error) and "0xe9" in str(error)


def test_git_refusals_are_one_line_without_command_line_or_scratch_path(tmp_path: Path) -> None:
    remote = create_dbt_repo(tmp_path)
    with Workspace(str(remote)) as ws:
        with pytest.raises(RepoError) as raised:
            ws.checkout("layersync/push/" + "x" * 300, "main")          # git: "File name too long"
        text = str(raised.value)
        assert "\n" not in text and "cmdline" not in text and "Cmd(" not in text
        assert ws._tmp not in text and "layersync-ws-" not in text
        assert "too long" in text.lower()


def _standin_with_semantic(tmp_path: Path, standin: GitHubStandIn) -> tuple[Path, str]:
    semantic = create_semantic_repo(tmp_path / "src")
    standin.create_repo("acme/dbt", from_path=create_dbt_repo(tmp_path / "src"))
    standin.create_repo("acme/semantic", from_path=semantic)
    standin.add_user("layersync-bot", type="Bot")
    standin.add_token(TOKEN, user="layersync-bot")
    return semantic, standin.git_url("acme/semantic")


def test_a_refused_push_never_shows_the_token_of_the_remote_url(tmp_path: Path, capsys) -> None:
    with GitHubStandIn() as standin:
        semantic, _ = _standin_with_semantic(tmp_path, standin)
        standin.add_token("ghs_readOnlyToken0123456789abcdefgh", user="layersync-bot", read_only=True)
        url = standin.git_url("acme/dbt").replace("://", "://x-access-token:ghs_readOnlyToken0123456789abcdefgh@", 1)
        clone = git.Repo.clone_from(url, tmp_path / "dbt-clone")               # origin carries the token
        (semantic / "layersync.yml").write_text("dialect: duckdb\ndbt_check: false\n")
        view = semantic / "views" / "orders.view.yaml"
        view.write_text(view.read_text().replace("\nmeasures:", FORK_FIELD, 1))
        _commit(git.Repo(semantic), "a field")
        code = main(["push-to-dbt", "--semantic-repo", str(semantic), "--dbt-repo", str(clone.working_tree_dir),
                     "--state-db", str(tmp_path / "state.sqlite")])
    out = capsys.readouterr()
    assert code != 0
    assert "ghs_readOnlyToken" not in out.out + out.err
    assert "refused" in out.err and "x-access-token:***@" in out.err
    assert "Traceback" not in out.err and len(out.err.strip().splitlines()) == 1


def _fork_pr(tmp_path: Path, standin: GitHubStandIn, semantic: Path) -> tuple[int, str]:
    """mallory's fork adds a field on its own `main`; the PR is mallory:main → acme:main."""
    fork = git.Repo.clone_from(standin.bare_path("acme/semantic"), tmp_path / "fork")
    view = tmp_path / "fork" / "views" / "orders.view.yaml"
    view.write_text(view.read_text().replace("\nmeasures:", FORK_FIELD, 1))
    sha = _commit(fork, "fork field")
    fork.git.push(str(standin.bare_path("acme/semantic")), f"{sha}:refs/fork-objects/mallory")  # objects only
    pr = standin.create_fork_pr("acme/semantic", "mallory", "main", sha, "main", title="From a fork")
    return pr.number, sha


def test_a_fork_pr_named_like_a_base_branch_is_read_from_its_own_head(tmp_path: Path) -> None:
    with GitHubStandIn() as standin:
        semantic, _ = _standin_with_semantic(tmp_path, standin)
        number, sha = _fork_pr(tmp_path, standin, semantic)
        forge = GitHubForge.from_token(TOKEN, base_url=standin.api_url, bot_login="layersync-bot", **QUIET)
        ctx = Context(forge, Settings(dbt_repo="acme/dbt", semantic_repo="acme/semantic"))
        payload = pull_request("opened", repo="acme/semantic", number=number, head_ref="main", base_ref="main",
                               head_sha=sha)
        ROUTER.dispatch(Event("pull_request", payload, "d-fork"), ctx)
        (reply,) = standin.comments("acme/semantic", number)
    assert "`orders.is_fork_order` | `orders.is_fork_order` | added | `amount > 7`" in reply.body


def test_an_event_whose_commit_the_pr_no_longer_has_is_an_error(tmp_path: Path) -> None:
    with GitHubStandIn() as standin:
        semantic, _ = _standin_with_semantic(tmp_path, standin)
        number, _ = _fork_pr(tmp_path, standin, semantic)
        with Workspace(standin.git_url("acme/semantic").replace("://", f"://x-access-token:{TOKEN}@", 1)) as ws:
            with pytest.raises(RepoError, match="not at the event's commit"):
                ws.checkout_pr_head(f"refs/pull/{number}/head", "ab" * 20)
            assert TOKEN not in ws.shown


def test_the_local_forge_keeps_refs_pull_head_at_the_head_branch(tmp_path: Path) -> None:
    remote = create_dbt_repo(tmp_path)
    forge = LocalForge(tmp_path / "state.sqlite")
    work = git.Repo.clone_from(remote, tmp_path / "work")
    work.git.checkout("-b", "feature")
    (tmp_path / "work" / "NOTE.md").write_text("one\n")
    first = _commit(work, "one")
    work.git.push("origin", "feature")
    pr, _ = forge.open_or_update_pr(str(remote), head="feature", base="main", title="t", body="b")
    with Workspace(str(remote)) as ws:
        assert ws.checkout_pr_head(forge.pr_head_ref(str(remote), pr.number), first) == first
    (tmp_path / "work" / "NOTE.md").write_text("two\n")
    second = _commit(work, "two")
    work.git.push("origin", "feature")
    with Workspace(str(remote)) as ws:
        assert ws.checkout_pr_head(forge.pr_head_ref(str(remote), pr.number), second) == second
        # an older event's commit is still in the PR: it is what that event is about
        assert ws.checkout_pr_head(forge.pr_head_ref(str(remote), pr.number), first) == first


def test_a_fork_pr_gets_no_preview_and_is_known_as_a_fork(tmp_path: Path) -> None:
    with GitHubStandIn() as standin:
        semantic, _ = _standin_with_semantic(tmp_path, standin)
        number, _ = _fork_pr(tmp_path, standin, semantic)
        standin.add_user("ada")
        standin.grant("acme/semantic", "ada", "write")
        forge = GitHubForge.from_token(TOKEN, base_url=standin.api_url, bot_login="layersync-bot", **QUIET)
        pr = forge.get_pr("acme/semantic", number)
        assert pr.from_fork and pr.head_repo == "mallory/semantic"
        ctx = Context(forge, Settings(dbt_repo="acme/dbt", semantic_repo="acme/semantic",
                                      preview_db=tmp_path / "previews.sqlite"))
        comment = standin.add_comment("acme/semantic", number, "/preview", user="ada")
        payload = issue_comment_created(repo="acme/semantic", number=number, body="/preview", user="ada", is_pr=True)
        payload["comment"]["id"] = comment.id
        ROUTER.dispatch(Event("issue_comment", payload, "d-fork-preview"), ctx)
        replies = [c.body for c in standin.comments("acme/semantic", number) if c.user == "layersync-bot"]
    assert len(replies) == 1 and "comes from the fork `mallory/semantic`" in replies[0]
    assert not (tmp_path / "previews.sqlite").exists() or "main" not in (tmp_path / "previews.sqlite").read_bytes().decode("latin-1")


def test_one_file_that_is_not_utf8_costs_only_itself(tmp_path: Path) -> None:
    from bot.selection import select_changed

    repo = git.Repo.init(tmp_path / "s", initial_branch="main")
    views = tmp_path / "s" / "views"
    views.mkdir()
    (views / "orders.view.yaml").write_text("table_name: orders\ndimensions:\n  order_id: {}\n")
    base = _commit(repo, "base")
    (views / "orders.view.yaml").write_text("table_name: orders\ndimensions:\n  order_id: {}\n"
                                            "  is_big:\n    sql: ${TABLE}.amount > 100\n")
    (views / "latin1.view.yaml").write_bytes(b"table_name: customers\ndimensions:\n  caf\xe9: {}\n")
    head = _commit(repo, "edit")
    selection = select_changed(RevisionReader(tmp_path / "s"), head, base, "duckdb")
    assert [r.field.id for r in selection.requests] == ["orders.is_big"]
    (skipped,) = selection.skipped
    assert (skipped.file, skipped.line, skipped.code) == ("views/latin1.view.yaml", 3, "invalid-file")
    assert "not UTF-8" in skipped.reason

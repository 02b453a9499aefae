"""GitHubForge against a mocked api.github.com (``responses``), plus the new LocalForge methods.

Every HTTP call is intercepted: an unregistered URL makes ``responses`` raise a
ConnectionError, so no test can reach the network.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import git
import jwt
import pytest
import requests
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from responses import matchers

from bot.forge.base import (
    BODY_LIMIT,
    Forge,
    ForgeError,
    NotFoundError,
    TransientForgeError,
    has_permission,
)
from bot.forge.github import GitHubForge
from bot.forge.local import LocalForge

# PyGithub always spells the port out, so that is the URL the mock sees; Link headers carry
# GitHub's own spelling (no port), as on the real API.
API = "https://api.github.com:443"
REPO = "acme/analytics"
R = f"{API}/repos/{REPO}"
LINK_BASE = f"https://api.github.com/repos/{REPO}"
TOKEN = "ghp_" + "T0k3n" * 8  # shaped like a real PAT
APP_TOKEN_1 = "ghs_" + "first" * 8
APP_TOKEN_2 = "ghs_" + "second" * 7
MARKER = "<!-- layersync:report pr=12 -->"
QUIET = {"seconds_between_requests": None, "seconds_between_writes": None}


# -- fixtures & payloads ------------------------------------------------------------------


@pytest.fixture
def api():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def forge() -> GitHubForge:
    return GitHubForge.from_token(TOKEN, **QUIET)


@pytest.fixture(scope="module")
def rsa_key() -> tuple[str, object]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return pem, key.public_key()


def _ts(delta: timedelta = timedelta()) -> str:
    return (datetime.now(timezone.utc) + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def pr_json(number: int = 5, *, head: str = "layersync/push/orders-x", base: str = "main", title: str = "Sync",
            body: str | None = "Body", state: str = "open", merged_at: str | None = None) -> dict:
    return {
        "number": number, "title": title, "body": body, "state": state, "merged_at": merged_at,
        "url": f"{LINK_BASE}/pulls/{number}", "html_url": f"https://github.com/{REPO}/pull/{number}",
        "created_at": "2024-05-01T10:00:00Z", "updated_at": "2024-05-02T11:00:00Z",
        "head": {"ref": head, "label": f"acme:{head}", "sha": "a" * 40},
        "base": {"ref": base, "label": f"acme:{base}", "sha": "b" * 40},
    }


def comment_json(cid: int, body: str, login: str = "layersync-bot", type_: str = "User") -> dict:
    return {
        "id": cid, "body": body, "user": {"login": login, "type": type_, "id": cid * 10},
        "url": f"{LINK_BASE}/issues/comments/{cid}", "html_url": f"https://github.com/{REPO}/pull/12#issuecomment-{cid}",
        "created_at": "2024-05-01T10:00:00Z", "updated_at": "2024-05-01T10:00:00Z",
    }


def calls(api: responses.RequestsMock, method: str, path: str = "") -> list:
    return [c for c in api.calls if c.request.method == method and urlsplit(c.request.url).path.endswith(path)]


def sent_json(call) -> dict:
    return json.loads(call.request.body)


def query(call) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query)


def no_secret(text: str, *secrets: str) -> None:
    for secret in secrets or (TOKEN,):
        assert secret not in text
        assert base64.b64encode(f"x-access-token:{secret}".encode()).decode() not in text


# -- protocol, auth ----------------------------------------------------------------------


def test_github_forge_satisfies_protocol(forge: GitHubForge) -> None:
    assert isinstance(forge, Forge)
    no_secret(repr(forge))


def test_token_auth_header_and_no_pygithub_retry_timeout_set(api, forge: GitHubForge) -> None:
    api.get(R, json={"default_branch": "trunk", "clone_url": f"https://github.com/{REPO}.git"})
    assert forge.default_branch(REPO) == "trunk"
    (call,) = api.calls
    assert call.request.headers["Authorization"] == f"token {TOKEN}"
    assert call.request.headers["User-Agent"] == "layersync"
    assert call.request.req_kwargs["timeout"] == 20


def test_repo_must_be_owner_slash_name(forge: GitHubForge) -> None:
    with pytest.raises(ValueError):
        forge.default_branch("/srv/git/analytics.git")


def _access_token(api, installation_id: int, *tokens: tuple[str, timedelta]) -> None:
    for token, valid_for in tokens:
        api.post(f"{API}/app/installations/{installation_id}/access_tokens", status=201,
                 json={"token": token, "expires_at": _ts(valid_for), "permissions": {}})


def test_app_auth_mints_installation_token_with_a_jwt(api, rsa_key) -> None:
    pem, public_key = rsa_key
    forge = GitHubForge.from_app(4242, pem, installation_id=7, **QUIET)
    _access_token(api, 7, (APP_TOKEN_1, timedelta(hours=1)))
    api.get(R, json={"default_branch": "main", "clone_url": f"https://github.com/{REPO}.git"})

    assert forge.default_branch(REPO) == "main"
    assert forge.default_branch(REPO) == "main"

    (mint,) = calls(api, "POST", "/app/installations/7/access_tokens")
    scheme, _, token = mint.request.headers["Authorization"].partition(" ")
    assert scheme == "Bearer"
    claims = jwt.decode(token, public_key, algorithms=["RS256"])
    assert claims["iss"] == "4242" and claims["exp"] > time.time()
    repo_calls = calls(api, "GET", f"/repos/{REPO}")
    assert len(repo_calls) == 2  # the cached token served both
    assert all(c.request.headers["Authorization"] == f"token {APP_TOKEN_1}" for c in repo_calls)


def test_app_token_is_refreshed_when_expired(api, rsa_key) -> None:
    forge = GitHubForge.from_app(4242, rsa_key[0], installation_id=7, **QUIET)
    _access_token(api, 7, (APP_TOKEN_1, -timedelta(minutes=1)), (APP_TOKEN_2, timedelta(hours=1)))
    api.get(R, json={"default_branch": "main"})

    forge.default_branch(REPO)
    forge.default_branch(REPO)
    forge.default_branch(REPO)

    assert len(calls(api, "POST", "/access_tokens")) == 2
    used = [c.request.headers["Authorization"] for c in calls(api, "GET", f"/repos/{REPO}")]
    assert used == [f"token {APP_TOKEN_1}", f"token {APP_TOKEN_2}", f"token {APP_TOKEN_2}"]


def test_app_token_close_to_expiry_is_refreshed_before_git_uses_it(api, rsa_key) -> None:
    forge = GitHubForge.from_app(4242, rsa_key[0], installation_id=7, **QUIET)
    _access_token(api, 7, (APP_TOKEN_1, timedelta(minutes=2)), (APP_TOKEN_2, timedelta(hours=1)))
    api.get(R, json={"clone_url": f"https://github.com/{REPO}.git"})

    first = forge.git_env(REPO)  # the two-minute token is inside the refresh margin
    second = forge.git_env(REPO)
    assert first == second
    header = first["GIT_CONFIG_VALUE_0"]
    assert header == "AUTHORIZATION: basic " + base64.b64encode(f"x-access-token:{APP_TOKEN_2}".encode()).decode()
    assert len(calls(api, "POST", "/access_tokens")) == 2


def test_app_installation_is_looked_up_per_repo_and_cached(api, rsa_key) -> None:
    forge = GitHubForge.from_app(4242, rsa_key[0], **QUIET)
    other = f"{API}/repos/acme/semantic"
    api.get(f"{R}/installation", json={"id": 99, "account": {"login": "acme"}})
    api.get(f"{other}/installation", json={"id": 99, "account": {"login": "acme"}})
    _access_token(api, 99, (APP_TOKEN_1, timedelta(hours=1)))
    api.get(R, json={"default_branch": "main"})
    api.get(other, json={"default_branch": "trunk"})

    assert forge.default_branch(REPO) == "main"
    assert forge.default_branch(REPO) == "main"
    assert forge.default_branch("acme/semantic") == "trunk"

    assert len(calls(api, "GET", f"/repos/{REPO}/installation")) == 1
    assert len(calls(api, "GET", "/repos/acme/semantic/installation")) == 1
    lookup = calls(api, "GET", "/installation")[0]
    assert lookup.request.headers["Authorization"].startswith("Bearer ")
    assert len(calls(api, "POST", "/app/installations/99/access_tokens")) == 1  # one installation, one token


def test_app_not_installed_on_repo_is_not_found(api, rsa_key) -> None:
    forge = GitHubForge.from_app(4242, rsa_key[0], **QUIET)
    api.get(f"{R}/installation", status=404, json={"message": "Not Found"})
    with pytest.raises(NotFoundError, match="not installed"):
        forge.default_branch(REPO)


def test_from_env(tmp_path: Path, rsa_key) -> None:
    token_forge = GitHubForge.from_env({"LAYERSYNC_GITHUB_TOKEN": TOKEN,
                                        "LAYERSYNC_GITHUB_API_URL": "https://ghe.example.test/api/v3"})
    assert token_forge.base_url == "https://ghe.example.test/api/v3" and token_forge.app_id is None

    key_file = tmp_path / "app.pem"
    key_file.write_text(rsa_key[0])
    app_forge = GitHubForge.from_env({"LAYERSYNC_GITHUB_APP_ID": "12", "LAYERSYNC_GITHUB_PRIVATE_KEY_FILE": str(key_file),
                                      "LAYERSYNC_GITHUB_TOKEN": TOKEN})
    assert app_forge.app_id == "12"  # an App wins over a token
    one_line = rsa_key[0].replace("\n", "\\n")
    assert GitHubForge.from_env({"LAYERSYNC_GITHUB_APP_ID": "12", "LAYERSYNC_GITHUB_PRIVATE_KEY": one_line}).app_id == "12"

    with pytest.raises(ValueError, match="PRIVATE_KEY"):
        GitHubForge.from_env({"LAYERSYNC_GITHUB_APP_ID": "12"})
    with pytest.raises(ValueError, match="not a usable PEM") as info:
        GitHubForge.from_env({"LAYERSYNC_GITHUB_APP_ID": "12", "LAYERSYNC_GITHUB_PRIVATE_KEY": "not-a-key-" + TOKEN})
    no_secret(str(info.value))
    with pytest.raises(ValueError, match="no GitHub credentials"):
        GitHubForge.from_env({})


# -- pull requests --------------------------------------------------------------------------


def test_open_or_update_pr_creates_when_none_open(api, forge: GitHubForge) -> None:
    api.get(f"{R}/pulls", json=[])
    api.post(f"{R}/pulls", status=201, json=pr_json(5, title="Add is_large_order", body="Why"))

    pr, created = forge.open_or_update_pr(REPO, head="layersync/push/orders-x", base="main",
                                          title="Add is_large_order", body="Why")

    assert created is True
    assert (pr.number, pr.url, pr.state, pr.head, pr.base) == (
        5, f"https://github.com/{REPO}/pull/5", "open", "layersync/push/orders-x", "main")
    assert pr.created_at == "2024-05-01T10:00:00Z"
    (listing,) = calls(api, "GET", "/pulls")
    assert query(listing)["head"] == ["acme:layersync/push/orders-x"]
    assert query(listing)["base"] == ["main"] and query(listing)["state"] == ["open"]
    (post,) = calls(api, "POST", "/pulls")
    assert sent_json(post) == {"base": "main", "head": "layersync/push/orders-x",
                               "title": "Add is_large_order", "body": "Why"}


def test_open_or_update_pr_updates_the_open_one(api, forge: GitHubForge) -> None:
    api.get(f"{R}/pulls", json=[pr_json(5, body="Old body")])
    api.patch(f"{R}/pulls/5", json=pr_json(5, body="New body"))

    pr, created = forge.open_or_update_pr(REPO, head="layersync/push/orders-x", base="main",
                                          title="Sync", body="New body")

    assert created is False and pr.number == 5 and pr.body == "New body"
    (patch,) = calls(api, "PATCH", "/pulls/5")
    assert sent_json(patch) == {"title": "Sync", "body": "New body"}
    assert not calls(api, "POST")


def test_open_or_update_pr_is_idempotent(api, forge: GitHubForge) -> None:
    api.get(f"{R}/pulls", json=[pr_json(5, title="Sync", body="Same")])
    for _ in range(2):
        pr, created = forge.open_or_update_pr(REPO, head="layersync/push/orders-x", base="main",
                                              title="Sync", body="Same")
        assert (pr.number, created) == (5, False)
    assert not calls(api, "PATCH") and not calls(api, "POST")


def test_open_or_update_pr_survives_losing_a_create_race(api, forge: GitHubForge) -> None:
    api.get(f"{R}/pulls", json=[])
    api.get(f"{R}/pulls", json=[pr_json(6, body="Same")])
    api.post(f"{R}/pulls", status=422, json={
        "message": "Validation Failed",
        "errors": [{"resource": "PullRequest", "code": "custom",
                    "message": "A pull request already exists for acme:layersync/push/orders-x."}]})

    pr, created = forge.open_or_update_pr(REPO, head="layersync/push/orders-x", base="main", title="Sync", body="Same")
    assert (pr.number, created) == (6, False)


def test_open_or_update_pr_truncates_a_huge_body(api, forge: GitHubForge) -> None:
    api.get(f"{R}/pulls", json=[])
    api.post(f"{R}/pulls", status=201, json=pr_json(5))
    forge.open_or_update_pr(REPO, head="h", base="main", title="t", body="x" * 60 + "\n" + "y" * 100_000)
    sent = sent_json(calls(api, "POST", "/pulls")[0])["body"]
    assert len(sent) <= BODY_LIMIT and "Truncated by layersync" in sent


def test_get_pr_merged_and_not_found(api, forge: GitHubForge) -> None:
    api.get(f"{R}/pulls/5", json=pr_json(5, state="closed", merged_at="2024-05-03T00:00:00Z", body=None))
    api.get(f"{R}/pulls/6", status=404, json={"message": "Not Found"})
    pr = forge.get_pr(REPO, 5)
    assert pr.state == "merged" and pr.body == ""
    with pytest.raises(NotFoundError):
        forge.get_pr(REPO, 6)


def test_list_prs_by_state(api, forge: GitHubForge) -> None:
    api.get(f"{R}/pulls", json=[pr_json(1, state="closed"), pr_json(2, state="closed", merged_at="2024-05-03T00:00:00Z")])
    assert [p.number for p in forge.list_prs(REPO, "merged")] == [2]
    assert [p.number for p in forge.list_prs(REPO, "closed")] == [1]
    assert query(api.calls[0])["state"] == ["closed"] and query(api.calls[0])["direction"] == ["asc"]
    with pytest.raises(ForgeError):
        forge.list_prs(None)


def test_close_pr_and_merge(api, forge: GitHubForge) -> None:
    api.get(f"{R}/pulls/5", json=pr_json(5))
    api.patch(f"{R}/pulls/5", json=pr_json(5, state="closed"))
    assert forge.close_pr(REPO, 5).state == "closed"
    assert sent_json(calls(api, "PATCH", "/pulls/5")[0]) == {"state": "closed"}

    api.get(f"{R}/pulls/7", json=pr_json(7))
    api.put(f"{R}/pulls/7/merge", json={"merged": True, "sha": "c" * 40, "message": "merged"})
    api.get(f"{R}/pulls/7", json=pr_json(7, state="closed", merged_at="2024-05-03T00:00:00Z"))
    assert forge.close_pr(REPO, 7, merged=True).state == "merged"


def test_find_pr_by_head(api, forge: GitHubForge) -> None:
    api.get(f"{R}/pulls", match=[matchers.query_param_matcher({"state": "open", "head": "acme:feat", "per_page": "100"})],
            json=[pr_json(9, head="feat")])
    api.get(f"{R}/pulls", match=[matchers.query_param_matcher({"state": "closed", "head": "acme:feat", "per_page": "100"})],
            json=[pr_json(8, head="feat", state="closed"), pr_json(4, head="feat", state="closed", merged_at=_ts())])
    api.get(f"{R}/pulls", match=[matchers.query_param_matcher({"state": "open", "head": "acme:nope", "per_page": "100"})],
            json=[])
    assert forge.find_pr_by_head(REPO, "feat").number == 9
    assert forge.find_pr_by_head(REPO, "feat", state="merged").number == 4
    assert forge.find_pr_by_head(REPO, "feat", state="closed").number == 8
    assert forge.find_pr_by_head(REPO, "nope") is None


def test_pr_files_paginated_with_renames(api, forge: GitHubForge) -> None:
    page2 = f"{LINK_BASE}/pulls/5/files?per_page=100&page=2"
    api.get(f"{R}/pulls/5/files", match=[matchers.query_param_matcher({"per_page": "100"})],
            json=[{"filename": "models/orders.sql", "status": "modified"}],
            headers={"Link": f'<{page2}>; rel="next", <{page2}>; rel="last"'})
    api.get(f"{R}/pulls/5/files", match=[matchers.query_param_matcher({"per_page": "100", "page": "2"})],
            json=[{"filename": "views/b.view.yaml", "previous_filename": "views/a.view.yaml", "status": "renamed"}])
    assert forge.pr_files(REPO, 5) == ["models/orders.sql", "views/a.view.yaml", "views/b.view.yaml"]
    assert len(calls(api, "GET", "/pulls/5/files")) == 2  # no GET of the PR itself


# -- comments --------------------------------------------------------------------------------


def test_upsert_comment_creates_ignoring_a_humans_quote(api, forge: GitHubForge) -> None:
    api.get(f"{API}/user", json={"login": "layersync-bot", "type": "User"})
    api.get(f"{R}/issues/12/comments", json=[comment_json(1, f"> quoting the bot\n> {MARKER}", login="alice")])
    api.post(f"{R}/issues/12/comments", status=201, json=comment_json(2, f"{MARKER}\nreport"))

    comment, created = forge.upsert_comment(REPO, 12, "report", MARKER)

    assert created is True and comment.id == 2
    assert sent_json(calls(api, "POST", "/issues/12/comments")[0]) == {"body": f"{MARKER}\nreport"}
    assert not calls(api, "PATCH")


def test_upsert_comment_edits_own_comment_found_on_second_page(api, forge: GitHubForge) -> None:
    page2 = f"{LINK_BASE}/issues/12/comments?per_page=100&page=2"
    api.get(f"{API}/user", json={"login": "layersync-bot"})
    api.get(f"{R}/issues/12/comments", match=[matchers.query_param_matcher({"per_page": "100"})],
            json=[comment_json(1, f"{MARKER} copied", login="alice"), comment_json(2, "unrelated")],
            headers={"Link": f'<{page2}>; rel="next", <{page2}>; rel="last"'})
    api.get(f"{R}/issues/12/comments", match=[matchers.query_param_matcher({"per_page": "100", "page": "2"})],
            json=[comment_json(3, f"{MARKER}\nold report")])
    api.patch(f"{R}/issues/comments/3", json=comment_json(3, f"{MARKER}\nnew report"))

    comment, created = forge.upsert_comment(REPO, 12, f"{MARKER}\nnew report", MARKER)

    assert (comment.id, created, comment.body) == (3, False, f"{MARKER}\nnew report")
    (patch,) = calls(api, "PATCH")
    assert patch.request.url == f"{R}/issues/comments/3"
    assert sent_json(patch) == {"body": f"{MARKER}\nnew report"}
    assert not calls(api, "POST")


def test_upsert_comment_unchanged_makes_no_write(api, forge: GitHubForge) -> None:
    api.get(f"{API}/user", json={"login": "layersync-bot"})
    api.get(f"{R}/issues/12/comments", json=[comment_json(3, f"{MARKER}\nreport")])
    for _ in range(2):
        assert forge.upsert_comment(REPO, 12, "report", MARKER) == (forge.list_comments(REPO, 12)[0], False)
    assert not calls(api, "PATCH") and not calls(api, "POST")
    assert len(calls(api, "GET", "/user")) == 1  # who we are is asked once


def test_upsert_comment_as_app_matches_only_our_bot(api, rsa_key) -> None:
    forge = GitHubForge.from_app(4242, rsa_key[0], installation_id=7, **QUIET)
    _access_token(api, 7, (APP_TOKEN_1, timedelta(hours=1)))
    api.get(f"{API}/app", json={"id": 4242, "slug": "layersync", "name": "layersync"})
    api.get(f"{R}/issues/12/comments", json=[
        comment_json(1, MARKER, login="other-app[bot]", type_="Bot"),
        comment_json(2, f"{MARKER}\nold", login="layersync[bot]", type_="Bot"),
    ])
    api.patch(f"{R}/issues/comments/2", json=comment_json(2, f"{MARKER}\nnew", login="layersync[bot]", type_="Bot"))

    comment, created = forge.upsert_comment(REPO, 12, "new", MARKER)
    assert (comment.id, created, comment.author) == (2, False, "layersync[bot]")
    assert calls(api, "GET", "/app")[0].request.headers["Authorization"].startswith("Bearer ")


def test_upsert_comment_falls_back_to_bot_type_when_identity_unknown(api, forge: GitHubForge) -> None:
    api.get(f"{API}/user", status=403, json={"message": "Resource not accessible by integration"})
    api.get(f"{R}/issues/12/comments", json=[comment_json(1, MARKER, login="alice"),
                                             comment_json(2, f"{MARKER}\nold", login="github-actions[bot]", type_="Bot")])
    api.patch(f"{R}/issues/comments/2", json=comment_json(2, f"{MARKER}\nnew", login="github-actions[bot]", type_="Bot"))
    assert forge.upsert_comment(REPO, 12, "new", MARKER)[0].id == 2


def test_upsert_comment_truncates_but_keeps_the_marker(api) -> None:
    forge = GitHubForge.from_token(TOKEN, bot_login="layersync-bot", **QUIET)
    api.get(f"{R}/issues/12/comments", json=[])
    api.post(f"{R}/issues/12/comments", status=201, json=comment_json(2, "x"))
    forge.upsert_comment(REPO, 12, "z" * 100_000 + MARKER, MARKER)
    sent = sent_json(calls(api, "POST")[0])["body"]
    assert len(sent) <= BODY_LIMIT and MARKER in sent and "Truncated by layersync" in sent
    assert not calls(api, "GET", "/user")  # bot_login given: no lookup


def test_add_comment_and_react(api, forge: GitHubForge) -> None:
    api.post(f"{R}/issues/12/comments", status=201, json=comment_json(2, "hello"))
    api.post(f"{R}/issues/comments/77/reactions", status=201, json={"id": 1, "content": "+1"})
    assert forge.add_comment(REPO, 12, "hello").id == 2
    forge.react(REPO, 77, "+1")
    (react,) = calls(api, "POST", "/issues/comments/77/reactions")
    assert sent_json(react) == {"content": "+1"}
    with pytest.raises(ValueError):
        forge.react(REPO, 77, "thumbsup")
    assert len(calls(api, "POST", "/reactions")) == 1


# -- permissions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"permission": "admin", "role_name": "admin"}, "admin"),
        ({"permission": "write", "role_name": "maintain"}, "maintain"),
        ({"permission": "write", "role_name": "write"}, "write"),
        ({"permission": "read", "role_name": "triage"}, "triage"),
        ({"permission": "read", "role_name": "read"}, "read"),
        ({"permission": "write", "role_name": "security-reviewer"}, "write"),  # a custom role: its base
        ({"permission": "none", "role_name": ""}, "none"),
        ({"permission": "push"}, "write"),
    ],
)
def test_permission_mapping(api, forge: GitHubForge, payload: dict, expected: str) -> None:
    api.get(f"{R}/collaborators/some-user/permission", json={**payload, "user": {"login": "some-user"}})
    assert forge.permission(REPO, "some-user") == expected
    assert api.calls[0].request.url == f"{R}/collaborators/some-user/permission"


def test_permission_unknown_user_is_none(api, forge: GitHubForge) -> None:
    api.get(f"{R}/collaborators/ghost/permission", status=404, json={"message": "Not Found"})
    assert forge.permission(REPO, "ghost") == "none"


def test_has_permission_orders_roles() -> None:
    assert has_permission("maintain", "write") and has_permission("admin", "write")
    assert not has_permission("triage", "write") and not has_permission("none", "read")
    with pytest.raises(ValueError):
        has_permission("owner", "write")


# -- errors ----------------------------------------------------------------------------------------


def test_502_is_transient_and_not_retried_by_pygithub(api, forge: GitHubForge) -> None:
    api.get(f"{R}/pulls/5", status=502, body="<html>Bad gateway</html>")
    with pytest.raises(TransientForgeError) as info:
        forge.get_pr(REPO, 5)
    assert info.value.retry_after is None and "502" in str(info.value)
    assert len(api.calls) == 1


def test_503_with_retry_after(api, forge: GitHubForge) -> None:
    api.get(f"{R}/pulls/5", status=503, json={"message": "Unavailable"}, headers={"Retry-After": "30"})
    with pytest.raises(TransientForgeError) as info:
        forge.get_pr(REPO, 5)
    assert info.value.retry_after == 30


def test_403_primary_rate_limit_uses_reset(api, forge: GitHubForge) -> None:
    reset = int(time.time()) + 120
    api.get(f"{R}/pulls/5", status=403,
            json={"message": "API rate limit exceeded for installation ID 7."},
            headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)})
    with pytest.raises(TransientForgeError) as info:
        forge.get_pr(REPO, 5)
    assert 110 <= info.value.retry_after <= 121
    assert len(api.calls) == 1


def test_403_secondary_rate_limit_without_headers_waits_a_minute(api, forge: GitHubForge) -> None:
    api.post(f"{R}/issues/12/comments", status=403,
             json={"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."})
    with pytest.raises(TransientForgeError) as info:
        forge.add_comment(REPO, 12, "hi")
    assert info.value.retry_after == 60


def test_429_retry_after(api, forge: GitHubForge) -> None:
    api.get(f"{R}/pulls/5", status=429, json={"message": "Too many requests"}, headers={"Retry-After": "7"})
    with pytest.raises(TransientForgeError) as info:
        forge.get_pr(REPO, 5)
    assert info.value.retry_after == 7


def test_other_4xx_is_a_plain_forge_error_with_githubs_message(api, forge: GitHubForge) -> None:
    api.post(f"{R}/issues/12/comments", status=403, json={"message": "Resource not accessible by integration"})
    with pytest.raises(ForgeError) as info:
        forge.add_comment(REPO, 12, "hi")
    assert not isinstance(info.value, TransientForgeError)
    assert "Resource not accessible by integration" in str(info.value)


def test_connection_error_is_transient(api, forge: GitHubForge) -> None:
    api.get(f"{R}/pulls/5", body=requests.exceptions.ConnectionError(f"connection reset (token {TOKEN})"))
    with pytest.raises(TransientForgeError) as info:
        forge.get_pr(REPO, 5)
    assert info.value.retry_after is None
    no_secret(str(info.value))


def test_token_never_in_exception_text(api, forge: GitHubForge) -> None:
    api.post(f"{R}/issues/12/comments", status=422, json={"message": f"bad credentials {TOKEN}",
                                                          "errors": [{"message": f"echo token {TOKEN}"}]})
    with pytest.raises(ForgeError) as info:
        forge.add_comment(REPO, 12, "hi")
    no_secret(str(info.value))
    no_secret(repr(info.value))
    no_secret(" ".join(map(str, info.value.args)))
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_app_installation_token_never_in_exception_text(api, rsa_key) -> None:
    forge = GitHubForge.from_app(4242, rsa_key[0], installation_id=7, **QUIET)
    _access_token(api, 7, (APP_TOKEN_1, timedelta(hours=1)))
    api.get(f"{R}/pulls/5", status=400, json={"message": f"token {APP_TOKEN_1} and key {rsa_key[0]}"})
    with pytest.raises(ForgeError) as info:
        forge.get_pr(REPO, 5)
    no_secret(str(info.value), APP_TOKEN_1)
    assert "PRIVATE KEY" not in str(info.value)
    no_secret(repr(forge), APP_TOKEN_1)


# -- git remote & credentials ------------------------------------------------------------------


def test_remote_url_has_no_token_and_is_cached(api, forge: GitHubForge) -> None:
    api.get(R, json={"clone_url": f"https://x-access-token:{TOKEN}@github.com/{REPO}.git"})
    assert forge.remote_url(REPO) == f"https://github.com/{REPO}.git"
    assert forge.remote_url(REPO) == f"https://github.com/{REPO}.git"
    assert len(api.calls) == 1


def test_git_env_header_format(api, forge: GitHubForge, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GIT_CONFIG_COUNT", raising=False)
    api.get(R, json={"clone_url": f"https://github.com/{REPO}.git"})
    env = forge.git_env(REPO)
    credentials = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    assert env == {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "http.https://github.com/.extraheader",
        "GIT_CONFIG_VALUE_0": f"AUTHORIZATION: basic {credentials}",
        "GIT_TERMINAL_PROMPT": "0",
    }
    no_secret(forge.remote_url(REPO))

    # git itself (≥ 2.31) reads it, for this host only, and nothing reaches the disk.
    run_env = {**os.environ, **env, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    got = subprocess.run(["git", "config", "--get-urlmatch", "http.extraheader", f"https://github.com/{REPO}.git"],
                         env=run_env, capture_output=True, text=True)
    assert got.stdout.strip() == f"AUTHORIZATION: basic {credentials}"
    elsewhere = subprocess.run(["git", "config", "--get-urlmatch", "http.extraheader", "https://evil.example/x.git"],
                               env=run_env, capture_output=True, text=True)
    assert elsewhere.stdout.strip() == ""


def test_git_env_appends_after_existing_config_slots(api, forge: GitHubForge, monkeypatch) -> None:
    monkeypatch.setenv("GIT_CONFIG_COUNT", "2")
    api.get(R, json={"clone_url": f"https://github.com/{REPO}.git"})
    env = forge.git_env(REPO)
    assert env["GIT_CONFIG_COUNT"] == "3" and "GIT_CONFIG_KEY_2" in env and "GIT_CONFIG_KEY_0" not in env


# -- LocalForge: the new protocol methods ---------------------------------------------------------


@pytest.fixture
def local(tmp_path: Path) -> LocalForge:
    return LocalForge(tmp_path / "state.sqlite")


def _bare_remote(tmp_path: Path) -> Path:
    """A bare remote with `main` and a `feature` branch that edits, adds and renames; main moves on after."""
    work = git.Repo.init(tmp_path / "work", initial_branch="main")
    root = Path(work.working_tree_dir)

    def commit(files: dict[str, str | None], message: str) -> None:
        for rel, text in files.items():
            path = root / rel
            if text is None:
                work.index.remove([rel], working_tree=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            work.index.add([rel])
        work.index.commit(message)

    commit({"models/orders.sql": "select 1\n", "views/a.view.yaml": "table_name: orders\n", "README.md": "hi\n"}, "init")
    work.git.checkout("-b", "feature")
    commit({"models/orders.sql": "select 1, 2\n", "models/new.sql": "select 3\n"}, "edit and add")
    work.git.mv("views/a.view.yaml", "views/b.view.yaml")
    work.index.commit("rename")
    work.git.checkout("main")
    commit({"README.md": "changed on main after the branch\n"}, "main moves on")
    bare = tmp_path / "remote.git"
    git.Repo.clone_from(root, bare, bare=True)
    remote = git.Repo(bare)
    for branch in ("main", "feature"):  # a bare clone keeps only the checked-out branch as a local head
        if branch not in [h.name for h in remote.heads]:
            remote.git.fetch(str(root), f"{branch}:{branch}")
    return bare


def test_local_permission_default_and_set(local: LocalForge) -> None:
    assert local.permission("/srv/git/a.git", "anyone") == "admin"
    local.set_permission("/srv/git/a.git", "alice", "read")
    local.set_permission("/srv/git/a.git", "alice", "triage")  # a later grant replaces the earlier
    assert local.permission("/srv/git/a.git", "alice") == "triage"
    assert local.permission("/srv/git/other.git", "alice") == "admin"
    with pytest.raises(ValueError):
        local.set_permission("/srv/git/a.git", "alice", "owner")


def test_local_pr_files_from_a_real_bare_repo(local: LocalForge, tmp_path: Path) -> None:
    remote = str(_bare_remote(tmp_path))
    pr, _ = local.open_or_update_pr(remote, head="feature", base="main", title="t", body="b")
    assert local.pr_files(remote, pr.number) == [
        "models/new.sql", "models/orders.sql", "views/a.view.yaml", "views/b.view.yaml",
    ]  # README.md changed on main only: not the PR's change
    gone, _ = local.open_or_update_pr(remote, head="deleted-branch", base="main", title="t", body="b")
    with pytest.raises(ForgeError, match="deleted-branch"):
        local.pr_files(remote, gone.number)


def test_local_git_remote_methods(local: LocalForge, tmp_path: Path) -> None:
    remote = str(_bare_remote(tmp_path))
    assert local.remote_url(remote) == remote
    assert local.git_env(remote) == {}
    assert local.default_branch(remote) == "main"
    with pytest.raises(NotFoundError):
        local.default_branch(str(tmp_path / "nowhere.git"))


def test_local_find_pr_by_head(local: LocalForge) -> None:
    repo = "/srv/git/a.git"
    assert local.find_pr_by_head(repo, "feat") is None
    first, _ = local.open_or_update_pr(repo, head="feat", base="main", title="t", body="b")
    local.close_pr(repo, first.number, merged=True)
    assert local.find_pr_by_head(repo, "feat") is None
    second, _ = local.open_or_update_pr(repo, head="feat", base="main", title="t", body="b")
    assert local.find_pr_by_head(repo, "feat") == second
    assert local.find_pr_by_head(repo, "feat", state="merged").number == first.number
    assert local.find_pr_by_head(repo, "feat", state=None).number == second.number
    with pytest.raises(ValueError):
        local.find_pr_by_head(repo, "feat", state="draft")


def test_local_react(local: LocalForge) -> None:
    repo = "/srv/git/a.git"
    pr, _ = local.open_or_update_pr(repo, head="feat", base="main", title="t", body="b")
    comment = local.add_comment(repo, pr.number, "/layersync push", author="alice")
    local.react(repo, comment.id, "eyes")
    local.react(repo, comment.id, "eyes")
    local.react(repo, comment.id, "rocket")
    assert local.list_reactions(repo, comment.id) == ["eyes", "rocket"]
    with pytest.raises(ValueError):
        local.react(repo, comment.id, "party")
    assert local.list_reactions("/srv/git/other.git", comment.id) == []
    local.react(repo, 999, "+1")  # a comment id from a synthetic event: acknowledged all the same
    assert local.list_reactions(repo, 999) == ["+1"]

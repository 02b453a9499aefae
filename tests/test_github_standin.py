"""The GitHub stand-in itself: spec validation, API state, git smart HTTP, failure injection.

Nothing here reaches GitHub: every request goes to a server on 127.0.0.1.
"""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import github
import pytest
import requests

from github_standin import GitHubStandIn, SpecUnavailable, load_spec

TOKEN = "ghp_test"
BOT = "layersync-bot"
REPO = "acme/dbt"
NO_PAUSE = {"seconds_between_requests": 0, "seconds_between_writes": 0}


@pytest.fixture(scope="session")
def spec():
    try:
        return load_spec()
    except SpecUnavailable as e:  # no npm and nothing cached: nothing to validate against
        pytest.skip(str(e))


@pytest.fixture
def gh(spec):
    with GitHubStandIn(spec=spec) as standin:
        standin.add_token(TOKEN, user=BOT)
        standin.create_repo(REPO, files={"models/orders.sql": "select 1 as id\n", "README.md": "# dbt\n"})
        yield standin


@pytest.fixture
def client(gh) -> github.Github:
    # PyGithub spaces requests (0.25 s) and writes (1 s) by default, as GitHub advises; a local server needs no pause.
    return github.Github(auth=github.Auth.Token(TOKEN), base_url=gh.api_url, retry=None, **NO_PAUSE)


def api(gh: GitHubStandIn, method: str, path: str, token: str | None = TOKEN, **kw) -> requests.Response:
    headers = kw.pop("headers", {})
    if token:
        headers["Authorization"] = f"token {token}"
    headers.setdefault("Accept", "application/vnd.github+json")
    return requests.request(method, gh.api_url + path, headers=headers, timeout=30, **kw)


def git_env(token: str | None, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({
        "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false", "SSH_ASKPASS": "/bin/false",
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": str(tmp_path / "no-gitconfig"),
        "GIT_AUTHOR_NAME": "Analyst", "GIT_AUTHOR_EMAIL": "analyst@example.invalid",
        "GIT_COMMITTER_NAME": "Analyst", "GIT_COMMITTER_EMAIL": "analyst@example.invalid",
    })
    if token:
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        env.update({
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "http.extraHeader",
            "GIT_CONFIG_VALUE_0": f"AUTHORIZATION: basic {basic}",
        })
    return env


def git(*args: str, cwd: Path | None = None, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


# --------------------------------------------------------------------------- the description


def test_spec_is_pinned_and_matches_templates(spec):
    assert spec.version
    op = spec.match("GET", "/repos/acme/dbt/pulls/12")
    assert op.operation_id == "pulls/get" and op.path_params == {"owner": "acme", "repo": "dbt", "pull_number": "12"}
    # a literal segment beats a template: /pulls/comments is not pull number "comments"
    assert spec.match("GET", "/repos/acme/dbt/pulls/comments").operation_id == "pulls/list-review-comments-for-repo"
    # templated segments may hold slashes (branch names, file paths)
    assert spec.match("GET", "/repos/acme/dbt/branches/layersync/sync-1").path_params["branch"] == "layersync/sync-1"
    assert spec.match("GET", "/repos/acme/dbt/branches/layersync%2Fsync-1").path_params["branch"] == "layersync/sync-1"
    assert spec.match("GET", "/no/such/thing") is None
    assert spec.match("PUT", "/repos/acme/dbt/pulls") is None
    assert spec.allowed_methods("/repos/acme/dbt/pulls") == ["GET", "POST"]


def test_spec_prefix(spec):
    prefixed = load_spec(prefix="/api/v3")
    assert prefixed.match("GET", "/api/v3/repos/a/b").operation_id == "repos/get"
    assert prefixed.match("GET", "/repos/a/b") is None


def test_validate_request(spec):
    create = spec.match("POST", "/repos/a/b/pulls")
    assert create.validate_request({}, {"title": "t", "head": "h", "base": "main"}) == []
    assert create.validate_request({}, {"title": "t", "base": "main"}) == ["body: 'head' is a required property"]
    assert create.validate_request({}, None) == ["body: pulls/create requires a request body"]
    errors = create.validate_request({"foo": "1"}, {"title": "t", "head": "h", "base": "m", "draft": "yes", "labels": []})
    assert errors == [
        "query.foo: not a parameter of pulls/create",
        "body.draft: 'yes' is not of type 'boolean'",
        "body.labels: not a property GitHub documents for this request",
    ]
    listing = spec.match("GET", "/repos/a/b/pulls")
    assert listing.validate_request({"state": "all", "per_page": "100", "head": "a:b"}, None) == []
    assert listing.validate_request({"state": "merged", "per_page": "lots"}, None) == [
        "query.state: 'merged' is not one of ['open', 'closed', 'all']",
        "query.per_page: 'lots' is not of type 'integer'",
    ]
    assert spec.match("GET", "/repos/a/b/pulls/x").validate_request({}, None) == [
        "path.pull_number: 'x' is not of type 'integer'"
    ]
    react = spec.match("POST", "/repos/a/b/issues/comments/1/reactions")
    assert react.validate_request({}, {"content": "rocket"}) == []
    assert "is not one of" in react.validate_request({}, {"content": "tada"})[0]
    # nullable (OpenAPI 3.0) is honoured: milestone may be null when updating an issue
    assert spec.match("PATCH", "/repos/a/b/issues/1").validate_request({}, {"milestone": None}) == []


def test_response_schema_and_example(spec):
    op = spec.match("GET", "/repos/a/b/issues/comments/1")
    example = op.example_response(200)
    assert example["id"] and op.validate_response(200, example) == []
    assert op.response_schema(200) == {"$ref": "#/components/schemas/issue-comment"}
    assert op.validate_response(200, {"id": "x"})  # wrong type and missing required properties


# --------------------------------------------------------------------------- raw HTTP


def test_auth_is_required(gh):
    assert api(gh, "GET", "/repos/acme/dbt", token=None).status_code == 401
    assert api(gh, "GET", "/repos/acme/dbt", token="ghp_wrong").status_code == 401
    r = api(gh, "GET", "/repos/acme/dbt", headers={"Authorization": f"Bearer {TOKEN}"}, token=None)
    assert r.status_code == 200 and r.json()["full_name"] == REPO
    assert api(gh, "GET", "/repos/acme/missing").status_code == 404
    gh.expire_token(TOKEN)
    assert api(gh, "GET", "/repos/acme/dbt").status_code == 401
    gh.assert_no_violations()


def test_invalid_body_is_rejected_and_recorded(gh):
    gh.commit(REPO, "feature", {"models/new.sql": "select 2\n"})
    r = api(gh, "POST", "/repos/acme/dbt/pulls", json={"title": "t", "base": "main"})
    assert r.status_code == 422
    assert r.json()["errors"] == ["body: 'head' is a required property"]
    assert [v.operation_id for v in gh.violations] == ["pulls/create"]
    assert gh.prs(REPO) == []
    with pytest.raises(AssertionError, match="'head' is a required property"):
        gh.assert_no_violations()


def test_undocumented_paths_and_methods_are_violations(gh):
    assert api(gh, "GET", "/repos/acme/dbt/pull-requests").status_code == 404
    assert api(gh, "PUT", "/repos/acme/dbt/pulls", json={}).status_code == 404
    assert api(gh, "GET", "/repos/acme/dbt/pulls", params={"state": "merged"}).status_code == 422
    errors = [str(v) for v in gh.violations]
    assert "not a path GitHub documents" in errors[0]
    assert "only for GET, POST" in errors[1]
    assert "'merged' is not one of" in errors[2]


def test_documented_but_unimplemented_is_501(gh):
    r = api(gh, "GET", "/repos/acme/dbt/releases")
    assert r.status_code == 501
    assert [u.operation_id for u in gh.unhandled] == ["repos/list-releases"]
    assert gh.violations == []
    gh.assert_no_violations(include_unhandled=False)
    with pytest.raises(AssertionError, match="not implemented"):
        gh.assert_no_violations()


def test_fail_next_then_success(gh):
    gh.fail_next("GET", r"^/repos/acme/dbt$", status=502)
    assert api(gh, "GET", "/repos/acme/dbt").status_code == 502
    assert api(gh, "GET", "/repos/acme/dbt").status_code == 200
    # secondary rate limit, with the headers a client should honour
    gh.fail_next("POST", r"/issues/\d+/comments$", status=403, times=2,
                 headers={"Retry-After": "0", "X-RateLimit-Remaining": "0"},
                 body={"message": "You have exceeded a secondary rate limit."})
    gh.create_issue(REPO, "an issue")
    first = api(gh, "POST", "/repos/acme/dbt/issues/1/comments", json={"body": "x"})
    assert first.status_code == 403 and first.headers["Retry-After"] == "0"
    assert [r.injected for r in gh.requests] == [True, False, True]
    gh.assert_no_violations()


def test_pygithub_retries_through_injected_502(gh):
    gh.fail_next("GET", r"^/repos/acme/dbt$", status=502, times=2)
    g = github.Github(auth=github.Auth.Token(TOKEN), base_url=gh.api_url, **NO_PAUSE)  # default GithubRetry
    assert g.get_repo(REPO).default_branch == "main"
    assert [r.status for r in gh.requests] == [502, 502, 200]


# --------------------------------------------------------------------------- PyGithub


def test_pull_request_lifecycle(gh, client):
    gh.commit(REPO, "layersync/sync", {"models/orders.sql": "select 1 as id, 2 as amount\n", "models/new.sql": "x\n"})
    gh.commit(REPO, "other", {"models/other.sql": "select 3\n"})
    repo = client.get_repo(REPO)
    assert repo.default_branch == "main" and repo.clone_url == gh.git_url("acme", "dbt")
    pr = repo.create_pull(title="Sync semantic layer", body="body", head="layersync/sync", base="main")
    other = repo.create_pull(title="Other", body="", head="other", base="main")
    assert (pr.number, other.number) == (1, 2)
    assert pr.head.sha == gh.branch_sha(REPO, "layersync/sync") and pr.user.login == BOT
    assert pr.mergeable is True and pr.changed_files == 2 and pr.additions == 2 and pr.deletions == 1

    # "owner:branch" filters; a bare branch name is ignored, as on GitHub
    assert [p.number for p in repo.get_pulls(state="open", head="acme:layersync/sync", base="main")] == [1]
    assert [p.number for p in repo.get_pulls(head="layersync/sync")] == [2, 1]  # newest first
    assert [p.number for p in repo.get_pulls(state="closed")] == []

    # the same head and base again is refused like GitHub does
    with pytest.raises(github.GithubException) as exc:
        repo.create_pull(title="dup", body="", head="layersync/sync", base="main")
    assert exc.value.status == 422 and "already exists" in str(exc.value.data)

    pr.edit(title="Sync semantic layer (2)", body="new body")
    fresh = repo.get_pull(1)
    assert (fresh.title, fresh.body) == ("Sync semantic layer (2)", "new body")
    assert gh.pr(REPO, 1).title == "Sync semantic layer (2)"

    files = {f.filename: f for f in fresh.get_files()}
    assert set(files) == {"models/orders.sql", "models/new.sql"}
    assert files["models/orders.sql"].status == "modified" and "+select 1 as id, 2 as amount" in files["models/orders.sql"].patch
    assert files["models/new.sql"].status == "added"

    issue = repo.get_issue(1)
    assert issue.pull_request is not None and issue.title == "Sync semantic layer (2)"

    other.edit(state="closed")
    assert gh.pr(REPO, 2).state == "closed"
    merge_sha = gh.merge_pr(REPO, 1)
    merged = repo.get_pull(1)
    assert merged.merged and merged.state == "closed" and merged.merge_commit_sha == merge_sha
    assert gh.branch_sha(REPO, "main") == merge_sha
    assert {f.filename for f in merged.get_files()} == {"models/orders.sql", "models/new.sql"}
    assert gh.file_at(REPO, "main", "models/new.sql") == "x\n"
    gh.assert_no_violations()


def test_pull_request_refusals(gh, client):
    repo = client.get_repo(REPO)
    with pytest.raises(github.GithubException) as exc:
        repo.create_pull(title="t", body="", head="no-such-branch", base="main")
    assert exc.value.status == 422
    gh.commit(REPO, "empty", {}, message="nothing new")
    subprocess.run(["git", "update-ref", "refs/heads/same", gh.branch_sha(REPO, "main")], cwd=gh.bare_path(REPO), check=True)
    with pytest.raises(github.GithubException) as exc:
        repo.create_pull(title="t", body="", head="same", base="main")
    assert "No commits between main and same" in str(exc.value.data)
    gh.commit(REPO, "big", {"a.txt": "a\n"})
    with pytest.raises(github.GithubException) as exc:
        repo.create_pull(title="t", body="x" * 65537, head="big", base="main")
    assert exc.value.status == 422 and "too long" in str(exc.value.data)
    # GitHub's own refusals are not spec violations
    gh.assert_no_violations()


def test_comments_pagination_edit_and_reactions(gh, client):
    gh.commit(REPO, "feature", {"a.txt": "a\n"})
    pr = client.get_repo(REPO).create_pull(title="t", body="", head="feature", base="main")
    issue = pr.as_issue()
    for i in range(35):
        issue.create_comment(f"comment {i}")
    gh.add_comment(REPO, pr.number, "a human says hi", user="analyst")

    first = api(gh, "GET", f"/repos/acme/dbt/issues/{pr.number}/comments", params={"per_page": 10})
    assert first.status_code == 200 and len(first.json()) == 10
    assert 'rel="next"' in first.headers["Link"] and 'rel="last"' in first.headers["Link"]
    assert first.links["last"]["url"].endswith("page=4")
    last = requests.get(first.links["last"]["url"], headers={"Authorization": f"token {TOKEN}"}, timeout=30)
    assert [c["body"] for c in last.json()] == ["comment 30", "comment 31", "comment 32", "comment 33",
                                                 "comment 34", "a human says hi"]
    assert 'rel="prev"' in last.headers["Link"] and 'rel="next"' not in last.headers["Link"]

    comments = list(pr.get_issue_comments())  # PyGithub follows the Link headers (30 a page)
    assert len(comments) == 36 and comments[-1].user.login == "analyst"
    mine = comments[3]
    mine.edit("edited <!-- layersync:report -->")
    assert gh.comments(REPO, pr.number)[3].body == "edited <!-- layersync:report -->"
    assert client.get_repo(REPO).get_issue(pr.number).get_comment(mine.id).body.startswith("edited")

    reaction = comments[-1].create_reaction("eyes")
    assert reaction.content == "eyes"
    again = api(gh, "POST", f"/repos/acme/dbt/issues/comments/{comments[-1].id}/reactions", json={"content": "eyes"})
    assert again.status_code == 200  # already there: GitHub answers 200, not 201
    assert [x.content for x in gh.comments(REPO, pr.number)[-1].reactions] == ["eyes"]
    assert gh.comments(REPO, pr.number)[-1].reactions[0].user == BOT
    gh.assert_no_violations()


def test_collaborator_permission_and_identity(gh, client):
    gh.grant(REPO, "analyst", "write")
    gh.grant(REPO, "viewer", "triage")
    repo = client.get_repo(REPO)
    assert repo.get_collaborator_permission("analyst") == "write"
    assert repo.get_collaborator_permission("viewer") == "read"  # the legacy field folds triage into read
    assert repo.get_collaborator_role_name("viewer") == "triage"
    assert repo.get_collaborator_permission("acme") == "admin"
    assert api(gh, "GET", "/repos/acme/dbt/collaborators/nobody/permission").status_code == 404
    assert client.get_user().login == BOT
    gh.assert_no_violations()


def test_every_implemented_operation_answers_to_the_schema(gh):
    """Touch the operations the other tests do not, so each handler's response is checked against the spec."""
    sha = gh.commit(REPO, "feature/x", {"a.txt": "a\n"})
    pr = gh.create_pr(REPO, "feature/x", title="t", user="analyst")
    comment = gh.add_comment(REPO, pr.number, "hello", user="analyst")
    assert api(gh, "POST", f"/repos/acme/dbt/issues/comments/{comment.id}/reactions", json={"content": "+1"}).status_code == 201
    assert api(gh, "GET", f"/repos/acme/dbt/issues/comments/{comment.id}/reactions").json()[0]["content"] == "+1"
    assert api(gh, "GET", "/repos/acme/dbt/branches/feature/x").json()["commit"]["sha"] == sha
    assert api(gh, "GET", "/repos/acme/dbt/branches/nope").status_code == 404
    assert api(gh, "GET", "/rate_limit").json()["resources"]["core"]["limit"] == 5000
    assert api(gh, "POST", f"/repos/acme/dbt/statuses/{sha}", json={"state": "pending"}).status_code == 201
    assert len(api(gh, "GET", f"/repos/acme/dbt/commits/{sha}/statuses").json()) == 1
    assert api(gh, "GET", f"/repos/acme/dbt/commits/{sha}/check-runs").json()["total_count"] == 0
    assert api(gh, "GET", f"/repos/acme/dbt/pulls/{pr.number}/merge").status_code == 404
    merged = api(gh, "PUT", f"/repos/acme/dbt/pulls/{pr.number}/merge", json={"merge_method": "squash"})
    assert merged.status_code == 200 and merged.json()["merged"] is True
    assert api(gh, "GET", f"/repos/acme/dbt/pulls/{pr.number}/merge").status_code == 204
    assert api(gh, "PUT", f"/repos/acme/dbt/pulls/{pr.number}/merge", json={}).status_code == 405
    assert api(gh, "DELETE", "/repos/acme/dbt/git/refs/heads/feature/x").status_code == 204
    assert gh.branch_sha(REPO, "feature/x") is None and gh.pushes[-1].updates[0].deleted
    assert api(gh, "DELETE", "/repos/acme/dbt/git/refs/heads/feature/x").status_code == 422
    assert api(gh, "DELETE", f"/repos/acme/dbt/issues/comments/{comment.id}").status_code == 204
    assert gh.comments(REPO, pr.number) == []
    pulls = api(gh, "GET", "/repos/acme/dbt/pulls", params={"state": "closed"}).json()
    assert pulls[0]["merged_at"] and pulls[0]["head"]["ref"] == "feature/x"
    gh.assert_no_violations()


def test_read_only_token_cannot_write(gh, client):
    gh.add_token("ghp_ro", user="reader", read_only=True)
    gh.create_issue(REPO, "issue")
    assert api(gh, "GET", "/repos/acme/dbt/issues/1", token="ghp_ro").status_code == 200
    assert api(gh, "POST", "/repos/acme/dbt/issues/1/comments", token="ghp_ro", json={"body": "x"}).status_code == 403
    gh.assert_no_violations()


def test_statuses(gh):
    sha = gh.branch_sha(REPO, "main")
    r = api(gh, "POST", f"/repos/acme/dbt/statuses/{sha}",
            json={"state": "success", "context": "layersync/dbt", "description": "dbt build passed"})
    assert r.status_code == 201 and r.json()["state"] == "success"
    assert api(gh, "POST", f"/repos/acme/dbt/statuses/{'f' * 40}", json={"state": "success"}).status_code == 422
    assert api(gh, "POST", f"/repos/acme/dbt/statuses/{sha}", json={"state": "green"}).status_code == 422
    assert [s["context"] for s in gh.statuses(REPO)] == ["layersync/dbt"]
    combined = api(gh, "GET", f"/repos/acme/dbt/commits/{sha}/status").json()
    assert combined["state"] == "success" and combined["total_count"] == 1
    assert len(gh.violations) == 1 and "'green' is not one of" in str(gh.violations[0])


def test_github_app_flow(gh):
    key = gh.new_app_key()
    gh.register_app(4242, "layersync", private_key=key)
    installation_id = gh.install_app(4242, [REPO])
    auth = github.Auth.AppAuth(4242, key)
    integration = github.GithubIntegration(auth=auth, base_url=gh.api_url, **NO_PAUSE)
    assert integration.get_app().slug == "layersync"
    inst = integration.get_repo_installation("acme", "dbt")
    assert inst.id == installation_id
    token = integration.get_access_token(installation_id)
    assert token.token.startswith("ghs_") and token.expires_at

    g = github.Github(auth=auth.get_installation_auth(installation_id), base_url=gh.api_url, **NO_PAUSE)
    repo = g.get_repo(REPO)
    gh.commit(REPO, "feature", {"a.txt": "a\n"})
    pr = repo.create_pull(title="t", body="", head="feature", base="main")
    assert pr.user.login == "layersync[bot]"
    comment = pr.as_issue().create_comment("report")
    assert comment.performed_via_github_app.slug == "layersync"
    run = repo.create_check_run(name="layersync", head_sha=pr.head.sha, status="in_progress")
    assert run.pull_requests[0].number == pr.number
    run.edit(conclusion="success", output={"title": "ok", "summary": "all good"})
    assert gh.check_runs(REPO)[0]["fields"]["conclusion"] == "success"
    assert repo.get_check_run(run.id).status == "completed"

    # an installation token cannot read /user (GitHub: 403), and a user token cannot create check runs
    assert api(gh, "GET", "/user", token=token.token).status_code == 403
    assert api(gh, "POST", "/repos/acme/dbt/check-runs", json={"name": "x", "head_sha": pr.head.sha}).status_code == 403
    # a JWT signed with another key is refused
    other = github.GithubIntegration(auth=github.Auth.AppAuth(4242, gh.new_app_key()), base_url=gh.api_url, **NO_PAUSE)
    with pytest.raises(github.GithubException) as exc:
        other.get_app()
    assert exc.value.status == 401
    gh.assert_no_violations()


def test_api_prefix(spec):
    with GitHubStandIn(api_prefix="/api/v3") as gh:
        gh.add_token(TOKEN)
        gh.create_repo(REPO)
        assert gh.api_url.endswith("/api/v3")
        g = github.Github(auth=github.Auth.Token(TOKEN), base_url=gh.api_url, retry=None, **NO_PAUSE)
        assert g.get_repo(REPO).full_name == REPO
        assert requests.get(gh.web_url + "/repos/acme/dbt", headers={"Authorization": f"token {TOKEN}"},
                            timeout=30).status_code == 404
        assert "API prefix" in str(gh.violations[0])


# --------------------------------------------------------------------------- git over HTTP


def test_git_clone_commit_push_then_pr_files(gh, client, tmp_path):
    env = git_env(TOKEN, tmp_path)
    work = tmp_path / "work"
    git("clone", "--quiet", gh.git_url("acme", "dbt"), str(work), env=env)
    assert (work / "models" / "orders.sql").read_text() == "select 1 as id\n"
    git("checkout", "-q", "-b", "layersync/sync-1", cwd=work, env=env)
    (work / "models" / "orders.sql").write_text("select 1 as id, 'x' as status\n")
    (work / "README.md").unlink()
    git("commit", "-qam", "sync", cwd=work, env=env)
    git("push", "--quiet", "origin", "layersync/sync-1", cwd=work, env=env)

    assert len(gh.pushes) == 1
    push = gh.pushes[0]
    assert push.user == BOT and push.refs == ["refs/heads/layersync/sync-1"] and push.updates[0].created
    head = git("rev-parse", "HEAD", cwd=work, env=env).stdout.strip()
    assert gh.branch_sha(REPO, "layersync/sync-1") == head

    repo = client.get_repo(REPO)
    assert "layersync/sync-1" in [b.name for b in repo.get_branches()]
    pr = repo.create_pull(title="t", body="", head="layersync/sync-1", base="main")
    assert {(f.filename, f.status) for f in pr.get_files()} == {("models/orders.sql", "modified"), ("README.md", "removed")}

    # a force-push moves the PR's head
    git("commit", "-q", "--amend", "-m", "sync (amended)", cwd=work, env=env)
    git("push", "--quiet", "--force", "origin", "layersync/sync-1", cwd=work, env=env)
    new_head = git("rev-parse", "HEAD", cwd=work, env=env).stdout.strip()
    assert repo.get_pull(pr.number).head.sha == new_head
    assert gh.pushes[-1].updates[0].old == head
    gh.assert_no_violations()


def test_git_requires_a_valid_token(gh, tmp_path):
    env = git_env(TOKEN, tmp_path)
    work = tmp_path / "work"
    git("clone", "--quiet", gh.git_url(REPO), str(work), env=env)

    anonymous = git_env(None, tmp_path)
    failed = git("clone", "--quiet", gh.git_url(REPO), str(tmp_path / "anon"), env=anonymous, check=False)
    assert failed.returncode != 0
    wrong = git_env("ghp_wrong", tmp_path)
    assert git("clone", "--quiet", gh.git_url(REPO), str(tmp_path / "wrong"), env=wrong, check=False).returncode != 0

    (work / "new.txt").write_text("new\n")
    git("add", "new.txt", cwd=work, env=env)
    git("commit", "-qm", "new", cwd=work, env=env)
    refused = git("push", "origin", "HEAD:refs/heads/anon", cwd=work, env=anonymous, check=False)
    assert refused.returncode != 0
    gh.add_token("ghp_ro", user="reader", read_only=True)
    read_only = git("push", "origin", "HEAD:refs/heads/ro", cwd=work, env=git_env("ghp_ro", tmp_path), check=False)
    assert read_only.returncode != 0 and "403" in read_only.stderr
    assert gh.pushes == [] and gh.branch_sha(REPO, "anon") is None

    unauthorized = [r for r in gh.git_requests if r.status == 401]
    assert unauthorized and all(r.user is None for r in unauthorized)
    git("push", "--quiet", "origin", "HEAD:refs/heads/ok", cwd=work, env=env)
    assert gh.pushes[0].refs == ["refs/heads/ok"]


def test_git_large_push_is_streamed(gh, tmp_path):
    """A push bigger than git's postBuffer goes chunked; fetches negotiate with gzip bodies."""
    env = git_env(TOKEN, tmp_path)
    work = tmp_path / "work"
    git("clone", "--quiet", gh.git_url(REPO), str(work), env=env)
    (work / "blob.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    git("add", "blob.bin", cwd=work, env=env)
    git("commit", "-qm", "big", cwd=work, env=env)
    git("push", "--quiet", "origin", "HEAD:refs/heads/big", cwd=work, env=env)
    assert gh.branch_sha(REPO, "big") == git("rev-parse", "HEAD", cwd=work, env=env).stdout.strip()
    assert any(r.chunked and r.service == "git-receive-pack" for r in gh.git_requests)
    # git gzips a negotiation request over 1 KiB; forty new branches, each its own commit, put forty
    # `want` lines (50 bytes each) in the very first request, whatever the "have" rounds do
    for i in range(40):
        gh.commit(REPO, f"many/{i}", {f"m{i}.txt": f"{i}\n"}, parent="main")
    gh.commit(REPO, "main", {"c.txt": "c\n"})
    git("fetch", "--quiet", "origin", cwd=work, env=env)
    assert git("rev-parse", "origin/main", cwd=work, env=env).stdout.strip() == gh.branch_sha(REPO, "main")
    assert any(r.gzip and r.service == "git-upload-pack" for r in gh.git_requests)


def test_create_repo_from_existing_git_repo(spec, tmp_path):
    src = tmp_path / "src"
    env = git_env(None, tmp_path)
    git("init", "-q", "-b", "trunk", str(src), env=env)
    (src / "f.txt").write_text("hello\n")
    git("add", "f.txt", cwd=src, env=env)
    git("commit", "-qm", "init", cwd=src, env=env)
    with GitHubStandIn(spec=spec) as gh:
        gh.add_token(TOKEN)
        gh.create_repo("acme/semantic", from_path=src)
        assert gh.repos["acme/semantic"].default_branch == "trunk"
        assert gh.file_at("acme/semantic", "trunk", "f.txt") == "hello\n"
        clone = tmp_path / "clone"
        git("clone", "--quiet", gh.git_url("acme", "semantic"), str(clone), env=git_env(TOKEN, tmp_path))
        assert (clone / "f.txt").read_text() == "hello\n"


def test_every_stand_in_reuses_the_one_parsed_description(spec):
    """Starting a stand-in per test is cheap because GitHub's description is parsed once per process."""
    assert load_spec() is spec
    with GitHubStandIn() as gh:
        assert gh.spec is spec
        gh.create_repo(REPO)


def test_review_requests_through_the_forge(gh):
    """GitHubForge.request_review against the stand-in: collaborators are asked, an outsider is left out
    (GitHub refuses with 422), and the request is checked against GitHub's published schema."""
    from bot.forge.github import GitHubForge

    gh.commit(REPO, "feature", {"models/orders.sql": "select 2 as id\n"})
    forge = GitHubForge.from_token(TOKEN, base_url=gh.api_url, **NO_PAUSE)
    pr, _ = forge.open_or_update_pr(REPO, head="feature", base="main", title="t", body="b")
    gh.grant(REPO, "grace", "write")
    gh.add_user("mallory")

    assert forge.request_review(REPO, pr.number, ["grace", "mallory", "grace"]) == ["grace"]
    listed = api(gh, "GET", f"/repos/{REPO}/pulls/{pr.number}").json()
    assert [u["login"] for u in listed["requested_reviewers"]] == ["grace"]
    assert gh.violations == []

"""GitHub webhook payloads for tests, checked against GitHub's own schemas.

Hand-written payloads drift from what GitHub really sends (a missing ``installation``, a PR
number where the API has a string, a ``sender`` without ``type``), and a handler tested on
them then breaks on the first real delivery. So every builder here validates its result against
``@octokit/webhooks-schemas`` (the JSON Schema octokit generates from GitHub's docs), fetched
once with ``npm pack`` into a cache dir and reused.

Use: ``issue_comment_created(...)``, ``push(...)``, ``delete(...)``, ``pull_request(...)``, ``ping()`` build
payload dicts; ``validate(event, payload)`` checks one; ``signed_headers(secret, body, event,
delivery)`` gives the headers GitHub would send with ``body``.
"""
from __future__ import annotations

import contextlib
import copy
import fcntl
import functools
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

SCHEMA_PACKAGE = "@octokit/webhooks-schemas"
SCHEMA_VERSION = "7.6.1"

INSTALLATION_ID = 4242
NOW = "2024-05-01T12:00:00Z"
API = "https://api.github.com"
WEB = "https://github.com"


# -- the schema ----------------------------------------------------------------------------


def cache_dir() -> Path:
    """``$LAYERSYNC_CACHE`` or ``~/.cache/layersync``: downloads shared by every test run."""
    env = os.environ.get("LAYERSYNC_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "layersync"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock file: parallel test processes wait instead of downloading twice."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def schema_path() -> Path:
    """Path of the cached ``schema.json``, running ``npm pack`` the first time only.

    Written by atomic rename after extraction, under a lock, so a reader never sees half a file
    and concurrent test runs never clash.
    """
    root = cache_dir()
    target = root / f"webhooks-schemas-{SCHEMA_VERSION}" / "schema.json"
    if target.is_file():
        return target
    with _locked(root / f"webhooks-schemas-{SCHEMA_VERSION}.lock"):
        if target.is_file():  # another process fetched it while we waited
            return target
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError(
                f"npm is needed once to fetch {SCHEMA_PACKAGE}@{SCHEMA_VERSION} into {root} "
                "(apt-get install npm), or put its schema.json at " + str(target)
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            proc = subprocess.run(
                [npm, "pack", f"{SCHEMA_PACKAGE}@{SCHEMA_VERSION}", "--silent"],
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=300,
            )
            tarballs = list(Path(tmp).glob("*.tgz"))
            if proc.returncode != 0 or not tarballs:
                raise RuntimeError(f"npm pack {SCHEMA_PACKAGE}@{SCHEMA_VERSION} failed: {proc.stderr.strip()[-500:]}")
            with tarfile.open(tarballs[0]) as tar:
                member = tar.getmember("package/schema.json")
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
            json.loads(data)  # a truncated download must not be cached
            partial = target.with_suffix(".json.partial")
            partial.write_bytes(data)
            os.replace(partial, target)
    return target


@functools.lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    return json.loads(schema_path().read_text())


@functools.lru_cache(maxsize=None)
def _validator(definition: str) -> Any:
    import jsonschema

    root = _schema()
    defs = root.get("definitions") or root.get("$defs")
    key = "definitions" if "definitions" in root else "$defs"
    if definition not in defs:
        raise KeyError(f"no schema for {definition!r}")
    schema = {"$schema": root.get("$schema", "http://json-schema.org/draft-07/schema#"), key: defs,
              "$ref": f"#/{key}/{definition}"}
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def schema_definition(event_name: str, payload: dict) -> str:
    """The schema definition for an event: ``<event>$<action>`` or ``<event>$event``."""
    defs = _schema().get("definitions") or _schema().get("$defs")
    action = payload.get("action")
    for candidate in (f"{event_name}${action}" if action else None, f"{event_name}$event"):
        if candidate and candidate in defs:
            return candidate
    raise KeyError(f"no schema for event {event_name!r} action {action!r}")


def validate(event_name: str, payload: dict) -> None:
    """Raise ``jsonschema.ValidationError`` (with every problem listed) if ``payload`` is not a
    valid ``event_name`` delivery according to GitHub's schema."""
    import jsonschema

    validator = _validator(schema_definition(event_name, payload))
    errors = sorted(validator.iter_errors(payload), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:200]}" for e in errors[:10]]
        raise jsonschema.ValidationError(f"invalid {event_name} payload:\n  " + "\n  ".join(lines))


# -- signing ---------------------------------------------------------------------------------


def signed_headers(secret: str, body: bytes, event: str, delivery: str) -> dict[str, str]:
    """The headers GitHub sends with a delivery of ``body``, signed with ``secret``."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/test",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-GitHub-Hook-ID": "1",
        "X-GitHub-Hook-Installation-Target-ID": "1",
        "X-GitHub-Hook-Installation-Target-Type": "integration",
        "X-Hub-Signature-256": f"sha256={digest}",
    }


def encode(payload: dict) -> bytes:
    """The body bytes for a payload (compact, as GitHub sends it)."""
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


# -- building blocks -------------------------------------------------------------------------


def _id(text: str, mod: int = 10**8) -> int:
    """A stable numeric id derived from a name: the same user or repo always gets the same id."""
    return int(hashlib.sha256(text.encode()).hexdigest(), 16) % mod + 1


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def user(login: str = "ada", type: str = "User") -> dict[str, Any]:
    """A ``user`` object (``type``: User, Bot or Organization)."""
    uid = _id(f"user:{login}")
    path = quote(login, safe="")  # GitHub writes bots' `name[bot]` logins percent-encoded in URLs
    api = f"{API}/users/{path}"
    return {
        "login": login,
        "id": uid,
        "node_id": f"U_{uid}",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{uid}?v=4",
        "gravatar_id": "",
        "url": api,
        "html_url": f"{WEB}/{path}",
        "followers_url": f"{api}/followers",
        "following_url": f"{api}/following{{/other_user}}",
        "gists_url": f"{api}/gists{{/gist_id}}",
        "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{api}/subscriptions",
        "organizations_url": f"{api}/orgs",
        "repos_url": f"{api}/repos",
        "events_url": f"{api}/events{{/privacy}}",
        "received_events_url": f"{api}/received_events",
        "type": type,
        "site_admin": False,
    }


def repository(full_name: str = "acme/semantic", default_branch: str = "main", private: bool = True) -> dict[str, Any]:
    """A full ``repository`` object as webhook payloads carry it."""
    owner, name = full_name.split("/", 1)
    rid = _id(f"repo:{full_name}")
    api = f"{API}/repos/{full_name}"
    t = {  # uri-template fields
        "keys_url": "/keys{/key_id}", "collaborators_url": "/collaborators{/collaborator}",
        "issue_events_url": "/issues/events{/number}", "assignees_url": "/assignees{/user}",
        "branches_url": "/branches{/branch}", "blobs_url": "/git/blobs{/sha}", "git_tags_url": "/git/tags{/sha}",
        "git_refs_url": "/git/refs{/sha}", "trees_url": "/git/trees{/sha}", "statuses_url": "/statuses/{sha}",
        "commits_url": "/commits{/sha}", "git_commits_url": "/git/commits{/sha}",
        "comments_url": "/comments{/number}", "issue_comment_url": "/issues/comments{/number}",
        "contents_url": "/contents/{+path}", "compare_url": "/compare/{base}...{head}",
        "archive_url": "/{archive_format}{/ref}", "issues_url": "/issues{/number}", "pulls_url": "/pulls{/number}",
        "milestones_url": "/milestones{/number}", "notifications_url": "/notifications{?since,all,participating}",
        "labels_url": "/labels{/name}", "releases_url": "/releases{/id}",
    }
    plain = ["forks", "teams", "hooks", "events", "tags", "languages", "stargazers", "contributors",
             "subscribers", "subscription", "merges", "downloads", "deployments"]
    repo: dict[str, Any] = {
        "id": rid,
        "node_id": f"R_{rid}",
        "name": name,
        "full_name": full_name,
        "private": private,
        "owner": user(owner, "Organization"),
        "html_url": f"{WEB}/{full_name}",
        "description": None,
        "fork": False,
        "url": api,
    }
    repo.update({k: api + v for k, v in t.items()})
    repo.update({f"{p}_url": f"{api}/{p}" for p in plain})
    repo.update({
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": NOW,
        "pushed_at": NOW,
        "git_url": f"git://github.com/{full_name}.git",
        "ssh_url": f"git@github.com:{full_name}.git",
        "clone_url": f"{WEB}/{full_name}.git",
        "svn_url": f"{WEB}/{full_name}",
        "homepage": None,
        "size": 120,
        "stargazers_count": 0,
        "watchers_count": 0,
        "language": None,
        "has_issues": True,
        "has_projects": True,
        "has_downloads": True,
        "has_wiki": False,
        "has_pages": False,
        "has_discussions": False,
        "forks_count": 0,
        "mirror_url": None,
        "archived": False,
        "disabled": False,
        "open_issues_count": 1,
        "license": None,
        "allow_forking": True,
        "is_template": False,
        "web_commit_signoff_required": False,
        "topics": [],
        "visibility": "private" if private else "public",
        "forks": 0,
        "open_issues": 1,
        "watchers": 0,
        "default_branch": default_branch,
        "custom_properties": {},
    })
    return repo


def installation(installation_id: int = INSTALLATION_ID) -> dict[str, Any]:
    """The ``installation`` stub every GitHub App delivery carries."""
    return {"id": installation_id, "node_id": f"MDIz{installation_id}"}


def _reactions(url: str) -> dict[str, Any]:
    return {"url": f"{url}/reactions", "total_count": 0, "+1": 0, "-1": 0, "laugh": 0,
            "hooray": 0, "confused": 0, "heart": 0, "rocket": 0, "eyes": 0}


def _finish(event: str, payload: dict[str, Any]) -> dict[str, Any]:
    validate(event, payload)
    return payload


# -- events ----------------------------------------------------------------------------------


def issue_comment_created(
    repo: str = "acme/semantic",
    number: int = 7,
    body: str = "/push-to-dbt",
    user: str = "ada",
    is_pr: bool = False,
    user_type: str = "User",
    comment_id: int | None = None,
    author_association: str = "MEMBER",
    installation_id: int = INSTALLATION_ID,
) -> dict[str, Any]:
    """An ``issue_comment`` ``created`` delivery: ``user`` commented ``body`` on issue (or, with
    ``is_pr``, pull request) ``number``. ``user_type="Bot"`` for a bot's own comments."""
    commenter = globals()["user"](user, user_type)
    author = globals()["user"]("grace")
    repo_obj = repository(repo)
    api = f"{API}/repos/{repo}"
    cid = comment_id if comment_id is not None else _id(f"comment:{repo}#{number}:{body}:{user}")
    issue_url = f"{api}/issues/{number}"
    kind = "pull" if is_pr else "issues"
    issue: dict[str, Any] = {
        "url": issue_url,
        "repository_url": api,
        "labels_url": f"{issue_url}/labels{{/name}}",
        "comments_url": f"{issue_url}/comments",
        "events_url": f"{issue_url}/events",
        "html_url": f"{WEB}/{repo}/{kind}/{number}",
        "id": _id(f"issue:{repo}#{number}"),
        "node_id": f"I_{number}",
        "number": number,
        "title": f"{'PR' if is_pr else 'Issue'} {number}",
        "user": author,
        "labels": [],
        "state": "open",
        "locked": False,
        "assignee": None,
        "assignees": [],
        "milestone": None,
        "comments": 1,
        "created_at": "2024-04-30T09:00:00Z",
        "updated_at": NOW,
        "closed_at": None,
        "author_association": "MEMBER",
        "active_lock_reason": None,
        "body": None,
        "reactions": _reactions(issue_url),
        "timeline_url": f"{issue_url}/timeline",
        "performed_via_github_app": None,
        "state_reason": None,
    }
    if is_pr:
        issue["draft"] = False
        issue["pull_request"] = {
            "url": f"{api}/pulls/{number}",
            "html_url": f"{WEB}/{repo}/pull/{number}",
            "diff_url": f"{WEB}/{repo}/pull/{number}.diff",
            "patch_url": f"{WEB}/{repo}/pull/{number}.patch",
            "merged_at": None,
        }
    comment_url = f"{api}/issues/comments/{cid}"
    payload = {
        "action": "created",
        "issue": issue,
        "comment": {
            "url": comment_url,
            "html_url": f"{WEB}/{repo}/{kind}/{number}#issuecomment-{cid}",
            "issue_url": issue_url,
            "id": cid,
            "node_id": f"IC_{cid}",
            "user": commenter,
            "created_at": NOW,
            "updated_at": NOW,
            "author_association": author_association,
            "body": body,
            "reactions": _reactions(comment_url),
            "performed_via_github_app": None,
        },
        "repository": repo_obj,
        "sender": commenter,
        "installation": installation(installation_id),
    }
    return _finish("issue_comment", payload)


def commit(
    message: str = "Edit views",
    sha: str | None = None,
    added: list[str] | None = None,
    modified: list[str] | None = None,
    removed: list[str] | None = None,
    repo: str = "acme/semantic",
    author: str = "ada",
) -> dict[str, Any]:
    """One entry of a push's ``commits`` list."""
    sha = sha or _sha(f"{repo}:{message}")
    person = {"name": author.title(), "email": f"{author}@example.com", "username": author}
    return {
        "id": sha,
        "tree_id": _sha(f"tree:{sha}"),
        "distinct": True,
        "message": message,
        "timestamp": "2024-05-01T11:59:00+00:00",
        "url": f"{WEB}/{repo}/commit/{sha}",
        "author": person,
        "committer": person,
        "added": list(added or []),
        "removed": list(removed or []),
        "modified": list(modified if modified is not None else ["views/orders.view.yaml"]),
    }


def push(
    repo: str = "acme/semantic",
    ref: str = "refs/heads/main",
    before: str | None = None,
    after: str | None = None,
    commits: list[dict[str, Any]] | None = None,
    pusher: str = "ada",
    installation_id: int = INSTALLATION_ID,
) -> dict[str, Any]:
    """A ``push`` delivery. ``commits`` entries come from ``commit()``; by default one commit
    whose id is ``after``."""
    before = before or _sha(f"{repo}:{ref}:before")
    if commits is None:
        commits = [commit(sha=after, repo=repo, author=pusher)]
    after = after or (commits[-1]["id"] if commits else _sha(f"{repo}:{ref}:after"))
    payload = {
        "ref": ref,
        "before": before,
        "after": after,
        "repository": repository(repo),
        "pusher": {"name": pusher, "email": f"{pusher}@example.com"},
        "sender": user(pusher),
        "installation": installation(installation_id),
        "created": before == "0" * 40,
        "deleted": after == "0" * 40,
        "forced": False,
        "base_ref": None,
        "compare": f"{WEB}/{repo}/compare/{before[:12]}...{after[:12]}",
        "commits": commits,
        "head_commit": commits[-1] if commits else None,
    }
    return _finish("push", payload)


def delete(
    repo: str = "acme/dbt",
    ref: str = "feature",
    ref_type: str = "branch",
    pusher: str = "ada",
    installation_id: int = INSTALLATION_ID,
) -> dict[str, Any]:
    """A ``delete`` delivery: branch (or tag) ``ref`` — its short name, as GitHub sends it — was deleted."""
    payload = {
        "ref": ref,
        "ref_type": ref_type,
        "pusher_type": "user",
        "repository": repository(repo),
        "sender": user(pusher),
        "installation": installation(installation_id),
    }
    return _finish("delete", payload)


def pull_request(
    action: str = "opened",
    repo: str = "acme/dbt",
    number: int = 12,
    head_ref: str = "layersync/push/orders-is_large_order",
    base_ref: str = "main",
    merged: bool = False,
    user: str = "ada",
    head_sha: str | None = None,
    base_sha: str | None = None,
    title: str | None = None,
    body: str | None = None,
    changes: dict[str, Any] | None = None,
    installation_id: int = INSTALLATION_ID,
) -> dict[str, Any]:
    """A ``pull_request`` delivery (``opened``, ``synchronize``, ``closed``, ``reopened``,
    ``edited``, …). ``merged`` only matters for ``closed``; ``synchronize`` gets
    ``before``/``after``; ``edited`` gets ``changes`` (default: the title changed)."""
    author = globals()["user"](user)
    repo_obj = repository(repo)
    owner = repo.split("/", 1)[0]
    head_sha = head_sha or _sha(f"{repo}:{head_ref}")
    base_sha = base_sha or _sha(f"{repo}:{base_ref}")
    api = f"{API}/repos/{repo}"
    pr_url = f"{api}/pulls/{number}"
    closed = action == "closed"
    is_merged = closed and merged
    pr: dict[str, Any] = {
        "url": pr_url,
        "id": _id(f"pr:{repo}#{number}"),
        "node_id": f"PR_{number}",
        "html_url": f"{WEB}/{repo}/pull/{number}",
        "diff_url": f"{WEB}/{repo}/pull/{number}.diff",
        "patch_url": f"{WEB}/{repo}/pull/{number}.patch",
        "issue_url": f"{api}/issues/{number}",
        "number": number,
        "state": "closed" if closed else "open",
        "locked": False,
        "title": title or f"layersync: {head_ref}",
        "user": author,
        "body": body,
        "created_at": "2024-04-30T09:00:00Z",
        "updated_at": NOW,
        "closed_at": NOW if closed else None,
        "merged_at": NOW if is_merged else None,
        "merge_commit_sha": _sha(f"merge:{repo}#{number}") if is_merged else None,
        "assignee": None,
        "assignees": [],
        "requested_reviewers": [],
        "requested_teams": [],
        "labels": [],
        "milestone": None,
        "draft": False,
        "commits_url": f"{pr_url}/commits",
        "review_comments_url": f"{pr_url}/comments",
        "review_comment_url": f"{api}/pulls/comments{{/number}}",
        "comments_url": f"{api}/issues/{number}/comments",
        "statuses_url": f"{api}/statuses/{head_sha}",
        "head": {"label": f"{owner}:{head_ref}", "ref": head_ref, "sha": head_sha,
                 "user": repo_obj["owner"], "repo": repo_obj},
        "base": {"label": f"{owner}:{base_ref}", "ref": base_ref, "sha": base_sha,
                 "user": repo_obj["owner"], "repo": repo_obj},
        "_links": {
            "self": {"href": pr_url},
            "html": {"href": f"{WEB}/{repo}/pull/{number}"},
            "issue": {"href": f"{api}/issues/{number}"},
            "comments": {"href": f"{api}/issues/{number}/comments"},
            "review_comments": {"href": f"{pr_url}/comments"},
            "review_comment": {"href": f"{api}/pulls/comments{{/number}}"},
            "commits": {"href": f"{pr_url}/commits"},
            "statuses": {"href": f"{api}/statuses/{head_sha}"},
        },
        "author_association": "MEMBER",
        "auto_merge": None,
        "active_lock_reason": None,
        "merged": is_merged,
        "mergeable": None,
        "rebaseable": None,
        "mergeable_state": "unknown",
        "merged_by": author if is_merged else None,
        "comments": 0,
        "review_comments": 0,
        "maintainer_can_modify": False,
        "commits": 1,
        "additions": 3,
        "deletions": 0,
        "changed_files": 2,
    }
    payload: dict[str, Any] = {
        "action": action,
        "number": number,
        "pull_request": pr,
        "repository": repo_obj,
        "sender": author,
        "installation": installation(installation_id),
    }
    if action == "synchronize":
        payload["before"] = _sha(f"{repo}:{head_ref}:before")
        payload["after"] = head_sha
    if action == "edited" or changes is not None:
        payload["changes"] = changes if changes is not None else {"title": {"from": "WIP"}}
    return _finish("pull_request", payload)


def ping(zen: str = "Keep it logically awesome.", hook_id: int = 1) -> dict[str, Any]:
    """A ``ping`` delivery (sent when a hook or App is set up)."""
    hook_url = f"{API}/app/hook"
    payload = {
        "zen": zen,
        "hook_id": hook_id,
        "hook": {
            "type": "App",
            "id": hook_id,
            "name": "web",
            "active": True,
            "app_id": 99,
            "events": ["issue_comment", "pull_request", "push"],
            "config": {"content_type": "json", "url": "https://layersync.example.com/webhooks/github",
                       "insecure_ssl": "0"},
            "updated_at": NOW,
            "created_at": NOW,
            "url": hook_url,
            "ping_url": f"{hook_url}/pings",
            "deliveries_url": f"{hook_url}/deliveries",
        },
    }
    return _finish("ping", payload)


def mutated(payload: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of ``payload`` with top-level keys replaced (not validated: for negative tests)."""
    out = copy.deepcopy(payload)
    out.update(changes)
    return out

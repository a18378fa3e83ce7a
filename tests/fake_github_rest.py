"""A small local GitHub REST API speaking the wire format PyGithub expects (objects carry
``url`` fields on this host), for the calls revieee makes: branches, collaborator permission,
pull requests, issue comments and their reactions, deployments and their statuses, and a
GitHub App's installation tokens. Faults (404, 403 rate limits with reset headers, 5xx) are
served on demand.

Rules it enforces as GitHub does:

- Owner and repository names are case-insensitive (``/repos/codertocat/hello-world`` is
  ``Codertocat/Hello-World``); so are logins.
- A branch is found only when it is in :attr:`FakeGitHub.branches`, and never when git would
  refuse its name: git-check-ref-format(1) (https://git-scm.com/docs/git-check-ref-format) forbids
  ``:`` and the rest, so ``GET /repos/o/r/branches/owner%3Abranch`` (a fork pull request's head
  label, as it is sent URL-encoded) is GitHub's 404 "Branch not found"
  (https://docs.github.com/rest/branches/branches#get-a-branch).
- Deployments ("Create a deployment",
  https://docs.github.com/rest/deployments/deployments#create-a-deployment):
  ``transient_environment`` defaults to false, ``production_environment`` to whether the
  environment is ``production``. A deployment is found only under its own repository.
- Deployment statuses ("Create a deployment status",
  https://docs.github.com/rest/deployments/statuses#create-a-deployment-status): ``state`` is one
  of ``error failure inactive in_progress queued pending success`` (else 422). With
  ``auto_inactive`` (default true), a ``success`` adds an ``inactive`` status to every prior
  deployment of the same repository and environment that is neither transient nor production
  and whose latest status is ``success``: transient environments are never retired this way.
  ``GET .../deployments/ID/statuses`` lists what was created, newest first.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import jwt

BRANCH_NOT_FOUND = {
    "message": "Branch not found",
    "documentation_url": "https://docs.github.com/rest/branches/branches#get-a-branch",
    "status": "404",
}
DEPLOYMENT_STATES = ("error", "failure", "inactive", "in_progress", "queued", "pending", "success")
# git-check-ref-format(1), rules 1 and 3-10 (and ``--branch``: no leading "-"): what no branch of
# any repository can be named, whatever a test seeded. Kept apart from bot.github.forge's check,
# so that the fake does not agree with the code under test by construction.
_NO_BRANCH = re.compile(
    r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|^@$|^-|\.$|^/|/$|//|(^|/)\.|\.lock(/|$)"
)


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    status: int
    times: int
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Call:
    method: str
    path: str
    body: Any
    token: str


@dataclass
class FakeGitHub:
    tokens: set[str] = field(default_factory=lambda: {"ghp_test"})
    app_id: str | None = None
    app_public_key: str | None = None
    installation_id: int = 4242
    token_ttl: int = 3600
    calls: list[Call] = field(default_factory=list)
    branches: dict[tuple[str, str], str] = field(default_factory=dict)
    permissions: dict[tuple[str, str], str] = field(default_factory=dict)
    pulls: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)
    reactions: list[tuple[int, str, str]] = field(default_factory=list)
    deployments: dict[int, dict[str, Any]] = field(default_factory=dict)
    statuses: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    issued: dict[str, float] = field(default_factory=dict)  # installation token -> expiry

    def __post_init__(self) -> None:
        self._ids = itertools.count(1001)
        self._lock = threading.Condition()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return None

            def _handle(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw) if raw else None
                path = urlsplit(self.path).path
                auth = self.headers.get("Authorization", "")
                status, data, headers = fake._answer(self.command, path, body, auth)
                payload = json.dumps(data).encode() if data is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("X-RateLimit-Limit", "5000")
                self.send_header(
                    "X-RateLimit-Remaining", headers.pop("X-RateLimit-Remaining", "4999")
                )
                self.send_header(
                    "X-RateLimit-Reset",
                    headers.pop("X-RateLimit-Reset", str(int(time.time()) + 3600)),
                )
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- seeding and faults ----------------------------------------------------------------

    def add_pull(self, repo: str, number: int, ref: str, sha: str, **extra: Any) -> None:
        head_repo = extra.pop("head_repo", repo)
        self.pulls[(repo, number)] = {
            "url": f"{self.url}/repos/{repo}/pulls/{number}",
            "issue_url": f"{self.url}/repos/{repo}/issues/{number}",
            "html_url": f"https://github.com/{repo}/pull/{number}",
            "number": number,
            "state": "open",
            "title": extra.pop("title", "Update the README with new information."),
            "draft": False,
            "user": {"login": extra.pop("author", "Codertocat"), "id": 1},
            "labels": [],
            "head": {
                "ref": ref,
                "sha": sha,
                "label": f"{head_repo.split('/')[0]}:{ref}",
                "repo": {
                    "full_name": head_repo,
                    "fork": head_repo.lower() != repo.lower(),
                    "id": 2,
                },
            },
            "base": {"ref": "master", "repo": {"full_name": repo, "id": 1}},
            **extra,
        }

    def fail(
        self,
        method: str,
        path: str,
        status: int,
        times: int = 1,
        headers: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        body = body or {"message": "Server Error"}
        self.faults.append(Fault(method, re.compile(path), status, times, headers or {}, body))

    def rate_limit(self, method: str, path: str, reset_in: int = 3600, times: int = 1) -> int:
        reset = int(time.time()) + reset_in
        self.fail(
            method,
            path,
            403,
            times,
            {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)},
            {
                "message": "API rate limit exceeded for installation ID 4242.",
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
            },
        )
        return reset

    def branch_lookups(self) -> list[str]:
        """The branch names asked for (``GET /repos/o/r/branches/NAME``), decoded."""
        with self._lock:
            calls = [c for c in self.calls if c.method == "GET"]
        return [unquote(m.group(1)) for c in calls if (m := re.search(r"/branches/(.+)$", c.path))]

    def of(self, method: str, path: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method and re.search(path, c.path)]

    def wait_for(self, predicate: Any, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for the expected GitHub calls")
            time.sleep(0.05)

    # -- the API -----------------------------------------------------------------------------

    def _authorized(self, path: str, auth: str) -> bool:
        _, _, token = auth.partition(" ")
        if path.startswith("/app/") or path.endswith("/installation"):
            if self.app_public_key is None:
                return False
            try:
                claims = jwt.decode(token, self.app_public_key, algorithms=["RS256"])
            except jwt.PyJWTError:
                return False
            return str(claims.get("iss")) == str(self.app_id)
        if token in self.issued:
            return self.issued[token] > time.time()
        return token in self.tokens

    def _answer(
        self, method: str, path: str, body: Any, auth: str
    ) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self.calls.append(Call(method, path, body, auth.partition(" ")[2]))
            for fault in self.faults:
                if fault.times and fault.method == method and fault.path.search(path):
                    fault.times -= 1
                    return fault.status, fault.body, dict(fault.headers)
        if not self._authorized(path, auth):
            return 401, {"message": "Bad credentials"}, {}
        with self._lock:
            return self._route(method, path, body)

    def _route(self, method: str, path: str, body: Any) -> tuple[int, Any, dict[str, str]]:
        not_found: tuple[int, Any, dict[str, str]] = (404, {"message": "Not Found"}, {})
        if m := re.fullmatch(r"/app/installations/(\d+)/access_tokens", path):
            token = f"ghs_{next(self._ids)}"
            expires = time.time() + self.token_ttl
            self.issued[token] = expires
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))
            return 201, {"token": token, "expires_at": stamp, "permissions": {}}, {}
        m = re.fullmatch(r"/repos/([^/]+/[^/]+)(/.*)?", path)
        if not m:
            return not_found
        repo, rest = m.group(1), m.group(2) or ""
        if rest == "/installation":
            return 200, {"id": self.installation_id, "app_id": self.app_id}, {}
        if branch := re.fullmatch(r"/branches/(.+)", rest):
            name = unquote(branch.group(1))  # PyGithub sends ":" as %3A; raw is the same to GitHub
            sha = None if _NO_BRANCH.search(name) else _lookup(self.branches, repo, name)
            if sha is None:
                return 404, dict(BRANCH_NOT_FOUND), {}
            return 200, {"name": name, "commit": {"sha": sha, "url": f"{self.url}/x"}}, {}
        if user := re.fullmatch(r"/collaborators/([^/]+)/permission", rest):
            login = user.group(1)
            permission = next(
                (
                    p
                    for (r, u), p in self.permissions.items()
                    if r.lower() == repo.lower() and u.lower() == login.lower()
                ),
                "read",
            )
            return 200, {"permission": permission, "user": {"login": login}}, {}
        if pull := re.fullmatch(r"/pulls/(\d+)", rest):
            found = _lookup(self.pulls, repo, int(pull.group(1)))
            return (200, found, {}) if found else not_found
        if (issue := re.fullmatch(r"/issues/(\d+)/comments", rest)) and method == "POST":
            cid = next(self._ids)
            self.comments[cid] = {
                "id": cid,
                "url": f"{self.url}/repos/{repo}/issues/comments/{cid}",
                "html_url": f"https://github.com/{repo}/pull/{issue.group(1)}#issuecomment-{cid}",
                "issue": int(issue.group(1)),
                "body": body["body"],
                "user": {"login": "revieee[bot]"},
            }
            return 201, self.comments[cid], {}
        if comment := re.fullmatch(r"/issues/comments/(\d+)", rest):
            found = self.comments.get(int(comment.group(1)))
            if found is None:
                return not_found
            if method == "PATCH":
                found["body"] = body["body"]
            return 200, found, {}
        if reaction := re.fullmatch(r"/issues/comments/(\d+)/reactions", rest):
            self.reactions.append((int(reaction.group(1)), body["content"], repo))
            return 201, {"id": next(self._ids), "content": body["content"]}, {}
        if rest == "/deployments" and method == "POST":
            did = next(self._ids)
            self.deployments[did] = {
                "id": did,
                "url": f"{self.url}/repos/{repo}/deployments/{did}",
                "statuses_url": f"{self.url}/repos/{repo}/deployments/{did}/statuses",
                "repository": repo,
                "transient_environment": False,
                "production_environment": body.get("environment") == "production",
                **body,
            }
            self.statuses[did] = []
            return 201, self.deployments[did], {}
        if deployment := re.fullmatch(r"/deployments/(\d+)(/statuses)?", rest):
            did = int(deployment.group(1))
            found = self.deployments.get(did)
            if found is None or found["repository"].lower() != repo.lower():
                return not_found
            if not deployment.group(2):
                return (200, found, {}) if method == "GET" else not_found
            if method == "GET":
                return 200, list(reversed(self.statuses[did])), {}
            if method != "POST":
                return not_found
            if body.get("state") not in DEPLOYMENT_STATES:
                return 422, {"message": "Validation Failed", "errors": [{"field": "state"}]}, {}
            created = self._add_status(did, body)
            if body["state"] == "success" and body.get("auto_inactive", True):
                self._auto_inactive(found)
            return 201, created, {}
        return not_found

    def _add_status(self, did: int, body: dict[str, Any]) -> dict[str, Any]:
        sid = next(self._ids)
        status = {
            "id": sid,
            "url": f"{self.deployments[did]['url']}/statuses/{sid}",
            "description": "",
            "environment": self.deployments[did].get("environment"),
            **body,
        }
        self.statuses[did].append(status)
        return status

    def _auto_inactive(self, deployment: dict[str, Any]) -> None:
        """What ``auto_inactive`` does on a ``success``: earlier successful deployments of the
        environment go inactive, unless they are transient or production ones."""
        for did, other in self.deployments.items():
            if (
                did < deployment["id"]
                and other["repository"].lower() == deployment["repository"].lower()
                and other.get("environment") == deployment.get("environment")
                and not other["transient_environment"]
                and not other["production_environment"]
                and [s["state"] for s in self.statuses[did]][-1:] == ["success"]
            ):
                self._add_status(did, {"state": "inactive"})


def _lookup(table: dict[tuple[str, Any], Any], repo: str, key: Any) -> Any:
    """``table[(repo, key)]`` with the owner and repository compared as GitHub does: ignoring
    case (branch names and numbers compare exactly)."""
    return next((v for (r, k), v in table.items() if r.lower() == repo.lower() and k == key), None)

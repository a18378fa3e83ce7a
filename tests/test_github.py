"""GitHub with its REST API: comment commands, the living PR comment, the Deployments API,
GitHub's errors and App tokens. PyGithub talks over HTTP to ``tests/fake_github_rest.py``;
webhooks are the recorded payloads, signed, sent into the running server."""

from __future__ import annotations

import copy
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.app import build
from bot.aws import AwsClients
from bot.config import settings_from_mapping
from bot.naming import env_name
from bot.sandbox import Seeded, fake_sha, push_image, sandbox_config
from tests.fake_github_rest import FakeGitHub
from tests.fake_slack import FakeSlack
from tests.slack_rig import SlackRig, start_rig
from tests.test_github_webhooks import (
    FIXTURES,
    FORK_BRANCH,
    FORK_OWNER,
    HEAD_SHA,
    REPO,
    fork_payload,
)

ENV = env_name("shop", "changes")
Make = Callable[..., SlackRig]


@pytest.fixture
def gh() -> Iterator[FakeGitHub]:
    fake = FakeGitHub()
    fake.branches[(REPO, "changes")] = HEAD_SHA
    fake.branches[("acme/shop-api", "main")] = fake_sha("apimain")
    fake.add_pull(REPO, 2, "changes", HEAD_SHA)
    fake.permissions[(REPO, "Codertocat")] = "write"
    yield fake
    fake.close()


@pytest.fixture
def make(
    seeded: Seeded, aws: AwsClients, admin: AwsClients, tmp_path: Path, gh: FakeGitHub
) -> Iterator[Make]:
    rigs: list[tuple[SlackRig, FakeSlack]] = []

    def make(
        environ: dict[str, str] | None = None, app: dict[str, object] | None = None
    ) -> SlackRig:
        config = sandbox_config(seeded, str(tmp_path / f"revieee-{len(rigs)}.db"))
        config["apps"]["shop"]["services"]["web"]["repository"] = REPO
        config["apps"]["shop"].update({"pull_requests": "label", "label": "bug", **(app or {})})
        if not rigs:  # a second rig of a test (another configuration) finds it there
            push_image(admin.ecr, "shop-web", f"changes-{HEAD_SHA[:7]}")
        env = environ or {"GITHUB_TOKEN": "ghp_test"}
        env = {**env, "REVIEEE_GITHUB_API_URL": gh.url}
        slack = FakeSlack()
        rig = start_rig(
            build(settings_from_mapping(config, environ={}), clients=aws, environ=env), slack
        )
        rigs.append((rig, slack))
        return rig

    yield make
    for rig, slack in rigs:
        rig.close()
        slack.close()


def comment(body: str, user: str = "Codertocat", number: int = 2) -> bytes:
    payload = copy.deepcopy(
        json.loads((FIXTURES / "issue_comment/created.payload.json").read_text())
    )
    payload["issue"]["number"] = number
    payload["issue"]["pull_request"] = {
        "url": f"https://api.github.com/repos/{REPO}/pulls/{number}"
    }
    payload["comment"]["body"] = body
    payload["comment"]["user"]["login"] = user
    payload["sender"]["login"] = user
    return json.dumps(payload).encode()


def comment_id() -> int:
    return int(
        json.loads((FIXTURES / "issue_comment/created.payload.json").read_text())["comment"]["id"]
    )


def outcome(rig: SlackRig) -> str:
    events = [e for e in rig.runtime.store.audit_events() if e["action"] == "github event"]
    return str(json.loads(events[-1]["detail"])["outcome"])


def test_a_comment_deploys_and_github_follows_the_deploy(make: Make, gh: FakeGitHub) -> None:
    rig = make()
    assert rig.github("issue_comment", comment("/revieee deploy")).status == 202
    rig.settle()
    assert outcome(rig).startswith("ran: deploy")
    assert rig.runtime.store.get_env(ENV)["status"] == "running"  # type: ignore[index]
    assert (comment_id(), "+1", REPO) in gh.reactions
    (dep,) = rig.runtime.store.deployments(ENV)
    assert (dep["sha"], dep["requested_by"], dep["source"]) == (HEAD_SHA, "Codertocat", "github")

    # one living comment: posted once, then edited in place
    gh.wait_for(lambda: any("Ready" in c["body"] for c in gh.comments.values()))
    assert len(gh.of("POST", r"/issues/2/comments$")) == 1
    assert len(gh.of("PATCH", r"/issues/comments/\d+$")) >= 1
    (living,) = gh.comments.values()
    assert f"<!-- revieee:{ENV} -->" in living["body"]
    assert f"https://{ENV}.review.example.test" in living["body"]
    assert rig.runtime.store.get_pull(REPO, 2)["comment_id"] == living["id"]  # type: ignore[index]

    # a deployment for the deploy, transient, whose statuses follow it
    (deployment,) = gh.deployments.values()
    assert deployment["environment"] == f"review/{ENV}"
    assert deployment["transient_environment"] is True
    assert deployment["production_environment"] is False
    assert deployment["ref"] == HEAD_SHA
    gh.wait_for(lambda: [s["state"] for s in gh.statuses[deployment["id"]]][-1:] == ["success"])
    states = [s["state"] for s in gh.statuses[deployment["id"]]]
    assert states == ["in_progress", "success"]
    assert (
        gh.statuses[deployment["id"]][-1]["environment_url"] == f"https://{ENV}.review.example.test"
    )

    # stop from the PR: the deployment goes inactive, the comment says so (still one comment)
    rig.github("issue_comment", comment("/revieee stop"))
    rig.settle()
    assert rig.runtime.store.get_env(ENV)["status"] == "stopped"  # type: ignore[index]
    gh.wait_for(lambda: gh.statuses[deployment["id"]][-1]["state"] == "inactive")
    gh.wait_for(lambda: "Stopped" in next(iter(gh.comments.values()))["body"])
    assert len(gh.comments) == 1
    assert all(c.token == "ghp_test" for c in gh.calls)


def latest_status(gh: FakeGitHub, deployment_id: int) -> str | None:
    """The newest status of a deployment, as GitHub lists them (``GET .../statuses``)."""
    request = urllib.request.Request(
        f"{gh.url}/repos/{REPO}/deployments/{deployment_id}/statuses",
        headers={"Authorization": "token ghp_test", "Accept": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        listed = json.loads(resp.read())
    return str(max(listed, key=lambda s: s["id"])["state"]) if listed else None


def test_a_redeploy_retires_the_deployment_it_replaces(
    make: Make, gh: FakeGitHub, admin: AwsClients
) -> None:
    """Transient deployments are never retired by GitHub's ``auto_inactive``: revieee marks the
    one a new commit replaces ``inactive`` itself (and a stop, the last one, once)."""
    rig = make()
    rig.github("issue_comment", comment("/revieee deploy"))
    rig.settle()
    (first,) = gh.deployments
    gh.wait_for(lambda: latest_status(gh, first) == "success")

    new_sha = "d" * 40
    push_image(admin.ecr, "shop-web", f"changes-{new_sha[:7]}")
    sync = json.loads((FIXTURES / "pull_request/synchronize.payload.json").read_text())
    sync["pull_request"]["head"]["sha"] = new_sha
    rig.github("pull_request", json.dumps(sync).encode())
    rig.settle()
    gh.wait_for(lambda: len(gh.deployments) == 2)
    second = max(gh.deployments)
    assert gh.deployments[second]["ref"] == new_sha
    gh.wait_for(lambda: latest_status(gh, second) == "success")
    assert latest_status(gh, first) == "inactive"
    assert [s["state"] for s in gh.statuses[first]] == ["in_progress", "success", "inactive"]
    assert gh.statuses[first][-1]["description"] == f"superseded by {second}"

    rig.github("issue_comment", comment("/revieee stop"))
    rig.settle()
    gh.wait_for(lambda: latest_status(gh, second) == "inactive")
    assert [s["state"] for s in gh.statuses[first]].count("inactive") == 1


def test_status_and_help_are_answered_in_the_pr(make: Make, gh: FakeGitHub) -> None:
    rig = make()
    rig.github("issue_comment", comment("/revieee help"))
    rig.settle()
    (reply,) = gh.comments.values()
    assert reply["body"].startswith("@Codertocat") and "deploy BRANCH" in reply["body"]
    rig.github("issue_comment", comment("/revieee frobnicate"))
    rig.settle()
    assert (comment_id(), "confused", REPO) in gh.reactions
    assert any("unknown command 'frobnicate'" in c["body"] for c in gh.comments.values())
    assert rig.runtime.store.operations() == []


def test_comment_commands_need_write_permission(make: Make, gh: FakeGitHub) -> None:
    rig = make()
    gh.permissions[(REPO, "mallory")] = "read"
    rig.github("issue_comment", comment("/revieee deploy", user="mallory"))
    rig.settle()
    assert outcome(rig) == "refused: mallory has read permission"
    assert (comment_id(), "-1", REPO) in gh.reactions
    (reply,) = gh.comments.values()
    assert "only people with write access" in reply["body"]
    assert rig.runtime.store.operations() == []
    refused = [e for e in rig.runtime.store.audit_events() if e["action"] == "refused"]
    assert refused and refused[0]["actor"] == "mallory"


def test_the_apps_lists_apply_to_comment_commands_as_to_slack(make: Make, gh: FakeGitHub) -> None:
    """One authorizer for every front door: write access lets a login reach revieee; then
    ``deployers`` and ``stoppers`` decide, naming GitHub logins as ``github:LOGIN``."""
    rig = make(app={"deployers": ["U0ALICE"], "stoppers": ["github:HUBOT"]})
    gh.permissions[(REPO, "hubot")] = "write"
    gh.permissions[(REPO, "mallory")] = "maintain"
    rig.github("issue_comment", comment("/revieee deploy"))
    rig.settle()
    assert outcome(rig) == "failed: deploy: not allowed: only U0ALICE (or an admin) may deploy shop"
    assert rig.runtime.store.operations() == []
    assert (comment_id(), "confused", REPO) in gh.reactions
    refused = [e for e in rig.runtime.store.audit_events() if e["action"] == "refused"]
    assert [(e["actor"], e["source"]) for e in refused] == [("Codertocat", "github")]
    rig.close()

    # the login listed (in any case) may deploy; a listed stopper may stop it, nobody else
    rig = make(app={"deployers": ["U0ALICE", "github:codertocat"], "stoppers": ["github:HUBOT"]})
    rig.github("issue_comment", comment("/revieee deploy"))
    rig.settle()
    assert outcome(rig).startswith("ran: deploy")
    assert rig.runtime.store.get_env(ENV)["owner"] == "Codertocat"  # type: ignore[index]
    rig.github("issue_comment", comment("/revieee stop", user="mallory"))
    rig.settle()
    assert outcome(rig) == (
        f"failed: stop: not allowed: only its owner (Codertocat) or an admin may stop {ENV}"
    )
    rig.github("issue_comment", comment("/revieee stop", user="hubot"))
    rig.settle()
    assert outcome(rig).startswith("ran: stop")
    assert rig.runtime.store.get_env(ENV)["status"] == "stopped"  # type: ignore[index]


def test_a_fork_pull_request_is_deployed_at_its_head_commit_by_a_maintainer_only(
    make: Make, gh: FakeGitHub, aws: AwsClients, admin: AwsClients
) -> None:
    """The replayed pull request #2, its head moved to the fork mallory/Hello-World: the base
    repository also has a branch ``changes`` (at HEAD_SHA), which must not be what is deployed."""
    rig = make()
    store = rig.runtime.store
    fork_sha, newer_sha = "9" * 40, "8" * 40
    fork_env = env_name("shop", FORK_BRANCH)
    assert fork_env != ENV
    gh.add_pull(REPO, 2, "changes", fork_sha, head_repo=f"{FORK_OWNER}/Hello-World")
    push_image(admin.ecr, "shop-web", f"mallory-changes-{fork_sha[:7]}")

    # opened: recorded for a maintainer, not deployed
    opened = fork_payload("pull_request/opened.payload.json", fork_sha)
    rig.github("pull_request", json.dumps(opened).encode())
    rig.settle()
    assert outcome(rig) == "ignored: pull requests from forks are never deployed automatically"
    assert store.operations() == []

    # a maintainer's `/revieee deploy`: the pull request's head, as that commit
    rig.github("issue_comment", comment("/revieee deploy"))
    rig.settle()
    assert outcome(rig).startswith(f"ran: deploy: queued deploy of {FORK_BRANCH} as {fork_env}")
    row = store.get_env(fork_env)
    assert row is not None and (row["status"], row["sha"]) == ("running", fork_sha), row
    (op,) = store.operations(env=fork_env)
    assert (op.params["sha"], op.params["sha_repository"]) == (fork_sha, REPO)
    (dep,) = store.deployments(fork_env)
    assert (dep["sha"], dep["requested_by"]) == (fork_sha, "Codertocat")
    images = {p["service"]: p for p in json.loads(dep["images"])}
    assert (images["web"]["tag"], images["web"]["fallback"]) == (
        f"mallory-changes-{fork_sha[:7]}",
        False,
    )
    api_main = fake_sha("apimain")
    assert (images["api"]["branch"], images["api"]["sha"], images["api"]["fallback"]) == (
        "main",
        api_main,
        True,
    )
    # GitHub was asked for one branch: the other repository's default; never the fork's label
    assert [c.path for c in gh.of("GET", r"/branches/")] == ["/repos/acme/shop-api/branches/main"]
    gh.wait_for(lambda: len(gh.deployments) == 1)
    (deployment,) = gh.deployments.values()
    assert (deployment["ref"], deployment["environment"]) == (fork_sha, f"review/{fork_env}")

    # the fork pushes: its new commit waits for a maintainer, the environment keeps its commit
    gh.add_pull(REPO, 2, "changes", newer_sha, head_repo=f"{FORK_OWNER}/Hello-World")
    sync = fork_payload("pull_request/synchronize.payload.json", newer_sha)
    rig.github("pull_request", json.dumps(sync).encode())
    rig.settle()
    assert outcome(rig) == (
        "ignored: a fork's new commits are not deployed automatically "
        "(8888888: a maintainer's `/revieee deploy` deploys it)"
    )
    assert len(store.operations(env=fork_env)) == 1
    assert store.get_env(fork_env)["sha"] == fork_sha  # type: ignore[index]
    assert store.get_pull(REPO, 2)["head_sha"] == newer_sha  # type: ignore[index]

    # ... until one asks again
    push_image(admin.ecr, "shop-web", f"mallory-changes-{newer_sha[:7]}")
    rig.github("issue_comment", comment("/revieee deploy"))
    rig.settle()
    assert [d["sha"] for d in store.deployments(fork_env)] == [newer_sha, fork_sha]
    assert not [b for b in gh.branch_lookups() if ":" in b or b == "changes"]


def test_a_fork_label_that_is_no_branch_needs_its_pull_request_or_a_sha(
    make: Make, gh: FakeGitHub
) -> None:
    """On another pull request, ``mallory:changes`` names no branch: refused, not deployed from
    the default branch under the fork's name."""
    rig = make()
    rig.github("issue_comment", comment(f"/revieee deploy {FORK_BRANCH}"))
    rig.settle()
    assert outcome(rig).startswith(f"usage error: '{FORK_BRANCH}' is not a branch name")
    assert (comment_id(), "confused", REPO) in gh.reactions
    assert rig.runtime.store.operations() == []
    assert gh.branch_lookups() == []


def test_slack_and_terminal_deploys_resolve_the_commit_through_github(
    make: Make, gh: FakeGitHub
) -> None:
    rig = make()
    rig.command("deploy changes")
    rig.wait_status(ENV, "running")
    assert rig.runtime.store.deployments(ENV)[0]["sha"] == HEAD_SHA
    asked = {c.path for c in gh.of("GET", r"/branches/")}
    assert f"/repos/{REPO}/branches/changes" in asked
    assert "/repos/acme/shop-api/branches/changes" in asked  # then its default branch
    assert "/repos/acme/shop-api/branches/main" in asked


def test_github_errors(make: Make, gh: FakeGitHub) -> None:
    rig = make()
    # 5xx: retried by the client, then it works
    gh.fail("GET", r"/collaborators/", 502, times=2)
    rig.github("issue_comment", comment("/revieee status"))
    rig.settle()
    # the permission check got through; the command ran (nothing is deployed yet)
    assert outcome(rig) == "failed: status: no environment named 'changes'; \"list\" shows them"
    assert len(gh.of("GET", r"/collaborators/Codertocat/permission")) == 3

    # a rate limit with a far reset: the delivery waits for the reset instead of a thread
    reset = gh.rate_limit("GET", r"/collaborators/", reset_in=3600, times=10)
    rig.github("issue_comment", comment("/revieee deploy"))
    rig.settle()
    (waiting,) = rig.runtime.store.inbox_items("pending")
    assert waiting["due_at"][:16] == datetime.fromtimestamp(reset, UTC).isoformat()[:16]
    assert "403" in waiting["error"]
    assert rig.runtime.store.operations() == []

    # 404 on the pull request: the delivery fails after its attempts, with the reason
    gh.faults.clear()
    rig.runtime.store.db.conn.execute(
        "update inbox set status = 'done' where id = ?", [waiting["id"]]
    )
    rig.github("issue_comment", comment("/revieee deploy", number=99))
    rig.settle()
    (retrying,) = rig.runtime.store.inbox_items("pending")
    assert "404" in retrying["error"]


def test_a_github_app_gets_installation_tokens(make: Make, gh: FakeGitHub) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    gh.app_id, gh.app_public_key, gh.tokens = "123456", public, set()
    gh.token_ttl = 22  # a token is "about to expire" (PyGithub: 20 s ahead) 2 s after issue
    rig = make({"GITHUB_APP_ID": "123456", "GITHUB_APP_PRIVATE_KEY": private})
    rig.github("issue_comment", comment("/revieee deploy"))
    rig.settle()
    assert rig.runtime.store.get_env(ENV)["status"] == "running"  # type: ignore[index]
    assert len(gh.of("GET", rf"/repos/{REPO}/installation$")) == 1
    assert gh.of("POST", r"/app/installations/4242/access_tokens")
    used = {
        c.token for c in gh.calls if "/app/" not in c.path and not c.path.endswith("/installation")
    }
    assert used and all(t.startswith("ghs_") for t in used)

    # installation tokens are refreshed before they expire
    first = len(gh.issued)
    time.sleep(2.5)
    rig.github("issue_comment", comment("/revieee status"))
    rig.settle()
    assert outcome(rig).startswith("ran: status")
    assert len(gh.issued) > first
    assert not [c for c in gh.calls if c.token.startswith("ghs_") and c.token not in gh.issued]


def test_the_bad_app_configuration_is_refused_at_start(tmp_path: Path) -> None:
    from bot.config import ConfigError, Secrets
    from bot.github.forge import GitHubForge

    with pytest.raises(ConfigError, match="GITHUB_APP_PRIVATE_KEY"):
        GitHubForge.from_secrets(Secrets.from_environ({"GITHUB_APP_ID": "1"}), None)
    with pytest.raises(ConfigError, match="must be a number"):
        GitHubForge.from_secrets(
            Secrets.from_environ({"GITHUB_APP_ID": "x", "GITHUB_APP_PRIVATE_KEY": "k"}), None
        )
    assert GitHubForge.from_secrets(Secrets.from_environ({}), None) is None


# -- the fake refuses what GitHub refuses ----------------------------------------------------------


def get(gh: FakeGitHub, path: str) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        gh.url + path, headers={"Authorization": "token ghp_test", "Accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


BRANCH_NOT_FOUND = {
    "message": "Branch not found",
    "documentation_url": "https://docs.github.com/rest/branches/branches#get-a-branch",
    "status": "404",
}


@pytest.mark.parametrize(
    "branch",
    [
        "mallory%3Achanges",  # a fork's head label, URL-encoded as PyGithub sends it
        "mallory:changes",
        "mallory%3achanges",
        "no-such-branch",
        "changes..x",
        "changes.lock",
    ],
)
def test_the_fake_answers_404_for_a_branch_github_cannot_have(gh: FakeGitHub, branch: str) -> None:
    # seeded all the same: git-check-ref-format forbids these names, so GitHub has none of them
    gh.branches[(REPO, "mallory:changes")] = HEAD_SHA
    gh.branches[(REPO, "changes..x")] = HEAD_SHA
    gh.branches[(REPO, "changes.lock")] = HEAD_SHA
    assert get(gh, f"/repos/{REPO}/branches/{branch}") == (404, BRANCH_NOT_FOUND)


def test_the_fake_compares_owner_and_repository_ignoring_case(gh: FakeGitHub) -> None:
    status, found = get(gh, "/repos/codertocat/HELLO-world/branches/changes")
    assert status == 200 and found["commit"]["sha"] == HEAD_SHA  # type: ignore[index]
    assert get(gh, "/repos/codertocat/hello-world/pulls/2")[1]["number"] == 2
    permission = get(gh, "/repos/CODERTOCAT/hello-world/collaborators/codertocat/permission")
    assert permission[1]["permission"] == "write"
    assert get(gh, f"/repos/{REPO}/branches/Changes")[0] == 404  # branch names are exact


def test_the_fake_retires_only_non_transient_deployments_on_success(gh: FakeGitHub) -> None:
    """GitHub's ``auto_inactive`` (default true): a ``success`` makes the environment's earlier
    successful deployments inactive, unless they are transient (or production)."""
    from github import Auth, Github, GithubException

    repo = Github(
        base_url=gh.url,
        auth=Auth.Token("ghp_test"),
        lazy=True,
        seconds_between_requests=0,
        seconds_between_writes=0,
    ).get_repo(REPO)

    def deploy(environment: str, transient: bool) -> Any:
        made = repo.create_deployment(
            ref="changes",
            environment=environment,
            transient_environment=transient,
            required_contexts=[],
        )
        made.create_status("success")
        return made

    kept, staged = deploy("review/x", transient=True), deploy("staging", transient=False)
    production = deploy("production", transient=False)
    deploy("review/x", transient=True)
    deploy("staging", transient=False)
    deploy("production", transient=False)
    assert [s.state for s in kept.get_statuses()] == ["success"]
    assert [s.state for s in staged.get_statuses()] == ["inactive", "success"]  # newest first
    assert [s.state for s in production.get_statuses()] == ["success"]

    # no auto_inactive, no retirement; a state GitHub does not know is refused
    later = repo.create_deployment(ref="changes", environment="qa", required_contexts=[])
    later.create_status("success")
    repo.create_deployment(ref="changes", environment="qa", required_contexts=[]).create_status(
        "success", auto_inactive=False
    )
    assert [s.state for s in later.get_statuses()] == ["success"]
    with pytest.raises(GithubException) as refused:
        later.create_status("done")
    assert refused.value.status == 422
    # a deployment is found under its own repository only (names compared ignoring case)
    assert get(gh, f"/repos/acme/other/deployments/{later.id}")[0] == 404
    assert get(gh, f"/repos/codertocat/hello-world/deployments/{later.id}")[0] == 200


def test_the_forge_never_asks_for_a_branch_git_forbids(gh: FakeGitHub) -> None:
    from bot.github.forge import GitHubForge

    forge = GitHubForge(gh.url, token="ghp_test", write_interval=0)
    assert forge.resolve(REPO, FORK_BRANCH) is None
    assert forge.resolve(REPO, "changes") == HEAD_SHA
    assert forge.resolve("codertocat/hello-world", "changes") == HEAD_SHA
    assert forge.resolve(REPO, "gone") is None
    assert gh.branch_lookups() == ["changes", "changes", "gone"]
    gh.add_pull(REPO, 9, "changes", "9" * 40, head_repo="Codertocat/HELLO-WORLD")
    gh.add_pull(REPO, 10, "changes", "a" * 40, head_repo=f"{FORK_OWNER}/Hello-World")
    assert forge.pull(REPO, 9).fork is False  # the same repository, spelt otherwise
    assert forge.pull(REPO, 10).fork is True


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("changes", True),
        ("feature/checkout", True),
        ("release-1.2_x", True),
        ("a@b", True),
        ("mallory:changes", False),
        ("a..b", False),
        ("with space", False),
        ("a~1", False),
        ("a^", False),
        ("what?", False),
        ("star*", False),
        ("a[b", False),
        ("back\\slash", False),
        ("a@{b", False),
        ("@", False),
        ("HEAD", False),
        ("-flag", False),
        ("dot.", False),
        ("x.lock", False),
        ("x/.hidden", False),
        ("/lead", False),
        ("trail/", False),
        ("a//b", False),
        ("tab\there", False),
        ("", False),
    ],
)
def test_branch_names_follow_git_check_ref_format(name: str, ok: bool) -> None:
    from bot.github.forge import is_branch_name

    assert is_branch_name(name) is ok


def test_a_pull_request_over_the_apps_quota_gets_a_comment_instead(
    make: Make, gh: FakeGitHub
) -> None:
    rig = make(app={"pull_requests": "all", "max_environments": 1})
    store = rig.runtime.store
    store.upsert_env(  # another pull request's environment, running
        "shop-other", app="shop", branch="other", status="running", owner="hubot",
        url="https://shop-other.review.example.test",
    )  # fmt: skip
    opened = json.loads((FIXTURES / "pull_request/opened.payload.json").read_text())
    assert rig.github("pull_request", json.dumps(opened).encode()).status == 202
    rig.settle()
    assert store.operations() == [] and store.get_env(ENV) is None
    gh.wait_for(lambda: bool(gh.comments))
    (reply,) = gh.comments.values()
    assert "shop has 1 environment(s) of shop running" in reply["body"]
    assert "shop-other (running)" in reply["body"]
    assert "Stop one of them (`/revieee stop ENV`)" in reply["body"]


def test_bad_lines_of_the_description_block_are_answered_once(make: Make, gh: FakeGitHub) -> None:
    rig = make(app={"pull_requests": "all"})
    opened = json.loads((FIXTURES / "pull_request/opened.payload.json").read_text())
    opened["pull_request"]["body"] = "```revieee\nFLAG=on\nnonsense here\n```"
    assert rig.github("pull_request", json.dumps(opened).encode()).status == 202
    rig.settle()
    env = rig.runtime.store.get_env(ENV)
    assert env is not None and env["status"] == "running" and '"FLAG"' in env["settings"]
    gh.wait_for(lambda: any("lines I skipped" in c["body"] for c in gh.comments.values()))
    sync = json.loads((FIXTURES / "pull_request/synchronize.payload.json").read_text())
    sync["pull_request"]["body"] = opened["pull_request"]["body"]
    rig.github("pull_request", json.dumps(sync).encode())
    rig.settle()
    skipped = [c for c in gh.comments.values() if "lines I skipped" in c["body"]]
    assert len(skipped) == 1  # not again on every push
    assert "'nonsense here' is not KEY=VALUE" in skipped[0]["body"]

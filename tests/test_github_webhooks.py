"""GitHub webhooks, end to end: the real payloads in ``../shared/fixtures/github-webhooks`` signed
with the webhook secret and sent over HTTP into the running server; their effects checked on the
store, on moto's ECS and in Slack. (Comment commands and reporting back to GitHub, which need
GitHub's REST API, are in ``test_github.py``.)"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import build
from bot.aws import AwsClients
from bot.config import settings_from_mapping
from bot.naming import env_name
from bot.sandbox import Seeded, push_image, sandbox_config
from tests.fake_slack import FakeSlack
from tests.slack_rig import SlackRig, start_rig

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "github-webhooks"
REPO = "Codertocat/Hello-World"  # the repository of the recorded payloads
HEAD_SHA = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
ENV = env_name("shop", "changes")  # the recorded pull request's head branch


def fixture(path: str) -> dict[str, Any]:
    return json.loads((FIXTURES / path).read_text())


def raw(path: str) -> bytes:
    return (FIXTURES / path).read_bytes()


FORK_OWNER = "mallory"
FORK_BRANCH = f"{FORK_OWNER}:changes"  # the recorded head, as GitHub labels it from a fork


def fork_payload(path: str, sha: str | None = None) -> dict[str, Any]:
    """A recorded ``pull_request`` payload, its head moved to the fork ``mallory/Hello-World``
    (and to commit ``sha``): the base, number, branch name and everything else as recorded."""
    payload = copy.deepcopy(fixture(path))
    head = payload["pull_request"]["head"]
    head["repo"] = head["repo"] | {
        "full_name": f"{FORK_OWNER}/Hello-World",
        "name": "Hello-World",
        "fork": True,
        "owner": head["repo"]["owner"] | {"login": FORK_OWNER},
    }
    head["label"] = FORK_BRANCH
    head["user"] = (head.get("user") or {}) | {"login": FORK_OWNER}
    if sha is not None:
        head["sha"] = sha
    assert payload["pull_request"]["base"]["repo"]["full_name"] == REPO
    return payload


@pytest.fixture
def rig(
    seeded: Seeded,
    aws: AwsClients,
    admin: AwsClients,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[SlackRig]:
    config = sandbox_config(seeded, str(tmp_path / "revieee.db"))
    web = config["apps"]["shop"]["services"]["web"]
    param = dict(getattr(request, "param", {"pull_requests": "label", "label": "bug"}))
    web["repository"] = param.pop("repository_case", REPO)
    app = config["apps"]["shop"]
    app.update(param)
    push_image(admin.ecr, "shop-web", f"changes-{HEAD_SHA[:7]}")
    push_image(admin.ecr, "shop-web", "master-6113728")
    fake = FakeSlack()
    settings = settings_from_mapping(config, environ={})
    rig = start_rig(build(settings, clients=aws, environ={}), fake)
    yield rig
    rig.close()
    fake.close()


def outcome(rig: SlackRig) -> str:
    events = [e for e in rig.runtime.store.audit_events() if e["action"] == "github event"]
    assert events, "the delivery was not handled"
    return str(json.loads(events[-1]["detail"])["outcome"])


def send(rig: SlackRig, path: str, delivery: str | None = None) -> dict[str, Any]:
    event = path.split("/")[0]
    resp = rig.github(event, raw(path), delivery=delivery)
    assert resp.status in (200, 202), resp.body
    rig.settle()
    return dict(resp.json())


# -- every recorded payload, replayed -------------------------------------------------------------

NOT_HANDLED = ["check_suite", "create", "deployment_status", "installation"]
IGNORED = {
    "delete/payload.json": "ignored: a deleted tag",
    "delete/with-installation.payload.json": "ignored: a deleted tag",
    "issue_comment/created.payload.json": "ignored: a comment on an issue, not a pull request",
    "issue_comment/created.1.payload.json": "ignored: a comment on an issue, not a pull request",
    "issue_comment/created.with-installation.payload.json": (
        "ignored: a comment on an issue, not a pull request"
    ),
    "issue_comment/deleted.payload.json": "ignored: comment deleted",
    "issue_comment/edited.payload.json": "ignored: comment edited",
    "push/payload.json": "ignored: refs/tags/simple-tag is not a branch",
    "push/1.payload.json": "ignored: refs/tags/simple-tag is not a branch",
    "push/with-installation.payload.json": "ignored: refs/tags/simple-tag is not a branch",
    **{
        f"workflow_run/{name}.json": "ignored: no app is built from octo-org/octo-repo"
        for name in (
            "completed.payload",
            "completed.with-pull-requests.payload",
            "requested.payload",
            "requested.with-conclusion.payload",
        )
    },
    "push/with-new-branch.payload.json": "ignored: no environment of master to update",
    "push/with-no-username-committer.payload.json": "ignored: no environment of master to update",
    "pull_request/closed.payload.json": f"ignored: {ENV} does not exist",
    "pull_request/unlabeled.payload.json": f"ignored: {ENV} is not running",
    "pull_request/converted_to_draft.payload.json": (
        "ignored: pull_request converted_to_draft does nothing"
    ),
    "pull_request/converted_to_draft.with-installation.payload.json": (
        "ignored: pull_request converted_to_draft does nothing"
    ),
    **{
        f"pull_request/{action}.payload.json": f"ignored: pull_request {action} does nothing"
        for action in (
            "assigned",
            "unassigned",
            "locked",
            "unlocked",
            "review_requested",
            "review_request_removed",
        )
    },
}
DEPLOYS = [
    "pull_request/opened.payload.json",
    "pull_request/opened.with-null-body.json",
    "pull_request/reopened.payload.json",
    "pull_request/ready_for_review.payload.json",
    "pull_request/ready_for_review.with-installation.payload.json",
    "pull_request/labeled.payload.json",
    "pull_request/synchronize.payload.json",
]


def test_the_replay_tables_cover_every_recorded_payload() -> None:
    recorded = {str(p.relative_to(FIXTURES)) for p in FIXTURES.glob("*/*.json")}
    covered = set(IGNORED) | set(DEPLOYS) | {"ping/payload.json", "ping/with-app_id.payload.json"}
    covered |= {p for p in recorded if p.split("/")[0] in NOT_HANDLED}
    assert recorded == covered, sorted(recorded ^ covered)


@pytest.mark.parametrize("path", sorted(IGNORED))
def test_recorded_payloads_that_change_nothing(rig: SlackRig, path: str) -> None:
    answer = send(rig, path)
    assert answer["queued"]
    assert outcome(rig) == IGNORED[path]
    assert rig.runtime.store.operations() == []


@pytest.mark.parametrize("event", NOT_HANDLED)
def test_events_revieee_does_not_use_are_acknowledged_and_ignored(
    rig: SlackRig, event: str
) -> None:
    for path in sorted((FIXTURES / event).glob("*.json")):
        resp = rig.github(event, path.read_bytes())
        assert resp.status == 202
        assert resp.json() == {"ok": True, "ignored": event}
    assert rig.runtime.store.inbox_items() == []


def test_a_finished_ci_run_is_recorded_for_deploys_waiting_on_its_image(rig: SlackRig) -> None:
    for name in ("requested.with-conclusion", "completed.with-pull-requests"):
        payload = fixture(f"workflow_run/{name}.payload.json")
        payload["repository"]["full_name"] = REPO  # a repository the app is built from
        resp = rig.github("workflow_run", payload)
        assert resp.status == 202
        rig.settle()
        if name.startswith("requested"):
            assert outcome(rig) == "ignored: workflow_run requested"
    assert outcome(rig) == "recorded CI run 289782451 of 3484a3f: success"
    (run,) = rig.runtime.store.ci_runs(REPO, "3484a3fb816e0859fd6e1cea078d76385ff50625")
    assert run["conclusion"] == "success"
    assert run["html_url"] == "https://github.com/octo-org/octo-repo/actions/runs/289782451"


def test_ping_is_answered_200(rig: SlackRig) -> None:
    for path in ("ping/payload.json", "ping/with-app_id.payload.json"):
        resp = rig.github("ping", raw(path))
        assert resp.status == 200
        assert resp.json()["pong"] == fixture(path)["zen"]


@pytest.mark.parametrize("path", DEPLOYS)
def test_recorded_payloads_that_deploy_the_pull_request(rig: SlackRig, path: str) -> None:
    send(rig, path)
    assert outcome(rig) == f"deploy {ENV}"
    row = rig.runtime.store.get_env(ENV)
    assert row is not None and row["status"] == "running", row
    (dep,) = rig.runtime.store.deployments(ENV)
    assert (dep["sha"], dep["source"], dep["requested_by"]) == (HEAD_SHA, "github", "Codertocat")
    pull = rig.runtime.store.get_pull(REPO, 2)
    assert pull is not None and pull["env"] == ENV and pull["author"] == "Codertocat"
    # the Slack message names the pull request and its author, in the app's channel
    (post,) = [c for c in rig.fake.of("chat.postMessage") if "thread_ts" not in c.args]
    assert post.args["channel"] == "#review-apps"
    shown = json.dumps(post.args["blocks"])
    assert "<https://github.com/Codertocat/Hello-World/pull/2|Codertocat/Hello-World#2>" in shown
    assert "by Codertocat" in shown


# -- the lifecycle, from recorded payloads ------------------------------------------------------


def test_open_push_close_stops_the_environment(rig: SlackRig, admin: AwsClients) -> None:
    send(rig, "pull_request/opened.payload.json")
    assert rig.runtime.store.get_env(ENV)["status"] == "running"  # type: ignore[index]

    # a push to the branch: the new commit is deployed once, though GitHub announces it twice
    push = fixture("push/with-new-branch.payload.json")
    push |= {"ref": "refs/heads/changes", "after": "f" * 40, "created": False}
    push_image(admin.ecr, "shop-web", "changes-fffffff")
    sync = fixture("pull_request/synchronize.payload.json")
    sync["pull_request"]["head"]["sha"] = "f" * 40
    rig.github("push", json.dumps(push).encode())
    rig.github("pull_request", json.dumps(sync).encode())
    rig.settle()
    deploys = rig.runtime.store.deployments(ENV)
    assert [d["sha"] for d in deploys] == ["f" * 40, HEAD_SHA]

    send(rig, "pull_request/closed.payload.json")
    assert outcome(rig) == f"stop {ENV}"
    assert rig.runtime.store.get_env(ENV)["status"] == "stopped"  # type: ignore[index]
    assert rig.runtime.store.get_pull(REPO, 2)["state"] == "closed"  # type: ignore[index]


def test_unlabeling_stops_and_labeling_deploys(rig: SlackRig) -> None:
    send(rig, "pull_request/labeled.payload.json")
    assert rig.runtime.store.get_env(ENV)["status"] == "running"  # type: ignore[index]
    send(rig, "pull_request/unlabeled.payload.json")
    assert outcome(rig) == f"stop {ENV}"
    assert rig.runtime.store.get_env(ENV)["status"] == "stopped"  # type: ignore[index]
    other = fixture("pull_request/labeled.payload.json")
    other["label"]["name"] = "documentation"
    rig.github("pull_request", json.dumps(other).encode())
    rig.settle()
    assert outcome(rig) == "ignored: label 'documentation' means nothing to shop"


def test_deleting_the_branch_stops_its_environment(rig: SlackRig) -> None:
    send(rig, "pull_request/opened.payload.json")
    deleted = fixture("delete/payload.json") | {"ref": "changes", "ref_type": "branch"}
    rig.github("delete", json.dumps(deleted).encode())
    rig.settle()
    assert outcome(rig) == f"stop {ENV}"
    assert rig.runtime.store.get_env(ENV)["status"] == "stopped"  # type: ignore[index]


@pytest.mark.parametrize(
    "rig", [{"pull_requests": "label", "label": "bug", "stop_after_close": "1h"}], indirect=True
)
def test_closing_waits_for_stop_after_close(rig: SlackRig) -> None:
    send(rig, "pull_request/opened.payload.json")
    send(rig, "pull_request/closed.payload.json")
    assert rig.runtime.store.get_env(ENV)["status"] == "running"  # type: ignore[index]
    (pending,) = rig.runtime.store.inbox_items("pending")
    assert pending["event"] == "stop-after-close"
    assert json.loads(pending["payload"])["env"] == ENV

    # reopened within the hour: the delayed stop keeps it
    send(rig, "pull_request/reopened.payload.json")
    rig.runtime.store.db.conn.execute(
        "update inbox set due_at = '2000-01-01T00:00:00+00:00' where id = ?", [pending["id"]]
    )
    rig.settle()
    assert outcome(rig) == f"kept {ENV}: its pull request was reopened"
    assert rig.runtime.store.get_env(ENV)["status"] == "running"  # type: ignore[index]


@pytest.mark.parametrize("rig", [{"pull_requests": "all"}, {"pull_requests": "off"}], indirect=True)
def test_the_policy_decides(rig: SlackRig) -> None:
    opened = fixture("pull_request/opened.payload.json")
    opened["pull_request"]["labels"] = []
    rig.github("pull_request", json.dumps(opened).encode())
    rig.settle()
    policy = rig.runtime.settings.apps["shop"].pull_requests
    if policy == "all":
        assert outcome(rig) == f"deploy {ENV}"
    else:
        assert outcome(rig) == "ignored: shop does not deploy pull requests by themselves"
        assert rig.runtime.store.operations() == []


def test_drafts_are_skipped_unless_configured(rig: SlackRig) -> None:
    draft = fixture("pull_request/opened.payload.json")
    draft["pull_request"]["draft"] = True
    rig.github("pull_request", json.dumps(draft).encode())
    rig.settle()
    assert outcome(rig) == "ignored: draft pull requests are not deployed"
    assert rig.runtime.store.operations() == []


@pytest.mark.parametrize(
    "rig", [{"pull_requests": "label", "label": "bug"}, {"pull_requests": "all"}], indirect=True
)
def test_pull_requests_from_forks_never_deploy_by_themselves(rig: SlackRig) -> None:
    """Not with the app's label, nor with a policy that deploys every pull request."""
    new_sha = "5" * 40
    actions = ["opened", "reopened", "ready_for_review", "synchronize"]
    if rig.runtime.settings.apps["shop"].pull_requests == "label":
        actions.insert(1, "labeled")
    for action in actions:
        sha = new_sha if action == "synchronize" else None
        payload = fork_payload(f"pull_request/{action}.payload.json", sha)
        rig.github("pull_request", json.dumps(payload).encode())
        rig.settle()
        assert "fork" in outcome(rig), (action, outcome(rig))
    assert rig.runtime.store.operations() == []
    assert rig.runtime.store.get_env(env_name("shop", FORK_BRANCH)) is None
    # recorded, so that a maintainer's `/revieee deploy` comment can deploy it; the new head too
    pull = rig.runtime.store.get_pull(REPO, 2)
    assert pull is not None and pull["fork"] == 1 and pull["branch"] == FORK_BRANCH
    assert pull["env"] == env_name("shop", FORK_BRANCH) != ENV
    assert pull["head_sha"] == new_sha
    assert outcome(rig) == (
        "ignored: a fork's new commits are not deployed automatically "
        "(5555555: a maintainer's `/revieee deploy` deploys it)"
    )


@pytest.mark.parametrize(
    "rig", [{"pull_requests": "all", "repository_case": "codertocat/HELLO-WORLD"}], indirect=True
)
def test_repository_names_are_compared_ignoring_case(rig: SlackRig) -> None:
    """The app spells the repository its own way; GitHub's names are case-insensitive. The same
    repository is no fork, and the head commit is the one deployed (not the newest image's)."""
    opened = fixture("pull_request/opened.payload.json")
    opened["pull_request"]["head"]["repo"]["full_name"] = REPO.upper()
    rig.github("pull_request", json.dumps(opened).encode())
    rig.settle()
    assert outcome(rig) == f"deploy {ENV}"
    (dep,) = rig.runtime.store.deployments(ENV)
    assert dep["sha"] == HEAD_SHA  # the full commit: an image found by its tag has 7 characters
    assert rig.runtime.store.get_pull(REPO, 2)["fork"] == 0  # type: ignore[index]


@pytest.mark.parametrize(
    "rig", [{"pull_requests": "all", "repository_case": "codertocat/HELLO-WORLD"}], indirect=True
)
def test_pushes_and_ci_runs_of_a_repository_spelt_otherwise_count(
    rig: SlackRig, admin: AwsClients
) -> None:
    """A push's commit is the one redeployed, and a CI run is found by the service's repository,
    though the recorded payloads say ``Codertocat/Hello-World`` and the app another case."""
    send(rig, "pull_request/opened.payload.json")
    new_sha = "e" * 40
    push_image(admin.ecr, "shop-web", f"changes-{new_sha[:7]}")
    push = fixture("push/with-new-branch.payload.json")
    assert push["repository"]["full_name"] == REPO
    push |= {"ref": "refs/heads/changes", "after": new_sha, "created": False}
    rig.github("push", json.dumps(push).encode())
    rig.settle()
    assert outcome(rig) == f"redeploy {ENV} at {new_sha[:7]}"
    assert [d["sha"] for d in rig.runtime.store.deployments(ENV)] == [new_sha, HEAD_SHA]

    run = fixture("workflow_run/completed.with-pull-requests.payload.json")
    run["repository"]["full_name"] = REPO
    rig.github("workflow_run", json.dumps(run).encode())
    rig.settle()
    sha = run["workflow_run"]["head_sha"]
    (recorded,) = rig.runtime.store.ci_runs("codertocat/HELLO-WORLD", sha)
    assert recorded["conclusion"] == "success"


# -- the endpoint ---------------------------------------------------------------------------------


def test_forged_missing_and_stale_signatures_get_401(rig: SlackRig) -> None:
    body = raw("pull_request/opened.payload.json")
    forged = rig.github("pull_request", body, secret="not-the-secret")
    unsigned = rig.request(
        "POST",
        "/github/webhook",
        body,
        {
            "X-GitHub-Event": "pull_request",
            "X-GitHub-Delivery": "x",
            "Content-Type": "application/json",
        },
    )
    sha1_only = rig.github("pull_request", body, headers={"X-Hub-Signature-256": ""})
    tampered_body = body.replace(b'"number": 2', b'"number": 3')
    assert tampered_body != body
    signed_for_other = rig.github(
        "pull_request",
        tampered_body,
        headers={"X-Hub-Signature-256": forged_header(body)},
    )
    for resp in (forged, unsigned, sha1_only, signed_for_other):
        assert resp.status == 401, resp.body
        assert resp.json()["error"] == "invalid signature"
    assert rig.runtime.store.inbox_items() == []


def forged_header(body: bytes) -> str:
    import hashlib
    import hmac

    from tests.slack_rig import WEBHOOK_SECRET

    return "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    ("body", "headers", "error"),
    [
        (b"{not json", {}, "malformed body"),
        (b"[]", {}, "malformed body"),
        (b"\xff", {}, "malformed body"),
        (b"{}", {"X-GitHub-Event": ""}, "missing X-GitHub-Event"),
        (b"{}", {"X-GitHub-Delivery": ""}, "missing X-GitHub-Delivery"),
    ],
)
def test_malformed_deliveries_get_400(
    rig: SlackRig, body: bytes, headers: dict[str, str], error: str
) -> None:
    resp = rig.github("pull_request", body, headers=headers)
    assert resp.status == 400
    assert resp.json()["error"] == error


def test_form_encoded_deliveries_are_read_too(rig: SlackRig) -> None:
    from urllib.parse import urlencode

    body = urlencode({"payload": raw("pull_request/opened.payload.json").decode()}).encode()
    resp = rig.github(
        "pull_request", body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert resp.status == 202
    rig.settle()
    assert outcome(rig) == f"deploy {ENV}"


def test_redeliveries_are_processed_once(rig: SlackRig) -> None:
    first = rig.github("pull_request", raw("pull_request/opened.payload.json"), delivery="abc-1")
    again = rig.github("pull_request", raw("pull_request/opened.payload.json"), delivery="abc-1")
    assert first.status == 202 and again.status == 200
    assert again.json() == {"ok": True, "duplicate": "abc-1"}
    rig.settle()
    assert len(rig.runtime.store.deployments(ENV)) == 1
    assert len(rig.runtime.store.inbox_items()) == 1


def test_a_delivery_survives_a_restart_before_it_ran(
    rig: SlackRig, seeded: Seeded, aws: AwsClients
) -> None:
    """Persisted before the 202: a process that stops before working on it loses nothing."""
    assert rig.serving.inbox is not None
    rig.serving.inbox.stop()  # the worker is gone; the endpoint still answers
    resp = rig.github("pull_request", raw("pull_request/opened.payload.json"))
    assert resp.status == 202
    (item,) = rig.runtime.store.inbox_items("pending")
    rig.runtime.store.db.conn.execute(
        "update inbox set status = 'running' where id = ?", [item["id"]]
    )
    # a new process: recovers the item and runs it
    from bot.inbox import InboxWorker

    worker = InboxWorker(rig.runtime.store, lambda _s, e, p: rig_events(rig).handle(e, p))
    worker.start()
    try:
        rig.settle()
    finally:
        worker.stop()
    assert rig.runtime.store.inbox_items()[0]["status"] == "done"
    assert rig.runtime.store.get_env(ENV)["status"] == "running"  # type: ignore[index]


def rig_events(rig: SlackRig) -> Any:
    from bot.github.events import GitHubEvents

    rt = rig.runtime
    return GitHubEvents(rt.settings, rt.store, rt.core, rt.forge)

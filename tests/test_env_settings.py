"""Per-environment settings: ``deploy BRANCH --set KEY=VALUE`` / ``--unset KEY`` from Slack,
and a pull request description's fenced ``revieee`` block: stored with the environment, put in
every service's task definition over the configured variables, kept across redeploys, shown in
``status`` and the PR comment (escaped), secrets refused with a clear reason and nothing queued."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot import envsettings
from bot.app import build
from bot.aws import AwsClients
from bot.config import SECRET_KEYS, settings_from_mapping
from bot.events import Phase
from bot.github.comment import pr_comment
from bot.naming import env_name, task_family
from bot.phases import view_of
from bot.sandbox import Seeded, push_image, sandbox_config
from bot.store import Store
from tests.conftest import MakeRig
from tests.fake_slack import FakeSlack
from tests.slack_rig import SlackRig, start_rig

BRANCH = "feature/checkout"
ENV = env_name("shop", BRANCH)
FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "github-webhooks"
PR_REPO = "Codertocat/Hello-World"  # the recorded pull request's repository
PR_SHA = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
PR_ENV = env_name("shop", "changes")


# -- the rules, table-driven --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("STRIPE_SECRET", "x", "matches *SECRET*"),
        ("github_token", "x", "matches *TOKEN*"),
        ("DB_PASSWORD", "x", "matches *PASSWORD*"),
        ("AWS_ACCESS_KEY", "x", "matches *_KEY"),
        ("UPSTREAM", "https://bob:hunter2@api.example.com/", "a password in a URL"),
        ("HELPER", "ghp_" + "a" * 36, "a GitHub token"),
        ("NOTIFY", "xoxb-1234-5678-abcdefgh", "a Slack token"),
        ("ID", "AKIAABCDEFGHIJKLMNOP", "an AWS access key"),
        ("CERT", "-----BEGIN RSA PRIVATE KEY-----", "a private key"),
        ("REVIEEE_ENV", "x", "revieee's own"),
        ("2FAST", "x", "not an environment variable name"),
        ("A-B", "x", "not an environment variable name"),
        ("LONG", "x" * 1025, "at most 1024"),
        ("LINES", "a\nb", "line break"),
    ],
)
def test_what_a_setting_may_not_be(key: str, value: str, problem: str) -> None:
    with pytest.raises(envsettings.SettingError, match=problem.replace("*", r"\*")):
        envsettings.check(key, value, SECRET_KEYS)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("FEATURE_FLAGS", "checkout-v2,new-cart"),
        ("API_URL", "https://api.example.com/v2"),  # no password in it
        ("KEYBOARD_LAYOUT", "de"),  # *_KEY matches a suffix only
        ("GREETING", "<!channel> *hi* @everyone"),  # taken as written, escaped where shown
        ("EMPTY", ""),
    ],
)
def test_what_a_setting_may_be(key: str, value: str) -> None:
    envsettings.check(key, value, SECRET_KEYS)


def test_the_description_block_and_what_changes() -> None:
    body = (
        "Adds the new checkout.\r\n\r\n```revieee\r\n# flags for this PR\r\nCHECKOUT_V2=on\r\n"
        "GREETING=hello = world\r\nnot a setting\r\n```\r\n\r\n```revieee\r\nIGNORED=1\r\n```\r\n"
    )
    block, problems = envsettings.block_of(body)
    assert block == {"CHECKOUT_V2": "on", "GREETING": "hello = world"}
    assert problems == ["'not a setting' is not KEY=VALUE"]
    assert envsettings.block_of("no block here") == (None, [])
    assert envsettings.block_of("~~~ revieee\nA=1\n~~~\n")[0] == {"A": "1"}
    assert envsettings.block_of(None) == (None, [])

    current, said = envsettings.change(
        {}, SECRET_KEYS, set_={"LOG_LEVEL": "debug"}, source="slack", by="U0ALICE"
    )
    assert said == ["set LOG_LEVEL"]
    current, said = envsettings.change(current, SECRET_KEYS, block=block, source="github")
    assert sorted(current) == ["CHECKOUT_V2", "GREETING", "LOG_LEVEL"]
    assert current["CHECKOUT_V2"].source == envsettings.PULL_REQUEST
    # the block is the whole of the pull request's settings: a key it no longer has goes,
    # what chat set stays
    current, said = envsettings.change(current, SECRET_KEYS, block={"GREETING": "hi"}, source="x")
    assert said == ["unset CHECKOUT_V2", "set GREETING"]
    assert sorted(current) == ["GREETING", "LOG_LEVEL"]
    # one bad key refuses the whole change
    with pytest.raises(envsettings.SettingError):
        envsettings.change(current, SECRET_KEYS, set_={"OK": "1", "MY_TOKEN": "2"}, source="x")
    with pytest.raises(envsettings.SettingError, match="at most 50"):
        envsettings.change({}, SECRET_KEYS, set_={f"K{i}": "v" for i in range(51)}, source="x")


# -- from Slack to the task definitions ---------------------------------------------------------


def variables(admin: AwsClients, service: str) -> dict[str, str]:
    td = admin.ecs.describe_task_definition(taskDefinition=task_family(ENV, service))
    return {
        e["name"]: e["value"]
        for e in td["taskDefinition"]["containerDefinitions"][0]["environment"]
    }


def deploy(rig: SlackRig, text: str) -> tuple[str, dict[str, Any]]:
    resp = rig.command(text)
    assert resp.status == 200, resp.body
    return resp.json()["text"], rig.wait_status(ENV, "running", "failed", timeout=30)


def test_settings_from_slack_reach_every_service_and_last_until_unset(
    make_rig: MakeRig, admin: AwsClients
) -> None:
    rig = make_rig()
    said, env = deploy(
        rig,
        f'deploy {BRANCH} --set LOG_LEVEL=debug --set "GREETING=<!channel> *hi*" --set FLAG=on',
    )
    assert env["status"] == "running", env["error"]
    assert "its settings: set LOG_LEVEL, set GREETING, set FLAG" in said
    for service in ("web", "api"):
        found = variables(admin, service)
        assert found["GREETING"] == "<!channel> *hi*"  # the value as written, for the app
        assert found["LOG_LEVEL"] == "debug"  # over the template's LOG_LEVEL=info
        assert found["REVIEEE_ENV"] == ENV

    # a redeploy without --set keeps them; --unset removes one
    deploy(rig, f"deploy {BRANCH}")
    assert variables(admin, "web")["FLAG"] == "on"
    _, env = deploy(rig, f"deploy {BRANCH} --unset FLAG --unset NEVER_SET")
    assert "FLAG" not in variables(admin, "web")
    assert variables(admin, "web")["LOG_LEVEL"] == "debug"

    # status shows them, and Slack gets them escaped: no channel ping, no bold
    resp = rig.command(f"status {ENV}")
    shown = resp.json()["text"]
    assert "GREETING=&lt;!channel&gt; *hi*" in shown and "<!channel>" not in shown
    assert "```" in shown  # the multi-line answer is a code block: *hi* is not bold
    assert "(from slack by U0ALICE)" in shown
    audit = [e for e in rig.runtime.store.audit_events(ENV) if e["action"] == "settings changed"]
    assert len(audit) == 2 and "debug" not in json.dumps(audit)  # keys, not values


def test_a_secret_is_refused_in_chat_and_nothing_is_queued(make_rig: MakeRig) -> None:
    rig = make_rig()
    resp = rig.command(f"deploy {BRANCH} --set FLAG=on --set STRIPE_SECRET_KEY=sk_live_123")
    assert resp.status == 200
    text = resp.json()["text"]
    assert "not deployed: STRIPE_SECRET_KEY looks like a secret" in text
    assert "Secrets Manager" in text
    assert "sk_live_123" not in text  # the value is not repeated
    assert rig.runtime.store.operations() == []
    assert rig.runtime.store.get_env(ENV) is None
    bad = rig.command(f"deploy {BRANCH} --set FLAG")
    assert "--set takes KEY=VALUE" in bad.json()["text"]


# -- from a pull request's description ----------------------------------------------------------


def fixture(path: str) -> dict[str, Any]:
    return copy.deepcopy(json.loads((FIXTURES / path).read_text()))


@pytest.fixture
def pr_rig(
    seeded: Seeded, aws: AwsClients, admin: AwsClients, fake: FakeSlack, tmp_path: Path
) -> Iterator[SlackRig]:
    """The web service built from the recorded pull request's repository, every pull
    request deployed."""
    config = sandbox_config(seeded, str(tmp_path / "revieee.db"))
    config["apps"]["shop"]["services"]["web"]["repository"] = PR_REPO
    config["apps"]["shop"]["pull_requests"] = "all"
    push_image(admin.ecr, "shop-web", f"changes-{PR_SHA[:7]}")
    push_image(admin.ecr, "shop-web", "master-6113728")
    rig = start_rig(build(settings_from_mapping(config, environ={}), clients=aws, environ={}), fake)
    yield rig
    rig.close()


def with_body(action: str, body: str | None) -> dict[str, Any]:
    payload = fixture(f"pull_request/{action}.payload.json")
    payload["pull_request"]["body"] = body
    return payload


def deliver(rig: SlackRig, payload: dict[str, Any]) -> None:
    resp = rig.github("pull_request", json.dumps(payload).encode())
    assert resp.status in (200, 202), resp.body
    rig.settle(timeout=30)


def pr_settings(store: Store) -> dict[str, tuple[str, str]]:
    row = store.get_env(PR_ENV) or {}
    return {k: (s.value, s.source) for k, s in envsettings.load(row.get("settings")).items()}


def pr_variables(admin: AwsClients) -> dict[str, str]:
    td = admin.ecs.describe_task_definition(taskDefinition=task_family(PR_ENV, "web"))
    return {
        e["name"]: e["value"]
        for e in td["taskDefinition"]["containerDefinitions"][0]["environment"]
    }


BODY = "Checkout v2.\n\n```revieee\nCHECKOUT_V2=on\nBANNER=@everyone look | here\n```\n"


def test_a_description_block_sets_the_environment_and_an_edit_redeploys(
    pr_rig: SlackRig, admin: AwsClients
) -> None:
    store = pr_rig.runtime.store
    deliver(pr_rig, with_body("opened", BODY))
    assert store.get_env(PR_ENV)["status"] == "running"  # type: ignore[index]
    assert pr_settings(store) == {
        "CHECKOUT_V2": ("on", "pull request"),
        "BANNER": ("@everyone look | here", "pull request"),
    }
    assert pr_variables(admin)["CHECKOUT_V2"] == "on"

    # the PR comment shows them, escaped: no mention, no broken table
    [op] = store.operations(env=PR_ENV)
    view = view_of(store, pr_rig.runtime.settings, op, Phase.READY, datetime.now(UTC))
    comment = pr_comment(view)
    row = next(line for line in comment.splitlines() if line.startswith("| **Settings**"))
    assert "`CHECKOUT_V2=on`" in row and "`BANNER=@everyone look \\| here`" in row
    assert row.count(" | ") == 1  # the escaped pipe ends no cell

    # an edit that changes the block redeploys with it; a key it dropped is unset
    edited = with_body("opened", "```revieee\nCHECKOUT_V2=off\n```")
    edited["action"] = "edited"
    edited["changes"] = {"body": {"from": BODY}}  # (GitHub's edited payload: what it was)
    deliver(pr_rig, edited)
    assert pr_settings(store) == {"CHECKOUT_V2": ("off", "pull request")}
    assert pr_variables(admin)["CHECKOUT_V2"] == "off" and "BANNER" not in pr_variables(admin)
    assert len(store.deployments(PR_ENV)) == 2

    # an edit of the title only, or one that leaves the block as it is, deploys nothing
    edited["changes"] = {"title": {"from": "Update the README"}}
    deliver(pr_rig, edited)
    edited["changes"] = {"body": {"from": "something else"}}
    deliver(pr_rig, edited)
    assert len(store.deployments(PR_ENV)) == 2


def test_a_secret_in_the_description_deploys_nothing(pr_rig: SlackRig) -> None:
    deliver(pr_rig, with_body("opened", "```revieee\nSENTRY_TOKEN=abc123\n```"))
    store = pr_rig.runtime.store
    assert store.operations(env=PR_ENV) == []
    row = store.get_env(PR_ENV)
    assert row is None or not row.get("settings")


def test_a_forks_description_configures_nothing(pr_rig: SlackRig) -> None:
    payload = with_body("opened", "```revieee\nNODE_OPTIONS=--require /tmp/evil.js\n```")
    head = payload["pull_request"]["head"]
    head["repo"] = head["repo"] | {"full_name": "mallory/Hello-World", "fork": True}
    assert envsettings.block_of(payload["pull_request"]["body"])[0]  # there is a block
    deliver(pr_rig, payload)  # (a fork's pull request is not deployed by itself either)
    pull = pr_rig.runtime.store.get_pull(PR_REPO, 2)
    assert pull is not None and pull["fork"] == 1
    assert all(
        not (r.get("settings")) for r in pr_rig.runtime.store.list_envs(include_stopped=True)
    )

"""How many environments an app, and one person, may have (``max_environments``,
``max_environments_per_person``): a new one over the limit is refused before anything is
queued, with the requester's (or the app's) oldest environments and a Stop button for each;
redeploys of existing environments, admins and the terminal are never refused."""

from __future__ import annotations

import json
from typing import Any

from bot.authz import Caller
from bot.aws import AwsClients
from bot.naming import env_name
from bot.sandbox import fake_sha, push_image
from bot.slack.blocks import ACTION_STOP
from commands.parser import parse
from commands.run import run
from tests.conftest import MakeRig
from tests.slack_rig import SlackRig

FIRST = "feature/checkout"  # web has an image for it; api falls back to main
SECOND = "main"


def deploy(rig: SlackRig, branch: str, user: str = "U0ALICE") -> dict[str, Any]:
    resp = rig.command(f"deploy {branch}", user=user)
    assert resp.status == 200, resp.body
    return dict(resp.json())


def test_one_person_over_their_share_gets_their_oldest_with_stop_buttons(
    make_rig: MakeRig,
) -> None:
    rig = make_rig(app={"max_environments_per_person": 1})
    deploy(rig, FIRST)
    first = rig.wait_status(env_name("shop", FIRST), "running")
    answer = deploy(rig, SECOND)
    assert "you have 1 environment(s) of shop running" in answer["text"]
    assert "max_environments_per_person = 1" in answer["text"]
    blocks = answer["blocks"]
    [stop] = [b["accessory"] for b in blocks if b.get("accessory")]
    assert (stop["action_id"], stop["value"]) == (ACTION_STOP, first["name"])
    assert "confirm" in stop  # a stop asks first, as everywhere
    assert rig.runtime.store.get_env(env_name("shop", SECOND)) is None  # nothing queued
    assert [o.env for o in rig.runtime.store.operations()] == [first["name"]]

    # a redeploy of the one she has is no new environment; another person has a share too
    deploy(rig, FIRST)
    assert rig.wait_status(first["name"], "running")["error"] is None
    deploy(rig, SECOND, user="U0BOB")
    rig.wait_status(env_name("shop", SECOND), "running")

    # the button stops it (as the Stop button of its message does), then there is room
    assert rig.action(ACTION_STOP, first["name"]).status == 200
    rig.wait_status(first["name"], "stopped")
    rig.command(f"stop {env_name('shop', SECOND)}", user="U0BOB")
    rig.wait_status(env_name("shop", SECOND), "stopped")
    assert "blocks" not in deploy(rig, SECOND)
    assert rig.wait_status(env_name("shop", SECOND), "running")["owner"] == "U0ALICE"


def test_the_apps_limit_counts_everyones_and_admins_are_exempt(
    make_rig: MakeRig, admin: AwsClients
) -> None:
    rig = make_rig(app={"max_environments": 1}, admins=["U0ADMIN"])
    deploy(rig, FIRST)
    rig.wait_status(env_name("shop", FIRST), "running")
    answer = deploy(rig, SECOND, user="U0BOB")
    assert (
        "shop has 1 environment(s) of shop running, the most it may have (max_environments = 1)"
        in answer["text"]
    )
    assert json.dumps(answer["blocks"]).count(ACTION_STOP) == 1
    assert rig.runtime.store.get_env(env_name("shop", SECOND)) is None
    deploy(rig, SECOND, user="U0ADMIN")  # admins are exempt
    rig.wait_status(env_name("shop", SECOND), "running")
    # the terminal too (whoever runs it holds the AWS credentials)
    branch = "feature/cli"
    for repo in ("shop-web", "shop-api"):
        push_image(admin.ecr, repo, f"feature-cli-{fake_sha(branch)[:7]}")
    cmd = parse(f"deploy {branch} --sha {fake_sha(branch)}")
    reply = run(cmd, rig.runtime.core, Caller("me", "cli"))
    assert reply.ok, reply.text


def test_deploys_at_once_cannot_both_take_the_last_place(make_rig: MakeRig) -> None:
    """Eight deploys of new environments by one person at the same moment (Slack and GitHub
    requests are served on threads of their own): with room for two, two are let in. Three
    people in turn, each a race of its own (without the lock, one in three lets in all eight)."""
    import threading

    from bot.core import OverQuota

    rig = make_rig(app={"max_environments_per_person": 2})

    def race(who: str) -> tuple[list[str], list[str]]:
        start = threading.Barrier(8)
        accepted: list[str] = []
        refused: list[str] = []

        def one(n: int) -> None:
            start.wait()
            try:
                accepted.append(
                    rig.runtime.core.intake.request_deploy(f"{who}-{n}", requested_by=who).env
                )
            except OverQuota:
                refused.append(str(n))

        threads = [threading.Thread(target=one, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        return accepted, refused

    for person in ("U0ALICE", "U0BOB", "U0CAROL"):
        accepted, refused = race(person)
        assert (len(accepted), len(refused)) == (2, 6), (person, accepted)
        assert rig.runtime.store.count_envs(app="shop", owner=person) == 2

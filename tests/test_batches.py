"""The evening's sleep and the morning's wake of many environments: one batch, one summary per
channel (posted when it starts, edited as it goes, final once), one edit of each environment's
message, their ``UpdateService`` calls paced; over the real Slack HTTP path, on the strict AWS
layer (tasks take their simulated start time, ECS throttles writes)."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.aws import AwsClients, Pace, pace_ecs_writes
from bot.naming import ecs_service_name, env_name, image_tag_part
from bot.sandbox import StrictSandbox, fake_sha, push_image
from bot.slack.batch import DONE, FAILED, SKIPPED, UNDER_WAY, Item, batch_message
from tests.conftest import MakeRig
from tests.fake_slack import FakeSlack
from tests.slack_rig import CHANNEL, SlackRig
from tests.test_slack_blocks import within_limits

OTHER = "C0OTHER01"
SLEEPY = {"sleep": True, "work_hours": "09:00-18:00", "timezone": "Europe/Berlin"}


def _deploy(rig: SlackRig, admin: AwsClients, branch: str, channel: str = CHANNEL) -> str:
    for repo in ("shop-web", "shop-api"):
        push_image(admin.ecr, repo, f"{image_tag_part(branch)}-{fake_sha(branch)[:7]}")
    assert rig.command(f"deploy {branch}", channel=channel).status == 200
    env = env_name("shop", branch)
    row = rig.wait_status(env, "running", "failed")
    assert row["status"] == "running", row["error"]
    return env


def _summaries(fake: FakeSlack, kind: str) -> list[Any]:
    word = "Evening sleep" if kind == "sleep" else "Morning wake"
    return [
        c
        for c in fake.calls
        if c.method in ("chat.postMessage", "chat.update")
        and str(c.args.get("text", "")).startswith(word)
    ]


def _wait(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _settled(rig: SlackRig, batch: int) -> None:
    store = rig.runtime.store
    _wait(lambda: (store.get_batch(batch) or {}).get("finished_at") is not None)
    rig.drain()


def test_the_evening_sleep_says_it_once_per_channel_and_edits_each_message_once(
    make_rig: MakeRig, fake: FakeSlack, admin: AwsClients
) -> None:
    rig = make_rig(**SLEEPY)
    here = [_deploy(rig, admin, f"feature/a{i}") for i in range(3)]
    there = _deploy(rig, admin, "feature/elsewhere", channel=OTHER)
    rig.drain()
    before = len(fake.calls)
    messages = {env: rig.deploy_message(env) for env in [*here, there]}

    assert sorted(rig.serving.lifecycle.sleep()) == sorted([*here, there])
    (batch,) = {op.batch for op in rig.runtime.store.operations(status=None) if op.kind == "sleep"}
    assert batch is not None
    _settled(rig, batch)

    calls = fake.calls[before:]
    posts = [c for c in calls if c.method == "chat.postMessage"]
    # no thread reply, no new message per environment: the two summaries only
    assert sorted(c.args["channel"] for c in posts) == sorted([CHANNEL, OTHER])
    assert all(str(c.args["text"]).startswith("Evening sleep") for c in posts)
    finals = {c.args["channel"]: c.args for c in _summaries(fake, "sleep")}
    assert finals[CHANNEL]["text"] == "Evening sleep: 3 environment(s): 3 asleep"
    assert finals[OTHER]["text"] == "Evening sleep: 1 environment(s): 1 asleep"
    within_limits(finals[CHANNEL]["blocks"])
    shown = json.dumps(finals[CHANNEL]["blocks"])
    assert all(env in shown for env in here) and there not in shown
    # each environment's own message: edited once, to Sleeping
    for env, ref in messages.items():
        edits = [c for c in calls if c.method == "chat.update" and c.args.get("ts") == ref["ts"]]
        assert len(edits) == 1, (env, [e.args["text"] for e in edits])
        assert "Sleeping" in edits[0].args["text"]
    for env in [*here, there]:
        svc = ecs_service_name(env, "web")
        (desc,) = admin.ecs.describe_services(cluster="revieee-sandbox", services=[svc])["services"]
        assert desc["desiredCount"] == 0

    # the morning: the same, woken; the summary names each environment with its link
    before = len(fake.calls)
    assert sorted(rig.serving.lifecycle.wake()) == sorted([*here, there])
    wakes = {op.batch for op in rig.runtime.store.operations() if op.kind == "wake"}
    (morning,) = wakes
    _settled(rig, morning)
    finals = {c.args["channel"]: c.args for c in _summaries(fake, "wake")[-2:]}
    assert finals[CHANNEL]["text"] == "Morning wake: 3 environment(s): 3 ready"
    assert "Running again" in json.dumps(finals[CHANNEL]["blocks"])
    assert not [c for c in fake.calls[before:] if c.args.get("thread_ts")]
    assert all(rig.runtime.store.get_env(e)["status"] == "running" for e in [*here, there])


def test_a_wake_that_fails_is_named_with_its_reason_and_the_rest_are_ready(
    make_rig: MakeRig, fake: FakeSlack, admin: AwsClients
) -> None:
    rig = make_rig(**SLEEPY)
    envs = [_deploy(rig, admin, f"feature/w{i}") for i in range(2)]
    rig.serving.lifecycle.sleep()
    for env in envs:
        rig.wait_status(env, "sleeping")
    broken = envs[0]
    # deleted outside revieee while it slept: the wake cannot scale it
    admin.ecs.delete_service(
        cluster="revieee-sandbox", service=ecs_service_name(broken, "web"), force=True
    )
    rig.serving.lifecycle.wake()
    (batch,) = {op.batch for op in rig.runtime.store.operations() if op.kind == "wake"}
    _settled(rig, batch)
    final = _summaries(fake, "wake")[-1].args
    assert final["text"] == "Morning wake: 2 environment(s): 1 ready, 1 failed"
    shown = json.dumps(final["blocks"])
    assert broken in shown and ":x:" in shown
    assert rig.runtime.store.get_env(broken)["status"] == "failed"
    # the failure's reason is in the environment's own thread, for its owner
    ref = rig.deploy_message(broken)
    replies = [c for c in fake.of("chat.postMessage") if c.args.get("thread_ts") == ref["ts"]]
    assert replies and "failed" in replies[-1].args["text"].lower()


def test_a_batch_summary_is_edited_while_it_goes_and_finished_once(
    make_rig: MakeRig, fake: FakeSlack, admin: AwsClients
) -> None:
    rig = make_rig(**SLEEPY)
    env = _deploy(rig, admin, "feature/one")
    rig.drain()
    store = rig.runtime.store
    rig.serving.lifecycle.sleep()
    (batch,) = {op.batch for op in store.operations() if op.kind == "sleep"}
    _settled(rig, batch)
    said = len(_summaries(fake, "sleep"))
    # a late nudge (the expire job's) says nothing more once it is final
    rig.serving.lifecycle.expire()
    rig.drain()
    assert len(_summaries(fake, "sleep")) == said
    assert store.get_env(env)["status"] == "sleeping"


def test_the_summary_fits_slacks_limits_with_many_environments_and_escapes_their_text() -> None:
    now = datetime(2026, 12, 4, 8, 1, tzinfo=UTC)
    items = [Item(f"shop-env-{i}", f"https://shop-env-{i}.example", DONE, None) for i in range(300)]
    items += [Item(f"shop-bad-{i}", None, FAILED, "<!channel> *boom* " * 40) for i in range(30)]
    items += [Item("shop-skip", None, SKIPPED, None), Item("shop-busy", None, UNDER_WAY, None)]
    text, blocks = batch_message("wake", items, now - timedelta(seconds=75), now, False)
    assert text == (
        "Morning wake: 332 environment(s): 300 ready, 30 failed, "
        "1 skipped (changed meanwhile), 1 waking up"
    )
    within_limits(blocks)
    dumped = json.dumps(blocks)
    assert "<!channel>" not in dumped and "&lt;!channel&gt;" in dumped
    assert "(for 1m 15s so far)" in blocks[0]["text"]["text"]
    assert "more failed: `list` shows them" in dumped
    named = [i.env for i in items if i.outcome == FAILED and f"`{i.env}`" in dumped]
    assert 5 <= len(named) <= 20 and named == [f"shop-bad-{n}" for n in range(len(named))]
    assert f"and {30 - len(named)} more failed" in dumped
    assert "and 240 more" in dumped


def test_ecs_writes_are_paced_across_threads() -> None:
    clock = [0.0]
    slept: list[float] = []
    lock = threading.Lock()

    def sleep(seconds: float) -> None:
        with lock:
            slept.append(seconds)
            clock[0] += seconds

    pace = Pace(5, clock=lambda: clock[0], sleep=sleep, burst=20)
    for _ in range(20):
        pace.wait()
    assert slept == []  # the burst goes at once
    for _ in range(10):
        pace.wait()
    assert sum(slept) == pytest.approx(2.0)  # then 5 a second


def test_only_ecs_writes_wait_for_the_pace(moto_server: StrictSandbox) -> None:
    clients = moto_server.admin_clients()
    pace = pace_ecs_writes(clients, 5)
    full = pace._tokens
    (cluster,) = clients.ecs.describe_clusters(clusters=["revieee-sandbox"])["clusters"]
    clients.ecs.list_services(cluster="revieee-sandbox")
    assert pace._tokens == full  # reads do not take a turn
    clients.ecs.tag_resource(
        resourceArn=cluster["clusterArn"], tags=[{"key": "revieee:paced", "value": "yes"}]
    )
    assert pace._tokens == pytest.approx(full - 1, abs=0.1)  # a write does

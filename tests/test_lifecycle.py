"""The lifecycle: reminders for forgotten environments, keep and pin, expiry and the automatic
stop, sleep hours, costs, and the scheduler that runs it all.

Time is moved with time-machine (every thread sees it: the server, the operation runner, the
scheduler); the environments either come from real deploys through the Slack front door against
moto's server, or are planted in the store as a month of history would have left them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine

from bot import jobs
from bot.aws import AwsClients
from bot.config import ConfigError, settings_from_mapping
from bot.cost import hourly_rate, prices
from bot.lifecycle import Forgotten, Reminder, Summary
from bot.naming import ecs_service_name, env_name
from bot.slack.blocks import (
    ACTION_KEEP,
    ACTION_STOP,
    ACTION_WAKE,
    reminder_message,
    summary_message,
)
from bot.store import Store
from commands.parser import UsageError, parse
from commands.verbs import Keep
from tests.conftest import MakeRig
from tests.fake_slack import FakeSlack
from tests.slack_rig import SlackRig
from tests.test_slack import thread_replies
from tests.test_slack_blocks import golden, within_limits

BERLIN = ZoneInfo("Europe/Berlin")
MONDAY_10 = datetime(2026, 11, 16, 10, 0, tzinfo=BERLIN)  # a Monday
LIFECYCLE = {"timezone": "Europe/Berlin", "reminder_time": "10:00", "work_days": "mon-fri"}
DAY = timedelta(days=1)


@pytest.fixture
def travel() -> Iterator[Callable[[datetime], None]]:
    """Move every thread's clock to a moment (and let it tick on from there)."""
    travellers: list[Any] = []

    def to(moment: datetime) -> None:
        if travellers:
            travellers.pop().stop()
        traveller = time_machine.travel(moment, tick=True)
        traveller.start()
        travellers.append(traveller)

    yield to
    for traveller in travellers:
        traveller.stop()


def plant(
    store: Store,
    name: str,
    *,
    last: datetime,
    created: datetime | None = None,
    owner: str | None = "U0ALICE",
    status: str = "running",
    reminded: datetime | None = None,
    pinned: bool = False,
    rate: float = 0.05,
    channel: str | None = None,
    pr: str | None = None,
    ttl: timedelta = timedelta(days=4),
) -> None:
    """An environment as history left it: created, running since, last touched at ``last``."""
    created = created or last
    store.upsert_env(
        name,
        app="shop",
        branch=name.removeprefix("shop-"),
        status=status,
        url=f"https://{name}.review.example.test",
        owner=owner,
        created_at=created.astimezone(UTC).isoformat(),
        last_activity_at=last.astimezone(UTC).isoformat(),
        expires_at=(last + ttl).astimezone(UTC).isoformat(),
        reminded_at=reminded.astimezone(UTC).isoformat() if reminded else None,
        pinned=int(pinned),
        hourly_rate=rate,
    )
    if status != "stopped":
        store.set_usage(name, "running", rate, at=created.astimezone(UTC).isoformat())
    if channel:
        store.set_message(name, "deploy", channel, f"{int(created.timestamp())}.000100")
    if pr:
        number = abs(hash(name)) % 1000
        store.link_pull(
            "acme/shop-web",
            number,
            env=name,
            state=pr,
            html_url=f"https://github.com/acme/shop-web/pull/{number}",
        )


def reminders(fake: FakeSlack, since: int = 0) -> list[dict[str, Any]]:
    return [
        c.args
        for c in fake.of("chat.postMessage")[since:]
        if "look forgotten" in str(c.args.get("text"))
    ]


def listed(message: dict[str, Any]) -> list[str]:
    return [
        b["block_id"].removeprefix("remind:")
        for b in message["blocks"]
        if b.get("block_id", "").startswith("remind:")
    ]


# -- configuration and the schedule ------------------------------------------------------------


def test_reminders_fire_at_the_configured_local_time_on_work_days_only(
    make_rig: MakeRig,
) -> None:
    settings = make_rig(**LIFECYCLE).runtime.settings
    trigger = jobs.job_specs(settings)["revieee-remind"][1]
    friday_11 = datetime(2026, 11, 20, 11, 0, tzinfo=BERLIN)
    assert trigger.get_next_fire_time(None, friday_11) == datetime(
        2026, 11, 23, 10, 0, tzinfo=BERLIN
    )  # not on Saturday or Sunday
    assert trigger.get_next_fire_time(None, MONDAY_10 - timedelta(minutes=1)) == MONDAY_10
    # 10:00 in Berlin is 09:00 UTC in winter and 08:00 UTC in summer
    assert MONDAY_10.astimezone(UTC).hour == 9
    summer = trigger.get_next_fire_time(None, datetime(2026, 6, 1, 7, 0, tzinfo=UTC))
    assert summer.astimezone(UTC) == datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
    assert "revieee-sleep" not in jobs.job_specs(settings)  # sleep hours are off by default


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("timezone", "Mars/Olympus", "not an IANA time zone"),
        ("work_hours", "18:00-09:00", "must start before it ends"),
        ("work_hours", "9-17", "not a time of day"),
        ("work_days", "mon-funday", "not a day"),
        ("reminder_time", "25:00", "not a time of day"),
        ("ttl", "10m", "must be a duration from 1h"),
        ("summary_day", "mon-fri", "must be one day"),
        ("prices", {"fargate_cpu": 1}, "unknown price"),
    ],
)
def test_lifecycle_settings_are_validated(
    make_rig: MakeRig, seeded: Any, key: str, value: Any, problem: str
) -> None:
    from bot.sandbox import sandbox_config

    config = sandbox_config(seeded, "unused.db", **{key: value})
    with pytest.raises(ConfigError) as info:
        settings_from_mapping(config, environ={})
    assert problem in str(info.value) and key in str(info.value)


def test_keep_takes_a_duration_or_forever() -> None:
    assert parse("keep shop-x") == Keep(env="shop-x")
    assert parse("keep shop-x 1w") == Keep(env="shop-x", duration="1w")
    assert parse("keep shop-x FOREVER --app shop") == Keep(
        env="shop-x", duration="forever", app="shop"
    )
    for bad in ("keep shop-x soon", "keep shop-x 100d", "keep shop-x 0d"):
        with pytest.raises(UsageError) as info:
            parse(bad)
        assert "usage: keep ENV [3d|1w|forever]" in str(info.value)


# -- reminders ---------------------------------------------------------------------------------


def test_a_reminder_per_channel_lists_the_forgotten_environments_once_a_day(
    make_rig: MakeRig, fake: FakeSlack, travel: Callable[[datetime], None]
) -> None:
    travel(MONDAY_10)
    rig = make_rig(**LIFECYCLE)
    store = rig.runtime.store
    now = MONDAY_10
    plant(store, "shop-idle", last=now - 4 * DAY, created=now - 6 * DAY, channel="C0SHOP")
    plant(
        store, "shop-merged", last=now - timedelta(hours=2), pr="merged", owner="U0BOB",
        channel="C0SHOP",
    )  # fmt: skip
    plant(store, "shop-other", last=now - 5 * DAY, channel="C0OTHER", owner="U0CAROL")
    plant(store, "shop-busy", last=now - timedelta(hours=3), channel="C0SHOP", pr="open")
    plant(store, "shop-pinned", last=now - 30 * DAY, pinned=True, channel="C0SHOP")
    plant(store, "shop-gone", last=now - 30 * DAY, status="stopped", channel="C0SHOP")
    plant(store, "shop-nochannel", last=now - 4 * DAY)  # falls back on default_channel

    sent = rig.serving.lifecycle.remind()
    assert sorted(r.channel for r in sent) == ["#review-apps", "C0OTHER", "C0SHOP"]
    messages = {m["channel"]: m for m in reminders(fake)}
    assert len(reminders(fake)) == 3  # one message per channel
    shop = messages["C0SHOP"]
    assert listed(shop) == ["shop-idle", "shop-merged"]  # oldest activity first
    assert listed(messages["C0OTHER"]) == ["shop-other"]
    text = json.dumps(shop["blocks"])
    assert "<@U0ALICE>" in text and "<@U0BOB>" in text  # owners mentioned
    assert "no activity for 4 days" in text and "merged" in text
    assert "up 6d 0h" in text  # age
    assert "so far" in text and "$" in text  # the estimated cost
    buttons = [
        (e["action_id"], e["value"])
        for b in shop["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
    ]
    assert (ACTION_KEEP, "shop-idle") in buttons and (ACTION_STOP, "shop-merged") in buttons

    # at most once a day: a second run the same day sends nothing
    assert rig.serving.lifecycle.remind() == []
    assert len(reminders(fake)) == 3
    # the next day they are still forgotten: reminded again
    travel(MONDAY_10 + DAY)
    again = rig.serving.lifecycle.remind()
    assert {r.channel for r in again} == {"#review-apps", "C0OTHER", "C0SHOP"}


def test_a_reminder_that_slack_refuses_does_not_count(
    make_rig: MakeRig, fake: FakeSlack, travel: Callable[[datetime], None]
) -> None:
    travel(MONDAY_10)
    rig = make_rig(**LIFECYCLE)
    plant(rig.runtime.store, "shop-idle", last=MONDAY_10 - 4 * DAY, channel="C0SHOP")
    fake.fail("chat.postMessage", "channel_not_found")
    assert rig.serving.lifecycle.remind() == []
    assert rig.runtime.store.get_env("shop-idle")["reminded_at"] is None
    # so an expired one is not stopped for a reminder nobody saw
    travel(MONDAY_10 + 3 * DAY)
    assert rig.serving.lifecycle.expire() == []


# -- expiry, keep and the automatic stop -------------------------------------------------------


def _deploy(rig: SlackRig, branch: str) -> str:
    assert rig.command(f"deploy {branch}").status == 200
    env = env_name("shop", branch)
    row = rig.wait_status(env, "running", "failed")
    assert row["status"] == "running", row["error"]
    return env


def test_an_expired_environment_is_stopped_only_after_a_reminder_and_the_grace(
    make_rig: MakeRig,
    fake: FakeSlack,
    aws: AwsClients,
    admin: AwsClients,
    travel: Callable[[datetime], None],
) -> None:
    travel(MONDAY_10 - 5 * DAY)  # deployed on the Wednesday before
    rig = make_rig(**LIFECYCLE)
    env = _deploy(rig, "feature/checkout")
    lifecycle = rig.serving.lifecycle
    row = rig.runtime.store.get_env(env)
    assert datetime.fromisoformat(row["expires_at"]) == (
        datetime.fromisoformat(row["last_activity_at"]) + timedelta(days=4)
    ).replace(microsecond=0)

    travel(MONDAY_10)  # expired since Sunday, but never reminded: it stays
    assert lifecycle.expire() == []
    assert [r.items[0].name for r in lifecycle.remind()] == [env]
    assert lifecycle.expire() == []  # reminded just now: the grace (1 day) first
    travel(MONDAY_10 + timedelta(hours=23))
    assert lifecycle.expire() == []
    travel(MONDAY_10 + DAY + timedelta(minutes=1))
    assert lifecycle.expire() == [env]
    assert lifecycle.expire() == []  # safe to run twice: its stop is already queued
    assert rig.wait_status(env, "stopped")["stopped_reason"].startswith("expired")

    (op,) = [o for o in rig.runtime.store.operations(env=env) if o.kind == "stop"]
    assert op.source == "scheduler" and op.params["auto"]
    thread = "\n".join(thread_replies(fake, rig.deploy_message(env)["ts"]))
    assert ":alarm_clock: revieee stops it: expired: no activity since" in thread
    final = json.dumps(fake.of("chat.update")[-1].args["blocks"])
    assert "Stopped by revieee" in final and "expired" in final
    described = admin.ecs.describe_services(
        cluster="revieee-sandbox", services=[ecs_service_name(env, "web")]
    )["services"]
    assert all(s["status"] in ("DRAINING", "INACTIVE") for s in described)  # deleted
    # what the stop saves accrues from now on
    usage = rig.runtime.store.usage_totals(env=env, end=(MONDAY_10 + 2 * DAY).isoformat())
    assert usage[env]["auto_stopped"][0] == pytest.approx(24, abs=0.2)


def test_keep_from_the_reminder_resets_the_expiry(
    make_rig: MakeRig, fake: FakeSlack, travel: Callable[[datetime], None]
) -> None:
    travel(MONDAY_10)
    rig = make_rig(**LIFECYCLE)
    store = rig.runtime.store
    plant(
        store,
        "shop-kept",
        last=MONDAY_10 - 6 * DAY,
        reminded=MONDAY_10 - 2 * DAY,
        channel="C0SHOP",
    )
    plant(store, "shop-lost", last=MONDAY_10 - 6 * DAY, reminded=MONDAY_10 - 2 * DAY)
    rig.action(ACTION_KEEP, "shop-kept", user="U0ALICE")  # the owner clicks Keep
    rig.drain()
    kept = store.get_env("shop-kept")
    assert datetime.fromisoformat(kept["expires_at"]) == pytest.approx(
        MONDAY_10 + 3 * DAY, abs=timedelta(seconds=30)
    )
    assert "kept until" in json.dumps(fake.responses[-1][1])
    assert rig.serving.lifecycle.expire() == ["shop-lost"]  # not the kept one
    assert "shop-kept" not in [f.name for f in rig.serving.lifecycle.forgotten()]


def test_keep_for_a_week_or_forever_and_pins_need_an_admin(
    make_rig: MakeRig, fake: FakeSlack, travel: Callable[[datetime], None], admin: AwsClients
) -> None:
    travel(MONDAY_10)
    rig = make_rig(admins=["U0ADMIN"], **LIFECYCLE)
    store = rig.runtime.store
    plant(store, "shop-x", last=MONDAY_10 - 5 * DAY, reminded=MONDAY_10 - 2 * DAY)
    assert "kept until 2026-11-23T09:0" in rig.command("keep shop-x 1w").json()["text"]

    refused = rig.command("keep shop-x forever", user="U0ALICE").json()["text"]
    assert "only an admin may keep shop-x forever" in refused
    assert not store.get_env("shop-x")["pinned"]
    assert "pinned" in rig.command("keep shop-x forever", user="U0ADMIN").json()["text"]
    row = store.get_env("shop-x")
    assert row["pinned"] == 1 and row["expires_at"] is None
    travel(MONDAY_10 + 60 * DAY)  # a pinned environment is never reminded or stopped
    assert rig.serving.lifecycle.forgotten() == []
    assert rig.serving.lifecycle.expire() == []
    # a duration unpins it
    rig.command("keep shop-x 2d", user="U0ALICE")
    assert store.get_env("shop-x")["pinned"] == 0
    assert "expires" in rig.command("status shop-x").json()["text"]


def test_a_command_about_an_environment_is_activity(
    make_rig: MakeRig, fake: FakeSlack, travel: Callable[[datetime], None]
) -> None:
    travel(MONDAY_10)
    rig = make_rig(**LIFECYCLE)
    plant(rig.runtime.store, "shop-looked-at", last=MONDAY_10 - 5 * DAY)
    assert [f.name for f in rig.serving.lifecycle.forgotten()] == ["shop-looked-at"]
    rig.command("status shop-looked-at")
    assert rig.serving.lifecycle.forgotten() == []
    row = rig.runtime.store.get_env("shop-looked-at")
    assert datetime.fromisoformat(row["expires_at"]) > MONDAY_10 + 3 * DAY


# -- the scheduler: a restart catches up once --------------------------------------------------


def test_a_restart_catches_up_a_missed_reminder_once(
    make_rig: MakeRig, fake: FakeSlack, tmp_path: Path, travel: Callable[[datetime], None]
) -> None:
    travel(MONDAY_10 - timedelta(hours=2))
    rig = make_rig(**LIFECYCLE)
    plant(rig.runtime.store, "shop-idle", last=MONDAY_10 - 4 * DAY, channel="C0SHOP")
    store_file = tmp_path / "jobs.db"
    scheduler = jobs.start_scheduler(rig.runtime.settings, rig.serving.lifecycle, store_file)
    assert {j.id for j in scheduler.get_jobs()} == {
        "revieee-remind",
        "revieee-expire",
        "revieee-sweep",
        "revieee-summary",
    }
    assert scheduler.get_job("revieee-remind").next_run_time == MONDAY_10
    scheduler.shutdown()  # revieee is down over 10:00 ...
    assert reminders(fake) == []

    travel(MONDAY_10 + timedelta(hours=2))  # ... and back at noon: the reminder goes out, once
    for _ in range(2):  # and a second restart does not send it again
        scheduler = jobs.start_scheduler(rig.runtime.settings, rig.serving.lifecycle, store_file)
        deadline = time.monotonic() + 15
        while not reminders(fake) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        next_run = scheduler.get_job("revieee-remind").next_run_time
        scheduler.shutdown(wait=True)
        assert len(reminders(fake)) == 1
        assert next_run == MONDAY_10 + DAY  # Tuesday 10:00
    assert len({j.id for j in scheduler.get_jobs()}) == len(scheduler.get_jobs())


def test_jobs_without_a_lifecycle_do_nothing() -> None:
    jobs.install(None)
    assert jobs.remind() is None and jobs.expire() is None


# -- sleep hours -------------------------------------------------------------------------------


def test_sleep_hours_scale_to_zero_and_wake_brings_it_back(
    make_rig: MakeRig,
    fake: FakeSlack,
    aws: AwsClients,
    admin: AwsClients,
    travel: Callable[[datetime], None],
) -> None:
    travel(MONDAY_10)
    rig = make_rig(sleep=True, work_hours="09:00-18:00", **LIFECYCLE)
    specs = jobs.job_specs(rig.runtime.settings)
    evening = specs["revieee-sleep"][1].get_next_fire_time(None, MONDAY_10)
    morning = specs["revieee-wake"][1].get_next_fire_time(None, evening)
    assert (evening.hour, morning.hour, morning.day) == (18, 9, 17)

    env = _deploy(rig, "feature/checkout")
    travel(MONDAY_10.replace(hour=18))
    assert rig.serving.lifecycle.sleep() == [env]
    assert rig.wait_status(env, "sleeping")["status"] == "sleeping"
    web = ecs_service_name(env, "web")
    (svc,) = admin.ecs.describe_services(cluster="revieee-sandbox", services=[web])["services"]
    assert svc["desiredCount"] == 0
    ts = rig.deploy_message(env)["ts"]
    final = [c for c in fake.of("chat.update") if c.args["ts"] == ts][-1].args
    assert "Sleeping" in final["text"] and ACTION_WAKE in json.dumps(final["blocks"])
    assert rig.serving.lifecycle.sleep() == []  # twice: nothing more

    # woken by hand in the evening (a command), then asleep again; woken by the morning job
    assert "queued wake" in rig.command(f"wake {env}").json()["text"]
    assert rig.wait_status(env, "running")["status"] == "running"
    (svc,) = admin.ecs.describe_services(cluster="revieee-sandbox", services=[web])["services"]
    assert svc["desiredCount"] == 1
    rig.serving.lifecycle.sleep()
    rig.wait_status(env, "sleeping")
    travel(MONDAY_10.replace(hour=21))
    travel(morning)
    assert rig.serving.lifecycle.wake() == [env]
    assert rig.wait_status(env, "running")["status"] == "running"
    # the hours asleep are not in its cost
    usage = rig.runtime.store.usage_totals(env=env)[env]
    assert usage["sleeping"][0] > 14
    assert usage["running"][0] < 9
    assert "not sleeping" in rig.command(f"wake {env}").json()["text"]


# -- cost --------------------------------------------------------------------------------------


def test_the_cost_comes_from_the_task_size_and_the_hours_it_ran(
    make_rig: MakeRig, fake: FakeSlack, travel: Callable[[datetime], None]
) -> None:
    travel(MONDAY_10)
    rig = make_rig(**LIFECYCLE)
    settings = rig.runtime.settings
    env = _deploy(rig, "feature/checkout")
    row = rig.runtime.store.get_env(env)
    # the sandbox's two services: 256 CPU units and 512 MiB each, on FARGATE_SPOT
    assert (row["vcpu"], row["memory_gb"]) == (0.5, 1.0)
    rate = hourly_rate(settings, prices(settings, "us-east-1"), 0.5, 1.0)
    assert row["hourly_rate"] == pytest.approx(rate)
    assert rate == pytest.approx(0.5 * 0.04048 * 0.3 + 1.0 * 0.004445 * 0.3)

    travel(MONDAY_10 + timedelta(hours=100))
    status = rig.command(f"status {env}").json()["text"]
    assert f"cost about ${rate * 100:.2f} so far" in status
    listing = rig.runtime.core.queries.list_envs()
    assert listing[0]["cost"] == pytest.approx(rate * 100, rel=0.01)
    # once stopped, the cost so far stays what it was
    rig.command(f"stop {env}")
    rig.wait_status(env, "stopped")
    travel(MONDAY_10 + timedelta(hours=130))
    stopped = rig.runtime.core.queries.status(env, live=False)
    assert stopped["cost"] == pytest.approx(rate * 100, rel=0.01)


def test_prices_follow_the_region_and_the_configuration(make_rig: MakeRig) -> None:
    settings = make_rig(prices={"fargate_spot_vcpu_hour": 0.01}).runtime.settings
    frankfurt = prices(settings, "eu-central-1")
    assert frankfurt["fargate_vcpu_hour"] == 0.04656
    assert frankfurt["fargate_spot_vcpu_hour"] == 0.01  # configured
    assert prices(settings, "nowhere-1")["fargate_vcpu_hour"] == 0.04048  # us-east-1's


def test_the_weekly_summary_totals_costs_and_savings_once_a_week(
    make_rig: MakeRig, fake: FakeSlack, travel: Callable[[datetime], None], admin: AwsClients
) -> None:
    travel(MONDAY_10)
    rig = make_rig(admin_channel="#revieee-admin", **LIFECYCLE)
    store = rig.runtime.store
    week = MONDAY_10 - 7 * DAY
    plant(store, "shop-big", last=MONDAY_10, created=week, rate=1.0)  # 168 h: $168
    plant(store, "shop-small", last=MONDAY_10, created=MONDAY_10 - 10 * DAY, rate=0.1)
    # slept 12 h of its week, then was stopped by revieee 24 h before the summary
    store.set_usage("shop-small", "sleeping", 0.1, at=(week + 2 * DAY).isoformat())
    store.set_usage("shop-small", "running", 0.1, at=(week + 2.5 * DAY).isoformat())
    store.set_usage("shop-small", "auto_stopped", 0.1, at=(MONDAY_10 - DAY).isoformat())
    summary = rig.serving.lifecycle.post_summary()
    assert summary is not None
    assert summary.total == pytest.approx(168 + 0.1 * (168 - 12 - 24), rel=1e-3)
    assert summary.saved_sleep == pytest.approx(1.2, rel=1e-3)
    assert summary.saved_auto_stop == pytest.approx(2.4, rel=1e-3)
    assert [t[0] for t in summary.top] == ["shop-big", "shop-small"]
    (posted,) = [c.args for c in fake.of("chat.postMessage") if "Weekly cost" in json.dumps(c.args)]
    assert posted["channel"] == "#revieee-admin"
    assert rig.serving.lifecycle.post_summary() is None  # once per week


def test_a_summary_that_slack_refuses_is_tried_again(
    make_rig: MakeRig, fake: FakeSlack, travel: Callable[[datetime], None]
) -> None:
    travel(MONDAY_10)
    rig = make_rig(admin_channel="#revieee-admin", **LIFECYCLE)
    plant(rig.runtime.store, "shop-big", last=MONDAY_10, created=MONDAY_10 - 7 * DAY, rate=1.0)
    fake.fail("chat.postMessage", "channel_not_found")
    assert rig.serving.lifecycle.post_summary() is None  # refused: the week is not claimed
    assert rig.serving.lifecycle.post_summary() is not None
    assert rig.serving.lifecycle.post_summary() is None  # once it went out, once a week


# -- golden files ------------------------------------------------------------------------------


def _forgotten(name: str, **fields: Any) -> Forgotten:
    base: dict[str, Any] = {
        "name": name,
        "app": "shop",
        "branch": name.removeprefix("shop-"),
        "url": f"https://{name}.review.example.test",
        "owner": "U0ALICE",
        "status": "running",
        "created_at": MONDAY_10 - 6 * DAY,
        "last_activity": MONDAY_10 - 4 * DAY,
        "expires_at": MONDAY_10,
        "pr_state": None,
        "pr_url": None,
        "cost": 12.34,
        "reason": "no activity for 4 days",
        "stops_at": MONDAY_10 + DAY,
    }
    return Forgotten(**{**base, **fields})


def test_reminder_message_golden() -> None:
    reminder = Reminder(
        "C0SHOP",
        [
            _forgotten("shop-idle"),
            _forgotten(
                "shop-merged",
                owner="U0BOB",
                pr_state="merged",
                pr_url="https://github.com/acme/shop-web/pull/7",
                reason="its pull request was merged",
                cost=0.004,
                status="sleeping",
            ),
        ],
    )
    text, blocks = reminder_message(reminder, MONDAY_10)
    within_limits(blocks)
    golden("reminder", {"text": text, "blocks": blocks})


def test_a_reminder_of_many_environments_stays_within_slacks_limits() -> None:
    many = Reminder("C0SHOP", [_forgotten(f"shop-env{i}") for i in range(60)])
    _, blocks = reminder_message(many, MONDAY_10)
    within_limits(blocks)
    dumped = json.dumps(blocks, ensure_ascii=False)
    assert "… and 37 more" in dumped and "shop-env59" in dumped


def test_summary_message_golden() -> None:
    summary = Summary(
        start=MONDAY_10 - 7 * DAY,
        end=MONDAY_10,
        total=171.2,
        hours=300.0,
        environments=2,
        top=[("shop-big", "U0ALICE", 168.0, 168.0), ("shop-small", None, 3.2, 132.0)],
        saved_auto_stop=2.4,
        saved_sleep=1.2,
        auto_stopped=1,
    )
    text, blocks = summary_message(summary)
    within_limits(blocks)
    golden("summary", {"text": text, "blocks": blocks})

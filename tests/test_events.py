"""The bus: subscription by event type (a subclass counts), order, a failing subscriber, and
unsubscribing; the statuses and phases."""

from __future__ import annotations

import logging

import pytest

from bot.events import (
    ACTIVE,
    REMINDED,
    Bus,
    EnvStatus,
    Finished,
    LogLines,
    Phase,
    Requested,
    Step,
)
from bot.logtail import LogEvent
from bot.store import Operation

OP = Operation(1, "deploy", "shop-x", "shop", "x", {}, "running", None, "U1", "slack", 1, None)


def test_subscribers_get_the_events_of_their_type_in_order() -> None:
    bus = Bus()
    seen: list[tuple[str, object]] = []
    bus.subscribe(Step, lambda e: seen.append(("step", e.step)))
    bus.subscribe(Finished, lambda e: seen.append(("finished", e.phase)))
    bus.subscribe(Requested, lambda e: seen.append(("requested", e.op.id)))
    bus.subscribe(LogLines, lambda e: seen.append(("log", e.event.lines)))
    bus.publish(Requested(OP))
    bus.publish(Step(OP, Phase.DEPLOYING, "creating ECS service", "created"))
    bus.publish(LogLines(OP, LogEvent("build of web", lines=("a",))))
    bus.publish(Finished(OP, Phase.READY, "ready", "up"))
    assert seen == [
        ("requested", 1),
        ("step", "creating ECS service"),
        ("log", ("a",)),
        ("step", "ready"),  # a Finished is a Step too
        ("finished", "ready"),
    ]


def test_a_failing_subscriber_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = Bus()
    seen: list[str] = []

    def broken(event: Step) -> None:
        raise RuntimeError("notifier bug")

    bus.subscribe(Step, broken)
    bus.subscribe(Step, lambda e: seen.append(e.message))
    with caplog.at_level(logging.ERROR, logger="revieee.events"):
        bus.publish(Step(OP, Phase.QUEUED, "queued", "deploying x"))
    assert seen == ["deploying x"]
    assert "subscriber failed event=Step" in caplog.text


def test_unsubscribe_stops_the_events() -> None:
    bus = Bus()
    seen: list[str] = []
    stop = bus.subscribe(Step, lambda e: seen.append(e.message))
    bus.publish(Step(OP, Phase.QUEUED, "queued", "one"))
    stop()
    bus.publish(Step(OP, Phase.QUEUED, "queued", "two"))
    stop()  # twice is harmless
    assert seen == ["one"]


def test_statuses_and_phases() -> None:
    assert EnvStatus.STOPPED not in ACTIVE and len(ACTIVE) == len(EnvStatus) - 1
    assert set(REMINDED) == {"running", "sleeping", "failed"}
    assert [Phase.requested(k) for k in ("deploy", "stop", "sleep", "wake")] == [
        "queued",
        "stopping",
        "sleeping",
        "deploying",
    ]
    assert Phase.of_status("running") is Phase.READY
    assert Phase.of_status("stopping") is Phase.STOPPING
    assert Phase.of_status("gone") is None
    assert EnvStatus.DEPLOYING == "deploying"  # stored as the plain string

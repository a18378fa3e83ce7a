"""CloudWatch Logs on the strict layer: empty pages before the end, FilterLogEvents at 5 a
second. revieee's readers must not stop at an empty page, and must pace themselves."""

from __future__ import annotations

import time

import pytest
from botocore.config import Config

from bot.aws import AwsClients, Pace, build_clients
from bot.container_logs import FILTER_PACE
from bot.logtail import CloudWatchTail
from bot.strict_aws import StrictAws

GROUP = "/aws/codebuild/shop-web-images"


def write(admin: AwsClients, stream: str, batches: int, per_batch: int = 3) -> list[str]:
    admin.logs.create_log_group(logGroupName=GROUP)
    admin.logs.create_log_stream(logGroupName=GROUP, logStreamName=stream)
    lines = []
    now = int(time.time() * 1000)
    for b in range(batches):
        events = [
            {"timestamp": now + b * 10 + i, "message": f"line {b}.{i}"} for i in range(per_batch)
        ]
        admin.logs.put_log_events(logGroupName=GROUP, logStreamName=stream, logEvents=events)
        lines += [e["message"] for e in events]
    return lines


def test_a_tail_reads_past_empty_pages_to_the_end(
    aws: AwsClients, admin: AwsClients, strict: StrictAws
) -> None:
    lines = write(admin, "build/1", 4)
    tail = CloudWatchTail(aws.logs, GROUP, "build/1")
    assert tail.read() == lines
    assert strict.logs.empty_pages_sent >= 1  # the layer did answer an empty page first
    assert tail.read() == []  # the token no longer changes: the end
    more = [f"late {i}" for i in range(2)]
    now = int(time.time() * 1000) + 1000
    admin.logs.put_log_events(
        logGroupName=GROUP,
        logStreamName="build/1",
        logEvents=[{"timestamp": now + i, "message": m} for i, m in enumerate(more)],
    )
    assert tail.read() == more


def test_a_final_drain_reads_what_one_poll_would_leave(aws: AwsClients, admin: AwsClients) -> None:
    """A poll reads a bounded number of pages; at the end of a build nothing reads later, so
    the builder drains the log instead."""
    lines = write(admin, "build/2", 3)
    polled = CloudWatchTail(aws.logs, GROUP, "build/2", max_pages=1)
    assert polled.read() == []  # one page, and the layer made it an empty one
    drained = CloudWatchTail(aws.logs, GROUP, "build/2", max_pages=1)
    assert drained.drain() == lines


def test_filter_log_events_is_throttled_at_five_a_second_and_the_pace_keeps_under(
    aws: AwsClients, admin: AwsClients, strict: StrictAws
) -> None:
    write(admin, "task/1", 1)
    # a client that does not retry, to see the layer's answer itself
    bare = build_clients("standard", 1)
    assert isinstance(bare.logs.meta.config, Config)
    with pytest.raises(bare.logs.exceptions.ClientError, match="ThrottlingException"):
        for _ in range(12):
            bare.logs.filter_log_events(logGroupName=GROUP)
    strict.buckets.reset()
    pace = Pace(FILTER_PACE.per_second)
    started = time.monotonic()
    for _ in range(12):
        pace.wait()
        bare.logs.filter_log_events(logGroupName=GROUP)
    assert FILTER_PACE.per_second < 5  # under the quota, with room for the network's jitter
    assert time.monotonic() - started >= 1.9  # 4 at once, then 8 more at 4 a second
    assert strict.counts.throttled["logs:FilterLogEvents"] == 1  # only the unpaced one


def test_the_pace_sleeps_only_past_its_burst() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pace = Pace(5.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        pace.wait()
    assert slept == []
    pace.wait()
    assert slept == [pytest.approx(0.2)]
    now[0] += 1.0  # a second later: a full burst again
    for _ in range(5):
        pace.wait()
    assert len(slept) == 1

"""``GET /metrics``: Prometheus's text format, read over HTTP from the running server after real
deploys against moto's server and real failures (a Slack error from the fake, an AWS error from
moto)."""

from __future__ import annotations

import re

import pytest
from botocore.exceptions import ClientError

from bot.naming import env_name
from tests.conftest import MakeRig
from tests.fake_slack import FakeSlack

SAMPLE = re.compile(r"^([a-z_]+)(\{[^}]*\})? (-?[0-9.e+]+)$")


def scrape(text: str) -> dict[str, float]:
    """Every sample as ``name{labels}`` -> value; fails on a line that is not the format."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a Prometheus sample line: {line!r}"
        samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return samples


def test_metrics_count_operations_durations_queue_environments_and_errors(
    make_rig: MakeRig, fake: FakeSlack
) -> None:
    rig = make_rig()
    rig.command("deploy feature/checkout")
    rig.wait_status(env_name("shop", "feature/checkout"), "running")
    rig.command("deploy no-such-branch-image --sha deadbee")
    rig.wait_status(env_name("shop", "no-such-branch-image"), "failed")
    fake.fail("chat.postMessage", "channel_not_found")
    rig.command("stop feature/checkout")
    rig.wait_status(env_name("shop", "feature/checkout"), "stopped")
    with pytest.raises(ClientError):
        rig.runtime.clients.ecs.describe_task_definition(taskDefinition="no-such-family")

    resp = rig.request("GET", "/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    m = scrape(resp.body.decode())
    assert m['revieee_operations_total{kind="deploy",result="succeeded"}'] == 1
    assert m['revieee_operations_total{kind="deploy",result="failed"}'] == 1
    assert m['revieee_operations_total{kind="stop",result="succeeded"}'] == 1
    count = m['revieee_operation_duration_seconds_count{kind="deploy",result="succeeded"}']
    inf = m['revieee_operation_duration_seconds_bucket{kind="deploy",result="succeeded",le="+Inf"}']
    assert count == inf == 1
    assert m['revieee_operation_duration_seconds_sum{kind="deploy",result="succeeded"}'] > 0
    buckets = [
        v
        for k, v in m.items()
        if k.startswith('revieee_operation_duration_seconds_bucket{kind="deploy",result="failed"')
    ]
    assert buckets == sorted(buckets)  # cumulative
    assert m["revieee_queue_depth"] == 0 and m["revieee_operations_running"] == 0
    assert m['revieee_environments{status="stopped"}'] == 1
    assert m['revieee_environments{status="failed"}'] == 1
    assert m['revieee_call_errors_total{service="slack"}'] >= 1
    assert m['revieee_call_errors_total{service="aws"}'] >= 1
    code = 'operation="DescribeTaskDefinition",code="ClientException"'
    assert m[f'revieee_aws_errors_total{{service="ecs",{code}}}'] >= 1

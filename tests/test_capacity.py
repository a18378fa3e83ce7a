"""How many environments run is bounded by what AWS allows, not by revieee's workers: the
account's Fargate vCPU quota (read from Service Quotas) and the Cloud Map instances a namespace
may hold. On the strict AWS layer, which places no task over the vCPU quota (as ECS does: the
service says so in its events, the rollout never completes)."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

from bot.aws import AwsClients
from bot.naming import ecs_service_name, env_name, image_tag_part
from bot.sandbox import fake_sha, push_image
from bot.strict_aws.proxy import StrictAws
from tests.conftest import MakeRig
from tests.fake_slack import FakeSlack
from tests.slack_rig import SlackRig

# each environment of the sandbox's shop app: web + api, 256 CPU units each = 0.5 vCPU
ONE_ENV = 0.5


def _deploy(rig: SlackRig, admin: AwsClients, branch: str) -> dict[str, Any]:
    for repo in ("shop-web", "shop-api"):
        with contextlib.suppress(admin.ecr.exceptions.ImageAlreadyExistsException):
            push_image(admin.ecr, repo, f"{image_tag_part(branch)}-{fake_sha(branch)[:7]}")
    assert rig.command(f"deploy {branch}").status == 200
    return rig.wait_status(env_name("shop", branch), "running", "failed", timeout=30)


def test_a_deploy_over_the_fargate_vcpu_quota_is_refused_with_what_is_in_use(
    make_rig: MakeRig, fake: FakeSlack, admin: AwsClients, strict: StrictAws
) -> None:
    strict.ecs.vcpu_quota["FARGATE_SPOT"] = ONE_ENV  # what Service Quotas answers, too
    rig = make_rig()
    first = _deploy(rig, admin, "feature/first")
    assert first["status"] == "running", first["error"]

    second = _deploy(rig, admin, "feature/second")
    assert second["status"] == "failed"
    assert "does not fit in what AWS allows" in second["error"]
    assert "1 environment(s) already run 0.5 of the 0.5 vCPU" in second["error"]
    assert "Service Quotas L-36FBB829" in second["error"]
    # refused before anything was created: no ECS service, no Cloud Map service for it
    name = ecs_service_name(second["name"], "web")
    found = admin.ecs.describe_services(cluster="revieee-sandbox", services=[name])["services"]
    assert [s for s in found if s["status"] != "INACTIVE"] == []
    # the reason is in the deploy's Slack message
    ref = rig.deploy_message(second["name"])
    said = [c for c in fake.calls if c.args.get("ts") == ref["ts"] or c.args.get("thread_ts")]
    assert any("does not fit" in json.dumps(c.args) for c in said)

    # a redeploy of the one running needs room beside its own tasks (a rolling update runs
    # the new tasks before it stops the old): refused too, and the old one keeps serving
    assert rig.command("deploy feature/first").status == 200
    again = rig.wait_status(first["name"], "running", "failed", timeout=30)
    assert again["status"] == "running"
    assert "does not fit" in again["error"]
    quotas = rig.runtime.core.executor.quotas
    strict.ecs.vcpu_quota["FARGATE_SPOT"] = 2 * ONE_ENV
    quotas._read.clear()  # (a quota read is trusted for 15 minutes)
    assert rig.command("deploy feature/first").status == 200
    assert rig.wait_status(first["name"], "running", "failed", timeout=30)["error"] is None
    strict.ecs.vcpu_quota["FARGATE_SPOT"] = ONE_ENV
    quotas._read.clear()

    # once the first is stopped, the second fits
    rig.command(f"stop {first['name']}")
    rig.wait_status(first["name"], "stopped")
    assert _deploy(rig, admin, "feature/second")["status"] == "running"


def test_the_strict_layer_places_no_task_over_the_quota_and_says_why(
    make_rig: MakeRig, fake: FakeSlack, admin: AwsClients, strict: StrictAws
) -> None:
    # revieee told a bigger quota than the account has: ECS keeps the task out
    strict.ecs.vcpu_quota["FARGATE_SPOT"] = ONE_ENV
    rig = make_rig(fargate_vcpu_quota=100, deploy_timeout=4)
    assert _deploy(rig, admin, "feature/first")["status"] == "running"
    second = _deploy(rig, admin, "feature/second")
    assert second["status"] == "failed"
    name = ecs_service_name(second["name"], "web")
    (svc,) = admin.ecs.describe_services(cluster="revieee-sandbox", services=[name])["services"]
    assert svc["runningCount"] == 0 and svc["pendingCount"] == 0
    messages = [e["message"] for e in svc["events"]]
    assert any(
        "unable to place a task" in m and "limit on the number of vCPUs" in m for m in messages
    )
    assert "unable to place a task" in second["error"] or "did not" in second["error"]

    # ECS tries again: once there is room, the task is placed
    strict.ecs.vcpu_quota["FARGATE_SPOT"] = 2 * ONE_ENV
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        (svc,) = admin.ecs.describe_services(cluster="revieee-sandbox", services=[name])["services"]
        if svc["runningCount"] == 1:
            break
        time.sleep(0.2)
    assert svc["runningCount"] == 1


def test_service_quotas_answers_the_fargate_quota_through_the_role(
    aws: AwsClients, strict: StrictAws
) -> None:
    strict.ecs.vcpu_quota["FARGATE"] = 256
    quota = aws.quotas.get_service_quota(ServiceCode="fargate", QuotaCode="L-3032A538")["Quota"]
    assert quota["Value"] == 256 and quota["QuotaName"] == "Fargate On-Demand vCPU resource count"
    assert strict.denials == []


def test_a_deploy_over_the_namespaces_cloud_map_instances_is_refused(
    make_rig: MakeRig, fake: FakeSlack, admin: AwsClients
) -> None:
    rig = make_rig(cloud_map_instances=3)  # one environment takes 2 (web, api)
    assert _deploy(rig, admin, "feature/first")["status"] == "running"
    second = _deploy(rig, admin, "feature/second")
    assert second["status"] == "failed"
    assert "needs 2 Cloud Map instance(s)" in second["error"]
    assert "2 of the 3 a namespace may hold" in second["error"]


def test_a_wake_that_does_not_fit_fails_with_the_reason(
    make_rig: MakeRig, fake: FakeSlack, admin: AwsClients, strict: StrictAws
) -> None:
    rig = make_rig(sleep=True, work_hours="09:00-18:00")
    sleeper = _deploy(rig, admin, "feature/sleeper")["name"]
    assert rig.serving.lifecycle.sleep() == [sleeper]
    rig.wait_status(sleeper, "sleeping")
    strict.ecs.vcpu_quota["FARGATE_SPOT"] = ONE_ENV
    rig.runtime.core.executor.quotas._read.clear()  # (a quota read is trusted for 15 minutes)
    assert _deploy(rig, admin, "feature/awake")["status"] == "running"  # takes the room
    assert rig.command(f"wake {sleeper}").status == 200
    row = rig.wait_status(sleeper, "failed", "running")
    assert row["status"] == "failed"
    assert "does not fit in what AWS allows" in row["error"]

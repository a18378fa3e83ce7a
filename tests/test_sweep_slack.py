"""The orphan sweeper end to end: resources planted in moto's server (revieee's, left behind by
an environment the store no longer runs, and untagged look-alikes with revieee-like names), the
sweep job reporting to the admin channel over the fake Slack, the Delete button, automatic
deletion, and an environment whose ECS service vanished."""

from __future__ import annotations

import json
from typing import Any

from bot.aws import AwsClients
from bot.naming import ecs_service_name, env_name, service_label, task_family
from bot.slack.blocks import ACTION_DELETE_ORPHAN
from tests.conftest import MakeRig
from tests.fake_slack import FakeSlack
from tests.slack_rig import SlackRig
from tests.test_slack import thread_replies

CLUSTER = "revieee-sandbox"
LOST = env_name("shop", "feature/checkout")
LOOKALIKE = "shop-lookalike"


def _deployed_then_forgotten(rig: SlackRig) -> None:
    """A real deploy whose environment the store then calls stopped (as after a restore of an
    old database): its AWS resources are left behind."""
    rig.command("deploy feature/checkout")
    assert rig.wait_status(LOST, "running", "failed")["status"] == "running"
    rig.runtime.store.upsert_env(LOST, status="stopped")


def _plant_lookalikes(admin: AwsClients) -> None:
    """Resources named like revieee's but without its tags: never to be touched."""
    template = admin.ecs.describe_task_definition(taskDefinition="shop-web")["taskDefinition"]
    admin.ecs.register_task_definition(
        family=task_family(LOOKALIKE, "web"),
        containerDefinitions=template["containerDefinitions"],
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="256",
        memory="512",
    )
    admin.ecs.create_service(
        cluster=CLUSTER,
        serviceName=ecs_service_name(LOOKALIKE, "web"),
        taskDefinition=task_family(LOOKALIKE, "web"),
        desiredCount=1,
    )
    ns = admin.servicediscovery.list_namespaces()["Namespaces"][0]["Id"]
    admin.servicediscovery.create_service(
        Name=service_label(LOOKALIKE, "web"),
        NamespaceId=ns,
        DnsConfig={"DnsRecords": [{"Type": "A", "TTL": 10}]},
    )


def _lookalikes_intact(admin: AwsClients) -> None:
    (svc,) = admin.ecs.describe_services(
        cluster=CLUSTER, services=[ecs_service_name(LOOKALIKE, "web")]
    )["services"]
    assert svc["status"] == "ACTIVE"
    names = [s["Name"] for s in admin.servicediscovery.list_services()["Services"]]
    assert service_label(LOOKALIKE, "web") in names
    families = admin.ecs.list_task_definition_families(familyPrefix="revieee-shop-lookalike")
    assert families["families"] == [task_family(LOOKALIKE, "web")]


def _admin_posts(fake: FakeSlack) -> list[dict[str, Any]]:
    return [c.args for c in fake.of("chat.postMessage") if c.args.get("channel") == "#admin"]


def test_orphans_are_reported_once_with_delete_buttons_and_look_alikes_left_alone(
    make_rig: MakeRig, fake: FakeSlack, aws: AwsClients, admin: AwsClients
) -> None:
    rig = make_rig(admin_channel="#admin", admins=["U0ADMIN"])
    _deployed_then_forgotten(rig)
    _plant_lookalikes(admin)
    result = rig.serving.lifecycle.sweep()
    assert result.errors == []
    found = sorted((o.kind, o.name, o.env) for o in result.new)
    assert found == [
        ("cloud-map-service", service_label(LOST, "api"), LOST),
        ("cloud-map-service", service_label(LOST, "web"), LOST),
        ("ecs-service", ecs_service_name(LOST, "api"), LOST),
        ("ecs-service", ecs_service_name(LOST, "web"), LOST),
        ("task-definition", task_family(LOST, "api"), LOST),
        ("task-definition", task_family(LOST, "web"), LOST),
    ]
    (report,) = _admin_posts(fake)
    buttons = [b["accessory"] for b in report["blocks"] if "accessory" in b]
    assert len(buttons) == 6 and {b["action_id"] for b in buttons} == {ACTION_DELETE_ORPHAN}
    assert LOOKALIKE not in json.dumps(report)

    again = rig.serving.lifecycle.sweep()  # reported once
    assert len(again.orphans) == 6 and again.new == []
    assert len(_admin_posts(fake)) == 1

    # a non-admin's click is refused; an admin's deletes (after checking the tags again)
    web = next(o for o in result.new if o.kind == "ecs-service" and o.name.endswith("-web"))
    rig.action(ACTION_DELETE_ORPHAN, web.id, user="U0ALICE", channel="C0ADMIN")
    rig.drain()
    assert "only an admin may delete" in fake.responses[-1][1]["text"]
    (svc,) = admin.ecs.describe_services(cluster=CLUSTER, services=[web.name])["services"]
    assert svc["status"] == "ACTIVE"
    rig.action(ACTION_DELETE_ORPHAN, web.id, user="U0ADMIN", channel="C0ADMIN")
    rig.drain()
    assert f"deleted ECS service {web.name}" in fake.responses[-1][1]["text"]
    (svc,) = admin.ecs.describe_services(cluster=CLUSTER, services=[web.name])["services"]
    assert svc["status"] in ("DRAINING", "INACTIVE")
    deleted = [e for e in rig.runtime.store.audit_events(LOST) if e["action"] == "orphan deleted"]
    assert deleted and deleted[0]["actor"] == "U0ADMIN"
    assert len(rig.serving.lifecycle.sweep().orphans) == 5
    _lookalikes_intact(admin)


def test_an_orphan_whose_environment_is_deployed_again_is_not_deleted(
    make_rig: MakeRig, fake: FakeSlack, aws: AwsClients, admin: AwsClients
) -> None:
    rig = make_rig(admin_channel="#admin")
    _deployed_then_forgotten(rig)
    orphan = next(o for o in rig.serving.lifecycle.sweep().new if o.kind == "ecs-service")
    rig.command("deploy feature/checkout")
    rig.wait_status(LOST, "running")
    assert "is active again" in rig.serving.lifecycle.sweeper.delete(orphan.id)


def test_sweep_delete_removes_orphans_without_asking_and_only_tagged_ones(
    make_rig: MakeRig, fake: FakeSlack, aws: AwsClients, admin: AwsClients
) -> None:
    rig = make_rig(admin_channel="#admin", sweep_delete=True)
    _deployed_then_forgotten(rig)
    _plant_lookalikes(admin)
    result = rig.serving.lifecycle.sweep()
    assert len(result.deleted) == 6, result.deleted
    (report,) = _admin_posts(fake)
    assert "deleted 6 orphaned" in report["text"]
    assert rig.serving.lifecycle.sweep().orphans == []
    _lookalikes_intact(admin)


def test_an_environment_whose_service_vanished_is_marked_and_its_owner_told(
    make_rig: MakeRig, fake: FakeSlack, aws: AwsClients, admin: AwsClients
) -> None:
    rig = make_rig(admin_channel="#admin")
    rig.command("deploy feature/checkout", user="U0ALICE")
    rig.wait_status(LOST, "running")
    admin.ecs.delete_service(cluster=CLUSTER, service=ecs_service_name(LOST, "web"), force=True)
    result = rig.serving.lifecycle.sweep()
    assert [row["name"] for row in result.vanished] == [LOST]
    row = rig.runtime.store.get_env(LOST)
    assert row["status"] == "failed" and "vanished" in row["error"]
    rig.serving.notifier.flush()
    thread = "\n".join(thread_replies(fake, rig.deploy_message(LOST)["ts"]))
    assert "<@U0ALICE>" in thread and "vanished" in thread
    assert rig.serving.lifecycle.sweep().vanished == []  # told once

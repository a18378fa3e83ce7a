"""The engine and the deploy/stop operations on the strict AWS layer (bot/strict_aws in front
of moto's server, over HTTP, as revieee's IAM role).

The layer starts and stops tasks, registers them in Cloud Map as ECS does, keeps deleted
services DRAINING, rolls back failed deployments and refuses what AWS refuses (see the README's
Tests section for every rule and its source). moto still drops ``capacityProviderStrategy``:
the layer reports what was sent, and the tests check what was sent.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from bot.app import Runtime, build
from bot.aws import AwsClients, CallCounter
from bot.engine import Engine, EngineError, EnvSpec, ImageMissing, aws_step
from bot.events import Step
from bot.lifecycle import Lifecycle
from bot.naming import ecs_service_name, env_name, service_label, task_family
from bot.sandbox import (
    EXECUTION_ROLE_ARN,
    NAMESPACE,
    Seeded,
    fake_sha,
    push_image,
    sandbox_settings,
)
from bot.strict_aws import StrictAws
from tests.ecr_images import push_index

BRANCH = "feature/checkout"
ENV = env_name("shop", BRANCH)


def deploy(rt: Runtime, branch: str = BRANCH, **kwargs: object):  # type: ignore[no-untyped-def]
    req = rt.core.intake.request_deploy(branch, "shop", requested_by="U1", **kwargs)  # type: ignore[arg-type]
    assert rt.runner.run_until_idle(only=req.operation.id) == 1
    return rt.store.get_operation(req.operation.id)


def stop(rt: Runtime, env: str = ENV):  # type: ignore[no-untyped-def]
    req = rt.core.intake.request_stop(env, requested_by="U1")
    assert rt.runner.run_until_idle(only=req.operation.id) == 1
    return rt.store.get_operation(req.operation.id)


def cloud_map_services(admin: AwsClients) -> dict[str, dict]:
    return {s["Name"]: s for s in admin.servicediscovery.list_services()["Services"]}


def ecs_service(admin: AwsClients, cluster: str, name: str) -> dict:
    return admin.ecs.describe_services(cluster=cluster, services=[name])["services"][0]


def test_first_deploy_creates_service_registered_in_cloud_map(
    runtime: Runtime, aws: AwsClients, admin: AwsClients
) -> None:
    counter = CallCounter(aws)
    op = deploy(runtime, wait=True)
    assert op.status == "succeeded", op.error

    env = runtime.store.get_env(ENV)
    assert env is not None
    assert env["status"] == "running"
    assert env["url"] == f"https://{ENV}.review.example.test"
    assert env["owner"] == "U1" and env["branch"] == BRANCH

    cm = cloud_map_services(admin)
    assert set(cm) == {service_label(ENV, "web"), service_label(ENV, "api")}
    settings = runtime.settings
    for svc in ("web", "api"):
        described = ecs_service(admin, settings.cluster, ecs_service_name(ENV, svc))
        assert described["status"] == "ACTIVE"
        assert described["serviceRegistries"] == [
            {"registryArn": cm[service_label(ENV, svc)]["Arn"]}
        ]
        assert described["networkConfiguration"]["awsvpcConfiguration"]["subnets"] == list(
            settings.subnets
        )
        tags = admin.ecs.list_tags_for_resource(resourceArn=described["serviceArn"])["tags"]
        assert {"key": "revieee:env", "value": ENV} in tags
        assert {"key": "revieee:branch", "value": BRANCH} in tags
        assert {"key": "revieee:app", "value": "shop"} in tags
        cm_tags = admin.servicediscovery.list_tags_for_resource(
            ResourceARN=cm[service_label(ENV, svc)]["Arn"]
        )["Tags"]
        assert {"Key": "revieee:env", "Value": ENV} in cm_tags

    # moto drops capacityProviderStrategy, so check what revieee sent.
    sent = counter.params_of("ecs:CreateService")
    assert len(sent) == 2
    for params in sent:
        assert params["capacityProviderStrategy"] == [
            {"capacityProvider": "FARGATE_SPOT", "weight": 1, "base": 0}
        ]
        conf = params["deploymentConfiguration"]
        assert conf["minimumHealthyPercent"] == 100 and conf["maximumPercent"] == 200
        assert conf["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
        assert params["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"] == (
            "DISABLED"
        )


def test_task_definition_swaps_image_and_adds_variables(
    runtime: Runtime, aws: AwsClients, admin: AwsClients
) -> None:
    assert deploy(runtime, wait=True).status == "succeeded"
    td = admin.ecs.describe_task_definition(
        taskDefinition=task_family(ENV, "web"), include=["TAGS"]
    )
    container = td["taskDefinition"]["containerDefinitions"][0]
    env = {e["name"]: e["value"] for e in container["environment"]}
    web_sha = fake_sha("web" + BRANCH)
    assert env["REVIEEE_ENV"] == ENV
    assert env["REVIEEE_BRANCH"] == BRANCH
    assert env["REVIEEE_SHA"] == web_sha[:7]  # found from the tag template {branch}-{sha7}
    assert env["REVIEEE_URL"] == f"https://{ENV}.review.example.test"
    assert env["LOG_LEVEL"] == "info"  # kept from the template
    # siblings' addresses, from Cloud Map's DNS names
    assert env["REVIEEE_SERVICE_API_HOST"] == f"api.{ENV}.{NAMESPACE}"
    assert env["REVIEEE_SERVICE_API_URL"] == f"http://api.{ENV}.{NAMESPACE}:9000"
    repo_uri = admin.ecr.describe_repositories(repositoryNames=["shop-web"])["repositories"][0][
        "repositoryUri"
    ]
    digest = admin.ecr.describe_images(
        repositoryName="shop-web", imageIds=[{"imageTag": f"feature-checkout-{web_sha[:7]}"}]
    )["imageDetails"][0]["imageDigest"]
    assert container["image"] == f"{repo_uri}@{digest}"
    assert {"key": "revieee:env", "value": ENV} in td["tags"]
    # the template family itself is untouched
    template = admin.ecs.describe_task_definition(taskDefinition="shop-web")["taskDefinition"]
    assert template["revision"] == 1
    assert template["containerDefinitions"][0]["image"].startswith("public.ecr.aws/")


def test_repository_without_the_branch_falls_back_to_default_branch(
    runtime: Runtime, aws: AwsClients, admin: AwsClients
) -> None:
    assert deploy(runtime, wait=True).status == "succeeded"
    deployment = runtime.store.deployments(ENV)[0]
    images = {p["service"]: p for p in json.loads(deployment["images"])}
    assert images["web"]["branch"] == BRANCH and not images["web"]["fallback"]
    assert images["api"]["branch"] == "main" and images["api"]["fallback"]
    assert images["api"]["tag"] == f"main-{fake_sha('apimain')[:7]}"
    api_td = admin.ecs.describe_task_definition(taskDefinition=task_family(ENV, "api"))
    env = {
        e["name"]: e["value"]
        for e in api_td["taskDefinition"]["containerDefinitions"][0]["environment"]
    }
    assert env["REVIEEE_BRANCH"] == "main"
    assert env["REVIEEE_SERVICE_WEB_URL"] == f"http://web.{ENV}.{NAMESPACE}:8080"


def test_redeploy_rolls_out_new_revision_with_same_url(
    runtime: Runtime, aws: AwsClients, admin: AwsClients
) -> None:
    assert deploy(runtime, wait=True).status == "succeeded"
    url = runtime.store.get_env(ENV)["url"]  # type: ignore[index]
    new_sha = fake_sha("second commit")
    push_image(admin.ecr, "shop-web", f"feature-checkout-{new_sha[:7]}")
    counter = CallCounter(aws)
    op = deploy(runtime, sha=new_sha, wait=True)
    assert op.status == "succeeded", op.error
    env = runtime.store.get_env(ENV)
    assert env is not None
    assert env["url"] == url and env["sha"] == new_sha and env["status"] == "running"
    described = ecs_service(admin, runtime.settings.cluster, ecs_service_name(ENV, "web"))
    assert described["taskDefinition"].endswith(f"{task_family(ENV, 'web')}:2")
    assert counter.calls["ecs:UpdateService"] == 2
    assert counter.calls["ecs:CreateService"] == 0
    assert counter.calls["servicediscovery:CreateService"] == 0
    assert len(cloud_map_services(admin)) == 2
    assert [d["result"] for d in runtime.store.deployments(ENV)] == ["succeeded", "succeeded"]


def test_missing_image_is_a_clear_failure_naming_repository_and_tag(
    runtime: Runtime, aws: AwsClients, admin: AwsClients
) -> None:
    op = deploy(runtime, branch="no-such-branch", sha="abcdef1234567", wait=True)
    assert op.status == "failed"
    assert "no image shop-web:no-such-branch-abcdef1" in op.error  # type: ignore[operator]
    assert op.error.startswith("resolving image")  # type: ignore[union-attr]
    env = runtime.store.get_env(env_name("shop", "no-such-branch"))
    assert env is not None and env["status"] == "failed"
    assert "shop-web:no-such-branch-abcdef1" in env["error"]
    dep = runtime.store.deployments(env["name"])[0]
    assert dep["result"] == "failed" and "no image" in dep["failure_reason"]
    assert admin.ecs.list_services(cluster=runtime.settings.cluster)["serviceArns"] == []


def test_missing_image_without_sha_names_the_tag_pattern(runtime: Runtime) -> None:
    op = deploy(runtime, branch="ghost", wait=True)
    assert op.status == "failed"
    assert "no image shop-web:ghost-<sha7> for any commit" in op.error  # type: ignore[operator]


def test_missing_ecr_repository_and_template_are_named(
    seeded: Seeded, aws: AwsClients, admin: AwsClients, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    settings = sandbox_settings(seeded, str(tmp_path / "db.sqlite"))
    engine = Engine(aws, settings)
    app = settings.apps["shop"]
    admin.ecr.delete_repository(repositoryName="shop-api", force=True)
    spec = EnvSpec(app, ENV, BRANCH, "https://x")
    with pytest.raises(EngineError) as err:
        engine.plan(spec)
    assert "ECR repository shop-api" in str(err.value) and "does not exist" in str(err.value)
    admin.ecs.deregister_task_definition(taskDefinition="shop-web:1")
    problems = engine.check()
    assert any(p.startswith("apps.shop.services.web.task_definition") for p in problems)
    assert any(p.startswith("apps.shop.services.api.ecr_repository") for p in problems)


def test_first_deploy_whose_image_cannot_be_pulled_fails_with_the_reason(
    seeded: Seeded, aws: AwsClients, admin: AwsClients, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """An image built for arm64 only (a laptop's buildx default) cannot run on X86_64 Fargate:
    its tasks stop with CannotPullContainerError, the circuit breaker fails the deployment and,
    with nothing to roll back to, the service stays FAILED."""
    settings = sandbox_settings(seeded, str(tmp_path / "db.sqlite"), deploy_timeout=10)
    push_index(admin.ecr, "shop-web", "arm-only-1234567", platforms=("linux/arm64",))
    engine = Engine(aws, settings)
    spec = EnvSpec(settings.apps["shop"], env_name("shop", "arm-only"), "arm-only", "https://x")
    started = datetime.now(UTC)
    plans = engine.plan(spec, sha="1234567" + "0" * 33)
    states = engine.deploy(spec, plans)
    with pytest.raises(EngineError) as err:
        engine.wait(
            spec, since=started, expected={s.ecs_service: s.task_definition for s in states}
        )
    message = str(err.value)
    name = ecs_service_name(spec.env, "web")
    assert message.startswith("waiting for the services to become stable: " + name)
    assert "ECS deployment circuit breaker: tasks failed to start." in message
    assert "3 task(s) failed to start" in message
    assert "CannotPullContainerError" in message and "no match for platform" in message


def test_timeout_marks_environment_failed(seeded: Seeded, aws: AwsClients, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = sandbox_settings(seeded, str(tmp_path / "db.sqlite"), deploy_timeout=0.2)
    rt = build(settings, clients=aws)
    try:
        op = deploy(rt, wait=True)
        assert op.status == "failed"
        assert "not stable after 0.2s" in op.error  # type: ignore[operator]
        env = rt.store.get_env(ENV)
        assert env["status"] == "failed"  # type: ignore[index]
        assert rt.store.deployments(ENV)[0]["failure_reason"] == op.error
        actions = [e["action"] for e in rt.store.audit_events(ENV)]
        assert actions == ["deploy requested", "deploy failed"]
    finally:
        rt.close()


def test_failed_redeploy_keeps_running_environment_running(runtime: Runtime) -> None:
    assert deploy(runtime, wait=True).status == "succeeded"
    lines: list[str] = []
    runtime.bus.subscribe(Step, lambda e: lines.append(e.message))
    op = deploy(runtime, sha="1234567abcdef", wait=True)
    assert op.status == "failed"
    assert lines[-1].endswith("(the previous version keeps serving)")
    env = runtime.store.get_env(ENV)
    assert env["status"] == "running"  # type: ignore[index]
    assert "no image shop-web:feature-checkout-1234567" in env["error"]  # type: ignore[index]


def test_environment_that_never_served_stays_failed_on_a_second_failure(
    runtime: Runtime,
) -> None:
    assert deploy(runtime, branch="ghost", wait=True).status == "failed"
    assert deploy(runtime, branch="ghost", sha="abcdef1", wait=True).status == "failed"
    env = runtime.store.get_env(env_name("shop", "ghost"))
    assert env is not None and env["status"] == "failed"
    assert "ghost-abcdef1" in env["error"]


def test_redeploy_failing_while_first_rollout_never_served_stays_failed(
    seeded: Seeded,
    aws: AwsClients,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    """The services exist but no task ever ran: a second failure must not claim that a
    previous version keeps serving."""
    rt = build(
        sandbox_settings(seeded, str(tmp_path / "db.sqlite"), deploy_timeout=0.2), clients=aws
    )
    try:
        lines: list[str] = []
        rt.bus.subscribe(Step, lambda e: lines.append(e.message))
        assert deploy(rt, wait=True).status == "failed"
        assert deploy(rt, sha="0000000", wait=True).status == "failed"
        assert rt.store.get_env(ENV)["status"] == "failed"  # type: ignore[index]
        assert not any("keeps serving" in line for line in lines)
    finally:
        rt.close()


def test_deploy_without_wait_then_status_shows_running_and_the_scheduler_settles_it(
    runtime: Runtime, aws: AwsClients, strict: StrictAws
) -> None:
    strict.ecs.task_start = 3.0  # long enough to see "not yet" on a busy machine
    op = deploy(runtime, wait=False)
    assert op.status == "succeeded"
    assert runtime.store.get_env(ENV)["status"] == "deploying"  # type: ignore[index]
    assert runtime.store.deployments(ENV)[0]["result"] == "started"
    # The tasks take task_start to run: status asks ECS, and says so meanwhile.
    status = runtime.core.queries.status(ENV)
    assert status["env"]["status"] == "deploying"
    assert status["live"]["web"]["running"] == 0
    deadline = time.monotonic() + 15
    while status["env"]["status"] != "running" and time.monotonic() < deadline:
        time.sleep(0.2)
        status = runtime.core.queries.status(ENV)
    assert status["env"]["status"] == "running"
    assert status["live"]["web"]["running"] == 1 and status["live"]["web"]["status"] == "ACTIVE"
    assert status["live"]["web"]["rollout"] == "COMPLETED"
    # a query never writes: the store learns it from the scheduler's expiry job
    assert runtime.store.get_env(ENV)["status"] == "deploying"  # type: ignore[index]
    Lifecycle(runtime.settings, runtime.store, runtime.core).expire()
    assert runtime.store.get_env(ENV)["status"] == "running"  # type: ignore[index]


def test_stop_removes_every_resource(
    runtime: Runtime, aws: AwsClients, admin: AwsClients, strict: StrictAws
) -> None:
    assert deploy(runtime, wait=True).status == "succeeded"
    cm = cloud_map_services(admin)[service_label(ENV, "web")]
    # ECS registered the running task in Cloud Map (the strict layer does what ECS does): an
    # asynchronous operation, which ListInstances shows a moment later
    deadline = time.monotonic() + 5
    while not (listed := admin.servicediscovery.list_instances(ServiceId=cm["Id"])["Instances"]):
        assert time.monotonic() < deadline, "ECS never registered the task in Cloud Map"
        time.sleep(0.1)
    assert len(listed) == 1 and listed[0]["Attributes"]["ECS_SERVICE_NAME"].endswith("-web")
    counter = CallCounter(aws)
    lines: list[str] = []
    runtime.bus.subscribe(Step, lambda e: lines.append(e.message))
    op = stop(runtime)
    assert op.status == "succeeded", op.error
    # ECS deregisters a deleted service's tasks itself: ours met its operation and waited.
    assert "DeregisterInstance: DuplicateRequest" in strict.cloud_map.refused
    assert any(line.startswith("waiting for 1 instance(s) of web.") for line in lines)
    deleted = f"deleted Cloud Map service {service_label(ENV, 'web')}"
    assert f"{deleted} after 1 instance(s) were deregistered" in lines
    assert counter.calls["ecs:DeleteService"] == 2
    assert cloud_map_services(admin) == {}
    for svc in ("web", "api"):
        described = ecs_service(admin, runtime.settings.cluster, ecs_service_name(ENV, svc))
        assert described["status"] in ("DRAINING", "INACTIVE")  # DRAINING for a while
        active = admin.ecs.list_task_definitions(
            familyPrefix=task_family(ENV, svc), status="ACTIVE"
        )
        assert active["taskDefinitionArns"] == []
    # the template families are not touched
    assert (
        admin.ecs.describe_task_definition(taskDefinition="shop-web")["taskDefinition"]["status"]
        == "ACTIVE"
    )
    env = runtime.store.get_env(ENV)
    assert env["status"] == "stopped"  # type: ignore[index]
    assert [e["action"] for e in runtime.store.audit_events(ENV)][-1] == "stopped"


def test_stop_of_resources_already_gone_succeeds_and_says_so(
    runtime: Runtime, aws: AwsClients, admin: AwsClients
) -> None:
    assert deploy(runtime, wait=True).status == "succeeded"
    cluster = runtime.settings.cluster
    admin.ecs.delete_service(cluster=cluster, service=ecs_service_name(ENV, "web"), force=True)
    web = cloud_map_services(admin)[service_label(ENV, "web")]["Id"]
    # Cloud Map refuses to delete a service with instances (or registrations under way, which
    # ListInstances shows late): wait for ECS to deregister them.
    deadline = time.monotonic() + 10
    while True:
        try:
            admin.servicediscovery.delete_service(Id=web)
            break
        except admin.servicediscovery.exceptions.ResourceInUse:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    lines: list[str] = []
    runtime.bus.subscribe(Step, lambda e: lines.append(e.message))
    op = stop(runtime)
    assert op.status == "succeeded", op.error
    assert f"ECS service {ecs_service_name(ENV, 'web')} was already gone" in lines
    assert f"deleted ECS service {ecs_service_name(ENV, 'api')}" in lines
    assert f"Cloud Map service {service_label(ENV, 'web')} was already gone" in lines
    assert any(line.startswith("deleted Cloud Map service api.") for line in lines)
    # and again, now that everything is gone
    lines.clear()
    op = stop(runtime)
    assert op.status == "succeeded"
    assert sum("already gone" in line for line in lines) == 6


def test_stop_unknown_environment_is_refused_with_a_hint(runtime: Runtime) -> None:
    from bot.core import RequestError

    assert deploy(runtime, wait=True).status == "succeeded"
    with pytest.raises(RequestError) as err:
        runtime.core.intake.request_stop("shop-feature-checkou")
    assert ENV in str(err.value)


@pytest.mark.denials  # the role may describe only the stack's own cluster
def test_check_passes_on_the_sandbox_and_names_what_is_missing(
    seeded: Seeded, aws: AwsClients, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    good = sandbox_settings(seeded, str(tmp_path / "db.sqlite"))
    assert Engine(aws, good).check() == []
    bad = sandbox_settings(
        seeded,
        str(tmp_path / "db.sqlite"),
        cluster="nope",
        namespace="missing.internal",
        subnets=[*seeded.subnets, "subnet-0000000000000dead"],
        security_groups=["sg-0000000000000dead"],
    )
    problems = Engine(aws, bad).check()
    assert any(p.startswith("cluster: ECS cluster 'nope'") for p in problems)
    assert any(p.startswith("namespace: Cloud Map namespace 'missing.internal'") for p in problems)
    assert "subnets: subnet-0000000000000dead does not exist" in problems
    assert "security_groups: sg-0000000000000dead does not exist" in problems
    assert not any(seeded.subnets[0] in p for p in problems)


def test_missing_image_does_not_raise_for_image_template_service(
    seeded: Seeded, aws: AwsClients, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """A service with a plain image template (no ECR lookup) needs a commit when the template
    uses one, and says so."""
    from bot.config import settings_from_mapping
    from bot.sandbox import sandbox_config

    data = sandbox_config(seeded, str(tmp_path / "db.sqlite"))
    web = data["apps"]["shop"]["services"]["web"]
    del web["ecr_repository"], web["tag"]
    web["image"] = "ghcr.io/acme/web:{branch}-{sha7}"
    settings = settings_from_mapping(data, environ={})
    engine = Engine(aws, settings)
    spec = EnvSpec(settings.apps["shop"], ENV, BRANCH, "https://x")
    with pytest.raises(EngineError, match="needs a commit: pass --sha"):
        engine.plan(spec)
    plans = engine.plan(spec, sha="abcdef0123456789abcdef0123456789abcdef01")
    assert plans[0].image == "ghcr.io/acme/web:feature-checkout-abcdef0"


def test_image_missing_is_engine_error_subclass() -> None:
    assert issubclass(ImageMissing, EngineError)
    assert str(ImageMissing("step", "what")) == "step: what"


def test_a_commit_belongs_to_one_repository(
    runtime: Runtime, aws: AwsClients, admin: AwsClients
) -> None:
    """Both repositories have the branch: ``--sha`` (a web commit) picks web's image; api keeps
    its own branch head, unless the commit is said to be api's."""
    api_sha = fake_sha("api" + BRANCH)
    push_image(admin.ecr, "shop-api", f"feature-checkout-{api_sha[:7]}")
    web_sha = fake_sha("web" + BRANCH)
    spec = EnvSpec(runtime.settings.apps["shop"], ENV, BRANCH, "https://x")
    plans = {p.service: p for p in runtime.engine.plan(spec, sha=web_sha)}
    assert (plans["web"].sha, plans["web"].fallback) == (web_sha, False)
    # found from its newest branch image's tag ({branch}-{sha7})
    assert (plans["api"].sha, plans["api"].fallback) == (api_sha[:7], False)

    plans = {
        p.service: p for p in runtime.engine.plan(spec, sha=api_sha, sha_repository="acme/shop-api")
    }
    assert plans["api"].sha == api_sha and plans["web"].sha == web_sha[:7]


# -- what the strict layer showed ----------------------------------------------------------------


def test_a_deploy_the_circuit_breaker_rolled_back_is_a_failure_that_says_so(
    runtime: Runtime, admin: AwsClients
) -> None:
    """After a rollback ECS shows one deployment, running == desired, on the OLD revision:
    that is not Ready."""
    assert deploy(runtime, wait=True).status == "succeeded"
    sha = "abcdef1" + "0" * 33
    push_index(admin.ecr, "shop-web", f"feature-checkout-{sha[:7]}", platforms=("linux/arm64",))
    lines: list[str] = []
    runtime.bus.subscribe(Step, lambda e: lines.append(f"{e.step}: {e.message}"))
    op = deploy(runtime, sha=sha, wait=True)
    assert op.status == "failed"
    web = ecs_service_name(ENV, "web")
    family = task_family(ENV, "web")
    assert f"{web}: the deployment of {family}:2 failed and ECS rolled back to revision 1" in (
        op.error or ""
    )
    assert "CannotPullContainerError" in (op.error or "")
    assert lines[-1].endswith("(the previous version keeps serving)")
    assert not any(line.startswith("ready:") for line in lines)
    env = runtime.store.get_env(ENV)
    assert env is not None and env["status"] == "running"
    services = {s["service"]: s for s in json.loads(env["services"])}
    assert services["web"]["task_definition"].endswith(f"{family}:1")  # what ECS runs again
    described = ecs_service(admin, runtime.settings.cluster, web)
    assert described["taskDefinition"].endswith(f"{family}:1")
    assert runtime.store.deployments(ENV)[0]["result"] == "failed"
    # and status agrees: the environment is stable on revision 1
    assert runtime.core.queries.status(ENV)["env"]["status"] == "running"


def test_a_redeploy_right_after_a_stop_waits_out_draining(
    runtime: Runtime, strict: StrictAws
) -> None:
    strict.ecs.drain = 4.0  # longer than the stop takes (minutes on AWS)
    assert deploy(runtime, wait=True).status == "succeeded"
    assert stop(runtime).status == "succeeded"
    lines: list[str] = []
    runtime.bus.subscribe(Step, lambda e: lines.append(f"{e.step}: {e.message}"))
    op = deploy(runtime, wait=True)
    assert op.status == "succeeded", op.error
    web = ecs_service_name(ENV, "web")
    waiting = f"waiting for ECS service {web} to finish draining"
    assert any(line.startswith(waiting + ": ") and "still draining" in line for line in lines)
    assert any(line.startswith(waiting + ": ") and "drained after" in line for line in lines)
    assert not [r for r in strict.ecs.refused if "Draining" in r]


@pytest.mark.parametrize("branch", ["fix/#123", "fix(login)"])
def test_branches_with_characters_tags_refuse_deploy(
    runtime: Runtime, admin: AwsClients, strict: StrictAws, branch: str
) -> None:
    """Tag values may not contain # or parentheses (ECS and Cloud Map refuse the create): the
    tag is folded, the branch itself is kept."""
    from bot.naming import image_tag_part

    sha = fake_sha(branch)
    push_image(admin.ecr, "shop-web", f"{image_tag_part(branch)}-{sha[:7]}")
    op = deploy(runtime, branch=branch, sha=sha, wait=True)
    assert op.status == "succeeded", op.error
    env = env_name("shop", branch)
    assert runtime.store.get_env(env)["branch"] == branch  # type: ignore[index]
    described = ecs_service(admin, runtime.settings.cluster, ecs_service_name(env, "web"))
    tags = admin.ecs.list_tags_for_resource(resourceArn=described["serviceArn"])["tags"]
    value = {t["key"]: t["value"] for t in tags}["revieee:branch"]
    assert value == branch.replace("#", "_").replace("(", "_").replace(")", "_")
    assert not strict.ecs.refused


def test_the_strict_layer_refuses_a_tag_value_aws_refuses(admin: AwsClients) -> None:
    with pytest.raises(admin.ecs.exceptions.InvalidParameterException, match="invalid characters"):
        admin.ecs.register_task_definition(
            family="x",
            containerDefinitions=[{"name": "a", "image": "i", "memory": 512}],
            tags=[{"key": "revieee:branch", "value": "fix/#123"}],
        )


def test_an_app_of_twelve_services_is_described_ten_at_a_time(
    seeded: Seeded, aws: AwsClients, admin: AwsClients, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """DescribeServices takes at most 10 services: waiting for and describing an environment
    of 12 services takes two calls a look."""
    from bot.config import settings_from_mapping
    from bot.sandbox import sandbox_config, template_task_definition

    data = sandbox_config(seeded, str(tmp_path / "db.sqlite"), deploy_timeout=20)
    web = data["apps"]["shop"]["services"]["web"]
    for i in range(10):
        template_task_definition(admin.ecs, f"shop-w{i}", "web", 8080)
        data["apps"]["shop"]["services"][f"w{i}"] = {
            **{k: v for k, v in web.items() if k != "public"},
            "task_definition": f"shop-w{i}",
        }
    rt = build(settings_from_mapping(data, environ={}), clients=aws)
    try:
        counter = CallCounter(aws)
        op = deploy(rt, wait=True)
        assert op.status == "succeeded", op.error
        sent = counter.params_of("ecs:DescribeServices")
        assert sent and all(len(p["services"]) <= 10 for p in sent)
        assert any(len(p["services"]) == 10 for p in sent)
        live = rt.core.queries.status(ENV)["live"]
        assert len(live) == 12 and all(s["status"] == "ACTIVE" for s in live.values())
    finally:
        rt.close()


def test_the_strict_layer_refuses_eleven_services_at_once(admin: AwsClients) -> None:
    with pytest.raises(admin.ecs.exceptions.InvalidParameterException, match="at most 10"):
        admin.ecs.describe_services(
            cluster="revieee-sandbox", services=[f"s{i}" for i in range(11)]
        )


def test_an_arm64_template_runs_on_fargate_not_spot(
    seeded: Seeded, aws: AwsClients, admin: AwsClients, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    admin.ecs.register_task_definition(
        family="shop-web",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        runtimePlatform={"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"},
        executionRoleArn=EXECUTION_ROLE_ARN,
        containerDefinitions=[
            {
                "name": "web",
                "image": "nginx",
                "memory": 512,
                "essential": True,
                "portMappings": [{"containerPort": 8080}],
            }
        ],
    )
    sha = "fedcba9" + "0" * 33
    push_index(admin.ecr, "shop-web", f"feature-checkout-{sha[:7]}", platforms=("linux/arm64",))
    rt = build(
        sandbox_settings(seeded, str(tmp_path / "db.sqlite"), deploy_timeout=10), clients=aws
    )
    try:
        counter = CallCounter(aws)
        lines: list[str] = []
        rt.bus.subscribe(Step, lambda e: lines.append(e.message))
        op = deploy(rt, sha=sha, wait=True)
        assert op.status == "succeeded", op.error
        strategies = {
            p["serviceName"]: p["capacityProviderStrategy"]
            for p in counter.params_of("ecs:CreateService")
        }
        web, api = ecs_service_name(ENV, "web"), ecs_service_name(ENV, "api")
        assert strategies[web] == [{"capacityProvider": "FARGATE", "weight": 1, "base": 0}]
        assert strategies[api][0]["capacityProvider"] == "FARGATE_SPOT"  # x86: unchanged
        assert "web: ARM64 tasks cannot run on Fargate Spot: running on FARGATE" in lines
    finally:
        rt.close()


def test_an_invalid_fargate_size_is_said_before_aws_refuses_it(
    seeded: Seeded, aws: AwsClients, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """memory = 4096 alone is a Fargate value, but not with the template's 256 CPU units."""
    from bot.config import settings_from_mapping
    from bot.sandbox import sandbox_config

    data = sandbox_config(seeded, str(tmp_path / "db.sqlite"))
    data["apps"]["shop"]["services"]["web"]["memory"] = 4096
    rt = build(settings_from_mapping(data, environ={}), clients=aws)
    try:
        counter = CallCounter(aws)
        op = deploy(rt, wait=True)
        assert op.status == "failed"
        assert op.error == (
            f"registering task definition {task_family(ENV, 'web')}: No Fargate configuration "
            "exists for given values: 256 CPU, 4096 memory (256 CPU units take 512, 1024 or "
            "2048 MiB) (memory from the configuration, cpu from the template shop-web)"
        )
        assert counter.calls["ecs:RegisterTaskDefinition"] == 0
    finally:
        rt.close()


def test_the_strict_layer_refuses_an_invalid_fargate_size(admin: AwsClients) -> None:
    with pytest.raises(admin.ecs.exceptions.ClientException, match="No Fargate configuration"):
        admin.ecs.register_task_definition(
            family="x",
            requiresCompatibilities=["FARGATE"],
            networkMode="awsvpc",
            cpu="256",
            memory="4096",
            containerDefinitions=[{"name": "a", "image": "i", "memory": 512}],
        )


def test_the_namespace_by_id_and_an_ambiguous_name(
    seeded: Seeded, aws: AwsClients, admin: AwsClients, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    by_id = Engine(
        aws, sandbox_settings(seeded, str(tmp_path / "a.db"), namespace=seeded.namespace_id)
    )
    assert by_id.namespace() == (seeded.namespace_id, NAMESPACE)
    other_vpc = admin.ec2.create_vpc(CidrBlock="10.78.0.0/16")["Vpc"]["VpcId"]
    admin.servicediscovery.create_private_dns_namespace(Name=NAMESPACE, Vpc=other_vpc)
    by_name = Engine(aws, sandbox_settings(seeded, str(tmp_path / "b.db")))
    with pytest.raises(
        EngineError, match=r"2 namespaces have this name .*: set namespace to the id"
    ):
        by_name.namespace()
    assert by_id.namespace()[0] == seeded.namespace_id


def test_aws_step_answers_the_codes_it_is_given_and_names_the_step_otherwise(
    runtime: Runtime, aws: AwsClients
) -> None:
    """The one translation of AWS errors: an expected refusal is an answer, any other error an
    EngineError that names the step."""
    step = "looking for shop-web:never-pushed"
    missing = {"repositoryName": "shop-web", "imageIds": [{"imageTag": "never-pushed"}]}
    gone = ("ImageNotFoundException",)
    with aws_step(step, ok_codes=gone) as refused:
        aws.ecr.describe_images(**missing)
    assert refused.code == "ImageNotFoundException"
    assert refused.message.startswith("ImageNotFoundException: ")
    with pytest.raises(EngineError) as err, aws_step(step):
        aws.ecr.describe_images(**missing)
    assert err.value.step == step
    assert str(err.value).startswith(f"{step}: ImageNotFoundException")
    with aws_step(step, ok_codes=gone) as fine:
        aws.ecr.describe_repositories(repositoryNames=["shop-web"])
    assert fine.code is None

"""The engine and the deploy/stop operations against moto's server, over HTTP.

moto limits, said where they matter: ECS services never start tasks (``runningCount`` follows
``MOTO_ECS_SERVICE_RUNNING`` or an ``update_service(desiredCount=...)``),
``capacityProviderStrategy`` is accepted but dropped (so we check what was *sent*), and ECS does
not register tasks in Cloud Map (so instances are registered by the test where they matter).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from bot.app import Runtime, build
from bot.aws import AwsClients, CallCounter
from bot.engine import Engine, EngineError, EnvSpec, ImageMissing
from bot.naming import ecs_service_name, env_name, service_label, task_family
from bot.sandbox import NAMESPACE, Seeded, fake_sha, push_image, sandbox_settings

BRANCH = "feature/checkout"
ENV = env_name("shop", BRANCH)


def deploy(rt: Runtime, branch: str = BRANCH, **kwargs: object):  # type: ignore[no-untyped-def]
    req = rt.apps.request_deploy(branch, "shop", requested_by="U1", **kwargs)  # type: ignore[arg-type]
    assert rt.runner.run_until_idle(only=req.operation.id) == 1
    return rt.store.get_operation(req.operation.id)


def stop(rt: Runtime, env: str = ENV):  # type: ignore[no-untyped-def]
    req = rt.apps.request_stop(env, requested_by="U1")
    assert rt.runner.run_until_idle(only=req.operation.id) == 1
    return rt.store.get_operation(req.operation.id)


def cloud_map_services(aws: AwsClients) -> dict[str, dict]:
    return {s["Name"]: s for s in aws.servicediscovery.list_services()["Services"]}


def ecs_service(aws: AwsClients, cluster: str, name: str) -> dict:
    return aws.ecs.describe_services(cluster=cluster, services=[name])["services"][0]


def test_first_deploy_creates_service_registered_in_cloud_map(
    runtime: Runtime, aws: AwsClients, tasks_run: None
) -> None:
    counter = CallCounter(aws)
    op = deploy(runtime, wait=True)
    assert op.status == "succeeded", op.error

    env = runtime.store.get_env(ENV)
    assert env is not None
    assert env["status"] == "running"
    assert env["url"] == f"https://{ENV}.review.example.test"
    assert env["owner"] == "U1" and env["branch"] == BRANCH

    cm = cloud_map_services(aws)
    assert set(cm) == {service_label(ENV, "web"), service_label(ENV, "api")}
    settings = runtime.settings
    for svc in ("web", "api"):
        described = ecs_service(aws, settings.cluster, ecs_service_name(ENV, svc))
        assert described["status"] == "ACTIVE"
        assert described["serviceRegistries"] == [
            {"registryArn": cm[service_label(ENV, svc)]["Arn"]}
        ]
        assert described["networkConfiguration"]["awsvpcConfiguration"]["subnets"] == list(
            settings.subnets
        )
        tags = aws.ecs.list_tags_for_resource(resourceArn=described["serviceArn"])["tags"]
        assert {"key": "revieee:env", "value": ENV} in tags
        assert {"key": "revieee:branch", "value": BRANCH} in tags
        assert {"key": "revieee:app", "value": "shop"} in tags
        cm_tags = aws.servicediscovery.list_tags_for_resource(
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
    runtime: Runtime, aws: AwsClients, tasks_run: None
) -> None:
    assert deploy(runtime, wait=True).status == "succeeded"
    td = aws.ecs.describe_task_definition(taskDefinition=task_family(ENV, "web"), include=["TAGS"])
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
    repo_uri = aws.ecr.describe_repositories(repositoryNames=["shop-web"])["repositories"][0][
        "repositoryUri"
    ]
    digest = aws.ecr.describe_images(
        repositoryName="shop-web", imageIds=[{"imageTag": f"feature-checkout-{web_sha[:7]}"}]
    )["imageDetails"][0]["imageDigest"]
    assert container["image"] == f"{repo_uri}@{digest}"
    assert {"key": "revieee:env", "value": ENV} in td["tags"]
    # the template family itself is untouched
    template = aws.ecs.describe_task_definition(taskDefinition="shop-web")["taskDefinition"]
    assert template["revision"] == 1
    assert template["containerDefinitions"][0]["image"].startswith("public.ecr.aws/")


def test_repository_without_the_branch_falls_back_to_default_branch(
    runtime: Runtime, aws: AwsClients, tasks_run: None
) -> None:
    assert deploy(runtime, wait=True).status == "succeeded"
    deployment = runtime.store.deployments(ENV)[0]
    images = {p["service"]: p for p in json.loads(deployment["images"])}
    assert images["web"]["branch"] == BRANCH and not images["web"]["fallback"]
    assert images["api"]["branch"] == "main" and images["api"]["fallback"]
    assert images["api"]["tag"] == f"main-{fake_sha('apimain')[:7]}"
    api_td = aws.ecs.describe_task_definition(taskDefinition=task_family(ENV, "api"))
    env = {
        e["name"]: e["value"]
        for e in api_td["taskDefinition"]["containerDefinitions"][0]["environment"]
    }
    assert env["REVIEEE_BRANCH"] == "main"
    assert env["REVIEEE_SERVICE_WEB_URL"] == f"http://web.{ENV}.{NAMESPACE}:8080"


def test_redeploy_rolls_out_new_revision_with_same_url(
    runtime: Runtime, aws: AwsClients, tasks_run: None
) -> None:
    assert deploy(runtime, wait=True).status == "succeeded"
    url = runtime.store.get_env(ENV)["url"]  # type: ignore[index]
    new_sha = fake_sha("second commit")
    push_image(aws.ecr, "shop-web", f"feature-checkout-{new_sha[:7]}")
    counter = CallCounter(aws)
    op = deploy(runtime, sha=new_sha, wait=True)
    assert op.status == "succeeded", op.error
    env = runtime.store.get_env(ENV)
    assert env is not None
    assert env["url"] == url and env["sha"] == new_sha and env["status"] == "running"
    described = ecs_service(aws, runtime.settings.cluster, ecs_service_name(ENV, "web"))
    assert described["taskDefinition"].endswith(f"{task_family(ENV, 'web')}:2")
    assert counter.calls["ecs:UpdateService"] == 2
    assert counter.calls["ecs:CreateService"] == 0
    assert counter.calls["servicediscovery:CreateService"] == 0
    assert len(cloud_map_services(aws)) == 2
    assert [d["result"] for d in runtime.store.deployments(ENV)] == ["succeeded", "succeeded"]


def test_missing_image_is_a_clear_failure_naming_repository_and_tag(
    runtime: Runtime, aws: AwsClients
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
    assert aws.ecs.list_services(cluster=runtime.settings.cluster)["serviceArns"] == []


def test_missing_image_without_sha_names_the_tag_pattern(runtime: Runtime) -> None:
    op = deploy(runtime, branch="ghost", wait=True)
    assert op.status == "failed"
    assert "no image shop-web:ghost-<sha7> for any commit" in op.error  # type: ignore[operator]


def test_missing_ecr_repository_and_template_are_named(
    seeded: Seeded, aws: AwsClients, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    settings = sandbox_settings(seeded, str(tmp_path / "db.sqlite"))
    engine = Engine(aws, settings)
    app = settings.apps["shop"]
    aws.ecr.delete_repository(repositoryName="shop-api", force=True)
    spec = EnvSpec(app, ENV, BRANCH, "https://x")
    with pytest.raises(EngineError) as err:
        engine.plan(spec)
    assert "ECR repository shop-api" in str(err.value) and "does not exist" in str(err.value)
    aws.ecs.deregister_task_definition(taskDefinition="shop-web:1")
    problems = engine.check()
    assert any(p.startswith("apps.shop.services.web.task_definition") for p in problems)
    assert any(p.startswith("apps.shop.services.api.ecr_repository") for p in problems)


def test_service_that_never_becomes_stable_fails_with_reasons(
    seeded: Seeded, aws: AwsClients, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """moto never starts or stops a service's tasks, so the test stops one itself (through the
    ECS API, with the group ECS gives service tasks) to stand in for a task that crashed."""
    settings = sandbox_settings(seeded, str(tmp_path / "db.sqlite"), deploy_timeout=0.3)
    engine = Engine(aws, settings)
    spec = EnvSpec(settings.apps["shop"], ENV, BRANCH, "https://x")
    started = datetime.now(UTC)
    engine.deploy(spec, engine.plan(spec))
    name = ecs_service_name(ENV, "web")
    task = aws.ecs.run_task(
        cluster=settings.cluster,
        taskDefinition=task_family(ENV, "web"),
        launchType="FARGATE",
        group=f"service:{name}",
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": list(settings.subnets),
                "securityGroups": list(settings.security_groups),
            }
        },
    )["tasks"][0]
    aws.ecs.stop_task(
        cluster=settings.cluster,
        task=task["taskArn"],
        reason="CannotPullContainerError: pull access denied for shop-web",
    )
    with pytest.raises(EngineError) as err:
        engine.wait(spec, since=started)
    message = str(err.value)
    assert message.startswith("waiting for the services to become stable")
    assert f"{name} not stable after 0.3s: 0 of 1 tasks running" in message
    assert "CannotPullContainerError: pull access denied for shop-web" in message


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


def test_failed_redeploy_keeps_running_environment_running(
    runtime: Runtime, tasks_run: None
) -> None:
    assert deploy(runtime, wait=True).status == "succeeded"
    lines: list[str] = []
    runtime.apps.listeners.append(lambda op, step, message: lines.append(message))
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
        rt.apps.listeners.append(lambda op, step, message: lines.append(message))
        assert deploy(rt, wait=True).status == "failed"
        assert deploy(rt, sha="0000000", wait=True).status == "failed"
        assert rt.store.get_env(ENV)["status"] == "failed"  # type: ignore[index]
        assert not any("keeps serving" in line for line in lines)
    finally:
        rt.close()


def test_deploy_without_wait_then_status_marks_running(
    runtime: Runtime, aws: AwsClients, tasks_run: None
) -> None:
    op = deploy(runtime, wait=False)
    assert op.status == "succeeded"
    assert runtime.store.get_env(ENV)["status"] == "deploying"  # type: ignore[index]
    assert runtime.store.deployments(ENV)[0]["result"] == "started"
    status = runtime.apps.status(ENV)
    assert status["env"]["status"] == "running"
    assert status["live"]["web"]["running"] == 1 and status["live"]["web"]["status"] == "ACTIVE"


def test_stop_removes_every_resource(runtime: Runtime, aws: AwsClients, tasks_run: None) -> None:
    assert deploy(runtime, wait=True).status == "succeeded"
    cm = cloud_map_services(aws)[service_label(ENV, "web")]
    # ECS does not register tasks in Cloud Map in moto; register one as ECS would.
    aws.servicediscovery.register_instance(
        ServiceId=cm["Id"], InstanceId="task-1", Attributes={"AWS_INSTANCE_IPV4": "10.77.1.10"}
    )
    counter = CallCounter(aws)
    op = stop(runtime)
    assert op.status == "succeeded", op.error
    assert counter.calls["servicediscovery:DeregisterInstance"] == 1
    assert counter.calls["ecs:DeleteService"] == 2
    assert cloud_map_services(aws) == {}
    for svc in ("web", "api"):
        described = ecs_service(aws, runtime.settings.cluster, ecs_service_name(ENV, svc))
        assert described["status"] == "INACTIVE"
        active = aws.ecs.list_task_definitions(familyPrefix=task_family(ENV, svc), status="ACTIVE")
        assert active["taskDefinitionArns"] == []
    # the template families are not touched
    assert (
        aws.ecs.describe_task_definition(taskDefinition="shop-web")["taskDefinition"]["status"]
        == "ACTIVE"
    )
    env = runtime.store.get_env(ENV)
    assert env["status"] == "stopped"  # type: ignore[index]
    assert [e["action"] for e in runtime.store.audit_events(ENV)][-1] == "stopped"


def test_stop_of_resources_already_gone_succeeds_and_says_so(
    runtime: Runtime, aws: AwsClients, tasks_run: None
) -> None:
    assert deploy(runtime, wait=True).status == "succeeded"
    cluster = runtime.settings.cluster
    aws.ecs.delete_service(cluster=cluster, service=ecs_service_name(ENV, "web"), force=True)
    for svc in cloud_map_services(aws).values():
        aws.servicediscovery.delete_service(Id=svc["Id"])
    lines: list[str] = []
    runtime.apps.listeners.append(lambda op, step, message: lines.append(message))
    op = stop(runtime)
    assert op.status == "succeeded", op.error
    assert f"ECS service {ecs_service_name(ENV, 'web')} was already gone" in lines
    assert f"deleted ECS service {ecs_service_name(ENV, 'api')}" in lines
    assert f"Cloud Map service {service_label(ENV, 'web')} was already gone" in lines
    # and again, now that everything is gone
    lines.clear()
    op = stop(runtime)
    assert op.status == "succeeded"
    assert sum("already gone" in line for line in lines) == 6


def test_stop_unknown_environment_is_refused_with_a_hint(runtime: Runtime, tasks_run: None) -> None:
    from bot.review import RequestError

    assert deploy(runtime, wait=True).status == "succeeded"
    with pytest.raises(RequestError) as err:
        runtime.apps.request_stop("shop-feature-checkou")
    assert ENV in str(err.value)


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


def test_a_commit_belongs_to_one_repository(runtime: Runtime, aws: AwsClients) -> None:
    """Both repositories have the branch: ``--sha`` (a web commit) picks web's image; api keeps
    its own branch head, unless the commit is said to be api's."""
    api_sha = fake_sha("api" + BRANCH)
    push_image(aws.ecr, "shop-api", f"feature-checkout-{api_sha[:7]}")
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

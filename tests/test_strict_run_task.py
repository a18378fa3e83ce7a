"""One-off ECS tasks on the strict layer (bot/strict_aws/ecs.py): RunTask is the model's, the
task goes PROVISIONING -> PENDING -> RUNNING -> STOPPED, a program decides what its command does,
what it writes lands in its awslogs stream; RunTask's refusals, StopTask, ListTasks, and the
IAM requests RunTask and StopTask make."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from bot.aws import AwsClients
from bot.logtail import CloudWatchTail
from bot.sandbox import CLUSTER, EXECUTION_ROLE_ARN, Seeded
from bot.strict_aws import ROLE_KEY, Call, Outcome, Run, StrictAws
from bot.strict_aws.iam import RequestBuilder

GROUP = "/ecs/shop-jobs"
FAMILY = "shop-jobs"
TASK_ROLE = "arn:aws:iam::123456789012:role/shop-jobs-task"
CLUSTER_ARN = f"arn:aws:ecs:us-east-1:123456789012:cluster/{CLUSTER}"


def register(
    admin: AwsClients,
    family: str = FAMILY,
    group: str | None = GROUP,
    create_group: bool = False,
    sidecar: bool = False,
) -> str:
    """A task definition of one essential container ``app`` (command ``serve``), logging to
    ``group`` with the awslogs driver (prefix ``shop``), and maybe a sidecar."""
    app: dict[str, Any] = {
        "name": "app",
        "image": "public.ecr.aws/nginx/nginx:latest",
        "essential": True,
        "command": ["serve"],
        "environment": [
            {"name": "LOG_LEVEL", "value": "info"},
            {"name": "DATABASE", "value": "shop"},
        ],
    }
    if group is not None:
        options = {
            "awslogs-group": group,
            "awslogs-region": "us-east-1",
            "awslogs-stream-prefix": "shop",
        }
        if create_group:
            options["awslogs-create-group"] = "true"
        app["logConfiguration"] = {"logDriver": "awslogs", "options": options}
    containers = [app]
    if sidecar:
        containers.append(
            {"name": "proxy", "image": "public.ecr.aws/nginx/nginx:latest", "essential": False}
        )
    return str(
        admin.ecs.register_task_definition(
            family=family,
            networkMode="awsvpc",
            requiresCompatibilities=["FARGATE"],
            cpu="256",
            memory="512",
            executionRoleArn=EXECUTION_ROLE_ARN,
            taskRoleArn=TASK_ROLE,
            containerDefinitions=containers,
        )["taskDefinition"]["taskDefinitionArn"]
    )


def network(seeded: Seeded) -> dict[str, Any]:
    return {
        "awsvpcConfiguration": {
            "subnets": list(seeded.subnets),
            "securityGroups": list(seeded.security_groups),
            "assignPublicIp": "DISABLED",
        }
    }


def run(
    admin: AwsClients, seeded: Seeded, td: str, command: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "cluster": CLUSTER,
        "taskDefinition": td,
        "launchType": "FARGATE",
        "networkConfiguration": network(seeded),
        **extra,
    }
    if command is not None:
        kwargs["overrides"] = {"containerOverrides": [{"name": "app", "command": command}]}
    answer: dict[str, Any] = admin.ecs.run_task(**kwargs)
    return answer


def describe(admin: AwsClients, arn: str) -> dict[str, Any]:
    task: dict[str, Any] = admin.ecs.describe_tasks(cluster=CLUSTER, tasks=[arn])["tasks"][0]
    return task


def wait(admin: AwsClients, arn: str, status: str = "STOPPED", timeout: float = 4.0) -> list[str]:
    """The statuses the task went through until ``status``."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = describe(admin, arn)["lastStatus"]
        if not seen or seen[-1] != last:
            seen.append(last)
        if last == status:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"task {arn} never reached {status}: {seen}")


def refusal(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    error = exc.value.response["Error"]
    return error["Code"], error["Message"]


def test_a_run_goes_through_its_life_and_leaves_the_programs_exit_code_and_log(
    admin: AwsClients, seeded: Seeded, strict: StrictAws
) -> None:
    lines = ["Running migrations:", "  Applying shop.0001_initial... OK", "done"]
    strict.ecs.programs["migrate"] = lambda run: Outcome(exit_code=3, seconds=0.8, lines=lines)
    td = register(admin)
    admin.logs.create_log_group(logGroupName=GROUP)

    answer = run(admin, seeded, td, ["migrate", "--noinput"], startedBy="revieee-migrate")
    assert answer["failures"] == []
    [task] = answer["tasks"]
    assert task["lastStatus"] == "PROVISIONING"
    assert task["desiredStatus"] == "RUNNING"
    assert task["taskDefinitionArn"] == td
    assert task["group"] == f"family:{FAMILY}"
    assert task["startedBy"] == "revieee-migrate"
    assert task["overrides"]["containerOverrides"] == [
        {"name": "app", "command": ["migrate", "--noinput"]}
    ]

    seen = wait(admin, task["taskArn"], "RUNNING")
    assert seen[0] in ("PROVISIONING", "PENDING")
    assert describe(admin, task["taskArn"])["containers"][0]["lastStatus"] == "RUNNING"
    assert wait(admin, task["taskArn"]) == ["RUNNING", "STOPPED"]
    done = describe(admin, task["taskArn"])
    assert done["desiredStatus"] == "STOPPED"
    assert done["stopCode"] == "EssentialContainerExited"
    assert done["stoppedReason"] == "Essential container in task exited"
    assert [(c["name"], c["lastStatus"], c["exitCode"]) for c in done["containers"]] == [
        ("app", "STOPPED", 3)
    ]
    assert done["startedAt"] < done["stoppedAt"]
    assert (done["stoppedAt"] - done["startedAt"]).total_seconds() == pytest.approx(0.8, abs=0.1)

    task_id = task["taskArn"].rsplit("/", 1)[-1]
    stream = f"shop/app/{task_id}"  # prefix-name/container-name/ecs-task-id
    assert CloudWatchTail(admin.logs, GROUP, stream).drain() == lines
    events = admin.logs.get_log_events(
        logGroupName=GROUP, logStreamName=stream, startFromHead=True
    )["events"]
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(set(stamps))  # one event per line, in order
    assert strict.ecs.runs[0]["startedBy"] == "revieee-migrate"


def test_the_program_sees_the_overridden_command_and_environment_and_sidecars_stop_too(
    admin: AwsClients, seeded: Seeded, strict: StrictAws
) -> None:
    told: list[Run] = []

    def remember(run: Run) -> Outcome:
        told.append(run)
        return Outcome(seconds=0.1)

    strict.ecs.programs["manage.py"] = remember
    strict.ecs.programs["serve"] = remember
    td = register(admin, group=None, sidecar=True)
    override = {
        "name": "app",
        "command": ["manage.py", "seed", "--demo"],
        "environment": [{"name": "DATABASE", "value": "review"}, {"name": "SEED", "value": "1"}],
    }
    first = admin.ecs.run_task(
        cluster=CLUSTER,
        taskDefinition=f"{FAMILY}:1",
        launchType="FARGATE",
        networkConfiguration=network(seeded),
        overrides={"containerOverrides": [override]},
    )["tasks"][0]
    plain = run(admin, seeded, FAMILY)["tasks"][0]  # by family, no override
    wait(admin, first["taskArn"])
    wait(admin, plain["taskArn"])

    by_arn = {r.task_arn: r for r in told}
    seeding = by_arn[first["taskArn"]]
    assert seeding.task_definition == td
    assert seeding.container == "app"
    assert seeding.command == ["manage.py", "seed", "--demo"]
    assert seeding.environment == {"LOG_LEVEL": "info", "DATABASE": "review", "SEED": "1"}
    assert seeding.started_by is None
    served = by_arn[plain["taskArn"]]
    assert served.command == ["serve"]  # the container definition's
    assert served.environment == {"LOG_LEVEL": "info", "DATABASE": "shop"}

    done = describe(admin, first["taskArn"])
    assert "startedBy" not in done
    exits = {c["name"]: (c["lastStatus"], c.get("exitCode")) for c in done["containers"]}
    assert exits == {"app": ("STOPPED", 0), "proxy": ("STOPPED", 143)}


def test_a_program_is_found_by_the_whole_command_then_by_its_first_word(
    admin: AwsClients, seeded: Seeded, strict: StrictAws
) -> None:
    strict.ecs.programs["seed --demo"] = lambda run: Outcome(exit_code=0, seconds=0.05)
    strict.ecs.programs["seed"] = lambda run: Outcome(exit_code=7, seconds=0.05)
    td = register(admin, group=None)
    exact = run(admin, seeded, td, ["seed", "--demo"])["tasks"][0]["taskArn"]
    word = run(admin, seeded, td, ["seed", "--all"])["tasks"][0]["taskArn"]
    unknown = run(admin, seeded, td, ["true"])["tasks"][0]["taskArn"]
    for arn in (exact, word, unknown):
        wait(admin, arn)
    assert describe(admin, exact)["containers"][0]["exitCode"] == 0
    assert describe(admin, word)["containers"][0]["exitCode"] == 7
    default = describe(admin, unknown)  # no program: exit 0 after 0.3 s
    assert default["containers"][0]["exitCode"] == 0
    assert (default["stoppedAt"] - default["startedAt"]).total_seconds() == pytest.approx(
        0.3, abs=0.15
    )


def test_run_task_refuses_what_ecs_refuses(
    admin: AwsClients, seeded: Seeded, strict: StrictAws
) -> None:
    td = register(admin, group=None)
    calls = {
        "no network": (
            {"taskDefinition": td, "launchType": "FARGATE"},
            "InvalidParameterException",
            "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
        ),
        "unknown container": (
            {
                "taskDefinition": td,
                "launchType": "FARGATE",
                "networkConfiguration": network(seeded),
                "overrides": {"containerOverrides": [{"name": "web", "command": ["x"]}]},
            },
            "InvalidParameterException",
            "Override for container named web is not a container in the TaskDefinition.",
        ),
        "overrides too long": (
            {
                "taskDefinition": td,
                "launchType": "FARGATE",
                "networkConfiguration": network(seeded),
                "overrides": {
                    "containerOverrides": [
                        {"name": "app", "environment": [{"name": "BIG", "value": "x" * 8150}]}
                    ]
                },
            },
            "InvalidParameterException",
            "Container Overrides length must be at most 8192",
        ),
        "unknown task definition": (
            {
                "taskDefinition": "shop-nothing:1",
                "launchType": "FARGATE",
                "networkConfiguration": network(seeded),
            },
            "ClientException",
            "TaskDefinition not found.",
        ),
        "launch type and strategy": (
            {
                "taskDefinition": td,
                "launchType": "FARGATE",
                "capacityProviderStrategy": [{"capacityProvider": "FARGATE_SPOT", "weight": 1}],
                "networkConfiguration": network(seeded),
            },
            "InvalidParameterException",
            "Specifying both a launch type and capacity provider strategy is not supported. "
            "Remove one and try again.",
        ),
        "count": (
            {
                "taskDefinition": td,
                "launchType": "FARGATE",
                "networkConfiguration": network(seeded),
                "count": 11,
            },
            "InvalidParameterException",
            "Task count can not be greater than 10",
        ),
        "no launch type": (  # no default strategy on the cluster: EC2, which it has none of
            {"taskDefinition": td, "networkConfiguration": network(seeded)},
            "InvalidParameterException",
            "No Container Instances were found in your cluster.",
        ),
        "startedBy": (
            {
                "taskDefinition": td,
                "launchType": "FARGATE",
                "networkConfiguration": network(seeded),
                "startedBy": "revieee:migrate",
            },
            "InvalidParameterException",
            "startedBy: up to 128 letters",
        ),
    }
    for what, (params, code, message) in calls.items():
        with pytest.raises(ClientError) as exc:
            admin.ecs.run_task(cluster=CLUSTER, **params)
        assert refusal(exc)[0] == code, what
        assert refusal(exc)[1].startswith(message), what
    # at the limit: accepted (the limit counts the JSON as it is sent)
    fits = {"containerOverrides": [{"name": "app", "environment": [{"name": "B", "value": ""}]}]}
    pad = 8192 - len(json.dumps(fits))
    fits["containerOverrides"][0]["environment"][0]["value"] = "x" * pad
    assert len(json.dumps(fits)) == 8192
    assert run(admin, seeded, td, overrides=fits)["tasks"]
    with pytest.raises(ClientError) as exc:
        admin.ecs.run_task(
            cluster="no-such-cluster",
            taskDefinition=td,
            launchType="FARGATE",
            networkConfiguration=network(seeded),
        )
    assert refusal(exc) == ("ClusterNotFoundException", "Cluster not found.")
    assert len(strict.ecs.runs) == 1  # only the one that fit


def test_an_inactive_revision_cannot_run_and_a_family_runs_its_latest_active_revision(
    admin: AwsClients, seeded: Seeded, strict: StrictAws
) -> None:
    first = register(admin, group=None)
    second = register(admin, group=None)
    admin.ecs.deregister_task_definition(taskDefinition=second)
    with pytest.raises(ClientError) as exc:
        run(admin, seeded, second)
    assert refusal(exc) == ("InvalidParameterException", "TaskDefinition is inactive")
    # moto would answer the family's newest revision, INACTIVE or not; ECS takes the ACTIVE one
    assert run(admin, seeded, FAMILY)["tasks"][0]["taskDefinitionArn"] == first
    admin.ecs.deregister_task_definition(taskDefinition=first)
    with pytest.raises(ClientError) as exc:
        run(admin, seeded, FAMILY)
    assert refusal(exc) == ("ClientException", "TaskDefinition not found.")


def test_a_client_token_makes_run_task_idempotent(
    admin: AwsClients, seeded: Seeded, strict: StrictAws
) -> None:
    td = register(admin, group=None)
    one = run(admin, seeded, td, ["migrate"], clientToken="deploy-42-migrate")["tasks"]
    again = run(admin, seeded, td, ["migrate"], clientToken="deploy-42-migrate")["tasks"]
    assert [t["taskArn"] for t in again] == [t["taskArn"] for t in one]
    other = run(admin, seeded, td, ["migrate"], clientToken="deploy-43-migrate")["tasks"]
    assert other[0]["taskArn"] != one[0]["taskArn"]
    listed = admin.ecs.list_tasks(cluster=CLUSTER, family=FAMILY)["taskArns"]
    assert sorted(listed) == sorted([one[0]["taskArn"], other[0]["taskArn"]])
    assert len(strict.ecs.runs) == 2
    with pytest.raises(ClientError) as exc:
        run(admin, seeded, td, clientToken="x" * 65)
    assert refusal(exc)[0] == "InvalidParameterException"


def test_a_run_over_the_fargate_vcpu_quota_is_not_started(
    admin: AwsClients, seeded: Seeded, strict: StrictAws
) -> None:
    strict.ecs.vcpu_quota["FARGATE"] = 0.25  # one 256-unit task
    td = register(admin, group=None)
    strict.ecs.programs["sleep"] = lambda run: Outcome(seconds=30)
    first = run(admin, seeded, td, ["sleep"])
    assert first["failures"] == [] and len(first["tasks"]) == 1
    assert strict.ecs.vcpu_in_use("FARGATE") == 0.25  # one-off tasks count
    second = run(admin, seeded, td, ["sleep"])
    assert second["tasks"] == []
    assert second["failures"] == [
        {
            "arn": td,
            "reason": "You've reached the limit on the number of vCPUs you can run concurrently",
        }
    ]
    wait(admin, first["tasks"][0]["taskArn"], "RUNNING")
    admin.ecs.stop_task(cluster=CLUSTER, task=first["tasks"][0]["taskArn"])
    assert wait(admin, first["tasks"][0]["taskArn"])[-2:] == ["DEACTIVATING", "STOPPED"]
    assert strict.ecs.vcpu_in_use("FARGATE") == 0
    assert len(run(admin, seeded, td, ["sleep"])["tasks"]) == 1


def test_a_missing_log_group_fails_the_task_and_create_group_creates_it(
    admin: AwsClients, seeded: Seeded, strict: StrictAws
) -> None:
    called: list[Run] = []
    strict.ecs.programs["migrate"] = lambda run: called.append(run) or Outcome(lines=["ok"])
    td = register(admin, group="/ecs/nowhere")
    arn = run(admin, seeded, td, ["migrate"])["tasks"][0]["taskArn"]
    assert "RUNNING" not in wait(admin, arn)
    task = describe(admin, arn)
    assert task["stopCode"] == "TaskFailedToStart"
    assert task["stoppedReason"].startswith(
        "ResourceInitializationError: failed to validate logger args: "
    )
    assert "The specified log group does not exist." in task["stoppedReason"]
    assert "exitCode" not in task["containers"][0]
    assert called == []  # the command never ran

    created = register(admin, family="shop-jobs-created", group="/ecs/created", create_group=True)
    arn = run(admin, seeded, created, ["migrate"])["tasks"][0]["taskArn"]
    wait(admin, arn)
    assert describe(admin, arn)["containers"][0]["exitCode"] == 0
    stream = f"shop/app/{arn.rsplit('/', 1)[-1]}"
    assert CloudWatchTail(admin.logs, "/ecs/created", stream).drain() == ["ok"]
    assert len(called) == 1


def test_stop_task_stops_a_running_one_off_for_good(
    admin: AwsClients, seeded: Seeded, strict: StrictAws
) -> None:
    lines = [f"row {i}" for i in range(10)]
    strict.ecs.programs["seed"] = lambda run: Outcome(exit_code=0, seconds=1.2, lines=lines)
    td = register(admin)
    admin.logs.create_log_group(logGroupName=GROUP)
    arn = run(admin, seeded, td, ["seed"])["tasks"][0]["taskArn"]
    wait(admin, arn, "RUNNING")
    time.sleep(0.3)
    stopping = admin.ecs.stop_task(cluster=CLUSTER, task=arn, reason="revieee: cancelled")["task"]
    assert stopping["taskArn"] == arn
    assert stopping["desiredStatus"] == "STOPPED"
    wait(admin, arn)
    time.sleep(0.9)  # past the end the program gave it: it does not finish it again
    task = describe(admin, arn)
    assert task["stopCode"] == "UserInitiated"
    assert task["stoppedReason"] == "revieee: cancelled"
    assert task["containers"][0]["exitCode"] == 143
    written = CloudWatchTail(admin.logs, GROUP, f"shop/app/{arn.rsplit('/', 1)[-1]}").drain()
    assert 0 < len(written) < len(lines)  # what it wrote before it was stopped
    assert written == lines[: len(written)]

    pending = run(admin, seeded, td, ["seed"])["tasks"][0]["taskArn"]
    admin.ecs.stop_task(cluster=CLUSTER, task=pending.rsplit("/", 1)[-1])  # by id
    wait(admin, pending)
    before = describe(admin, pending)
    assert before["stoppedReason"] == "Task stopped by user"
    assert "exitCode" not in before["containers"][0]  # it never ran

    with pytest.raises(ClientError) as exc:
        admin.ecs.stop_task(cluster=CLUSTER, task="0123456789abcdef0123456789abcdef")
    assert refusal(exc) == ("InvalidParameterException", "The referenced task was not found.")


def test_list_tasks_finds_one_off_tasks_by_started_by_family_and_status(
    admin: AwsClients, seeded: Seeded, strict: StrictAws
) -> None:
    strict.ecs.programs["sleep"] = lambda run: Outcome(seconds=30)
    td = register(admin, group=None)
    mine = run(admin, seeded, td, ["sleep"], startedBy="revieee/migrate")["tasks"][0]["taskArn"]
    tags = [{"key": "revieee:env", "value": "shop-pr-7"}]
    other = run(admin, seeded, td, ["sleep"], startedBy="someone-else", tags=tags)["tasks"][0][
        "taskArn"
    ]
    found = admin.ecs.list_tasks(cluster=CLUSTER, startedBy="revieee/migrate")["taskArns"]
    assert found == [mine]
    assert sorted(admin.ecs.list_tasks(cluster=CLUSTER, family=FAMILY)["taskArns"]) == sorted(
        [mine, other]
    )
    assert admin.ecs.list_tasks(cluster=CLUSTER, family="shop-web")["taskArns"] == []
    admin.ecs.stop_task(cluster=CLUSTER, task=mine)
    wait(admin, mine)
    assert admin.ecs.list_tasks(cluster=CLUSTER, startedBy="revieee/migrate")["taskArns"] == []
    stopped = admin.ecs.list_tasks(
        cluster=CLUSTER, startedBy="revieee/migrate", desiredStatus="STOPPED"
    )["taskArns"]
    assert stopped == [mine]
    both = admin.ecs.describe_tasks(cluster=CLUSTER, tasks=[mine, other])["tasks"]
    assert [(t["taskArn"], t["desiredStatus"]) for t in both] == [
        (mine, "STOPPED"),
        (other, "RUNNING"),
    ]
    [tagged] = admin.ecs.describe_tasks(cluster=CLUSTER, tasks=[other], include=["TAGS"])["tasks"]
    assert tagged["tags"] == tags
    with pytest.raises(ClientError) as exc:
        run(admin, seeded, td, tags=[{"key": "aws:env", "value": "x"}])
    assert refusal(exc)[0] == "InvalidParameterException"


def test_the_iam_requests_of_run_task_and_stop_task(
    admin: AwsClients, seeded: Seeded, strict: StrictAws
) -> None:
    td = register(admin, group=None)
    admin.ecs.tag_resource(resourceArn=td, tags=[{"key": "app", "value": "shop"}])
    builder = RequestBuilder(strict._upstream)
    params = {
        "cluster": CLUSTER,
        "taskDefinition": f"{FAMILY}:1",
        "capacityProviderStrategy": [{"capacityProvider": "FARGATE_SPOT", "weight": 1}],
        "overrides": {"cpu": "512", "memory": "1024", "taskRoleArn": TASK_ROLE + "-other"},
        "tags": [{"key": "revieee:env", "value": "shop-pr-7"}],
    }
    requests = builder.requests(Call("ecs", "RunTask", params, ROLE_KEY, "us-east-1"))
    assert [r.action for r in requests] == [
        "ecs:RunTask",
        "ecs:TagResource",
        "iam:PassRole",
        "iam:PassRole",
        "iam:PassRole",
    ]
    main = requests[0]
    assert main.resource == td  # the revision's ARN
    assert main.context == {
        "ecs:cluster": CLUSTER_ARN,
        "aws:ResourceTag/app": "shop",
        "aws:RequestTag/revieee:env": "shop-pr-7",
        "aws:TagKeys": ["revieee:env"],
        "ecs:capacity-provider": [
            "arn:aws:ecs:us-east-1:123456789012:capacity-provider/FARGATE_SPOT"
        ],
        "ecs:task-cpu": "512",
        "ecs:task-memory": "1024",
    }
    tag = requests[1]
    assert tag.resource.startswith(f"arn:aws:ecs:us-east-1:123456789012:task/{CLUSTER}/")
    assert tag.context["ecs:CreateAction"] == "RunTask"
    assert [r.resource for r in requests[2:]] == [
        TASK_ROLE,
        EXECUTION_ROLE_ARN,
        TASK_ROLE + "-other",
    ]
    passed = {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    assert all(r.context == passed for r in requests[2:])

    [stop] = builder.requests(
        Call("ecs", "StopTask", {"cluster": CLUSTER, "task": "abc123"}, ROLE_KEY, "us-east-1")
    )
    assert stop.action == "ecs:StopTask"
    assert stop.resource == f"arn:aws:ecs:us-east-1:123456789012:task/{CLUSTER}/abc123"
    assert stop.context == {"ecs:cluster": CLUSTER_ARN}


@pytest.mark.denials  # the stack's role runs only tagged tasks of revieee's task definitions
def test_the_stacks_role_may_not_run_other_task_definitions_or_untagged_tasks(
    aws: AwsClients, admin: AwsClients, seeded: Seeded, strict: StrictAws
) -> None:
    td = register(admin, group=None)
    with pytest.raises(ClientError) as exc:
        run(aws, seeded, td, ["migrate"])
    assert refusal(exc)[0] == "AccessDeniedException"
    assert [d.action for d in strict.denials] == ["ecs:RunTask"]
    assert strict.denials[0].resource == td
    assert strict.ecs.runs == []


def test_stop_task_of_a_service_task_is_user_initiated_and_the_service_replaces_it(
    admin: AwsClients, seeded: Seeded, strict: StrictAws
) -> None:
    admin.ecs.create_service(
        cluster=CLUSTER,
        serviceName="shop-web-pr-1",
        taskDefinition="shop-web",
        desiredCount=1,
        launchType="FARGATE",
        networkConfiguration=network(seeded),
    )
    [first] = admin.ecs.list_tasks(cluster=CLUSTER, serviceName="shop-web-pr-1")["taskArns"]
    wait(admin, first, "RUNNING")
    admin.ecs.stop_task(cluster=CLUSTER, task=first, reason="revieee: restart")
    wait(admin, first)
    stopped = describe(admin, first)
    assert (stopped["stopCode"], stopped["stoppedReason"]) == ("UserInitiated", "revieee: restart")
    assert stopped["group"] == "service:shop-web-pr-1"
    [second] = admin.ecs.list_tasks(cluster=CLUSTER, serviceName="shop-web-pr-1")["taskArns"]
    assert second != first

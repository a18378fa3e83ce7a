"""``revieee check --permissions``: what the configuration needs IAM to allow, asked of IAM.

Every call revieee makes for the configured apps becomes one or more authorization requests as
AWS builds them (Service Authorization Reference: the resource ARN of each action and the
condition keys it is evaluated with), including the actions AWS checks besides the one called:
``ecs:TagResource`` for a tagged create (with ``ecs:CreateAction``), ``iam:PassRole`` for the
template task definitions' roles, ``servicediscovery:TagResource``, Route 53 health checks for
``DeregisterInstance``. ``iam:SimulatePrincipalPolicy`` decides each one for the caller's own
role, before the first deploy; what is denied is listed with the statement that allows it.

The role needs ``iam:SimulatePrincipalPolicy`` on itself (the stack grants it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from bot.aws import AwsClients, describe_error
from bot.config import Settings
from bot.engine import Engine, EngineError
from bot.naming import ecs_service_name, env_name, task_family

SAMPLE_BRANCH = "revieee-check"
ECS_TASKS = "ecs-tasks.amazonaws.com"


@dataclass(frozen=True, eq=False)
class Need:
    """One authorization request revieee's work implies, and the grant that covers it."""

    action: str
    resource: str
    why: str
    context: dict[str, Any] = field(default_factory=dict)
    grant: str = ""  # the resource pattern to allow (default: ``resource``)
    conditions: dict[str, Any] = field(default_factory=dict)  # for the suggested statement

    def statement(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "Effect": "Allow",
            "Action": self.action,
            "Resource": self.grant or self.resource,
        }
        if self.conditions:
            out["Condition"] = self.conditions
        return out

    def describe(self) -> str:
        keys = {
            k: v
            for k, v in self.context.items()
            if k in ("ecs:CreateAction", "iam:PassedToService", "ecs:cluster")
        }
        when = ", ".join(f"{k}={v}" for k, v in keys.items())
        return f"{self.action} on {self.resource}" + (f" ({when})" if when else "")


def caller_role(aws: AwsClients) -> str:
    """The IAM role ARN of the caller's credentials (an assumed role's session ARN mapped back
    to ``role/<name>``; roles with a path need ``--role``)."""
    arn = str(aws.sts.get_caller_identity()["Arn"])
    if ":assumed-role/" in arn:
        prefix, rest = arn.split(":assumed-role/", 1)
        account = prefix.rsplit(":", 1)[-1]
        return f"arn:aws:iam::{account}:role/{rest.split('/', 1)[0]}"
    return arn


def needs(settings: Settings, engine: Engine, account: str) -> list[Need]:
    """Every authorization request the configuration implies, for a sample environment of each
    app (``<app>-revieee-check``)."""
    region = engine.aws.ecs.meta.region_name
    s = settings

    def arn(service: str, resource: str) -> str:
        return f"arn:aws:{service}:{region}:{account}:{resource}"

    cluster_arn = arn("ecs", f"cluster/{s.cluster}")
    cluster = {"ecs:cluster": cluster_arn}
    in_cluster = {"ArnEquals": {"ecs:cluster": cluster_arn}}
    tagged_request = {"Null": {"aws:RequestTag/revieee:env": "false"}}
    tagged_resource = {"Null": {"aws:ResourceTag/revieee:env": "false"}}
    out: list[Need] = [
        Need("ecs:DescribeClusters", cluster_arn, "check: the cluster exists"),
        Need("ecs:ListServices", "*", "the orphan sweeper", cluster, conditions=in_cluster),
        Need(
            "ecs:ListTasks",
            arn("ecs", f"container-instance/{s.cluster}/any"),
            "why a rollout failed: stopped tasks",
            cluster,
            grant="*",
            conditions=in_cluster,
        ),
        Need(
            "ecs:DescribeTasks",
            arn("ecs", f"task/{s.cluster}/example"),
            "why a rollout failed: stopped tasks",
            cluster,
            grant="*",
            conditions=in_cluster,
        ),
    ]
    for action in ("DescribeTaskDefinition", "DeregisterTaskDefinition", "ListTaskDefinitions"):
        out.append(Need(f"ecs:{action}", "*", "task definitions (only * is supported)"))
    out += [
        Need("ec2:DescribeSubnets", "*", "check: the subnets exist"),
        Need("ec2:DescribeSecurityGroups", "*", "check: the security groups exist"),
        Need("servicediscovery:ListNamespaces", "*", "finding the namespace by name"),
        Need("servicediscovery:ListServices", "*", "finding Cloud Map services"),
    ]
    if not s.fargate_vcpu_quota:
        for code in ("L-3032A538", "L-36FBB829"):
            out.append(
                Need(
                    "servicequotas:GetServiceQuota",
                    arn("servicequotas", f"fargate/{code}"),
                    "the Fargate vCPU quota a deploy must fit in (or set fargate_vcpu_quota)",
                    {"servicequotas:service": "fargate"},
                )
            )
    try:
        ns_id, _ = engine.namespace()
    except EngineError:
        ns_id = ""
    namespace_arn = arn("servicediscovery", f"namespace/{ns_id or 'ns-unknown'}")
    out.append(Need("servicediscovery:GetNamespace", namespace_arn, "the namespace's name"))
    roles: dict[str, str] = {}
    for app in s.apps.values():
        env = env_name(app.name, SAMPLE_BRANCH)
        tags = {"revieee:app": app.name, "revieee:env": env, "revieee:branch": SAMPLE_BRANCH}
        request_tags = {
            **{f"aws:RequestTag/{k}": v for k, v in tags.items()},
            "aws:TagKeys": list(tags),
        }
        resource_tags = {f"aws:ResourceTag/{k}": v for k, v in tags.items()}
        cm_service = arn("servicediscovery", "service/srv-revieeecheck0")
        out += [
            Need(
                "servicediscovery:CreateService",
                namespace_arn,
                f"{app.name}: creating an environment's Cloud Map services",
                {**request_tags, "servicediscovery:NamespaceArn": namespace_arn},
                conditions=tagged_request,
            ),
            Need(
                "servicediscovery:CreateService",
                cm_service,
                f"{app.name}: creating an environment's Cloud Map services",
                {**request_tags, "servicediscovery:NamespaceArn": namespace_arn},
                grant=arn("servicediscovery", "service/*"),
                conditions=tagged_request,
            ),
            Need(
                "servicediscovery:TagResource",
                "*",
                f"{app.name}: tags on the Cloud Map services revieee creates",
                request_tags,
                conditions=tagged_request,
            ),
        ]
        for action in ("DeleteService", "DeregisterInstance"):
            out.append(
                Need(
                    f"servicediscovery:{action}",
                    cm_service,
                    f"{app.name}: stopping an environment",
                    {**resource_tags, "servicediscovery:ServiceArn": cm_service},
                    grant=arn("servicediscovery", "service/*"),
                    conditions=tagged_resource,
                )
            )
        for action in ("ListInstances", "GetService"):
            out.append(
                Need(
                    f"servicediscovery:{action}",
                    cm_service,
                    f"{app.name}: stopping an environment",
                    {"servicediscovery:ServiceArn": cm_service},
                    grant="*",
                )
            )
        for action in ("GetHealthCheck", "DeleteHealthCheck", "UpdateHealthCheck"):
            out.append(
                Need(
                    f"route53:{action}",
                    "arn:aws:route53:::healthcheck/00000000-0000-0000-0000-000000000000",
                    f"{app.name}: Cloud Map's DeregisterInstance removes the health check",
                    grant="arn:aws:route53:::healthcheck/*",
                )
            )
        for svc in app.services:
            td = arn("ecs", f"task-definition/{task_family(env, svc.name)}:1")
            service = arn("ecs", f"service/{s.cluster}/{ecs_service_name(env, svc.name)}")
            where = f"{app.name}.{svc.name}"
            out += [
                Need(
                    "ecs:RegisterTaskDefinition",
                    td,
                    f"{where}: a task definition per environment",
                    request_tags,
                    grant=arn("ecs", "task-definition/revieee-*"),
                    conditions=tagged_request,
                ),
                Need(
                    "ecs:TagResource",
                    td,
                    f"{where}: tags on the task definitions revieee registers",
                    {**request_tags, "ecs:CreateAction": "RegisterTaskDefinition"},
                    grant=arn("ecs", "task-definition/revieee-*"),
                    conditions={"StringEquals": {"ecs:CreateAction": "RegisterTaskDefinition"}},
                ),
                Need(
                    "ecs:CreateService",
                    service,
                    f"{where}: the environment's ECS service",
                    {**request_tags, **cluster},
                    grant=arn("ecs", f"service/{s.cluster}/*"),
                    conditions=tagged_request,
                ),
                Need(
                    "ecs:TagResource",
                    service,
                    f"{where}: tags on the ECS services revieee creates",
                    {**request_tags, "ecs:CreateAction": "CreateService"},
                    grant=arn("ecs", f"service/{s.cluster}/*"),
                    conditions={"StringEquals": {"ecs:CreateAction": "CreateService"}},
                ),
                Need(
                    "ecs:DescribeServices",
                    service,
                    f"{where}: waiting for a rollout",
                    {**resource_tags, **cluster},
                    grant="*",
                    conditions=in_cluster,
                ),
            ]
            for action in ("UpdateService", "DeleteService"):
                out.append(
                    Need(
                        f"ecs:{action}",
                        service,
                        f"{where}: redeploying, sleeping and stopping",
                        {**resource_tags, **cluster},
                        grant=arn("ecs", f"service/{s.cluster}/*"),
                        conditions=tagged_resource,
                    )
                )
            if any(t.service == svc.name for t in app.tasks):
                out += [
                    Need(
                        "ecs:RunTask",
                        td,
                        f"{where}: its lifecycle tasks (on_create, release, on_stop)",
                        {**request_tags, **resource_tags, **cluster},
                        grant=arn("ecs", "task-definition/revieee-*"),
                        conditions={**in_cluster, **tagged_request},
                    ),
                    Need(
                        "ecs:TagResource",
                        arn("ecs", f"task/{s.cluster}/example"),
                        f"{where}: tags on its lifecycle tasks",
                        {**request_tags, "ecs:CreateAction": "RunTask"},
                        grant=arn("ecs", f"task/{s.cluster}/*"),
                        conditions={"StringEquals": {"ecs:CreateAction": "RunTask"}},
                    ),
                    Need(
                        "ecs:StopTask",
                        arn("ecs", f"task/{s.cluster}/example"),
                        f"{where}: stopping a lifecycle task that ran over its timeout",
                        cluster,
                        grant=arn("ecs", f"task/{s.cluster}/*"),
                        conditions=in_cluster,
                    ),
                ]
            template = _template(engine.aws, svc.task_definition)
            for key in ("executionRoleArn", "taskRoleArn"):
                role = template.get(key)
                if role and role not in roles:
                    roles[role] = where
                    out.append(
                        Need(
                            "iam:PassRole",
                            role,
                            f"{where}: the template's {key}, passed to each environment",
                            {"iam:PassedToService": ECS_TASKS},
                            conditions={"StringEquals": {"iam:PassedToService": ECS_TASKS}},
                        )
                    )
            for group in _log_groups(template):
                group_arn = arn("logs", f"log-group:{group}")
                out += [
                    Need("logs:FilterLogEvents", group_arn, f"{where}: `logs`"),
                    Need(
                        "logs:GetLogEvents",
                        f"{group_arn}:log-stream:example",
                        f"{where}: `logs`",
                        grant=f"{group_arn}:*",
                    ),
                ]
            if svc.ecr_repository:
                repo = arn("ecr", f"repository/{svc.ecr_repository}")
                for action in (
                    "DescribeImages",
                    "DescribeRepositories",
                    "ListImages",
                    "BatchGetImage",
                    "BatchDeleteImage",
                ):
                    out.append(Need(f"ecr:{action}", repo, f"{where}: its images"))
            if svc.codebuild_project:
                project = arn("codebuild", f"project/{svc.codebuild_project}")
                for action in ("StartBuild", "StopBuild", "BatchGetBuilds", "BatchGetProjects"):
                    out.append(Need(f"codebuild:{action}", project, f"{where}: building images"))
                group = arn("logs", f"log-group:/aws/codebuild/{svc.codebuild_project}")
                out.append(
                    Need(
                        "logs:GetLogEvents",
                        f"{group}:log-stream:example",
                        f"{where}: the build log in the thread",
                        grant=f"{group}:*",
                    )
                )
    unique: dict[tuple[str, str], Need] = {}
    for need in out:
        unique.setdefault((need.action, need.resource), need)
    return list(unique.values())


def _template(aws: AwsClients, family: str) -> dict[str, Any]:
    try:
        found = aws.ecs.describe_task_definition(taskDefinition=family)
    except (ClientError, BotoCoreError):
        return {}
    return dict(found["taskDefinition"])


def _log_groups(template: dict[str, Any]) -> list[str]:
    groups = []
    for container in template.get("containerDefinitions", []):
        config = container.get("logConfiguration") or {}
        if config.get("logDriver") == "awslogs":
            group = (config.get("options") or {}).get("awslogs-group")
            if group:
                groups.append(str(group))
    return list(dict.fromkeys(groups))


def simulate(aws: AwsClients, role: str, wanted: list[Need]) -> list[tuple[Need, str]]:
    """IAM's decision (``allowed``, ``implicitDeny``, ``explicitDeny``) for each need."""
    out = []
    for need in wanted:
        entries = [
            {
                "ContextKeyName": key,
                "ContextKeyValues": value if isinstance(value, list) else [str(value)],
                "ContextKeyType": "stringList" if isinstance(value, list) else "string",
            }
            for key, value in need.context.items()
        ]
        result = aws.iam.simulate_principal_policy(
            PolicySourceArn=role,
            ActionNames=[need.action],
            ResourceArns=[need.resource],
            **({"ContextEntries": entries} if entries else {}),
        )["EvaluationResults"]
        out.append((need, str(result[0]["EvalDecision"]) if result else "implicitDeny"))
    return out


def report(settings: Settings, engine: Engine, role: str | None = None) -> tuple[list[str], bool]:
    """(lines to print, whether everything is allowed)."""
    aws = engine.aws
    try:
        role = role or caller_role(aws)
    except (ClientError, BotoCoreError) as exc:
        return [f"permissions: cannot tell who is calling: {describe_error(exc)}"], False
    account = role.split(":")[4]
    wanted = needs(settings, engine, account)
    try:
        decided = simulate(aws, role, wanted)
    except (ClientError, BotoCoreError) as exc:
        return [
            f"permissions: cannot simulate the policies of {role}: {describe_error(exc)} "
            "(the role needs iam:SimulatePrincipalPolicy on itself)"
        ], False
    missing = [(n, d) for n, d in decided if d != "allowed"]
    lines = [
        f"permissions of {role}: {len(decided) - len(missing)} of {len(decided)} requests allowed"
    ]
    for need, decision in missing:
        how = "explicitly denied" if decision == "explicitDeny" else "missing"
        lines.append(f"  - {how}: {need.describe()}: {need.why}")
        lines.append(f"    add: {json.dumps(need.statement(), sort_keys=True)}")
    return lines, not missing

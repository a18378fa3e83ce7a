"""The environment engine: a branch becomes ECS services registered in Cloud Map.

A deploy is an explicit sequence of idempotent steps (so an interrupted one can simply be run
again): plan images -> register task definitions -> ensure Cloud Map services -> create or update
ECS services -> wait until stable. Stop undoes it. Every step reports what it does through a
``report(step, message)`` callback; every failure is an :class:`EngineError` naming the step.

The engine knows AWS and the configuration, nothing about Slack, GitHub or the store.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from bot import fargate
from bot.aws import AwsClients, describe_error, error_code
from bot.config import AppConfig, CapacityProvider, ServiceConfig, Settings, render
from bot.logtail import LogFollower, LogSink, ServiceEvents
from bot.naming import ecs_service_name, image_tag_part, service_label, tag_value, task_family

Reporter = Callable[[str, str], None]

TASK_DEF_FIELDS = (
    "taskRoleArn",
    "executionRoleArn",
    "networkMode",
    "containerDefinitions",
    "volumes",
    "placementConstraints",
    "requiresCompatibilities",
    "cpu",
    "memory",
    "pidMode",
    "ipcMode",
    "proxyConfiguration",
    "inferenceAccelerators",
    "ephemeralStorage",
    "runtimePlatform",
)
ROLLOUT_POLL = 1.0  # seconds between two looks at a rollout, at most
DESCRIBE_SERVICES_MAX = 10  # ECS API reference, DescribeServices: "up to 10 services"
DRAINING_MESSAGE = "still Draining"  # CreateService's InvalidParameterException while DRAINING
CLOUD_MAP_BUSY = ("DuplicateRequest", "ResourceInUse")


class EngineError(Exception):
    """A failed step: ``str()`` is ``"<step>: <what went wrong>"``."""

    def __init__(self, step: str, message: str) -> None:
        self.step = step
        self.message = message
        super().__init__(f"{step}: {message}")


class ImageMissing(EngineError):
    """No image for the branch (or commit) in the service's repository. ``tag`` is the exact
    tag looked for (None when any commit of the branch would have done)."""

    def __init__(self, step: str, message: str, tag: str | None = None) -> None:
        super().__init__(step, message)
        self.tag = tag


class CommitResolver(Protocol):
    """Turns (repository, branch) into the branch's head commit; None when there is no branch."""

    def resolve(self, repository: str, branch: str) -> str | None: ...


@dataclass(frozen=True)
class EnvSpec:
    """Which environment: the app, its name, the requested branch and its public URL."""

    app: AppConfig
    env: str
    branch: str
    url: str


@dataclass(frozen=True)
class ServicePlan:
    """What one service of an environment will run."""

    service: str
    branch: str
    sha: str | None
    image: str  # ``uri@digest`` (ECR), the reference (other registries), ``uri`` if pending
    tag: str | None
    fallback: bool
    source: str = "existing"  # where the image comes from: existing, wait, codebuild
    pending: bool = False  # not in ECR yet: to be built (codebuild) or waited for (wait)

    @property
    def short_image(self) -> str:
        """``repository:tag`` when the image came from ECR, else the image reference."""
        if self.tag is None:
            return self.image
        return f"{self.image.split('@')[0].rsplit('/', 1)[-1]}:{self.tag}"

    def describe(self) -> str:
        commit = f"@{self.sha[:7]}" if self.sha else ""
        note = " (fallback: the repository has no such branch)" if self.fallback else ""
        if self.pending:
            note += (
                " (not in ECR yet: building it with CodeBuild)"
                if self.source == "codebuild"
                else " (not in ECR yet: waiting for it to be pushed)"
            )
        elif self.source == "codebuild":
            note += " (image cached: no build needed)"
        return f"{self.service}: {self.branch}{commit} -> {self.short_image}{note}"


@dataclass(frozen=True)
class ServiceState:
    """The AWS resources of one deployed service."""

    service: str
    ecs_service: str
    cloud_map_service: str
    cloud_map_id: str
    task_definition: str
    host: str
    cpu: int = 0  # CPU units (1024 = 1 vCPU) and MiB of the task definition, for the cost
    memory: int = 0


def _units(value: Any, default: int) -> int:
    """A task definition's cpu or memory (``"256"``, ``"1 vCPU"``, ``"2 GB"``) in units/MiB."""
    found = fargate.units(value)
    return default if found is None else found


def revision(arn: str) -> str:
    """``family:N`` of a task definition ARN."""
    return arn.rsplit("/", 1)[-1]


def _noop(step: str, message: str) -> None:
    return None


def _tags(spec_app: str, env: str, branch: str) -> dict[str, str]:
    # The branch is folded into what tag values allow (no #, parentheses...): the raw branch
    # lives in the store; the tag only helps cost reports and the orphan sweeper.
    return {"revieee:app": spec_app, "revieee:env": env, "revieee:branch": tag_value(branch)}


def _tag_pattern(template: str, **values: str) -> re.Pattern[str]:
    """A regex matching tags rendered from ``template`` with any commit in place of the sha."""
    regex, seen = [], set()
    for index, piece in enumerate(re.split(r"(\{[a-z0-9_]+\})", template)):
        name = piece[1:-1] if index % 2 else None  # odd pieces are the placeholders
        if name in ("sha", "sha7"):
            hexes = "[0-9a-f]{40}" if name == "sha" else "[0-9a-f]{7}"
            regex.append(hexes if name in seen else f"(?P<{name}>{hexes})")
            seen.add(name)
        else:
            regex.append(re.escape(values[name] if name else piece))
    return re.compile("".join(regex))


def fargate_problem(request: dict[str, Any], svc: ServiceConfig) -> str | None:
    """Why Fargate would refuse the task size of ``request`` (a RegisterTaskDefinition
    request), said before AWS says it: the service's cpu/memory override the template's, so a
    pair can be invalid though each half is a Fargate value."""
    if "FARGATE" not in (request.get("requiresCompatibilities") or []):
        return None
    cpu, memory = fargate.units(request.get("cpu")), fargate.units(request.get("memory"))
    if cpu is None or memory is None:
        return (
            "a Fargate task definition needs task-level cpu and memory: set them in the "
            f"template {svc.task_definition} or as cpu/memory of the service"
        )
    problem = fargate.check_pair(cpu, memory)
    if problem is None:
        return None
    origin = {
        (True, True): "both from the service's configuration",
        (
            True,
            False,
        ): f"cpu from the configuration, memory from the template {svc.task_definition}",
        (
            False,
            True,
        ): f"memory from the configuration, cpu from the template {svc.task_definition}",
        (False, False): f"both from the template {svc.task_definition}",
    }[(svc.cpu is not None, svc.memory is not None)]
    return f"{problem} ({origin})"


def _log_per_environment(container: dict[str, Any], env: str) -> None:
    """Streams of ``awslogs`` containers are named ``<prefix>/<container>/<task id>``: putting
    the environment in the prefix lets ``logs`` find every task of it, stopped ones included."""
    config = container.get("logConfiguration") or {}
    if config.get("logDriver") != "awslogs":
        return
    options = dict(config.get("options") or {})
    prefix = options.get("awslogs-stream-prefix")
    options["awslogs-stream-prefix"] = f"{prefix}/{env}" if prefix else env
    container["logConfiguration"] = {**config, "options": options}


class Engine:
    """Deploys, waits for, describes and stops environments on ECS + Cloud Map."""

    def __init__(
        self,
        clients: AwsClients,
        settings: Settings,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.aws = clients
        self.settings = settings
        self._sleep = sleep
        self._monotonic = monotonic
        self._namespace: tuple[str, str] | None = None
        self._repository_uris: dict[str, str] = {}

    # -- helpers -------------------------------------------------------------------------------

    def _call(self, step: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise EngineError(step, describe_error(exc)) from exc

    def namespace(self) -> tuple[str, str]:
        """(id, name) of the configured Cloud Map namespace. An id (``ns-...``, what the stack
        passes) is looked up directly; a name must be unique in the account and Region (two
        VPCs can each have a ``review.internal``)."""
        if self._namespace is None:
            wanted = self.settings.namespace
            step = f"finding Cloud Map namespace {wanted}"
            sd = self.aws.servicediscovery
            if wanted.startswith("ns-"):
                try:
                    ns = sd.get_namespace(Id=wanted)["Namespace"]
                except ClientError as exc:
                    if error_code(exc) == "NamespaceNotFound":
                        raise EngineError(
                            step, "no such namespace in this account and region"
                        ) from exc
                    raise EngineError(step, describe_error(exc)) from exc
                except BotoCoreError as exc:
                    raise EngineError(step, describe_error(exc)) from exc
                self._namespace = (ns["Id"], ns["Name"])
                return self._namespace
            found: list[tuple[str, str]] = []
            try:
                for page in sd.get_paginator("list_namespaces").paginate():
                    found += [
                        (ns["Id"], ns["Name"]) for ns in page["Namespaces"] if ns["Name"] == wanted
                    ]
            except (ClientError, BotoCoreError) as exc:
                raise EngineError(step, describe_error(exc)) from exc
            if not found:
                raise EngineError(step, "no such namespace in this account and region")
            if len(found) > 1:
                ids = ", ".join(i for i, _ in found)
                raise EngineError(
                    step, f"{len(found)} namespaces have this name ({ids}): set namespace to the id"
                )
            self._namespace = found[0]
        return self._namespace

    def host_of(self, env: str, service: ServiceConfig) -> str:
        return f"{service_label(env, service.name)}.{self.namespace()[1]}"

    # -- planning: which image each service runs -----------------------------------------------

    def plan(
        self,
        spec: EnvSpec,
        sha: str | None = None,
        commits: CommitResolver | None = None,
        report: Reporter = _noop,
        sha_repository: str | None = None,
    ) -> list[ServicePlan]:
        """Resolve commit and image for every service; repositories without the branch fall
        back to their default branch. Raises :class:`ImageMissing` naming repository and tag.

        A commit belongs to one repository: ``sha`` applies to the services built from
        ``sha_repository`` (default: the public service's); the others take their branch's
        head (or newest image)."""
        plans: list[ServicePlan] = []
        misses: list[ImageMissing] = []
        images: dict[str, list[dict[str, Any]]] = {}  # one listing per repository per plan
        owner = sha_repository or spec.app.public_service.repository
        for svc in spec.app.services:
            svc_sha = sha if svc.repository == owner else None
            plan, miss = self._plan_service(spec, svc, svc_sha, commits, images)
            if miss is not None:
                misses.append(miss)
            plans.append(plan)
            report("resolving image", plan.describe())
        if all(p.fallback for p in plans) and misses:
            if len(misses) == 1:
                raise misses[0]
            raise ImageMissing("resolving image", "; ".join(m.message for m in misses))
        return plans

    def _plan_service(
        self,
        spec: EnvSpec,
        svc: ServiceConfig,
        sha: str | None,
        commits: CommitResolver | None,
        images: dict[str, list[dict[str, Any]]],
    ) -> tuple[ServicePlan, ImageMissing | None]:
        branch, fallback = spec.branch, False
        # A commit given for the service's repository is deployed as that commit; its branch is
        # not looked up (a fork's ``owner:branch`` is no branch of ours: GitHub answers 404).
        if commits is not None and sha is None:
            resolved = commits.resolve(svc.repository, branch)
            if resolved is None and branch != svc.default_branch:
                branch, fallback = svc.default_branch, True
                resolved = commits.resolve(svc.repository, branch)
            if resolved is None:
                raise EngineError(
                    f"resolving commit of {svc.repository}",
                    f"neither branch {spec.branch!r} nor {svc.default_branch!r} exists",
                )
            sha = resolved
        source = svc.image_source
        try:
            image, tag, found_sha = self._find_image(spec, svc, branch, sha, images)
            return ServicePlan(svc.name, branch, found_sha, image, tag, fallback, source), None
        except ImageMissing as miss:
            if source != "existing" and miss.tag is not None:
                uri = self._repository_uri(svc.ecr_repository or "", miss.step)
                return ServicePlan(
                    svc.name, branch, sha, uri, miss.tag, fallback, source, True
                ), None
            hint = (
                "; to build or wait for it revieee needs the commit: pass --sha, or set "
                "GITHUB_TOKEN so branches resolve to commits"
                if source != "existing"
                else ""
            )
            if hint:
                miss = ImageMissing(miss.step, miss.message + hint)
            if commits is not None or fallback or branch == svc.default_branch:
                raise miss
            branch = svc.default_branch
            try:
                image, tag, found_sha = self._find_image(spec, svc, branch, None, images)
            except ImageMissing as again:
                if hint:
                    raise ImageMissing(again.step, again.message + hint) from again
                raise
            return ServicePlan(svc.name, branch, found_sha, image, tag, True, source), miss

    def _find_image(
        self,
        spec: EnvSpec,
        svc: ServiceConfig,
        branch: str,
        sha: str | None,
        images: dict[str, list[dict[str, Any]]],
    ) -> tuple[str, str | None, str | None]:
        values = {
            "branch": image_tag_part(branch),
            "env": spec.env,
            "app": spec.app.name,
            "service": svc.name,
        }
        if svc.image:
            if svc.needs_sha and not sha:
                raise EngineError(
                    f"resolving image of {svc.name}",
                    f"the image template {svc.image!r} needs a commit: pass --sha",
                )
            return render(svc.image, sha=sha or "", sha7=(sha or "")[:7], **values), None, sha
        repo = svc.ecr_repository or ""
        step = f"resolving image of {svc.name} in ECR repository {repo}"
        uri = self._repository_uri(repo, step)
        if sha or not svc.needs_sha:
            tag = render(svc.tag, sha=sha or "", sha7=(sha or "")[:7], **values)
            try:
                detail = self.aws.ecr.describe_images(
                    repositoryName=repo, imageIds=[{"imageTag": tag}]
                )["imageDetails"][0]
            except ClientError as exc:
                if error_code(exc) == "ImageNotFoundException":
                    raise ImageMissing(
                        step,
                        f"no image {repo}:{tag} (build and push it, or check the tag "
                        f"template): docker push {uri}:{tag}",
                        tag,
                    ) from exc
                raise EngineError(step, describe_error(exc)) from exc
            return f"{uri}@{detail['imageDigest']}", tag, sha
        pattern = _tag_pattern(svc.tag, **values)
        newest: tuple[datetime, str, str, str | None] | None = None
        if repo not in images:
            images[repo] = self._images(repo, step)
        for detail in images[repo]:
            for tag in detail.get("imageTags", []):
                match = pattern.fullmatch(tag)
                if match and (newest is None or detail["imagePushedAt"] > newest[0]):
                    groups = match.groupdict()
                    newest = (
                        detail["imagePushedAt"],
                        tag,
                        detail["imageDigest"],
                        groups.get("sha") or groups.get("sha7"),
                    )
        if newest is None:
            wanted = render(svc.tag, sha="<sha>", sha7="<sha7>", **values)
            raise ImageMissing(step, f"no image {repo}:{wanted} for any commit")
        return f"{uri}@{newest[2]}", newest[1], newest[3]

    def find_tag(self, svc: ServiceConfig, tag: str) -> str | None:
        """``uri@digest`` of ``tag`` in the service's ECR repository, None while it is not there."""
        repo = svc.ecr_repository or ""
        step = f"looking for {repo}:{tag}"
        uri = self._repository_uri(repo, step)
        try:
            detail = self.aws.ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": tag}])
        except ClientError as exc:
            if error_code(exc) == "ImageNotFoundException":
                return None
            raise EngineError(step, describe_error(exc)) from exc
        except BotoCoreError as exc:
            raise EngineError(step, describe_error(exc)) from exc
        return f"{uri}@{detail['imageDetails'][0]['imageDigest']}"

    def repository_uri(self, repo: str) -> str:
        return self._repository_uri(repo, f"describing ECR repository {repo}")

    def _repository_uri(self, repo: str, step: str) -> str:
        if repo not in self._repository_uris:  # a repository's URI never changes
            try:
                found = self.aws.ecr.describe_repositories(repositoryNames=[repo])
            except ClientError as exc:
                if error_code(exc) == "RepositoryNotFoundException":
                    raise EngineError(step, "the ECR repository does not exist") from exc
                raise EngineError(step, describe_error(exc)) from exc
            except BotoCoreError as exc:
                raise EngineError(step, describe_error(exc)) from exc
            self._repository_uris[repo] = str(found["repositories"][0]["repositoryUri"])
        return self._repository_uris[repo]

    def _images(self, repo: str, step: str) -> list[dict[str, Any]]:
        paginator = self.aws.ecr.get_paginator("describe_images")
        try:
            return [
                detail
                for page in paginator.paginate(repositoryName=repo, filter={"tagStatus": "TAGGED"})
                for detail in page["imageDetails"]
            ]
        except (ClientError, BotoCoreError) as exc:
            raise EngineError(step, describe_error(exc)) from exc

    # -- deploy --------------------------------------------------------------------------------

    def deploy(
        self, spec: EnvSpec, plans: list[ServicePlan], report: Reporter = _noop
    ) -> list[ServiceState]:
        """Register task definitions, ensure Cloud Map and ECS services; idempotent."""
        waiting = [p.service for p in plans if p.pending]
        if waiting:
            raise EngineError("deploying", f"no image yet for {', '.join(waiting)}")
        ns_id, _ = self.namespace()
        hosts = {s.name: self.host_of(spec.env, s) for s in spec.app.services}
        addresses: dict[str, str] = {}
        for svc in spec.app.services:
            key = svc.name.upper()
            addresses[f"REVIEEE_SERVICE_{key}_HOST"] = hosts[svc.name]
            addresses[f"REVIEEE_SERVICE_{key}_URL"] = f"http://{hosts[svc.name]}:{svc.port}"
        states = []
        by_name = {p.service: p for p in plans}
        known = self._cloud_map_services(ns_id, "listing Cloud Map services")
        for svc in spec.app.services:
            plan = by_name[svc.name]
            td_arn, cpu, memory, arch = self._register_task_definition(
                spec, svc, plan, addresses, report
            )
            cm_id, cm_arn = self._ensure_cloud_map_service(spec, svc, ns_id, known, report)
            ecs_name = self._ensure_ecs_service(spec, svc, td_arn, cm_arn, arch, report)
            states.append(
                ServiceState(
                    svc.name,
                    ecs_name,
                    service_label(spec.env, svc.name),
                    cm_id,
                    td_arn,
                    hosts[svc.name],
                    cpu,
                    memory,
                )
            )
        return states

    def _register_task_definition(
        self,
        spec: EnvSpec,
        svc: ServiceConfig,
        plan: ServicePlan,
        addresses: dict[str, str],
        report: Reporter,
    ) -> tuple[str, int, int, str]:
        template = self._call(
            f"reading template task definition {svc.task_definition}",
            self.aws.ecs.describe_task_definition,
            taskDefinition=svc.task_definition,
        )["taskDefinition"]
        if template.get("status", "ACTIVE") != "ACTIVE":
            raise EngineError(
                f"reading template task definition {svc.task_definition}",
                f"{template['taskDefinitionArn']} is {template['status']}; "
                "register an active revision",
            )
        family = task_family(spec.env, svc.name)
        step = f"registering task definition {family}"
        containers = [dict(c) for c in template["containerDefinitions"]]
        target = next((c for c in containers if c["name"] == svc.container), None)
        if target is None:
            names = ", ".join(c["name"] for c in containers)
            raise EngineError(
                step,
                f"template {svc.task_definition} has no container "
                f"{svc.container!r} (it has: {names})",
            )
        env_vars = {e["name"]: e["value"] for e in target.get("environment", [])}
        env_vars.update(svc.environment)
        env_vars.update(addresses)
        env_vars.update(
            {
                "REVIEEE_ENV": spec.env,
                "REVIEEE_BRANCH": plan.branch,
                "REVIEEE_SHA": plan.sha or "",
                "REVIEEE_URL": spec.url,
                "REVIEEE_APP": spec.app.name,
                "REVIEEE_SERVICE": svc.name,
            }
        )
        target["image"] = plan.image
        for container in containers:
            _log_per_environment(container, spec.env)
        target["environment"] = [{"name": k, "value": v} for k, v in sorted(env_vars.items())]
        if not target.get("portMappings"):
            target["portMappings"] = [{"containerPort": svc.port, "protocol": "tcp"}]
        request = {k: template[k] for k in TASK_DEF_FIELDS if template.get(k) not in (None, [])}
        request["containerDefinitions"] = containers
        if svc.cpu:
            request["cpu"] = str(svc.cpu)
        if svc.memory:
            request["memory"] = str(svc.memory)
        problem = fargate_problem(request, svc)
        if problem:
            raise EngineError(step, problem)
        tags = _tags(spec.app.name, spec.env, spec.branch)
        request["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
        arn = self._call(step, self.aws.ecs.register_task_definition, family=family, **request)[
            "taskDefinition"
        ]["taskDefinitionArn"]
        report(step, f"{svc.name}: registered {arn.split('/')[-1]} ({plan.short_image})")
        arch = (request.get("runtimePlatform") or {}).get("cpuArchitecture") or "X86_64"
        return (
            str(arn),
            _units(request.get("cpu"), 256),
            _units(request.get("memory"), 512),
            str(arch),
        )

    def _cloud_map_services(self, ns_id: str, step: str) -> dict[str, dict[str, Any]]:
        """The namespace's Cloud Map services by name (one listing per deploy or stop)."""
        paginator = self.aws.servicediscovery.get_paginator("list_services")
        found: dict[str, dict[str, Any]] = {}
        try:
            for page in paginator.paginate(
                Filters=[{"Name": "NAMESPACE_ID", "Values": [ns_id], "Condition": "EQ"}]
            ):
                for svc in page["Services"]:
                    # moto ignores Filters, so check the namespace here too.
                    if svc.get("NamespaceId", ns_id) == ns_id:
                        found[svc["Name"]] = dict(svc)
        except (ClientError, BotoCoreError) as exc:
            raise EngineError(step, describe_error(exc)) from exc
        return found

    def _ensure_cloud_map_service(
        self,
        spec: EnvSpec,
        svc: ServiceConfig,
        ns_id: str,
        known: dict[str, dict[str, Any]],
        report: Reporter,
    ) -> tuple[str, str]:
        name = service_label(spec.env, svc.name)
        step = f"creating Cloud Map service {name}"
        existing = known.get(name)
        if existing is None:
            tags = _tags(spec.app.name, spec.env, spec.branch)
            try:
                existing = self.aws.servicediscovery.create_service(
                    Name=name,
                    NamespaceId=ns_id,
                    CreatorRequestId=hashlib.sha256(f"{ns_id}/{name}".encode()).hexdigest()[:64],
                    Description=f"revieee {spec.app.name} {spec.branch}"[:1024],
                    DnsConfig={
                        "RoutingPolicy": "MULTIVALUE",
                        "DnsRecords": [{"Type": "A", "TTL": 10}],
                    },
                    HealthCheckCustomConfig={"FailureThreshold": 1},
                    Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
                )["Service"]
                report(step, f"{svc.name}: created {name}.{self.namespace()[1]}")
            except ClientError as exc:
                if error_code(exc) != "ServiceAlreadyExists":
                    raise EngineError(step, describe_error(exc)) from exc
                existing = self._cloud_map_services(ns_id, step).get(name)
                if existing is None:
                    raise EngineError(step, describe_error(exc)) from exc
        else:
            report(step, f"{svc.name}: {name} already exists, reusing it")
        return str(existing["Id"]), str(existing["Arn"])

    def describe_services(
        self, names: list[str], step: str, **extra: Any
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(services, failures) of ``names`` in the cluster, 10 per call as ECS takes them."""
        services: list[dict[str, Any]] = []
        failures: list[dict[str, Any]] = []
        for i in range(0, len(names), DESCRIBE_SERVICES_MAX):
            found = self._call(
                step,
                self.aws.ecs.describe_services,
                cluster=self.settings.cluster,
                services=names[i : i + DESCRIBE_SERVICES_MAX],
                **extra,
            )
            services += found.get("services", [])
            failures += found.get("failures", [])
        return services, failures

    def _describe_service(self, name: str, step: str) -> dict[str, Any] | None:
        """The service as ECS has it now (ACTIVE, or DRAINING after a delete), None if never
        created or long gone."""
        found = self.describe_services([name], step)[0]
        for status in ("ACTIVE", "DRAINING"):
            matching = [s for s in found if s.get("status") == status]
            if matching:
                return dict(matching[0])
        return None

    def _wait_drained(self, name: str, report: Reporter) -> None:
        """ECS keeps a deleted service's name DRAINING for minutes; a service of that name
        cannot be created until it is INACTIVE (spinnaker/spinnaker#5476)."""
        step = f"waiting for ECS service {name} to finish draining"
        limit = self.settings.drain_timeout
        report(step, f"{name} was stopped a moment ago and ECS is still draining it; waiting")
        start = self._monotonic()
        delay = max(min(self.settings.poll_interval, 2.0), 0.1)
        while True:
            current = self._describe_service(name, step)
            if current is None or current.get("status") != "DRAINING":
                report(step, f"{name} drained after {self._monotonic() - start:.0f}s")
                return
            if self._monotonic() - start >= limit:
                raise EngineError(step, f"{name} still DRAINING after {limit:g}s (drain_timeout)")
            self._sleep(delay)
            delay = min(delay * 2, 15.0)

    def _deployment_configuration(self) -> dict[str, Any]:
        # Keep the old task serving until the new one is healthy; roll back a failed rollout.
        return {
            "minimumHealthyPercent": 100,
            "maximumPercent": 200,
            "deploymentCircuitBreaker": {"enable": True, "rollback": True},
        }

    def capacity_strategy(self, arch: str) -> tuple[list[CapacityProvider], str | None]:
        """The strategy for a task of CPU architecture ``arch`` and, when it had to change,
        why: ARM64 tasks cannot run on Fargate Spot (bot/fargate.py), so they go to FARGATE."""
        strategy = list(self.settings.capacity_provider_strategy)
        if fargate.spot_allowed(arch) or not any(p.provider == "FARGATE_SPOT" for p in strategy):
            return strategy, None
        kept = [p for p in strategy if p.provider != "FARGATE_SPOT"]
        if not any(p.weight > 0 for p in kept):
            kept = [CapacityProvider("FARGATE", 1, max([p.base for p in strategy] + [0]))]
        return kept, "ARM64 tasks cannot run on Fargate Spot: running on FARGATE"

    def _ensure_ecs_service(
        self,
        spec: EnvSpec,
        svc: ServiceConfig,
        td_arn: str,
        cm_arn: str,
        arch: str,
        report: Reporter,
    ) -> str:
        name = ecs_service_name(spec.env, svc.name)
        existing = self._describe_service(name, f"looking up ECS service {name}")
        if existing is not None and existing.get("status") == "DRAINING":
            self._wait_drained(name, report)
            existing = None
        strategy, why = self.capacity_strategy(arch)
        if why:
            report(f"choosing capacity for {name}", f"{svc.name}: {why}")
        if existing is not None:
            step = f"updating ECS service {name}"
            extra: dict[str, Any] = {}
            current = [
                i.get("capacityProvider") for i in existing.get("capacityProviderStrategy", [])
            ]
            if why and "FARGATE_SPOT" in current:
                # ECS takes a new strategy only with a new deployment (UpdateService reference).
                extra = {
                    "capacityProviderStrategy": [p.to_aws() for p in strategy],
                    "forceNewDeployment": True,
                }
            self._call(
                step,
                self.aws.ecs.update_service,
                cluster=self.settings.cluster,
                service=name,
                taskDefinition=td_arn,
                desiredCount=self.settings.desired_count,
                deploymentConfiguration=self._deployment_configuration(),
                **extra,
            )
            report(
                step,
                f"{svc.name}: rolling out {td_arn.split('/')[-1]}; the running task "
                "keeps serving until the new one is healthy",
            )
            return name
        step = f"creating ECS service {name}"
        tags = _tags(spec.app.name, spec.env, spec.branch)
        request = {
            "cluster": self.settings.cluster,
            "serviceName": name,
            "taskDefinition": td_arn,
            "desiredCount": self.settings.desired_count,
            "clientToken": hashlib.sha256(f"{td_arn}".encode()).hexdigest()[:36],
            "capacityProviderStrategy": [p.to_aws() for p in strategy],
            "networkConfiguration": {
                "awsvpcConfiguration": {
                    "subnets": list(self.settings.subnets),
                    "securityGroups": list(self.settings.security_groups),
                    "assignPublicIp": "ENABLED" if self.settings.assign_public_ip else "DISABLED",
                }
            },
            "serviceRegistries": [{"registryArn": cm_arn}],
            "deploymentConfiguration": self._deployment_configuration(),
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
            "propagateTags": "SERVICE",
            "enableECSManagedTags": True,
        }
        try:
            self.aws.ecs.create_service(**request)
        except ClientError as exc:
            # Another process stopped it between our look and our create: wait it out once.
            if DRAINING_MESSAGE not in str(exc.response.get("Error", {}).get("Message", "")):
                raise EngineError(step, describe_error(exc)) from exc
            self._wait_drained(name, report)
            self._call(step, self.aws.ecs.create_service, **request)
        except BotoCoreError as exc:
            raise EngineError(step, describe_error(exc)) from exc
        report(step, f"{svc.name}: created {name} in cluster {self.settings.cluster}")
        return name

    # -- wait ----------------------------------------------------------------------------------

    def wait(
        self,
        spec: EnvSpec,
        report: Reporter = _noop,
        timeout: float | None = None,
        since: datetime | None = None,
        log: LogSink | None = None,
        expected: dict[str, str] | None = None,
    ) -> None:
        """Poll until every service is stable: its PRIMARY deployment runs the task definition
        in ``expected`` (ECS service name -> ARN; by default what each service runs when the
        wait starts) with ``rolloutState == COMPLETED``, it is the only deployment and
        ``runningCount == desiredCount``.

        One deployment with running == desired is not enough: after the circuit breaker rolls
        back, that is what ECS shows, on the OLD revision (aws-actions/
        amazon-ecs-deploy-task-definition#191). Raises :class:`EngineError` with the reason
        (rolled back to which revision and why, stopped tasks, service events) when a rollout
        fails or the deadline passes. New service events go to ``log`` as they appear."""
        follower = LogFollower("ECS service events", log) if log else None
        try:
            self._wait(spec, report, timeout, since, follower, dict(expected or {}))
        finally:
            if follower is not None:
                follower.finish()

    def _wait(
        self,
        spec: EnvSpec,
        report: Reporter,
        timeout: float | None,
        since: datetime | None,
        follower: LogFollower | None,
        expected: dict[str, str],
    ) -> None:
        events = ServiceEvents(since)
        timeout = self.settings.deploy_timeout if timeout is None else timeout
        names = [ecs_service_name(spec.env, s.name) for s in spec.app.services]
        deadline = self._monotonic() + timeout
        step = "waiting for the services to become stable"
        report(step, f"waiting up to {timeout:g}s for {', '.join(names)}")
        last: dict[str, str] = {}
        while True:
            services, failures = self.describe_services(names, step)
            if follower is not None:
                follower.lines(events.new(services))
            pending = []
            for svc in services:
                name = svc["serviceName"]
                if svc.get("status") != "ACTIVE":
                    raise EngineError(step, f"{name} is {svc.get('status')}")
                deployments = svc.get("deployments", [])
                primary = next((d for d in deployments if d.get("status") == "PRIMARY"), None)
                want = expected.setdefault(name, (primary or svc).get("taskDefinition", ""))
                progress = (
                    f"{name}: {svc.get('runningCount', 0)}/{svc.get('desiredCount', 0)} running"
                )
                if last.get(name) != progress:
                    report(step, progress)
                    last[name] = progress
                failed = [
                    d
                    for d in deployments
                    if d.get("taskDefinition") == want and d.get("rolloutState") == "FAILED"
                ]
                if primary is not None and primary.get("taskDefinition") != want:
                    raise EngineError(step, self._rolled_back(svc, want, primary, since))
                if failed:
                    reason = failed[0].get("rolloutStateReason", "")
                    raise EngineError(
                        step, self._explain(svc, f"the rollout failed ({reason})", since)
                    )
                if not (
                    primary is not None
                    and primary.get("rolloutState", "COMPLETED") == "COMPLETED"
                    and len(deployments) == 1
                    and svc.get("runningCount") == svc.get("desiredCount")
                ):
                    pending.append(svc)
            missing = [f["arn"] for f in failures]
            if missing:
                raise EngineError(step, f"service gone: {', '.join(missing)}")
            if not pending:
                report(step, "all services are stable")
                return
            if self._monotonic() >= deadline:
                raise EngineError(
                    step, self._explain(pending[0], f"not stable after {timeout:g}s", since)
                )
            # At least once a second: Ready within a second of ECS's COMPLETED (bench_ready.py);
            # one DescribeServices per 10 services a second per waiting rollout.
            self._sleep(min(self.settings.poll_interval, ROLLOUT_POLL))

    def _rolled_back(
        self, svc: dict[str, Any], wanted: str, primary: dict[str, Any], since: datetime | None
    ) -> str:
        """The circuit breaker replaced our deployment by the previous one: say so, and why."""
        back = revision(primary.get("taskDefinition", ""))
        number = back.rsplit(":", 1)[-1]
        stopped = self._stopped_tasks(svc["serviceName"], since, task_definition=wanted)
        why = stopped[0] if stopped else "the new tasks failed to start"
        return (
            f"{svc['serviceName']}: the deployment of {revision(wanted)} failed and ECS rolled "
            f"back to revision {number} ({back}): {why}"
        )

    def _explain(self, svc: dict[str, Any], headline: str, since: datetime | None) -> str:
        name = svc["serviceName"]
        parts = [
            f"{name} {headline}: {svc.get('runningCount', 0)} of "
            f"{svc.get('desiredCount', 0)} tasks running"
        ]
        failed_tasks = sum(d.get("failedTasks", 0) for d in svc.get("deployments", []))
        if failed_tasks:
            parts.append(f"{failed_tasks} task(s) failed to start")
        stopped = self._stopped_tasks(name, since)
        if stopped:
            parts.append("last stopped task: " + stopped[0])
        events = [
            e["message"]
            for e in svc.get("events", [])
            if since is None or e.get("createdAt") is None or e["createdAt"] >= since
        ][:3]
        if events:
            parts.append("recent events: " + " | ".join(events))
        return "; ".join(parts)

    def _stopped_tasks(
        self, service: str, since: datetime | None, task_definition: str | None = None
    ) -> list[str]:
        """Why the service's tasks (of ``task_definition``, if given) stopped, newest first.
        Best effort: never raises."""
        try:
            arns = self.aws.ecs.list_tasks(
                cluster=self.settings.cluster, serviceName=service, desiredStatus="STOPPED"
            )["taskArns"]
            if not arns:
                return []
            tasks = self.aws.ecs.describe_tasks(cluster=self.settings.cluster, tasks=arns[:100])[
                "tasks"
            ]
        except (ClientError, BotoCoreError):
            return []
        # list_tasks(serviceName=...) filters on AWS but not in moto: check the group too.
        ours = [
            t
            for t in tasks
            if t.get("group") == f"service:{service}"
            and (since is None or t.get("createdAt") is None or t["createdAt"] >= since)
            and task_definition in (None, t.get("taskDefinitionArn"))
        ]
        ours.sort(key=lambda t: t.get("stoppedAt") or t.get("createdAt") or 0, reverse=True)
        reasons = []
        for task in ours:
            reason = task.get("stoppedReason") or "stopped"
            for container in task.get("containers", []):
                if container.get("reason") or container.get("exitCode") not in (None, 0):
                    reason += (
                        f" ({container['name']}: {container.get('reason', '')}"
                        f" exit code {container.get('exitCode')})"
                    )
            reasons.append(reason)
        return reasons

    # -- status --------------------------------------------------------------------------------

    def live_status(self, app: AppConfig, env: str) -> dict[str, dict[str, Any]]:
        """What ECS says about each service of the environment right now."""
        names = {ecs_service_name(env, s.name): s.name for s in app.services}
        services, _ = self.describe_services(list(names), f"describing services of {env}")
        out: dict[str, dict[str, Any]] = {
            svc: {"ecs_service": n, "status": "MISSING", "running": 0, "desired": 0}
            for n, svc in names.items()
        }
        for svc in services:
            if svc["serviceName"] not in names:
                continue
            deployments = svc.get("deployments", [])
            primary: dict[str, Any] = next(
                (d for d in deployments if d.get("status") == "PRIMARY"), {}
            )
            out[names[svc["serviceName"]]] = {
                "ecs_service": svc["serviceName"],
                "status": svc.get("status"),
                "running": svc.get("runningCount", 0),
                "desired": svc.get("desiredCount", 0),
                "deployments": len(deployments),
                "task_definition": primary.get("taskDefinition") or svc.get("taskDefinition"),
                "rollout": primary.get("rolloutState"),
            }
        return out

    @staticmethod
    def is_stable(live: dict[str, dict[str, Any]], expected: dict[str, str] | None = None) -> bool:
        """Every service ACTIVE, one COMPLETED deployment on its ``expected`` task definition
        (service -> ARN, when given), running == desired."""
        return all(
            s["status"] == "ACTIVE"
            and s.get("deployments") == 1
            and s["running"] == s["desired"]
            and s.get("rollout") in (None, "COMPLETED")
            and (expected is None or expected.get(name) in (None, s.get("task_definition")))
            for name, s in live.items()
        )

    # -- sleep ---------------------------------------------------------------------------------

    def scale(self, app: AppConfig, env: str, desired: int, report: Reporter = _noop) -> None:
        """Set every ECS service of the environment to ``desired`` tasks (0: asleep)."""
        for svc in app.services:
            name = ecs_service_name(env, svc.name)
            step = f"scaling ECS service {name} to {desired}"
            self._call(
                step,
                self.aws.ecs.update_service,
                cluster=self.settings.cluster,
                service=name,
                desiredCount=desired,
            )
            report(step, f"{svc.name}: {desired} task(s) wanted")

    # -- stop ----------------------------------------------------------------------------------

    def stop(
        self, app: AppConfig, env: str, report: Reporter = _noop, extra_services: Iterable[str] = ()
    ) -> list[str]:
        """Remove everything of the environment; what is already gone is said, not an error.

        Returns the lines of what was done.
        """
        ns_id, _ = self.namespace()
        done: list[str] = []
        names = list(dict.fromkeys([s.name for s in app.services] + list(extra_services)))
        known = self._cloud_map_services(ns_id, "listing Cloud Map services")
        for svc in names:
            done.append(self._stop_ecs_service(ecs_service_name(env, svc), report))
            cm_name = service_label(env, svc)
            done.append(self._delete_cloud_map_service(cm_name, known.get(cm_name), report))
            done.append(self._deregister_task_definitions(task_family(env, svc), report))
        return done

    def _stop_ecs_service(self, name: str, report: Reporter) -> str:
        step = f"deleting ECS service {name}"
        existing = self._describe_service(name, step)
        if existing is None:
            line = f"ECS service {name} was already gone"
        else:
            if existing.get("desiredCount", 0) > 0:
                self._call(
                    f"scaling ECS service {name} to zero",
                    self.aws.ecs.update_service,
                    cluster=self.settings.cluster,
                    service=name,
                    desiredCount=0,
                )
            try:
                self.aws.ecs.delete_service(cluster=self.settings.cluster, service=name, force=True)
                line = f"deleted ECS service {name}"
            except ClientError as exc:
                if error_code(exc) not in ("ServiceNotFoundException", "ServiceNotActiveException"):
                    raise EngineError(step, describe_error(exc)) from exc
                line = f"ECS service {name} was already gone"
            except BotoCoreError as exc:
                raise EngineError(step, describe_error(exc)) from exc
        report(step, line)
        return line

    def _delete_cloud_map_service(
        self, name: str, existing: dict[str, Any] | None, report: Reporter
    ) -> str:
        """Deregister the service's instances, wait until Cloud Map lists none, then delete it.

        ECS deregisters a deleted service's tasks itself, so our own ``DeregisterInstance``
        may meet its operation (``DuplicateRequest``, or ``ResourceInUse``): that instance is on
        its way out, we wait for it. Instance lists are eventually consistent, and
        ``DeleteService`` refuses (``ResourceInUse``) while any instance is left."""
        step = f"deleting Cloud Map service {name}"
        if existing is None:
            line = f"Cloud Map service {name} was already gone"
            report(step, line)
            return line
        sd = self.aws.servicediscovery
        start = self._monotonic()
        delay = max(min(self.settings.poll_interval, 1.0), 0.1)
        asked: set[str] = set()
        count = 0
        said = False
        while True:
            instances = self._instances(existing["Id"], step)
            if instances is None:  # the service is gone already
                line = f"Cloud Map service {name} was already gone"
                report(step, line)
                return line
            count = max(count, len(instances))
            if not instances:
                break
            for inst in instances:
                if inst in asked:
                    continue
                try:
                    sd.deregister_instance(ServiceId=existing["Id"], InstanceId=inst)
                except ClientError as exc:
                    if error_code(exc) not in ("InstanceNotFound", *CLOUD_MAP_BUSY):
                        raise EngineError(step, describe_error(exc)) from exc
                except BotoCoreError as exc:
                    raise EngineError(step, describe_error(exc)) from exc
                asked.add(inst)
            if not said:
                report(step, f"waiting for {len(instances)} instance(s) of {name} to deregister")
                said = True
            if self._monotonic() - start >= self.settings.drain_timeout:
                raise EngineError(
                    step,
                    f"{len(instances)} instance(s) still registered after "
                    f"{self.settings.drain_timeout:g}s (drain_timeout): {', '.join(instances)}",
                )
            self._sleep(delay)
            delay = min(delay * 2, 10.0)
        while True:
            try:
                sd.delete_service(Id=existing["Id"])
                break
            except ClientError as exc:
                code = error_code(exc)
                if code == "ServiceNotFound":
                    break
                # Deregistration is asynchronous on AWS: the service stays in use a little while.
                late = self._monotonic() - start >= self.settings.drain_timeout
                if code != "ResourceInUse" or late:
                    raise EngineError(step, describe_error(exc)) from exc
            except BotoCoreError as exc:
                raise EngineError(step, describe_error(exc)) from exc
            self._sleep(delay)
            delay = min(delay * 2, 10.0)
        line = f"deleted Cloud Map service {name}" + (
            f" after {count} instance(s) were deregistered" if count else ""
        )
        report(step, line)
        return line

    def _instances(self, service_id: str, step: str) -> list[str] | None:
        """Ids of the Cloud Map service's instances; None when the service is gone."""
        found: list[str] = []
        try:
            for page in self.aws.servicediscovery.get_paginator("list_instances").paginate(
                ServiceId=service_id
            ):
                found += [i["Id"] for i in page["Instances"]]
        except ClientError as exc:
            if error_code(exc) == "ServiceNotFound":
                return None
            raise EngineError(step, describe_error(exc)) from exc
        except BotoCoreError as exc:
            raise EngineError(step, describe_error(exc)) from exc
        return found

    def _deregister_task_definitions(self, family: str, report: Reporter) -> str:
        step = f"deregistering task definitions {family}"
        arns: list[str] = []
        paginator = self.aws.ecs.get_paginator("list_task_definitions")
        try:
            for page in paginator.paginate(familyPrefix=family, status="ACTIVE"):
                # familyPrefix is a prefix: keep exact family matches only.
                arns += [
                    a
                    for a in page["taskDefinitionArns"]
                    if a.rsplit("/", 1)[-1].rsplit(":", 1)[0] == family
                ]
        except (ClientError, BotoCoreError) as exc:
            raise EngineError(step, describe_error(exc)) from exc
        for arn in arns:
            self._call(step, self.aws.ecs.deregister_task_definition, taskDefinition=arn)
        line = (
            f"deregistered {len(arns)} revision(s) of {family}"
            if arns
            else f"task definitions of {family} were already gone"
        )
        report(step, line)
        return line

    # -- check ---------------------------------------------------------------------------------

    def check(self) -> list[str]:
        """What is missing in AWS for the configuration to work (empty when all is there)."""
        problems: list[str] = []
        s = self.settings
        try:
            clusters = self.aws.ecs.describe_clusters(clusters=[s.cluster])["clusters"]
            if not any(c.get("status") == "ACTIVE" for c in clusters):
                problems.append(
                    f"cluster: ECS cluster {s.cluster!r} does not exist or is not active"
                )
        except ClientError as exc:
            hint = (
                " (revieee's role may describe only its stack's cluster: is the name right?)"
                if error_code(exc) in ("AccessDeniedException", "AccessDenied")
                else ""
            )
            problems.append(
                f"cluster: ECS cluster {s.cluster!r} cannot be described: "
                f"{describe_error(exc)}{hint}"
            )
        except BotoCoreError as exc:
            problems.append(f"cluster: cannot describe {s.cluster!r}: {describe_error(exc)}")
        try:
            self.namespace()
        except EngineError as exc:
            problems.append(f"namespace: Cloud Map namespace {s.namespace!r}: {exc.message}")
        problems += self._check_ids(
            "subnets", s.subnets, "describe_subnets", "SubnetIds", "Subnets", "SubnetId"
        )
        problems += self._check_ids(
            "security_groups",
            s.security_groups,
            "describe_security_groups",
            "GroupIds",
            "SecurityGroups",
            "GroupId",
        )
        for app in s.apps.values():
            for svc in app.services:
                key = f"apps.{app.name}.services.{svc.name}"
                try:
                    td = self.aws.ecs.describe_task_definition(taskDefinition=svc.task_definition)[
                        "taskDefinition"
                    ]
                    names = [c["name"] for c in td["containerDefinitions"]]
                    if td.get("status", "ACTIVE") != "ACTIVE":
                        problems.append(
                            f"{key}.task_definition: template "
                            f"{svc.task_definition!r} has no active revision"
                        )
                    elif svc.container not in names:
                        problems.append(
                            f"{key}.container: template {svc.task_definition} has "
                            f"no container {svc.container!r} (it has: "
                            f"{', '.join(names)})"
                        )
                except (ClientError, BotoCoreError) as exc:
                    problems.append(
                        f"{key}.task_definition: template "
                        f"{svc.task_definition!r} not found ({describe_error(exc)})"
                    )
                if svc.ecr_repository:
                    try:
                        self.aws.ecr.describe_repositories(repositoryNames=[svc.ecr_repository])
                    except (ClientError, BotoCoreError) as exc:
                        problems.append(
                            f"{key}.ecr_repository: {svc.ecr_repository!r} not "
                            f"found ({describe_error(exc)})"
                        )
                if svc.codebuild_project:
                    try:
                        found = self.aws.codebuild.batch_get_projects(names=[svc.codebuild_project])
                        if not found.get("projects"):
                            problems.append(
                                f"{key}.codebuild_project: CodeBuild project "
                                f"{svc.codebuild_project!r} does not exist"
                            )
                    except (ClientError, BotoCoreError) as exc:
                        problems.append(
                            f"{key}.codebuild_project: cannot describe "
                            f"{svc.codebuild_project!r} ({describe_error(exc)})"
                        )
        return problems

    def _check_ids(
        self, key: str, ids: tuple[str, ...], method: str, arg: str, field: str, id_field: str
    ) -> list[str]:
        try:
            found = getattr(self.aws.ec2, method)(**{arg: list(ids)})[field]
            missing = set(ids) - {item[id_field] for item in found}
        except ClientError as exc:
            # A missing id fails the whole call: say which ones by asking one at a time.
            missing = set()
            for one in ids:
                try:
                    getattr(self.aws.ec2, method)(**{arg: [one]})
                except ClientError:
                    missing.add(one)
            if not missing:
                return [f"{key}: cannot describe: {describe_error(exc)}"]
        except BotoCoreError as exc:
            return [f"{key}: cannot describe: {describe_error(exc)}"]
        return [f"{key}: {i} does not exist" for i in sorted(missing)]


def plans_to_json(plans: list[ServicePlan]) -> list[dict[str, Any]]:
    return [asdict(p) for p in plans]


def states_to_json(states: list[ServiceState]) -> list[dict[str, Any]]:
    return [asdict(s) for s in states]

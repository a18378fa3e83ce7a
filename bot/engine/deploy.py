"""Deploying: task definitions, Cloud Map services and ECS services, created or updated;
idempotent, so an interrupted deploy is simply run again. Also scaling (sleep and wake)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from bot import fargate
from bot.config import AppConfig, CapacityProvider, ServiceConfig, render
from bot.engine.base import EngineBase, EngineError, Reporter, aws_step, call, noop
from bot.engine.model import EnvSpec, ServicePlan, ServiceState
from bot.naming import database_name, ecs_service_name, service_label, tag_value, task_family

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
DRAINING_MESSAGE = "still Draining"  # CreateService's InvalidParameterException while DRAINING


def _units(value: Any, default: int) -> int:
    """A task definition's cpu or memory (``"256"``, ``"1 vCPU"``, ``"2 GB"``) in units/MiB."""
    found = fargate.units(value)
    return default if found is None else found


def _tags(spec_app: str, env: str, branch: str) -> dict[str, str]:
    # The branch is folded into what tag values allow (no #, parentheses...): the raw branch
    # lives in the store; the tag only helps cost reports and the orphan sweeper.
    return {"revieee:app": spec_app, "revieee:env": env, "revieee:branch": tag_value(branch)}


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


def database_variables(app: AppConfig, env: str) -> dict[str, str]:
    """What every service of an environment learns of its database (``[apps.X.database]``):
    ``REVIEEE_DATABASE_NAME``, ``DATABASE_URL`` (when a URL template is set) and
    ``REVIEEE_DATABASE_SEED`` (when a seed source is). Credentials are never among them: they
    come from the template task definition's ``secrets``."""
    db = app.database
    if db is None:
        return {}
    name = database_name(db.name, app.name, env)
    out = {"REVIEEE_DATABASE_NAME": name}
    if db.url:
        out["DATABASE_URL"] = render(db.url, name=name, env=env, app=app.name)
    if db.seed:
        out["REVIEEE_DATABASE_SEED"] = db.seed
    return out


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


class Deploying(EngineBase):
    def deploy(
        self,
        spec: EnvSpec,
        plans: list[ServicePlan],
        report: Reporter = noop,
        admit: Callable[[float, str], None] = lambda _vcpu, _provider: None,
        before_traffic: Callable[[dict[str, str]], None] = lambda _task_definitions: None,
    ) -> list[ServiceState]:
        """Register task definitions, ensure Cloud Map and ECS services; idempotent.

        ``admit(vcpu, provider)`` is asked, once the task definitions say how big the tasks
        are and before any service is created or changed, whether they fit in what AWS
        allows (bot/engine/capacity.py); it raises :class:`EngineError` when they do not.
        ``before_traffic(task definitions)`` (service -> ARN) runs next, before any service
        changes: the release tasks (bot/core/tasks.py); what it raises stops the deploy with
        the running revision untouched."""
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
        known = self.cloud_map_services(ns_id, "listing Cloud Map services")
        registered = {
            svc.name: self._register_task_definition(
                spec, svc, by_name[svc.name], addresses, report
            )
            for svc in spec.app.services
        }
        vcpu = sum(r[1] for r in registered.values()) / 1024 * self.settings.desired_count
        provider = self.capacity_strategy(next(iter(registered.values()))[3])[0][0].provider
        admit(vcpu, provider)
        before_traffic({name: r[0] for name, r in registered.items()})
        for svc in spec.app.services:
            td_arn, cpu, memory, arch = registered[svc.name]
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
        template = call(
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
        env_vars.update(database_variables(spec.app, spec.env))
        env_vars.update(spec.settings)  # the environment's own settings win over configured ones
        env_vars.update(addresses)
        env_vars.update(
            {
                "REVIEEE_ENV": spec.env,
                "REVIEEE_BRANCH": plan.branch,
                "REVIEEE_SHA": plan.sha or "",
                "REVIEEE_URL": spec.url,
                "REVIEEE_APP": spec.app.name,
                "REVIEEE_SERVICE": svc.name,
                **spec.variables,
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
        arn = call(step, self.aws.ecs.register_task_definition, family=family, **request)[
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
            with aws_step(step, ok_codes=("ServiceAlreadyExists",)) as refused:
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
            if refused.code is None:
                report(step, f"{svc.name}: created {name}.{self.namespace()[1]}")
            else:  # created by a run that was interrupted, or by another process
                existing = self.cloud_map_services(ns_id, step).get(name)
                if existing is None:
                    raise EngineError(step, refused.message)
        else:
            report(step, f"{svc.name}: {name} already exists, reusing it")
        return str(existing["Id"]), str(existing["Arn"])

    def _wait_drained(self, name: str, report: Reporter) -> None:
        """ECS keeps a deleted service's name DRAINING for minutes; a service of that name
        cannot be created until it is INACTIVE (spinnaker/spinnaker#5476)."""
        step = f"waiting for ECS service {name} to finish draining"
        limit = self.settings.drain_timeout
        report(step, f"{name} was stopped a moment ago and ECS is still draining it; waiting")
        start = self.monotonic()
        delay = max(min(self.settings.poll_interval, 2.0), 0.1)
        while True:
            current = self.describe_service(name, step)
            if current is None or current.get("status") != "DRAINING":
                report(step, f"{name} drained after {self.monotonic() - start:.0f}s")
                return
            if self.monotonic() - start >= limit:
                raise EngineError(step, f"{name} still DRAINING after {limit:g}s (drain_timeout)")
            self.sleep(delay)
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
        existing = self.describe_service(name, f"looking up ECS service {name}")
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
            call(
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
        with aws_step(step, ok_codes=("InvalidParameterException",)) as refused:
            self.aws.ecs.create_service(**request)
        if refused.code is not None:
            # Another process stopped it between our look and our create: wait it out once.
            if DRAINING_MESSAGE not in refused.message:
                raise EngineError(step, refused.message)
            self._wait_drained(name, report)
            call(step, self.aws.ecs.create_service, **request)
        report(step, f"{svc.name}: created {name} in cluster {self.settings.cluster}")
        return name

    def scale(self, app: AppConfig, env: str, desired: int, report: Reporter = noop) -> None:
        """Set every ECS service of the environment to ``desired`` tasks (0: asleep)."""
        for svc in app.services:
            name = ecs_service_name(env, svc.name)
            step = f"scaling ECS service {name} to {desired}"
            call(
                step,
                self.aws.ecs.update_service,
                cluster=self.settings.cluster,
                service=name,
                desiredCount=desired,
            )
            report(step, f"{svc.name}: {desired} task(s) wanted")

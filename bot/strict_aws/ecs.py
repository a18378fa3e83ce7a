"""Amazon ECS services as they behave, where moto's do not (moto never starts a task, deletes a
service at once and takes any cpu/memory pair).

The model keeps, for each service created through the layer, its deployments and their tasks,
and answers ``DescribeServices``, ``ListTasks`` and ``DescribeTasks`` from it. Time moves on a
monotonic clock; state advances lazily whenever a call comes in. Rules, each from the page
named:

- Tasks go PROVISIONING -> PENDING -> RUNNING (ECS developer guide, "Task lifecycle"), after
  ``task_start`` seconds. A task whose image cannot be pulled (no such digest or tag in ECR, or
  an image index with no manifest for the task's platform) stops after ``pull_failure`` seconds
  with ``stopCode: TaskFailedToStart`` and ``CannotPullContainerError`` (developer guide,
  "CannotPullContainer task errors").
- The deployment circuit breaker (developer guide, "How the Amazon ECS deployment circuit
  breaker detects failures"): the failure threshold is ``min(200, max(3, ceil(desired / 2)))``
  failed tasks; the deployment turns FAILED and, with rollback, ECS rolls back to the last
  COMPLETED deployment: the service then has ONE deployment, on the OLD task definition,
  ``runningCount == desiredCount`` (aws-actions/amazon-ecs-deploy-task-definition#191, #860).
- A deployment is COMPLETED when its tasks run and the old deployments' tasks are stopped
  (developer guide, "Rolling update": ``rolloutState``).
- ``DeleteService`` leaves the service DRAINING while its tasks stop, then INACTIVE;
  ``CreateService`` with the name answers ``InvalidParameterException: Unable to Start a
  service that is still Draining.`` (spinnaker/spinnaker#5476, remind101/empire#341).
- ``UpdateService`` of a service that is not ACTIVE: ``ServiceNotActiveException``.
- ``DescribeServices`` takes at most 10 services (API reference, DescribeServices:
  "You may specify up to 10 services to describe").
- Fargate accepts only its cpu/memory table (developer guide, "Task CPU and memory"):
  ``ClientException: No Fargate configuration exists for given values``.
- ARM64 tasks cannot run on Fargate Spot (developer guide, "Amazon ECS task definitions for
  64-bit ARM workloads": "Fargate Spot is not supported").
- Capacity provider strategy: weight 0-1,000, base 0-100,000 (API reference,
  CapacityProviderStrategyItem).
- Tags: see :mod:`bot.strict_aws.tags`.
- ECS registers a service's running tasks in its Cloud Map service and deregisters them when it
  stops them (developer guide, "Service discovery"); moto does neither.
- Fargate vCPU quotas: the vCPUs of an account's running (and starting) tasks per Region are
  bounded, On-Demand and Spot apart (Service Quotas: "Fargate On-Demand vCPU resource count",
  L-3032A538, and "Fargate Spot vCPU resource count", L-36FBB829; ECS developer guide, "AWS
  Fargate service quotas"). A task over it is not placed: the service says "was unable to
  place a task ... You've reached the limit on the number of vCPUs you can run concurrently"
  and ECS tries again later (aws/containers-roadmap#1305 for the wording).

One-off tasks (``RunTask``/``StopTask``) are the model's too; moto never sees them. What the
command does is a *program* of :attr:`Ecs.programs` (a :class:`Run` in, an :class:`Outcome`
out), looked up by the whole command, then by its first word; none: exit 0 after 0.3 s. Rules:

- ``RunTask`` (ECS API reference, RunTask): the cluster must exist and be ACTIVE
  (``ClusterNotFoundException: Cluster not found.``); the task definition (ARN,
  ``family:revision``, or ``family``: its latest ACTIVE revision) must exist (``ClientException:
  TaskDefinition not found.``, the wording ECS gives for a missing one: Cloud-CV/EvalAI#2419,
  remind101/empire#353) and be ACTIVE ("TaskDefinition is inactive", an
  ``InvalidParameterException`` on RunTask: DefangLabs/defang#775); ``awsvpc`` needs
  ``networkConfiguration.awsvpcConfiguration`` with a subnet; ``count`` is at most 10 ("Task
  count can not be greater than 10": artilleryio/artillery#595); ``launchType`` and
  ``capacityProviderStrategy`` exclude each other ("Specifying both a launch type and capacity
  provider strategy is not supported. Remove one and try again.":
  terraform-linters/tflint-ruleset-aws#349), the strategy's providers must be the cluster's, and
  with neither (and no default strategy on the cluster) the task would run on EC2 instances the
  cluster does not have ("No Container Instances were found in your cluster."); a Fargate task
  needs a task definition compatible with FARGATE; each ``containerOverrides[].name`` must be a
  container of the task definition ("Override for container named django is not a container in
  the TaskDefinition.": azavea/django-ecsmanage#21); "A total of 8192 characters are allowed for
  overrides. This limit includes the JSON formatting characters of the override structure."
  (counted as boto3 sends it: ``json.dumps``; the answer is "Container Overrides length must be
  at most 8192": convox/rack#1906); ``startedBy`` "Up to 128 letters (uppercase and lowercase),
  numbers, hyphens (-), forward slash (/), and underscores (_) are allowed"; ``clientToken`` "Up
  to 64 ASCII characters are allowed", and a second RunTask with the same token starts nothing
  and answers what the first one did. A task over the Fargate vCPU quota is not started: a
  ``failures`` entry "You've reached the limit on the number of vCPUs you can run concurrently".
- A one-off task's ``group`` is ``family:<family>`` unless RunTask named one (API reference,
  RunTask, ``group``); its life is a service task's until RUNNING; then the command runs for
  the outcome's seconds and the task stops with ``stopCode: EssentialContainerExited``,
  "Essential container in task exited" and the container's exit code (API reference, Task,
  ``stopCode``); the other containers are stopped by ECS with SIGTERM (exit code 143).
- Logs (developer guide, "Using the awslogs log driver"): the stream of a container is
  ``prefix-name/container-name/ecs-task-id``; a log group that does not exist (without
  ``awslogs-create-group: "true"``) fails the task on Fargate: ``ResourceInitializationError:
  failed to validate logger args: ... The specified log group does not exist.`` (developer
  guide, "Troubleshoot Amazon ECS ResourceInitializationError errors";
  doctorray117/minecraft-ondemand#12). Lines are written when the task stops, each its own event
  (empty lines dropped, as Docker's awslogs driver drops them).
- ``StopTask`` (API reference, StopTask): the task gets ``stopCode: UserInitiated`` and the
  reason (default "Task stopped by user"), a running container SIGTERM's exit code 143; an
  unknown task: ``InvalidParameterException: The referenced task was not found.``. A service's
  task stopped so is replaced by the service scheduler.
- ``ListTasks``/``DescribeTasks``: a stopped task stays listed for an hour (API reference,
  ListTasks: "Recently stopped tasks might appear in the returned results").
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot import fargate
from bot.strict_aws import tags as tag_rules
from bot.strict_aws.cloudmap import CloudMap
from bot.strict_aws.wire import Answer, Call, error, json_answer

ECR_IMAGE_RE = re.compile(
    r"^(?P<account>[0-9]{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com/"
    r"(?P<repo>[^@:]+)(?:@(?P<digest>sha256:[0-9a-f]{64})|:(?P<tag>[^@]+))?$"
)
INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
MANIFEST_TYPES = (
    *INDEX_TYPES,
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
STOP_TIME = 0.2  # seconds a stopping task takes to reach STOPPED
PLACE_RETRY = 5.0  # seconds between two tries to place the tasks a quota kept out
LISTED_AFTER_STOP = 3600.0  # seconds a stopped task is still listed
SIGTERM_EXIT = 143  # 128 + 15: a container stopped by ECS's SIGTERM
STARTED_BY_RE = re.compile(r"^[A-Za-z0-9_/-]{0,128}$")
VCPU_LIMIT = "You've reached the limit on the number of vCPUs you can run concurrently"

log = logging.getLogger("revieee.strict_aws")


@dataclass
class Run:
    """What a program is told about a one-off task when it turns RUNNING."""

    task_arn: str
    task_definition: str  # ARN
    container: str  # the container whose command was overridden (or the first essential one)
    command: list[str]  # the override's command, else the container definition's, else []
    environment: dict[str, str]  # the task definition's, with the override's on top
    started_by: str | None


@dataclass
class Outcome:
    """What the command of a one-off task does once RUNNING."""

    exit_code: int = 0
    seconds: float = 0.3  # how long it runs
    lines: list[str] = field(default_factory=list)  # what it writes to stdout (its log)


Program = Callable[[Run], Outcome]


@dataclass
class OneOff:
    """What a task started by RunTask has besides a service task's state."""

    cluster_arn: str
    group: str
    started_by: str | None
    overrides: dict[str, Any]
    container: str
    command: list[str]
    environment: dict[str, str]
    cpu: str | None
    memory: str | None
    tags: list[dict[str, str]]
    log: dict[str, str] | None  # the container's awslogs options, if it logs there
    finish_at: float | None = None  # when the command ends (set when RUNNING)
    outcome: Outcome | None = None
    exit_code: int | None = None  # the container's
    others_exit: int | None = None  # the other containers'


@dataclass
class Task:
    arn: str
    id: str
    cluster: str
    service: str
    deployment: str
    task_definition: str
    launched: float
    created_wall: float
    start: float
    fail: str | None
    fail_after: float
    capacity_provider: str
    ip: str
    running_at: float | None = None
    stopping_at: float | None = None
    stopped_at: float | None = None
    stop_code: str | None = None
    stopped_reason: str | None = None
    registered: list[str] = field(default_factory=list)  # Cloud Map service ids
    wall: dict[str, float] = field(default_factory=dict)
    one_off: OneOff | None = None  # a task RunTask started

    @property
    def live(self) -> bool:
        return self.stopped_at is None and self.stopping_at is None

    @property
    def started_by(self) -> str | None:
        return self.one_off.started_by if self.one_off is not None else self.deployment

    def next_event(self) -> float | None:
        if self.stopped_at is not None:
            return None
        if self.stopping_at is not None:
            return self.stopping_at + STOP_TIME
        if self.running_at is not None:
            return self.one_off.finish_at if self.one_off is not None else None
        if self.fail:
            return self.launched + self.fail_after
        return self.launched + self.start

    def last_status(self, now: float) -> str:
        if self.stopped_at is not None:
            return "STOPPED"
        if self.stopping_at is not None:
            return "DEACTIVATING" if self.running_at is not None else "STOPPED"
        if self.running_at is not None:
            return "RUNNING"
        elapsed = now - self.launched
        until = self.fail_after if self.fail else self.start
        return "PROVISIONING" if elapsed < until / 3 else "PENDING"


@dataclass
class Deployment:
    id: str
    task_definition: str
    desired: int
    created_wall: float
    status: str = "PRIMARY"
    rollout: str = "IN_PROGRESS"
    reason: str = ""
    failed: int = 0
    halted: bool = False  # the circuit breaker stopped launching tasks
    tasks: list[Task] = field(default_factory=list)
    updated_wall: float = field(default_factory=time.time)

    def live(self) -> list[Task]:
        return [t for t in self.tasks if t.live]

    def running(self) -> list[Task]:
        return [t for t in self.tasks if t.live and t.running_at is not None]


@dataclass
class Service:
    name: str
    cluster: str
    cluster_arn: str
    arn: str
    desired: int
    registries: list[str]
    breaker: bool
    rollback: bool
    strategy: list[dict[str, Any]] | None
    launch_type: str | None
    status: str = "ACTIVE"
    deployments: list[Deployment] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    stable_td: str | None = None  # the task definition of the last COMPLETED deployment
    deleted_at: float | None = None
    drained_at: float | None = None
    retired: list[Task] = field(default_factory=list)  # tasks of deployments that went away
    unplaced_at: float | None = None  # when a quota last kept one of its tasks out

    @property
    def primary(self) -> Deployment | None:
        return self.deployments[0] if self.deployments else None

    def tasks(self) -> list[Task]:
        return [t for d in self.deployments for t in d.tasks] + self.retired

    def retire(self, dep: Deployment) -> None:
        self.deployments.remove(dep)
        self.retired += dep.tasks


class Ecs:
    """The ECS part of the strict layer (see the module docstring for the rules)."""

    def __init__(
        self,
        upstream: Callable[[str, str, dict[str, Any]], dict[str, Any]],
        cloud_map: CloudMap,
        clock: Callable[[], float] = time.monotonic,
        task_start: float = 1.0,
        pull_failure: float = 0.3,
        drain: float = 2.0,
        task_start_jitter: float = 0.0,
    ) -> None:
        self.upstream = upstream
        self.cloud_map = cloud_map
        self.clock = clock
        self.task_start = task_start
        self.task_start_jitter = task_start_jitter  # each task takes up to this much longer
        self._rng = random.Random(1729)  # the same jitter run after run
        self.pull_failure = pull_failure
        self.drain = drain
        self.lock = threading.RLock()
        self.unpullable: dict[str, str] = {}  # image reference -> the reason (tests)
        self._services: dict[tuple[str, str], Service] = {}  # (cluster name, service name)
        self._removed: list[Task] = []  # tasks of services replaced after INACTIVE
        self._task_defs: dict[str, dict[str, Any]] = {}
        self._pulls: dict[tuple[str, str], str | None] = {}
        self._ips = itertools.count(10)
        self.refused: list[str] = []
        # vCPUs the account may run per capacity provider (Service Quotas' values)
        self.vcpu_quota: dict[str, float] = {"FARGATE": 4000.0, "FARGATE_SPOT": 4000.0}
        # (service, task definition, wall time) of every deployment that COMPLETED (benchmarks:
        # how long after ECS's own "completed" revieee says Ready)
        self.completed: list[tuple[str, str, float]] = []
        # what the commands of one-off tasks do: by the whole command (joined with spaces),
        # then by its first word (tests and the demo fill it)
        self.programs: dict[str, Program] = {}
        self.runs: list[dict[str, Any]] = []  # the params of every RunTask that started tasks
        self._one_offs: list[Task] = []
        self._tokens: dict[tuple[str, str], dict[str, Any]] = {}  # (cluster, clientToken)

    def reset(self) -> None:
        with self.lock:
            self._services.clear()
            self._removed.clear()
            self._task_defs.clear()
            self._pulls.clear()
            self.unpullable.clear()
            self.refused.clear()
            self.completed.clear()
            self.vcpu_quota = {"FARGATE": 4000.0, "FARGATE_SPOT": 4000.0}
            self.programs.clear()
            self.runs.clear()
            self._one_offs.clear()
            self._tokens.clear()

    # -- time --------------------------------------------------------------------------------

    def tick(self, now: float | None = None) -> None:
        """Advance every service to ``now``: tasks start or fail, deployments complete or roll
        back, DRAINING services turn INACTIVE."""
        with self.lock:
            now = self.clock() if now is None else now
            for svc in list(self._services.values()):
                self._advance(svc, now)
            for svc in list(self._services.values()):  # a quota kept tasks out: try again
                dep = svc.primary
                if (
                    svc.unplaced_at is not None
                    and now >= svc.unplaced_at + PLACE_RETRY
                    and svc.status == "ACTIVE"
                    and dep is not None
                    and not dep.halted
                ):
                    svc.unplaced_at = None
                    self._launch(svc, dep, now)
            while True:  # one-off tasks
                due = [(t.next_event(), t) for t in self._one_offs]
                pending = [(at, t) for at, t in due if at is not None and at <= now]
                if not pending:
                    break
                at, task = min(pending, key=lambda p: p[0])  # type: ignore[arg-type,return-value]
                assert at is not None
                self._one_off_event(task, at)

    def _advance(self, svc: Service, now: float) -> None:
        while True:
            due = [(t.next_event(), t) for t in svc.tasks()]
            pending = [(at, t) for at, t in due if at is not None and at <= now]
            if not pending:
                break
            at, task = min(pending, key=lambda p: p[0])  # type: ignore[arg-type,return-value]
            assert at is not None
            self._event(svc, task, at)
        drained = not any(t.stopped_at is None for t in svc.tasks())
        if svc.status == "DRAINING" and svc.deleted_at is not None and drained:
            end = max(svc.deleted_at + self.drain, svc.drained_at or 0)
            if now >= end:
                svc.status = "INACTIVE"

    def _event(self, svc: Service, task: Task, at: float) -> None:
        dep = next((d for d in svc.deployments if task in d.tasks), None)
        if task.stopping_at is not None:
            task.stopped_at = at
            task.wall["stoppedAt"] = time.time()
            if dep is not None and dep.status != "PRIMARY" and not dep.live():
                svc.retire(dep)
            if svc.status == "DRAINING":
                svc.drained_at = at
            return
        if dep is None:
            return
        if task.fail:
            task.stopped_at = at
            task.stop_code = "TaskFailedToStart"
            task.stopped_reason = task.fail
            task.wall["stoppedAt"] = time.time()
            dep.failed += 1
            self._after_failure(svc, dep, at)
            return
        task.running_at = at
        task.wall["startedAt"] = time.time()
        for registry in svc.registries:
            problem = self.cloud_map.ecs_register(
                registry,
                task.id,
                {
                    "AWS_INSTANCE_IPV4": task.ip,
                    "AVAILABILITY_ZONE": "us-east-1a",
                    "AWS_INIT_HEALTH_STATUS": "HEALTHY",
                    "ECS_CLUSTER_NAME": svc.cluster,
                    "ECS_SERVICE_NAME": svc.name,
                    "ECS_TASK_DEFINITION_FAMILY": task.task_definition.rsplit("/", 1)[-1].split(
                        ":"
                    )[0],
                },
                at,
            )
            if problem:
                self._say(svc, f"(service {svc.name}) failed to register task {task.id}: {problem}")
            else:
                task.registered.append(registry)
        self._check_complete(svc, at)

    def _after_failure(self, svc: Service, dep: Deployment, at: float) -> None:
        threshold = min(200, max(3, math.ceil(dep.desired / 2)))
        if not (svc.breaker and dep.status == "PRIMARY" and dep.failed >= threshold):
            if not dep.halted:
                self._launch(svc, dep, at)
            return
        dep.rollout = "FAILED"
        dep.reason = "ECS deployment circuit breaker: tasks failed to start."
        dep.updated_wall = time.time()
        self._say(
            svc,
            f"(service {svc.name}) (deployment {dep.id}) deployment failed: tasks failed to start.",
        )
        previous = next(
            (d for d in svc.deployments[1:] if d.task_definition == svc.stable_td), None
        )
        if not (svc.rollback and svc.stable_td):
            dep.halted = True
            return
        # Roll back: a new PRIMARY deployment on the last good task definition that takes over
        # the old deployment's running tasks; the failed one goes away.
        back = Deployment(
            id=f"ecs-svc/{uuid.uuid4().int % 10**19:019d}",
            task_definition=svc.stable_td,
            desired=svc.desired,
            created_wall=time.time(),
        )
        self._say(
            svc,
            f"(service {svc.name}) rolling back to deployment "
            f"{previous.id if previous else svc.stable_td}.",
        )
        for other in list(svc.deployments):
            if other.task_definition == svc.stable_td:
                back.tasks += other.tasks
                svc.deployments.remove(other)
        for task in dep.live():
            self._stop_task(svc, task, at, "Scaling activity initiated by (deployment rollback)")
        svc.retire(dep)
        for other in svc.deployments:
            other.status = "ACTIVE"
        svc.deployments.insert(0, back)
        self._launch(svc, back, at)
        self._check_complete(svc, at)

    def _check_complete(self, svc: Service, at: float) -> None:
        dep = svc.primary
        if dep is None or dep.rollout != "IN_PROGRESS" or len(dep.running()) < dep.desired:
            return
        reason = f"Scaling activity initiated by (deployment {dep.id})"
        for old in svc.deployments[1:]:
            for task in old.live():
                self._stop_task(svc, task, at, reason)
            if not old.tasks or all(t.stopped_at is not None for t in old.tasks):
                svc.retire(old)
        dep.rollout = "COMPLETED"
        dep.reason = f"ECS deployment {dep.id} completed."
        dep.updated_wall = time.time() - (self.clock() - at)  # when it happened
        self.completed.append((svc.name, dep.task_definition, dep.updated_wall))
        svc.stable_td = dep.task_definition
        self._say(svc, f"(service {svc.name}) (deployment {dep.id}) deployment completed.")
        self._say(svc, f"(service {svc.name}) has reached a steady state.")

    def _launch(self, svc: Service, dep: Deployment, at: float) -> None:
        started = []
        td = self._task_definition(dep.task_definition)
        arch = ((td.get("runtimePlatform") or {}).get("cpuArchitecture")) or "X86_64"
        provider = (svc.strategy or [{"capacityProvider": svc.launch_type or "FARGATE"}])[0][
            "capacityProvider"
        ]
        vcpu = (fargate.units(td.get("cpu"), kind="cpu") or 0) / 1024
        while len(dep.live()) < dep.desired and not dep.halted:
            if self.vcpu_in_use(provider) + vcpu > self.vcpu_quota.get(provider, float("inf")):
                svc.unplaced_at = at
                self._say(
                    svc,
                    f"(service {svc.name}) was unable to place a task. Reason: You've reached "
                    "the limit on the number of vCPUs you can run concurrently.",
                )
                break
            task_id = uuid.uuid4().hex
            fail = None
            for container in td.get("containerDefinitions", []):
                fail = fail or self._pull_problem(container.get("image", ""), arch)
            ip = next(self._ips)
            task = Task(
                arn=f"{svc.cluster_arn.replace(':cluster/', ':task/')}/{task_id}",
                id=task_id,
                cluster=svc.cluster,
                service=svc.name,
                deployment=dep.id,
                task_definition=dep.task_definition,
                launched=at,
                created_wall=time.time(),
                start=self.task_start + self._rng.uniform(0, self.task_start_jitter),
                fail=fail,
                fail_after=self.pull_failure,
                capacity_provider=provider,
                ip=f"10.77.{ip // 250 % 250}.{ip % 250 + 2}",
            )
            dep.tasks.append(task)
            started.append(task.id)
        if started:
            self._say(
                svc,
                f"(service {svc.name}) has started {len(started)} tasks: "
                + " ".join(f"(task {t})" for t in started)
                + ".",
            )

    def vcpu_in_use(self, provider: str) -> float:
        """vCPUs of the account's live tasks on ``provider`` (FARGATE or FARGATE_SPOT)."""
        total = 0.0
        tasks = [t for svc in self._services.values() for t in svc.tasks()] + self._one_offs
        for task in tasks:
            if task.stopped_at is None and task.capacity_provider == provider:
                total += self._vcpu(task)
        return total

    def _vcpu(self, task: Task) -> float:
        cpu = task.one_off.cpu if task.one_off is not None else None
        cpu = cpu or self._task_definition(task.task_definition).get("cpu")
        return (fargate.units(cpu, kind="cpu") or 0) / 1024

    def _stop_task(self, svc: Service, task: Task, at: float, reason: str) -> None:
        if not task.live:
            return
        task.stopping_at = at
        task.stop_code = task.stop_code or "ServiceSchedulerInitiated"
        task.stopped_reason = task.stopped_reason or reason
        task.wall["stoppingAt"] = time.time()
        for registry in task.registered:
            self.cloud_map.ecs_deregister(registry, task.id, at)

    def _scale(self, svc: Service, dep: Deployment, desired: int, at: float) -> None:
        dep.desired = desired
        extra = dep.live()[desired:] if desired < len(dep.live()) else []
        for task in reversed(extra):
            self._stop_task(svc, task, at, "Scaling activity initiated by (service)")
        if desired > len(dep.live()):
            if dep.rollout == "FAILED" and dep.halted:
                return
            self._launch(svc, dep, at)
        elif dep.rollout == "IN_PROGRESS":
            self._check_complete(svc, at)

    def _say(self, svc: Service, message: str) -> None:
        event = {"id": str(uuid.uuid4()), "createdAt": time.time(), "message": message}
        svc.events.insert(0, event)
        del svc.events[100:]

    def _task_definition(self, arn: str) -> dict[str, Any]:
        if arn not in self._task_defs:
            self._task_defs[arn] = self.upstream(
                "ecs", "describe_task_definition", {"taskDefinition": arn}
            )["taskDefinition"]
        return self._task_defs[arn]

    def _pull_problem(self, image: str, arch: str) -> str | None:
        key = (image, arch)
        if key in self._pulls:
            return self._pulls[key]
        prefix = "CannotPullContainerError: pull image manifest has been retried 7 time(s): "
        problem: str | None = None
        if image in self.unpullable:
            problem = prefix + self.unpullable[image]
        found = ECR_IMAGE_RE.match(image)
        if problem is None and found:
            ident = (
                {"imageDigest": found["digest"]}
                if found["digest"]
                else {"imageTag": found["tag"] or "latest"}
            )
            try:
                images = self.upstream(
                    "ecr",
                    "batch_get_image",
                    {
                        "repositoryName": found["repo"],
                        "imageIds": [ident],
                        "acceptedMediaTypes": list(MANIFEST_TYPES),
                    },
                )["images"]
            except Exception:
                images = []
            if not images:
                problem = prefix + f"failed to resolve ref {image}: {image}: not found"
            else:
                manifest = json.loads(images[0].get("imageManifest") or "{}")
                if manifest.get("manifests") is not None:
                    want = "arm64" if arch == "ARM64" else "amd64"
                    platforms = [
                        (m.get("platform") or {}).get("architecture")
                        for m in manifest["manifests"]
                        if (m.get("platform") or {}).get("os") == "linux"
                    ]
                    if want not in platforms:
                        problem = (
                            prefix + f"failed to resolve ref {image}: no match for platform "
                            f"linux/{want} in manifest: not found"
                        )
        self._pulls[key] = problem
        return problem

    # -- the API -----------------------------------------------------------------------------

    def before(self, call: Call) -> Answer | None:
        with self.lock:
            self.tick()
            handler = getattr(self, f"_before_{call.action}", None)
            return handler(call) if handler else None

    def after(self, call: Call, answer: Answer) -> Answer:
        with self.lock:
            handler = getattr(self, f"_after_{call.action}", None)
            if handler is None or answer.status != 200:
                return answer
            result: Answer = handler(call, answer)
            return result

    def _refuse(self, call: Call, code: str, message: str) -> Answer:
        self.refused.append(f"{call.action}: {code}: {message}")
        return error(call, code, message)

    def _service(self, cluster: str | None, name: str) -> Service | None:
        cluster_name = (cluster or "default").rsplit("/", 1)[-1]
        return self._services.get((cluster_name, name.rsplit("/", 1)[-1]))

    def _check_tags(self, call: Call, items: list[dict[str, str]] | None) -> Answer | None:
        problem = tag_rules.problem(tag_rules.pairs(items))
        return self._refuse(call, "InvalidParameterException", problem) if problem else None

    def _check_strategy(self, call: Call) -> Answer | None:
        strategy = call.params.get("capacityProviderStrategy") or []
        for item in strategy:
            if not 0 <= int(item.get("weight", 0)) <= 1000:
                return self._refuse(
                    call,
                    "InvalidParameterException",
                    f"The weight {item.get('weight')} of capacity provider "
                    f"{item.get('capacityProvider')} must be between 0 and 1000.",
                )
            if not 0 <= int(item.get("base", 0)) <= 100000:
                return self._refuse(
                    call,
                    "InvalidParameterException",
                    f"The base {item.get('base')} of capacity provider "
                    f"{item.get('capacityProvider')} must be between 0 and 100000.",
                )
        td_arn = call.params.get("taskDefinition")
        if td_arn and any(i.get("capacityProvider") == "FARGATE_SPOT" for i in strategy):
            try:
                td = self._task_definition(td_arn)
            except Exception:
                return None
            arch = (td.get("runtimePlatform") or {}).get("cpuArchitecture")
            if arch == "ARM64":
                return self._refuse(
                    call,
                    "InvalidParameterException",
                    "Fargate Spot is not supported for tasks with the ARM64 CPU architecture: "
                    f"{td_arn} runs on ARM64; use the FARGATE capacity provider.",
                )
        return None

    def _before_RegisterTaskDefinition(self, call: Call) -> Answer | None:
        p = call.params
        if "FARGATE" in (p.get("requiresCompatibilities") or []):
            cpu, memory = fargate.units(p.get("cpu")), fargate.units(p.get("memory"))
            if cpu is None or memory is None:
                return self._refuse(
                    call,
                    "ClientException",
                    "Fargate requires that 'cpu' be defined at the task level.",
                )
            if not fargate.valid_pair(cpu, memory):
                return self._refuse(
                    call,
                    "ClientException",
                    f"No Fargate configuration exists for given values: {cpu} CPU, {memory} "
                    "memory. See the Amazon ECS documentation for the valid values.",
                )
        return self._check_tags(call, p.get("tags"))

    def _before_TagResource(self, call: Call) -> Answer | None:
        return self._check_tags(call, call.params.get("tags"))

    def _before_DescribeServices(self, call: Call) -> Answer | None:
        names = call.params.get("services") or []
        if len(names) > 10:
            return self._refuse(
                call,
                "InvalidParameterException",
                f"services can have at most 10 items; {len(names)} were given.",
            )
        return None

    def _before_CreateService(self, call: Call) -> Answer | None:
        p = call.params
        svc = self._service(p.get("cluster"), p.get("serviceName", ""))
        if svc is not None and svc.status == "DRAINING":
            return self._refuse(
                call,
                "InvalidParameterException",
                "Unable to Start a service that is still Draining.",
            )
        return self._check_strategy(call) or self._check_tags(call, p.get("tags"))

    def _after_CreateService(self, call: Call, answer: Answer) -> Answer:
        p = call.params
        data = answer.json()
        described = data["service"]
        key = (described["clusterArn"].rsplit("/", 1)[-1], described["serviceName"])
        existing = self._services.get(key)
        if existing is not None and existing.status == "ACTIVE":
            return self._describe_into(answer, "service", existing)  # an idempotent retry
        if existing is not None:
            self._removed += existing.tasks()
        breaker = (p.get("deploymentConfiguration") or {}).get("deploymentCircuitBreaker") or {}
        svc = Service(
            name=described["serviceName"],
            cluster=key[0],
            cluster_arn=described["clusterArn"],
            arn=described["serviceArn"],
            desired=int(p.get("desiredCount", 0)),
            registries=[
                r["registryArn"].rsplit("/", 1)[-1] for r in p.get("serviceRegistries") or []
            ],
            breaker=bool(breaker.get("enable")),
            rollback=bool(breaker.get("rollback")),
            strategy=p.get("capacityProviderStrategy"),
            launch_type=p.get("launchType"),
        )
        self._services[key] = svc
        now = self.clock()
        dep = Deployment(
            id=f"ecs-svc/{uuid.uuid4().int % 10**19:019d}",
            task_definition=described["taskDefinition"],
            desired=svc.desired,
            created_wall=time.time(),
        )
        svc.deployments.append(dep)
        self._launch(svc, dep, now)
        self._check_complete(svc, now)
        return self._describe_into(answer, "service", svc)

    def _before_UpdateService(self, call: Call) -> Answer | None:
        p = call.params
        svc = self._service(p.get("cluster"), p.get("service", ""))
        if svc is not None and svc.status != "ACTIVE":
            return self._refuse(call, "ServiceNotActiveException", "Service was not ACTIVE.")
        return self._check_strategy(call)

    def _after_UpdateService(self, call: Call, answer: Answer) -> Answer:
        p = call.params
        svc = self._service(p.get("cluster"), p.get("service", ""))
        if svc is None:
            return answer
        now = self.clock()
        breaker = (p.get("deploymentConfiguration") or {}).get("deploymentCircuitBreaker")
        if breaker is not None:
            svc.breaker, svc.rollback = bool(breaker.get("enable")), bool(breaker.get("rollback"))
        if p.get("capacityProviderStrategy"):
            svc.strategy = p["capacityProviderStrategy"]
        if "desiredCount" in p:
            svc.desired = int(p["desiredCount"])
        td = p.get("taskDefinition")
        primary = svc.primary
        if td and ":" not in td.rsplit("/", 1)[-1]:  # a family: its latest ACTIVE revision
            td = self._task_definition(td)["taskDefinitionArn"]
        if primary is None or (td and td != primary.task_definition) or p.get("forceNewDeployment"):
            for old in svc.deployments:
                old.status = "ACTIVE"
            dep = Deployment(
                id=f"ecs-svc/{uuid.uuid4().int % 10**19:019d}",
                task_definition=td or (primary.task_definition if primary else ""),
                desired=svc.desired,
                created_wall=time.time(),
            )
            svc.deployments.insert(0, dep)
            self._launch(svc, dep, now)
            self._check_complete(svc, now)
        elif primary.desired != svc.desired:
            self._scale(svc, primary, svc.desired, now)
        return self._describe_into(answer, "service", svc)

    def _before_DeleteService(self, call: Call) -> Answer | None:
        p = call.params
        svc = self._service(p.get("cluster"), p.get("service", ""))
        if svc is None:
            return None
        if svc.status != "ACTIVE":
            return self._refuse(call, "ServiceNotActiveException", "Service was not ACTIVE.")
        if not p.get("force") and svc.desired > 0:
            return self._refuse(
                call,
                "InvalidParameterException",
                "The service cannot be stopped while it is scaled above 0.",
            )
        return None

    def _after_DeleteService(self, call: Call, answer: Answer) -> Answer:
        p = call.params
        svc = self._service(p.get("cluster"), p.get("service", ""))
        if svc is None:
            return answer
        now = self.clock()
        svc.status = "DRAINING"
        svc.deleted_at = now
        svc.desired = 0
        for dep in svc.deployments:
            dep.desired = 0
            for task in dep.live():
                self._stop_task(svc, task, now, "Service deleted")
        self._say(svc, f"(service {svc.name}) has begun draining connections on 0 tasks.")
        return self._describe_into(answer, "service", svc)

    def _after_DescribeServices(self, call: Call, answer: Answer) -> Answer:
        data = answer.json()
        cluster = call.params.get("cluster")
        for entry in data.get("services", []):
            svc = self._service(cluster, entry["serviceName"])
            if svc is not None and svc.arn == entry["serviceArn"]:
                self._fill(entry, svc)
        return json_answer(data)

    def _describe_into(self, answer: Answer, key: str, svc: Service) -> Answer:
        data = answer.json()
        self._fill(data[key], svc)
        return json_answer(data)

    def _fill(self, entry: dict[str, Any], svc: Service) -> None:
        now = self.clock()
        tasks = [t for t in svc.tasks() if t.live or t.stopping_at is not None]
        entry["status"] = svc.status
        entry["desiredCount"] = svc.desired
        entry["runningCount"] = sum(1 for t in tasks if t.last_status(now) == "RUNNING")
        entry["pendingCount"] = sum(
            1 for t in tasks if t.live and t.last_status(now) in ("PROVISIONING", "PENDING")
        )
        if svc.primary is not None:
            entry["taskDefinition"] = svc.primary.task_definition
        if svc.strategy:
            entry["capacityProviderStrategy"] = svc.strategy
            entry.pop("launchType", None)
        entry["deployments"] = [self._deployment(svc, d, now) for d in svc.deployments]
        entry["events"] = list(svc.events)

    def _deployment(self, svc: Service, dep: Deployment, now: float) -> dict[str, Any]:
        out = {
            "id": dep.id,
            "status": dep.status,
            "taskDefinition": dep.task_definition,
            "desiredCount": dep.desired,
            "pendingCount": sum(
                1 for t in dep.live() if t.last_status(now) in ("PROVISIONING", "PENDING")
            ),
            "runningCount": sum(1 for t in dep.tasks if t.last_status(now) == "RUNNING"),
            "failedTasks": dep.failed,
            "createdAt": dep.created_wall,
            "updatedAt": dep.updated_wall,
            "rolloutState": dep.rollout,
            "rolloutStateReason": dep.reason or f"ECS deployment {dep.id} in progress.",
        }
        if svc.strategy:
            out["capacityProviderStrategy"] = svc.strategy
        else:
            out["launchType"] = svc.launch_type or "FARGATE"
        return out

    # -- tasks -------------------------------------------------------------------------------

    def _all_tasks(self) -> list[Task]:
        return (
            [t for s in self._services.values() for t in s.tasks()] + self._removed + self._one_offs
        )

    def _before_ListTasks(self, call: Call) -> Answer | None:
        p = call.params
        if not p.get("serviceName"):
            return None
        cluster = (p.get("cluster") or "default").rsplit("/", 1)[-1]
        wanted = p.get("desiredStatus", "RUNNING")
        now = self.clock()
        arns = [
            t.arn
            for t in self._all_tasks()
            if t.cluster == cluster
            and t.service == p["serviceName"].rsplit("/", 1)[-1]
            and (t.live if wanted == "RUNNING" else not t.live)
            and (t.stopped_at is None or now - t.stopped_at < LISTED_AFTER_STOP)
        ]
        return json_answer({"taskArns": arns})

    def _after_ListTasks(self, call: Call, answer: Answer) -> Answer:
        p = call.params
        cluster = (p.get("cluster") or "default").rsplit("/", 1)[-1]
        wanted = p.get("desiredStatus", "RUNNING")
        data = answer.json()
        now = self.clock()
        data["taskArns"] = list(data.get("taskArns", [])) + [
            t.arn
            for t in self._all_tasks()
            if t.cluster == cluster
            and (t.live if wanted == "RUNNING" else not t.live)
            and (t.stopped_at is None or now - t.stopped_at < LISTED_AFTER_STOP)
            and p.get("startedBy") in (None, t.started_by)
            and p.get("family") in (None, t.task_definition.rsplit("/", 1)[-1].split(":")[0])
        ]
        return json_answer(data)

    def _before_DescribeTasks(self, call: Call) -> Answer | None:
        found, others = self.describe_tasks(
            list(call.params.get("tasks") or []), tags="TAGS" in (call.params.get("include") or [])
        )
        if not others:
            return json_answer({"tasks": found, "failures": []})
        call.rewrite(tasks=others)  # moto describes the others (RunTask's)
        call.extra["found"] = found
        return None

    def _after_DescribeTasks(self, call: Call, answer: Answer) -> Answer:
        data = answer.json()
        data["tasks"] = call.extra.get("found", []) + list(data.get("tasks", []))
        return json_answer(data)

    def describe_tasks(
        self, arns: list[str], tags: bool = False
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """(tasks of the model, the arns it does not know)."""
        by_arn = {t.arn: t for t in self._all_tasks()}
        by_id = {t.id: t for t in by_arn.values()}
        now = self.clock()
        found, others = [], []
        for arn in arns:
            task = by_arn.get(arn) or by_id.get(arn)
            if task is None:
                others.append(arn)
            else:
                found.append(self._task_json(task, now, tags))
        return found, others

    def _task_json(self, task: Task, now: float, tags: bool = False) -> dict[str, Any]:
        td = self._task_definition(task.task_definition)
        status = task.last_status(now)
        one_off = task.one_off
        containers = []
        for c in td.get("containerDefinitions", []):
            container: dict[str, Any] = {
                "name": c["name"],
                "image": c.get("image"),
                "lastStatus": status if status != "DEACTIVATING" else "RUNNING",
            }
            if task.stop_code == "TaskFailedToStart" and task.fail:
                container["reason"] = task.fail
            elif status == "STOPPED" and one_off is not None:
                main = c["name"] == one_off.container
                container["exitCode"] = one_off.exit_code if main else one_off.others_exit
            elif status == "STOPPED":
                container["exitCode"] = 0 if task.running_at is not None else None
            containers.append({k: v for k, v in container.items() if v is not None})
        out: dict[str, Any] = {
            "taskArn": task.arn,
            "clusterArn": task.arn.split(":task/")[0] + f":cluster/{task.cluster}",
            "taskDefinitionArn": task.task_definition,
            "group": one_off.group if one_off is not None else f"service:{task.service}",
            "startedBy": task.started_by,
            "lastStatus": status,
            "desiredStatus": "RUNNING" if task.live else "STOPPED",
            "launchType": "FARGATE",
            "capacityProviderName": task.capacity_provider,
            "createdAt": task.created_wall,
            "containers": containers,
            "cpu": (one_off.cpu if one_off is not None else None) or td.get("cpu"),
            "memory": (one_off.memory if one_off is not None else None) or td.get("memory"),
            "attachments": [
                {
                    "type": "ElasticNetworkInterface",
                    "status": "ATTACHED",
                    "details": [{"name": "privateIPv4Address", "value": task.ip}],
                }
            ],
        }
        for key in ("startedAt", "stoppingAt", "stoppedAt"):
            if key in task.wall:
                out[key] = task.wall[key]
        if task.stop_code:
            out["stopCode"] = task.stop_code
        if task.stopped_reason and (status == "STOPPED" or task.stopping_at is not None):
            out["stoppedReason"] = task.stopped_reason
        if one_off is not None:
            out["overrides"] = {"containerOverrides": [], **one_off.overrides}
            if one_off.started_by is None:
                del out["startedBy"]
            if tags:
                out["tags"] = list(one_off.tags)
        return out

    # -- one-off tasks (RunTask, StopTask) ---------------------------------------------------

    def _wall(self, at: float) -> float:
        """The wall time of the monotonic instant ``at``."""
        return time.time() - (self.clock() - at)

    def _resolve_task_definition(self, ref: str) -> dict[str, Any] | None:
        """The task definition ``ref`` names (ARN, ``family:revision``, or ``family``: its
        latest ACTIVE revision), fresh from moto (its status may have changed), or None."""
        name = ref.rsplit("/", 1)[-1]
        if ":" not in name:
            arns = self.upstream(
                "ecs", "list_task_definitions", {"familyPrefix": name, "status": "ACTIVE"}
            )["taskDefinitionArns"]
            revisions = [
                int(a.rsplit(":", 1)[-1])
                for a in arns
                if a.rsplit("/", 1)[-1].rsplit(":", 1)[0] == name
            ]
            if not revisions:
                return None
            ref = f"{name}:{max(revisions)}"
        try:
            td: dict[str, Any] = self.upstream(
                "ecs", "describe_task_definition", {"taskDefinition": ref}
            )["taskDefinition"]
        except Exception:
            return None
        self._task_defs[td["taskDefinitionArn"]] = td
        return td

    def _before_RunTask(self, call: Call) -> Answer:
        p = call.params
        cluster_ref = str(p.get("cluster") or "default")
        cluster_name = cluster_ref.rsplit("/", 1)[-1]
        clusters = self.upstream("ecs", "describe_clusters", {"clusters": [cluster_ref]})
        cluster = next((c for c in clusters["clusters"] if c.get("status") == "ACTIVE"), None)
        if cluster is None:
            return self._refuse(call, "ClusterNotFoundException", "Cluster not found.")
        token = p.get("clientToken")
        if token is not None and (len(token) > 64 or not token.isascii()):
            return self._refuse(
                call,
                "InvalidParameterException",
                "clientToken: up to 64 ASCII characters are allowed.",
            )
        if token and (cluster_name, token) in self._tokens:  # the same request again
            first = self._tokens[(cluster_name, token)]
            now = self.clock()
            by_arn = {t.arn: t for t in self._one_offs}
            return json_answer(
                {
                    "tasks": [self._task_json(by_arn[a], now) for a in first["tasks"]],
                    "failures": first["failures"],
                }
            )
        started_by = p.get("startedBy")
        if started_by is not None and not STARTED_BY_RE.match(started_by):
            return self._refuse(
                call,
                "InvalidParameterException",
                "startedBy: up to 128 letters (uppercase and lowercase), numbers, hyphens (-), "
                "forward slash (/), and underscores (_) are allowed.",
            )
        count = int(p.get("count", 1))
        if count > 10:
            return self._refuse(
                call, "InvalidParameterException", "Task count can not be greater than 10"
            )
        if count < 1:
            return self._refuse(call, "InvalidParameterException", "Task count must be at least 1")
        td = self._resolve_task_definition(str(p.get("taskDefinition") or ""))
        if td is None:
            return self._refuse(call, "ClientException", "TaskDefinition not found.")
        if td.get("status") != "ACTIVE":
            return self._refuse(call, "InvalidParameterException", "TaskDefinition is inactive")
        td_arn = td["taskDefinitionArn"]
        strategy = p.get("capacityProviderStrategy") or []
        if p.get("launchType") and strategy:
            return self._refuse(
                call,
                "InvalidParameterException",
                "Specifying both a launch type and capacity provider strategy is not supported. "
                "Remove one and try again.",
            )
        resolved = dataclasses.replace(call, params={**p, "taskDefinition": td_arn})
        problem = self._check_strategy(resolved) or self._check_tags(call, p.get("tags"))
        if problem is not None:
            return problem
        if not strategy and not p.get("launchType"):
            strategy = cluster.get("defaultCapacityProviderStrategy") or []
        own = cluster.get("capacityProviders") or []
        if p.get("capacityProviderStrategy") and any(
            i.get("capacityProvider") not in own for i in strategy
        ):
            return self._refuse(
                call,
                "InvalidParameterException",
                "The specified capacity provider strategy cannot contain a capacity provider "
                "that is not associated with the cluster. Associate the capacity provider with "
                "the cluster or specify a valid capacity provider and try again.",
            )
        if strategy:
            provider = str(strategy[0].get("capacityProvider"))
        else:
            provider = str(p.get("launchType") or "EC2")  # no launch type: EC2's
        if provider not in ("FARGATE", "FARGATE_SPOT"):
            # the cluster has no container instances (the model has no EC2 capacity)
            return self._refuse(
                call,
                "InvalidParameterException",
                "No Container Instances were found in your cluster.",
            )
        if "FARGATE" not in (td.get("requiresCompatibilities") or td.get("compatibilities") or []):
            return self._refuse(
                call,
                "InvalidParameterException",
                "Task definition does not support launch_type FARGATE.",
            )
        if td.get("networkMode") == "awsvpc":
            vpc = (p.get("networkConfiguration") or {}).get("awsvpcConfiguration") or {}
            if not vpc.get("subnets"):
                return self._refuse(
                    call,
                    "InvalidParameterException",
                    "Network Configuration must be provided when networkMode 'awsvpc' is "
                    "specified.",
                )
        overrides = p.get("overrides") or {}
        names = [c["name"] for c in td.get("containerDefinitions", [])]
        for override in overrides.get("containerOverrides") or []:
            if override.get("name") not in names:
                return self._refuse(
                    call,
                    "InvalidParameterException",
                    f"Override for container named {override.get('name')} is not a container "
                    "in the TaskDefinition.",
                )
        if len(json.dumps(overrides)) > 8192:  # as boto3 sends it
            return self._refuse(
                call,
                "InvalidParameterException",
                "Container Overrides length must be at most 8192",
            )
        now = self.clock()
        tasks: list[Task] = []
        failures: list[dict[str, str]] = []
        for _ in range(count):
            task = self._one_off(p, td, cluster, provider, now)
            if self.vcpu_in_use(provider) + self._vcpu(task) > self.vcpu_quota.get(
                provider, float("inf")
            ):
                failures.append({"arn": td_arn, "reason": VCPU_LIMIT})
                continue
            self._one_offs.append(task)
            tasks.append(task)
        if token:
            self._tokens[(cluster_name, token)] = {
                "tasks": [t.arn for t in tasks],
                "failures": failures,
            }
        self.runs.append(dict(p))
        return json_answer(
            {"tasks": [self._task_json(t, now) for t in tasks], "failures": failures}
        )

    def _one_off(
        self,
        p: dict[str, Any],
        td: dict[str, Any],
        cluster: dict[str, Any],
        provider: str,
        now: float,
    ) -> Task:
        """A new one-off task of RunTask's ``p`` (not placed yet)."""
        overrides = p.get("overrides") or {}
        by_name = {o.get("name"): o for o in overrides.get("containerOverrides") or []}
        definitions = td.get("containerDefinitions", [])
        chosen = next(
            (c for c in definitions if by_name.get(c["name"], {}).get("command") is not None),
            None,
        ) or next((c for c in definitions if c.get("essential", True)), definitions[0])
        override = by_name.get(chosen["name"], {})
        command = override.get("command")
        if command is None:
            command = chosen.get("command") or []
        environment = {e["name"]: e.get("value", "") for e in chosen.get("environment") or []}
        environment.update(
            {e["name"]: e.get("value", "") for e in override.get("environment") or []}
        )
        logging_ = chosen.get("logConfiguration") or {}
        arch = ((td.get("runtimePlatform") or {}).get("cpuArchitecture")) or "X86_64"
        fail = None
        for container in definitions:
            fail = fail or self._pull_problem(container.get("image", ""), arch)
        task_id = uuid.uuid4().hex
        ip = next(self._ips)
        cluster_arn = str(cluster["clusterArn"])
        return Task(
            arn=f"{cluster_arn.replace(':cluster/', ':task/')}/{task_id}",
            id=task_id,
            cluster=str(cluster["clusterName"]),
            service="",
            deployment="",
            task_definition=td["taskDefinitionArn"],
            launched=now,
            created_wall=time.time(),
            start=self.task_start + self._rng.uniform(0, self.task_start_jitter),
            fail=fail,
            fail_after=self.pull_failure,
            capacity_provider=provider,
            ip=f"10.77.{ip // 250 % 250}.{ip % 250 + 2}",
            one_off=OneOff(
                cluster_arn=cluster_arn,
                group=str(p.get("group") or f"family:{td['family']}"),
                started_by=p.get("startedBy"),
                overrides=overrides,
                container=chosen["name"],
                command=[str(c) for c in command],
                environment=environment,
                cpu=overrides.get("cpu"),
                memory=overrides.get("memory"),
                tags=list(p.get("tags") or []),
                log=dict(logging_.get("options") or {})
                if logging_.get("logDriver") == "awslogs"
                else None,
            ),
        )

    def _program(self, run: Run) -> Outcome:
        program = self.programs.get(" ".join(run.command))
        if program is None and run.command:
            program = self.programs.get(run.command[0])
        if program is None:
            return Outcome()
        try:
            return program(run)
        except Exception as exc:  # a broken program: the command fails, the model goes on
            log.exception("program for %s failed", run.command)
            return Outcome(exit_code=1, lines=[f"strict_aws: the program raised {exc!r}"])

    def _one_off_event(self, task: Task, at: float) -> None:
        one_off = task.one_off
        assert one_off is not None
        if task.stopping_at is not None:  # StopTask
            task.stopped_at = at
            task.wall["stoppedAt"] = self._wall(at)
            if task.running_at is not None:
                one_off.exit_code = one_off.others_exit = SIGTERM_EXIT
                self._write_log(task, at, cut=True)
            return
        if task.running_at is not None:  # the command ended
            assert one_off.outcome is not None
            task.stopped_at = at
            task.stop_code = "EssentialContainerExited"
            task.stopped_reason = "Essential container in task exited"
            task.wall["stoppingAt"] = task.wall["stoppedAt"] = self._wall(at)
            one_off.exit_code = one_off.outcome.exit_code
            one_off.others_exit = SIGTERM_EXIT
            self._write_log(task, at)
            return
        task.fail = task.fail or self._log_problem(one_off)
        if task.fail:
            task.stopped_at = at
            task.stop_code = "TaskFailedToStart"
            task.stopped_reason = task.fail
            task.wall["stoppedAt"] = self._wall(at)
            return
        task.running_at = at
        task.wall["startedAt"] = self._wall(at)
        outcome = self._program(
            Run(
                task_arn=task.arn,
                task_definition=task.task_definition,
                container=one_off.container,
                command=list(one_off.command),
                environment=dict(one_off.environment),
                started_by=one_off.started_by,
            )
        )
        one_off.outcome = outcome
        one_off.finish_at = at + max(0.0, float(outcome.seconds))
        stream = self._log_stream(task)
        if stream is not None:
            try:
                self.upstream("logs", "create_log_stream", {**stream})
            except Exception as exc:
                if "ResourceAlreadyExists" not in str(exc):
                    log.warning("could not create the log stream %s: %s", stream, exc)

    def _log_stream(self, task: Task) -> dict[str, str] | None:
        one_off = task.one_off
        if one_off is None or one_off.log is None:
            return None
        prefix = one_off.log.get("awslogs-stream-prefix")
        name = f"{prefix}/{one_off.container}/{task.id}" if prefix else task.id
        return {"logGroupName": one_off.log.get("awslogs-group", ""), "logStreamName": name}

    def _log_problem(self, one_off: OneOff) -> str | None:
        """Why the awslogs driver cannot start (no such log group), or None."""
        if one_off.log is None:
            return None
        group = one_off.log.get("awslogs-group", "")
        found = self.upstream("logs", "describe_log_groups", {"logGroupNamePrefix": group})
        if any(g["logGroupName"] == group for g in found.get("logGroups", [])):
            return None
        if one_off.log.get("awslogs-create-group") == "true":
            self.upstream("logs", "create_log_group", {"logGroupName": group})
            return None
        return (
            "ResourceInitializationError: failed to validate logger args: create stream has "
            "been retried 1 times: failed to create Cloudwatch log stream: "
            "ResourceNotFoundException: The specified log group does not exist. : exit status 1"
        )

    def _write_log(self, task: Task, at: float, cut: bool = False) -> None:
        """The lines the command wrote, one event each, spread over its run; ``cut``: it was
        stopped at ``at``, before its end: those it wrote by then."""
        one_off = task.one_off
        stream = self._log_stream(task)
        if one_off is None or one_off.outcome is None or stream is None:
            return  # no awslogs: the lines are lost, as on ECS
        assert task.running_at is not None
        lines, seconds = one_off.outcome.lines, max(0.0, one_off.outcome.seconds)
        ran = at - task.running_at
        if cut and seconds > 0 and ran < seconds:
            lines = lines[: int(len(lines) * ran / seconds)]
        lines = [line for line in lines if line]
        start = int(self._wall(task.running_at) * 1000)
        step = seconds * 1000 / max(1, len(lines))
        events, last = [], start - 1
        for i, line in enumerate(lines):
            last = max(last + 1, start + int(i * step))
            events.append({"timestamp": last, "message": line})
        for i in range(0, len(events), 1000):
            try:
                self.upstream(
                    "logs", "put_log_events", {**stream, "logEvents": events[i : i + 1000]}
                )
            except Exception as exc:
                log.warning("could not write the log of %s: %s", task.arn, exc)
                return

    def _before_StopTask(self, call: Call) -> Answer:
        p = call.params
        cluster = str(p.get("cluster") or "default").rsplit("/", 1)[-1]
        ref = str(p.get("task") or "")
        task = next(
            (
                t
                for t in self._all_tasks()
                if t.cluster == cluster and (t.arn == ref or t.id == ref.rsplit("/", 1)[-1])
            ),
            None,
        )
        if task is None:
            return self._refuse(
                call, "InvalidParameterException", "The referenced task was not found."
            )
        now = self.clock()
        reason = str(p.get("reason") or "Task stopped by user")
        if task.live:
            task.stop_code = "UserInitiated"
            task.stopped_reason = reason
            if task.one_off is not None:
                task.stopping_at = now
                task.wall["stoppingAt"] = self._wall(now)
            else:
                svc = self._services.get((task.cluster, task.service))
                if svc is not None:
                    self._stop_task(svc, task, now, reason)
                    dep = next((d for d in svc.deployments if task in d.tasks), None)
                    if (
                        svc.status == "ACTIVE"
                        and dep is not None
                        and dep.status == "PRIMARY"
                        and not dep.halted
                    ):
                        self._launch(svc, dep, now)  # the scheduler replaces it
        return json_answer({"task": self._task_json(task, now)})

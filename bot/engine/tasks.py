"""One-off tasks: a command run once in an environment's own task definition (``RunTask`` with
a command override, in the services' network), waited for until it stops, and what it said.

Lifecycle tasks (``on_create``, ``release``, ``on_stop``: bot/core/tasks.py) are run this way.
They run on Fargate On-Demand whatever the services' strategy: a migration cut off by a Spot
interruption would leave a database half migrated."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from bot.config import ServiceConfig, TaskConfig
from bot.engine.base import EngineBase, EngineError, Reporter, aws_step, call
from bot.engine.deploy import _tags
from bot.engine.model import EnvSpec, revision
from bot.logtail import CloudWatchTail, console_link
from bot.text import span

TAIL_LINES = 20  # the last lines of a task's log kept and shown
TASK_PROVIDER = "FARGATE"
MAX_POLL = 5.0  # seconds between two looks at a running task, at most


@dataclass(frozen=True)
class TaskResult:
    """How a one-off task ended: its container's exit code (None when it never ran or was
    stopped before it exited), how long it took, why it failed, its log's last lines and
    where the whole log is."""

    task_arn: str
    exit_code: int | None
    seconds: float
    reason: str | None = None
    lines: tuple[str, ...] = ()
    log_url: str | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.reason is None

    def summary(self, label: str) -> str:
        """``release task migrate: exit code 0 after 12s`` (and why, when it failed)."""
        took = span(self.seconds) if self.seconds >= 1 else f"{self.seconds:.1f}s"
        if self.exit_code is None:
            return f"{label} did not run to its end after {took}: {self.reason or 'stopped'}"
        text = f"{label}: exit code {self.exit_code} after {took}"
        return text + (f" ({self.reason})" if self.reason else "")


def container_of(task: TaskConfig, svc: ServiceConfig) -> str:
    return task.container or svc.container


class OneOffTasks(EngineBase):
    def start_task(
        self,
        spec: EnvSpec,
        task: TaskConfig,
        task_definition: str,
        token: str,
        report: Reporter,
    ) -> str:
        """Start ``task`` from ``task_definition`` (an ARN); returns the task's ARN. ``token``
        makes the call idempotent: the same token starts no second task (a crash between the
        call and its record does not run a migration twice)."""
        svc = spec.app.service(task.service)
        container = container_of(task, svc)
        step = f"starting {task.label}"
        tags = _tags(spec.app.name, spec.env, spec.branch)
        found = call(
            step,
            self.aws.ecs.run_task,
            cluster=self.settings.cluster,
            taskDefinition=task_definition,
            count=1,
            clientToken=hashlib.sha256(token.encode()).hexdigest()[:64],
            startedBy=f"revieee/{task.when}/{task.name}"[:128],
            capacityProviderStrategy=[{"capacityProvider": TASK_PROVIDER, "weight": 1}],
            networkConfiguration={
                "awsvpcConfiguration": {
                    "subnets": list(self.settings.subnets),
                    "securityGroups": list(self.settings.security_groups),
                    "assignPublicIp": "ENABLED" if self.settings.assign_public_ip else "DISABLED",
                }
            },
            overrides={
                "containerOverrides": [
                    {
                        "name": container,
                        "command": list(task.command),
                        "environment": [
                            {"name": "REVIEEE_TASK", "value": task.name},
                            {"name": "REVIEEE_TASK_MOMENT", "value": task.when},
                        ],
                    }
                ]
            },
            tags=[{"key": k, "value": v} for k, v in tags.items()],
            enableECSManagedTags=True,
        )
        tasks, failures = found.get("tasks") or [], found.get("failures") or []
        if not tasks:
            why = "; ".join(str(f.get("reason") or f) for f in failures) or "ECS started no task"
            raise EngineError(step, why)
        arn = str(tasks[0]["taskArn"])
        report(
            step,
            f"{' '.join(task.command)} in {container} of {revision(task_definition)} "
            f"(task {arn.rsplit('/', 1)[-1]})",
        )
        return arn

    def wait_task(
        self, spec: EnvSpec, task: TaskConfig, arn: str, timeout: float, started: float
    ) -> TaskResult:
        """Look at the task until it has stopped, or stop it once ``timeout`` seconds have
        passed since ``started`` (the engine's monotonic clock); then its result."""
        step = f"waiting for {task.label}"
        container = container_of(task, spec.app.service(task.service))
        delay = max(min(self.settings.poll_interval, 1.0), 0.05)
        stopped_for_time = False
        while True:
            found = call(
                step, self.aws.ecs.describe_tasks, cluster=self.settings.cluster, tasks=[arn]
            )
            described = (found.get("tasks") or [None])[0]
            if described is None:
                raise EngineError(step, f"ECS does not know task {arn} (any more)")
            if described.get("lastStatus") == "STOPPED":
                break
            if not stopped_for_time and self.monotonic() - started >= timeout:
                stopped_for_time = True
                with aws_step(f"stopping {task.label}"):
                    self.aws.ecs.stop_task(
                        cluster=self.settings.cluster,
                        task=arn,
                        reason=f"revieee: {task.label} ran over its timeout ({span(timeout)})",
                    )
            self.sleep(delay)
            delay = min(delay * 1.5, MAX_POLL)
        seconds = self.monotonic() - started
        box: dict[str, Any] = next(
            (c for c in described.get("containers", []) if c.get("name") == container), {}
        )
        exit_code = box.get("exitCode")
        reason: str | None = None
        if stopped_for_time:
            reason, exit_code = f"it ran over its timeout ({span(timeout)}) and was stopped", None
        elif exit_code is None:
            reason = box.get("reason") or described.get("stoppedReason") or "it stopped"
        lines, url = self._log_tail(described, container, arn)
        return TaskResult(arn, exit_code, seconds, reason, tuple(lines), url)

    def describe_task(self, arn: str, step: str) -> dict[str, Any] | None:
        found = call(step, self.aws.ecs.describe_tasks, cluster=self.settings.cluster, tasks=[arn])
        return (found.get("tasks") or [None])[0]

    def _log_tail(
        self, described: dict[str, Any], container: str, arn: str
    ) -> tuple[list[str], str | None]:
        """The last lines the container wrote (``awslogs`` containers: the stream is
        ``<prefix>/<container>/<task id>``); best effort, never raises."""
        td = self._task_definition(str(described.get("taskDefinitionArn") or ""))
        box: dict[str, Any] = next(
            (c for c in td.get("containerDefinitions", []) if c["name"] == container), {}
        )
        config = box.get("logConfiguration") or {}
        if config.get("logDriver") != "awslogs":
            return [], None
        options = config.get("options") or {}
        group = options.get("awslogs-group")
        if not group:
            return [], None
        prefix = options.get("awslogs-stream-prefix")
        task_id = arn.rsplit("/", 1)[-1]
        stream = f"{prefix}/{container}/{task_id}" if prefix else f"{container}/{task_id}"
        region = options.get("awslogs-region") or getattr(self.aws.logs.meta, "region_name", "")
        try:
            lines = CloudWatchTail(self.aws.logs, group, stream).drain(max_pages=50)
        except (ClientError, BotoCoreError):
            lines = []
        return lines[-TAIL_LINES:], console_link(str(region), group)

    def _task_definition(self, arn: str) -> dict[str, Any]:
        if not arn:
            return {}
        with aws_step("reading the task's task definition", ok_codes=("ClientException",)) as r:
            found = self.aws.ecs.describe_task_definition(taskDefinition=arn)
        return {} if r.code else dict(found["taskDefinition"])

    def latest_task_definition(self, family: str) -> str | None:
        """The ARN of the family's newest ACTIVE revision, None when it has none."""
        with aws_step(
            f"reading task definition {family}", ok_codes=("ClientException", "ServerException")
        ) as refused:
            found = self.aws.ecs.describe_task_definition(taskDefinition=family)
        if refused.code:
            return None
        td = found["taskDefinition"]
        return None if td.get("status", "ACTIVE") != "ACTIVE" else str(td["taskDefinitionArn"])

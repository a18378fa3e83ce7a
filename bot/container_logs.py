"""Recent container logs of an environment's tasks, read from CloudWatch Logs (``logs`` verb).

revieee registers every ``awslogs`` container of an environment with the stream prefix
``<template prefix>/<env>`` (or ``<env>``; see ``bot.engine.deploy._log_per_environment``), and the
awslogs driver names each task's stream ``<prefix>/<container>/<task id>``. So the streams of an
environment are exactly those under ``<prefix>/<container>/``: running and stopped tasks alike,
which is what someone debugging a crash needs. They are read with ``filter_log_events``
(paginated, at most :data:`MAX_SCANNED` events per container; a window holding more is narrowed
to its newest part, and what could not be read is said).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from bot.aws import AwsClients, Pace, describe_error, error_code
from bot.config import AppConfig
from bot.engine import EngineError
from bot.logtail import console_link
from bot.text import span

MAX_SCANNED = 20_000  # events read per container and window before giving up on older ones
MAX_PAGES = 200  # pages of one query (CloudWatch may answer empty pages while it searches)
# FilterLogEvents: 5 requests a second per account and Region, a hard quota (CloudWatch Logs
# quotas page); one pace for every `logs` of this process, so two at once stay under it. Four,
# not five: the calls reach AWS with the network's jitter, two paced 0.2 s apart can land closer.
FILTER_PACE = Pace(4.0)
NARROWINGS = 2  # how many times a window with too many events is cut to its newest part
NARROW_BY = 8  # ... and by how much
MAX_MESSAGE = 2000  # characters of one event kept


@dataclass(frozen=True)
class LogLine:
    """One log event of one task."""

    timestamp: int  # milliseconds since the epoch
    label: str  # the container (with its service when two services share a container name)
    task: str  # the ECS task id
    message: str

    def format(self, with_date: bool = False) -> str:
        """``10:04:05 web/1a2b3c4 message`` (UTC)."""
        when = datetime.fromtimestamp(self.timestamp / 1000, UTC)
        stamp = when.strftime("%m-%d %H:%M:%S" if with_date else "%H:%M:%S")
        return f"{stamp} {self.label}/{self.task[:7]} {self.message}"


@dataclass
class ContainerLogs:
    """What ``logs`` found: the newest lines (oldest first), notes about containers whose logs
    could not be read (another log driver, a missing log group, a window with too many events),
    and a console link per log group."""

    env: str
    since: int  # seconds looked back
    asked: int  # lines asked for
    services: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    found: int = 0  # events read in the window, before keeping the newest ``asked``
    truncated: bool = False  # some events in the window were not read
    links: dict[str, str] = field(default_factory=dict)  # log group -> AWS console


def services_to_read(
    app: AppConfig | None, row: dict[str, Any], service: str | None
) -> list[dict[str, Any]]:
    """The deployed services (store rows' ``services``) to read, in the app's order; only
    ``service`` when given. No AWS call: front doors use it to answer at once."""
    env = row["name"]
    deployed = json.loads(row.get("services") or "[]")
    if app is not None:
        order = {s.name: i for i, s in enumerate(app.services)}
        deployed.sort(key=lambda s: order.get(s["service"], len(order)))
    if not deployed:
        raise EngineError(
            f"reading the logs of {env}",
            f"it has no deployed services (status {row.get('status')}); deploy it first",
        )
    if service is None:
        return list(deployed)
    chosen = [s for s in deployed if s["service"] == service]
    if not chosen:
        names = ", ".join(s["service"] for s in deployed)
        raise EngineError(
            f"reading the logs of {env}", f"no service {service!r}; its services are {names}"
        )
    return chosen


def fetch(
    aws: AwsClients,
    app: AppConfig | None,
    row: dict[str, Any],
    *,
    service: str | None = None,
    since: int = 900,
    lines: int = 100,
    now: datetime | None = None,
    max_scanned: int = MAX_SCANNED,
) -> ContainerLogs:
    """The newest ``lines`` log lines of the last ``since`` seconds of the environment ``row``
    (every deployed service, or only ``service``). Raises :class:`EngineError` for an unknown
    service or an AWS error, naming the step."""
    env = row["name"]
    chosen = services_to_read(app, row, service)
    result = ContainerLogs(env, since, lines, services=[s["service"] for s in chosen])
    end = int((now or datetime.now(UTC)).timestamp() * 1000)
    start = end - since * 1000
    readable: list[tuple[str, str, str, str]] = []  # (service, container, group, stream prefix)
    for svc in chosen:
        arn = str(svc["task_definition"])
        step = f"reading task definition {arn.rsplit('/', 1)[-1]} of {svc['service']}"
        try:
            described = aws.ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
        except (ClientError, BotoCoreError) as exc:
            raise EngineError(step, describe_error(exc)) from exc
        for container in described.get("containerDefinitions", []):
            name = container["name"]
            config = container.get("logConfiguration") or {}
            driver = config.get("logDriver")
            options = config.get("options") or {}
            group, prefix = options.get("awslogs-group"), options.get("awslogs-stream-prefix")
            if driver != "awslogs":
                how = f"logs with {driver}" if driver else "has no logConfiguration"
                result.notes.append(f"container {name} of {svc['service']} {how}, not CloudWatch")
            elif not group:
                result.notes.append(f"container {name} of {svc['service']} has no awslogs-group")
            elif prefix != env and not str(prefix or "").endswith(f"/{env}"):
                result.notes.append(
                    f"container {name} of {svc['service']}: its stream prefix {prefix!r} does not "
                    f"name {env} (deployed by an older revieee?): redeploy to read its logs here"
                )
            else:
                readable.append((svc["service"], name, group, f"{prefix}/{name}/"))
    shared = {c for _, c, _, _ in readable if sum(1 for r in readable if r[1] == c) > 1}
    events: list[LogLine] = []
    region = aws.logs.meta.region_name
    for service_name, container, group, stream_prefix in readable:
        label = f"{service_name}.{container}" if container in shared else container
        found = _read(aws.logs, group, stream_prefix, label, start, end, max_scanned, result)
        if found is not None:
            events += found
            result.links.setdefault(group, console_link(region, group))
    events.sort(key=lambda e: e.timestamp)  # stable: a stream's events keep their order
    result.found = len(events)
    kept = events[-lines:]
    days = {datetime.fromtimestamp(e.timestamp / 1000, UTC).date() for e in kept}
    result.lines = [e.format(with_date=len(days) > 1) for e in kept]
    return result


def _read(
    logs: Any,
    group: str,
    stream_prefix: str,
    label: str,
    start: int,
    end: int,
    max_scanned: int,
    result: ContainerLogs,
) -> list[LogLine] | None:
    """The events of one container's streams in [start, end]; None when its group is missing.
    A window with more than ``max_scanned`` events is narrowed to its newest part."""
    first = start
    for attempt in range(NARROWINGS + 1):
        try:
            found, complete = _scan(logs, group, stream_prefix, label, start, end, max_scanned)
        except (ClientError, BotoCoreError) as exc:
            if error_code(exc) == "ResourceNotFoundException":
                # awslogs-create-group would need logs:CreateLogGroup on the execution role,
                # which AmazonECSTaskExecutionRolePolicy (the stack's) does not grant.
                result.notes.append(
                    f"log group {group} of {label} does not exist: no task has logged to it yet "
                    f"(create it: aws logs create-log-group --log-group-name {group})"
                )
                return None
            if error_code(exc) in ("AccessDeniedException", "AccessDenied"):
                result.notes.append(
                    f"revieee may not read log group {group} of {label}: its role reads the "
                    "stack's EnvironmentLogGroup and CodeBuild's groups (log to the former, or "
                    "add the group to the role's Logs statement)"
                )
                return None
            step = f"reading the logs of {label} in {group}"
            raise EngineError(step, describe_error(exc)) from exc
        if complete:
            if start != first:
                result.notes.append(
                    f"{label}: more than {max_scanned} events since {_clock(first)}; "
                    f"read those since {_clock(start)} only"
                )
            return found
        if attempt < NARROWINGS:
            start = end - (end - start) // NARROW_BY
    result.truncated = True
    last = _clock(found[-1].timestamp) if found else _clock(start)
    result.notes.append(
        f"{label}: stopped after {max_scanned} events (up to {last}); newer lines were not "
        "read: use a shorter --since"
    )
    return found


def _scan(
    logs: Any, group: str, stream_prefix: str, label: str, start: int, end: int, budget: int
) -> tuple[list[LogLine], bool]:
    """Read forward from ``start``; (events, whether every event of the window was read)."""
    found: list[LogLine] = []
    request: dict[str, Any] = {
        "logGroupName": group,
        "logStreamNamePrefix": stream_prefix,
        "startTime": start,
        "endTime": end,
    }
    token: str | None = None
    for _ in range(MAX_PAGES):
        FILTER_PACE.wait()
        page = logs.filter_log_events(
            **request, limit=min(10_000, budget + 1), **({"nextToken": token} if token else {})
        )
        for event in page.get("events", []):
            stream = str(event.get("logStreamName", ""))
            if not stream.startswith(stream_prefix):
                continue  # AWS filters on the prefix already; moto does not
            if len(found) == budget:
                return found, False
            message = str(event.get("message", "")).rstrip("\n")
            if len(message) > MAX_MESSAGE:
                message = message[: MAX_MESSAGE - 1] + "…"
            task = stream[len(stream_prefix) :]
            found.append(LogLine(int(event["timestamp"]), label, task, message))
        new = page.get("nextToken")
        if not new or new == token:
            return found, True
        token = new
    return found, False


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S")


def logs_summary(result: ContainerLogs) -> str:
    """One line saying what a ``logs`` answer holds."""
    since = span(result.since)
    scope = f"{result.env} ({', '.join(result.services)})"
    if not result.lines:
        return f"no log lines in the last {since} for {scope}"
    read = f" (of {result.found} read)" if result.found > len(result.lines) else ""
    return f"last {len(result.lines)} log lines{read} of {scope}, from the last {since}"

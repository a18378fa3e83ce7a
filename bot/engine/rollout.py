"""The rollout: waiting until ECS runs what was deployed, steadily, and saying why not; what
ECS says about an environment's services now."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from bot.config import AppConfig
from bot.engine.base import EngineBase, EngineError, Reporter, noop
from bot.engine.model import EnvSpec, revision
from bot.logtail import LogFollower, LogSink, ServiceEvents
from bot.naming import ecs_service_name

ROLLOUT_POLL = 1.0  # seconds between two looks at a rollout, at most


WAIT_STEP = "waiting for the services to become stable"


@dataclass
class Watch:
    """One rollout being waited for: its ECS services, the task definition each must run
    (``expected``: ECS service name -> ARN; a service not named runs what it runs at the
    first look), since when, until when (``deadline`` on the engine's monotonic clock), and
    what was said of it so far. Many can be watched together (:mod:`bot.watcher`)."""

    names: list[str]
    expected: dict[str, str]
    since: datetime | None
    deadline: float
    timeout: float
    report: Reporter = noop
    follower: LogFollower | None = None
    events: ServiceEvents = field(default_factory=lambda: ServiceEvents(None))
    said: dict[str, str] = field(default_factory=dict)

    def close(self) -> None:
        if self.follower is not None:
            self.follower.finish()


class Rollout(EngineBase):
    def watch(
        self,
        spec: EnvSpec,
        report: Reporter = noop,
        timeout: float | None = None,
        since: datetime | None = None,
        log: LogSink | None = None,
        expected: dict[str, str] | None = None,
        said: bool = False,
    ) -> Watch:
        """Start watching the rollout of ``spec``'s services (see :meth:`wait`); ``said``: the
        wait was announced already (a watch resumed after a restart)."""
        timeout = self.settings.deploy_timeout if timeout is None else timeout
        names = [ecs_service_name(spec.env, s.name) for s in spec.app.services]
        if not said:
            self.announce_wait(spec, report, timeout)
        return Watch(
            names,
            dict(expected or {}),
            since,
            self.monotonic() + timeout,
            timeout,
            report,
            LogFollower("ECS service events", log) if log else None,
            ServiceEvents(since),
        )

    def announce_wait(self, spec: EnvSpec, report: Reporter, timeout: float) -> None:
        """Say that the rollout of ``spec``'s services is waited for, and how long at most."""
        names = ", ".join(ecs_service_name(spec.env, s.name) for s in spec.app.services)
        report(WAIT_STEP, f"waiting up to {timeout:g}s for {names}")

    def wait(
        self,
        spec: EnvSpec,
        report: Reporter = noop,
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
        watch = self.watch(spec, report, timeout, since, log, expected)
        try:
            while True:
                services, failures = self.describe_services(watch.names, WAIT_STEP)
                if self.look(watch, services, failures):
                    return
                # At least once a second: Ready within a second of ECS's COMPLETED
                # (bench_ready.py); one DescribeServices per 10 services a second.
                self.sleep(min(self.settings.poll_interval, ROLLOUT_POLL))
        finally:
            watch.close()

    def look(
        self, watch: Watch, services: list[dict[str, Any]], failures: list[dict[str, Any]]
    ) -> bool:
        """Judge one look at the watched services (as DescribeServices described them: only
        ``watch.names`` are read). True when every one is stable; raises :class:`EngineError`
        when the rollout failed, ECS rolled it back, a service is gone or the deadline
        passed."""
        step, since = WAIT_STEP, watch.since
        ours = [s for s in services if s.get("serviceName") in watch.names]
        if watch.follower is not None:
            watch.follower.lines(watch.events.new(ours))
        pending = []
        for svc in ours:
            name = svc["serviceName"]
            if svc.get("status") != "ACTIVE":
                raise EngineError(step, f"{name} is {svc.get('status')}")
            deployments = svc.get("deployments", [])
            primary = next((d for d in deployments if d.get("status") == "PRIMARY"), None)
            want = watch.expected.setdefault(name, (primary or svc).get("taskDefinition", ""))
            progress = f"{name}: {svc.get('runningCount', 0)}/{svc.get('desiredCount', 0)} running"
            if watch.said.get(name) != progress:
                watch.report(step, progress)
                watch.said[name] = progress
            failed = [
                d
                for d in deployments
                if d.get("taskDefinition") == want and d.get("rolloutState") == "FAILED"
            ]
            if primary is not None and primary.get("taskDefinition") != want:
                raise EngineError(step, self._rolled_back(svc, want, primary, since))
            if failed:
                reason = failed[0].get("rolloutStateReason", "")
                raise EngineError(step, self._explain(svc, f"the rollout failed ({reason})", since))
            if not (
                primary is not None
                and primary.get("rolloutState", "COMPLETED") == "COMPLETED"
                and len(deployments) == 1
                and svc.get("runningCount") == svc.get("desiredCount")
            ):
                pending.append(svc)
        gone = [f["arn"] for f in failures if f.get("arn", "").rsplit("/", 1)[-1] in watch.names]
        if gone:
            raise EngineError(step, f"service gone: {', '.join(gone)}")
        if not pending:
            watch.report(step, "all services are stable")
            return True
        if self.monotonic() >= watch.deadline:
            raise EngineError(
                step, self._explain(pending[0], f"not stable after {watch.timeout:g}s", since)
            )
        return False

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

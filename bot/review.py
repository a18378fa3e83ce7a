"""The application core that every front door drives: request, list, describe and carry out
deploys and stops of review environments.

Front doors call ``request_deploy``/``request_stop`` (which only persist an operation) and the
read methods; the operation runner calls :meth:`ReviewApps.execute` to do the work through the
engine. Progress goes to the registered listeners: the terminal's output, the Slack notifier
(deploy message and thread) and the GitHub notifier (PR comment and deployment statuses).
"""

from __future__ import annotations

import difflib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bot import container_logs, cost
from bot.config import Settings
from bot.container_logs import ContainerLogs
from bot.engine import (
    CommitResolver,
    Engine,
    EngineError,
    EnvSpec,
    plans_to_json,
    states_to_json,
)
from bot.images import ImageBuilder, Superseded
from bot.logtail import LogEvent
from bot.naming import env_name
from bot.store import Operation, Store, cost_so_far

log = logging.getLogger("revieee.review")

# (operation, step, message)
Listener = Callable[[Operation, str, str], None]
# (operation, new lines of a build's log or of the ECS events...)
LogListener = Callable[[Operation, LogEvent], None]


class RequestError(Exception):
    """A request that cannot be accepted (unknown app or environment...): said to the user."""


@dataclass
class Requested:
    operation: Operation
    env: str
    url: str
    superseded: list[int] = field(default_factory=list)
    note: str = ""


class ReviewApps:
    """Review environments: the domain, on top of the store and the engine."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        engine: Engine,
        commits: CommitResolver | None = None,
        images: ImageBuilder | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.engine = engine
        self.commits = commits
        self.images = images or ImageBuilder(
            engine.aws, settings, store, engine, engine._sleep, engine._monotonic
        )
        self.listeners: list[Listener] = []
        self.log_listeners: list[LogListener] = []
        self.on_enqueue: list[Callable[[Operation], None]] = []
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self.prices = cost.prices(settings, getattr(engine.aws.ecs.meta, "region_name", None))

    # -- requests (fast: persist only) ---------------------------------------------------------

    def request_deploy(
        self,
        branch: str,
        app: str | None = None,
        *,
        sha: str | None = None,
        requested_by: str | None = None,
        source: str = "cli",
        wait: bool = True,
        context: dict[str, Any] | None = None,
    ) -> Requested:
        """Persist a deploy of ``branch``; the environment is created or redeployed.

        ``context`` (e.g. the Slack channel and response URL) travels with the operation."""
        try:
            app_cfg = self.settings.app(app)
        except KeyError as exc:
            raise RequestError(exc.args[0]) from None
        branch = branch.strip()
        if not branch:
            raise RequestError("a branch name is required")
        name = env_name(app_cfg.name, branch)
        url = self.settings.url_for(app_cfg.name, name, branch)
        existing = self.store.get_env(name)
        fresh = existing is None or existing["status"] == "stopped"
        fields: dict[str, Any] = {
            "app": app_cfg.name,
            "branch": branch,
            "url": url,
            **self._activity(None if fresh else existing),
        }
        if fresh:
            fields.update(
                status="queued", owner=requested_by, error=None, pinned=0, stopped_reason=None
            )
        self.store.upsert_env(name, **fields)
        params = {**(context or {}), "sha": sha, "wait": wait}
        op, superseded = self.store.enqueue(
            "deploy", name, app_cfg.name, branch, params, requested_by, source
        )
        self.store.audit(
            "deploy requested",
            requested_by,
            name,
            source,
            branch=branch,
            sha=sha,
            operation=op.id,
            superseded=superseded,
        )
        self._enqueued(op)
        return Requested(op, name, url, superseded)

    def request_stop(
        self,
        env: str,
        *,
        requested_by: str | None = None,
        source: str = "cli",
        context: dict[str, Any] | None = None,
        reason: str | None = None,
    ) -> Requested:
        """Persist a stop of the environment named ``env``; ``reason`` (the scheduler's: why it
        stops it) is shown in its thread and PR comment."""
        row = self.find_env(env)
        if reason:
            context = {**(context or {}), "reason": reason, "auto": True}
        note = (
            "it was already stopped; checking nothing is left" if row["status"] == "stopped" else ""
        )
        op, superseded = self.store.enqueue(
            "stop",
            row["name"],
            row["app"],
            row["branch"],
            dict(context or {}),
            requested_by,
            source,
        )
        self.store.audit(
            "stop requested",
            requested_by,
            row["name"],
            source,
            operation=op.id,
            superseded=superseded,
        )
        self._enqueued(op)
        return Requested(op, row["name"], row["url"], superseded, note)

    def keep(
        self,
        env: str,
        seconds: float | None = None,
        *,
        forever: bool = False,
        requested_by: str | None = None,
        source: str = "cli",
    ) -> str | None:
        """Keep the environment: its expiry moves ``seconds`` (default ``keep_for``) later, from
        now if it has passed; ``forever`` pins it (never reminded or stopped by the
        scheduler). A duration given to a pinned environment unpins it. Returns the new expiry
        (ISO 8601, UTC), None when pinned."""
        row = self.find_env(env)
        if row["status"] == "stopped":
            raise RequestError(f"{row['name']} is stopped; deploy it again instead")
        now = self.clock()
        if forever:
            self.store.upsert_env(
                row["name"], pinned=1, expires_at=None, last_activity_at=now.isoformat()
            )
            self.store.audit("pinned", requested_by, row["name"], source)
            return None
        seconds = seconds or self.settings.keep_for
        current = (
            datetime.fromisoformat(row["expires_at"])
            if row.get("expires_at") and not row.get("pinned")
            else now
        )
        expires = (max(current, now) + timedelta(seconds=seconds)).isoformat(timespec="seconds")
        self.store.upsert_env(
            row["name"], expires_at=expires, pinned=0, last_activity_at=now.isoformat()
        )
        self.store.audit("kept", requested_by, row["name"], source, expires_at=expires)
        return expires

    def touch(self, row: dict[str, Any]) -> None:
        """Someone used the environment ``row`` (as :meth:`find_env` returned it): it is not
        forgotten, and its expiry moves to ``ttl`` from now if that is later."""
        if row["status"] != "stopped":
            self.store.upsert_env(row["name"], **self._activity(row))

    def _activity(self, row: dict[str, Any] | None) -> dict[str, Any]:
        now = self.clock()
        fields: dict[str, Any] = {"last_activity_at": now.isoformat()}
        if row is not None and row.get("pinned"):
            return fields
        expires = now + timedelta(seconds=self.settings.ttl)
        if row is not None and row.get("expires_at"):
            expires = max(expires, datetime.fromisoformat(row["expires_at"]))
        fields["expires_at"] = expires.isoformat(timespec="seconds")
        return fields

    def request_scale(
        self,
        env: str,
        kind: str,
        *,
        requested_by: str | None = None,
        source: str = "cli",
        context: dict[str, Any] | None = None,
    ) -> Requested:
        """Persist a ``sleep`` (scale to zero) or ``wake`` (scale back up) of ``env``."""
        row = self.find_env(env)
        if kind == "wake" and row["status"] != "sleeping":
            raise RequestError(f"{row['name']} is not sleeping (it is {row['status']})")
        if kind == "sleep" and row["status"] != "running":
            raise RequestError(f"{row['name']} is not running (it is {row['status']})")
        op, superseded = self.store.enqueue(
            kind, row["name"], row["app"], row["branch"], dict(context or {}), requested_by, source
        )
        self.store.audit(f"{kind} requested", requested_by, row["name"], source, operation=op.id)
        self._enqueued(op)
        return Requested(op, row["name"], row["url"], superseded)

    def _enqueued(self, op: Operation) -> None:
        log.info("operation queued op=%s kind=%s env=%s", op.id, op.kind, op.env)
        for callback in self.on_enqueue:
            callback(op)

    # -- reads ---------------------------------------------------------------------------------

    def find_env(self, name: str, app: str | None = None) -> dict[str, Any]:
        """An environment by name, or by branch (with the app or the default app)."""
        row = self.store.get_env(name)
        if row is None:
            try:
                row = self.store.find_env(self.settings.app(app).name, name)
            except KeyError:
                row = None
        if row is None:
            known = [e["name"] for e in self.store.list_envs(include_stopped=True, limit=5000)]
            close = difflib.get_close_matches(name, known, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise RequestError(f'no environment named {name!r}{hint}; "list" shows them')
        return row

    def list_envs(
        self,
        *,
        app: str | None = None,
        owner: str | None = None,
        include_stopped: bool = False,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        rows = self.store.list_envs(
            app=app, owner=owner, include_stopped=include_stopped, limit=limit
        )
        now = self.clock()
        for row in rows:
            row["cost"] = cost_so_far(row, now)
        return rows

    def status(self, env: str, live: bool = True) -> dict[str, Any]:
        """The environment, its recent deployments and operations, and (``live``) what ECS
        says now. A ``deploying`` environment whose services became stable is marked running."""
        row = self.find_env(env)
        out: dict[str, Any] = {
            "env": row,
            "deployments": self.store.deployments(row["name"], 5),
            "operations": self.store.operations(env=row["name"])[-5:],
            "cost": cost_so_far(row, self.clock()),
        }
        if live and row["status"] not in ("stopped", "queued") and row["app"] in self.settings.apps:
            try:
                services = self.engine.live_status(self.settings.apps[row["app"]], row["name"])
                out["live"] = services
                busy = any(op.status in ("queued", "running") for op in out["operations"])
                expected = {
                    s["service"]: s["task_definition"]
                    for s in json.loads(row.get("services") or "[]")
                }
                stable = self.engine.is_stable(services, expected)
                if row["status"] == "deploying" and not busy and stable:
                    self.store.upsert_env(row["name"], status="running", error=None)
                    out["env"] = self.store.get_env(row["name"])
            except EngineError as exc:
                out["live_error"] = str(exc)
        return out

    def container_logs(
        self, env: str, service: str | None = None, since_seconds: int = 900, lines: int = 100
    ) -> ContainerLogs:
        """The newest ``lines`` log lines of the environment's containers (CloudWatch Logs) from
        the last ``since_seconds``: its running and stopped tasks, every service or ``service``.
        Slow (AWS calls): not for a chat front door's request thread."""
        row = self.find_env(env)
        try:
            return container_logs.fetch(
                self.engine.aws,
                self.settings.apps.get(row["app"]),
                row,
                service=service,
                since=since_seconds,
                lines=lines,
            )
        except EngineError as exc:
            raise RequestError(str(exc)) from None

    # -- execution (called by the operation runner) --------------------------------------------

    def execute(self, op: Operation) -> None:
        if op.kind == "deploy":
            self._deploy(op)
        elif op.kind == "stop":
            self._stop(op)
        elif op.kind in ("sleep", "wake"):
            self._scale(op)
        else:
            raise ValueError(f"unknown operation kind {op.kind!r}")

    def _reporter(self, op: Operation) -> Callable[[str, str], None]:
        def report(step: str, message: str) -> None:
            self.store.set_step(op.id, step)
            log.info("step op=%s env=%s step=%r %s", op.id, op.env, step, message)
            for listener in self.listeners:
                try:
                    listener(op, step, message)
                except Exception:
                    log.exception("listener failed op=%s", op.id)

        return report

    def _log_sink(self, op: Operation) -> Callable[[LogEvent], None]:
        def sink(event: LogEvent) -> None:
            for listener in self.log_listeners:
                try:
                    listener(op, event)
                except Exception:
                    log.exception("log listener failed op=%s", op.id)

        return sink

    def _spec(self, op: Operation) -> EnvSpec:
        if op.app not in self.settings.apps:
            raise EngineError("reading configuration", f"app {op.app!r} is no longer configured")
        app = self.settings.apps[op.app]
        return EnvSpec(app, op.env, op.branch, self.settings.url_for(op.app, op.env, op.branch))

    def _deploy(self, op: Operation) -> None:
        report = self._reporter(op)
        # A resumed operation: close what its interrupted run left open.
        for dep in self.store.deployments(op.env, 50):
            if dep["operation_id"] == op.id and dep["result"] == "running":
                self.store.finish_deployment(
                    dep["id"], "interrupted", failure_reason="the worker stopped mid-deploy"
                )
        started = datetime.now(UTC)
        previous = self.store.get_env(op.env) or {}
        dep_id = self.store.start_deployment(
            env=op.env,
            app=op.app,
            branch=op.branch,
            sha=op.params.get("sha"),
            requested_by=op.requested_by,
            source=op.source,
            operation_id=op.id,
        )
        self.store.upsert_env(op.env, status="deploying")
        report(
            "queued",
            f"deploying {op.branch} as {op.env}"
            + (f" (attempt {op.attempts})" if op.attempts > 1 else ""),
        )
        try:
            spec = self._spec(op)
            plans = self.engine.plan(
                spec,
                sha=op.params.get("sha"),
                commits=self.commits,
                report=report,
                sha_repository=op.params.get("sha_repository"),
            )
            if any(p.pending for p in plans):
                plans = self.images.provide(
                    op.id,
                    spec,
                    plans,
                    report,
                    self._log_sink(op),
                    newer=lambda: self.store.newer_operation(op.env, op.id),
                )
            primary = next(p for p in plans if p.service == spec.app.public_service.name)
            self.store.update_deployment(
                dep_id, sha=primary.sha, images=json.dumps(plans_to_json(plans))
            )
            states = self.engine.deploy(spec, plans, report)
            self.store.upsert_env(
                op.env, services=json.dumps(states_to_json(states)), sha=primary.sha, url=spec.url
            )
            self.store.update_deployment(
                dep_id, task_definitions=json.dumps({s.service: s.task_definition for s in states})
            )
            if not op.params.get("wait", True):
                self.store.finish_deployment(dep_id, "started")
                report("deploying", f"rollout started; {spec.url} will serve it once stable")
                return
            expected = {s.ecs_service: s.task_definition for s in states}
            self.engine.wait(spec, report, since=started, log=self._log_sink(op), expected=expected)
        except Superseded as exc:
            self.store.finish_deployment(dep_id, "superseded", failure_reason=str(exc))
            self.store.audit(
                "deploy superseded", op.requested_by, op.env, op.source, operation=op.id
            )
            report("superseded", exc.message)
            return
        except EngineError as exc:
            # Decided now, not at request time: ask ECS whether a previous version still serves.
            # An environment that never served has no previous version, whatever ECS runs.
            served = previous.get("status") in ("running", "deploying")
            serving = served and self._still_serving(op)
            if serving and previous.get("services"):
                # The old revision serves (the rollout never replaced it, or ECS rolled back).
                self.store.upsert_env(op.env, services=previous["services"], sha=previous["sha"])
            self.store.upsert_env(op.env, status="running" if serving else "failed", error=str(exc))
            if not serving:
                self.store.set_usage(op.env, None)
            self.store.finish_deployment(dep_id, "failed", failure_reason=str(exc))
            self.store.audit(
                "deploy failed",
                op.requested_by,
                op.env,
                op.source,
                operation=op.id,
                reason=str(exc),
            )
            report(
                "failed", str(exc) + (" (the previous version keeps serving)" if serving else "")
            )
            raise
        vcpu = sum(s.cpu for s in states) / 1024 * self.settings.desired_count
        memory_gb = sum(s.memory for s in states) / 1024 * self.settings.desired_count
        rate = cost.hourly_rate(self.settings, self.prices, vcpu, memory_gb)
        self.store.upsert_env(
            op.env, status="running", error=None, vcpu=vcpu, memory_gb=memory_gb, hourly_rate=rate
        )
        self.store.set_usage(op.env, "running", rate)
        self.store.finish_deployment(dep_id, "succeeded")
        self.store.audit(
            "deployed", op.requested_by, op.env, op.source, operation=op.id, sha=primary.sha
        )
        report("ready", f"{spec.url} is up")

    def _still_serving(self, op: Operation) -> bool:
        """Whether every service of the environment has a running task (best effort)."""
        app = self.settings.apps.get(op.app)
        if app is None:
            return False
        try:
            live = self.engine.live_status(app, op.env)
        except EngineError:
            return False
        return all(s["status"] == "ACTIVE" and s["running"] >= 1 for s in live.values())

    def _stop(self, op: Operation) -> None:
        report = self._reporter(op)
        self.store.upsert_env(op.env, status="stopping")
        row = self.store.get_env(op.env) or {}
        extra = [s["service"] for s in json.loads(row.get("services") or "[]")]
        try:
            app = self._spec(op).app
            self.engine.stop(app, op.env, report, extra_services=extra)
            self.images.cleanup(app, op.env, report)
            if self.settings.gc_untagged_images:
                try:
                    self.images.gc_untagged(report=report)
                except EngineError as exc:  # hygiene must not fail a stop
                    report("collecting untagged images", f"skipped: {exc}")
        except EngineError as exc:
            self.store.upsert_env(op.env, status="failed", error=f"stopping: {exc}")
            self.store.audit("stop failed", op.requested_by, op.env, op.source, reason=str(exc))
            report("failed", str(exc))
            raise
        auto = bool(op.params.get("auto"))
        self.store.upsert_env(
            op.env,
            status="stopped",
            error=None,
            services=None,
            stopped_reason=op.params.get("reason"),
        )
        # what an automatic stop saves accrues until the environment is deployed again
        self.store.set_usage(
            op.env, "auto_stopped" if auto else None, float(row.get("hourly_rate") or 0)
        )
        self.store.audit("stopped", op.requested_by, op.env, op.source, operation=op.id)
        report("stopped", f"{op.env} is stopped")

    def _scale(self, op: Operation) -> None:
        report = self._reporter(op)
        row = self.store.get_env(op.env) or {}
        wanted = "running" if op.kind == "sleep" else "sleeping"
        if row.get("status") != wanted:  # changed since it was asked (a deploy, a stop)
            log.info("%s skipped op=%s env=%s status=%s", op.kind, op.id, op.env, row.get("status"))
            return
        spec = self._spec(op)
        rate = float(row.get("hourly_rate") or 0)
        try:
            if op.kind == "sleep":
                self.engine.scale(spec.app, op.env, 0, report)
                self.store.upsert_env(op.env, status="sleeping")
                self.store.set_usage(op.env, "sleeping", rate)
                self.store.audit("slept", op.requested_by, op.env, op.source, operation=op.id)
                report("sleeping", f"{op.env} is asleep (scaled to zero) until it is woken")
                return
            self.engine.scale(spec.app, op.env, self.settings.desired_count, report)
            self.store.upsert_env(op.env, status="deploying")
            self.engine.wait(spec, report, since=datetime.now(UTC), log=self._log_sink(op))
        except EngineError as exc:
            self.store.upsert_env(op.env, status="failed", error=str(exc))
            self.store.set_usage(op.env, None)
            report("failed", str(exc))
            raise
        self.store.upsert_env(op.env, status="running", error=None)
        self.store.set_usage(op.env, "running", rate)
        self.store.audit("woken", op.requested_by, op.env, op.source, operation=op.id)
        report("ready", f"{spec.url} is up again")

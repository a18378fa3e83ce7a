"""Carrying operations out: the operation runner hands each claimed operation to
:meth:`Executor.execute`, which drives the engine (and the image builder) and records what
happened in the store. Progress goes on the bus as :class:`~bot.events.Step` events, each
with the phase its caller declares, and ends with one :class:`~bot.events.Finished`."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from bot import broker, cost, envsettings
from bot.config import Settings
from bot.core.queries import Queries
from bot.core.tasks import LifecycleTasks
from bot.engine import (
    CommitResolver,
    Engine,
    EngineError,
    EnvSpec,
    Reporter,
    ServiceState,
    plans_to_json,
    states_to_json,
)
from bot.engine.capacity import STEP as CAPACITY_STEP
from bot.engine.capacity import InUse, Quotas
from bot.engine.images import ImageBuilder, Superseded
from bot.engine.rollout import Watch
from bot.events import BatchUpdate, Bus, EnvStatus, Finished, LogLines, Phase, Step
from bot.logtail import LogEvent, LogSink
from bot.naming import task_family
from bot.operations import Waiting, this_worker
from bot.store import Operation, Store

log = logging.getLogger("revieee.execution")


class Executor:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        engine: Engine,
        bus: Bus,
        queries: Queries,
        commits: CommitResolver | None = None,
        images: ImageBuilder | None = None,
        routing_secret: str | None = None,
    ) -> None:
        self.settings = settings
        self.routing_secret = (
            routing_secret  # REVIEEE_PROXY_SECRET: the OAuth keys' (bot/broker.py)
        )
        self.store = store
        self.engine = engine
        self.bus = bus
        self.queries = queries
        self.commits = commits
        self.images = images or ImageBuilder(
            engine.aws, settings, store, engine, engine.sleep, engine.monotonic
        )
        self.prices = cost.prices(settings, getattr(engine.aws.ecs.meta, "region_name", None))
        self.quotas = Quotas(engine.aws, settings, engine.monotonic)
        self.tasks = LifecycleTasks(store, engine)
        self.owner = this_worker()

    def execute(self, op: Operation) -> Waiting | None:
        """Carry ``op`` out; a deploy or wake whose rollout has started returns what it waits
        for (the runner persists it and the watcher finishes it: :meth:`finish_wait`)."""
        self._supersede_waiting(op)
        if op.kind == "deploy":
            return self._deploy(op)
        if op.kind == "stop":
            self._stop(op)
            return None
        if op.kind in ("sleep", "wake"):
            return self._scale(op)
        raise ValueError(f"unknown operation kind {op.kind!r}")

    def _supersede_waiting(self, op: Operation) -> None:
        """A newer operation of the environment ends the rollout waits before it: a redeploy
        or a stop need not wait for a rollout they replace."""
        for waiting, state in self.store.waiting_operations():
            if waiting.env != op.env or waiting.id >= op.id:
                continue
            if not self.store.take_waiting(waiting.id, self.owner):
                continue  # finished meanwhile
            why = f"a newer request (operation {op.id}, {op.kind}) replaces it"
            if state.get("dep_id"):
                self.store.finish_deployment(state["dep_id"], "superseded", failure_reason=why)
            self.store.audit(
                f"{waiting.kind} superseded",
                waiting.requested_by,
                waiting.env,
                waiting.source,
                operation=waiting.id,
            )
            self.store.finish_operation(waiting.id, "superseded", why)
            # shown in the phase of what replaces it (already under way, not queued)
            self._finish(waiting, Phase.requested(op.kind), why, superseded=True)
            if waiting.batch is not None:
                self.bus.publish(BatchUpdate(waiting.batch))

    # -- rollouts: waited for by the watcher, finished here ------------------------------------

    def watch(self, op: Operation, state: dict[str, Any]) -> Watch:
        """Watch the rollout ``op`` waits for (as :meth:`execute` left it), e.g. after a
        restart: nothing is registered again, only looked at."""
        watch = self.engine.watch(
            self._spec(op),
            self._steps(op, Phase.DEPLOYING),
            timeout=float(state.get("timeout") or self.settings.deploy_timeout),
            since=datetime.fromisoformat(state["since"]),
            log=self._log_sink(op),
            expected=state.get("expected"),
            said=True,
        )
        left = datetime.fromisoformat(state["deadline_at"]) - datetime.now(UTC)
        watch.deadline = self.engine.monotonic() + max(left.total_seconds(), 0.0)
        return watch

    def finish_wait(
        self, op: Operation, state: dict[str, Any], error: EngineError | None
    ) -> EngineError | None:
        """The rollout ``op`` waited for ended (``error``: how it failed): record it, say it.
        Returns the error the operation fails with, None when it succeeded."""
        try:
            if state.get("kind") == "wake":
                if error is not None:
                    self._wake_failed(op, error)
                    return error
                self._woken(op, float(state.get("rate") or 0))
                return None
            states = [ServiceState(**s) for s in state["states"]]
            if error is not None:
                self._deploy_failed(op, state["dep_id"], state.get("previous") or {}, error)
                return error
            self._deployed(op, state["dep_id"], states, state.get("sha"))
        except EngineError as exc:  # the app was removed from the configuration meanwhile
            return exc
        return None

    def _waiting(self, op: Operation, spec: EnvSpec, since: datetime, **state: Any) -> Waiting:
        deadline = datetime.now(UTC) + timedelta(seconds=self.settings.deploy_timeout)
        timeout = self.settings.deploy_timeout
        self.engine.announce_wait(spec, self._steps(op, Phase.DEPLOYING), timeout)
        return Waiting(
            {
                **state,
                "since": since.isoformat(),
                "timeout": timeout,
                "deadline_at": deadline.isoformat(),
            }
        )

    def settle(self, env: str) -> bool:
        """Mark a ``deploying`` environment that nothing works on ``running`` once ECS runs
        what it last deployed (a deploy that did not wait for its rollout). True if it did."""
        row = self.store.get_env(env)
        if row is None or row["status"] != EnvStatus.DEPLOYING or env in self.store.busy_envs():
            return False
        app = self.settings.apps.get(row["app"])
        if app is None:
            return False
        try:
            services = self.engine.live_status(app, env)
        except EngineError:
            return False
        if not self.queries.stable(row, services):
            return False
        self.store.upsert_env(env, status=EnvStatus.RUNNING.value, error=None)
        return True

    # -- what goes on the bus ------------------------------------------------------------------

    def _steps(self, op: Operation, phase: Phase) -> Reporter:
        """A reporter whose steps are in ``phase``."""

        def report(step: str, message: str) -> None:
            self.store.set_step(op.id, step)
            log.info("step op=%s env=%s step=%r %s", op.id, op.env, step, message)
            self.bus.publish(Step(op, phase, step, message))

        return report

    def _finish(self, op: Operation, phase: Phase, message: str, superseded: bool = False) -> None:
        step = "superseded" if superseded else phase.value
        self.store.set_step(op.id, step)
        log.info("step op=%s env=%s step=%r %s", op.id, op.env, step, message)
        self.bus.publish(Finished(op, phase, step, message, superseded))

    def _log_sink(self, op: Operation) -> LogSink:
        def sink(event: LogEvent) -> None:
            self.bus.publish(LogLines(op, event))

        return sink

    def _spec(self, op: Operation) -> EnvSpec:
        if op.app not in self.settings.apps:
            raise EngineError("reading configuration", f"app {op.app!r} is no longer configured")
        app = self.settings.apps[op.app]
        row = self.store.get_env(op.env) or {}
        return EnvSpec(
            app,
            op.env,
            op.branch,
            self.settings.url_for(op.app, op.env, op.branch),
            envsettings.values(envsettings.load(row.get("settings"))),
            broker.variables(self.routing_secret, self.settings.oauth_callback, op.env),
        )

    # -- deploy --------------------------------------------------------------------------------

    def _deploy(self, op: Operation) -> Waiting | None:
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
        self.store.upsert_env(op.env, status=EnvStatus.DEPLOYING.value)
        self._steps(op, Phase.QUEUED)(
            "queued",
            f"deploying {op.branch} as {op.env}"
            + (f" (attempt {op.attempts})" if op.attempts > 1 else ""),
        )
        deploying = self._steps(op, Phase.DEPLOYING)
        try:
            spec = self._spec(op)
            plans = self.engine.plan(
                spec,
                sha=op.params.get("sha"),
                commits=self.commits,
                report=self._steps(op, Phase.RESOLVING),
                sha_repository=op.params.get("sha_repository"),
            )
            if any(p.pending for p in plans):
                plans = self.images.provide(
                    op.id,
                    spec,
                    plans,
                    lambda phase: self._steps(op, phase),
                    self._log_sink(op),
                    newer=lambda: self.store.newer_operation(op.env, op.id),
                )
            primary = next(p for p in plans if p.service == spec.app.public_service.name)
            self.store.update_deployment(
                dep_id, sha=primary.sha, images=json.dumps(plans_to_json(plans))
            )
            states = self.engine.deploy(
                spec,
                plans,
                deploying,
                # a rolling update starts the new tasks beside the old ones (ECS stops the
                # old once the new run): the environment's own tasks count too
                admit=lambda vcpu, provider: self._admit(
                    "", vcpu, provider, len(spec.app.services), op.env
                ),
                # on_create and release: before any service changes (bot/core/tasks.py)
                before_traffic=lambda task_definitions: self.tasks.before_traffic(
                    op, spec, task_definitions, deploying, self._log_sink(op)
                ),
            )
            self.store.upsert_env(
                op.env, services=json.dumps(states_to_json(states)), sha=primary.sha, url=spec.url
            )
            self.store.update_deployment(
                dep_id, task_definitions=json.dumps({s.service: s.task_definition for s in states})
            )
            if not op.params.get("wait", True):
                self.store.finish_deployment(dep_id, "started")
                deploying("deploying", f"rollout started; {spec.url} will serve it once stable")
                return None
        except Superseded as exc:
            self.store.finish_deployment(dep_id, "superseded", failure_reason=str(exc))
            self.store.audit(
                "deploy superseded", op.requested_by, op.env, op.source, operation=op.id
            )
            self._finish(op, Phase.QUEUED, exc.message, superseded=True)
            return None
        except EngineError as exc:
            self._deploy_failed(op, dep_id, previous, exc)
            raise
        return self._waiting(
            op,
            spec,
            started,
            kind="deploy",
            dep_id=dep_id,
            expected={s.ecs_service: s.task_definition for s in states},
            states=states_to_json(states),
            sha=primary.sha,
            previous={k: previous.get(k) for k in ("status", "services", "sha")},
        )

    def _deploy_failed(
        self, op: Operation, dep_id: int, previous: dict[str, Any], exc: EngineError
    ) -> None:
        # Decided now, not at request time: ask ECS whether a previous version still serves.
        # An environment that never served has no previous version, whatever ECS runs.
        served = previous.get("status") in (EnvStatus.RUNNING, EnvStatus.DEPLOYING)
        serving = served and self._still_serving(op)
        if serving and previous.get("services"):
            # The old revision serves (the rollout never replaced it, or ECS rolled back).
            self.store.upsert_env(op.env, services=previous["services"], sha=previous["sha"])
        status = EnvStatus.RUNNING if serving else EnvStatus.FAILED
        self.store.upsert_env(op.env, status=status.value, error=str(exc))
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
        self._finish(
            op,
            Phase.FAILED,
            str(exc) + (" (the previous version keeps serving)" if serving else ""),
        )

    def _deployed(
        self, op: Operation, dep_id: int, states: list[ServiceState], sha: str | None
    ) -> None:
        url = self._spec(op).url
        vcpu = sum(s.cpu for s in states) / 1024 * self.settings.desired_count
        memory_gb = sum(s.memory for s in states) / 1024 * self.settings.desired_count
        rate = cost.hourly_rate(self.settings, self.prices, vcpu, memory_gb)
        self.store.upsert_env(
            op.env,
            status=EnvStatus.RUNNING.value,
            error=None,
            vcpu=vcpu,
            memory_gb=memory_gb,
            hourly_rate=rate,
        )
        self.store.set_usage(op.env, "running", rate)
        self.store.finish_deployment(dep_id, "succeeded")
        self.store.audit("deployed", op.requested_by, op.env, op.source, operation=op.id, sha=sha)
        self._finish(op, Phase.READY, f"{url} is up")

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

    # -- stop ----------------------------------------------------------------------------------

    def _stop(self, op: Operation) -> None:
        report = self._steps(op, Phase.STOPPING)
        before = self.store.get_env(op.env) or {}
        self.store.upsert_env(op.env, status=EnvStatus.STOPPING.value)
        row = self.store.get_env(op.env) or {}
        extra = [s["service"] for s in json.loads(row.get("services") or "[]")]
        try:
            spec = self._spec(op)
            app = spec.app
            try:
                self._on_stop(op, spec, before, report)
            except EngineError as exc:  # said, and the stop goes on
                report(exc.step, f"failed: {exc.message}; stopping the environment anyway")
            self.engine.stop(app, op.env, report, extra_services=extra)
            self.images.cleanup(app, op.env, report)
            if self.settings.gc_untagged_images:
                try:
                    self.images.gc_untagged(report=report)
                except EngineError as exc:  # hygiene must not fail a stop
                    report("collecting untagged images", f"skipped: {exc}")
        except EngineError as exc:
            self.store.upsert_env(op.env, status=EnvStatus.FAILED.value, error=f"stopping: {exc}")
            self.store.audit("stop failed", op.requested_by, op.env, op.source, reason=str(exc))
            self._finish(op, Phase.FAILED, str(exc))
            raise
        auto = bool(op.params.get("auto"))
        self.store.upsert_env(
            op.env,
            status=EnvStatus.STOPPED.value,
            error=None,
            services=None,
            stopped_reason=op.params.get("reason"),
            setup_done=None,  # a deploy after the stop creates it anew (on_create)
        )
        # what an automatic stop saves accrues until the environment is deployed again
        self.store.set_usage(
            op.env, "auto_stopped" if auto else None, float(row.get("hourly_rate") or 0)
        )
        self.store.audit("stopped", op.requested_by, op.env, op.source, operation=op.id)
        self._finish(op, Phase.STOPPED, f"{op.env} is stopped")

    def _on_stop(
        self, op: Operation, spec: EnvSpec, before: dict[str, Any], report: Reporter
    ) -> None:
        """The app's on_stop tasks, before anything is deleted, from each service's newest
        task definition of the environment. A failure is said, and the stop goes on; an
        environment stopped already, or that never got as far as its on_create (or its first
        task definitions), has nothing to clean up."""
        tasks = spec.app.tasks_at("on_stop")
        if not tasks or before.get("status") in (None, EnvStatus.STOPPED):
            return
        if spec.app.tasks_at("on_create") and not before.get("setup_done"):
            report("running on stop tasks", "skipped: its on_create tasks never ran to the end")
            return
        task_definitions = {
            t.service: self.engine.latest_task_definition(task_family(op.env, t.service))
            for t in tasks
        }
        failures = self.tasks.run(
            op, spec, "on_stop", task_definitions, report, self._log_sink(op), blocking=False
        )
        if failures:
            self.store.audit(
                "on stop task failed",
                op.requested_by,
                op.env,
                op.source,
                operation=op.id,
                reason="; ".join(failures)[:1000],
            )
            report(
                "running on stop tasks",
                f"{len(failures)} failed; stopping the environment anyway: clean up what they "
                "left behind by hand",
            )

    # -- sleep and wake ------------------------------------------------------------------------

    def _scale(self, op: Operation) -> Waiting | None:
        row = self.store.get_env(op.env) or {}
        wanted = EnvStatus.RUNNING if op.kind == "sleep" else EnvStatus.SLEEPING
        if row.get("status") != wanted:  # changed since it was asked (a deploy, a stop)
            log.info("%s skipped op=%s env=%s status=%s", op.kind, op.id, op.env, row.get("status"))
            return None  # (nothing to say: what changed it said so)
        spec = self._spec(op)
        rate = float(row.get("hourly_rate") or 0)
        try:
            if op.kind == "sleep":
                self.engine.scale(spec.app, op.env, 0, self._steps(op, Phase.SLEEPING))
                self.store.upsert_env(op.env, status=EnvStatus.SLEEPING.value)
                self.store.set_usage(op.env, "sleeping", rate)
                self.store.audit("slept", op.requested_by, op.env, op.source, operation=op.id)
                self._finish(
                    op, Phase.SLEEPING, f"{op.env} is asleep (scaled to zero) until it is woken"
                )
                return None
            since = datetime.now(UTC)
            waking = self._steps(op, Phase.DEPLOYING)
            provider = self.settings.capacity_provider_strategy[0].provider
            services = len(json.loads(row.get("services") or "[]")) or len(spec.app.services)
            self._admit(op.env, float(row.get("vcpu") or 0), provider, services, op.env)
            self.engine.scale(spec.app, op.env, self.settings.desired_count, waking)
            self.store.upsert_env(op.env, status=EnvStatus.DEPLOYING.value)
        except EngineError as exc:
            self._wake_failed(op, exc)
            raise
        return self._waiting(op, spec, since, kind="wake", rate=rate)

    def _admit(self, leave_out: str, vcpu: float, provider: str, services: int, env: str) -> None:
        """Refuse (:class:`EngineError`) ``env``'s new tasks when they would not fit in the
        account's Fargate vCPU quota or the namespace's Cloud Map instances beside what the
        environments (but ``leave_out``) run (bot/engine/capacity.py)."""
        used_vcpu, used_services, others = self.store.capacity_in_use(leave_out)
        count = self.settings.desired_count
        used = InUse(used_vcpu, used_services * count, others)
        why = self.quotas.refusal(provider, vcpu, services * count, used)
        if why is not None:
            raise EngineError(CAPACITY_STEP, f"{env} does not fit in what AWS allows: {why}")

    def _wake_failed(self, op: Operation, exc: EngineError) -> None:
        self.store.upsert_env(op.env, status=EnvStatus.FAILED.value, error=str(exc))
        self.store.set_usage(op.env, None)
        self._finish(op, Phase.FAILED, str(exc))

    def _woken(self, op: Operation, rate: float) -> None:
        url = self._spec(op).url
        self.store.upsert_env(op.env, status=EnvStatus.RUNNING.value, error=None)
        self.store.set_usage(op.env, "running", rate)
        self.store.audit("woken", op.requested_by, op.env, op.source, operation=op.id)
        self._finish(op, Phase.READY, f"{url} is up again")

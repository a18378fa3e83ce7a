"""Lifecycle tasks: an app's one-off commands at the moments of an environment's life.

- ``on_create``: once per life of an environment (its first deploy, or the first after a stop),
  before ``release``: create and seed its database. Recorded as done on the environment, so
  a deploy resumed after a crash does not run it again.
- ``release``: every deploy, after the new task definitions are registered and before any
  service changes (Heroku's release phase): migrations. A failure fails the deploy, and the
  running revision keeps serving.
- ``on_stop``: before the environment's services are deleted: drop its database. A failure is
  said, and the stop goes on.

Each task is a ``RunTask`` of the environment's own task definition of the task's service
(bot/engine/tasks.py). Every run is recorded (``task_runs``) before it starts and with its task
ARN once started; an operation resumed after a crash waits for the task its interrupted run
started instead of starting another (and ``RunTask``'s client token makes the start itself
idempotent). Results go on the bus: a step with the exit code and duration, and the log's last
lines (a :class:`~bot.logtail.LogEvent`) for the Slack thread; the PR comment reads the
records."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from bot.config import TaskConfig
from bot.engine import Engine, EngineError, EnvSpec, Reporter, TaskResult
from bot.logtail import LogEvent, LogSink
from bot.store import Operation, Store

log = logging.getLogger("revieee.tasks")


class LifecycleTasks:
    """Runs an app's tasks of one moment for an operation, resumably."""

    def __init__(self, store: Store, engine: Engine) -> None:
        self.store = store
        self.engine = engine

    def before_traffic(
        self,
        op: Operation,
        spec: EnvSpec,
        task_definitions: Mapping[str, str],
        report: Reporter,
        sink: LogSink,
    ) -> None:
        """``on_create`` (unless done in the environment's present life), then ``release``;
        raises :class:`EngineError` at the first that fails."""
        row = self.store.get_env(op.env) or {}
        if spec.app.tasks_at("on_create") and not row.get("setup_done"):
            self.run(op, spec, "on_create", task_definitions, report, sink, blocking=True)
            self.store.upsert_env(op.env, setup_done=1)
        self.run(op, spec, "release", task_definitions, report, sink, blocking=True)

    def run(
        self,
        op: Operation,
        spec: EnvSpec,
        moment: str,
        task_definitions: Mapping[str, str | None],
        report: Reporter,
        sink: LogSink,
        blocking: bool,
    ) -> list[str]:
        """Run the app's tasks of ``moment`` one after another. ``blocking``: the first failure
        raises :class:`EngineError`; else every task runs and the failures are returned."""
        failures: list[str] = []
        for task in spec.app.tasks_at(moment):
            name = task.label
            task_definition = task_definitions.get(task.service)
            if task_definition is None:
                why = f"{name}: the environment has no task definition of {task.service}"
                report(f"running {name}", f"skipped: {why}")
                failures.append(why)
                continue
            try:
                result = self._one(op, spec, task, task_definition, report)
            except EngineError as exc:
                if blocking:
                    raise
                report(exc.step, f"failed: {exc.message}")
                failures.append(str(exc))
                continue
            summary = result.summary(name)
            report(name, summary.removeprefix(f"{name}: "))
            # its last lines into the thread, then how it ended (once: no tail repeated)
            sink(
                LogEvent(
                    name,
                    result.lines,
                    done=True,
                    failed=not result.ok,
                    summary=summary,
                    link=result.log_url,
                    total=len(result.lines),
                )
            )
            if not result.ok:
                if blocking:
                    raise EngineError(name, _failure(result, name))
                failures.append(summary)
        return failures

    def _one(
        self, op: Operation, spec: EnvSpec, task: TaskConfig, task_definition: str, report: Reporter
    ) -> TaskResult:
        started = self.engine.monotonic()
        earlier = self.store.task_run(op.id, task.when, task.name)
        if earlier is not None and earlier["status"] in ("succeeded", "failed"):
            # an earlier attempt of this operation ran it to its end (then the worker stopped)
            result = _recorded(earlier)
            report(task.label, f"already ran in an earlier attempt of operation {op.id}")
            return result
        if earlier is not None and earlier.get("task_arn"):
            run_id, arn = int(earlier["id"]), str(earlier["task_arn"])
            report(
                f"waiting for {task.label}",
                f"the task started before the worker stopped ({arn.rsplit('/', 1)[-1]}): "
                "waiting for it, not starting another",
            )
        else:
            run_id = (
                int(earlier["id"])
                if earlier is not None
                else self.store.start_task_run(op.env, op.id, task.name, task.when, task.service)
            )
            arn = self.engine.start_task(
                spec, task, task_definition, f"{op.id}/{task.when}/{task.name}", report
            )
            self.store.set_task_arn(run_id, arn)
        result = self.engine.wait_task(spec, task, arn, task.timeout, started)
        self.store.finish_task_run(
            run_id,
            "succeeded" if result.ok else "failed",
            exit_code=result.exit_code,
            seconds=round(result.seconds, 1),
            reason=result.reason,
            lines=list(result.lines),
        )
        log.info(
            "task ended op=%s env=%s task=%s exit=%s seconds=%.1f",
            op.id,
            op.env,
            task.name,
            result.exit_code,
            result.seconds,
        )
        return result


def _recorded(row: dict[str, object]) -> TaskResult:
    code = row.get("exit_code")
    return TaskResult(
        str(row.get("task_arn") or ""),
        int(code) if isinstance(code, int) else None,
        float(row.get("seconds") or 0.0),  # type: ignore[arg-type]
        str(row["reason"]) if row.get("reason") else None,
        tuple(str(line) for line in row.get("lines") or ()),  # type: ignore[attr-defined]
    )


def _failure(result: TaskResult, name: str) -> str:
    """Why a blocking task failed the deploy, with its log's last line."""
    why = result.summary(name).split(": ", 1)[-1]
    if result.lines:
        why += f"; its last line: {result.lines[-1][:300]}"
    return why

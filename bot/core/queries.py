"""Reads: environments by name or branch, listings, one environment's status, its containers'
logs. Nothing here writes."""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bot import container_logs
from bot.config import Settings
from bot.container_logs import ContainerLogs
from bot.engine import Engine, EngineError
from bot.events import EnvStatus
from bot.store import Store, cost_so_far


class RequestError(Exception):
    """A request that cannot be accepted (unknown app or environment...): said to the user."""


class Queries:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        engine: Engine,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.store = store
        self.engine = engine
        self.clock = clock

    def find_env(self, name: str, app: str | None = None) -> dict[str, Any]:
        """An environment by name, or by branch (with the app or the default app)."""
        row = self.store.get_env(name)
        if row is None:
            try:
                row = self.store.env_of_branch(self.settings.app(app).name, name)
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
        says now. A ``deploying`` environment that nothing works on and whose services are
        stable (a deploy that did not wait) shows as ``running``; the store learns it from
        :meth:`bot.core.execution.Executor.settle`."""
        row = self.find_env(env)
        out: dict[str, Any] = {
            "env": row,
            "deployments": self.store.deployments(row["name"], 5),
            "operations": self.store.operations(env=row["name"])[-5:],
            "cost": cost_so_far(row, self.clock()),
        }
        if not live or row["status"] in (EnvStatus.STOPPED, EnvStatus.QUEUED):
            return out
        if row["app"] not in self.settings.apps:
            return out
        try:
            services = self.engine.live_status(self.settings.apps[row["app"]], row["name"])
        except EngineError as exc:
            out["live_error"] = str(exc)
            return out
        out["live"] = services
        busy = any(op.status in ("queued", "running") for op in out["operations"])
        if row["status"] == EnvStatus.DEPLOYING and not busy and self.stable(row, services):
            out["env"] = {**row, "status": EnvStatus.RUNNING.value, "error": None}
        return out

    def stable(self, row: dict[str, Any], services: dict[str, dict[str, Any]]) -> bool:
        """Whether ECS runs what the environment ``row`` last deployed, steadily."""
        expected = {
            s["service"]: s["task_definition"] for s in json.loads(row.get("services") or "[]")
        }
        return self.engine.is_stable(services, expected)

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

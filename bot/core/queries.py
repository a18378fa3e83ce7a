"""Reads: environments by name or branch, listings, one environment's status, its containers'
logs. Nothing here writes."""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, overload

from bot import container_logs, envsettings
from bot.config import Settings
from bot.container_logs import ContainerLogs
from bot.engine import Engine, EngineError
from bot.events import EnvStatus
from bot.store import Store, cost_so_far


class RequestError(Exception):
    """A request that cannot be accepted (unknown app or environment...): said to the user."""


class OverQuota(RequestError):
    """A deploy of a new environment over the app's ``max_environments`` (or one person's
    share of it): ``envs`` are the environments a stop would make room with, oldest first."""

    def __init__(self, message: str, envs: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.envs = envs


@dataclass(frozen=True)
class EnvPage(Sequence[dict[str, Any]]):
    """A page of a listing: its rows, which page it is (from 1), the page size (0: one page of
    every row) and how many environments match in all. Reads as the sequence of its rows."""

    rows: list[dict[str, Any]]
    total: int
    page: int = 1
    size: int = 0

    @property
    def pages(self) -> int:
        """How many pages the matching environments fill (at least 1)."""
        return max(1, -(-self.total // self.size)) if self.size else 1

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        return self.rows[index]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)


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
        page: int = 1,
        page_size: int | None = None,
    ) -> EnvPage:
        """The environments that match, newest first, each with its ``cost`` so far: all of
        them (at most ``limit``), or with ``page_size`` only page ``page`` (from 1) and how
        many match in all."""
        if page_size is None:
            rows = self.store.list_envs(
                app=app, owner=owner, include_stopped=include_stopped, limit=limit
            )
            total = len(rows)
        else:
            rows = self.store.list_envs(
                app=app,
                owner=owner,
                include_stopped=include_stopped,
                limit=page_size,
                offset=(page - 1) * page_size,
            )
            if 0 < len(rows) < page_size or (page == 1 and not rows):  # the last page: no count
                total = (page - 1) * page_size + len(rows)
            else:
                total = self.store.count_envs(app=app, owner=owner, include_stopped=include_stopped)
        now = self.clock()
        for row in rows:
            row["cost"] = cost_so_far(row, now)
        return EnvPage(rows, total, page if page_size else 1, page_size or 0)

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
            "settings": envsettings.load(row.get("settings")),
            "tasks": self.store.recent_task_runs(row["name"], 5),
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

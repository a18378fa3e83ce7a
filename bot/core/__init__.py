"""The application core that every front door drives, in three parts:

- :mod:`bot.core.intake`: requests (deploy, stop, sleep, wake, keep), persisted as operations
  and announced on the bus; fast, so a chat front door calls them before it answers;
- :mod:`bot.core.queries`: reads (find, list, status, container logs); nothing there writes;
- :mod:`bot.core.execution`: carrying an operation out through the engine, on the operation
  runner's workers; its progress goes on the bus.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.config import Settings
from bot.core.execution import Executor
from bot.core.intake import Accepted, Intake
from bot.core.queries import OverQuota, Queries, RequestError
from bot.engine import CommitResolver, Engine
from bot.engine.images import ImageBuilder
from bot.events import Bus
from bot.store import Store

__all__ = [
    "Accepted",
    "Core",
    "Executor",
    "Intake",
    "OverQuota",
    "Queries",
    "RequestError",
    "build_core",
]


@dataclass
class Core:
    """What the front doors get: requests and reads (plus the store and settings they read)."""

    settings: Settings
    store: Store
    intake: Intake
    queries: Queries
    executor: Executor


def build_core(
    settings: Settings,
    store: Store,
    engine: Engine,
    bus: Bus,
    commits: CommitResolver | None = None,
    images: ImageBuilder | None = None,
    routing_secret: str | None = None,
) -> Core:
    queries = Queries(settings, store, engine)
    intake = Intake(settings, store, queries, bus)
    executor = Executor(settings, store, engine, bus, queries, commits, images, routing_secret)
    return Core(settings, store, intake, queries, executor)

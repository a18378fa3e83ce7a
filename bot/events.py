"""What happens to an environment, as data: its statuses and phases, the events an operation
emits while it runs, and the bus that carries them from the core to whoever listens.

The core publishes; the notifiers (Slack's deploy message, GitHub's PR comment and deployment
statuses, the terminal's output) and the operation runner subscribe. The bus is built once in
the composition root (:func:`bot.app.build`) and handed to both sides: nothing appends
callbacks to the core after it is built. An event names its phase itself; nobody reads the
phase from a step's wording.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # the store uses the statuses: only the type comes from there
    from bot.logtail import LogEvent
    from bot.store import Operation

log = logging.getLogger("revieee.events")


class EnvStatus(StrEnum):
    """An environment's status, as stored."""

    QUEUED = "queued"
    DEPLOYING = "deploying"
    RUNNING = "running"
    SLEEPING = "sleeping"
    FAILED = "failed"
    STOPPING = "stopping"
    STOPPED = "stopped"


# Not stopped: what ``list`` shows and what costs (or may cost) money.
ACTIVE = tuple(s for s in EnvStatus if s is not EnvStatus.STOPPED)
# What can be forgotten, so reminded of and expired: nothing is under way on it.
REMINDED = (EnvStatus.RUNNING, EnvStatus.SLEEPING, EnvStatus.FAILED)


class Phase(StrEnum):
    """Where an operation is, as every notifier shows it."""

    QUEUED = "queued"
    RESOLVING = "resolving"
    BUILDING = "building"
    WAITING = "waiting"
    DEPLOYING = "deploying"
    READY = "ready"
    FAILED = "failed"
    STOPPING = "stopping"
    STOPPED = "stopped"
    SLEEPING = "sleeping"

    @classmethod
    def requested(cls, kind: str) -> Phase:
        """The phase an operation of ``kind`` shows as soon as it is accepted."""
        return {"deploy": cls.QUEUED, "stop": cls.STOPPING, "sleep": cls.SLEEPING}.get(
            kind, cls.DEPLOYING
        )

    @classmethod
    def of_status(cls, status: str) -> Phase | None:
        """The phase an environment in ``status`` shows (None: none, e.g. ``stopped`` shows as
        ``stopped`` but an unknown status as nothing)."""
        if status == EnvStatus.RUNNING:
            return cls.READY
        try:
            return cls(status)
        except ValueError:
            return None


IN_PROGRESS = (Phase.QUEUED, Phase.RESOLVING, Phase.BUILDING, Phase.WAITING, Phase.DEPLOYING)
ENDED = (Phase.READY, Phase.FAILED, Phase.STOPPED)


@dataclass(frozen=True)
class Requested:
    """An operation was accepted (persisted, queued)."""

    op: Operation


@dataclass(frozen=True)
class Step:
    """One step of an operation under way: ``step`` names it ("registering task definition
    web-pr-1"), ``message`` says what it did, in plain text."""

    op: Operation
    phase: Phase
    step: str
    message: str


@dataclass(frozen=True)
class Finished(Step):
    """The operation's last step: it is ready, failed, stopped, asleep, or ``superseded`` by a
    newer request (in the phase the newer one shows: ``queued``, or ``stopping`` for a stop
    that replaced a rollout still waiting)."""

    superseded: bool = False


@dataclass(frozen=True)
class LogLines:
    """New lines of a log being followed (a build's log, the ECS service's events)."""

    op: Operation
    event: LogEvent


@dataclass(frozen=True)
class BatchUpdate:
    """The scheduler's sleep or wake of many environments (``batch``) was requested, or one
    of its operations ended: its summary is due."""

    batch: int


Event = Requested | Step | LogLines | BatchUpdate
E = TypeVar("E", Requested, Step, LogLines, Finished, BatchUpdate)


class Bus:
    """Synchronous publish/subscribe, in subscription order. A subscriber that raises is
    logged and skipped: a notifier's bug never fails an operation. Subscribers that talk to a
    slow service hand the event to a worker of their own (see :class:`bot.serial.SerialWorker`).
    """

    def __init__(self) -> None:
        self._subscribers: list[tuple[type, Callable[[object], None]]] = []
        self._lock = threading.Lock()

    def subscribe(self, kind: type[E], handler: Callable[[E], None]) -> Callable[[], None]:
        """Call ``handler`` with every published event that is a ``kind`` (a subclass counts:
        subscribing to :class:`Step` gets :class:`Finished` too). Returns the unsubscribe."""
        entry = (kind, handler)
        with self._lock:
            self._subscribers = [*self._subscribers, entry]  # type: ignore[list-item]

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = [s for s in self._subscribers if s is not entry]

        return unsubscribe

    def publish(self, event: Event) -> None:
        for kind, handler in self._subscribers:
            if isinstance(event, kind):
                try:
                    handler(event)
                except Exception:
                    log.exception("subscriber failed event=%s", type(event).__name__)

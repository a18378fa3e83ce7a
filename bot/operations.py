"""The operation queue: every deploy or stop is persisted first, then run by a bounded pool.

- At most one running operation per environment (the claim is an ``IMMEDIATE`` SQLite
  transaction, so this holds across processes sharing the database too).
- A newer request for an environment supersedes its requests still queued (see ``Store.enqueue``).
- On start, operations left running by a worker that died (same host and its process is gone, or
  no heartbeat for ``stale_after`` seconds) are queued again -- steps are idempotent -- or failed
  with a clear reason once they were interrupted ``max_attempts`` times. None is silently lost.
- ``shutdown()`` stops claiming new work and drains what is running.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from bot.store import Operation, Store

log = logging.getLogger("revieee.operations")


@dataclass(frozen=True)
class Waiting:
    """What a handler returns for an operation whose rollout has started: what it waits for
    (persisted with the operation, so a restart resumes it without registering anything
    again). The operation then waits without a worker; a :class:`Watcher` finishes it."""

    state: dict[str, Any]


class Watcher(Protocol):
    """Finishes waiting operations (:class:`bot.watcher.RolloutWatcher`)."""

    def poll(self) -> int: ...
    def loop(self, stopping: threading.Event) -> None: ...


Handler = Callable[[Operation], "Waiting | None"]


def this_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_orphan(owner: str | None, heartbeat_at: str | None, stale_after: float = 120.0) -> bool:
    """Whether a running operation's worker is gone."""
    host, _, pid = (owner or "").rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return int(pid) != os.getpid() and not _pid_alive(int(pid))
    if not heartbeat_at:
        return True
    age = datetime.now(UTC) - datetime.fromisoformat(heartbeat_at)
    return age.total_seconds() > stale_after


class OperationRunner:
    """Claims queued operations and runs them with ``handler`` on a bounded thread pool."""

    def __init__(
        self,
        store: Store,
        handler: Handler,
        workers: int = 4,
        max_attempts: int = 3,
        poll_interval: float = 1.0,
        heartbeat_interval: float = 15.0,
        watcher: Watcher | None = None,
        ended: Callable[[Operation], None] = lambda _op: None,
    ) -> None:
        self.store = store
        self.handler = handler
        self.watcher = watcher
        self.ended = ended  # told of each operation that ended here (not of one now waiting)
        self.workers = workers
        self.max_attempts = max_attempts
        self.poll_interval = poll_interval
        self.heartbeat_interval = heartbeat_interval
        self.owner = this_worker()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._slots = threading.Semaphore(workers)
        self._running: set[int] = set()
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._threads: list[threading.Thread] = []

    # -- recovery ------------------------------------------------------------------------------

    def recover(self) -> tuple[list[int], list[int]]:
        resumed, failed = self.store.recover_interrupted(self.max_attempts, is_orphan)
        for op_id in resumed:
            log.warning("operation resumed after an interrupted run op=%s", op_id)
        for op_id in failed:
            log.error("operation failed after repeated interruptions op=%s", op_id)
        return resumed, failed

    # -- running in the background ---------------------------------------------------------------

    def start(self) -> tuple[list[int], list[int]]:
        """Recover interrupted work, then dispatch queued operations until :meth:`shutdown`.
        Returns the ids of the operations resumed and of those failed by the recovery."""
        recovered = self.recover()
        self._executor = ThreadPoolExecutor(
            max_workers=self.workers, thread_name_prefix="revieee-op"
        )
        loops = [
            (self._dispatch_loop, "revieee-dispatch"),
            (self._heartbeat_loop, "revieee-heartbeat"),
        ]
        if self.watcher is not None:
            loops.append((lambda: self.watcher.loop(self._stopping), "revieee-watcher"))  # type: ignore[union-attr]
        for target, name in loops:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return recovered

    def wake(self) -> None:
        """Tell the dispatcher there may be new work (called after each enqueue)."""
        self._wake.set()

    def _dispatch_loop(self) -> None:
        assert self._executor is not None
        while not self._stopping.is_set():
            if not self._slots.acquire(timeout=self.poll_interval):
                continue
            op = None
            try:
                op = None if self._stopping.is_set() else self.store.claim_next(self.owner)
            except Exception:
                log.exception("claiming an operation failed")
            if op is None:
                self._slots.release()
                self._wake.wait(self.poll_interval)
                self._wake.clear()
                continue
            with self._lock:
                self._running.add(op.id)
            self._executor.submit(self._run_in_pool, op)

    def _run_in_pool(self, op: Operation) -> None:
        try:
            self.run(op)
        finally:
            with self._lock:
                self._running.discard(op.id)
            self._slots.release()
            self._wake.set()

    def _heartbeat_loop(self) -> None:
        while not self._stopping.wait(self.heartbeat_interval):
            with self._lock:
                ids = sorted(self._running)
            try:
                self.store.heartbeat(ids)
            except Exception:
                log.exception("heartbeat failed")

    def shutdown(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop claiming work; with ``drain`` wait for running operations to finish."""
        self._stopping.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)
        if self._executor is not None:
            self._executor.shutdown(wait=drain, cancel_futures=False)

    @property
    def running(self) -> list[int]:
        with self._lock:
            return sorted(self._running)

    # -- running inline (terminal, tests) --------------------------------------------------------

    def run_until_idle(self, only: int | None = None) -> int:
        """Run queued operations (or just ``only``) in this thread, and watch the rollouts
        they start until they end; returns how many ran."""
        count = 0
        ran: list[int] = []
        while True:
            op = self.store.claim_next(self.owner, only=only)
            if op is None:
                break
            self.run(op)
            ran.append(op.id)
            count += 1
            if only is not None:
                break
        self._watch_until_done(ran)
        return count

    def _watch_until_done(self, ids: list[int]) -> None:
        if self.watcher is None:
            return
        while any(self.store.get_operation(i).status == "waiting" for i in ids):
            self.watcher.poll()
            if any(self.store.get_operation(i).status == "waiting" for i in ids):
                time.sleep(min(self.poll_interval, 1.0))

    def run(self, op: Operation) -> None:
        """Run one claimed operation and record how it ended."""
        log.info(
            "operation started op=%s kind=%s env=%s attempt=%s", op.id, op.kind, op.env, op.attempts
        )
        try:
            waiting = self.handler(op)
        except Exception as exc:
            self.store.finish_operation(op.id, "failed", str(exc) or type(exc).__name__)
            log.warning("operation failed op=%s env=%s error=%s", op.id, op.env, exc)
            self._ended(op)
            return
        if waiting is not None:
            self.store.wait_operation(op.id, waiting.state)
            log.info("operation waits for its rollout op=%s env=%s", op.id, op.env)
            return
        self.store.finish_operation(op.id, "succeeded")
        log.info("operation succeeded op=%s env=%s", op.id, op.env)
        self._ended(op)

    def _ended(self, op: Operation) -> None:
        try:
            self.ended(op)
        except Exception:
            log.exception("telling of an ended operation failed op=%s", op.id)

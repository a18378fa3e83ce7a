"""The rollout watcher: every rollout a deploy or a wake has started waits here, not in a
worker. One watcher per process looks at all of them together, ``DescribeServices`` ten
services at a time, at most once a second (``poll_interval``), and hands each rollout that
ended (stable, failed, rolled back, out of time) to the executor for its last steps.

It stays within ECS's budget for reads: ECS refills an account's read bucket at 20 calls a
second ("Request throttling for the Amazon ECS API"), shared with every other reader (revieee's
own ``status``, the console, CI). The watcher takes at most ``READS_PER_SECOND`` of it: with
400 services waiting (200 two-service environments woken at once) a look is 40 calls, so the
looks are 4 s apart instead of 1.

Waiting is a state of the operation (``waiting``, with what it waits for), so a restart
resumes every wait without registering anything again, and several processes may watch the
same database: the one that takes an ended operation (``Store.take_waiting``) finishes it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from bot.config import Settings
from bot.core.execution import Executor
from bot.engine import Engine, EngineError
from bot.engine.base import DESCRIBE_SERVICES_MAX
from bot.engine.rollout import ROLLOUT_POLL, WAIT_STEP, Watch
from bot.operations import this_worker
from bot.store import Operation, Store

log = logging.getLogger("revieee.watcher")

READS_PER_SECOND = 10.0  # of ECS's 20 a second for the account's reads (its bucket's refill)


class RolloutWatcher:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        engine: Engine,
        executor: Executor,
        ended: Callable[[Operation], None] = lambda _op: None,
    ) -> None:
        self.ended = ended  # told of each operation that ended here
        self.settings = settings
        self.store = store
        self.engine = engine
        self.executor = executor
        self.owner = this_worker()
        self._watches: dict[int, Watch] = {}
        self._states: dict[int, dict[str, Any]] = {}  # what each waits for, as stored
        self._lock = threading.Lock()  # one look at a time (the loop, or a terminal's run)
        self.calls = 0  # DescribeServices calls of the last look

    def poll(self) -> int:
        """One look at every waiting rollout; finishes those that ended. Returns how many
        were looked at."""
        with self._lock:
            return self._poll()

    def _poll(self) -> int:
        self.calls = 0
        waiting = self.store.waiting_operations()
        ids = {op.id for op, _ in waiting}
        for gone in set(self._watches) - ids:  # finished elsewhere, or superseded
            self._watches.pop(gone).close()
        self._states = {op.id: state for op, state in waiting}
        looked: list[tuple[int, Watch]] = []
        for op, state in waiting:
            if op.id not in self._watches:
                try:
                    self._watches[op.id] = self.executor.watch(op, state)
                except EngineError as exc:  # its app is no longer configured
                    self._finish(op.id, exc)
                    continue
            looked.append((op.id, self._watches[op.id]))
        if not looked:
            return 0
        names = sorted({n for _, w in looked for n in w.names})
        self.calls = -(-len(names) // DESCRIBE_SERVICES_MAX)
        try:
            services, failures = self.engine.describe_services(names, WAIT_STEP)
        except EngineError as exc:  # throttled past the retries, a network error: look again
            log.warning("describing waiting rollouts failed count=%d: %s", len(looked), exc)
            return len(looked)
        for op_id, watch in looked:
            try:
                done = self.engine.look(watch, services, failures)
            except EngineError as exc:
                self._finish(op_id, exc)
                continue
            if done:
                self._finish(op_id, None)
        return len(looked)

    def _finish(self, op_id: int, error: EngineError | None) -> None:
        watch = self._watches.pop(op_id, None)
        if watch is not None:
            watch.close()
        if not self.store.take_waiting(op_id, self.owner):
            return  # another watcher, or a newer request, took it
        op = self.store.get_operation(op_id)  # running again, as take_waiting left it
        state = self._states.pop(op_id)
        try:
            failed: Exception | None = self.executor.finish_wait(op, state, error)
        except Exception as exc:  # never leave it running without a worker
            log.exception("finishing a rollout failed op=%s", op_id)
            failed = exc
        if failed is None:
            self.store.finish_operation(op_id, "succeeded")
            log.info("operation succeeded op=%s env=%s", op_id, op.env)
        else:
            self.store.finish_operation(op_id, "failed", str(failed))
            log.warning("operation failed op=%s env=%s error=%s", op_id, op.env, failed)
        try:
            self.ended(op)
        except Exception:
            log.exception("telling of an ended operation failed op=%s", op_id)

    def loop(self, stopping: threading.Event) -> None:
        """Look until ``stopping`` is set (the runner's thread in ``serve`` and ``worker``)."""
        interval = min(self.settings.poll_interval, ROLLOUT_POLL)
        pause = interval
        while not stopping.wait(pause):
            try:
                self.poll()
            except Exception:
                log.exception("watching rollouts failed")
            pause = self.pause(interval)

    def pause(self, interval: float) -> float:
        """Seconds until the next look: ``interval``, or longer when the last look's calls
        would take more than ``READS_PER_SECOND`` of ECS's read budget."""
        return max(interval, self.calls / READS_PER_SECOND)

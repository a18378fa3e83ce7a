"""One background thread that runs submitted calls in order: how notifiers talk to Slack and
GitHub without slowing down, or failing, the operations they report on."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("revieee")


class SerialWorker:
    """Runs ``submit``-ted calls one after another on a daemon thread; a failing call is logged
    and the next one runs. ``idle`` tells :meth:`flush` whether work it cannot see in the queue
    (e.g. batched lines that a queued call will send) is still pending."""

    def __init__(self, name: str, idle: Callable[[], bool] = lambda: True) -> None:
        self._queue: queue.Queue[tuple[Callable[..., None], tuple[Any, ...]] | None] = queue.Queue()
        self._idle = idle
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                fn, args = item
                try:
                    fn(*args)
                except Exception:
                    log.exception("%s: a notification failed", self._thread.name)
            finally:
                self._queue.task_done()

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        self._queue.put((fn, args))

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything submitted so far (and what it submitted) has run."""
        deadline = time.monotonic() + timeout
        while True:
            done = threading.Event()
            idle: list[bool] = []

            def mark(done: threading.Event = done, idle: list[bool] = idle) -> None:
                idle.append(self._idle())
                done.set()

            self.submit(mark)
            if not done.wait(max(deadline - time.monotonic(), 0)) or idle[0]:
                return
            time.sleep(0.005)  # work is waiting on a timer (a paced thread reply)

    def close(self, timeout: float = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

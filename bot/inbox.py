"""The inbox worker: runs persisted webhook deliveries and delayed actions in order, on a thread
of its own. A delivery is in SQLite before its webhook is answered; an item left running by a
stopped process is taken up again at start; a failing item is retried with backoff (or when a
rate limit says to come back) and given up after a few attempts, with the reason kept."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.store import Store

log = logging.getLogger("revieee.inbox")

Handler = Callable[[str, str, dict[str, Any]], object]  # (source, event, payload)
MAX_ATTEMPTS = 5


class InboxWorker:
    def __init__(
        self,
        store: Store,
        handle: Handler,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        idle_wait: float = 1.0,
    ) -> None:
        self.store = store
        self.handle = handle
        self.clock = clock
        self.idle_wait = idle_wait
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> InboxWorker:
        recovered = self.store.inbox_recover()
        if recovered:
            log.info("inbox items taken up again after a restart count=%s", recovered)
        self._thread = threading.Thread(target=self._loop, name="revieee-inbox", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not self.run_once():
                self._wake.wait(self.idle_wait)
                self._wake.clear()

    def run_until_idle(self) -> int:
        """Run every due item now (tests, the terminal); returns how many ran."""
        count = 0
        while self.run_once():
            count += 1
        return count

    def run_once(self) -> bool:
        item = self.store.inbox_claim(self.clock().isoformat())
        if item is None:
            return False
        try:
            outcome = self.handle(item["source"], item["event"], json.loads(item["payload"]))
            log.info(
                "inbox item done id=%s event=%s outcome=%s", item["id"], item["event"], outcome
            )
            self.store.inbox_finish(item["id"], "done")
        except Exception as exc:
            retry_at = getattr(exc, "retry_at", None)
            attempts = int(item["attempts"])
            if attempts >= MAX_ATTEMPTS:
                log.error("inbox item failed id=%s event=%s: %s", item["id"], item["event"], exc)
                self.store.inbox_finish(item["id"], "failed", f"{type(exc).__name__}: {exc}")
            else:
                due = retry_at or self.clock() + timedelta(seconds=5 * 2 ** (attempts - 1))
                log.warning(
                    "inbox item retried id=%s event=%s at=%s: %s",
                    item["id"],
                    item["event"],
                    due.isoformat(),
                    exc,
                )
                self.store.inbox_retry(item["id"], due.isoformat(), f"{type(exc).__name__}: {exc}")
        return True

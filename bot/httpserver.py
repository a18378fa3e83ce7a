"""The HTTP server revieee answers on: waitress, on a thread of its own."""

from __future__ import annotations

import threading
from typing import Any


class HttpServer:
    """waitress on a thread of its own, stopped from any thread.

    waitress's ``run()`` loops until its sockets are closed; closing them from another thread
    races with the loop's ``poll``. Here the loop runs one round at a time and closes the
    server itself once asked to stop."""

    def __init__(self, app: Any, host: str, port: int, threads: int = 8) -> None:
        from waitress import create_server

        self.server: Any = create_server(
            app,
            host=host,
            port=port,
            threads=threads,
            ident="revieee",
            clear_untrusted_proxy_headers=True,
        )
        self.port: int = self.server.effective_port
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="revieee-http", daemon=True)

    def start(self) -> HttpServer:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.server.asyncore.loop(timeout=0.2, map=self.server._map, use_poll=True, count=1)
        finally:
            self.server.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

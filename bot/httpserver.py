"""The HTTP server revieee answers on: waitress, on a thread of its own, with limits that keep
idle and slow clients from taking it down."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher

log = logging.getLogger("revieee.http")

# The largest body any route takes (GitHub caps webhook payloads at 25 MB; Slack's are small):
# waitress itself answers 413 to a longer declared Content-Length, before reading the body.
MAX_REQUEST_BODY = 25 * 1024 * 1024

# Open files the process needs besides its connections: SQLite, the AWS, Slack and GitHub
# connection pools, logs, waitress's trigger and listening socket.
FILES_RESERVED = 256


class HttpServer:
    """waitress on a thread of its own, stopped from any thread.

    waitress's ``run()`` loops until its sockets are closed; closing them from another thread
    races with the loop's ``poll``. Here the loop runs one round at a time and closes the
    server itself once asked to stop.

    The limits (seconds and counts; waitress's own defaults are 100 connections, 120 s idle and
    no deadline at all for a request to arrive):

    - ``connection_limit``: open connections before new ones wait in the listen backlog. The
      process's soft open-file limit is raised toward the hard one to fit them; if it cannot
      be, the limit is lowered to what fits.
    - ``idle_timeout``: a connection with no request under way and nothing sent or received
      for this long is closed (keep-alive). Behind a load balancer it must be longer than the
      balancer's own idle timeout, or the balancer reuses a connection as it is being closed
      (a 502): see deploy/cloudformation.yml.
    - ``request_timeout``: a request's headers and body must have arrived this long after its
      first byte, or the connection is closed (slowloris: one header byte every few seconds
      would otherwise hold a connection for ever). Slack gives up after 3 s, GitHub after 10.
    - ``cleanup_interval``: how often both are checked, so a connection is closed at most this
      much after its deadline.
    """

    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        threads: int = 8,
        *,
        connection_limit: int = 2000,
        idle_timeout: float = 75.0,
        request_timeout: float = 10.0,
        cleanup_interval: float = 1.0,
    ) -> None:
        adj = _Adjustments(
            host=host,
            port=port,
            threads=threads,
            ident="revieee",
            clear_untrusted_proxy_headers=True,
            connection_limit=fit_open_files(connection_limit),
            max_request_body_size=MAX_REQUEST_BODY + 1,
            channel_timeout=idle_timeout,
            request_timeout=request_timeout,
            cleanup_interval=cleanup_interval,
        )
        self._map: dict[int, Any] = {}
        self._dispatcher = ThreadedTaskDispatcher()
        self._dispatcher.set_thread_count(adj.threads)
        self._servers = [
            _Server(app, self._map, dispatcher=self._dispatcher, adj=adj, sockinfo=sockinfo)
            for sockinfo in adj.listen
        ]
        self.port: int = int(self._servers[0].effective_port)
        self.connection_limit: int = adj.connection_limit
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="revieee-http", daemon=True)

    def start(self) -> HttpServer:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                wasyncore.loop(timeout=0.2, map=self._map, use_poll=True, count=1)
        finally:
            for server in self._servers:
                server.close()  # no new connections
            self._dispatcher.shutdown()  # requests under way finish (5 s at most)
            wasyncore.close_all(self._map)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def fit_open_files(connections: int) -> int:
    """The number of connections that fit under the process's open-file limit (with
    ``FILES_RESERVED`` to spare), after raising its soft limit toward the hard one if needed."""
    try:
        import resource
    except ImportError:  # not a Unix: no limit to read
        return connections
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + FILES_RESERVED
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            log.info("open-file limit raised soft=%d hard=%d", raised, hard)
            soft = raised
        except (ValueError, OSError) as exc:
            log.warning("raising the open-file limit to %d: %s", raised, exc)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return connections
    fits = max(soft - FILES_RESERVED, 1)
    log.warning(
        "connection limit lowered to %d: the open-file limit is %d (hard %d)", fits, soft, hard
    )
    return fits


class _Adjustments(Adjustments):
    """waitress's settings, with timeouts in fractions of a second (waitress takes whole
    seconds) and the deadline for a request to arrive."""

    _param_map = {
        **Adjustments._param_map,
        "channel_timeout": float,
        "cleanup_interval": float,
        "request_timeout": float,
    }
    request_timeout = 10.0


class _Channel(HTTPChannel):
    """A connection that remembers when the first byte of the request it is reading came."""

    request_started: float | None = None
    _timed: Any = None  # the parser of the request timed in ``request_started``

    def received(self, data: bytes) -> bool:
        received: bool = super().received(data)
        if self.request is None:  # nothing partly read: every request received is complete
            self.request_started = self._timed = None
        elif self.request is not self._timed:  # a new request began in ``data``
            self.request_started, self._timed = time.time(), self.request
        return received


class _Server(TcpWSGIServer):
    """waitress's TCP server whose periodic maintenance also enforces ``request_timeout``."""

    channel_class = _Channel

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # idle keep-alive connections (channel_timeout)
        cutoff = now - self.adj.request_timeout
        late = []
        for channel in self.active_channels.values():
            if channel.request_started is None or channel.will_close:
                continue
            if channel.requests:  # being answered: a request pipelined behind it is not read
                channel.request_started = now
            elif channel.request_started < cutoff:
                late.append(channel)
        for channel in late:
            channel.will_close = True  # closed by the loop's next round (see writable())
        if late:
            log.info(
                "closed %d connection(s) whose request had not arrived %gs after its first byte",
                len(late),
                self.adj.request_timeout,
            )


LENGTH_DIGITS = 12  # a Content-Length this long is over any limit here, whatever its value


class Refused(Exception):
    """A request refused before its body is read: the HTTP status line and what was wrong."""

    def __init__(self, status: str, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


def read_body(environ: dict[str, Any], limit: int) -> bytes:
    """The request's body, read only once its ``Content-Length`` is known to be at most
    ``limit`` bytes. Raises :class:`Refused`: 411 without a length (PEP 3333 lets a server pass
    none), 400 when it is not a decimal number or the body is shorter, 413 over the limit (on
    the declared length alone: nothing is read)."""
    raw = environ.get("CONTENT_LENGTH")
    if not raw:
        raise Refused("411 Length Required", "Content-Length required")
    if not (raw.isascii() and raw.isdigit()):  # str.isdigit alone takes "²"
        raise Refused("400 Bad Request", "invalid Content-Length")
    if len(raw) > LENGTH_DIGITS or int(raw) > limit:
        raise Refused("413 Payload Too Large", f"body over {limit} bytes")
    length = int(raw)
    body: bytes = environ["wsgi.input"].read(length) if length else b""
    if len(body) != length:
        raise Refused("400 Bad Request", "body shorter than its Content-Length")
    return body

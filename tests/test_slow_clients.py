"""Idle and slow clients cannot take revieee's HTTP server down (issue 14). With 200 idle TCP
connections and 100 slowloris ones (a header byte a second) open, ``GET /healthz`` and a signed
``/revieee help`` still answer at once; the server closes a connection whose request has not
arrived ``request_timeout`` after its first byte, and one that stays idle for ``idle_timeout``.

The server is revieee's own (:class:`bot.httpserver.HttpServer` over the rig's WSGI app) with
short deadlines, so the test takes seconds."""

from __future__ import annotations

import http.client
import selectors
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from bot.httpserver import HttpServer
from tests.slack_rig import CHANNEL, TEAM, sign

if TYPE_CHECKING:
    from tests.conftest import MakeRig

IDLE_TIMEOUT = 2.5
REQUEST_TIMEOUT = 1.5
CLEANUP_INTERVAL = 0.1
LATE = 1.0  # how much after its deadline a connection may be closed on two busy shared cores
TRICKLE_EVERY = 1.0  # seconds between two bytes of a slow connection

# Never a complete request: a header line that goes on and on.
SLOW_HEADERS = b"GET /healthz HTTP/1.1\r\nHost: revieee\r\nX-Slow: " + b"a" * 1000
SLOW_BODY_HEAD = (
    b"POST /slack/events HTTP/1.1\r\nHost: revieee\r\nContent-Type: application/json\r\n"
    b"Content-Length: 1000\r\n\r\n"
)
KEEP_ALIVE = b"GET /healthz HTTP/1.1\r\nHost: revieee\r\n\r\n"


@dataclass(eq=False)
class Conn:
    kind: str
    sock: socket.socket
    opened: float  # time.monotonic() of connect
    trickle: bytes  # sent a byte every TRICKLE_EVERY seconds after the first bytes
    next_byte: float
    sent: int = 0
    received: int = 0
    closed: float | None = None  # when the server closed it


class SlowClients:
    """Raw TCP connections to a server, all watched by one thread: it sends each slow
    connection its next byte when due and notes when the server closes a connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conns: list[Conn] = []
        self._new: list[Conn] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._selector = selectors.DefaultSelector()
        self._thread = threading.Thread(target=self._watch, name="slow-clients", daemon=True)
        self._thread.start()

    def open(self, kind: str, n: int, first: bytes = b"", trickle: bytes = b"") -> list[Conn]:
        """``n`` connections that send ``first`` at once, then ``trickle`` byte by byte."""
        conns = []
        for _ in range(n):
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if first:
                sock.sendall(first)
            sock.setblocking(False)
            now = time.monotonic()
            conns.append(Conn(kind, sock, now, trickle, now + TRICKLE_EVERY, len(first)))
        with self._lock:
            self._new += conns
        self.conns += conns
        return conns

    def _watch(self) -> None:
        trickling: list[Conn] = []
        while not self._stop.is_set():
            with self._lock:
                new, self._new = self._new, []
            for conn in new:
                self._selector.register(conn.sock, selectors.EVENT_READ, conn)
                if conn.trickle:
                    trickling.append(conn)
            for key, _ in self._selector.select(timeout=0.02):
                conn = key.data
                try:
                    data = conn.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:  # reset
                    data = b""
                conn.received += len(data)
                if not data:
                    conn.closed = time.monotonic()
                    self._selector.unregister(conn.sock)
            now = time.monotonic()
            for conn in trickling:
                if conn.closed is None and conn.next_byte <= now and conn.trickle:
                    try:
                        conn.sock.send(conn.trickle[:1])
                    except OSError:  # closed by the server: the read above will say when
                        continue
                    conn.trickle, conn.sent = conn.trickle[1:], conn.sent + 1
                    conn.next_byte += TRICKLE_EVERY

    def open_count(self, kind: str) -> int:
        return sum(1 for c in self.conns if c.kind == kind and c.closed is None)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self.conns:
            conn.sock.close()


def get_healthz(port: int, timeout: float) -> tuple[int, float, bytes]:
    """``GET /healthz`` on a new connection: status (0 if none came), seconds, body."""
    return _timed(port, "GET", "/healthz", b"", {}, timeout)


def signed_help(port: int, response_url: str, timeout: float) -> tuple[int, float, bytes]:
    """A signed ``/revieee help`` slash command, form-encoded and signed as Slack sends it."""
    body = urlencode(
        {
            "team_id": TEAM,
            "channel_id": CHANNEL,
            "user_id": "U0ALICE",
            "user_name": "alice",
            "command": "/revieee",
            "text": "help",
            "api_app_id": "A0REVIEEE",
            "response_url": response_url,
            "trigger_id": "1.trigger",
        }
    ).encode()
    ts = str(int(time.time()))
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": sign(body, ts),
    }
    return _timed(port, "POST", "/slack/events", body, headers, timeout)


def _timed(
    port: int, method: str, path: str, body: bytes, headers: dict[str, str], timeout: float
) -> tuple[int, float, bytes]:
    start = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, time.monotonic() - start, data
    except (OSError, http.client.HTTPException) as exc:
        return 0, time.monotonic() - start, repr(exc).encode()
    finally:
        conn.close()


def test_idle_and_slowloris_connections_neither_block_answers_nor_stay_open(
    make_rig: MakeRig,
) -> None:
    rig = make_rig()
    server = HttpServer(
        rig.serving.app,
        "127.0.0.1",
        0,
        threads=4,
        idle_timeout=IDLE_TIMEOUT,
        request_timeout=REQUEST_TIMEOUT,
        cleanup_interval=CLEANUP_INTERVAL,
    ).start()
    clients = SlowClients(server.port)
    answers: list[tuple[str, int, float, bytes]] = []
    open_at_first: tuple[int, int] | None = None
    try:
        clients.open("idle", 200)
        clients.open("slowloris", 100, SLOW_HEADERS[:1], SLOW_HEADERS[1:])
        clients.open("slow body", 1, SLOW_BODY_HEAD, b"{" + b" " * 998 + b"}")
        clients.open("keep-alive", 1, KEEP_ALIVE)  # one complete request, then nothing
        loaded = time.monotonic()
        # while they are open (and after): both front doors answer, each time at once
        while time.monotonic() - loaded < IDLE_TIMEOUT + LATE + 0.5:
            answers.append(("healthz", *get_healthz(server.port, timeout=3)))
            url = rig.fake.response_url(f"help{len(answers)}")
            answers.append(("help", *signed_help(server.port, url, timeout=3)))
            if open_at_first is None:
                open_at_first = (clients.open_count("idle"), clients.open_count("slowloris"))
            if not any(clients.open_count(k) for k in ("idle", "slowloris", "keep-alive")):
                break
            time.sleep(0.2)
    finally:
        clients.close()
        server.stop()

    slow = [(kind, status, round(s, 2)) for kind, status, s, _ in answers if status != 200 or s > 1]
    assert not slow, f"answers that took over 1 s or failed: {slow[:6]}"
    assert open_at_first == (200, 100), f"open (idle, slowloris) at first: {open_at_first}"
    for kind, _, _, body in answers:
        assert (b'"ok": true' in body) if kind == "healthz" else (b"deploy BRANCH" in body), body

    for kind, deadline in [
        ("slowloris", REQUEST_TIMEOUT),  # closed mid-headers although it keeps sending
        ("slow body", REQUEST_TIMEOUT),  # headers in, body trickling
        ("idle", IDLE_TIMEOUT),  # never sent a byte
        ("keep-alive", IDLE_TIMEOUT),  # its request was complete: only the idle timeout applies
    ]:
        conns = [c for c in clients.conns if c.kind == kind]
        lived = sorted(round(c.closed - c.opened, 2) for c in conns if c.closed is not None)
        assert len(lived) == len(conns), f"{kind}: {len(conns) - len(lived)} never closed"
        assert deadline - 0.05 <= lived[0] and lived[-1] <= deadline + LATE, (
            f"{kind} connections should close {deadline}s after they began: {lived}"
        )
    assert all(c.received == 0 for c in clients.conns if c.kind != "keep-alive")
    assert [c.received > 0 for c in clients.conns if c.kind == "keep-alive"] == [True]

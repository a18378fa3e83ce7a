"""A small Socket Mode endpoint speaking the real protocol: an RFC 6455 WebSocket server (plain
``ws://`` on loopback, which slack_sdk's built-in client accepts for non-443 ports) that says
``hello``, pushes envelopes (``slash_commands``, ``events_api``, ``interactive``) and records the
client's acks. Pings are answered with pongs, as Slack does."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import struct
import threading
import time
import uuid
from typing import Any

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _frame(opcode: int, payload: bytes) -> bytes:
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    return head + payload  # server frames are not masked


def _read_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _read_frame(conn: socket.socket) -> tuple[int, bytes]:
    b0, b1 = _read_exact(conn, 2)
    opcode, masked, n = b0 & 0x0F, b1 & 0x80, b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", _read_exact(conn, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", _read_exact(conn, 8))[0]
    mask = _read_exact(conn, 4) if masked else b"\0\0\0\0"
    data = _read_exact(conn, n)
    return opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(data))


class FakeSocketMode:
    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(4)
        self.url = f"ws://127.0.0.1:{self._sock.getsockname()[1]}/link/?ticket=test"
        self.acks: dict[str, dict[str, Any]] = {}
        self.connected = threading.Event()
        self._conn: socket.socket | None = None
        self._lock = threading.Condition()
        self._send_lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = conn.recv(4096)
            if not chunk:
                return
            request += chunk
        headers = {
            k.strip().lower(): v.strip()
            for k, _, v in (
                line.partition(":") for line in request.decode().split("\r\n")[1:] if line
            )
        }
        accept = base64.b64encode(
            hashlib.sha1((headers["sec-websocket-key"] + GUID).encode()).digest()
        ).decode()
        conn.sendall(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode()
        )
        self._conn = conn
        hello = {"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A0REV"}}
        self._send(json.dumps(hello))
        self.connected.set()
        try:
            while True:
                opcode, data = _read_frame(conn)
                if opcode == 0x9:  # ping
                    with self._send_lock:
                        conn.sendall(_frame(0xA, data))
                elif opcode == 0x1:
                    message = json.loads(data)
                    with self._lock:
                        self.acks[message["envelope_id"]] = message
                        self._lock.notify_all()
                elif opcode == 0x8:  # close
                    return
        except (ConnectionError, OSError):
            return

    def _send(self, text: str) -> None:
        assert self._conn is not None
        with self._send_lock:
            self._conn.sendall(_frame(0x1, text.encode()))

    def push(self, kind: str, payload: dict[str, Any], accepts_response: bool = True) -> str:
        """Send an envelope; returns its id (the client's ack carries it back)."""
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": accepts_response,
        }
        if kind == "events_api":
            envelope |= {"retry_attempt": 0, "retry_reason": ""}
        self._send(json.dumps(envelope))
        return envelope_id

    def ack(self, envelope_id: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while envelope_id not in self.acks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no ack for envelope {envelope_id}")
                self._lock.wait(remaining)
            return self.acks[envelope_id]

    def close(self) -> None:
        self._sock.close()
        if self._conn is not None:
            self._conn.close()

"""A small HTTP proxy in front of moto's server that answers chosen AWS actions with faults
(throttling, 5xx, access denied) in the real wire format, and forwards everything else.

Used instead of patching boto3: the client's real retry logic sees real HTTP responses.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass
class Fault:
    action: str  # the X-Amz-Target suffix, e.g. "CreateService"
    status: int
    code: str
    message: str
    times: int  # how many requests to fail; -1 for always
    target_prefix: str = ""  # e.g. "AmazonEC2ContainerServiceV20141113" to pick the service


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.faults: list[Fault] = []
        self.served: Counter[str] = Counter()  # faults served, by action
        self.forwarded: Counter[str] = Counter()
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return None

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                target = self.headers.get("X-Amz-Target", "")
                fault = proxy._take_fault(target)
                if fault is not None:
                    payload = json.dumps({"__type": fault.code, "message": fault.message}).encode()
                    self.send_response(fault.status)
                    self.send_header("Content-Type", "application/x-amz-json-1.1")
                    self.send_header("x-amzn-ErrorType", fault.code)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                with proxy._lock:
                    proxy.forwarded[target.rsplit(".", 1)[-1] or self.path] += 1
                conn = http.client.HTTPConnection(
                    proxy.upstream.hostname, proxy.upstream.port, timeout=30
                )
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                headers["Host"] = proxy.upstream.netloc
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def _take_fault(self, target: str) -> Fault | None:
        prefix, _, action = target.rpartition(".")
        with self._lock:
            for fault in self.faults:
                if (
                    fault.action == action
                    and fault.times != 0
                    and (not fault.target_prefix or fault.target_prefix == prefix)
                ):
                    if fault.times > 0:
                        fault.times -= 1
                    self.served[action] += 1
                    return fault
        return None

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

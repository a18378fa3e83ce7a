"""The strict AWS: an HTTP proxy in front of moto's server that refuses, delays and answers
what real AWS does where moto does not. boto3 reaches it through ``AWS_ENDPOINT_URL``.

Every request goes through, in order:

1. the principal: requests signed with :data:`ADMIN_KEY` are the operator's (seeding a test,
   looking at the result) and skip IAM and throttling; every other key is revieee's role;
2. throttling (:mod:`bot.strict_aws.throttle`);
3. IAM, when an :class:`Authorizer` is given (the tests use the stack's own task role with a
   real policy evaluator, see ``tests/strict_aws``); a denied call answers
   ``AccessDeniedException`` as AWS does and is recorded in :attr:`StrictAws.denials`;
4. the service's rules (:mod:`~bot.strict_aws.ecs`, :mod:`~bot.strict_aws.cloudmap`,
   :mod:`~bot.strict_aws.logs`, :mod:`~bot.strict_aws.quotas`), which may refuse, answer from
   their model, or rewrite moto's answer.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import urlsplit

import boto3
from botocore.config import Config

from bot.strict_aws.cloudmap import CloudMap
from bot.strict_aws.ecs import Ecs
from bot.strict_aws.logs import Logs
from bot.strict_aws.quotas import Quotas
from bot.strict_aws.throttle import Buckets
from bot.strict_aws.wire import Answer, Call, error, parse

log = logging.getLogger("revieee.strict_aws")

ADMIN_KEY = "AKIASTRICTADMIN00000"  # the operator's key: no IAM, no throttling
ROLE_KEY = "AKIAREVIEEETASKROLE0"  # revieee's own (any key but the admin's is the role)


@dataclass
class Rules:
    """How slow and how strict the layer is. Tests keep times short; benchmarks use AWS's."""

    task_start: float = 1.0  # PROVISIONING -> RUNNING
    task_start_jitter: float = 0.0  # each task takes up to this much longer (seeded)
    pull_failure: float = 0.3  # a task whose image cannot be pulled stops after this
    drain: float = 2.0  # a deleted service stays DRAINING at least this long
    cloud_map_operation: float = 0.5  # an instance (de)registration takes this long
    cloud_map_lag: float = 0.3  # ListInstances shows changes this late
    instances_per_namespace: int = 2000
    throttle: bool = True
    throttle_scale: float = 1.0
    empty_log_pages: bool = True


@dataclass
class Denial:
    """A call IAM refused: the request context and the statement that would allow it."""

    call: str
    action: str
    resource: str
    context: dict[str, Any]
    statement: dict[str, Any]

    def __str__(self) -> str:
        import json

        return (
            f"{self.call}: {self.action} on {self.resource} denied"
            f" (context {json.dumps(self.context, sort_keys=True)}); missing statement: "
            f"{json.dumps(self.statement, sort_keys=True)}"
        )


class Authorizer(Protocol):
    """Decides the calls of revieee's role; answers the IAM API it simulates."""

    def authorize(self, call: Call) -> Denial | None: ...

    def answer(self, call: Call) -> Answer | None: ...


@dataclass
class Counts:
    forwarded: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    throttled: Counter[str] = field(default_factory=Counter)


class StrictAws:
    """The proxy; ``url`` is what ``AWS_ENDPOINT_URL`` points at."""

    def __init__(
        self, upstream: str, rules: Rules | None = None, authorizer: Authorizer | None = None
    ) -> None:
        self.upstream_url = upstream
        self.rules = rules or Rules()
        self.authorizer = authorizer
        self._target = urlsplit(upstream)
        self._admin_session: boto3.session.Session | None = None
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()
        self.buckets = Buckets(scale=self.rules.throttle_scale)
        self.cloud_map = CloudMap(
            self._upstream,
            operation_time=self.rules.cloud_map_operation,
            list_lag=self.rules.cloud_map_lag,
            instances_per_namespace=self.rules.instances_per_namespace,
        )
        self.ecs = Ecs(
            self._upstream,
            self.cloud_map,
            task_start=self.rules.task_start,
            pull_failure=self.rules.pull_failure,
            drain=self.rules.drain,
            task_start_jitter=self.rules.task_start_jitter,
        )
        self.logs = Logs(empty_pages=self.rules.empty_log_pages)
        self.quotas = Quotas(self.ecs)
        self.denials: list[Denial] = []
        self.counts = Counts()
        self.calls: list[tuple[float, str, str]] = []  # (monotonic, principal, service:Action)
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return None

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                answer = proxy.handle(self.command, self.path, headers, body)
                self.send_response(answer.status)
                for key, value in answer.headers.items():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- life ------------------------------------------------------------------------------

    def start(self) -> StrictAws:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        """Forget every model's state (call after moto's own reset)."""
        self.ecs.reset()
        self.cloud_map.reset()
        self.logs.reset()
        self.buckets.reset()
        with self._lock:
            self.denials.clear()
            self.counts = Counts()
            self.calls.clear()

    def environ(self) -> dict[str, str]:
        """Variables that make boto3 talk to the layer as revieee's role."""
        return {"AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": ROLE_KEY}

    def admin_session(self) -> boto3.session.Session:
        """A boto3 session of the operator (no IAM, no throttling) through the layer; one for
        the layer's life (a session loads each service's model once: clients from a session
        that has them are built ten times faster)."""
        if self._admin_session is None:
            self._admin_session = boto3.session.Session(
                aws_access_key_id=ADMIN_KEY,
                aws_secret_access_key="admin",
                aws_session_token=None,
                region_name="us-east-1",
            )
        return self._admin_session

    # -- requests --------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        call = parse(method, path, headers, body)
        if call is None:
            return self._forward(method, path, headers, body)
        admin = call.key_id == ADMIN_KEY
        principal = "admin" if admin else "role"
        with self._lock:
            self.calls.append((time.monotonic(), principal, call.name))
        self.ecs.tick()
        self.cloud_map.tick(time.monotonic())
        if not admin and self.rules.throttle and not self.buckets.take(call.service, call.action):
            with self._lock:
                self.counts.throttled[call.name] += 1
            return error(call, "ThrottlingException", "Rate exceeded")
        if self.authorizer is not None:
            answer = self.authorizer.answer(call)
            if answer is not None:
                return answer
            if not admin:
                denial = self.authorizer.authorize(call)
                if denial is not None:
                    with self._lock:
                        self.denials.append(denial)
                    log.warning("denied %s", denial)
                    return error(
                        call,
                        "AccessDeniedException" if not call.query else "AccessDenied",
                        f"User: arn:aws:sts::123456789012:assumed-role/RevieeeTaskRole/revieee "
                        f"is not authorized to perform: {denial.action} on resource: "
                        f"{denial.resource} because no identity-based policy allows the "
                        f"{denial.action} action",
                    )
        model: Any = {
            "ecs": self.ecs,
            "servicediscovery": self.cloud_map,
            "logs": self.logs,
            "servicequotas": self.quotas,
        }.get(call.service)
        answer = model.before(call) if model is not None else None
        if answer is not None:
            if answer.status != 200:
                with self._lock:
                    self.counts.refused[call.name] += 1
            return answer
        answer = self._forward(call.method, call.path, call.headers, call.wire_body())
        with self._lock:
            self.counts.forwarded[call.name] += 1
        return model.after(call, answer) if model is not None else answer

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        host = self._target.hostname or "127.0.0.1"
        conn = http.client.HTTPConnection(host, self._target.port, timeout=60)
        try:
            sent = {k: v for k, v in headers.items() if k not in ("host", "content-length")}
            sent["Host"] = self._target.netloc
            sent["Content-Length"] = str(len(body))
            conn.request(method, path, body=body, headers=sent)
            resp = conn.getresponse()
            data = resp.read()
            return Answer(resp.status, data, dict(resp.getheaders()))
        finally:
            conn.close()

    def _upstream(self, service: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """A call straight to moto, as the operator (for the models' own look-ups)."""
        with self._clients_lock:
            client = self._clients.get(service)
            if client is None:
                client = boto3.session.Session().client(
                    service,  # type: ignore[call-overload]
                    endpoint_url=self.upstream_url,
                    region_name="us-east-1",
                    aws_access_key_id=ADMIN_KEY,
                    aws_secret_access_key="admin",
                    config=Config(retries={"total_max_attempts": 1}),
                )
                self._clients[service] = client
        result: dict[str, Any] = getattr(client, method)(**params)
        return result

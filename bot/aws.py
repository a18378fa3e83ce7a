"""The boto3 clients revieee uses, built in one place (see :func:`build_clients`).

Credentials and region come from boto3's standard chain; ``AWS_ENDPOINT_URL`` (and the
per-service ``AWS_ENDPOINT_URL_<SERVICE>``) is honoured by boto3 itself, which is how the whole app
runs against moto's server. Throttling and transient errors are retried by botocore's
``adaptive`` (or ``standard``) retry mode.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError


class AwsClients:
    """The clients the engine needs; each is a plain boto3 client, made the first time it is
    used: a client holds its service's model (EC2's alone is 15 MB), and ``serve`` never uses
    EC2's, IAM's or STS's (only ``check`` does), nor CodeBuild's without an app that builds."""

    # each field, and the boto3 service whose client it is
    SERVICES = {
        "ecs": "ecs",
        "servicediscovery": "servicediscovery",
        "ecr": "ecr",
        "ec2": "ec2",
        "codebuild": "codebuild",
        "logs": "logs",
        "iam": "iam",  # check --permissions: iam:SimulatePrincipalPolicy
        "sts": "sts",  # ... of the caller's role
        "quotas": "service-quotas",  # Service Quotas: the Fargate vCPU quotas
    }
    ecs: Any
    servicediscovery: Any
    ecr: Any
    ec2: Any
    codebuild: Any
    logs: Any
    iam: Any
    sts: Any
    quotas: Any

    def __init__(self, make: Callable[[str], Any]) -> None:
        self._make = make  # the boto3 service name -> its client
        self._made: dict[str, Any] = {}
        self._hooks: list[Callable[[Any], None]] = []
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        service = AwsClients.SERVICES.get(name)
        if service is None:
            raise AttributeError(name)
        with self._lock:
            client = self._made.get(name)
            if client is None:
                client = self._made[name] = self._make(service)
                for hook in self._hooks:
                    hook(client)
            return client

    def each(self, hook: Callable[[Any], None]) -> None:
        """Call ``hook`` with every client: those made already, and each one when it is made
        (event handlers, e.g. counting errors)."""
        with self._lock:
            self._hooks.append(hook)
            made = list(self._made.values())
        for client in made:
            hook(client)

    def all(self) -> list[Any]:
        """Every client (making those not made yet)."""
        return [getattr(self, name) for name in AwsClients.SERVICES]


def build_clients(
    retry_mode: str = "adaptive",
    max_attempts: int = 8,
    session: boto3.session.Session | None = None,
    pool_size: int = 10,
) -> AwsClients:
    """Build the AWS clients (each on first use); called by the composition root, never at
    import time.

    ``max_attempts`` counts every attempt of a call, the first one included; ``pool_size``
    (HTTP connections per client) should cover the worker threads sharing the clients."""
    session = session or boto3.session.Session()
    config = Config(
        retries={"mode": retry_mode, "total_max_attempts": max_attempts},  # type: ignore[arg-type]
        user_agent_extra="revieee",
        connect_timeout=10,
        read_timeout=60,
        max_pool_connections=pool_size,
    )
    # one boto3 session must not make clients in two threads at once (boto3 docs, "Multithreading")
    made = threading.Lock()

    def make(service: str) -> Any:
        with made:
            return session.client(service, config=config)  # type: ignore[call-overload]

    return AwsClients(make)


class CallCounter:
    """Counts AWS API calls (not HTTP retries) through botocore's event hooks."""

    def __init__(self, clients: AwsClients) -> None:
        self.calls: Counter[str] = Counter()
        self.sent_params: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        for client in clients.all():
            client.meta.events.register("provide-client-params.*.*", self._on_call)

    def _on_call(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        name = f"{model.service_model.service_name}:{model.name}"
        with self._lock:
            self.calls[name] += 1
            self.sent_params.append((name, dict(params)))

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.sent_params.clear()

    def params_of(self, name: str) -> list[dict[str, Any]]:
        return [p for n, p in self.sent_params if n == name]


class Pace:
    """At most ``per_second`` calls a second, a burst of as many (a token bucket), for an API
    whose quota is low enough that a burst of our own would meet it: CloudWatch Logs'
    ``FilterLogEvents`` takes 5 a second per account and Region, a hard limit (CloudWatch Logs
    quotas). ``wait()`` blocks until the next call may go; shared by every thread."""

    def __init__(
        self,
        per_second: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        burst: float | None = None,
    ) -> None:
        self.per_second = per_second
        self.burst = burst or per_second
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._at = clock()
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.per_second)
            self._at = now
            if self._tokens < 1:
                pause = (1 - self._tokens) / self.per_second
                self._sleep(pause)
                self._at = self._clock()
                self._tokens = 1.0
            self._tokens -= 1


ECS_WRITE_BURST = 20.0  # calls at once, well under ECS's bucket (tests/strict_aws: 50)


def pace_ecs_writes(clients: AwsClients, per_second: float) -> Pace:
    """Every ECS call that changes something (not ``Describe*``/``List*``) of this process
    waits for its turn: at most ``per_second`` a second, after a burst of
    ``ECS_WRITE_BURST``. ECS throttles an account's calls per Region with token buckets
    ("Request throttling for the Amazon ECS API"); the evening's sleep of 200 environments
    issues its ``UpdateService`` calls at that pace instead of meeting ``ThrottlingException``
    and backing off (adaptive retries only slow down after being throttled)."""
    pace = Pace(per_second, burst=max(ECS_WRITE_BURST, per_second))

    def before_call(model: Any, **_: Any) -> None:
        if not model.name.startswith(("Describe", "List")):
            pace.wait()

    clients.ecs.meta.events.register(
        "before-call.ecs", before_call, unique_id="revieee-pace-ecs-writes"
    )
    return pace


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def describe_error(exc: BaseException) -> str:
    """A one-line account of an AWS error, without request ids or credentials."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', 'Error')}: {err.get('Message', '').strip()}".rstrip(": ")
    if isinstance(exc, BotoCoreError):
        return f"{type(exc).__name__}: {exc}"
    return f"{type(exc).__name__}: {exc}"

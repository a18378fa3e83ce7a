"""What every part of the engine shares: the error type, the one translation of AWS errors
into it (:func:`aws_step`), the reporter, and :class:`EngineBase` (the clients, the settings,
the Cloud Map namespace, describing ECS and Cloud Map services)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from bot.aws import AwsClients, describe_error, error_code
from bot.config import ServiceConfig, Settings
from bot.naming import service_label

# (step, message): what a step did, in plain text. Its phase is the caller's (bot.events).
Reporter = Callable[[str, str], None]
DESCRIBE_SERVICES_MAX = 10  # ECS API reference, DescribeServices: "up to 10 services"


class EngineError(Exception):
    """A failed step: ``str()`` is ``"<step>: <what went wrong>"``."""

    def __init__(self, step: str, message: str) -> None:
        self.step = step
        self.message = message
        super().__init__(f"{step}: {message}")


class ImageMissing(EngineError):
    """No image for the branch (or commit) in the service's repository. ``tag`` is the exact
    tag looked for (None when any commit of the branch would have done)."""

    def __init__(self, step: str, message: str, tag: str | None = None) -> None:
        super().__init__(step, message)
        self.tag = tag


def noop(step: str, message: str) -> None:
    return None


@dataclass
class Refusal:
    """What :func:`aws_step` let through: the error code AWS answered (None: it succeeded)
    and its one-line account."""

    code: str | None = None
    message: str = ""


@contextmanager
def aws_step(step: str, ok_codes: Iterable[str] = ()) -> Iterator[Refusal]:
    """Run AWS calls as ``step``: a refusal whose error code is in ``ok_codes`` is an answer
    (its code is in the yielded :class:`Refusal`), any other error an :class:`EngineError`
    naming the step::

        with aws_step(f"deleting ECS service {name}", ok_codes=("ServiceNotFoundException",)) as r:
            ecs.delete_service(...)
        gone = r.code is not None
    """
    refusal = Refusal()
    try:
        yield refusal
    except ClientError as exc:
        code = error_code(exc)
        if code not in ok_codes:
            raise EngineError(step, describe_error(exc)) from exc
        refusal.code, refusal.message = code, describe_error(exc)
    except BotoCoreError as exc:
        raise EngineError(step, describe_error(exc)) from exc


def call(step: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
    """``fn(**kwargs)`` as ``step`` (see :func:`aws_step`)."""
    with aws_step(step):
        return fn(**kwargs)
    raise AssertionError("unreachable")  # pragma: no cover (aws_step swallows nothing here)


class EngineBase:
    """The clients and settings, and the lookups every part of the engine makes."""

    def __init__(
        self,
        clients: AwsClients,
        settings: Settings,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.aws = clients
        self.settings = settings
        self.sleep = sleep
        self.monotonic = monotonic
        self._namespace: tuple[str, str] | None = None
        self._repository_uris: dict[str, str] = {}

    def namespace(self) -> tuple[str, str]:
        """(id, name) of the configured Cloud Map namespace. An id (``ns-...``, what the stack
        passes) is looked up directly; a name must be unique in the account and Region (two
        VPCs can each have a ``review.internal``)."""
        if self._namespace is not None:
            return self._namespace
        wanted = self.settings.namespace
        step = f"finding Cloud Map namespace {wanted}"
        sd = self.aws.servicediscovery
        found: list[tuple[str, str]] = []
        with aws_step(step, ok_codes=("NamespaceNotFound",)):
            if wanted.startswith("ns-"):
                ns = sd.get_namespace(Id=wanted)["Namespace"]
                found = [(ns["Id"], ns["Name"])]
            else:
                for page in sd.get_paginator("list_namespaces").paginate():
                    found += [
                        (n["Id"], n["Name"]) for n in page["Namespaces"] if n["Name"] == wanted
                    ]
        if not found:
            raise EngineError(step, "no such namespace in this account and region")
        if len(found) > 1:
            ids = ", ".join(i for i, _ in found)
            raise EngineError(
                step, f"{len(found)} namespaces have this name ({ids}): set namespace to the id"
            )
        self._namespace = found[0]
        return self._namespace

    def host_of(self, env: str, service: ServiceConfig) -> str:
        return f"{service_label(env, service.name)}.{self.namespace()[1]}"

    def cloud_map_services(self, ns_id: str, step: str) -> dict[str, dict[str, Any]]:
        """The namespace's Cloud Map services by name (one listing per deploy or stop)."""
        paginator = self.aws.servicediscovery.get_paginator("list_services")
        found: dict[str, dict[str, Any]] = {}
        with aws_step(step):
            for page in paginator.paginate(
                Filters=[{"Name": "NAMESPACE_ID", "Values": [ns_id], "Condition": "EQ"}]
            ):
                for svc in page["Services"]:
                    # moto ignores Filters, so check the namespace here too.
                    if svc.get("NamespaceId", ns_id) == ns_id:
                        found[svc["Name"]] = dict(svc)
        return found

    def describe_services(
        self, names: list[str], step: str, **extra: Any
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(services, failures) of ``names`` in the cluster, 10 per call as ECS takes them."""
        services: list[dict[str, Any]] = []
        failures: list[dict[str, Any]] = []
        for i in range(0, len(names), DESCRIBE_SERVICES_MAX):
            found = call(
                step,
                self.aws.ecs.describe_services,
                cluster=self.settings.cluster,
                services=names[i : i + DESCRIBE_SERVICES_MAX],
                **extra,
            )
            services += found.get("services", [])
            failures += found.get("failures", [])
        return services, failures

    def describe_service(self, name: str, step: str) -> dict[str, Any] | None:
        """The service as ECS has it now (ACTIVE, or DRAINING after a delete), None if never
        created or long gone."""
        found = self.describe_services([name], step)[0]
        for status in ("ACTIVE", "DRAINING"):
            matching = [s for s in found if s.get("status") == status]
            if matching:
                return dict(matching[0])
        return None

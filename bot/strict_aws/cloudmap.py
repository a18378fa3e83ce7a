"""AWS Cloud Map as it behaves, where moto's servicediscovery does not.

Rules (each from the page named):
- Instance changes are asynchronous operations ("RegisterInstance"/"DeregisterInstance" in the
  Cloud Map API reference: "creates or updates ... asynchronously"; ``GetOperation`` tells when
  it is done). A second ``DeregisterInstance`` while one is in progress answers
  ``DuplicateRequest`` (API reference, DeregisterInstance errors: "The operation is already in
  progress"); ECS deregisters a service's tasks itself when it stops them, so the product's own
  call can meet ECS's (notes: real-services-rules.md, Cloud Map). While the instance is still
  being registered the answer is ``ResourceInUse``.
- ``DeleteService`` of a service that still has instances answers ``ResourceInUse``
  (API reference, DeleteService: "The specified resource can't be deleted because it contains
  other resources"); moto deletes it anyway.
- ``ListInstances`` is eventually consistent (the API reference, ListInstances, and the Cloud Map
  developer guide: changes take a few seconds to appear): a new instance shows up ``list_lag``
  seconds late and a removed one stays listed as long.
- Quota: 2,000 instances per namespace (Cloud Map quotas page, "Instances per namespace";
  ``ResourceLimitExceeded``).
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.strict_aws.wire import Answer, Call, error, json_answer


@dataclass
class Operation:
    id: str
    kind: str  # REGISTER_INSTANCE | DEREGISTER_INSTANCE
    service_id: str
    instance_id: str
    started: float
    ends: float
    attributes: dict[str, str] = field(default_factory=dict)
    by_ecs: bool = False
    done: bool = False
    created_wall: float = field(default_factory=time.time)


@dataclass
class Seen:
    """A recent change of an instance, for eventual consistency of ``ListInstances``."""

    appears: float | None = None  # registered: listed from then on
    vanishes: float | None = None  # deregistered: listed until then
    attributes: dict[str, str] = field(default_factory=dict)


class CloudMap:
    def __init__(
        self,
        upstream: Callable[[str, str, dict[str, Any]], dict[str, Any]],
        clock: Callable[[], float] = time.monotonic,
        operation_time: float = 0.5,
        list_lag: float = 0.3,
        instances_per_namespace: int = 2000,
    ) -> None:
        self.upstream = upstream
        self.clock = clock
        self.operation_time = operation_time
        self.list_lag = list_lag
        self.instances_per_namespace = instances_per_namespace
        self.lock = threading.RLock()
        self._ops: dict[str, Operation] = {}
        self._seen: dict[tuple[str, str], Seen] = {}
        self._namespace_of: dict[str, str] = {}
        # instances per namespace, counted upstream at most once a second (a count per
        # registration made a tick that starts 100 tasks ask moto 10,000 times) and kept up
        # to date with the registrations the layer makes meanwhile
        self._counted: dict[str, tuple[float, int]] = {}
        self._ids = itertools.count(1)
        self.refused: list[str] = []  # every rule that refused a call, for tests

    def reset(self) -> None:
        with self.lock:
            self._ops.clear()
            self._seen.clear()
            self._namespace_of.clear()
            self._counted.clear()
            self.refused.clear()

    # -- what ECS does on its own ----------------------------------------------------------------

    def ecs_register(
        self, service_id: str, instance_id: str, attributes: dict[str, str], at: float
    ) -> str | None:
        """ECS registers a task that started; returns why it could not, or None."""
        with self.lock:
            full = self._quota_problem(service_id)
            if full:
                return full
            self._count_one(service_id)
            self.upstream(
                "servicediscovery",
                "register_instance",
                {"ServiceId": service_id, "InstanceId": instance_id, "Attributes": attributes},
            )
            op = self._operation("REGISTER_INSTANCE", service_id, instance_id, at, by_ecs=True)
            op.attributes = attributes
            self._seen[(service_id, instance_id)] = Seen(appears=at + self.list_lag)
            return None

    def ecs_deregister(self, service_id: str, instance_id: str, at: float) -> None:
        """ECS deregisters a task it stops: an operation that takes ``operation_time``."""
        with self.lock:
            if self._pending(service_id, instance_id, "DEREGISTER_INSTANCE"):
                return
            self._operation("DEREGISTER_INSTANCE", service_id, instance_id, at, by_ecs=True)

    def tick(self, now: float) -> None:
        with self.lock:
            for op in list(self._ops.values()):
                if op.done or op.ends > now:
                    continue
                op.done = True
                if op.kind == "DEREGISTER_INSTANCE":
                    attributes = self._attributes(op.service_id, op.instance_id)
                    with contextlib.suppress(Exception):  # gone with its service
                        self.upstream(
                            "servicediscovery",
                            "deregister_instance",
                            {"ServiceId": op.service_id, "InstanceId": op.instance_id},
                        )
                    self._seen[(op.service_id, op.instance_id)] = Seen(
                        vanishes=op.ends + self.list_lag, attributes=attributes
                    )

    # -- the API -----------------------------------------------------------------------------

    def before(self, call: Call) -> Answer | None:
        with self.lock:
            p = call.params
            if call.action == "RegisterInstance":
                full = self._quota_problem(p.get("ServiceId", ""))
                if full:
                    return self._refuse(call, "ResourceLimitExceeded", full)
                return None
            if call.action == "DeregisterInstance":
                service_id, instance_id = p.get("ServiceId", ""), p.get("InstanceId", "")
                if self._pending(service_id, instance_id, "DEREGISTER_INSTANCE"):
                    return self._refuse(
                        call,
                        "DuplicateRequest",
                        f"Another operation of type DeregisterInstance on instance "
                        f"{instance_id} is in progress",
                    )
                if self._pending(service_id, instance_id, "REGISTER_INSTANCE"):
                    return self._refuse(
                        call,
                        "ResourceInUse",
                        f"The instance {instance_id} is being registered; try again later",
                    )
                listed = self._upstream_instances(service_id)
                if listed is None:
                    return None  # moto answers ServiceNotFound
                if instance_id not in listed:
                    return self._refuse(
                        call, "InstanceNotFound", f"No instance found with ID {instance_id}"
                    )
                op = self._operation(
                    "DEREGISTER_INSTANCE", service_id, instance_id, self.clock(), by_ecs=False
                )
                return json_answer({"OperationId": op.id})
            if call.action == "DeleteService":
                service_id = p.get("Id", "")
                listed = self._upstream_instances(service_id)
                pending = [
                    op for op in self._ops.values() if op.service_id == service_id and not op.done
                ]
                if listed or pending:
                    return self._refuse(
                        call,
                        "ResourceInUse",
                        f"Service {service_id} has {len(listed or [])} registered instance(s)"
                        f"{' and operations in progress' if pending else ''}: deregister them "
                        "before deleting the service",
                    )
                return None
            if call.action == "GetOperation":
                known = self._ops.get(p.get("OperationId", ""))
                if known is None:
                    return None
                now = self.clock()
                status = "SUCCESS" if known.done or known.ends <= now else "PENDING"
                return json_answer(
                    {
                        "Operation": {
                            "Id": known.id,
                            "Type": known.kind,
                            "Status": status,
                            "CreateDate": known.created_wall,
                            "UpdateDate": time.time(),
                            "Targets": {
                                "INSTANCE": known.instance_id,
                                "SERVICE": known.service_id,
                            },
                        }
                    }
                )
            return None

    def after(self, call: Call, answer: Answer) -> Answer:
        if answer.status != 200:
            return answer
        with self.lock:
            now = self.clock()
            p = call.params
            if call.action == "RegisterInstance":
                self._seen[(p.get("ServiceId", ""), p.get("InstanceId", ""))] = Seen(
                    appears=now + self.list_lag
                )
                self._count_one(p.get("ServiceId", ""))
                return answer
            if call.action != "ListInstances":
                return answer
            service_id = p.get("ServiceId", "")
            data = answer.json()
            instances = []
            listed = set()
            for inst in data.get("Instances", []):
                seen = self._seen.get((service_id, inst["Id"]))
                if seen is not None and seen.appears is not None and seen.appears > now:
                    continue  # not visible yet
                instances.append(inst)
                listed.add(inst["Id"])
            for (sid, iid), seen in self._seen.items():
                if sid == service_id and iid not in listed and (seen.vanishes or 0) > now:
                    instances.append({"Id": iid, "Attributes": seen.attributes})
            data["Instances"] = instances
            return json_answer(data)

    # -- helpers -----------------------------------------------------------------------------

    def _refuse(self, call: Call, code: str, message: str) -> Answer:
        self.refused.append(f"{call.action}: {code}")
        return error(call, code, message)

    def _operation(
        self, kind: str, service_id: str, instance_id: str, at: float, by_ecs: bool
    ) -> Operation:
        op = Operation(
            id=f"{uuid.uuid4().hex[:32]}-{next(self._ids):08d}",
            kind=kind,
            service_id=service_id,
            instance_id=instance_id,
            started=at,
            ends=at + self.operation_time,
            by_ecs=by_ecs,
        )
        self._ops[op.id] = op
        return op

    def _pending(self, service_id: str, instance_id: str, kind: str) -> bool:
        now = self.clock()
        return any(
            op.kind == kind
            and op.service_id == service_id
            and op.instance_id == instance_id
            and not op.done
            and op.ends > now
            for op in self._ops.values()
        )

    def _upstream_instances(self, service_id: str) -> dict[str, dict[str, str]] | None:
        try:
            found = self.upstream("servicediscovery", "list_instances", {"ServiceId": service_id})
        except Exception:
            return None
        return {i["Id"]: i.get("Attributes", {}) for i in found.get("Instances", [])}

    def _attributes(self, service_id: str, instance_id: str) -> dict[str, str]:
        return (self._upstream_instances(service_id) or {}).get(instance_id, {})

    def _count_one(self, service_id: str) -> None:
        namespace = self._namespace_of.get(service_id)
        if namespace in self._counted:
            at, count = self._counted[namespace]
            self._counted[namespace] = (at, count + 1)

    def _quota_problem(self, service_id: str) -> str | None:
        namespace = self._namespace_of.get(service_id)
        if namespace is None:
            try:
                namespace = self.upstream("servicediscovery", "get_service", {"Id": service_id})[
                    "Service"
                ]["NamespaceId"]
            except Exception:
                return None
            self._namespace_of[service_id] = namespace
        at, count = self._counted.get(namespace, (float("-inf"), 0))
        if time.monotonic() - at > 1.0:
            services = self.upstream(
                "servicediscovery",
                "list_services",
                {"Filters": [{"Name": "NAMESPACE_ID", "Values": [namespace], "Condition": "EQ"}]},
            )["Services"]
            count = 0
            for svc in services:
                if svc.get("NamespaceId", namespace) == namespace:  # moto ignores Filters
                    count += len(self._upstream_instances(svc["Id"]) or {})
            self._counted[namespace] = (time.monotonic(), count)
        if count >= self.instances_per_namespace:
            return (
                f"The namespace {namespace} already has {count} instances: the quota is "
                f"{self.instances_per_namespace} instances per namespace"
            )
        return None

"""Teardown: everything of an environment removed, what is gone already said, not an error."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bot.config import AppConfig
from bot.engine.base import EngineBase, EngineError, Reporter, aws_step, call, noop
from bot.naming import ecs_service_name, service_label, task_family

CLOUD_MAP_BUSY = ("DuplicateRequest", "ResourceInUse")


class Teardown(EngineBase):
    def stop(
        self, app: AppConfig, env: str, report: Reporter = noop, extra_services: Iterable[str] = ()
    ) -> list[str]:
        """Remove everything of the environment; what is already gone is said, not an error.

        Returns the lines of what was done.
        """
        ns_id, _ = self.namespace()
        done: list[str] = []
        names = list(dict.fromkeys([s.name for s in app.services] + list(extra_services)))
        known = self.cloud_map_services(ns_id, "listing Cloud Map services")
        for svc in names:
            done.append(self.stop_ecs_service(ecs_service_name(env, svc), report))
            cm_name = service_label(env, svc)
            done.append(self.delete_cloud_map_service(cm_name, known.get(cm_name), report))
            done.append(self.deregister_task_definitions(task_family(env, svc), report))
        return done

    def stop_ecs_service(self, name: str, report: Reporter) -> str:
        step = f"deleting ECS service {name}"
        existing = self.describe_service(name, step)
        if existing is None:
            line = f"ECS service {name} was already gone"
        else:
            if existing.get("desiredCount", 0) > 0:
                call(
                    f"scaling ECS service {name} to zero",
                    self.aws.ecs.update_service,
                    cluster=self.settings.cluster,
                    service=name,
                    desiredCount=0,
                )
            gone = ("ServiceNotFoundException", "ServiceNotActiveException")
            with aws_step(step, ok_codes=gone) as refused:
                self.aws.ecs.delete_service(cluster=self.settings.cluster, service=name, force=True)
            line = (
                f"ECS service {name} was already gone"
                if refused.code
                else f"deleted ECS service {name}"
            )
        report(step, line)
        return line

    def delete_cloud_map_service(
        self, name: str, existing: dict[str, Any] | None, report: Reporter
    ) -> str:
        """Deregister the service's instances, wait until Cloud Map lists none, then delete it.

        ECS deregisters a deleted service's tasks itself, so our own ``DeregisterInstance``
        may meet its operation (``DuplicateRequest``, or ``ResourceInUse``): that instance is on
        its way out, we wait for it. Instance lists are eventually consistent, and
        ``DeleteService`` refuses (``ResourceInUse``) while any instance is left."""
        step = f"deleting Cloud Map service {name}"
        if existing is None:
            line = f"Cloud Map service {name} was already gone"
            report(step, line)
            return line
        sd = self.aws.servicediscovery
        start = self.monotonic()
        delay = max(min(self.settings.poll_interval, 1.0), 0.1)
        asked: set[str] = set()
        count = 0
        said = False
        while True:
            instances = self._instances(existing["Id"], step)
            if instances is None:  # the service is gone already
                line = f"Cloud Map service {name} was already gone"
                report(step, line)
                return line
            count = max(count, len(instances))
            if not instances:
                break
            for inst in instances:
                if inst in asked:
                    continue
                with aws_step(step, ok_codes=("InstanceNotFound", *CLOUD_MAP_BUSY)):
                    sd.deregister_instance(ServiceId=existing["Id"], InstanceId=inst)
                asked.add(inst)
            if not said:
                report(step, f"waiting for {len(instances)} instance(s) of {name} to deregister")
                said = True
            if self.monotonic() - start >= self.settings.drain_timeout:
                raise EngineError(
                    step,
                    f"{len(instances)} instance(s) still registered after "
                    f"{self.settings.drain_timeout:g}s (drain_timeout): {', '.join(instances)}",
                )
            self.sleep(delay)
            delay = min(delay * 2, 10.0)
        while True:
            # Deregistration is asynchronous on AWS: the service stays in use a little while.
            late = self.monotonic() - start >= self.settings.drain_timeout
            in_use = () if late else ("ResourceInUse",)
            with aws_step(step, ok_codes=("ServiceNotFound", *in_use)) as refused:
                sd.delete_service(Id=existing["Id"])
            if refused.code != "ResourceInUse":
                break
            self.sleep(delay)
            delay = min(delay * 2, 10.0)
        line = f"deleted Cloud Map service {name}" + (
            f" after {count} instance(s) were deregistered" if count else ""
        )
        report(step, line)
        return line

    def _instances(self, service_id: str, step: str) -> list[str] | None:
        """Ids of the Cloud Map service's instances; None when the service is gone."""
        found: list[str] = []
        with aws_step(step, ok_codes=("ServiceNotFound",)) as refused:
            for page in self.aws.servicediscovery.get_paginator("list_instances").paginate(
                ServiceId=service_id
            ):
                found += [i["Id"] for i in page["Instances"]]
        return None if refused.code else found

    def deregister_task_definitions(self, family: str, report: Reporter) -> str:
        step = f"deregistering task definitions {family}"
        arns: list[str] = []
        paginator = self.aws.ecs.get_paginator("list_task_definitions")
        with aws_step(step):
            for page in paginator.paginate(familyPrefix=family, status="ACTIVE"):
                # familyPrefix is a prefix: keep exact family matches only.
                arns += [
                    a
                    for a in page["taskDefinitionArns"]
                    if a.rsplit("/", 1)[-1].rsplit(":", 1)[0] == family
                ]
        for arn in arns:
            call(step, self.aws.ecs.deregister_task_definition, taskDefinition=arn)
        line = (
            f"deregistered {len(arns)} revision(s) of {family}"
            if arns
            else f"task definitions of {family} were already gone"
        )
        report(step, line)
        return line

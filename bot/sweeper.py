"""The orphan sweeper: compares what is in AWS with the store.

It looks at ECS services in the cluster, Cloud Map services in the namespace and task-definition
families named ``revieee-*``, and only at those tagged ``revieee:env`` (what revieee creates);
anything else is never reported or touched, whatever its name. A tagged resource whose
environment is not active in the store is an *orphan*: recorded, reported once (the admin
channel's Delete button) or deleted at once with ``sweep_delete``. A running environment whose
ECS service is gone is marked failed (*vanished*) so its owner can be told.

Calls stay few: ECS services are listed and described ten at a time with their tags; Cloud Map
services and task-definition families are listed once and only candidates (names that belong to
no active environment) have their tags read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from bot.aws import AwsClients, describe_error, error_code
from bot.config import Settings
from bot.engine import Engine, EngineError, aws_step
from bot.naming import ecs_service_name
from bot.store import Store

log = logging.getLogger("revieee.sweeper")

ENV_TAG = "revieee:env"
FAMILY_PREFIX = "revieee-"
KINDS = {
    "ecs-service": "ECS service",
    "cloud-map-service": "Cloud Map service",
    "task-definition": "task-definition family",
}


@dataclass(frozen=True)
class Orphan:
    id: str  # the ECS service's ARN, the Cloud Map service's id, the family's latest ARN
    kind: str  # ecs-service, cloud-map-service, task-definition
    name: str
    env: str
    app: str | None = None


@dataclass
class SweepResult:
    orphans: list[Orphan] = field(default_factory=list)  # all found by this sweep
    new: list[Orphan] = field(default_factory=list)  # not reported before
    deleted: list[str] = field(default_factory=list)  # with sweep_delete
    vanished: list[dict[str, Any]] = field(default_factory=list)  # envs newly marked failed
    errors: list[str] = field(default_factory=list)


def _tags(items: list[dict[str, str]] | None) -> dict[str, str]:
    """ECS (key/value) and Cloud Map (Key/Value) tags as a dict."""
    out = {}
    for tag in items or []:
        key = tag.get("key", tag.get("Key"))
        if key is not None:
            out[key] = tag.get("value", tag.get("Value", ""))
    return out


class Sweeper:
    def __init__(
        self,
        aws: AwsClients,
        settings: Settings,
        store: Store,
        engine: Engine,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.aws = aws
        self.settings = settings
        self.store = store
        self.engine = engine
        self.clock = clock

    # -- the sweep -----------------------------------------------------------------------------

    def sweep(self) -> SweepResult:
        result = SweepResult()
        active = {row["name"]: row for row in self.store.lifecycle_envs()}
        live_ecs = self._ecs(active, result)
        self._cloud_map(active, result)
        self._families(active, result)
        seen = {o.id for o in result.orphans}
        for known in self.store.orphans():
            if known["id"] not in seen and not result.errors:
                # gone (deleted by hand) or adopted again: no longer an orphan
                self.store.update_orphan(known["id"], deleted_at=self.clock().isoformat())
        for orphan in result.orphans:
            if self.store.record_orphan(
                id=orphan.id, kind=orphan.kind, name=orphan.name, env=orphan.env, app=orphan.app
            ):
                result.new.append(orphan)
        if self.settings.sweep_delete:
            for orphan in result.orphans:
                result.deleted.append(self.delete(orphan.id))
        if live_ecs is not None:
            self._vanished(active, live_ecs, result)
        log.info(
            "sweep done orphans=%d new=%d deleted=%d vanished=%d errors=%d",
            len(result.orphans),
            len(result.new),
            len(result.deleted),
            len(result.vanished),
            len(result.errors),
        )
        return result

    def _ecs(self, active: dict[str, Any], result: SweepResult) -> set[str] | None:
        """Orphaned ECS services; returns the names of the ACTIVE ones (None if unknown)."""
        ecs = self.aws.ecs
        live: set[str] = set()
        try:
            arns: list[str] = []
            for page in ecs.get_paginator("list_services").paginate(cluster=self.settings.cluster):
                arns += page["serviceArns"]
            for i in range(0, len(arns), 10):
                described = ecs.describe_services(
                    cluster=self.settings.cluster, services=arns[i : i + 10], include=["TAGS"]
                )
                for svc in described["services"]:
                    if svc.get("status") != "ACTIVE":
                        continue
                    live.add(svc["serviceName"])
                    tags = _tags(svc.get("tags"))
                    env = tags.get(ENV_TAG)
                    if env and env not in active:
                        result.orphans.append(
                            Orphan(
                                svc["serviceArn"],
                                "ecs-service",
                                svc["serviceName"],
                                env,
                                tags.get("revieee:app"),
                            )
                        )
        except (ClientError, BotoCoreError) as exc:
            result.errors.append(f"listing ECS services: {describe_error(exc)}")
            return None
        return live

    def _cloud_map(self, active: dict[str, Any], result: SweepResult) -> None:
        sd = self.aws.servicediscovery
        try:
            ns_id, _ = self.engine.namespace()
            services = self.engine.cloud_map_services(ns_id, "listing Cloud Map services")
        except EngineError as exc:
            result.errors.append(str(exc))
            return
        for name, svc in sorted(services.items()):
            env = name.split(".", 1)[1] if "." in name else name
            if env in active:
                continue  # an active environment's: no need to read its tags
            try:
                tags = _tags(sd.list_tags_for_resource(ResourceARN=svc["Arn"])["Tags"])
            except (ClientError, BotoCoreError) as exc:
                result.errors.append(f"reading tags of Cloud Map service {name}: {exc}")
                continue
            owner = tags.get(ENV_TAG)
            if owner and owner not in active:
                result.orphans.append(
                    Orphan(svc["Id"], "cloud-map-service", name, owner, tags.get("revieee:app"))
                )

    def _families(self, active: dict[str, Any], result: SweepResult) -> None:
        ecs = self.aws.ecs
        try:
            families: list[str] = []
            paginator = ecs.get_paginator("list_task_definition_families")
            for page in paginator.paginate(familyPrefix=FAMILY_PREFIX, status="ACTIVE"):
                families += page["families"]
        except (ClientError, BotoCoreError) as exc:
            result.errors.append(f"listing task-definition families: {describe_error(exc)}")
            return
        for family in families:
            env = family.removeprefix(FAMILY_PREFIX).rsplit("-", 1)[0]
            if env in active:
                continue
            try:
                described = ecs.describe_task_definition(taskDefinition=family, include=["TAGS"])
            except ClientError as exc:
                if error_code(exc) in ("ClientException", "InvalidParameterException"):
                    continue  # no active revision left
                result.errors.append(f"reading task definition {family}: {describe_error(exc)}")
                continue
            except BotoCoreError as exc:
                result.errors.append(f"reading task definition {family}: {describe_error(exc)}")
                continue
            if described["taskDefinition"].get("status", "ACTIVE") != "ACTIVE":
                continue  # moto lists families whose revisions are all inactive; AWS does not
            tags = _tags(described.get("tags"))
            owner = tags.get(ENV_TAG)
            if owner and owner not in active:
                arn = described["taskDefinition"]["taskDefinitionArn"]
                result.orphans.append(
                    Orphan(arn, "task-definition", family, owner, tags.get("revieee:app"))
                )

    def _vanished(self, active: dict[str, Any], live: set[str], result: SweepResult) -> None:
        busy = self.store.busy_envs()
        for name, row in active.items():
            app = self.settings.apps.get(row["app"])
            if row["status"] != "running" or app is None or name in busy:
                continue
            missing = [
                ecs_service_name(name, s.name)
                for s in app.services
                if ecs_service_name(name, s.name) not in live
            ]
            if not missing:
                continue
            error = (
                f"its ECS service {', '.join(missing)} vanished from cluster "
                f"{self.settings.cluster} (found by the sweeper)"
            )
            self.store.upsert_env(name, status="failed", error=error)
            self.store.set_usage(name, None)
            self.store.audit("vanished", None, name, "scheduler", services=missing)
            result.vanished.append({**row, "status": "failed", "error": error})

    # -- deleting one (the Delete button, or sweep_delete) -------------------------------------

    def delete(self, orphan_id: str, actor: str | None = None) -> str:
        """Delete one recorded orphan after checking again that it carries revieee's tag and
        that its environment is still not active. Returns what was done, in a line."""
        rows = [o for o in self.store.orphans() if o["id"] == orphan_id]
        if not rows:
            return "that resource is not a known orphan (deleted already?)"
        row = rows[0]
        label = f"{KINDS.get(row['kind'], row['kind'])} {row['name']}"
        env = self.store.get_env(row["env"])
        if env is not None and env["status"] != "stopped":
            self.store.update_orphan(orphan_id, deleted_at=None, error="its environment is active")
            return f"kept {label}: its environment {row['env']} is active again"
        lines: list[str] = []

        def report(step: str, message: str) -> None:
            lines.append(message)

        try:
            tags = self._current_tags(row)
            if tags is None:
                line = f"{label} was already gone"
            elif tags.get(ENV_TAG) != row["env"]:
                self.store.update_orphan(orphan_id, error="its revieee:env tag changed")
                return f"kept {label}: it no longer carries revieee:env={row['env']}"
            else:
                if row["kind"] == "ecs-service":
                    self.engine.stop_ecs_service(row["name"], report)
                elif row["kind"] == "cloud-map-service":
                    self.engine.delete_cloud_map_service(row["name"], {"Id": row["id"]}, report)
                else:
                    self.engine.deregister_task_definitions(row["name"], report)
                line = "; ".join(lines) or f"deleted {label}"
        except EngineError as exc:
            self.store.update_orphan(orphan_id, error=str(exc))
            return f"could not delete {label}: {exc}"
        self.store.update_orphan(orphan_id, deleted_at=self.clock().isoformat(), error=None)
        self.store.audit(
            "orphan deleted", actor, row["env"], "scheduler", kind=row["kind"], name=row["name"]
        )
        return line

    def _current_tags(self, row: dict[str, Any]) -> dict[str, str] | None:
        """The resource's tags now; None when it no longer exists."""
        ecs, sd = self.aws.ecs, self.aws.servicediscovery
        step = f"checking {row['name']}"
        gone = ("ServiceNotFound", "ClientException", "ResourceNotFoundException")
        with aws_step(step, ok_codes=gone):
            if row["kind"] == "ecs-service":
                found = ecs.describe_services(
                    cluster=self.settings.cluster, services=[row["name"]], include=["TAGS"]
                )["services"]
                found = [s for s in found if s.get("status") == "ACTIVE"]
                return _tags(found[0].get("tags")) if found else None
            if row["kind"] == "cloud-map-service":
                arn = sd.get_service(Id=row["id"])["Service"]["Arn"]
                return _tags(sd.list_tags_for_resource(ResourceARN=arn)["Tags"])
            described = ecs.describe_task_definition(taskDefinition=row["name"], include=["TAGS"])
            if described["taskDefinition"].get("status", "ACTIVE") != "ACTIVE":
                return None
            return _tags(described.get("tags"))
        return None  # one of ``gone``: it no longer exists

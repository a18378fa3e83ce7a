"""Preflight: what is missing in AWS for the configuration to work (``revieee check``)."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from bot.aws import describe_error, error_code
from bot.engine.base import EngineBase, EngineError


class Preflight(EngineBase):
    def check(self) -> list[str]:
        """What is missing in AWS for the configuration to work (empty when all is there)."""
        problems: list[str] = []
        s = self.settings
        try:
            clusters = self.aws.ecs.describe_clusters(clusters=[s.cluster])["clusters"]
            if not any(c.get("status") == "ACTIVE" for c in clusters):
                problems.append(
                    f"cluster: ECS cluster {s.cluster!r} does not exist or is not active"
                )
        except ClientError as exc:
            hint = (
                " (revieee's role may describe only its stack's cluster: is the name right?)"
                if error_code(exc) in ("AccessDeniedException", "AccessDenied")
                else ""
            )
            problems.append(
                f"cluster: ECS cluster {s.cluster!r} cannot be described: "
                f"{describe_error(exc)}{hint}"
            )
        except BotoCoreError as exc:
            problems.append(f"cluster: cannot describe {s.cluster!r}: {describe_error(exc)}")
        try:
            self.namespace()
        except EngineError as exc:
            problems.append(f"namespace: Cloud Map namespace {s.namespace!r}: {exc.message}")
        problems += self._check_ids(
            "subnets", s.subnets, "describe_subnets", "SubnetIds", "Subnets", "SubnetId"
        )
        problems += self._check_ids(
            "security_groups",
            s.security_groups,
            "describe_security_groups",
            "GroupIds",
            "SecurityGroups",
            "GroupId",
        )
        for app in s.apps.values():
            for svc in app.services:
                key = f"apps.{app.name}.services.{svc.name}"
                try:
                    td = self.aws.ecs.describe_task_definition(taskDefinition=svc.task_definition)[
                        "taskDefinition"
                    ]
                    names = [c["name"] for c in td["containerDefinitions"]]
                    if td.get("status", "ACTIVE") != "ACTIVE":
                        problems.append(
                            f"{key}.task_definition: template "
                            f"{svc.task_definition!r} has no active revision"
                        )
                    elif svc.container not in names:
                        problems.append(
                            f"{key}.container: template {svc.task_definition} has "
                            f"no container {svc.container!r} (it has: "
                            f"{', '.join(names)})"
                        )
                    for task in app.tasks:
                        wanted = task.container or svc.container
                        if task.service == svc.name and wanted not in names:
                            problems.append(
                                f"apps.{app.name}.tasks.{task.name}.container: template "
                                f"{svc.task_definition} has no container {wanted!r} (it "
                                f"has: {', '.join(names)})"
                            )
                except (ClientError, BotoCoreError) as exc:
                    problems.append(
                        f"{key}.task_definition: template "
                        f"{svc.task_definition!r} not found ({describe_error(exc)})"
                    )
                if svc.ecr_repository:
                    try:
                        self.aws.ecr.describe_repositories(repositoryNames=[svc.ecr_repository])
                    except (ClientError, BotoCoreError) as exc:
                        problems.append(
                            f"{key}.ecr_repository: {svc.ecr_repository!r} not "
                            f"found ({describe_error(exc)})"
                        )
                if svc.codebuild_project:
                    try:
                        found = self.aws.codebuild.batch_get_projects(names=[svc.codebuild_project])
                        if not found.get("projects"):
                            problems.append(
                                f"{key}.codebuild_project: CodeBuild project "
                                f"{svc.codebuild_project!r} does not exist"
                            )
                    except (ClientError, BotoCoreError) as exc:
                        problems.append(
                            f"{key}.codebuild_project: cannot describe "
                            f"{svc.codebuild_project!r} ({describe_error(exc)})"
                        )
        return problems

    def _check_ids(
        self, key: str, ids: tuple[str, ...], method: str, arg: str, field: str, id_field: str
    ) -> list[str]:
        try:
            found = getattr(self.aws.ec2, method)(**{arg: list(ids)})[field]
            missing = set(ids) - {item[id_field] for item in found}
        except ClientError as exc:
            # A missing id fails the whole call: say which ones by asking one at a time.
            missing = set()
            for one in ids:
                try:
                    getattr(self.aws.ec2, method)(**{arg: [one]})
                except ClientError:
                    missing.add(one)
            if not missing:
                return [f"{key}: cannot describe: {describe_error(exc)}"]
        except BotoCoreError as exc:
            return [f"{key}: cannot describe: {describe_error(exc)}"]
        return [f"{key}: {i} does not exist" for i in sorted(missing)]

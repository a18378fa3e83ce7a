"""What the engine takes and gives: which environment, what each service will run, what was
deployed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from bot.config import AppConfig


class CommitResolver(Protocol):
    """Turns (repository, branch) into the branch's head commit; None when there is no branch.
    Whatever else it raises fails the deploy's step, with its message."""

    def resolve(self, repository: str, branch: str) -> str | None: ...


@dataclass(frozen=True)
class EnvSpec:
    """Which environment: the app, its name, the requested branch, its public URL and its
    own settings (KEY -> value: over the configured environment variables, bot/envsettings.py)."""

    app: AppConfig
    env: str
    branch: str
    url: str
    settings: Mapping[str, str] = field(default_factory=dict)
    variables: Mapping[str, str] = field(default_factory=dict)  # revieee's (REVIEEE_OAUTH_KEY...)


@dataclass(frozen=True)
class ServicePlan:
    """What one service of an environment will run."""

    service: str
    branch: str
    sha: str | None
    image: str  # ``uri@digest`` (ECR), the reference (other registries), ``uri`` if pending
    tag: str | None
    fallback: bool
    source: str = "existing"  # where the image comes from: existing, wait, codebuild
    pending: bool = False  # not in ECR yet: to be built (codebuild) or waited for (wait)

    @property
    def short_image(self) -> str:
        """``repository:tag`` when the image came from ECR, else the image reference."""
        if self.tag is None:
            return self.image
        return f"{self.image.split('@')[0].rsplit('/', 1)[-1]}:{self.tag}"

    def describe(self) -> str:
        commit = f"@{self.sha[:7]}" if self.sha else ""
        note = " (fallback: the repository has no such branch)" if self.fallback else ""
        if self.pending:
            note += (
                " (not in ECR yet: building it with CodeBuild)"
                if self.source == "codebuild"
                else " (not in ECR yet: waiting for it to be pushed)"
            )
        elif self.source == "codebuild":
            note += " (image cached: no build needed)"
        return f"{self.service}: {self.branch}{commit} -> {self.short_image}{note}"


@dataclass(frozen=True)
class ServiceState:
    """The AWS resources of one deployed service."""

    service: str
    ecs_service: str
    cloud_map_service: str
    cloud_map_id: str
    task_definition: str
    host: str
    cpu: int = 0  # CPU units (1024 = 1 vCPU) and MiB of the task definition, for the cost
    memory: int = 0


def revision(arn: str) -> str:
    """``family:N`` of a task definition ARN."""
    return arn.rsplit("/", 1)[-1]


def plans_to_json(plans: list[ServicePlan]) -> list[dict[str, Any]]:
    return [asdict(p) for p in plans]


def states_to_json(states: list[ServiceState]) -> list[dict[str, Any]]:
    return [asdict(s) for s in states]

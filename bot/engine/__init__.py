"""The environment engine: a branch becomes ECS services registered in Cloud Map.

A deploy is an explicit sequence of idempotent steps (so an interrupted one can simply be run
again): plan images -> register task definitions -> ensure Cloud Map services -> create or update
ECS services -> wait until stable. Stop undoes it. Every step reports what it does through a
``report(step, message)`` callback (its phase is the caller's); every failure is an
:class:`EngineError` naming the step, translated from AWS's errors in one place
(:func:`~bot.engine.base.aws_step`).

One module per job, each a part of :class:`Engine`:

- ``base``: the error type, ``aws_step``, the namespace and service lookups;
- ``model``: what goes in and out (``EnvSpec``, ``ServicePlan``, ``ServiceState``);
- ``plan``: which commit and image each service runs;
- ``images``: images still to come (CodeBuild builds, waiting for CI);
- ``hygiene``: the images stops leave behind, and untagged ones, deleted;
- ``deploy``: task definitions, Cloud Map and ECS services; scaling;
- ``rollout``: waiting until stable, explaining a failed rollout, live status;
- ``tasks``: one-off tasks (RunTask) from an environment's task definition, and their result;
- ``teardown``: stopping an environment;
- ``preflight``: ``revieee check``.

The engine knows AWS and the configuration, nothing about Slack, GitHub or the store (the image
builder records its builds in the store). Other modules use what this package exports.
"""

from __future__ import annotations

from bot.engine.base import EngineError, ImageMissing, Reporter, aws_step, call, noop
from bot.engine.deploy import TASK_DEF_FIELDS, Deploying, fargate_problem
from bot.engine.model import (
    CommitResolver,
    EnvSpec,
    ServicePlan,
    ServiceState,
    plans_to_json,
    revision,
    states_to_json,
)
from bot.engine.plan import Planning
from bot.engine.preflight import Preflight
from bot.engine.rollout import Rollout
from bot.engine.tasks import OneOffTasks, TaskResult
from bot.engine.teardown import Teardown

__all__ = [
    "TASK_DEF_FIELDS",
    "CommitResolver",
    "Engine",
    "EngineError",
    "EnvSpec",
    "ImageMissing",
    "Reporter",
    "ServicePlan",
    "ServiceState",
    "TaskResult",
    "aws_step",
    "call",
    "fargate_problem",
    "noop",
    "plans_to_json",
    "revision",
    "states_to_json",
]


class Engine(Planning, Deploying, Rollout, OneOffTasks, Teardown, Preflight):
    """Deploys, waits for, describes and stops environments on ECS + Cloud Map."""

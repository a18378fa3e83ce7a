"""Shared fixtures: the strict AWS (moto's server behind bot/strict_aws, with the stack's task
role decided by a real IAM evaluator; one per test session, reset per test), a seeded sandbox,
temp SQLite files, and a wired runtime. Nothing here patches boto3 or our own code.

``aws`` are revieee's own clients: every call they make is authorized against
``RevieeeTaskRole`` in deploy/cloudformation.yml, and a test that leaves a denied call behind
fails with the statement that is missing. ``admin`` are the operator's clients (seeding,
looking at the result): the layer's rules apply to them, IAM does not."""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from bot.app import Runtime, build
from bot.aws import AwsClients, build_clients
from bot.config import Secrets, Settings, settings_from_mapping
from bot.sandbox import (
    Seeded,
    StrictSandbox,
    config_toml,
    patched_environ,
    sandbox_config,
    sandbox_settings,
    seed,
)
from bot.strict_aws import Rules, StrictAws
from bot.strict_aws.iam import NodeEvaluator, RoleAuthorizer
from tests.fake_slack import FakeSlack
from tests.slack_rig import PROXY_SECRET, SlackRig, start_rig
from tests.strict_aws import ensure_evaluator
from tests.strict_aws.stack import ROLE_ARN, Stack

# Simulated AWS times in tests are short; realistic ones (30-60 s) belong in bench/.
TEST_RULES = Rules(task_start=0.6, pull_failure=0.2, drain=1.0, cloud_map_operation=0.3)


@pytest.fixture(autouse=True)
def no_outside_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own tokens or settings never reach a test (nor GitHub or Slack)."""
    import os

    for name in list(os.environ):
        if name.startswith(("SLACK_", "GITHUB_", "REVIEEE_")) and name != "REVIEEE_UPDATE_GOLDEN":
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def authorizer() -> Iterator[RoleAuthorizer]:
    evaluator = NodeEvaluator(ensure_evaluator())
    # Policies are set per test (they name the seeded namespace); upstream once the box runs.
    auth = RoleAuthorizer(ROLE_ARN, [], evaluator, upstream=lambda *a: {})
    yield auth
    evaluator.close()


@pytest.fixture(scope="session")
def moto_server(authorizer: RoleAuthorizer) -> Iterator[StrictSandbox]:
    box = StrictSandbox(TEST_RULES, authorizer).start()
    assert box.strict is not None
    authorizer.builder.upstream = box.strict._upstream
    with patched_environ(box.environ()):
        yield box
    box.stop()


@functools.cache
def role_session() -> boto3.session.Session:
    """revieee's role's boto3 session (its credentials are the sandbox's environment), one for
    the test session: fresh clients for each test, but the service models loaded once."""
    return boto3.session.Session()


@pytest.fixture
def strict(moto_server: StrictSandbox) -> StrictAws:
    """The strict layer itself: its models, rules, counters and IAM denials."""
    assert moto_server.strict is not None
    return moto_server.strict


@pytest.fixture
def aws(
    moto_server: StrictSandbox, strict: StrictAws, request: pytest.FixtureRequest
) -> Iterator[AwsClients]:
    moto_server.reset()
    strict.ecs.drain = TEST_RULES.drain  # a test may have changed them
    strict.ecs.task_start = TEST_RULES.task_start
    yield build_clients("standard", 3, session=role_session())
    if strict.denials and not request.node.get_closest_marker("denials"):
        lines = "\n".join(f"  {d}" for d in strict.denials)
        pytest.fail(f"IAM denied revieee's role {len(strict.denials)} call(s):\n{lines}")


@pytest.fixture
def admin(aws: AwsClients, moto_server: StrictSandbox) -> AwsClients:
    """The operator's clients: seeding and inspection, no IAM, no throttling."""
    return moto_server.admin_clients()


@pytest.fixture
def stack_parameters() -> dict[str, str]:
    """Parameters of the sandbox's stack, as an operator would set them for the sandbox's apps
    (override in a test module to change the role)."""
    return {
        "EcrRepositoryArns": "arn:aws:ecr:us-east-1:123456789012:repository/shop-*",
        "CodeBuildProjectArns": "arn:aws:codebuild:us-east-1:123456789012:project/shop-*",
    }


@pytest.fixture
def seeded(
    admin: AwsClients, authorizer: RoleAuthorizer, stack_parameters: dict[str, str]
) -> Seeded:
    box = seed(admin)
    authorizer.policies = Stack(box.namespace_id, stack_parameters).role_policies()
    return box


@pytest.fixture
def settings(seeded: Seeded, tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    return sandbox_settings(seeded, str(tmp_path / "revieee.db"))


@pytest.fixture
def runtime(settings: Settings, aws: AwsClients) -> Iterator[Runtime]:
    rt = build(settings, clients=aws)
    yield rt
    rt.close()


WriteConfig = Callable[..., Path]


@pytest.fixture
def write_config(seeded: Seeded, tmp_path: Path) -> WriteConfig:
    """Write the sandbox's configuration as a real revieee.toml (database in tmp_path)."""

    def write(**overrides: object) -> Path:
        data = sandbox_config(seeded, str(tmp_path / "revieee.db"), **overrides)
        path = tmp_path / "revieee.toml"
        path.write_text(config_toml(data))
        tomllib.loads(path.read_text())  # the fixture's own check that it wrote valid TOML
        return path

    return write


# -- Slack: the fake Web API and a running server over it ---------------------------------------

MakeRig = Callable[..., SlackRig]


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    server = FakeSlack()
    yield server
    server.close()


@pytest.fixture
def make_rig(seeded: Seeded, aws: AwsClients, fake: FakeSlack, tmp_path: Any) -> Iterator[MakeRig]:
    """Start revieee's server on the sandbox with the fake Slack; ``app`` changes the shop app's
    table, other keywords the global settings."""
    rigs: list[SlackRig] = []

    def make(
        app: dict[str, Any] | None = None, clients: AwsClients | None = None, **overrides: Any
    ) -> SlackRig:
        config = sandbox_config(seeded, str(tmp_path / "revieee.db"), **overrides)
        config["apps"]["shop"].update(app or {})
        settings: Settings = settings_from_mapping(config, environ={})
        # the proxy's secret, as serve has it: environments get their OAuth keys (bot/broker.py)
        secrets = Secrets.from_environ({"REVIEEE_PROXY_SECRET": PROXY_SECRET})
        rig = start_rig(build(settings, secrets, clients=clients or aws), fake)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()

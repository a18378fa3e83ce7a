"""Shared fixtures: moto's server over HTTP (one per test session, reset per test), a seeded
sandbox, temp SQLite files, and a wired runtime. Nothing here patches boto3 or our own code."""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import Runtime, build
from bot.aws import AwsClients, build_clients
from bot.config import Settings, settings_from_mapping
from bot.sandbox import (
    MotoSandbox,
    Seeded,
    patched_environ,
    sandbox_config,
    sandbox_settings,
    seed,
)
from tests.fake_slack import FakeSlack
from tests.slack_rig import SlackRig, start_rig


@pytest.fixture(autouse=True)
def no_outside_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own tokens or settings never reach a test (nor GitHub or Slack)."""
    import os

    for name in list(os.environ):
        if name.startswith(("SLACK_", "GITHUB_", "REVIEEE_")) and name != "REVIEEE_UPDATE_GOLDEN":
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoSandbox]:
    box = MotoSandbox().start()
    with patched_environ(box.environ()):
        yield box
    box.stop()


@pytest.fixture
def aws(moto_server: MotoSandbox, monkeypatch: pytest.MonkeyPatch) -> AwsClients:
    moto_server.reset()
    # The server runs in this process: it reads MOTO_ECS_SERVICE_RUNNING from our environment.
    monkeypatch.delenv("MOTO_ECS_SERVICE_RUNNING", raising=False)
    return build_clients("standard", 3)


@pytest.fixture
def tasks_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make moto report services' tasks as running (it never starts real tasks)."""
    monkeypatch.setenv("MOTO_ECS_SERVICE_RUNNING", "1")


@pytest.fixture
def seeded(aws: AwsClients) -> Seeded:
    return seed(aws)


@pytest.fixture
def settings(seeded: Seeded, tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    return sandbox_settings(seeded, str(tmp_path / "revieee.db"))


@pytest.fixture
def runtime(settings: Settings, aws: AwsClients) -> Iterator[Runtime]:
    rt = build(settings, clients=aws)
    yield rt
    rt.close()


WriteConfig = Callable[..., Path]


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.fixture
def write_config(seeded: Seeded, tmp_path: Path) -> WriteConfig:
    """Write the sandbox's configuration as a real revieee.toml (database in tmp_path)."""

    def write(**overrides: object) -> Path:
        data = sandbox_config(seeded, str(tmp_path / "revieee.db"), **overrides)
        lines = [f"{key} = {_toml(value)}" for key, value in data.items() if key != "apps"]
        for app, table in data["apps"].items():
            for svc, fields in table["services"].items():
                lines.append(f"[apps.{app}.services.{svc}]")
                lines += [f"{k} = {_toml(v)}" for k, v in fields.items()]
        path = tmp_path / "revieee.toml"
        path.write_text("\n".join(lines) + "\n")
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
        rig = start_rig(build(settings, clients=clients or aws), fake)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()

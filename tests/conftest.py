"""Shared fixtures: moto's server over HTTP (one per test session, reset per test), a seeded
sandbox, temp SQLite files, and a wired runtime. Nothing here patches boto3 or our own code."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.app import Runtime, build
from bot.aws import AwsClients, build_clients
from bot.config import Settings
from bot.sandbox import MotoSandbox, Seeded, patched_environ, sandbox_settings, seed


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

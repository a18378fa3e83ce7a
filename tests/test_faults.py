"""AWS throttling, transient and permanent errors, served over HTTP by a fault-injecting proxy
in front of moto's server. boto3 is not patched: its real retry logic handles the responses."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.app import Runtime, build
from bot.aws import AwsClients, build_clients
from bot.naming import env_name, task_family
from bot.sandbox import Seeded, StrictSandbox, sandbox_settings
from tests.fault_proxy import Fault, FaultProxy

ECS = "AmazonEC2ContainerServiceV20141113"
CLOUD_MAP = "Route53AutoNaming_v20170314"
ENV = env_name("shop", "feature/checkout")


@pytest.fixture
def proxy(moto_server: StrictSandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    with FaultProxy(moto_server.endpoint) as fp:
        monkeypatch.setenv("AWS_ENDPOINT_URL", fp.url)
        yield fp


@pytest.fixture
def faulty_runtime(
    proxy: FaultProxy,
    seeded: Seeded,
    tmp_path,  # type: ignore[no-untyped-def]
) -> Iterator[Runtime]:
    settings = sandbox_settings(seeded, str(tmp_path / "db.sqlite"), aws_retry_mode="standard")
    rt = build(settings, clients=build_clients("standard", 5))  # through the proxy
    yield rt
    rt.close()


def _deploy(rt: Runtime) -> str | None:
    req = rt.core.intake.request_deploy("feature/checkout", "shop", wait=True)
    rt.runner.run_until_idle(only=req.operation.id)
    op = rt.store.get_operation(req.operation.id)
    return None if op.status == "succeeded" else op.error


def test_throttling_is_retried_with_backoff(
    faulty_runtime: Runtime, proxy: FaultProxy, aws: AwsClients, admin: AwsClients
) -> None:
    proxy.faults.append(
        Fault("CreateService", 400, "ThrottlingException", "Rate exceeded", 2, target_prefix=ECS)
    )
    proxy.faults.append(
        Fault("RegisterTaskDefinition", 400, "ThrottlingException", "Rate exceeded", 1)
    )
    assert _deploy(faulty_runtime) is None
    assert proxy.served["CreateService"] == 2
    assert proxy.served["RegisterTaskDefinition"] == 1
    # retried until it went through, and only once each in the end: no duplicate services
    arns = admin.ecs.list_services(cluster=faulty_runtime.settings.cluster)["serviceArns"]
    assert len(arns) == 2


def test_transient_server_errors_are_retried(faulty_runtime: Runtime, proxy: FaultProxy) -> None:
    proxy.faults.append(
        Fault("DescribeServices", 503, "ServiceUnavailableException", "try again", 2)
    )
    assert _deploy(faulty_runtime) is None
    assert proxy.served["DescribeServices"] == 2


def test_permanent_error_names_the_step_and_is_recorded(
    faulty_runtime: Runtime, proxy: FaultProxy
) -> None:
    proxy.faults.append(
        Fault(
            "RegisterTaskDefinition",
            400,
            "AccessDeniedException",
            "not authorized to perform ecs:RegisterTaskDefinition",
            -1,
        )
    )
    error = _deploy(faulty_runtime)
    assert error == (
        f"registering task definition {task_family(ENV, 'web')}: AccessDeniedException: "
        "not authorized to perform ecs:RegisterTaskDefinition"
    )
    assert proxy.served["RegisterTaskDefinition"] == 1  # not retried: it is permanent
    env = faulty_runtime.store.get_env(ENV)
    assert env is not None and env["status"] == "failed" and env["error"] == error


def test_throttling_that_never_ends_fails_after_the_retry_budget(
    proxy: FaultProxy,
    seeded: Seeded,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    settings = sandbox_settings(seeded, str(tmp_path / "db.sqlite"), aws_retry_mode="standard")
    # three attempts in all, the first one included
    rt = build(settings, clients=build_clients("standard", 3))
    proxy.faults.append(
        Fault(
            "ListServices", 400, "ThrottlingException", "Rate exceeded", -1, target_prefix=CLOUD_MAP
        )
    )
    try:
        error = _deploy(rt)
    finally:
        rt.close()
    assert error is not None
    assert error.startswith("listing Cloud Map services: ")
    assert "ThrottlingException: Rate exceeded" in error
    assert proxy.served["ListServices"] == 3

"""The operation queue: persisted first, one running per environment, newer supersedes queued,
interrupted work resumed or failed, graceful drain; and a real crash of a worker process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bot.app import Runtime, build
from bot.aws import AwsClients
from bot.events import REMINDED
from bot.naming import ecs_service_name, env_name, task_family
from bot.operations import OperationRunner, is_orphan
from bot.sandbox import Seeded, StrictSandbox, sandbox_settings
from bot.store import Store, now_iso
from bot.strict_aws import StrictAws
from tests.conftest import WriteConfig

BRANCH = "feature/checkout"
ENV = env_name("shop", BRANCH)


def test_newer_request_supersedes_queued_ones_of_the_same_environment(runtime: Runtime) -> None:
    first = runtime.core.intake.request_deploy(BRANCH, "shop")
    second = runtime.core.intake.request_deploy(BRANCH, "shop", sha="abcdef1")
    other = runtime.core.intake.request_deploy("main", "shop")
    third = runtime.core.intake.request_deploy(BRANCH, "shop", sha="abcdef2")
    assert second.superseded == [first.operation.id]
    assert third.superseded == [second.operation.id]
    statuses = {op.id: op.status for op in runtime.store.operations()}
    assert statuses == {
        first.operation.id: "superseded",
        second.operation.id: "superseded",
        other.operation.id: "queued",
        third.operation.id: "queued",
    }
    row = runtime.store.operation_row(first.operation.id)
    assert row["superseded_by"] == second.operation.id


def test_running_operation_is_not_superseded_and_blocks_its_environment(tmp_path: Path) -> None:
    store = Store(tmp_path / "q.db")
    a1, _ = store.enqueue("deploy", "web-a", "web", "a", {}, "U1", "cli")
    b1, _ = store.enqueue("deploy", "web-b", "web", "b", {}, "U1", "cli")
    claimed = store.claim_next("host:1")
    assert claimed is not None and claimed.id == a1.id
    a2, superseded = store.enqueue("stop", "web-a", "web", "a", {}, "U2", "cli")
    assert superseded == []  # a running one is never superseded
    # web-a has a running operation: the next claim must skip a2 and take web-b
    nxt = store.claim_next("host:1")
    assert nxt is not None and nxt.id == b1.id
    assert store.claim_next("host:1") is None
    store.finish_operation(a1.id, "succeeded")
    after = store.claim_next("host:1")
    assert after is not None and after.id == a2.id and after.kind == "stop"


def test_claims_from_many_threads_never_run_one_environment_twice(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    store = Store(path)
    for i in range(60):
        store.enqueue("deploy", f"web-e{i % 6}", "web", f"e{i % 6}", {"i": i}, None, "cli")
    # only the newest queued per env survives supersession: 6 queued operations
    assert len(store.operations(status="queued")) == 6
    running: dict[str, int] = {}
    overlaps: list[str] = []
    lock = threading.Lock()

    def handler(op):  # type: ignore[no-untyped-def]
        with lock:
            if running.get(op.env):
                overlaps.append(op.env)
            running[op.env] = running.get(op.env, 0) + 1
        time.sleep(0.01)
        with lock:
            running[op.env] -= 1

    runners = [OperationRunner(Store(path), handler, workers=3) for _ in range(3)]
    threads = [threading.Thread(target=r.run_until_idle) for r in runners]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert overlaps == []
    assert {op.status for op in store.operations()} == {"succeeded", "superseded"}


def test_recovery_requeues_orphans_and_fails_repeated_interruptions(tmp_path: Path) -> None:
    store = Store(tmp_path / "r.db")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    a, _ = store.enqueue("deploy", "web-a", "web", "a", {}, None, "cli")
    b, _ = store.enqueue("deploy", "web-b", "web", "b", {}, None, "cli")
    c, _ = store.enqueue("deploy", "web-c", "web", "c", {}, None, "cli")
    d, _ = store.enqueue("deploy", "web-d", "web", "d", {}, None, "cli")
    for _ in range(4):
        store.claim_next(f"{host}:{dead.pid}")
    store.db.conn.execute(
        "update operations set attempts = 3, step = 'waiting' where id = ?", [b.id]
    )
    # c belongs to a live worker on this host (us), d to another host with a fresh heartbeat
    store.db.conn.execute(
        "update operations set owner = ? where id = ?", [f"{host}:{os.getpid()}", c.id]
    )
    store.db.conn.execute(
        "update operations set owner = 'elsewhere:1', heartbeat_at = ? where id = ?",
        [now_iso(), d.id],
    )
    runner = OperationRunner(store, lambda op: None, max_attempts=3)
    resumed, failed = runner.recover()
    assert resumed == [a.id] and failed == [b.id]
    assert store.get_operation(a.id).status == "queued"
    failed_op = store.get_operation(b.id)
    assert failed_op.status == "failed"
    assert failed_op.error == "interrupted 3 times (last at step: waiting); not retried again"
    assert store.get_operation(c.id).status == "running"
    assert store.get_operation(d.id).status == "running"


def test_is_orphan_uses_heartbeat_for_other_hosts() -> None:
    assert is_orphan("elsewhere:1", "2020-01-01T00:00:00.000+00:00")
    assert not is_orphan("elsewhere:1", now_iso())
    assert is_orphan(None, None)
    assert not is_orphan(f"{socket.gethostname()}:{os.getpid()}", None)


def test_background_pool_runs_work_and_shutdown_drains(
    seeded: Seeded, aws: AwsClients, tmp_path: Path, strict: StrictAws
) -> None:
    strict.ecs.task_start = 30.0  # the tasks do not start in time: the deploy waits out its
    # (short) deadline
    settings = sandbox_settings(seeded, str(tmp_path / "db.sqlite"), deploy_timeout=1.0)
    rt = build(settings, clients=aws)
    rt.runner.start()
    req = rt.core.intake.request_deploy(BRANCH, "shop", requested_by="U1", wait=True)
    deadline = time.monotonic() + 10
    while rt.store.get_operation(req.operation.id).status == "queued":
        assert time.monotonic() < deadline, "the pool never picked the operation up"
        time.sleep(0.02)
    rt.runner.shutdown(drain=True)
    op = rt.store.get_operation(req.operation.id)
    # finished, or waiting for its rollout without a worker: never left running
    assert op.status in ("waiting", "failed"), op.status
    rt.store.close()
    # the next process's watcher takes the wait up and ends it at its deadline
    again = build(settings, clients=aws)
    assert again.runner.watcher is not None
    while again.store.get_operation(req.operation.id).status == "waiting":
        again.runner.watcher.poll()
    op = again.store.get_operation(req.operation.id)
    assert op.status == "failed"
    assert "not stable after 1s" in (op.error or "")
    again.close()


def test_stop_queued_behind_deploy_runs_after_it(
    runtime: Runtime, aws: AwsClients, admin: AwsClients
) -> None:
    deploy = runtime.core.intake.request_deploy(BRANCH, "shop", wait=True)
    claimed = runtime.store.claim_next("test:1")
    assert claimed is not None and claimed.id == deploy.operation.id
    stop = runtime.core.intake.request_stop(ENV)
    assert stop.superseded == []
    runtime.runner.run(claimed)
    assert runtime.runner.run_until_idle() == 1
    assert runtime.store.get_operation(stop.operation.id).status == "succeeded"
    assert runtime.store.get_env(ENV)["status"] == "stopped"  # type: ignore[index]
    service = admin.ecs.describe_services(
        cluster=runtime.settings.cluster, services=[ecs_service_name(ENV, "web")]
    )["services"][0]
    assert service["status"] in ("DRAINING", "INACTIVE")  # DRAINING for a while on ECS


# -- a real crash: kill -9 a worker process mid-deploy, start another, it resumes ---------------


def _wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.slow
def test_worker_killed_while_a_rollout_waits_is_resumed_without_registering_anything(
    moto_server: StrictSandbox,
    write_config: WriteConfig,
    aws: AwsClients,
    admin: AwsClients,
    strict: StrictAws,
    tmp_path: Path,
) -> None:
    """A rollout that has started waits as a state of its operation, not in a worker: the
    process that started it is killed (SIGKILL) while it waits, and the next worker watches
    the same rollout to its end: no second attempt, no new task definition revision, no
    orphaned or duplicated AWS resource."""
    strict.ecs.task_start = 6.0  # long enough to kill the terminal while it waits
    config = write_config(deploy_timeout=120, poll_interval=0.1)
    child_env = {**os.environ, **moto_server.environ()}
    store = Store(tmp_path / "revieee.db")

    # 1. a terminal deploy; it waits for its tasks to start, and is killed meanwhile
    deployer = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "--config", str(config), "deploy", BRANCH, "--wait"],
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for(
            lambda: bool(store.operations(status="waiting")), 30, "the deploy to wait for ECS"
        )
    finally:
        deployer.send_signal(signal.SIGKILL)
        deployer.wait(10)
    [op] = store.operations()
    assert op.status == "waiting" and op.attempts == 1  # left waiting, not running
    assert op.step == "waiting for the services to become stable"
    assert store.get_env(ENV)["status"] == "deploying"  # type: ignore[index]
    families = {
        f: admin.ecs.list_task_definitions(familyPrefix=f)["taskDefinitionArns"]
        for f in (task_family(ENV, "web"), task_family(ENV, "api"))
    }
    assert all(len(arns) == 1 for arns in families.values())

    # 2. a worker finds the rollout waiting and watches it to its end
    worker = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "--config", str(config), "worker"],
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for(
            lambda: store.get_operation(op.id).status in ("succeeded", "failed"),
            60,
            "the watched rollout to end",
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, out
    assert "0 operation(s) resumed" in out and "1 rollout(s) waiting" in out
    assert "draining running operations" in out
    done = store.get_operation(op.id)
    assert done.status == "succeeded", done.error
    assert done.attempts == 1  # watched, not run again
    assert store.get_env(ENV)["status"] == "running"  # type: ignore[index]
    assert [d["result"] for d in store.deployments(ENV)] == ["succeeded"]
    for family, arns in families.items():  # nothing registered again
        assert admin.ecs.list_task_definitions(familyPrefix=family)["taskDefinitionArns"] == arns

    # no orphaned or duplicated AWS resources: one ECS service and one Cloud Map service each
    arns = admin.ecs.list_services(cluster="revieee-sandbox")["serviceArns"]
    assert sorted(a.rsplit("/", 1)[-1] for a in arns) == sorted(
        ecs_service_name(ENV, s) for s in ("web", "api")
    )
    names = [s["Name"] for s in admin.servicediscovery.list_services()["Services"]]
    assert sorted(names) == sorted([f"web.{ENV}", f"api.{ENV}"])


def test_an_environment_whose_deploy_recovery_gave_up_on_ends_failed_and_expiring(
    tmp_path: Path,
) -> None:
    """Recovery that fails an operation after max_attempts must not leave its environment
    `deploying` for ever (unreminded, never expired, invisible to the sweeper): it ends
    `failed`, with an expiry, so the lifecycle reminds its owner and stops it."""
    store = Store(tmp_path / "r.db")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    op, _ = store.enqueue("deploy", "web-b", "web", "b", {}, "U0ALICE", "slack")
    store.claim_next(f"{socket.gethostname()}:{dead.pid}")
    store.upsert_env("web-b", app="web", branch="b", status="deploying", owner="U0ALICE")
    dep = store.start_deployment(
        env="web-b", app="web", branch="b", sha=None, requested_by="U0ALICE", source="slack",
        operation_id=op.id,
    )  # fmt: skip
    store.db.conn.execute("update operations set attempts = 3, step = 'deploying' where id = ?",
                          [op.id])  # fmt: skip
    runner = OperationRunner(store, lambda op: None, max_attempts=3)
    assert runner.recover() == ([], [op.id])
    env = store.get_env("web-b")
    assert env is not None and env["status"] == "failed" and env["status"] in REMINDED
    assert "gave up" in env["error"] and env["expires_at"] is not None
    (row,) = [d for d in store.deployments("web-b") if d["id"] == dep]
    assert row["result"] == "interrupted"

"""Waiting is a state, not a thread: a deploy's rollout waits as its operation's state and one
watcher looks at every waiting rollout together (bot/watcher.py), on the strict AWS layer
with simulated task start times."""

from __future__ import annotations

import time
from pathlib import Path

from bot.app import Runtime, build
from bot.aws import AwsClients, CallCounter
from bot.events import Finished, Phase, Step
from bot.naming import env_name, image_tag_part
from bot.sandbox import Seeded, fake_sha, push_image, sandbox_settings
from bot.strict_aws import StrictAws
from bot.watcher import RolloutWatcher

BRANCHES = ("feature/a", "feature/b", "feature/c")


def pushed(admin: AwsClients, branch: str) -> None:
    """An image of ``branch`` for the web service (the api service falls back to main's)."""
    push_image(admin.ecr, "shop-web", f"{image_tag_part(branch)}-{fake_sha(branch)[:7]}")


def started(rt: Runtime, admin: AwsClients, branch: str) -> int:
    """Request a deploy of ``branch`` and run its active steps: it then waits for ECS."""
    pushed(admin, branch)
    req = rt.core.intake.request_deploy(branch, "shop", requested_by="U1")
    op = rt.store.claim_next("test:1", only=req.operation.id)
    assert op is not None
    rt.runner.run(op)
    assert rt.store.get_operation(op.id).status == "waiting"
    return op.id


def watch_until_done(rt: Runtime, ids: list[int], limit: float = 30.0) -> None:
    assert rt.runner.watcher is not None
    deadline = time.monotonic() + limit
    while any(rt.store.get_operation(i).status == "waiting" for i in ids):
        assert time.monotonic() < deadline, "the rollouts never ended"
        rt.runner.watcher.poll()
        time.sleep(0.1)


def test_one_look_describes_every_waiting_rollout_ten_services_a_call(
    runtime: Runtime, aws: AwsClients, admin: AwsClients, strict: StrictAws
) -> None:
    strict.ecs.task_start = 2.0
    ids = [started(runtime, admin, b) for b in BRANCHES]  # 3 environments of 2 services each
    assert runtime.runner.running == []  # no worker holds them
    counter = CallCounter(aws)
    assert runtime.runner.watcher is not None
    assert runtime.runner.watcher.poll() == 3
    assert counter.calls["ecs:DescribeServices"] == 1  # 6 services: one call, not one each
    assert runtime.runner.watcher.calls == 1  # what the loop spaces its looks by
    (sent,) = counter.params_of("ecs:DescribeServices")
    assert len(sent["services"]) == 6
    watch_until_done(runtime, ids)
    for op_id in ids:
        assert runtime.store.get_operation(op_id).status == "succeeded"
    for branch in BRANCHES:
        env = runtime.store.get_env(env_name("shop", branch))
        assert env is not None and env["status"] == "running" and env["hourly_rate"] > 0
        assert runtime.store.deployments(env["name"])[0]["result"] == "succeeded"


def test_a_waiting_rollout_holds_no_worker(
    seeded: Seeded, aws: AwsClients, admin: AwsClients, strict: StrictAws, tmp_path: Path
) -> None:
    """With one worker, a second deploy starts while the first one's tasks are starting: its
    ECS service is created before the first environment is ready."""
    strict.ecs.task_start = 3.0
    for branch in BRANCHES[:2]:
        pushed(admin, branch)
    rt = build(sandbox_settings(seeded, str(tmp_path / "r.db"), workers=1), clients=aws)
    seen: list[tuple[float, str, str, str]] = []
    rt.bus.subscribe(Step, lambda e: seen.append((time.monotonic(), e.op.env, e.phase, e.step)))
    rt.runner.start()
    try:
        ids = [
            rt.core.intake.request_deploy(b, "shop", requested_by="U1").operation.id
            for b in BRANCHES[:2]
        ]
        deadline = time.monotonic() + 30
        while any(rt.store.get_operation(i).status != "succeeded" for i in ids):
            assert time.monotonic() < deadline, [rt.store.get_operation(i) for i in ids]
            time.sleep(0.1)
    finally:
        rt.runner.shutdown(drain=True)
    first, second = (env_name("shop", b) for b in BRANCHES[:2])
    ready = next(t for t, env, phase, _ in seen if env == first and phase == Phase.READY)
    created = next(
        t for t, env, _, step in seen if env == second and step.startswith("creating ECS service")
    )
    assert created < ready
    rt.store.close()


def test_a_newer_request_ends_the_wait_it_replaces(
    runtime: Runtime, admin: AwsClients, strict: StrictAws
) -> None:
    strict.ecs.task_start = 2.0
    ended: list[Finished] = []
    runtime.bus.subscribe(Finished, ended.append)
    waiting = started(runtime, admin, BRANCHES[0])
    env = env_name("shop", BRANCHES[0])
    stop = runtime.core.intake.request_stop(env, requested_by="U1")
    assert runtime.runner.run_until_idle(only=stop.operation.id) == 1  # at once, no wait
    assert runtime.store.get_operation(stop.operation.id).status == "succeeded"
    replaced = runtime.store.get_operation(waiting)
    assert replaced.status == "superseded"
    assert "operation" in (replaced.error or "") and "stop" in (replaced.error or "")
    assert [d["result"] for d in runtime.store.deployments(env)] == ["superseded"]
    assert [(e.op.id, e.superseded) for e in ended] == [(waiting, True), (stop.operation.id, False)]
    assert runtime.runner.watcher is not None and runtime.runner.watcher.poll() == 0
    row = runtime.store.get_env(env)
    assert row is not None and row["status"] == "stopped"


def test_the_watcher_spaces_its_looks_to_keep_within_ecs_read_budget(
    runtime: Runtime, aws: AwsClients, admin: AwsClients, strict: StrictAws
) -> None:
    """A look costs one DescribeServices per 10 waiting services; the looks are spaced so the
    watcher takes at most 10 of ECS's 20 reads a second: 6 services, once a second; 400
    services (200 two-service environments woken at once), every 4 s."""
    strict.ecs.task_start = 30.0
    watcher = runtime.runner.watcher
    assert isinstance(watcher, RolloutWatcher)
    ids = [started(runtime, admin, b) for b in BRANCHES]
    watcher.poll()
    assert watcher.calls == 1 and watcher.pause(1.0) == 1.0
    watcher.calls = 40
    assert watcher.pause(1.0) == 4.0
    assert watcher.pause(5.0) == 5.0  # never more often than poll_interval asks
    for op_id in ids:
        assert runtime.store.get_operation(op_id).status == "waiting"

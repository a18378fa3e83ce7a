"""Many deploys at once: how long until the last one is Ready when their rollouts wait in the
watcher (bot/watcher.py), against workers that each hold a rollout until it ends (the design
before it), and how many DescribeServices calls the waiting costs.

Runs on the strict AWS layer (bot/strict_aws) with tasks that take ``--start`` seconds (plus
up to ``--jitter``) to run. Each deploy is a fresh branch of the sandbox's two-service app, on
``--workers`` workers (4, the default setting). ``--modes watch,hold`` runs both designs one
after the other on the same machine: ``hold`` keeps the worker in the operation until its
rollout ends (what a deploy did before waiting became a state), ``watch`` lets the worker go.

    python bench/bench_rollouts.py [--deploys 100] [--start 60] [--modes watch,hold]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import threading
import time
from pathlib import Path

from bot import sandbox
from bot.app import Runtime, build
from bot.aws import AwsClients, CallCounter, build_clients
from bot.engine.rollout import WAIT_STEP
from bot.events import Finished, Phase, Step
from bot.naming import image_tag_part
from bot.operations import Waiting
from bot.store import Operation
from bot.strict_aws import Rules


def holding(runtime: Runtime) -> None:
    """The design before: the worker waits for its own rollout (polling it alone)."""
    execute = runtime.core.executor.execute
    watcher = runtime.runner.watcher
    assert watcher is not None
    runtime.runner.watcher = None  # no shared watcher thread

    def handler(op: Operation) -> Waiting | None:
        waiting = execute(op)
        if waiting is None:
            return None
        runtime.store.wait_operation(op.id, waiting.state)
        while runtime.store.get_operation(op.id).status == "waiting":
            watcher.poll()
            time.sleep(min(runtime.settings.poll_interval, 1.0))
        return None  # the watcher recorded how it ended

    runtime.runner.handler = handler


def run(
    mode: str, args: argparse.Namespace, seeded: sandbox.Seeded, clients: AwsClients, tmp: str
) -> dict[str, float]:
    operator_ecr = clients.ecr
    branches = [f"bench/{mode}-{i}" for i in range(args.deploys)]
    shas = {b: sandbox.fake_sha(b) for b in branches}
    settings = sandbox.sandbox_settings(
        seeded,
        str(Path(tmp) / f"{mode}.db"),
        poll_interval=1.0,
        deploy_timeout=(args.start + args.jitter) * 4 + args.deploys * 60 / args.workers,
        workers=args.workers,
    )
    runtime = build(settings, clients=clients)
    if mode == "hold":
        holding(runtime)
    ready: list[float] = []
    waiting: dict[int, float] = {}  # operation -> when its rollout began to wait
    late: list[float] = []  # how long after its tasks could run each one was said Ready
    lock = threading.Lock()

    def on_step(event: Step) -> None:
        now = time.monotonic()
        if event.step == WAIT_STEP and event.message.startswith("waiting up to"):
            with lock:
                waiting[event.op.id] = now
        if isinstance(event, Finished) and event.phase == Phase.READY:
            with lock:
                ready.append(now)
                late.append(now - waiting[event.op.id] - args.start - args.jitter)

    runtime.bus.subscribe(Step, on_step)
    for branch in branches:
        sandbox.push_image(operator_ecr, "shop-web", f"{image_tag_part(branch)}-{shas[branch][:7]}")
    counter = CallCounter(clients)
    runtime.runner.start()
    asked = time.monotonic()
    ids = [
        runtime.core.intake.request_deploy(b, "shop", sha=shas[b], requested_by="bench")
        for b in branches
    ]
    give_up = asked + settings.deploy_timeout * 2
    try:
        while len(ready) < len(ids):
            if time.monotonic() > give_up:
                raise SystemExit(f"{mode}: {len(ready)} of {len(ids)} ready before the deadline")
            failed = [
                o for o in (runtime.store.get_operation(r.operation.id) for r in ids)
                if o.status == "failed"
            ]  # fmt: skip
            if failed:
                raise SystemExit(f"{mode}: {failed[0].env} failed: {failed[0].error}")
            time.sleep(0.5)
    finally:
        runtime.runner.shutdown(drain=True)
    elapsed = time.monotonic() - asked
    describes = counter.calls["ecs:DescribeServices"]
    runtime.close()
    return {
        "all_waiting": max(waiting.values()) - asked,
        "late_median": statistics.median(late),
        "late_max": max(late),
        "last_ready": max(ready) - asked,
        "first_ready": min(ready) - asked,
        "describes_per_minute": describes / (elapsed / 60),
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deploys", type=int, default=100)
    parser.add_argument("--start", type=float, default=60.0)
    parser.add_argument("--jitter", type=float, default=5.0, help="each task up to this longer")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--modes", default="watch", help="watch, hold, or both: watch,hold")
    parser.add_argument("--retry-mode", default="adaptive", help="botocore's: adaptive, standard")
    args = parser.parse_args()
    rules = Rules(task_start=args.start, task_start_jitter=args.jitter)
    box = sandbox.StrictSandbox(rules).start()
    results: dict[str, dict[str, float]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp, sandbox.patched_environ(box.environ()):
            seeded = sandbox.seed(box.admin_clients())
            # as revieee builds them (bot.app.build): adaptive retries, 8 attempts
            clients = build_clients(args.retry_mode, 8, pool_size=args.workers + 10)
            assert box.strict is not None
            for mode in args.modes.split(","):
                box.strict.counts.throttled.clear()
                results[mode] = run(mode, args, seeded, clients, tmp)
                results[mode]["throttled"] = sum(box.strict.counts.throttled.values())
                print(f"{mode}: {results[mode]} throttled: {dict(box.strict.counts.throttled)}")
    finally:
        box.stop()
    print(
        f"\n{args.deploys} deploys requested at once, {args.workers} workers, simulated Fargate "
        f"start {args.start:g}-{args.start + args.jitter:g} s (two services each)"
    )
    # (the peak RSS is the bench's process: revieee, moto's server and the strict layer)
    print(
        "| design | all rollouts started | first Ready | last Ready | Ready after the tasks "
        "could run (median, max) | DescribeServices / minute | peak RSS |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for mode, r in results.items():
        name = {"watch": "rollouts wait in the watcher", "hold": "each worker holds its rollout"}
        print(
            f"| {name.get(mode, mode)} | {r['all_waiting']:.0f} s | {r['first_ready']:.0f} s | "
            f"{r['last_ready']:.0f} s | {r['late_median']:.1f} s, {r['late_max']:.1f} s | "
            f"{r['describes_per_minute']:.0f} | {r['rss_mb']:.0f} MB |"
        )
    if "watch" in results and "hold" in results:
        ratio = results["hold"]["last_ready"] / results["watch"]["last_ready"]
        print(f"\nlast Ready: holding workers take {ratio:.1f}x as long")


if __name__ == "__main__":
    main()

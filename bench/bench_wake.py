"""The morning's wake of many sleeping environments: seconds until the last is Ready, the ECS
calls it takes while they wait, and whether ECS throttled any of them.

Runs on the strict AWS layer (bot/strict_aws): ECS throttles writes and reads with its token
buckets, tasks take ``--start`` seconds (plus up to ``--jitter``) to run. The environments
(``--envs`` of the sandbox's two-service app) are first deployed and put to sleep on a
generous layer (fast tasks, 20x the throttling budget, revieee's pace raised) so the setup
takes a few minutes; then the layer turns strict and slow, and a fresh revieee (the default
``ecs_writes_per_second``, a new process's clients) runs the morning job
(:meth:`bot.lifecycle.Lifecycle.wake`) as the scheduler does.

    python bench/bench_wake.py [--envs 200] [--start 60] [--jitter 5]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections import Counter
from pathlib import Path

from bot import sandbox
from bot.app import Runtime, build
from bot.aws import CallCounter, build_clients
from bot.config import Settings
from bot.lifecycle import Lifecycle
from bot.naming import env_name, image_tag_part
from bot.strict_aws import Rules
from bot.strict_aws.throttle import Buckets


def wait_for(runtime: Runtime, envs: list[str], status: str, limit: float) -> float:
    """Seconds until every one of ``envs`` is ``status`` (fails on a failed one)."""
    start = time.monotonic()
    while True:
        rows = {e: runtime.store.get_env(e) or {} for e in envs}
        failed = [r for r in rows.values() if r.get("status") == "failed"]
        if failed:
            raise SystemExit(f"{failed[0]['name']} failed: {failed[0].get('error')}")
        if all(r.get("status") == status for r in rows.values()):
            return time.monotonic() - start
        if time.monotonic() - start > limit:
            counts = Counter(r.get("status") for r in rows.values())
            raise SystemExit(f"not all {status} after {limit:.0f} s: {dict(counts)}")
        time.sleep(0.25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, default=200)
    parser.add_argument("--start", type=float, default=60.0)
    parser.add_argument("--jitter", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    branches = [f"bench/wake-{i:03d}" for i in range(args.envs)]
    rules = Rules(task_start=0.5, throttle_scale=20.0)
    box = sandbox.StrictSandbox(rules).start()
    assert box.strict is not None
    strict = box.strict
    try:
        with tempfile.TemporaryDirectory() as tmp, sandbox.patched_environ(box.environ()):
            admin = box.admin_clients()
            seeded = sandbox.seed(admin)
            for branch in branches:
                sha = sandbox.fake_sha(branch)
                sandbox.push_image(admin.ecr, "shop-web", f"{image_tag_part(branch)}-{sha[:7]}")
            common = {
                "poll_interval": 1.0,
                "deploy_timeout": 900,
                "workers": args.workers,
                "sleep": True,
                "work_hours": "09:00-18:00",
            }
            db = str(Path(tmp) / "revieee.db")

            # -- the evening before: deployed, then asleep (quickly) -------------------------
            setup_settings: Settings = sandbox.sandbox_settings(
                seeded, db, ecs_writes_per_second=100, **common
            )
            setup = build(setup_settings, clients=build_clients("adaptive", 8, pool_size=20))
            setup.runner.start()
            began = time.monotonic()
            for branch in branches:
                setup.core.intake.request_deploy(
                    branch, "shop", sha=sandbox.fake_sha(branch), requested_by="bench"
                )
            envs = [env_name("shop", b) for b in branches]
            wait_for(setup, envs, "running", 1800)
            Lifecycle(setup_settings, setup.store, setup.core).sleep()
            wait_for(setup, envs, "sleeping", 900)
            setup.runner.shutdown(drain=True)
            setup.close()
            print(
                f"set-up: {args.envs} environments deployed and asleep in "
                f"{time.monotonic() - began:.0f} s"
            )

            # -- the morning: AWS's own pace -----------------------------------------------
            strict.ecs.task_start = args.start
            strict.ecs.task_start_jitter = args.jitter
            strict.buckets = Buckets(scale=1.0)
            strict.counts.throttled.clear()
            settings: Settings = sandbox.sandbox_settings(seeded, db, **common)
            clients = build_clients("adaptive", 8, pool_size=args.workers + 10)
            runtime = build(settings, clients=clients)
            counter = CallCounter(clients)
            runtime.runner.start()
            asked = time.monotonic()
            woken = Lifecycle(settings, runtime.store, runtime.core).wake()
            assert len(woken) == args.envs, f"only {len(woken)} woken"
            wait_for(runtime, envs, "running", 1800)
            took = time.monotonic() - asked
            minutes = took / 60
            runtime.runner.shutdown(drain=True)
            calls = counter.calls
            runtime.close()
    finally:
        box.stop()

    describes = calls["ecs:DescribeServices"]
    updates = calls["ecs:UpdateService"]
    services = 2 * args.envs
    per_look = math.ceil(services / 10)
    print(
        f"\nthe morning wake of {args.envs} sleeping environments (two services each, "
        f"{services} ECS services), simulated Fargate start {args.start:g}-"
        f"{args.start + args.jitter:g} s, {args.workers} workers"
    )
    print("| what | figure |")
    print("| --- | ---: |")
    print(f"| last environment Ready after the job ran | {took:.0f} s |")
    print(f"| UpdateService calls | {updates} (paced at 5 a second after a burst of 20) |")
    print(f"| DescribeServices calls | {describes} ({describes / minutes:.0f} a minute) |")
    print(
        f"| DescribeServices per look at all waiting | {per_look} "
        f"(1 per 10 services = {per_look / args.envs * 10:.1f} per 10 environments) |"
    )
    print(f"| calls ECS throttled | {sum(strict.counts.throttled.values())} |")
    print(f"| every AWS call during the wake | {sum(calls.values())} |")


if __name__ == "__main__":
    main()

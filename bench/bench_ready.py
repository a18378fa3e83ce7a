"""Time from a deploy request to Ready with a realistic Fargate start, and how much of it is
revieee's: the gap between ECS reporting the deployment COMPLETED and revieee saying Ready.

Runs on the strict AWS layer (bot/strict_aws) with tasks that take ``--start`` seconds (30 by
default, a typical Fargate start) plus up to ``--jitter`` (10) to go PROVISIONING -> PENDING ->
RUNNING (a fixed start would line up with the polls); ECS's own completion
time comes from the layer's model (it stamps each deployment when it completes, the moment the
tasks run). Each round deploys a fresh branch of the sandbox's two-service app; the rounds
alternate between the poll intervals given, so both see the same machine.

    python bench/bench_ready.py [--start 30] [--rounds 3] [--polls 5,1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bot import sandbox
from bot.app import build
from bot.aws import build_clients
from bot.events import Finished, Phase
from bot.naming import env_name, image_tag_part
from bot.strict_aws import Rules


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--start", type=float, default=30.0)
    parser.add_argument("--jitter", type=float, default=10.0, help="each task up to this longer")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--polls", default="5,1")
    args = parser.parse_args()
    polls = [float(p) for p in args.polls.split(",")]
    box = sandbox.StrictSandbox(Rules(task_start=args.start, task_start_jitter=args.jitter)).start()
    results: dict[float, list[tuple[float, float]]] = {p: [] for p in polls}
    try:
        with tempfile.TemporaryDirectory() as tmp, sandbox.patched_environ(box.environ()):
            operator = box.admin_clients()
            seeded = sandbox.seed(operator)
            clients = build_clients("standard", 3)
            assert box.strict is not None
            for round_ in range(args.rounds):
                for poll in polls:
                    branch = f"bench/ready-{round_}-{int(poll * 10)}"
                    sha = sandbox.fake_sha(branch)
                    tag = f"{image_tag_part(branch)}-{sha[:7]}"
                    sandbox.push_image(operator.ecr, "shop-web", tag)
                    settings = sandbox.sandbox_settings(
                        seeded,
                        str(Path(tmp) / f"r{round_}-{poll}.db"),
                        poll_interval=poll,
                        deploy_timeout=args.start * 4,
                    )
                    runtime = build(settings, clients=clients)
                    ready: list[float] = []
                    runtime.bus.subscribe(
                        Finished,
                        lambda e, ready=ready: (
                            ready.append(time.time()) if e.phase == Phase.READY else None
                        ),
                    )
                    asked = time.time()
                    req = runtime.core.intake.request_deploy(branch, "shop", sha=sha, wait=True)
                    runtime.runner.run_until_idle(only=req.operation.id)
                    op = runtime.store.get_operation(req.operation.id)
                    if op.status != "succeeded" or not ready:
                        raise SystemExit(f"round {round_} poll {poll}: {op.status} {op.error}")
                    env = env_name("shop", branch)
                    done = max(
                        at for name, _, at in box.strict.ecs.completed if name.startswith(env)
                    )
                    results[poll].append((ready[0] - asked, ready[0] - done))
                    print(
                        f"round {round_} poll_interval {poll:g}s: Ready after "
                        f"{ready[0] - asked:.1f}s, {ready[0] - done:.2f}s after ECS's COMPLETED"
                    )
                    runtime.close()
    finally:
        box.stop()
    print(
        f"\nsimulated Fargate start {args.start:g}-{args.start + args.jitter:g}s, "
        f"{args.rounds} round(s), medians:"
    )
    print("| poll_interval | request -> Ready | ECS COMPLETED -> Ready (revieee) |")
    print("| ---: | ---: | ---: |")
    for poll, rows in results.items():
        total = statistics.median(r[0] for r in rows)
        share = statistics.median(r[1] for r in rows)
        worst = max(r[1] for r in rows)
        print(f"| {poll:g} s | {total:.1f} s | {share:.2f} s (max {worst:.2f} s) |")


if __name__ == "__main__":
    main()

"""What a release task costs a deploy: time from a redeploy request to Ready with and without a
``release`` task, on the strict AWS layer with a realistic Fargate start (``--start`` seconds,
30 by default, plus up to ``--jitter``, for the services' tasks and the one-off task alike) and
a migration that runs ``--migrate`` seconds once its task is RUNNING.

Two environments of the sandbox's two-service app, one with the task: each round redeploys
both, one after the other, so both see the same machine. A release task runs before any
service changes, so its whole life (start, command, stop, reading its log) adds to the deploy.

    python bench/bench_release.py [--start 30] [--migrate 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bot import sandbox
from bot.app import Runtime, build
from bot.aws import build_clients
from bot.config import settings_from_mapping
from bot.events import Finished, Phase
from bot.naming import image_tag_part
from bot.strict_aws import Outcome, Rules

GROUP = "/revieee/revieee-sandbox/environments"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--start", type=float, default=30.0)
    parser.add_argument("--jitter", type=float, default=10.0)
    parser.add_argument("--migrate", type=float, default=5.0, help="seconds the command runs")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    box = sandbox.StrictSandbox(
        Rules(task_start=args.start, task_start_jitter=args.jitter, throttle=False)
    ).start()
    results: dict[str, list[float]] = {"without": [], "with": []}
    try:
        with tempfile.TemporaryDirectory() as tmp, sandbox.patched_environ(box.environ()):
            operator = box.admin_clients()
            seeded = sandbox.seed(operator, log_group=GROUP)
            clients = build_clients("standard", 3)
            assert box.strict is not None
            box.strict.ecs.programs["bin/migrate"] = lambda run: Outcome(
                0, args.migrate, ["Applying 0001_initial... OK"]
            )
            runtimes: dict[str, Runtime] = {}
            ready: dict[str, list[float]] = {}
            for kind in ("without", "with"):
                data: dict[str, Any] = sandbox.sandbox_config(
                    seeded, str(Path(tmp) / f"{kind}.db"), deploy_timeout=args.start * 6
                )
                if kind == "with":
                    data["apps"]["shop"]["tasks"] = {
                        "migrate": {"when": "release", "service": "web", "command": "bin/migrate"}
                    }
                runtimes[kind] = build(settings_from_mapping(data, environ={}), clients=clients)
                ready[kind] = []

                def on_finished(event: Finished, seen: list[float] = ready[kind]) -> None:
                    if event.phase == Phase.READY:
                        seen.append(time.time())

                runtimes[kind].bus.subscribe(Finished, on_finished)
            for round_ in range(args.rounds + 1):  # the first creates them: not counted
                for kind, runtime in runtimes.items():
                    branch = f"bench/release-{kind}"
                    sha = sandbox.fake_sha(f"{branch}-{round_}")
                    tag = f"{image_tag_part(branch)}-{sha[:7]}"
                    sandbox.push_image(operator.ecr, "shop-web", tag)
                    asked = time.time()
                    req = runtime.core.intake.request_deploy(branch, "shop", sha=sha, wait=True)
                    runtime.runner.run_until_idle(only=req.operation.id)
                    op = runtime.store.get_operation(req.operation.id)
                    if op.status != "succeeded":
                        raise SystemExit(f"{kind} round {round_}: {op.status} {op.error}")
                    took = ready[kind][-1] - asked
                    if round_:
                        results[kind].append(took)
                    print(f"round {round_} {kind} a release task: Ready after {took:.1f}s")
            for runtime in runtimes.values():
                runtime.close()
    finally:
        box.stop()
    without, with_ = (statistics.median(results[k]) for k in ("without", "with"))
    print(
        f"median redeploy to Ready: {without:.1f}s without a release task, {with_:.1f}s with one "
        f"({with_ - without:+.1f}s; the task starts in {args.start:g}-"
        f"{args.start + args.jitter:g}s and runs {args.migrate:g}s)"
    )


if __name__ == "__main__":
    main()

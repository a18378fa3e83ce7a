"""AWS API calls per first deploy, per redeploy and per stop, by operation.

Counts what revieee sends (botocore's ``provide-client-params`` hook, so retries are not counted)
for the sandbox's two-service app: ``web`` has an image for the branch, ``api`` falls back to
``main``. Runs against moto's server in-process; services report running at once, so the wait
step polls ``DescribeServices`` once.

    python bench/bench_calls.py
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from bot import sandbox
from bot.app import Runtime, build
from bot.aws import CallCounter, build_clients

APP = "shop"


def run_op(runtime: Runtime, request: Callable[[], int]) -> None:
    op_id = request()
    runtime.runner.run_until_idle(only=op_id)
    op = runtime.store.get_operation(op_id)
    if op.status != "succeeded":
        raise SystemExit(f"operation {op_id} ({op.kind} {op.env}) {op.status}: {op.error}")


def deploy(runtime: Runtime, branch: str, sha: str | None = None) -> None:
    run_op(
        runtime,
        lambda: (
            runtime.core.intake.request_deploy(
                branch, APP, sha=sha, requested_by="bench"
            ).operation.id
        ),
    )


def stop(runtime: Runtime, env: str) -> None:
    run_op(
        runtime, lambda: runtime.core.intake.request_stop(env, requested_by="bench").operation.id
    )


def push(runtime: Runtime, branch: str, commit: str) -> str:
    sha = sandbox.fake_sha(f"{branch} {commit}")
    sandbox.push_image(runtime.clients.ecr, "shop-web", f"{branch}-{sha[:7]}")
    return sha


def measure(counter: CallCounter, fn: Callable[[], None]) -> Counter[str]:
    counter.reset()
    fn()
    return Counter(counter.calls)


def repeats(counter: CallCounter) -> Counter[str]:
    """Calls that repeat an earlier call of the same operation with identical parameters."""
    seen: set[str] = set()
    out: Counter[str] = Counter()
    for name, params in counter.sent_params:
        key = f"{name} {json.dumps(params, sort_keys=True, default=str)}"
        if key in seen:
            out[name] += 1
        seen.add(key)
    return out


def print_table(columns: dict[str, Counter[str]]) -> None:
    names = sorted(set().union(*columns.values()), key=lambda n: (n.split(":")[0], n))
    width = max(len(n) for n in [*names, "operation"])
    heads = list(columns)
    print(f"{'operation':<{width}}  " + "  ".join(f"{h:>14}" for h in heads))
    print("-" * (width + 16 * len(heads)))
    for name in names:
        cells = [str(columns[h][name]) if columns[h][name] else "-" for h in heads]
        print(f"{name:<{width}}  " + "  ".join(f"{c:>14}" for c in cells))
    print("-" * (width + 16 * len(heads)))
    totals = [str(sum(columns[h].values())) for h in heads]
    print(f"{'total':<{width}}  " + "  ".join(f"{t:>14}" for t in totals))


def main() -> None:
    # moto behind the strict layer, in this process: tasks start at once, no throttling.
    box = sandbox.StrictSandbox(sandbox.quick_rules()).start()
    try:
        with tempfile.TemporaryDirectory() as tmp, sandbox.patched_environ(box.environ()):
            setup = build_clients("standard", 3)
            seeded = sandbox.seed(setup)
            settings = sandbox.sandbox_settings(seeded, str(Path(tmp) / "bench.db"))
            runtime = build(settings, clients=build_clients("standard", 3))
            counter = CallCounter(runtime.clients)
            try:
                push(runtime, "warm-up", "first")
                cold = measure(counter, lambda: deploy(runtime, "warm-up"))
                stop(runtime, f"{APP}-warm-up")

                push(runtime, "calls", "first")
                first = measure(counter, lambda: deploy(runtime, "calls"))
                dup = {"first deploy": repeats(counter)}
                sha = push(runtime, "calls", "second")
                redeploy = measure(counter, lambda: deploy(runtime, "calls", sha))
                dup["redeploy --sha"] = repeats(counter)
                newest = measure(counter, lambda: deploy(runtime, "calls"))
                dup["redeploy"] = repeats(counter)
                stopped = measure(counter, lambda: stop(runtime, f"{APP}-calls"))
                dup["stop"] = repeats(counter)
            finally:
                runtime.close()
    finally:
        box.stop()

    services = ", ".join(s.name for s in settings.apps[APP].services)
    print(f"AWS API calls for app {APP!r} ({services}); web has the branch, api falls back\n")
    print_table(
        {
            "first deploy": first,
            "redeploy --sha": redeploy,
            "redeploy": newest,
            "stop": stopped,
        }
    )
    extra = cold - first
    print()
    for column, repeated in dup.items():
        if repeated:
            listed = ", ".join(f"{n} {c}" for n, c in sorted(repeated.items()))
            print(
                f"{column}: {sum(repeated.values())} call(s) repeat an identical earlier one "
                f"({listed})"
            )
    print()
    print("first deploy:   new branch, no --sha (newest image of the branch)")
    print("redeploy --sha: same branch after a new commit was pushed, commit given")
    print("redeploy:       same branch again, no --sha (newest image)")
    print(
        "stop:           after three deploys, so "
        f"{stopped['ecs:DeregisterTaskDefinition']} task-definition revisions are deregistered"
    )
    print(
        "the first operation of a worker process also makes "
        + (", ".join(f"{n} {c}" for n, c in sorted(extra.items())) or "no other call")
        + " (cached afterwards)"
    )


if __name__ == "__main__":
    main()

"""The lifecycle jobs at scale: 10,000 environments in the store, 2,000 ECS services in moto.

moto's server runs in a child process, so the resident memory printed is revieee's own (the
store, the jobs, boto3). The store gets 10,000 environments: 1,800 running ones whose ECS
service, Cloud Map service and task-definition family exist in moto (tagged as revieee tags
them), 200 stopped ones whose resources were left behind (orphans), 7,000 failed ones and 1,000
stopped ones; 20 channels, a third with pull requests (open, merged or closed), activity spread
over ten days (so about two thirds are forgotten), usage intervals for the costs. Untagged
look-alikes are planted next to them.

Each run times, in this process: the reminder scan (``forgotten``), the reminder job
(``remind``: the scan plus one message per channel to the fake Slack Web API and the store
updates; ``reminded_at`` is cleared before each run so every run has the same work), the expiry
check (``expire``: nothing is eligible, so it is the scan), the weekly ``summary`` and the
``sweep`` (with its AWS calls counted). It prints medians, the tracemalloc peak of each job and
the process's peak RSS against the goals (reminder scan < 1 s, RSS < 200 MB).

    python bench/bench_lifecycle.py [--envs 10000] [--services 2000] [--runs 5] [--quick]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from slack_sdk import WebClient  # noqa: E402

from bot import sandbox  # noqa: E402
from bot.app import build  # noqa: E402
from bot.aws import CallCounter, build_clients  # noqa: E402
from bot.config import settings_from_mapping  # noqa: E402
from bot.lifecycle import Lifecycle  # noqa: E402
from bot.naming import ecs_service_name, env_name, service_label, task_family  # noqa: E402
from bot.slack.announcer import SlackAnnouncer  # noqa: E402
from bot.sweeper import Sweeper  # noqa: E402
from tests.fake_slack import FakeSlack  # noqa: E402

GOAL_SCAN_S = 1.0
GOAL_RSS_MB = 200.0
CHANNELS = [f"C0CHAN{n:03d}" for n in range(20)]
CHILD = (
    "import sys; from bot.sandbox import MotoSandbox; box = MotoSandbox().start(); "
    "print(box.endpoint, flush=True); sys.stdin.read()"
)


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MB."""
    current = 0.0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            current = int(line.split()[1]) / 1024
    return current, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def start_moto() -> tuple[subprocess.Popen[str], str]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert child.stdout is not None
    return child, child.stdout.readline().strip()


def seed_aws(clients: Any, seeded: Any, names: list[str], lookalikes: int) -> None:
    """For each environment name: a tagged task definition, Cloud Map service, ECS service."""
    template = clients.ecs.describe_task_definition(taskDefinition="shop-web")["taskDefinition"]
    for i, env in enumerate([*names, *[f"shop-lookalike{n}" for n in range(lookalikes)]]):
        tagged = i < len(names)
        tags = {"revieee:app": "shop", "revieee:env": env, "revieee:branch": env}
        family = task_family(env, "web")
        clients.ecs.register_task_definition(
            family=family,
            containerDefinitions=template["containerDefinitions"],
            requiresCompatibilities=["FARGATE"],
            networkMode="awsvpc",
            cpu="256",
            memory="512",
            **({"tags": [{"key": k, "value": v} for k, v in tags.items()]} if tagged else {}),
        )
        clients.servicediscovery.create_service(
            Name=service_label(env, "web"),
            NamespaceId=seeded.namespace_id,
            DnsConfig={"DnsRecords": [{"Type": "A", "TTL": 10}]},
            **({"Tags": [{"Key": k, "Value": v} for k, v in tags.items()]} if tagged else {}),
        )
        clients.ecs.create_service(
            cluster=sandbox.CLUSTER,
            serviceName=ecs_service_name(env, "web"),
            taskDefinition=family,
            desiredCount=1,
            **({"tags": [{"key": k, "value": v} for k, v in tags.items()]} if tagged else {}),
        )


def fill_store(
    runtime: Any, count: int, running: list[str], orphaned: list[str], rng: random.Random
) -> None:
    store = runtime.store
    now = datetime.now(UTC)
    statuses = {name: "running" for name in running} | {name: "stopped" for name in orphaned}
    names = list(statuses)
    for i in range(count - len(names)):
        name = env_name("shop", f"feature/JIRA-{i}")
        statuses[name] = "failed" if i % 8 else "stopped"
        names.append(name)
    db = store.db
    with store.immediate():
        for n, name in enumerate(names):
            created = now - timedelta(seconds=rng.randint(3600, 20 * 86400))
            last = max(created, now - timedelta(seconds=rng.randint(0, 10 * 86400)))
            rate = 0.0153 + (n % 4) * 0.01
            running = statuses[name] == "running"
            db.conn.execute(
                "insert into environments (name, app, branch, status, url, owner, created_at, "
                "updated_at, last_activity_at, expires_at, hourly_rate, pinned, cost_closed, "
                "running_since) values (?, 'shop', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    name,
                    name,
                    statuses[name],
                    f"https://{name}.review.example.test",
                    f"U{n % 60:04d}",
                    created.isoformat(),
                    created.isoformat(),
                    last.isoformat(),
                    (last + timedelta(days=4)).isoformat(),
                    rate,
                    int(n % 97 == 0),
                    0.0 if running else (last - created).total_seconds() / 3600 * rate,
                    created.isoformat() if running else None,
                ],
            )
            db.conn.execute(
                "insert into messages (env, kind, channel, ts, created_at) "
                "values (?, 'deploy', ?, ?, ?)",
                [name, CHANNELS[n % len(CHANNELS)], f"{n}.000100", created.isoformat()],
            )
            db.conn.execute(
                "insert into usage (env, state, rate, started_at, ended_at) values (?, ?, ?, ?, ?)",
                [
                    name,
                    "running",
                    rate,
                    created.isoformat(),
                    None if statuses[name] == "running" else last.isoformat(),
                ],
            )
            if n % 3 == 0:
                db.conn.execute(
                    "insert into pull_requests (repository, number, env, app, branch, state, "
                    "html_url, updated_at) values ('acme/shop-web', ?, ?, 'shop', ?, ?, ?, ?)",
                    [
                        n,
                        name,
                        name,
                        ("open", "merged", "closed")[n % 9 // 3],
                        f"https://github.com/acme/shop-web/pull/{n}",
                        now.isoformat(),
                    ],
                )


def timed(fn: Callable[[], Any], trace: bool) -> tuple[float, float, Any]:
    """(seconds, tracemalloc peak MB or 0, result) of one call. tracemalloc slows Python down
    several times, so memory is traced in a pass of its own, not in the timed runs."""
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] / 1e6 if trace else 0.0
    if trace:
        tracemalloc.stop()
    return seconds, peak, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", type=int, default=10_000)
    parser.add_argument("--services", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="1,000 envs, 200 services, 1 run")
    args = parser.parse_args()
    if args.quick:
        args.envs, args.services, args.runs = 1_000, 200, 1
    rng = random.Random(7)
    child, endpoint = start_moto()
    os.environ.update({"AWS_ENDPOINT_URL": endpoint, **sandbox.FAKE_CREDENTIALS})
    fake = FakeSlack()
    tmp = tempfile.mkdtemp(prefix="revieee-bench-lifecycle-")
    try:
        clients = build_clients("standard", 3)
        seeded = sandbox.seed(clients)
        orphans = args.services // 10
        running = [env_name("shop", f"feature/live-{i}") for i in range(args.services - orphans)]
        orphaned = [env_name("shop", f"feature/gone-{i}") for i in range(orphans)]
        started = time.perf_counter()
        seed_aws(clients, seeded, running + orphaned, lookalikes=20)
        seeding = time.perf_counter() - started
        config = sandbox.sandbox_config(seeded, str(Path(tmp) / "revieee.db"))
        del config["apps"]["shop"]["services"]["api"]  # one service (web) per environment
        settings = settings_from_mapping(config, environ={})
        runtime = build(settings, clients=clients)
        started = time.perf_counter()
        fill_store(runtime, args.envs, running, orphaned, rng)
        filling = time.perf_counter() - started
        client = WebClient(token="xoxb-bench", base_url=fake.api_url)
        sweeper = Sweeper(clients, settings, runtime.store, runtime.engine)
        lifecycle = Lifecycle(
            settings, runtime.store, runtime.core, SlackAnnouncer(client, runtime.store), sweeper
        )
        active = len(runtime.store.lifecycle_envs())
        print(
            f"revieee lifecycle jobs, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs: "
            f"{args.envs:,} environments in the store ({active:,} not stopped), "
            f"{args.services:,} tagged ECS services + Cloud Map services + task-definition "
            f"families in moto ({orphans} orphaned) and 20 untagged look-alikes; moto in a "
            "child process"
        )
        print(f"  seeding moto took {seeding:.1f} s, filling the store {filling:.1f} s")
        rss_start = rss_mb()
        print(f"  RSS after set-up: {rss_start[0]:.0f} MB (peak {rss_start[1]:.0f} MB)")

        figures: dict[str, list[tuple[float, float]]] = {}
        counts: dict[str, Any] = {}
        counter = CallCounter(clients)
        peaks: dict[str, float] = {}
        for run in range(-1, args.runs):  # run -1: the memory pass, traced, not timed
            runtime.store.db.conn.execute("update environments set reminded_at = null")
            for name, job in (
                ("forgotten (reminder scan)", lifecycle.forgotten),
                ("remind (scan + Slack + store)", lifecycle.remind),
                ("expire (nothing eligible)", lifecycle.expire),
                ("summary", lifecycle.summary),
                ("sweep", lifecycle.sweep),
            ):
                counter.reset()
                seconds, peak, result = timed(job, trace=run < 0)
                if run < 0:
                    peaks[name] = peak
                    continue
                figures.setdefault(name, []).append((seconds, peak))
                if run == 0:
                    if name.startswith("forgotten"):
                        counts[name] = f"{len(result):,} forgotten"
                    elif name.startswith("remind"):
                        posted = sum(len(r.items) for r in result)
                        counts[name] = f"{len(result)} messages, {posted:,} environments"
                    elif name.startswith("expire"):
                        counts[name] = f"{len(result)} stopped"
                    elif name == "summary":
                        counts[name] = f"top {len(result.top)}, total ${result.total:,.0f}"
                    else:
                        by_op = ", ".join(f"{k} {v}" for k, v in sorted(counter.calls.items()))
                        counts[name] = (
                            f"{len(result.orphans)} orphans, {len(result.vanished)} vanished, "
                            f"{counter.total} AWS calls ({by_op})"
                        )
            if run < 0:
                continue
            print(f"  run {run + 1}: " + ", ".join(
                f"{n.split()[0]} {figures[n][-1][0] * 1000:.0f} ms" for n in figures
            ))  # fmt: skip
        print(f"\nmedians of {args.runs} run(s)")
        print(f"{'job':<34}{'time':>10}{'py peak':>10}  what")
        for name, values in figures.items():
            median = statistics.median(v[0] for v in values)
            peak = peaks[name]
            print(f"{name:<34}{median * 1000:>8.0f}ms{peak:>8.1f}MB  {counts[name]}")
        scan = statistics.median(v[0] for v in figures["forgotten (reminder scan)"])
        current, peak_rss = rss_mb()
        print(f"\nRSS now {current:.0f} MB, peak {peak_rss:.0f} MB")
        print(
            f"reminder scan {scan * 1000:.0f} ms: "
            f"{'meets' if scan < GOAL_SCAN_S else 'MISSES'} the goal (< {GOAL_SCAN_S:.0f} s); "
            f"peak RSS {peak_rss:.0f} MB: "
            f"{'meets' if peak_rss < GOAL_RSS_MB else 'MISSES'} the goal (< {GOAL_RSS_MB:.0f} MB)"
        )
        runtime.close()
    finally:
        fake.close()
        if child.stdin is not None:
            child.stdin.close()
        child.wait(timeout=30)


if __name__ == "__main__":
    main()

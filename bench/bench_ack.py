"""Ack latency of `revieee serve` while deploys are in progress: signed slash commands and
reaction events over HTTP, each timed from sending the request to reading the whole answer.

`revieee serve` runs as a subprocess (waitress, the real Bolt listeners, the operation pool,
the rollout watcher) against the strict AWS layer over moto (in this process) and a local fake
Slack Web API. Deploys of many branches are started first and stay in progress, their rollouts
waiting in the watcher for services whose tasks take an hour to start, so the server polls ECS
and talks to Slack while it answers. It also prints the server's memory (RSS) with them
waiting.

    python bench/bench_ack.py [--requests 500] [--concurrency 20] [--deploys 100] [--workers 4]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import http.client
import inspect
import itertools
import json
import math
import os
import platform
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bot import sandbox
from bot.aws import AwsClients, build_clients
from bot.httpserver import HttpServer
from bot.naming import env_name

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # tests/ is not installed: its fake Slack comes from the tree

from tests.fake_slack import FakeSlack  # noqa: E402

APP = "shop"
SECRET = "bench-signing-secret"
TEAM = "T0BENCH"
CHANNEL = "C0REVIEW"
GOAL_MS = 100.0  # Slack's own limit is 3,000 ms
WAIT_STEP = "waiting for the services to become stable"

# What people type, with weights: reads answered from the store, help, redeploys (each queues
# an operation behind the running one, superseding any queued), a mistyped environment (the
# answer suggests names) and a usage error.
SLASH_MIX = {
    "status": 30,
    "list": 20,
    "list --mine": 15,
    "help": 10,
    "deploy (redeploy)": 15,
    "status (typo)": 5,
    "usage error": 5,
}
# Reactions: most are other emoji, or the stop emoji on messages that are not revieee's. The
# stop emoji on a deploy message is acked the same way (events are acked before the listener
# runs) but queues a stop, so it is left out.
REACTION_MIX = {
    "other emoji, any message": 60,
    "stop emoji, not revieee's message": 25,
    "other emoji, revieee's message": 15,
}
OTHER_EMOJI = ("thumbsup", "eyes", "white_check_mark", "tada", "pray", "rocket::skin-tone-3")


# -- the server ---------------------------------------------------------------------------------


def write_config(data: dict[str, Any], path: Path) -> Path:
    """The sandbox's configuration as a real revieee.toml (as tests/conftest.py writes it)."""
    path.write_text(sandbox.config_toml(data))
    tomllib.loads(path.read_text())
    return path


def health(port: int) -> dict[str, Any]:
    """``GET /healthz``: ``{"ok": true, "queued": n, "running": n}``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/healthz")
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise OSError(f"/healthz answered {resp.status}")
        return dict(json.loads(body))
    finally:
        conn.close()


def wait_until(what: str, check: Callable[[], bool], timeout: float, proc: Any) -> float:
    """Poll ``check`` until it holds; returns the seconds it took."""
    start = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - start
        except OSError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"revieee serve exited with {proc.returncode} while {what}")
        if time.monotonic() - start > timeout:
            raise SystemExit(f"timed out after {timeout:g}s {what}")
        time.sleep(0.1)


def read_db(db: Path, sql: str) -> list[tuple[Any, ...]]:
    """A query on the server's SQLite file, read-only."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def deploys_waiting(db: Path) -> int:
    """Deploys whose rollout waits in the watcher (bot/watcher.py), holding no worker."""
    rows = read_db(db, "select step from operations where status = 'waiting' and kind = 'deploy'")
    return len(rows)


def rss_mb(pid: int) -> tuple[float, float] | None:
    """(now, peak) resident memory of a process in MB, from /proc (Linux)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values = {
        line.split(":")[0]: int(line.split()[1]) / 1024
        for line in status.splitlines()
        if line.startswith(("VmRSS:", "VmHWM:"))
    }
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def report_memory(port: int, pid: int, when: str) -> None:
    """RSS (and peak) of revieee serve and of its worker process."""
    worker = (health(port).get("worker") or {}).get("pid")
    for name, of in (("serve", pid), ("its worker process", worker)):
        memory = rss_mb(of) if of else None
        if memory is not None:
            print(f"memory of {name} {when}: RSS {memory[0]:.0f} MB, peak {memory[1]:.0f} MB")


def stop_server(proc: subprocess.Popen[bytes], aws: AwsClients) -> None:
    """SIGTERM, as ECS stops a task. The server then drains its running operations, which
    would wait up to deploy_timeout: the ECS services are deleted under them so they end."""
    if proc.poll() is not None:
        print(f"revieee serve had exited with {proc.returncode}")
        return
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    # Until the pool stops claiming, a queued redeploy may still start and create its services
    # again: delete whatever is there until the process is gone.
    while proc.poll() is None and time.monotonic() - start < 60:
        try:
            listed = aws.ecs.list_services(cluster=sandbox.CLUSTER, maxResults=100)
            for arn in listed["serviceArns"]:
                aws.ecs.delete_service(cluster=sandbox.CLUSTER, service=arn, force=True)
        except Exception as exc:
            print(f"(deleting the ECS services: {exc})")
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(0.5)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
        print("revieee serve had not stopped 60 s after SIGTERM: killed")
    else:
        print(
            f"revieee serve stopped on SIGTERM in {time.monotonic() - start:.1f} s "
            f"(exit {proc.returncode})"
        )


def server_log_summary(log: Path) -> None:
    lines = log.read_text(errors="replace").splitlines()
    queue = sum("waitress.queue Task queue depth" in line for line in lines)
    pool = sum("Connection pool is full" in line for line in lines)
    other = [
        line
        for line in lines
        if (" WARNING " in line or " ERROR " in line or "Traceback" in line)
        and "Task queue depth" not in line
        and "Connection pool is full" not in line
        and "operation failed" not in line  # the drain at the end: services deleted under them
    ]
    print(
        f"server log: {len(lines)} lines; waitress 'Task queue depth' warnings {queue}, "
        f"urllib3 'Connection pool is full' warnings {pool}, other warnings/errors {len(other)}"
    )
    for line in other[:5]:
        print(f"  {line[:200]}")


# -- signed requests ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Req:
    kind: str
    body: bytes
    content_type: str


_ids = itertools.count(1)


def slash(kind: str, text: str, user: str, response_url: str) -> Req:
    n = next(_ids)
    body = urlencode(
        {
            "token": "deprecated-verification-token",
            "team_id": TEAM,
            "team_domain": "acme",
            "channel_id": CHANNEL,
            "channel_name": "review-apps",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/revieee",
            "text": text,
            "api_app_id": "A0REVIEEE",
            "response_url": response_url,
            "trigger_id": f"{n}.1234.bench",
        }
    ).encode()
    return Req(kind, body, "application/x-www-form-urlencoded")


def reaction(kind: str, emoji: str, user: str, channel: str, ts: str) -> Req:
    n = next(_ids)  # every event has its own event_id: revieee drops repeated deliveries
    now = time.time()
    payload = {
        "token": "deprecated-verification-token",
        "team_id": TEAM,
        "api_app_id": "A0REVIEEE",
        "type": "event_callback",
        "event_id": f"Ev0BENCH{n:08d}",
        "event_time": int(now),
        "authorizations": [{"team_id": TEAM, "user_id": "UBOT", "is_bot": True}],
        "event": {
            "type": "reaction_added",
            "user": user,
            "reaction": emoji,
            "item": {"type": "message", "channel": channel, "ts": ts},
            "item_user": "U0SOMEONE",
            "event_ts": f"{now:.6f}",
        },
    }
    return Req(kind, json.dumps(payload).encode(), "application/json")


def signed_headers(body: bytes, content_type: str) -> dict[str, str]:
    ts = str(int(time.time()))
    mac = hmac.new(SECRET.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={mac}",
    }


def pick(rng: random.Random, mix: dict[str, int], n: int) -> list[str]:
    return rng.choices(list(mix), weights=list(mix.values()), k=n)


def slash_requests(
    rng: random.Random, n: int, branches: list[str], users: list[str], fake: FakeSlack
) -> list[Req]:
    reqs = []
    for kind in pick(rng, SLASH_MIX, n):
        branch = rng.choice(branches)
        env = env_name(APP, branch)
        text = {
            "status": f"status {env}",
            "list": "list",
            "list --mine": "list --mine",
            "help": "help",
            "deploy (redeploy)": f"deploy {branch}",
            "status (typo)": f"status {env[:-1]}x",
            "usage error": "deploy",
        }[kind]
        reqs.append(slash(kind, text, rng.choice(users), fake.response_url(f"r{next(_ids)}")))
    return reqs


def reaction_requests(
    rng: random.Random, n: int, messages: list[tuple[str, str]], users: list[str]
) -> list[Req]:
    reqs = []
    for kind in pick(rng, REACTION_MIX, n):
        elsewhere = f"{int(time.time()) - rng.randrange(86400)}.{rng.randrange(10**6):06d}"
        if kind == "other emoji, any message":
            emoji, (channel, ts) = rng.choice(OTHER_EMOJI), (CHANNEL, elsewhere)
        elif kind == "stop emoji, not revieee's message":
            emoji, (channel, ts) = "octagonal_sign", (CHANNEL, elsewhere)
        else:
            emoji, (channel, ts) = rng.choice(OTHER_EMOJI), rng.choice(messages)
        reqs.append(reaction(kind, emoji, rng.choice(users), channel, ts))
    return reqs


# -- measuring ----------------------------------------------------------------------------------


@dataclass
class Result:
    kind: str
    status: int
    ms: float
    body: bytes


class Client:
    """A pool of client threads, each with one persistent (keep-alive) HTTP connection."""

    def __init__(self, port: int, concurrency: int) -> None:
        self.port = port
        self.opened = 0
        self._local = threading.local()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="bench-client")

    def send(self, req: Req) -> Result:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        if conn.sock is None:
            with self._lock:
                self.opened += 1
        headers = signed_headers(req.body, req.content_type)
        start = time.perf_counter()
        try:
            conn.request("POST", "/slack/events", body=req.body, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            return Result(req.kind, 0, (time.perf_counter() - start) * 1000, repr(exc).encode())
        return Result(req.kind, resp.status, (time.perf_counter() - start) * 1000, body)

    def run(self, reqs: list[Req], sequential: bool = False) -> list[Result]:
        if sequential:
            return [self.send(r) for r in reqs]
        return list(self._pool.map(self.send, reqs))

    def close(self) -> None:
        self._pool.shutdown()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Phase:
    title: str
    results: list[Result]
    wall_s: float
    server_cpu_s: float | None
    bench_cpu_s: float


def measure(title: str, client: Client, reqs: list[Req], pid: int, sequential: bool) -> Phase:
    server_before, own_before = cpu_seconds(pid), sum(os.times()[:2])
    start = time.perf_counter()
    results = client.run(reqs, sequential)
    wall = time.perf_counter() - start
    server_after, own_after = cpu_seconds(pid), sum(os.times()[:2])
    server = None if server_before is None or server_after is None else server_after - server_before
    return Phase(title, results, wall, server, own_after - own_before)


def pct(sorted_ms: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    return sorted_ms[max(0, math.ceil(p / 100 * len(sorted_ms)) - 1)]


def report(phase: Phase, goal: bool, by_kind: bool) -> None:
    results, n = phase.results, len(phase.results)
    ms = sorted(r.ms for r in results)
    print(f"== {phase.title}: {n} requests in {phase.wall_s:.1f} s ({n / phase.wall_s:.0f}/s)")
    print(
        f"  p50 {pct(ms, 50):6.1f} ms   p90 {pct(ms, 90):6.1f} ms   p99 {pct(ms, 99):6.1f} ms   "
        f"max {ms[-1]:6.1f} ms"
    )
    bad = [r for r in results if r.status != 200]
    print(f"  non-200 answers: {len(bad)}")
    for status, count in Counter(r.status for r in bad).most_common():
        sample = next(r for r in bad if r.status == status)
        print(f"    {count} x {status} ({sample.kind}): {sample.body[:160]!r}")
    if phase.server_cpu_s is not None:
        print(
            f"  CPU per request: server {phase.server_cpu_s / n * 1000:.1f} ms "
            f"({phase.server_cpu_s / phase.wall_s:.2f} cores busy), this process (client, moto, "
            f"fake Slack) {phase.bench_cpu_s / n * 1000:.1f} ms"
        )
    if goal:
        p99 = pct(ms, 99)
        verdict = "meets" if p99 < GOAL_MS else "MISSES"
        print(f"  p99 {p99:.1f} ms {verdict} the goal (< {GOAL_MS:g} ms; Slack allows 3,000 ms)")
    if by_kind:
        kinds: dict[str, list[float]] = {}
        for r in results:
            kinds.setdefault(r.kind, []).append(r.ms)
        for kind, values in sorted(kinds.items(), key=lambda kv: -len(kv[1])):
            values.sort()
            print(
                f"    {kind:<34} {len(values):>4}   p50 {pct(values, 50):6.1f}   "
                f"p99 {pct(values, 99):6.1f}   max {values[-1]:6.1f} ms"
            )


def check_answers(results: list[Result]) -> None:
    """Slash command acks carry the answer: check that each says what it should."""
    expected = {
        "status": "shop-",
        "deploy (redeploy)": "queued deploy",
        "help": "Commands",
        "status (typo)": "no environment named",
        "usage error": "usage",
        "list": "Environments",
        "list --mine": "Environments",
    }
    wrong = [
        r
        for r in results
        if r.status == 200 and expected[r.kind] not in json.loads(r.body).get("text", "")
    ]
    if wrong:
        print(f"  WARNING: {len(wrong)} unexpected answer(s), e.g. {wrong[0].body[:200]!r}")


# -- main ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=500, help="of each kind")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--deploys", type=int, default=20, help="rollouts kept waiting")
    parser.add_argument("--workers", type=int, default=4, help="the server's workers")
    parser.add_argument("--poll-interval", type=float, default=1.0, help="the server's (s)")
    parser.add_argument(
        "--sequential", type=int, default=100, help="requests of each kind sent one at a time"
    )
    parser.add_argument(
        "--idle", type=float, default=3.0, help="seconds to watch the server's CPU, no requests"
    )
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests of each kind")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    deploys = max(args.deploys, 1)
    branches = [f"feature/bench-{i:02d}" for i in range(deploys)]
    devs = [f"U0DEV{i:04d}" for i in range(deploys)]
    users = devs + [f"U0PEER{i:03d}" for i in range(10)]

    threads = inspect.signature(HttpServer).parameters["threads"].default
    print(
        f"python {platform.python_version()} on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPU(s)\nrevieee serve: waitress with {threads} threads, "
        f"workers={args.workers}, poll_interval={args.poll_interval:g}s, deploy_timeout=600s\n"
        "moto's server, fake Slack and the load generator run in this process, on the same "
        "machine\n"
    )

    # tasks that take an hour to start: the deploys stay in progress while acks are measured
    box = sandbox.StrictSandbox(sandbox.quick_rules(task_start=3600.0)).start()
    fake = FakeSlack()
    with tempfile.TemporaryDirectory() as tmp, sandbox.patched_environ(box.environ()):
        aws = build_clients("standard", 3)
        seeded = sandbox.seed(aws, branches={"web": [*branches, "main"], "api": ["main"]})
        db = Path(tmp) / "revieee.db"
        config = sandbox.sandbox_config(
            seeded,
            str(db),
            workers=args.workers,
            deploy_timeout=600,
            poll_interval=args.poll_interval,
        )
        port = sandbox.free_port()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("REVIEEE_", "SLACK_", "GITHUB_"))
        }
        env.update(
            REVIEEE_CONFIG=str(write_config(config, Path(tmp) / "revieee.toml")),
            SLACK_BOT_TOKEN="xoxb-bench",
            SLACK_SIGNING_SECRET=SECRET,
            REVIEEE_SLACK_API_URL=fake.api_url,
        )
        log = Path(tmp) / "serve.log"
        client = Client(port, args.concurrency)
        serve = ["serve", "--host", "127.0.0.1", "--port", str(port)]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bot.cli", *serve],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=tmp,
            )
        try:
            took = wait_until("starting", lambda: bool(health(port)["ok"]), 60, proc)
            print(f"revieee serve answered /healthz {took:.1f} s after start")
            run_bench(args, rng, client, fake, proc, db, branches, devs, users)
        finally:
            client.close()
            stop_server(proc, aws)
            server_log_summary(log)
            fake.close()
            box.stop()


def run_bench(
    args: argparse.Namespace,
    rng: random.Random,
    client: Client,
    fake: FakeSlack,
    proc: subprocess.Popen[bytes],
    db: Path,
    branches: list[str],
    devs: list[str],
    users: list[str],
) -> None:
    port, deploys = client.port, len(branches)
    started = client.run(
        [
            slash("start", f"deploy {branch}", dev, fake.response_url(f"start-{dev}"))
            for branch, dev in zip(branches, devs, strict=True)
        ]
    )
    refused = [r for r in started if r.status != 200 or b"queued deploy" not in r.body]
    if refused:
        raise SystemExit(f"a deploy was not accepted: {refused[0]}")
    took = wait_until(
        "waiting for the deploys to start",
        lambda: health(port)["waiting"] == deploys and deploys_waiting(db) == deploys,
        600,
        proc,
    )
    print(
        f"{deploys} rollouts waiting for their services (in the watcher, no worker held), "
        f"{took:.1f} s after the request"
    )
    report_memory(port, proc.pid, "with them waiting")
    idle_before = cpu_seconds(proc.pid)
    time.sleep(args.idle)
    idle_after = cpu_seconds(proc.pid)
    if args.idle and idle_before is not None and idle_after is not None:
        print(
            f"server CPU while no request comes in (the deploys poll ECS): "
            f"{(idle_after - idle_before) / args.idle:.2f} cores over {args.idle:g} s"
        )
    messages = read_db(db, "select channel, ts from messages where kind = 'deploy'")
    print(f"{len(messages)} deploy messages in Slack (some reactions land on them)")

    texts = itertools.cycle(["help", "list", f"status {env_name(APP, branches[0])}"])
    warm = [
        slash("warm-up", next(texts), rng.choice(users), fake.response_url("warm-up"))
        for _ in range(args.warmup)
    ]
    client.run(warm + reaction_requests(rng, args.warmup, messages, users))

    phases: list[tuple[Phase, bool]] = []
    if args.sequential:
        one_by_one = [
            ("slash commands", slash_requests(rng, args.sequential, branches, users, fake)),
            ("reaction_added events", reaction_requests(rng, args.sequential, messages, users)),
        ]
        for title, reqs in one_by_one:
            phase = measure(f"{title}, one at a time", client, reqs, proc.pid, sequential=True)
            phases.append((phase, False))
    before = health(port)
    slash_reqs = slash_requests(rng, args.requests, branches, users, fake)
    title = f"slash commands, concurrency {args.concurrency}"
    phases.append((measure(title, client, slash_reqs, proc.pid, sequential=False), True))
    middle = health(port)
    react_reqs = reaction_requests(rng, args.requests, messages, users)
    title = f"reaction_added events, concurrency {args.concurrency}"
    phases.append((measure(title, client, react_reqs, proc.pid, sequential=False), True))
    after = health(port)

    print()
    for phase, goal in phases:
        report(phase, goal, by_kind=goal)
        if phase.title.startswith("slash"):
            check_answers(phase.results)
        print()
    print(
        "operations running/queued (/healthz): "
        f"{before['running']}/{before['queued']} before the concurrent slash commands, "
        f"{middle['running']}/{middle['queued']} after them, "
        f"{after['running']}/{after['queued']} after the reactions (queued: the redeploys, each "
        "behind its environment's running deploy)"
    )
    print(
        f"deploys still waiting for their services at the end: {deploys_waiting(db)} of {deploys}"
    )
    report_memory(port, proc.pid, "at the end")
    print(
        f"client connections opened: {client.opened} (keep-alive); "
        f"fake Slack answered {len(fake.calls)} Web API calls"
    )


if __name__ == "__main__":
    main()

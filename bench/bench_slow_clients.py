"""Latency of `revieee serve` with idle and slowloris connections open (issue 14).

`revieee serve` runs as a subprocess with its production limits, against moto's server and the
fake Slack Web API (both in this process). Each round times `GET /healthz` and a signed
`/revieee help`, each on a new connection, first with no other connection open, then with 200
idle TCP connections and 100 slowloris ones (a header byte a second, as in
tests/test_slow_clients.py) open. The figures are medians per round and over the rounds.

    python bench/bench_slow_clients.py [--rounds 5] [--requests 20] [--idle 200] [--slowloris 100]
"""

from __future__ import annotations

import argparse
import inspect
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # tests/ is not installed: its helpers come from the tree

from bot import sandbox  # noqa: E402
from bot.aws import build_clients  # noqa: E402
from bot.httpserver import HttpServer  # noqa: E402
from tests.fake_slack import FakeSlack  # noqa: E402
from tests.slack_rig import SECRET  # noqa: E402
from tests.test_slow_clients import (  # noqa: E402
    SLOW_HEADERS,
    SlowClients,
    get_healthz,
    signed_help,
)

TIMEOUT = 10.0  # a request that gets no answer in this long counts as failed


def timed_requests(
    port: int, fake: FakeSlack, n: int
) -> tuple[list[float], list[float], list[str]]:
    """``n`` of each, alternated: the latencies (ms) of /healthz and of help, and the failures."""
    healthz: list[float] = []
    help_: list[float] = []
    failed: list[str] = []
    for i in range(n):
        status, seconds, body = get_healthz(port, TIMEOUT)
        if status == 200:
            healthz.append(seconds * 1000)
        else:
            failed.append(f"/healthz {status} after {seconds:.1f} s: {body[:80]!r}")
        url = fake.response_url(f"bench-{time.time_ns()}-{i}")
        status, seconds, body = signed_help(port, url, TIMEOUT)
        if status == 200 and b"deploy BRANCH" in body:
            help_.append(seconds * 1000)
        else:
            failed.append(f"help {status} after {seconds:.1f} s: {body[:80]!r}")
    return healthz, help_, failed


def median(values: list[float]) -> str:
    return f"{statistics.median(values):7.2f} ms" if values else "      - "


def wait_until(check: Callable[[], bool], timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if proc.poll() is not None:
            raise SystemExit(f"revieee serve exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise SystemExit(f"revieee serve did not answer /healthz within {timeout:g} s")
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20, help="of each kind, per phase")
    parser.add_argument("--idle", type=int, default=200, help="idle connections")
    parser.add_argument("--slowloris", type=int, default=100, help="slowloris connections")
    args = parser.parse_args()

    limits = {
        name: p.default
        for name, p in inspect.signature(HttpServer).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    print(
        f"python {platform.python_version()} on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPU(s); revieee serve as a subprocess with its defaults: "
        + ", ".join(f"{k}={v:g}" for k, v in limits.items())
    )

    box = sandbox.MotoSandbox().start()
    fake = FakeSlack()
    with tempfile.TemporaryDirectory() as tmp, sandbox.patched_environ(box.environ()):
        seeded = sandbox.seed(build_clients("standard", 3))
        config = sandbox.sandbox_config(seeded, str(Path(tmp) / "revieee.db"), log_level="warning")
        (Path(tmp) / "revieee.toml").write_text(sandbox.config_toml(config))
        port = sandbox.free_port()
        env = {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("REVIEEE_", "SLACK_", "GITHUB_"))
            },
            "REVIEEE_CONFIG": str(Path(tmp) / "revieee.toml"),
            "SLACK_BOT_TOKEN": "xoxb-bench",
            "SLACK_SIGNING_SECRET": SECRET,
            "REVIEEE_SLACK_API_URL": fake.api_url,
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=tmp,
        )
        try:
            wait_until(lambda: get_healthz(port, 1)[0] == 200, 60, proc)
            timed_requests(port, fake, 10)  # warm-up
            run(args, port, fake)
        finally:
            proc.kill()
            proc.wait()
            fake.close()
            box.stop()


def run(args: argparse.Namespace, port: int, fake: FakeSlack) -> None:
    load = f"{args.idle} idle + {args.slowloris} slowloris"
    results: dict[tuple[str, str], list[float]] = {}
    print(f"\n{'round':<6} {'connections':<26} {'/healthz':>10} {'/revieee help':>14}  failed")
    for r in range(1, args.rounds + 1):
        for phase in ("none", load):
            clients = SlowClients(port)
            try:
                if phase != "none":
                    clients.open("idle", args.idle)
                    clients.open("slowloris", args.slowloris, SLOW_HEADERS[:1], SLOW_HEADERS[1:])
                started = time.monotonic()
                healthz, help_, failed = timed_requests(port, fake, args.requests)
                took = time.monotonic() - started
                closed = sum(c.closed is not None for c in clients.conns)
            finally:
                clients.close()
            results.setdefault((phase, "healthz"), []).append(statistics.median(healthz or [0]))
            results.setdefault((phase, "help"), []).append(statistics.median(help_ or [0]))
            note = (
                f"  (the server closed {closed} of them meanwhile, {took:.1f} s)" if closed else ""
            )
            print(
                f"{r:<6} {phase:<26} {median(healthz):>10} {median(help_):>14}  {len(failed)}{note}"
            )
            for line in failed[:3]:
                print(f"         {line}")
            time.sleep(0.5)  # the server reaps the closed connections
    print(f"\nmedian of the {args.rounds} rounds' medians:")
    for kind, title in (("healthz", "/healthz"), ("help", "signed /revieee help")):
        base, loaded = results[("none", kind)], results[(load, kind)]
        print(
            f"  {title:<22} no other connections {median(base)}   {load} {median(loaded)}   "
            f"ratio {statistics.median(loaded) / statistics.median(base):.2f}"
        )


if __name__ == "__main__":
    main()

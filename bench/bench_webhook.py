"""GitHub webhook latency of `revieee serve` while deploys are in progress.

The strict AWS layer over moto's server runs in this process, `revieee serve` as a subprocess
against it (with a fake Slack Web API, as in bench_ack.py). N deploys are started and stay in
progress, their rollouts waiting in the watcher for tasks that take an hour to start; then
signed `pull_request` deliveries (the recorded `synchronize` payload, each with its own
delivery id and head commit) are sent at a fixed concurrency over keep-alive connections, each
timed from sending to reading the whole answer (GitHub's limit is 10 s).

    python bench/bench_webhook.py [--requests 500] [--concurrency 20] [--deploys 20] [--workers 4]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot import sandbox  # noqa: E402
from bot.aws import build_clients  # noqa: E402
from tests.fake_slack import FakeSlack  # noqa: E402

FIXTURE = ROOT.parent / "shared" / "fixtures" / "github-webhooks" / "pull_request"
SECRET = "bench-webhook-secret"
GOAL_MS = 100.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--deploys", type=int, default=20, help="rollouts kept waiting")
    parser.add_argument("--workers", type=int, default=4, help="the server's workers")
    args = parser.parse_args()

    template = json.loads((FIXTURE / "synchronize.payload.json").read_text())
    repo = template["repository"]["full_name"]
    box = sandbox.StrictSandbox(sandbox.quick_rules(task_start=3600.0)).start()
    fake = FakeSlack()
    tmp = Path(tempfile.mkdtemp(prefix="revieee-bench-webhook-"))
    branches = [f"pr-{i:02d}" for i in range(args.deploys)]
    with sandbox.patched_environ(box.environ()):
        seeded = sandbox.seed(
            build_clients("standard", 3), {"web": ["main", *branches], "api": ["main"]}
        )
        config = sandbox.sandbox_config(
            seeded, str(tmp / "revieee.db"), workers=args.workers, deploy_timeout=3600,
            poll_interval=1, log_level="warning",
        )  # fmt: skip
        shop = config["apps"]["shop"]
        shop["services"]["web"]["repository"] = repo
        shop.update(pull_requests="all")
        (tmp / "revieee.toml").write_text(sandbox.config_toml(config))
        port = sandbox.free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("REVIEEE_", "SLACK_"))},
            "REVIEEE_CONFIG": str(tmp / "revieee.toml"),
            "SLACK_BOT_TOKEN": "xoxb-bench",
            "SLACK_SIGNING_SECRET": "unused-here",
            "GITHUB_WEBHOOK_SECRET": SECRET,
            "REVIEEE_SLACK_API_URL": fake.api_url,
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, cwd=tmp,
        )  # fmt: skip
        local = threading.local()

        def get(path: str) -> dict[str, Any]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", path)
            data: dict[str, Any] = json.loads(conn.getresponse().read())
            conn.close()
            return data

        def deliver(n: int, branch: str, sha: str) -> tuple[int, float]:
            payload = json.loads(json.dumps(template))
            payload["pull_request"]["head"] |= {"ref": branch, "sha": sha}
            payload["pull_request"]["number"] = 1000 + n
            body = json.dumps(payload).encode()
            digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            headers = {
                "Content-Type": "application/json",
                "X-GitHub-Event": "pull_request",
                "X-GitHub-Delivery": f"bench-{n:06d}-{time.time_ns()}",
                "X-Hub-Signature-256": f"sha256={digest}",
            }
            conn = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            start = time.perf_counter()
            conn.request("POST", "/github/webhook", body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            return resp.status, (time.perf_counter() - start) * 1000

        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    get("/healthz")
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SystemExit("revieee serve did not start") from None
                    time.sleep(0.1)
            # the deploys in progress: one pull request per branch, head = its image's commit
            for i, branch in enumerate(branches):
                status, _ = deliver(i, branch, sandbox.fake_sha("web" + branch))
                assert status == 202, status
            deadline = time.monotonic() + 600
            while get("/healthz")["waiting"] < args.deploys:
                if time.monotonic() > deadline:
                    raise SystemExit(f"only {get('/healthz')} deploys started")
                time.sleep(0.2)
            running_before = get("/healthz")["waiting"]
            local.__dict__.pop("conn", None)  # idle for minutes: the server closed it
            for i in range(10):  # warm-up, not counted
                deliver(10_000 + i, branches[i % len(branches)], "0" * 40)

            sequential = sorted(
                deliver(30_000 + n, branches[n % len(branches)], f"{n + 1:040x}")[1]
                for n in range(100)
            )

            def one(n: int) -> tuple[int, float]:
                # new commits on the branches being deployed: each is queued behind the deploy
                return deliver(20_000 + n, branches[n % len(branches)], f"{n:040x}")

            with ThreadPoolExecutor(args.concurrency) as pool:
                results = list(pool.map(one, range(args.requests)))
            running_after = get("/healthz")
            latencies = sorted(ms for _, ms in results)
            bad = [s for s, _ in results if s != 202]

            def pct(q: float) -> float:
                return latencies[min(len(latencies) - 1, round(q / 100 * (len(latencies) - 1)))]

            print(
                f"revieee serve webhook latency, Python {platform.python_version()}, "
                f"{os.cpu_count()} CPUs, concurrency {args.concurrency}"
            )
            print(
                f"rollouts waiting: {running_before} before, {running_after['waiting']} after "
                f"({running_after['running']} running, {running_after['queued']} queued)"
            )
            print(
                f"one at a time               n=100 p50={statistics.median(sequential):.1f} ms  "
                f"p99={sequential[98]:.1f}"
            )
            p99 = pct(99)
            print(
                f"concurrency {args.concurrency:<15} n={len(latencies)} "
                f"p50={statistics.median(latencies):.1f} ms  p90={pct(90):.1f}  p99={p99:.1f}  "
                f"max={latencies[-1]:.1f}  non-202={len(bad)}  "
                f"goal p99<{GOAL_MS:g} ms: {'met' if p99 < GOAL_MS else 'MISSED'}"
            )
        finally:
            server.send_signal(signal.SIGKILL)  # the deploys would wait out their timeout
            server.wait()
            fake.close()
            box.stop()


if __name__ == "__main__":
    main()

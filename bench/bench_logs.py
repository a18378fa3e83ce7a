"""Build-log streaming into Slack: lines written during a CodeBuild build, posted in the thread.

Two processes, so that the bot's CPU time is its own. The world (a child process: this script
with ``--world``) runs moto's server with a scripted CodeBuild (tests/codebuild_script.py), the
fake Slack Web API (tests/fake_slack.py, which stamps each call's arrival) and a writer that,
once the build has started, writes N lines into the build's CloudWatch Logs stream over S
seconds, in batches; each line carries its number and the time it was written. The build stays
in phase BUILD until the last line is written, then succeeds and pushes its image. This process
is the bot: the runtime and the Slack wiring of ``revieee serve`` (``build`` and
``build_serving``, product defaults for ``log_post_interval`` and ``build_log_lines``); it
deploys a branch with ``--sha`` whose image is missing, waits for it to run and for its Slack
thread to be complete, then reads what the fake Slack received.

    python bench/bench_logs.py [--lines 50000] [--seconds 60] [--runs 3] [--quick]
"""

from __future__ import annotations

import argparse
import atexit
import itertools
import json
import math
import os
import platform
import random
import re
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot import sandbox  # noqa: E402
from bot.app import build  # noqa: E402
from bot.config import Secrets, settings_from_mapping  # noqa: E402
from bot.naming import env_name  # noqa: E402
from bot.server import SWITCH_INTERVAL, build_serving  # noqa: E402

BRANCH = "feature/checkout"
ENV = env_name("shop", BRANCH)
SHA = "c0ffee1234567890c0ffee1234567890c0ffee12"
PROJECT = "shop-web-images"
TOKEN = "xoxb-bench-logs"
LINE_RE = re.compile(r"line (\d{6}) t=(\d+\.\d+)")
TICK = os.sysconf("SC_CLK_TCK")


# -- the world: moto, the scripted build, the log writer, the fake Slack (child process) ----------


def world_main() -> None:
    """Answer one JSON command per stdin line with one JSON line; exit at EOF or "quit"."""
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # stray prints go to the log, not into the protocol

    import pytest
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.logs.models import logs_backends

    from bot.aws import build_clients
    from tests.codebuild_script import ScriptedCodeBuild, Step, create_project, scripted_codebuild
    from tests.fake_slack import FakeSlack

    class StampedSlack(FakeSlack):
        """The fake Slack Web API, stamping each call's arrival with the wall clock."""

        def __post_init__(self) -> None:
            self.stamps: list[tuple[float, str, dict[str, Any]]] = []
            self.stamps_lock = threading.Lock()
            super().__post_init__()

        def _answer(
            self, method: str, args: dict[str, Any], token: str | None
        ) -> tuple[int, dict[str, Any], dict[str, str]]:
            at = time.time()
            answer = super()._answer(method, args, token)
            with self.stamps_lock:
                self.stamps.append((at, method, args))
            return answer

    box = sandbox.StrictSandbox(sandbox.quick_rules()).start()
    os.environ.update(box.environ())
    monkeypatch = pytest.MonkeyPatch()
    patch = scripted_codebuild(monkeypatch)
    script: ScriptedCodeBuild = patch.__enter__()
    fake = StampedSlack()
    writer: dict[str, Any] = {}
    uploads_before = [0]  # files shared before this run

    def write_log(lines: int, seconds: float, width: int, batch: float, delay: float) -> None:
        """Once the build is in phase BUILD and ``delay`` later: ``lines`` lines over
        ``seconds``, then let the build end (at the bot's next poll)."""
        try:
            script.wait_for(lambda: bool(script.order) and script.only().index >= 0, 300)
        except AssertionError:
            writer["error"] = "no build started"
            return
        time.sleep(delay)
        build_ = script.only()
        group, stream = ScriptedCodeBuild.log_names(build_)
        logs = logs_backends[DEFAULT_ACCOUNT_ID][sandbox.REGION]
        if group not in logs.groups:
            logs.create_log_group(group, {})
        logs.groups[group].create_log_stream(stream)
        start = time.time()
        writer.update(started=start, batches=0)
        done = 0
        while done < lines:
            due = min(lines, math.ceil(lines * (time.time() - start) / seconds))
            if due > done:
                now = time.time()
                head = f"t={now:.6f} "
                events = [
                    {
                        "timestamp": int(now * 1000),
                        "message": (f"line {seq:06d} {head}").ljust(width, "x") + "\n",
                    }
                    for seq in range(done, due)
                ]
                logs.put_log_events(group, stream, events)
                writer["batches"] += 1
                done = due
            if done < lines:
                time.sleep(batch)
        writer.update(last=time.time(), written=done)
        script.release(build_.id)

    def prepare(cmd: dict[str, Any]) -> dict[str, Any]:
        box.reset()
        with fake.stamps_lock:
            fake.stamps.clear()
        uploads_before[0] = len(getattr(fake, "uploads", []))
        script.builds.clear()
        script.order.clear()
        # the build's whole log is the writer's; the build ends at the poll after the last line
        script.script = [Step("BUILD", (), hold=True), Step("COMPLETED", status="SUCCEEDED")]
        writer.clear()
        clients = build_clients("standard", 3)
        seeded = sandbox.seed(clients)
        create_project(clients.codebuild, PROJECT)
        args = (cmd["lines"], cmd["seconds"], cmd["width"], cmd["batch"], cmd["delay"])
        threading.Thread(target=write_log, args=args, daemon=True).start()
        return {
            "vpc": seeded.vpc,
            "subnets": list(seeded.subnets),
            "security_groups": list(seeded.security_groups),
            "namespace_id": seeded.namespace_id,
        }

    def results() -> dict[str, Any]:
        with fake.stamps_lock:
            calls = [
                {
                    "at": at,
                    "method": method,
                    "thread_ts": args.get("thread_ts"),
                    "text": args.get("text") if method == "chat.postMessage" else None,
                }
                for at, method, args in fake.stamps
            ]
        uploads = [
            {
                "thread_ts": u.get("thread_ts"),
                "content": bytes(u.get("content") or b"").decode("utf-8", "replace"),
            }
            for u in getattr(fake, "uploads", [])[uploads_before[0] :]
        ]
        ended = script.only().ended if script.order else None
        return {
            "writer": dict(writer),
            "build_ended": ended.timestamp() if ended else None,
            "calls": calls,
            "uploads": uploads,
            "fake_has_uploads": hasattr(fake, "uploads"),
        }

    proto.write(json.dumps({"endpoint": box.endpoint, "slack": fake.api_url}) + "\n")
    proto.flush()
    try:
        for raw in sys.stdin:
            cmd = json.loads(raw)
            if cmd["cmd"] == "quit":
                break
            try:
                if cmd["cmd"] == "count":
                    with fake.stamps_lock:
                        answer = {"calls": len(fake.stamps)}
                else:
                    answer = prepare(cmd) if cmd["cmd"] == "prepare" else results()
            except Exception as exc:  # the parent prints it and stops
                answer = {"error": f"{cmd['cmd']}: {type(exc).__name__}: {exc}"}
            proto.write(json.dumps(answer) + "\n")
            proto.flush()
    finally:
        fake.close()
        patch.__exit__(None, None, None)
        monkeypatch.undo()
        box.stop()
        proto.close()


class World:
    """The child process, and its one-line JSON protocol."""

    def __init__(self, log: IO[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--world"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT,
        )  # fmt: skip
        atexit.register(self.stop)
        hello = self._read(120)
        self.endpoint: str = hello["endpoint"]
        self.slack: str = hello["slack"]

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            raise SystemExit(f"the world process did not answer (exit code {self.proc.poll()})")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise SystemExit(f"the world process failed: {answer['error']}")
        return answer

    def ask(self, cmd: str, timeout: float = 120, **fields: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
        self.proc.stdin.flush()
        return self._read(timeout)

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.close()
            self.proc.wait(15)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


# -- the bot (this process) -----------------------------------------------------------------------


def thread_ticks() -> dict[int, int]:
    """CPU clock ticks (user + system) of each live thread of this process, by native id."""
    out: dict[int, int] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        out[int(tid)] = int(fields[11]) + int(fields[12])
    return out


def thread_group(name: str) -> str:
    """revieee-op_0 -> revieee-op; Thread-12 (timers) -> Thread."""
    return re.sub(r"[-_]\d+( \(.*\))?$", "", name)


def one_run(world: World, args: argparse.Namespace, poll: float, tmp: Path) -> dict[str, Any]:
    # the first line comes a random 0-5 s into the build, so neither the log's start nor the
    # build's end lines up with the bot's polls
    delay = random.uniform(0, 5)
    seeded = sandbox.Seeded(**world.ask("prepare", lines=args.lines, seconds=args.seconds,
                                        width=args.width, batch=args.batch_ms / 1000,
                                        delay=delay))  # fmt: skip
    config = sandbox.sandbox_config(seeded, str(tmp / f"revieee-{time.time_ns()}.db"))
    # the product's defaults, except the poll interval under test
    for key in ("poll_interval", "log_post_interval", "deploy_timeout"):
        config.pop(key)
    config["poll_interval"] = poll
    config["log_level"] = "warning"
    config["apps"]["shop"]["services"]["web"].update(
        image_source="codebuild", codebuild_project=PROJECT
    )
    settings = settings_from_mapping(config, environ={})
    assert settings.log_post_interval == 2.0 and settings.build_log_lines == 200
    secrets = Secrets.from_environ({"SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": "unused"})
    runtime = build(settings, secrets=secrets, environ={})
    serving = build_serving(runtime, secrets, world.slack)
    runtime.runner.start()
    serving.start()
    try:
        deadline = time.monotonic() + 10
        while serving.identity and serving.identity.user_id is None:  # auth.test, not measured
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        main_tid = threading.get_native_id()
        ticks0, cpu0, wall0 = thread_ticks(), time.process_time(), time.time()
        runtime.core.intake.request_deploy(
            BRANCH, "shop", sha=SHA, requested_by="UBENCH", source="cli"
        )
        deadline = time.monotonic() + args.seconds + 600
        store = runtime.store
        while True:
            time.sleep(0.25)
            row = store.get_env(ENV)
            busy = store.operations(status="queued", env=ENV) + store.operations(
                status="running", env=ENV
            )
            if row and row["status"] in ("running", "failed") and not busy:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"the deploy did not finish: {row}")
        done_at = time.time()
        # the thread is complete when Slack hears nothing for longer than the pacing interval
        # (the notifier's flush() would submit a marker every 5 ms meanwhile: CPU not the bot's)
        count, quiet_since = -1, time.monotonic()
        while time.monotonic() - quiet_since < settings.log_post_interval + 1.5:
            time.sleep(0.5)
            now_count = world.ask("count")["calls"]
            if now_count != count:
                count, quiet_since = now_count, time.monotonic()
        ticks1, cpu1, wall1 = thread_ticks(), time.process_time(), time.time()
        names = {t.native_id: t.name for t in threading.enumerate()}
        ref = store.get_message(ENV, "deploy")
        status, error = row["status"], row.get("error")
    finally:
        runtime.runner.shutdown(drain=True)
        serving.close()
        runtime.store.close()
    seen = world.ask("results")

    by_group: Counter[str] = Counter()
    for tid, t1 in ticks1.items():
        if tid != main_tid:
            by_group[thread_group(names.get(tid, "?"))] += t1 - ticks0.get(tid, 0)
    main_cpu = (ticks1.get(main_tid, 0) - ticks0.get(main_tid, 0)) / TICK
    bot_cpu = (cpu1 - cpu0) - main_cpu
    cpu_groups = {k: v / TICK for k, v in by_group.items() if v}
    cpu_groups["(threads that ended: timers, ...)"] = max(bot_cpu - sum(cpu_groups.values()), 0.0)
    return analyse(seen, ref, args, poll, wall0) | {
        "status": status,
        "error": error,
        "bot_cpu": bot_cpu,
        "cpu_groups": cpu_groups,
        "wall": wall1 - wall0,
        "deploy_s": done_at - wall0,
        "last_call_s": max(c["at"] for c in seen["calls"]) - wall0,
    }


def pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def analyse(
    seen: dict[str, Any],
    ref: dict[str, Any] | None,
    args: argparse.Namespace,
    poll: float,
    requested_at: float,
) -> dict[str, Any]:
    writer = seen["writer"]
    if "error" in writer or "last" not in writer:
        raise SystemExit(f"the log writer did not finish: {writer}")
    thread_ts = ref["ts"] if ref else None
    calls = [c for c in seen["calls"] if c["at"] >= requested_at]  # not start-up's auth.test
    methods = Counter(c["method"] for c in calls)
    replies = [
        c for c in calls if c["method"] == "chat.postMessage" and c["thread_ts"] == thread_ts
    ]
    live: dict[int, float] = {}  # line -> latency, from the first reply that carried it
    live_dupes = 0
    for reply in replies:
        for seq, stamp in LINE_RE.findall(reply["text"] or ""):
            if int(seq) in live:
                live_dupes += 1
            else:
                live[int(seq)] = reply["at"] - float(stamp)
    completes = [
        c
        for c in calls
        if c["method"] == "files.completeUploadExternal" and c["thread_ts"] == thread_ts
    ]
    uploads = [u for u in seen["uploads"] if u["thread_ts"] == thread_ts]
    in_file: dict[int, float] = {}
    file_at = completes[-1]["at"] if completes else None
    for upload in uploads:
        for seq, stamp in LINE_RE.findall(upload["content"]):
            if file_at is not None:
                in_file.setdefault(int(seq), file_at - float(stamp))
    delivered = [min(live.get(s, math.inf), in_file.get(s, math.inf)) for s in range(args.lines)]
    missing = sum(1 for d in delivered if d == math.inf)
    stamps = sorted(c["at"] for c in [*replies, *completes])
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    return {
        "poll": poll,
        "calls": sum(methods.values()),
        "methods": dict(methods),
        "thread_replies": len(replies),
        "largest_reply": max((len(r["text"] or "") for r in replies), default=0),
        "min_gap": min(gaps) if gaps else math.nan,
        "live_lines": len(live),
        "live_dupes": live_dupes,
        "live_p50": pct(list(live.values()), 50),
        "live_p99": pct(list(live.values()), 99),
        "live_max": max(live.values(), default=math.nan),
        "file_lines": len(in_file),
        "file_after_last_line": (file_at - writer["last"]) if file_at else math.nan,
        "build_seen_ended_after": (seen["build_ended"] or math.nan) - writer["last"],
        "all_p50": pct([d for d in delivered if d != math.inf], 50),
        "all_p99": pct([d for d in delivered if d != math.inf], 99),
        "missing": missing,
        "written": writer["written"],
        "write_span": writer["last"] - writer["started"],
        "batches": writer["batches"],
        "fake_has_uploads": seen["fake_has_uploads"],
    }


def describe_run(n: int, r: dict[str, Any]) -> str:
    files = sum(v for k, v in r["methods"].items() if k.startswith("files."))
    other = ", ".join(f"{k} {v}" for k, v in sorted(r["methods"].items()))
    return (
        f"  poll {r['poll']:g} s, run {n}: deploy {r['status']} in {r['deploy_s']:.1f} s; "
        f"{r['written']:,} lines written in {r['write_span']:.1f} s ({r['batches']} batches)\n"
        f"    Slack calls {r['calls']} ({other}); {r['thread_replies']} thread replies "
        f"(largest {r['largest_reply']:,} chars, closest two posts {r['min_gap']:.2f} s apart), "
        f"{files} file calls\n"
        f"    live: {r['live_lines']} lines, write->post p50 {r['live_p50']:.2f} s "
        f"p99 {r['live_p99']:.2f} s max {r['live_max']:.2f} s, repeated {r['live_dupes']}\n"
        f"    file: {r['file_lines']:,} lines, last line written -> build seen ended "
        f"{r['build_seen_ended_after']:.2f} s -> file shared {r['file_after_last_line']:.2f} s; "
        f"every line write->delivered p50 {r['all_p50']:.1f} s p99 {r['all_p99']:.1f} s; "
        f"never delivered {r['missing']:,}\n"
        f"    bot CPU {r['bot_cpu']:.2f} s over {r['wall']:.1f} s wall (last Slack call "
        f"{r['last_call_s']:.1f} s after the request) "
        f"({r['bot_cpu'] / max(r['written'], 1) * 1e6:.1f} ms per 1,000 lines)"
    )


ROWS: list[tuple[str, str, str]] = [
    # (label, key, format)
    ("Slack Web API calls", "calls", "{:.0f}"),
    ("  replies in the thread", "thread_replies", "{:.0f}"),
    ("lines posted live", "live_lines", "{:.0f}"),
    ("live write->post p50 (s)", "live_p50", "{:.2f}"),
    ("live write->post p99 (s)", "live_p99", "{:.2f}"),
    ("lines in the file", "file_lines", "{:,.0f}"),
    ("last line -> build seen ended (s)", "build_seen_ended_after", "{:.2f}"),
    ("last line -> file shared (s)", "file_after_last_line", "{:.2f}"),
    ("every line write->delivered p50 (s)", "all_p50", "{:.1f}"),
    ("every line write->delivered p99 (s)", "all_p99", "{:.1f}"),
    ("lines never delivered", "missing", "{:.0f}"),
    ("bot CPU (s)", "bot_cpu", "{:.2f}"),
    ("bot CPU per 1,000 lines (ms)", "cpu_per_k", "{:.1f}"),
    ("wall: request -> deploy done (s)", "deploy_s", "{:.1f}"),
    ("wall: request -> last Slack call (s)", "last_call_s", "{:.1f}"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the build writes")
    parser.add_argument("--runs", type=int, default=3, help="runs per poll interval")
    parser.add_argument("--polls", default="5,1", help="poll intervals to compare (seconds)")
    parser.add_argument("--width", type=int, default=100, help="characters per log line")
    parser.add_argument("--batch-ms", type=float, default=50.0, help="time between writes")
    parser.add_argument("--quick", action="store_true", help="5,000 lines over 10 s, one run")
    parser.add_argument("--world", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.world:
        world_main()
        return
    if args.quick:
        args.lines, args.seconds, args.runs = 5_000, 10.0, 1
    polls = [float(p) for p in args.polls.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="revieee-bench-logs-"))
    world_log = open(tmp / "world.log", "w")  # noqa: SIM115 - closed in finally
    world = World(world_log)
    sys.setswitchinterval(SWITCH_INTERVAL)  # as `revieee serve` runs
    print(
        f"revieee build-log streaming, Python {platform.python_version()}, {os.cpu_count()} CPUs: "
        f"{args.lines:,} lines of {args.width} chars over {args.seconds:g} s "
        f"(a write every {args.batch_ms:g} ms); log_post_interval 2 s, build_log_lines 200 "
        f"(product defaults); the world (moto, fake Slack, writer) in a child process",
        flush=True,
    )
    results: dict[float, list[dict[str, Any]]] = {p: [] for p in polls}
    try:
        with sandbox.patched_environ(
            {"AWS_ENDPOINT_URL": world.endpoint, **sandbox.FAKE_CREDENTIALS}
        ):
            for n in range(1, args.runs + 1):
                for poll in polls:  # interleaved: both settings see the same machine
                    r = one_run(world, args, poll, tmp)
                    r["cpu_per_k"] = r["bot_cpu"] / max(r["written"], 1) * 1e6
                    results[poll].append(r)
                    print(describe_run(n, r), flush=True)
                    if not r["fake_has_uploads"]:
                        print("    (tests/fake_slack.py keeps no uploads yet: no file content)")
    finally:
        world.stop()
        world_log.close()
        log_text = (tmp / "world.log").read_text()
        shutil.rmtree(tmp, ignore_errors=True)
    if "Traceback" in log_text:
        print("the world process logged errors:\n" + log_text[-3000:])

    def median(poll: float, key: str) -> float:
        values = [r[key] for r in results[poll] if not math.isnan(r[key])]
        return statistics.median(values) if values else math.nan

    heads = [f"poll {p:g} s" for p in polls]
    ratio = len(polls) == 2
    print(f"\nmedians of {args.runs} run(s)")
    print(f"{'':38}" + "".join(f"{h:>12}" for h in heads) + (f"{'ratio':>10}" if ratio else ""))
    for label, key, fmt in ROWS:
        cells = [median(p, key) for p in polls]
        line = f"{label:38}" + "".join(f"{fmt.format(c):>12}" for c in cells)
        if ratio and cells[0] and not math.isnan(cells[0]) and key not in ("missing",):
            line += f"{cells[1] / cells[0]:>10.2f}"
        print(line)
    print("\nbot CPU by thread (median s)")
    groups = sorted({g for p in polls for r in results[p] for g in r["cpu_groups"]})
    for group in groups:
        cells = [
            statistics.median(r["cpu_groups"].get(group, 0.0) for r in results[p]) for p in polls
        ]
        if any(c >= 0.01 for c in cells):
            print(f"  {group:36}" + "".join(f"{c:>12.2f}" for c in cells))
    failed = [r for p in polls for r in results[p] if r["status"] != "running"]
    if failed:
        print(f"\nWARNING: {len(failed)} deploy(s) did not end running: {failed[0]['error']}")


if __name__ == "__main__":
    main()

"""``revieee serve`` runs the workers and the rollout watcher in a child process of its own
(bot/workerproc.py): the child's events come back over a pipe to the server's notifiers, the
server wakes the child when a request is queued, restarts it when it dies, and ``/healthz``
says how it is. As real subprocesses, against the strict AWS layer and the fake Slack."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from bot.events import BatchUpdate, Finished, LogLines, Phase, Step
from bot.logtail import LogEvent
from bot.naming import env_name
from bot.sandbox import free_port
from bot.store import Operation, Store
from bot.workerproc import decode, encode
from tests.conftest import WriteConfig
from tests.fake_slack import FakeSlack
from tests.slack_rig import SECRET
from tests.test_serve import clean_env, slash

OP = Operation(
    7, "deploy", "shop-x", "shop", "x", {"sha": "abc", "n": [1]}, "running", "s", "U1", "slack",
    1, None, 3,
)  # fmt: skip


@pytest.mark.parametrize(
    "event",
    [
        Step(OP, Phase.DEPLOYING, "registering", "done <ok>"),
        Finished(OP, Phase.READY, "ready", "https://x is up"),
        Finished(OP, Phase.QUEUED, "superseded", "newer", superseded=True),
        LogLines(OP, LogEvent("build of web", ("a", "b"), note="n", done=True, tail=("b",))),
        BatchUpdate(12),
    ],
)
def test_every_event_the_notifiers_hear_crosses_the_pipe_unchanged(event: object) -> None:
    line = encode(event)
    assert line is not None and "\n" not in line
    assert decode(line) == event


def test_what_is_not_for_the_notifiers_does_not_cross() -> None:
    assert encode(object()) is None
    with pytest.raises(ValueError):
        decode('{"type": "nothing"}')


def _health(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _deploy(port: int, branch: str, fake: FakeSlack) -> None:
    assert "queued deploy" in slash(port, f"deploy {branch}", fake.response_url())["text"]


def _until(check: Any, what: str, proc: subprocess.Popen[str], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"timed out: {what}"
        time.sleep(0.1)


def test_serve_runs_operations_in_a_worker_process_and_starts_it_again_when_it_dies(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    fake = FakeSlack()
    port = free_port()
    env = clean_env(
        REVIEEE_CONFIG=str(write_config()),
        SLACK_BOT_TOKEN="xoxb-worker-test",
        SLACK_SIGNING_SECRET=SECRET,
        REVIEEE_SLACK_API_URL=fake.api_url,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        health = _until(lambda: _safe_health(port), "serve answers /healthz with its worker", proc)
        worker = health["worker"]
        assert health["ok"] is True and worker["alive"] is True and worker["restarts"] == 0
        first_pid = worker["pid"]
        assert first_pid != proc.pid

        # a deploy: queued by the server, carried out by the worker, said in Slack by the server
        _deploy(port, "feature/checkout", fake)
        fake.wait_for(
            lambda: any(c.args.get("text", "").endswith(": Ready") for c in fake.of("chat.update")),
            timeout=30,
        )
        posted = fake.of("chat.postMessage")
        assert len([c for c in posted if not c.args.get("thread_ts")]) == 1  # one message

        # the worker dies: the server says so and starts another
        os.kill(first_pid, signal.SIGKILL)
        restarted = _until(
            lambda: (h := _safe_health(port)) and h["worker"]["restarts"] == 1
            and h["worker"]["alive"] and h,
            "the worker started again",
            proc,
        )  # fmt: skip
        assert restarted["worker"]["pid"] not in (first_pid, proc.pid)

        # ... which carries out what comes next
        _deploy(port, "main", fake)
        main = env_name("shop", "main")
        store = Store(tmp_path / "revieee.db")
        try:
            _until(
                lambda: (store.get_env(main) or {}).get("status") == "running",
                "the deploy after the restart",
                proc,
            )
        finally:
            store.close()

        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "worker process exited" in err  # the SIGKILL, logged
        assert "xoxb-worker-test" not in out + err and SECRET not in out + err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        fake.close()


def _safe_health(port: int) -> dict[str, Any] | None:
    try:
        status, body = _health(port)
    except OSError:
        return None
    return body if status == 200 and "worker" in body else None

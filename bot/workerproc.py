"""The workers and the rollout watcher in their own process, started (and restarted) by
``revieee serve``, so the front door never waits for the interpreter behind them.

``serve`` starts ``revieee worker`` as a child with two pipes. On the child's stdin the server
says ``wake`` when a request was queued (the child's dispatcher then claims it at once instead
of at its next poll); on a pipe of its own the child sends back, as JSON lines, every event its
operations publish (steps, their ends, log lines, batch updates), which the server publishes on
its own bus: the Slack and GitHub notifiers stay in the server, one of each, as before. The
store is the hand-over: operations are queued, claimed and finished in SQLite, which several
processes share (claims are ``BEGIN IMMEDIATE`` transactions).

A child that exits (a crash, ``kill -9``) is started again after ``RESTART_DELAY``; its
operations are requeued by the new child's recovery (same host, the old pid gone), its waiting
rollouts watched on. ``/healthz`` says whether the child runs (``worker``), and answers 503 once
it has been down for ``DOWN_LIMIT`` seconds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO, Any

from bot.events import BatchUpdate, Bus, Finished, LogLines, Phase, Step
from bot.logtail import LogEvent
from bot.store import Operation

log = logging.getLogger("revieee.workerproc")

EVENTS_FD = "REVIEEE_WORKER_EVENTS_FD"  # the child's end of the events pipe
RESTART_DELAY = 1.0
DOWN_LIMIT = 30.0
STOP_TIMEOUT = 30.0


# -- events on the wire ----------------------------------------------------------------------


def encode(event: object) -> str | None:
    """One JSON line for an event the server's notifiers listen to; None for the others."""
    if isinstance(event, Step):
        data: dict[str, Any] = {
            "type": "finished" if isinstance(event, Finished) else "step",
            "op": dataclasses.asdict(event.op),
            "phase": event.phase.value,
            "step": event.step,
            "message": event.message,
        }
        if isinstance(event, Finished):
            data["superseded"] = event.superseded
    elif isinstance(event, LogLines):
        data = {
            "type": "log",
            "op": dataclasses.asdict(event.op),
            "event": dataclasses.asdict(event.event),
        }
    elif isinstance(event, BatchUpdate):
        data = {"type": "batch", "batch": event.batch}
    else:
        return None
    return json.dumps(data, separators=(",", ":"))


def decode(line: str) -> object:
    """The event a line of :func:`encode` carries (ValueError for anything else)."""
    data = json.loads(line)
    kind = data.get("type")
    if kind == "batch":
        return BatchUpdate(int(data["batch"]))
    if kind not in ("step", "finished", "log"):
        raise ValueError(f"not an event: {kind!r}")
    op = Operation(**data["op"])
    if kind == "log":
        fields = data["event"]
        for name in ("lines", "tail"):
            fields[name] = tuple(fields.get(name) or ())
        return LogLines(op, LogEvent(**fields))
    phase = Phase(data["phase"])
    if kind == "finished":
        return Finished(op, phase, data["step"], data["message"], bool(data["superseded"]))
    return Step(op, phase, data["step"], data["message"])


# -- the child's side ------------------------------------------------------------------------


def speak(bus: Bus, wake: Any, stopping: threading.Event) -> bool:
    """In ``revieee worker`` started by ``serve``: send the bus's events to the server, wake
    the dispatcher when the server says so, and set ``stopping`` when the server is gone (its
    end of stdin closed). False when not started by ``serve``."""
    fd = os.environ.get(EVENTS_FD)
    if not fd or not fd.isdigit():
        return False
    out = os.fdopen(int(fd), "w", buffering=1, encoding="utf-8")
    lock = threading.Lock()

    def send(event: object) -> None:
        line = encode(event)
        if line is None:
            return
        # (the server gone: nothing to say it to; stdin's end stops us)
        with lock, contextlib.suppress(BrokenPipeError, ValueError):
            out.write(line + "\n")

    for kind in (Step, LogLines, BatchUpdate):
        bus.subscribe(kind, send)  # type: ignore[type-var]

    def listen() -> None:
        for line in sys.stdin:
            if line.strip() == "wake":
                wake()
        stopping.set()  # the server closed its end: it stopped, or died

    threading.Thread(target=listen, name="revieee-server-pipe", daemon=True).start()
    return True


# -- the server's side -----------------------------------------------------------------------


class WorkerProcess:
    """``revieee worker`` as the server's child: started, watched, restarted, stopped."""

    def __init__(self, bus: Bus, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.bus = bus
        self.argv = list(argv)
        self.env = dict(os.environ if env is None else env)
        self.restarts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._stdin: IO[bytes] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._down_since: float | None = time.monotonic()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_serve(cls, bus: Bus, config: str | None) -> WorkerProcess:
        argv = [sys.executable, "-m", "bot.cli"]
        if config:
            argv += ["--config", config]
        return cls(bus, [*argv, "worker"])

    def start(self) -> None:
        self._spawn()
        self._thread = threading.Thread(target=self._watch, name="revieee-worker-proc", daemon=True)
        self._thread.start()

    def _spawn(self) -> None:
        read_end, write_end = os.pipe()
        env = {**self.env, EVENTS_FD: str(write_end)}
        try:
            proc = subprocess.Popen(
                self.argv, env=env, stdin=subprocess.PIPE, pass_fds=(write_end,), close_fds=True
            )
        finally:
            os.close(write_end)
        with self._lock:
            if self._stdin is not None:  # the pipe to a child that died
                with contextlib.suppress(OSError):
                    self._stdin.close()
            self._proc, self._stdin = proc, proc.stdin
            self._down_since = None
        log.info("worker process started pid=%s", proc.pid)
        threading.Thread(
            target=self._read, args=(read_end,), name="revieee-worker-events", daemon=True
        ).start()

    def _read(self, fd: int) -> None:
        with os.fdopen(fd, "r", encoding="utf-8") as events:
            for line in events:
                try:
                    event = decode(line)
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("worker process sent something else: %s", exc)
                    continue
                self.bus.publish(event)  # type: ignore[arg-type]

    def _watch(self) -> None:
        while not self._stopping.is_set():
            proc = self._proc
            if proc is None:
                return
            code = proc.wait()
            if self._stopping.is_set():
                return
            with self._lock:
                self._down_since = time.monotonic()
            log.error("worker process exited code=%s: starting it again", code)
            if self._stopping.wait(RESTART_DELAY):
                return
            self.restarts += 1
            self._spawn()

    def wake(self) -> None:
        """A request was queued: the child claims it now."""
        with self._lock:
            pipe = self._stdin
            if pipe is None:
                return
            # (restarting: the new child finds the queued work itself)
            with contextlib.suppress(BrokenPipeError, ValueError, OSError):
                pipe.write(b"wake\n")
                pipe.flush()

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def health(self) -> dict[str, Any]:
        with self._lock:
            down = self._down_since
        alive = self.pid is not None
        out: dict[str, Any] = {"alive": alive, "pid": self.pid, "restarts": self.restarts}
        if not alive and down is not None:
            out["down_for"] = round(time.monotonic() - down, 1)
        return out

    def healthy(self) -> bool:
        with self._lock:
            down = self._down_since
        return down is None or time.monotonic() - down < DOWN_LIMIT

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM: the child drains what it runs (waiting rollouts stay waiting, in the
        store), then exits; killed after ``timeout``."""
        self._stopping.set()
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(OSError):
            if self._stdin is not None:
                self._stdin.close()
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("worker process did not stop in %.0f s: killed", timeout)
            proc.kill()
            proc.wait()

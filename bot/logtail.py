"""Following logs while they are written: a CodeBuild build's CloudWatch Logs stream while it
builds, the ECS service events while a deploy rolls out. Each source only says what is new
(:class:`CloudWatchTail`, :class:`ServiceEvents`); a :class:`LogFollower` hands the new lines
to its sink (the core puts them on the bus as ``LogLines``: Slack's thread batches them, the
terminal prints them) and keeps the last ones for a failure's summary."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from botocore.exceptions import ClientError

from bot.aws import error_code

MAX_LINE = 1000  # characters of one line shown; longer lines are cut


@dataclass(frozen=True)
class LogEvent:
    """New lines of one log (``stream`` says which: "build of web", "ECS events"), a note (a
    phase change), or the log's end (``done``) with how it ended."""

    stream: str
    lines: tuple[str, ...] = ()
    note: str | None = None
    done: bool = False
    failed: bool = False
    summary: str | None = None
    tail: tuple[str, ...] = ()  # at a failure's end: the last lines
    link: str | None = None  # the whole log, in the AWS console
    total: int = 0  # at the end: how many lines the log had


LogSink = Callable[[LogEvent], None]


def _discard(event: LogEvent) -> None:
    return None


class LogFollower:
    """Turns raw messages into lines for the sink; remembers the last ``keep`` lines."""

    def __init__(self, stream: str, sink: LogSink = _discard, keep: int = 30) -> None:
        self.stream = stream
        self.sink = sink
        self.recent: deque[str] = deque(maxlen=keep)
        self.count = 0
        self.ended = False

    def lines(self, messages: Iterable[str]) -> None:
        lines: list[str] = []
        for message in messages:
            for line in message.rstrip("\n").split("\n"):
                line = line.rstrip("\r")
                lines.append(line if len(line) <= MAX_LINE else line[: MAX_LINE - 1] + "…")
        if not lines:
            return
        self.count += len(lines)
        self.recent.extend(lines)
        self.sink(LogEvent(self.stream, tuple(lines)))

    def note(self, text: str) -> None:
        self.sink(LogEvent(self.stream, note=text))

    def finish(
        self, *, failed: bool = False, summary: str | None = None, link: str | None = None
    ) -> None:
        if self.ended:
            return
        self.ended = True
        self.sink(
            LogEvent(
                self.stream,
                done=True,
                failed=failed,
                summary=summary,
                tail=tuple(self.recent) if failed else (),
                link=link,
                total=self.count,
            )
        )


class CloudWatchTail:
    """The events of one CloudWatch Logs stream not read yet, oldest first.

    ``get_log_events`` from the head, then with the forward token. The end of the stream is
    when AWS answers the token it was given: a page can be empty with more events after it
    (CloudWatch Logs API reference, GetLogEvents), so an empty page does not end a read. A
    stream not created yet (a build still provisioning) reads as empty."""

    def __init__(self, logs: Any, group: str, stream: str, max_pages: int = 20) -> None:
        self.logs = logs
        self.group = group
        self.stream = stream
        self.max_pages = max_pages
        self.token: str | None = None

    def drain(self, max_pages: int = 1000) -> list[str]:
        """Everything left: for the end of a build, when no later read will come."""
        return self.read(max_pages)

    def read(self, max_pages: int | None = None) -> list[str]:
        messages: list[str] = []
        for _ in range(max_pages or self.max_pages):
            kwargs: dict[str, Any] = {
                "logGroupName": self.group,
                "logStreamName": self.stream,
                "startFromHead": True,
            }
            if self.token:
                kwargs["nextToken"] = self.token
            try:
                page = self.logs.get_log_events(**kwargs)
            except ClientError as exc:
                if error_code(exc) == "ResourceNotFoundException":
                    return messages
                raise
            messages += [str(e.get("message", "")) for e in page.get("events", [])]
            token = page.get("nextForwardToken")
            unchanged = not token or token == self.token
            self.token = token or self.token
            if unchanged:
                break
        return messages


class ServiceEvents:
    """ECS service events not seen before, oldest first (``describe_services`` lists the newest
    first, up to 100), from ``since`` on."""

    def __init__(self, since: datetime | None = None) -> None:
        self.since = since
        self.seen: set[str] = set()

    def new(self, services: Iterable[dict[str, Any]]) -> list[str]:
        fresh: list[tuple[Any, str]] = []
        for svc in services:
            for event in svc.get("events", []):
                key = str(event.get("id") or (event.get("createdAt"), event.get("message")))
                created = event.get("createdAt")
                if key in self.seen:
                    continue
                self.seen.add(key)
                if self.since is not None and created is not None and created < self.since:
                    continue
                stamp = created.strftime("%H:%M:%S ") if isinstance(created, datetime) else ""
                fresh.append((created or 0, f"{stamp}{event.get('message', '')}"))
        fresh.sort(key=lambda pair: pair[0].timestamp() if isinstance(pair[0], datetime) else 0)
        return [line for _, line in fresh]


def console_link(region: str, group: str) -> str:
    """The log group in the CloudWatch console (which escapes ``%`` as ``$25`` in its hash)."""
    encoded = quote(group, safe="").replace("%", "$25")
    return (
        f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
        f"#logsV2:log-groups/log-group/{encoded}"
    )

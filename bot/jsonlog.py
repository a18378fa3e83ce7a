"""Structured logs: one JSON object per line (``log_format = "json"``), for containers.

revieee's log lines are written as ``"what happened key=value key=value"``; the JSON formatter
keeps the line as ``msg`` and lifts each ``key=value`` into a field, so ``env``, ``op`` (the
operation id) and ``request_id`` can be searched. Known secret values (the Slack and GitHub
tokens and secrets from the environment) are replaced by ``[secret]`` in every line, JSON or
text, as a last line of defence: no code logs them on purpose.
"""

from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import queue
import re
from collections.abc import Iterable
from datetime import UTC, datetime

KEY_VALUE = re.compile(r"\b([a-z_]+)=('[^']*'|\"[^\"]*\"|[^\s,;]+)")
RESERVED = {"ts", "level", "logger", "msg", "exc"}
MIN_SECRET = 8  # shorter values would mask ordinary words


class _Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = sorted({s for s in secrets if s and len(s) >= MIN_SECRET}, key=len)[::-1]

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "[secret]")
        return text


class JsonFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.redact = _Redactor(secrets)

    def format(self, record: logging.LogRecord) -> str:
        message = self.redact(record.getMessage())
        event: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": message,
        }
        for key, value in KEY_VALUE.findall(message):
            if key not in RESERVED:
                event.setdefault(key, value.strip("'\""))
        if record.exc_info:
            event["exc"] = self.redact(self.formatException(record.exc_info))
        return json.dumps(event, ensure_ascii=False)


class RedactingFormatter(logging.Formatter):
    def __init__(self, fmt: str, secrets: Iterable[str] = ()) -> None:
        super().__init__(fmt)
        self.redact = _Redactor(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure(log_format: str, level: str, secrets: Iterable[str] = ()) -> None:
    """Set the root logger's level and formatter, and write its lines from a thread of their
    own: a request thread only formats its line and queues it. (Writing in the caller made
    the threads of ``serve`` queue for the handler's lock: 10% of its samples under load.)"""
    root = logging.getLogger()
    root.setLevel(level.upper())
    values = list(secrets)
    formatter: logging.Formatter = (
        JsonFormatter(values) if log_format == "json" else RedactingFormatter(TEXT_FORMAT, values)
    )
    global _listener
    handlers = [h for h in root.handlers if not isinstance(h, logging.handlers.QueueHandler)]
    if _listener is not None:
        _listener.stop()
        handlers = list(_listener.handlers)
    for handler in handlers:
        handler.setFormatter(logging.Formatter("%(message)s"))  # formatted when queued
        root.removeHandler(handler)
    for old in [h for h in root.handlers if isinstance(h, logging.handlers.QueueHandler)]:
        root.removeHandler(old)
    lines: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    queued = logging.handlers.QueueHandler(lines)
    queued.setFormatter(formatter)
    root.addHandler(queued)
    _listener = logging.handlers.QueueListener(lines, *handlers, respect_handler_level=True)
    _listener.start()


def _flush() -> None:
    """What is queued is written before the process ends."""
    if _listener is not None and getattr(_listener, "_thread", None) is not None:
        _listener.stop()


_listener: logging.handlers.QueueListener | None = None
atexit.register(_flush)

"""CloudWatch Logs as it behaves, where moto's does not.

- ``GetLogEvents`` "can return an empty page even if there are more events to read: you have
  reached the end of the stream when the returned nextForwardToken is the same as the token you
  passed" (CloudWatch Logs API reference, GetLogEvents, ``nextForwardToken``; notes:
  real-services-rules.md). moto never returns an empty page before the end. Here every page with
  events is preceded by an empty page whose token differs, so a reader that stops at the first
  empty page loses every line.
- ``FilterLogEvents``: 5 requests per second per account and Region, a hard quota
  (:mod:`bot.strict_aws.throttle`).
"""

from __future__ import annotations

import itertools
import threading

from bot.strict_aws.wire import Answer, Call, json_answer


class Logs:
    def __init__(self, empty_pages: bool = True) -> None:
        self.empty_pages = empty_pages
        self._held: dict[str, dict] = {}  # our token -> the request it stands for
        self._ids = itertools.count(10**55)
        self._lock = threading.Lock()
        self.empty_pages_sent = 0

    def reset(self) -> None:
        with self._lock:
            self._held.clear()
            self.empty_pages_sent = 0

    def before(self, call: Call) -> Answer | None:
        if call.action != "GetLogEvents":
            return None
        token = call.params.get("nextToken")
        with self._lock:
            held = self._held.pop(token, None) if token else None
        if held is not None:  # the page the empty one stood in for
            call.params = dict(held)
            call.rewritten = True
            call.extra["released"] = True
        return None

    def after(self, call: Call, answer: Answer) -> Answer:
        if (
            call.action != "GetLogEvents"
            or not self.empty_pages
            or answer.status != 200
            or call.extra.get("released")
        ):
            return answer
        data = answer.json()
        if not data.get("events"):
            return answer
        with self._lock:
            token = f"f/{next(self._ids)}"
            self._held[token] = dict(call.params)
            self.empty_pages_sent += 1
        return json_answer(
            {"events": [], "nextForwardToken": token, "nextBackwardToken": f"b/{token[2:]}"}
        )

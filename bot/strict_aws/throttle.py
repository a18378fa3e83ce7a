"""Token buckets, as AWS throttles an account's API calls per Region.

Sources:
- ECS: "Request throttling for the Amazon ECS API" (docs.aws.amazon.com/AmazonECS/latest/
  APIReference/request-throttling.html): a token bucket per group of actions; the page's own
  example is cluster reads with a bucket of 50 and a refill of 20 per second. We use that for
  every read and a smaller refill for the service and task-definition writes.
- CloudWatch Logs quotas (docs.aws.amazon.com/AmazonCloudWatch/latest/logs/
  cloudwatch_limits_cwl.html): ``FilterLogEvents`` 5 transactions per second per account and
  Region, a hard limit; ``GetLogEvents`` 10 (25 in some Regions).
- Cloud Map quotas (docs.aws.amazon.com/cloud-map/latest/dg/cloud-map-limits.html): API
  request rates; ``ListInstances`` is known to throttle (kubernetes-sigs/external-dns#2505).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    burst: float
    per_second: float


ECS_READ = Limit(50, 20)
ECS_WRITE = Limit(50, 5)  # not published per action; lower than reads
LOGS_FILTER = Limit(5, 5)
LOGS_GET = Limit(10, 10)
CLOUD_MAP = Limit(50, 20)


def limit_for(service: str, action: str) -> tuple[str, Limit] | None:
    """(bucket name, limit) of an action, or None when we do not throttle it."""
    if service == "ecs":
        if action.startswith(("Describe", "List")):
            return "ecs:read", ECS_READ
        return "ecs:write", ECS_WRITE
    if service == "logs":
        if action == "FilterLogEvents":
            return "logs:FilterLogEvents", LOGS_FILTER
        if action == "GetLogEvents":
            return "logs:GetLogEvents", LOGS_GET
        return None
    if service == "servicediscovery":
        return "servicediscovery", CLOUD_MAP
    return None


class Buckets:
    """Every bucket of one account and Region; ``take`` answers whether a call may go."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, scale: float = 1.0) -> None:
        self._clock = clock
        self._scale = scale  # > 1: a more generous AWS (benchmarks of other things)
        self._state: dict[str, tuple[float, float]] = {}  # name -> (tokens, at)
        self._lock = threading.Lock()
        self.throttled: dict[str, int] = {}

    def take(self, service: str, action: str) -> bool:
        found = limit_for(service, action)
        if found is None:
            return True
        name, limit = found
        burst, rate = limit.burst * self._scale, limit.per_second * self._scale
        with self._lock:
            now = self._clock()
            tokens, at = self._state.get(name, (burst, now))
            tokens = min(burst, tokens + (now - at) * rate)
            if tokens >= 1:
                self._state[name] = (tokens - 1, now)
                return True
            self._state[name] = (tokens, now)
            self.throttled[name] = self.throttled.get(name, 0) + 1
            return False

    def reset(self) -> None:
        with self._lock:
            self._state.clear()
            self.throttled.clear()

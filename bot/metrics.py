"""``GET /metrics`` in Prometheus's text format (version 0.0.4).

Operation counts and durations come from the store (so they survive restarts and count the
work of every worker process on the database); the queue depth and environments by status
too. Errors of outgoing calls: Slack and GitHub from the audit events their notifiers write,
AWS from botocore's event hooks in this process (:class:`AwsErrors`).
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from bot.aws import AwsClients
from bot.store import Store

BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800)  # seconds
FINAL = ("succeeded", "failed", "superseded", "cancelled")


class AwsErrors:
    """Counts AWS API calls that ended in an error (HTTP >= 400 or no answer), by operation."""

    def __init__(self, clients: AwsClients) -> None:
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self._lock = threading.Lock()
        clients.each(self._watch)

    def _watch(self, client: Any) -> None:
        client.meta.events.register("after-call.*.*", self._after_call)
        client.meta.events.register("after-call-error.*.*", self._call_error)

    def _count(self, model: Any, code: str) -> None:
        key = (model.service_model.service_name, model.name, code)
        with self._lock:
            self.counts[key] += 1

    def _after_call(self, http_response: Any, parsed: Any, model: Any, **_: Any) -> None:
        if getattr(http_response, "status_code", 200) >= 400:
            code = str((parsed or {}).get("Error", {}).get("Code") or http_response.status_code)
            self._count(model, code)

    def _call_error(self, exception: BaseException, model: Any, **_: Any) -> None:
        self._count(model, type(exception).__name__)

    def snapshot(self) -> dict[tuple[str, str, str], int]:
        with self._lock:
            return dict(self.counts)


def _labels(**labels: str) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{escape(str(v))}"' for k, v in labels.items()) + "}"


def render(store: Store, aws_errors: AwsErrors | None = None) -> str:
    """The whole exposition, one scrape."""
    out: list[str] = []

    out += [
        "# HELP revieee_operations_total Operations that ended, by kind and result.",
        "# TYPE revieee_operations_total counter",
    ]
    for kind, status, count in store.operations_ended(FINAL):
        out.append(f"revieee_operations_total{_labels(kind=kind, result=status)} {count}")

    out += [
        "# HELP revieee_operation_duration_seconds Time from start to end of operations.",
        "# TYPE revieee_operation_duration_seconds histogram",
    ]
    for kind, status, counts, total, seconds in store.operation_durations(FINAL, BUCKETS):
        for bound, count in zip(BUCKETS, counts, strict=True):
            labels = _labels(kind=kind, result=status, le=str(bound))
            out.append(f"revieee_operation_duration_seconds_bucket{labels} {count}")
        inf = _labels(kind=kind, result=status, le="+Inf")
        out.append(f"revieee_operation_duration_seconds_bucket{inf} {total}")
        both = _labels(kind=kind, result=status)
        out.append(f"revieee_operation_duration_seconds_sum{both} {seconds:.3f}")
        out.append(f"revieee_operation_duration_seconds_count{both} {total}")

    states = store.operations_under_way()
    out += [
        "# HELP revieee_queue_depth Operations waiting to run.",
        "# TYPE revieee_queue_depth gauge",
        f"revieee_queue_depth {states['queued']}",
        "# HELP revieee_operations_running Operations being carried out.",
        "# TYPE revieee_operations_running gauge",
        f"revieee_operations_running {states['running']}",
        "# HELP revieee_rollouts_waiting Rollouts the watcher waits for (no worker held).",
        "# TYPE revieee_rollouts_waiting gauge",
        f"revieee_rollouts_waiting {states['waiting']}",
        "# HELP revieee_environments Environments by status.",
        "# TYPE revieee_environments gauge",
    ]
    for status, count in store.environments_by_status():
        out.append(f"revieee_environments{_labels(status=status)} {count}")

    out += [
        "# HELP revieee_call_errors_total Failed calls to Slack, GitHub and AWS.",
        "# TYPE revieee_call_errors_total counter",
    ]
    for action, service in (("slack error", "slack"), ("github error", "github")):
        count = store.audit_count(action)
        out.append(f"revieee_call_errors_total{_labels(service=service)} {count}")
    aws = aws_errors.snapshot() if aws_errors else {}
    out.append(f"revieee_call_errors_total{_labels(service='aws')} {sum(aws.values())}")
    out += [
        "# HELP revieee_aws_errors_total Failed AWS API calls by operation and error code.",
        "# TYPE revieee_aws_errors_total counter",
    ]
    for (service, operation, code), count in sorted(aws.items()):
        labels = _labels(service=service, operation=operation, code=code)
        out.append(f"revieee_aws_errors_total{labels} {count}")
    return "\n".join(out) + "\n"

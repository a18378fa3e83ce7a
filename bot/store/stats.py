"""Counts for ``GET /metrics``: operations that ended and how long they took, environments by
status, audit events by action."""

from __future__ import annotations

from collections.abc import Sequence

from bot.store.connection import Connection


class Stats(Connection):
    """Read-only aggregates over the other tables."""

    def operations_ended(self, statuses: Sequence[str]) -> list[tuple[str, str, int]]:
        """(kind, status, count) of the operations in one of ``statuses``, by kind and status."""
        marks = ", ".join("?" * len(statuses))
        rows = self.db.conn.execute(
            f"select kind, status, count(*) from operations where status in ({marks}) "
            "group by kind, status order by kind, status",
            list(statuses),
        ).fetchall()
        return [(str(kind), str(status), int(count)) for kind, status, count in rows]

    def operation_durations(
        self, statuses: Sequence[str], buckets: Sequence[float]
    ) -> list[tuple[str, str, list[int], int, float]]:
        """(kind, status, counts, count, seconds) of the operations in one of ``statuses`` that
        started and finished, by kind and status: ``counts[i]`` of them took at most
        ``buckets[i]`` seconds, ``count`` in all, ``seconds`` together."""
        cases = ", ".join("sum(case when d <= ? then 1 else 0 end)" for _ in buckets)
        marks = ", ".join("?" * len(statuses))
        rows = self.db.conn.execute(
            f"select kind, status, {cases}, count(*), sum(d) from ("
            "  select kind, status, (julianday(finished_at) - julianday(started_at)) * 86400 as d"
            f"  from operations where status in ({marks}) and started_at is not null"
            "  and finished_at is not null"
            ") group by kind, status order by kind, status",
            [*buckets, *statuses],
        ).fetchall()
        n = len(buckets)
        return [
            (str(r[0]), str(r[1]), [int(c) for c in r[2 : 2 + n]], int(r[2 + n]), r[3 + n] or 0.0)
            for r in rows
        ]

    def environments_by_status(self) -> list[tuple[str, int]]:
        """(status, how many environments have it), by status."""
        rows = self.db.conn.execute(
            "select status, count(*) from environments group by status order by status"
        ).fetchall()
        return [(str(status), int(count)) for status, count in rows]

    def audit_count(self, action: str) -> int:
        """How many audit events ``action`` has (e.g. "slack error")."""
        row = self.db.conn.execute(
            "select count(*) from audit_events where action = ?", [action]
        ).fetchone()
        return int(row[0])

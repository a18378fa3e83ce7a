"""The lifecycle's bookkeeping: usage intervals (what environments cost) and periodic jobs."""

from __future__ import annotations

from datetime import datetime

from bot.store.connection import Connection, now_iso, writes


class Usage(Connection):
    """The ``usage`` and ``job_runs`` tables."""

    def set_usage(
        self, env: str, state: str | None, rate: float | None = None, at: str = ""
    ) -> None:
        """Close the environment's open usage interval (if any) and open one in ``state``
        (running, sleeping, auto_stopped), or none when ``state`` is None."""
        at = at or now_iso()
        with self.immediate() as db:
            open_row = db.conn.execute(
                "select id, state, rate, started_at from usage where env = ? and ended_at is null",
                [env],
            ).fetchone()
            if open_row and state == open_row[1] and (rate is None or rate == open_row[2]):
                return
            db.conn.execute(
                "update usage set ended_at = ? where env = ? and ended_at is null", [at, env]
            )
            if open_row and open_row[1] == "running":
                hours = (
                    datetime.fromisoformat(at) - datetime.fromisoformat(open_row[3])
                ).total_seconds() / 3600
                db.conn.execute(
                    "update environments set cost_closed = coalesce(cost_closed, 0) + ?, "
                    "running_since = null where name = ?",
                    [max(hours, 0.0) * float(open_row[2] or 0), env],
                )
            if state:
                self.insert_row(
                    "usage", {"env": env, "state": state, "rate": rate or 0.0, "started_at": at}
                )
            if state == "running":
                db.conn.execute(
                    "update environments set running_since = ?, hourly_rate = ? where name = ?",
                    [at, rate or 0.0, env],
                )

    def usage_totals(
        self, start: str | None = None, end: str | None = None, env: str | None = None
    ) -> dict[str, dict[str, tuple[float, float]]]:
        """env -> state -> (hours, USD) over the intervals, clipped to [start, end] (an open
        interval counts until ``end``, now by default)."""
        end = end or now_iso()
        start = start or "0001-01-01T00:00:00+00:00"
        sql = (
            "select env, state, sum(hours), sum(hours * rate) from ("
            "  select env, state, rate, max(0, (min(julianday(coalesce(ended_at, :end)),"
            "  julianday(:end)) - max(julianday(started_at), julianday(:start))) * 24) as hours"
            "  from usage where (ended_at is null or ended_at > :start) and started_at < :end"
            + (" and env = :env" if env else "")
            + ") group by env, state"
        )
        out: dict[str, dict[str, tuple[float, float]]] = {}
        for name, state, hours, cost in self.db.conn.execute(
            sql, {"start": start, "end": end, "env": env}
        ).fetchall():
            out.setdefault(name, {})[state] = (float(hours or 0), float(cost or 0))
        return out

    @writes
    def claim_period(self, job: str, period: str) -> bool:
        """True the first time ``job`` claims ``period`` (e.g. a day), False after that."""
        cur = self.db.conn.execute(
            "insert or ignore into job_runs (job, period, at) values (?, ?, ?)",
            [job, period, now_iso()],
        )
        return cur.rowcount == 1

    @writes
    def release_period(self, job: str, period: str) -> None:
        """Undo :meth:`claim_period` (the job did not get done: its next run tries again)."""
        self.db.conn.execute("delete from job_runs where job = ? and period = ?", [job, period])

    def auto_stopped_since(self, start: datetime) -> set[str]:
        """The environments stopped by the lifecycle (expired) since ``start``."""
        rows = self.db.query(
            "select distinct env from usage where state = 'auto_stopped' and started_at >= ?",
            [start.isoformat()],
        )
        return {row["env"] for row in rows}

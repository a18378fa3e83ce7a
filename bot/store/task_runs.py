"""One-off tasks: what revieee started at a moment of an environment's life (``on_create``,
``release``, ``on_stop``), found again by its operation after a crash so that a task is waited
for, not started twice."""

from __future__ import annotations

import json
from typing import Any

from bot.store.connection import Connection, now_iso, writes

_COLUMNS = (
    "id, env, operation_id, name, moment, service, task_arn, status, exit_code, seconds, "
    "reason, lines, started_at, ended_at"
)


class TaskRuns(Connection):
    """The ``task_runs`` table."""

    @writes
    def start_task_run(
        self, env: str, operation_id: int, name: str, moment: str, service: str
    ) -> int:
        return self.insert_row(
            "task_runs",
            {
                "env": env,
                "operation_id": operation_id,
                "name": name,
                "moment": moment,
                "service": service,
                "status": "starting",
                "started_at": now_iso(),
            },
        )

    @writes
    def set_task_arn(self, run_id: int, arn: str) -> None:
        self.db.conn.execute(
            "update task_runs set task_arn = ?, status = 'running' where id = ?", [arn, run_id]
        )

    @writes
    def finish_task_run(
        self,
        run_id: int,
        status: str,
        *,
        exit_code: int | None,
        seconds: float | None,
        reason: str | None,
        lines: list[str],
    ) -> None:
        self.db.conn.execute(
            "update task_runs set status = ?, exit_code = ?, seconds = ?, reason = ?, lines = ?, "
            "ended_at = ? where id = ?",
            [status, exit_code, seconds, reason, json.dumps(lines), now_iso(), run_id],
        )

    def task_run(self, operation_id: int, moment: str, name: str) -> dict[str, Any] | None:
        """The newest run of task ``name`` at ``moment`` by the operation, None if none."""
        rows = self._rows(
            "where operation_id = ? and moment = ? and name = ? order by id desc limit 1",
            [operation_id, moment, name],
        )
        return rows[0] if rows else None

    def task_runs(self, operation_id: int) -> list[dict[str, Any]]:
        """Every task the operation ran, oldest first (``lines`` as a list)."""
        return self._rows("where operation_id = ? order by id", [operation_id])

    def recent_task_runs(self, env: str, limit: int = 5) -> list[dict[str, Any]]:
        """The environment's newest task runs, newest first."""
        return self._rows("where env = ? order by id desc limit ?", [env, limit])

    def _rows(self, where: str, args: list[Any]) -> list[dict[str, Any]]:
        cur = self.db.conn.execute(f"select {_COLUMNS} from task_runs {where}", args)
        names = [d[0] for d in cur.description]
        out = []
        for row in cur.fetchall():
            item = dict(zip(names, row, strict=True))
            item["lines"] = json.loads(item["lines"] or "[]")
            out.append(item)
        return out

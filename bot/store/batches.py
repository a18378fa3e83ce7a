"""Batches: the evening's sleep and the morning's wake of many environments at once, and the
summary messages that say how they went (one per channel)."""

from __future__ import annotations

import json
from typing import Any

from bot.store.connection import Connection, now_iso, writes


class Batches(Connection):
    """The ``batches`` table, and the operations of each batch."""

    @writes
    def start_batch(self, kind: str) -> int:
        return self.insert_row("batches", {"kind": kind, "started_at": now_iso()})

    def get_batch(self, batch: int) -> dict[str, Any] | None:
        row = self.db.conn.execute(
            "select id, kind, started_at, finished_at, messages, updated_at from batches "
            "where id = ?",
            [batch],
        ).fetchone()
        if row is None:
            return None
        keys = ("id", "kind", "started_at", "finished_at", "messages", "updated_at")
        out = dict(zip(keys, row, strict=True))
        out["messages"] = json.loads(out["messages"] or "{}")
        return out

    def batch_operations(self, batch: int) -> list[dict[str, Any]]:
        """Every operation of ``batch`` (oldest first) with what its environment is now."""
        return list(
            self.db.query(
                "select o.id, o.kind, o.env, o.app, o.status, o.error, o.params, "
                "o.created_at, o.finished_at, e.status as env_status, e.url, e.owner, "
                "e.hourly_rate from operations o left join environments e on e.name = o.env "
                "where o.batch = ? order by o.id",
                [batch],
            )
        )

    def open_batches(self, since: str) -> list[int]:
        """Batches started after ``since`` whose summary is not final yet."""
        rows = self.db.conn.execute(
            "select id from batches where finished_at is null and started_at > ? order by id",
            [since],
        ).fetchall()
        return [r[0] for r in rows]

    @writes
    def set_batch_message(self, batch: int, key: str, channel: str, ts: str) -> None:
        """The summary of ``batch`` for the channel ``key`` (as configured) is the message
        (``channel``, as Slack answered, ``ts``)."""
        with self.immediate() as db:
            row = db.conn.execute("select messages from batches where id = ?", [batch]).fetchone()
            messages = json.loads((row[0] if row else None) or "{}")
            messages[key] = [channel, ts]
            db.conn.execute(
                "update batches set messages = ?, updated_at = ? where id = ?",
                [json.dumps(messages, sort_keys=True), now_iso(), batch],
            )

    @writes
    def finish_batch(self, batch: int) -> bool:
        """Mark ``batch`` finished; True for the one caller (of any process) that did."""
        cur = self.db.conn.execute(
            "update batches set finished_at = ? where id = ? and finished_at is null",
            [now_iso(), batch],
        )
        return cur.rowcount == 1

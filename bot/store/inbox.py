"""Webhook deliveries and delayed actions, persisted before they are answered."""

from __future__ import annotations

from typing import Any

from bot.store.connection import Connection, now_iso, writes


class Inbox(Connection):
    """The ``inbox`` and ``deliveries`` tables."""

    def inbox_add(
        self,
        source: str,
        event: str,
        payload: str,
        delivery: str | None = None,
        due_at: str | None = None,
    ) -> int | None:
        """Persist a delivery (once per ``delivery`` id) or a delayed action; None for a repeat."""
        now = now_iso()
        with self.immediate() as db:
            if delivery is not None:
                cur = db.conn.execute(
                    "insert or ignore into deliveries (id, source, received_at) values (?, ?, ?)",
                    [f"{source}:{delivery}", source, now],
                )
                if cur.rowcount != 1:
                    return None
            cur = db.conn.execute(
                "insert into inbox (source, delivery, event, payload, received_at, due_at, "
                "status, attempts) values (?, ?, ?, ?, ?, ?, 'pending', 0)",
                [source, delivery, event, payload, now, due_at or now],
            )
            return int(cur.lastrowid or 0)

    def inbox_claim(self, now: str | None = None) -> dict[str, Any] | None:
        """Take the oldest due pending item (marks it running)."""
        with self.immediate() as db:
            row = db.conn.execute(
                "select id from inbox where status = 'pending' and due_at <= ? "
                "order by due_at, id limit 1",
                [now or now_iso()],
            ).fetchone()
            if row is None:
                return None
            db.conn.execute(
                "update inbox set status = 'running', attempts = attempts + 1 where id = ?",
                [row[0]],
            )
        return dict(self.db.table("inbox").get(row[0]))

    @writes
    def inbox_finish(self, item_id: int, status: str, error: str | None = None) -> None:
        self.db.table("inbox").update(
            item_id, {"status": status, "error": error, "done_at": now_iso()}
        )

    @writes
    def inbox_retry(self, item_id: int, due_at: str, error: str) -> None:
        self.db.table("inbox").update(
            item_id, {"status": "pending", "due_at": due_at, "error": error}
        )

    @writes
    def inbox_recover(self) -> int:
        """Items left running by a process that stopped go back to pending (at start)."""
        cur = self.db.conn.execute("update inbox set status = 'pending' where status = 'running'")
        return cur.rowcount

    def inbox_items(self, status: str | None = None) -> list[dict[str, Any]]:
        if status:
            return list(self.db.query("select * from inbox where status = ? order by id", [status]))
        return list(self.db.query("select * from inbox order by id"))

    def next_due(self) -> str | None:
        row = self.db.conn.execute(
            "select min(due_at) from inbox where status = 'pending'"
        ).fetchone()
        return row[0] if row else None

    @writes
    def first_delivery(self, source: str, delivery_id: str) -> bool:
        """Record a delivery id; True the first time it is seen, False for a repeat."""
        cur = self.db.conn.execute(
            "insert or ignore into deliveries (id, source, received_at) values (?, ?, ?)",
            [f"{source}:{delivery_id}", source, now_iso()],
        )
        return cur.rowcount == 1

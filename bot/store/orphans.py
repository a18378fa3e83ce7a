"""AWS resources with revieee's tags and no active environment, found by the sweeper."""

from __future__ import annotations

from typing import Any

from bot.store.connection import Connection, now_iso, writes


class Orphans(Connection):
    """The ``orphans`` table."""

    @writes
    def record_orphan(self, **fields: Any) -> bool:
        """Record a found orphan; True when it is new (not seen, or seen deleted, before)."""
        known = self.db.conn.execute(
            "select deleted_at from orphans where id = ?", [fields["id"]]
        ).fetchone()
        if known is not None and known[0] is None:
            return False
        self.db.table("orphans").upsert(
            {"found_at": now_iso(), "deleted_at": None, "reported_at": None, **fields}, pk="id"
        )
        return True

    @writes
    def update_orphan(self, orphan_id: str, **fields: Any) -> None:
        self.db.table("orphans").update(orphan_id, fields)

    def orphans(self, include_deleted: bool = False) -> list[dict[str, Any]]:
        sql = "select * from orphans" + ("" if include_deleted else " where deleted_at is null")
        return list(self.db.query(sql + " order by found_at, id"))

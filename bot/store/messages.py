"""Where revieee's chat messages about an environment are, and the audit trail."""

from __future__ import annotations

import json
from typing import Any

from bot.store.connection import Connection, now_iso, writes


class Messages(Connection):
    """The ``messages`` and ``audit_events`` tables."""

    @writes
    def set_message(self, env: str, kind: str, channel: str, ts: str) -> None:
        self.db.table("messages").upsert(
            {"env": env, "kind": kind, "channel": channel, "ts": ts, "created_at": now_iso()},
            pk=("env", "kind"),
        )

    def get_message(self, env: str, kind: str) -> dict[str, Any] | None:
        rows = list(self.db.query("select * from messages where env = ? and kind = ?", [env, kind]))
        return rows[0] if rows else None

    def env_for_message(self, channel: str, ts: str) -> str | None:
        """The environment whose notification is the message (channel, ts), if any."""
        row = self.db.conn.execute(
            "select env from messages where channel = ? and ts = ?", [channel, ts]
        ).fetchone()
        return row[0] if row else None

    @writes
    def audit(
        self,
        action: str,
        actor: str | None,
        env: str | None = None,
        source: str | None = None,
        **detail: Any,
    ) -> None:
        self.insert_row(
            "audit_events",
            {
                "at": now_iso(),
                "actor": actor,
                "action": action,
                "env": env,
                "source": source,
                "detail": json.dumps(detail, sort_keys=True, default=str),
            },
        )

    def audit_events(self, env: str | None = None) -> list[dict[str, Any]]:
        if env:
            return list(
                self.db.query("select * from audit_events where env = ? order by id", [env])
            )
        return list(self.db.query("select * from audit_events order by id"))

"""Review environments: one row each, looked up by name or by (app, branch)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.events import ACTIVE
from bot.store.connection import Connection, column_name, now_iso, writes


class Environments(Connection):
    """The ``environments`` table."""

    def get_env(self, name: str) -> dict[str, Any] | None:
        rows = list(self.db.query("select * from environments where name = ?", [name]))
        return rows[0] if rows else None

    def env_of_branch(self, app: str, branch: str) -> dict[str, Any] | None:
        """The environment of ``app`` for exactly ``branch`` (as stored), None if none."""
        rows = list(
            self.db.query("select * from environments where app = ? and branch = ?", [app, branch])
        )
        return rows[0] if rows else None

    @writes
    def upsert_env(self, name: str, **fields: Any) -> None:
        stamp = now_iso()
        existing = self.get_env(name)
        if existing is None:
            row = {
                "name": name,
                "created_at": stamp,
                "updated_at": stamp,
                "last_activity_at": stamp,
                **fields,
            }
            self.insert_row("environments", row)
        else:
            # plain SQL on the request path: sqlite-utils' update introspects the table first
            # (several statements, each a chance to wait for the interpreter under load)
            changes = {"updated_at": stamp, **fields}
            columns = ", ".join(f"[{column_name(k)}] = ?" for k in changes)
            self.db.conn.execute(
                f"update environments set {columns} where name = ?", [*changes.values(), name]
            )

    def list_envs(
        self,
        *,
        app: str | None = None,
        owner: str | None = None,
        include_stopped: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """The environments that match, newest first (then by name): at most ``limit`` of
        them, after skipping ``offset``."""
        # "+status": filter rows but walk the age index, so no sort of every row is needed
        where, args = _list_filter(app, owner, include_stopped, "+status")
        sql = (
            "select name, app, branch, status, url, owner, created_at, expires_at, "
            f"cost_closed, running_since, hourly_rate from environments{where} "
            "order by created_at desc, name"
        )
        if limit or offset:
            sql += f" limit {int(limit) if limit else -1} offset {max(int(offset), 0)}"
        return [
            dict(zip(_LIST_COLUMNS, r, strict=True))
            for r in self.db.conn.execute(sql, args).fetchall()
        ]

    def count_envs(
        self, *, app: str | None = None, owner: str | None = None, include_stopped: bool = False
    ) -> int:
        """How many environments :meth:`list_envs` has with the same filters, in all."""
        where, args = _list_filter(app, owner, include_stopped, "status")
        sql = f"select count(*) from environments{where}"
        return int(self.db.conn.execute(sql, args).fetchone()[0])

    def capacity_in_use(self, except_env: str = "") -> tuple[float, int, int]:
        """(vCPUs, services, environments) of every environment that runs tasks or is about
        to (not stopped, asleep or failed), ``except_env`` left out."""
        row = self.db.conn.execute(
            "select coalesce(sum(vcpu), 0), coalesce(sum(case when services is null then 0 "
            "else json_array_length(services) end), 0), count(case when vcpu > 0 then 1 end) "
            "from environments where status in ('running', 'deploying', 'stopping') "
            "and name != ?",
            [except_env],
        ).fetchone()
        return float(row[0]), int(row[1]), int(row[2])

    def lifecycle_envs(self) -> list[dict[str, Any]]:
        """Every environment that is not stopped, with its pull requests' states ("open",
        "closed", "merged"; several joined with commas) and where its message is."""
        sql = (
            "select e.name, e.app, e.branch, e.status, e.url, e.owner, e.created_at, "
            "e.last_activity_at, e.expires_at, e.reminded_at, e.pinned, e.hourly_rate, "
            "e.cost_closed, e.running_since, "
            "(select group_concat(p.state) from pull_requests p where p.env = e.name) as prs, "
            "(select group_concat(p.html_url) from pull_requests p where p.env = e.name) "
            "as pr_urls, "
            "m.channel, m.ts from environments e left join messages m "
            "on m.env = e.name and m.kind = 'deploy' "
            f"where e.status in ({', '.join('?' * len(ACTIVE))})"
        )
        cur = self.db.conn.execute(sql, list(ACTIVE))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    @writes
    def mark_reminded(self, names: list[str], at: str) -> None:
        for i in range(0, len(names), 500):
            chunk = names[i : i + 500]
            self.db.conn.execute(
                f"update environments set reminded_at = ? where name in "
                f"({', '.join('?' * len(chunk))})",
                [at, *chunk],
            )


def _list_filter(
    app: str | None, owner: str | None, include_stopped: bool, status: str
) -> tuple[str, list[Any]]:
    """A listing's ``where`` clause (empty, or starting with a space) and its arguments;
    ``status``: the status column as the query names it."""
    where: list[str] = []
    args: list[Any] = []
    if not include_stopped:
        where.append(f"{status} in ({', '.join('?' * len(ACTIVE))})")
        args.extend(ACTIVE)
    if app:
        where.append("app = ?")
        args.append(app)
    if owner:
        where.append("owner = ?")
        args.append(owner)
    return (" where " + " and ".join(where) if where else ""), args


# What a listing needs (get_env has every column).
_LIST_COLUMNS = (
    "name",
    "app",
    "branch",
    "status",
    "url",
    "owner",
    "created_at",
    "expires_at",
    "cost_closed",
    "running_since",
    "hourly_rate",
)


def cost_so_far(row: dict[str, Any], now: datetime) -> float:
    """USD an environment's running hours cost so far (from its row: closed intervals plus the
    open running one)."""
    cost = float(row.get("cost_closed") or 0.0)
    if row.get("running_since"):
        hours = (now - datetime.fromisoformat(row["running_since"])).total_seconds() / 3600
        cost += max(hours, 0.0) * float(row.get("hourly_rate") or 0.0)
    return cost

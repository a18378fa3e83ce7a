"""The images revieee built (or waited for), and which of them environments still run."""

from __future__ import annotations

import json
from typing import Any

from bot.store.connection import Connection, column_name, now_iso, writes


class Builds(Connection):
    """The ``builds`` table."""

    @writes
    def add_build(self, **fields: Any) -> None:
        self.insert_row("builds", {"started_at": now_iso(), "status": "IN_PROGRESS", **fields})

    @writes
    def update_build(self, build_id: str, **fields: Any) -> None:
        columns = ", ".join(f"[{column_name(k)}] = ?" for k in fields)
        self.db.conn.execute(
            f"update builds set {columns} where id = ?", [*fields.values(), build_id]
        )

    def build_in_progress(self, ecr_repository: str, tag: str) -> dict[str, Any] | None:
        """The newest unfinished build of ``ecr_repository:tag``, if any."""
        rows = list(
            self.db.query(
                "select * from builds where ecr_repository = ? and tag = ? "
                "and status = 'IN_PROGRESS' order by started_at desc limit 1",
                [ecr_repository, tag],
            )
        )
        return rows[0] if rows else None

    def builds(
        self, *, env: str | None = None, operation_id: int | None = None
    ) -> list[dict[str, Any]]:
        where: list[str] = []
        args: list[Any] = []
        if env is not None:
            where.append("env = ?")
            args.append(env)
        if operation_id is not None:
            where.append("operation_id = ?")
            args.append(operation_id)
        clause = f" where {' and '.join(where)}" if where else ""
        return list(self.db.query(f"select * from builds{clause} order by started_at", args))

    def images_in_use(self, except_env: str | None = None) -> set[str]:
        """``repo:tag`` and digests of the images that environments not stopped run (by their
        newest deployment), except ``except_env``'s."""
        rows = self.db.conn.execute(
            "select d.images from deployments d join environments e on e.name = d.env "
            "where e.status != 'stopped' and e.name != ? and d.images is not null "
            "and d.id = (select max(id) from deployments where env = e.name "
            "and images is not null)",
            [except_env or ""],
        ).fetchall()
        used: set[str] = set()
        for (images,) in rows:
            for plan in json.loads(images):
                image = str(plan.get("image") or "")
                if "@" in image:
                    used.add(image.split("@", 1)[1])
                if plan.get("tag"):
                    repo = image.split("@")[0].split("/", 1)[-1]  # without the registry host
                    used.add(f"{repo}:{plan['tag']}")
        return used

"""Operations (persisted requests to deploy, stop, sleep...) and the deployments they make."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from bot.store.connection import Connection, now_iso, writes


@dataclass(frozen=True)
class Operation:
    """A persisted request to deploy or stop an environment."""

    id: int
    kind: str
    env: str
    app: str
    branch: str
    params: dict[str, Any]
    status: str
    step: str | None
    requested_by: str | None
    source: str | None
    attempts: int
    error: str | None
    batch: int | None = None  # the scheduled sleep or wake it is part of

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Operation:
        return cls(
            id=row["id"],
            kind=row["kind"],
            env=row["env"],
            app=row["app"],
            branch=row["branch"],
            params=json.loads(row["params"] or "{}"),
            status=row["status"],
            step=row["step"],
            requested_by=row["requested_by"],
            source=row["source"],
            attempts=row["attempts"] or 0,
            error=row["error"],
            batch=row.get("batch"),
        )


class Operations(Connection):
    """The ``operations`` and ``deployments`` tables."""

    @writes
    def start_deployment(self, **fields: Any) -> int:
        table = self.db.table("deployments")
        table.insert({"started_at": now_iso(), "result": "running", **fields})
        return int(table.last_pk or 0)

    @writes
    def update_deployment(self, deployment_id: int, **fields: Any) -> None:
        self.db.table("deployments").update(deployment_id, fields)

    @writes
    def finish_deployment(self, deployment_id: int, result: str, **fields: Any) -> None:
        self.db.table("deployments").update(
            deployment_id, {"finished_at": now_iso(), "result": result, **fields}
        )

    def deployments(self, env: str, limit: int = 20) -> list[dict[str, Any]]:
        return list(
            self.db.query(
                "select * from deployments where env = ? order by id desc limit ?", [env, limit]
            )
        )

    def enqueue(
        self,
        kind: str,
        env: str,
        app: str,
        branch: str,
        params: dict[str, Any],
        requested_by: str | None,
        source: str | None,
        batch: int | None = None,
    ) -> tuple[Operation, list[int]]:
        """Persist an operation; supersede queued (not running) ones of the same environment."""
        with self.immediate() as db:
            op_id = self.insert_row(
                "operations",
                {
                    "kind": kind,
                    "env": env,
                    "app": app,
                    "branch": branch,
                    "params": json.dumps(params, sort_keys=True),
                    "status": "queued",
                    "requested_by": requested_by,
                    "source": source,
                    "created_at": now_iso(),
                    "attempts": 0,
                    "batch": batch,
                },
            )
            superseded = [
                r[0]
                for r in db.conn.execute(
                    "select id from operations where env = ? and status = 'queued' and id < ?",
                    [env, op_id],
                ).fetchall()
            ]
            if superseded:
                db.conn.execute(
                    f"update operations set status = 'superseded', superseded_by = ?, "
                    f"finished_at = ? where id in ({', '.join('?' * len(superseded))})",
                    [op_id, now_iso(), *superseded],
                )
        return self.get_operation(op_id), superseded

    def busy_envs(self) -> set[str]:
        """Environments with an operation queued, running or waiting for its rollout (one
        query, not three full reads)."""
        rows = self.db.conn.execute(
            "select distinct env from operations where status in ('queued', 'running', 'waiting')"
        ).fetchall()
        return {r[0] for r in rows}

    def newer_operation(self, env: str, op_id: int) -> tuple[int, str] | None:
        """(id, kind) of the newest operation queued for ``env`` after ``op_id``, if any."""
        row = self.db.conn.execute(
            "select id, kind from operations where env = ? and status = 'queued' and id > ? "
            "order by id desc limit 1",
            [env, op_id],
        ).fetchone()
        return (int(row[0]), str(row[1])) if row else None

    def get_operation(self, op_id: int) -> Operation:
        return Operation.from_row(self.db.table("operations").get(op_id))

    def operation_row(self, op_id: int) -> dict[str, Any]:
        return dict(self.db.table("operations").get(op_id))

    def claim_next(self, owner: str, only: int | None = None) -> Operation | None:
        """Atomically mark the oldest runnable queued operation running and return it.

        Runnable: no other operation of the same environment is running.
        """
        with self.immediate() as db:
            sql = (
                "select id from operations o where status = 'queued' and not exists "
                "(select 1 from operations r where r.env = o.env and r.status = 'running')"
            )
            args: list[Any] = []
            if only is not None:
                sql += " and id = ?"
                args.append(only)
            row = db.conn.execute(sql + " order by id limit 1", args).fetchone()
            if row is None:
                return None
            stamp = now_iso()
            db.conn.execute(
                "update operations set status = 'running', started_at = ?, heartbeat_at = ?, "
                "owner = ?, attempts = attempts + 1, error = null where id = ?",
                [stamp, stamp, owner, row[0]],
            )
        return self.get_operation(row[0])

    @writes
    def set_step(self, op_id: int, step: str) -> None:
        self.db.conn.execute(
            "update operations set step = ?, heartbeat_at = ? where id = ?",
            [step, now_iso(), op_id],
        )

    @writes
    def finish_operation(self, op_id: int, status: str, error: str | None = None) -> None:
        self.db.conn.execute(
            "update operations set status = ?, error = ?, finished_at = ? where id = ?",
            [status, error, now_iso(), op_id],
        )

    def operations(self, status: str | None = None, env: str | None = None) -> list[Operation]:
        where: list[str] = []
        args: list[Any] = []
        if status:
            where.append("status = ?")
            args.append(status)
        if env:
            where.append("env = ?")
            args.append(env)
        sql = "select * from operations" + (" where " + " and ".join(where) if where else "")
        return [Operation.from_row(r) for r in self.db.query(sql + " order by id", args)]

    @writes
    def heartbeat(self, op_ids: list[int]) -> None:
        if op_ids:
            self.db.conn.execute(
                f"update operations set heartbeat_at = ? where id in "
                f"({', '.join('?' * len(op_ids))})",
                [now_iso(), *op_ids],
            )

    @writes
    def recover_interrupted(
        self, max_attempts: int, is_orphan: Callable[[str | None, str | None], bool]
    ) -> tuple[list[int], list[int]]:
        """After a crash: requeue operations left running by a dead worker (``is_orphan(owner,
        heartbeat_at)``), or fail those interrupted too often. Steps are idempotent, so a
        requeued operation simply runs again from the start."""
        resumed, failed = [], []
        with self.immediate() as db:
            rows = db.conn.execute(
                "select id, attempts, step, owner, heartbeat_at from operations "
                "where status = 'running'"
            ).fetchall()
            for op_id, attempts, step, owner, heartbeat_at in rows:
                if not is_orphan(owner, heartbeat_at):
                    continue
                if (attempts or 0) >= max_attempts:
                    db.conn.execute(
                        "update operations set status = 'failed', finished_at = ?, error = ? "
                        "where id = ?",
                        [
                            now_iso(),
                            f"interrupted {attempts} times (last at step: "
                            f"{step or 'start'}); not retried again",
                            op_id,
                        ],
                    )
                    failed.append(op_id)
                    self._give_up_env(db, op_id, attempts, step)
                else:
                    db.conn.execute("update operations set status = 'queued' where id = ?", [op_id])
                    resumed.append(op_id)
        return resumed, failed

    @staticmethod
    def _give_up_env(
        db: sqlite_utils.Database, op_id: int, attempts: int, step: str | None
    ) -> None:
        """The environment of an operation recovery gave up on: never left ``deploying`` or
        ``stopping`` (states nothing else ends), but ``failed``: shown so, reminded, expired and
        stopped by the lifecycle (which removes whatever AWS resources the deploy made)."""
        env = db.conn.execute("select env from operations where id = ?", [op_id]).fetchone()
        if env is None:
            return
        stamp = now_iso()
        db.conn.execute(
            "update environments set status = 'failed', error = ?, updated_at = ?, "
            "expires_at = coalesce(expires_at, ?) "
            "where name = ? and status in ('queued', 'deploying', 'stopping')",
            [
                f"revieee was interrupted {attempts} times (last at step: {step or 'start'}) "
                "and gave up; what it created may still run: redeploy it, or stop it",
                stamp,
                stamp,
                env[0],
            ],
        )
        db.conn.execute(
            "update deployments set result = 'interrupted', finished_at = ?, "
            "failure_reason = 'revieee was interrupted too often' "
            "where operation_id = ? and result in ('running', 'started')",
            [stamp, op_id],
        )

    def operations_under_way(self) -> dict[str, int]:
        """How many operations are queued, running and waiting for a rollout (``/healthz``)."""
        counts = dict(
            self.db.conn.execute(
                "select status, count(*) from operations "
                "where status in ('queued', 'running', 'waiting') group by status"
            ).fetchall()
        )
        return {s: counts.get(s, 0) for s in ("queued", "running", "waiting")}

    # -- rollouts waited for by the watcher (bot/watcher.py) --------------------------------------

    @writes
    def wait_operation(self, op_id: int, state: dict[str, Any]) -> None:
        """The running operation ``op_id`` started a rollout: it waits (``state`` says for
        what) without a worker; the watcher takes it up again."""
        self.db.conn.execute(
            "update operations set status = 'waiting', wait_state = ?, owner = null, "
            "heartbeat_at = ? where id = ? and status = 'running'",
            [json.dumps(state), now_iso(), op_id],
        )

    def waiting_operations(self) -> list[tuple[Operation, dict[str, Any]]]:
        """Every operation waiting for its rollout, oldest first, with what it waits for."""
        rows = self.db.query("select * from operations where status = 'waiting' order by id")
        return [(Operation.from_row(r), json.loads(r["wait_state"] or "{}")) for r in rows]

    def take_waiting(self, op_id: int, owner: str) -> bool:
        """Make the waiting operation ``op_id`` running again for ``owner`` (to finish it);
        False when it is not waiting any more (another watcher, or a newer request, took it)."""
        with self.immediate() as db:
            cur = db.conn.execute(
                "update operations set status = 'running', owner = ?, heartbeat_at = ? "
                "where id = ? and status = 'waiting'",
                [owner, now_iso(), op_id],
            )
            return cur.rowcount == 1

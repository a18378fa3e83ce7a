"""The SQLite store (through sqlite-utils): environments, deployments, operations, chat message
references, audit events and processed delivery ids.

One database file in WAL mode; one connection per thread (a ``sqlite_utils.Database`` must not be
shared across threads), each with a busy timeout. The schema version is SQLite's ``user_version``;
forward migrations run at start, each in its own transaction.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

BUSY_TIMEOUT_MS = 10_000

ENV_ACTIVE = ("queued", "deploying", "running", "sleeping", "failed", "stopping")


def _column(name: str) -> str:
    """A column name from our own code, checked before it is put into SQL."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"not a column name: {name!r}")
    return name


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _migration_1(db: sqlite_utils.Database) -> None:
    db.table("environments").create(
        {
            "name": str,
            "app": str,
            "branch": str,
            "status": str,
            "url": str,
            "owner": str,
            "sha": str,
            "services": str,
            "error": str,
            "created_at": str,
            "updated_at": str,
            "last_activity_at": str,
            "expires_at": str,
        },
        pk="name",
        not_null={"app", "branch", "status", "created_at", "updated_at"},
    )
    db.table("environments").create_index(["status"])
    db.table("environments").create_index(["app", "branch"], unique=True)
    db.table("environments").create_index(["owner"])
    db.table("deployments").create(
        {
            "id": int,
            "env": str,
            "app": str,
            "branch": str,
            "sha": str,
            "requested_by": str,
            "source": str,
            "operation_id": int,
            "images": str,
            "task_definitions": str,
            "started_at": str,
            "finished_at": str,
            "result": str,
            "failure_reason": str,
        },
        pk="id",
        not_null={"env", "started_at", "result"},
    )
    db.table("deployments").create_index(["env", "id"])
    db.table("operations").create(
        {
            "id": int,
            "kind": str,
            "env": str,
            "app": str,
            "branch": str,
            "params": str,
            "status": str,
            "step": str,
            "requested_by": str,
            "source": str,
            "attempts": int,
            "error": str,
            "superseded_by": int,
            "created_at": str,
            "started_at": str,
            "finished_at": str,
            "heartbeat_at": str,
            "owner": str,
        },
        pk="id",
        not_null={"kind", "env", "status", "created_at"},
        defaults={"attempts": 0},
    )
    db.table("operations").create_index(["status", "id"])
    db.table("operations").create_index(["env", "status"])
    db.table("messages").create(
        {"env": str, "kind": str, "channel": str, "ts": str, "created_at": str},
        pk=("env", "kind"),
    )
    db.table("audit_events").create(
        {
            "id": int,
            "at": str,
            "actor": str,
            "action": str,
            "env": str,
            "source": str,
            "detail": str,
        },
        pk="id",
        not_null={"at", "action"},
    )
    db.table("audit_events").create_index(["env", "id"])
    db.table("deliveries").create({"id": str, "source": str, "received_at": str}, pk="id")


def _migration_2(db: sqlite_utils.Database) -> None:
    # `list` orders by age: walk this index instead of sorting every row.
    db.conn.execute(
        "create index if not exists idx_environments_created "
        "on environments (created_at desc, name)"
    )
    # reactions find their environment by the message they were added to
    db.table("messages").create_index(["channel", "ts"])


def _migration_3(db: sqlite_utils.Database) -> None:
    # Webhook deliveries and delayed actions, persisted before they are answered and worked
    # through by a background thread: a crash or restart loses none.
    db.table("inbox").create(
        {
            "id": int,
            "source": str,
            "delivery": str,
            "event": str,
            "payload": str,
            "received_at": str,
            "due_at": str,
            "status": str,  # pending, running, done, failed
            "attempts": int,
            "error": str,
            "done_at": str,
        },
        pk="id",
        not_null={"source", "event", "payload", "received_at", "due_at", "status"},
        defaults={"attempts": 0},
    )
    db.table("inbox").create_index(["status", "due_at"])
    # The pull requests an environment belongs to, and where revieee reports on each.
    db.table("pull_requests").create(
        {
            "repository": str,
            "number": int,
            "env": str,
            "app": str,
            "branch": str,
            "head_sha": str,
            "author": str,
            "title": str,
            "html_url": str,
            "fork": int,
            "state": str,
            "comment_id": int,
            "updated_at": str,
        },
        pk=("repository", "number"),
    )
    db.table("pull_requests").create_index(["env"])


def _migration_4(db: sqlite_utils.Database) -> None:
    # Images revieee built (or waited for): a running build is followed again after a restart
    # instead of started twice, a second deploy of the same commit joins it, and a stopped
    # environment's images can be deleted.
    db.table("builds").create(
        {
            "id": str,  # CodeBuild's build id
            "ecr_repository": str,
            "tag": str,
            "project": str,
            "repository": str,  # the GitHub repository
            "sha": str,
            "app": str,
            "env": str,
            "service": str,
            "operation_id": int,
            "status": str,  # IN_PROGRESS, SUCCEEDED, FAILED, FAULT, TIMED_OUT, STOPPED
            "phase": str,
            "link": str,
            "digest": str,
            "error": str,
            "started_at": str,
            "finished_at": str,
            "images_deleted_at": str,
        },
        pk="id",
        not_null={"ecr_repository", "tag", "status", "started_at"},
    )
    db.table("builds").create_index(["ecr_repository", "tag"])
    db.table("builds").create_index(["env"])
    db.table("builds").create_index(["operation_id"])
    # What the team's CI said about a commit (workflow_run webhooks), for deploys waiting on it.
    db.table("ci_runs").create(
        {
            "id": int,  # the workflow run's id
            "repository": str,
            "sha": str,
            "name": str,
            "conclusion": str,
            "html_url": str,
            "completed_at": str,
        },
        pk="id",
        not_null={"repository", "sha"},
    )
    db.table("ci_runs").create_index(["repository", "sha"])


def _migration_5(db: sqlite_utils.Database) -> None:
    # The lifecycle: reminders, pins, what an environment costs per hour while it runs.
    envs = db.table("environments")
    envs.add_column("reminded_at", str)  # the last reminder that listed it
    envs.add_column("pinned", int)  # kept forever
    envs.add_column("vcpu", float)  # its tasks' vCPUs and memory (GB), from its task definitions
    envs.add_column("memory_gb", float)
    envs.add_column("hourly_rate", float)  # USD per hour while running, from the price list
    envs.add_column("stopped_reason", str)
    # the running cost so far without reading the intervals: closed running intervals' USD,
    # plus (now - running_since) x hourly_rate while it runs
    envs.add_column("cost_closed", float)
    envs.add_column("running_since", str)
    # When each environment ran, slept, or stayed stopped because revieee stopped it: costs are
    # sums of (hours x rate) over these intervals; an open one has no ended_at.
    db.table("usage").create(
        {
            "id": int,
            "env": str,
            "state": str,  # running, sleeping, auto_stopped
            "rate": float,
            "started_at": str,
            "ended_at": str,
        },
        pk="id",
        not_null={"env", "state", "started_at"},
    )
    db.table("usage").create_index(["env", "ended_at"])
    db.table("usage").create_index(["ended_at"])
    # Which period a periodic job has already done (a reminder day, a summary week): a job that
    # runs twice, or once more after a restart, finds its period taken and does nothing.
    db.table("job_runs").create({"job": str, "period": str, "at": str}, pk=("job", "period"))
    # AWS resources with revieee's tags and no active environment, found by the sweeper.
    db.table("orphans").create(
        {
            "id": str,  # the resource's ARN (Cloud Map: its id)
            "kind": str,  # ecs-service, cloud-map-service, task-definition
            "name": str,
            "env": str,
            "app": str,
            "found_at": str,
            "reported_at": str,
            "deleted_at": str,
            "error": str,
        },
        pk="id",
        not_null={"kind", "name", "found_at"},
    )


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    _migration_1,
    _migration_2,
    _migration_3,
    _migration_4,
    _migration_5,
]
SCHEMA_VERSION = len(MIGRATIONS)


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
        )


def writes(method: Callable[..., Any]) -> Callable[..., Any]:
    """A Store method that writes: it holds the process's write lock (``immediate`` takes it
    too). tests/test_store.py checks that every method that writes says so, or uses
    ``immediate``."""

    @functools.wraps(method)
    def locked(self: Store, *args: Any, **kwargs: Any) -> Any:
        with self._write_lock:
            return method(self, *args, **kwargs)

    locked.writes = True  # type: ignore[attr-defined]
    return locked


class Store:
    """Thread-safe access to the database file at ``path``."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._local = threading.local()
        # Writers of this process take turns on a lock of ours: SQLite's own busy handler makes
        # a waiting writer sleep (1, 2, 5, 10 ... 100 ms), which showed as 100-900 ms tails in
        # webhook and slash-command latency. Other processes are still kept out by SQLite.
        self._write_lock = threading.RLock()
        self._migrate()

    # -- connections ---------------------------------------------------------------------------

    @property
    def db(self) -> sqlite_utils.Database:
        db = getattr(self._local, "db", None)
        if db is None:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            db = sqlite_utils.Database(conn)
            self._local.db = db
        return db

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.conn.close()
            self._local.db = None

    @contextmanager
    def immediate(self) -> Iterator[sqlite_utils.Database]:
        """A write transaction that takes the write lock at once (safe across processes)."""
        db = self.db
        with self._write_lock:
            db.conn.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.conn.execute("ROLLBACK")
                raise
            db.conn.execute("COMMIT")

    def _migrate(self) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with self.immediate() as db:
            version = db.conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"database {self.path} has schema version {version}, newer "
                    f"than this revieee ({SCHEMA_VERSION}): upgrade revieee"
                )
            for number in range(version, SCHEMA_VERSION):
                MIGRATIONS[number](db)
                db.conn.execute(f"PRAGMA user_version = {number + 1}")

    @property
    def schema_version(self) -> int:
        return int(self.db.conn.execute("PRAGMA user_version").fetchone()[0])

    # -- environments --------------------------------------------------------------------------

    def get_env(self, name: str) -> dict[str, Any] | None:
        rows = list(self.db.query("select * from environments where name = ?", [name]))
        return rows[0] if rows else None

    def find_env(self, app: str, branch: str) -> dict[str, Any] | None:
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
            self._insert("environments", row)
        else:
            # plain SQL on the request path: sqlite-utils' update introspects the table first
            # (several statements, each a chance to wait for the interpreter under load)
            changes = {"updated_at": stamp, **fields}
            columns = ", ".join(f"[{_column(k)}] = ?" for k in changes)
            self.db.conn.execute(
                f"update environments set {columns} where name = ?", [*changes.values(), name]
            )

    def _insert(self, table: str, row: dict[str, Any]) -> int:
        columns = ", ".join(f"[{_column(k)}]" for k in row)
        marks = ", ".join("?" for _ in row)
        cur = self.db.conn.execute(
            f"insert into [{table}] ({columns}) values ({marks})", list(row.values())
        )
        return int(cur.lastrowid or 0)

    def list_envs(
        self,
        *,
        app: str | None = None,
        owner: str | None = None,
        include_stopped: bool = False,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        where: list[str] = []
        args: list[Any] = []
        if not include_stopped:
            # "+status": filter rows but walk the age index, so no sort of every row is needed
            where.append(f"+status in ({', '.join('?' * len(ENV_ACTIVE))})")
            args.extend(ENV_ACTIVE)
        if app:
            where.append("app = ?")
            args.append(app)
        if owner:
            where.append("owner = ?")
            args.append(owner)
        sql = (
            "select name, app, branch, status, url, owner, created_at, expires_at, "
            "cost_closed, running_since, hourly_rate from environments"
        )
        if where:
            sql += " where " + " and ".join(where)
        sql += " order by created_at desc, name"
        if limit:
            sql += f" limit {int(limit)}"
        return [
            dict(zip(_LIST_COLUMNS, r, strict=True))
            for r in self.db.conn.execute(sql, args).fetchall()
        ]

    # -- deployments ---------------------------------------------------------------------------

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

    # -- operations ----------------------------------------------------------------------------

    def enqueue(
        self,
        kind: str,
        env: str,
        app: str,
        branch: str,
        params: dict[str, Any],
        requested_by: str | None,
        source: str | None,
    ) -> tuple[Operation, list[int]]:
        """Persist an operation; supersede queued (not running) ones of the same environment."""
        with self.immediate() as db:
            op_id = self._insert(
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
        """Environments with an operation queued or running (one query, not two full reads)."""
        rows = self.db.conn.execute(
            "select distinct env from operations where status in ('queued', 'running')"
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

    # -- messages, audit, deliveries -----------------------------------------------------------

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
        self._insert(
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

    # -- inbox: webhook deliveries and delayed actions ---------------------------------------

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

    # -- pull requests ---------------------------------------------------------------------------

    @writes
    def link_pull(self, repository: str, number: int, **fields: Any) -> None:
        self.db.table("pull_requests").upsert(
            {"repository": repository, "number": number, **fields, "updated_at": now_iso()},
            pk=("repository", "number"),
            alter=False,
        )

    def get_pull(self, repository: str, number: int) -> dict[str, Any] | None:
        rows = list(
            self.db.query(
                "select * from pull_requests where repository = ? collate nocase and number = ?",
                [repository, number],
            )
        )
        return rows[0] if rows else None

    def pulls_for(self, env: str) -> list[dict[str, Any]]:
        return list(
            self.db.query(
                "select * from pull_requests where env = ? order by updated_at desc", [env]
            )
        )

    # -- builds and CI runs ----------------------------------------------------------------------

    @writes
    def add_build(self, **fields: Any) -> None:
        self._insert("builds", {"started_at": now_iso(), "status": "IN_PROGRESS", **fields})

    @writes
    def update_build(self, build_id: str, **fields: Any) -> None:
        columns = ", ".join(f"[{_column(k)}] = ?" for k in fields)
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

    @writes
    def record_ci_run(self, run_id: int, **fields: Any) -> None:
        self.db.table("ci_runs").upsert({"id": run_id, **fields}, pk="id", alter=False)

    def ci_runs(self, repository: str, sha: str) -> list[dict[str, Any]]:
        """Completed CI runs of a commit, newest first."""
        return list(
            self.db.query(
                "select * from ci_runs where repository = ? collate nocase and sha = ? "
                "order by completed_at desc, id desc",
                [repository, sha],
            )
        )

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

    # -- lifecycle: usage intervals, periodic jobs, orphans ------------------------------------

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
                self._insert(
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

    def operations_under_way(self) -> dict[str, int]:
        """How many operations are queued and running (``/healthz``)."""
        counts = dict(
            self.db.conn.execute(
                "select status, count(*) from operations where status in ('queued', 'running') "
                "group by status"
            ).fetchall()
        )
        return {"queued": counts.get("queued", 0), "running": counts.get("running", 0)}

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
            f"where e.status in ({', '.join('?' * len(ENV_ACTIVE))})"
        )
        cur = self.db.conn.execute(sql, list(ENV_ACTIVE))
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

    @writes
    def first_delivery(self, source: str, delivery_id: str) -> bool:
        """Record a delivery id; True the first time it is seen, False for a repeat."""
        cur = self.db.conn.execute(
            "insert or ignore into deliveries (id, source, received_at) values (?, ?, ?)",
            [f"{source}:{delivery_id}", source, now_iso()],
        )
        return cur.rowcount == 1


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

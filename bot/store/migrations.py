"""The schema's migrations: ``MIGRATIONS[n]`` takes a database from version ``n`` to ``n + 1``
(SQLite's ``user_version``); each runs in its own transaction when the store is opened."""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils


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


def _migration_6(db: sqlite_utils.Database) -> None:
    # revieee's GitHub deployment of an environment in each repository: which deployment, made
    # by which operation, and whether its latest status is "inactive". They were rows of
    # `messages`: kind "gh-deployment:<repository>", ts "<deployment>:<operation>[:inactive]".
    db.table("github_deployments").create(
        {
            "env": str,
            "repository": str,
            "deployment_id": int,
            "operation_id": int,
            "retired": int,
            "updated_at": str,
        },
        pk=("env", "repository"),
        not_null={"deployment_id", "retired", "updated_at"},
        defaults={"retired": 0},
    )
    prefix = "gh-deployment:"
    rows = db.conn.execute(
        "select env, kind, ts, created_at from messages where substr(kind, 1, ?) = ?",
        [len(prefix), prefix],
    ).fetchall()
    for env, kind, ts, created_at in rows:
        parts = str(ts or "").split(":")
        if not parts[0].isdigit():
            continue  # no deployment id: nothing could ever use it
        db.conn.execute(
            "insert or replace into github_deployments (env, repository, deployment_id, "
            "operation_id, retired, updated_at) values (?, ?, ?, ?, ?, ?)",
            [
                env,
                kind[len(prefix) :],
                int(parts[0]),
                int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None,
                1 if parts[2:3] == ["inactive"] else 0,
                created_at or "",
            ],
        )
    db.conn.execute("delete from messages where substr(kind, 1, ?) = ?", [len(prefix), prefix])


def _migration_7(db: sqlite_utils.Database) -> None:
    # a rollout waited for by the watcher, not by a worker: what it waits for (JSON)
    db.table("operations").add_column("wait_state", str)


def _migration_8(db: sqlite_utils.Database) -> None:
    # the evening's sleep and the morning's wake: one batch of operations, summed up once per
    # channel (the summary messages: JSON {channel: ts})
    db.table("batches").create(
        {
            "id": int,
            "kind": str,
            "started_at": str,
            "finished_at": str,
            "messages": str,
            "updated_at": str,
        },
        pk="id",
        not_null={"kind", "started_at"},
    )
    db.table("operations").add_column("batch", int)
    db.conn.execute("create index if not exists operations_batch on operations (batch)")


def _migration_9(db: sqlite_utils.Database) -> None:
    # `list` pages (LIMIT/OFFSET) and counts what matches. The age index also holds what a
    # listing filters on, so skipping to a deep page walks the index without reading a table
    # row per skipped environment; an app's listing and count walk an index of their own.
    db.conn.execute("drop index if exists idx_environments_created")
    db.conn.execute(
        "create index idx_environments_created "
        "on environments (created_at desc, name, status, app, owner)"
    )
    db.conn.execute(
        "create index if not exists idx_environments_app_created "
        "on environments (app, created_at desc, name, status, owner)"
    )


def _migration_10(db: sqlite_utils.Database) -> None:
    # per-environment settings (JSON {KEY: {value, source, by}}), whether the environment's
    # on_create tasks have run in its present life (reset when it stops), and every one-off
    # task (on_create, release, on_stop) revieee started: found again after a crash
    db.table("environments").add_column("settings", str)
    db.table("environments").add_column("setup_done", int)
    db.table("task_runs").create(
        {
            "id": int,
            "env": str,
            "operation_id": int,
            "name": str,
            "moment": str,
            "service": str,
            "task_arn": str,
            "status": str,  # starting, running, succeeded, failed
            "exit_code": int,
            "seconds": float,
            "reason": str,
            "lines": str,  # JSON: the last lines of its log
            "started_at": str,
            "ended_at": str,
        },
        pk="id",
        not_null={"env", "operation_id", "name", "moment", "status", "started_at"},
    )
    db.conn.execute("create index task_runs_operation on task_runs (operation_id, moment, name)")


def _migration_11(db: sqlite_utils.Database) -> None:
    # protected previews (bot/access.py): a salt drawn each time an environment is created, of
    # which its secret link's token is made (a stopped and redeployed one gets a new link)
    db.table("environments").add_column("access_salt", str)


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    _migration_1,
    _migration_2,
    _migration_3,
    _migration_4,
    _migration_5,
    _migration_6,
    _migration_7,
    _migration_8,
    _migration_9,
    _migration_10,
    _migration_11,
]
SCHEMA_VERSION = len(MIGRATIONS)

"""Lifecycle tasks and a database per environment, end to end on the strict AWS layer: one-off
ECS tasks (RunTask) from the environment's own task definition, whose commands the layer's
programs play (bot/strict_aws/ecs.py), authorized against the stack's role, reported in the
Slack thread and the PR comment.

- ``on_create`` runs on an environment's first deploy, once, even across a crash;
- ``release`` runs on every deploy before any service changes: a failure fails the deploy and
  the running revision keeps serving, the message says why;
- ``on_stop`` runs before anything is deleted; its failure is said, the stop goes on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bot.aws import AwsClients
from bot.naming import ecs_service_name, env_name, task_family
from bot.sandbox import (
    Seeded,
    StrictSandbox,
    config_toml,
    sandbox_config,
    template_task_definition,
)
from bot.store import Store
from bot.strict_aws import Outcome, Run, StrictAws
from tests.conftest import MakeRig
from tests.fake_slack import FakeSlack
from tests.slack_rig import SlackRig

BRANCH = "feature/checkout"  # web has an image for it; api falls back to main
ENV = env_name("shop", BRANCH)
GROUP = "/revieee/revieee-sandbox/environments"  # the stack's EnvironmentLogGroup
CLUSTER = "revieee-sandbox"
TASKS = {
    "create-db": {"when": "on_create", "service": "web", "command": ["bin/review-db", "create"]},
    "migrate": {"when": "release", "service": "web", "command": ["bin/rails", "db:migrate"]},
    "drop-db": {"when": "on_stop", "service": "web", "command": ["bin/review-db", "drop"]},
}
DATABASE = {"name": "review_{env}", "url": "postgres://review@db.internal:5432/{name}"}
DB_NAME = "review_" + ENV.replace("-", "_")


class Programs:
    """What the commands do, and what each run was told: a shared database server."""

    def __init__(self, strict: StrictAws) -> None:
        self.runs: list[tuple[str, Run]] = []
        self.databases: set[str] = set()
        self.migrate_exit = 0
        self.migrate_seconds = 0.2
        self.drop_exit = 0
        strict.ecs.programs["bin/review-db create"] = self.create
        strict.ecs.programs["bin/rails db:migrate"] = self.migrate
        strict.ecs.programs["bin/review-db drop"] = self.drop

    def named(self, name: str) -> list[Run]:
        return [run for n, run in self.runs if n == name]

    def create(self, run: Run) -> Outcome:
        self.runs.append(("create", run))
        name = run.environment["REVIEEE_DATABASE_NAME"]
        self.databases.add(name)
        return Outcome(0, 0.2, [f"CREATE DATABASE {name}", "seeded 12 rows"])

    def migrate(self, run: Run) -> Outcome:
        self.runs.append(("migrate", run))
        if self.migrate_exit:
            return Outcome(
                self.migrate_exit,
                self.migrate_seconds,
                ["Applying 0003_totals...", 'ERROR: column "total" contains null values'],
            )
        return Outcome(0, self.migrate_seconds, ["Applying 0001_initial... OK"])

    def drop(self, run: Run) -> Outcome:
        self.runs.append(("drop", run))
        if self.drop_exit:
            return Outcome(self.drop_exit, 0.2, ["ERROR: database is being accessed by others"])
        self.databases.discard(run.environment["REVIEEE_DATABASE_NAME"])
        return Outcome(0, 0.2, [f"DROP DATABASE {run.environment['REVIEEE_DATABASE_NAME']}"])


@pytest.fixture
def programs(strict: StrictAws, admin: AwsClients, seeded: Seeded) -> Programs:
    """The templates log to CloudWatch (awslogs), so a task's last lines can be read."""
    admin.logs.create_log_group(logGroupName=GROUP)
    template_task_definition(admin.ecs, "shop-web", "web", 8080, log_group=GROUP)
    return Programs(strict)


def lifecycle_rig(make_rig: MakeRig, **app: Any) -> SlackRig:
    return make_rig(app={"tasks": TASKS, "database": DATABASE, **app})


def deploy(rig: SlackRig, text: str = f"deploy {BRANCH}") -> dict[str, Any]:
    resp = rig.command(text)
    assert resp.status == 200, resp.body
    return rig.wait_status(ENV, "running", "failed", timeout=30)


def calls(strict: StrictAws, *names: str) -> list[str]:
    """The role's calls of ``names``, in the order they reached AWS."""
    return [name for _, who, name in strict.calls if who == "role" and name in names]


def served_revision(admin: AwsClients, service: str = "web") -> str:
    [svc] = admin.ecs.describe_services(cluster=CLUSTER, services=[ecs_service_name(ENV, service)])[
        "services"
    ]
    return str(svc["taskDefinition"]).rsplit(":", 1)[-1]


def said(fake: FakeSlack, ts: str) -> str:
    """Everything posted or edited about the deploy message ``ts``, as one string."""
    return json.dumps(
        [c.args for c in fake.calls if ts in (c.args.get("ts"), c.args.get("thread_ts"))]
    )


def test_release_runs_before_traffic_and_on_create_only_once(
    make_rig: MakeRig, programs: Programs, strict: StrictAws, admin: AwsClients
) -> None:
    rig = lifecycle_rig(make_rig)
    env = deploy(rig)
    assert env["status"] == "running", env["error"]
    assert [n for n, _ in programs.runs] == ["create", "migrate"]  # on_create, then release
    assert programs.databases == {DB_NAME}
    # the task ran the environment's own task definition, told its database
    [create] = programs.named("create")
    assert create.task_definition.rsplit("/", 1)[-1] == f"{task_family(ENV, 'web')}:1"
    assert create.environment["DATABASE_URL"] == f"postgres://review@db.internal:5432/{DB_NAME}"
    assert create.environment["REVIEEE_TASK"] == "create-db"
    # both tasks ran before any service existed: nothing served the new revision untested
    order = calls(strict, "ecs:RunTask", "ecs:CreateService")
    assert order[:2] == ["ecs:RunTask", "ecs:RunTask"] and "ecs:CreateService" in order[2:]
    # the services get the database too
    td = admin.ecs.describe_task_definition(taskDefinition=task_family(ENV, "api"))
    variables = {
        e["name"]: e["value"]
        for e in td["taskDefinition"]["containerDefinitions"][0]["environment"]
    }
    assert variables["REVIEEE_DATABASE_NAME"] == DB_NAME

    # a redeploy migrates again, before the update; the database is not created again
    strict.calls.clear()
    env = deploy(rig)
    assert env["status"] == "running", env["error"]
    assert [n for n, _ in programs.runs] == ["create", "migrate", "migrate"]
    order = calls(strict, "ecs:RunTask", "ecs:UpdateService")
    assert order[0] == "ecs:RunTask" and order.count("ecs:RunTask") == 1
    assert "ecs:UpdateService" in order[1:]
    assert served_revision(admin) == "2"

    # the thread has each task's exit code, duration and last lines
    ref = rig.deploy_message(ENV)
    shown = said(rig.fake, ref["ts"])
    assert "on create task create-db: exit code 0 after" in shown
    assert "release task migrate: exit code 0 after" in shown
    assert "Applying 0001_initial... OK" in shown and f"CREATE DATABASE {DB_NAME}" in shown
    # ... and status
    status = rig.runtime.core.queries.status(ENV, live=False)
    assert [(r["moment"], r["name"], r["exit_code"]) for r in status["tasks"]][:2] == [
        ("release", "migrate", 0),
        ("release", "migrate", 0),
    ]


def test_a_failed_release_keeps_the_old_revision_serving_and_says_why(
    make_rig: MakeRig, programs: Programs, admin: AwsClients, fake: FakeSlack
) -> None:
    rig = lifecycle_rig(make_rig)
    assert deploy(rig)["status"] == "running"
    programs.migrate_exit = 1
    env = deploy(rig)
    # the deploy failed, the environment still runs what it ran: revision 1, untouched
    assert env["status"] == "running"
    assert "release task migrate" in env["error"] and "exit code 1" in env["error"]
    assert 'column "total" contains null values' in env["error"]
    assert served_revision(admin) == "1"
    [svc] = admin.ecs.describe_services(cluster=CLUSTER, services=[ecs_service_name(ENV, "web")])[
        "services"
    ]
    assert len(svc["deployments"]) == 1  # no rollout was even started
    last, first = rig.runtime.store.deployments(ENV, 2)
    assert last["result"] == "failed" and first["result"] == "succeeded"
    assert "exit code 1" in last["failure_reason"]
    # the message says why, and that the previous version serves; the thread has the log
    ref = rig.deploy_message(ENV)
    update = [c for c in fake.of("chat.update") if c.args["ts"] == ref["ts"]][-1]
    blocks = json.dumps(update.args["blocks"])
    assert "release task migrate" in blocks and "exit code 1" in blocks
    assert "previous version" in blocks
    assert "ERROR: column" in said(fake, ref["ts"])


def test_a_release_task_over_its_timeout_is_stopped_and_fails_the_deploy(
    make_rig: MakeRig, programs: Programs, strict: StrictAws
) -> None:
    programs.migrate_seconds = 30.0
    tasks = {**TASKS, "migrate": {**TASKS["migrate"], "timeout": "1s"}}
    rig = lifecycle_rig(make_rig, tasks=tasks)
    env = deploy(rig)
    assert env["status"] == "failed"
    assert "ran over its timeout (1s) and was stopped" in env["error"]
    assert "ecs:StopTask" in calls(strict, "ecs:StopTask")
    # the environment never served: nothing of it was created
    assert calls(strict, "ecs:CreateService") == []


def test_on_stop_runs_before_deletion_and_its_failure_does_not_block_the_stop(
    make_rig: MakeRig, programs: Programs, strict: StrictAws, admin: AwsClients
) -> None:
    rig = lifecycle_rig(make_rig)
    assert deploy(rig)["status"] == "running"
    programs.drop_exit = 2
    strict.calls.clear()
    assert rig.command(f"stop {ENV}").status == 200
    env = rig.wait_status(ENV, "stopped", "failed", timeout=30)
    assert env["status"] == "stopped" and env["error"] is None
    assert [n for n, _ in programs.runs][-1] == "drop"
    # it ran before anything was deleted, from the environment's newest task definition
    order = calls(strict, "ecs:RunTask", "ecs:DeleteService")
    assert order[0] == "ecs:RunTask" and order.count("ecs:DeleteService") == 2
    [drop] = programs.named("drop")
    assert drop.task_definition.rsplit("/", 1)[-1] == f"{task_family(ENV, 'web')}:1"
    # the failure is said, and recorded
    shown = said(rig.fake, rig.deploy_message(ENV)["ts"])
    assert "on stop task drop-db: exit code 2" in shown
    assert "stopping the environment anyway" in shown
    audit = [e["action"] for e in rig.runtime.store.audit_events(ENV)]
    assert "on stop task failed" in audit and "stopped" in audit
    names = [ecs_service_name(ENV, s) for s in ("web", "api")]
    found = admin.ecs.describe_services(cluster=CLUSTER, services=names)["services"]
    assert {s["status"] for s in found} <= {"DRAINING", "INACTIVE"}

    # deployed again after the stop: a new life, so its database is created again
    programs.drop_exit = 0
    assert deploy(rig)["status"] == "running"
    assert [n for n, _ in programs.runs][-2:] == ["create", "migrate"]
    # stopping an environment that is stopped already runs no task
    rig.command(f"stop {ENV}")
    rig.wait_status(ENV, "stopped")
    runs = len(programs.runs)
    rig.command(f"stop {ENV}")
    rig.wait_status(ENV, "stopped")
    assert len(programs.runs) == runs


def test_a_task_of_a_container_without_logs_still_reports_its_exit_code(
    make_rig: MakeRig, strict: StrictAws, seeded: Seeded
) -> None:
    """The sandbox's api template has no log configuration: no lines, and no error."""
    seen: list[Run] = []
    strict.ecs.programs["bin/migrate"] = lambda run: seen.append(run) or Outcome(3, 0.1, ["lost"])
    rig = make_rig(
        app={
            "tasks": {
                "migrate": {"when": "release", "service": "api", "command": "bin/migrate --all"}
            }
        }
    )
    env = deploy(rig)
    assert env["status"] == "failed"
    assert "release task migrate: exit code 3" in env["error"] or "exit code 3" in env["error"]
    assert seen and seen[0].command == ["bin/migrate", "--all"]
    assert seen[0].container == "api"


# -- a crash while on_create runs: the task is waited for, not started again ----------------


def _wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.slow
def test_on_create_runs_once_across_a_crash(
    moto_server: StrictSandbox,
    seeded: Seeded,
    programs: Programs,
    strict: StrictAws,
    admin: AwsClients,
    tmp_path: Path,
) -> None:
    """The process that started the on_create task is killed (SIGKILL) while the task runs;
    the next worker resumes the operation and waits for that same task: the database is
    created once, and the deploy goes on to its release task and its services."""
    started: list[Run] = []

    def slow_create(run: Run) -> Outcome:
        started.append(run)
        return Outcome(0, 4.0, [f"CREATE DATABASE {run.environment['REVIEEE_DATABASE_NAME']}"])

    strict.ecs.programs["bin/review-db create"] = slow_create
    data = sandbox_config(seeded, str(tmp_path / "revieee.db"), deploy_timeout=60)
    data["apps"]["shop"].update(tasks=TASKS, database=DATABASE)
    config = tmp_path / "revieee.toml"
    config.write_text(config_toml(data))
    child_env = {**os.environ, **moto_server.environ()}
    store = Store(tmp_path / "revieee.db")

    deployer = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "--config", str(config), "deploy", BRANCH, "--wait"],
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for(lambda: bool(started), 30, "the on_create task to run")
    finally:
        deployer.send_signal(signal.SIGKILL)
        deployer.wait(10)
    [run] = store.task_runs(store.operations()[0].id)
    assert run["name"] == "create-db" and run["status"] == "running" and run["task_arn"]

    worker = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "--config", str(config), "worker"],
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for(lambda: store.operations()[0].status in ("succeeded", "failed"), 60, "the deploy")
    finally:
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=30)
    [op] = store.operations()
    assert op.status == "succeeded", (op.error, out)
    assert op.attempts == 2  # resumed
    assert len(started) == 1  # the database was created once
    on_create = [
        r for r in strict.ecs.runs if (r.get("startedBy") or "").startswith("revieee/on_create")
    ]
    assert len(on_create) == 1  # the resumed deploy waited for the task it had started
    runs = store.task_runs(op.id)
    assert [(r["name"], r["status"]) for r in runs] == [
        ("create-db", "succeeded"),
        ("migrate", "succeeded"),
    ]
    env = store.get_env(ENV)
    assert env is not None and env["status"] == "running" and env["setup_done"] == 1


def test_check_names_a_task_container_the_template_lacks(
    seeded: Seeded, aws: AwsClients, tmp_path: Path
) -> None:
    from bot.app import build
    from bot.config import settings_from_mapping

    data = sandbox_config(seeded, str(tmp_path / "revieee.db"))
    data["apps"]["shop"]["tasks"] = {
        "migrate": {"when": "release", "service": "api", "container": "worker", "command": "x"}
    }
    runtime = build(settings_from_mapping(data, environ={}), clients=aws)
    try:
        problems = runtime.engine.check()
    finally:
        runtime.close()
    assert problems == [
        "apps.shop.tasks.migrate.container: template shop-api has no container 'worker' "
        "(it has: api)"
    ]


def test_the_templates_secrets_reach_the_environment_as_references_only(
    make_rig: MakeRig, admin: AwsClients, programs: Programs, strict: StrictAws
) -> None:
    """The database password is the template's ``secrets`` entry: copied as a reference into
    every revision, never a value revieee sees, says or logs."""
    secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:review-db-AbCdEf"
    td = admin.ecs.describe_task_definition(taskDefinition="shop-web")["taskDefinition"]
    container = {
        **td["containerDefinitions"][0],
        "secrets": [{"name": "DATABASE_PASSWORD", "valueFrom": secret}],
    }
    admin.ecs.register_task_definition(
        family="shop-web",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        executionRoleArn=td["executionRoleArn"],
        containerDefinitions=[container],
    )
    rig = lifecycle_rig(make_rig)
    assert deploy(rig)["status"] == "running"
    ours = admin.ecs.describe_task_definition(taskDefinition=task_family(ENV, "web"))
    [web] = ours["taskDefinition"]["containerDefinitions"]
    assert web["secrets"] == [{"name": "DATABASE_PASSWORD", "valueFrom": secret}]
    assert "DATABASE_PASSWORD" not in {e["name"] for e in web["environment"]}
    assert "DATABASE_PASSWORD" not in programs.named("migrate")[0].environment  # ECS's to inject

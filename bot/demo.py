"""``revieee demo``: the main flow on embedded defaults, with no AWS account.

It starts moto's server in-process behind the strict AWS layer (:mod:`bot.strict_aws`: tasks
take a while to start, ECS registers them in Cloud Map and drains a deleted service, the
circuit breaker rolls back, as on AWS; short times here), seeds a cluster, a Cloud Map
namespace, template task definitions and ECR images, then deploys a branch of a two-service app
(the front end has the branch, the API falls back to ``main``), redeploys it after a new commit
with a setting of its own, lists, shows its status and stops it -- printing what a user would
see at each step. The app has a database per environment on a shared server: an ``on_create``
task creates and seeds it, a ``release`` task migrates it before each new version takes
traffic, an ``on_stop`` task drops it (the commands are played by the strict layer's
programs, :class:`DemoDatabase`). IAM is not evaluated here (that needs node; the tests do
it).
"""

from __future__ import annotations

import shlex
import tempfile
from pathlib import Path

from bot import sandbox
from bot.app import build
from bot.aws import build_clients
from bot.cli import execute
from bot.config import settings_from_mapping
from bot.strict_aws import Outcome, Rules, Run, StrictAws
from commands.parser import parse

DEMO_RULES = Rules(task_start=1.5, pull_failure=0.5, drain=2.0, cloud_map_operation=0.5)
LOG_GROUP = "/revieee/revieee-sandbox/environments"  # the stack's EnvironmentLogGroup
SEED = "s3://acme-review-seeds/shop/sanitised-latest.sql.gz"
MIGRATIONS = ("0001_initial", "0002_carts", "0003_checkout_v2")
TASKS = {
    "create-db": {"when": "on_create", "service": "web", "command": ["bin/review-db", "create"]},
    "migrate": {"when": "release", "service": "web", "command": ["bin/rails", "db:migrate"]},
    "drop-db": {"when": "on_stop", "service": "web", "command": ["bin/review-db", "drop"]},
}


class DemoDatabase:
    """The shared review database server the demo's tasks talk to: what ``bin/review-db`` and
    ``bin/rails db:migrate`` would print. The first deploy's commit has two migrations, the
    second commit a third."""

    def __init__(self) -> None:
        self.applied: dict[str, list[str]] = {}
        self.releases: dict[str, int] = {}

    def install(self, strict: StrictAws) -> None:
        strict.ecs.programs["bin/review-db create"] = self.create
        strict.ecs.programs["bin/review-db drop"] = self.drop
        strict.ecs.programs["bin/rails db:migrate"] = self.migrate

    def create(self, run: Run) -> Outcome:
        name = run.environment.get("REVIEEE_DATABASE_NAME", "?")
        if name in self.applied:
            return Outcome(0, 0.3, [f"database {name} exists: nothing to create"])
        self.applied[name] = []
        seed = run.environment.get("REVIEEE_DATABASE_SEED", "")
        return Outcome(
            0,
            1.5,
            [
                f"CREATE DATABASE {name}",
                f"loading {seed}",
                "1,204 rows in 12 tables (sanitised: no customer data)",
            ],
        )

    def migrate(self, run: Run) -> Outcome:
        name = run.environment.get("REVIEEE_DATABASE_NAME", "?")
        done = self.applied.setdefault(name, [])
        release = self.releases.get(name, 0) + 1
        self.releases[name] = release
        wanted = MIGRATIONS[: min(release + 1, len(MIGRATIONS))]
        todo = [m for m in wanted if m not in done]
        done += todo
        lines = [f"Applying {m}... OK" for m in todo] or ["No migrations to apply."]
        return Outcome(0, 1.0, [f"Running migrations on {name}:", *lines])

    def drop(self, run: Run) -> Outcome:
        name = run.environment.get("REVIEEE_DATABASE_NAME", "?")
        self.applied.pop(name, None)
        return Outcome(0, 0.5, [f"DROP DATABASE {name}"])


def run_demo(workdir: str | None = None) -> int:
    box = sandbox.StrictSandbox(DEMO_RULES).start()
    with tempfile.TemporaryDirectory() as tmp, sandbox.patched_environ(box.environ()):
        database = str(Path(workdir or tmp) / "revieee-demo.db")
        operator = box.admin_clients()
        clients = build_clients("standard", 3)
        seeded = sandbox.seed(operator, log_group=LOG_GROUP)
        config = sandbox.sandbox_config(seeded, database, deploy_timeout=60)
        config["apps"]["shop"]["tasks"] = TASKS
        config["apps"]["shop"]["database"] = {
            "name": "{env}",
            "url": "postgres://review@review-db.internal:5432/{name}",
            "seed": SEED,
        }
        settings = settings_from_mapping(config, environ={})
        assert box.strict is not None
        DemoDatabase().install(box.strict)
        runtime = build(settings, clients=clients)
        print(
            f"revieee demo: AWS sandbox (moto behind the strict AWS layer) at {box.endpoint}; "
            f"tasks start in {DEMO_RULES.task_start:g}s"
        )
        print(
            f"  cluster {settings.cluster}, Cloud Map namespace {settings.namespace}, "
            f"app 'shop' = web (acme/shop-web) + api (acme/shop-api)"
        )
        print("  ECR has web images for main and feature/checkout, api images for main only")
        print(
            "  a database per environment: on_create task create-db (creates and seeds it), "
            "release task migrate (before each new version takes traffic), on_stop task "
            "drop-db\n"
        )
        failures = 0
        try:
            for title, line in (
                ("deploy a branch", "deploy feature/checkout --wait"),
                ("a new commit lands on feature/checkout; redeploy (same URL)", None),
                ("list running environments", "list"),
                ("status of the environment", "status feature/checkout"),
                ("stop it", "stop feature/checkout"),
                ("stopping again is harmless", "stop feature/checkout"),
                ("list everything, stopped included", "list --all"),
            ):
                print(f"== {title}")
                if line is None:
                    sha = sandbox.fake_sha("web feature/checkout second commit")
                    sandbox.push_image(operator.ecr, "shop-web", f"feature-checkout-{sha[:7]}")
                    print(f"   (CI pushed shop-web:feature-checkout-{sha[:7]})")
                    line = f"deploy feature/checkout --sha {sha} --wait --set CHECKOUT_V2=on"
                print(f"$ revieee {line}")
                failures += execute(runtime, parse(line), actor="demo-user") != 0
                print()
        finally:
            runtime.close()
            box.stop()
    words = shlex.join(["revieee", "--config", "deploy/revieee.example.toml", "check"])
    if failures:
        print(f"demo finished with {failures} failed step(s)")
        return 1
    print(
        f"demo finished: every step worked. Next: adapt deploy/revieee.example.toml and run "
        f"`{words}` against your AWS account."
    )
    return 0

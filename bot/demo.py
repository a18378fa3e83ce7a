"""``revieee demo``: the main flow on embedded defaults, with no AWS account.

It starts moto's server in-process behind the strict AWS layer (:mod:`bot.strict_aws`: tasks
take a while to start, ECS registers them in Cloud Map and drains a deleted service, the
circuit breaker rolls back, as on AWS; short times here), seeds a cluster, a Cloud Map
namespace, template task definitions and ECR images, then deploys a branch of a two-service app
(the front end has the branch, the API falls back to ``main``), redeploys it after a new commit,
lists, shows its status and stops it -- printing what a user would see at each step. IAM is not
evaluated here (that needs node; the tests do it).
"""

from __future__ import annotations

import shlex
import tempfile
from pathlib import Path

from bot import sandbox
from bot.app import build
from bot.aws import build_clients
from bot.cli import execute
from bot.strict_aws import Rules
from commands.parser import parse

DEMO_RULES = Rules(task_start=1.5, pull_failure=0.5, drain=2.0, cloud_map_operation=0.5)


def run_demo(workdir: str | None = None) -> int:
    box = sandbox.StrictSandbox(DEMO_RULES).start()
    with tempfile.TemporaryDirectory() as tmp, sandbox.patched_environ(box.environ()):
        database = str(Path(workdir or tmp) / "revieee-demo.db")
        operator = box.admin_clients()
        clients = build_clients("standard", 3)
        seeded = sandbox.seed(operator)
        settings = sandbox.sandbox_settings(seeded, database, deploy_timeout=60)
        runtime = build(settings, clients=clients)
        print(
            f"revieee demo: AWS sandbox (moto behind the strict AWS layer) at {box.endpoint}; "
            f"tasks start in {DEMO_RULES.task_start:g}s"
        )
        print(
            f"  cluster {settings.cluster}, Cloud Map namespace {settings.namespace}, "
            f"app 'shop' = web (acme/shop-web) + api (acme/shop-api)"
        )
        print("  ECR has web images for main and feature/checkout, api images for main only\n")
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
                    line = f"deploy feature/checkout --sha {sha} --wait"
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

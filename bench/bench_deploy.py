"""Bot overhead per deploy: revieee's full path against a hand-written boto3 sequence.

Both sides talk to the same in-process moto server and make the same AWS calls with the same
parameters; the difference is what revieee adds around them (store, operation queue, reporting,
planning). Rounds alternate which side goes first; figures are medians of the same run.

    python bench/bench_deploy.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import re
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from bot import sandbox
from bot.app import Runtime, build
from bot.aws import AwsClients, CallCounter, build_clients
from bot.config import Settings
from bot.engine import TASK_DEF_FIELDS

APP = "shop"
GOAL = 1.3


# -- the hand-written side: plain boto3, no store, no queue, no reporting ------------------------


@dataclass(frozen=True)
class HandService:
    name: str
    task_definition: str
    container: str
    port: int
    ecr_repository: str
    default_branch: str
    repository_uri: str


@dataclass(frozen=True)
class HandConfig:
    cluster: str
    subnets: list[str]
    security_groups: list[str]
    namespace_id: str
    namespace_name: str
    domain: str
    capacity_provider_strategy: list[dict[str, Any]]
    services: list[HandService]
    poll_interval: float
    timeout: float


DEPLOYMENT_CONFIGURATION = {
    "minimumHealthyPercent": 100,
    "maximumPercent": 200,
    "deploymentCircuitBreaker": {"enable": True, "rollback": True},
}


def hand_config(settings: Settings, seeded: sandbox.Seeded, aws: AwsClients) -> HandConfig:
    """The constants a hand-written script would hard-code (read once, outside the timing)."""
    uris = {
        r["repositoryName"]: r["repositoryUri"]
        for r in aws.ecr.describe_repositories()["repositories"]
    }
    return HandConfig(
        cluster=settings.cluster,
        subnets=list(settings.subnets),
        security_groups=list(settings.security_groups),
        namespace_id=seeded.namespace_id,
        namespace_name=sandbox.NAMESPACE,
        domain=settings.domain,
        capacity_provider_strategy=[p.to_aws() for p in settings.capacity_provider_strategy],
        services=[
            HandService(
                s.name,
                s.task_definition,
                s.container,
                s.port,
                s.ecr_repository or "",
                s.default_branch,
                uris[s.ecr_repository or ""],
            )
            for s in settings.apps[APP].services
        ],
        poll_interval=settings.poll_interval,
        timeout=settings.deploy_timeout,
    )


def hand_find_image(
    aws: AwsClients,
    svc: HandService,
    branch: str,
    sha: str | None,
    listed: dict[str, list[dict[str, Any]]],
) -> tuple[str, str] | None:
    """(``uri@digest``, commit) of the branch's image (the given commit, else the newest)."""
    repo, uri = svc.ecr_repository, svc.repository_uri
    tag_branch = re.sub(r"[^A-Za-z0-9_.-]+", "-", branch).strip("-.")
    if sha:
        try:
            detail = aws.ecr.describe_images(
                repositoryName=repo, imageIds=[{"imageTag": f"{tag_branch}-{sha[:7]}"}]
            )["imageDetails"][0]
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ImageNotFoundException":
                return None
            raise
        return f"{uri}@{detail['imageDigest']}", sha
    pattern = re.compile(re.escape(tag_branch) + "-([0-9a-f]{7})")
    newest: tuple[Any, str, str] | None = None
    if repo not in listed:
        listed[repo] = aws.ecr.describe_images(repositoryName=repo, filter={"tagStatus": "TAGGED"})[
            "imageDetails"
        ]
    for detail in listed[repo]:
        for tag in detail.get("imageTags", []):
            match = pattern.fullmatch(tag)
            if match and (newest is None or detail["imagePushedAt"] > newest[0]):
                newest = (detail["imagePushedAt"], detail["imageDigest"], match.group(1))
    return None if newest is None else (f"{uri}@{newest[1]}", newest[2])


def hand_deploy(aws: AwsClients, cfg: HandConfig, env: str, branch: str, sha: str | None) -> None:
    """Deploy (create or update) every service of the environment and wait until stable."""
    url = f"https://{env}.{cfg.domain}"
    tags = {"revieee:app": APP, "revieee:env": env, "revieee:branch": branch}
    images: dict[str, tuple[str, str, str]] = {}
    listed: dict[str, list[dict[str, Any]]] = {}
    for svc in cfg.services:
        found = hand_find_image(aws, svc, branch, sha, listed)
        used = branch
        if found is None:  # this repository has no such branch: run its default branch
            used = svc.default_branch
            found = hand_find_image(aws, svc, used, None, listed)
        if found is None:
            raise RuntimeError(f"no image for {svc.name}")
        images[svc.name] = (found[0], used, found[1])
    hosts = {s.name: f"{s.name}.{env}.{cfg.namespace_name}" for s in cfg.services}
    addresses: dict[str, str] = {}
    for svc in cfg.services:
        addresses[f"REVIEEE_SERVICE_{svc.name.upper()}_HOST"] = hosts[svc.name]
        addresses[f"REVIEEE_SERVICE_{svc.name.upper()}_URL"] = (
            f"http://{hosts[svc.name]}:{svc.port}"
        )
    names = []
    cloud_map = {
        s["Name"]: s
        for s in aws.servicediscovery.list_services(
            Filters=[{"Name": "NAMESPACE_ID", "Values": [cfg.namespace_id], "Condition": "EQ"}]
        )["Services"]
    }
    for svc in cfg.services:
        image, used, commit = images[svc.name]
        template = aws.ecs.describe_task_definition(taskDefinition=svc.task_definition)[
            "taskDefinition"
        ]
        containers = [dict(c) for c in template["containerDefinitions"]]
        target = next(c for c in containers if c["name"] == svc.container)
        env_vars = {e["name"]: e["value"] for e in target.get("environment", [])}
        env_vars.update(addresses)
        env_vars.update(
            REVIEEE_ENV=env,
            REVIEEE_BRANCH=used,
            REVIEEE_SHA=commit,
            REVIEEE_URL=url,
            REVIEEE_APP=APP,
            REVIEEE_SERVICE=svc.name,
        )
        target["image"] = image
        target["environment"] = [{"name": k, "value": v} for k, v in sorted(env_vars.items())]
        request = {k: template[k] for k in TASK_DEF_FIELDS if template.get(k) not in (None, [])}
        request["containerDefinitions"] = containers
        td_arn = aws.ecs.register_task_definition(
            family=f"revieee-{env}-{svc.name}",
            tags=[{"key": k, "value": v} for k, v in tags.items()],
            **request,
        )["taskDefinition"]["taskDefinitionArn"]

        cm_name = f"{svc.name}.{env}"
        cm = cloud_map.get(cm_name)
        if cm is None:
            cm = aws.servicediscovery.create_service(
                Name=cm_name,
                NamespaceId=cfg.namespace_id,
                CreatorRequestId=hashlib.sha256(
                    f"{cfg.namespace_id}/{cm_name}".encode()
                ).hexdigest()[:64],
                Description=f"revieee {APP} {branch}",
                DnsConfig={"RoutingPolicy": "MULTIVALUE", "DnsRecords": [{"Type": "A", "TTL": 10}]},
                HealthCheckCustomConfig={"FailureThreshold": 1},
                Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
            )["Service"]

        name = f"{env}-{svc.name}"
        existing = aws.ecs.describe_services(cluster=cfg.cluster, services=[name])["services"]
        if any(s.get("status") == "ACTIVE" for s in existing):
            aws.ecs.update_service(
                cluster=cfg.cluster,
                service=name,
                taskDefinition=td_arn,
                desiredCount=1,
                deploymentConfiguration=DEPLOYMENT_CONFIGURATION,
            )
        else:
            aws.ecs.create_service(
                cluster=cfg.cluster,
                serviceName=name,
                taskDefinition=td_arn,
                desiredCount=1,
                clientToken=hashlib.sha256(td_arn.encode()).hexdigest()[:36],
                capacityProviderStrategy=cfg.capacity_provider_strategy,
                networkConfiguration={
                    "awsvpcConfiguration": {
                        "subnets": cfg.subnets,
                        "securityGroups": cfg.security_groups,
                        "assignPublicIp": "DISABLED",
                    }
                },
                serviceRegistries=[{"registryArn": cm["Arn"]}],
                deploymentConfiguration=DEPLOYMENT_CONFIGURATION,
                tags=[{"key": k, "value": v} for k, v in tags.items()],
                propagateTags="SERVICE",
                enableECSManagedTags=True,
            )
        names.append(name)

    deadline = time.monotonic() + cfg.timeout
    while True:
        services = aws.ecs.describe_services(cluster=cfg.cluster, services=names)["services"]
        if all(
            len(s.get("deployments", [])) == 1 and s.get("runningCount") == s.get("desiredCount")
            for s in services
        ):
            return
        if time.monotonic() >= deadline:
            raise RuntimeError(f"not stable after {cfg.timeout}s")
        time.sleep(cfg.poll_interval)


# -- the revieee side: the real path -------------------------------------------------------------


def revieee_deploy(runtime: Runtime, branch: str, sha: str | None) -> str:
    """Request a deploy and run it inline, as the worker does; returns the environment."""
    req = runtime.core.intake.request_deploy(
        branch, APP, sha=sha, requested_by="bench", source="cli", wait=True
    )
    runtime.runner.run_until_idle(only=req.operation.id)
    return req.env


# -- measuring ----------------------------------------------------------------------------------


@dataclass
class Phase:
    """Timings and AWS calls of one phase (first deploy or redeploy), per side."""

    revieee_s: list[float]
    hand_s: list[float]
    revieee_calls: list[Counter[str]]
    hand_calls: list[Counter[str]]
    params_differ: int = 0
    first_difference: str | None = None

    @classmethod
    def empty(cls) -> Phase:
        return cls([], [], [], [])


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def push_branch_image(aws: AwsClients, branch: str, commit: str) -> str:
    """CI pushes the web image of ``branch`` at ``commit``; returns the commit sha."""
    sha = sandbox.fake_sha(f"{branch} {commit}")
    sandbox.push_image(aws.ecr, "shop-web", f"{branch}-{sha[:7]}")
    return sha


_IDS = re.compile(r"[0-9a-f]{7,}|srv-[a-z0-9]+")


def normalized(sent: list[tuple[str, dict[str, Any]]], branch: str) -> list[str]:
    """The calls as text, with the branch and the ids, digests and hashes that differ between
    two environments masked: what is left must be equal on both sides."""
    out = []
    for name, params in sent:
        text = json.dumps(params, sort_keys=True, default=str).replace(branch, "BRANCH")
        out.append(f"{name} {_IDS.sub('ID', text)}")
    return out


def run_phase(
    phase: Phase,
    revieee_first: bool,
    run_revieee: Callable[[], Any],
    run_hand: Callable[[], Any],
    counters: tuple[CallCounter, CallCounter],
    branches: tuple[str, str],
    record: bool,
) -> None:
    rv_counter, hand_counter = counters
    rv_counter.reset()
    hand_counter.reset()
    sides = [("revieee", run_revieee), ("hand", run_hand)]
    if not revieee_first:
        sides.reverse()
    took: dict[str, float] = {}
    for name, fn in sides:
        gc.collect()
        took[name] = timed(fn)
    if not record:
        return
    phase.revieee_s.append(took["revieee"])
    phase.hand_s.append(took["hand"])
    phase.revieee_calls.append(Counter(rv_counter.calls))
    phase.hand_calls.append(Counter(hand_counter.calls))
    rv_sent = normalized(rv_counter.sent_params, branches[0])
    hand_sent = normalized(hand_counter.sent_params, branches[1])
    if rv_sent != hand_sent:
        phase.params_differ += 1
        if phase.first_difference is None:
            phase.first_difference = next(
                (
                    f"revieee: {a}\n    hand:    {b}"
                    for a, b in zip(rv_sent, hand_sent, strict=False)
                    if a != b
                ),
                f"revieee sent {len(rv_sent)} calls, hand {len(hand_sent)}",
            )


def check_env(runtime: Runtime, env: str) -> None:
    row = runtime.store.get_env(env)
    if row is None or row["status"] != "running":
        raise SystemExit(f"revieee deploy of {env} did not succeed: {row and row['error']}")


def cleanup(runtime: Runtime, aws: AwsClients, envs: list[str], tags: list[str]) -> None:
    """Stop both environments and delete the pushed images (not timed)."""
    for env in envs:
        if runtime.store.get_env(env) is not None:
            req = runtime.core.intake.request_stop(env, requested_by="bench")
            runtime.runner.run_until_idle(only=req.operation.id)
        else:
            runtime.engine.stop(runtime.settings.apps[APP], env)
    aws.ecr.batch_delete_image(repositoryName="shop-web", imageIds=[{"imageTag": t} for t in tags])


def report(title: str, phase: Phase) -> None:
    ratios = [r / h for r, h in zip(phase.revieee_s, phase.hand_s, strict=True)]
    overhead = [r - h for r, h in zip(phase.revieee_s, phase.hand_s, strict=True)]
    rv_calls = sorted({sum(c.values()) for c in phase.revieee_calls})
    hand_calls = sorted({sum(c.values()) for c in phase.hand_calls})
    print(f"== {title} ({len(ratios)} rounds)")
    print(f"  revieee      median {statistics.median(phase.revieee_s) * 1000:8.1f} ms")
    print(f"  hand-written median {statistics.median(phase.hand_s) * 1000:8.1f} ms")
    print(f"  overhead     median {statistics.median(overhead) * 1000:8.1f} ms per deploy")
    print(
        f"  ratio revieee/hand: median {statistics.median(ratios):.2f} "
        f"(min {min(ratios):.2f}, max {max(ratios):.2f})"
    )
    print(
        f"  AWS calls per deploy: revieee {'/'.join(map(str, rv_calls))}, "
        f"hand-written {'/'.join(map(str, hand_calls))}"
    )
    diffs = [
        (rv - hd, hd - rv)
        for rv, hd in zip(phase.revieee_calls, phase.hand_calls, strict=True)
        if rv != hd
    ]
    if diffs:
        more, fewer = diffs[0]
        print(
            f"  WARNING: call counts differ in {len(diffs)} round(s); "
            f"revieee made extra {dict(more)} and fewer {dict(fewer)}"
        )
    if phase.params_differ:
        print(
            f"  WARNING: the calls' order or parameters differ in {phase.params_differ} "
            f"round(s); first difference:\n    {phase.first_difference}"
        )
    elif not diffs:
        print("  same AWS operations in the same order with the same parameters on both sides")
    print(f"  goal: ratio <= {GOAL}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    args = parser.parse_args()

    # moto behind the strict layer, in this process: tasks start at once, no throttling.
    box = sandbox.StrictSandbox(sandbox.quick_rules()).start()
    first, redeploy = Phase.empty(), Phase.empty()
    try:
        with tempfile.TemporaryDirectory() as tmp, sandbox.patched_environ(box.environ()):
            setup = build_clients("standard", 3)
            seeded = sandbox.seed(setup)
            settings = sandbox.sandbox_settings(seeded, str(Path(tmp) / "bench.db"))
            rv_aws = build_clients(settings.aws_retry_mode, settings.aws_max_attempts)
            hand_aws = build_clients(settings.aws_retry_mode, settings.aws_max_attempts)
            counters = (CallCounter(rv_aws), CallCounter(hand_aws))
            runtime = build(settings, clients=rv_aws)
            cfg = hand_config(settings, seeded, setup)
            print(f"moto server {box.endpoint}; app {APP!r}: web (branch image) + api (main)")
            print(f"warm-up {args.warmup} round(s), then {args.rounds} rounds, order alternating")
            print(
                "the hand-written side mirrors revieee's calls one for one: one image listing\n"
                "per repository and one Cloud Map listing per deploy, repository URIs and the\n"
                "namespace known in advance (see bench_calls.py)\n"
            )
            try:
                for i in range(args.warmup + args.rounds):
                    record = i >= args.warmup
                    rv_branch, hand_branch = f"b{i:03d}-rv", f"b{i:03d}-hd"
                    rv_sha = push_branch_image(setup, rv_branch, "first")
                    hand_sha = push_branch_image(setup, hand_branch, "first")
                    rv_env = f"{APP}-{rv_branch}"
                    hand_env = f"{APP}-{hand_branch}"
                    run_phase(
                        first,
                        i % 2 == 0,
                        lambda b=rv_branch: revieee_deploy(runtime, b, None),
                        lambda e=hand_env, b=hand_branch: hand_deploy(hand_aws, cfg, e, b, None),
                        counters,
                        (rv_branch, hand_branch),
                        record,
                    )
                    check_env(runtime, rv_env)
                    rv_sha2 = push_branch_image(setup, rv_branch, "second")
                    hand_sha2 = push_branch_image(setup, hand_branch, "second")
                    run_phase(
                        redeploy,
                        i % 2 == 1,
                        lambda b=rv_branch, s=rv_sha2: revieee_deploy(runtime, b, s),
                        lambda e=hand_env, b=hand_branch, s=hand_sha2: hand_deploy(
                            hand_aws, cfg, e, b, s
                        ),
                        counters,
                        (rv_branch, hand_branch),
                        record,
                    )
                    check_env(runtime, rv_env)
                    cleanup(
                        runtime,
                        setup,
                        [rv_env, hand_env],
                        [
                            f"{rv_branch}-{rv_sha[:7]}",
                            f"{hand_branch}-{hand_sha[:7]}",
                            f"{rv_branch}-{rv_sha2[:7]}",
                            f"{hand_branch}-{hand_sha2[:7]}",
                        ],
                    )
            finally:
                runtime.close()
    finally:
        box.stop()
    report("first deploy of a new branch", first)
    print()
    report("redeploy of an existing environment (new commit, --sha)", redeploy)


if __name__ == "__main__":
    main()

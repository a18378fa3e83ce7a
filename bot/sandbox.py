"""The built-in AWS sandbox: moto's server, in-process, seeded with what revieee needs.

Used by ``revieee demo`` (no AWS account needed), by the tests and by the benchmarks. Everything
is created through the real AWS APIs over HTTP, exactly as an operator would create it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from bot.aws import AwsClients
from bot.config import Settings, settings_from_mapping

REGION = "us-east-1"
CLUSTER = "revieee-sandbox"
NAMESPACE = "review.internal"
DOMAIN = "review.example.test"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


# The roles the stack creates (deploy/cloudformation.yml), as CloudFormation names them: the
# template task definitions name the execution role, revieee passes it on (iam:PassRole).
EXECUTION_ROLE_ARN = (
    "arn:aws:iam::123456789012:role/revieee-sandbox-EnvironmentExecutionRole-SANDBOX"
)


class MotoSandbox:
    """moto's ``ThreadedMotoServer`` on a free loopback port."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.endpoint = ""

    def start(self) -> MotoSandbox:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.stop()

    def environ(self) -> dict[str, str]:
        """The variables that point boto3 (in this or a child process) at the sandbox."""
        return {"AWS_ENDPOINT_URL": self.endpoint, **FAKE_CREDENTIALS}

    def reset(self) -> None:
        import urllib.request

        urllib.request.urlopen(
            urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST"),
            timeout=10,
        ).read()


def quick_rules(**changes: Any) -> Any:
    """Rules of the strict layer for benchmarks of revieee's own work: tasks start at once, no
    throttling (the other rules stay; time-to-Ready benchmarks set AWS's times instead)."""
    from bot.strict_aws import Rules

    base = {
        "task_start": 0.0,
        "pull_failure": 0.05,
        "drain": 0.0,
        "cloud_map_operation": 0.0,
        "cloud_map_lag": 0.0,
        "throttle": False,
    }
    return Rules(**{**base, **changes})


class StrictSandbox:
    """moto behind the strict AWS layer (:mod:`bot.strict_aws`): what revieee talks to in the
    tests, the benchmarks and ``revieee demo``. revieee's clients sign as its role; the
    operator's (seeding, looking) as :data:`bot.strict_aws.ADMIN_KEY`."""

    def __init__(self, rules: Any = None, authorizer: Any = None) -> None:
        from bot.strict_aws import StrictAws

        self.moto = MotoSandbox()
        self._rules = rules
        self._authorizer = authorizer
        self.strict: StrictAws | None = None
        self._make = StrictAws

    def start(self) -> StrictSandbox:
        self.moto.start()
        self.strict = self._make(self.moto.endpoint, self._rules, self._authorizer).start()
        return self

    @property
    def endpoint(self) -> str:
        assert self.strict is not None
        return self.strict.url

    def stop(self) -> None:
        if self.strict is not None:
            self.strict.stop()
        self.moto.stop()

    def environ(self) -> dict[str, str]:
        assert self.strict is not None
        return {**self.moto.environ(), **self.strict.environ()}

    def reset(self) -> None:
        self.moto.reset()
        if self.strict is not None:
            self.strict.reset()

    def admin_session(self) -> Any:
        """A boto3 session of the operator (its clients reach the layer through
        ``AWS_ENDPOINT_URL``, as set by :meth:`environ`)."""
        assert self.strict is not None
        return self.strict.admin_session()

    def admin_clients(self) -> AwsClients:
        """The operator's clients, through the layer (its rules apply, IAM does not)."""
        from bot.aws import build_clients

        assert self.strict is not None
        with patched_environ({"AWS_ENDPOINT_URL": self.strict.url}):
            clients = build_clients("standard", 3, session=self.strict.admin_session())
            clients.all()  # made now, while the endpoint is the layer's (clients are lazy)
            return clients


@contextmanager
def patched_environ(
    values: Mapping[str, str], remove: tuple[str, ...] = ("AWS_PROFILE",)
) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in [*values, *remove]}
    os.environ.update(values)
    for key in remove:
        os.environ.pop(key, None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass(frozen=True)
class Seeded:
    vpc: str
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    namespace_id: str


def fake_sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def push_image(ecr: Any, repository: str, tag: str) -> str:
    """Push a small fake image manifest with its own layer digest; returns the image digest."""
    image = ecr.put_image(
        repositoryName=repository, imageManifest=image_manifest(repository, tag), imageTag=tag
    )["image"]
    return str(image["imageId"]["imageDigest"])


def push_untagged(ecr: Any, repository: str, name: str) -> str:
    """Push an image with no tag (what a moved tag leaves behind on AWS); returns its digest."""
    image = ecr.put_image(repositoryName=repository, imageManifest=image_manifest(repository, name))
    return str(image["image"]["imageId"]["imageDigest"])


def image_manifest(repository: str, tag: str) -> str:
    """A small image manifest whose layer digest is its own (moto derives the image digest
    from the layers)."""
    layer = "sha256:" + hashlib.sha256(f"{repository}:{tag}".encode()).hexdigest()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 7023,
            "digest": "sha256:" + hashlib.sha256(f"cfg:{repository}:{tag}".encode()).hexdigest(),
        },
        "layers": [
            {
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "size": 32654,
                "digest": layer,
            }
        ],
    }
    return json.dumps(manifest)


def template_task_definition(
    ecs: Any,
    family: str,
    container: str,
    port: int,
    execution_role: str = EXECUTION_ROLE_ARN,
    log_group: str | None = None,
) -> str:
    """Register a template task definition (one Fargate container); ``log_group``: its
    container logs there with the awslogs driver."""
    logging_ = (
        {
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {
                    "awslogs-group": log_group,
                    "awslogs-region": REGION,
                    "awslogs-stream-prefix": family,
                },
            }
        }
        if log_group
        else {}
    )
    return str(
        ecs.register_task_definition(
            family=family,
            networkMode="awsvpc",
            requiresCompatibilities=["FARGATE"],
            cpu="256",
            memory="512",
            executionRoleArn=execution_role,
            containerDefinitions=[
                {
                    "name": container,
                    "image": "public.ecr.aws/nginx/nginx:latest",
                    "memory": 512,
                    "essential": True,
                    "portMappings": [{"containerPort": port, "protocol": "tcp"}],
                    "environment": [{"name": "LOG_LEVEL", "value": "info"}],
                    **logging_,
                }
            ],
        )["taskDefinition"]["taskDefinitionArn"]
    )


SERVICES = {
    # service: (repository, template family, container, port, ecr repository)
    "web": ("acme/shop-web", "shop-web", "web", 8080, "shop-web"),
    "api": ("acme/shop-api", "shop-api", "api", 9000, "shop-api"),
}


def seed(
    clients: AwsClients,
    branches: Mapping[str, list[str]] | None = None,
    log_group: str | None = None,
) -> Seeded:
    """Create network, cluster, namespace, template task definitions, ECR repositories and
    images. ``branches`` maps a service to the branches that have an image (default: web has
    ``main`` and ``feature/checkout``, api only ``main``); ``log_group``: create it, and the
    templates' containers log there (awslogs)."""
    ec2 = clients.ec2
    vpc = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.77.1.0/24", AvailabilityZone=f"{REGION}a")[
        "Subnet"
    ]["SubnetId"]
    sg = ec2.create_security_group(
        GroupName="revieee-review", Description="review apps", VpcId=vpc
    )["GroupId"]
    clients.ecs.create_cluster(clusterName=CLUSTER, capacityProviders=["FARGATE", "FARGATE_SPOT"])
    clients.servicediscovery.create_private_dns_namespace(Name=NAMESPACE, Vpc=vpc)
    ns_id = next(
        n["Id"]
        for n in clients.servicediscovery.list_namespaces()["Namespaces"]
        if n["Name"] == NAMESPACE
    )
    branches = branches or {"web": ["main", "feature/checkout"], "api": ["main"]}
    if log_group:
        clients.logs.create_log_group(logGroupName=log_group)
    for service, (_repo, family, container, port, ecr_repo) in SERVICES.items():
        template_task_definition(clients.ecs, family, container, port, log_group=log_group)
        clients.ecr.create_repository(repositoryName=ecr_repo)
        for branch in branches.get(service, []):
            tag_branch = branch.replace("/", "-")
            push_image(clients.ecr, ecr_repo, f"{tag_branch}-{fake_sha(service + branch)[:7]}")
    return Seeded(vpc, (subnet,), (sg,), ns_id)


def sandbox_config(seeded: Seeded, database: str, **overrides: Any) -> dict[str, Any]:
    """The configuration (as a TOML-shaped mapping) for the seeded sandbox."""
    services = {
        name: {
            "repository": repo,
            "task_definition": family,
            "container": container,
            "port": port,
            "ecr_repository": ecr_repo,
            "tag": "{branch}-{sha7}",
            **({"public": True} if name == "web" else {}),
        }
        for name, (repo, family, container, port, ecr_repo) in SERVICES.items()
    }
    return {
        "cluster": CLUSTER,
        "subnets": list(seeded.subnets),
        "security_groups": list(seeded.security_groups),
        "namespace": NAMESPACE,
        "domain": DOMAIN,
        "database": database,
        "poll_interval": 0.05,
        "log_post_interval": 0.05,
        "deploy_timeout": 5,
        "github_write_interval": 0,  # the local GitHub fake has no secondary rate limit
        "default_channel": "#review-apps",
        "apps": {"shop": {"services": services}},
        **overrides,
    }


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string: JSON's escapes are TOML's


def config_toml(data: Mapping[str, Any]) -> str:
    """A configuration mapping (as :func:`sandbox_config` makes it) as revieee.toml text, for
    the tests and benchmarks that run revieee as a real process."""
    lines = [f"{key} = {_toml_value(value)}" for key, value in data.items() if key != "apps"]
    tables = ("services", "tasks", "database")
    for app, table in data["apps"].items():
        lines.append(f"[apps.{app}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in table.items() if k not in tables]
        for kind in ("services", "tasks"):
            for name, fields in (table.get(kind) or {}).items():
                lines.append(f"[apps.{app}.{kind}.{name}]")
                lines += [f"{k} = {_toml_value(v)}" for k, v in fields.items()]
        if table.get("database"):
            lines.append(f"[apps.{app}.database]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in table["database"].items()]
    return "\n".join(lines) + "\n"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sandbox_settings(seeded: Seeded, database: str, **overrides: Any) -> Settings:
    return settings_from_mapping(sandbox_config(seeded, database, **overrides), environ={})

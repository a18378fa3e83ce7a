"""``revieee check --permissions`` on the strict layer: IAM's SimulatePrincipalPolicy for the
caller's role (the stack's RevieeeTaskRole, decided by the same real evaluator that decides
every call in the other tests)."""

from __future__ import annotations

import copy
import json

import pytest

from bot.cli import main
from bot.sandbox import Seeded
from bot.strict_aws.iam import RoleAuthorizer
from tests.conftest import WriteConfig


def drop(authorizer: RoleAuthorizer, sid: str) -> None:
    policies = copy.deepcopy(authorizer.policies)
    for policy in policies:
        before = len(policy["Statement"])
        policy["Statement"] = [s for s in policy["Statement"] if s.get("Sid") != sid]
        assert len(policy["Statement"]) < before or sid not in json.dumps(policy)
    assert json.dumps(policies) != json.dumps(authorizer.policies), f"no statement {sid}"
    authorizer.policies = policies


def test_the_stacks_role_allows_everything_the_sandbox_configuration_needs(
    write_config: WriteConfig, seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--config", str(write_config()), "check", "--permissions"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "permissions of arn:aws:iam::123456789012:role/revieee-sandbox-RevieeeTaskRole" in out
    allowed, total = out.split("requests allowed")[0].rsplit(":", 1)[1].split(" of ")
    assert int(allowed) == int(total) > 40
    assert "missing" not in out


def test_a_role_without_tag_on_create_is_told_what_to_add(
    write_config: WriteConfig,
    seeded: Seeded,
    authorizer: RoleAuthorizer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    drop(authorizer, "EcsTagOnCreate")
    code = main(["--config", str(write_config()), "check", "--permissions"])
    out = capsys.readouterr().out
    assert code == 1
    td = "arn:aws:ecs:us-east-1:123456789012:task-definition/revieee-shop-revieee-check-web:1"
    assert f"  - missing: ecs:TagResource on {td} (ecs:CreateAction=RegisterTaskDefinition)" in out
    add = next(line for line in out.splitlines() if "task-definition/revieee-*" in line)
    statement = json.loads(add.split("add: ", 1)[1])
    assert statement == {
        "Action": "ecs:TagResource",
        "Condition": {"StringEquals": {"ecs:CreateAction": "RegisterTaskDefinition"}},
        "Effect": "Allow",
        "Resource": "arn:aws:ecs:us-east-1:123456789012:task-definition/revieee-*",
    }
    assert "ecs:CreateAction=CreateService" in out  # the services' tags too
    assert "missing: ecs:CreateService" not in out  # what the role has is not listed


def test_a_role_missing_pass_role_for_a_templates_task_role(
    write_config: WriteConfig,
    seeded: Seeded,
    admin,  # type: ignore[no-untyped-def]
    capsys: pytest.CaptureFixture[str],
) -> None:
    task_role = "arn:aws:iam::123456789012:role/shop-web-task"
    template = admin.ecs.describe_task_definition(taskDefinition="shop-web")["taskDefinition"]
    admin.ecs.register_task_definition(
        family="shop-web",
        taskRoleArn=task_role,
        **{
            k: template[k]
            for k in (
                "executionRoleArn",
                "networkMode",
                "containerDefinitions",
                "requiresCompatibilities",
                "cpu",
                "memory",
            )
        },
    )
    code = main(["--config", str(write_config()), "check", "--permissions"])
    out = capsys.readouterr().out
    assert code == 1
    assert (
        f"missing: iam:PassRole on {task_role} (iam:PassedToService=ecs-tasks.amazonaws.com): "
        "shop.web: the template's taskRoleArn" in out
    )


def test_check_permissions_takes_only_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--role", "arn:aws:iam::1:role/x"]) == 2
    assert main(["check", "--permission"]) == 2
    assert "usage: revieee check [--permissions [--role ARN]]" in capsys.readouterr().err

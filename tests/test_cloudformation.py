"""deploy/cloudformation.yml: it passes cfn-lint, it creates a stack on moto's server, and
revieee deploys a demo branch into what the stack created.

moto's CloudFormation does not create every resource type of the template: the ACM
certificate (AWS::CertificateManager::Certificate) and the Cloud Map namespace
(AWS::ServiceDiscovery::PrivateDnsNamespace) are skipped with a warning, and a listener that
refers to a skipped certificate crashes moto. So the test passes an existing certificate
(requested from moto's ACM: the template's CertificateArn parameter), creates the namespace
itself (with the stack's name for it) and checks the rest came from the stack.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import urllib.parse
import warnings
from pathlib import Path
from typing import Any

import pytest

from bot.app import build
from bot.aws import AwsClients
from bot.config import settings_from_mapping
from bot.naming import ecs_service_name, env_name
from bot.sandbox import (
    REGION,
    StrictSandbox,
    push_image,
    sandbox_config,
    template_task_definition,
)
from bot.strict_aws.iam import RoleAuthorizer
from tests.strict_aws.stack import Stack

TEMPLATE = Path(__file__).resolve().parent.parent / "deploy" / "cloudformation.yml"
NOT_IN_MOTO = {"AWS::CertificateManager::Certificate", "AWS::ServiceDiscovery::PrivateDnsNamespace"}


def test_the_template_passes_cfn_lint() -> None:
    exe = shutil.which("cfn-lint") or str(Path(sys.executable).parent / "cfn-lint")
    done = subprocess.run([exe, str(TEMPLATE)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def _network(ec2: Any) -> tuple[str, list[str], list[str]]:
    vpc = ec2.create_vpc(CidrBlock="10.90.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.90.{n}.0/24", AvailabilityZone=f"{REGION}{z}")[
            "Subnet"
        ]["SubnetId"]
        for n, z in ((1, "a"), (2, "b"), (101, "a"), (102, "b"))
    ]
    return vpc, subnets[:2], subnets[2:]


def test_the_stack_creates_on_moto_and_revieee_deploys_into_it(
    aws: AwsClients,
    admin: AwsClients,
    moto_server: StrictSandbox,
    authorizer: RoleAuthorizer,
    tmp_path: Path,
) -> None:
    """The operator creates the stack; revieee then runs as the stack's own RevieeeTaskRole:
    its policy, resolved with the created stack's physical ids, decides every call."""
    operator = moto_server.admin_session()
    cfn = operator.client("cloudformation", region_name=REGION)
    route53 = operator.client("route53", region_name=REGION)
    secrets = operator.client("secretsmanager", region_name=REGION)
    vpc, private, public = _network(admin.ec2)
    zone = route53.create_hosted_zone(Name="review.example.test", CallerReference="t")[
        "HostedZone"
    ]["Id"].split("/")[-1]
    certificate = operator.client("acm", region_name=REGION).request_certificate(
        DomainName="*.review.example.test"
    )["CertificateArn"]
    secret = secrets.create_secret(
        Name="revieee", SecretString=json.dumps({"SLACK_BOT_TOKEN": "xoxb-x"})
    )["ARN"]
    parameters = {
        "VpcId": vpc,
        "PrivateSubnetIds": ",".join(private),
        "PublicSubnetIds": ",".join(public),
        "Domain": "review.example.test",
        "HostedZoneId": zone,
        "RevieeeImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/revieee:test",
        "SecretsArn": secret,
        "CertificateArn": certificate,
        "EcrRepositoryArns": f"arn:aws:ecr:{REGION}:123456789012:repository/shop-*",
        "CodeBuildProjectArns": f"arn:aws:codebuild:{REGION}:123456789012:project/shop-images",
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfn.create_stack(
            StackName="revieee",
            TemplateBody=TEMPLATE.read_text(),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            Capabilities=["CAPABILITY_IAM"],
        )
    skipped = {t for t in NOT_IN_MOTO if any(t in str(w.message) for w in caught)}
    stack = cfn.describe_stacks(StackName="revieee")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    created = {
        r["ResourceType"]
        for r in cfn.list_stack_resources(StackName="revieee")["StackResourceSummaries"]
    }
    for kind in (
        "AWS::ECS::Cluster",
        "AWS::ECS::Service",
        "AWS::ECS::TaskDefinition",
        "AWS::IAM::Role",
        "AWS::EFS::FileSystem",
        "AWS::ElasticLoadBalancingV2::LoadBalancer",
        "AWS::Route53::RecordSet",
        "AWS::Logs::LogGroup",
    ):
        assert kind in created, f"{kind} was not created ({sorted(created)})"

    # the cluster exists and runs revieee and the proxy; its capacity providers (FARGATE and
    # FARGATE_SPOT in the template) are dropped by moto's CloudFormation, so only the template
    # text can be checked for them
    (cluster,) = admin.ecs.describe_clusters(clusters=[outputs["Cluster"]])["clusters"]
    assert cluster["status"] == "ACTIVE"
    assert "CapacityProviders: [FARGATE, FARGATE_SPOT]" in TEMPLATE.read_text()
    services = admin.ecs.list_services(cluster=outputs["Cluster"])["serviceArns"]
    assert any(a.endswith("revieee-revieee") for a in services)
    assert any(a.endswith("revieee-proxy") for a in services)
    # the least-privilege role: only the services revieee calls
    iam = operator.client("iam", region_name=REGION)
    role = next(r for r in iam.list_roles()["Roles"] if "RevieeeTaskRole" in r["RoleName"])
    (policy_name,) = iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"]
    document = iam.get_role_policy(RoleName=role["RoleName"], PolicyName=policy_name)[
        "PolicyDocument"
    ]
    if isinstance(document, str):
        # AWS answers URL-encoded JSON (boto3 decodes it); moto, for a policy created by its
        # CloudFormation, the Python repr of the document
        text = urllib.parse.unquote(document)
        document = json.loads(text) if text.lstrip().startswith('{"') else ast.literal_eval(text)
    # moto's CloudFormation leaves None where !If chose AWS::NoValue (AWS drops the item)
    statements = [s for s in document["Statement"] if s is not None]
    actions = {
        a.split(":")[0]
        for s in statements
        for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
    }
    assert actions == {
        "ecs",
        "iam",
        "servicediscovery",
        "route53",
        "ecr",
        "codebuild",
        "logs",
        "ec2",
        "servicequotas",  # read only: the Fargate vCPU quotas
    }

    # what moto's CloudFormation skipped: the namespace (created here, as the stack names it)
    namespace = outputs.get("NamespaceId", "")
    if "AWS::ServiceDiscovery::PrivateDnsNamespace" in skipped:
        admin.servicediscovery.create_private_dns_namespace(Name=outputs["Namespace"], Vpc=vpc)
        namespace = next(
            n["Id"]
            for n in admin.servicediscovery.list_namespaces()["Namespaces"]
            if n["Name"] == outputs["Namespace"]
        )
    assert "AWS::CertificateManager::Certificate" not in created  # the one given was used

    # from here on revieee runs as the stack's task role, its policy resolved with the ids
    # this stack's resources got
    physical = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in cfn.list_stack_resources(StackName="revieee")["StackResourceSummaries"]
    }
    roles = {
        logical: iam.get_role(RoleName=physical[logical])["Role"]["Arn"]
        for logical in ("EnvironmentExecutionRole", "RevieeeTaskRole")
    }
    stack = Stack(
        namespace,
        {k: v for k, v in parameters.items()},
        stack_name="revieee",
        physical=physical,
        arns={**roles, "Cluster": cluster["clusterArn"]},
    )
    authorizer.policies = stack.role_policies()
    assert outputs["EnvironmentExecutionRoleArn"] == roles["EnvironmentExecutionRole"]

    # revieee, configured from the stack's outputs, deploys a demo branch into it
    for family, container, port in (("shop-web", "web", 8080), ("shop-api", "api", 9000)):
        template_task_definition(
            admin.ecs, family, container, port, roles["EnvironmentExecutionRole"]
        )
    for repo, tag in (("shop-web", "demo-c0ffee1"), ("shop-api", "main-c0ffee1")):
        admin.ecr.create_repository(repositoryName=repo)
        push_image(admin.ecr, repo, tag)
    seeded_like = type("S", (), {"subnets": private, "security_groups": []})
    config = sandbox_config(seeded_like, str(tmp_path / "revieee.db"))  # type: ignore[arg-type]
    config.update(
        cluster=outputs["Cluster"],
        namespace=namespace,
        domain="review.example.test",
        security_groups=[outputs["EnvironmentSecurityGroup"]],
        deploy_timeout=10,
    )
    config["apps"]["shop"]["services"]["api"]["default_branch"] = "main"
    runtime = build(settings_from_mapping(config, environ={}), clients=aws)
    try:
        runtime.runner.start()
        env = env_name("shop", "demo")
        req = runtime.core.intake.request_deploy("demo", sha="c0ffee1" + "0" * 33)
        deadline = 60
        import time

        end = time.monotonic() + deadline
        while time.monotonic() < end:
            row = runtime.store.get_env(env)
            if row and row["status"] in ("running", "failed"):
                break
            time.sleep(0.1)
        row = runtime.store.get_env(env)
        assert row and row["status"] == "running", row
        assert req.url == f"https://{env}.review.example.test"
        (svc,) = admin.ecs.describe_services(
            cluster=outputs["Cluster"], services=[ecs_service_name(env, "web")]
        )["services"]
        assert svc["status"] == "ACTIVE"
        assert svc["networkConfiguration"]["awsvpcConfiguration"]["securityGroups"] == [
            outputs["EnvironmentSecurityGroup"]
        ]
    finally:
        runtime.close()


@pytest.mark.parametrize("missing", ["Domain", "SecretsArn"])
def test_the_stack_refuses_missing_parameters(
    aws: AwsClients, moto_server: StrictSandbox, missing: str
) -> None:
    cfn = moto_server.admin_session().client("cloudformation", region_name=REGION)
    lint_like = TEMPLATE.read_text()
    assert f"  {missing}:\n" in lint_like  # the parameter exists and has no default
    section = lint_like.split(f"  {missing}:\n", 1)[1].split("\n  ", 1)[0]
    assert "Default" not in section
    with pytest.raises(cfn.exceptions.ClientError):
        cfn.create_stack(StackName="incomplete", TemplateBody=lint_like, Parameters=[])


# -- protected previews, access = "sso": the load balancer's rules ---------------------------------
# moto's ELBv2 keeps authenticate-* actions without checking them and no local service signs
# anyone in, so what is tested here is the rules as CloudFormation resolves them (and cfn-lint's
# schema checks above); the sign-in itself is not exercised (see the README).

SSO_OIDC = {
    "Domain": "review.example.test",
    "SsoProvider": "oidc",
    "OidcIssuer": "https://idp.example.test",
    "OidcAuthorizationEndpoint": "https://idp.example.test/authorize",
    "OidcTokenEndpoint": "https://idp.example.test/token",
    "OidcUserInfoEndpoint": "https://idp.example.test/userinfo",
    "OidcClientId": "previews",
    "OidcClientSecret": "s3cret",
}


def _rules(stack: Stack) -> dict[str, dict[str, Any]]:
    """The listener rules the stack creates (those whose condition holds), resolved."""
    out = {}
    for name, res in stack.template["Resources"].items():
        if res["Type"] != "AWS::ElasticLoadBalancingV2::ListenerRule":
            continue
        if "Condition" in res and not stack.condition(res["Condition"]):
            continue
        out[name] = stack.resolve(res["Properties"])
    return out


def _hosts(rule: dict[str, Any]) -> list[str]:
    return next(c for c in rule["Conditions"] if c["Field"] == "host-header")["HostHeaderConfig"][
        "Values"
    ]


def test_without_sso_only_revieees_own_hosts_have_a_rule() -> None:
    rules = _rules(Stack("ns-x", {"Domain": "review.example.test"}))
    assert list(rules) == ["RevieeeRule"]
    assert _hosts(rules["RevieeeRule"]) == [
        "revieee.review.example.test",
        "auth.review.example.test",
    ]


def test_oidc_signs_in_environments_but_not_revieee_the_broker_or_a_bypass() -> None:
    stack = Stack("ns-x", {**SSO_OIDC, "SsoHostPatterns": "shop-*.review.example.test"})
    rules = _rules(stack)
    assert set(rules) == {"RevieeeRule", "SsoRule"}  # no bypass value: no bypass rule
    # lower numbers first: Slack, GitHub and the OAuth broker are never asked to sign in
    assert rules["RevieeeRule"]["Priority"] == 1 < rules["SsoRule"]["Priority"]
    sso = rules["SsoRule"]
    assert _hosts(sso) == ["shop-*.review.example.test"]
    auth, forward = sorted(sso["Actions"], key=lambda a: a["Order"])
    assert auth["Type"] == "authenticate-oidc" and forward["Type"] == "forward"
    config = auth["AuthenticateOidcConfig"]
    assert config["Issuer"] == "https://idp.example.test" and config["ClientSecret"] == "s3cret"
    assert config["OnUnauthenticatedRequest"] == "authenticate"
    assert "openid" in config["Scope"].split()

    # every environment when no pattern is given; a bypass header's rule before the sign-in
    token = "b" * 40
    rules = _rules(Stack("ns-x", {**SSO_OIDC, "SsoBypassHeaderValue": token}))
    assert _hosts(rules["SsoRule"]) == ["*.review.example.test"]
    bypass = rules["SsoBypassRule"]
    assert rules["RevieeeRule"]["Priority"] < bypass["Priority"] < rules["SsoRule"]["Priority"]
    header = next(c for c in bypass["Conditions"] if c["Field"] == "http-header")
    assert header["HttpHeaderConfig"] == {"HttpHeaderName": "X-Revieee-Bypass", "Values": [token]}
    assert [a["Type"] for a in bypass["Actions"]] == ["forward"]


def test_cognito_signs_in_with_the_user_pool() -> None:
    stack = Stack(
        "ns-x",
        {
            "Domain": "review.example.test",
            "SsoProvider": "cognito",
            "CognitoUserPoolArn": "arn:aws:cognito-idp:us-east-1:123456789012:userpool/us-east-1_X",
            "CognitoUserPoolClientId": "client",
            "CognitoUserPoolDomain": "previews",
        },
    )
    (auth,) = [a for a in _rules(stack)["SsoRule"]["Actions"] if a["Type"] != "forward"]
    assert auth["Type"] == "authenticate-cognito"
    assert auth["AuthenticateCognitoConfig"]["UserPoolDomain"] == "previews"
    assert "SsoBypassRule" not in _rules(stack)  # a bypass needs its value


def test_the_bypass_header_value_must_be_long_enough_to_be_a_secret() -> None:
    import re

    spec = Stack("ns-x").template["Parameters"]["SsoBypassHeaderValue"]
    pattern = re.compile(spec["AllowedPattern"])
    assert spec["NoEcho"] is True
    assert pattern.fullmatch("") and pattern.fullmatch("a" * 32)
    assert not pattern.fullmatch("short") and not pattern.fullmatch("a b" * 20)

"""The ``revieee`` console script, run as a real subprocess against moto's server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.aws import AwsClients
from bot.cli import EXTRA, extra_help, extra_usage, main
from bot.naming import env_name
from bot.sandbox import StrictSandbox
from commands.run import format_help
from commands.verbs import VERBS, usage
from tests.conftest import WriteConfig

ENV = env_name("shop", "feature/checkout")


def revieee(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REVIEEE_")}
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def unconfigured(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``revieee ARGS`` with no configuration at all: an empty environment (no REVIEEE_*, no
    AWS_*) in a directory without revieee.toml."""
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        env={},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_demo_runs_the_whole_flow_with_no_aws_account(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "demo"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.count(f"[ready] https://{ENV}.review.example.test is up") == 2
    assert "(fallback: the repository has no such branch)" in out
    assert f"[updating ECS service {ENV}-web]" in out  # the redeploy
    assert f"deleted Cloud Map service web.{ENV}" in out
    assert f"ECS service {ENV}-web was already gone" in out
    # the database per environment: created and seeded once, migrated before each version
    # takes traffic (the second commit's migration too), dropped before the stop
    db = ENV.replace("-", "_")
    assert out.count("[on create task create-db] exit code 0 after") == 1
    assert out.count("[release task migrate] exit code 0 after") == 2
    assert f"| CREATE DATABASE {db}" in out and "| Applying 0003_checkout_v2... OK" in out
    assert out.index("[release task migrate]") < out.index(f"[creating ECS service {ENV}-web]")
    assert out.index("[on stop task drop-db]") < out.index(f"[deleting ECS service {ENV}-web]")
    assert "CHECKOUT_V2=on  (from cli by demo-user)" in out
    assert "demo finished: every step worked" in out
    assert not list(tmp_path.iterdir())  # left nothing behind in the working directory


def test_help_lists_every_verb() -> None:
    result = revieee("help")
    assert result.returncode == 0
    for verb in ("deploy BRANCH", "stop ENV", "list", "status ENV", "check", "worker", "demo"):
        assert verb in result.stdout


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["--config", "nowhere.toml", "-h"]])
def test_help_option_lists_every_verb_and_subcommand_without_configuration(
    args: list[str], tmp_path: Path
) -> None:
    result = unconfigured(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    for verb in VERBS:
        assert f"\n  {usage(verb)}" in result.stdout
    for name in EXTRA:
        assert f"\n  {extra_usage(name).removeprefix('usage: revieee ')}" in result.stdout
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("form", ["VERB --help", "VERB -h", "help VERB"])
@pytest.mark.parametrize("verb", [*VERBS, *EXTRA])
def test_each_verbs_help_needs_no_configuration(
    verb: str, form: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """Every verb the parser knows, and every terminal-only subcommand (``demo --help`` must not
    run the demo), answers its help from its docstring: exit 0, no revieee.toml, no env.
    In-process (39 cases); the subprocess tests above run the console script itself."""
    monkeypatch.chdir(tmp_path)
    for key in [k for k in os.environ if k.startswith(("REVIEEE_", "AWS_"))]:
        monkeypatch.delenv(key)
    code = main(form.replace("VERB", verb).split())
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert err == ""
    expected = format_help(verb) if verb in VERBS else extra_help(verb)
    assert out == expected + "\n"
    assert out.startswith("usage: ")
    assert not list(tmp_path.iterdir())


def test_help_for_an_unknown_verb_exits_2_with_usage(tmp_path: Path) -> None:
    for args, message in [
        (["-h", "nope"], "no help for 'nope'"),
        (["help", "nope"], "no help for 'nope'"),
        (["nope", "--help"], "unknown command 'nope'"),
        (["deplyo", "-h"], "unknown command 'deplyo' (did you mean 'deploy'?)"),
    ]:
        result = unconfigured(*args, cwd=tmp_path)
        assert result.returncode == 2, args
        assert message in result.stderr, args
        assert f"usage: {usage('deploy')}" in result.stderr, args
        assert result.stdout == "", args


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["deplyo", "x"], "unknown command 'deplyo' (did you mean 'deploy'?)"),
        (["deploy"], "deploy needs BRANCH"),
        (["stop", "a", "b"], "unexpected argument 'b' for stop"),
        (["check", "extra"], "usage: revieee check [--permissions [--role ARN]]"),
    ],
)
def test_bad_usage_exits_2_with_usage(args: list[str], message: str) -> None:
    result = revieee(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "usage:" in result.stderr


def test_missing_configuration_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "revieee.toml"
    config.write_text('cluster = "c"\n')
    result = revieee("--config", str(config), "list")
    assert result.returncode == 2
    assert result.stderr.startswith("config error: subnets: is missing")
    assert 'example: subnets = ["subnet-' in result.stderr
    # REVIEEE_CONFIG works as well as --config
    result = revieee("list", env={"REVIEEE_CONFIG": str(config)})
    assert result.stderr.startswith("config error: subnets: is missing")


def test_check_against_the_sandbox(
    write_config: WriteConfig, moto_server: StrictSandbox, aws: AwsClients, admin: AwsClients
) -> None:
    config = write_config()
    good = revieee("--config", str(config), "check", env=moto_server.environ())
    assert good.returncode == 0, good.stdout + good.stderr
    assert "AWS: OK" in good.stdout
    admin.ecs.delete_cluster(cluster="revieee-sandbox")
    admin.ecr.delete_repository(repositoryName="shop-api", force=True)
    bad = revieee("--config", str(config), "check", env=moto_server.environ())
    assert bad.returncode == 1
    assert "2 problem(s) in AWS" in bad.stdout
    assert "cluster: ECS cluster 'revieee-sandbox' does not exist" in bad.stdout
    assert "apps.shop.services.api.ecr_repository: 'shop-api' not found" in bad.stdout


def test_deploy_list_status_stop_from_the_terminal(
    write_config: WriteConfig, moto_server: StrictSandbox
) -> None:
    config = str(write_config())
    env = {**moto_server.environ(), "USER": "alice"}
    deployed = revieee("--config", config, "deploy", "feature/checkout", env=env)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert f"queued deploy of feature/checkout as {ENV}" in deployed.stdout
    assert "[deploying] rollout started" in deployed.stdout
    assert deployed.stdout.rstrip().endswith(f"{ENV}: deploying https://{ENV}.review.example.test")

    listed = revieee("--config", config, "list", "--mine", env=env)
    assert ENV in listed.stdout and "alice" in listed.stdout and "1 environment(s)" in listed.stdout
    assert "no environments" in revieee("--config", config, "list", "--app", "nope", env=env).stdout

    status = revieee("--config", config, "status", "feature/checkout", env=env)
    assert status.returncode == 0
    assert status.stdout.startswith(f"{ENV}: running")  # became stable: status says so
    assert f"service web: ACTIVE, 1/1 running ({ENV}-web)" in status.stdout

    stopped = revieee("--config", config, "stop", ENV, env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.rstrip().endswith(f"{ENV}: stopped https://{ENV}.review.example.test")
    assert "no environments" in revieee("--config", config, "list", env=env).stdout

    unknown = revieee("--config", config, "status", "nope", env=env)
    assert unknown.returncode == 1
    assert "no environment named 'nope'" in unknown.stdout


def test_failed_deploy_exits_1_with_the_reason(
    write_config: WriteConfig, moto_server: StrictSandbox
) -> None:
    config = str(write_config())
    result = revieee(
        "--config", config, "deploy", "ghost-branch", "--wait", env=moto_server.environ()
    )
    assert result.returncode == 1
    assert "no image shop-web:ghost-branch-<sha7> for any commit" in result.stderr


def test_proxy_config_prints_the_proxys_nginx_configuration(write_config: WriteConfig) -> None:
    config = str(write_config())
    done = revieee("--config", config, "proxy-config", "--revieee-url", "https://revieee.x.test")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("# made by `revieee proxy-config`")
    assert '"~^shop-" "web";' in done.stdout and "resolver 169.254.169.253" in done.stdout
    again = revieee("--config", config, "proxy-config", "--revieee-url=http://10.0.0.5:8080",
                    "--resolver", "10.0.0.2")  # fmt: skip
    assert "resolver 10.0.0.2 valid=10s" in again.stdout
    assert '"http://10.0.0.5:8080/_revieee/visit"' in again.stdout
    for bad in ([], ["--revieee-url"], ["--revieee-url", "revieee.x.test"], ["--port", "1"]):
        refused = revieee("--config", config, "proxy-config", *bad)
        assert refused.returncode == 2 and "proxy-config" in refused.stderr + refused.stdout


def test_bypass_token_prints_the_apps_token_from_the_proxy_secret(
    write_config: WriteConfig,
) -> None:
    from bot.access import bypass_token

    config = str(write_config())
    secret = {"REVIEEE_PROXY_SECRET": "s" * 32}
    done = revieee("--config", config, "bypass-token", "shop", env=secret)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == bypass_token("s" * 32, "shop")
    assert 'not access = "token"' in done.stderr  # the sandbox's shop is public
    assert secret["REVIEEE_PROXY_SECRET"] not in done.stdout + done.stderr
    other = revieee("--config", config, "bypass-token", "shop", env={"REVIEEE_PROXY_SECRET": "t"})
    assert other.stdout.strip() != done.stdout.strip()  # made from the secret
    no_secret = revieee("--config", config, "bypass-token", "shop")
    assert no_secret.returncode == 2 and "REVIEEE_PROXY_SECRET" in no_secret.stderr
    for bad in ([], ["nope"], ["shop", "extra"]):
        refused = revieee("--config", config, "bypass-token", *bad, env=secret)
        assert refused.returncode == 2 and "APP: one of shop" in refused.stderr

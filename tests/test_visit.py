"""Wake on visit: the reverse proxy sends a request its environment does not answer to
revieee's ``/_revieee/visit``, which says why in a small page and wakes a sleeping
environment, once however often it is visited. The proxy's nginx configuration is made by
``revieee proxy-config`` and, where nginx is installed (Debian's ``nginx-light``; ``.ci/run``
installs it when it can), checked with ``nginx -t`` and run: a visit goes through a real
nginx whose upstream cannot be resolved (no task registered), to revieee."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.naming import env_name
from bot.proxyconf import nginx_config
from bot.sandbox import free_port
from bot.visit import PATH
from tests.conftest import MakeRig
from tests.nginx_run import NGINX, check, get, running
from tests.slack_rig import PROXY_SECRET, SlackRig

BRANCH = "feature/checkout"
ENV = env_name("shop", BRANCH)


def visit(rig: SlackRig, env: str, secret: str = PROXY_SECRET) -> tuple[int, str, dict[str, str]]:
    resp = rig.request(
        "GET", PATH, headers={"X-Revieee-Env": env, "X-Revieee-Proxy-Secret": secret}
    )
    return resp.status, resp.body.decode(), resp.headers


def asleep(rig: SlackRig) -> None:
    assert rig.command(f"deploy {BRANCH}").status == 200
    rig.wait_status(ENV, "running", timeout=30)
    rig.runtime.core.intake.request_scale(ENV, "sleep", source="scheduler")
    rig.wait_status(ENV, "sleeping", timeout=30)


def test_a_visit_wakes_a_sleeping_environment_once(make_rig: MakeRig) -> None:
    rig = make_rig()
    asleep(rig)
    store = rig.runtime.store
    status, page, headers = visit(rig, ENV)
    assert status == 503 and headers["Retry-After"] == "5"
    assert f"<title>Waking up {ENV}</title>" in page
    assert '<meta http-equiv="refresh" content="5">' in page
    assert "It was asleep; it is waking up" in page and "U0ALICE" in page
    assert "A start usually takes about" in page  # from its deploys
    # visits while it wakes ask for nothing more
    for _ in range(3):
        assert visit(rig, ENV)[0] == 503
    wakes = [o for o in store.operations(env=ENV) if o.kind == "wake"]
    assert len(wakes) == 1 and wakes[0].source == "visit"
    rig.wait_status(ENV, "running", timeout=30)
    assert any(e["action"] == "wake requested" for e in store.audit_events(ENV))
    # running, but the proxy found no task (still registering): "starting", no wake
    status, page, _ = visit(rig, ENV)
    assert status == 503 and f"Starting {ENV}" in page
    assert len([o for o in store.operations(env=ENV) if o.kind == "wake"]) == 1


def test_stopped_unknown_and_refused_visits(make_rig: MakeRig) -> None:
    rig = make_rig()
    assert rig.command(f"deploy {BRANCH}").status == 200
    rig.wait_status(ENV, "running", timeout=30)
    rig.command(f"stop {ENV}")
    rig.wait_status(ENV, "stopped", timeout=30)
    status, page, headers = visit(rig, ENV)
    assert status == 410 and "Retry-After" not in headers and "refresh" not in page
    assert f"<code>/revieee deploy {BRANCH}</code>" in page
    assert "Its Slack message</a>" in page  # a link to its deploy message
    assert rig.runtime.store.operations(env=ENV)[-1].kind == "stop"  # nothing asked
    assert visit(rig, "shop-nothing-here")[0] == 404
    assert visit(rig, ENV, secret="guess")[0] == 401
    assert visit(rig, "../etc")[0] == 400
    no_secret = rig.request("GET", PATH, headers={"X-Revieee-Env": ENV})
    assert no_secret.status == 401


def test_what_the_page_shows_is_escaped(make_rig: MakeRig) -> None:
    rig = make_rig()
    rig.runtime.store.upsert_env(
        "shop-x", app="shop", branch="<script>alert(1)</script>", owner='"><img src=x>',
        status="failed",
    )  # fmt: skip
    status, page, _ = visit(rig, "shop-x")
    assert status == 503 and "Its last deploy failed" in page
    assert "<script>" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# -- the proxy's configuration, and a real nginx --------------------------------------------


def test_the_configuration_routes_each_app_to_its_public_service(make_rig: MakeRig) -> None:
    rig = make_rig()
    text = nginx_config(rig.runtime.settings, "https://revieee.review.example.test")
    assert '"~^(?<name>[a-z0-9-]+)\\.review\\.example\\.test$" $name;' in text
    assert '"~^shop-" "web";' in text and '"~^shop-" "8080";' in text
    assert 'set $upstream "$review_service.$review_env.review.internal";' in text
    assert "error_page 502 503 504 = @visit;" in text
    assert 'set $revieee_visit "https://revieee.review.example.test/_revieee/visit";' in text
    assert 'proxy_set_header X-Revieee-Proxy-Secret "${REVIEEE_PROXY_SECRET}";' in text
    with pytest.raises(ValueError, match="http"):
        nginx_config(rig.runtime.settings, "revieee.internal")


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (Debian: nginx-light)")
def test_a_real_nginx_sends_a_visit_of_a_sleeping_environment_to_revieee(
    make_rig: MakeRig, tmp_path: Path
) -> None:
    assert NGINX is not None
    rig = make_rig()
    asleep(rig)
    dead_dns = free_port()  # nothing answers there: no environment's name resolves
    conf = nginx_config(
        rig.runtime.settings,
        f"http://127.0.0.1:{rig.port}",
        resolver=f"127.0.0.1:{dead_dns}",
        secret=PROXY_SECRET,  # what the nginx image's start fills in from its environment
        resolver_timeout="1s",
        cache_dir=str(tmp_path / "cache"),
    )
    with running(conf, tmp_path) as port:
        status, page, _ = get(port, "/cart?x=1", f"{ENV}.review.example.test")
        assert status == 503 and f"Waking up {ENV}" in page
        assert [o.source for o in rig.runtime.store.operations(env=ENV) if o.kind == "wake"] == [
            "visit"
        ]
        assert get(port, "/", "docs-x.review.example.test")[0] == 404  # no such app
        assert get(port, "/", "elsewhere.example.com")[0] == 404


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (Debian: nginx-light)")
def test_the_stacks_proxy_makes_its_configuration_with_revieee_and_nginx_takes_it(
    tmp_path: Path,
) -> None:
    """The stack's proxy task: its ``config`` container runs ``revieee proxy-config`` (its
    command and environment, resolved as CloudFormation resolves them, on a revieee.toml with
    two apps, one token-protected), the ``nginx`` container fills the secret in as its
    envsubst does; nginx takes the result."""
    from tests.strict_aws.stack import Stack

    stack = Stack(
        "ns-proxytest",
        {"Domain": "review.example.test", "PrivateSubnetIds": "subnet-1"},
        physical={"EnvironmentSecurityGroup": "sg-0123456789abcdef0"},
    )
    task = stack.resolve(stack.template["Resources"]["ProxyTaskDefinition"]["Properties"])
    config, nginx = task["ContainerDefinitions"]
    assert nginx["DependsOn"] == [{"ContainerName": "config", "Condition": "SUCCESS"}]
    assert {s["Name"] for s in nginx["Secrets"]} == {"REVIEEE_PROXY_SECRET"}
    assert {s["Name"] for s in config["Secrets"]} == {"REVIEEE_CONFIG_TOML"}
    shared = {m["ContainerPath"] for m in config["MountPoints"]}
    assert shared == {m["ContainerPath"] for m in nginx["MountPoints"]}
    toml = """
[apps.shop.services.web]
repository = "acme/shop"
task_definition = "shop-web"
container = "web"
port = 8080
ecr_repository = "shop-web"
[apps.docs]
access = "token"
[apps.docs.services.site]
repository = "acme/docs"
task_definition = "docs"
container = "site"
port = 3000
ecr_repository = "docs"
"""
    env = {e["Name"]: e["Value"] for e in config["Environment"]}
    out = tmp_path / "revieee.conf.template"
    args = [str(out) if a == "/proxy/revieee.conf.template" else a for a in config["Command"]]
    assert "/proxy/revieee.conf.template" in config["Command"]
    assert "/proxy/revieee.conf.template" in nginx["Command"][0]
    made = subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("REVIEEE_")},
            **env,
            "REVIEEE_CONFIG_TOML": toml,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    template = out.read_text()
    assert "envsubst '$REVIEEE_PROXY_SECRET'" in nginx["Command"][0]
    conf = template.replace("${REVIEEE_PROXY_SECRET}", "s3cret")
    assert 'X-Revieee-Proxy-Secret "s3cret"' in conf
    assert '"https://revieee.review.example.test/_revieee/visit"' in conf
    # by the namespace's name (revieee.toml's REVIEEE_NAMESPACE is the stack's id)
    assert 'set $upstream "$review_service.$review_env.review.internal";' in conf
    assert '"~^docs-" "token";' in conf and '"~^docs-" "3000";' in conf
    check(conf.replace("/var/cache/nginx/revieee", str(tmp_path / "cache")), tmp_path)

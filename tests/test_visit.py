"""Wake on visit: the reverse proxy sends a request its environment does not answer to
revieee's ``/_revieee/visit``, which says why in a small page and wakes a sleeping
environment, once however often it is visited. The proxy's nginx configuration is made by
``revieee proxy-config`` and, where nginx is installed (Debian's ``nginx-light``; ``.ci/run``
installs it when it can), checked with ``nginx -t`` and run: a visit goes through a real
nginx whose upstream cannot be resolved (no task registered), to revieee."""

from __future__ import annotations

import http.client
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from bot.naming import env_name
from bot.proxyconf import nginx_config
from bot.sandbox import free_port
from bot.visit import PATH
from tests.conftest import MakeRig
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


NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
)


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
    ).replace("listen 80 default_server;", f"listen 127.0.0.1:{(port := free_port())};")
    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
        (tmp_path / name).mkdir()
    (tmp_path / "proxy.conf").write_text(conf)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/logs/error.log;\n"
        "events {}\nhttp {\n  access_log off;\n"
        + "".join(
            f"  {n}_temp_path {tmp_path}/{n};\n"
            for n in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        + f"  include {tmp_path}/proxy.conf;\n}}\n"
    )
    args = [NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")]
    checked = subprocess.run([*args, "-t"], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    nginx = subprocess.Popen([*args, "-g", "daemon off;"], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                status, _ = _get(port, "/__proxy_health", "anything")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert status == 200
        status, page = _get(port, "/cart?x=1", f"{ENV}.review.example.test")
        assert status == 503 and f"Waking up {ENV}" in page
        assert [o.source for o in rig.runtime.store.operations(env=ENV) if o.kind == "wake"] == [
            "visit"
        ]
        assert _get(port, "/", "docs-x.review.example.test")[0] == 404  # no such app
        assert _get(port, "/", "elsewhere.example.com")[0] == 404
    finally:
        nginx.terminate()
        nginx.wait(10)


def _get(port: int, path: str, host: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (Debian: nginx-light)")
def test_the_stacks_proxy_configuration_passes_nginx_t(tmp_path: Path) -> None:
    """The configuration the stack's proxy container writes (its command, resolved as
    CloudFormation resolves it, the secret filled in as its envsubst does) is one nginx takes,
    and sends what does not answer to revieee's visit endpoint with the secret."""
    from tests.strict_aws.stack import Stack

    assert NGINX is not None
    stack = Stack("ns-proxytest", {"Domain": "review.example.test"})
    task = stack.template["Resources"]["ProxyTaskDefinition"]["Properties"]
    [container] = task["ContainerDefinitions"]
    assert {s["Name"] for s in container["Secrets"]} == {"REVIEEE_PROXY_SECRET"}
    script = stack.resolve(container["Command"])[0]
    template = script.split("<<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0]
    assert "envsubst '$REVIEEE_PROXY_SECRET'" in script
    conf = template.replace("${REVIEEE_PROXY_SECRET}", "s3cret")
    assert 'X-Revieee-Proxy-Secret "s3cret"' in conf
    assert '"https://revieee.review.example.test/_revieee/visit"' in conf
    (tmp_path / "proxy.conf").write_text(conf)
    (tmp_path / "logs").mkdir()
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/logs/error.log;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  include {tmp_path}/proxy.conf;\n}}\n"
    )
    checked = subprocess.run(
        [NGINX, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stderr

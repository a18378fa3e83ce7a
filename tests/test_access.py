"""Protected previews (bot/access.py): an app with ``access = "token"`` opens only with its
environment's secret link (a cookie once followed), or with the app's bypass token in the
``X-Revieee-Token`` header; the link is in the Slack message, never in the PR comment; a stop
and a new deploy make a new link. Through a real nginx running ``revieee proxy-config``'s
configuration where nginx is installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.access import AUTH_PATH, DENIED_PATH, TOKEN_PATH, bypass_token, env_token
from bot.naming import env_name
from bot.proxyconf import nginx_config
from bot.sandbox import free_port
from tests.conftest import MakeRig
from tests.nginx_run import NGINX, get, running
from tests.slack_rig import PROXY_SECRET, SlackRig

BRANCH = "feature/checkout"
ENV = env_name("shop", BRANCH)
HOST = f"{ENV}.review.example.test"


def ask(rig: SlackRig, path: str, secret: str = PROXY_SECRET, **headers: str) -> tuple[int, dict]:
    sent = {"X-Revieee-Env": ENV, "X-Revieee-Proxy-Secret": secret}
    sent.update({k.replace("_", "-"): v for k, v in headers.items()})
    resp = rig.request("GET", path, headers=sent)
    return resp.status, resp.headers


def deployed(rig: SlackRig) -> str:
    assert rig.command(f"deploy {BRANCH}").status == 200
    rig.wait_status(ENV, "running", timeout=30)
    row = rig.runtime.store.get_env(ENV)
    assert row is not None and row["access_salt"]
    return env_token(PROXY_SECRET, ENV, row["access_salt"])


def test_a_token_environment_opens_with_its_link_its_cookie_or_the_bypass_header(
    make_rig: MakeRig,
) -> None:
    rig = make_rig(app={"access": "token"})
    token = deployed(rig)
    # the deploy message's link carries the token, and says it is protected
    rig.fake.wait_for(
        lambda: any(
            f"revieee_token={token}" in str(c.args.get("blocks"))
            for c in rig.fake.of("chat.update") + rig.fake.of("chat.postMessage")
        )
    )
    assert any("Protected" in str(c.args.get("blocks")) for c in rig.fake.of("chat.update"))
    assert ask(rig, AUTH_PATH)[0] == 401  # no token
    assert ask(rig, AUTH_PATH, X_Revieee_Cookie=token)[0] == 204
    assert ask(rig, AUTH_PATH, X_Revieee_Token=token)[0] == 204
    assert ask(rig, AUTH_PATH, X_Revieee_Token=bypass_token(PROXY_SECRET, "shop"))[0] == 204
    # the bypass token is for a header only: never a cookie or a link
    assert ask(rig, AUTH_PATH, X_Revieee_Cookie=bypass_token(PROXY_SECRET, "shop"))[0] == 401
    assert ask(rig, AUTH_PATH, X_Revieee_Cookie=token[:-1] + "A")[0] == 401
    assert ask(rig, AUTH_PATH, secret="guess", X_Revieee_Cookie=token)[0] == 401
    assert ask(rig, AUTH_PATH, X_Revieee_Token=bypass_token(PROXY_SECRET, "other"))[0] == 401

    # the link: a cookie, and the same address without the token
    status, headers = ask(rig, TOKEN_PATH, X_Revieee_Uri=f"/cart?x=1&revieee_token={token}")
    assert status == 303 and headers["Location"] == "/cart?x=1"
    cookie = headers["Set-Cookie"]
    assert cookie.startswith(f"revieee_token={token};")
    assert all(a in cookie for a in ("HttpOnly", "Secure", "SameSite=Lax", "Path=/"))
    # never another site: "//host" stays a path of this one
    status, headers = ask(rig, TOKEN_PATH, X_Revieee_Uri=f"//evil.example/?revieee_token={token}")
    assert status == 303 and headers["Location"] == "/evil.example/"
    assert ask(rig, TOKEN_PATH, X_Revieee_Uri="/?revieee_token=guess")[0] == 403
    status, _ = ask(rig, DENIED_PATH)
    assert status == 401

    # a stop and a new deploy: a new link, the old one no longer opens it
    rig.command(f"stop {ENV}")
    rig.wait_status(ENV, "stopped", timeout=30)
    again = deployed(rig)
    assert again != token
    assert ask(rig, AUTH_PATH, X_Revieee_Cookie=token)[0] == 401
    assert ask(rig, AUTH_PATH, X_Revieee_Cookie=again)[0] == 204


def test_a_public_app_needs_no_token_and_its_messages_carry_none(make_rig: MakeRig) -> None:
    rig = make_rig()
    deployed(rig)
    assert ask(rig, AUTH_PATH)[0] == 204
    messages = rig.fake.of("chat.update") + rig.fake.of("chat.postMessage")
    assert messages and not any("revieee_token" in str(c.args) for c in messages)


def test_the_configuration_asks_revieee_for_token_apps_only(make_rig: MakeRig) -> None:
    rig = make_rig(app={"access": "token"})
    text = nginx_config(rig.runtime.settings, "https://revieee.review.example.test")
    assert '"~^shop-" "token";' in text and 'default "public";' in text
    assert "auth_request /_revieee_access;" in text
    assert '"https://revieee.review.example.test/_revieee/auth"' in text
    assert 'proxy_cache_key "$review_env|$cookie_revieee_token|$http_x_revieee_token";' in text
    public = nginx_config(make_rig().runtime.settings, "https://revieee.review.example.test")
    assert '"~^shop-" "token";' not in public


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (Debian: nginx-light)")
def test_a_real_nginx_keeps_a_token_environment_closed_to_visitors_without_it(
    make_rig: MakeRig, tmp_path: Path
) -> None:
    rig = make_rig(app={"access": "token"})
    token = deployed(rig)
    gate = rig.serving.app.routes[("GET", AUTH_PATH)].__self__  # type: ignore[attr-defined]
    conf = nginx_config(
        rig.runtime.settings,
        f"http://127.0.0.1:{rig.port}",
        resolver=f"127.0.0.1:{free_port()}",  # nothing resolves: the task is "not registered"
        secret=PROXY_SECRET,
        resolver_timeout="1s",
        cache_dir=str(tmp_path / "cache"),
    )
    with running(conf, tmp_path) as port:
        status, page, _ = get(port, "/cart", HOST)
        assert status == 401 and "This preview is protected" in page
        status, _, headers = get(port, f"/cart?revieee_token={token}&x=1", HOST)
        assert status == 303 and headers["Location"] == "/cart?x=1"
        assert headers["Set-Cookie"].startswith(f"revieee_token={token};")
        # with the cookie the request goes on to the environment (which answers nothing
        # here: revieee's "starting" page, past the gate)
        status, page, _ = get(port, "/cart", HOST, {"Cookie": f"a=1; revieee_token={token}"})
        assert status == 503 and f"Starting {ENV}" in page
        asked = gate.checks
        status, _, _ = get(port, "/other", HOST, {"Cookie": f"revieee_token={token}"})
        assert status == 503 and gate.checks == asked  # nginx remembered the answer
        bypass = bypass_token(PROXY_SECRET, "shop")
        assert get(port, "/", HOST, {"X-Revieee-Token": bypass})[0] == 503
        assert get(port, "/", HOST, {"Cookie": "revieee_token=guess"})[0] == 401
        assert get(port, "/?revieee_token=guess", HOST)[0] == 403

"""One OAuth callback for every preview (bot/broker.py), end to end: an environment's app signs
in through a local fake OAuth provider that, like Google's or GitHub's, accepts only the one
registered redirect URI, ``https://auth.<domain>/callback``. The app's side is the README's
plain-OAuth2 recipe, its own Python code run here (not bot.broker's helper), with
``REVIEEE_OAUTH_KEY`` and ``REVIEEE_OAUTH_CALLBACK`` read from the environment's registered
task definition; its JavaScript is run with node. Then every way a callback must not be
forwarded: forged, tampered, expired, unknown or stopped environment, a path that is another
site, no state."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from bot.aws import AwsClients
from bot.broker import Broker, oauth_key
from bot.naming import env_name, task_family
from tests.conftest import MakeRig
from tests.slack_rig import PROXY_SECRET, SlackRig

BRANCH = "feature/checkout"  # the sandbox has its images
ENV = env_name("shop", BRANCH)
CALLBACK = "https://auth.review.example.test/callback"
CLIENT_ID = "revieee-previews"
CLIENT_SECRET = "provider-client-secret"


# -- a fake OAuth 2.0 provider: RFC 6749 section 4.1 ----------------------------------------------


class Provider:
    """Authorization endpoint and token endpoint of an authorization-code flow. As real providers
    do, the authorization request's ``redirect_uri`` must be exactly a registered one (RFC 6749
    3.1.2.3; Google: "redirect_uri_mismatch"), and the token request must repeat it (4.1.3)."""

    def __init__(self, registered: str) -> None:
        self.registered = registered
        self.codes: dict[str, str] = {}  # code -> redirect_uri it was issued for
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                if parts.path != "/authorize":
                    return self.answer(404, {"error": "not_found"})
                if query.get("client_id") != CLIENT_ID or query.get("response_type") != "code":
                    return self.answer(400, {"error": "invalid_request"})
                if query.get("redirect_uri") != provider.registered:
                    return self.answer(400, {"error": "redirect_uri_mismatch"})
                code = secrets.token_urlsafe(12)
                provider.codes[code] = query["redirect_uri"]
                back = {"code": code, **({"state": query["state"]} if "state" in query else {})}
                self.send_response(302)
                self.send_header("Location", f"{query['redirect_uri']}?{urlencode(back)}")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                form = {k: v[0] for k, v in parse_qs(body).items()}
                if self.path != "/token" or form.get("grant_type") != "authorization_code":
                    return self.answer(400, {"error": "unsupported_grant_type"})
                if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
                    return self.answer(401, {"error": "invalid_client"})
                issued = provider.codes.pop(form.get("code", ""), None)  # a code works once
                if issued is None or form.get("redirect_uri") != issued:
                    return self.answer(400, {"error": "invalid_grant"})
                self.answer(200, {"access_token": "at-" + form["code"], "token_type": "Bearer"})

            def answer(self, status: int, body: dict[str, str]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def get(self, url: str) -> tuple[int, dict[str, str]]:
        return _http("GET", url)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _http(method: str, url: str, body: bytes = b"", **headers: str) -> tuple[int, dict[str, str]]:
    import http.client

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, target, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        out = dict(resp.getheaders())
        out["body"] = data.decode(errors="replace")
        return resp.status, out
    finally:
        conn.close()


@pytest.fixture
def provider() -> Iterator[Provider]:
    server = Provider(CALLBACK)
    yield server
    server.close()


# -- the app's side: the README's recipe ----------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def readme_block(language: str) -> str:
    """The README's first ``language`` block after the broker's heading: what an app adds."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("**One OAuth callback for every preview.**", 1)[1]
    return section.split(f"```{language}\n", 1)[1].split("```", 1)[0]


def revieee_state(env: dict[str, str], path: str, own_state: str, ttl: int = 600) -> str:
    """The README's Python ``revieee_state``, run as the app would run it: with its
    ``REVIEEE_*`` variables in ``os.environ``."""
    namespace: dict[str, Any] = {}
    exec(compile(readme_block("python"), "README.md", "exec"), namespace)
    saved = dict(os.environ)
    try:
        os.environ.update(env)
        return str(namespace["revieee_state"](path, own_state, ttl))
    finally:
        os.environ.clear()
        os.environ.update(saved)


def app_environment(admin: AwsClients, service: str = "web") -> dict[str, str]:
    """The variables ECS gives the environment's container: its registered task definition's."""
    td = admin.ecs.describe_task_definition(taskDefinition=task_family(ENV, service))
    container = td["taskDefinition"]["containerDefinitions"][0]
    return {e["name"]: e["value"] for e in container["environment"]}


def callback(rig: SlackRig, query: dict[str, str] | list[tuple[str, str]]) -> tuple[int, dict]:
    """The browser arriving at https://auth.<domain>/callback (revieee behind its load balancer)."""
    resp = rig.request(
        "GET", f"/callback?{urlencode(query)}", headers={"Host": "auth.review.example.test"}
    )
    return resp.status, {**resp.headers, "body": resp.body.decode()}


def deployed(rig: SlackRig) -> None:
    assert rig.command(f"deploy {BRANCH}").status == 200
    assert rig.wait_status(ENV, "running", "failed", timeout=30)["status"] == "running"


# -- the flow -------------------------------------------------------------------------------------


def test_a_sign_in_from_a_preview_goes_through_the_one_callback_and_back_to_it(
    make_rig: MakeRig, admin: AwsClients, provider: Provider
) -> None:
    rig = make_rig()
    deployed(rig)
    env = app_environment(admin)
    assert env["REVIEEE_OAUTH_CALLBACK"] == CALLBACK == rig.runtime.settings.oauth_callback
    assert env["REVIEEE_OAUTH_KEY"] == oauth_key(PROXY_SECRET, ENV)
    assert app_environment(admin, "api")["REVIEEE_OAUTH_KEY"] == env["REVIEEE_OAUTH_KEY"]

    # the app sends the browser to the provider with the one registered redirect URI
    own = "csrf-" + secrets.token_urlsafe(8)
    state = revieee_state(env, "/api/auth/callback/fake?next=%2Fcart", own)
    authorize = {
        "client_id": CLIENT_ID,
        "response_type": "code",
        "redirect_uri": env["REVIEEE_OAUTH_CALLBACK"],
        "state": state,
    }
    status, headers = provider.get(f"{provider.base}/authorize?{urlencode(authorize)}")
    assert status == 302
    back = urlsplit(headers["Location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == CALLBACK

    # revieee's broker sends it on to the environment, with the app's own state back
    status, headers = callback(rig, parse_qs_one(back.query))
    assert status == 303, headers["body"]
    forwarded = urlsplit(headers["Location"])
    assert (forwarded.scheme, forwarded.netloc) == ("https", f"{ENV}.review.example.test")
    assert forwarded.path == "/api/auth/callback/fake"
    got = parse_qs_one(forwarded.query)
    assert got["state"] == own and got["next"] == "/cart" and got["code"]
    assert headers["Cache-Control"] == "no-store" and headers["Referrer-Policy"] == "no-referrer"

    # the app exchanges the code, repeating the same redirect URI: the provider accepts it
    form = {
        "grant_type": "authorization_code",
        "code": got["code"],
        "redirect_uri": env["REVIEEE_OAUTH_CALLBACK"],
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    body = urlencode(form).encode()
    kind = "application/x-www-form-urlencoded"
    status, answer = _http("POST", f"{provider.base}/token", body, **{"Content-Type": kind})
    assert status == 200 and json.loads(answer["body"])["access_token"] == "at-" + got["code"]
    # and the provider is as strict as the real ones: a preview's own URL is refused
    wrong = {**authorize, "redirect_uri": f"https://{ENV}.review.example.test/callback"}
    assert provider.get(f"{provider.base}/authorize?{urlencode(wrong)}")[0] == 400


def test_an_error_from_the_provider_reaches_the_app_and_an_empty_own_state_stays_empty(
    make_rig: MakeRig, admin: AwsClients
) -> None:
    rig = make_rig()
    deployed(rig)
    state = revieee_state(app_environment(admin), "/login/done", "")
    status, headers = callback(rig, {"error": "access_denied", "state": state})
    assert status == 303
    assert (
        headers["Location"] == f"https://{ENV}.review.example.test/login/done?error=access_denied"
    )


def parse_qs_one(query: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(query).items()}


# -- refusals: never a Location anywhere ----------------------------------------------------------


def refused(rig: SlackRig, query: dict[str, str] | list[tuple[str, str]], status: int, why: str):
    got, headers = callback(rig, query)
    assert got == status, headers["body"]
    assert "Location" not in headers and why in headers["body"]
    assert "Sign-in not forwarded" in headers["body"]


def test_forged_tampered_expired_and_pathless_states_are_refused(
    make_rig: MakeRig, admin: AwsClients
) -> None:
    rig = make_rig()
    deployed(rig)
    env = app_environment(admin)
    code = {"code": "c"}

    # signed with another environment's key (an app that knows only its own key)
    other = {**env, "REVIEEE_OAUTH_KEY": oauth_key(PROXY_SECRET, "shop-other")}
    refused(rig, {**code, "state": revieee_state(other, "/cb", "s")}, 400, "signature")
    # signed with a key made from a guessed secret
    guessed = {**env, "REVIEEE_OAUTH_KEY": oauth_key("guess", ENV)}
    refused(rig, {**code, "state": revieee_state(guessed, "/cb", "s")}, 400, "signature")
    # a valid state whose payload was changed afterwards (the path made another site's)
    good = revieee_state(env, "/cb", "s")
    head, payload, sig = good.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["p"] = "//evil.example/cb"
    tampered = f"{head}.{b64url(json.dumps(body).encode())}.{sig}"
    refused(rig, {**code, "state": tampered}, 400, "signature")
    # expired, and too far ahead to be an honest state
    refused(rig, {**code, "state": revieee_state(env, "/cb", "s", ttl=-1)}, 400, "expired")
    refused(rig, {**code, "state": revieee_state(env, "/cb", "s", ttl=86400)}, 400, "too far")
    # signed correctly, but the path is another site or not a path
    for path in ("//evil.example/cb", "/\\evil.example", "https://evil.example/", "cb", ""):
        refused(rig, {**code, "state": revieee_state(env, path, "s")}, 400, "not a path")
    # no state, two states, not revieee's
    refused(rig, code, 400, "no state")
    two = [("code", "c"), ("state", good), ("state", good)]
    refused(rig, two, 400, "no state")
    for junk in ("abc", "rv1.x.y", "rv2." + good[4:], "rv1.%%%.###", good + ".x"):
        refused(rig, {**code, "state": junk}, 400, "not one of revieee's")
    # the good one still goes through: the refusals above were the checks, not a broken broker
    assert callback(rig, {**code, "state": good})[0] == 303


def test_unknown_and_stopped_environments_get_no_callback(
    make_rig: MakeRig, admin: AwsClients
) -> None:
    rig = make_rig()
    deployed(rig)
    env = app_environment(admin)
    # an environment that never existed, its state signed with its own (correct) key
    ghost = {
        **env,
        "REVIEEE_ENV": "shop-ghost",
        "REVIEEE_OAUTH_KEY": oauth_key(PROXY_SECRET, "shop-ghost"),
    }
    refused(
        rig, {"code": "c", "state": revieee_state(ghost, "/cb", "s")}, 404, "no review environment"
    )
    # a stopped one: the sign-in started while it ran does not land anywhere
    state = revieee_state(env, "/cb", "s")
    assert callback(rig, {"code": "c", "state": state})[0] == 303
    rig.command(f"stop {ENV}")
    rig.wait_status(ENV, "stopped", timeout=30)
    refused(rig, {"code": "c", "state": state}, 409, "not running")


def test_a_state_expires_on_the_brokers_clock(make_rig: MakeRig, admin: AwsClients) -> None:
    rig = make_rig()
    deployed(rig)
    state = revieee_state(app_environment(admin), "/cb", "s", ttl=60)
    now = [time.time()]
    broker = Broker(rig.runtime.store, PROXY_SECRET, clock=lambda: now[0])
    assert broker.forward([("state", state)]).startswith(f"https://{ENV}.")
    now[0] += 120
    with pytest.raises(Exception, match="expired"):
        broker.forward([("state", state)])


# -- the README's JavaScript, run with node ---------------------------------------------------


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_readmes_javascript_state_is_forwarded(make_rig: MakeRig, admin: AwsClients) -> None:
    rig = make_rig()
    deployed(rig)
    env = app_environment(admin)
    script = (
        readme_block("js")
        + '\nprocess.stdout.write(revieeeState("/api/auth/callback/google", "n1"));'
    )
    done = subprocess.run(
        ["node", "-e", script],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    status, headers = callback(rig, {"code": "c", "state": done.stdout})
    assert status == 303, headers["body"]
    assert headers["Location"] == (
        f"https://{ENV}.review.example.test/api/auth/callback/google?code=c&state=n1"
    )
    # and with another environment's key, node's state is refused like any forged one
    forged = {**env, "REVIEEE_OAUTH_KEY": oauth_key(PROXY_SECRET, "shop-other")}
    done = subprocess.run(
        ["node", "-e", script],
        env={"PATH": os.environ["PATH"], **forged},
        capture_output=True,
        text=True,
        timeout=60,
    )
    refused(rig, {"code": "c", "state": done.stdout}, 400, "signature")

"""``revieee serve`` as a real subprocess: secrets checked at start, /healthz, a signed slash
command answered and carried out against moto's server, a clean stop on SIGTERM. And the Slack
app manifest that ships with it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import yaml

from bot.naming import env_name
from bot.sandbox import free_port
from bot.store import Store
from tests.conftest import WriteConfig
from tests.fake_slack import FakeSlack
from tests.fake_socket_mode import FakeSocketMode
from tests.slack_rig import SECRET, sign

ROOT = Path(__file__).resolve().parent.parent


def clean_env(**extra: str) -> dict[str, str]:
    keep = {
        k: v for k, v in os.environ.items() if not k.startswith(("REVIEEE_", "SLACK_", "GITHUB_"))
    }
    return {**keep, **extra}


def serve(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "serve", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("secrets", "args", "missing"),
    [
        ({}, [], "SLACK_BOT_TOKEN"),
        ({"SLACK_BOT_TOKEN": "xoxb-1"}, [], "SLACK_SIGNING_SECRET"),
        (
            {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "sig-s3cret-value"},
            ["--socket-mode"],
            "SLACK_APP_TOKEN",
        ),
    ],
)
def test_missing_secrets_stop_start_up_with_a_clear_message(
    write_config: WriteConfig, secrets: dict[str, str], args: list[str], missing: str
) -> None:
    env = clean_env(REVIEEE_CONFIG=str(write_config()), **secrets)
    result = serve("--port", str(free_port()), *args, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert missing in result.stderr
    assert "environment" in result.stderr  # where to set it
    for value in secrets.values():
        assert value not in result.stdout + result.stderr  # secrets are never printed


def test_a_bad_port_is_a_configuration_error(write_config: WriteConfig) -> None:
    env = clean_env(
        REVIEEE_CONFIG=str(write_config()),
        SLACK_BOT_TOKEN="xoxb-1",
        SLACK_SIGNING_SECRET="s",
        REVIEEE_PORT="eighty",
    )
    result = serve(env=env)
    assert result.returncode == 2
    assert "REVIEEE_PORT" in result.stderr and "REVIEEE_PORT=3000" in result.stderr
    assert "--port" in serve("--port", "x", env=env).stderr


def slash(port: int, text: str, response_url: str, user: str = "U0ALICE") -> dict[str, Any]:
    """A signed ``/revieee TEXT`` to a running server; its answer (200 expected)."""
    body = urlencode(
        {
            "command": "/revieee",
            "text": text,
            "user_id": user,
            "channel_id": "C0REVIEW",
            "team_id": "T0REVIEEE",
            "response_url": response_url,
        }
    ).encode()
    ts = str(int(time.time()))
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/slack/events",
        data=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": sign(body, ts),
        },
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200
        answer: dict[str, Any] = json.loads(resp.read())
        return answer


def _get(url: str) -> tuple[int, dict[str, object]]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status, json.loads(resp.read())


def test_serve_answers_slack_and_stops_cleanly_on_sigterm(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    fake = FakeSlack()
    port = free_port()
    env = clean_env(
        REVIEEE_CONFIG=str(write_config()),
        SLACK_BOT_TOKEN="xoxb-serve-test",
        SLACK_SIGNING_SECRET=SECRET,
        REVIEEE_SLACK_API_URL=fake.api_url,
        REVIEEE_PORT=str(port),  # the port from the environment
        MOTO_ECS_SERVICE_RUNNING="1",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, health = _get(f"http://127.0.0.1:{port}/healthz")
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "revieee serve did not start"
                time.sleep(0.1)
        assert status == 200 and health["ok"] is True

        answer = slash(port, "deploy feature/checkout", fake.response_url())
        assert "queued deploy of feature/checkout" in answer["text"]
        env_ = env_name("shop", "feature/checkout")
        fake.wait_for(
            lambda: any(c.args.get("text", "").endswith(": Ready") for c in fake.of("chat.update")),
            timeout=30,
        )
        assert all(c.token == "xoxb-serve-test" for c in fake.calls)
        assert fake.of("chat.postMessage")[0].args["channel"] == "C0REVIEW"

        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert f"serving on http://127.0.0.1:{port}" in out
        assert "draining" in out
        assert "xoxb-serve-test" not in out + err and SECRET not in out + err
        store = Store(tmp_path / "revieee.db")  # what the stopped server left behind
        try:
            (dep,) = store.deployments(env_)
            assert (dep["result"], dep["source"], dep["requested_by"]) == (
                "succeeded",
                "slack",
                "U0ALICE",
            )
            assert store.operations(status="running") == []
        finally:
            store.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        fake.close()


def test_socket_mode_answers_commands_and_events_over_the_websocket(
    write_config: WriteConfig,
) -> None:
    """``revieee serve --socket-mode`` against a Socket Mode endpoint speaking the real protocol:
    no public URL, no signing secret; the same listeners, acks carried back in the envelope."""
    socket_mode = FakeSocketMode()
    fake = FakeSlack(socket_url=socket_mode.url)
    port = free_port()
    env = clean_env(
        REVIEEE_CONFIG=str(write_config()),
        SLACK_BOT_TOKEN="xoxb-socket-test",
        SLACK_APP_TOKEN="xapp-socket-test",
        REVIEEE_SLACK_API_URL=fake.api_url,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve", "--socket-mode", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert socket_mode.connected.wait(30), "revieee never opened the Socket Mode connection"
        (opened,) = fake.of("apps.connections.open")
        assert opened.token == "xapp-socket-test"

        command = {
            "token": "x",
            "team_id": "T0REVIEEE",
            "channel_id": "C0REVIEW",
            "user_id": "U0ALICE",
            "command": "/revieee",
            "text": "deploy feature/checkout",
            "response_url": fake.response_url(),
            "trigger_id": "1.2",
        }
        ack = socket_mode.ack(socket_mode.push("slash_commands", command))
        assert ack["payload"]["response_type"] == "ephemeral"
        assert "queued deploy of feature/checkout" in ack["payload"]["text"]
        fake.wait_for(
            lambda: any(c.args.get("text", "").endswith(": Ready") for c in fake.of("chat.update")),
            timeout=30,
        )
        ts = fake.of("chat.update")[-1].args["ts"]  # the deploy message, edited to Ready
        assert [c.args["ts"] for c in fake.of("chat.update")] == [ts] * len(fake.of("chat.update"))

        usage = socket_mode.ack(socket_mode.push("slash_commands", command | {"text": "nope"}))
        assert "unknown command 'nope'" in usage["payload"]["text"]

        reaction = {
            "type": "event_callback",
            "team_id": "T0REVIEEE",
            "event_id": "Ev0SOCKET",
            "event": {
                "type": "reaction_added",
                "user": "U0ALICE",
                "reaction": "octagonal_sign",
                "item": {"type": "message", "channel": "C0REVIEW", "ts": ts},
            },
        }
        socket_mode.ack(socket_mode.push("events_api", reaction, accepts_response=False))
        fake.wait_for(
            lambda: any(
                c.args.get("text", "").endswith(": Stopped") for c in fake.of("chat.update")
            ),
            timeout=30,
        )
        status, _ = _get(f"http://127.0.0.1:{port}/healthz")  # still served in socket mode
        assert status == 200
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "socket mode" in out
        assert "xapp-socket-test" not in out + err and "xoxb-socket-test" not in out + err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        fake.close()
        socket_mode.close()


# -- the Slack app manifest ---------------------------------------------------------------------

# The scope each Web API method revieee calls needs (https://api.slack.com/methods).
SCOPE_OF = {
    "chat_postMessage": "chat:write",
    "chat_update": "chat:write",
    "chat_postEphemeral": "chat:write",
    "files_upload_v2": "files:write",  # files.getUploadURLExternal + completeUploadExternal
    "usergroups_users_list": "usergroups:read",
    "views_publish": None,  # no scope: the app's own Home tab
    "chat_getPermalink": None,  # no scope required
    "auth_test": None,
    "conversations_join": "channels:join",  # joins the public channels it posts in
}


def test_the_manifest_declares_what_the_code_uses() -> None:
    manifest = yaml.safe_load((ROOT / "deploy" / "slack-app-manifest.yml").read_text())
    (command,) = manifest["features"]["slash_commands"]
    assert command["command"] == "/revieee"
    assert command["url"].endswith("/slack/events")
    settings = manifest["settings"]
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["interactivity"]["request_url"].endswith("/slack/events")
    assert settings["event_subscriptions"]["request_url"].endswith("/slack/events")
    assert set(settings["event_subscriptions"]["bot_events"]) == {
        "reaction_added",
        "app_home_opened",
    }
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"commands", "reactions:read"} <= scopes

    source = "\n".join(p.read_text() for p in (ROOT / "bot").rglob("*.py"))
    called = set(
        re.findall(
            r"client\.((?:chat|views|usergroups|users|conversations|reactions|"
            r"files|auth)_\w+)\(",
            source,
        )
    )
    assert called, "the scan found no Web API calls: the pattern is wrong"
    unknown = called - set(SCOPE_OF)
    assert not unknown, f"add the scope of {unknown} to SCOPE_OF and the manifest"
    needed = {SCOPE_OF[m] for m in called} - {None}
    assert needed <= scopes, f"the manifest lacks {needed - scopes}"
    # every event the listeners subscribe to is in the manifest
    listened = set(re.findall(r'app\.event\("(\w+)"\)', source))
    assert listened == set(settings["event_subscriptions"]["bot_events"])

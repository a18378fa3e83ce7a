"""A running revieee server for Slack tests: the real WSGI app under waitress on a free port,
the real Bolt listeners and notifier, the runtime's operation pool, moto's server behind the
engine, and :class:`~tests.fake_slack.FakeSlack` as the Web API. Requests are signed exactly as
Slack signs them and sent over HTTP in Slack's real formats."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import itertools
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from bot.app import Runtime
from bot.config import Secrets
from bot.httpserver import HttpServer
from bot.server import Serving, build_serving
from tests.fake_slack import FakeSlack

SECRET = "test-signing-secret"
TOKEN = "xoxb-test-token"
TEAM = "T0REVIEEE"
CHANNEL = "C0REVIEW"
WEBHOOK_SECRET = "test-webhook-secret"
PROXY_SECRET = "test-proxy-secret"  # the reverse proxy's (wake on visit)


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


def sign(body: bytes, timestamp: str, secret: str = SECRET) -> str:
    base = f"v0:{timestamp}:".encode() + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


@dataclass
class SlackRig:
    runtime: Runtime
    fake: FakeSlack
    serving: Serving
    port: int
    _server: Any = None
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # -- raw HTTP ------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return Response(resp.status, resp.read(), dict(resp.getheaders()))
        finally:
            conn.close()

    def post_signed(
        self,
        body: bytes,
        content_type: str,
        *,
        secret: str = SECRET,
        timestamp: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> Response:
        ts = timestamp or str(int(time.time()))
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": sign(body, ts, secret),
            **(extra or {}),
        }
        return self.request("POST", "/slack/events", body, headers)

    # -- Slack's payloads ------------------------------------------------------------------------

    def command(
        self, text: str, user: str = "U0ALICE", channel: str = CHANNEL, **extra: str
    ) -> Response:
        """A slash command, form-encoded as Slack sends it."""
        n = next(self._ids)
        form = {
            "token": "deprecated-verification-token",
            "team_id": TEAM,
            "team_domain": "acme",
            "channel_id": channel,
            "channel_name": "review-apps",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/revieee",
            "text": text,
            "api_app_id": "A0REVIEEE",
            "is_enterprise_install": "false",
            "response_url": self.fake.response_url(f"cmd{n}"),
            "trigger_id": f"{n}.trigger",
            **extra,
        }
        return self.post_signed(urlencode(form).encode(), "application/x-www-form-urlencoded")

    def action(
        self,
        action_id: str,
        value: str,
        user: str = "U0ALICE",
        channel: str | None = CHANNEL,
        message_ts: str | None = None,
        home: bool = False,
    ) -> Response:
        """A ``block_actions`` interaction, form-encoded as ``payload=<json>``."""
        n = next(self._ids)
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": TEAM},
            "api_app_id": "A0REVIEEE",
            "token": "deprecated-verification-token",
            "trigger_id": f"{n}.trigger",
            "team": {"id": TEAM, "domain": "acme"},
            "enterprise": None,
            "is_enterprise_install": False,
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": f"env:{value}",
                    "text": {"type": "plain_text", "text": action_id, "emoji": True},
                    "value": value,
                    "type": "button",
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        if home:
            payload["container"] = {"type": "view", "view_id": "V0HOME"}
            payload["view"] = {"id": "V0HOME", "type": "home", "blocks": [], "team_id": TEAM}
        else:
            payload["container"] = {
                "type": "message",
                "message_ts": message_ts or "1.000001",
                "channel_id": channel,
                "is_ephemeral": False,
            }
            payload["channel"] = {"id": channel, "name": "review-apps"}
            payload["message"] = {"type": "message", "ts": message_ts or "1.000001", "text": ""}
            payload["response_url"] = self.fake.response_url(f"act{n}")
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return self.post_signed(body, "application/x-www-form-urlencoded")

    def event(
        self, event: dict[str, Any], event_id: str | None = None, retry: int | None = None
    ) -> Response:
        """An ``event_callback`` (Events API), JSON as Slack sends it."""
        envelope = {
            "token": "deprecated-verification-token",
            "team_id": TEAM,
            "api_app_id": "A0REVIEEE",
            "event": {"event_ts": f"{time.time():.6f}", **event},
            "type": "event_callback",
            "event_id": event_id or f"Ev{next(self._ids):08d}",
            "event_time": int(time.time()),
            "authorizations": [
                {"team_id": TEAM, "user_id": "U0BOT", "is_bot": True, "enterprise_id": None}
            ],
            "is_ext_shared_channel": False,
        }
        extra = {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
        return self.post_signed(
            json.dumps(envelope).encode(), "application/json", extra=extra if retry else None
        )

    def reaction(
        self, ts: str, reaction: str = "octagonal_sign", user: str = "U0ALICE", **kw: Any
    ) -> Response:
        # Slack sends reaction_added only from conversations the bot is a member of (Events
        # API, "reaction_added"): revieee must have joined the channel of its messages.
        assert CHANNEL in self.fake.members, f"the bot is not in {CHANNEL}: Slack sends nothing"
        return self.event(
            {
                "type": "reaction_added",
                "user": user,
                "reaction": reaction,
                "item": {"type": "message", "channel": CHANNEL, "ts": ts},
                "item_user": "U0BOT",
            },
            **kw,
        )

    # -- waiting -------------------------------------------------------------------------------

    def drain(self) -> None:
        """Wait for the replies that follow acks (buttons, reactions, Home) and notifications."""
        assert self.serving.pool is not None
        self.serving.pool.submit(lambda: None).result(timeout=20)
        if self.serving.notifier is not None:
            self.serving.notifier.flush()

    def wait_status(self, env: str, *statuses: str, timeout: float = 20.0) -> dict[str, Any]:
        self.drain()
        deadline = time.monotonic() + timeout
        while True:
            row = self.runtime.store.get_env(env)
            if (
                row
                and row["status"] in statuses
                and not self.runtime.store.operations(status="queued", env=env)
                and not self.runtime.store.operations(status="running", env=env)
            ):
                self.serving.notifier.flush()  # type: ignore[union-attr]
                return row
            if time.monotonic() > deadline:
                raise AssertionError(f"{env} never reached {statuses}: {row}")
            time.sleep(0.05)

    def github(
        self,
        event: str,
        payload: dict[str, Any] | bytes,
        delivery: str | None = None,
        secret: str = WEBHOOK_SECRET,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """A webhook delivery, signed (``X-Hub-Signature-256``) as GitHub signs it."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        sent = {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/5f3c1e2",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery or f"d{next(self._ids):08d}-0000-11ee-8000-000000000000",
            "X-GitHub-Hook-ID": "4242",
            "X-Hub-Signature-256": f"sha256={digest}",
            **(headers or {}),
        }
        return self.request("POST", "/github/webhook", body, sent)

    def settle(self, timeout: float = 20.0) -> None:
        """Wait until the inbox has run every due delivery and queued operations have run
        (their rollouts ended too)."""
        deadline = time.monotonic() + timeout
        store = self.runtime.store
        while True:
            now = datetime.now(UTC).isoformat()
            busy = [
                i
                for i in store.inbox_items()
                if i["status"] == "running" or (i["status"] == "pending" and i["due_at"] <= now)
            ]
            ops = [o for s in ("queued", "running", "waiting") for o in store.operations(status=s)]
            if not busy and not ops:
                if self.serving.notifier is not None:
                    self.serving.notifier.flush()
                if self.serving.github is not None:
                    self.serving.github.flush()
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"never settled: inbox {busy}, operations {ops}")
            time.sleep(0.05)

    def deploy_message(self, env: str) -> dict[str, Any]:
        ref = self.runtime.store.get_message(env, "deploy")
        assert ref is not None, f"no deploy message recorded for {env}"
        return ref

    def close(self) -> None:
        if getattr(self, "_closed", False):
            return  # a test may close a rig before its fixture does
        self._closed = True
        if self._server is not None:
            self._server.stop()
        self.runtime.runner.shutdown(drain=True)
        self.serving.close()
        self.runtime.store.close()


def start_rig(runtime: Runtime, fake: FakeSlack) -> SlackRig:
    secrets = Secrets.from_environ(
        {
            "SLACK_BOT_TOKEN": TOKEN,
            "SLACK_SIGNING_SECRET": SECRET,
            "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "REVIEEE_PROXY_SECRET": PROXY_SECRET,
        }
    )
    # one reply worker: replies run in order, so a test can wait for them (``drain``)
    serving = build_serving(runtime, secrets, fake.api_url, reply_workers=1)
    server = HttpServer(serving.app, "127.0.0.1", 0, threads=4).start()
    runtime.runner.start()
    serving.start()
    return SlackRig(runtime, fake, serving, server.port, server)

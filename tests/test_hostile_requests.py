"""Hostile and broken requests get a 4xx, never a 500 (issue 14): signed bodies of shapes Slack
never sends, timestamps that are not ASCII digits, JSON nested too deep to parse, bodies whose
Content-Length is missing, malformed or huge, and replays of a captured signed request.

Everything goes over HTTP into the running server (waitress, the WSGI app, Bolt, the listeners).
waitress checks a Content-Length itself before the app sees it, so the app's own checks are
also tried under the standard library's WSGI server, which hands the header over as sent."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from bot.naming import env_name
from bot.server import MAX_SKEW, ReplayGuard
from tests.conftest import MakeRig
from tests.slack_rig import CHANNEL, TEAM, SlackRig, sign

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
BRANCH = "feature/checkout"
ENV = env_name("shop", BRANCH)
DEEP = 100_000  # levels of nesting: far past Python's recursion limit


@pytest.fixture
def rig(make_rig: MakeRig) -> SlackRig:
    return make_rig()


# -- Slack's formats, and ways to break them ----------------------------------------------------


def command(text: str = "deploy main", **changes: str | None) -> bytes:
    """A slash command as Slack sends it; a change of None leaves the field out."""
    form: dict[str, str | None] = {
        "token": "deprecated-verification-token",
        "team_id": TEAM,
        "team_domain": "acme",
        "channel_id": CHANNEL,
        "channel_name": "review-apps",
        "user_id": "U0ALICE",
        "user_name": "alice",
        "command": "/revieee",
        "text": text,
        "api_app_id": "A0REVIEEE",
        "is_enterprise_install": "false",
        "trigger_id": "1.trigger",
        **changes,
    }
    return urlencode({k: v for k, v in form.items() if v is not None}).encode()


def click(action_id: str = "revieee_open", value: str = "shop-x", **changes: Any) -> bytes:
    """A ``block_actions`` interaction (a button in a channel message), as ``payload=<json>``."""
    payload = {
        "type": "block_actions",
        "user": {"id": "U0ALICE", "username": "alice", "name": "alice", "team_id": TEAM},
        "api_app_id": "A0REVIEEE",
        "token": "deprecated-verification-token",
        "container": {"type": "message", "message_ts": "1.000001", "channel_id": CHANNEL},
        "trigger_id": "2.trigger",
        "team": {"id": TEAM, "domain": "acme"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": CHANNEL, "name": "review-apps"},
        "message": {"type": "message", "ts": "1.000001", "text": ""},
        "actions": [
            {
                "action_id": action_id,
                "block_id": f"env:{value}",
                "text": {"type": "plain_text", "text": "Open", "emoji": True},
                "value": value,
                "type": "button",
                "action_ts": "1700000000.000001",
            }
        ],
        **changes,
    }
    return interaction(payload)


def interaction(payload: Any) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


def view_submission(view: Any) -> bytes:
    user = {"id": "U0ALICE", "username": "alice", "team_id": TEAM}
    return interaction(
        {"type": "view_submission", "team": {"id": TEAM}, "user": user, "view": view}
    )


def envelope(**changes: Any) -> bytes:
    """An Events API ``event_callback`` (of a reaction); a change of None leaves a field out."""
    body = {
        "token": "deprecated-verification-token",
        "team_id": TEAM,
        "api_app_id": "A0REVIEEE",
        "event": reaction(),
        "type": "event_callback",
        "event_id": "Ev0HOSTILE1",
        "event_time": 1700000000,
        "authorizations": [
            {"team_id": TEAM, "user_id": "U0BOT", "is_bot": True, "enterprise_id": None}
        ],
        "is_ext_shared_channel": False,
        **changes,
    }
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


def reaction(**changes: Any) -> dict[str, Any]:
    event = {
        "type": "reaction_added",
        "user": "U0ALICE",
        "reaction": "octagonal_sign",
        "item": {"type": "message", "channel": CHANNEL, "ts": "1.000001"},
        "item_user": "U0BOT",
        "event_ts": "1700000000.000100",
        **changes,
    }
    return {k: v for k, v in event.items() if v is not None}


MESSAGE = {"type": "message", "ts": "1.000001"}  # no channel
HOME = {"type": "app_home_opened", "user": "U0ALICE", "channel": "D0ALICE", "tab": "home"}


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


MALFORMED: list[tuple[str, str, bytes]] = [
    # slash commands
    ("command without user_id", FORM, command(user_id=None)),
    ("command with an empty user_id", FORM, command(user_id="")),
    ("command with a 200,000-character user_id", FORM, command(user_id="U" * 200_000)),
    ("command with markup for a user_id", FORM, command(user_id="U0ALICE>|<!channel")),
    ("command without channel_id", FORM, command(channel_id=None)),
    ("command without team_id", FORM, command(team_id=None)),
    ("command naming its user twice", FORM, command() + b"&user_id=U0MALLORY"),
    ("command without its slash", FORM, command(command="revieee")),
    ("command with authorizations as text", FORM, command(authorizations="x")),
    ("a form field without a value", FORM, b"command=/revieee&user_id"),
    ("a form sent as JSON", JSON, command()),
    # interactivity
    ("block_actions with no actions", FORM, click(actions=[])),
    ("block_actions with actions null", FORM, click(actions=None)),
    ("block_actions with actions as strings", FORM, click(actions=["revieee_open"])),
    ("block_actions whose action has no action_id", FORM, click(actions=[{"value": "x"}])),
    ("block_actions with a numeric action_id", FORM, click(actions=[{"action_id": 7}])),
    ("block_actions with a 5,000-character value", FORM, click(value="v" * 5000)),
    ("block_actions without user", FORM, click(user=None)),
    ("block_actions with user as a number", FORM, click(user=5)),
    ("block_actions with user as text", FORM, click(user="U0ALICE")),
    ("block_actions with team as a number", FORM, click(team=5)),
    ("block_actions with channel as a list", FORM, click(channel=["id"])),
    ("block_actions with a view that is text", FORM, click(view="home")),
    ("view_submission without view.type", FORM, view_submission({"id": "V1", "callback_id": ""})),
    ("view_submission with view as text", FORM, view_submission("callback_id type")),
    ("interaction without a type", FORM, interaction({"user": {"id": "U0ALICE"}})),
    ("interaction of an unknown type", FORM, interaction({"type": "nonsense"})),
    ("payload null", FORM, b"payload=null"),
    ("payload nested 100,000 deep", FORM, urlencode({"payload": nested(DEEP)}).encode()),
    # events
    ("event as a list", JSON, envelope(event=["type", "reaction_added"])),
    ("event as a string", JSON, envelope(event="type")),
    ("event_callback without event", JSON, envelope(event=None)),
    ("event with a numeric type", JSON, envelope(event={"type": 5})),
    ("event_callback without event_id", JSON, envelope(event_id=None)),
    ("app_home_opened without user", JSON, envelope(event={"type": "app_home_opened"})),
    ("reaction_added without user", JSON, envelope(event=reaction(user=None))),
    ("reaction_added on an item that is text", JSON, envelope(event=reaction(item="message"))),
    ("reaction_added without item.channel", JSON, envelope(event=reaction(item=MESSAGE))),
    ("reaction_added with a lone surrogate", JSON, envelope(event=reaction(reaction="\ud800"))),
    ("authorizations as a number", JSON, envelope(authorizations=5)),
    ("authorizations of numbers", JSON, envelope(authorizations=[5])),
    ("event nested 100,000 deep", JSON, envelope(event="D").replace(b'"D"', nested(DEEP).encode())),
    ("JSON nested 100,000 deep", JSON, nested(DEEP).encode()),
    ("url_verification without challenge", JSON, b'{"type": "url_verification"}'),
    ("url_verification with an object", JSON, b'{"type": "url_verification", "challenge": {}}'),
    ("JSON of an unknown type", JSON, b'{"type": "nonsense"}'),
    ("JSON null", JSON, b"null"),
    ("a JSON list of envelopes", JSON, b"[" + envelope() + b"]"),
    ("a 5,000-digit number", JSON, b'{"type": "event_callback", "n": %s}' % (b"9" * 5000)),
    ("JSON that is not UTF-8", JSON, b'{"type": "\xff\xfe"}'),
]  # fmt: skip

WELL_FORMED: list[tuple[str, str, bytes]] = [
    ("a slash command", FORM, command("help")),
    ("a click on Open", FORM, click()),
    ("a reaction on another message", JSON, envelope(event_id="Ev0HOSTILE2")),
    ("app_home_opened", JSON, envelope(event=HOME, event_id="Ev0HOSTILE3")),
    ("url_verification", JSON, b'{"token": "x", "challenge": "3eZb", "type": "url_verification"}'),
    ("Slack's certificate check", FORM, b"ssl_check=1&token=deprecated-verification-token"),
]  # fmt: skip


def test_signed_bodies_slack_never_sends_get_400_never_500(rig: SlackRig) -> None:
    assert len(MALFORMED) >= 25
    wrong = []
    for name, content_type, body in MALFORMED:
        resp = rig.post_signed(body, content_type)
        if resp.status != 400 or resp.json() != {"ok": False, "error": "malformed body"}:
            wrong.append(f"{name}: {resp.status} {resp.body[:120]!r}")
    for name, content_type, body in WELL_FORMED:
        resp = rig.post_signed(body, content_type)
        if resp.status != 200:
            wrong.append(f"{name} (well formed): {resp.status} {resp.body[:120]!r}")
    assert not wrong, "\n".join(wrong)
    rig.drain()
    assert rig.runtime.store.operations() == []
    assert rig.request("GET", "/healthz").status == 200


def test_timestamps_that_are_not_ascii_digits_get_401(rig: SlackRig) -> None:
    body = command("deploy main")
    for timestamp in ("²", "1²", "1" * 5000, "1e9", "0x65f0a1b2", "-1"):
        resp = rig.post_signed(body, FORM, timestamp=timestamp)
        assert resp.status == 401, (timestamp[:20], resp.status, resp.body)
        assert resp.json()["error"] == "invalid signature"
    assert rig.runtime.store.operations() == []


def test_github_json_nested_too_deep_gets_400(rig: SlackRig) -> None:
    resp = rig.github("push", nested(DEEP).encode())
    assert resp.status == 400, resp.body
    assert resp.json() == {"ok": False, "error": "malformed body"}


# -- Content-Length ---------------------------------------------------------------------------


def raw(port: int, head: str, body: bytes = b"", timeout: float = 5.0) -> tuple[int, bytes, float]:
    """Send a request as bytes (headers as given, then ``body``) and read the answer's status
    line and headers; with how long they took to come."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        started = time.monotonic()
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        answer = b""
        try:
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except TimeoutError:
            pass
        took = time.monotonic() - started
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    return status, answer, took


def post_head(path: str, length: str | None) -> str:
    declared = f"Content-Length: {length}\n" if length is not None else ""
    return (
        f"POST {path} HTTP/1.1\nHost: revieee\nContent-Type: {JSON}\n{declared}Connection: close\n"
    )


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def wsgiref_port(rig: SlackRig) -> Iterator[int]:
    """The rig's WSGI app under wsgiref, which passes Content-Length on as the client sent it."""
    server: WSGIServer = make_server("127.0.0.1", 0, rig.serving.app, handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server.server_port
    server.shutdown()
    thread.join(5)
    server.server_close()


BAD_LENGTHS = [("abc", 400), ("-5", 400), ("1e3", 400), ("²", 400), ("", 411), ("524288000", 413)]
PATHS = ("/slack/events", "/github/webhook")


def test_content_length_is_checked_before_the_body_is_read(
    rig: SlackRig, wsgiref_port: int
) -> None:
    wrong = []
    for path in PATHS:
        status, answer, _took = raw(rig.port, post_head(path, None))  # waitress, no length
        if status != 411:
            wrong.append(f"waitress {path} without Content-Length: {answer[:80]!r}")
        for length, expected in BAD_LENGTHS:  # wsgiref hands the header over as sent
            status, answer, took = raw(wsgiref_port, post_head(path, length), b'{"a"')
            if status != expected or took > 3:
                wrong.append(f"{path} Content-Length {length!r}: {answer[:80]!r} {took:.1f}s")
    assert not wrong, "\n".join(wrong)


def test_a_500_mib_body_is_refused_before_it_is_sent(rig: SlackRig) -> None:
    for path in PATHS:
        status, answer, took = raw(rig.port, post_head(path, str(500 * 1024 * 1024)), b"{", 3)
        assert status == 413, (path, answer)
        assert took < 2, f"{took:.1f}s"


# -- replays ----------------------------------------------------------------------------------


def signed(body: bytes, content_type: str, **extra: str) -> dict[str, str]:
    ts = str(int(time.time()))
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": sign(body, ts),
        **extra,
    }


def test_a_replayed_slash_command_is_refused_and_deploys_once(rig: SlackRig) -> None:
    body = command(f"deploy {BRANCH}", response_url=rig.fake.response_url("replayed"))
    headers = signed(body, FORM)
    first = rig.request("POST", "/slack/events", body, headers)
    assert first.status == 200, first.body
    assert "queued deploy" in first.json()["text"]
    again = rig.request("POST", "/slack/events", body, headers)
    # a retry header changes nothing: Slack never retries a slash command
    retried = rig.request("POST", "/slack/events", body, {**headers, "X-Slack-Retry-Num": "1"})
    for resp in (again, retried):
        assert resp.status == 401, resp.body
        assert resp.json() == {"ok": False, "error": "replayed request"}
    assert [op.kind for op in rig.runtime.store.operations(env=ENV)] == ["deploy"]
    rig.wait_status(ENV, "running", "failed")
    assert len(rig.runtime.store.deployments(ENV)) == 1


def test_a_replayed_event_is_refused_but_slacks_retries_are_deduplicated(rig: SlackRig) -> None:
    body = envelope(event=HOME, event_id="Ev0REPLAYED")
    headers = signed(body, JSON)
    assert rig.request("POST", "/slack/events", body, headers).status == 200
    replayed = rig.request("POST", "/slack/events", body, headers)
    assert replayed.status == 401 and replayed.json()["error"] == "replayed request"
    retry = {**headers, "X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    assert rig.request("POST", "/slack/events", body, retry).status == 200
    rig.fake.wait_for(lambda: len(rig.fake.of("views.publish")) >= 1)
    rig.drain()
    assert len(rig.fake.of("views.publish")) == 1  # the retry was recognised by its event_id


def test_the_replay_guard_forgets_by_time_and_holds_at_most_its_capacity() -> None:
    now = [1_700_000_000.0]
    guard = ReplayGuard(capacity=3, clock=lambda: now[0])
    ts = str(int(now[0]))
    assert guard.first(ts, "v0=a") and not guard.first(ts, "v0=a")
    assert guard.first(ts, "v0=b")  # another signature
    assert guard.first(str(int(now[0]) + 1), "v0=a")  # another timestamp
    assert not guard.first(ts, "v0=b")
    assert guard.first(ts, "v0=c") and len(guard) == 3  # the oldest went to make room
    now[0] += MAX_SKEW + 2  # every one of them is stale now: Slack's window refuses them anyway
    assert guard.first(str(int(now[0])), "v0=d") and len(guard) == 1


def test_a_command_with_the_word_payload_in_it_is_a_command(rig: SlackRig) -> None:
    """Bolt reads any form containing "payload" as an interaction (and then finds none): a
    branch or a channel named so must still reach the /revieee command."""
    answer = rig.command("status payload-fix")
    assert answer.status == 200, answer.text
    assert "no environment named 'payload-fix'" in answer.json()["text"]
    assert rig.command("help", channel_name="payload").status == 200

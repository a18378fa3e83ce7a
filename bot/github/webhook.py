"""``POST /github/webhook``: verify, de-duplicate, persist, answer. The work happens afterwards on
the inbox worker, so GitHub (which gives up after 10 seconds) is answered in milliseconds."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from bot.github.events import HANDLED, SOURCE
from bot.httpserver import Refused, read_body
from bot.store import Store

MAX_BODY = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB


def github_signature_ok(secret: str, body: bytes, header: str) -> bool:
    """``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>``, in constant time."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.encode("utf-8", "replace"))


def _answer(start_response: Callable[..., Any], status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


class GitHubWebhook:
    def __init__(self, store: Store, secret: str, wake: Callable[[], None]) -> None:
        self.store = store
        self.secret = secret
        self.wake = wake

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        try:
            body = read_body(environ, MAX_BODY)
        except Refused as exc:
            return _answer(start_response, exc.status, {"ok": False, "error": exc.error})
        if not github_signature_ok(self.secret, body, environ.get("HTTP_X_HUB_SIGNATURE_256", "")):
            return _answer(
                start_response, "401 Unauthorized", {"ok": False, "error": "invalid signature"}
            )
        event = environ.get("HTTP_X_GITHUB_EVENT", "")
        delivery = environ.get("HTTP_X_GITHUB_DELIVERY", "")
        payload = _payload(body, environ.get("CONTENT_TYPE", ""))
        if payload is None or not event or not delivery:
            missing = (
                "X-GitHub-Event" if not event else "X-GitHub-Delivery" if not delivery else None
            )
            error = f"missing {missing}" if missing else "malformed body"
            return _answer(start_response, "400 Bad Request", {"ok": False, "error": error})
        if event == "ping":
            return _answer(start_response, "200 OK", {"ok": True, "pong": payload.get("zen", "")})
        if event not in HANDLED:
            return _answer(start_response, "202 Accepted", {"ok": True, "ignored": event})
        # the JSON as received (already checked to be an object): no second serialisation
        text = body.decode() if payload_is_body(environ) else json.dumps(payload)
        item = self.store.inbox_add(SOURCE, event, text, delivery=delivery)
        if item is None:
            return _answer(start_response, "200 OK", {"ok": True, "duplicate": delivery})
        self.wake()
        return _answer(start_response, "202 Accepted", {"ok": True, "queued": item})


def payload_is_body(environ: dict[str, Any]) -> bool:
    return not str(environ.get("CONTENT_TYPE", "")).startswith("application/x-www-form-urlencoded")


def _payload(body: bytes, content_type: str) -> dict[str, Any] | None:
    """GitHub sends JSON, or ``payload=<json>`` when the hook is set to form encoding."""
    try:
        text = body.decode("utf-8")
        if content_type.startswith("application/x-www-form-urlencoded"):
            text = parse_qs(text, strict_parsing=True)["payload"][0]
        data = json.loads(text)
    except (UnicodeDecodeError, ValueError, KeyError, RecursionError):  # nested too deep
        return None
    return data if isinstance(data, dict) else None

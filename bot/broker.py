"""One OAuth callback for every preview: OAuth providers take no wildcard redirect URI, so
``https://auth.<domain>/callback`` (``oauth_callback_url``) is the only one registered, and
revieee forwards each callback to the environment its ``state`` names.

An environment's services get ``REVIEEE_OAUTH_CALLBACK`` (that URI: the ``redirect_uri`` of the
authorization request and of the token request) and ``REVIEEE_OAUTH_KEY`` (a key of their own,
an HMAC of the environment's name keyed with ``REVIEEE_PROXY_SECRET``: it signs states for this
environment and no other). The app sends as ``state``::

    rv1.<payload>.<signature>
    payload   = base64url(JSON {"e": env, "p": callback path, "s": the app's own state,
                                "x": expiry, Unix seconds})
    signature = base64url(HMAC-SHA256(REVIEEE_OAUTH_KEY, "rv1." + payload))

(base64url without padding). ``GET /callback`` checks the signature in constant time, the
expiry (at most an hour ahead), that the environment exists and is running, and that the path
is a path; then it answers 303 to ``https://<env>.<domain><path>`` with the provider's
parameters (``code``, ``error``...) and ``state`` set back to the app's own. Anything else is
refused with a page saying why: never a redirect to anywhere else."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from bot.events import EnvStatus
from bot.pages import ENV_RE, StartResponse, page
from bot.store import Store

log = logging.getLogger("revieee.broker")

PATH = "/callback"
VERSION = "rv1"
MAX_AHEAD = 3600  # a state expires at most an hour after it is checked
PATH_RE = re.compile(r"/(?![/\\])[\x21-\x7e]{0,511}")  # a path on the environment's host


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def oauth_key(secret: str, env: str) -> str:
    """``REVIEEE_OAUTH_KEY`` of ``env``."""
    return _b64(hmac.new(secret.encode(), f"revieee-oauth\0{env}".encode(), "sha256").digest())


def variables(secret: str | None, callback: str, env: str) -> dict[str, str]:
    """What every service of ``env`` gets (nothing without the secret)."""
    if not secret:
        return {}
    return {"REVIEEE_OAUTH_CALLBACK": callback, "REVIEEE_OAUTH_KEY": oauth_key(secret, env)}


def make_state(
    key: str, env: str, path: str, inner: str = "", ttl: int = 600, now: float | None = None
) -> str:
    """A state as an app makes it (the README shows the same in a few lines of JS)."""
    payload = {
        "e": env,
        "p": path,
        "s": inner,
        "x": int((time.time() if now is None else now) + ttl),
    }
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    signed = f"{VERSION}.{body}"
    return f"{signed}.{_b64(hmac.new(key.encode(), signed.encode(), hashlib.sha256).digest())}"


class Refused(Exception):
    def __init__(self, status: str, why: str) -> None:
        super().__init__(why)
        self.status = status
        self.why = why


class Broker:
    """``GET /callback`` (a WSGI callable)."""

    def __init__(self, store: Store, secret: str, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.secret = secret
        self.clock = clock

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        query = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        try:
            location = self.forward(query)
        except Refused as exc:
            log.info("oauth callback refused: %s", exc.why)
            return page(
                start_response,
                exc.status,
                "Sign-in not forwarded",
                f"<p>revieee did not forward this sign-in: {exc.why}. Start the sign-in again "
                "from the review environment.</p>",
            )
        start_response(
            "303 See Other",
            [
                ("Location", location),
                ("Cache-Control", "no-store"),
                ("Referrer-Policy", "no-referrer"),
                ("Content-Length", "0"),
            ],
        )
        return [b""]

    def forward(self, query: list[tuple[str, str]]) -> str:
        """Where the callback goes, or :class:`Refused`."""
        states = [v for k, v in query if k == "state"]
        if len(states) != 1:
            raise Refused("400 Bad Request", "the callback has no state")
        payload = self.verify(states[0])
        env = payload["e"]
        row = self.store.get_env(env)
        if row is None:
            raise Refused("404 Not Found", f"there is no review environment {env}")
        if row["status"] != EnvStatus.RUNNING or not row.get("url"):
            raise Refused("409 Conflict", f"review environment {env} is not running")
        origin = urlsplit(str(row["url"]))
        params = [
            (k, payload["s"] if k == "state" else v)
            for k, v in query
            if k != "state" or payload["s"]
        ]
        target = f"{origin.scheme}://{origin.netloc}{payload['p']}"
        joiner = "&" if "?" in payload["p"] else "?"
        return target + (joiner + urlencode(params) if params else "")

    def verify(self, state: str) -> Mapping[str, Any]:
        """The payload of a state this secret's key of its environment signed, unexpired."""
        parts = state.split(".")
        if len(parts) != 3 or parts[0] != VERSION or len(state) > 4096:
            raise Refused("400 Bad Request", "the state is not one of revieee's")
        try:
            payload = json.loads(_unb64(parts[1]))
            signature = _unb64(parts[2])
        except (ValueError, binascii.Error):
            raise Refused("400 Bad Request", "the state is not one of revieee's") from None
        if (
            not isinstance(payload, dict)
            or not isinstance(payload.get("e"), str)
            or not ENV_RE.fullmatch(payload["e"])
            or not isinstance(payload.get("p"), str)
            or not isinstance(payload.get("s", ""), str)
            or not isinstance(payload.get("x"), int)
        ):
            raise Refused("400 Bad Request", "the state is not one of revieee's")
        key = oauth_key(self.secret, payload["e"])
        mine = hmac.new(key.encode(), f"{VERSION}.{parts[1]}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(mine, signature):
            raise Refused("400 Bad Request", "the state's signature is not valid")
        now = self.clock()
        if payload["x"] < now:
            raise Refused("400 Bad Request", "the sign-in took too long (its state expired)")
        if payload["x"] > now + MAX_AHEAD:
            raise Refused("400 Bad Request", "the state expires too far ahead")
        if not PATH_RE.fullmatch(payload["p"]):
            raise Refused("400 Bad Request", "the state's callback path is not a path")
        return {"e": payload["e"], "p": payload["p"], "s": payload.get("s", "")}

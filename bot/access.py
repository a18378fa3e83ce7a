"""Protected previews: who may open an environment's URL, per app (``access`` in revieee.toml).

- ``public``: anyone (the default).
- ``sso``: people signed in at the load balancer (its ``authenticate-oidc`` or
  ``authenticate-cognito`` action, deploy/cloudformation.yml); revieee checks nothing more.
- ``token``: holders of the environment's secret link, ``https://<env>.<domain>/?revieee_token=T``
  (revieee posts it in the environment's Slack message), or of the app's bypass token for
  automation (CI, screenshots), sent as the ``X-Revieee-Token`` header.

The reverse proxy asks revieee (``revieee proxy-config``, bot/proxyconf.py):

- ``GET /_revieee/auth``: nginx's ``auth_request`` sub-request for every request to a token app's
  environment, with the visitor's ``revieee_token`` cookie and ``X-Revieee-Token`` header passed
  on; 204 lets the request through, 401 refuses it (nginx caches a 204 for 30 s);
- ``GET /_revieee/token``: a request whose query has ``revieee_token``: a valid token gets a
  303 to the same address without it and a ``revieee_token`` cookie (HttpOnly, Secure,
  SameSite=Lax, 30 days), so the token is neither passed to the app nor left in the address bar;
- ``GET /_revieee/denied``: the page a refused visitor sees.

Each carries the environment's name (``X-Revieee-Env``) and the proxy's secret
(``X-Revieee-Proxy-Secret``, compared in constant time, as for bot/visit.py).

Tokens are not stored: an environment's is an HMAC of its name and a salt drawn each time it is
created (a new one after a stop), keyed with ``REVIEEE_PROXY_SECRET``; an app's bypass token is
one of the app's name. Rotating the secret changes every token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import logging
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from bot.config import Settings
from bot.pages import ENV_HEADER, ENV_RE, SECRET_HEADER, StartResponse, page
from bot.store import Store

log = logging.getLogger("revieee.access")

AUTH_PATH = "/_revieee/auth"
TOKEN_PATH = "/_revieee/token"
DENIED_PATH = "/_revieee/denied"
NAME = "revieee_token"  # the query parameter and the cookie
HEADER = "X-Revieee-Token"  # a token sent by automation
GIVEN_HEADER = "HTTP_X_REVIEEE_TOKEN"  # the visitor's header, passed on by the proxy
COOKIE_HEADER = "HTTP_X_REVIEEE_COOKIE"  # the visitor's revieee_token cookie, passed on
URI_HEADER = "HTTP_X_REVIEEE_URI"  # the visitor's request URI ($request_uri)
COOKIE_AGE = 30 * 86400
MAX_URI = 8192


def _mac(secret: str, *parts: str) -> str:
    digest = hmac.new(secret.encode(), "\0".join(parts).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()  # 24 characters, 144 bits


def env_token(secret: str, env: str, salt: str) -> str:
    """The token of one life of an environment (``salt``: drawn when it was created)."""
    return _mac(secret, "revieee-access", env, salt)


def bypass_token(secret: str, app: str) -> str:
    """The app's token for automation (any of its environments, header only)."""
    return _mac(secret, "revieee-bypass", app)


def app_of(settings: Settings, env: str, row: dict[str, Any] | None) -> str | None:
    """The app an environment belongs to: its row's, else the app its name starts with."""
    if row and row.get("app") in settings.apps:
        return str(row["app"])
    names = [a for a in settings.apps if env.startswith(f"{a}-")]
    return max(names, key=len) if names else None


def with_token(url: str, token: str) -> str:
    parts = urlsplit(url)
    query = urlencode([*parse_qsl(parts.query), (NAME, token)])
    return parts._replace(query=query).geturl()


class Links:
    """Environments' secret links, for messages (None for an app that is not ``token``)."""

    def __init__(self, settings: Settings, store: Store, secret: str) -> None:
        self.settings = settings
        self.store = store
        self.secret = secret

    def link(self, env: str, url: str) -> str | None:
        row = self.store.get_env(env)
        app = app_of(self.settings, env, row)
        if app is None or self.settings.apps[app].access != "token" or row is None:
            return None
        return with_token(url, env_token(self.secret, env, row.get("access_salt") or ""))


class Gate:
    """``/_revieee/auth``, ``/_revieee/token`` and ``/_revieee/denied`` (WSGI callables)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        secret: str,
        permalink: Callable[[str], str | None] = lambda _env: None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.secret = secret
        self.permalink = permalink
        self.checks = 0  # sub-requests answered (the proxy caches what it is told)

    def routes(self) -> dict[tuple[str, str], Callable[..., Iterable[bytes]]]:
        return {
            ("GET", AUTH_PATH): self.auth,
            ("GET", TOKEN_PATH): self.landing,
            ("GET", DENIED_PATH): self.denied,
        }

    def _env(self, environ: dict[str, Any]) -> str | None:
        """The environment named, if the proxy's secret is right."""
        given = environ.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.secret.encode()):
            return None
        env = environ.get(ENV_HEADER, "")
        return env if ENV_RE.fullmatch(env) else None

    def allowed(self, env: str, token: str, cookie: bool) -> bool:
        """May a visitor with ``token`` (from its cookie, or its header) open ``env``?"""
        row = self.store.get_env(env)
        app = app_of(self.settings, env, row)
        if app is None:
            return False  # no app of ours: nothing to open
        if self.settings.apps[app].access != "token":
            return True
        if not token:
            return False
        if not cookie and hmac.compare_digest(
            token.encode(), bypass_token(self.secret, app).encode()
        ):
            return True
        if row is None:
            return False
        mine = env_token(self.secret, env, row.get("access_salt") or "")
        return hmac.compare_digest(token.encode(), mine.encode())

    def auth(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        self.checks += 1
        env = self._env(environ)
        header = environ.get(GIVEN_HEADER, "")
        cookie = environ.get(COOKIE_HEADER, "")
        ok = env is not None and (
            (bool(header) and self.allowed(env, header, cookie=False))
            or (bool(cookie) and self.allowed(env, cookie, cookie=True))
            or (not header and not cookie and self.allowed(env, "", cookie=False))
        )
        start_response("204 No Content" if ok else "401 Unauthorized", [("Content-Length", "0")])
        return [b""]

    def landing(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        env = self._env(environ)
        uri = environ.get(URI_HEADER, "")
        if env is None or not uri.startswith("/") or len(uri) > MAX_URI:
            return page(start_response, "400 Bad Request", "Bad request", "<p>Bad request.</p>")
        raw_path, _, raw_query = uri.partition("?")  # not urlsplit: "//x/" is a path here
        query = parse_qsl(raw_query, keep_blank_values=True)
        token = next((v for k, v in query if k == NAME), "")
        if not self.allowed(env, token, cookie=True):
            log.info("secret link refused env=%s", env)
            return self._refused(env, start_response, "403 Forbidden", "This link is not valid")
        # the same address without the token; "//host" would leave for another site
        path = "/" + raw_path.lstrip("/")
        rest = urlencode([(k, v) for k, v in query if k != NAME])
        start_response(
            "303 See Other",
            [
                ("Location", path + (f"?{rest}" if rest else "")),
                (
                    "Set-Cookie",
                    f"{NAME}={token}; Path=/; Max-Age={COOKIE_AGE}; HttpOnly; Secure; SameSite=Lax",
                ),
                ("Cache-Control", "no-store"),
                ("Referrer-Policy", "no-referrer"),
                ("Content-Length", "0"),
            ],
        )
        return [b""]

    def denied(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        env = self._env(environ)
        if env is None:
            return page(start_response, "401 Unauthorized", "Not for you", "<p>Unauthorized.</p>")
        return self._refused(env, start_response, "401 Unauthorized", "This preview is protected")

    def _refused(
        self, env: str, start_response: StartResponse, status: str, title: str
    ) -> Iterable[bytes]:
        link = self.permalink(env)
        where = (
            f' (<a href="{html.escape(link, quote=True)}">its Slack message</a>)' if link else ""
        )
        return page(
            start_response,
            status,
            title,
            f"<p>Review environment <code>{html.escape(env)}</code> is open to the people its "
            f"link was given to: open the link revieee posted in Slack{where}. Automation sends "
            f"the app's token in the <code>{HEADER}</code> header.</p>",
        )

"""``revieee serve``: one process, a production WSGI server (waitress), the operation pool.

Routes: ``POST /slack/events`` (slash commands, events, interactivity), ``POST /github/webhook``
(when ``GITHUB_WEBHOOK_SECRET`` is set), ``GET /healthz``.
Slack requests are signature-checked here, in constant time, before Bolt sees them: forged,
stale or unsigned requests get 401, signed but malformed bodies 400.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot.app import Runtime
from bot.config import ConfigError, Secrets
from bot.github.events import GitHubEvents
from bot.github.notifier import GitHubNotifier
from bot.github.webhook import GitHubWebhook
from bot.httpserver import HttpServer
from bot.inbox import InboxWorker
from bot.jobs import start_scheduler
from bot.lifecycle import Lifecycle
from bot.metrics import render as render_metrics
from bot.slack import BotIdentity, bolt_app, slack_authorizer, web_client
from bot.slack.announcer import SlackAnnouncer
from bot.slack.listeners import SlackContext, register
from bot.slack.notifier import SlackNotifier
from bot.sweeper import Sweeper

log = logging.getLogger("revieee.server")

DEFAULT_PORT = 3000
SWITCH_INTERVAL = 0.001
MAX_BODY = 1024 * 1024
QUIET_PATHS = ("/healthz", "/metrics")  # polled all the time: not logged

StartResponse = Callable[..., Any]


def _response(
    start_response: StartResponse,
    status: str,
    body: dict[str, Any] | str,
    content_type: str = "application/json",
) -> Iterable[bytes]:
    data = (json.dumps(body) if isinstance(body, dict) else body).encode()
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(data)))])
    return [data]


MAX_SKEW = 5 * 60  # Slack's advice: refuse requests older than five minutes (replays)


def slack_signature_ok(
    secret: str, body: bytes, timestamp: str, signature: str, now: float | None = None
) -> bool:
    """Slack's v0 request signature over the raw bytes, compared in constant time.

    (slack_sdk's ``SignatureVerifier`` decodes the body as UTF-8 first, so a signed body that is
    not UTF-8 would raise instead of reaching the 400 it deserves.)"""
    if not timestamp.isdigit() or not signature.startswith("v0="):
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > MAX_SKEW:
        return False
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))


def _well_formed(body: bytes, content_type: str) -> bool:
    """Slack sends form-encoded commands and interactivity (``payload=<json>``), JSON events."""
    try:
        text = body.decode("utf-8")
        if content_type.startswith("application/json"):
            return isinstance(json.loads(text), dict)
        form = parse_qs(text, strict_parsing=True)
        if "payload" in form:
            return isinstance(json.loads(form["payload"][0]), dict)
        return "command" in form
    except (UnicodeDecodeError, ValueError):
        return False


@dataclass
class WebApp:
    """The WSGI application."""

    runtime: Runtime
    signing_secret: str
    slack: SlackRequestHandler | None
    routes: dict[tuple[str, str], Callable[..., Iterable[bytes]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.routes[("GET", "/healthz")] = self._health
        self.routes[("GET", "/metrics")] = self._metrics
        if self.slack is not None:
            self.routes[("POST", "/slack/events")] = self._slack

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        # GitHub names each delivery; other requests get an id of our own. Either is answered
        # in X-Request-Id and logged with the request.
        request_id = environ.get("HTTP_X_GITHUB_DELIVERY") or uuid.uuid4().hex[:16]
        started = time.perf_counter()
        seen: list[str] = []

        def respond(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            seen.append(status.split(" ", 1)[0])
            return start_response(status, [*headers, ("X-Request-Id", request_id)], *args)

        path = environ.get("PATH_INFO", "")
        route = self.routes.get((environ["REQUEST_METHOD"], path))
        try:
            if route is None:
                return _response(respond, "404 Not Found", {"ok": False, "error": "not found"})
            return route(environ, respond)
        except Exception:
            log.exception("request failed path=%s request_id=%s", path, request_id)
            return _response(
                respond, "500 Internal Server Error", {"ok": False, "error": "internal error"}
            )
        finally:
            if path not in QUIET_PATHS:
                log.info(
                    "request method=%s path=%s status=%s ms=%.1f request_id=%s",
                    environ["REQUEST_METHOD"],
                    path,
                    seen[0] if seen else "-",
                    (time.perf_counter() - started) * 1000,
                    request_id,
                )

    def _health(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            counts = dict(
                self.runtime.store.db.conn.execute(
                    "select status, count(*) from operations where status in ('queued', 'running') "
                    "group by status"
                ).fetchall()
            )
        except Exception as exc:
            return _response(
                start_response,
                "503 Service Unavailable",
                {"ok": False, "error": f"database: {exc}"},
            )
        return _response(
            start_response,
            "200 OK",
            {"ok": True, "queued": counts.get("queued", 0), "running": counts.get("running", 0)},
        )

    def _metrics(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        body = render_metrics(self.runtime.store, self.runtime.aws_errors)
        return _response(start_response, "200 OK", body, "text/plain; version=0.0.4")

    def _slack(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length > MAX_BODY:
            return _response(start_response, "413 Payload Too Large", {"ok": False})
        body = environ["wsgi.input"].read(length) if length else b""
        timestamp = environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", "")
        signature = environ.get("HTTP_X_SLACK_SIGNATURE", "")
        if not slack_signature_ok(self.signing_secret, body, timestamp, signature):
            return _response(
                start_response, "401 Unauthorized", {"ok": False, "error": "invalid signature"}
            )
        if not _well_formed(body, environ.get("CONTENT_TYPE", "")):
            return _response(
                start_response, "400 Bad Request", {"ok": False, "error": "malformed body"}
            )
        environ["wsgi.input"] = io.BytesIO(body)
        assert self.slack is not None
        return self.slack(environ, start_response)


@dataclass
class Serving:
    """Everything ``revieee serve`` runs, for the CLI and for tests."""

    app: WebApp
    notifier: SlackNotifier | None
    bolt: Any
    identity: BotIdentity | None = None
    github: GitHubNotifier | None = None
    inbox: InboxWorker | None = None
    pool: ThreadPoolExecutor | None = None  # Slack replies that follow an ack
    lifecycle: Lifecycle | None = None  # the scheduled jobs' work (bot/jobs.py runs it)

    def start(self) -> None:
        if self.inbox is not None:
            self.inbox.start()

    def close(self) -> None:
        if self.inbox is not None:
            self.inbox.stop()
        if self.github is not None:
            self.github.close()
        if self.identity is not None:
            self.identity.close()
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        if self.notifier is not None:
            self.notifier.close()


def build_serving(
    runtime: Runtime,
    secrets: Secrets,
    slack_api_url: str | None = None,
    socket_mode: bool = False,
    reply_workers: int = 4,
) -> Serving:
    """Wire the Slack app, the notifier and the WSGI app on top of a runtime."""
    token = secrets.require("SLACK_BOT_TOKEN")
    signing_secret = "" if socket_mode else secrets.require("SLACK_SIGNING_SECRET")
    if socket_mode:
        secrets.require("SLACK_APP_TOKEN")
    client = web_client(token, slack_api_url)
    notifier = SlackNotifier(client, runtime.store, runtime.settings)
    runtime.apps.listeners.append(notifier.on_step)
    runtime.apps.log_listeners.append(notifier.on_log)
    # every accepted request gets its message at once, whichever front door it came through
    runtime.apps.on_enqueue.append(notifier.on_requested)
    identity = BotIdentity(client, token).start()
    bolt = bolt_app(client, signing_secret or "socket-mode", identity)
    pool = ThreadPoolExecutor(reply_workers, thread_name_prefix="revieee-slack-reply")

    def later(fn: Callable[..., Any], *args: Any) -> None:
        def safe() -> None:
            try:
                fn(*args)
            except Exception:
                log.exception("slack reply failed")

        pool.submit(safe)

    sweeper = Sweeper(runtime.clients, runtime.settings, runtime.store, runtime.engine)
    register(
        bolt,
        SlackContext(
            runtime.apps,
            runtime.store,
            slack_authorizer(runtime.settings, client),
            notifier,
            later=later,
            sweeper=sweeper,
        ),
    )
    handler = None if socket_mode else SlackRequestHandler(bolt)
    lifecycle = Lifecycle(
        runtime.settings,
        runtime.store,
        runtime.apps,
        SlackAnnouncer(client, runtime.store),
        sweeper,
    )
    serving = Serving(
        WebApp(runtime, signing_secret or "unused", handler),
        notifier,
        bolt,
        identity,
        pool=pool,
        lifecycle=lifecycle,
    )
    _wire_github(serving, runtime, secrets, notifier)
    return serving


def _wire_github(
    serving: Serving, runtime: Runtime, secrets: Secrets, slack: SlackNotifier
) -> None:
    """``/github/webhook`` when GITHUB_WEBHOOK_SECRET is set; PR comments and deployments when
    GitHub credentials are."""
    if runtime.forge is not None:
        github = GitHubNotifier(runtime.forge, runtime.store, runtime.settings, slack.permalink)
        runtime.apps.listeners.append(github.on_step)
        runtime.apps.on_enqueue.append(github.on_requested)
        serving.github = github
    secret = secrets.get("GITHUB_WEBHOOK_SECRET")
    if not secret:
        log.info("github webhooks off: GITHUB_WEBHOOK_SECRET is not set")
        return
    events = GitHubEvents(runtime.settings, runtime.store, runtime.apps, runtime.forge)
    inbox = InboxWorker(
        runtime.store, lambda _source, event, payload: events.handle(event, payload)
    )
    serving.inbox = inbox
    serving.app.routes[("POST", "/github/webhook")] = GitHubWebhook(
        runtime.store, secret, inbox.wake
    )


def serve(
    runtime: Runtime,
    secrets: Secrets,
    host: str,
    port: int,
    socket_mode: bool,
    stop: threading.Event,
) -> None:
    """Run until ``stop`` is set, then drain running operations."""
    serving = build_serving(runtime, secrets, os.environ.get("REVIEEE_SLACK_API_URL"), socket_mode)
    # A request thread waiting for the GIL behind busy workers waits a whole switch interval
    # (5 ms by default) each time; answers come first here, so switch more often.
    sys.setswitchinterval(SWITCH_INTERVAL)
    http = HttpServer(serving.app, host, port)
    runtime.runner.start()
    serving.start()
    assert serving.lifecycle is not None
    scheduler = start_scheduler(runtime.settings, serving.lifecycle)
    http.start()
    socket_handler = None
    if socket_mode:
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        socket_handler = SocketModeHandler(serving.bolt, secrets.require("SLACK_APP_TOKEN"))
        socket_handler.connect()
    print(
        f"revieee serving on http://{host}:{http.port} "
        f"({'socket mode' if socket_mode else '/slack/events'}, /healthz)",
        flush=True,
    )
    stop.wait()
    print("revieee stopping: draining running operations", flush=True)
    if socket_handler is not None:
        socket_handler.close()
    scheduler.shutdown(wait=True)  # a job under way finishes; the next runs are in the job store
    http.stop()
    runtime.close()
    serving.close()


def port_from(cli_port: int | None) -> int:
    if cli_port:
        return cli_port
    raw = os.environ.get("REVIEEE_PORT")
    if raw is None:
        return DEFAULT_PORT
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(
            "REVIEEE_PORT", f"must be a port number (got {raw!r})", "REVIEEE_PORT=3000"
        )
    return int(raw)

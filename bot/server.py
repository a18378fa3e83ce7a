"""``revieee serve``: one process, a production WSGI server (waitress), the operation pool.

Routes: ``POST /slack/events`` (slash commands, events, interactivity), ``POST /github/webhook``
(when ``GITHUB_WEBHOOK_SECRET`` is set), ``GET /healthz``; when ``REVIEEE_PROXY_SECRET`` is
set, the reverse proxy's ``GET /_revieee/visit`` (wake on visit, bot/visit.py) and
``/_revieee/auth``, ``/_revieee/token``, ``/_revieee/denied`` (protected previews,
bot/access.py), and the OAuth broker's ``GET /callback`` (bot/broker.py).
Slack requests are signature-checked here, in constant time, before Bolt sees them: forged,
stale, unsigned or replayed requests get 401, signed bodies that are not what Slack sends 400,
bodies without a usable ``Content-Length`` 411 or 400 and bodies over the limit 413.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import io
import json
import logging
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot.access import Gate, Links
from bot.app import Runtime
from bot.broker import Broker
from bot.config import ConfigError, Secrets
from bot.events import Requested
from bot.github.events import GitHubEvents
from bot.github.notifier import GitHubNotifier
from bot.github.webhook import GitHubWebhook
from bot.httpserver import HttpServer, Refused, read_body
from bot.inbox import InboxWorker
from bot.jobs import start_scheduler
from bot.lifecycle import Lifecycle
from bot.metrics import render as render_metrics
from bot.slack import BotIdentity, bolt_app, slack_authorizer, web_client
from bot.slack.announcer import SlackAnnouncer
from bot.slack.listeners import SlackContext, register
from bot.slack.notifier import SlackNotifier
from bot.sweeper import Sweeper
from bot.visit import PATH as VISIT_PATH
from bot.visit import Visits
from bot.workerproc import WorkerProcess

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
TIMESTAMP = re.compile(r"[0-9]{1,12}")  # ASCII digits only: str.isdigit takes "²", int() fails


def slack_signature_ok(
    secret: str, body: bytes, timestamp: str, signature: str, now: float | None = None
) -> bool:
    """Slack's v0 request signature over the raw bytes, compared in constant time.

    (slack_sdk's ``SignatureVerifier`` decodes the body as UTF-8 first, so a signed body that is
    not UTF-8 would raise instead of reaching the 400 it deserves.)"""
    if not TIMESTAMP.fullmatch(timestamp) or not signature.startswith("v0="):
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > MAX_SKEW:
        return False
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))


class ReplayGuard:
    """The signed Slack requests accepted while their timestamps are within ``window``: the
    same (timestamp, signature) pair a second time is a replay (a captured request sent again).

    Memory is bounded: an entry goes once its timestamp is too old to be accepted anyway, and
    past ``capacity`` entries the one closest to going is dropped early (and logged)."""

    def __init__(
        self,
        window: float = MAX_SKEW,
        capacity: int = 20_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.window = window
        self.capacity = capacity
        self.clock = clock
        self._until: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []  # (forgotten at, key): the next to go first
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._until)

    def first(self, timestamp: str, signature: str) -> bool:
        """True the first time this signed request is seen, False for a replay. ``timestamp``
        is one :func:`slack_signature_ok` accepted."""
        key = f"{timestamp}:{signature}"
        now = self.clock()
        with self._lock:
            while self._heap and self._heap[0][0] < now:
                del self._until[heapq.heappop(self._heap)[1]]
            if key in self._until:
                return False
            while len(self._heap) >= self.capacity:
                until, old = heapq.heappop(self._heap)
                del self._until[old]
                log.warning("replay guard full: a signature forgotten %.0fs early", until - now)
            until = int(timestamp) + self.window
            self._until[key] = until
            heapq.heappush(self._heap, (until, key))
            return True


# -- what Slack sends ---------------------------------------------------------------------------
# Bolt indexes into the body it is handed (``body["actions"][0]["action_id"]``,
# ``body["event"]["type"]``, ``"id" in body["user"]``: slack_bolt.request.payload_utils and
# internals) and so do the listeners, so a signed body of another shape would be a 500. Each kind
# Slack sends is checked here for the fields Bolt or a listener reads, as Slack documents them
# (https://api.slack.com/interactivity/slash-commands, .../interactivity/handling#payloads,
# .../apis/events-api#callback-field); anything else is refused with 400 before Bolt sees it.

Check = Callable[[Any], bool]
SLACK_ID = re.compile(r"[A-Z0-9]{1,64}")  # U0ALICE, W..., T..., E..., C..., G..., D..., S...
EVENT_ID = re.compile(r"[A-Za-z0-9]{1,64}")  # Ev08MFMKH6
COMMAND = re.compile(r"/[^\s/]{1,32}")  # a slash command: "/" and up to 32 characters
BLOCK_KIT_ID = 255  # action_id, block_id, callback_id: at most 255 characters (Block Kit)
BUTTON_VALUE = 2000  # a button's value: at most 2,000 characters


def _id(value: Any) -> bool:
    return isinstance(value, str) and SLACK_ID.fullmatch(value) is not None


def _text(limit: int) -> Check:
    return lambda value: isinstance(value, str) and len(value) <= limit


def _optional(check: Check) -> Check:
    return lambda value: value is None or check(value)


def _with_id(value: Any) -> bool:
    return isinstance(value, dict) and _id(value.get("id"))


def _objects(value: Any) -> bool:
    return isinstance(value, list) and len(value) > 0 and all(isinstance(v, dict) for v in value)


def _view(*keys: str) -> Check:
    return lambda value: (
        isinstance(value, dict) and all(_text(BLOCK_KIT_ID)(value.get(key)) for key in keys)
    )


def _block_actions(value: Any) -> bool:
    return _objects(value) and all(
        _text(BLOCK_KIT_ID)(action.get("action_id"))
        and _optional(_text(BLOCK_KIT_ID))(action.get("block_id"))
        and _optional(_text(BUTTON_VALUE))(action.get("value"))
        for action in value
    )


def _reacted_to(value: Any) -> bool:
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        return False
    return value["type"] != "message" or (_id(value.get("channel")) and _text(64)(value.get("ts")))


CALLBACK = (("user", _with_id), ("callback_id", _text(BLOCK_KIT_ID)))
INTERACTIONS: dict[str, tuple[tuple[str, Check], ...]] = {
    "block_actions": (
        ("user", _with_id),
        ("actions", _block_actions),
        ("channel", _optional(_with_id)),
        ("view", _optional(_view("type"))),  # a button in the Home tab
    ),
    "block_suggestion": (
        ("user", _with_id),
        ("action_id", _text(BLOCK_KIT_ID)),
        ("block_id", _text(BLOCK_KIT_ID)),
    ),
    "view_submission": (("user", _with_id), ("view", _view("id", "type", "callback_id"))),
    "view_closed": (("user", _with_id), ("view", _view("id", "type", "callback_id"))),
    "shortcut": (*CALLBACK, ("trigger_id", _text(BLOCK_KIT_ID))),
    "message_action": (*CALLBACK, ("trigger_id", _text(BLOCK_KIT_ID))),
    "interactive_message": (*CALLBACK, ("actions", _objects)),
    "dialog_submission": CALLBACK,
    "dialog_cancellation": CALLBACK,
    "dialog_suggestion": CALLBACK,
    "workflow_step_edit": CALLBACK,
}
EVENTS: dict[str, tuple[tuple[str, Check], ...]] = {  # the events the listeners handle
    "reaction_added": (("user", _id), ("reaction", _text(100)), ("item", _reacted_to)),
    "app_home_opened": (("user", _id), ("tab", _optional(_text(32)))),
}


def _fields_problem(data: dict[str, Any], kind: str, fields: Iterable[tuple[str, Check]]) -> str:
    bad = [name for name, check in fields if not check(data.get(name))]
    return f"{kind} with a missing or malformed {', '.join(bad)}" if bad else ""


def _context_problem(data: dict[str, Any]) -> str:
    """What Bolt reads into every request's context, from the body, its ``event`` and its
    first ``authorizations`` entry: ids or objects with ids, strings, lists of objects."""
    for key in ("user", "team", "enterprise", "channel"):
        value = data.get(key)
        entity = value if isinstance(value, dict) else {"id": value}
        if any(entity.get(k) is not None and not _id(entity[k]) for k in ("id", "team_id")):
            return f"a malformed {key}"
    for key in ("user_id", "team_id", "enterprise_id", "channel_id"):
        if data.get(key) is not None and not _id(data[key]):
            return f"a malformed {key}"
    for key in ("response_url", "thread_ts"):
        if data.get(key) is not None and not isinstance(data[key], str):
            return f"a malformed {key}"
    for key in ("authorizations", "response_urls"):
        if data.get(key) not in (None, []) and not _objects(data[key]):
            return f"a malformed {key}"
    nested = list((data.get("authorizations") or [])[:1])
    if "event" in data:
        if not isinstance(data["event"], dict):
            return "an event that is not an object"
        nested.append(data["event"])
    return next((problem for item in nested if (problem := _context_problem(item))), "")


def _json_object(text: str) -> dict[str, Any] | None:
    """``text`` as a JSON object; None for anything else, for JSON nested too deep to parse
    (RecursionError) and for strings UTF-8 cannot carry (lone surrogates: ``"\\ud800"``)."""
    try:
        data = json.loads(text)
        json.dumps(data, ensure_ascii=False).encode()
    except (ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        return None
    return data if isinstance(data, dict) else None


def _envelope_problem(data: dict[str, Any]) -> str:
    """Events API deliveries: url_verification, app_rate_limited and event_callback."""
    kind = data.get("type")
    if kind == "url_verification":
        return "" if _text(1000)(data.get("challenge")) else "url_verification without challenge"
    if kind == "app_rate_limited":
        return "" if _id(data.get("team_id")) else "app_rate_limited without team_id"
    if kind != "event_callback":
        return "not a Slack event envelope"
    event = data.get("event")
    if not isinstance(event, dict) or not _text(64)(event.get("type")):
        return "event_callback without an event and its type"
    if not (isinstance(data.get("event_id"), str) and EVENT_ID.fullmatch(data["event_id"])):
        return "event_callback without event_id"
    problem = _context_problem(data)
    return problem or _fields_problem(event, event["type"], EVENTS.get(event["type"], ()))


def _interaction_problem(data: dict[str, Any]) -> str:
    """Interactivity (``payload=<json>``): a known type with the fields Bolt matches on."""
    kind = data.get("type")
    fields = INTERACTIONS.get(kind) if isinstance(kind, str) else None
    if fields is None:
        return "not a Slack interaction type"
    return _context_problem(data) or _fields_problem(data, str(kind), fields)


def _command_problem(form: dict[str, str]) -> str:
    """A slash command, or the certificate check Slack sends to a command's URL."""
    if form.get("ssl_check") == "1":
        return ""
    if not COMMAND.fullmatch(form.get("command", "")):
        return "not a slash command"
    fields = [(key, _id) for key in ("user_id", "team_id", "channel_id")]
    return _context_problem(form) or _fields_problem(form, "slash command", fields)


@dataclass(frozen=True)
class SlackBody:
    """What a signed body is: ``kind`` is ``command``, ``interaction``, or an Events API type
    (``event_callback``...); ``problem`` says why it is not what Slack sends ("" if it is)."""

    kind: str
    problem: str = ""


def slack_body(body: bytes, content_type: str) -> SlackBody:
    """Judge a signed body on what Bolt will make of it: JSON when the content type says so or
    it starts with ``{``, else a form, with interactivity as JSON in its ``payload`` field."""
    try:
        text = body.decode("utf-8")
        if content_type.split(";")[0] == "application/json" or text.startswith("{"):
            data = _json_object(text)
            if data is None:
                return SlackBody("", "not a JSON object")
            return SlackBody(str(data.get("type")), _envelope_problem(data))
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        return SlackBody("", "neither JSON nor a form in UTF-8")
    form = dict(pairs)
    if len(form) != len(pairs):  # Bolt would take the last, a listener might see the first
        return SlackBody("", "a form field given twice")
    if "payload" in form:
        data = _json_object(form["payload"])
        if data is None:
            return SlackBody("interaction", "payload is not a JSON object")
        return SlackBody("interaction", _interaction_problem(data))
    return SlackBody("command", _command_problem(form))


@dataclass
class WebApp:
    """The WSGI application."""

    runtime: Runtime
    signing_secret: str
    slack: SlackRequestHandler | None
    routes: dict[tuple[str, str], Callable[..., Iterable[bytes]]] = field(default_factory=dict)
    replays: ReplayGuard = field(default_factory=ReplayGuard)
    worker: WorkerProcess | None = None  # the operations' process, when serve started one

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
            counts = self.runtime.store.operations_under_way()
        except Exception as exc:
            return _response(
                start_response,
                "503 Service Unavailable",
                {"ok": False, "error": f"database: {exc}"},
            )
        if self.worker is None:
            return _response(start_response, "200 OK", {"ok": True, **counts})
        healthy = self.worker.healthy()
        body = {"ok": healthy, **counts, "worker": self.worker.health()}
        return _response(start_response, "200 OK" if healthy else "503 Service Unavailable", body)

    def _metrics(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        body = render_metrics(self.runtime.store, self.runtime.aws_errors)
        return _response(start_response, "200 OK", body, "text/plain; version=0.0.4")

    def _slack(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            body = read_body(environ, MAX_BODY)
        except Refused as exc:
            return _response(start_response, exc.status, {"ok": False, "error": exc.error})
        timestamp = environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", "")
        signature = environ.get("HTTP_X_SLACK_SIGNATURE", "")
        if not slack_signature_ok(self.signing_secret, body, timestamp, signature):
            return _response(
                start_response, "401 Unauthorized", {"ok": False, "error": "invalid signature"}
            )
        judged = slack_body(body, environ.get("CONTENT_TYPE", ""))
        if judged.problem:
            log.info("slack request refused: %s", judged.problem)
            return _response(
                start_response, "400 Bad Request", {"ok": False, "error": "malformed body"}
            )
        # Slack retries an event it got no answer to in time (X-Slack-Retry-Num): those go on
        # to the event_id de-duplication. Commands and interactions are never sent twice.
        retry = judged.kind == "event_callback" and "HTTP_X_SLACK_RETRY_NUM" in environ
        if not retry and not self.replays.first(timestamp, signature):
            log.warning("replayed slack request refused kind=%s", judged.kind)
            return _response(
                start_response, "401 Unauthorized", {"ok": False, "error": "replayed request"}
            )
        if b"payload" in body and judged.kind == "command":
            # Bolt takes any form with the word "payload" in it for an interaction and finds no
            # payload= field (slack_bolt.request.internals.parse_body): ``/revieee status
            # payload-fix`` would fail. The same form, with that word's "a" percent-encoded.
            body = body.replace(b"payload", b"p%61yload")
            environ["CONTENT_LENGTH"] = str(len(body))
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
    notifier.subscribe(runtime.bus)
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
            runtime.core,
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
        runtime.core,
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
    proxy_secret = secrets.get("REVIEEE_PROXY_SECRET")
    if proxy_secret:  # the reverse proxy's requests and the OAuth callback
        routes = serving.app.routes
        # wake on visit (bot/visit.py)
        routes[("GET", VISIT_PATH)] = Visits(
            runtime.store, runtime.core, proxy_secret, notifier.permalink
        )
        # protected previews (bot/access.py): the proxy asks; Slack messages carry the links
        gate = Gate(runtime.settings, runtime.store, proxy_secret, notifier.permalink)
        routes.update(gate.routes())
        notifier.secret_link = Links(runtime.settings, runtime.store, proxy_secret).link
        # one OAuth callback for every preview (bot/broker.py)
        routes[("GET", urlsplit(runtime.settings.oauth_callback).path or "/")] = Broker(
            runtime.store, proxy_secret
        )
    return serving


def _wire_github(
    serving: Serving, runtime: Runtime, secrets: Secrets, slack: SlackNotifier
) -> None:
    """``/github/webhook`` when GITHUB_WEBHOOK_SECRET is set; PR comments and deployments when
    GitHub credentials are."""
    if runtime.forge is not None:
        github = GitHubNotifier(runtime.forge, runtime.store, runtime.settings, slack.permalink)
        github.subscribe(runtime.bus)
        serving.github = github
    secret = secrets.get("GITHUB_WEBHOOK_SECRET")
    if not secret:
        log.info("github webhooks off: GITHUB_WEBHOOK_SECRET is not set")
        return
    events = GitHubEvents(runtime.settings, runtime.store, runtime.core, runtime.forge)
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
    worker: WorkerProcess | None = None,
) -> None:
    """Run until ``stop`` is set, then drain running operations. With ``worker`` the
    operations run in that child process (bot/workerproc.py), not in this one."""
    serving = build_serving(runtime, secrets, os.environ.get("REVIEEE_SLACK_API_URL"), socket_mode)
    # A request thread waiting for the GIL behind busy workers waits a whole switch interval
    # (5 ms by default) each time; answers come first here, so switch more often.
    sys.setswitchinterval(SWITCH_INTERVAL)
    http = HttpServer(serving.app, host, port)
    if worker is None:
        runtime.runner.start()
    else:
        serving.app.worker = worker
        runtime.bus.subscribe(Requested, lambda _event: worker.wake())
        worker.start()
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
    if worker is not None:
        worker.stop()  # it drains what it runs
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

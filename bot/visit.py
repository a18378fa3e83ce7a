"""Wake on visit: what a visitor of an environment that does not answer sees, and the wake it
asks for.

The reverse proxy in front of the environments (deploy/cloudformation.yml, or ``revieee
proxy-config``) sends a request whose environment answered 502, 503 or 504 (no task
registered in Cloud Map: asleep, stopped, starting) to ``GET /_revieee/visit`` with the
environment's name in ``X-Revieee-Env`` and the shared secret ``REVIEEE_PROXY_SECRET`` in
``X-Revieee-Proxy-Secret`` (compared in constant time; without the secret the endpoint does
not exist). The answer is a small HTML page:

- asleep: it asks for a wake (once: a visit while a wake, or any other operation, is queued or
  under way asks for nothing more), says who owns the environment and how long a start
  usually takes, and refreshes itself every few seconds, so it turns into the app once it
  answers;
- queued, deploying, or running but not answering yet: "starting", refreshing itself;
- stopped or failed: says so and links to its Slack message, without refreshing;
- unknown: "no such review environment".

Every name and value on the page is HTML-escaped."""

from __future__ import annotations

import hmac
import html
import logging
import statistics
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from bot.core import Core, RequestError
from bot.events import EnvStatus
from bot.pages import ENV_HEADER, ENV_RE, SECRET_HEADER, StartResponse, page
from bot.store import Store
from bot.text import span

log = logging.getLogger("revieee.visit")

PATH = "/_revieee/visit"
SOURCE = "visit"


class Visits:
    """The ``/_revieee/visit`` endpoint (a WSGI callable)."""

    def __init__(
        self,
        store: Store,
        core: Core,
        secret: str,
        permalink: Callable[[str], str | None] = lambda _env: None,
    ) -> None:
        self.store = store
        self.core = core
        self.secret = secret
        self.permalink = permalink
        self._lock = threading.Lock()  # two visits at once ask for one wake

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        given = environ.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.secret.encode()):
            return page(start_response, "401 Unauthorized", "Not for you", "<p>Unauthorized.</p>")
        env = environ.get(ENV_HEADER, "")
        if not ENV_RE.fullmatch(env):
            return page(start_response, "400 Bad Request", "Bad request", "<p>No environment.</p>")
        return self.visit(env, start_response)

    def visit(self, env: str, start_response: StartResponse) -> Iterable[bytes]:
        row = self.store.get_env(env)
        name = html.escape(env)
        if row is None:
            return page(
                start_response,
                "404 Not Found",
                "No such review environment",
                f"<p>There is no review environment <code>{name}</code>.</p>",
            )
        status = row["status"]
        owner = html.escape(str(row.get("owner") or "someone"))
        branch = html.escape(str(row.get("branch") or ""))
        about = f"<p>{name} runs <code>{branch}</code> for {owner}.</p>"
        if status == EnvStatus.SLEEPING:
            asked = self._wake(row)
            took = self._usual_start(env)
            said = "It was asleep; it is waking up" if asked else "It is waking up"
            return page(
                start_response,
                "503 Service Unavailable",
                f"Waking up {env}",
                f"<p>{said} (it sleeps outside working hours). A start usually takes "
                f"{html.escape(took)}; this page turns into the app when it is ready.</p>{about}",
                refresh=True,
            )
        if status in (EnvStatus.QUEUED, EnvStatus.DEPLOYING, EnvStatus.RUNNING):
            return page(
                start_response,
                "503 Service Unavailable",
                f"Starting {env}",
                f"<p>It is starting; this page turns into the app when it is ready.</p>{about}",
                refresh=True,
            )
        link = self.permalink(env)
        where = (
            f' <a href="{html.escape(link, quote=True)}">Its Slack message</a> says more.'
            if link
            else ""
        )
        if status in (EnvStatus.STOPPED, EnvStatus.STOPPING):
            return page(
                start_response,
                "410 Gone",
                f"{env} is stopped",
                f"<p>This review environment is stopped: deploy it again with "
                f"<code>/revieee deploy {branch}</code>.{where}</p>{about}",
            )
        return page(
            start_response,
            "503 Service Unavailable",
            f"{env} is not running",
            f"<p>Its last deploy failed.{where}</p>{about}",
        )

    def _wake(self, row: dict[str, Any]) -> bool:
        """Ask for a wake unless something is queued or under way for it; True if asked."""
        with self._lock:
            if row["name"] in self.store.busy_envs():
                return False
            try:
                self.core.intake.request_scale(row["name"], "wake", source=SOURCE)
            except RequestError as exc:  # it changed meanwhile (woken, stopped)
                log.info("visit wake not asked env=%s: %s", row["name"], exc)
                return False
            self.core.intake.touch(row)  # a visit is activity: it is not forgotten
            log.info("woken by a visit env=%s", row["name"])
            return True

    def _usual_start(self, env: str) -> str:
        """The median time its past deploys took to Ready, or "about a minute"."""
        took = [
            (datetime.fromisoformat(d["finished_at"]) - datetime.fromisoformat(d["started_at"]))
            for d in self.store.deployments(env, 10)
            if d.get("result") == "succeeded" and d.get("finished_at") and d.get("started_at")
        ]
        if not took:
            return "about a minute"
        return f"about {span(round(statistics.median(t.total_seconds() for t in took)))}"

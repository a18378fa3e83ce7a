"""The deploy message: one channel message per environment, edited in place through the phases,
with step details in its thread.

The notifier listens to the core's progress reports and talks to Slack on a thread of its own, in
order, so a slow or failing Slack never slows down or fails an operation. Slack errors are
logged and recorded as audit events; ``not_in_channel`` and ``channel_not_found`` are also told
to the person who typed the command (through the command's response URL, which works without
channel membership). Rate limits (429 + ``Retry-After``) are retried by the client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from bot.config import Settings
from bot.phases import DeployView, phase_of, view_of
from bot.serial import SerialWorker
from bot.slack.blocks import deploy_message, who
from bot.store import Operation, Store

log = logging.getLogger("revieee.slack")

MESSAGE_KIND = "deploy"
PHASES_SHOWN = ("queued", "deploying", "ready", "failed", "stopping", "stopped")
MAX_REPLY = 3500  # Slack advises keeping a message's text under 4,000 characters
CHANNEL_ERRORS = ("not_in_channel", "channel_not_found", "is_archived")


class SlackNotifier:
    """Posts and edits deploy messages; register :meth:`on_step` as a core listener."""

    def __init__(
        self,
        client: WebClient,
        store: Store,
        settings: Settings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client = client
        self.store = store
        self.settings = settings
        self.clock = clock
        self._last_phase: dict[str, str] = {}
        self._pending: dict[str, list[str]] = {}  # thread lines not yet posted, by environment
        self._links: dict[str, str] = {}  # permalinks of deploy messages, by channel/ts
        self._worker = SerialWorker("revieee-slack", idle=lambda: not self._pending)
        self._submit = self._worker.submit

    def permalink(self, env: str) -> str | None:
        """A link to the environment's deploy message (its thread), for GitHub; None if none."""
        ref = self.store.get_message(env, MESSAGE_KIND)
        if ref is None:
            return None
        key = f"{ref['channel']}/{ref['ts']}"
        if key not in self._links:
            try:
                resp = self.client.chat_getPermalink(channel=ref["channel"], message_ts=ref["ts"])
                self._links[key] = str(resp["permalink"])
            except (SlackApiError, KeyError) as exc:
                log.warning("chat.getPermalink failed env=%s: %s", env, exc)
                return None
        return self._links[key]

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every queued notification has been sent (tests, shutdown)."""
        self._worker.flush(timeout)

    def close(self) -> None:
        self._worker.close()

    # -- entry points --------------------------------------------------------------------------

    def on_requested(self, op: Operation) -> None:
        """A deploy or stop was accepted: post (or update) the message at once."""
        self._submit(self._requested, op)

    def refresh(self, env: str) -> None:
        """Re-render the environment's message in its current state (e.g. a new expiry)."""
        self._submit(self._refresh, env)

    def on_step(self, op: Operation, step: str, message: str) -> None:
        """Core listener: each step goes into the thread; a phase change edits the message."""
        self._submit(self._step, op, step, message)

    # -- the work (on the notifier's thread) --------------------------------------------------

    def _channel_for(self, op: Operation) -> str | None:
        app = self.settings.apps.get(op.app)
        return (
            (app.channel if app else None)
            or op.params.get("channel")
            or self.settings.default_channel
        )

    def _requested(self, op: Operation) -> None:
        phase = "queued" if op.kind == "deploy" else "stopping"
        ref = self.store.get_message(op.env, MESSAGE_KIND)
        self._render(op, phase)
        ref_after = self.store.get_message(op.env, MESSAGE_KIND)
        if ref is not None and ref_after is not None:
            verb = "redeploy" if op.kind == "deploy" else "stop"
            sha = f" of `{op.params['sha'][:7]}`" if op.params.get("sha") else ""
            self._thread_reply(op, f"{verb}{sha} requested by {who(op.requested_by)}")

    def _refresh(self, env: str) -> None:
        row = self.store.get_env(env)
        ops = self.store.operations(env=env)
        if row is None or not ops:
            return
        phase = {"running": "ready", "queued": "queued"}.get(row["status"], row["status"])
        if phase in PHASES_SHOWN:
            self._render(ops[-1], phase)

    def _step(self, op: Operation, step: str, message: str) -> None:
        # Steps that arrive while earlier notifications are still being sent share one thread
        # reply: idle, every step is posted at once; under load (many deploys, a rate-limited
        # Slack) the thread gets fewer, longer replies instead of a backlog.
        pending = self._pending.setdefault(op.env, [])
        if not pending:
            self._submit(self._flush_thread, op)
        pending.append(f"*{step}*: {message}")
        phase = phase_of(op, step)
        if phase != self._last_phase.get(op.env) or phase in ("ready", "failed", "stopped"):
            self._render(op, phase)

    def _flush_thread(self, op: Operation) -> None:
        lines = self._pending.pop(op.env, [])
        chunk: list[str] = []
        for line in lines:
            line = line if len(line) <= MAX_REPLY else line[: MAX_REPLY - 1] + "…"
            if chunk and sum(len(x) + 1 for x in chunk) + len(line) > MAX_REPLY:
                self._thread_reply(op, "\n".join(chunk))
                chunk = []
            chunk.append(line)
        if chunk:
            self._thread_reply(op, "\n".join(chunk))

    def _view(self, op: Operation, phase: str) -> DeployView:
        return view_of(self.store, self.settings, op, phase, self.clock())

    def _render(self, op: Operation, phase: str) -> None:
        self._last_phase[op.env] = phase
        text, blocks = deploy_message(
            self._view(op, phase), self.clock(), self.settings.stop_reactions[0]
        )
        ref = self.store.get_message(op.env, MESSAGE_KIND)
        try:
            if ref is not None:
                self.client.chat_update(
                    channel=ref["channel"], ts=ref["ts"], text=text, blocks=blocks
                )
                return
            channel = self._channel_for(op)
            if channel is None:
                return
            resp = self.client.chat_postMessage(
                channel=channel, text=text, blocks=blocks, unfurl_links=False
            )
            self.store.set_message(op.env, MESSAGE_KIND, str(resp["channel"]), str(resp["ts"]))
        except SlackApiError as exc:
            self._failed(op, exc)

    def _thread_reply(self, op: Operation, text: str) -> None:
        ref = self.store.get_message(op.env, MESSAGE_KIND)
        if ref is None:
            return
        try:
            self.client.chat_postMessage(
                channel=ref["channel"], thread_ts=ref["ts"], text=text, unfurl_links=False
            )
        except SlackApiError as exc:
            self._failed(op, exc)

    def _failed(self, op: Operation, exc: SlackApiError) -> None:
        error = str(exc.response.get("error", "")) if exc.response else str(exc)
        log.warning("slack call failed op=%s env=%s error=%s", op.id, op.env, error)
        self.store.audit("slack error", None, op.env, "slack", operation=op.id, error=error)
        if error in CHANNEL_ERRORS and op.params.get("response_url"):
            channel = self._channel_for(op)
            self._respond(
                op.params["response_url"],
                f":warning: I cannot post in <#{channel}> ({error}): invite me with "
                f"`/invite @revieee`. The {op.kind} of `{op.env}` goes on regardless "
                f"(operation {op.id}).",
            )

    def _respond(self, response_url: str, text: str) -> None:
        try:
            WebhookClient(response_url, timeout=10).send(
                text=text, response_type="ephemeral", replace_original=False
            )
        except Exception as exc:  # a report about a failure must not fail in turn
            log.warning("response_url failed: %s", exc)

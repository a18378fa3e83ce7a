"""The deploy message: one channel message per environment, edited in place through the phases,
with step details in its thread.

The notifier listens to the core's progress reports and talks to Slack on a thread of its own, in
order, so a slow or failing Slack never slows down or fails an operation. Slack errors are
logged and recorded as audit events; ``not_in_channel`` and ``channel_not_found`` are also told
to the person who typed the command (through the command's response URL, which works without
channel membership). Rate limits (429 + ``Retry-After``) are retried by the client.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.webhook import WebhookClient

from bot.config import Settings
from bot.container_logs import ContainerLogs, logs_summary
from bot.events import ENDED, BatchUpdate, Bus, Finished, LogLines, Phase, Requested, Step
from bot.logtail import LogEvent
from bot.phases import DeployView, view_of
from bot.serial import SerialWorker
from bot.slack.batch import UNDER_WAY, batch_message, items_of, outcome
from bot.slack.blocks import deploy_message, who
from bot.slack.mrkdwn import code, code_block, link, text, verbatim
from bot.store import Operation, Store

log = logging.getLogger("revieee.slack")

MESSAGE_KIND = "deploy"
# what the message shows again when asked to (refresh); the others are on the way to these
PHASES_SHOWN = (
    Phase.QUEUED,
    Phase.DEPLOYING,
    Phase.READY,
    Phase.FAILED,
    Phase.STOPPING,
    Phase.STOPPED,
    Phase.SLEEPING,
)
REQUESTED_VERB = {"deploy": "redeploy", "stop": "stop", "sleep": "sleep", "wake": "wake"}
MAX_REPLY = 3500  # Slack advises keeping a message's text under 4,000 characters
CHANNEL_ERRORS = ("not_in_channel", "channel_not_found", "is_archived")
RERENDER_PHASES = (Phase.BUILDING, Phase.WAITING)  # each step's progress shows in the message
MAX_FILE_BYTES = 32 * 1024 * 1024  # of one log kept for its file (Slack takes up to 1 GB)
# files.getUploadURLExternal: snippets are limited to 1 MB (``snippet_too_large``); a larger
# log goes up as a plain text file.
MAX_SNIPPET_BYTES = 1024 * 1024
TAIL_SHOWN = 30  # lines of a failed log repeated in its summary
BATCH_EVERY = 15.0  # seconds between two edits of a batch's summary while it is under way


@dataclass
class _Log:
    """One log being followed in a thread: what was shown live, and all of it for the file."""

    shown: int = 0
    overflowed: bool = False
    lines: list[str] = field(default_factory=list)
    size: int = 0
    total: int = 0


@dataclass
class _Thread:
    """What waits to be posted in one environment's thread, and when it last got a post."""

    items: list[tuple[str, object]] = field(default_factory=list)  # ("text"|"code"|"end", ...)
    scheduled: bool = False
    logs: dict[str, _Log] = field(default_factory=dict)


class SlackNotifier:
    """Posts and edits deploy messages; :meth:`subscribe` it to the bus."""

    def __init__(
        self,
        client: WebClient,
        store: Store,
        settings: Settings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.store = store
        self.settings = settings
        self.clock = clock
        self.monotonic = monotonic
        self.interval = settings.log_post_interval
        self._last_phase: dict[str, Phase] = {}
        self._joined: set[str] = set()  # channels joined by this process (see join())
        self._threads: dict[str, _Thread] = {}  # what waits to be posted, by environment
        self._last_post: dict[str, float] = {}  # when each environment's thread got a post
        self._links: dict[str, str] = {}  # permalinks of deploy messages, by channel/ts
        self._batch_said: dict[int, float] = {}  # when each batch's summary was last edited
        self._batch_later: set[int] = set()  # batches with an edit scheduled
        # a token app's environment: its URL with its token (bot/access.py Links.link)
        self.secret_link: Callable[[str, str], str | None] = lambda _env, _url: None
        self._worker = SerialWorker("revieee-slack", idle=self._idle)
        self._submit = self._worker.submit

    def _idle(self) -> bool:
        return not any(t.items or t.scheduled for t in self._threads.values())

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

    def subscribe(self, bus: Bus) -> None:
        """Every accepted request gets its message at once, whichever front door it came
        through; each step goes into its thread, a phase change edits the message."""
        bus.subscribe(Requested, self.on_requested)
        bus.subscribe(Step, self.on_step)
        bus.subscribe(LogLines, self.on_log)
        bus.subscribe(BatchUpdate, self.on_batch)

    def on_batch(self, event: BatchUpdate) -> None:
        """A scheduled sleep or wake started or moved on: its summaries (one per channel)."""
        self._submit(self._batch, event.batch)

    def on_requested(self, event: Requested) -> None:
        """A deploy or stop was accepted: post (or update) the message at once."""
        self._submit(self._requested, event.op)

    def refresh(self, env: str) -> None:
        """Re-render the environment's message in its current state (e.g. a new expiry)."""
        self._submit(self._refresh, env)

    def on_step(self, event: Step) -> None:
        """Each step goes into the thread; a phase change edits the message."""
        self._submit(self._step, event)

    def on_log(self, event: LogLines) -> None:
        """A build's log (or the ECS events) into the thread, batched."""
        self._submit(self._log, event.op, event.event)

    def post_logs(
        self, result: ContainerLogs, asked_by: str | None, fallback_channel: str | None, plain: str
    ) -> str | None:
        """Post a ``logs`` answer where the environment is discussed: the thread of its deploy
        message, else ``fallback_channel`` (the command's). Short output is a message with a
        code block, long output a file. Returns what to tell the asker instead (mrkdwn) when
        it could not be posted (with no channel at all: the answer, ``plain``), else None."""
        ref = self.store.get_message(result.env, MESSAGE_KIND)
        channel = ref["channel"] if ref else fallback_channel
        thread = {"thread_ts": ref["ts"]} if ref else {}
        if not channel:
            return code_block(plain)
        head = f":scroll: {text(logs_summary(result), 1000)}, asked by <@{asked_by}>"
        extras = [f"_{text(note, 1000)}_" for note in result.notes] + [
            link(url, f"log group {group} in the AWS console")
            for group, url in result.links.items()
        ]
        lines = code_block("\n".join(result.lines))
        message = "\n".join([head, lines, *extras] if result.lines else [head, *extras])
        try:
            if len(message) <= MAX_REPLY:
                self.client.chat_postMessage(
                    channel=channel, text=message, unfurl_links=False, **thread
                )
            else:
                join(
                    self.client, channel, self._joined
                )  # a file is shared only where the bot is a member
                self.client.files_upload_v2(
                    channel=channel,
                    content="\n".join(result.lines) + "\n",
                    filename=f"{result.env}-logs.txt",
                    title=f"{result.env}: last {len(result.lines)} log lines",
                    snippet_type=snippet_type("\n".join(result.lines) + "\n"),
                    initial_comment="\n".join([head, *extras]),
                    **thread,
                )
        except SlackApiError as exc:
            error = str(exc.response.get("error", "")) if exc.response else str(exc)
            log.warning("posting logs failed env=%s error=%s", result.env, error)
            self.store.audit("slack error", None, result.env, "slack", verb="logs", error=error)
            if error in CHANNEL_ERRORS:
                said = (
                    f":warning: I cannot post the logs of {code(result.env)} in <#{channel}> "
                    f"({text(error, 200)}): "
                    "invite me with `/invite @revieee`, then ask again."
                )
            else:
                why = text(error, 200)
                said = f":warning: could not post the logs of {code(result.env)}: {why}"
            return said
        return None

    # -- the work (on the notifier's thread) --------------------------------------------------

    def _channel_for(self, op: Operation) -> str | None:
        app = self.settings.apps.get(op.app)
        return (
            (app.channel if app else None)
            or op.params.get("channel")
            or self.settings.default_channel
        )

    def _requested(self, op: Operation) -> None:
        if op.batch is not None:
            return  # the batch's summary says it; the message changes when it is done
        ref = self.store.get_message(op.env, MESSAGE_KIND)
        self._render(op, Phase.requested(op.kind))
        ref_after = self.store.get_message(op.env, MESSAGE_KIND)
        if ref_after is None:
            return
        if op.params.get("reason"):
            self._thread_reply(
                op, f":alarm_clock: revieee stops it: {text(op.params['reason'], 1000)}"
            )
        elif ref is not None and (op.requested_by or op.kind not in ("sleep", "wake")):
            # (the nightly sleep and the morning wake edit the message, without a reply)
            verb = REQUESTED_VERB.get(op.kind, op.kind)
            sha = f" of {code(op.params['sha'][:7])}" if op.params.get("sha") else ""
            self._thread_reply(op, f"{verb}{sha} requested by {who(op.requested_by)}")

    def _refresh(self, env: str) -> None:
        row = self.store.get_env(env)
        ops = self.store.operations(env=env)
        if row is None or not ops:
            return
        phase = Phase.of_status(row["status"])
        if phase in PHASES_SHOWN:
            self._render(ops[-1], phase)

    def _step(self, event: Step) -> None:
        op, phase = event.op, event.phase
        scheduled = op.kind in ("sleep", "wake") and not op.requested_by
        if not scheduled or phase == Phase.FAILED:  # the nightly sleep only edits the message
            self._queue(op, "text", step_reply(event.step, event.message))
        if op.batch is not None:  # one edit per environment of a batch: when it is done
            if isinstance(event, Finished):
                self._render(op, phase, post=False)
            return
        if phase != self._last_phase.get(op.env) or phase in ENDED or phase in RERENDER_PHASES:
            self._render(op, phase)

    def _batch(self, batch_id: int, due: bool = False) -> None:
        """Post or edit the batch's summary in each channel: at once when it starts, at most
        every ``BATCH_EVERY`` seconds while it goes on (``due``: the edit scheduled for it),
        and once more when every operation of it has ended (the final word, said once across
        processes)."""
        if due:
            self._batch_later.discard(batch_id)
        batch = self.store.get_batch(batch_id)
        if batch is None or batch["finished_at"]:
            return
        kind = batch["kind"]
        rows = self.store.batch_operations(batch_id)
        if not rows:  # every one of its environments changed before it was asked
            self.store.finish_batch(batch_id)
            return
        ended = all(outcome(kind, r) != UNDER_WAY for r in rows)
        now = self.monotonic()
        last = self._batch_said.get(batch_id)
        if not ended and last is not None and now < last + BATCH_EVERY:
            if batch_id in self._batch_later:
                return  # an edit is already due: it will show this too
            timer = threading.Timer(
                last + BATCH_EVERY - now, self._submit, (self._batch, batch_id, True)
            )
            timer.daemon = True
            self._batch_later.add(batch_id)
            timer.start()
            return
        if ended and not self.store.finish_batch(batch_id):
            return
        self._batch_said[batch_id] = now
        by_channel: dict[str, list[dict[str, object]]] = {}
        for row in rows:
            channel = self._channel_of_env(row)
            if channel is not None:
                by_channel.setdefault(channel, []).append(row)
        started = datetime.fromisoformat(batch["started_at"])
        for key, of_channel in sorted(by_channel.items()):
            fallback, blocks = batch_message(
                kind, items_of(kind, of_channel), started, self.clock(), ended
            )
            posted = batch["messages"].get(key)
            try:
                if posted:
                    self.client.chat_update(
                        channel=posted[0], ts=posted[1], text=fallback, blocks=blocks
                    )
                    continue
                resp = self.client.chat_postMessage(
                    channel=key, text=fallback, blocks=blocks, unfurl_links=False
                )
                self.store.set_batch_message(batch_id, key, str(resp["channel"]), str(resp["ts"]))
            except SlackApiError as exc:
                error = str(exc.response.get("error", "")) if exc.response else str(exc)
                log.warning("batch summary failed batch=%s channel=%s: %s", batch_id, key, error)
                self.store.audit("slack error", None, None, "scheduler", what="batch", error=error)
        if ended:
            self._batch_said.pop(batch_id, None)

    def _channel_of_env(self, row: dict[str, object]) -> str | None:
        """Where an environment's news go: its deploy message's channel, else its app's."""
        ref = self.store.get_message(str(row["env"]), MESSAGE_KIND)
        if ref is not None:
            return str(ref["channel"])
        app = self.settings.apps.get(str(row["app"]))
        return (app.channel if app else None) or self.settings.default_channel

    def _log(self, op: Operation, event: LogEvent) -> None:
        if op.batch is not None:
            return  # the morning's ECS events of 200 environments are nobody's reading
        thread = self._threads.setdefault(op.env, _Thread())
        log_ = thread.logs.setdefault(event.stream, _Log())
        if event.note:
            self._queue(op, "text", f"_{text(event.stream, 200)}: {text(event.note, 1000)}_")
        if event.lines:
            log_.total += len(event.lines)
            for line in event.lines:
                if log_.size + len(line) + 1 > MAX_FILE_BYTES:
                    break
                log_.lines.append(line)
                log_.size += len(line) + 1
            budget = self.settings.build_log_lines - log_.shown
            shown = event.lines[: max(budget, 0)]
            log_.shown += len(shown)
            for line in shown:
                self._queue(op, "code", line)
            if len(shown) < len(event.lines) and not log_.overflowed:
                log_.overflowed = True
                self._queue(
                    op,
                    "text",
                    f"_{text(event.stream, 200)}: the log is long; what follows goes into a file "
                    "posted here when it ends_",
                )
        if event.done:
            self._queue(op, "end", (event, thread.logs.pop(event.stream)))

    # -- the thread: one post at a time, at most one per ``log_post_interval`` ----------------

    def _queue(self, op: Operation, kind: str, item: object) -> None:
        thread = self._threads.setdefault(op.env, _Thread())
        thread.items.append((kind, item))
        if not thread.scheduled:
            thread.scheduled = True
            last = self._last_post.get(op.env, float("-inf"))
            delay = last + self.interval - self.monotonic()
            if delay <= 0:
                self._submit(self._flush_thread, op)
            else:
                timer = threading.Timer(delay, self._submit, (self._flush_thread, op))
                timer.daemon = True
                timer.start()

    def _flush_thread(self, op: Operation) -> None:
        """Post what waits in the thread as one reply (text lines as they are, log lines in a
        code block), or one log's end; what does not fit waits for the next turn."""
        thread = self._threads.get(op.env)
        if thread is None:
            return
        thread.scheduled = False
        if not thread.items:
            return
        try:
            if thread.items[0][0] == "end":
                _, payload = thread.items.pop(0)
                assert isinstance(payload, tuple)
                ended: LogEvent = payload[0]
                kept: _Log = payload[1]
                self._log_ended(op, ended, kept)
            else:
                text = _pack(thread.items)
                self._thread_reply(op, text)
        finally:  # whatever happened to this post, the rest of the thread still gets its turn
            self._reschedule(op, thread)

    def _reschedule(self, op: Operation, thread: _Thread) -> None:
        self._last_post[op.env] = self.monotonic()
        if thread.items:
            thread.scheduled = True
            delay = self.interval
            timer = threading.Timer(delay, self._submit, (self._flush_thread, op))
            timer.daemon = True
            timer.start()
        elif not thread.logs:
            del self._threads[op.env]

    def _log_ended(self, op: Operation, event: LogEvent, log_: _Log) -> None:
        """The end of one log: its file when it was too long for the thread, then how it ended
        (for a failure: the summary, the last lines and the link to the whole log)."""
        ref = self.store.get_message(op.env, MESSAGE_KIND)
        if ref is None:
            return
        parts: list[str] = []
        if event.failed:
            parts.append(f":x: {text(event.summary or event.stream + ' failed', 1000)}")
            tail = list(event.tail)[-TAIL_SHOWN:]
            if tail:
                parts.append(f"Last {len(tail)} lines:\n" + _code(tail, MAX_REPLY - 400))
        elif event.summary:
            parts.append(f":white_check_mark: {text(event.summary, 1000)}")
        if event.link:
            parts.append(link(event.link, "Full log in the AWS console"))
        if log_.overflowed:
            name = event.stream.replace(" ", "-")
            content = "\n".join(log_.lines) + "\n"
            if log_.total > len(log_.lines):
                content += f"... {log_.total - len(log_.lines)} more lines not kept\n"
            try:
                self.client.files_upload_v2(
                    channel=ref["channel"],
                    thread_ts=ref["ts"],
                    content=content,
                    filename=f"{op.env}-{name}.log",
                    title=f"{event.stream} of {op.env} ({log_.total} lines)",
                    snippet_type=snippet_type(content),
                    initial_comment="\n".join(parts) or f"{text(event.stream, 200)}: the whole log",
                )
                return
            except (SlackClientError, OSError) as exc:  # the summary still gets posted
                self._failed(op, exc)
        if parts:
            self._thread_reply(op, "\n".join(parts))

    def _view(self, op: Operation, phase: Phase) -> DeployView:
        view = view_of(self.store, self.settings, op, phase, self.clock())
        link = self.secret_link(view.env, view.url) if view.access == "token" else None
        return dataclasses.replace(view, url=link) if link else view

    def _render(self, op: Operation, phase: Phase, post: bool = True) -> None:
        """Edit the environment's message to show ``phase`` (or, with ``post``, post it)."""
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
            if channel is None or not post:
                return
            resp = self.client.chat_postMessage(
                channel=channel, text=text, blocks=blocks, unfurl_links=False
            )
            self.store.set_message(op.env, MESSAGE_KIND, str(resp["channel"]), str(resp["ts"]))
            join(self.client, str(resp["channel"]), self._joined)
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

    def _failed(self, op: Operation, exc: Exception) -> None:
        if isinstance(exc, SlackApiError) and exc.response:
            error = str(exc.response.get("error", ""))
        else:
            error = f"{type(exc).__name__}: {exc}"
        log.warning("slack call failed op=%s env=%s error=%s", op.id, op.env, error)
        self.store.audit("slack error", None, op.env, "slack", operation=op.id, error=error)
        if error in CHANNEL_ERRORS and op.params.get("response_url"):
            channel = self._channel_for(op)
            self._respond(
                op.params["response_url"],
                f":warning: I cannot post in <#{channel}> ({error}): invite me with "
                f"`/invite @revieee`. The {op.kind} of {code(op.env)} goes on regardless "
                f"(operation {op.id}).",
            )

    def _respond(self, response_url: str, text: str) -> None:
        try:
            WebhookClient(response_url, timeout=10).send(
                text=text, response_type="ephemeral", replace_original=False
            )
        except Exception as exc:  # a report about a failure must not fail in turn
            log.warning("response_url failed: %s", exc)


def snippet_type(content: str) -> str | None:
    """``text`` for a file Slack can show as a snippet, None (a plain file) past 1 MB."""
    return "text" if len(content.encode()) <= MAX_SNIPPET_BYTES else None


def join(client: WebClient, channel: str, joined: set[str] | None = None) -> None:
    """Make the bot a member of a public ``channel`` it posts in (``conversations.join``,
    scope ``channels:join``): ``chat:write.public`` lets it post there without joining, but
    Slack sends reactions only from channels the bot is in, and shares files only there.
    A private channel or a direct message cannot be joined: the bot must be invited, and
    Slack says so when a post is refused (``not_in_channel``). Once per channel and process."""
    if joined is not None and channel in joined:
        return
    if not channel.startswith("C"):
        return  # G... (private), D... (direct message): nothing to join
    try:
        client.conversations_join(channel=channel)
    except SlackApiError as exc:
        error = exc.response.get("error") if exc.response else str(exc)
        log.info("could not join channel=%s error=%s", channel, error)
    if joined is not None:
        joined.add(channel)


def step_reply(step: str, message: str) -> str:
    """The thread reply of one step: the engine's words are plain text, shown as such."""
    return f"*{text(step, 100)}*: {text(message, MAX_REPLY - 120, newlines=True)}"


def _code(lines: list[str], limit: int = MAX_REPLY) -> str:
    """Lines in a code block, the newest kept when they do not all fit in ``limit``."""
    kept: list[str] = []
    size = 8
    for line in reversed(lines):
        line = verbatim(line)
        if size + len(line) + 1 > limit:
            break
        kept.append(line)
        size += len(line) + 1
    kept.reverse()
    return "```\n" + "\n".join(kept) + "\n```"


def _pack(items: list[tuple[str, object]]) -> str:
    """Take from the front of ``items`` what fits in one reply (at least one item), rendered:
    text lines as they are, runs of log lines in code blocks."""
    out: list[str] = []
    size = 0
    run: list[str] = []

    def close_run() -> None:
        nonlocal run
        if run:
            out.append("```\n" + "\n".join(run) + "\n```")
            run = []

    while items and items[0][0] != "end":
        kind, item = items[0]
        line = verbatim(str(item)) if kind == "code" else str(item)
        if len(line) > MAX_REPLY - 10:
            line = line[: MAX_REPLY - 11] + "…"
        cost = len(line) + 1 + (8 if kind == "code" and not run else 0)
        if (out or run) and size + cost > MAX_REPLY:
            break
        if kind == "code":
            run.append(line)
        else:
            close_run()
            out.append(line)
        size += cost
        items.pop(0)
    close_run()
    return "\n".join(out)

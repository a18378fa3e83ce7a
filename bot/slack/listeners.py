"""Thin Bolt listeners: parse, check who may, persist through the core, ack, hand over.

Listeners run in the request's thread (Bolt's ``process_before_response``): a slash command is
parsed, checked and persisted (SQLite only) before its ack; buttons, reactions and the Home tab
ack at once and do the rest on ``later`` (a small pool), since they answer through Slack's Web
API.

Every slash command is answered within Slack's 3 seconds whatever AWS is doing: the request is
only persisted (SQLite) before the ack, and the work runs on the operation pool. Events are
de-duplicated on ``event_id`` (Slack retries, ``X-Slack-Retry-Num``).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slack_bolt import App, BoltResponse
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.authz import Authorizer
from bot.container_logs import ContainerLogs
from bot.review import RequestError, ReviewApps
from bot.slack.blocks import (
    ACTION_DELETE_ORPHAN,
    ACTION_KEEP,
    ACTION_OPEN,
    ACTION_REDEPLOY,
    ACTION_STOP,
    ACTION_WAKE,
    escape,
    home_view,
    list_blocks,
    verbatim,
)
from bot.slack.notifier import CHANNEL_ERRORS, MAX_REPLY, MESSAGE_KIND, SlackNotifier
from bot.store import Store
from commands.parser import UsageError, parse
from commands.run import Caller, Reply, logs_summary, run
from commands.verbs import Command, Deploy, Keep, List, Logs, Stop, Wake

log = logging.getLogger("revieee.slack")

SOURCE = "slack"


@dataclass
class SlackContext:
    apps: ReviewApps
    store: Store
    authz: Authorizer
    notifier: SlackNotifier
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    later: Callable[..., Any] = lambda fn, *args: fn(*args)  # the background pool in production
    sweeper: Any = None  # bot.sweeper.Sweeper: the admin channel's Delete buttons


def register(app: App, ctx: SlackContext) -> None:
    """Register every listener revieee has on the Bolt app."""
    app.middleware(_dedupe(ctx.store))
    app.command("/revieee")(_command(ctx))
    app.action(re.compile(f"^({ACTION_REDEPLOY}|{ACTION_STOP}|{ACTION_KEEP}|{ACTION_WAKE})$"))(
        _acked_later(ctx, _clicked)
    )
    app.action(ACTION_DELETE_ORPHAN)(_acked_later(ctx, _delete_clicked))
    app.action(ACTION_OPEN)(lambda ack: ack())
    app.event("reaction_added")(_reaction(ctx))
    app.event("app_home_opened")(_home(ctx))


def _dedupe(store: Store) -> Callable[..., Any]:
    # Bolt passes arguments by name: the middleware's continuation is called "next".
    def dedupe(body: dict[str, Any], next: Callable[[], Any]) -> Any:
        event_id = body.get("event_id")
        duplicate = body.get("type") == "event_callback" and event_id is not None
        if duplicate and not store.first_delivery(SOURCE, str(event_id)):
            log.info("duplicate slack event ignored event_id=%s", event_id)
            return BoltResponse(status=200, body="")
        return next()

    return dedupe


def _caller(ctx: SlackContext, user: str, channel: str | None, response_url: str | None) -> Caller:
    context = {k: v for k, v in (("channel", channel), ("response_url", response_url)) if v}
    return Caller(user, SOURCE, ctx.authz, context, fast=True)


def _command(ctx: SlackContext) -> Callable[..., None]:
    def command(
        ack: Callable[..., None],
        body: dict[str, Any],
        client: WebClient,
        respond: Callable[..., Any],
    ) -> None:
        try:
            cmd = parse(body.get("text") or "")
        except UsageError as exc:
            ack(response_type="ephemeral", text=f"```{exc}```")
            return
        caller = _caller(ctx, body["user_id"], body.get("channel_id"), body.get("response_url"))
        reply = run(cmd, ctx.apps, caller)
        if isinstance(cmd, List) and reply.ok:
            text, blocks = list_blocks(reply.data["rows"], ctx.clock())
            ack(response_type="ephemeral", text=text, blocks=blocks)
            return
        if isinstance(cmd, Logs) and reply.data.get("pending"):
            env = reply.data["env"]
            ref = ctx.store.get_message(env, MESSAGE_KIND)
            where = (
                f"they will be posted in the thread of its deploy message in <#{ref['channel']}>"
                if ref
                else "they will be posted in this channel"
            )
            text = f":scroll: fetching the last {cmd.lines} log lines of `{env}`...; {where}"
            ack(response_type="ephemeral", text=text)
            cmd = dataclasses.replace(cmd, env=env, app=None)
            ctx.later(_post_logs, ctx, client, respond, cmd, caller)
            return
        ack(response_type="ephemeral", text=_reply_text(cmd, reply))

    return command


def _post_logs(
    ctx: SlackContext, client: WebClient, respond: Callable[..., Any], cmd: Logs, caller: Caller
) -> None:
    """Fetch the logs (AWS, after the ack) and post them where the environment is discussed:
    the thread of its deploy message, else the command's channel. Short output is a message
    with a code block; long output a file; problems are told through the response URL."""
    reply = run(cmd, ctx.apps, dataclasses.replace(caller, fast=False))
    if not reply.ok:
        _respond(respond, _reply_text(cmd, reply))
        return
    result: ContainerLogs = reply.data["logs"]
    ref = ctx.store.get_message(result.env, MESSAGE_KIND)
    channel = ref["channel"] if ref else caller.context.get("channel")
    thread = {"thread_ts": ref["ts"]} if ref else {}
    if not channel:
        _respond(respond, reply.text)
        return
    head = f":scroll: {escape(logs_summary(result))}, asked by <@{caller.actor}>"
    extras = [f"_{escape(note)}_" for note in result.notes] + [
        f"<{link}|log group {escape(group)} in the AWS console>"
        for group, link in result.links.items()
    ]
    code = "```\n" + "\n".join(verbatim(line) for line in result.lines)
    message = "\n".join([head, code + "\n```", *extras] if result.lines else [head, *extras])
    try:
        if len(message) <= MAX_REPLY:
            client.chat_postMessage(channel=channel, text=message, unfurl_links=False, **thread)
        else:
            client.files_upload_v2(
                channel=channel,
                content="\n".join(result.lines) + "\n",
                filename=f"{result.env}-logs.txt",
                title=f"{result.env}: last {len(result.lines)} log lines",
                snippet_type="text",
                initial_comment="\n".join([head, *extras]),
                **thread,
            )
    except SlackApiError as exc:
        error = str(exc.response.get("error", "")) if exc.response else str(exc)
        log.warning("posting logs failed env=%s error=%s", result.env, error)
        ctx.store.audit("slack error", None, result.env, SOURCE, verb="logs", error=error)
        if error in CHANNEL_ERRORS:
            text = (
                f":warning: I cannot post the logs of `{result.env}` in <#{channel}> ({error}): "
                "invite me with `/invite @revieee`, then ask again."
            )
        else:
            text = f":warning: could not post the logs of `{result.env}`: {error}"
        _respond(respond, text)


def _respond(respond: Callable[..., Any], text: str) -> None:
    try:
        respond(text=text, response_type="ephemeral", replace_original=False)
    except Exception as exc:  # a report about a failure must not fail in turn
        log.warning("response_url failed: %s", exc)


def _reply_text(cmd: Command, reply: Reply) -> str:
    if not reply.ok:
        return f":no_entry: {reply.text}" if reply.data.get("refused") else reply.text
    if isinstance(cmd, List | Keep) or reply.operation is None:
        return f"```{reply.text}```" if "\n" in reply.text else reply.text
    return f":white_check_mark: {reply.text}"


def _tell(
    client: WebClient, user: str, channel: str | None, respond: Callable[..., Any] | None, text: str
) -> None:
    """An answer only ``user`` sees: in the channel if there is one, else as a direct message."""
    try:
        if respond is not None and channel:
            respond(text=text, response_type="ephemeral", replace_original=False)
        elif channel:
            client.chat_postEphemeral(channel=channel, user=user, text=text)
        else:
            client.chat_postMessage(channel=user, text=text)
    except SlackApiError as exc:
        log.warning("could not tell user=%s error=%s", user, exc.response.get("error"))


def _acked_later(ctx: SlackContext, work: Callable[..., None]) -> Callable[..., None]:
    """A button listener: ack at once, then ``work(ctx, body, client, respond)`` on the pool."""

    def button(
        ack: Callable[..., None],
        body: dict[str, Any],
        client: WebClient,
        respond: Callable[..., Any],
    ) -> None:
        ack()
        ctx.later(work, ctx, body, client, respond)

    return button


def _clicked(
    ctx: SlackContext, body: dict[str, Any], client: WebClient, respond: Callable[..., Any]
) -> None:
    action = body["actions"][0]
    user = body["user"]["id"]
    channel = (body.get("channel") or {}).get("id")
    env = action["value"]
    try:
        row = ctx.apps.find_env(env)
    except RequestError as exc:
        _tell(client, user, channel, respond if channel else None, str(exc))
        return
    cmd: Command
    if action["action_id"] == ACTION_REDEPLOY:
        cmd = Deploy(branch=row["branch"], app=row["app"])
    elif action["action_id"] == ACTION_STOP:
        cmd = Stop(env=row["name"])
    elif action["action_id"] == ACTION_WAKE:
        cmd = Wake(env=row["name"])
    else:
        cmd = Keep(env=row["name"])
    reply = run(cmd, ctx.apps, _caller(ctx, user, channel, body.get("response_url")))
    if not reply.ok or isinstance(cmd, Keep):
        _tell(client, user, channel, respond if channel else None, _reply_text(cmd, reply))
    if isinstance(cmd, Keep) and reply.ok:
        ctx.notifier.refresh(row["name"])
    if body.get("view", {}).get("type") == "home":
        publish_home(ctx, client, user)


def _delete_clicked(
    ctx: SlackContext, body: dict[str, Any], client: WebClient, respond: Callable[..., Any]
) -> None:
    """The admin channel's Delete button on an orphan: admins only (when admins are set)."""
    user = body["user"]["id"]
    channel = (body.get("channel") or {}).get("id")
    orphan_id = str(body["actions"][0].get("value", ""))
    settings = ctx.apps.settings
    admins = list(settings.admins) + [a for app in settings.apps.values() for a in app.admins]
    allowed = (
        not admins
        or ctx.authz.is_admin(user, None)
        or any(ctx.authz.is_admin(user, app) for app in settings.apps.values())
    )
    if not allowed:
        ctx.store.audit("refused", user, None, SOURCE, verb="delete orphan", orphan=orphan_id)
        _tell(client, user, channel, respond, ":no_entry: not allowed: only an admin may delete")
        return
    if ctx.sweeper is None:
        _tell(client, user, channel, respond, "the sweeper is not running here")
        return
    try:
        line = ctx.sweeper.delete(orphan_id, actor=user)
    except Exception as exc:  # told to the admin, who can try again
        log.warning("orphan delete failed id=%s: %s", orphan_id, exc)
        line = f":warning: could not delete it: {exc}"
    _tell(client, user, channel, respond, line)


def _reaction(ctx: SlackContext) -> Callable[..., None]:
    def reaction(event: dict[str, Any], client: WebClient) -> None:
        ctx.later(_reacted, ctx, event, client)

    return reaction


def _reacted(ctx: SlackContext, event: dict[str, Any], client: WebClient) -> None:
    name = str(event.get("reaction", "")).split("::")[0]  # drop skin tones
    item = event.get("item") or {}
    if name not in ctx.apps.settings.stop_reactions or item.get("type") != "message":
        return
    env = ctx.store.env_for_message(item.get("channel", ""), item.get("ts", ""))
    if env is None:
        return  # a reaction on any other message does nothing
    user = event["user"]
    reply = run(Stop(env=env), ctx.apps, _caller(ctx, user, item["channel"], None))
    if not reply.ok:
        _tell(client, user, item["channel"], None, _reply_text(Stop(env=env), reply))


def _home(ctx: SlackContext) -> Callable[..., None]:
    def home(event: dict[str, Any], client: WebClient) -> None:
        if event.get("tab", "home") == "home":
            ctx.later(publish_home, ctx, client, event["user"])

    return home


def publish_home(ctx: SlackContext, client: WebClient, user: str) -> None:
    mine = ctx.apps.list_envs(owner=user)
    running = [e for e in ctx.store.list_envs() if e["status"] == "running"]
    try:
        client.views_publish(user_id=user, view=home_view(mine, running, ctx.clock()))
    except SlackApiError as exc:
        log.warning("views.publish failed user=%s error=%s", user, exc.response.get("error"))

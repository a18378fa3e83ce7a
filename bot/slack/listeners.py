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
from bot.review import RequestError, ReviewApps
from bot.slack.blocks import (
    ACTION_KEEP,
    ACTION_OPEN,
    ACTION_REDEPLOY,
    ACTION_STOP,
    home_view,
    list_blocks,
)
from bot.slack.notifier import SlackNotifier
from bot.store import Store
from commands.parser import UsageError, parse
from commands.run import Caller, Reply, run
from commands.verbs import Command, Deploy, Keep, List, Stop

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


def register(app: App, ctx: SlackContext) -> None:
    """Register every listener revieee has on the Bolt app."""
    app.middleware(_dedupe(ctx.store))
    app.command("/revieee")(_command(ctx))
    app.action(re.compile(f"^({ACTION_REDEPLOY}|{ACTION_STOP}|{ACTION_KEEP})$"))(_button(ctx))
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
    def command(ack: Callable[..., None], body: dict[str, Any]) -> None:
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
        ack(response_type="ephemeral", text=_reply_text(cmd, reply))

    return command


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


def _button(ctx: SlackContext) -> Callable[..., None]:
    def button(
        ack: Callable[..., None],
        body: dict[str, Any],
        client: WebClient,
        respond: Callable[..., Any],
    ) -> None:
        ack()
        ctx.later(_clicked, ctx, body, client, respond)

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
    else:
        cmd = Keep(env=row["name"])
    reply = run(cmd, ctx.apps, _caller(ctx, user, channel, body.get("response_url")))
    if not reply.ok or isinstance(cmd, Keep):
        _tell(client, user, channel, respond if channel else None, _reply_text(cmd, reply))
    if isinstance(cmd, Keep) and reply.ok:
        ctx.notifier.refresh(row["name"])
    if body.get("view", {}).get("type") == "home":
        publish_home(ctx, client, user)


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
    mine = ctx.store.list_envs(owner=user)
    running = [e for e in ctx.store.list_envs() if e["status"] == "running"]
    try:
        client.views_publish(user_id=user, view=home_view(mine, running, ctx.clock()))
    except SlackApiError as exc:
        log.warning("views.publish failed user=%s error=%s", user, exc.response.get("error"))

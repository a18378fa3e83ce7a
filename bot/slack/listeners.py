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

from bot.authz import SLACK_GROUP, SLACK_USER, Authorizer, Caller, DeleteOrphan
from bot.container_logs import ContainerLogs
from bot.core import Core, RequestError
from bot.slack import mrkdwn
from bot.slack.blocks import (
    ACTION_DELETE_ORPHAN,
    ACTION_KEEP,
    ACTION_LIST_NEXT,
    ACTION_LIST_PREVIOUS,
    ACTION_OPEN,
    ACTION_REDEPLOY,
    ACTION_STOP,
    ACTION_WAKE,
    home_view,
    list_blocks,
    over_quota_blocks,
)
from bot.slack.notifier import (
    MAX_REPLY,
    MESSAGE_KIND,
    SlackNotifier,
)
from bot.store import Store
from commands.parser import UsageError, parse
from commands.run import Reply, run
from commands.verbs import Command, Deploy, Keep, List, Logs, Stop, Wake

log = logging.getLogger("revieee.slack")

SOURCE = "slack"


@dataclass
class SlackContext:
    core: Core
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
    app.action(re.compile(f"^({ACTION_LIST_PREVIOUS}|{ACTION_LIST_NEXT})$"))(
        _acked_later(ctx, _page_clicked)
    )
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


def _str_at(data: Any, *path: str | int) -> str | None:
    """The non-empty string at ``path`` in a payload (``"actions", 0, "value"``), or None when
    the payload has another shape."""
    for step in path:
        try:
            data = data[step]
        except (KeyError, IndexError, TypeError):
            return None
    return data if isinstance(data, str) and data else None


def _caller(ctx: SlackContext, user: str, channel: str | None, response_url: str | None) -> Caller:
    context = {k: v for k, v in (("channel", channel), ("response_url", response_url)) if v}
    return Caller(user, SOURCE, context, fast=True)


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
            ack(response_type="ephemeral", text=mrkdwn.code_block(str(exc)))
            return
        user = _str_at(body, "user_id")
        if user is None:  # the HTTP front door refuses these; Socket Mode hands them over
            ack(response_type="ephemeral", text="revieee cannot tell who typed that command")
            return
        caller = _caller(ctx, user, _str_at(body, "channel_id"), _str_at(body, "response_url"))
        reply = run(cmd, ctx.core, caller, ctx.authz)
        if reply.data.get("over_quota"):
            blocks = over_quota_blocks(reply.text, reply.data["over_quota"], ctx.clock())
            ack(response_type="ephemeral", text=mrkdwn.text(reply.text, MAX_REPLY), blocks=blocks)
            return
        if isinstance(cmd, List) and reply.ok:
            text, blocks = _list_message(cmd, reply, ctx.clock())
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
            lines = f"the last {cmd.lines} log lines of {mrkdwn.code(env)}"
            ack(response_type="ephemeral", text=f":scroll: fetching {lines}...; {where}")
            cmd = dataclasses.replace(cmd, env=env, app=None)
            ctx.later(_post_logs, ctx, client, respond, cmd, caller)
            return
        ack(response_type="ephemeral", text=reply_text(cmd, reply))

    return command


def _list_message(cmd: List, reply: Reply, now: datetime) -> tuple[str, list[dict[str, Any]]]:
    """A ``list`` answer's page as Block Kit, with its Previous and Next buttons."""
    data = reply.data
    return list_blocks(data["rows"], now, total=data["total"], pages=data["pages"], command=cmd)


def _page_clicked(
    ctx: SlackContext, body: dict[str, Any], client: WebClient, respond: Callable[..., Any]
) -> None:
    """A listing's Previous or Next: the button's value is the ``list`` command at the page to
    show, run as the slash command runs it (same caller, same gate); its answer replaces the
    listing. A value that is not a ``list`` command gets an error only the clicker sees."""
    user = _str_at(body, "user", "id")
    if user is None:
        log.warning("list page click without a user ignored")
        return
    channel = _str_at(body, "channel", "id")
    tell = respond if channel else None
    cmd = _listing_of(_str_at(body, "actions", 0, "value") or "")
    if isinstance(cmd, str):
        log.warning("list page click with a bad value user=%s", user)
        problem = mrkdwn.text(cmd, 300)
        said = f":warning: that page button is broken ({problem}); type `/revieee list` again"
        _tell(client, user, channel, tell, said)
        return
    reply = run(
        cmd, ctx.core, _caller(ctx, user, channel, _str_at(body, "response_url")), ctx.authz
    )
    if not reply.ok:
        _tell(client, user, channel, tell, reply_text(cmd, reply))
        return
    text, blocks = _list_message(cmd, reply, ctx.clock())
    try:
        respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=True)
    except Exception as exc:  # the listing stays as it was
        log.warning("response_url failed: %s", exc)


def _listing_of(value: str) -> List | str:
    """The ``list`` command a page button's value holds, or what is wrong with the value."""
    try:
        cmd = parse(value)
    except UsageError as exc:
        return exc.problem
    return cmd if isinstance(cmd, List) else "it is not a list command"


def _post_logs(
    ctx: SlackContext, client: WebClient, respond: Callable[..., Any], cmd: Logs, caller: Caller
) -> None:
    """Fetch the logs (AWS, after the ack) and have the notifier post them; problems are told
    through the response URL."""
    reply = run(cmd, ctx.core, dataclasses.replace(caller, fast=False), ctx.authz)
    if not reply.ok:
        _respond(respond, reply_text(cmd, reply))
        return
    result: ContainerLogs = reply.data["logs"]
    problem = ctx.notifier.post_logs(
        result, caller.actor, caller.context.get("channel"), reply.text
    )
    if problem is not None:
        _respond(respond, problem)


def _respond(respond: Callable[..., Any], text: str) -> None:
    try:
        respond(text=text, response_type="ephemeral", replace_original=False)
    except Exception as exc:  # a report about a failure must not fail in turn
        log.warning("response_url failed: %s", exc)


def reply_text(cmd: Command, reply: Reply) -> str:
    """A command's answer (plain text, see :mod:`commands.run`) as mrkdwn."""
    said = mrkdwn.text(reply.text, MAX_REPLY)
    if "\n" in reply.text:
        said = mrkdwn.code_block(reply.text)
    for who in reply.data.get("mentions") or ():  # the users and groups a refusal names
        if SLACK_USER.fullmatch(who) or SLACK_GROUP.fullmatch(who):
            said = re.sub(
                rf"\b{who}\b", f"<!subteam^{who}>" if who[0] == "S" else f"<@{who}>", said
            )
    if not reply.ok:
        return f":no_entry: {said}" if reply.data.get("refused") else said
    if isinstance(cmd, List | Keep) or reply.operation is None:
        return said
    return f":white_check_mark: {said}"


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
    user = _str_at(body, "user", "id")
    action_id = _str_at(body, "actions", 0, "action_id")
    env = _str_at(body, "actions", 0, "value")
    if user is None or action_id is None or env is None:
        log.warning("block action without a user, action_id or value ignored")
        return
    channel = _str_at(body, "channel", "id")
    try:
        row = ctx.core.queries.find_env(env)
    except RequestError as exc:
        _tell(client, user, channel, respond if channel else None, mrkdwn.text(str(exc), 2000))
        return
    cmd: Command
    if action_id == ACTION_REDEPLOY:
        cmd = Deploy(branch=row["branch"], app=row["app"])
    elif action_id == ACTION_STOP:
        cmd = Stop(env=row["name"])
    elif action_id == ACTION_WAKE:
        cmd = Wake(env=row["name"])
    else:
        cmd = Keep(env=row["name"])
    reply = run(cmd, ctx.core, _caller(ctx, user, channel, body.get("response_url")), ctx.authz)
    if not reply.ok or isinstance(cmd, Keep):
        _tell(client, user, channel, respond if channel else None, reply_text(cmd, reply))
    if isinstance(cmd, Keep) and reply.ok:
        ctx.notifier.refresh(row["name"])
    if _str_at(body, "view", "type") == "home":
        publish_home(ctx, client, user)


def _delete_clicked(
    ctx: SlackContext, body: dict[str, Any], client: WebClient, respond: Callable[..., Any]
) -> None:
    """The admin channel's Delete button on an orphan: admins only (when admins are set)."""
    user = _str_at(body, "user", "id")
    if user is None:
        log.warning("delete click without a user ignored")
        return
    channel = _str_at(body, "channel", "id")
    orphan_id = _str_at(body, "actions", 0, "value") or ""
    decision = ctx.authz.check(_caller(ctx, user, channel, None), DeleteOrphan(orphan_id))
    if not decision.allowed:
        ctx.store.audit("refused", user, None, SOURCE, verb="delete orphan", orphan=orphan_id)
        reason = mrkdwn.text(decision.reason, 500)
        _tell(client, user, channel, respond, f":no_entry: not allowed: {reason}")
        return
    if ctx.sweeper is None:
        _tell(client, user, channel, respond, "the sweeper is not running here")
        return
    try:
        line = ctx.sweeper.delete(orphan_id, actor=user)
    except Exception as exc:  # told to the admin, who can try again
        log.warning("orphan delete failed id=%s: %s", orphan_id, exc)
        line = f"could not delete it: {exc}"
    _tell(client, user, channel, respond, mrkdwn.text(line, 2000))


def _reaction(ctx: SlackContext) -> Callable[..., None]:
    def reaction(event: dict[str, Any], client: WebClient) -> None:
        ctx.later(_reacted, ctx, event, client)

    return reaction


def _reacted(ctx: SlackContext, event: dict[str, Any], client: WebClient) -> None:
    name = str(event.get("reaction", "")).split("::")[0]  # drop skin tones
    user, channel, ts = (
        _str_at(event, *p) for p in (("user",), ("item", "channel"), ("item", "ts"))
    )
    if name not in ctx.core.settings.stop_reactions or _str_at(event, "item", "type") != "message":
        return
    if user is None or channel is None or ts is None:
        return
    env = ctx.store.env_for_message(channel, ts)
    if env is None:
        return  # a reaction on any other message does nothing
    reply = run(Stop(env=env), ctx.core, _caller(ctx, user, channel, None), ctx.authz)
    if not reply.ok:
        _tell(client, user, channel, None, reply_text(Stop(env=env), reply))


def _home(ctx: SlackContext) -> Callable[..., None]:
    def home(event: dict[str, Any], client: WebClient) -> None:
        user = _str_at(event, "user")
        if user is not None and event.get("tab", "home") == "home":
            ctx.later(publish_home, ctx, client, user)

    return home


def publish_home(ctx: SlackContext, client: WebClient, user: str) -> None:
    mine = ctx.core.queries.list_envs(owner=user)
    running = [e for e in ctx.store.list_envs() if e["status"] == "running"]
    try:
        client.views_publish(user_id=user, view=home_view(mine, running, ctx.clock()))
    except SlackApiError as exc:
        log.warning("views.publish failed user=%s error=%s", user, exc.response.get("error"))

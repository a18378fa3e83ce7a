"""Carry out a parsed command against the review-apps core and say what happened, as text.

Every front door (the terminal, Slack's slash command, buttons and reactions, GitHub PR comments)
parses with :func:`commands.parser.parse`, calls :func:`run`, and presents the :class:`Reply`
its own way. A reply's text is plain text: Slack shows it through :mod:`bot.slack.mrkdwn`,
GitHub through :mod:`bot.github.markdown`, which escape whatever it quotes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bot.authz import Authorizer
from bot.container_logs import ContainerLogs, services_to_read
from bot.cost import money
from bot.engine import EngineError
from bot.review import RequestError, ReviewApps
from bot.store import Operation
from commands.parser import parse_duration
from commands.verbs import (
    VERBS,
    Command,
    Deploy,
    Help,
    Keep,
    List,
    Logs,
    Status,
    Stop,
    Wake,
    description,
    duration_text,
    usage,
)


@dataclass
class Reply:
    text: str
    ok: bool = True
    operation: Operation | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Caller:
    """Who runs a command, from where. ``authz`` is checked for every verb that changes
    something (the terminal, whose user already holds the AWS credentials, passes none);
    ``context`` travels with the operation (e.g. the Slack channel to report to)."""

    actor: str | None
    source: str
    authz: Authorizer | None = None
    context: dict[str, Any] = field(default_factory=dict)
    fast: bool = False  # answer from the store only: chat front doors must answer at once


def run(cmd: Command, apps: ReviewApps, caller: Caller) -> Reply:
    try:
        return _run(cmd, apps, caller)
    except RequestError as exc:
        return Reply(str(exc), ok=False)


def _refused(
    caller: Caller,
    apps: ReviewApps,
    action: str,
    env: str,
    reason: str,
    mentions: tuple[str, ...] = (),
) -> Reply:
    """A refusal; ``mentions``: the user and group ids in ``reason`` that a chat may mention."""
    apps.store.audit("refused", caller.actor, env, caller.source, verb=action, reason=reason)
    return Reply(f"not allowed: {reason}", ok=False, data={"refused": True, "mentions": mentions})


def _run(cmd: Command, apps: ReviewApps, caller: Caller) -> Reply:
    actor, source, authz = caller.actor, caller.source, caller.authz
    match cmd:
        case Deploy(branch=branch, app=app, sha=sha, wait=wait):
            if authz is not None:
                try:
                    app_cfg = apps.settings.app(app)
                except KeyError as exc:
                    return Reply(str(exc.args[0]), ok=False)
                decision = authz.can_deploy(actor, app_cfg)
                if not decision.allowed:
                    return _refused(
                        caller, apps, "deploy", branch, decision.reason, decision.mentions
                    )
            req = apps.request_deploy(
                branch,
                app,
                sha=sha,
                requested_by=actor,
                source=source,
                wait=wait or source != "cli",
                context=caller.context,
            )
            text = (
                f"queued deploy of {branch} as {req.env} ({req.url}), operation {req.operation.id}"
            )
            if req.superseded:
                text += f"; it replaces queued operation(s) {', '.join(map(str, req.superseded))}"
            return Reply(text, operation=req.operation, data={"env": req.env, "url": req.url})
        case Stop(env=env, app=app):
            row = apps.find_env(env, app)
            if authz is not None:
                decision = authz.can_stop(actor, row)
                if not decision.allowed:
                    return _refused(
                        caller, apps, "stop", row["name"], decision.reason, decision.mentions
                    )
            req = apps.request_stop(
                row["name"], requested_by=actor, source=source, context=caller.context
            )
            text = f"queued stop of {req.env}, operation {req.operation.id}"
            if req.note:
                text += f" ({req.note})"
            return Reply(text, operation=req.operation, data={"env": req.env})
        case Keep(env=env, duration=duration, app=app):
            row = apps.find_env(env, app)
            forever = duration == "forever"
            if authz is not None:
                decision = authz.can_stop(actor, row, verb="keep")
                if not decision.allowed:
                    return _refused(
                        caller, apps, "keep", row["name"], decision.reason, decision.mentions
                    )
                of_app = apps.settings.apps.get(row["app"])
                admins = list(apps.settings.admins) + list(of_app.admins if of_app else ())
                pin_guarded = apps.settings.pin_requires_admin and admins
                if forever and pin_guarded and not authz.is_admin(actor, of_app):
                    reason = f'only an admin may keep {row["name"]} forever; try "keep ENV 1w"'
                    return _refused(caller, apps, "keep", row["name"], reason)
            seconds = None if forever or duration is None else parse_duration(duration)
            expires = apps.keep(
                row["name"], seconds, forever=forever, requested_by=actor, source=source
            )
            if expires is None:
                text = f"{row['name']} is pinned: kept until someone stops it"
            else:
                text = f"{row['name']} is kept until {expires}"
            return Reply(text, data={"env": row["name"], "expires_at": expires})
        case Wake(env=env, app=app):
            row = apps.find_env(env, app)
            of_app = apps.settings.apps.get(row["app"])
            if authz is not None and of_app is not None:
                decision = authz.can_deploy(actor, of_app)
                if not decision.allowed:
                    return _refused(
                        caller, apps, "wake", row["name"], decision.reason, decision.mentions
                    )
            apps.touch(row)
            req = apps.request_scale(
                row["name"], "wake", requested_by=actor, source=source, context=caller.context
            )
            text = f"queued wake of {req.env}, operation {req.operation.id}"
            return Reply(text, operation=req.operation, data={"env": req.env})
        case List(mine=mine, app=app, all=everything):
            if mine and not actor:
                return Reply("--mine needs to know who you are", ok=False)
            rows = apps.list_envs(
                app=app, owner=actor if mine else None, include_stopped=everything
            )
            return Reply(format_list(rows), data={"count": len(rows), "rows": rows})
        case Status(env=env, app=app):
            row = apps.find_env(env, app)
            apps.touch(row)
            status = apps.status(row["name"], live=not caller.fast)
            return Reply(format_status(status), data={"env": row["name"]})
        case Logs(env=env, app=app, service=service, since=since, lines=lines):
            row = apps.find_env(env, app)
            name = row["name"]
            of_app = apps.settings.apps.get(row["app"])
            if authz is not None:
                if of_app is None:
                    return Reply(f"app {row['app']!r} of {name} is no longer configured", ok=False)
                decision = authz.can_deploy(actor, of_app)
                if not decision.allowed:
                    reason = f"{decision.reason} (reading its logs takes the same right)"
                    return _refused(caller, apps, "logs", name, reason, decision.mentions)
            data: dict[str, Any] = {"env": name}
            apps.touch(row)
            if caller.fast:  # the front door fetches them after its answer
                try:
                    services_to_read(of_app, row, service)
                except EngineError as exc:
                    return Reply(str(exc), ok=False)
                text = f"fetching the last {lines} log lines of {name}"
                return Reply(text, data={**data, "pending": True})
            result = apps.container_logs(name, service, since, lines)
            apps.store.audit(
                "logs read", actor, name, source, service=service, since=since, lines=lines
            )
            return Reply(format_logs(result), data={**data, "logs": result})
        case Help(verb=verb):
            return Reply(format_help(verb))
    raise AssertionError(f"unhandled command {cmd!r}")  # pragma: no cover


def format_help(verb: str | None = None) -> str:
    if verb:
        return f"usage: {usage(verb)}\n{description(verb)}"
    lines = ["revieee gives each branch its own review environment. Commands:"]
    lines += [f"  {usage(v):<48} {description(v).split('. ')[0].rstrip('.')}" for v in VERBS]
    return "\n".join(lines)


def _age(stamp: str | None, now: datetime) -> str:
    if not stamp:
        return "-"
    seconds = int((now - datetime.fromisoformat(stamp)).total_seconds())
    if seconds < 3600:
        return f"{max(seconds, 0) // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def logs_summary(result: ContainerLogs) -> str:
    """One line saying what a ``logs`` answer holds."""
    since = duration_text(result.since)
    scope = f"{result.env} ({', '.join(result.services)})"
    if not result.lines:
        return f"no log lines in the last {since} for {scope}"
    read = f" (of {result.found} read)" if result.found > len(result.lines) else ""
    return f"last {len(result.lines)} log lines{read} of {scope}, from the last {since}"


def format_logs(result: ContainerLogs) -> str:
    """A ``logs`` answer as plain text: what it is, the lines, then the notes and links."""
    lines = [logs_summary(result), *result.lines]
    lines += [f"note: {note}" for note in result.notes]
    lines += [f"log group {group}: {link}" for group, link in result.links.items()]
    return "\n".join(lines)


def format_list(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no environments"
    now = datetime.now(UTC)
    header = ("ENV", "APP", "BRANCH", "STATUS", "OWNER", "AGE", "COST", "URL")
    table = [header] + [
        (
            r["name"],
            r["app"],
            r["branch"],
            r["status"],
            r["owner"] or "-",
            _age(r["created_at"], now),
            money(r["cost"]) if r.get("cost") is not None else "-",
            r["url"] or "-",
        )
        for r in rows
    ]
    columns = list(zip(*table, strict=True))[:-1]
    widths = [min(max(map(len, column)), 48) for column in columns]
    line = "  ".join(f"{{:<{w}}}" for w in widths) + "  {}"
    lines = [line.format(*row) for row in table]
    lines.append(f"{len(rows)} environment(s)")
    return "\n".join(lines)


def format_status(status: dict[str, Any]) -> str:
    env = status["env"]
    lines = [
        f"{env['name']}: {env['status']}",
        f"  app {env['app']}, branch {env['branch']}, commit {(env['sha'] or '-')[:7]}",
        f"  url {env['url']}",
        f"  owner {env['owner'] or '-'}, created {env['created_at']}, updated {env['updated_at']}",
    ]
    if env.get("pinned"):
        lines.append("  pinned: never expires")
    elif env.get("expires_at") and env["status"] != "stopped":
        lines.append(f"  expires {env['expires_at']}, last activity {env['last_activity_at']}")
    if status.get("cost") is not None:
        rate = env.get("hourly_rate")
        per_hour = f" ({money(rate)}/hour while running)" if rate else ""
        lines.append(f"  cost about {money(status['cost'])} so far{per_hour}")
    if env.get("error"):
        lines.append(f"  last error: {env['error']}")
    for name, live in (status.get("live") or {}).items():
        lines.append(
            f"  service {name}: {live['status']}, {live['running']}/{live['desired']} "
            f"running ({live['ecs_service']})"
        )
    if status.get("live_error"):
        lines.append(f"  could not ask ECS: {status['live_error']}")
    for dep in status["deployments"]:
        line = (
            f"  deploy #{dep['id']} {dep['result']}: {(dep['sha'] or '-')[:7]} by "
            f"{dep['requested_by'] or '-'} via {dep['source'] or '-'} at {dep['started_at']}"
        )
        if dep.get("failure_reason"):
            line += f" -- {dep['failure_reason']}"
        lines.append(line)
    for op in status["operations"]:
        if op.status in ("queued", "running"):
            lines.append(
                f"  operation {op.id} {op.kind} {op.status}"
                + (f" at step: {op.step}" if op.step else "")
            )
    return "\n".join(lines)

"""Carry out a parsed command against the core and say what happened, as text.

Every front door (the terminal, Slack's slash command, buttons and reactions, GitHub PR comments)
parses with :func:`commands.parser.parse`, calls :func:`run`, and presents the :class:`Reply`
its own way. A reply's text is plain text: Slack shows it through :mod:`bot.slack.mrkdwn`,
GitHub through :mod:`bot.github.markdown`, which escape whatever it quotes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bot import envsettings
from bot.authz import Authorizer, Caller, Decision
from bot.container_logs import ContainerLogs, logs_summary, services_to_read
from bot.core import Core, OverQuota, RequestError
from bot.cost import money
from bot.engine import EngineError
from bot.store import Operation
from bot.text import age
from commands.parser import parse_duration
from commands.verbs import (
    PAGE_SIZE,
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
    usage,
    verb_of,
)

__all__ = ["Caller", "Reply", "logs_summary", "run"]
ON_AN_ENV = (Stop, Keep, Wake, Status, Logs)  # the verbs that name an environment


@dataclass
class Reply:
    text: str
    ok: bool = True
    operation: Operation | None = None
    data: dict[str, Any] = field(default_factory=dict)


def run(cmd: Command, core: Core, caller: Caller, authz: Authorizer | None = None) -> Reply:
    """Carry ``cmd`` out for ``caller``, once ``authz`` (default: the lists of the settings,
    without user groups) allows it."""
    try:
        return _run(cmd, core, caller, authz or Authorizer(core.settings))
    except OverQuota as exc:  # the environments to stop: a chat shows buttons for them
        return Reply(str(exc), ok=False, data={"over_quota": exc.envs})
    except RequestError as exc:
        return Reply(str(exc), ok=False)


def _exempt(core: Core, caller: Caller, authz: Authorizer, app: str | None) -> bool:
    """Whether the caller's deploy skips the app's environment limits (admins, the terminal)."""
    try:
        return authz.exempt_from_quotas(caller, core.settings.app(app))
    except KeyError:
        return False  # an unknown app: the request itself says so


def _refused(core: Core, caller: Caller, verb: str, env: str, decision: Decision) -> Reply:
    """A refusal; ``mentions``: the user and group ids in the reason that a chat may mention."""
    reason = decision.reason
    core.store.audit("refused", caller.actor, env, caller.source, verb=verb, reason=reason)
    return Reply(
        f"not allowed: {reason}", ok=False, data={"refused": True, "mentions": decision.mentions}
    )


def _run(cmd: Command, core: Core, caller: Caller, authz: Authorizer) -> Reply:
    actor, source = caller.actor, caller.source
    intake, queries = core.intake, core.queries
    row = queries.find_env(cmd.env, cmd.app) if isinstance(cmd, ON_AN_ENV) else None
    decision = authz.check(caller, cmd, row)
    if not decision.allowed:
        name = row["name"] if row else getattr(cmd, "branch", "")
        return _refused(core, caller, verb_of(cmd), name, decision)
    match cmd:
        case Deploy(branch=branch, app=app, sha=sha, wait=wait):
            req = intake.request_deploy(
                branch,
                app,
                sha=sha,
                requested_by=actor,
                source=source,
                wait=wait or source != "cli",
                context=caller.context,
                set_=dict(envsettings.parse_assignment(a) for a in cmd.set),
                unset=cmd.unset,
                exempt=_exempt(core, caller, authz, app),
            )
            text = (
                f"queued deploy of {branch} as {req.env} ({req.url}), operation {req.operation.id}"
            )
            if req.note:
                text += f"; its settings: {req.note}"
            if req.superseded:
                text += f"; it replaces queued operation(s) {', '.join(map(str, req.superseded))}"
            return Reply(text, operation=req.operation, data={"env": req.env, "url": req.url})
        case Stop() if row is not None:
            req = intake.request_stop(
                row["name"], requested_by=actor, source=source, context=caller.context
            )
            text = f"queued stop of {req.env}, operation {req.operation.id}"
            if req.note:
                text += f" ({req.note})"
            return Reply(text, operation=req.operation, data={"env": req.env})
        case Keep(duration=duration) if row is not None:
            forever = duration == "forever"
            seconds = None if forever or duration is None else parse_duration(duration)
            expires = intake.keep(
                row["name"], seconds, forever=forever, requested_by=actor, source=source
            )
            if expires is None:
                text = f"{row['name']} is pinned: kept until someone stops it"
            else:
                text = f"{row['name']} is kept until {expires}"
            return Reply(text, data={"env": row["name"], "expires_at": expires})
        case Wake() if row is not None:
            intake.touch(row)
            req = intake.request_scale(
                row["name"], "wake", requested_by=actor, source=source, context=caller.context
            )
            text = f"queued wake of {req.env}, operation {req.operation.id}"
            return Reply(text, operation=req.operation, data={"env": req.env})
        case List(mine=mine, app=app, all=everything, page=page):
            if mine and not actor:
                return Reply("--mine needs to know who you are", ok=False)
            listing = queries.list_envs(
                app=app,
                owner=actor if mine else None,
                include_stopped=everything,
                page=page,
                page_size=PAGE_SIZE,
            )
            text = format_list(listing.rows, cmd, total=listing.total, pages=listing.pages)
            return Reply(
                text,
                data={
                    "count": len(listing),
                    "total": listing.total,
                    "page": listing.page,
                    "pages": listing.pages,
                    "rows": listing.rows,
                },
            )
        case Status() if row is not None:
            intake.touch(row)
            status = queries.status(row["name"], live=not caller.fast)
            return Reply(format_status(status), data={"env": row["name"]})
        case Logs(service=service, since=since, lines=lines) if row is not None:
            name = row["name"]
            of_app = core.settings.apps.get(row["app"])
            data: dict[str, Any] = {"env": name}
            intake.touch(row)
            if caller.fast:  # the front door fetches them after its answer
                try:
                    services_to_read(of_app, row, service)
                except EngineError as exc:
                    return Reply(str(exc), ok=False)
                text = f"fetching the last {lines} log lines of {name}"
                return Reply(text, data={**data, "pending": True})
            result = queries.container_logs(name, service, since, lines)
            core.store.audit(
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


def format_logs(result: ContainerLogs) -> str:
    """A ``logs`` answer as plain text: what it is, the lines, then the notes and links."""
    lines = [logs_summary(result), *result.lines]
    lines += [f"note: {note}" for note in result.notes]
    lines += [f"log group {group}: {link}" for group, link in result.links.items()]
    return "\n".join(lines)


def format_list(
    rows: list[dict[str, Any]],
    cmd: List | None = None,
    *,
    total: int | None = None,
    pages: int = 1,
) -> str:
    """A listing as a table. Given the ``list`` command, how many environments match in all
    (``total``) and how many pages they fill, the rows are the command's page and the last
    line says which, and how to see the next."""
    total = len(rows) if total is None else total
    page = cmd.page if cmd else 1
    if not rows:
        if total and cmd:
            return (
                f"no page {page}: the last is page {pages} ({total:,} environment(s)); "
                f"`{cmd.at_page(pages)}` shows it"
            )
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
            age(r["created_at"], now),
            money(r["cost"]) if r.get("cost") is not None else "-",
            r["url"] or "-",
        )
        for r in rows
    ]
    columns = list(zip(*table, strict=True))[:-1]
    widths = [min(max(map(len, column)), 48) for column in columns]
    line = "  ".join(f"{{:<{w}}}" for w in widths) + "  {}"
    lines = [line.format(*row) for row in table]
    if pages == 1 or cmd is None:
        lines.append(f"{len(rows)} environment(s)")
    elif page < pages:
        lines.append(
            f"page {page} of {pages} ({total:,} environments); `{cmd.at_page(page + 1)}` for more"
        )
    else:
        lines.append(f"page {page} of {pages} ({total:,} environments)")
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
    settings = status.get("settings") or {}
    if settings:
        lines.append("  its own settings (over the app's environment variables):")
        for key, setting in sorted(settings.items()):
            by = f" by {setting.by}" if setting.by else ""
            lines.append(f"    {key}={setting.value}  (from {setting.source}{by})")
    for run in reversed(status.get("tasks") or []):
        moment = str(run["moment"]).replace("_", " ")
        if run["status"] in ("starting", "running"):
            outcome = "running"
        elif run.get("exit_code") is None:
            outcome = f"did not finish: {run.get('reason') or 'stopped'}"
        else:
            outcome = f"exit code {run['exit_code']} after {run.get('seconds') or 0:g}s"
        lines.append(
            f"  {moment} task {run['name']} (operation {run['operation_id']}): {outcome}, "
            f"started {run['started_at']}"
        )
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

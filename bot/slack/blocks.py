"""Block Kit for every message revieee shows in Slack. Pure functions of their inputs (the time
included), so each phase has a golden file."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.authz import is_slack_user
from bot.cost import money
from bot.events import Phase
from bot.phases import PHASES, DeployView, status_emoji
from bot.slack.mrkdwn import MAX_FIELD, MAX_SECTION, code, fit, link, text
from bot.sweeper import KINDS, SweepResult
from bot.text import elapsed
from commands.verbs import PAGE_SIZE, List

Blocks = list[dict[str, Any]]

MAX_BLOCKS = 50  # a message's limit
MAX_HOME_BLOCKS = 100  # a Home tab's limit
MAX_TEXT = MAX_SECTION  # a section's text limit

ACTION_REDEPLOY = "revieee_redeploy"
ACTION_STOP = "revieee_stop"
ACTION_KEEP = "revieee_keep"
ACTION_WAKE = "revieee_wake"
ACTION_DELETE_ORPHAN = "revieee_delete_orphan"  # the sweeper's report (bot/sweeper.py)
ACTION_OPEN = "revieee_open"
ACTION_LIST_PAGE = "revieee_list_page"  # a listing's Previous and Next: revieee_list_page_*
ACTION_LIST_PREVIOUS = f"{ACTION_LIST_PAGE}_previous"
ACTION_LIST_NEXT = f"{ACTION_LIST_PAGE}_next"


def who(user: str | None) -> str:
    """A Slack mention for Slack user ids, the name (as text that cannot mention) otherwise."""
    if not user:
        return "someone"
    if is_slack_user(user):
        return f"<@{user}>"
    return text(user, 100)


def slack_date(moment: datetime, fmt: str = "{date_short_pretty} {time}") -> str:
    """Slack's date formatting (shown in each reader's time zone), with a UTC fallback."""
    fallback = moment.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(moment.timestamp())}^{fmt}|{fallback}>"


def _note(mrkdwn: str) -> dict[str, Any]:
    """A context block: one line of small print."""
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": mrkdwn}]}


def _truncate(mrkdwn: str, limit: int = MAX_TEXT) -> str:
    return fit(mrkdwn, limit)


def _button(
    text: str,
    action: str,
    value: str,
    style: str | None = None,
    url: str | None = None,
    confirm: dict[str, Any] | None = None,
) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "action_id": action,
        "value": value,
        "text": {"type": "plain_text", "text": text},
    }
    if style:
        button["style"] = style
    if url:
        button["url"] = url
    if confirm:
        button["confirm"] = confirm
    return button


def _stop_confirm(env: str) -> dict[str, Any]:
    return {
        "title": {"type": "plain_text", "text": "Stop this environment?"},
        "text": {"type": "mrkdwn", "text": f"{code(env)} and its AWS resources will be removed."},
        "confirm": {"type": "plain_text", "text": "Stop it"},
        "deny": {"type": "plain_text", "text": "Keep it running"},
    }


def env_buttons(env: str, url: str, phase: str) -> dict[str, Any]:
    elements = []
    if phase == "ready":
        elements.append(_button("Open", ACTION_OPEN, env, style="primary", url=url))
    if phase == "sleeping":
        elements.append(_button("Wake", ACTION_WAKE, env, style="primary"))
    elements.append(_button("Redeploy", ACTION_REDEPLOY, env))
    if phase not in ("stopped", "stopping"):
        elements.append(
            _button("Stop", ACTION_STOP, env, style="danger", confirm=_stop_confirm(env))
        )
        elements.append(_button("Keep", ACTION_KEEP, env))
    return {"type": "actions", "block_id": f"env:{env}", "elements": elements}


def deploy_message(
    view: DeployView, now: datetime, stop_reaction: str = "octagonal_sign"
) -> tuple[str, Blocks]:
    """(fallback text, blocks) of an environment's deploy message in its current phase."""
    emoji, label = PHASES[view.phase]
    if view.phase == "failed" and view.serving:
        label = "Redeploy failed (previous version still serving)"
    title = link(view.url, view.env) if view.phase == "ready" else code(view.env)
    fallback = f"{emoji} {text(view.env, 200)}: {label}"
    end = view.finished_at or now
    fields = [
        f"*Branch*\n{code(view.branch, MAX_FIELD - 12)}",
        f"*Commit*\n{code(view.sha[:7])}" if view.sha else "*Commit*\n-",
        f"*App*\n{text(view.app, 200)}",
        f"*Requested by*\n{who(view.requested_by)}",
        f"*Elapsed*\n{elapsed(view.started_at, end)}",
    ]
    if view.pull:
        pull_title = f" {text(view.pull_title, 80)}" if view.pull_title else ""
        by = f" by {text(view.pull_author, 100)}" if view.pull_author else ""
        pull = link(view.pull_url, view.pull, 40) if view.pull_url else text(view.pull, 40)
        fields.append(fit(f"*Pull request*\n{pull}{pull_title}{by}", MAX_FIELD))
    if view.pinned and view.phase not in ("stopped", "stopping"):
        fields.append("*Expires*\nnever (pinned)")
    elif view.expires_at and view.phase not in ("stopped", "stopping"):
        fields.append(f"*Expires*\n{slack_date(view.expires_at)}")
    blocks: Blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{emoji} *{label}*  {title}"}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    if view.phase == "ready":
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": f":link: <{view.url}>"}}
        )
    if view.phase == "ready" and view.access == "token":
        blocks.append(
            _note(
                ":lock: Protected: this link carries the environment's token and signs its "
                "visitor in; share it with its reviewers only."
            )
        )
    elif view.phase == "ready" and view.access == "sso":
        blocks.append(_note(":lock: Protected: visitors sign in with the company's SSO."))
    if view.detail and view.phase == "building":
        blocks.append(_note(f"CodeBuild: {text(view.detail, MAX_FIELD)}"))
    if view.phase == "failed" and view.reason:
        log = link(view.log_url, "Full build log in the AWS console") if view.log_url else ""
        log = f"\n{log}" if log else ""
        # the link is appended after the reason: both within the section's 3,000 characters
        why = text(view.reason, MAX_SECTION - len("*Why:* ") - len(log), newlines=True)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Why:* {why}{log}"}})
    if view.phase == "stopped":
        at = slack_date(view.stopped_at) if view.stopped_at else "-"
        reason = f": {text(view.stop_reason, 500)}" if view.stop_reason else ""
        blocks.append(_note(f"Stopped by {who(view.stopped_by)} at {at}{reason}"))
    blocks.append(env_buttons(view.env, view.url, view.phase))
    blocks.append(_note(f"Details in the thread. React with :{stop_reaction}: to stop it."))
    return fallback, blocks


def _env_line(row: dict[str, Any], now: datetime) -> str:
    created = datetime.fromisoformat(row["created_at"]) if row.get("created_at") else None
    url = link(row["url"], row["name"]) if row.get("url") else code(row["name"])
    line = (
        f"{status_emoji(row['status'])} {url}  {code(row['branch'], 200)}  "
        f"{text(row['status'])}, {who(row.get('owner'))}, up {elapsed(created, now)}"
    )
    if row.get("expires_at"):
        line += f", expires {slack_date(datetime.fromisoformat(row['expires_at']))}"
    if row.get("cost"):
        line += f", about {money(row['cost'])} so far"
    return line


def list_blocks(
    rows: Sequence[dict[str, Any]],
    now: datetime,
    title: str = "Environments",
    *,
    total: int | None = None,
    pages: int = 1,
    command: List | None = None,
) -> tuple[str, Blocks]:
    """A listing that always fits Slack's limits: a line per environment, packed into sections
    of at most 3,000 characters and at most 50 blocks; past that, a count of the rest.

    Given ``total`` (how many match in all), ``rows`` are a part of them: a note says how many
    more there are. Given also the ``list`` command they are its page of ``pages``: a footer
    says which, with Previous and Next buttons whose values are the command at those pages."""
    total = len(rows) if total is None else total
    paging = command if command is not None and max(pages, command.page) > 1 else None
    fallback = f"{title}: {total}"
    if paging is not None:
        fallback += f", page {paging.page} of {pages}"
    blocks: Blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": f"*{fallback}*"}}]
    if not total:
        blocks[0]["text"]["text"] = f"*{title}:* none"
        return f"{title}: none", blocks
    sections: list[list[str]] = []
    chunk: list[str] = []
    size = 0
    budget = MAX_BLOCKS - (2 if paging is None else 3)  # the title, the "more" line, buttons
    for row in rows:
        line = _truncate(_env_line(row, now), 500)
        if chunk and size + len(line) + 1 > MAX_TEXT:
            sections.append(chunk)
            chunk, size = [], 0
            if len(sections) == budget:
                break
        chunk.append(line)
        size += len(line) + 1
    if chunk:
        sections.append(chunk)
    blocks += [
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}}
        for lines in sections
    ]
    shown = sum(len(lines) for lines in sections)
    if paging is not None:
        blocks += _page_footer(paging, pages, total, shown)
    elif shown < total:
        hint = "narrow it with `--mine` or `--app APP`"
        if total > len(rows):  # the first of them only (the Home tab)
            hint = "`/revieee list` shows them page by page"
        blocks.append(_note(f"… and {total - shown} more: {hint}."))
    return fallback, blocks


def _page_footer(command: List, pages: int, total: int, shown: int) -> Blocks:
    """Where a page of a listing is, and the buttons to the pages before and after it."""
    page = command.page
    first = (page - 1) * PAGE_SIZE + 1
    last = min(first + shown - 1, total)
    if not shown:
        note = f"Page {page} is past the end: the last is page {pages} ({total:,} environment(s))."
    elif last < total:
        note = (
            f"Page {page} of {pages} ({first:,}-{last:,} of {total:,}), and {total - last:,} "
            "more: narrow it with `--mine` or `--app APP`."
        )
    else:
        note = f"Page {page} of {pages} ({first:,}-{last:,} of {total:,})."
    buttons = []
    if page > 1:
        previous = min(page - 1, pages)
        buttons.append(_button("Previous", ACTION_LIST_PREVIOUS, command.at_page(previous)))
    if page < pages:
        buttons.append(_button("Next", ACTION_LIST_NEXT, command.at_page(page + 1)))
    footer: Blocks = [_note(note)]
    if buttons:
        footer.append({"type": "actions", "block_id": "list:pages", "elements": buttons})
    return footer


def home_view(
    mine: Sequence[dict[str, Any]], running: Sequence[dict[str, Any]], now: datetime
) -> dict[str, Any]:
    """The App Home tab: the viewer's environments (with Stop/Keep) and the first page of
    all running ones, with how many more there are."""
    blocks: Blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "Your review environments"}},
    ]
    budget = MAX_HOME_BLOCKS - 6
    if not mine:
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "None. Type `/revieee deploy BRANCH` in a channel.",
                },
            }
        )
    for row in mine:
        if len(blocks) >= budget // 2:
            blocks.append(_note(f"… and {len(mine) - (len(blocks) - 1) // 2} more"))
            break
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": _truncate(_env_line(row, now))}}
        )
        phase = Phase.of_status(row["status"]) or row["status"]
        blocks.append(env_buttons(row["name"], row.get("url") or "", phase))
    blocks.append({"type": "divider"})
    first = list(running[:PAGE_SIZE])
    _, listing = list_blocks(first, now, title="All running environments", total=len(running))
    blocks.extend(listing[: MAX_HOME_BLOCKS - len(blocks) - 1])
    blocks.append(_note(f"Updated {slack_date(now)}"))
    return {"type": "home", "blocks": blocks}


# -- the lifecycle's messages ----------------------------------------------------------------

PR_STATE = {"merged": ":twisted_rightwards_arrows: merged", "closed": ":no_entry_sign: closed"}


def reminder_message(reminder: Any, now: datetime) -> tuple[str, Blocks]:
    """A channel's reminder (a :class:`bot.lifecycle.Reminder`): each forgotten environment
    with its owner, age, last activity, PR state, cost so far, and Keep / Stop now buttons."""
    items = reminder.items
    owners = sorted({who(i.owner) for i in items if i.owner})
    fallback = f":alarm_clock: {len(items)} review environment(s) look forgotten"
    if owners:
        fallback += f": {', '.join(owners)}"
    blocks: Blocks = [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": _truncate(
                    f"{fallback}. Keep what you still need; the rest is stopped when it expires."
                ),
            },
        }
    ]
    room = (MAX_BLOCKS - 3) // 2
    for item in items[:room]:
        pr = ""
        if item.pr_state in PR_STATE:
            pr = (
                f", PR {PR_STATE[item.pr_state]}"
                if not item.pr_url
                else (f", {link(item.pr_url, 'PR')} {PR_STATE[item.pr_state]}")
            )
        elif item.pr_state == "open":
            pr = ", PR open"
        stops = f"\nStops {slack_date(item.stops_at)} unless kept." if item.stops_at else ""
        name = link(item.url, item.name) if item.url else code(item.name)
        line = (
            f"{status_emoji(item.status)} *{name}* {code(item.branch, 200)} "
            f"({who(item.owner)}): {text(item.reason, 500)}\n"
            f"{item.status}, up {elapsed(item.created_at, now)}, last activity "
            f"{slack_date(item.last_activity)}{pr}, about {money(item.cost)} so far{stops}"
        )
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _truncate(line)}})
        blocks.append(
            {
                "type": "actions",
                "block_id": f"remind:{item.name}",
                "elements": [
                    _button("Keep", ACTION_KEEP, item.name, style="primary"),
                    _button(
                        "Stop now",
                        ACTION_STOP,
                        item.name,
                        style="danger",
                        confirm=_stop_confirm(item.name),
                    ),
                ],
            }
        )
    if len(items) > room:
        rest = ", ".join(code(i.name) for i in items[room:])
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": _truncate(
                        f"… and {len(items) - room} more: {rest}. "
                        "`/revieee keep ENV` or `/revieee stop ENV`."
                    ),
                },
            }
        )
    blocks.append(
        _note(
            "Keep adds time; `/revieee keep ENV 1w` or `forever` for longer. "
            "Costs are estimates from Fargate prices."
        )
    )
    return fallback, blocks


def summary_message(summary: Any) -> tuple[str, Blocks]:
    """The weekly cost summary (a :class:`bot.lifecycle.Summary`)."""
    period = f"{summary.start:%Y-%m-%d} to {summary.end:%Y-%m-%d}"
    fallback = (
        f":bar_chart: Review environments, {period}: {money(summary.total)} "
        f"for {summary.environments} environment(s)"
    )
    saved = summary.saved_auto_stop + summary.saved_sleep
    lines = [
        f"*Total:* {money(summary.total)} ({summary.hours:,.0f} environment-hours, "
        f"{summary.environments} environment(s))",
        f"*Saved:* about {money(saved)}: {money(summary.saved_auto_stop)} by "
        f"{summary.auto_stopped} automatic stop(s), {money(summary.saved_sleep)} by sleep hours",
    ]
    top = [
        f"{n}. {code(env)} ({who(owner) if owner else 'no owner'}): {money(usd)}, {hours:,.0f} h"
        for n, (env, owner, usd, hours) in enumerate(summary.top, 1)
    ]
    blocks: Blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": f"Weekly cost, {period}"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}},
    ]
    if top:
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": _truncate("*Top environments*\n" + "\n".join(top)),
                },
            }
        )
    blocks.append(
        _note(
            "Estimates from task CPU and memory and Fargate prices; sleeping hours are not counted."
        )
    )
    return fallback, blocks


def orphan_message(result: SweepResult) -> tuple[str, Blocks]:
    """The admin channel's message: each new orphan with a Delete button (or, with
    ``sweep_delete``, what was deleted)."""
    headline = f":broom: {len(result.new)} orphaned AWS resource(s) with revieee's tags"
    if result.deleted:
        headline = f":broom: deleted {len(result.deleted)} orphaned AWS resource(s)"
    blocks: Blocks = [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": f"{headline}: their environment is stopped or unknown to revieee.",
            },
        }
    ]
    if result.deleted:
        body = "\n".join(f"- {text(line, 500)}" for line in result.deleted)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": fit(body, MAX_TEXT)}})
        return headline, blocks
    room = MAX_BLOCKS - 3
    for orphan in result.new[:room]:
        app = f", app {text(orphan.app, 100)}" if orphan.app else ""
        name = code(orphan.name, 200)
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"*{KINDS[orphan.kind]}* {code(orphan.name, 1000)}\nenvironment "
                    f"{code(orphan.env, 300)}{app}",
                },
                "accessory": {
                    "type": "button",
                    "action_id": ACTION_DELETE_ORPHAN,
                    "value": orphan.id,
                    "style": "danger",
                    "text": {"type": "plain_text", "text": "Delete"},
                    "confirm": {
                        "title": {"type": "plain_text", "text": "Delete this resource?"},
                        "text": {
                            "type": "mrkdwn",
                            "text": f"{KINDS[orphan.kind]} {name} will be deleted.",
                        },
                        "confirm": {"type": "plain_text", "text": "Delete it"},
                        "deny": {"type": "plain_text", "text": "Keep it"},
                    },
                },
            }
        )
    if len(result.new) > room:
        rest = ", ".join(code(o.name, 300) for o in result.new[room:])
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": fit(f"… and {len(result.new) - room} more: {rest}", MAX_TEXT),
                },
            }
        )
    blocks.append(
        _note(
            "Only resources tagged revieee:env are ever listed. Each is reported "
            "once; set sweep_delete = true to delete them without asking."
        )
    )
    return headline, blocks


def over_quota_blocks(said: str, envs: Sequence[dict[str, Any]], now: datetime) -> Blocks:
    """A deploy refused for the app's ``max_environments``: why, then each environment a stop
    would make room with (oldest first), with its Stop button (the same gate as every Stop)."""
    blocks: Blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f":no_entry: {text(said, 2000)}"}}
    ]
    for row in envs:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _truncate(_env_line(row, now))},
                "accessory": _button(
                    "Stop",
                    ACTION_STOP,
                    row["name"],
                    style="danger",
                    confirm=_stop_confirm(row["name"]),
                ),
            }
        )
    return blocks

"""The living PR comment: one per environment and pull request, edited in place on every change.
A pure function of its inputs, so it has golden files."""

from __future__ import annotations

from datetime import datetime

from bot.events import Phase
from bot.github.markdown import code, fence, mention, text
from bot.phases import PHASES, DeployView

MARK = "<!-- revieee:{env} -->"
# the phases' labels, the sleeping one explained (a PR reader sees no schedule)
STATUS: dict[Phase, tuple[str, str]] = {
    **PHASES,
    Phase.SLEEPING: (PHASES[Phase.SLEEPING][0], "Sleeping (scaled to zero outside working hours)"),
}
MAX_REASON = 2000
MAX_TASK_LINES = 3000  # characters of a task's last lines


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "-"


def _who(user: str | None) -> str:
    return mention(user).replace("|", "\\|")


def pr_comment(view: DeployView, slack_link: str | None = None) -> str:
    """The comment's Markdown."""
    emoji, label = STATUS[view.phase]
    if view.phase == "failed" and view.serving:
        label = "Redeploy failed (the previous version still serves)"
    name = f"[{code(view.env)}]({view.url})" if view.phase == "ready" else code(view.env)
    lines = [
        MARK.format(env=view.env),
        f"### {emoji} Review environment {name}: {label}",
        "",
        "| | |",
        "| --- | --- |",
        f"| **URL** | {view.url} |" if view.phase != "stopped" else f"| **URL** | ~~{view.url}~~ |",
        f"| **Commit** | {code(view.sha[:7], table=True)} |" if view.sha else "| **Commit** | - |",
        f"| **Branch** | {code(view.branch, table=True)} |",
        f"| **App** | {view.app} |",  # from the configuration
        f"| **Last deploy** | {_when(view.started_at)} by {_who(view.requested_by)} |",
    ]
    if view.pinned and view.phase not in ("stopped", "stopping"):
        lines.append("| **Expires** | never (pinned) |")
    elif view.expires_at and view.phase not in ("stopped", "stopping"):
        lines.append(f"| **Expires** | {_when(view.expires_at)} |")
    if view.phase == "stopped" and view.stop_reason:
        why = text(view.stop_reason)
        lines.append(f"| **Stopped** | {_when(view.stopped_at)} by revieee: {why} |")
    elif view.phase == "stopped":
        lines.append(f"| **Stopped** | {_when(view.stopped_at)} by {_who(view.stopped_by)} |")
    if view.access == "token" and view.phase != "stopped":
        # the token is not written here: a pull request's readers are not its reviewers only
        lines.append("| **Access** | protected: the link with its token is in its Slack message |")
    elif view.access == "sso" and view.phase != "stopped":
        lines.append("| **Access** | protected: sign in with the company's SSO |")
    if view.settings and view.phase != "stopped":
        pairs = ", ".join(code(f"{k}={v}", 120, table=True) for k, v in view.settings[:20])
        more = f" and {len(view.settings) - 20} more" if len(view.settings) > 20 else ""
        lines.append(f"| **Settings** | {pairs}{more} |")
    for task in view.tasks:
        moment = task.moment.replace("_", " ")
        lines.append(
            f"| **{moment.capitalize()} task** | {code(task.name, table=True)}: "
            f"{text(task.outcome, 300)} |"
        )
    for task in view.tasks:
        if task.lines:
            lines += ["", f"<details><summary>Last lines of {code(task.name)}</summary>", "",
                      *fence("\n".join(task.lines), MAX_TASK_LINES), "", "</details>"]  # fmt: skip
    if view.phase == "failed" and view.reason:
        lines += ["", "<details><summary>Why it failed</summary>", "",
                  *fence(view.reason, MAX_REASON), "", "</details>"]  # fmt: skip
        if view.log_url:
            lines += ["", f"[Full build log]({view.log_url}) (AWS console)"]
    lines.append("")
    if slack_link:
        lines.append(f"Follow the deploy in [its Slack thread]({slack_link}).")
    lines.append(
        "<sub>Comment `/revieee deploy` to redeploy, `/revieee stop` to stop it, "
        "`/revieee status` for details. This comment is updated in place.</sub>"
    )
    return "\n".join(lines) + "\n"

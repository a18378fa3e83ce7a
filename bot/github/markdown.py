"""The one place untrusted text (branch names, failure reasons, logins, command answers)
becomes GitHub Flavored Markdown: nothing that passes through here can mention, link, format,
inject HTML or break the PR comment's table.

Untrusted text is shown as code where it can be (GFM spec, "Code spans" and "Fenced code blocks"):
inside code nothing is parsed: no emphasis, no links or autolinks, no raw HTML, no @mentions
or #references (GitHub processes those outside code only). An inline span is opened and closed
with a run of backticks longer than any run inside it, padded with a space when the text starts
or ends with one; a fenced block likewise with a fence longer than any run of backticks in it.
In a table cell a ``|`` ends the cell even inside a code span, so it is escaped as ``\\|``
(GFM spec, "Tables": "include a pipe in a cell's content by escaping it, including inside
other inline spans"). Line breaks would end a cell or a span: they become spaces.
"""

from __future__ import annotations

import re

from bot.authz import is_slack_user
from bot.slack.mrkdwn import clean

LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}")  # GitHub's usernames
ELLIPSIS = "…"


def _longest_run(text: str) -> int:
    return max((len(run) for run in re.findall(r"`+", text)), default=0)


def _cut(text: str, limit: int | None) -> str:
    return text if limit is None or len(text) <= limit else text[: limit - 1] + ELLIPSIS


_ESCAPED = re.compile(r"([\\`*_~\[\]<>|&])")
_BREAKS = [  # mentions, references and autolinks, broken by an invisible word joiner
    (re.compile(r"([@#])(?=\w)"), "\\1\u2060"),
    (re.compile(r":(?=//)"), ":\u2060"),
    (re.compile(r"(?i)\b(www)\."), "\\1\u2060."),
]


def text(value: object, limit: int | None = 500) -> str:
    """Untrusted prose on one line (a table cell, a sentence): every character that could
    start emphasis, a link, HTML, an entity or a new cell backslash-escaped (CommonMark: any
    ASCII punctuation may be); ``@login``, ``#1`` and URLs broken so that GitHub links nothing."""
    raw = _cut(clean(str(value), newlines=False).strip(), limit)
    escaped = _ESCAPED.sub(r"\\\1", raw)
    for pattern, replacement in _BREAKS:
        escaped = pattern.sub(replacement, escaped)
    return escaped or "-"


def code(value: object, limit: int | None = 200, table: bool = False) -> str:
    """Untrusted text as an inline code span that it cannot close; ``table`` for a cell."""
    raw = _cut(clean(str(value), newlines=False).strip(), limit)
    if not raw:
        return "-"
    fence = "`" * (_longest_run(raw) + 1)
    pad = " " if raw.startswith("`") or raw.endswith("`") else ""
    span = f"{fence}{pad}{raw}{pad}{fence}"
    return span.replace("|", "\\|") if table else span


def fence(value: object, limit: int | None = 2000) -> list[str]:
    """Untrusted lines as a fenced code block (its lines) that they cannot close."""
    raw = _cut(clean(str(value)), limit)
    marks = "`" * max(3, _longest_run(raw) + 1)
    return [marks, *raw.split("\n"), marks]


def mention(user: str | None) -> str:
    """``@login`` for a GitHub login (a mention is meant: the one who asked); anything else,
    such as a Slack user id or a name from the terminal, as code that mentions nobody."""
    if not user:
        return "someone"
    if is_slack_user(user):
        return "a Slack user"  # Slack ids mean nothing on GitHub
    if LOGIN.fullmatch(user):
        return f"@{user}"
    return code(user, 100)

"""The one place untrusted text (branch names, PR titles and authors, failure reasons, command
answers, log lines) becomes Slack mrkdwn. Nothing that passes through here can mention, link
or format: every builder of a message, a Home view, a reminder, a summary or an answer uses it.

Slack's rules ("Formatting text for app surfaces"): ``&``, ``<`` and ``>`` are the control
characters and must be escaped as ``&amp;``, ``&lt;``, ``&gt;`` (that alone disarms ``<!here>``,
``<@U…>``, ``<#C…>`` and ``<url|label>``); ``*bold*``, ``_italic_``, ``~strike~`` and
`` `code` `` have no escape, so in prose their delimiters become look-alike characters (an
underscore inside a word, as in ``task_definition``, cannot open or close italics and stays);
inside a code span nothing is formatted, so only the backtick that would close it early, and the
line break that would end it, are replaced. Bidirectional overrides (which make ``gpj.exe`` read
as ``exe.jpg``) and other control characters are dropped. Limits: a section's text is at most
3,000 characters, a field's 2,000 (Block Kit reference); everything is cut to a budget *after*
escaping, so an ``&amp;`` is never cut in half. A bare URL stays as it is: Slack may link it,
but it shows where it goes (only a ``<url|label>`` hides that, and it cannot be written here).
"""

from __future__ import annotations

import re
import unicodedata

MAX_SECTION = 3000  # a section block's text
MAX_FIELD = 2000  # one of a section's fields
MAX_PLAIN = 150  # a header's or a button's plain_text (buttons take 75)

ELLIPSIS = "…"
BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
LOOK_ALIKE = {"*": "\u2217", "~": "\u223c", "`": "\u02cb", "_": "\u02cd"}
ZWJ = "\u200d"  # joins emoji sequences: kept
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def clean(text: str, newlines: bool = True) -> str:
    """``text`` without bidirectional overrides or control characters (tabs kept; line breaks
    kept, or made spaces when ``newlines`` is false)."""
    out = []
    for ch in str(text):
        if ch in "\r\n" or ch in "\u2028\u2029":
            out.append("\n" if newlines else " ")
        elif ch == "\t":
            out.append(ch)
        elif ch in BIDI or (unicodedata.category(ch) in ("Cc", "Cf", "Cs") and ch != ZWJ):
            continue
        else:
            out.append(ch)
    return "".join(out)


def escape(text: str) -> str:
    """Slack's three control characters escaped: the text cannot mention, ping or link."""
    return "".join(_ESCAPES.get(ch, ch) for ch in str(text))


def _cut(pieces: list[str], limit: int | None) -> str:
    """Join escaped pieces (one per input character), cut to ``limit`` characters with an
    ellipsis, never inside a piece."""
    if limit is None or sum(map(len, pieces)) <= limit:
        return "".join(pieces)
    out, size = [], 0
    for piece in pieces:
        if size + len(piece) > limit - len(ELLIPSIS):
            break
        out.append(piece)
        size += len(piece)
    return "".join(out) + ELLIPSIS


def _inside_word(text: str, i: int) -> bool:
    return 0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum()


def text(value: object, limit: int | None = None, newlines: bool = False) -> str:
    """Untrusted prose as mrkdwn that shows exactly it: escaped, unformattable, cut to
    ``limit``. Line breaks only with ``newlines``; no line can start a quote."""
    raw = clean(str(value)[: None if limit is None else limit + 1], newlines)
    pieces = []
    line_start = True  # a template may put the text at the start of a line
    for i, ch in enumerate(raw):
        if ch == ">" and line_start:
            pieces.append("\u200b&gt;")  # a line cannot start a quote
        elif ch in _ESCAPES:
            pieces.append(_ESCAPES[ch])
        elif ch in LOOK_ALIKE and not (ch == "_" and _inside_word(raw, i)):
            pieces.append(LOOK_ALIKE[ch])
        else:
            pieces.append(ch)
        line_start = ch == "\n" or (line_start and ch in " \t")
    return _cut(pieces, limit)


def code(value: object, limit: int | None = None) -> str:
    """Untrusted text in an inline code span that cannot be closed from inside: one line, no
    backtick; ``limit`` counts the span's own two backticks. Empty text is shown as ``-``."""
    raw = clean(str(value)[: None if limit is None else limit + 1], newlines=False).strip()
    if not raw:
        return "-"
    pieces = [_ESCAPES.get(ch) or (LOOK_ALIKE["`"] if ch == "`" else ch) for ch in raw]
    return "`" + _cut(pieces, None if limit is None else max(limit - 2, 2)) + "`"


def verbatim(line: object) -> str:
    """One line for a ``` code block: escaped, and no run of backticks that could close it."""
    escaped = escape(clean(str(line), newlines=False))
    return re.sub("`(?=`)", "`\u200b", escaped)


def plain(value: object, limit: int = MAX_PLAIN) -> str:
    """Untrusted text for a ``plain_text`` object (a header, a button): nothing is parsed
    there but emoji, so only cleaned and cut."""
    raw = clean(str(value), newlines=False).strip() or "-"
    return raw if len(raw) <= limit else raw[: limit - 1] + ELLIPSIS


def link(url: object, label: object, limit: int | None = None) -> str:
    """``<url|label>`` for an http(s) URL that cannot break out of it, the label as prose;
    anything else is shown as the label alone."""
    target = str(url or "")
    if not (target.isascii() and re.fullmatch(r"https?://[^\s<>|]+", target)):
        return text(label, limit)
    return f"<{escape(target)}|{text(label, limit)}>"


def fit(mrkdwn: str, limit: int) -> str:
    """Text that this module produced, cut to ``limit`` without splitting an entity, a link or
    an inline code span (a cut span is closed again)."""
    if len(mrkdwn) <= limit:
        return mrkdwn
    cut = mrkdwn[: limit - 2]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    if cut.rfind("<") > cut.rfind(">"):  # inside <url|label>: the whole link goes
        cut = cut[: cut.rfind("<")]
    if cut.count("`") % 2:
        cut += "`"
    return cut + ELLIPSIS


def code_block(plain: str) -> str:
    """Plain text (an answer, a usage message, log lines) in a ``` block it cannot leave."""
    return "```\n" + "\n".join(verbatim(line) for line in plain.split("\n")) + "\n```"

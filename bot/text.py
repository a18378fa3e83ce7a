"""Small text helpers every part shares, one of each: durations read and written, ages.

Escaping is not here: untrusted text is escaped where it enters a message, once per format
(:mod:`bot.slack.mrkdwn` for Slack, :mod:`bot.github.markdown` for GitHub)."""

from __future__ import annotations

import re
from datetime import datetime

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhdw]?)")


def parse_duration(text: str, *, whole: bool = False, unit_required: bool = False) -> float:
    """``"90s"``, ``"15m"``, ``"1.5h"``, ``"3d"``, ``"1w"`` (or a bare number of seconds) ->
    seconds. ``whole``: only whole numbers; ``unit_required``: no bare numbers. ValueError
    for anything else."""
    match = _DURATION.fullmatch(text.strip().lower())
    if not match or (whole and "." in match.group(1)) or (unit_required and not match.group(2)):
        raise ValueError(text)
    return float(match.group(1)) * UNITS[match.group(2) or "s"]


def duration(seconds: float) -> str:
    """How long something took or has been going: ``45s``, ``4m 05s``, ``2h 03m``, ``3d 4h``."""
    seconds = max(int(seconds), 0)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    if seconds < 2 * 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


def elapsed(start: datetime | None, end: datetime) -> str:
    """:func:`duration` from ``start`` to ``end``; ``-`` without a start."""
    return "-" if start is None else duration((end - start).total_seconds())


def span(seconds: float) -> str:
    """A duration as a setting or a flag takes it: the largest unit that divides it
    (``900`` -> ``15m``, ``86400`` -> ``1d``; days rather than weeks, which read better)."""
    for unit in ("d", "h", "m"):
        if seconds >= UNITS[unit] and seconds % UNITS[unit] == 0:
            return f"{int(seconds // UNITS[unit])}{unit}"
    return f"{int(seconds)}s"


def age(stamp: str | None, now: datetime) -> str:
    """How old an ISO 8601 ``stamp`` is, in one unit for a table: ``5m``, ``3h``, ``2d``."""
    if not stamp:
        return "-"
    seconds = int((now - datetime.fromisoformat(stamp)).total_seconds())
    if seconds < 3600:
        return f"{max(seconds, 0) // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def in_words(seconds: float) -> str:
    """A long stretch of time in words, for a sentence: ``40 minutes``, ``5 hours``, ``3 days``."""
    hours = int(seconds // 3600)
    if hours >= 48:
        return f"{hours // 24} days"
    if hours >= 1:
        return f"{hours} hours"
    return f"{int(seconds // 60)} minutes"

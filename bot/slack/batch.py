"""The summary of a scheduled sleep or wake: one message per channel for every environment of
the batch in that channel, posted when the batch starts and edited as it goes, instead of a
message (or an edit) per environment. Pure functions of their inputs, like bot/slack/blocks.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.events import EnvStatus
from bot.slack.blocks import MAX_BLOCKS, MAX_TEXT, Blocks, _note, _truncate
from bot.slack.mrkdwn import code, link, text
from bot.text import duration

# how each operation of a batch ended, by what its environment is now
DONE, FAILED, SKIPPED, UNDER_WAY = "done", "failed", "skipped", "under way"
FAILED_SHOWN = 20  # failures named one per line; the rest are counted
NAMES_SHOWN = 60  # environments that went well, named in the small print


@dataclass(frozen=True)
class Item:
    env: str
    url: str | None
    outcome: str
    error: str | None


def outcome(kind: str, row: dict[str, Any]) -> str:
    """How one operation of a ``kind`` batch went (a row of ``Store.batch_operations``)."""
    status = row["status"]
    if status in ("queued", "running", "waiting"):
        return UNDER_WAY
    if status == "failed":
        return FAILED
    wanted = EnvStatus.SLEEPING if kind == "sleep" else EnvStatus.RUNNING
    if status == "succeeded" and row.get("env_status") == wanted:
        return DONE
    return SKIPPED  # superseded by someone's request, or changed before its turn


def items_of(kind: str, rows: list[dict[str, Any]]) -> list[Item]:
    return [Item(r["env"], r.get("url"), outcome(kind, r), r.get("error")) for r in rows]


def batch_message(
    kind: str, items: list[Item], started: datetime, now: datetime, finished: bool
) -> tuple[str, Blocks]:
    """The summary of one channel's part of a batch."""
    counts = {o: sum(1 for i in items if i.outcome == o) for o in (DONE, FAILED, SKIPPED)}
    under_way = len(items) - sum(counts.values())
    took = duration(max((now - started).total_seconds(), 0.0))
    if kind == "sleep":
        title = ":crescent_moon: *Evening sleep*"
        verb, doing, done = "asleep", "going to sleep", "scaled to zero until the morning wake"
    else:
        title = ":sunrise: *Morning wake*"
        verb, doing, done = "ready", "waking up", "running again"
    parts = [f"{counts[DONE]} {verb}"]
    if counts[FAILED]:
        parts.append(f"{counts[FAILED]} failed")
    if counts[SKIPPED]:
        parts.append(f"{counts[SKIPPED]} skipped (changed meanwhile)")
    if under_way:
        parts.append(f"{under_way} {doing}")
    head = f"{len(items)} environment(s): " + ", ".join(parts)
    when = f"in {took}" if finished else f"for {took} so far"
    fallback = f"{'Evening sleep' if kind == 'sleep' else 'Morning wake'}: {head}"
    blocks: Blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{title}: {text(head)} ({when})"}}
    ]
    failed = [i for i in items if i.outcome == FAILED]
    if failed:
        lines: list[str] = []
        size = 0
        for item in failed[:FAILED_SHOWN]:
            line = f":x: {code(item.env, 100)}: {text(item.error or 'failed', 200)}"
            if size + len(line) + 1 > MAX_TEXT - 100:  # room for the count of the rest
                break
            lines.append(line)
            size += len(line) + 1
        if len(lines) < len(failed):
            lines.append(f"… and {len(failed) - len(lines)} more failed: `list` shows them")
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": _truncate("\n".join(lines))}}
        )
    ok = [i for i in items if i.outcome == DONE]
    if ok:
        names = [link(i.url, i.env) if i.url and kind != "sleep" else code(i.env) for i in ok]
        shown = names[:NAMES_SHOWN]
        rest = f" and {len(ok) - len(shown)} more" if len(ok) > len(shown) else ""
        blocks.append(_note(_truncate(f"{done.capitalize()}: " + ", ".join(shown) + rest, 2900)))
    return fallback, blocks[:MAX_BLOCKS]

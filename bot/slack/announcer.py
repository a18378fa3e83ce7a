"""The lifecycle's voice in Slack: reminders, the weekly summary, orphans, owners' notes."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.slack.blocks import orphan_message, reminder_message, summary_message, who
from bot.slack.notifier import MESSAGE_KIND
from bot.store import Store

log = logging.getLogger("revieee.slack")


class SlackAnnouncer:
    def __init__(self, client: WebClient, store: Store) -> None:
        self.client = client
        self.store = store

    def _post(self, what: str, channel: str, text: str, **extra: Any) -> bool:
        try:
            self.client.chat_postMessage(channel=channel, text=text, unfurl_links=False, **extra)
            return True
        except SlackApiError as exc:
            error = str(exc.response.get("error", "")) if exc.response else str(exc)
            log.warning("posting %s failed channel=%s error=%s", what, channel, error)
            self.store.audit("slack error", None, None, "scheduler", what=what, error=error)
            return False

    def remind(self, reminder: Any, now: datetime) -> bool:
        text, blocks = reminder_message(reminder, now)
        return self._post("reminder", reminder.channel, text, blocks=blocks)

    def summary(self, channel: str, summary: Any, now: datetime) -> bool:
        text, blocks = summary_message(summary)
        return self._post("summary", channel, text, blocks=blocks)

    def orphans(self, channel: str, result: Any) -> None:

        text, blocks = orphan_message(result)
        if self._post("orphans", channel, text, blocks=blocks):
            for orphan in result.new:
                self.store.update_orphan(
                    orphan.id, reported_at=datetime.now().astimezone().isoformat()
                )

    def tell_owner(self, env: dict[str, Any], text: str) -> None:
        """In the environment's thread (mentioning its owner), else to the owner directly."""
        ref = self.store.get_message(env["name"], MESSAGE_KIND)
        owner = env.get("owner")
        mention = f"{who(owner)} " if owner and who(owner).startswith("<@") else ""
        if ref is not None:
            self._post("owner note", ref["channel"], mention + text, thread_ts=ref["ts"])
        elif mention:
            self._post("owner note", str(owner), text)

"""The lifecycle of environments nobody looks after: reminders, expiry, sleep hours, the orphan
sweep and the weekly cost summary. Each method is one scheduled job's work (see bot/jobs.py),
takes the time from ``clock`` and is safe to run twice: what it did is in the store (a reminder's
``reminded_at``, a claimed period, an operation already queued), so a second run finds nothing
left to do.

An environment is *forgotten* when all its pull requests are merged or closed, or when nobody
deployed it, typed a command about it or clicked one of its buttons for ``forgotten_after``.
Every environment *expires* ``ttl`` after its last activity (``keep`` moves that later, ``keep
forever`` pins it); an expired one is stopped only once a reminder listed it at least
``reminder_grace`` before, so nobody loses an environment without being asked first.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from bot.config import Settings
from bot.core import Core, RequestError
from bot.cost import money
from bot.events import REMINDED, BatchUpdate, EnvStatus
from bot.store import Store, cost_so_far
from bot.text import in_words

log = logging.getLogger("revieee.lifecycle")

TOP = 5  # environments named in the weekly summary


@dataclass(frozen=True)
class Forgotten:
    """One line of a reminder."""

    name: str
    app: str
    branch: str
    url: str | None
    owner: str | None
    status: str
    created_at: datetime
    last_activity: datetime
    expires_at: datetime | None
    pr_state: str | None  # "merged", "closed", "open", or None without a pull request
    pr_url: str | None
    cost: float  # USD so far
    reason: str
    stops_at: datetime | None  # when it will be stopped if nobody keeps it


@dataclass(frozen=True)
class Reminder:
    channel: str
    items: list[Forgotten]


@dataclass(frozen=True)
class Summary:
    start: datetime
    end: datetime
    total: float
    hours: float
    environments: int  # that ran during the week
    top: list[tuple[str, str | None, float, float]]  # (env, owner, USD, hours)
    saved_auto_stop: float
    saved_sleep: float
    auto_stopped: int  # environments stopped by the scheduler during the week


class Announcer(Protocol):
    """Where the lifecycle speaks (Slack in production)."""

    def remind(self, reminder: Reminder, now: datetime) -> bool: ...

    def summary(self, channel: str, summary: Summary, now: datetime) -> bool: ...

    def tell_owner(self, env: dict[str, Any], text: str) -> None: ...

    def orphans(self, channel: str, result: Any) -> None: ...


def _when(stamp: str | None) -> datetime | None:
    return datetime.fromisoformat(stamp) if stamp else None


@dataclass
class Lifecycle:
    settings: Settings
    store: Store
    core: Core
    announcer: Announcer | None = None
    sweeper: Any = None  # bot.sweeper.Sweeper
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    # -- what is forgotten -----------------------------------------------------------------

    def expiry_of(self, row: dict[str, Any]) -> datetime | None:
        if row.get("pinned"):
            return None
        expires = _when(row.get("expires_at"))
        if expires is None:  # written before expiries existed
            last = _when(row.get("last_activity_at")) or _when(row["created_at"])
            assert last is not None
            expires = last + timedelta(seconds=self.settings.ttl)
        return expires

    def forgotten(
        self, now: datetime | None = None, rows: list[dict[str, Any]] | None = None
    ) -> list[Forgotten]:
        """Every forgotten environment (of ``rows``, by default every environment that is not
        stopped), oldest activity first."""
        now = now or self.clock()
        rows = self.store.lifecycle_envs() if rows is None else rows
        idle_limit = timedelta(seconds=self.settings.forgotten_after)
        grace = timedelta(seconds=self.settings.reminder_grace)
        out = []
        for row in rows:
            if row["status"] not in REMINDED or row.get("pinned"):
                continue
            created = _when(row["created_at"])
            assert created is not None
            last = _when(row.get("last_activity_at")) or created
            reminded = _when(row.get("reminded_at"))
            states = [s for s in (row.get("prs") or "").split(",") if s]
            pr_state = None
            if states:
                pr_state = (
                    "open" if "open" in states else ("merged" if "merged" in states else "closed")
                )
            reason = ""
            # a closed PR's environment is forgotten until someone shows interest after a reminder
            if pr_state in ("merged", "closed") and (reminded is None or last <= reminded):
                reason = f"its pull request was {pr_state}"
            elif now - last >= idle_limit:
                reason = f"no activity for {in_words((now - last).total_seconds())}"
            if not reason:
                continue
            expires = self.expiry_of(row)
            stops_at = None
            if expires is not None:
                stops_at = max(
                    expires, (reminded if reminded and reminded >= last else now) + grace
                )
            out.append(
                Forgotten(
                    name=row["name"],
                    app=row["app"],
                    branch=row["branch"],
                    url=row.get("url"),
                    owner=row.get("owner"),
                    status=row["status"],
                    created_at=created,
                    last_activity=last,
                    expires_at=expires,
                    pr_state=pr_state,
                    pr_url=(row.get("pr_urls") or "").split(",")[0] or None,
                    cost=cost_so_far(row, now),
                    reason=reason,
                    stops_at=stops_at,
                )
            )
        out.sort(key=lambda f: (f.last_activity, f.name))
        return out

    def _channel(self, row: dict[str, Any]) -> str | None:
        app = self.settings.apps.get(row["app"])
        return row.get("channel") or (app.channel if app else None) or self.settings.default_channel

    # -- jobs ----------------------------------------------------------------------------------

    def remind(self, now: datetime | None = None) -> list[Reminder]:
        """One message per channel listing its forgotten environments not yet reminded today
        (local date). An environment counts as reminded only once its message was posted."""
        now = now or self.clock()
        today = now.astimezone(self.settings.zone).date()
        rows = self.store.lifecycle_envs()
        by_name = {r["name"]: r for r in rows}
        groups: dict[str, list[Forgotten]] = defaultdict(list)
        for item in self.forgotten(now, rows):
            row = by_name[item.name]
            reminded = _when(row.get("reminded_at"))
            if reminded is not None and reminded.astimezone(self.settings.zone).date() == today:
                continue
            channel = self._channel(row)
            if channel is None:
                log.warning("no channel to remind env=%s: set default_channel", item.name)
                continue
            groups[channel].append(item)
        sent = []
        for channel, items in sorted(groups.items()):
            reminder = Reminder(channel, items)
            if self.announcer is None or not self.announcer.remind(reminder, now):
                continue  # not posted: not reminded (and so not stopped for it)
            with self.store.immediate():  # one transaction, not one commit per environment
                self.store.mark_reminded([i.name for i in items], now.isoformat())
                for item in items:
                    self.store.audit("reminded", None, item.name, "scheduler", channel=channel)
            sent.append(reminder)
        log.info("reminders sent channels=%d envs=%d", len(sent), sum(len(r.items) for r in sent))
        return sent

    def expire(self, now: datetime | None = None) -> list[str]:
        """Stop every expired environment that a reminder listed at least ``reminder_grace``
        ago (after its last activity); returns their names."""
        now = now or self.clock()
        grace = timedelta(seconds=self.settings.reminder_grace)
        busy = self.store.busy_envs()
        stopped = []
        for row in self.store.lifecycle_envs():
            if row["status"] == EnvStatus.DEPLOYING and row["name"] not in busy:
                self.core.executor.settle(row["name"])  # a deploy that did not wait
                continue
            if row["status"] not in REMINDED or row["name"] in busy:
                continue
            expires = self.expiry_of(row)
            reminded = _when(row.get("reminded_at"))
            last = _when(row.get("last_activity_at")) or _when(row["created_at"])
            assert last is not None
            if expires is None or expires > now or reminded is None:
                continue
            if reminded < last or now - reminded < grace:
                continue
            reason = (
                f"expired: no activity since {last.strftime('%Y-%m-%d %H:%M UTC')}, "
                f"reminded {reminded.strftime('%Y-%m-%d %H:%M UTC')}"
            )
            try:
                self.core.intake.request_stop(row["name"], source="scheduler", reason=reason)
            except RequestError as exc:
                log.warning("auto-stop refused env=%s: %s", row["name"], exc)
                continue
            stopped.append(row["name"])
        if stopped:
            log.info("expired environments stopped count=%d", len(stopped))
        self._nudge_batches(now)
        return stopped

    def _nudge_batches(self, now: datetime) -> None:
        """A batch whose last operations ended without a word (superseded while queued, a
        worker's crash) gets its summary brought up to date (and finished) here."""
        since = (now - timedelta(days=1)).isoformat()
        for batch in self.store.open_batches(since):
            self.core.intake.bus.publish(BatchUpdate(batch))

    def sleep(self, now: datetime | None = None) -> list[str]:
        """Outside work hours (``sleep = true``): scale every running environment to zero."""
        return self._scale_all("sleep", EnvStatus.RUNNING)

    def wake(self, now: datetime | None = None) -> list[str]:
        """At the start of a work day: scale sleeping environments back up."""
        return self._scale_all("wake", EnvStatus.SLEEPING)

    def _scale_all(self, kind: str, status: str) -> list[str]:
        """One batch: every environment in ``status`` (nothing under way on it) slept or woken
        together, their ``UpdateService`` calls paced (bot/aws.py), their rollouts watched
        together (bot/watcher.py), and one summary per channel."""
        if not self.settings.sleep:
            return []
        busy = self.store.busy_envs()
        envs = [
            row["name"]
            for row in self.store.lifecycle_envs()
            if row["status"] == status
            and row["name"] not in busy
            and row["app"] in self.settings.apps
        ]
        _, done = self.core.intake.request_batch(kind, envs)
        log.info("%s requested count=%d", kind, len(done))
        return done

    def summary(self, now: datetime | None = None) -> Summary:
        """The last seven days: what ran and cost, the top environments, what was saved."""
        end = now or self.clock()
        start = end - timedelta(days=7)
        totals = self.store.usage_totals(start=start.isoformat(), end=end.isoformat())
        owners = {r["name"]: r.get("owner") for r in self.store.lifecycle_envs()}
        running = [
            (env, owners.get(env), states["running"][1], states["running"][0])
            for env, states in totals.items()
            if "running" in states and states["running"][0] > 0
        ]
        running.sort(key=lambda item: (-item[2], item[0]))
        auto_stopped = self.store.auto_stopped_since(start)
        return Summary(
            start=start,
            end=end,
            total=sum(item[2] for item in running),
            hours=sum(item[3] for item in running),
            environments=len(running),
            top=running[:TOP],
            saved_auto_stop=sum(s.get("auto_stopped", (0, 0))[1] for s in totals.values()),
            saved_sleep=sum(s.get("sleeping", (0, 0))[1] for s in totals.values()),
            auto_stopped=len(auto_stopped),
        )

    def post_summary(self, now: datetime | None = None) -> Summary | None:
        """The weekly summary, once per ISO week, in the admin (or default) channel."""
        now = now or self.clock()
        channel = self.settings.admin_channel or self.settings.default_channel
        year, week, _ = now.astimezone(self.settings.zone).isocalendar()
        period = f"{year}-W{week:02d}"
        if channel is None or not self.store.claim_period("summary", period):
            return None
        summary = self.summary(now)
        if self.announcer is not None and not self.announcer.summary(channel, summary, now):
            self.store.release_period("summary", period)  # not posted: the next run tries again
            return None
        log.info("weekly summary posted period=%s total=%s", period, money(summary.total))
        return summary

    def sweep(self, now: datetime | None = None) -> Any:
        """Compare AWS with the store (bot/sweeper.py); report orphans to the admin channel
        and tell the owners of environments whose services vanished."""
        if self.sweeper is None:
            return None
        result = self.sweeper.sweep()
        channel = self.settings.admin_channel or self.settings.default_channel
        if self.announcer is not None:
            if channel and (result.new or result.deleted):
                self.announcer.orphans(channel, result)
            for row in result.vanished:
                self.announcer.tell_owner(
                    row,
                    f":warning: the ECS service(s) of `{row['name']}` vanished (deleted outside "
                    "revieee?); it is marked failed. Redeploy it, or stop it to clean up.",
                )
        return result

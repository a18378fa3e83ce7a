"""Requests: what a front door or the scheduler asks for, persisted as an operation and
announced on the bus (:class:`bot.events.Requested`). Fast (SQLite only): a chat front door
calls these in its request thread, before it answers."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bot import envsettings
from bot.config import AppConfig, Settings
from bot.core.queries import OverQuota, Queries, RequestError
from bot.events import BatchUpdate, Bus, EnvStatus, Requested
from bot.naming import env_name
from bot.store import Operation, Store

log = logging.getLogger("revieee.intake")


@dataclass
class Accepted:
    """A request the store took: its operation, the environment, and what a reply says."""

    operation: Operation
    env: str
    url: str
    superseded: list[int] = field(default_factory=list)
    note: str = ""


class Intake:
    """Deploy, stop, sleep, wake and keep requests."""

    def __init__(self, settings: Settings, store: Store, queries: Queries, bus: Bus) -> None:
        self.settings = settings
        self.store = store
        self.queries = queries
        self.bus = bus

    def request_deploy(
        self,
        branch: str,
        app: str | None = None,
        *,
        sha: str | None = None,
        requested_by: str | None = None,
        source: str = "cli",
        wait: bool = True,
        context: dict[str, Any] | None = None,
        set_: Mapping[str, str] | None = None,
        unset: Iterable[str] = (),
        block: Mapping[str, str] | None = None,
        exempt: bool = False,
    ) -> Accepted:
        """Persist a deploy of ``branch``; the environment is created or redeployed.

        ``context`` (e.g. the Slack channel and response URL) travels with the operation.
        ``set_``/``unset`` change the environment's own settings, ``block`` replaces those a
        pull request's description gave it (bot/envsettings.py); a setting that cannot be
        taken refuses the whole request (:class:`RequestError`), nothing changed. A new
        environment over the app's ``max_environments`` or ``max_environments_per_person``
        is refused (:class:`OverQuota`), unless ``exempt`` (admins, the terminal)."""
        try:
            app_cfg = self.settings.app(app)
        except KeyError as exc:
            raise RequestError(exc.args[0]) from None
        branch = branch.strip()
        if not branch:
            raise RequestError("a branch name is required")
        name = env_name(app_cfg.name, branch)
        url = self.settings.url_for(app_cfg.name, name, branch)
        # the count, the settings read and the writes they allow are one step: two deploys at
        # once cannot both take a quota's last place or lose one's settings
        with self.store.serialized():
            existing = self.store.get_env(name)
            fresh = existing is None or existing["status"] == EnvStatus.STOPPED
            if fresh and not exempt:
                self._within_quota(app_cfg, requested_by)
            fields: dict[str, Any] = {
                "app": app_cfg.name,
                "branch": branch,
                "url": url,
                **self._activity(None if fresh else existing),
            }
            changed: list[str] = []
            if set_ or unset or block is not None:
                try:
                    new, changed = envsettings.change(
                        envsettings.load((existing or {}).get("settings")),
                        self.settings.secret_keys,
                        set_=set_,
                        unset=unset,
                        block=block,
                        source=source,
                        by=requested_by,
                    )
                except envsettings.SettingError as exc:
                    raise RequestError(f"not deployed: {exc}") from None
                fields["settings"] = envsettings.dump(new)
            if fresh:
                fields.update(
                    status=EnvStatus.QUEUED.value,
                    owner=requested_by,
                    error=None,
                    pinned=0,
                    stopped_reason=None,
                    access_salt=secrets.token_urlsafe(12),  # a new secret link (bot/access.py)
                )
            self.store.upsert_env(name, **fields)
            params = {**(context or {}), "sha": sha, "wait": wait}
            op, superseded = self.store.enqueue(
                "deploy", name, app_cfg.name, branch, params, requested_by, source
            )
            self.store.audit(
                "deploy requested",
                requested_by,
                name,
                source,
                branch=branch,
                sha=sha,
                operation=op.id,
                superseded=superseded,
            )
            if changed:
                # the keys only: a value is no secret, but it needs no second copy either
                self.store.audit(
                    "settings changed", requested_by, name, source, operation=op.id, changes=changed
                )
        self._enqueued(op)
        return Accepted(op, name, url, superseded, ", ".join(changed))

    def _within_quota(self, app: AppConfig, who: str | None) -> None:
        """Raise :class:`OverQuota` when a new environment of ``app`` for ``who`` would be one
        too many (what is not stopped counts: a sleeping or failed one holds its place)."""
        limits: list[tuple[int, str | None, str]] = [
            (app.max_environments, None, "max_environments")
        ]
        if who:
            limits.append((app.max_environments_per_person, who, "max_environments_per_person"))
        for limit, owner, key in limits:
            if not limit:
                continue
            count = self.store.count_envs(app=app.name, owner=owner)
            if count < limit:
                continue
            oldest = self.store.list_envs(app=app.name, owner=owner)[::-1][:5]
            whose = "you have" if owner else f"{app.name} has"
            names = ", ".join(f"{r['name']} ({r['status']})" for r in oldest)
            raise OverQuota(
                f"not deployed: {whose} {count} environment(s) of {app.name} running, the most "
                f"{'one person may have' if owner else 'it may have'} ({key} = {limit}); "
                f"stop one first (the oldest: {names})",
                oldest,
            )

    def request_stop(
        self,
        env: str,
        *,
        requested_by: str | None = None,
        source: str = "cli",
        context: dict[str, Any] | None = None,
        reason: str | None = None,
    ) -> Accepted:
        """Persist a stop of the environment named ``env``; ``reason`` (the scheduler's: why it
        stops it) is shown in its thread and PR comment."""
        row = self.queries.find_env(env)
        if reason:
            context = {**(context or {}), "reason": reason, "auto": True}
        note = (
            "it was already stopped; checking nothing is left"
            if row["status"] == EnvStatus.STOPPED
            else ""
        )
        op, superseded = self.store.enqueue(
            "stop",
            row["name"],
            row["app"],
            row["branch"],
            dict(context or {}),
            requested_by,
            source,
        )
        self.store.audit(
            "stop requested",
            requested_by,
            row["name"],
            source,
            operation=op.id,
            superseded=superseded,
        )
        self._enqueued(op)
        return Accepted(op, row["name"], row["url"], superseded, note)

    def request_scale(
        self,
        env: str,
        kind: str,
        *,
        requested_by: str | None = None,
        source: str = "cli",
        context: dict[str, Any] | None = None,
        batch: int | None = None,
    ) -> Accepted:
        """Persist a ``sleep`` (scale to zero) or ``wake`` (scale back up) of ``env`` (part of
        the scheduler's ``batch``, if given)."""
        row = self.queries.find_env(env)
        if kind == "wake" and row["status"] != EnvStatus.SLEEPING:
            raise RequestError(f"{row['name']} is not sleeping (it is {row['status']})")
        if kind == "sleep" and row["status"] != EnvStatus.RUNNING:
            raise RequestError(f"{row['name']} is not running (it is {row['status']})")
        op, superseded = self.store.enqueue(
            kind,
            row["name"],
            row["app"],
            row["branch"],
            dict(context or {}),
            requested_by,
            source,
            batch=batch,
        )
        self.store.audit(f"{kind} requested", requested_by, row["name"], source, operation=op.id)
        self._enqueued(op)
        return Accepted(op, row["name"], row["url"], superseded)

    def request_batch(
        self, kind: str, envs: list[str], source: str = "scheduler"
    ) -> tuple[int | None, list[str]]:
        """Persist a ``sleep`` or ``wake`` of each of ``envs`` as one batch (summed up once per
        channel, not announced one environment at a time); returns the batch (None when
        nothing was requested) and the environments requested. One that cannot be (it
        changed meanwhile) is left out and logged."""
        batch: int | None = None
        done: list[str] = []
        for env in envs:
            if batch is None:
                batch = self.store.start_batch(kind)
            try:
                self.request_scale(env, kind, source=source, batch=batch)
            except RequestError as exc:
                log.warning("%s refused env=%s: %s", kind, env, exc)
                continue
            done.append(env)
        if batch is not None:
            self.bus.publish(BatchUpdate(batch))
        return batch, done

    def keep(
        self,
        env: str,
        seconds: float | None = None,
        *,
        forever: bool = False,
        requested_by: str | None = None,
        source: str = "cli",
    ) -> str | None:
        """Keep the environment: its expiry moves ``seconds`` (default ``keep_for``) later, from
        now if it has passed; ``forever`` pins it (never reminded or stopped by the
        scheduler). A duration given to a pinned environment unpins it. Returns the new expiry
        (ISO 8601, UTC), None when pinned."""
        row = self.queries.find_env(env)
        if row["status"] == EnvStatus.STOPPED:
            raise RequestError(f"{row['name']} is stopped; deploy it again instead")
        now = self.queries.clock()
        if forever:
            self.store.upsert_env(
                row["name"], pinned=1, expires_at=None, last_activity_at=now.isoformat()
            )
            self.store.audit("pinned", requested_by, row["name"], source)
            return None
        seconds = seconds or self.settings.keep_for
        current = (
            datetime.fromisoformat(row["expires_at"])
            if row.get("expires_at") and not row.get("pinned")
            else now
        )
        expires = (max(current, now) + timedelta(seconds=seconds)).isoformat(timespec="seconds")
        self.store.upsert_env(
            row["name"], expires_at=expires, pinned=0, last_activity_at=now.isoformat()
        )
        self.store.audit("kept", requested_by, row["name"], source, expires_at=expires)
        return expires

    def touch(self, row: dict[str, Any]) -> None:
        """Someone used the environment ``row`` (as :meth:`Queries.find_env` returned it): it
        is not forgotten, and its expiry moves to ``ttl`` from now if that is later."""
        if row["status"] != EnvStatus.STOPPED:
            self.store.upsert_env(row["name"], **self._activity(row))

    def _activity(self, row: dict[str, Any] | None) -> dict[str, Any]:
        now = self.queries.clock()
        fields: dict[str, Any] = {"last_activity_at": now.isoformat()}
        if row is not None and row.get("pinned"):
            return fields
        expires = now + timedelta(seconds=self.settings.ttl)
        if row is not None and row.get("expires_at"):
            expires = max(expires, datetime.fromisoformat(row["expires_at"]))
        fields["expires_at"] = expires.isoformat(timespec="seconds")
        return fields

    def _enqueued(self, op: Operation) -> None:
        log.info("operation queued op=%s kind=%s env=%s", op.id, op.kind, op.env)
        self.bus.publish(Requested(op))

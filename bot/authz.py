"""Who may do what. Checked for every command, button and reaction, whatever the front door.

Per app (``deployers``, ``stoppers``, ``admins``, ``anyone_can_stop``) plus global ``admins``;
entries are Slack user ids or user-group ids (``S...``, resolved through a :class:`Members`).
Defaults: anyone may deploy; an environment may be stopped (or kept) by its owner, an admin, a
listed stopper, or anyone when ``anyone_can_stop`` is set.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from bot.config import AppConfig, Settings


class Members(Protocol):
    """Resolves a user group to its members."""

    def group_members(self, group_id: str) -> set[str]: ...


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""  # plain text, naming users and groups by id
    mentions: tuple[str, ...] = ()  # the ids in ``reason`` a chat front door may mention


ALLOWED = Decision(True)
SLACK_USER = re.compile(r"[UW][A-Z0-9]{1,23}")  # U0ALICE; W... on Enterprise Grid
SLACK_GROUP = re.compile(r"S[A-Z0-9]{1,23}")  # a user group


def is_slack_user(user: str | None) -> bool:
    """Whether ``user`` is a Slack user id (rather than a GitHub login or a terminal user)."""
    return bool(user) and SLACK_USER.fullmatch(str(user)) is not None


def mention(ids: Iterable[str]) -> str:
    """Users and user groups by id, in plain text (Slack mentions them: ``Decision.mentions``)."""
    return ", ".join(ids)


class Authorizer:
    def __init__(self, settings: Settings, members: Members | None = None) -> None:
        self.settings = settings
        self.members = members

    def _member(self, user: str | None, ids: Iterable[str]) -> bool:
        if not user:
            return False
        for entry in ids:
            if entry == user:
                return True
            if entry.startswith("S") and self.members is not None:
                try:
                    if user in self.members.group_members(entry):
                        return True
                except Exception:  # a lookup failure never grants anything
                    continue
        return False

    def is_admin(self, user: str | None, app: AppConfig | None) -> bool:
        ids = list(self.settings.admins) + (list(app.admins) if app else [])
        return self._member(user, ids)

    def can_deploy(self, user: str | None, app: AppConfig) -> Decision:
        if not app.deployers or self._member(user, app.deployers) or self.is_admin(user, app):
            return ALLOWED
        return Decision(
            False,
            f"only {mention(app.deployers)} (or an admin) may deploy {app.name}",
            tuple(app.deployers),
        )

    def can_stop(self, user: str | None, env: dict[str, Any], verb: str = "stop") -> Decision:
        app = self.settings.apps.get(env["app"])
        if app is not None and app.anyone_can_stop:
            return ALLOWED
        if user and user == env.get("owner"):
            return ALLOWED
        if self.is_admin(user, app) or (app is not None and self._member(user, app.stoppers)):
            return ALLOWED
        owner = env.get("owner")
        who = f"its owner ({mention([owner])})" if owner else "its owner"
        return Decision(
            False, f"only {who} or an admin may {verb} {env['name']}", (owner,) if owner else ()
        )


class CachedGroups:
    """Group members through ``fetch`` (e.g. Slack's ``usergroups.users.list``), cached."""

    def __init__(self, fetch: Callable[[str], set[str]], ttl: float = 300.0) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._cache: dict[str, tuple[float, set[str]]] = {}
        self._lock = threading.Lock()

    def group_members(self, group_id: str) -> set[str]:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(group_id)
        if hit and now - hit[0] < self._ttl:
            return hit[1]
        members = self._fetch(group_id)
        with self._lock:
            self._cache[group_id] = (now, members)
        return members

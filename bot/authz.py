"""Who may do what: one gate, :meth:`Authorizer.check`, asked by every front door (Slack's
slash command, buttons and reactions, GitHub PR comments, the terminal) for every command,
button and reaction.

Identities are per front door: a Slack user id (``U...``/``W...``), a GitHub login, or the
terminal's user. The lists of an app (``deployers``, ``stoppers``, ``admins``) and the global
``admins`` hold Slack user ids, Slack user-group ids (``S...``, resolved through a
:class:`Members`) and GitHub logins written ``github:LOGIN`` (case-insensitive).

- The terminal may do everything: whoever runs it holds the AWS credentials and the database.
- GitHub: only people with write access to the repository (``admin``, ``maintain``,
  ``write``) reach revieee at all; then the lists apply as they do on Slack.
- Deploy, wake and logs: anyone, unless the app lists ``deployers`` (then those and admins).
- Stop and keep: the environment's owner, an admin, a listed stopper, or anyone when
  ``anyone_can_stop`` is set; keeping forever takes an admin when ``pin_requires_admin`` is
  set and admins are.
- Deleting an orphan (the admin channel's button): admins, when any are set.
- List, status and help: anyone who reached revieee.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.config import AppConfig, Settings
from commands.verbs import Command, Deploy, Keep, Logs, Stop, Wake

GITHUB = "github"
TERMINAL = "cli"
WRITE_PERMISSIONS = ("admin", "maintain", "write")  # GitHub's repository permissions


class Members(Protocol):
    """Resolves a user group to its members."""

    def group_members(self, group_id: str) -> set[str]: ...


@dataclass(frozen=True)
class Caller:
    """Who runs a command, from where. ``context`` travels with the operation (e.g. the Slack
    channel to report to); ``permission`` is a GitHub caller's permission on the repository."""

    actor: str | None
    source: str
    context: dict[str, Any] = field(default_factory=dict)
    fast: bool = False  # answer from the store only: chat front doors must answer at once
    permission: str | None = None


@dataclass(frozen=True)
class DeleteOrphan:
    """The admin channel's Delete button on an orphaned AWS resource."""

    orphan_id: str


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

    def check(
        self,
        caller: Caller,
        command: Command | DeleteOrphan | None = None,
        env: dict[str, Any] | None = None,
    ) -> Decision:
        """Whether ``caller`` may run ``command`` (on the environment ``env``, as the store has
        it, for the verbs that name one). Without a command: whether the caller may use
        revieee from its front door at all (GitHub asks this before it parses a comment)."""
        if caller.source == TERMINAL:
            return ALLOWED
        if caller.source == GITHUB and caller.permission not in WRITE_PERMISSIONS:
            repository = caller.context.get("repository") or "the repository"
            return Decision(
                False,
                f"only people with write access to {repository} can run /revieee commands "
                f"(you have {caller.permission or 'no'} permission)",
            )
        user = _identity(caller)
        app = self.settings.apps.get(env["app"]) if env else None
        match command:
            case Deploy(app=name):
                try:
                    return self._deploy(user, self.settings.app(name))
                except KeyError:
                    return ALLOWED  # the request names no app: the core says so
            case Wake() | Logs() if env is not None:
                if app is None:  # whose lists would say who may: nobody's
                    return Decision(
                        False, f"app {env['app']!r} of {env['name']} is no longer configured"
                    )
                decision = self._deploy(user, app)
                if isinstance(command, Logs) and not decision.allowed:
                    reason = f"{decision.reason} (reading its logs takes the same right)"
                    return Decision(False, reason, decision.mentions)
                return decision
            case Stop() if env is not None:
                return self._stop(caller.actor, user, env, "stop")
            case Keep(duration=duration) if env is not None:
                decision = self._stop(caller.actor, user, env, "keep")
                if not decision.allowed or duration != "forever":
                    return decision
                admins = list(self.settings.admins) + list(app.admins if app else ())
                guarded = self.settings.pin_requires_admin and admins
                if guarded and not self._admin(user, app):
                    return Decision(
                        False, f'only an admin may keep {env["name"]} forever; try "keep ENV 1w"'
                    )
                return ALLOWED
            case DeleteOrphan():
                apps = list(self.settings.apps.values())
                admins = list(self.settings.admins) + [a for p in apps for a in p.admins]
                if not admins or self._admin(user, None) or any(self._admin(user, p) for p in apps):
                    return ALLOWED
                return Decision(False, "only an admin may delete")
        return ALLOWED

    def _member(self, user: str | None, ids: Iterable[str]) -> bool:
        if not user:
            return False
        github = user.startswith("github:")  # logins are case-insensitive, Slack ids are not
        for entry in ids:
            if entry == user or (github and entry.lower() == user.lower()):
                return True
            if entry.startswith("S") and self.members is not None:
                try:
                    if user in self.members.group_members(entry):
                        return True
                except Exception:  # a lookup failure never grants anything
                    continue
        return False

    def exempt_from_quotas(self, caller: Caller, app: AppConfig) -> bool:
        """Whether ``caller``'s deploys of ``app`` skip its ``max_environments`` limits: the
        terminal (it may do everything) and admins."""
        if caller.source == TERMINAL:
            return True
        return self._admin(_identity(caller), app)

    def _admin(self, user: str | None, app: AppConfig | None) -> bool:
        ids = list(self.settings.admins) + (list(app.admins) if app else [])
        return self._member(user, ids)

    def _deploy(self, user: str | None, app: AppConfig) -> Decision:
        if not app.deployers or self._member(user, app.deployers) or self._admin(user, app):
            return ALLOWED
        return Decision(
            False,
            f"only {mention(app.deployers)} (or an admin) may deploy {app.name}",
            tuple(app.deployers),
        )

    def _stop(
        self, actor: str | None, user: str | None, env: dict[str, Any], verb: str
    ) -> Decision:
        app = self.settings.apps.get(env["app"])
        if app is not None and app.anyone_can_stop:
            return ALLOWED
        if actor and actor == env.get("owner"):
            return ALLOWED
        if self._admin(user, app) or (app is not None and self._member(user, app.stoppers)):
            return ALLOWED
        owner = env.get("owner")
        who = f"its owner ({mention([owner])})" if owner else "its owner"
        return Decision(
            False, f"only {who} or an admin may {verb} {env['name']}", (owner,) if owner else ()
        )


def _identity(caller: Caller) -> str | None:
    """How the lists name the caller: a Slack id as it is, a GitHub login as ``github:LOGIN``."""
    if caller.actor and caller.source == GITHUB:
        return f"github:{caller.actor}"
    return caller.actor


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

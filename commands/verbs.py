"""The verbs people type. Each is a typed command; its docstring is its help text.

The first docstring line is the usage; the rest is the description shown by ``help VERB``.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

MAX_KEEP = 90 * 86400  # the longest ``keep ENV <duration>`` (longer: ``forever``)
MAX_SINCE = 7 * 86400  # how far back ``logs --since`` may look
MAX_LINES = 5000  # how many lines ``logs --lines`` may ask for
PAGE_SIZE = 40  # environments on a page of ``list`` (a page's Block Kit: about 10 blocks)
MAX_PAGE = 100_000  # the highest ``list --page``


@dataclass(frozen=True)
class Deploy:
    """deploy BRANCH [--app APP] [--sha SHA] [--wait] [--set KEY=VALUE] [--unset KEY]
    Deploy BRANCH as a review environment, or redeploy it if it exists (same URL).
    --app picks the app when several are configured; --sha pins the commit; --wait waits
    until the services are stable and reports the result. --set KEY=VALUE (as often as
    needed) gives this environment its own value of an environment variable, kept across
    redeploys until --unset KEY; secrets are refused (they belong in the task definition's
    secrets). The app's release tasks (migrations) run before the new version takes traffic;
    its on_create tasks (a database of its own) on the first deploy."""

    branch: str
    app: str | None = None
    sha: str | None = None
    wait: bool = False
    set: tuple[str, ...] = field(default=(), metadata={"repeat": True})
    unset: tuple[str, ...] = field(default=(), metadata={"repeat": True})


@dataclass(frozen=True)
class Stop:
    """stop ENV [--app APP]
    Stop the environment ENV (its name, or its branch) and remove its AWS resources, after
    the app's on_stop tasks (dropping its database). Stopping one that is already gone
    succeeds and says so."""

    env: str
    app: str | None = None


@dataclass(frozen=True)
class List:
    """list [--mine] [--app APP] [--all] [--page N]
    List running environments, newest first, 40 a page; --mine only yours, --app only one
    app's, --all includes stopped ones, --page N shows page N (default 1)."""

    mine: bool = False
    app: str | None = None
    all: bool = False
    page: int = field(default=1, metadata={"min": 1, "max": MAX_PAGE})

    def at_page(self, page: int) -> str:
        """This listing's command line at ``page``: ``list --app shop --page 3``."""
        words = ["list"]
        if self.mine:
            words.append("--mine")
        if self.app:
            words += ["--app", self.app]
        if self.all:
            words.append("--all")
        return shlex.join([*words, "--page", str(page)])


@dataclass(frozen=True)
class Status:
    """status ENV [--app APP]
    Show one environment: status, URL, commit, its own settings, its last lifecycle tasks,
    recent deployments and what ECS says now."""

    env: str
    app: str | None = None


@dataclass(frozen=True)
class Keep:
    """keep ENV [3d|1w|forever] [--app APP]
    Keep the environment ENV longer: its expiry moves the given time later (default
    `keep_for`, 3 days; up to 90d; from now if it already expired). `forever` pins it: never
    reminded or stopped by the scheduler (an admin's call when admins are configured). A time
    given to a pinned environment unpins it."""

    env: str
    duration: str | None = field(default=None, metadata={"positional": True})
    app: str | None = None


@dataclass(frozen=True)
class Wake:
    """wake ENV [--app APP]
    Wake a sleeping environment (scaled to zero outside work hours) now; it sleeps again at
    the end of the work day. A deploy wakes it too."""

    env: str
    app: str | None = None


@dataclass(frozen=True)
class Logs:
    """logs ENV [--app APP] [--service S] [--since 15m] [--lines N]
    Show the newest log lines of the environment's containers, stopped tasks included.
    They come from CloudWatch Logs (containers using the awslogs driver): the newest --lines
    (default 100, at most 5000) of the last --since (30s, 15m, 2h, 1d; default 15m, at most 7d),
    of every service or only of --service S. Reading logs takes the right to deploy the app."""

    env: str
    app: str | None = None
    service: str | None = None
    since: int = field(default=900, metadata={"duration": True, "max": MAX_SINCE})
    lines: int = field(default=100, metadata={"min": 1, "max": MAX_LINES})


@dataclass(frozen=True)
class Help:
    """help [VERB]
    Show what revieee can do, or the details of one verb."""

    verb: str | None = field(default=None, metadata={"positional": True})


Command = Deploy | Stop | List | Status | Keep | Wake | Logs | Help

VERBS: dict[str, type[Command]] = {
    "deploy": Deploy,
    "stop": Stop,
    "list": List,
    "status": Status,
    "keep": Keep,
    "wake": Wake,
    "logs": Logs,
    "help": Help,
}


def verb_of(cmd: Command) -> str:
    """The verb that parses into ``cmd``."""
    return next(name for name, kind in VERBS.items() if isinstance(cmd, kind))


def usage(verb: str) -> str:
    return (VERBS[verb].__doc__ or verb).splitlines()[0].strip()


def description(verb: str) -> str:
    lines = (VERBS[verb].__doc__ or "").splitlines()[1:]
    return " ".join(line.strip() for line in lines if line.strip())

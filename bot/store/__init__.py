"""The SQLite store (through sqlite-utils): environments, deployments, operations, chat message
references, audit events, processed delivery ids and the rest of revieee's state.

One database file in WAL mode; one connection per thread (a ``sqlite_utils.Database`` must not be
shared across threads), each with a busy timeout. The schema version is SQLite's ``user_version``;
forward migrations run at start, each in its own transaction. :class:`Store` is the one class
the rest of revieee uses; it is made of a mixin per aggregate over the shared connection:

- ``connection``: the connection per thread, the write lock (``writes``, ``immediate``), migrating
- ``migrations``: ``MIGRATIONS`` and ``SCHEMA_VERSION``
- ``environments``: review environments, their listings, the lifecycle's view of them
- ``operations``: operations (the ``Operation`` record) and the deployments they make
- ``batches``: the scheduled sleep and wake of many environments, and their summaries
- ``inbox``: webhook deliveries and delayed actions, delivery ids seen
- ``messages``: where chat messages about an environment are, and the audit trail
- ``github``: pull requests, CI runs, revieee's GitHub deployments
- ``builds``: the images revieee built, and which environments still use them
- ``usage``: usage intervals (costs) and periodic jobs' claimed periods
- ``orphans``: AWS resources left without an environment
- ``stats``: counts for ``/metrics``
- ``task_runs``: the one-off tasks of environments (on_create, release, on_stop)

Only what this module exports is for use outside the package.
"""

from __future__ import annotations

from bot.store.batches import Batches
from bot.store.builds import Builds
from bot.store.connection import Connection, now_iso, writes
from bot.store.environments import Environments, cost_so_far
from bot.store.github import GitHub
from bot.store.inbox import Inbox
from bot.store.messages import Messages
from bot.store.migrations import MIGRATIONS, SCHEMA_VERSION
from bot.store.operations import Operation, Operations
from bot.store.orphans import Orphans
from bot.store.stats import Stats
from bot.store.task_runs import TaskRuns
from bot.store.usage import Usage

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Operation",
    "Store",
    "cost_so_far",
    "now_iso",
    "writes",
]


class Store(
    Environments,
    Operations,
    Batches,
    Inbox,
    Messages,
    GitHub,
    Builds,
    Usage,
    Orphans,
    Stats,
    TaskRuns,
    Connection,
):
    """Thread-safe access to the database file at ``path``: every table's methods."""

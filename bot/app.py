"""The composition root: every client, the store, the engine and the worker pool are built here,
once, and handed to the code that needs them. Nothing builds a client at import time."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from bot.aws import AwsClients, build_clients, pace_ecs_writes
from bot.config import Secrets, Settings
from bot.core import Core, build_core
from bot.engine import CommitResolver, Engine
from bot.events import BatchUpdate, Bus, Requested
from bot.github.forge import GitHubForge
from bot.metrics import AwsErrors
from bot.operations import OperationRunner
from bot.store import Operation, Store
from bot.watcher import RolloutWatcher


@dataclass
class Runtime:
    settings: Settings
    secrets: Secrets
    clients: AwsClients
    store: Store
    engine: Engine
    bus: Bus
    core: Core
    runner: OperationRunner
    forge: GitHubForge | None = None
    aws_errors: AwsErrors | None = None  # failed AWS calls, for /metrics

    def close(self) -> None:
        self.runner.shutdown(drain=True)
        self.store.close()


def build(
    settings: Settings,
    secrets: Secrets | None = None,
    clients: AwsClients | None = None,
    commits: CommitResolver | None = None,
    environ: Mapping[str, str] | None = None,
) -> Runtime:
    """Wire revieee together from validated settings. With GitHub credentials in the
    environment, branches' commits are resolved through GitHub."""
    environ = os.environ if environ is None else environ
    secrets = secrets or Secrets.from_environ(environ)
    forge = GitHubForge.from_secrets(
        secrets, environ.get("REVIEEE_GITHUB_API_URL"), settings.github_write_interval
    )
    clients = clients or build_clients(
        settings.aws_retry_mode, settings.aws_max_attempts, pool_size=max(10, settings.workers + 4)
    )
    pace_ecs_writes(clients, settings.ecs_writes_per_second)
    store = Store(settings.database)
    engine = Engine(clients, settings)
    bus = Bus()
    core = build_core(
        settings,
        store,
        engine,
        bus,
        commits or forge,
        routing_secret=secrets.get("REVIEEE_PROXY_SECRET"),
    )

    def ended(op: Operation) -> None:  # a batch's summary follows its operations
        if op.batch is not None:
            bus.publish(BatchUpdate(op.batch))

    runner = OperationRunner(
        store,
        core.executor.execute,
        workers=settings.workers,
        max_attempts=settings.max_attempts,
        poll_interval=min(1.0, settings.poll_interval * 4),
        watcher=RolloutWatcher(settings, store, engine, core.executor, ended),
        ended=ended,
    )
    bus.subscribe(Requested, lambda _event: runner.wake())  # notifiers subscribe as they start
    return Runtime(
        settings, secrets, clients, store, engine, bus, core, runner, forge, AwsErrors(clients)
    )

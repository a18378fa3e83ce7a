"""``list`` with 10,000 environments in the store.

Fills a temporary SQLite store (the real schema, through :class:`bot.store.Store`) with 10,000
environments of several apps, owners and statuses, then times the store query alone and the
whole ``list`` command as every front door runs it after start-up (parse, query a page and
count, format), with ``--mine``, ``--app``, ``--all`` and ``--page`` (the first page, one in the
middle, the last), then what every row cost before ``list`` paged (query and format them all).
No AWS call is made; no moto server is needed.

    python bench/bench_list.py [--envs 10000] [--runs 30]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot import sandbox
from bot.aws import build_clients
from bot.config import Settings
from bot.core import build_core
from bot.engine import Engine
from bot.events import Bus
from bot.naming import env_name
from bot.slack.blocks import list_blocks
from bot.store import Store
from commands.parser import parse
from commands.run import Caller, Reply, format_list, run
from commands.verbs import PAGE_SIZE

GOAL_MS = 20.0  # a page of ``list``, whichever page (every row, before it paged: 100 ms)
APPS = ("shop", "blog", "admin", "docs")
STATUSES = (
    ("running", 80),
    ("stopped", 8),
    ("failed", 5),
    ("deploying", 3),
    ("queued", 2),
    ("stopping", 2),
)
COLUMNS = (
    "name",
    "app",
    "branch",
    "status",
    "url",
    "owner",
    "sha",
    "services",
    "error",
    "created_at",
    "updated_at",
    "last_activity_at",
    "expires_at",
)


def rows(count: int, settings: Settings, rng: random.Random) -> list[tuple[Any, ...]]:
    """``count`` environment rows, as the store's columns, in a realistic mix."""
    now = datetime.now(UTC)
    owners = [f"U{n:04d}" for n in range(60)] + [None]
    statuses = [s for s, _ in STATUSES]
    weights = [w for _, w in STATUSES]
    words = ("checkout", "search", "login", "cart", "billing", "fix", "refactor", "ui", "api")
    out = []
    for i in range(count):
        app = APPS[i % len(APPS)] if i % 10 else APPS[0]
        branch = f"{rng.choice(('feature', 'fix', 'chore'))}/JIRA-{i}-{rng.choice(words)}"
        name = env_name(app, branch)
        status = rng.choices(statuses, weights)[0]
        created = now - timedelta(seconds=rng.randint(60, 90 * 86400))
        stamp = created.isoformat(timespec="milliseconds")
        out.append(
            (
                name,
                app,
                branch,
                status,
                settings.url_for(app, name, branch),
                rng.choice(owners),
                sandbox.fake_sha(branch),
                None,
                "waiting for the services to become stable: not stable after 600s"
                if status == "failed"
                else None,
                stamp,
                stamp,
                stamp,
                None,
            )
        )
    return out


def fill(store: Store, data: list[tuple[Any, ...]]) -> None:
    sql = (
        f"insert into environments ({', '.join(COLUMNS)}) values ({', '.join('?' * len(COLUMNS))})"
    )
    with store.immediate() as db:
        db.conn.executemany(sql, data)


def median_ms(fn: Callable[[], Any], runs: int, warmup: int = 3) -> tuple[float, Any]:
    result = None
    for _ in range(warmup):
        result = fn()
    took = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        took.append((time.perf_counter() - start) * 1000)
    return statistics.median(took), result


def row_count(result: Any, formatted: int) -> int:
    if isinstance(result, Reply):
        return int(result.data.get("count", 0))
    return len(result) if isinstance(result, list) else formatted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()

    seeded = sandbox.Seeded(
        vpc="vpc-1", subnets=("subnet-1",), security_groups=("sg-1",), namespace_id="ns-1"
    )
    # Clients are built (as at start-up) but never called: point them nowhere.
    nowhere = {**sandbox.FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    with tempfile.TemporaryDirectory() as tmp, sandbox.patched_environ(nowhere):
        settings = sandbox.sandbox_settings(seeded, str(Path(tmp) / "list.db"))
        store = Store(settings.database)
        core = build_core(settings, store, Engine(build_clients("standard", 1), settings), Bus())
        data = rows(args.envs, settings, random.Random(7))
        start = time.perf_counter()
        fill(store, data)
        inserted = (time.perf_counter() - start) * 1000
        owner = "U0007"

        def command(line: str, actor: str | None = owner) -> Callable[[], Reply]:
            return lambda: run(parse(line), core, Caller(actor, "cli"))

        active = store.list_envs()
        pages = -(-len(active) // PAGE_SIZE)
        middle, last = pages // 2 + 1, pages

        def slack(line: str) -> Callable[[], Reply]:
            """The command as Slack answers it: its page as Block Kit too."""

            def answer() -> Reply:
                reply = run(parse(line), core, Caller(owner, "slack"))
                data = reply.data
                list_blocks(data["rows"], now, total=data["total"], pages=data["pages"])
                return reply

            return answer

        now = datetime.now(UTC)
        cases: list[tuple[str, Callable[[], Any]]] = [
            ("Store.list_envs(limit, offset) page 1", lambda: store.list_envs(limit=PAGE_SIZE)),
            (
                f"Store.list_envs(limit, offset) page {middle}",
                lambda: store.list_envs(limit=PAGE_SIZE, offset=(middle - 1) * PAGE_SIZE),
            ),
            ("Store.count_envs()", lambda: store.count_envs()),
            ("list        (page 1: parse + query + count + format)", command("list")),
            (f"list --page {middle}  (the middle)", command(f"list --page {middle}")),
            (f"list --page {last}  (the last)", command(f"list --page {last}")),
            (f"list --page {middle} + Block Kit (Slack)", slack(f"list --page {middle}")),
            ("list --mine", command("list --mine")),
            ("list --app blog", command("list --app blog")),
            ("list --app blog --page 29", command("list --app blog --page 29")),
            ("list --mine --app shop", command("list --mine --app shop")),
            ("list --all", command("list --all")),
            ("list --all --page 125", command("list --all --page 125")),
            ("every row: Store.list_envs()", lambda: store.list_envs()),
            ("every row: Queries.list_envs()", lambda: core.queries.list_envs()),
            ("every row: format_list(rows) alone", lambda: format_list(active)),
            (
                "every row: query + format",
                lambda: format_list(list(core.queries.list_envs())),
            ),
        ]
        results = []
        for label, fn in cases:
            ms, result = median_ms(fn, args.runs)
            results.append((label, ms, row_count(result, len(active))))
        store.close()

    print(
        f"{args.envs} environments ({len(active)} not stopped), {len(APPS)} apps, 61 owners; "
        f"inserted in {inserted:.0f} ms"
    )
    print(f"median of {args.runs} runs after 3 warm-up runs\n")
    width = max(len(label) for label, _, _ in results)
    print(f"{'what':<{width}}  {'median ms':>10}  {'rows':>6}")
    for label, ms, count in results:
        print(f"{label:<{width}}  {ms:>10.1f}  {count:>6}")
    by_label = {label: ms for label, ms, _ in results}
    first = by_label["list        (page 1: parse + query + count + format)"]
    deep = by_label[f"list --page {middle}  (the middle)"]
    every = by_label["every row: query + format"]
    print(
        f"\ngoal: < {GOAL_MS:.0f} ms a page (page 1: {first:.1f} ms, page {middle}: {deep:.1f} ms)"
    )
    print(f"every row, queried and formatted (list before it paged): {every:.1f} ms")


if __name__ == "__main__":
    main()

"""The connection to the database file: one per thread, the process's write lock, migrations."""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from bot.store.migrations import MIGRATIONS, SCHEMA_VERSION

BUSY_TIMEOUT_MS = 10_000


def column_name(name: str) -> str:
    """A column name from our own code, checked before it is put into SQL."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"not a column name: {name!r}")
    return name


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def writes(method: Callable[..., Any]) -> Callable[..., Any]:
    """A Store method that writes: it holds the process's write lock (``immediate`` takes it
    too). tests/test_store.py checks that every method that writes says so, or uses
    ``immediate``."""

    @functools.wraps(method)
    def locked(self: Connection, *args: Any, **kwargs: Any) -> Any:
        with self._write_lock:
            return method(self, *args, **kwargs)

    locked.writes = True  # type: ignore[attr-defined]
    return locked


class Connection:
    """Thread-safe access to the database file at ``path`` (migrated on opening)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._local = threading.local()
        # Writers of this process take turns on a lock of ours: SQLite's own busy handler makes
        # a waiting writer sleep (1, 2, 5, 10 ... 100 ms), which showed as 100-900 ms tails in
        # webhook and slash-command latency. Other processes are still kept out by SQLite.
        self._write_lock = threading.RLock()
        self._migrate()

    @property
    def db(self) -> sqlite_utils.Database:
        db = getattr(self._local, "db", None)
        if db is None:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            db = sqlite_utils.Database(conn)
            self._local.db = db
        return db

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.conn.close()
            self._local.db = None

    @contextmanager
    def immediate(self) -> Iterator[sqlite_utils.Database]:
        """A write transaction that takes the write lock at once (safe across processes)."""
        db = self.db
        with self._write_lock:
            db.conn.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.conn.execute("ROLLBACK")
                raise
            db.conn.execute("COMMIT")

    @contextmanager
    def serialized(self) -> Iterator[None]:
        """The block's reads and the writes they decide happen with this process's other
        writers kept waiting (e.g. a quota's count and the environment it lets in)."""
        with self._write_lock:
            yield

    def _migrate(self) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with self.immediate() as db:
            version = db.conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"database {self.path} has schema version {version}, newer "
                    f"than this revieee ({SCHEMA_VERSION}): upgrade revieee"
                )
            for number in range(version, SCHEMA_VERSION):
                MIGRATIONS[number](db)
                db.conn.execute(f"PRAGMA user_version = {number + 1}")

    @property
    def schema_version(self) -> int:
        return int(self.db.conn.execute("PRAGMA user_version").fetchone()[0])

    @writes
    def insert_row(self, table: str, row: dict[str, Any]) -> int:
        """Insert ``row`` into ``table`` (plain SQL: sqlite-utils' insert introspects the table
        first); its rowid."""
        columns = ", ".join(f"[{column_name(k)}]" for k in row)
        marks = ", ".join("?" for _ in row)
        cur = self.db.conn.execute(
            f"insert into [{column_name(table)}] ({columns}) values ({marks})", list(row.values())
        )
        return int(cur.lastrowid or 0)

"""The SQLite store on real files: migrations, WAL, thread safety, de-duplication."""

from __future__ import annotations

import inspect
import re
import sqlite3
import threading
from pathlib import Path

import pytest

from bot.store import SCHEMA_VERSION, Store, writes

TABLES = {"environments", "deployments", "operations", "messages", "audit_events", "deliveries"}


def test_new_database_is_migrated_in_wal_mode(tmp_path: Path) -> None:
    store = Store(tmp_path / "sub" / "revieee.db")
    assert store.schema_version == SCHEMA_VERSION
    assert set(store.db.table_names()) >= TABLES
    assert store.db.conn.execute("pragma journal_mode").fetchone()[0] == "wal"
    store.close()
    # reopening applies nothing twice
    again = Store(tmp_path / "sub" / "revieee.db")
    assert again.schema_version == SCHEMA_VERSION


def test_older_database_is_migrated_forward_keeping_its_rows(tmp_path: Path) -> None:
    import sqlite_utils

    from bot.store import MIGRATIONS

    path = tmp_path / "old.db"
    old = sqlite_utils.Database(path)
    MIGRATIONS[0](old)  # a database as the first release left it
    old.conn.execute("pragma user_version = 1")
    old.table("environments").insert(
        {
            "name": "web-a",
            "app": "web",
            "branch": "a",
            "status": "running",
            "created_at": "2026-01-01T00:00:00.000+00:00",
            "updated_at": "x",
        }
    )
    old.conn.commit()
    old.close()
    store = Store(path)
    assert store.schema_version == SCHEMA_VERSION
    assert "idx_environments_created" in {i.name for i in store.db.table("environments").indexes}
    assert store.get_env("web-a")["status"] == "running"  # type: ignore[index]


def test_github_deployment_references_move_out_of_messages(tmp_path: Path) -> None:
    """Schema 6: the GitHub deployments, kept as ``messages`` rows (kind
    "gh-deployment:<repository>", ts "<deployment>:<operation>[:inactive]") until then, get a
    table of their own; the Slack message references stay."""
    import sqlite_utils

    from bot.store import MIGRATIONS

    path = tmp_path / "five.db"
    old = sqlite_utils.Database(path)
    for migration in MIGRATIONS[:5]:
        migration(old)
    old.conn.execute("pragma user_version = 5")
    old.table("messages").insert_all(
        [
            {"env": "web-a", "kind": "gh-deployment:Acme/Shop", "channel": "Acme/Shop",
             "ts": "101:7", "created_at": "2026-01-01T00:00:00.000+00:00"},
            {"env": "web-a", "kind": "gh-deployment:acme/api", "channel": "acme/api",
             "ts": "102:8:inactive", "created_at": "2026-01-02T00:00:00.000+00:00"},
            {"env": "web-b", "kind": "gh-deployment:acme/shop", "channel": "acme/shop",
             "ts": "55", "created_at": "2026-01-03T00:00:00.000+00:00"},  # no operation yet
            {"env": "web-a", "kind": "deploy", "channel": "C1", "ts": "1700000000.000100",
             "created_at": "2026-01-01T00:00:00.000+00:00"},
        ]
    )  # fmt: skip
    old.conn.commit()
    old.close()

    store = Store(path)
    assert store.schema_version == SCHEMA_VERSION
    assert store.github_deployment("web-a", "Acme/Shop") == {
        "env": "web-a",
        "repository": "Acme/Shop",
        "deployment_id": 101,
        "operation_id": 7,
        "retired": False,
        "updated_at": "2026-01-01T00:00:00.000+00:00",
    }
    api = store.github_deployment("web-a", "acme/api")
    assert api is not None
    assert (api["deployment_id"], api["operation_id"], api["retired"]) == (102, 8, True)
    shop = store.github_deployment("web-b", "acme/shop")
    assert shop is not None and (shop["deployment_id"], shop["operation_id"]) == (55, None)
    assert not shop["retired"]
    assert store.github_deployment("web-b", "Acme/Shop") is None
    assert [(m["env"], m["kind"]) for m in store.db.query("select * from messages")] == [
        ("web-a", "deploy")
    ]
    assert store.get_message("web-a", "deploy")["ts"] == "1700000000.000100"  # type: ignore[index]


def test_github_deployment_references(tmp_path: Path) -> None:
    store = Store(tmp_path / "revieee.db")
    assert store.github_deployment("web-a", "acme/shop") is None
    store.set_github_deployment("web-a", "acme/shop", 101, 7)
    store.set_github_deployment("web-a", "acme/shop", 102, 9, retired=True)
    store.set_github_deployment("web-a", "acme/api", 5, 9)
    ref = store.github_deployment("web-a", "acme/shop")
    assert ref is not None
    assert (ref["deployment_id"], ref["operation_id"], ref["retired"]) == (102, 9, True)
    api = store.github_deployment("web-a", "acme/api")
    assert api is not None and not api["retired"]
    assert store.get_message("web-a", "gh-deployment:acme/shop") is None  # not a message


def test_database_from_a_newer_revieee_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "revieee.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"pragma user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(RuntimeError, match="newer than this revieee"):
        Store(path)


def test_environment_upsert_list_and_filters(tmp_path: Path) -> None:
    store = Store(tmp_path / "revieee.db")
    store.upsert_env("web-a", app="web", branch="a", status="running", owner="U1")
    store.upsert_env("web-b", app="web", branch="b", status="stopped", owner="U2")
    store.upsert_env("api-a", app="api", branch="a", status="failed", owner="U2")
    store.upsert_env("web-a", status="deploying")
    assert store.get_env("web-a")["status"] == "deploying"  # type: ignore[index]
    assert store.get_env("web-a")["owner"] == "U1"  # type: ignore[index]
    assert {e["name"] for e in store.list_envs()} == {"web-a", "api-a"}
    assert {e["name"] for e in store.list_envs(include_stopped=True)} == {"web-a", "web-b", "api-a"}
    assert [e["name"] for e in store.list_envs(app="api")] == ["api-a"]
    assert [e["name"] for e in store.list_envs(owner="U2", include_stopped=True, app="web")] == [
        "web-b"
    ]
    assert store.env_of_branch("web", "b")["name"] == "web-b"  # type: ignore[index]


def test_delivery_ids_are_processed_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "revieee.db")
    assert store.first_delivery("github", "abc-1")
    assert not store.first_delivery("github", "abc-1")
    assert store.first_delivery("slack", "abc-1")  # another source, another id space


def test_message_references_and_audit(tmp_path: Path) -> None:
    store = Store(tmp_path / "revieee.db")
    store.set_message("web-a", "deploy", "C1", "1700000000.000100")
    store.set_message("web-a", "deploy", "C1", "1700000000.000200")
    assert store.get_message("web-a", "deploy")["ts"] == "1700000000.000200"  # type: ignore[index]
    store.audit("deploy requested", "U1", "web-a", "slack", branch="a")
    [event] = store.audit_events("web-a")
    assert (
        event["actor"] == "U1" and event["source"] == "slack" and '"branch": "a"' in event["detail"]
    )


def test_writes_from_many_threads(tmp_path: Path) -> None:
    store = Store(tmp_path / "revieee.db")
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(40):
                store.enqueue("deploy", f"web-t{n}-{i % 4}", "web", "b", {"i": i}, None, "cli")
                store.audit("x", None, f"web-t{n}")
                store.first_delivery("slack", f"{n}-{i}")
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    ops = store.operations()
    assert len(ops) == 8 * 40 and len({op.id for op in ops}) == 8 * 40
    assert len(store.operations(status="queued")) == 8 * 4  # newest per environment
    assert len(store.audit_events()) == 8 * 40


def test_repositories_are_found_whatever_their_case(tmp_path: Path) -> None:
    """GitHub compares owner and repository names without case (`Codertocat/Hello-World` is
    `codertocat/hello-world`): so do the store's look-ups of pull requests and CI runs."""
    store = Store(tmp_path / "r.db")
    store.link_pull("Codertocat/Hello-World", 2, env="web-x", title="t")
    store.record_ci_run(
        7, repository="Codertocat/Hello-World", sha="abc", name="ci", conclusion="success",
        html_url="", completed_at="2026-12-03T10:00:00+00:00",
    )  # fmt: skip
    pull = store.get_pull("codertocat/hello-world", 2)
    assert pull is not None and pull["env"] == "web-x"
    assert [r["id"] for r in store.ci_runs("CODERTOCAT/HELLO-WORLD", "abc")] == [7]
    assert store.get_pull("codertocat/other", 2) is None


WRITE_SQL = re.compile(
    r"\.(insert|upsert|update|delete|insert_all|upsert_all|delete_where)\("
    r"|\b(insert (or \w+ )?into|update \w+ set|delete from)\b"
    r"|self\.insert_row\(",
    re.IGNORECASE,
)


def writers_without_the_lock(cls: type) -> list[str]:
    """The methods of ``cls`` (and of every mixin it is made of) whose code writes without the
    write lock: public ones neither @writes nor writing inside ``immediate()``, and private
    helpers that write, as "helper<-caller", called from one that holds no lock."""
    methods = dict(inspect.getmembers(cls, inspect.isfunction))

    def locked(fn: object) -> bool:
        return getattr(fn, "writes", False) or "self.immediate()" in inspect.getsource(
            inspect.unwrap(fn)  # type: ignore[arg-type]
        )

    unlocked = []
    for name, fn in methods.items():
        source = inspect.getsource(inspect.unwrap(fn))
        if WRITE_SQL.search(source) and not name.startswith("_") and not locked(fn):
            unlocked.append(name)
    for helper in [n for n in methods if n.startswith("_") and not n.startswith("__")]:
        if not WRITE_SQL.search(inspect.getsource(methods[helper])):
            continue
        for caller, fn in methods.items():
            if f"self.{helper}(" in inspect.getsource(inspect.unwrap(fn)) and not locked(fn):
                unlocked.append(f"{helper}<-{caller}")
    return unlocked


def test_every_method_that_writes_holds_the_write_lock() -> None:
    """A writer that forgets the lock waits in SQLite's busy handler (100-900 ms tails): each
    public method whose code writes is @writes or writes inside ``immediate()``; a private
    helper that writes is called only from one that is."""
    unlocked = writers_without_the_lock(Store)
    assert unlocked == [], f"writes without the lock: {unlocked} (mark them @writes)"


def test_the_lock_check_finds_a_writer_that_forgets_it() -> None:
    class Careless(Store):
        def forget(self, env: str) -> None:
            self.db.conn.execute("delete from messages where env = ?", [env])

        def _drop(self, env: str) -> None:
            self.db.table("messages").delete_where("env = ?", [env])

        def helper_user(self, env: str) -> None:
            self._drop(env)

        @writes
        def careful(self, env: str) -> None:
            self._drop(env)

    assert writers_without_the_lock(Careless) == ["forget", "_drop<-helper_user"]

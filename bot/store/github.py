"""What revieee knows of GitHub: pull requests, CI runs, and its deployments there."""

from __future__ import annotations

from typing import Any

from bot.store.connection import Connection, now_iso, writes


class GitHub(Connection):
    """The ``pull_requests``, ``ci_runs`` and ``github_deployments`` tables."""

    @writes
    def link_pull(self, repository: str, number: int, **fields: Any) -> None:
        self.db.table("pull_requests").upsert(
            {"repository": repository, "number": number, **fields, "updated_at": now_iso()},
            pk=("repository", "number"),
            alter=False,
        )

    def get_pull(self, repository: str, number: int) -> dict[str, Any] | None:
        rows = list(
            self.db.query(
                "select * from pull_requests where repository = ? collate nocase and number = ?",
                [repository, number],
            )
        )
        return rows[0] if rows else None

    def pulls_for(self, env: str) -> list[dict[str, Any]]:
        return list(
            self.db.query(
                "select * from pull_requests where env = ? order by updated_at desc", [env]
            )
        )

    @writes
    def record_ci_run(self, run_id: int, **fields: Any) -> None:
        self.db.table("ci_runs").upsert({"id": run_id, **fields}, pk="id", alter=False)

    def ci_runs(self, repository: str, sha: str) -> list[dict[str, Any]]:
        """Completed CI runs of a commit, newest first."""
        return list(
            self.db.query(
                "select * from ci_runs where repository = ? collate nocase and sha = ? "
                "order by completed_at desc, id desc",
                [repository, sha],
            )
        )

    def github_deployment(self, env: str, repository: str) -> dict[str, Any] | None:
        """revieee's GitHub deployment of ``env`` in ``repository`` (as the repository was
        spelt when it was set): ``deployment_id``, ``operation_id`` (the operation that made
        it; None for some made before it was recorded), ``retired`` (its latest status is
        ``inactive``) and ``updated_at``; None when there is none."""
        rows = list(
            self.db.query(
                "select * from github_deployments where env = ? and repository = ?",
                [env, repository],
            )
        )
        if not rows:
            return None
        return {**rows[0], "retired": bool(rows[0]["retired"])}

    @writes
    def set_github_deployment(
        self,
        env: str,
        repository: str,
        deployment_id: int,
        operation_id: int | None,
        retired: bool = False,
    ) -> None:
        """Record (or replace) ``env``'s GitHub deployment in ``repository``."""
        self.db.conn.execute(
            "insert or replace into github_deployments (env, repository, deployment_id, "
            "operation_id, retired, updated_at) values (?, ?, ?, ?, ?, ?)",
            [env, repository, deployment_id, operation_id, int(retired), now_iso()],
        )

"""Reporting back to GitHub: the living PR comment of each environment's pull requests, and a
GitHub deployment per deploy (``review/<env>``, transient) whose statuses follow it:
``in_progress``, ``success`` with the environment URL (the PR's "View deployment"), ``failure``,
and ``inactive`` once stopped or superseded. Transient deployments are never retired by GitHub's
``auto_inactive``, so a redeploy marks the deployment it replaces ``inactive`` itself. Like the
Slack notifier it listens to the core and talks to GitHub on a thread of its own: GitHub being
slow or down never slows or fails an operation."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from bot.config import Settings
from bot.events import Bus, Phase, Requested, Step
from bot.github.comment import pr_comment
from bot.github.forge import Forge, GitHubError, same_repository
from bot.phases import view_of
from bot.serial import SerialWorker
from bot.store import Operation, Store

log = logging.getLogger("revieee.github")

STATE_OF_PHASE = {
    "queued": "queued",
    "resolving": "in_progress",
    "building": "in_progress",
    "waiting": "in_progress",
    "deploying": "in_progress",
    "ready": "success",
    "failed": "failure",
    "stopped": "inactive",
}


class GitHubNotifier:
    def __init__(
        self,
        forge: Forge,
        store: Store,
        settings: Settings,
        slack_link: Callable[[str], str | None] = lambda env: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.forge = forge
        self.store = store
        self.settings = settings
        self.slack_link = slack_link
        self.clock = clock
        self._last: dict[tuple[str, str], str] = {}  # (env, target) -> last phase sent
        self._last_state: dict[tuple[int, str], str] = {}  # (operation, repository) -> state
        self._worker = SerialWorker("revieee-github")

    def flush(self, timeout: float = 10.0) -> None:
        self._worker.flush(timeout)

    def close(self) -> None:
        self._worker.close()

    # -- on the bus ----------------------------------------------------------------------------

    def subscribe(self, bus: Bus) -> None:
        bus.subscribe(Requested, self.on_requested)
        bus.subscribe(Step, self.on_step)

    def on_requested(self, event: Requested) -> None:
        self._worker.submit(self._report, event.op, Phase.requested(event.op.kind))

    def on_step(self, event: Step) -> None:
        self._worker.submit(self._report, event.op, event.phase)

    # -- on the worker ---------------------------------------------------------------------------

    def _repositories(self, op: Operation) -> list[str]:
        repos: list[str] = []
        named = [p["repository"] for p in self.store.pulls_for(op.env)]
        for repo in [*named, op.params.get("repository") or ""]:
            if repo and not any(same_repository(repo, r) for r in repos):
                repos.append(repo)  # one deployment per repository, however it is spelt
        return repos

    def _report(self, op: Operation, phase: Phase) -> None:
        if not self._repositories(op):
            return  # nothing on GitHub to report to
        if self._last.get((op.env, str(op.id))) == phase:
            return
        self._last[(op.env, str(op.id))] = phase
        self._comment(op, phase)
        self._deployment(op, phase)

    def _comment(self, op: Operation, phase: Phase) -> None:
        view = view_of(self.store, self.settings, op, phase, self.clock())
        body = pr_comment(view, self.slack_link(op.env))
        for pull in self.store.pulls_for(op.env):
            try:
                comment_id = self.forge.upsert_comment(
                    pull["repository"], int(pull["number"]), pull.get("comment_id"), body
                )
            except GitHubError as exc:
                self._failed(op, exc)
                continue
            if comment_id != pull.get("comment_id"):
                self.store.link_pull(pull["repository"], int(pull["number"]), comment_id=comment_id)

    def _deployment(self, op: Operation, phase: Phase) -> None:
        state = STATE_OF_PHASE.get(phase)
        if state is None or state == "queued":
            return  # a deploy's deployment is created when its work starts
        view = view_of(self.store, self.settings, op, phase, self.clock())
        for repo in self._repositories(op):
            ref = self.store.github_deployment(op.env, repo)
            if self._last_state.get((op.id, repo)) == state:
                continue
            self._last_state[(op.id, repo)] = state
            try:
                if op.kind == "deploy" and (ref is None or ref["operation_id"] != op.id):
                    deployment_id = self.forge.create_deployment(
                        repo,
                        op.params.get("sha") or op.branch,
                        f"review/{op.env}",
                        f"revieee: {op.branch} as {op.env}",
                    )
                    self.store.set_github_deployment(op.env, repo, deployment_id, op.id)
                    if ref is not None and not ref["retired"]:  # unless a stop already did
                        why = f"superseded by {deployment_id}"
                        self._retire(op, repo, ref["deployment_id"], why)
                elif ref is not None and not (state == "inactive" and ref["retired"]):
                    deployment_id = ref["deployment_id"]
                else:
                    continue  # a stop with no deployment to mark inactive, or one already
                self.forge.deployment_status(
                    repo,
                    deployment_id,
                    state,
                    environment_url=view.url if state == "success" else None,
                    description={
                        "in_progress": f"deploying {(view.sha or op.branch)[:12]}",
                        "success": "ready",
                        "failure": (view.reason or "failed")[:140],
                        "inactive": "stopped",
                    }[state],
                    log_url=self.slack_link(op.env),
                )
                self._mark_retired(op.env, repo, state == "inactive")
            except GitHubError as exc:
                self._failed(op, exc)

    def _retire(self, op: Operation, repo: str, deployment_id: int, why: str) -> None:
        """Mark the deployment a new one replaces ``inactive``: its environment is transient,
        so GitHub's ``auto_inactive`` leaves it as it was."""
        try:
            self.forge.deployment_status(
                repo,
                deployment_id,
                "inactive",
                description=why,
                log_url=self.slack_link(op.env),
            )
        except GitHubError as exc:
            self._failed(op, exc)

    def _mark_retired(self, env: str, repo: str, retired: bool) -> None:
        """Whether the latest status of the environment's deployment is ``inactive``."""
        ref = self.store.github_deployment(env, repo)
        if ref is not None and ref["retired"] != retired:
            self.store.set_github_deployment(
                env, repo, ref["deployment_id"], ref["operation_id"], retired
            )

    def _failed(self, op: Operation, exc: GitHubError) -> None:
        log.warning("github call failed op=%s env=%s: %s", op.id, op.env, exc)
        self.store.audit("github error", None, op.env, "github", operation=op.id, error=str(exc))

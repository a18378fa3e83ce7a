"""How each phase looks (emoji and label) on every surface, and the view of one environment
that Slack's message and GitHub's PR comment are both rendered from. The phases themselves
are :class:`bot.events.Phase`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot import envsettings
from bot.config import Settings
from bot.events import IN_PROGRESS, Phase
from bot.store import Operation, Store

# Each phase as every surface shows it: (emoji, label)
PHASES: dict[Phase, tuple[str, str]] = {
    Phase.QUEUED: (":hourglass_flowing_sand:", "Queued"),
    Phase.RESOLVING: (":mag:", "Resolving image"),
    Phase.BUILDING: (":hammer_and_wrench:", "Building image"),
    Phase.WAITING: (":hourglass:", "Waiting for image"),
    Phase.DEPLOYING: (":rocket:", "Deploying"),
    Phase.READY: (":white_check_mark:", "Ready"),
    Phase.FAILED: (":x:", "Failed"),
    Phase.STOPPING: (":octagonal_sign:", "Stopping"),
    Phase.STOPPED: (":black_square_for_stop:", "Stopped"),
    Phase.SLEEPING: (":zzz:", "Sleeping"),
}


def status_emoji(status: str) -> str:
    """The emoji of the phase an environment in ``status`` shows ("" for an unknown one)."""
    phase = Phase.of_status(status)
    return PHASES[phase][0] if phase else ""


@dataclass(frozen=True)
class TaskView:
    """How one lifecycle task of the operation went (``status``: running, succeeded, failed)."""

    name: str
    moment: str
    status: str
    exit_code: int | None = None
    seconds: float | None = None
    reason: str | None = None
    lines: tuple[str, ...] = ()

    @property
    def outcome(self) -> str:
        if self.status in ("starting", "running"):
            return "running"
        if self.exit_code is None:
            return f"did not finish: {self.reason or 'stopped'}"
        return f"exit code {self.exit_code} after {self.seconds or 0:g}s"


@dataclass(frozen=True)
class DeployView:
    """What the deploy message of one environment shows."""

    env: str
    app: str
    branch: str
    url: str
    phase: Phase
    sha: str | None = None
    requested_by: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    reason: str | None = None
    serving: bool = False  # a failed redeploy: the previous version still serves
    stopped_by: str | None = None
    stopped_at: datetime | None = None
    expires_at: datetime | None = None
    pull: str | None = None  # "repository#number"
    pull_url: str | None = None
    pull_title: str | None = None
    pull_author: str | None = None
    detail: str | None = None  # what a build is doing now ("web: BUILD")
    log_url: str | None = None  # a failed build's log in the AWS console
    stop_reason: str | None = None  # why revieee stopped it by itself (expired...)
    pinned: bool = False
    tasks: tuple[TaskView, ...] = ()  # the operation's lifecycle tasks, in the order they ran
    settings: tuple[tuple[str, str], ...] = ()  # the environment's own KEY=VALUE settings
    access: str = "public"  # its app's (bot/access.py)


def _parse(stamp: str | None) -> datetime | None:
    return datetime.fromisoformat(stamp) if stamp else None


def view_of(
    store: Store, settings: Settings, op: Operation, phase: Phase, now: datetime
) -> DeployView:
    """The environment of ``op`` in ``phase``, from the store."""
    env = store.get_env(op.env) or {}
    deployments = store.deployments(op.env, 1)
    dep = deployments[0] if deployments else {}
    stopped = phase == "stopped"
    pulls = store.pulls_for(op.env)
    pull = pulls[0] if pulls else None
    builds = store.builds(operation_id=op.id) if phase in ("building", "failed") else []
    running = [b for b in builds if b["status"] == "IN_PROGRESS" and b.get("phase")]
    broken = [b for b in builds if b["status"] not in ("IN_PROGRESS", "SUCCEEDED")]
    return DeployView(
        env=op.env,
        app=op.app,
        access=settings.apps[op.app].access if op.app in settings.apps else "public",
        branch=op.branch,
        url=env.get("url") or settings.url_for(op.app, op.env, op.branch),
        phase=phase,
        sha=dep.get("sha") or env.get("sha"),
        requested_by=dep.get("requested_by") or op.requested_by,
        started_at=_parse(dep.get("started_at")),
        # the deploy's duration once it ended; a running clock while it is under way
        finished_at=None if phase in IN_PROGRESS else _parse(dep.get("finished_at")),
        reason=(env.get("error") or dep.get("failure_reason")) if phase == "failed" else None,
        serving=phase == "failed" and env.get("status") == "running",
        stopped_by=(op.requested_by or ("revieee" if op.params.get("reason") else None))
        if stopped
        else None,
        stopped_at=now if stopped else None,
        expires_at=_parse(env.get("expires_at")),
        pull=f"{pull['repository']}#{pull['number']}" if pull else None,
        pull_url=pull["html_url"] if pull else None,
        pull_title=pull["title"] if pull else None,
        pull_author=pull["author"] if pull else None,
        detail=", ".join(f"{b['service']}: {b['phase']}" for b in running) or None,
        log_url=broken[-1].get("link") if broken and phase == "failed" else None,
        stop_reason=op.params.get("reason") if op.kind == "stop" else None,
        pinned=bool(env.get("pinned")),
        tasks=tuple(
            TaskView(
                r["name"],
                r["moment"],
                r["status"],
                r.get("exit_code"),
                r.get("seconds"),
                r.get("reason"),
                tuple(r.get("lines") or ()),
            )
            for r in store.task_runs(op.id)
        ),
        settings=tuple(
            (k, s.value) for k, s in sorted(envsettings.load(env.get("settings")).items())
        ),
    )

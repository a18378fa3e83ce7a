"""The phases an environment's deploy goes through, as every notifier shows them, and the view
of one environment that Slack's message and GitHub's PR comment are both rendered from."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.config import Settings
from bot.store import Operation, Store

IN_PROGRESS = ("queued", "resolving", "building", "waiting", "deploying")
# Each phase as every surface shows it: (emoji, label)
PHASES = {
    "queued": (":hourglass_flowing_sand:", "Queued"),
    "resolving": (":mag:", "Resolving image"),
    "building": (":hammer_and_wrench:", "Building image"),
    "waiting": (":hourglass:", "Waiting for image"),
    "deploying": (":rocket:", "Deploying"),
    "ready": (":white_check_mark:", "Ready"),
    "failed": (":x:", "Failed"),
    "stopping": (":octagonal_sign:", "Stopping"),
    "stopped": (":black_square_for_stop:", "Stopped"),
    "sleeping": (":zzz:", "Sleeping"),
}
PHASE_OF_STEP = {
    "queued": "queued",
    "superseded": "queued",
    "resolving image": "resolving",
    "building image": "building",
    "waiting for image": "waiting",
    "deploying": "deploying",
    "ready": "ready",
    "failed": "failed",
    "stopped": "stopped",
    "sleeping": "sleeping",
}


def phase_of(op: Operation, step: str) -> str:
    """The phase a reported step belongs to."""
    if step in PHASE_OF_STEP:
        return PHASE_OF_STEP[step]
    if step.startswith("resolving"):
        return "resolving"
    if step.startswith("building image") or step.startswith("starting the CodeBuild"):
        return "building"
    if step.startswith("waiting for image"):
        return "waiting"
    if op.kind == "stop":
        return "stopping"
    if op.kind == "sleep":
        return "sleeping"
    return "deploying"


@dataclass(frozen=True)
class DeployView:
    """What the deploy message of one environment shows."""

    env: str
    app: str
    branch: str
    url: str
    phase: str
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


def _parse(stamp: str | None) -> datetime | None:
    return datetime.fromisoformat(stamp) if stamp else None


def view_of(
    store: Store, settings: Settings, op: Operation, phase: str, now: datetime
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
    )

"""Images a deploy needs that ECR does not have yet.

Per service (``image_source``): ``existing`` images must be in ECR already (the engine says which
tag is missing and how to push it); ``wait`` waits for the team's CI to push the tag, until a
deadline or until a ``workflow_run`` webhook says CI finished; ``codebuild`` starts the service's
CodeBuild project for the commit and follows it to the end, its log streamed to the deploy's
thread. A tag already in ECR is never built again ("image cached"), and a build already running
for the same tag (another deploy of the commit, or this one before a restart) is followed, not
started twice.

What stops leave behind is cleaned up by :mod:`bot.engine.hygiene`, which the builder is too.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from botocore.exceptions import BotoCoreError, ClientError

from bot.aws import AwsClients, describe_error
from bot.config import ServiceConfig, Settings
from bot.engine import Engine, EngineError, EnvSpec, Reporter, ServicePlan
from bot.engine.hygiene import ImageHygiene
from bot.events import Phase
from bot.logtail import CloudWatchTail, LogFollower, LogSink
from bot.store import Store, now_iso
from bot.text import duration

log = logging.getLogger("revieee.images")

FINAL = ("SUCCEEDED", "FAILED", "FAULT", "TIMED_OUT", "STOPPED")
FAILED_PHASE = ("FAILED", "FAULT", "TIMED_OUT", "STOPPED", "CLIENT_ERROR")
QUEUE_SLACK = 15 * 60.0  # a build may wait this long in CodeBuild's queue beyond its timeout
CI_GRACE = 120.0  # after CI succeeded, how long the pushed tag may take to show up in ECR
BUILD_STEP = "building image"
WAIT_STEP = "waiting for image"


class Superseded(EngineError):
    """A newer request for the environment arrived while this deploy waited for its images."""


@dataclass
class _Pending:
    """One service's image still to come."""

    plan: ServicePlan
    svc: ServiceConfig
    started: float
    deadline: float
    build_id: str | None = None
    own: bool = True  # this operation started the build (so it may stop it)
    phase: str | None = None
    follower: LogFollower | None = None
    tail: CloudWatchTail | None = None
    link: str | None = None
    next_progress: float = 0.0
    ci_ok_at: float | None = None
    image: str | None = None  # uri@digest once there
    notes: list[str] = field(default_factory=list)

    @property
    def repo(self) -> str:
        return self.svc.ecr_repository or ""

    @property
    def ref(self) -> str:
        return f"{self.repo}:{self.plan.tag}"


class ImageBuilder(ImageHygiene):
    """Provides the pending images of a deploy's plan (and, as :class:`ImageHygiene`, cleans
    up after stops)."""

    def __init__(
        self,
        clients: AwsClients,
        settings: Settings,
        store: Store,
        engine: Engine,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        progress_every: float = 60.0,
    ) -> None:
        super().__init__(clients, settings, store)
        self.engine = engine
        self._sleep = sleep
        self._monotonic = monotonic
        self.progress_every = progress_every

    # -- providing images ------------------------------------------------------------------------

    def provide(
        self,
        op_id: int,
        spec: EnvSpec,
        plans: list[ServicePlan],
        steps: Callable[[Phase], Reporter],
        log_sink: LogSink,
        newer: Callable[[], tuple[int, str] | None] = lambda: None,
    ) -> list[ServicePlan]:
        """Build or wait for every pending plan; returns the plans with their images.

        Raises :class:`EngineError` naming the service when a build fails, CI fails or the
        deadline passes, and :class:`Superseded` when ``newer()`` names a newer request."""
        now = self._monotonic()
        items: list[_Pending] = []
        for plan in plans:
            if not plan.pending:
                continue
            svc = spec.app.service(plan.service)
            limit = (
                svc.build_timeout + QUEUE_SLACK if plan.source == "codebuild" else svc.wait_timeout
            )
            items.append(_Pending(plan, svc, now, now + limit, next_progress=now))
        building, waiting = steps(Phase.BUILDING), steps(Phase.WAITING)
        for item in items:
            if item.plan.source == "codebuild":
                self._start(op_id, spec, item, building, log_sink)
            else:
                waiting(
                    WAIT_STEP,
                    f"{item.svc.name}: waiting up to {duration(item.svc.wait_timeout)} for "
                    f"{item.ref} to be pushed (e.g. by CI for {(item.plan.sha or '')[:7]})",
                )
        try:
            while True:
                superseding = newer()
                if superseding is not None:
                    self._abandon(items, superseding, building)
                codebuild = [i for i in items if i.build_id and i.image is None]
                if codebuild:
                    self._poll_builds(codebuild, building)
                for item in items:
                    if item.plan.source == "wait" and item.image is None:
                        self._poll_wait(item, waiting)
                if all(i.image is not None for i in items):
                    break
                for item in items:
                    if item.image is None and self._monotonic() >= item.deadline:
                        self._expired(item)
                self._sleep(self.settings.poll_interval)
        except EngineError:
            for item in items:
                if item.follower is not None:
                    item.follower.finish()
            raise
        images = {i.plan.service: i.image for i in items}
        return [
            dataclasses.replace(p, image=images[p.service] or p.image, pending=False)
            if p.service in images
            else p
            for p in plans
        ]

    # -- CodeBuild ---------------------------------------------------------------------------

    def _start(
        self, op_id: int, spec: EnvSpec, item: _Pending, report: Reporter, log_sink: LogSink
    ) -> None:
        svc, plan = item.svc, item.plan
        step = f"starting the CodeBuild build of {svc.name}"
        item.follower = LogFollower(f"build of {svc.name}", log_sink)
        running = self.store.build_in_progress(item.repo, plan.tag or "")
        if running is not None:
            item.build_id, item.own = str(running["id"]), running["operation_id"] == op_id
            item.link = running.get("link")
            again = "again after a restart" if item.own else "already running"
            who = "" if item.own else f" (started by operation {running['operation_id']})"
            report(BUILD_STEP, f"{svc.name}: following build {item.build_id} {again}{who}")
            return
        sha = plan.sha or ""
        uri = plan.image.split("@")[0]
        variables = {
            "IMAGE_REPO_NAME": item.repo,
            "IMAGE_TAG": plan.tag or "",
            "IMAGE_URI": f"{uri}:{plan.tag}",
            "REVIEEE_APP": spec.app.name,
            "REVIEEE_ENV": spec.env,
            "REVIEEE_SERVICE": svc.name,
            "REVIEEE_BRANCH": plan.branch,
            "REVIEEE_SHA": sha,
        }
        try:
            build = self.aws.codebuild.start_build(
                projectName=svc.codebuild_project,
                sourceVersion=sha or plan.branch,
                environmentVariablesOverride=[
                    {"name": k, "value": v, "type": "PLAINTEXT"} for k, v in variables.items()
                ],
                timeoutInMinutesOverride=max(5, min(2160, math.ceil(svc.build_timeout / 60))),
                # a retried request within 5 minutes starts no second build
                idempotencyToken=f"revieee-{op_id}-{svc.name}-{sha[:12]}"[:64],
            )["build"]
        except (ClientError, BotoCoreError) as exc:
            raise EngineError(step, describe_error(exc)) from exc
        item.build_id = str(build["id"])
        item.link = self._link(build)
        self.store.add_build(
            id=item.build_id,
            ecr_repository=item.repo,
            tag=plan.tag,
            project=svc.codebuild_project,
            repository=svc.repository,
            sha=sha,
            app=spec.app.name,
            env=spec.env,
            service=svc.name,
            operation_id=op_id,
            link=item.link,
        )
        report(
            BUILD_STEP,
            f"{svc.name}: started CodeBuild build {item.build_id} of {(sha or plan.branch)[:12]} "
            f"-> {item.ref}",
        )

    def _link(self, build: dict[str, Any]) -> str:
        """The build's log in the AWS console: CodeBuild's own deep link, or one we make."""
        logs = build.get("logs") or {}
        if logs.get("groupName") and logs.get("deepLink"):
            return str(logs["deepLink"])
        region = self.aws.codebuild.meta.region_name
        project, _, _ = str(build["id"]).partition(":")
        return (
            f"https://{region}.console.aws.amazon.com/codesuite/codebuild/projects/"
            f"{quote(project, safe='')}/build/{quote(str(build['id']), safe='')}/log"
            f"?region={region}"
        )

    def _poll_builds(self, items: list[_Pending], report: Reporter) -> None:
        ids = [i.build_id for i in items if i.build_id]
        try:
            found = self.aws.codebuild.batch_get_builds(ids=ids)
        except (ClientError, BotoCoreError) as exc:
            raise EngineError("following the CodeBuild builds", describe_error(exc)) from exc
        builds = {b["id"]: b for b in found.get("builds", [])}
        for item in items:
            build = builds.get(item.build_id)
            if build is None:
                self.store.update_build(str(item.build_id), status="FAULT", error="build not found")
                raise EngineError(
                    f"building image of {item.svc.name}",
                    f"CodeBuild does not know build {item.build_id} any more",
                )
            self._advance(item, build, report)

    def _advance(self, item: _Pending, build: dict[str, Any], report: Reporter) -> None:
        assert item.follower is not None and item.build_id is not None
        logs = build.get("logs") or {}
        if item.tail is None and logs.get("groupName") and logs.get("streamName"):
            item.tail = CloudWatchTail(self.aws.logs, logs["groupName"], logs["streamName"])
            item.link = self._link(build)
            self.store.update_build(item.build_id, link=item.link)
        phase = str(build.get("currentPhase") or "")
        status = str(build.get("buildStatus") or "IN_PROGRESS")
        if phase and phase != item.phase and status not in FINAL:
            item.phase = phase
            self._read_log(item)
            item.follower.note(f"phase {phase}")
            item.next_progress = self._monotonic()
            self.store.update_build(item.build_id, phase=phase)
            elapsed = duration(self._monotonic() - item.started)
            report(BUILD_STEP, f"{item.svc.name}: {phase} ({elapsed})")
        else:
            self._read_log(item)
            now = self._monotonic()
            if status not in FINAL and now >= item.next_progress + self.progress_every:
                item.next_progress = now
                report(BUILD_STEP, f"{item.svc.name}: {phase} ({duration(now - item.started)})")
        if status not in FINAL:
            return
        self._read_log(item, drain=True)  # the build is over: read to the end of its log
        took = _build_seconds(build)
        took_text = duration(took if took is not None else self._monotonic() - item.started)
        if status == "SUCCEEDED":
            image = self.engine.find_tag(item.svc, item.plan.tag or "")
            if image is None:
                reason = (
                    f"the build of {item.svc.name} succeeded but {item.ref} is not in ECR: "
                    "the buildspec must push $IMAGE_URI"
                )
                self._failed(item, reason)
            self.store.update_build(
                item.build_id,
                status=status,
                phase="COMPLETED",
                digest=str(image).split("@")[-1],
                finished_at=now_iso(),
            )
            item.image = image
            summary = f"built {item.ref} in {took_text}"
            item.follower.finish(summary=summary, link=item.link)
            report(BUILD_STEP, f"{item.svc.name}: {summary}")
            return
        failing = next(
            (p for p in build.get("phases", []) if p.get("phaseStatus") in FAILED_PHASE), None
        )
        where = f" in phase {failing['phaseType']}" if failing else ""
        context = ""
        if failing and failing.get("contexts"):
            ctx = failing["contexts"][0]
            context = ": " + ": ".join(
                str(x) for x in (ctx.get("statusCode"), ctx.get("message")) if x
            )
        how = {
            "TIMED_OUT": "timed out",
            "STOPPED": "was stopped",
            "FAULT": "failed (CodeBuild fault)",
        }.get(status, "failed")
        self._failed(item, f"the build of {item.svc.name} {how}{where}{context} after {took_text}")

    def _failed(self, item: _Pending, reason: str) -> None:
        assert item.follower is not None
        self.store.update_build(
            str(item.build_id), status="FAILED", error=reason, finished_at=now_iso()
        )
        item.follower.finish(failed=True, summary=reason, link=item.link)
        raise EngineError(f"building image of {item.svc.name}", reason)

    def _read_log(self, item: _Pending, drain: bool = False) -> None:
        if item.tail is None or item.follower is None:
            return
        try:
            item.follower.lines(item.tail.drain() if drain else item.tail.read())
        except (ClientError, BotoCoreError) as exc:  # the log is a nicety: the build goes on
            if not item.notes:
                item.notes.append(describe_error(exc))
                item.follower.note(f"cannot read the build log: {describe_error(exc)}")

    # -- waiting for CI --------------------------------------------------------------------

    def _poll_wait(self, item: _Pending, report: Reporter) -> None:
        item.image = self.engine.find_tag(item.svc, item.plan.tag or "")
        now = self._monotonic()
        if item.image is not None:
            report(
                WAIT_STEP,
                f"{item.svc.name}: {item.ref} is there after {duration(now - item.started)}",
            )
            return
        runs = self.store.ci_runs(item.svc.repository, item.plan.sha or "") if item.plan.sha else []
        for run in runs:
            if item.svc.wait_workflow and run.get("name") != item.svc.wait_workflow:
                continue
            name = f"CI run {run['name']!r}" if run.get("name") else "the CI run"
            if run.get("conclusion") not in ("success", "neutral", "skipped"):
                raise EngineError(
                    f"waiting for image of {item.svc.name}",
                    f"{name} for {(item.plan.sha or '')[:7]} ended {run.get('conclusion')}: "
                    f"{run.get('html_url') or 'no link'}",
                )
            if item.ci_ok_at is None:
                item.ci_ok_at = now
                item.deadline = min(item.deadline, now + CI_GRACE)
                report(
                    WAIT_STEP,
                    f"{item.svc.name}: {name} succeeded; {item.ref} should show up in ECR any "
                    "moment",
                )
            break
        if now >= item.next_progress + self.progress_every:
            item.next_progress = now
            report(
                WAIT_STEP,
                f"{item.svc.name}: no {item.ref} yet after {duration(now - item.started)} "
                f"(waiting up to {duration(item.svc.wait_timeout)})",
            )

    def _expired(self, item: _Pending) -> None:
        waited = duration(self._monotonic() - item.started)
        if item.plan.source == "codebuild":
            self._stop_build(item)
            self._failed(item, f"the build of {item.svc.name} did not finish in {waited}")
        if item.ci_ok_at is not None:
            raise EngineError(
                f"waiting for image of {item.svc.name}",
                f"CI succeeded but {item.ref} did not appear in ECR within {duration(CI_GRACE)}: "
                "does the workflow push that tag?",
            )
        repo_uri = item.plan.image.split("@")[0]
        raise EngineError(
            f"waiting for image of {item.svc.name}",
            f"{item.ref} did not appear in ECR within {waited} (push it with: docker push "
            f"{repo_uri}:{item.plan.tag})",
        )

    # -- giving way ----------------------------------------------------------------------------

    def _abandon(self, items: list[_Pending], newer: tuple[int, str], report: Reporter) -> None:
        op_id, kind = newer
        for item in items:
            # a newer deploy may need the same image: only a stop stops the build
            if kind == "stop" and item.own and item.build_id and item.image is None:
                self._stop_build(item)
                report(BUILD_STEP, f"{item.svc.name}: stopped build {item.build_id}")
        raise Superseded(
            "waiting for images", f"a newer request (operation {op_id}, {kind}) replaces it"
        )

    def _stop_build(self, item: _Pending) -> None:
        try:
            self.aws.codebuild.stop_build(id=item.build_id)
        except (ClientError, BotoCoreError) as exc:
            log.warning("could not stop build %s: %s", item.build_id, describe_error(exc))
        self.store.update_build(str(item.build_id), status="STOPPED", finished_at=now_iso())


def _build_seconds(build: dict[str, Any]) -> float | None:
    start, end = build.get("startTime"), build.get("endTime")
    if start is None or end is None or isinstance(start, str) or isinstance(end, str):
        return None
    return float((end - start).total_seconds())

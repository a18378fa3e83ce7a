"""Images a deploy needs that ECR does not have yet, and the images revieee leaves behind.

Per service (``image_source``): ``existing`` images must be in ECR already (the engine says which
tag is missing and how to push it); ``wait`` waits for the team's CI to push the tag, until a
deadline or until a ``workflow_run`` webhook says CI finished; ``codebuild`` starts the service's
CodeBuild project for the commit and follows it to the end, its log streamed to the deploy's
thread. A tag already in ECR is never built again ("image cached"), and a build already running
for the same tag (another deploy of the commit, or this one before a restart) is followed, not
started twice.

When an environment stops, the images built only for it are deleted (``delete_images``), and
untagged images in the repositories revieee builds into can be garbage-collected; an image an
environment still runs is never deleted, nor one that a kept image needs: the untagged platform
images and attestations an image index lists (``docker buildx`` pushes every multi-platform or
attested image that way), and referrers such as signatures (``subjectManifestDigest``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from botocore.exceptions import BotoCoreError, ClientError

from bot.aws import AwsClients, describe_error, error_code
from bot.config import AppConfig, ServiceConfig, Settings
from bot.engine import Engine, EngineError, EnvSpec, Reporter, ServicePlan
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
CLEANUP_STEP = "cleaning up images"
GC_STEP = "collecting untagged images"
INDEX_MEDIA_TYPES = frozenset(
    {
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)
# BatchGetImage answers only in a media type the caller accepts: indexes, and image manifests
# for an image whose DescribeImages entry does not say what it is
ACCEPTED_MANIFESTS = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.v1+json",
]
ECR_BATCH = 100  # image ids a BatchGetImage or BatchDeleteImage call takes at most


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


class ImageBuilder:
    """Provides the pending images of a deploy's plan; cleans up after stops."""

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
        self.aws = clients
        self.settings = settings
        self.store = store
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

    # -- hygiene -------------------------------------------------------------------------------

    def cleanup(self, app: AppConfig | None, env: str, report: Reporter) -> list[str]:
        """Delete the tags revieee built for ``env`` (services with ``delete_images``), except
        those an environment still runs and those whose image a kept image index lists (deleting
        an image's last tag deletes the image). Never raises: a stop must not fail on its
        images."""
        done: list[str] = []
        if app is None:
            return done
        deletes = {s.name: s for s in app.services if s.deletes_images}
        builds = [
            b
            for b in self.store.builds(env=env)
            if b["service"] in deletes and b["status"] == "SUCCEEDED" and not b["images_deleted_at"]
        ]
        if not builds:
            return done
        in_use = self.store.images_in_use(except_env=env)
        by_repo: dict[str, list[dict[str, Any]]] = {}
        for build in builds:
            ref = f"{build['ecr_repository']}:{build['tag']}"
            if ref in in_use or (build.get("digest") and build["digest"] in in_use):
                line = f"kept image {ref}: another environment runs it"
                report(CLEANUP_STEP, line)
                done.append(line)
                continue
            by_repo.setdefault(build["ecr_repository"], []).append(build)
        for repo, repo_builds in by_repo.items():
            tags = sorted({b["tag"] for b in repo_builds})
            try:
                needed = self._needed_tags(repo, tags, in_use)
            except (EngineError, ClientError, BotoCoreError) as exc:
                why = str(exc) if isinstance(exc, EngineError) else describe_error(exc)
                line = f"could not delete images in {repo}: {why}"
                report(CLEANUP_STEP, line)
                done.append(line)
                continue
            for tag, holder in sorted(needed.items()):
                line = f"kept image {repo}:{tag}: {holder} needs it"
                report(CLEANUP_STEP, line)
                done.append(line)
            tags = [t for t in tags if t not in needed]
            repo_builds = [b for b in repo_builds if b["tag"] not in needed]
            if not tags:
                continue
            try:
                answer = self.aws.ecr.batch_delete_image(
                    repositoryName=repo, imageIds=[{"imageTag": t} for t in tags]
                )
            except (ClientError, BotoCoreError) as exc:
                line = f"could not delete images in {repo}: {describe_error(exc)}"
                report(CLEANUP_STEP, line)
                done.append(line)
                continue
            failed = {
                f["imageId"].get("imageTag"): f.get("failureCode")
                for f in answer.get("failures", [])
                if f.get("failureCode") != "ImageNotFound"
            }
            for build in repo_builds:
                if build["tag"] not in failed:
                    self.store.update_build(str(build["id"]), images_deleted_at=now_iso())
            gone = [t for t in tags if t not in failed]
            if gone:
                line = f"deleted image tag(s) {', '.join(f'{repo}:{t}' for t in gone)}"
                report(CLEANUP_STEP, line)
                done.append(line)
            for tag, code in failed.items():
                line = f"could not delete {repo}:{tag}: {code}"
                report(CLEANUP_STEP, line)
                done.append(line)
        return done

    def _needed_tags(self, repo: str, tags: list[str], in_use: set[str]) -> dict[str, str]:
        """Of ``tags`` (about to be deleted), those whose image would go with them although an
        image that stays needs it, each with that image's name."""
        step = f"reading the image indexes in {repo}"
        images = _repository_images(self.aws.ecr, repo)
        leaving = set(tags)
        staying = {
            str(d["imageDigest"])
            for d in images
            if set(d.get("imageTags", [])) - leaving or d["imageDigest"] in in_use
        }
        held = _held(self.aws.ecr, repo, images, staying, step)
        names = {str(d["imageDigest"]): d.get("imageTags", []) for d in images}
        needed: dict[str, str] = {}
        for detail in images:
            own = set(detail.get("imageTags", []))
            holder = held.get(str(detail["imageDigest"]))
            if holder is not None and own & leaving and own <= leaving:
                tagged = sorted(set(names.get(holder, [])) - leaving)
                name = f"{repo}:{tagged[0]}" if tagged else f"{repo}@{holder}"
                needed.update({t: name for t in own})
        return needed

    def managed_repositories(self) -> list[str]:
        """The ECR repositories revieee builds into (services with ``codebuild``)."""
        return sorted(
            {
                s.ecr_repository
                for app in self.settings.apps.values()
                for s in app.services
                if s.image_source == "codebuild" and s.ecr_repository
            }
        )

    def gc_untagged(self, dry_run: bool = False, report: Reporter | None = None) -> list[str]:
        """Delete untagged images in the managed repositories, except those an environment
        still runs (task definitions refer to images by digest) and those a tagged or running
        image needs: what its image index lists (the untagged platform images and attestations
        of a multi-platform or attested build), and its referrers (signatures). An untagged
        index nothing needs goes with what only it lists. Returns what was (or, with
        ``dry_run``, would be) deleted, as ``repo@digest``."""
        in_use = self.store.images_in_use()
        deleted: list[str] = []
        for repo in self.managed_repositories():
            step = f"collecting untagged images in {repo}"
            try:
                images = _repository_images(self.aws.ecr, repo)
                roots = {
                    str(d["imageDigest"])
                    for d in images
                    if d.get("imageTags") or d["imageDigest"] in in_use
                }
                held = _held(self.aws.ecr, repo, images, roots, step)
                untagged = [d for d in images if str(d["imageDigest"]) not in roots]
                doomed = [d for d in untagged if str(d["imageDigest"]) not in held]
                kept = len(untagged) - len(doomed)
                # indexes first: ECR may refuse to delete a manifest that an index still lists
                groups = [
                    [str(d["imageDigest"]) for d in doomed if _may_be_index(d)],
                    [str(d["imageDigest"]) for d in doomed if not _may_be_index(d)],
                ]
                gone: list[str] = [d for g in groups for d in g]
                failed: dict[str, str] = {}
                if not dry_run:
                    gone, failed = self._delete_digests(repo, groups)
            except ClientError as exc:
                if error_code(exc) == "RepositoryNotFoundException":
                    continue
                raise EngineError(step, describe_error(exc)) from exc
            except BotoCoreError as exc:
                raise EngineError(step, describe_error(exc)) from exc
            deleted += [f"{repo}@{d}" for d in gone]
            # ECR's own guard, should an index that lists it appear after the listing
            kept += sum(1 for code in failed.values() if code == "ImageReferencedByManifestList")
            refused = sorted({c for c in failed.values() if c != "ImageReferencedByManifestList"})
            parts = []
            if gone or kept:
                parts.append(f"{'would delete' if dry_run else 'deleted'} {len(gone)} in {repo}")
            if kept:
                parts.append(
                    f"kept {kept} that tagged or running images need "
                    "(platform images, attestations, signatures)"
                )
            for code in refused:
                count = sum(1 for c in failed.values() if c == code)
                parts.append(f"could not delete {count}: {code}")
            if parts:
                line = "; ".join(parts)
                log.info("%s: %s", GC_STEP, line)
                if report is not None:
                    report(GC_STEP, line)
        return deleted

    def _delete_digests(
        self, repo: str, groups: list[list[str]]
    ) -> tuple[list[str], dict[str, str]]:
        """Delete by digest, group after group, at most ``ECR_BATCH`` a call; returns what went
        and the failure code of what did not (an image already gone is neither)."""
        gone: list[str] = []
        failed: dict[str, str] = {}
        for group in groups:
            for start in range(0, len(group), ECR_BATCH):
                chunk = group[start : start + ECR_BATCH]
                answer = self.aws.ecr.batch_delete_image(
                    repositoryName=repo, imageIds=[{"imageDigest": d} for d in chunk]
                )
                codes = {
                    str(f.get("imageId", {}).get("imageDigest")): str(f.get("failureCode"))
                    for f in answer.get("failures", [])
                }
                for digest in chunk:
                    code = codes.get(digest)
                    if code is None:
                        gone.append(digest)
                    elif code != "ImageNotFound":
                        failed[digest] = code
        return gone, failed


def _build_seconds(build: dict[str, Any]) -> float | None:
    start, end = build.get("startTime"), build.get("endTime")
    if start is None or end is None or isinstance(start, str) or isinstance(end, str):
        return None
    return float((end - start).total_seconds())


def _repository_images(ecr: Any, repo: str) -> list[dict[str, Any]]:
    """Every image of the repository, tagged or not, as DescribeImages details."""
    return [
        detail
        for page in ecr.get_paginator("describe_images").paginate(repositoryName=repo)
        for detail in page["imageDetails"]
    ]


def _may_be_index(detail: dict[str, Any] | None) -> bool:
    """An image index or manifest list, or an image DescribeImages does not say the type of."""
    media_type = (detail or {}).get("imageManifestMediaType")
    return not media_type or media_type in INDEX_MEDIA_TYPES


def _held(
    ecr: Any, repo: str, images: list[dict[str, Any]], roots: set[str], step: str
) -> dict[str, str]:
    """The images ``roots`` need besides themselves, each with the digest of the image that
    holds it: what an image index lists (platform images, attestations, nested indexes) and the
    referrers of an image (``subjectManifestDigest``: signatures, SBOMs), followed through
    whatever is held in turn. Only indexes are read (BatchGetImage, ``ECR_BATCH`` at a time).
    Raises :class:`EngineError` when an index cannot be read: nothing is safe to delete then."""
    details = {str(d["imageDigest"]): d for d in images}
    referrers: dict[str, list[str]] = {}
    for detail in images:
        if detail.get("subjectManifestDigest"):
            referrers.setdefault(str(detail["subjectManifestDigest"]), []).append(
                str(detail["imageDigest"])
            )
    held: dict[str, str] = {}
    frontier = sorted(d for d in roots if d in details)
    while frontier:
        reached = [(r, d) for d in frontier for r in referrers.get(d, [])]
        indexes = [d for d in frontier if _may_be_index(details[d])]
        for start in range(0, len(indexes), ECR_BATCH):
            reached += _listed(ecr, repo, indexes[start : start + ECR_BATCH], step)
        frontier = []
        for digest, holder in reached:
            if digest not in roots and digest not in held:
                held[digest] = holder
                if digest in details:
                    frontier.append(digest)
    return held


def _listed(ecr: Any, repo: str, digests: list[str], step: str) -> list[tuple[str, str]]:
    """``(listed digest, index digest)`` for every manifest the indexes ``digests`` list."""
    answer = ecr.batch_get_image(
        repositoryName=repo,
        imageIds=[{"imageDigest": d} for d in digests],
        acceptedMediaTypes=ACCEPTED_MANIFESTS,
    )
    for failure in answer.get("failures", []):
        if failure.get("failureCode") != "ImageNotFound":  # gone since listed: holds nothing
            digest = failure.get("imageId", {}).get("imageDigest", "?")
            raise EngineError(
                step,
                f"could not read image {repo}@{digest}: {failure.get('failureCode')} "
                f"{failure.get('failureReason', '')}".rstrip(),
            )
    pairs: list[tuple[str, str]] = []
    for image in answer.get("images", []):
        index = str(image["imageId"]["imageDigest"])
        try:
            manifest = json.loads(image.get("imageManifest") or "")
        except ValueError as exc:
            raise EngineError(step, f"the manifest of {repo}@{index} is not JSON") from exc
        entries = manifest.get("manifests") if isinstance(manifest, dict) else None
        pairs += [
            (str(e["digest"]), index)
            for e in entries or []
            if isinstance(e, dict) and e.get("digest")
        ]
    return pairs

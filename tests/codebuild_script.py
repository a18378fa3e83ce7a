"""CodeBuild builds that run the way a test scripts them.

moto's CodeBuild reports every build SUCCEEDED at once, drops the environment overrides and
writes no log. moto's server runs in this process, so (as the notes describe) the tests patch its
CodeBuild backend here: each ``batch_get_builds`` moves a build one poll further along its
script, writing the step's log lines into CloudWatch Logs when the step begins and, when the
script ends in SUCCEEDED, pushing the image (``IMAGE_REPO_NAME``:``IMAGE_TAG`` from the
overrides revieee sent) into ECR, as a real buildspec would. revieee reads all of it over HTTP
through boto3 like it would on AWS.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from moto.codebuild.models import CodeBuildBackend
from moto.codebuild.responses import CodeBuildResponse
from moto.ecr.models import ecr_backends
from moto.logs.models import logs_backends

from bot.sandbox import image_manifest

PHASES = ("SUBMITTED", "QUEUED", "PROVISIONING", "DOWNLOAD_SOURCE", "INSTALL", "PRE_BUILD",
          "BUILD", "POST_BUILD", "UPLOAD_ARTIFACTS", "FINALIZING", "COMPLETED")  # fmt: skip


@dataclass
class Step:
    """One stretch of a build: its phase for ``polls`` polls (or until released when
    ``hold``), writing ``lines`` when it begins. A step with ``status`` other than IN_PROGRESS
    ends the build."""

    phase: str
    lines: tuple[str, ...] = ()
    status: str = "IN_PROGRESS"
    polls: int = 1
    hold: bool = False
    context: tuple[str, str] | None = None  # (statusCode, message) of a failing phase
    push: bool = True  # SUCCEEDED: push the image (False: a buildspec that forgot to)


def create_project(codebuild: Any, name: str) -> None:
    """A CodeBuild project as a team would set one up to build images (tests and benchmarks)."""
    codebuild.create_project(
        name=name,
        source={"type": "GITHUB", "location": "https://github.com/acme/shop-web.git"},
        artifacts={"type": "NO_ARTIFACTS"},
        environment={
            "type": "LINUX_CONTAINER",
            "image": "aws/codebuild/standard:7.0",
            "computeType": "BUILD_GENERAL1_SMALL",
            "privilegedMode": True,
        },
        serviceRole="arn:aws:iam::123456789012:role/codebuild-images",
    )


def succeeding(lines_per_phase: int = 2, build_lines: tuple[str, ...] = ()) -> list[Step]:
    steps = [
        Step(p, tuple(f"[{p}] line {i}" for i in range(lines_per_phase)))
        for p in ("PROVISIONING", "DOWNLOAD_SOURCE", "PRE_BUILD")
    ]
    steps.append(Step("BUILD", build_lines or tuple(f"[BUILD] step {i}" for i in range(5))))
    steps.append(Step("POST_BUILD", ("pushing the image",)))
    steps.append(Step("COMPLETED", status="SUCCEEDED"))
    return steps


def failing(lines: tuple[str, ...], phase: str = "BUILD") -> list[Step]:
    return [
        Step("PROVISIONING", ("provisioning",)),
        Step(phase, lines),
        Step(
            "FINALIZING",
            status="FAILED",
            context=(
                "COMMAND_EXECUTION_ERROR",
                "Error while executing command: make image. Reason: exit status 2",
            ),
        ),
    ]


@dataclass
class Build:
    id: str
    project: str
    source_version: str | None
    variables: dict[str, str]
    token: str | None
    steps: list[Step]
    index: int = -1
    polls_left: int = 0
    released: bool = False
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    ended: datetime | None = None
    digest: str | None = None
    stopped: bool = False

    @property
    def step(self) -> Step:
        return self.steps[self.index]


class ScriptedCodeBuild:
    """The builds of this test; ``script`` is used for each build started from now on."""

    def __init__(self) -> None:
        self.script: list[Step] = succeeding()
        self.builds: dict[str, Build] = {}
        self.order: list[str] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    # -- what the test sees and does ---------------------------------------------------------

    def only(self) -> Build:
        assert len(self.order) == 1, f"expected one build, got {len(self.order)}"
        return self.builds[self.order[0]]

    def release(self, build_id: str) -> None:
        """Let a ``hold`` step end at the next poll."""
        with self._lock:
            self.builds[build_id].released = True

    def release_all(self) -> None:
        """Let every held build go on (a failed test's worker must not wait on it forever)."""
        with self._lock:
            for build in self.builds.values():
                build.released = True

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("timed out waiting for the scripted build")
                self._changed.wait(remaining)

    # -- moto's side -----------------------------------------------------------------------------

    def started(self, build: dict[str, Any], params: dict[str, Any]) -> None:
        variables = {
            v["name"]: v["value"] for v in params.get("environmentVariablesOverride") or []
        }
        with self._changed:
            self.builds[build["id"]] = Build(
                build["id"],
                build["projectName"],
                params.get("sourceVersion"),
                variables,
                params.get("idempotencyToken"),
                list(self.script),
            )
            self.order.append(build["id"])
            self._changed.notify_all()

    def describe(self, backend: CodeBuildBackend, build_id: str, advance: bool) -> dict[str, Any]:
        with self._changed:
            build = self.builds[build_id]
            if advance:
                self._advance(backend, build)
            self._changed.notify_all()
            return self._render(backend, build)

    def stop(self, backend: CodeBuildBackend, build_id: str) -> dict[str, Any]:
        with self._changed:
            build = self.builds[build_id]
            build.stopped = True
            build.steps = [*build.steps[: build.index + 1], Step("COMPLETED", status="STOPPED")]
            build.polls_left = 0
            build.released = True
            self._changed.notify_all()
            return self._render(backend, build)

    def _advance(self, backend: CodeBuildBackend, build: Build) -> None:
        if build.index >= 0 and build.step.status != "IN_PROGRESS":
            return  # ended
        if build.index >= 0:
            if build.step.hold and not build.released:
                return
            build.polls_left -= 1
            if build.polls_left > 0 and not build.released:
                return
            # a release ends the step it finds: one that came before the build was first
            # polled (still QUEUED) is kept for the held step, not spent on leaving the queue
            build.released = False
        build.index += 1
        step = build.step
        build.polls_left = step.polls
        if step.lines:
            self._write(backend, build, step.lines)
        if step.status != "IN_PROGRESS":
            build.ended = datetime.now(UTC)
            if step.status == "SUCCEEDED" and step.push:
                repo = build.variables["IMAGE_REPO_NAME"]
                tag = build.variables["IMAGE_TAG"]
                ecr = ecr_backends[backend.account_id][backend.region_name]
                image = ecr.put_image(repo, image_manifest(repo, f"{tag}:{build.id}"), tag)
                build.digest = image.get_image_digest()

    def _write(self, backend: CodeBuildBackend, build: Build, lines: tuple[str, ...]) -> None:
        logs = logs_backends[backend.account_id][backend.region_name]
        group, stream = self.log_names(build)
        if group not in logs.groups:
            logs.create_log_group(group, {})
        if stream not in logs.groups[group].streams:
            logs.groups[group].create_log_stream(stream)
        now = int(time.time() * 1000)
        logs.put_log_events(
            group, stream, [{"timestamp": now, "message": line + "\n"} for line in lines]
        )

    @staticmethod
    def log_names(build: Build) -> tuple[str, str]:
        return f"/aws/codebuild/{build.project}", build.id.split(":", 1)[1]

    def _render(self, backend: CodeBuildBackend, build: Build) -> dict[str, Any]:
        step = build.step if build.index >= 0 else Step("QUEUED")
        region = backend.region_name
        done_phases = []
        seen = set()
        for s in build.steps[: max(build.index, 0)]:
            if s.phase not in seen:
                seen.add(s.phase)
                done_phases.append({"phaseType": s.phase, "phaseStatus": "SUCCEEDED"})
        if step.status not in ("IN_PROGRESS", "SUCCEEDED") and done_phases:
            failed = done_phases[-1]
            failed["phaseStatus"] = "FAILED" if step.status == "FAILED" else step.status
            if step.context:
                failed["contexts"] = [{"statusCode": step.context[0], "message": step.context[1]}]
        group, stream = self.log_names(build)
        out: dict[str, Any] = {
            "id": build.id,
            "arn": f"arn:aws:codebuild:{region}:{backend.account_id}:build/{build.id}",
            "projectName": build.project,
            "sourceVersion": build.source_version,
            "startTime": build.started.timestamp(),
            "currentPhase": step.phase,
            "buildStatus": step.status,
            "buildComplete": step.status != "IN_PROGRESS",
            "phases": [*done_phases, {"phaseType": step.phase}],
            "logs": {},
        }
        if build.index >= 0:  # CodeBuild names the log once the build is provisioned
            out["logs"] = {
                "groupName": group,
                "streamName": stream,
                "deepLink": f"https://console.aws.amazon.com/cloudwatch/home?region={region}"
                f"#logEvent:group={group};stream={stream}",
            }
        if build.ended is not None:
            out["endTime"] = build.ended.timestamp()
        return out


@contextmanager
def scripted_codebuild(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedCodeBuild]:
    script = ScriptedCodeBuild()
    original_start = CodeBuildResponse.start_build

    def start_build(self: CodeBuildResponse) -> Any:
        result = original_start(self)
        build = result.result["build"] if hasattr(result, "result") else None
        if build is None:  # pragma: no cover - moto's answer changed shape
            raise AssertionError("moto's start_build answer changed: update the script")
        params = {
            key: self._get_param(key)
            for key in ("sourceVersion", "environmentVariablesOverride", "idempotencyToken")
        }
        script.started(build, params)
        return result

    def batch_get_builds(self: CodeBuildBackend, ids: list[str]) -> list[dict[str, Any]]:
        return [script.describe(self, i, advance=True) for i in ids if i in script.builds]

    def stop_build(self: CodeBuildBackend, build_id: str) -> dict[str, Any]:
        return script.stop(self, build_id)

    monkeypatch.setattr(CodeBuildResponse, "start_build", start_build)
    monkeypatch.setattr(CodeBuildBackend, "batch_get_builds", batch_get_builds)
    monkeypatch.setattr(CodeBuildBackend, "stop_build", stop_build)
    yield script

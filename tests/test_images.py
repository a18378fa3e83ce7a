"""Images: CodeBuild builds streamed into the deploy's thread, waiting for CI's image, the cache,
and ECR hygiene. Slack is reached over real HTTP (tests/fake_slack.py), AWS is moto's server;
moto cannot run a build, so CodeBuild's progress is scripted in its backend
(tests/codebuild_script.py) and the log lines are written into moto's CloudWatch Logs."""

from __future__ import annotations

import itertools
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bot import cli, events
from bot.app import build
from bot.aws import AwsClients, CallCounter
from bot.config import settings_from_mapping
from bot.naming import env_name
from bot.sandbox import Seeded, push_image, push_untagged, sandbox_config
from tests.codebuild_script import (
    ScriptedCodeBuild,
    Step,
    create_project,
    failing,
    scripted_codebuild,
    succeeding,
)
from tests.conftest import MakeRig
from tests.fake_slack import FakeSlack
from tests.slack_rig import SlackRig
from tests.test_slack import thread_replies

BRANCH = "feature/checkout"
ENV = env_name("shop", BRANCH)
SHA = "c0ffee1234567890c0ffee1234567890c0ffee12"
TAG = f"feature-checkout-{SHA[:7]}"
CODEBUILD = {"image_source": "codebuild", "codebuild_project": "shop-web-images"}


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedCodeBuild]:
    with scripted_codebuild(monkeypatch) as script:
        yield script
        script.release_all()  # before the rig closes: its workers drain


def make_project(admin: AwsClients, name: str = "shop-web-images") -> None:
    create_project(admin.codebuild, name)


def web(**fields: Any) -> dict[str, Any]:
    """The app's services with web's image settings changed."""
    return {
        "services": {
            "web": {
                "repository": "acme/shop-web",
                "task_definition": "shop-web",
                "container": "web",
                "port": 8080,
                "ecr_repository": "shop-web",
                "public": True,
                **fields,
            },
            "api": {
                "repository": "acme/shop-api",
                "task_definition": "shop-api",
                "container": "api",
                "port": 9000,
                "ecr_repository": "shop-api",
            },
        }
    }


def thread(rig: SlackRig, fake: FakeSlack) -> str:
    return "\n".join(thread_replies(fake, rig.deploy_message(ENV)["ts"]))


def updates(fake: FakeSlack) -> list[str]:
    return [json.dumps(c.args.get("blocks")) for c in fake.of("chat.update")]


# -- CodeBuild ---------------------------------------------------------------------------------


def test_a_missing_image_is_built_with_codebuild_and_its_log_streams_into_the_thread(
    make_rig: MakeRig,
    aws: AwsClients,
    admin: AwsClients,
    builds: ScriptedCodeBuild,
    fake: FakeSlack,
) -> None:
    make_project(admin)
    rig = make_rig(app=web(**CODEBUILD))
    sent = CallCounter(rig.runtime.clients)
    steps: list[events.Step] = []
    rig.runtime.bus.subscribe(events.Step, steps.append)
    assert rig.command(f"deploy {BRANCH} --sha {SHA}").status == 200
    row = rig.wait_status(ENV, "running", "failed")
    assert row["status"] == "running", row["error"]
    # each step comes with the phase its emitter declares, in the order a deploy goes through
    phases = [p for i, p in enumerate(s.phase for s in steps) if i == 0 or steps[i - 1].phase != p]
    assert phases == ["queued", "resolving", "building", "deploying", "ready"]
    assert {s.phase for s in steps if s.step == "building image"} == {events.Phase.BUILDING}
    assert isinstance(steps[-1], events.Finished) and not steps[-1].superseded

    build = builds.only()
    assert build.project == "shop-web-images"
    assert build.source_version == SHA
    assert build.variables["IMAGE_TAG"] == TAG
    assert build.variables["IMAGE_REPO_NAME"] == "shop-web"
    assert build.variables["IMAGE_URI"].endswith(f"/shop-web:{TAG}")
    assert build.variables["REVIEEE_ENV"] == ENV and build.variables["REVIEEE_SHA"] == SHA
    assert build.token and build.token.startswith("revieee-")
    (started,) = sent.params_of("codebuild:StartBuild")
    assert started["timeoutInMinutesOverride"] == 60

    # the task definition runs exactly the image the build pushed
    deployment = rig.runtime.store.deployments(ENV, 1)[0]
    (web_plan,) = [p for p in json.loads(deployment["images"]) if p["service"] == "web"]
    assert web_plan["image"].endswith("@" + str(build.digest)) and web_plan["tag"] == TAG
    record = rig.runtime.store.builds(env=ENV)[0]
    assert record["status"] == "SUCCEEDED" and record["digest"] == build.digest

    text = thread(rig, fake)
    assert "[BUILD] step 4" in text and "```" in text  # the log, in code blocks
    assert "build of web: phase BUILD" in text  # phase changes noted
    assert f"built shop-web:{TAG} in" in text  # success with the duration
    assert text.index("[PROVISIONING] line 0") < text.index("[BUILD] step 0")
    # the main message showed the build's phase while it ran
    assert any("Building image" in u and "CodeBuild: web: BUILD" in u for u in updates(fake))


def test_a_redeploy_of_a_built_commit_uses_the_cached_image(
    make_rig: MakeRig,
    aws: AwsClients,
    admin: AwsClients,
    builds: ScriptedCodeBuild,
    fake: FakeSlack,
) -> None:
    make_project(admin)
    rig = make_rig(app=web(**CODEBUILD))
    rig.command(f"deploy {BRANCH} --sha {SHA}")
    rig.wait_status(ENV, "running", "failed")
    rig.command(f"deploy {BRANCH} --sha {SHA}")
    row = rig.wait_status(ENV, "running", "failed")
    assert row["status"] == "running"
    assert len(builds.order) == 1  # never rebuilt
    assert "image cached: no build needed" in thread(rig, fake)


def test_a_failed_build_shows_the_failing_phase_the_last_lines_and_the_log_link(
    make_rig: MakeRig,
    aws: AwsClients,
    admin: AwsClients,
    builds: ScriptedCodeBuild,
    fake: FakeSlack,
) -> None:
    make_project(admin)
    builds.script = failing(tuple(f"compiling module {i}" for i in range(60)))
    rig = make_rig(app=web(**CODEBUILD))
    rig.command(f"deploy {BRANCH} --sha {SHA}")
    row = rig.wait_status(ENV, "failed")
    assert "failed in phase BUILD" in row["error"]
    assert "COMMAND_EXECUTION_ERROR" in row["error"]
    text = thread(rig, fake)
    summary = text[text.index(":x: the build of web failed") :]
    assert "Last 30 lines:" in summary
    assert "compiling module 59" in summary and "compiling module 30" in summary
    assert "compiling module 29" not in summary
    assert "Full log in the AWS console" in summary and "logEvent:group=" in summary
    # the reason in the main message, with the link to the whole log
    final = updates(fake)[-1]
    assert "failed in phase BUILD" in final and "Full build log in the AWS console" in final
    assert rig.runtime.store.builds(env=ENV)[0]["status"] == "FAILED"
    # nothing was deployed for web: no ECS service was created
    assert (
        admin.ecs.describe_services(cluster="revieee-sandbox", services=[f"{ENV}-web"])["services"]
        == []
    )


def test_a_long_log_is_batched_in_the_thread_and_uploaded_whole_as_a_file(
    make_rig: MakeRig,
    aws: AwsClients,
    admin: AwsClients,
    builds: ScriptedCodeBuild,
    fake: FakeSlack,
) -> None:
    make_project(admin)
    lines = tuple(f"layer {i:04d} " + "x" * 60 for i in range(1000))
    builds.script = succeeding(build_lines=lines)
    rig = make_rig(app=web(**CODEBUILD), build_log_lines=120, log_post_interval=0.3)
    rig.command(f"deploy {BRANCH} --sha {SHA}")
    assert rig.wait_status(ENV, "running", "failed")["status"] == "running"

    ts = rig.deploy_message(ENV)["ts"]
    posts = [c for c in fake.of("chat.postMessage") if c.args.get("thread_ts") == ts]
    assert all(len(c.args["text"]) <= 4000 for c in posts)  # within Slack's message size
    shown = [line for c in posts for line in c.args["text"].splitlines() if "layer" in line]
    assert 0 < len(shown) <= 120
    assert "goes into a file" in "\n".join(c.args["text"] for c in posts)
    (upload,) = fake.uploads
    assert upload["thread_ts"] == ts
    content = upload["content"].decode()
    assert content.count("layer ") == 1000 and "layer 0999" in content
    assert "[PROVISIONING] line 0" in content  # the whole log, not just the rest
    assert "built shop-web:" in (upload["initial_comment"] or "")
    assert upload["snippet_type"] == "text"  # under Slack's 1 MB for a snippet
    # no more than one post per interval in the thread (files included, small jitter allowed)
    stamps = sorted(fake.post_times(ts))
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert gaps and min(gaps) >= 0.25, gaps


def test_a_log_above_the_snippet_size_goes_up_as_a_plain_file(
    make_rig: MakeRig,
    aws: AwsClients,
    admin: AwsClients,
    builds: ScriptedCodeBuild,
    fake: FakeSlack,
) -> None:
    make_project(admin)
    lines = tuple(f"layer {i:04d} " + "x" * 900 for i in range(1300))  # 1.2 MB (lines < 1,000)
    builds.script = succeeding(build_lines=lines)
    rig = make_rig(app=web(**CODEBUILD), build_log_lines=20, log_post_interval=0.05)
    rig.command(f"deploy {BRANCH} --sha {SHA}")
    assert rig.wait_status(ENV, "running", "failed")["status"] == "running"
    rig.drain()
    (upload,) = fake.uploads  # the fake answers snippet_too_large to a snippet above 1 MB
    assert upload["snippet_type"] is None and upload["content"].decode().count("layer ") == 1300


def test_a_failed_file_upload_still_posts_the_summary_and_keeps_the_thread_going(
    make_rig: MakeRig,
    aws: AwsClients,
    admin: AwsClients,
    builds: ScriptedCodeBuild,
    fake: FakeSlack,
) -> None:
    make_project(admin)
    builds.script = succeeding(build_lines=tuple(f"layer {i}" for i in range(300)))
    fake.upload_failures = 1  # the upload URL answers 500 once
    rig = make_rig(app=web(**CODEBUILD), build_log_lines=50, log_post_interval=0.05)
    rig.command(f"deploy {BRANCH} --sha {SHA}")
    assert rig.wait_status(ENV, "running", "failed")["status"] == "running"
    rig.drain()
    assert fake.uploads == []
    text = thread(rig, fake)
    assert f"built shop-web:{TAG} in" in text  # the summary, posted in the thread instead
    after = text[text.index(f"built shop-web:{TAG} in") :]
    assert "all services are stable" in after  # and the thread went on after the failure
    errors = [e for e in rig.runtime.store.audit_events(env=ENV) if e["action"] == "slack error"]
    assert errors and "500" in errors[0]["detail"]


def test_log_lines_cannot_ping_the_channel_or_close_their_code_block(
    make_rig: MakeRig,
    aws: AwsClients,
    admin: AwsClients,
    builds: ScriptedCodeBuild,
    fake: FakeSlack,
) -> None:
    make_project(admin)
    builds.script = succeeding(build_lines=("echo <!channel> & <@U123>", "```", "done"))
    rig = make_rig(app=web(**CODEBUILD))
    rig.command(f"deploy {BRANCH} --sha {SHA}")
    assert rig.wait_status(ENV, "running", "failed")["status"] == "running"
    text = thread(rig, fake)
    assert "echo &lt;!channel&gt; &amp; &lt;@U123&gt;" in text
    assert "<!channel>" not in text and "<@U123>" not in text
    assert "\n```\n```\n" not in text  # a log line's backticks do not end the block


def test_a_second_deploy_of_the_same_commit_joins_the_running_build(
    make_rig: MakeRig,
    aws: AwsClients,
    admin: AwsClients,
    builds: ScriptedCodeBuild,
    fake: FakeSlack,
) -> None:
    make_project(admin)
    builds.script = [Step("BUILD", ("building",), hold=True), *succeeding()[-2:]]
    rig = make_rig(app=web(**CODEBUILD))
    rig.command(f"deploy {BRANCH} --sha {SHA}")
    builds.wait_for(lambda: builds.order)
    rig.command(f"deploy {BRANCH} --sha {SHA}")  # supersedes the first, which gives way
    first = rig.runtime.store.operations(env=ENV)[0]
    _wait(lambda: rig.runtime.store.get_operation(first.id).status == "succeeded")
    builds.release(builds.order[0])
    row = rig.wait_status(ENV, "running", "failed")
    assert row["status"] == "running", row["error"]
    assert len(builds.order) == 1  # one build for both deploys
    assert not builds.only().stopped
    text = thread(rig, fake)
    assert "already running" in text
    assert rig.runtime.store.deployments(ENV, 5)[-1]["result"] == "superseded"


def test_a_stop_while_building_stops_the_build(
    make_rig: MakeRig,
    aws: AwsClients,
    admin: AwsClients,
    builds: ScriptedCodeBuild,
    fake: FakeSlack,
) -> None:
    make_project(admin)
    builds.script = [Step("BUILD", ("building",), hold=True), *succeeding()[-2:]]
    rig = make_rig(app=web(**CODEBUILD))
    rig.command(f"deploy {BRANCH} --sha {SHA}")
    builds.wait_for(lambda: builds.order)
    rig.command(f"stop {ENV}")
    row = rig.wait_status(ENV, "stopped")
    assert row["status"] == "stopped"
    assert builds.only().stopped
    assert rig.runtime.store.builds(env=ENV)[0]["status"] == "STOPPED"


def test_a_build_that_pushes_no_image_fails_clearly(
    make_rig: MakeRig,
    aws: AwsClients,
    admin: AwsClients,
    builds: ScriptedCodeBuild,
    fake: FakeSlack,
) -> None:
    make_project(admin)
    builds.script = [*succeeding()[:-1], Step("COMPLETED", status="SUCCEEDED", push=False)]
    rig = make_rig(app=web(**CODEBUILD))
    rig.command(f"deploy {BRANCH} --sha {SHA}")
    row = rig.wait_status(ENV, "failed")
    assert f"shop-web:{TAG} is not in ECR" in row["error"]
    assert "must push $IMAGE_URI" in row["error"]


def test_codebuild_without_a_known_commit_says_how_to_give_one(
    make_rig: MakeRig, aws: AwsClients, builds: ScriptedCodeBuild, fake: FakeSlack
) -> None:
    rig = make_rig(app=web(**CODEBUILD))
    rig.command("deploy feature/brand-new")
    env = env_name("shop", "feature/brand-new")
    row = rig.wait_status(env, "failed")
    assert "pass --sha" in row["error"] and "GITHUB_TOKEN" in row["error"]
    assert builds.order == []


# -- waiting for CI --------------------------------------------------------------------------


def test_wait_deploys_once_ci_pushes_the_image(
    make_rig: MakeRig, aws: AwsClients, admin: AwsClients, fake: FakeSlack
) -> None:
    rig = make_rig(app=web(image_source="wait", wait_timeout="20s"))
    rig.command(f"deploy {BRANCH} --sha {SHA}")
    _wait(lambda: rig.runtime.store.get_env(ENV)["status"] == "deploying")
    time.sleep(0.3)  # a few polls find nothing
    digest = push_image(admin.ecr, "shop-web", TAG)
    row = rig.wait_status(ENV, "running", "failed")
    assert row["status"] == "running", row["error"]
    deployment = rig.runtime.store.deployments(ENV, 1)[0]
    assert digest in deployment["images"]
    text = thread(rig, fake)
    assert f"waiting up to 20s for shop-web:{TAG}" in text
    assert f"shop-web:{TAG} is there after" in text


def test_wait_times_out_saying_which_tag_and_how_to_push_it(
    make_rig: MakeRig, aws: AwsClients, fake: FakeSlack
) -> None:
    rig = make_rig(app=web(image_source="wait", wait_timeout="1s"))
    rig.command(f"deploy {BRANCH} --sha {SHA}")
    row = rig.wait_status(ENV, "failed")
    assert f"shop-web:{TAG} did not appear in ECR within" in row["error"]
    assert "docker push" in row["error"] and f"/shop-web:{TAG}" in row["error"]


def _workflow_run(conclusion: str, sha: str = SHA) -> dict[str, Any]:
    from pathlib import Path

    path = Path(__file__).parents[2] / "shared/fixtures/github-webhooks/workflow_run"
    payload = json.loads((path / "completed.payload.json").read_text())
    payload["workflow_run"].update(head_sha=sha, conclusion=conclusion, name="Build image")
    payload["repository"]["full_name"] = "acme/shop-web"
    return payload


def test_a_failed_ci_run_ends_the_wait_with_its_link(
    make_rig: MakeRig, aws: AwsClients, fake: FakeSlack
) -> None:
    rig = make_rig(app=web(image_source="wait", wait_timeout="60s"))
    rig.command(f"deploy {BRANCH} --sha {SHA}")
    _wait(lambda: rig.runtime.store.get_env(ENV)["status"] == "deploying")
    started = time.monotonic()
    assert rig.github("workflow_run", _workflow_run("failure")).status == 202
    row = rig.wait_status(ENV, "failed")
    assert time.monotonic() - started < 30  # early, not at the 60 s deadline
    assert "ended failure" in row["error"]
    assert "https://github.com/octo-org/octo-repo/actions/runs/289782451" in row["error"]


def test_a_successful_ci_run_for_another_commit_does_not_end_the_wait(
    make_rig: MakeRig, aws: AwsClients, admin: AwsClients, fake: FakeSlack
) -> None:
    rig = make_rig(app=web(image_source="wait", wait_timeout="60s"))
    rig.command(f"deploy {BRANCH} --sha {SHA}")
    _wait(lambda: rig.runtime.store.get_env(ENV)["status"] == "deploying")
    rig.github("workflow_run", _workflow_run("failure", sha="f" * 40))
    rig.github("workflow_run", _workflow_run("success"))
    _wait(lambda: "should show up in ECR" in thread(rig, fake))
    push_image(admin.ecr, "shop-web", TAG)
    row = rig.wait_status(ENV, "running", "failed")
    assert row["status"] == "running", row["error"]


# -- ECS service events ----------------------------------------------------------------------


def test_ecs_service_events_stream_into_the_thread_during_the_deploy(
    make_rig: MakeRig, aws: AwsClients, fake: FakeSlack
) -> None:
    """The strict layer posts the service events ECS posts (tasks started, deployment
    completed, steady state): they reach the thread as the rollout goes."""
    rig = make_rig()
    rig.command(f"deploy {BRANCH}")
    row = rig.wait_status(ENV, "running", "failed")
    assert row["status"] == "running"
    text = thread(rig, fake)
    assert f"(service {ENV}-web) has started 1 tasks: (task " in text and "```" in text
    assert f"(service {ENV}-api) has reached a steady state." in text


# -- ECR hygiene -----------------------------------------------------------------------------


def test_a_stop_deletes_the_images_built_for_the_environment_only(
    make_rig: MakeRig,
    aws: AwsClients,
    admin: AwsClients,
    builds: ScriptedCodeBuild,
    fake: FakeSlack,
) -> None:
    make_project(admin)
    rig = make_rig(app=web(**CODEBUILD), gc_untagged_images=True)
    # an untagged image in the managed repository (moto deletes an image whose tag moves, so
    # the test pushes one without a tag, as AWS would leave it)
    old = push_untagged(admin.ecr, "shop-web", "old-build")
    rig.command(f"deploy {BRANCH} --sha {SHA}")
    rig.wait_status(ENV, "running")
    rig.command("deploy main")  # main's image was not built by revieee
    main_env = env_name("shop", "main")
    rig.wait_status(main_env, "running")

    rig.command(f"stop {ENV}")
    rig.wait_status(ENV, "stopped")
    tags = {
        t
        for d in admin.ecr.describe_images(repositoryName="shop-web")["imageDetails"]
        for t in d.get("imageTags", [])
    }
    assert TAG not in tags  # built for it: deleted
    assert any(t.startswith("main-") for t in tags)  # pushed by someone else: kept
    untagged = admin.ecr.list_images(repositoryName="shop-web", filter={"tagStatus": "UNTAGGED"})
    assert old not in {i["imageDigest"] for i in untagged["imageIds"]}  # collected
    assert f"deleted image tag(s) shop-web:{TAG}" in thread(rig, fake)
    assert rig.runtime.store.builds(env=ENV)[0]["images_deleted_at"]


def test_an_image_another_environment_runs_is_never_deleted(
    make_rig: MakeRig,
    aws: AwsClients,
    admin: AwsClients,
    builds: ScriptedCodeBuild,
    fake: FakeSlack,
) -> None:
    make_project(admin)
    rig = make_rig(app=web(**CODEBUILD), gc_untagged_images=True)
    rig.command(f"deploy {BRANCH} --sha {SHA}")
    rig.wait_status(ENV, "running")
    # another environment runs the same image by its digest (e.g. a second app on the repo)
    digest = builds.only().digest
    other = env_name("shop", "other")
    store = rig.runtime.store
    store.upsert_env(other, app="shop", branch="other", status="running", url="https://o")
    image = json.loads(store.deployments(ENV, 1)[0]["images"])
    dep = store.start_deployment(env=other, app="shop", branch="other", operation_id=0)
    store.update_deployment(dep, images=json.dumps(image))
    rig.command(f"stop {ENV}")
    rig.wait_status(ENV, "stopped")
    found = admin.ecr.describe_images(repositoryName="shop-web", imageIds=[{"imageTag": TAG}])
    assert found["imageDetails"][0]["imageDigest"] == digest
    assert "another environment runs it" in thread(rig, fake)
    assert not rig.runtime.store.builds(env=ENV)[0]["images_deleted_at"]


def _wait(predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


# -- a restart in the middle of a build ------------------------------------------------------


class Crash(BaseException):
    """The process dies here: no handler of ours sees it (like kill -9 for the store)."""


def test_a_restart_mid_build_follows_the_same_build_instead_of_starting_another(
    seeded: Seeded, aws: AwsClients, admin: AwsClients, builds: ScriptedCodeBuild, tmp_path: Any
) -> None:
    make_project(admin)
    config = sandbox_config(seeded, str(tmp_path / "revieee.db"))
    config["apps"]["shop"].update(web(**CODEBUILD))
    settings = settings_from_mapping(config, environ={})
    builds.script = [Step("BUILD", ("compiling",), hold=True), *succeeding()[-2:]]
    first = build(settings, clients=aws)

    def dies_once_the_build_runs(seconds: float) -> None:
        if builds.order:
            raise Crash
        time.sleep(seconds)

    first.core.executor.images._sleep = dies_once_the_build_runs
    req = first.core.intake.request_deploy(BRANCH, sha=SHA)
    with pytest.raises(Crash):
        first.runner.run_until_idle()
    assert first.store.get_operation(req.operation.id).status == "running"
    first.store.close()
    # the worker's process is gone: its operation is resumed by the next one
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    second = build(settings, clients=aws)
    second.store.db.conn.execute(
        "update operations set owner = ? where id = ?",
        [f"{socket.gethostname()}:{dead.pid}", req.operation.id],
    )
    steps: list[str] = []
    second.bus.subscribe(events.Step, lambda e: steps.append(e.message))
    resumed, _ = second.runner.recover()
    assert resumed == [req.operation.id]
    builds.release(builds.order[0])
    second.runner.run_until_idle()
    row = second.store.get_env(ENV)
    assert row is not None and row["status"] == "running", row
    assert len(builds.order) == 1  # the build was followed, not started again
    assert any("again after a restart" in m for m in steps), steps
    second.close()


def test_check_reports_a_missing_codebuild_project(
    seeded: Seeded, aws: AwsClients, admin: AwsClients, tmp_path: Any
) -> None:
    config = sandbox_config(seeded, str(tmp_path / "revieee.db"))
    config["apps"]["shop"].update(web(**CODEBUILD))
    runtime = build(settings_from_mapping(config, environ={}), clients=aws)
    try:
        problems = runtime.engine.check()
        assert any(
            "apps.shop.services.web.codebuild_project" in p and "does not exist" in p
            for p in problems
        ), problems
        make_project(admin)
        assert runtime.engine.check() == []
    finally:
        runtime.close()


# -- the terminal ----------------------------------------------------------------------------


def test_the_terminal_prints_the_build_log_and_collects_untagged_images(
    seeded: Seeded,
    aws: AwsClients,
    admin: AwsClients,
    builds: ScriptedCodeBuild,
    write_config: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_project(admin)
    path = write_config(apps={"shop": web(**CODEBUILD)})
    assert cli.main(["--config", str(path), "deploy", BRANCH, "--sha", SHA, "--wait"]) == 0
    out = capsys.readouterr().out
    assert "  | [BUILD] step 3" in out and "[build of web] phase BUILD" in out
    assert f"built shop-web:{TAG}" in out

    old = push_untagged(admin.ecr, "shop-web", "old-build")
    assert cli.main(["--config", str(path), "gc-images", "--dry-run"]) == 0
    assert f"shop-web@{old}" in capsys.readouterr().out
    untagged = admin.ecr.list_images(repositoryName="shop-web", filter={"tagStatus": "UNTAGGED"})
    assert old in {i["imageDigest"] for i in untagged["imageIds"]}  # a dry run deletes nothing
    assert cli.main(["--config", str(path), "gc-images"]) == 0
    assert "deleted 1 untagged image(s) in shop-web" in capsys.readouterr().out
    untagged = admin.ecr.list_images(repositoryName="shop-web", filter={"tagStatus": "UNTAGGED"})
    assert old not in {i["imageDigest"] for i in untagged["imageIds"]}
    assert cli.main(["--config", str(path), "gc-images", "--now"]) == 2

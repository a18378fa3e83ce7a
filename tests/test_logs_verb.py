"""The ``logs`` verb end to end: container logs read from moto's CloudWatch Logs over HTTP for an
environment deployed by the real engine, then answered in Slack (signed requests into the
running server, the fake Slack's Web API and file uploads), in a PR comment (the GitHub REST
fake) and in the terminal (the console script as a subprocess)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot import container_logs
from bot.app import Runtime, build
from bot.aws import AwsClients, CallCounter, build_clients
from bot.config import settings_from_mapping
from bot.core import RequestError
from bot.engine import EngineError
from bot.naming import env_name
from bot.sandbox import (
    Seeded,
    StrictSandbox,
    fake_sha,
    push_image,
    sandbox_config,
    sandbox_settings,
)
from bot.strict_aws import StrictAws
from tests.conftest import MakeRig, WriteConfig
from tests.fake_github_rest import FakeGitHub
from tests.fake_slack import FakeSlack
from tests.fault_proxy import Fault, FaultProxy
from tests.slack_rig import CHANNEL, SlackRig, start_rig
from tests.test_cli import revieee
from tests.test_github import comment, outcome
from tests.test_github_webhooks import HEAD_SHA, REPO

BRANCH = "feature/checkout"
ENV = env_name("shop", BRANCH)
GROUP = "/revieee/revieee-sandbox/environments"  # the stack's EnvironmentLogGroup
TASK_A = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
TASK_B = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
TASK_C = "c0ffee00c0ffee00c0ffee00c0ffee00"


def template(
    admin: AwsClients,
    family: str,
    container: str,
    port: int,
    log_configuration: dict[str, Any] | None,
) -> None:
    """A new revision of a template family (the sandbox's, with a log configuration)."""
    definition: dict[str, Any] = {
        "name": container,
        "image": "public.ecr.aws/nginx/nginx:latest",
        "memory": 512,
        "essential": True,
        "portMappings": [{"containerPort": port, "protocol": "tcp"}],
    }
    if log_configuration:
        definition["logConfiguration"] = log_configuration
    admin.ecs.register_task_definition(
        family=family,
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[definition],
    )


def awslogs(prefix: str = "shop", group: str = GROUP) -> dict[str, Any]:
    options = {"awslogs-group": group, "awslogs-region": "us-east-1"}
    return {"logDriver": "awslogs", "options": {**options, "awslogs-stream-prefix": prefix}}


@pytest.fixture
def logged(admin: AwsClients, seeded: Seeded) -> None:
    """The web template logs to CloudWatch (awslogs, prefix ``shop``); api keeps the sandbox's
    template, which has no log configuration."""
    template(admin, "shop-web", "web", 8080, awslogs())
    admin.logs.create_log_group(logGroupName=GROUP)


def deploy(rt: Runtime, branch: str = BRANCH) -> dict[str, Any]:
    req = rt.core.intake.request_deploy(branch, "shop", wait=True)
    rt.runner.run_until_idle(only=req.operation.id)
    assert rt.store.get_operation(req.operation.id).status == "succeeded"
    row = rt.store.get_env(req.env)
    assert row is not None
    return row


def ms_ago(seconds: float) -> int:
    return int((datetime.now(UTC).timestamp() - seconds) * 1000)


def write(
    admin: AwsClients,
    stream: str,
    events: list[tuple[int, str]],
    group: str = GROUP,
) -> None:
    """What the awslogs driver does for one task: its stream, its events (oldest first)."""
    with contextlib.suppress(admin.logs.exceptions.ResourceAlreadyExistsException):
        admin.logs.create_log_stream(logGroupName=group, logStreamName=stream)
    admin.logs.put_log_events(
        logGroupName=group,
        logStreamName=stream,
        logEvents=[{"timestamp": t, "message": m} for t, m in sorted(events)],
    )


def clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S")


# -- reading: CloudWatch Logs through the engine's clients --------------------------------------


def test_lines_of_two_tasks_interleaved_by_time_and_only_this_environment(
    runtime: Runtime, aws: AwsClients, admin: AwsClients, logged: None
) -> None:
    row = deploy(runtime)
    other = deploy(runtime, "main")["name"]
    # revieee put the environment in the stream prefix of the task definition it registered
    (web,) = [s for s in json.loads(row["services"]) if s["service"] == "web"]
    registered = admin.ecs.describe_task_definition(taskDefinition=web["task_definition"])
    options = registered["taskDefinition"]["containerDefinitions"][0]["logConfiguration"]["options"]
    assert options["awslogs-stream-prefix"] == f"shop/{ENV}"

    times = [ms_ago(s) for s in (300, 200, 100, 50)]
    write(
        admin, f"shop/{ENV}/web/{TASK_A}", [(times[0], "a: starting"), (times[2], "a: crashed\n")]
    )
    write(admin, f"shop/{ENV}/web/{TASK_B}", [(times[1], "b: starting"), (times[3], "b: serving")])
    write(admin, f"shop/{other}/web/{TASK_C}", [(times[1], "another environment")])

    counter = CallCounter(aws)
    result = runtime.core.queries.container_logs(BRANCH)  # a branch works as well as the name
    assert result.lines == [
        f"{clock(times[0])} web/a1b2c3d a: starting",
        f"{clock(times[1])} web/0f1e2d3 b: starting",
        f"{clock(times[2])} web/a1b2c3d a: crashed",
        f"{clock(times[3])} web/0f1e2d3 b: serving",
    ]
    assert result.found == 4 and not result.truncated
    assert result.services == ["web", "api"]
    assert result.notes == ["container api of api has no logConfiguration, not CloudWatch"]
    assert result.links[GROUP].endswith(
        "#logsV2:log-groups/log-group/$252Frevieee$252Frevieee-sandbox$252Fenvironments"
    )
    # the query names the environment's streams (moto ignores the prefix; AWS applies it)
    (sent,) = counter.params_of("logs:FilterLogEvents")
    assert sent["logStreamNamePrefix"] == f"shop/{ENV}/web/"
    assert sent["logGroupName"] == GROUP


def test_lines_keeps_the_newest_and_since_leaves_out_older_events(
    runtime: Runtime, aws: AwsClients, admin: AwsClients, logged: None
) -> None:
    deploy(runtime)
    write(admin, f"shop/{ENV}/web/{TASK_A}", [(ms_ago(7200), "two hours ago")])
    write(admin, f"shop/{ENV}/web/{TASK_B}", [(ms_ago(60 - i), f"line {i}") for i in range(10)])

    newest = runtime.core.queries.container_logs(ENV, lines=3)
    assert [line.split(" ", 2)[2] for line in newest.lines] == ["line 7", "line 8", "line 9"]
    assert newest.found == 10  # the two-hour-old event is outside the default 15 minutes

    wider = runtime.core.queries.container_logs(ENV, since_seconds=3 * 3600, lines=100)
    assert wider.found == 11
    assert wider.lines[0].endswith("web/a1b2c3d two hours ago")
    assert wider.lines[-1].endswith("web/0f1e2d3 line 9")


def test_service_selects_one_and_an_unknown_service_lists_them(
    runtime: Runtime, aws: AwsClients, admin: AwsClients, logged: None
) -> None:
    template(admin, "shop-api", "api", 9000, awslogs(prefix="api"))
    deploy(runtime)
    write(admin, f"shop/{ENV}/web/{TASK_A}", [(ms_ago(30), "from web")])
    write(admin, f"api/{ENV}/api/{TASK_B}", [(ms_ago(20), "from api")])

    both = runtime.core.queries.container_logs(ENV)
    assert [line.split(" ", 1)[1] for line in both.lines] == [
        "web/a1b2c3d from web",
        "api/0f1e2d3 from api",
    ]
    only_api = runtime.core.queries.container_logs(ENV, service="api")
    assert only_api.services == ["api"]
    assert [line.split(" ", 1)[1] for line in only_api.lines] == ["api/0f1e2d3 from api"]

    with pytest.raises(RequestError) as info:
        runtime.core.queries.container_logs(ENV, service="db")
    assert (
        str(info.value) == f"reading the logs of {ENV}: no service 'db'; its services are web, api"
    )


def test_a_container_logging_elsewhere_is_said_not_failed(
    runtime: Runtime, aws: AwsClients, admin: AwsClients, logged: None
) -> None:
    splunk = {"logDriver": "splunk", "options": {"splunk-url": "https://splunk.example.test"}}
    template(admin, "shop-api", "api", 9000, splunk)
    deploy(runtime)
    write(admin, f"shop/{ENV}/web/{TASK_A}", [(ms_ago(30), "ok")])
    result = runtime.core.queries.container_logs(ENV)
    assert result.notes == ["container api of api logs with splunk, not CloudWatch"]
    assert len(result.lines) == 1


def test_a_missing_log_group_is_a_clear_note(
    runtime: Runtime, aws: AwsClients, admin: AwsClients, seeded: Seeded
) -> None:
    template(admin, "shop-web", "web", 8080, awslogs())  # the group was never created
    deploy(runtime)
    result = runtime.core.queries.container_logs(ENV, service="web")
    assert result.lines == [] and result.links == {}
    assert result.notes == [
        f"log group {GROUP} of web does not exist: no task has logged to it yet "
        f"(create it: aws logs create-log-group --log-group-name {GROUP})"
    ]


@pytest.mark.denials  # the template logs where the stack's role may not read
def test_a_log_group_outside_the_roles_reach_is_a_clear_note(
    runtime: Runtime, admin: AwsClients, seeded: Seeded, strict: StrictAws
) -> None:
    template(admin, "shop-web", "web", 8080, awslogs(group="/ecs/elsewhere"))
    admin.logs.create_log_group(logGroupName="/ecs/elsewhere")
    deploy(runtime)
    result = runtime.core.queries.container_logs(ENV, service="web")
    assert result.lines == []
    assert result.notes == [
        "revieee may not read log group /ecs/elsewhere of web: its role reads the stack's "
        "EnvironmentLogGroup and CodeBuild's groups (log to the former, or add the group to "
        "the role's Logs statement)"
    ]
    assert [d.action for d in strict.denials] == ["logs:FilterLogEvents"]


def test_an_environment_with_nothing_deployed_says_so(runtime: Runtime) -> None:
    runtime.core.intake.request_deploy("ghost", "shop")  # queued, never run: no services yet
    with pytest.raises(RequestError, match=r"it has no deployed services .*deploy it first"):
        runtime.core.queries.container_logs(env_name("shop", "ghost"))


def test_scanning_is_bounded_and_a_busy_window_narrows_to_its_newest_part(
    runtime: Runtime, aws: AwsClients, admin: AwsClients, logged: None
) -> None:
    row = deploy(runtime)
    app = runtime.settings.apps["shop"]
    # 200 events over the last ten minutes: more than 50 in 15m, fewer in its newest eighth
    write(
        admin,
        f"shop/{ENV}/web/{TASK_A}",
        [(ms_ago(600 - 3 * i), f"spread {i}") for i in range(200)],
    )
    spread = container_logs.fetch(aws, app, row, service="web", lines=5, max_scanned=50)
    assert not spread.truncated
    assert [line.rsplit(" ", 1)[1] for line in spread.lines] == ["195", "196", "197", "198", "199"]
    assert spread.notes[0].startswith("web: more than 50 events since ")

    # 200 events in the last few seconds: even the narrowest window has too many
    write(admin, f"shop/{ENV}/web/{TASK_B}", [(ms_ago(5) + i, f"burst {i}") for i in range(200)])
    burst = container_logs.fetch(aws, app, row, service="web", lines=5, max_scanned=50)
    assert burst.truncated
    assert any("stopped after 50 events" in n and "use a shorter --since" in n for n in burst.notes)
    assert len(burst.lines) == 5


@pytest.fixture
def proxy(moto_server: StrictSandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    with FaultProxy(moto_server.endpoint) as fp:
        yield fp


def test_an_aws_error_is_one_clear_line(
    runtime: Runtime,
    aws: AwsClients,
    logged: None,
    proxy: FaultProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    row = deploy(runtime)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    through_proxy = build_clients("standard", 2)
    proxy.faults.append(
        Fault("FilterLogEvents", 400, "InvalidParameterException", "bad window: logs", -1)
    )
    with pytest.raises(EngineError) as info:
        container_logs.fetch(through_proxy, runtime.settings.apps["shop"], row)
    assert str(info.value) == (
        f"reading the logs of web in {GROUP}: InvalidParameterException: bad window: logs"
    )


# -- Slack ----------------------------------------------------------------------------------------


def deployed(rig: SlackRig, user: str = "U0ALICE") -> dict[str, Any]:
    assert rig.command(f"deploy {BRANCH}", user=user).status == 200
    rig.wait_status(ENV, "running")
    return rig.deploy_message(ENV)


def log_posts(fake: FakeSlack) -> list[dict[str, Any]]:
    return [c.args for c in fake.of("chat.postMessage") if ":scroll:" in c.args.get("text", "")]


def test_slack_posts_the_lines_in_the_deploy_message_thread(
    make_rig: MakeRig, aws: AwsClients, admin: AwsClients, logged: None
) -> None:
    rig = make_rig()
    ref = deployed(rig)
    t = ms_ago(60)
    write(admin, f"shop/{ENV}/web/{TASK_A}", [(t, "GET /health 200"), (t + 1, "ping <!channel>")])

    ack = rig.command(f"logs {BRANCH} --lines 5 --since 30m").json()
    assert ack["response_type"] == "ephemeral"
    assert ack["text"] == (
        f":scroll: fetching the last 5 log lines of `{ENV}`...; they will be posted in the "
        f"thread of its deploy message in <#{ref['channel']}>"
    )
    rig.drain()
    (post,) = log_posts(rig.fake)
    assert (post["channel"], post["thread_ts"]) == (ref["channel"], ref["ts"])
    text = post["text"]
    assert text.startswith(f":scroll: last 2 log lines of {ENV} (web, api), from the last 30m")
    assert "asked by <@U0ALICE>" in text
    block = text.split("```\n", 1)[1].split("\n```", 1)[0]
    assert block.splitlines() == [
        f"{clock(t)} web/a1b2c3d GET /health 200",
        f"{clock(t + 1)} web/a1b2c3d ping &lt;!channel&gt;",  # a log line never pings anyone
    ]
    assert "_container api of api has no logConfiguration, not CloudWatch_" in text
    assert f"|log group {GROUP} in the AWS console>" in text
    assert rig.fake.uploads == []


def test_slack_uploads_a_long_output_as_a_file_into_the_thread(
    make_rig: MakeRig, aws: AwsClients, admin: AwsClients, logged: None
) -> None:
    rig = make_rig()
    ref = deployed(rig)
    start = ms_ago(300)
    lines = [(start + i, f"request {i:04d} " + "x" * 80) for i in range(400)]
    write(admin, f"shop/{ENV}/web/{TASK_B}", lines)

    rig.command(f"logs {ENV} --lines 1000")
    rig.drain()
    (upload,) = rig.fake.uploads
    assert (upload["channel_id"], upload["thread_ts"]) == (ref["channel"], ref["ts"])
    assert upload["filename"] == f"{ENV}-logs.txt"
    content = upload["content"].decode().splitlines()
    assert len(content) == 400
    assert content[0] == f"{clock(start)} web/0f1e2d3 request 0000 " + "x" * 80
    assert content[-1].startswith(f"{clock(start + 399)} web/0f1e2d3 request 0399 ")
    assert upload["initial_comment"].startswith(f":scroll: last 400 log lines of {ENV}")
    assert log_posts(rig.fake) == []  # the file, not a message too long for Slack


def test_slack_posts_in_the_channel_when_there_is_no_deploy_message(
    make_rig: MakeRig,
    seeded: Seeded,
    aws: AwsClients,
    admin: AwsClients,
    logged: None,
    tmp_path: Path,
) -> None:
    # deployed from the terminal before Slack was set up: no deploy message to thread under
    terminal = build(sandbox_settings(seeded, str(tmp_path / "revieee.db")), clients=aws)
    deploy(terminal)
    terminal.close()
    write(admin, f"shop/{ENV}/web/{TASK_A}", [(ms_ago(10), "hello")])
    rig = make_rig()
    ack = rig.command(f"logs {ENV}", channel="C0ELSEWHERE").json()
    assert ack["text"].endswith("they will be posted in this channel")
    rig.drain()
    (post,) = log_posts(rig.fake)
    assert post["channel"] == "C0ELSEWHERE" and "thread_ts" not in post
    assert "web/a1b2c3d hello" in post["text"]


def test_slack_says_when_there_is_nothing_and_checks_the_service_before_answering(
    make_rig: MakeRig, logged: None
) -> None:
    rig = make_rig()
    ref = deployed(rig)
    unknown = rig.command(f"logs {ENV} --service db").json()
    assert (
        unknown["text"] == f"reading the logs of {ENV}: no service 'db'; its services are web, api"
    )
    rig.command(f"logs {ENV} --service web --since 1h")
    rig.drain()
    (post,) = log_posts(rig.fake)
    assert post["thread_ts"] == ref["ts"]
    assert post["text"].startswith(f":scroll: no log lines in the last 1h for {ENV} (web)")
    assert "```" not in post["text"]


def test_slack_refuses_someone_who_may_not_deploy(
    make_rig: MakeRig, aws: AwsClients, logged: None
) -> None:
    rig = make_rig(app={"deployers": ["U0ALICE"]})
    deployed(rig, user="U0ALICE")
    answer = rig.command(f"logs {ENV}", user="U0MALLORY").json()
    assert answer["response_type"] == "ephemeral"
    assert answer["text"] == (
        ":no_entry: not allowed: only <@U0ALICE> (or an admin) may deploy shop "
        "(reading its logs takes the same right)"
    )
    rig.drain()
    assert log_posts(rig.fake) == [] and rig.fake.uploads == []
    refused = [e for e in rig.runtime.store.audit_events(ENV) if e["action"] == "refused"]
    assert [e["actor"] for e in refused] == ["U0MALLORY"]
    assert "logs read" not in [e["action"] for e in rig.runtime.store.audit_events(ENV)]


def test_slack_not_in_channel_is_told_through_the_response_url(
    make_rig: MakeRig, aws: AwsClients, admin: AwsClients, logged: None
) -> None:
    rig = make_rig()
    ref = deployed(rig)
    write(admin, f"shop/{ENV}/web/{TASK_A}", [(ms_ago(10), "hello")])
    rig.fake.fail("chat.postMessage", "not_in_channel", times=5)
    rig.command(f"logs {ENV}")
    rig.fake.wait_for(lambda: len(rig.fake.responses) >= 1)
    path, said = rig.fake.responses[0]
    assert path.startswith("/response/cmd")
    assert said["response_type"] == "ephemeral"
    assert said["text"] == (
        f":warning: I cannot post the logs of `{ENV}` in <#{ref['channel']}> (not_in_channel): "
        "invite me with `/invite @revieee`, then ask again."
    )
    errors = [e for e in rig.runtime.store.audit_events(ENV) if e["action"] == "slack error"]
    assert errors and "not_in_channel" in errors[-1]["detail"]
    assert ref["channel"] == CHANNEL


# -- GitHub ---------------------------------------------------------------------------------------

PR_ENV = env_name("shop", "changes")


@pytest.fixture
def gh() -> Iterator[FakeGitHub]:
    fake = FakeGitHub()
    fake.branches[(REPO, "changes")] = HEAD_SHA
    fake.branches[("acme/shop-api", "main")] = fake_sha("apimain")
    fake.add_pull(REPO, 2, "changes", HEAD_SHA)
    fake.permissions[(REPO, "Codertocat")] = "write"
    yield fake
    fake.close()


@pytest.fixture
def gh_rig(
    seeded: Seeded,
    aws: AwsClients,
    admin: AwsClients,
    tmp_path: Path,
    gh: FakeGitHub,
    logged: None,
) -> Iterator[SlackRig]:
    config = sandbox_config(seeded, str(tmp_path / "revieee.db"))
    config["apps"]["shop"]["services"]["web"]["repository"] = REPO
    push_image(admin.ecr, "shop-web", f"changes-{HEAD_SHA[:7]}")
    environ = {"GITHUB_TOKEN": "ghp_test", "REVIEEE_GITHUB_API_URL": gh.url}
    slack = FakeSlack()
    runtime = build(settings_from_mapping(config, environ={}), clients=aws, environ=environ)
    rig = start_rig(runtime, slack)
    yield rig
    rig.close()
    slack.close()


def log_replies(gh: FakeGitHub) -> list[str]:
    return [c["body"] for c in gh.comments.values() if " log lines " in c["body"]]


def test_a_pr_comment_answers_with_this_prs_logs(
    gh_rig: SlackRig, gh: FakeGitHub, aws: AwsClients, admin: AwsClients
) -> None:
    gh_rig.github("issue_comment", comment("/revieee deploy"))
    gh_rig.settle()
    t = ms_ago(120)
    write(admin, f"shop/{PR_ENV}/web/{TASK_A}", [(t + i, f"event {i} ```x```") for i in range(5)])

    gh_rig.github("issue_comment", comment("/revieee logs --lines 3"))
    gh_rig.settle()
    (body,) = log_replies(gh)
    assert body.startswith(f"@Codertocat last 3 log lines (of 5 read) of {PR_ENV} (web, api)")
    fence = "````"  # longer than any run of backticks in the lines: none can close the block
    block = body.split(fence + "\n", 1)[1].split("\n" + fence, 1)[0]
    assert block.splitlines() == [
        f"{clock(t + i)} web/a1b2c3d event {i} ```x```" for i in (2, 3, 4)
    ]
    assert "- container api of api has no logConfiguration, not CloudWatch" in body
    assert outcome(gh_rig) == (
        f"ran: logs --lines 3: last 3 log lines (of 5 read) of {PR_ENV} (web, api), "
        "from the last 15m"
    )


def test_a_long_pr_comment_keeps_the_newest_lines_that_fit(
    gh_rig: SlackRig, gh: FakeGitHub, aws: AwsClients, admin: AwsClients
) -> None:
    gh_rig.github("issue_comment", comment("/revieee deploy"))
    gh_rig.settle()
    t = ms_ago(200)
    lines = [(t + i, f"row {i:04d} " + "y" * 100) for i in range(1000)]
    write(admin, f"shop/{PR_ENV}/web/{TASK_B}", lines)
    gh_rig.github("issue_comment", comment("/revieee logs --lines 1000"))
    gh_rig.settle()
    (body,) = log_replies(gh)
    assert len(body) < 65_536
    block = body.split("```\n", 1)[1].split("\n```", 1)[0].splitlines()
    assert sum(len(line) + 1 for line in block) <= 60_000 and 400 < len(block) < 1000
    assert block[-1].startswith(f"{clock(t + 999)} web/0f1e2d3 row 0999 ")
    assert f"{1000 - len(block)} earlier line(s) left out to fit in a comment" in body


# -- the terminal ---------------------------------------------------------------------------------


def test_logs_from_the_terminal(
    write_config: WriteConfig,
    moto_server: StrictSandbox,
    aws: AwsClients,
    admin: AwsClients,
    logged: None,
) -> None:
    config = str(write_config())
    env = {**moto_server.environ(), "USER": "alice"}
    assert revieee("--config", config, "deploy", BRANCH, env=env).returncode == 0
    t = ms_ago(90)
    write(admin, f"shop/{ENV}/web/{TASK_A}", [(t, "one"), (t + 1, "two"), (t + 2, "three")])

    shown = revieee("--config", config, "logs", BRANCH, "--lines", "2", env=env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[:3] == [
        f"last 2 log lines (of 3 read) of {ENV} (web, api), from the last 15m",
        f"{clock(t + 1)} web/a1b2c3d two",
        f"{clock(t + 2)} web/a1b2c3d three",
    ]
    assert "note: container api of api has no logConfiguration, not CloudWatch" in shown.stdout

    unknown = revieee("--config", config, "logs", ENV, "--service", "db", env=env)
    assert unknown.returncode == 1
    assert "no service 'db'; its services are web, api" in unknown.stdout

    bad = revieee("--config", config, "logs", ENV, "--since", "9d", env=env)
    assert bad.returncode == 2
    assert "--since for logs must be a duration like 30s, 15m, 2h or 1d, at most 7d" in bad.stderr
    assert "usage: logs ENV" in bad.stderr

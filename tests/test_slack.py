"""Slack, end to end: signed HTTP requests in Slack's real formats into the running server
(waitress + Bolt + our listeners), the engine against moto's server, and every outgoing Web API
call caught by a local fake Slack server."""

from __future__ import annotations

import json
import threading
import time
from typing import Any
from urllib.parse import urlencode

import pytest

from bot.events import Phase, Step
from bot.naming import env_name
from bot.strict_aws import StrictAws
from tests.conftest import MakeRig
from tests.fake_slack import Call, FakeSlack
from tests.slack_rig import CHANNEL, SlackRig, sign

BRANCH = "feature/checkout"  # web has an image for it; api falls back to main
ENV = env_name("shop", BRANCH)


@pytest.fixture
def rig(make_rig: MakeRig) -> SlackRig:
    return make_rig()


def top_level_posts(fake: FakeSlack) -> list[Call]:
    return [c for c in fake.of("chat.postMessage") if "thread_ts" not in c.args]


def thread_replies(fake: FakeSlack, ts: str) -> list[str]:
    return [c.args["text"] for c in fake.of("chat.postMessage") if c.args.get("thread_ts") == ts]


def texts(blocks: list[dict[str, Any]]) -> str:
    """Every piece of text in some blocks, one string, for assertions on content."""
    return json.dumps(blocks)


def deployed(rig: SlackRig, user: str = "U0ALICE") -> dict[str, Any]:
    resp = rig.command(f"deploy {BRANCH}", user=user)
    assert resp.status == 200, resp.body
    rig.wait_status(ENV, "running", "failed")
    return rig.deploy_message(ENV)


# -- the server -------------------------------------------------------------------------------


def test_healthz_reports_the_queue(rig: SlackRig) -> None:
    resp = rig.request("GET", "/healthz")
    assert resp.status == 200
    assert resp.json() == {"ok": True, "queued": 0, "running": 0, "waiting": 0}
    assert rig.request("GET", "/nowhere").status == 404
    assert rig.request("GET", "/slack/events").status == 404


def _command_body(text: str = "list") -> bytes:
    return urlencode({"command": "/revieee", "text": text, "user_id": "U0ALICE"}).encode()


def test_unsigned_forged_and_stale_requests_get_401(rig: SlackRig) -> None:
    body = _command_body("deploy main")
    form = "application/x-www-form-urlencoded"
    unsigned = rig.request("POST", "/slack/events", body, {"Content-Type": form})
    forged = rig.post_signed(body, form, secret="not-the-secret")
    stale = rig.post_signed(body, form, timestamp=str(int(time.time()) - 6 * 60))
    ts = str(int(time.time()))
    tampered = rig.request(
        "POST",
        "/slack/events",
        _command_body("deploy evil"),
        {
            "Content-Type": form,
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": sign(body, ts),  # signed for another body
        },
    )
    garbage = rig.request(
        "POST",
        "/slack/events",
        body,
        {"Content-Type": form, "X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=zz"},
    )
    for resp in (unsigned, forged, stale, tampered, garbage):
        assert resp.status == 401, resp.body
        assert resp.json()["error"] == "invalid signature"
    assert rig.runtime.store.operations() == []  # nothing was persisted
    assert rig.fake.calls == [] or all(c.method == "auth.test" for c in rig.fake.calls)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b"\xff\xfe", "application/x-www-form-urlencoded"),
        (b"text=deploy+main", "application/x-www-form-urlencoded"),  # no command
        (b"payload=%7Bbroken", "application/x-www-form-urlencoded"),
        (b"payload=%5B%5D", "application/x-www-form-urlencoded"),
        (b"", "application/x-www-form-urlencoded"),
    ],
)
def test_signed_but_malformed_bodies_get_400(rig: SlackRig, body: bytes, content_type: str) -> None:
    resp = rig.post_signed(body, content_type)
    assert resp.status == 400, resp.body
    assert resp.json() == {"ok": False, "error": "malformed body"}
    assert rig.runtime.store.operations() == []


def test_url_verification_challenge_is_answered(rig: SlackRig) -> None:
    body = json.dumps(
        {"token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}
        | {"type": "url_verification"}
    ).encode()
    resp = rig.post_signed(body, "application/json")
    assert resp.status == 200
    assert "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" in resp.body.decode()


# -- the /revieee command ---------------------------------------------------------------------


def test_unknown_verbs_and_bad_arguments_get_an_ephemeral_usage_message(rig: SlackRig) -> None:
    for text in ("frobnicate", "deploy", "stop", "list --colour", ""):
        resp = rig.command(text)
        assert resp.status == 200
        answer = resp.json()
        assert answer["response_type"] == "ephemeral"
        assert "usage:" in answer["text"] or "revieee" in answer["text"], (text, answer)
    assert "unknown command 'frobnicate'" in rig.command("frobnicate").json()["text"]
    assert rig.runtime.store.operations() == []
    help_text = rig.command("help deploy").json()["text"]
    assert "deploy BRANCH" in help_text


def test_deploy_posts_one_message_edited_through_the_phases_with_steps_in_its_thread(
    rig: SlackRig,
) -> None:
    resp = rig.command(f"deploy {BRANCH}")
    assert resp.status == 200
    ack = resp.json()
    assert ack["response_type"] == "ephemeral"
    assert ENV in ack["text"] and "queued" in ack["text"]

    rig.wait_status(ENV, "running")
    ref = rig.deploy_message(ENV)
    posts = top_level_posts(rig.fake)
    assert len(posts) == 1, "one channel message per environment"
    assert posts[0].args["channel"] == CHANNEL  # where the command was typed (no app channel)
    assert posts[0].token == "xoxb-test-token"
    assert ":hourglass_flowing_sand: *Queued*" in texts(posts[0].args["blocks"])

    updates = [c for c in rig.fake.of("chat.update") if c.args["ts"] == ref["ts"]]
    labels = [c.args["text"].rsplit(": ", 1)[1] for c in updates]
    assert labels[0] == "Resolving image"
    assert "Deploying" in labels
    assert labels[-1] == "Ready"
    final = updates[-1].args["blocks"]
    url = rig.runtime.store.get_env(ENV)["url"]  # type: ignore[index]
    assert f"<{url}|{ENV}>" in texts(final)
    sha = rig.runtime.store.deployments(ENV, 1)[0]["sha"]
    for shown in (f"`{BRANCH}`", f"`{sha[:7]}`", "*App*\\nshop", "<@U0ALICE>", "*Elapsed*"):
        assert shown in texts(final), shown
    buttons = {e["action_id"]: e for e in final[-2]["elements"]}
    assert set(buttons) == {"revieee_open", "revieee_redeploy", "revieee_stop", "revieee_keep"}
    assert buttons["revieee_open"]["url"] == url
    assert "confirm" in buttons["revieee_stop"]

    thread = thread_replies(rig.fake, ref["ts"])
    assert any("resolving image" in t for t in thread)
    assert any("creating ECS service" in t for t in thread)
    assert any("all services are stable" in t for t in thread)
    assert all(c.args.get("thread_ts") == ref["ts"] for c in rig.fake.of("chat.postMessage")[1:])

    audit = [e["action"] for e in rig.runtime.store.audit_events(ENV)]
    assert "deploy requested" in audit
    (dep,) = rig.runtime.store.deployments(ENV)
    assert dep["source"] == "slack" and dep["requested_by"] == "U0ALICE"


def test_app_channel_wins_over_where_the_command_was_typed(make_rig: MakeRig) -> None:
    rig = make_rig(app={"channel": "C0SHOPREVIEWS"})
    rig.command(f"deploy {BRANCH}", channel="C0ELSEWHERE")
    rig.wait_status(ENV, "running")
    (post,) = top_level_posts(rig.fake)
    assert post.args["channel"] == "C0SHOPREVIEWS"
    assert rig.deploy_message(ENV)["channel"] == "C0SHOPREVIEWS"


def test_a_failed_deploy_says_why_in_plain_words(make_rig: MakeRig, strict: StrictAws) -> None:
    strict.ecs.task_start = 30.0  # the tasks do not start within the deploy's 0.5 s
    rig = make_rig(deploy_timeout=0.5)
    rig.command(f"deploy {BRANCH}")
    rig.wait_status(ENV, "failed")
    ref = rig.deploy_message(ENV)
    last = [c for c in rig.fake.of("chat.update") if c.args["ts"] == ref["ts"]][-1]
    assert last.args["text"].endswith("Failed")
    shown = texts(last.args["blocks"])
    assert "*Why:*" in shown and "not stable after 0.5s" in shown and "0 of 1 tasks" in shown
    assert "revieee_open" not in shown  # nothing to open
    assert any("*failed*" in t for t in thread_replies(rig.fake, ref["ts"]))


def test_a_missing_image_fails_with_the_repository_and_tag(rig: SlackRig) -> None:
    rig.command("deploy feature/no-image")
    env = env_name("shop", "feature/no-image")
    rig.wait_status(env, "failed")
    ref = rig.deploy_message(env)
    last = [c for c in rig.fake.of("chat.update") if c.args["ts"] == ref["ts"]][-1]
    shown = texts(last.args["blocks"])
    assert "*Why:*" in shown and "shop-web" in shown


def test_a_redeploy_edits_the_same_message_and_notes_it_in_the_thread(rig: SlackRig) -> None:
    ref = deployed(rig)
    resp = rig.command(f"deploy {BRANCH}", user="U0BOB")
    assert resp.status == 200
    rig.wait_status(ENV, "running")
    rig.serving.notifier.flush()  # type: ignore[union-attr]
    assert len(top_level_posts(rig.fake)) == 1, "the channel is not spammed"
    assert rig.deploy_message(ENV) == ref
    assert any("redeploy" in t and "<@U0BOB>" in t for t in thread_replies(rig.fake, ref["ts"]))
    assert len(rig.runtime.store.deployments(ENV)) == 2


def test_list_fits_slack_limits_with_many_environments(rig: SlackRig) -> None:
    store = rig.runtime.store
    with store.immediate():
        for i in range(1200):
            name = f"shop-feature-{i:04d}-with-a-rather-long-branch-name"
            store.upsert_env(
                name,
                app="shop",
                branch=f"feature/{i:04d}-with-a-rather-long-branch-name",
                status="running",
                url=f"https://{name}.review.example.test",
                owner=f"U{i % 40:08d}",
            )
    answer = rig.command("list").json()
    assert answer["response_type"] == "ephemeral"
    blocks = answer["blocks"]
    assert len(blocks) <= 50
    for block in blocks:
        for part in [block.get("text") or {}, *block.get("elements", [])]:
            assert len(part.get("text", "")) <= 3000
    assert "Environments: 1200" in answer["text"]
    assert "more: narrow it with `--mine`" in texts(blocks)
    mine = rig.command("list --mine", user="U00000007").json()
    assert "Environments: 30" in mine["text"]
    assert "and" not in mine["blocks"][-1].get("type", "")  # all 30 shown, no summary line
    assert "more: narrow" not in texts(mine["blocks"])


def test_status_answers_from_the_store(rig: SlackRig) -> None:
    deployed(rig)
    answer = rig.command(f"status {ENV}").json()
    assert answer["response_type"] == "ephemeral"
    assert ENV in answer["text"] and "running" in answer["text"]
    assert "no environment named 'shop-nope'" in rig.command("status shop-nope").json()["text"]


# -- react to stop ------------------------------------------------------------------------------


def test_the_stop_reaction_on_the_message_stops_the_environment(rig: SlackRig) -> None:
    ref = deployed(rig)
    assert rig.reaction(ref["ts"], "thumbsup").status == 200  # another emoji: nothing
    assert rig.reaction("999.000001").status == 200  # another message: nothing
    rig.drain()
    assert [op.kind for op in rig.runtime.store.operations(env=ENV)] == ["deploy"]

    resp = rig.reaction(ref["ts"], "octagonal_sign::skin-tone-2")  # Slack appends skin tones
    assert resp.status == 200
    rig.wait_status(ENV, "stopped")
    last = [c for c in rig.fake.of("chat.update") if c.args["ts"] == ref["ts"]][-1]
    assert last.args["text"].endswith("Stopped")
    assert "Stopped by <@U0ALICE> at <!date^" in texts(last.args["blocks"])
    assert "revieee_stop" not in texts(last.args["blocks"])  # nothing left to stop
    described = rig.runtime.clients.ecs.describe_services(
        cluster=rig.runtime.settings.cluster, services=[f"{ENV}-web", f"{ENV}-api"]
    )["services"]
    assert {s["status"] for s in described} <= {"DRAINING", "INACTIVE"}  # deleted (ECS drains)


def test_configured_stop_reactions(make_rig: MakeRig) -> None:
    rig = make_rig(stop_reactions=["x", "no_entry"])
    ref = deployed(rig)
    rig.reaction(ref["ts"], "octagonal_sign")  # no longer a stop reaction
    rig.drain()
    assert rig.runtime.store.get_env(ENV)["status"] == "running"  # type: ignore[index]
    rig.reaction(ref["ts"], "no_entry")
    rig.wait_status(ENV, "stopped")
    first = top_level_posts(rig.fake)[0]
    assert "React with :x: to stop it" in texts(first.args["blocks"])


def test_duplicate_and_retried_events_are_processed_once(rig: SlackRig) -> None:
    ref = deployed(rig)
    first = rig.reaction(ref["ts"], event_id="Ev0DUPLICATE")
    again = rig.reaction(ref["ts"], event_id="Ev0DUPLICATE")
    retried = rig.reaction(ref["ts"], event_id="Ev0DUPLICATE", retry=1)
    assert (first.status, again.status, retried.status) == (200, 200, 200)
    rig.wait_status(ENV, "stopped")
    stops = [op for op in rig.runtime.store.operations(env=ENV) if op.kind == "stop"]
    assert len(stops) == 1
    opened = {"type": "app_home_opened", "user": "U0ALICE", "channel": "D0ALICE", "tab": "home"}
    for retry in (None, 1, 2):
        assert rig.event(opened, event_id="Ev0HOMEONCE", retry=retry).status == 200
    rig.fake.wait_for(lambda: len(rig.fake.of("views.publish")) >= 1)
    rig.drain()  # a second publish, if there were one, has been made by now
    assert len(rig.fake.of("views.publish")) == 1


# -- buttons ------------------------------------------------------------------------------------


def test_buttons_redeploy_keep_and_stop(rig: SlackRig) -> None:
    ref = deployed(rig)
    assert rig.action("revieee_open", ENV, message_ts=ref["ts"]).status == 200

    before = rig.runtime.store.get_env(ENV)["expires_at"]  # type: ignore[index]
    assert rig.action("revieee_keep", ENV, message_ts=ref["ts"]).status == 200
    rig.fake.wait_for(lambda: len(rig.fake.responses) >= 1)
    _path, said = rig.fake.responses[-1]
    assert said["response_type"] == "ephemeral" and ENV in said["text"]
    after = rig.runtime.store.get_env(ENV)["expires_at"]  # type: ignore[index]
    assert after and after != before
    # the message is re-rendered with the new expiry
    rig.fake.wait_for(lambda: "*Expires*" in texts(rig.fake.of("chat.update")[-1].args["blocks"]))
    assert rig.fake.of("chat.update")[-1].args["ts"] == ref["ts"]

    assert rig.action("revieee_redeploy", ENV, message_ts=ref["ts"]).status == 200
    rig.wait_status(ENV, "running")
    assert len(rig.runtime.store.deployments(ENV)) == 2

    assert rig.action("revieee_stop", ENV, message_ts=ref["ts"]).status == 200
    rig.wait_status(ENV, "stopped")
    assert len(top_level_posts(rig.fake)) == 1
    sources = {e["source"] for e in rig.runtime.store.audit_events(ENV)}
    assert sources == {"slack"}


def test_a_button_for_an_unknown_environment_says_so(rig: SlackRig) -> None:
    rig.action("revieee_stop", "shop-gone")
    rig.fake.wait_for(lambda: len(rig.fake.responses) >= 1)
    assert "shop-gone" in rig.fake.responses[-1][1]["text"]
    assert rig.runtime.store.operations() == []


# -- App Home -----------------------------------------------------------------------------------


def test_app_home_shows_mine_and_all_running_and_its_buttons_work(rig: SlackRig) -> None:
    deployed(rig, user="U0ALICE")
    rig.command("deploy main", user="U0BOB")
    rig.wait_status(env_name("shop", "main"), "running")
    rig.event({"type": "app_home_opened", "user": "U0ALICE", "channel": "D0A", "tab": "home"})
    rig.fake.wait_for(lambda: len(rig.fake.of("views.publish")) >= 1)
    call = rig.fake.of("views.publish")[-1]
    assert call.args["user_id"] == "U0ALICE"
    view = call.args["view"]
    assert view["type"] == "home"
    shown = texts(view["blocks"])
    mine, everyone = shown.split('"divider"')
    assert ENV in mine and env_name("shop", "main") not in mine
    assert ENV in everyone and env_name("shop", "main") in everyone
    assert "revieee_stop" in mine and "revieee_keep" in mine

    rig.action("revieee_stop", ENV, home=True)
    rig.wait_status(ENV, "stopped")
    rig.fake.wait_for(lambda: len(rig.fake.of("views.publish")) >= 2)  # refreshed
    # the messages tab is not the Home tab: nothing is published
    rig.event({"type": "app_home_opened", "user": "U0ALICE", "channel": "D0A", "tab": "messages"})
    rig.drain()
    assert len(rig.fake.of("views.publish")) == 2


# -- authorization ------------------------------------------------------------------------------


def test_only_configured_deployers_may_deploy(make_rig: MakeRig) -> None:
    rig = make_rig(app={"deployers": ["U0DEPLOYER", "S0QA"]})
    rig.fake.groups["S0QA"] = ["U0TESTER"]
    answer = rig.command(f"deploy {BRANCH}", user="U0MALLORY").json()
    assert answer["response_type"] == "ephemeral"
    assert answer["text"].startswith(":no_entry: not allowed: only <@U0DEPLOYER>")
    assert rig.runtime.store.operations() == []
    refused = [e for e in rig.runtime.store.audit_events() if e["action"] == "refused"]
    assert refused and refused[0]["actor"] == "U0MALLORY"

    assert "queued deploy" in rig.command(f"deploy {BRANCH}", user="U0TESTER").json()["text"]
    assert rig.fake.of("usergroups.users.list")[0].args["usergroup"] == "S0QA"


def test_only_the_owner_an_admin_or_a_stopper_may_stop(make_rig: MakeRig) -> None:
    rig = make_rig(admins=["U0ADMIN"], app={"stoppers": ["U0OPS"]})
    ref = deployed(rig, user="U0ALICE")

    # a reaction by someone else: refused, told privately, nothing happens
    rig.reaction(ref["ts"], user="U0MALLORY")
    rig.fake.wait_for(lambda: len(rig.fake.of("chat.postEphemeral")) >= 1)
    told = rig.fake.of("chat.postEphemeral")[-1].args
    assert told["user"] == "U0MALLORY" and told["channel"] == CHANNEL
    assert "only its owner (<@U0ALICE>) or an admin may stop" in told["text"]

    # a button by someone else: refused through the response URL
    rig.action("revieee_stop", ENV, user="U0MALLORY", message_ts=ref["ts"])
    rig.fake.wait_for(lambda: len(rig.fake.responses) >= 1)
    assert "not allowed" in rig.fake.responses[-1][1]["text"]
    # a command, and Keep, by someone else
    assert "not allowed" in rig.command(f"stop {ENV}", user="U0MALLORY").json()["text"]
    assert "not allowed" in rig.command(f"keep {ENV}", user="U0MALLORY").json()["text"]
    assert [op.kind for op in rig.runtime.store.operations(env=ENV)] == ["deploy"]
    assert rig.runtime.store.get_env(ENV)["status"] == "running"  # type: ignore[index]
    actions = [(e["actor"], e["action"]) for e in rig.runtime.store.audit_events(ENV)]
    assert actions.count(("U0MALLORY", "refused")) == 4

    # the configured stopper and the admin may
    assert "queued stop" in rig.command(f"stop {ENV}", user="U0OPS").json()["text"]
    rig.wait_status(ENV, "stopped")
    rig.command(f"deploy {BRANCH}", user="U0ALICE")
    rig.wait_status(ENV, "running")
    rig.reaction(ref["ts"], user="U0ADMIN")
    rig.wait_status(ENV, "stopped")


def test_anyone_can_stop_when_configured(make_rig: MakeRig) -> None:
    rig = make_rig(app={"anyone_can_stop": True})
    ref = deployed(rig, user="U0ALICE")
    rig.reaction(ref["ts"], user="U0BOB")
    rig.wait_status(ENV, "stopped")
    assert rig.runtime.store.operations(env=ENV)[-1].requested_by == "U0BOB"


# -- Slack errors --------------------------------------------------------------------------------


def test_rate_limits_are_retried(rig: SlackRig) -> None:
    rig.fake.rate_limit("chat.postMessage", retry_after=1)
    deployed(rig)
    assert rig.fake.served_429 == 1
    assert len(top_level_posts(rig.fake)) == 1  # posted once, after the retry


def test_not_in_channel_is_reported_and_the_deploy_still_runs(rig: SlackRig) -> None:
    rig.fake.fail("chat.postMessage", "not_in_channel", times=100)
    resp = rig.command(f"deploy {BRANCH}")
    assert resp.status == 200
    rig.wait_status(ENV, "running")
    rig.fake.wait_for(lambda: len(rig.fake.responses) >= 1)
    path, said = rig.fake.responses[0]
    assert path.startswith("/response/cmd")
    assert "not_in_channel" in said["text"] and "/invite @revieee" in said["text"]
    assert said["response_type"] == "ephemeral"
    (dep,) = rig.runtime.store.deployments(ENV)
    assert dep["result"] == "succeeded"
    errors = [e for e in rig.runtime.store.audit_events(ENV) if e["action"] == "slack error"]
    assert errors and "not_in_channel" in errors[0]["detail"]


def test_a_slack_outage_loses_no_operation(rig: SlackRig, fake: FakeSlack) -> None:
    fake.close()  # the Web API is gone: every call fails to connect
    resp = rig.command(f"deploy {BRANCH}")
    assert resp.status == 200 and "queued deploy" in resp.json()["text"]
    row = rig.wait_status(ENV, "running")
    assert row["status"] == "running"
    (dep,) = rig.runtime.store.deployments(ENV)
    assert dep["result"] == "succeeded"


def test_commands_are_acknowledged_while_aws_hangs(
    make_rig: MakeRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ack is persisted-then-answered: AWS taking forever cannot hold it up."""
    import socket

    # A "server" that accepts connections and never answers: every AWS call hangs.
    sink = socket.socket()
    sink.bind(("127.0.0.1", 0))
    sink.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sink.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(sink.accept()[0])
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    from bot.aws import build_clients

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{sink.getsockname()[1]}")
    try:
        rig = make_rig(clients=build_clients("standard", 1))
        for text in (f"deploy {BRANCH}", "deploy main", f"status {ENV}", "list"):
            resp = rig.command(text)  # the ack (Slack allows 3 s; the client's timeout is 10 s)
            assert resp.status == 200, text
        assert {op.status for op in rig.runtime.store.operations()} <= {"queued", "running"}
        deadline = time.monotonic() + 10
        while not accepted and time.monotonic() < deadline:
            time.sleep(0.05)
        assert accepted, "the worker did reach for AWS (and hangs there)"
    finally:
        stop.set()
        for conn in accepted:
            conn.close()
        sink.close()


def test_thread_replies_are_batched_while_slack_is_slow(rig: SlackRig, fake: FakeSlack) -> None:
    """Steps that pile up behind a slow (here rate-limited) Slack share thread replies; none is
    lost and their order is kept. Idle, each step is posted on its own."""
    notifier = rig.serving.notifier
    assert notifier is not None
    ref = deployed(rig)
    op = rig.runtime.store.operations(env=ENV)[-1]
    replies_before = len(thread_replies(fake, ref["ts"]))

    rig.runtime.bus.publish(Step(op, Phase.DEPLOYING, "alone", "posted at once"))
    notifier.flush()
    assert thread_replies(fake, ref["ts"])[-1] == "*alone*: posted at once"

    fake.rate_limit("chat.postMessage", retry_after=1)  # the next post waits a second
    rig.runtime.bus.publish(Step(op, Phase.DEPLOYING, "first", "line 0"))
    for i in range(1, 40):
        rig.runtime.bus.publish(Step(op, Phase.DEPLOYING, "step", f"line {i}" + "x" * 200))
    notifier.flush(timeout=20)
    new = thread_replies(fake, ref["ts"])[replies_before + 1 :]
    assert 2 <= len(new) <= 5, new  # the first alone, the other 39 batched (3,500 chars each)
    lines = "\n".join(new).split("\n")
    assert lines == ["*first*: line 0"] + [f"*step*: line {i}" + "x" * 200 for i in range(1, 40)]
    assert all(len(reply) <= 3500 for reply in new)

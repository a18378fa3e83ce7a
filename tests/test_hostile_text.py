"""Hostile text through every builder of what revieee shows: the deploy message in each phase,
the list, the Home tab, reminders, the weekly summary, the orphan report, thread replies,
ephemeral answers and the PR comment. Whatever a branch name, a PR title or author, a failure
reason or a command's answer holds (mentions, broadcasts, links, mrkdwn or Markdown, backticks,
line breaks, bidi overrides, HTML, 10,000 characters), nothing mentions, links or formats
that the builder did not mean to, and Slack's limits hold.

Properties (hypothesis) over the pure builders; an end-to-end test sends the issue's own
``/revieee deploy '<!here>'`` through the server and reads every call the fake Slack got.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.github.comment import pr_comment
from bot.github.events import answer
from bot.lifecycle import Forgotten, Reminder, Summary
from bot.naming import env_name
from bot.phases import DeployView
from bot.slack import mrkdwn
from bot.slack.blocks import (
    PHASES,
    deploy_message,
    home_view,
    list_blocks,
    orphan_message,
    reminder_message,
    summary_message,
)
from bot.slack.listeners import reply_text
from bot.slack.mrkdwn import code_block
from bot.slack.notifier import step_reply
from bot.sweeper import Orphan, SweepResult
from commands.run import Reply
from commands.verbs import Deploy, Keep, List, Status, Stop
from tests.conftest import MakeRig
from tests.slack_rules import BIDI, block_problems, injected, mrkdwn_of

NOW = datetime(2026, 11, 22, 10, 7, 30, tzinfo=UTC)
ENV = "shop-feature-checkout-s7gghvic"
URL = f"https://{ENV}.review.example.test"
OURS = (  # the control sequences the builders write themselves
    r"@U0ALICE",
    r"https://[a-z0-9-]+\.review\.example\.test(\|[^<>|]*)?",
    r"https://github\.com/acme/shop/pull/12[^\s<>|]*\|[^<>|]*",  # the PR's own URL, escaped
    r"https://console\.aws\.amazon\.com/[^<>|]*\|[^<>|]*",
)
PARTS = [
    "<!channel>",
    "<!here>",
    "<!everyone>",
    "<@U0EVIL>",
    "<#C0EVIL>",
    "<!subteam^S0EVIL>",
    "<https://evil.example|click>",
    "<javascript:alert(1)|x>",
    "&lt;!here&gt;",
    "*MARKB*",
    " _MARKI_ ",
    "~MARKS~",
    "`MARKC`",
    "```MARKF```",
    "\n> MARKQ",
    "\n&gt; MARKQ",
    "\u202eRTL\u202c",
    "\u2066iso\u2069",
    "`",
    "``",
    "\n",
    "\r\n",
    "|",
    "](javascript:alert(1))",
    "<img src=x onerror=alert(1)>",
    "</details>",
    "@octocat",
    "#1",
    "https://evil.example",
    "\x00\x1b[31m",
]
hostile = st.one_of(
    st.lists(st.one_of(st.sampled_from(PARTS), st.text(max_size=12)), min_size=1, max_size=10).map(
        "".join
    ),
    st.sampled_from(PARTS).map(lambda part: "x" * 10_000 + part + "y" * 100),
)
CHECK = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_clean(blocks: Any, *texts: str, surface: str = "message") -> None:
    assert block_problems(blocks, surface) == []
    for text in [*mrkdwn_of(blocks), *texts]:
        assert injected(text, OURS) == [], text[:300]


# -- Slack ---------------------------------------------------------------------------------------


@CHECK
@given(branch=hostile, title=hostile, author=hostile, reason=hostile, who=hostile)
def test_the_deploy_message_in_every_phase(
    branch: str, title: str, author: str, reason: str, who: str
) -> None:
    view = DeployView(
        env=ENV,
        app="shop",
        branch=branch,
        url=URL,
        phase="queued",
        sha="44a8906c0ffee",
        requested_by=who,
        started_at=NOW - timedelta(minutes=3),
        reason=reason,
        stopped_by=who,
        stopped_at=NOW,
        expires_at=NOW + timedelta(days=1),
        pull="acme/shop#12",
        pull_url="https://github.com/acme/shop/pull/12",
        pull_title=title,
        pull_author=author,
        detail=reason,
        log_url="https://console.aws.amazon.com/codesuite/codebuild/x",
        stop_reason=reason,
    )
    for phase in PHASES:
        text, blocks = deploy_message(replace(view, phase=phase), NOW)
        assert_clean(blocks, text)
        shown = "\n".join(mrkdwn_of(blocks))
        if phase == "ready":  # the title links the environment, never the PR's words
            assert f"<{URL}|{ENV}>" in shown


@CHECK
@given(url=st.sampled_from(PARTS).map(lambda p: f"https://github.com/acme/shop/pull/12{p}"))
def test_a_link_that_would_break_out_is_shown_as_its_label(url: str) -> None:
    view = DeployView(env=ENV, app="shop", branch="b", url=URL, phase="queued", pull="#12")
    _, blocks = deploy_message(replace(view, pull_url=url), NOW)
    assert_clean(blocks)


def _row(branch: str, owner: str, name: str = ENV) -> dict[str, Any]:
    return {
        "name": name,
        "app": "shop",
        "branch": branch,
        "status": "running",
        "owner": owner,
        "url": f"https://{name}.review.example.test",
        "created_at": (NOW - timedelta(hours=2)).isoformat(),
        "expires_at": (NOW + timedelta(days=1)).isoformat(),
        "cost": 1.25,
    }


@CHECK
@given(branch=hostile, owner=hostile)
def test_the_list_and_the_home_tab(branch: str, owner: str) -> None:
    rows = [_row(branch, owner), _row(branch, "U0ALICE", env_name("shop", branch))] * 30
    text, blocks = list_blocks(rows, NOW)
    assert_clean(blocks, text)
    view = home_view(rows, rows, NOW)
    assert_clean(view["blocks"], surface="home")


@CHECK
@given(branch=hostile, owner=hostile, reason=hostile)
def test_reminders_and_the_weekly_summary(branch: str, owner: str, reason: str) -> None:
    item = Forgotten(
        name=ENV,
        app="shop",
        branch=branch,
        url=URL,
        owner=owner,
        status="running",
        created_at=NOW - timedelta(days=5),
        last_activity=NOW - timedelta(days=4),
        expires_at=NOW,
        pr_state="merged",
        pr_url="https://github.com/acme/shop/pull/12",
        cost=3.5,
        reason=reason,
        stops_at=NOW + timedelta(days=1),
    )
    text, blocks = reminder_message(Reminder("C1", [item] * 30), NOW)
    assert_clean(blocks, text)
    summary = Summary(NOW - timedelta(days=7), NOW, 10.0, 40, 2, [(branch, owner, 5.0, 20)] * 5,
                      1.0, 2.0, 1)  # fmt: skip
    text, blocks = summary_message(summary)
    assert_clean(blocks, text)


@CHECK
@given(name=hostile, env=hostile, line=hostile)
def test_the_orphan_message(name: str, env: str, line: str) -> None:
    orphans = [Orphan(id="arn", kind="ecs-service", name=name, env=env, app=env)] * 50
    text, blocks = orphan_message(SweepResult(new=orphans))
    assert_clean(blocks, text)
    text, blocks = orphan_message(SweepResult(deleted=[line] * 5))
    assert_clean(blocks, text)


@CHECK
@given(step=hostile, message=hostile)
def test_thread_replies_and_answers(step: str, message: str) -> None:
    assert injected(step_reply(step, message), OURS) == []
    assert injected(code_block(message), OURS) == []
    for cmd in (Deploy(branch="b"), Stop(env="e"), Keep(env="e"), List(), Status(env="e")):
        for reply in (Reply(message), Reply(message, ok=False, data={"refused": True})):
            said = reply_text(cmd, reply)
            assert injected(said, OURS) == [], said[:300]
            assert len(said) <= 40_000


def test_the_escapes_are_the_ones_slack_documents() -> None:
    assert mrkdwn.escape("a & <b> c") == "a &amp; &lt;b&gt; c"
    assert mrkdwn.code("x`y\nz") == "`x\u02cby z`"
    assert (
        mrkdwn.text("*b* _i_ snake_case ~s~")
        == "\u2217b\u2217 \u02cdi\u02cd snake_case \u223cs\u223c"
    )
    assert mrkdwn.text("&" * 10, limit=12) == "&amp;&amp;…"  # never half an entity
    assert mrkdwn.link("javascript:alert(1)", "x") == "x"
    assert (
        mrkdwn.link("https://a.example/?q=1&r=2", "<x>")
        == "<https://a.example/?q=1&amp;r=2|&lt;x&gt;>"
    )


# -- GitHub ---------------------------------------------------------------------------------------

OUR_TAGS = {"!--", "details", "summary", "sub"}  # the comment's own HTML


def _outside_code(markdown: str) -> str:
    """Markdown without its fenced blocks and code spans (each closed by a run of backticks
    exactly as long as its opening, GFM spec)."""
    out = re.sub(r"(?ms)^(`{3,})[^\n]*\n.*?^\1\s*$", " ", markdown)
    return re.sub(r"(`+)(?!`).+?(?<!`)\1(?!`)", " ", out)


def md_injected(markdown: str) -> list[str]:
    problems = []
    outside = _outside_code(markdown)
    for tag in re.findall(r"(?<!\\)<(!--|/?[A-Za-z][\w-]*)", outside):
        if tag.lstrip("/") not in OUR_TAGS:
            problems.append(f"html <{tag}")
    if re.search(r"(?<!\\)\]\(javascript", outside) or re.search(r"https?://evil", outside):
        problems.append("a link")
    if re.search(r"@octocat|@U0EVIL", outside) or re.search(r"(?<![\w\\])#1\b", outside):
        problems.append("a mention or reference")
    for marker in ("MARKB", "MARKI", "MARKS", "MARKC", "MARKF"):
        if re.search(rf"(?<!\\)[*_~`]{marker}", outside):
            problems.append(f"formatting around {marker}")
    if BIDI.search(markdown):
        problems.append("a bidi override")
    for line in markdown.splitlines():
        if line.startswith("| **"):
            cells = len(re.findall(r"(?<!\\)\|", line))
            if cells != 3:
                problems.append(f"a table row with {cells} pipes: {line[:80]}")
    return problems


@CHECK
@given(branch=hostile, reason=hostile, who=hostile, why=hostile)
def test_the_pr_comment(branch: str, reason: str, who: str, why: str) -> None:
    view = DeployView(
        env=ENV,
        app="shop",
        branch=branch,
        url=URL,
        phase="failed",
        sha="44a8906c0ffee",
        requested_by=who,
        started_at=NOW,
        reason=reason,
        stopped_by=who,
        stopped_at=NOW,
        stop_reason=why,
    )
    for phase in ("ready", "failed", "stopped"):
        body = pr_comment(replace(view, phase=phase), "https://acme.slack.com/archives/C1/p1")
        assert md_injected(body) == [], body[:600]


def test_a_login_is_mentioned_and_nothing_else() -> None:
    view = DeployView(env=ENV, app="shop", branch="b", url=URL, phase="queued")
    assert "by @octocat |" in pr_comment(replace(view, requested_by="octocat"))
    shown = pr_comment(replace(view, requested_by="alice @bob"))
    assert "`alice @bob`" in shown and "@bob" not in _outside_code(shown)


# -- end to end: the issue's own reproduction ------------------------------------------------------


def test_a_branch_named_like_a_broadcast_pings_nobody(make_rig: MakeRig) -> None:
    rig = make_rig()
    answer = rig.command("deploy <!here>*MARKB*").json()
    assert injected(answer["text"]) == [], answer["text"]
    rig.fake.wait_for(lambda: any("queued" in str(c.args) for c in rig.fake.of("chat.postMessage")))
    calls = rig.fake.of("chat.postMessage") + rig.fake.of("chat.update")
    assert calls
    for call in calls:
        texts = [str(call.args.get("text") or ""), *mrkdwn_of(call.args.get("blocks"))]
        for text in texts:
            assert "<!here>" not in text and injected(text, (r"@U[A-Z0-9]+",)) == [], text


@CHECK
@given(said=hostile)
def test_answers_to_pr_comments(said: str) -> None:
    mention, body = answer("octocat", said).split("\n", 1)
    assert mention == "@octocat" and md_injected(body) == [], body[:600]

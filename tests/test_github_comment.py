"""Golden files for the living PR comment in each phase (regenerate with
``REVIEEE_UPDATE_GOLDEN=1 pytest tests/test_github_comment.py`` and review the diff)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from bot.github.comment import pr_comment
from tests.test_slack_blocks import PHASES

GOLDEN = Path(__file__).parent / "golden" / "github"
SLACK = "https://acme.slack.com/archives/C0REVIEW/p1795342050000100"


@pytest.mark.parametrize("phase", list(PHASES))
def test_pr_comment_in_each_phase(phase: str) -> None:
    view = replace(PHASES[phase], requested_by="octocat", stopped_by="hubot")
    body = pr_comment(view, SLACK if phase != "stopped" else None)
    path = GOLDEN / f"comment-{phase}.md"
    if os.environ.get("REVIEEE_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    assert path.exists(), f"{path} is missing: run with REVIEEE_UPDATE_GOLDEN=1 to create it"
    assert body == path.read_text()
    assert body.startswith(f"<!-- revieee:{view.env} -->\n")  # how revieee finds its comment


def test_slack_ids_are_not_shown_as_github_users() -> None:
    body = pr_comment(replace(PHASES["ready"], requested_by="U0ALICE"))
    assert "@U0ALICE" not in body and "a Slack user" in body


def test_a_long_failure_is_cut() -> None:
    body = pr_comment(replace(PHASES["failed"], reason="x" * 70_000))
    assert len(body) < 4000 and "x…" in body  # GitHub's limit is 65,536 characters


def test_a_failed_release_task_shows_its_exit_code_and_last_lines() -> None:
    from bot.phases import TaskView

    tasks = (
        TaskView("create-db", "on_create", "succeeded", 0, 3.2, None, ("CREATE DATABASE x",)),
        TaskView(
            "migrate", "release", "failed", 1, 4.0, None, ("Applying 0003...", "ERROR: ```|@x")
        ),
    )
    view = replace(PHASES["failed"], tasks=tasks, settings=(("FLAG", "on"),), serving=True)
    body = pr_comment(view)
    path = GOLDEN / "comment-failed-release.md"
    if os.environ.get("REVIEEE_UPDATE_GOLDEN") == "1":
        path.write_text(body)
    assert body == path.read_text()
    assert "| **Release task** | `migrate`: exit code 1 after 4s |" in body
    assert "| **On create task** | `create-db`: exit code 0 after 3.2s |" in body
    assert "````\nApplying 0003...\nERROR: ```|@x\n````" in body  # a fence it cannot close

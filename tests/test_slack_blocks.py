"""Golden files for the Block Kit revieee shows: the deploy message in each phase, the list and
the App Home. The builders are pure functions of their inputs (the time included), so each file
is exact. After an intended change, regenerate with ``REVIEEE_UPDATE_GOLDEN=1 pytest`` and review
the diff like code."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.slack.blocks import (
    MAX_BLOCKS,
    MAX_HOME_BLOCKS,
    DeployView,
    deploy_message,
    home_view,
    list_blocks,
)

GOLDEN = Path(__file__).parent / "golden" / "slack"
NOW = datetime(2026, 11, 22, 10, 7, 30, tzinfo=UTC)
STARTED = NOW - timedelta(minutes=4, seconds=12)
ENV = "shop-feature-checkout-s7gghvic"
URL = f"https://{ENV}.review.example.test"
BASE = DeployView(
    env=ENV,
    app="shop",
    branch="feature/checkout",
    url=URL,
    phase="queued",
    sha="44a8906c0ffee00ddba11ab1e5ca1ab1e0000000",
    requested_by="U0ALICE",
    started_at=STARTED,
    expires_at=NOW + timedelta(hours=24),
)
REASON = (
    "waiting for the services to become stable: shop-feature-checkout-s7gghvic-web not stable "
    "after 600s: 0 of 1 tasks running; last service event: (service "
    "shop-feature-checkout-s7gghvic-web) was unable to place a task"
)
EXPIRED = "expired: no activity since 2026-11-12 10:00 UTC, reminded 2026-11-16 09:00 UTC"
PHASES: dict[str, DeployView] = {
    "queued": BASE,
    "resolving": BASE.__class__(**{**BASE.__dict__, "phase": "resolving"}),
    "building": BASE.__class__(**{**BASE.__dict__, "phase": "building", "detail": "web: BUILD"}),
    "waiting": BASE.__class__(**{**BASE.__dict__, "phase": "waiting"}),
    "deploying": BASE.__class__(**{**BASE.__dict__, "phase": "deploying"}),
    "ready": BASE.__class__(**{**BASE.__dict__, "phase": "ready", "finished_at": NOW}),
    "failed": BASE.__class__(
        **{**BASE.__dict__, "phase": "failed", "finished_at": NOW, "reason": REASON}
    ),
    "build-failed": BASE.__class__(
        **{**BASE.__dict__, "phase": "failed", "finished_at": NOW}
        | {
            "reason": "building image of web: the build of web failed in phase BUILD: "
            "COMMAND_EXECUTION_ERROR: Error while executing command: make image. Reason: exit "
            "status 2 after 3m 05s",
            "log_url": "https://us-east-1.console.aws.amazon.com/codesuite/codebuild/projects/"
            "shop-web/build/shop-web%3A1234/log?region=us-east-1",
        }
    ),
    "redeploy-failed": BASE.__class__(
        **{**BASE.__dict__, "phase": "failed", "finished_at": NOW, "reason": REASON}
        | {"serving": True}
    ),
    "stopping": BASE.__class__(**{**BASE.__dict__, "phase": "stopping", "requested_by": "U0BOB"}),
    "stopped": BASE.__class__(
        **{**BASE.__dict__, "phase": "stopped", "stopped_by": "U0BOB", "stopped_at": NOW}
    ),
    "sleeping": BASE.__class__(**{**BASE.__dict__, "phase": "sleeping", "finished_at": NOW}),
    "stopped-expired": BASE.__class__(
        **{**BASE.__dict__, "phase": "stopped", "stopped_by": "revieee", "stopped_at": NOW}
        | {"stop_reason": EXPIRED}
    ),
    "ready-pinned": BASE.__class__(
        **{**BASE.__dict__, "phase": "ready", "finished_at": NOW, "pinned": True}
    ),
}


def golden(name: str, value: Any) -> None:
    path = GOLDEN / f"{name}.json"
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    if os.environ.get("REVIEEE_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} is missing: run with REVIEEE_UPDATE_GOLDEN=1 to create it"
    assert json.loads(path.read_text()) == json.loads(text), f"{name} differs from {path}"


def within_limits(blocks: list[dict[str, Any]], max_blocks: int = MAX_BLOCKS) -> None:
    assert len(blocks) <= max_blocks
    for block in blocks:
        assert block.get("type") in {"section", "context", "actions", "header", "divider"}
        parts = [block.get("text") or {}, *block.get("fields", []), *block.get("elements", [])]
        for part in parts:
            if part.get("type") in ("mrkdwn", "plain_text"):
                assert len(part["text"]) <= 3000
        assert len(block.get("fields", [])) <= 10
        if block["type"] == "actions":
            assert len(block["elements"]) <= 25
            assert len({e["action_id"] for e in block["elements"]}) == len(block["elements"])


@pytest.mark.parametrize("phase", list(PHASES))
def test_deploy_message_in_each_phase(phase: str) -> None:
    text, blocks = deploy_message(PHASES[phase], NOW)
    within_limits(blocks)
    golden(f"deploy-{phase}", {"text": text, "blocks": blocks})


def test_a_very_long_failure_reason_is_cut_to_slacks_limit() -> None:
    view = PHASES["failed"].__class__(**{**PHASES["failed"].__dict__, "reason": "x" * 10_000})
    _, blocks = deploy_message(view, NOW)
    within_limits(blocks)
    assert any(b.get("text", {}).get("text", "").endswith("…") for b in blocks)


def _rows(n: int, owner_every: int = 3) -> list[dict[str, Any]]:
    statuses = ["running", "deploying", "failed", "queued", "stopping"]
    return [
        {
            "name": f"shop-feature-{i:03d}",
            "app": "shop",
            "branch": f"feature/{i:03d}",
            "status": statuses[i % len(statuses)],
            "url": f"https://shop-feature-{i:03d}.review.example.test",
            "owner": "U0ALICE" if i % owner_every == 0 else "U0BOB",
            "created_at": (NOW - timedelta(hours=i)).isoformat(),
            "expires_at": (NOW + timedelta(hours=24 - i)).isoformat() if i % 2 else None,
        }
        for i in range(n)
    ]


def test_list_golden() -> None:
    text, blocks = list_blocks(_rows(6), NOW)
    within_limits(blocks)
    golden("list", {"text": text, "blocks": blocks})
    assert list_blocks([], NOW) == (
        "Environments: none",
        [{"type": "section", "text": {"type": "mrkdwn", "text": "*Environments:* none"}}],
    )


@pytest.mark.parametrize("n", [1, 30, 200, 5000])
def test_list_always_fits_and_counts_what_it_left_out(n: int) -> None:
    rows = _rows(n)
    text, blocks = list_blocks(rows, NOW)
    within_limits(blocks)
    shown = sum(b["text"]["text"].count("\n") + 1 for b in blocks[1:] if b["type"] == "section")
    left = blocks[-1]["elements"][0]["text"] if blocks[-1]["type"] == "context" else ""
    if shown < n:
        assert f"… and {n - shown} more" in left
    else:
        assert left == ""
    assert text == f"Environments: {n}"


def test_home_golden() -> None:
    rows = _rows(5)
    view = home_view([r for r in rows if r["owner"] == "U0ALICE"], rows[:3], NOW)
    assert view["type"] == "home"
    within_limits(view["blocks"], MAX_HOME_BLOCKS)
    golden("home", view)


def test_home_with_hundreds_of_environments_fits() -> None:
    rows = _rows(400, owner_every=1)
    view = home_view(rows, rows, NOW)
    within_limits(view["blocks"], MAX_HOME_BLOCKS)
    assert "more" in json.dumps(view["blocks"])

"""Structured logs: JSON lines with the key=value fields lifted, secrets masked; every request
answered with an X-Request-Id that its log line carries."""

from __future__ import annotations

import json
import logging

import pytest

from bot.jsonlog import JsonFormatter, RedactingFormatter
from tests.conftest import MakeRig

TOKEN = "xoxb-123456789012-abcdefABCDEF"


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("revieee.test", logging.INFO, __file__, 1, message, args, None)


def test_a_json_line_lifts_key_values_and_masks_secrets() -> None:
    line = JsonFormatter([TOKEN, "short"]).format(
        record("step op=%s env=%s step=%r token=%s (short)", 7, "shop-x", "deploying", TOKEN)
    )
    event = json.loads(line)
    assert event["level"] == "info" and event["logger"] == "revieee.test"
    assert event["op"] == "7" and event["env"] == "shop-x" and event["step"] == "deploying"
    assert TOKEN not in line and event["token"] == "[secret]"
    assert "short" in line  # values under 8 characters are not treated as secrets


def test_text_lines_are_masked_too() -> None:
    formatter = RedactingFormatter("%(message)s", [TOKEN])
    assert formatter.format(record("posting with %s", TOKEN)) == "posting with [secret]"


def test_each_request_gets_an_id_in_its_answer_and_its_log_line(
    make_rig: MakeRig, caplog: pytest.LogCaptureFixture
) -> None:
    rig = make_rig()
    with caplog.at_level(logging.INFO, logger="revieee.server"):
        resp = rig.command("help")
        missing = rig.request("GET", "/nowhere")
    request_id = resp.headers["X-Request-Id"]
    assert len(request_id) == 16 and missing.headers["X-Request-Id"] != request_id
    lines = [r.getMessage() for r in caplog.records if r.name == "revieee.server"]
    assert any(f"request_id={request_id}" in m and "status=200" in m for m in lines)
    assert any("path=/nowhere status=404" in m for m in lines)

"""The files in deploy/ that are not exercised elsewhere: the Dockerfile (no Docker engine here,
so it is not built; its health check command is run against a real server instead) and the
GitHub App manifest (it subscribes to exactly the events revieee handles)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from bot.github.events import HANDLED
from tests.conftest import MakeRig

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def _instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return [
        (line.split(" ", 1)[0].upper(), line.split(" ", 1)[1] if " " in line else "")
        for line in lines
        if not line.startswith("#")
    ]


def test_the_image_runs_as_a_user_with_its_data_on_a_volume() -> None:
    steps = _instructions()
    users = [arg for op, arg in steps if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert ("VOLUME", '["/data"]') in steps
    assert ("STOPSIGNAL", "SIGTERM") in steps
    env = " ".join(arg for op, arg in steps if op == "ENV")
    assert "REVIEEE_DATABASE=/data/revieee.db" in env and "REVIEEE_LOG_FORMAT=json" in env


def test_the_health_check_command_passes_against_a_running_server(make_rig: MakeRig) -> None:
    (check,) = [arg for op, arg in _instructions() if op == "HEALTHCHECK"]
    command = json.loads(check[check.index("CMD") + 3 :].strip())
    assert command[0] == "python"
    rig = make_rig()
    code = command[2].replace("127.0.0.1:3000", f"127.0.0.1:{rig.port}")
    assert subprocess.run([sys.executable, "-c", code], timeout=30).returncode == 0
    dead = command[2].replace("127.0.0.1:3000", "127.0.0.1:9")
    assert subprocess.run([sys.executable, "-c", dead], timeout=30, capture_output=True).returncode


def test_the_github_app_manifest_subscribes_to_what_revieee_handles() -> None:
    manifest = json.loads((DEPLOY / "github-app-manifest.json").read_text())
    assert sorted(manifest["default_events"]) == sorted(HANDLED)
    assert manifest["hook_attributes"]["url"].endswith("/github/webhook")
    permissions = manifest["default_permissions"]
    for needed in ("pull_requests", "issues", "deployments", "contents", "actions"):
        assert permissions.get(needed) in ("read", "write"), needed
    assert re.fullmatch(r"https://[^/]+/", manifest["redirect_url"])

"""The IAM half of the strict AWS test layer (the rest is bot/strict_aws, which `revieee demo`
runs on too): the stack's task role, resolved from deploy/cloudformation.yml, decided by
@cloud-copilot/iam-simulate under node."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent


def ensure_evaluator() -> Path:
    """Install the pinned npm packages once (``npm ci`` from the lock file); the directory."""
    if (HERE / "node_modules" / "@cloud-copilot" / "iam-simulate").is_dir():
        return HERE
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise RuntimeError(
            "the strict AWS layer's IAM evaluator needs node and npm on PATH "
            "(tests/strict_aws/package.json)"
        )
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=HERE,
        check=True,
        timeout=600,
    )
    return HERE

"""Per-environment settings: ``KEY=VALUE`` pairs that override an app's configured environment
variables for one environment (``deploy BRANCH --set KEY=VALUE``, ``--unset KEY``, or a fenced
``revieee`` block in a pull request's description). They are stored with the environment, kept
across redeploys until changed, and go into every service's task definition.

A setting is plain configuration: it is stored in SQLite and in the task definition, both
readable by whoever may read them, and shown in ``status``. Secrets are refused (keys matching
``secret_keys``, values that look like a credential): a secret belongs in Secrets Manager or
SSM, named by the template task definition's ``secrets``."""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
RESERVED_PREFIX = "REVIEEE_"  # revieee's own facts (REVIEEE_ENV, REVIEEE_DATABASE_NAME...)
MAX_VALUE = 1024  # characters of one value
MAX_TOTAL = 16 * 1024  # characters of all of an environment's settings (a task definition
# request is at most 64 KiB: RegisterTaskDefinition, "Amazon ECS service quotas")
MAX_SETTINGS = 50
# Values that are credentials whatever their key: a password in a URL's userinfo, GitHub and
# Slack tokens, AWS access key ids, PEM private keys.
CREDENTIAL_VALUES = (
    (re.compile(r"^[a-z][a-z0-9+.-]*://[^/@:\s]*:[^/@\s]+@", re.IGNORECASE), "a password in a URL"),
    (
        re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}|\bgithub_pat_\w{20,}"),
        "a GitHub token",
    ),
    (re.compile(r"\bxox[abpors]-[A-Za-z0-9-]{8,}"), "a Slack token"),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), "an AWS access key"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a private key"),
)
FENCE_RE = re.compile(
    r"^[ \t]{0,3}(```|~~~)[ \t]*revieee[ \t\r]*\n(.*?)^[ \t]{0,3}\1[ \t\r]*$", re.M | re.S
)  # GitHub keeps a description's \r\n line ends
PULL_REQUEST = "pull request"  # the source of a setting from a pull request's description


class SettingError(ValueError):
    """A setting that cannot be taken: ``str()`` says which and why."""


@dataclass(frozen=True)
class Setting:
    value: str
    source: str  # slack, github (a comment), cli, pull request
    by: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "source": self.source, "by": self.by}


EnvSettings = dict[str, Setting]


def secret_pattern(key: str, patterns: Iterable[str]) -> str | None:
    """The first of ``patterns`` (globs, case-blind) that ``key`` matches, None if none."""
    upper = key.upper()
    return next((p for p in patterns if fnmatch.fnmatchcase(upper, p.upper())), None)


def check(key: str, value: str | None, patterns: Iterable[str]) -> None:
    """Raise :class:`SettingError` when ``key`` (with ``value``; None: an unset) may not be set."""
    if not KEY_RE.fullmatch(key):
        raise SettingError(
            f"{key[:60]!r} is not an environment variable name (letters, digits and _, not "
            "starting with a digit, at most 128)"
        )
    if key.upper().startswith(RESERVED_PREFIX):
        raise SettingError(f"{key} is revieee's own (every REVIEEE_* variable is): choose another")
    if value is None:
        return
    pattern = secret_pattern(key, patterns)
    if pattern:
        raise SettingError(
            f"{key} looks like a secret (it matches {pattern} of secret_keys): secrets never go "
            "through chat; put it in Secrets Manager or SSM and name it in the template task "
            "definition's secrets"
        )
    for found, what in CREDENTIAL_VALUES:
        if found.search(value):
            raise SettingError(
                f"the value of {key} looks like {what}: secrets never go through chat; put it in "
                "Secrets Manager or SSM and name it in the template task definition's secrets"
            )
    if len(value) > MAX_VALUE:
        raise SettingError(f"the value of {key} is {len(value)} characters (at most {MAX_VALUE})")
    if any(ord(c) < 32 and c not in "\t" for c in value):
        raise SettingError(f"the value of {key} has a line break or control character")


def parse_assignment(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` -> (key, value); :class:`SettingError` when there is no ``=``."""
    key, eq, value = text.partition("=")
    if not eq or not key.strip():
        raise SettingError(f"{text[:60]!r} is not KEY=VALUE")
    return key.strip(), value


def block_of(body: str | None) -> tuple[dict[str, str] | None, list[str]]:
    """The settings of the first fenced ``revieee`` block of a pull request's description
    (``KEY=VALUE`` lines; blank lines and ``#`` comments skipped), None when it has none; and
    the lines that are not ``KEY=VALUE``."""
    found = FENCE_RE.search(body or "")
    if found is None:
        return None, []
    out: dict[str, str] = {}
    problems: list[str] = []
    for raw in found.group(2).splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            key, value = parse_assignment(line)
        except SettingError as exc:
            problems.append(str(exc))
            continue
        out[key] = value
    return out, problems


def load(text: str | None) -> EnvSettings:
    """The settings stored with an environment (JSON), empty when none."""
    data = json.loads(text) if text else {}
    return {k: Setting(v["value"], v.get("source", "?"), v.get("by")) for k, v in data.items()}


def dump(settings: Mapping[str, Setting]) -> str | None:
    return json.dumps({k: s.to_json() for k, s in sorted(settings.items())}) if settings else None


def values(settings: Mapping[str, Setting]) -> dict[str, str]:
    """KEY -> value, for the task definitions."""
    return {k: s.value for k, s in settings.items()}


def change(
    current: Mapping[str, Setting],
    patterns: Iterable[str],
    *,
    set_: Mapping[str, str] | None = None,
    unset: Iterable[str] = (),
    block: Mapping[str, str] | None = None,
    source: str,
    by: str | None = None,
) -> tuple[EnvSettings, list[str]]:
    """The settings after a change, and what changed ("set A", "unset B"). ``block``: the
    whole of a pull request's settings: keys it set before and no longer has are unset.
    Raises :class:`SettingError` for the first key or value that cannot be taken; nothing is
    changed then."""
    patterns = tuple(patterns)
    out = dict(current)
    said: list[str] = []
    wanted: list[tuple[str, str | None, str]] = []
    if block is not None:
        for key, setting in current.items():
            if setting.source == PULL_REQUEST and key not in block:
                wanted.append((key, None, PULL_REQUEST))
        wanted += [(k, v, PULL_REQUEST) for k, v in block.items()]
    wanted += [(k, None, source) for k in unset]
    wanted += [(k, v, source) for k, v in (set_ or {}).items()]
    for key, value, origin in wanted:
        check(key, value, patterns)
        if value is None:
            if out.pop(key, None) is not None:
                said.append(f"unset {key}")
            continue
        before = out.get(key)
        if before is None or before.value != value:
            said.append(f"set {key}")
        out[key] = Setting(value, origin, by)
    if len(out) > MAX_SETTINGS:
        raise SettingError(
            f"an environment takes at most {MAX_SETTINGS} settings ({len(out)} asked)"
        )
    total = sum(len(k) + len(s.value) for k, s in out.items())
    if total > MAX_TOTAL:
        raise SettingError(
            f"the environment's settings would be {total} characters (at most {MAX_TOTAL})"
        )
    return out, said

"""One parser for every front door: text such as ``deploy my-branch --app web`` becomes a typed
command, or a :class:`UsageError` whose message shows the usage.

Only the verbs in :data:`commands.verbs.VERBS` and their declared flags are accepted.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import shlex
import typing
from typing import Any

from bot.text import parse_duration as text_duration
from bot.text import span
from commands.verbs import (
    MAX_KEEP,
    VERBS,
    Command,
    Help,
    Keep,
    usage,
)

_SHA_RE = re.compile(r"[0-9a-fA-F]{7,40}")


class UsageError(Exception):
    """Bad input: ``str()`` says what is wrong and shows the usage."""

    def __init__(self, problem: str, verb: str | None = None) -> None:
        self.problem = problem
        self.verb = verb
        lines = [problem]
        if verb:
            lines.append(f"usage: {usage(verb)}")
        else:
            lines.append("usage: " + " | ".join(usage(v) for v in VERBS))
        super().__init__("\n".join(lines))


def _fields(cls: type[Command]) -> tuple[list[str], list[str], dict[str, type]]:
    """Required positionals (no default), optional positionals (``metadata["positional"]``)
    and flags (name -> bool, int, str, or tuple: a flag given as often as wanted,
    ``metadata["repeat"]``)."""
    hints = typing.get_type_hints(cls)
    required: list[str] = []
    optional: list[str] = []
    flags: dict[str, type] = {}
    for f in dataclasses.fields(cls):
        if f.default is dataclasses.MISSING:
            required.append(f.name)
        elif f.metadata.get("positional"):
            optional.append(f.name)
        elif f.metadata.get("repeat"):
            flags[f.name] = tuple
        else:
            flags[f.name] = hints[f.name] if hints[f.name] in (bool, int) else str
    return required, optional, flags


def parse_duration(text: str) -> int:
    """A verb's duration: a whole number and a unit (``30s``, ``15m``, ``2h``, ``1d``, ``1w``)
    -> seconds; ValueError for anything else."""
    return int(text_duration(text, whole=True, unit_required=True))


def _number(cls: type[Command], verb: str, name: str, value: str) -> int:
    """A whole-number flag (``metadata``: ``min``/``max``, or ``duration`` with a ``max``)."""
    meta = next(f.metadata for f in dataclasses.fields(cls) if f.name == name)
    flag = "--" + name.replace("_", "-")
    if meta.get("duration"):
        top = int(meta["max"])
        try:
            seconds = parse_duration(value)
        except ValueError:
            seconds = -1
        if not 0 < seconds <= top:
            raise UsageError(
                f"{flag} for {verb} must be a duration like 30s, 15m, 2h or 1d, at most "
                f"{span(top)} (got {value!r})",
                verb,
            )
        return seconds
    low, high = int(meta.get("min", 0)), int(meta.get("max", 2**31))
    number = int(value) if value.isascii() and value.isdigit() else None
    if number is None or not low <= number <= high:
        raise UsageError(
            f"{flag} for {verb} must be a whole number from {low} to {high} (got {value!r})", verb
        )
    return number


def parse(text: str) -> Command:
    """Parse one command line (without the leading ``/revieee``)."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"cannot read that command: {exc}") from None
    return parse_words(words)


def parse_words(words: list[str]) -> Command:
    if not words:
        return Help()
    verb = words[0].lower()
    if verb in ("-h", "--help"):
        return Help()
    if verb not in VERBS:
        close = difflib.get_close_matches(verb, list(VERBS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UsageError(f"unknown command {words[0]!r}{hint}")
    cls = VERBS[verb]
    required, optional, flags = _fields(cls)
    values: dict[str, Any] = {}
    rest: list[str] = []
    args = iter(words[1:])
    for word in args:
        if word in ("-h", "--help"):
            return Help(verb)
        if word.startswith("--"):
            name, eq, inline = word[2:].partition("=")
            key = name.replace("-", "_")
            if key not in flags:
                raise UsageError(f"unknown option {word.split('=')[0]!r} for {verb}", verb)
            if flags[key] is bool:
                if eq:
                    raise UsageError(f"--{name} takes no value", verb)
                values[key] = True
                continue
            value = inline if eq else next(args, None)
            if value is None or value == "" or value.startswith("--"):
                raise UsageError(f"--{name} needs a value", verb)
            if flags[key] is tuple:
                values[key] = (*values.get(key, ()), value)
            else:
                values[key] = _number(cls, verb, key, value) if flags[key] is int else value
        else:
            rest.append(word)
    positional = required + optional
    if len(rest) < len(required):
        raise UsageError(f"{verb} needs {required[len(rest)].upper()}", verb)
    if len(rest) > len(positional):
        raise UsageError(f"unexpected argument {rest[len(positional)]!r} for {verb}", verb)
    for name, value in zip(positional, rest, strict=False):
        if not value.strip():
            raise UsageError(f"{name.upper()} must not be empty", verb)
        values[name] = value
    if cls is Help and values.get("verb"):
        values["verb"] = values["verb"].lower()
        if values["verb"] not in VERBS:
            raise UsageError(f"no help for {rest[0]!r}: there is no such command")
    if cls is Keep and values.get("duration"):
        values["duration"] = values["duration"].lower()
        if values["duration"] != "forever":
            try:
                seconds = parse_duration(values["duration"])
            except ValueError:
                seconds = -1
            if not 0 < seconds <= MAX_KEEP:
                raise UsageError(
                    f"keep for how long? a duration like 3d, 1w or 12h (at most "
                    f"{span(MAX_KEEP)}), or forever (got {rest[1]!r})",
                    verb,
                )
    if values.get("sha") is not None and not _SHA_RE.fullmatch(values["sha"]):
        raise UsageError(
            f"--sha must be a commit hash (7-40 hex characters), got {values['sha']!r}", verb
        )
    if values.get("sha"):
        values["sha"] = values["sha"].lower()
    for assignment in values.get("set", ()):
        key, eq, _ = assignment.partition("=")
        if not eq or not key.strip():
            raise UsageError(f"--set takes KEY=VALUE (got {assignment!r})", verb)
    for key in values.get("unset", ()):
        if "=" in key:
            raise UsageError(f"--unset takes a KEY alone (got {key!r})", verb)
    return cls(**values)

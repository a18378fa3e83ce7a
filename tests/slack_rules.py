"""What Slack refuses in ``blocks``, ``view`` and ``text``, for the fake Slack (which answers
``invalid_blocks`` like Slack) and for the tests of every builder.

slack_sdk's model classes parse each block and ``validate_json()`` checks what they know; the
limits they do not check come from the Block Kit reference (block and composition-object pages):
a message holds at most 50 blocks, a Home tab or modal 100; a section's text at most 3,000
characters, at most 10 fields of at most 2,000 each; a header's plain text 150; a context at
most 10 elements; an actions block 25 elements; a button's text 75, its value 2,000, its URL
3,000; ``action_id`` and ``block_id`` 255; a confirm dialog's title 100, text 300, buttons 30.
chat.postMessage: ``text`` is truncated past 40,000 characters (Slack answers ``msg_too_long``
beyond that), and a message needs ``text`` or ``blocks``.
"""

from __future__ import annotations

import re
from typing import Any

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block

MAX_BLOCKS = {"message": 50, "home": 100, "modal": 100}


def _text_of(obj: Any) -> str:
    return str(obj.get("text", "")) if isinstance(obj, dict) else ""


def _limits(block: dict[str, Any]) -> list[str]:
    kind = block.get("type")
    problems = []
    if len(str(block.get("block_id", ""))) > 255:
        problems.append("block_id longer than 255")
    if kind == "section":
        if len(_text_of(block.get("text"))) > 3000:
            problems.append("section text longer than 3000")
        fields = block.get("fields") or []
        if len(fields) > 10:
            problems.append("more than 10 fields")
        problems += [
            f"field longer than 2000 ({len(_text_of(f))})"
            for f in fields
            if len(_text_of(f)) > 2000
        ]
        if "accessory" in block:
            problems += _element(block["accessory"])
    elif kind == "header" and len(_text_of(block.get("text"))) > 150:
        problems.append("header longer than 150")
    elif kind == "context":
        elements = block.get("elements") or []
        if len(elements) > 10:
            problems.append("context with more than 10 elements")
        problems += [
            "context element longer than 3000" for e in elements if len(_text_of(e)) > 3000
        ]
    elif kind == "actions":
        elements = block.get("elements") or []
        if len(elements) > 25:
            problems.append("actions with more than 25 elements")
        for element in elements:
            problems += _element(element)
    return problems


def _element(element: dict[str, Any]) -> list[str]:
    problems = []
    if len(str(element.get("action_id", ""))) > 255:
        problems.append("action_id longer than 255")
    if element.get("type") == "button":
        if len(_text_of(element.get("text"))) > 75:
            problems.append("button text longer than 75")
        if len(str(element.get("value", ""))) > 2000:
            problems.append("button value longer than 2000")
        if len(str(element.get("url", ""))) > 3000:
            problems.append("button url longer than 3000")
        confirm = element.get("confirm") or {}
        if len(_text_of(confirm.get("title"))) > 100 or len(_text_of(confirm.get("text"))) > 300:
            problems.append("confirm dialog text too long")
    return problems


def block_problems(blocks: Any, surface: str = "message") -> list[str]:
    """Why Slack would answer ``invalid_blocks`` for ``blocks`` (empty: it would take them)."""
    if not isinstance(blocks, list):
        return ["blocks is not a list"]
    problems = []
    if len(blocks) > MAX_BLOCKS[surface]:
        problems.append(f"{len(blocks)} blocks (at most {MAX_BLOCKS[surface]} in a {surface})")
    for i, block in enumerate(blocks):
        if not isinstance(block, dict):
            problems.append(f"block {i} is not an object")
            continue
        try:
            parsed = Block.parse(block)
            if parsed is None:
                problems.append(f"block {i}: unknown type {block.get('type')!r}")
                continue
            parsed.validate_json()
        except (SlackObjectFormationError, KeyError, TypeError, ValueError) as exc:
            problems.append(f"block {i}: {exc}")
        problems += [f"block {i}: {p}" for p in _limits(block)]
    return problems


def message_problems(args: dict[str, Any]) -> tuple[str, list[str]] | None:
    """``(error, problems)`` Slack answers for a chat.postMessage/update's arguments, or None."""
    text = args.get("text")
    blocks = args.get("blocks")
    if blocks is not None:
        problems = block_problems(blocks)
        if problems:
            return "invalid_blocks", problems
    elif not text and "attachments" not in args:
        return "no_text", ["text or blocks is required"]
    if text is not None and len(str(text)) > 40_000:
        return "msg_too_long", [f"text of {len(str(text))} characters"]
    return None


def view_problems(view: Any) -> list[str]:
    if not isinstance(view, dict) or view.get("type") not in ("home", "modal"):
        return ["view.type must be home or modal"]
    return block_problems(view.get("blocks") or [], view["type"])


# -- what untrusted text must not become ---------------------------------------------------------

BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
CONTROL = re.compile(r"<([^<>]*)>")
CODE_BLOCK = re.compile(r"```.*?```", re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]+`")


def mrkdwn_of(blocks: Any) -> list[str]:
    """Every mrkdwn string in blocks (and their elements, fields, accessories, dialogs)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn" and isinstance(node.get("text"), str):
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(blocks)
    return found


def injected(mrkdwn: str, allowed: tuple[str, ...] = ()) -> list[str]:
    """What in a mrkdwn string came out of hostile input alive: a control sequence (mention,
    broadcast, channel, user group, link) that is not one of the builder's own, a bidi
    override, formatting around one of the hostile markers outside code, a quote line."""
    problems = []
    if BIDI.search(mrkdwn):
        problems.append("a bidirectional override")
    for seq in CONTROL.findall(mrkdwn):
        if seq.startswith("!date^") and not re.search(r"(?i)evil|here|channel|everyone", seq):
            continue
        if any(re.fullmatch(pattern, seq) for pattern in allowed):
            continue
        problems.append(f"control sequence <{seq}>")
    # a link's URL is not text (nothing in it is formatted): its label is
    labels = CONTROL.sub(lambda m: m[1].split("|", 1)[1] if "|" in m[1] else " ", mrkdwn)
    outside = CODE_SPAN.sub(" ", CODE_BLOCK.sub(" ", labels))
    for marker in ("MARKB", "MARKI", "MARKS", "MARKC"):
        if re.search(rf"[*_~`]{marker}|{marker}[*_~`]", outside):
            problems.append(f"formatting around {marker}")
    if "```" in outside:
        problems.append("an unclosed code block")
    if re.search(r"(?m)^\s*(>|&gt;)\s*MARKQ", outside):
        problems.append("a quote")
    return problems

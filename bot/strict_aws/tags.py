"""Tag rules of ECS and Cloud Map.

Sources: the ECS API reference, ``Tag`` (docs.aws.amazon.com/AmazonECS/latest/APIReference/
API_Tag.html): key 1-128 and value 0-256 characters of ``^([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)$``, at
most 50 tags, the ``aws:`` prefix reserved; botocore's models carry the same pattern. Cloud Map's
``Tag`` (docs.aws.amazon.com/cloud-map/latest/api/API_Tag.html) has the same limits.
A ``#`` is refused (aws-actions/configure-aws-credentials#247).
"""

from __future__ import annotations

import unicodedata

ALLOWED_PUNCTUATION = set("_.:/=+-@")
MAX_TAGS = 50


def allowed(char: str) -> bool:
    """``\\p{L}``, ``\\p{Z}``, ``\\p{N}`` or one of ``_.:/=+-@``."""
    return char in ALLOWED_PUNCTUATION or unicodedata.category(char)[0] in "LZN"


def problem(tags: list[tuple[str, str]]) -> str | None:
    """What AWS would refuse in ``tags`` ((key, value) pairs), or None."""
    if len(tags) > MAX_TAGS:
        return f"too many tags: {len(tags)} (at most {MAX_TAGS})"
    for key, value in tags:
        if not 1 <= len(key) <= 128:
            return f"tag key {key!r} must be 1 to 128 characters"
        if len(value) > 256:
            return f"tag value of {key!r} must be at most 256 characters"
        if key.lower().startswith("aws:"):
            return f"tag key {key!r}: the aws: prefix is reserved"
        for kind, text in (("key", key), ("value", value)):
            bad = sorted({c for c in text if not allowed(c)})
            if bad:
                return (
                    f"Tag {kind} {text!r} contains invalid characters {''.join(bad)!r}; "
                    "allowed: letters, numbers, spaces and _ . : / = + - @"
                )
    return None


def pairs(tags: list[dict[str, str]] | None, key: str = "key", value: str = "value") -> list:
    return [(t.get(key, ""), t.get(value, "")) for t in tags or []]

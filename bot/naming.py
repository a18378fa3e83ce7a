"""Names for environments and the AWS resources behind them.

An environment is identified by (app, branch). Its name is a DNS label: lowercase ``a-z0-9-``,
at most 63 characters, no leading or trailing hyphen. Branch names are folded into that alphabet;
whenever folding changes or shortens the text, a stable hash of the *original* text is appended,
so two different branches never share a name.

Why no collisions: an untouched label never ends in ``-<8 base32 chars>`` (such text is always
hashed), while every folded label does. So an untouched label never equals a folded one, two
untouched labels are equal only if their texts are, and two folded labels are equal only if their
40-bit hashes of the original text are too.
"""

from __future__ import annotations

import base64
import hashlib
import re
import unicodedata

MAX_LABEL = 63
HASH_LEN = 8

_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
_HASHED_TAIL_RE = re.compile(rf"-[a-z2-7]{{{HASH_LEN}}}$")
_NOT_LABEL_CHARS = re.compile(r"[^a-z0-9]+")
_NOT_TAG_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")
APP_NAME_RE = re.compile(r"[a-z][a-z0-9]{0,19}")


def is_dns_label(text: str, max_len: int = MAX_LABEL) -> bool:
    """True when ``text`` is a valid DNS label of at most ``max_len`` characters."""
    return len(text) <= max_len and _LABEL_RE.fullmatch(text) is not None


def short_hash(text: str) -> str:
    """A stable, lowercase base32 digest of ``text`` (40 bits)."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:HASH_LEN]


def fold(text: str) -> str:
    """Fold any text into ``a-z0-9`` runs joined by single hyphens (may be empty)."""
    ascii_text = (
        unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    )
    return _NOT_LABEL_CHARS.sub("-", ascii_text).strip("-")


def dns_label(text: str, max_len: int = MAX_LABEL) -> str:
    """Turn ``text`` into a DNS label, deterministic and collision-free (see module docstring)."""
    if max_len < HASH_LEN + 2:
        raise ValueError(f"max_len must be at least {HASH_LEN + 2}, got {max_len}")
    if is_dns_label(text, max_len) and not _HASHED_TAIL_RE.search(text):
        return text
    suffix = short_hash(text)
    # Always "<head>-<hash>": a bare hash would be a clean label another branch may be named.
    head = fold(text)[: max_len - HASH_LEN - 1].strip("-") or "x"
    return f"{head}-{suffix}"


def env_name(app: str, branch: str) -> str:
    """The environment's name: ``<app>-<branch label>``, itself a DNS label.

    App names are ``[a-z][a-z0-9]{0,19}`` (no hyphen), so the first hyphen always ends the app
    part and (app, branch) pairs map to distinct names.
    """
    if not APP_NAME_RE.fullmatch(app):
        raise ValueError(f"invalid app name {app!r}: use 1-20 of a-z0-9, starting with a letter")
    return f"{app}-{dns_label(branch, MAX_LABEL - len(app) - 1)}"


def service_label(env: str, service: str) -> str:
    """The Cloud Map service name of one service of an environment: ``<service>.<env>``.

    Cloud Map service names may have several DNS labels (up to 127 characters), so each
    service's host is ``<service>.<env>.<namespace>``; both labels are valid DNS labels.
    """
    return f"{service}.{env}"


def task_family(env: str, service: str) -> str:
    """The task-definition family revieee registers an environment's revisions in."""
    return f"revieee-{env}-{service}"


def ecs_service_name(env: str, service: str) -> str:
    """The ECS service name of one service of an environment."""
    return f"{env}-{service}"


def image_tag_part(branch: str) -> str:
    """A branch as CI systems usually put it into an image tag (``feature/x`` -> ``feature-x``)."""
    return _NOT_TAG_CHARS.sub("-", branch).strip("-.") or "branch"


TAG_PUNCTUATION = frozenset("_.:/=+-@")
MAX_TAG_VALUE = 256


def tag_value(text: str) -> str:
    """``text`` as an AWS tag value: characters ECS and Cloud Map refuse (their pattern is
    ``[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*``: letters, spaces, numbers and ``_.:/=+-@``; so no ``#``,
    ``(``, ``)``, ``,``, ``!``...) become ``_``; at most 256 characters. ``fix/#123`` ->
    ``fix/_123``. The raw text stays in the store: the tag is for cost reports and finding
    leftovers, never read back as the branch."""
    folded = "".join(
        c if c in TAG_PUNCTUATION or unicodedata.category(c)[0] in "LZN" else "_" for c in text
    )
    return folded[:MAX_TAG_VALUE]


MAX_DATABASE_NAME = 63  # PostgreSQL's identifiers (NAMEDATALEN - 1); MySQL takes 64


def database_name(template: str, app: str, env: str) -> str:
    """The environment's database name (``REVIEEE_DATABASE_NAME``): ``template`` with ``{app}``
    and ``{env}`` filled, folded to ``a-z0-9_`` (a name neither PostgreSQL nor MySQL needs to
    quote) and at most 63 characters; a longer one keeps a hash of the whole, so two long
    names stay apart."""
    name = template.replace("{app}", app).replace("{env}", env)
    folded = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_") or "review"
    if folded[0].isdigit():
        folded = f"db_{folded}"
    if len(folded) > MAX_DATABASE_NAME:
        digest = hashlib.sha256(folded.encode()).hexdigest()[:8]
        folded = f"{folded[: MAX_DATABASE_NAME - 9].rstrip('_')}_{digest}"
    return folded

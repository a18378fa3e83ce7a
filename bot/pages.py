"""The small HTML pages revieee shows visitors of environments (bot/visit.py, bot/access.py,
bot/broker.py), and the reverse proxy's request headers they read."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable
from typing import Any

SECRET_HEADER = "HTTP_X_REVIEEE_PROXY_SECRET"
ENV_HEADER = "HTTP_X_REVIEEE_ENV"
ENV_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
REFRESH = 5  # seconds between two reloads of a waiting page

StartResponse = Callable[..., Any]


def page(
    start_response: StartResponse, status: str, title: str, body: str, refresh: bool = False
) -> Iterable[bytes]:
    meta = f'<meta http-equiv="refresh" content="{REFRESH}">' if refresh else ""
    page = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{meta}<title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;"
        "padding:0 1em;line-height:1.5;color:#222}code{background:#f3f3f3;padding:0 .2em}"
        "</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}<p><small>revieee</small></p></body></html>"
    ).encode()
    headers = [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Length", str(len(page))),
        ("Cache-Control", "no-store"),
    ]
    if refresh:
        headers.append(("Retry-After", str(REFRESH)))
    start_response(status, headers)
    return [page]

"""The reverse proxy's nginx configuration, made from revieee's: ``https://<env>.<domain>``
goes to the environment's public service, ``<service>.<env>.<namespace>`` in Cloud Map, at its
port (each app's: an environment's name starts with its app's). A request the environment does
not answer (no task registered: asleep, stopped, starting; nginx's own 502, 503 or 504) goes
to revieee's ``/_revieee/visit`` (bot/visit.py), which shows a page and wakes a sleeping
environment. An app's own error answers pass through untouched.

``revieee proxy-config`` prints it. ``${REVIEEE_PROXY_SECRET}`` is left for the official nginx
image to fill from its environment at start (its ``/etc/nginx/templates`` step substitutes
only variables that are set, so nginx's own ``$host`` and the like stay).

Names are resolved at request time through ``resolver`` (the VPC's, ``169.254.169.253``, with
a 10 s TTL), so a new environment answers as soon as its task is registered, with no reload."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from bot.config import Settings
from bot.visit import PATH

VPC_RESOLVER = "169.254.169.253"
SECRET_PLACEHOLDER = "${REVIEEE_PROXY_SECRET}"


def _quote(value: str) -> str:
    """An nginx string: double-quoted, its quote and backslash escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def nginx_config(
    settings: Settings,
    revieee_url: str,
    resolver: str = VPC_RESOLVER,
    secret: str = SECRET_PLACEHOLDER,
    resolver_timeout: str = "2s",
) -> str:
    """The ``http``-level configuration (a ``conf.d`` file). ``revieee_url``: where the proxy
    reaches revieee (``https://revieee.example.com``)."""
    parts = urlsplit(revieee_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"revieee's URL must be http(s)://host[:port] (got {revieee_url!r})")
    visit = f"{parts.scheme}://{parts.netloc}{PATH}"
    domain = re.escape(settings.domain).replace('"', "")
    services = []
    ports = []
    for app in sorted(settings.apps.values(), key=lambda a: a.name):
        public = app.public_service
        services.append(f'    "~^{app.name}-" {_quote(public.name)};')
        ports.append(f'    "~^{app.name}-" "{public.port}";')
    lines = [
        "# made by `revieee proxy-config` from revieee.toml: do not edit, make it again",
        f"resolver {resolver} valid=10s ipv6=off;",
        f"resolver_timeout {resolver_timeout};",
        "map $host $review_env {",
        f'    "~^(?<name>[a-z0-9-]+)\\.{domain}$" $name;',
        '    default "";',
        "}",
        "map $review_env $review_service {",
        *services,
        '    default "";',
        "}",
        "map $review_env $review_port {",
        *ports,
        '    default "";',
        "}",
        "server {",
        "    listen 80 default_server;",
        '    location = /__proxy_health { return 200 "ok"; }',
        "    location / {",
        '        if ($review_service = "") { return 404; }',
        f'        set $upstream "$review_service.$review_env.{settings.namespace}";',
        "        proxy_pass http://$upstream:$review_port;",
        "        proxy_set_header Host $host;",
        "        proxy_set_header X-Forwarded-Proto https;",
        "        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "        proxy_http_version 1.1;",
        "        proxy_set_header Upgrade $http_upgrade;",
        '        proxy_set_header Connection "upgrade";',
        "        proxy_read_timeout 120s;",
        "        # no answer from the environment: revieee says why, and wakes it if asleep",
        "        error_page 502 503 504 = @visit;",
        "    }",
        "    location @visit {",
        f"        set $revieee_visit {_quote(visit)};",
        "        proxy_pass $revieee_visit;",
        "        proxy_method GET;",
        "        proxy_pass_request_body off;",
        '        proxy_set_header Content-Length "";',
        f"        proxy_set_header Host {_quote(parts.netloc)};",
        "        proxy_set_header X-Revieee-Env $review_env;",
        f"        proxy_set_header X-Revieee-Proxy-Secret {_quote(secret)};",
        "        proxy_ssl_server_name on;",
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"

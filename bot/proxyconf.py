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

from bot.access import AUTH_PATH, DENIED_PATH, NAME, TOKEN_PATH
from bot.config import Settings
from bot.visit import PATH

VPC_RESOLVER = "169.254.169.253"
SECRET_PLACEHOLDER = "${REVIEEE_PROXY_SECRET}"
CACHE_DIR = "/var/cache/nginx/revieee"


def _quote(value: str) -> str:
    """An nginx string: double-quoted, its quote and backslash escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def nginx_config(
    settings: Settings,
    revieee_url: str,
    resolver: str = VPC_RESOLVER,
    secret: str = SECRET_PLACEHOLDER,
    resolver_timeout: str = "2s",
    namespace: str | None = None,
    cache_dir: str = CACHE_DIR,
) -> str:
    """The ``http``-level configuration (a ``conf.d`` file). ``revieee_url``: where the proxy
    reaches revieee (``https://revieee.example.com``); ``namespace``: the Cloud Map namespace's
    name, when revieee.toml names it by id.

    Environments of a ``token`` app (bot/access.py) are let through by revieee's
    ``/_revieee/auth`` (nginx's ``auth_request``, its answer cached 30 s per environment, cookie
    and header); a request with ``?revieee_token=`` goes to ``/_revieee/token``, which sets the
    cookie; a refused one gets ``/_revieee/denied``'s page. Other apps' are not asked about."""
    parts = urlsplit(revieee_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"revieee's URL must be http(s)://host[:port] (got {revieee_url!r})")
    base = f"{parts.scheme}://{parts.netloc}"
    visit = f"{base}{PATH}"
    namespace = namespace or settings.namespace
    domain = re.escape(settings.domain).replace('"', "")
    services = []
    ports = []
    access = []
    sso = []  # host patterns for the stack's SsoHostPatterns (the load balancer signs them in)
    # the longest name first: of apps "shop" and "shop-admin", "shop-admin-x" is shop-admin's
    for app in sorted(settings.apps.values(), key=lambda a: (-len(a.name), a.name)):
        public = app.public_service
        services.append(f'    "~^{app.name}-" {_quote(public.name)};')
        ports.append(f'    "~^{app.name}-" "{public.port}";')
        if app.access == "token":
            access.append(f'    "~^{app.name}-" "token";')
        elif app.access == "sso":
            sso.append(f"{app.name}-*.{settings.domain}")
    to_revieee = [  # what each request to revieee carries
        "        proxy_method GET;",
        "        proxy_pass_request_body off;",
        '        proxy_set_header Content-Length "";',
        f"        proxy_set_header Host {_quote(parts.netloc)};",
        "        proxy_set_header X-Revieee-Env $review_env;",
        f"        proxy_set_header X-Revieee-Proxy-Secret {_quote(secret)};",
        '        proxy_set_header Cookie "";',
        '        proxy_set_header Authorization "";',
        "        proxy_ssl_server_name on;",
        "        proxy_redirect off;",
    ]
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
        "# who may open it (bot/access.py): token apps' environments ask revieee; sso apps'",
        "# sign in at the load balancer, the stack's SsoHostPatterns: "
        + (",".join(sorted(sso)) or "(no sso app)"),
        "map $review_env $review_access {",
        *access,
        '    default "public";',
        "}",
        f"proxy_cache_path {cache_dir} levels=1 keys_zone=revieee_access:1m max_size=16m "
        "inactive=10m use_temp_path=off;",
        "server {",
        "    listen 80 default_server;",
        '    location = /__proxy_health { return 200 "ok"; }',
        "    location / {",
        '        if ($review_service = "") { return 404; }',
        "        # a secret link: revieee sets its cookie and sends the visitor on without it",
        "        error_page 418 = @token;",
        f'        if ($arg_{NAME} != "") {{ return 418; }}',
        "        auth_request /_revieee_access;",
        "        error_page 401 = @denied;",
        f'        set $upstream "$review_service.$review_env.{namespace}";',
        "        proxy_pass http://$upstream:$review_port;",
        "        proxy_set_header Host $host;",
        "        proxy_set_header X-Forwarded-Proto https;",
        "        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "        proxy_http_version 1.1;",
        "        proxy_set_header Upgrade $http_upgrade;",
        '        proxy_set_header Connection "upgrade";',
        "        proxy_read_timeout 120s;",
        '        proxy_set_header X-Revieee-Token "";',
        "        # no answer from the environment: revieee says why, and wakes it if asleep",
        "        error_page 502 503 504 = @visit;",
        "    }",
        "    location @visit {",
        f"        set $revieee_visit {_quote(visit)};",
        "        proxy_pass $revieee_visit;",
        *to_revieee,
        "    }",
        "    location = /_revieee_access {",
        "        internal;",
        '        if ($review_access = "public") { return 204; }',
        f"        set $revieee_auth {_quote(base + AUTH_PATH)};",
        "        proxy_pass $revieee_auth;",
        *to_revieee,
        "        proxy_set_header X-Revieee-Token $http_x_revieee_token;",
        f"        proxy_set_header X-Revieee-Cookie $cookie_{NAME};",
        "        proxy_cache revieee_access;",
        f'        proxy_cache_key "$review_env|$cookie_{NAME}|$http_x_revieee_token";',
        "        proxy_cache_valid 204 30s;",
        "        proxy_cache_valid 401 5s;",
        "    }",
        "    location @token {",
        f"        set $revieee_token {_quote(base + TOKEN_PATH)};",
        "        proxy_pass $revieee_token;",
        *to_revieee,
        "        proxy_set_header X-Revieee-Uri $request_uri;",
        "    }",
        "    location @denied {",
        f"        set $revieee_denied {_quote(base + DENIED_PATH)};",
        "        proxy_pass $revieee_denied;",
        *to_revieee,
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"

"""Configuration in layers: built-in defaults < ``revieee.toml`` < ``REVIEEE_*`` variables.

Secrets (Slack and GitHub tokens, the webhook secret) are never read from the file: see
:class:`Secrets`. AWS credentials and region come from boto3's standard chain, and
``AWS_ENDPOINT_URL`` is honoured by boto3 itself.

Every problem stops start-up with one :class:`ConfigError` naming the key and showing an example.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import shlex
import tomllib
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot import fargate
from bot.naming import APP_NAME_RE
from bot.text import parse_duration, span

ENV_PREFIX = "REVIEEE_"
SECRET_VARIABLES = (
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_APP_TOKEN",
    "GITHUB_TOKEN",
    "GITHUB_WEBHOOK_SECRET",
    "GITHUB_APP_PRIVATE_KEY",
    "GITHUB_APP_ID",  # not a secret, but a credential: from the environment, like the key
    "REVIEEE_PROXY_SECRET",  # the reverse proxy's, for wake on visit (bot/visit.py)
)
CAPACITY_PROVIDERS = ("FARGATE_SPOT", "FARGATE")
CAPACITY_MAX_WEIGHT = 1000
CAPACITY_MAX_BASE = 100_000
PLACEHOLDER_RE = re.compile(r"\{([a-z0-9_]+)\}")
IMAGE_PLACEHOLDERS = {"branch", "sha", "sha7", "env", "app", "service"}
DATABASE_NAME_PLACEHOLDERS = {"env", "app"}
DATABASE_URL_PLACEHOLDERS = {"name", "env", "app"}
TASK_MOMENTS = ("on_create", "release", "on_stop")
# Keys of per-environment settings that name a secret: refused (a secret belongs in Secrets
# Manager or SSM, named by the template task definition's ``secrets``), matched case-blind.
SECRET_KEYS = (
    "*SECRET*",
    "*TOKEN*",
    "*PASSWORD*",
    "*PASSWD*",
    "*PRIVATE*",
    "*CREDENTIAL*",
    "*_KEY",
    "*APIKEY*",
)
URL_PLACEHOLDERS = {"env", "domain", "app", "branch"}
ACCESS_MODES = ("public", "sso", "token")


def render(template: str, **values: str) -> str:
    """Fill ``{name}`` placeholders (validated at start, so every name is known)."""
    return PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], template)


class ConfigError(Exception):
    """A configuration problem: names the key and shows an example."""

    def __init__(self, key: str, problem: str, example: str) -> None:
        self.key = key
        super().__init__(f"config error: {key}: {problem}\n  example: {example}")


@dataclass(frozen=True)
class CapacityProvider:
    provider: str
    weight: int = 1
    base: int = 0

    def to_aws(self) -> dict[str, Any]:
        return {"capacityProvider": self.provider, "weight": self.weight, "base": self.base}


@dataclass(frozen=True)
class ServiceConfig:
    """One container service of an app: where its image comes from and how it runs."""

    name: str
    repository: str
    task_definition: str
    container: str
    port: int
    ecr_repository: str | None = None
    tag: str = "{branch}-{sha7}"
    image: str | None = None
    default_branch: str = "main"
    cpu: int | None = None
    memory: int | None = None
    public: bool = False
    environment: Mapping[str, str] = field(default_factory=dict)
    image_source: str = "existing"  # existing | wait | codebuild
    codebuild_project: str | None = None
    wait_timeout: float = 1800.0
    build_timeout: float = 3600.0
    delete_images: bool | None = None  # None: delete what revieee built (codebuild)
    wait_workflow: str | None = None  # wait: the CI workflow that pushes the image (None: any)

    @property
    def deletes_images(self) -> bool:
        """Whether images built for an environment are deleted when it stops."""
        if self.delete_images is None:
            return self.image_source == "codebuild"
        return self.delete_images and self.image_source == "codebuild"

    @property
    def needs_sha(self) -> bool:
        template = self.image if self.image else self.tag
        return bool({"sha", "sha7"} & set(PLACEHOLDER_RE.findall(template)))


@dataclass(frozen=True)
class TaskConfig:
    """A one-off task run at a moment of an environment's life (``when``): ``on_create`` (its
    first deploy), ``release`` (every deploy, before the new revision takes traffic) or
    ``on_stop`` (before its services are deleted). It runs ``command`` in ``container`` of the
    environment's own task definition of ``service``."""

    name: str
    when: str
    service: str
    command: tuple[str, ...]
    container: str | None = None  # default: the service's container
    timeout: float = 600.0

    @property
    def label(self) -> str:
        """``release task migrate``, ``on stop task drop-db``: the task in steps and messages."""
        return f"{self.when.replace('_', ' ')} task {self.name}"


@dataclass(frozen=True)
class DatabaseConfig:
    """A database per environment on a shared server: its name (``REVIEEE_DATABASE_NAME``),
    the ``DATABASE_URL`` every service gets, and where its seed data comes from."""

    name: str = "{env}"
    url: str | None = None
    seed: str | None = None


@dataclass(frozen=True)
class AppConfig:
    """What one environment runs: one or more services, possibly from several repositories."""

    name: str
    services: tuple[ServiceConfig, ...]
    channel: str | None = None
    deployers: tuple[str, ...] = ()
    stoppers: tuple[str, ...] = ()
    admins: tuple[str, ...] = ()
    anyone_can_stop: bool = False
    pull_requests: str = "label"  # which pull requests deploy by themselves: all, label, off
    label: str = "revieee"
    deploy_drafts: bool = False
    stop_after_close: float = 0.0  # seconds between a PR's close and its environment's stop
    tasks: tuple[TaskConfig, ...] = ()
    database: DatabaseConfig | None = None
    max_environments: int = 0  # environments the app may have at once (0: no limit)
    max_environments_per_person: int = 0  # ... of one person (0: no limit)
    # who may open its environments' URLs: anyone, people signed in at the load balancer
    # (sso), holders of the environment's secret link or the bypass header (token)
    access: str = "public"

    def tasks_at(self, when: str) -> tuple[TaskConfig, ...]:
        """The lifecycle tasks of moment ``when``, in the configuration's order."""
        return tuple(t for t in self.tasks if t.when == when)

    @property
    def repositories(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.repository for s in self.services))

    @property
    def public_service(self) -> ServiceConfig:
        return next((s for s in self.services if s.public), self.services[0])

    def service(self, name: str) -> ServiceConfig:
        return next(s for s in self.services if s.name == name)


@dataclass(frozen=True)
class Settings:
    """Global settings plus the apps. Built by :func:`load_settings`."""

    apps: Mapping[str, AppConfig]
    cluster: str
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    namespace: str
    domain: str
    assign_public_ip: bool = False
    url_template: str = "https://{env}.{domain}"
    oauth_callback_url: str = ""  # the OAuth broker's (bot/broker.py); "": auth.<domain>
    capacity_provider_strategy: tuple[CapacityProvider, ...] = (CapacityProvider("FARGATE_SPOT"),)
    default_app: str | None = None
    default_channel: str | None = None
    deploy_timeout: float = 600.0
    poll_interval: float = 5.0
    drain_timeout: float = 900.0
    # GitHub: "wait at least one second between each" POST, PATCH, PUT or DELETE (REST API best
    # practices, secondary rate limits); reads are paced at a quarter of it (PyGithub's default)
    github_write_interval: float = 1.0
    workers: int = 4
    max_attempts: int = 3
    database: str = "revieee.db"
    aws_retry_mode: str = "adaptive"
    aws_max_attempts: int = 8
    ecs_writes_per_second: int = 5  # revieee's pace of ECS writes (UpdateService, ...)
    fargate_vcpu_quota: int = 0  # vCPUs the account may run on Fargate; 0: ask Service Quotas
    cloud_map_instances: int = 2000  # instances a Cloud Map namespace may hold
    worker_process: bool = True  # serve runs the operations in a child process of its own
    desired_count: int = 1
    log_level: str = "info"
    log_format: str = "text"  # text | json (one object per line)
    stop_reactions: tuple[str, ...] = ("octagonal_sign",)
    admins: tuple[str, ...] = ()
    log_post_interval: float = 2.0
    build_log_lines: int = 200
    gc_untagged_images: bool = False
    # lifecycle (bot/lifecycle.py, bot/jobs.py)
    timezone: str = "UTC"
    work_days: tuple[int, ...] = (0, 1, 2, 3, 4)  # Monday = 0
    work_hours: tuple[int, int] = (9 * 60, 18 * 60)  # minutes after local midnight: start, end
    reminder_time: int = 10 * 60  # minutes after local midnight, on work days
    forgotten_after: float = 3 * 86400.0  # idle seconds before an environment is reminded
    ttl: float = 4 * 86400.0  # idle seconds before an environment expires
    reminder_grace: float = 86400.0  # an expired environment stops this long after a reminder
    keep_for: float = 3 * 86400.0  # what Keep and a bare `keep ENV` add
    pin_requires_admin: bool = True  # `keep ENV forever` needs an admin (when admins are set)
    sleep: bool = False  # scale environments to zero outside work hours
    summary_day: int = 0  # the weekly cost summary's day (Monday), at reminder_time
    admin_channel: str | None = None  # orphans and the weekly summary
    sweep_interval: float = 900.0
    sweep_delete: bool = False  # delete orphans at once instead of asking
    prices: Mapping[str, float] = field(default_factory=dict)  # overrides of the price list
    secret_keys: tuple[str, ...] = SECRET_KEYS  # settings keys refused as secrets (globs)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def app(self, name: str | None) -> AppConfig:
        """The named app, or the default one; KeyError with the known names otherwise."""
        chosen = (
            name or self.default_app or (next(iter(self.apps)) if len(self.apps) == 1 else None)
        )
        if chosen is None:
            raise KeyError(f"several apps are configured, name one with --app ({self.app_names})")
        if chosen not in self.apps:
            raise KeyError(f"unknown app {chosen!r} (known: {self.app_names})")
        return self.apps[chosen]

    @property
    def app_names(self) -> str:
        return ", ".join(sorted(self.apps))

    @property
    def oauth_callback(self) -> str:
        """The one redirect URI registered with OAuth providers (the broker's)."""
        return self.oauth_callback_url or f"https://auth.{self.domain}/callback"

    def url_for(self, app: str, env: str, branch: str) -> str:
        return render(self.url_template, env=env, domain=self.domain, app=app, branch=branch)


@dataclass(frozen=True)
class Secrets:
    """Secrets, read only from the environment and never logged (``repr`` hides them)."""

    values: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Secrets:
        env = os.environ if environ is None else environ
        return cls({k: env[k] for k in SECRET_VARIABLES if env.get(k)})

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def require(self, name: str) -> str:
        value = self.values.get(name)
        if not value:
            raise ConfigError(
                name, "is not set (secrets come only from the environment)", f"export {name}=..."
            )
        return value


# --- the schema -------------------------------------------------------------------------------

Parser = Callable[[str, Any], Any]


def _str(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, f"must be a non-empty string (got {value!r})", f'{key} = "..."')
    return value.strip()


def _int(lo: int, hi: int) -> Parser:
    def parse(key: str, value: Any) -> int:
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ConfigError(
                key,
                f"must be a whole number from {lo} to {hi} (got {value!r})",
                f"{key} = {lo if lo > 0 else hi}",
            )
        return value

    return parse


def _seconds(key: str, value: Any) -> float:
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 86400:
        raise ConfigError(
            key, f"must be a number of seconds above 0 (got {value!r})", f"{key} = 600"
        )
    return float(value)


def _pause(key: str, value: Any) -> float:
    """Seconds between two calls: 0 (no pause) up to a minute."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 60:
        raise ConfigError(key, f"must be 0 to 60 seconds (got {value!r})", f"{key} = 1")
    return float(value)


def _as_seconds(value: Any) -> float | None:
    """A number of seconds, or a string like ``"90s"``, ``"30m"``, ``"2h"``, ``"1d"``; None for
    anything else."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return parse_duration(value)
    return None


def _delay(key: str, value: Any) -> float:
    """Zero to seven days (see :func:`_as_seconds`)."""
    seconds = _as_seconds(value)
    if seconds is None or not 0 <= seconds <= 7 * 86400:
        raise ConfigError(
            key, f"must be a delay from 0 to 7d (got {value!r})", f'{key.split(".")[-1]} = "2h"'
        )
    return seconds


def _duration(low: float, high: float, example: str) -> Parser:
    """A duration such as ``"3d"``, ``"12h"``, ``"90m"`` (or seconds) from ``low`` to ``high``."""

    def parse(key: str, value: Any) -> float:
        seconds = _as_seconds(value)
        if seconds is None or not low <= seconds <= high:
            raise ConfigError(
                key,
                f"must be a duration from {span(low)} to {span(high)}, like "
                f"{example.split('=')[-1].strip()} (got {value!r})",
                example,
            )
        return seconds

    return parse


DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _days(key: str, value: Any) -> tuple[int, ...]:
    """``"mon-fri"``, ``"mon,wed,fri"`` or a list of day names -> weekday numbers (Monday 0)."""
    example = f'{key} = "mon-fri"   # or ["mon", "tue", "thu"]'
    parts = value if isinstance(value, list) else str(value).split(",")
    days: set[int] = set()
    for part in parts:
        text = str(part).strip().lower()[:7]
        first, dash, last = text.partition("-")
        names = [n[:3] for n in ((first, last) if dash else (first,))]
        if not all(n in DAY_NAMES for n in names) or not text:
            raise ConfigError(key, f"{part!r} is not a day (mon ... sun) or range", example)
        a, b = DAY_NAMES.index(names[0]), DAY_NAMES.index(names[-1])
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    if not days:
        raise ConfigError(key, "needs at least one day", example)
    return tuple(sorted(days))


def _day(key: str, value: Any) -> int:
    days = _days(key, value)
    if len(days) != 1:
        raise ConfigError(key, f"must be one day (got {value!r})", f'{key} = "mon"')
    return days[0]


def _clock_minutes(key: str, text: str, example: str) -> int:
    match = re.fullmatch(r"([01]?[0-9]|2[0-3]):([0-5][0-9])", text.strip())
    if not match:
        raise ConfigError(key, f"{text!r} is not a time of day like 09:30 (24-hour)", example)
    return int(match.group(1)) * 60 + int(match.group(2))


def _time_of_day(key: str, value: Any) -> int:
    return _clock_minutes(key, str(value), f'{key} = "10:00"')


def _hours_range(key: str, value: Any) -> tuple[int, int]:
    example = f'{key} = "09:00-18:00"'
    start, dash, end = str(value).partition("-")
    if not dash:
        raise ConfigError(key, f"must be START-END (got {value!r})", example)
    first, last = _clock_minutes(key, start, example), _clock_minutes(key, end, example)
    if first >= last:
        raise ConfigError(key, f"must start before it ends (got {value!r})", example)
    return first, last


def _timezone(key: str, value: Any) -> str:
    name = _str(key, value)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            key, f"{name!r} is not an IANA time zone", f'{key} = "Europe/Berlin"'
        ) from None
    return name


PRICE_KEYS = (
    "fargate_vcpu_hour",
    "fargate_gb_hour",
    "fargate_spot_vcpu_hour",
    "fargate_spot_gb_hour",
)


def _prices(key: str, value: Any) -> dict[str, float]:
    example = f"[{key}]\nfargate_vcpu_hour = 0.04048\nfargate_gb_hour = 0.004445"
    if not isinstance(value, dict):
        raise ConfigError(key, "must be a table of prices in USD", example)
    out = {}
    for name, price in value.items():
        if name not in PRICE_KEYS:
            raise ConfigError(
                f"{key}.{name}", f"unknown price (known: {', '.join(PRICE_KEYS)})", example
            )
        if isinstance(price, bool) or not isinstance(price, int | float) or not 0 <= price < 100:
            raise ConfigError(f"{key}.{name}", f"must be a price in USD (got {price!r})", example)
        out[name] = float(price)
    return out


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "0", "no", "off"):
        return False
    if not isinstance(value, bool):
        raise ConfigError(key, f"must be true or false (got {value!r})", f"{key} = true")
    return value


def _id_list(prefix: str) -> Parser:
    def parse(key: str, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        example = f'{key} = ["{prefix}0123456789abcdef0"]'
        if not isinstance(value, list) or not value:
            raise ConfigError(key, f"must be a non-empty list (got {value!r})", example)
        for item in value:
            if not isinstance(item, str) or not item.startswith(prefix):
                raise ConfigError(
                    key, f"every item must be an id starting {prefix!r} (got {item!r})", example
                )
        return tuple(value)

    return parse


def _template(allowed: set[str], example: str) -> Parser:
    def parse(key: str, value: Any) -> str:
        text = _str(key, value)
        unknown = set(PLACEHOLDER_RE.findall(text)) - allowed
        if unknown:
            raise ConfigError(
                key,
                f"unknown placeholder {{{sorted(unknown)[0]}}} "
                f"(allowed: {', '.join(sorted(allowed))})",
                example,
            )
        if "{" in PLACEHOLDER_RE.sub("", text) or "}" in PLACEHOLDER_RE.sub("", text):
            raise ConfigError(
                key,
                f"stray brace in {text!r}: placeholders are {{name}} with name one of "
                f"{', '.join(sorted(allowed))}",
                example,
            )
        return text

    return parse


def _people(key: str, value: Any) -> tuple[str, ...]:
    """Slack user ids (U..., W...), user-group ids (S...) and GitHub logins (github:LOGIN)."""
    example = f'{key} = ["U012AB3CD", "S0614TZR7", "github:octocat"]   # users, groups, logins'
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list):
        raise ConfigError(
            key, f"must be a list of Slack user or user-group ids (got {value!r})", example
        )
    for item in value:
        slack = isinstance(item, str) and re.fullmatch(r"[UWS][A-Z0-9]{2,}", item)
        # GitHub logins: alphanumerics and single hyphens, at most 39 characters
        login = isinstance(item, str) and re.fullmatch(
            r"github:[A-Za-z0-9](?:-?[A-Za-z0-9]){0,38}", item
        )
        if not (slack or login):
            raise ConfigError(
                key,
                f"{item!r} is not a Slack user id (U..., W...), a user-group id (S...) or a "
                "GitHub login (github:LOGIN); find Slack ids in a profile's or group's menu",
                example,
            )
    return tuple(value)


def _emoji_list(key: str, value: Any) -> tuple[str, ...]:
    example = f'{key} = ["octagonal_sign", "no_entry"]'
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not value:
        raise ConfigError(key, f"must be a non-empty list of emoji names (got {value!r})", example)
    names = []
    for item in value:
        name = item.strip(":") if isinstance(item, str) else item
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_+'-]+", name):
            raise ConfigError(key, f"{item!r} is not an emoji name", example)
        names.append(name)
    return tuple(names)


def _capacity(key: str, value: Any) -> tuple[CapacityProvider, ...]:
    example = f'{key} = "FARGATE_SPOT"   # or "FARGATE", or "FARGATE_SPOT:3,FARGATE:1:1"'
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, f"must be a string (got {value!r})", example)
    providers = []
    for part in value.split(","):
        bits = part.strip().split(":")
        if (
            bits[0] not in CAPACITY_PROVIDERS
            or len(bits) > 3
            or not all(re.fullmatch(r"[0-9]{1,7}", b) for b in bits[1:])
        ):
            raise ConfigError(
                key,
                f"{part.strip()!r} is not PROVIDER[:WEIGHT[:BASE]] with "
                f"PROVIDER one of {', '.join(CAPACITY_PROVIDERS)}",
                example,
            )
        weight = int(bits[1]) if len(bits) > 1 else 1
        base = int(bits[2]) if len(bits) > 2 else 0
        # ECS API reference, CapacityProviderStrategyItem: weight 0 to 1000, base 0 to 100,000,
        # "only one capacity provider in a capacity provider strategy can have a base defined",
        # and a strategy whose weights are all 0 fails RunTask and CreateService.
        if weight > CAPACITY_MAX_WEIGHT:
            raise ConfigError(
                key,
                f"{part.strip()!r}: a weight is 0 to {CAPACITY_MAX_WEIGHT} (got {weight})",
                example,
            )
        if base > CAPACITY_MAX_BASE:
            raise ConfigError(
                key, f"{part.strip()!r}: a base is 0 to {CAPACITY_MAX_BASE} (got {base})", example
            )
        providers.append(CapacityProvider(bits[0], weight, base))
    with_base = [f"{p.provider}:{p.weight}:{p.base}" for p in providers if p.base > 0]
    if len(with_base) > 1:
        raise ConfigError(
            key,
            f"only one capacity provider in a strategy may have a base above 0 "
            f"(got {' and '.join(with_base)})",
            example,
        )
    if not any(p.weight > 0 for p in providers):
        raise ConfigError(
            key,
            f"at least one capacity provider needs a weight above 0 (got {value.strip()!r}): "
            "ECS places no task with a strategy whose weights are all 0",
            example,
        )
    return tuple(providers)


def _https_url(key: str, value: Any) -> str:
    parts = urllib.parse.urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme != "https" or not parts.hostname or parts.query:
        raise ConfigError(
            key,
            f"must be an https:// URL without a query (got {value!r})",
            f'{key} = "https://auth.review.example.com/callback"',
        )
    return str(value)


def _choice(*choices: str) -> Parser:
    def parse(key: str, value: Any) -> str:
        if value not in choices:
            raise ConfigError(
                key,
                f"must be one of {', '.join(choices)} (got {value!r})",
                f'{key} = "{choices[0]}"',
            )
        return str(value)

    return parse


# key -> (parser, required, example shown when missing)
GLOBAL_KEYS: dict[str, tuple[Parser, bool, str]] = {
    "cluster": (_str, True, 'cluster = "review-apps"'),
    "subnets": (_id_list("subnet-"), True, 'subnets = ["subnet-0123456789abcdef0"]'),
    "security_groups": (_id_list("sg-"), True, 'security_groups = ["sg-0123456789abcdef0"]'),
    "namespace": (_str, True, 'namespace = "review.internal"   # Cloud Map namespace name or id'),
    "domain": (_str, True, 'domain = "review.example.com"'),
    "assign_public_ip": (_bool, False, "assign_public_ip = false"),
    "url_template": (
        _template(URL_PLACEHOLDERS, 'url_template = "https://{env}.{domain}"'),
        False,
        'url_template = "https://{env}.{domain}"',
    ),
    "oauth_callback_url": (
        _https_url,
        False,
        'oauth_callback_url = "https://auth.review.example.com/callback"',
    ),
    "capacity_provider_strategy": (_capacity, False, 'capacity_provider_strategy = "FARGATE_SPOT"'),
    "default_app": (_str, False, 'default_app = "web"'),
    "default_channel": (_str, False, 'default_channel = "#review-apps"'),
    "deploy_timeout": (_seconds, False, "deploy_timeout = 600"),
    "poll_interval": (_seconds, False, "poll_interval = 5"),
    "drain_timeout": (_seconds, False, "drain_timeout = 900"),
    "github_write_interval": (_pause, False, "github_write_interval = 1"),
    "workers": (_int(1, 64), False, "workers = 4"),
    "max_attempts": (_int(1, 20), False, "max_attempts = 3"),
    "database": (_str, False, 'database = "revieee.db"'),
    "aws_retry_mode": (
        _choice("adaptive", "standard", "legacy"),
        False,
        'aws_retry_mode = "adaptive"',
    ),
    "aws_max_attempts": (_int(1, 20), False, "aws_max_attempts = 8"),
    "ecs_writes_per_second": (_int(1, 100), False, "ecs_writes_per_second = 5"),
    "fargate_vcpu_quota": (_int(0, 1_000_000), False, "fargate_vcpu_quota = 256"),
    "cloud_map_instances": (_int(1, 1_000_000), False, "cloud_map_instances = 2000"),
    "worker_process": (_bool, False, "worker_process = true"),
    "desired_count": (_int(1, 10), False, "desired_count = 1"),
    "log_level": (_choice("info", "debug", "warning", "error"), False, 'log_level = "info"'),
    "log_format": (_choice("text", "json"), False, 'log_format = "json"'),
    "stop_reactions": (_emoji_list, False, 'stop_reactions = ["octagonal_sign"]'),
    "admins": (_people, False, 'admins = ["U012AB3CD"]'),
    "log_post_interval": (_seconds, False, "log_post_interval = 2"),
    "build_log_lines": (_int(0, 5000), False, "build_log_lines = 200"),
    "gc_untagged_images": (_bool, False, "gc_untagged_images = true"),
    "timezone": (_timezone, False, 'timezone = "Europe/Berlin"'),
    "work_days": (_days, False, 'work_days = "mon-fri"'),
    "work_hours": (_hours_range, False, 'work_hours = "09:00-18:00"'),
    "reminder_time": (_time_of_day, False, 'reminder_time = "10:00"'),
    "forgotten_after": (_duration(3600, 90 * 86400, 'forgotten_after = "3d"'), False, ""),
    "ttl": (_duration(3600, 365 * 86400, 'ttl = "4d"'), False, ""),
    "reminder_grace": (_duration(0, 30 * 86400, 'reminder_grace = "1d"'), False, ""),
    "keep_for": (_duration(3600, 90 * 86400, 'keep_for = "3d"'), False, ""),
    "pin_requires_admin": (_bool, False, "pin_requires_admin = true"),
    "sleep": (_bool, False, "sleep = true   # scale to zero outside work_hours"),
    "summary_day": (_day, False, 'summary_day = "mon"'),
    "admin_channel": (_str, False, 'admin_channel = "#revieee-admin"'),
    "sweep_interval": (_duration(60, 86400, 'sweep_interval = "15m"'), False, ""),
    "sweep_delete": (_bool, False, "sweep_delete = false"),
    "prices": (_prices, False, "[prices]\nfargate_vcpu_hour = 0.04048"),
    "secret_keys": (lambda k, v: _globs(k, v), False, 'secret_keys = ["*SECRET*", "*TOKEN*"]'),
}
APP_KEYS: dict[str, tuple[Parser, bool, str]] = {
    "channel": (_str, False, 'channel = "#shop-reviews"'),
    "deployers": (_people, False, 'deployers = ["S0614TZR7"]   # empty: anyone'),
    "stoppers": (_people, False, 'stoppers = ["U012AB3CD"]'),
    "admins": (_people, False, 'admins = ["U012AB3CD"]'),
    "anyone_can_stop": (_bool, False, "anyone_can_stop = false"),
    "pull_requests": (
        _choice("all", "label", "off"),
        False,
        'pull_requests = "label"   # all | label | off',
    ),
    "label": (_str, False, 'label = "revieee"'),
    "deploy_drafts": (_bool, False, "deploy_drafts = false"),
    "stop_after_close": (lambda k, v: _delay(k, v), False, 'stop_after_close = "2h"'),
    "max_environments": (_int(0, 100_000), False, "max_environments = 20   # 0: no limit"),
    "max_environments_per_person": (
        _int(0, 10_000),
        False,
        "max_environments_per_person = 3   # 0: no limit",
    ),
    "access": (
        _choice(*ACCESS_MODES),
        False,
        'access = "token"   # public | sso | token',
    ),
}
SERVICE_KEYS: dict[str, tuple[Parser, bool, str]] = {
    "repository": (_str, True, 'repository = "acme/shop-web"'),
    "task_definition": (_str, True, 'task_definition = "shop-web"   # template family'),
    "container": (_str, True, 'container = "web"'),
    "port": (_int(1, 65535), True, "port = 8080"),
    "ecr_repository": (_str, False, 'ecr_repository = "shop-web"'),
    "tag": (
        _template(IMAGE_PLACEHOLDERS, 'tag = "{branch}-{sha7}"'),
        False,
        'tag = "{branch}-{sha7}"',
    ),
    "image": (
        _template(IMAGE_PLACEHOLDERS, 'image = "ghcr.io/acme/web:{branch}"'),
        False,
        'image = "ghcr.io/acme/web:{branch}"',
    ),
    "default_branch": (_str, False, 'default_branch = "main"'),
    "cpu": (lambda k, v: _task_cpu(k, v), False, "cpu = 256"),
    "memory": (lambda k, v: _task_memory(k, v), False, "memory = 512"),
    "public": (_bool, False, "public = true"),
    "environment": (lambda k, v: _env_table(k, v), False, 'environment = { LOG_LEVEL = "debug" }'),
    "image_source": (
        _choice("existing", "wait", "codebuild"),
        False,
        'image_source = "codebuild"   # existing | wait | codebuild',
    ),
    "codebuild_project": (_str, False, 'codebuild_project = "shop-web-images"'),
    "wait_timeout": (lambda k, v: _positive_delay(k, v), False, 'wait_timeout = "30m"'),
    "build_timeout": (lambda k, v: _positive_delay(k, v), False, 'build_timeout = "1h"'),
    "delete_images": (_bool, False, "delete_images = true"),
    "wait_workflow": (_str, False, 'wait_workflow = "Build image"'),
}


def _whole_number(value: Any) -> int | None:
    if isinstance(value, str) and re.fullmatch(r"[0-9]+", value.strip()):
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _task_cpu(key: str, value: Any) -> int:
    """CPU units, one of the Fargate values (bot/fargate.py cites the table)."""
    cpu = _whole_number(value)
    if cpu is None or cpu not in fargate.CPU_CHOICES:
        raise ConfigError(
            key,
            f"must be a Fargate CPU value in CPU units: {fargate.or_list(fargate.CPU_CHOICES)} "
            f"(got {value!r})",
            "cpu = 512   # .5 vCPU; 1024 is 1 vCPU",
        )
    return cpu


def _task_memory(key: str, value: Any) -> int:
    """MiB that at least one Fargate cpu value takes (bot/fargate.py cites the table)."""
    memory = _whole_number(value)
    if memory is None:
        raise ConfigError(
            key, f"must be a whole number of MiB (got {value!r})", "memory = 2048   # 2 GB"
        )
    if memory not in fargate.MEMORY_CHOICES:
        below = [m for m in fargate.MEMORY_CHOICES if m < memory]
        above = [m for m in fargate.MEMORY_CHOICES if m > memory]
        nearest = below[-1:] + above[:1]
        raise ConfigError(
            key,
            f"no Fargate CPU value takes {memory} MiB of memory (the nearest Fargate sizes: "
            f"{' and '.join(str(m) for m in nearest)} MiB)",
            f"memory = {min(nearest, key=lambda m: abs(m - memory))}",
        )
    return memory


def _check_task_size(where: str, cpu: int | None, memory: int | None) -> None:
    """A service's cpu and memory, when both are set, must be a pair Fargate runs."""
    if cpu is None or memory is None:
        return  # the other value comes from the template; the engine checks the pair
    problem = fargate.check_pair(cpu, memory)
    if problem is None:
        return
    nearest = min(fargate.memory_choices(cpu), key=lambda m: (abs(m - memory), m))
    fits = fargate.cpu_choices(memory)
    raise ConfigError(
        f"{where}cpu",
        f"{problem}; memory = {memory} needs cpu = {fargate.or_list(fits)}",
        f"cpu = {cpu}\nmemory = {nearest}   # or cpu = {fits[0]} to keep memory = {memory}",
    )


def _positive_delay(key: str, value: Any) -> float:
    seconds = _delay(key, value)
    if seconds < 1 or seconds > 8 * 3600:
        raise ConfigError(
            key, f"must be from 1s to 8h (got {value!r})", f'{key.split(".")[-1]} = "30m"'
        )
    return seconds


def _env_table(key: str, value: Any) -> dict[str, str]:
    example = 'environment = { LOG_LEVEL = "debug" }'
    if not isinstance(value, dict):
        raise ConfigError(key, f"must be a table of NAME = value (got {value!r})", example)
    out = {}
    for name, val in value.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ConfigError(f"{key}.{name}", "is not a valid environment variable name", example)
        if isinstance(val, bool) or not isinstance(val, str | int | float):
            raise ConfigError(f"{key}.{name}", f"must be a string or number (got {val!r})", example)
        out[name] = str(val)
    return out


def _globs(key: str, value: Any) -> tuple[str, ...]:
    example = f'{key} = ["*SECRET*", "*TOKEN*", "*PASSWORD*"]'
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(
        isinstance(v, str) and re.fullmatch(r"[A-Za-z0-9_*?]+", v) for v in value
    ):
        raise ConfigError(
            key,
            f"must be a list of patterns of letters, digits, _ * and ? (got {value!r})",
            example,
        )
    return tuple(v.upper() for v in value)


def _command(key: str, value: Any) -> tuple[str, ...]:
    """A command as ECS takes it (a list of words), or a string split as a shell would."""
    example = 'command = ["bin/rails", "db:migrate"]'
    if isinstance(value, str):
        try:
            value = shlex.split(value)
        except ValueError as exc:
            raise ConfigError(key, f"cannot be split into words: {exc}", example) from None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(key, f"must be a non-empty list of words (got {value!r})", example)
    return tuple(value)


TASK_KEYS: dict[str, tuple[Parser, bool, str]] = {
    "when": (
        _choice(*TASK_MOMENTS),
        True,
        'when = "release"   # on_create | release | on_stop',
    ),
    "service": (_str, False, 'service = "web"   # whose task definition it runs'),
    "command": (_command, True, 'command = ["bin/rails", "db:migrate"]'),
    "container": (_str, False, 'container = "web"'),
    "timeout": (lambda k, v: _positive_delay(k, v), False, 'timeout = "10m"'),
}
DATABASE_KEYS: dict[str, tuple[Parser, bool, str]] = {
    "name": (
        _template(DATABASE_NAME_PLACEHOLDERS, 'name = "{env}"'),
        False,
        'name = "{env}"   # shop-feature-x -> shop_feature_x',
    ),
    "url": (
        _template(DATABASE_URL_PLACEHOLDERS, 'url = "postgres://review@db.internal:5432/{name}"'),
        False,
        'url = "postgres://review@db.internal:5432/{name}"',
    ),
    "seed": (_str, False, 'seed = "s3://acme-review-seeds/shop/sanitised.sql.gz"'),
}
# a URL's user:password@ (RFC 3986 userinfo with a password)
PASSWORD_IN_URL_RE = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@:\s]*:[^/@\s]*@", re.IGNORECASE)


def _parse_tasks(
    app: str, table: Any, services: tuple[ServiceConfig, ...]
) -> tuple[TaskConfig, ...]:
    example = (
        f'[apps.{app}.tasks.migrate]\nwhen = "release"\nservice = "web"\n'
        'command = ["bin/rails", "db:migrate"]'
    )
    if not isinstance(table, dict):
        raise ConfigError(f"apps.{app}.tasks", "must be a table of named tasks", example)
    out = []
    for name, fields in table.items():
        where = f"apps.{app}.tasks.{name}."
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,29}", name):
            raise ConfigError(
                where[:-1], "task names are 1-30 of a-z0-9 and -, starting with a letter", example
            )
        if not isinstance(fields, dict):
            raise ConfigError(where[:-1], "must be a table", example)
        _check_keys(where, fields, TASK_KEYS)
        values = _parse_table(where, fields, TASK_KEYS)
        names = [s.name for s in services]
        service = values.pop("service", None) or next(
            (s.name for s in services if s.public), names[0]
        )
        if service not in names:
            raise ConfigError(
                f"{where}service",
                f"{service!r} is not a service of {app} (its services: {', '.join(names)})",
                f'service = "{names[0]}"',
            )
        out.append(TaskConfig(name=name, service=service, **values))
    return tuple(out)


def _parse_database(app: str, table: Any) -> DatabaseConfig:
    where = f"apps.{app}.database."
    example = f'[apps.{app}.database]\nname = "{{env}}"\nurl = "postgres://review@db:5432/{{name}}"'
    if not isinstance(table, dict):
        raise ConfigError(where[:-1], "must be a table", example)
    _check_keys(where, table, DATABASE_KEYS)
    values = _parse_table(where, table, DATABASE_KEYS)
    url = values.get("url")
    if url and PASSWORD_IN_URL_RE.match(url):
        raise ConfigError(
            f"{where}url",
            "has a password in it: credentials come from Secrets Manager or SSM through the "
            "template task definition's secrets, never from revieee's configuration",
            'url = "postgres://review@db.internal:5432/{name}"   # + a DATABASE_PASSWORD secret',
        )
    return DatabaseConfig(**values)


def _check_keys(where: str, table: Mapping[str, Any], known: Mapping[str, Any]) -> None:
    for key in table:
        if key not in known:
            if key.upper() in SECRET_VARIABLES or "token" in key or "secret" in key:
                raise ConfigError(
                    f"{where}{key}",
                    "secrets are read only from the environment, never from the config file",
                    f"export {key.upper()}=...   # and remove it from revieee.toml",
                )
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{where}{key}",
                f"unknown key{hint}",
                f"known keys here: {', '.join(sorted(known))}",
            )


def _parse_table(
    where: str, table: Mapping[str, Any], schema: Mapping[str, tuple[Parser, bool, str]]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, (parse, required, example) in schema.items():
        if key in table:
            out[key] = parse(f"{where}{key}", table[key])
        elif required:
            raise ConfigError(f"{where}{key}", "is missing", example)
    return out


def _parse_service(app: str, name: str, table: Any) -> ServiceConfig:
    where = f"apps.{app}.services.{name}."
    if not APP_NAME_RE.fullmatch(name):
        raise ConfigError(
            where[:-1],
            "service names are 1-20 of a-z0-9, starting with a letter",
            f"[apps.{app}.services.web]",
        )
    if not isinstance(table, dict):
        raise ConfigError(where[:-1], "must be a table", f"[apps.{app}.services.{name}]")
    _check_keys(where, table, SERVICE_KEYS)
    values = _parse_table(where, table, SERVICE_KEYS)
    _check_task_size(where, values.get("cpu"), values.get("memory"))
    if not values.get("ecr_repository") and not values.get("image"):
        raise ConfigError(
            f"{where}ecr_repository",
            "is missing (or set image)",
            'ecr_repository = "shop-web"   # or image = "ghcr.io/acme/web:{branch}"',
        )
    if values.get("ecr_repository") and values.get("image"):
        raise ConfigError(
            f"{where}image",
            "set either ecr_repository (+ tag) or image, not both",
            'ecr_repository = "shop-web"',
        )
    source = values.get("image_source", "existing")
    if source != "existing" and not values.get("ecr_repository"):
        raise ConfigError(
            f"{where}image_source",
            f"{source!r} needs ecr_repository (revieee looks for the tag there)",
            'ecr_repository = "shop-web"',
        )
    if source == "codebuild" and not values.get("codebuild_project"):
        raise ConfigError(
            f"{where}codebuild_project",
            'is missing: image_source = "codebuild" starts this CodeBuild project',
            'codebuild_project = "shop-web-images"',
        )
    if values.get("codebuild_project") and source != "codebuild":
        raise ConfigError(
            f"{where}codebuild_project",
            f'is only used with image_source = "codebuild" (this service has {source!r})',
            'image_source = "codebuild"',
        )
    return ServiceConfig(name=name, **values)


def _parse_app(name: str, table: Any) -> AppConfig:
    if not APP_NAME_RE.fullmatch(name):
        raise ConfigError(
            f"apps.{name}",
            "app names are 1-20 of a-z0-9, starting with a letter "
            "(they start every environment name)",
            "[apps.shop]",
        )
    if not isinstance(table, dict):
        raise ConfigError(f"apps.{name}", "must be a table", f"[apps.{name}]")
    _check_keys(
        f"apps.{name}.", table, {**APP_KEYS, "services": None, "tasks": None, "database": None}
    )
    services = table.get("services")
    if not isinstance(services, dict) or not services:
        raise ConfigError(
            f"apps.{name}.services",
            "an app needs at least one service",
            f'[apps.{name}.services.web]\nrepository = "acme/web"\n...',
        )
    parsed = tuple(_parse_service(name, sname, stable) for sname, stable in services.items())
    if sum(s.public for s in parsed) > 1:
        raise ConfigError(
            f"apps.{name}.services",
            "at most one service may be public",
            "public = true   # on the service the URL points at",
        )
    tasks = _parse_tasks(name, table["tasks"], parsed) if "tasks" in table else ()
    database = _parse_database(name, table["database"]) if "database" in table else None
    return AppConfig(
        name=name,
        services=parsed,
        tasks=tasks,
        database=database,
        **_parse_table(f"apps.{name}.", table, APP_KEYS),
    )


def _from_environment(environ: Mapping[str, str]) -> dict[str, str]:
    known = {ENV_PREFIX + k.upper(): k for k in GLOBAL_KEYS}
    ignored = {
        "REVIEEE_CONFIG",
        "REVIEEE_CONFIG_TOML",
        "REVIEEE_PORT",
        "REVIEEE_SLACK_API_URL",
        "REVIEEE_GITHUB_API_URL",
        "REVIEEE_WORKER_EVENTS_FD",  # set by serve for its worker process (bot/workerproc.py)
        "REVIEEE_PROXY_SECRET",  # a secret (Secrets), not a setting
    }
    out = {}
    for var, value in environ.items():
        if not var.startswith(ENV_PREFIX) or var in ignored:
            continue
        if var not in known:
            close = difflib.get_close_matches(var, list(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(var, f"unknown variable{hint}", "REVIEEE_CLUSTER=review-apps")
        out[known[var]] = value
    return out


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(
            str(path), "config file not found", "revieee --config deploy/revieee.example.toml check"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}", 'cluster = "review-apps"') from None


def config_path(cli_path: str | None, environ: Mapping[str, str]) -> Path | None:
    """``--config`` wins, then ``REVIEEE_CONFIG``, then ``./revieee.toml`` if present."""
    if cli_path:
        return Path(cli_path)
    if environ.get("REVIEEE_CONFIG"):
        return Path(environ["REVIEEE_CONFIG"])
    default = Path("revieee.toml")
    return default if default.exists() else None


def settings_from_mapping(
    data: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> Settings:
    """Build settings from an already-read TOML table plus ``REVIEEE_*`` overrides."""
    env = os.environ if environ is None else environ
    _check_keys("", data, {**GLOBAL_KEYS, "apps": None})
    merged: dict[str, Any] = {k: v for k, v in data.items() if k != "apps"}
    merged.update(_from_environment(env))
    values = _parse_table("", merged, GLOBAL_KEYS)
    apps_table = data.get("apps")
    if not isinstance(apps_table, dict) or not apps_table:
        raise ConfigError(
            "apps",
            "at least one app must be configured",
            '[apps.web.services.web]\nrepository = "acme/web"\n'
            'task_definition = "web"\ncontainer = "web"\nport = 8080\n'
            'ecr_repository = "web"',
        )
    apps = {name: _parse_app(name, table) for name, table in apps_table.items()}
    if values.get("default_app") and values["default_app"] not in apps:
        raise ConfigError(
            "default_app",
            f"{values['default_app']!r} is not a configured app (known: {', '.join(sorted(apps))})",
            f'default_app = "{next(iter(apps))}"',
        )
    return Settings(apps=apps, **values)


def load_settings(
    cli_path: str | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Load and validate the configuration; raises :class:`ConfigError` on the first problem.

    ``REVIEEE_CONFIG_TOML`` (the file's text, e.g. from an SSM parameter in a container) is
    used when no ``--config`` is given."""
    env = os.environ if environ is None else environ
    if not cli_path and env.get("REVIEEE_CONFIG_TOML"):
        try:
            data = tomllib.loads(env["REVIEEE_CONFIG_TOML"])
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                "REVIEEE_CONFIG_TOML", f"not valid TOML: {exc}", 'cluster = "review-apps"'
            ) from None
        return settings_from_mapping(data, env)
    path = config_path(cli_path, env)
    data = read_toml(path) if path else {}
    return settings_from_mapping(data, env)

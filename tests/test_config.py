"""bot/config.py: layered settings, checked at start, every error naming its key."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from bot.config import (
    APP_KEYS,
    DATABASE_KEYS,
    GLOBAL_KEYS,
    SECRET_VARIABLES,
    SERVICE_KEYS,
    TASK_KEYS,
    CapacityProvider,
    ConfigError,
    Secrets,
    Settings,
    load_settings,
    settings_from_mapping,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "deploy" / "revieee.example.toml"
REVIEEE = Path(sys.executable).parent / "revieee"

MINIMAL_TOML = """\
cluster = "review-apps"
subnets = ["subnet-aaa", "subnet-bbb"]
security_groups = ["sg-aaa"]
namespace = "review.internal"
domain = "review.example.com"

[apps.shop.services.web]
repository = "acme/shop-web"
task_definition = "shop-web"
container = "web"
port = 8080
ecr_repository = "shop-web"
"""


def minimal() -> dict[str, Any]:
    """A fresh copy of the smallest valid configuration, to break one key at a time."""
    return tomllib.loads(MINIMAL_TOML)


def web(data: dict[str, Any]) -> dict[str, Any]:
    return data["apps"]["shop"]["services"]["web"]


def without(path: str) -> dict[str, Any]:
    data = minimal()
    *parents, last = path.split(".")
    table = data
    for part in parents:
        table = table[part]
    del table[last]
    return data


def with_value(path: str, value: Any) -> dict[str, Any]:
    data = minimal()
    *parents, last = path.split(".")
    table = data
    for part in parents:
        table = table.setdefault(part, {})
    table[last] = value
    return data


def two_services(**api: Any) -> dict[str, Any]:
    data = minimal()
    data["apps"]["shop"]["services"]["api"] = {
        "repository": "acme/shop-api",
        "task_definition": "shop-api",
        "container": "api",
        "port": 9000,
        "ecr_repository": "shop-api",
        **api,
    }
    return data


def error_of(data: dict[str, Any], environ: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        settings_from_mapping(data, environ or {})
    return info.value


def assert_names_key(error: ConfigError, key: str, *fragments: str) -> None:
    message = str(error)
    assert error.key == key
    assert message.startswith(f"config error: {key}: "), message
    assert "\n  example: " in message, message
    for fragment in fragments:
        assert fragment in message, message


# --- a valid configuration --------------------------------------------------------------------


def test_minimal_configuration_gets_the_defaults() -> None:
    s = settings_from_mapping(minimal(), {})
    assert s.cluster == "review-apps"
    assert s.subnets == ("subnet-aaa", "subnet-bbb")
    assert s.security_groups == ("sg-aaa",)
    assert s.assign_public_ip is False
    assert s.url_template == "https://{env}.{domain}"
    assert s.capacity_provider_strategy == (CapacityProvider("FARGATE_SPOT", 1, 0),)
    assert s.deploy_timeout == 600.0
    assert s.workers == 4
    assert s.default_app is None
    svc = s.apps["shop"].services[0]
    assert (svc.name, svc.port, svc.tag, svc.image, svc.public) == (
        "web",
        8080,
        "{branch}-{sha7}",
        None,
        False,
    )
    assert svc.default_branch == "main"
    assert dict(svc.environment) == {}


def test_service_values_are_parsed() -> None:
    data = minimal()
    web(data).update(
        {
            "port": "8081",
            "cpu": 256,
            "memory": 512,
            "public": "yes",
            "environment": {"LOG_LEVEL": "debug", "WORKERS": 3, "RATIO": 0.5},
        }
    )
    svc = settings_from_mapping(data, {}).apps["shop"].services[0]
    assert svc.port == 8081
    assert (svc.cpu, svc.memory, svc.public) == (256, 512, True)
    assert dict(svc.environment) == {"LOG_LEVEL": "debug", "WORKERS": "3", "RATIO": "0.5"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("FARGATE", [("FARGATE", 1, 0)]),
        ("FARGATE_SPOT", [("FARGATE_SPOT", 1, 0)]),
        ("FARGATE_SPOT:3,FARGATE:1:1", [("FARGATE_SPOT", 3, 0), ("FARGATE", 1, 1)]),
        (" FARGATE_SPOT:2 , FARGATE ", [("FARGATE_SPOT", 2, 0), ("FARGATE", 1, 0)]),
    ],
)
def test_capacity_provider_strategy(value: str, expected: list[tuple[str, int, int]]) -> None:
    s = settings_from_mapping(with_value("capacity_provider_strategy", value), {})
    assert [(p.provider, p.weight, p.base) for p in s.capacity_provider_strategy] == expected
    assert s.capacity_provider_strategy[-1].to_aws() == {
        "capacityProvider": expected[-1][0],
        "weight": expected[-1][1],
        "base": expected[-1][2],
    }


def test_needs_sha_follows_the_template() -> None:
    data = two_services(tag="{branch}")
    web(data)["tag"] = "{branch}-{sha7}"
    app = settings_from_mapping(data, {}).apps["shop"]
    assert app.service("web").needs_sha is True
    assert app.service("api").needs_sha is False


def test_public_service_is_the_marked_one_or_the_first() -> None:
    assert settings_from_mapping(two_services(), {}).apps["shop"].public_service.name == "web"
    marked = settings_from_mapping(two_services(public=True), {}).apps["shop"]
    assert marked.public_service.name == "api"


# --- every bad input names its key ------------------------------------------------------------

MISSING = [
    ("cluster", "cluster"),
    ("subnets", "subnets"),
    ("security_groups", "security_groups"),
    ("namespace", "namespace"),
    ("domain", "domain"),
    ("apps", "apps"),
    ("apps.shop.services", "apps.shop.services"),
    ("apps.shop.services.web.repository", "apps.shop.services.web.repository"),
    ("apps.shop.services.web.task_definition", "apps.shop.services.web.task_definition"),
    ("apps.shop.services.web.container", "apps.shop.services.web.container"),
    ("apps.shop.services.web.port", "apps.shop.services.web.port"),
    ("apps.shop.services.web.ecr_repository", "apps.shop.services.web.ecr_repository"),
]


@pytest.mark.parametrize(("path", "key"), MISSING)
def test_missing_required_key(path: str, key: str) -> None:
    assert_names_key(error_of(without(path)), key)


def test_missing_key_shows_an_example_of_it() -> None:
    assert_names_key(error_of(without("subnets")), "subnets", "is missing", 'subnets = ["subnet-')
    assert_names_key(
        error_of(without("apps.shop.services.web.port")),
        "apps.shop.services.web.port",
        "is missing",
        "port = 8080",
    )


WRONG = [
    ("cluster", 5, "cluster", "non-empty string"),
    ("cluster", "  ", "cluster", "non-empty string"),
    ("subnets", 5, "subnets", "non-empty list"),
    ("subnets", [], "subnets", "non-empty list"),
    ("subnets", ["sg-aaa"], "subnets", "'subnet-'"),
    ("subnets", ["subnet-aaa", 7], "subnets", "'subnet-'"),
    ("security_groups", ["subnet-aaa"], "security_groups", "'sg-'"),
    ("security_groups", "vpc-1", "security_groups", "'sg-'"),
    ("assign_public_ip", "maybe", "assign_public_ip", "true or false"),
    ("assign_public_ip", 1, "assign_public_ip", "true or false"),
    ("deploy_timeout", 0, "deploy_timeout", "seconds"),
    ("deploy_timeout", -5, "deploy_timeout", "seconds"),
    ("deploy_timeout", "soon", "deploy_timeout", "seconds"),
    ("deploy_timeout", True, "deploy_timeout", "seconds"),
    ("poll_interval", 100_000, "poll_interval", "seconds"),
    ("workers", 0, "workers", "1 to 64"),
    ("workers", 65, "workers", "1 to 64"),
    ("workers", 2.5, "workers", "whole number"),
    ("workers", True, "workers", "whole number"),
    ("max_attempts", "three", "max_attempts", "whole number"),
    ("desired_count", 11, "desired_count", "1 to 10"),
    ("aws_retry_mode", "fast", "aws_retry_mode", "adaptive, standard, legacy"),
    ("log_level", "INFO", "log_level", "info, debug"),
    ("url_template", "https://{env}.{zone}", "url_template", "{zone}"),
    ("default_app", "blog", "default_app", "'blog' is not a configured app"),
    ("apps", "shop", "apps", "at least one app"),
    ("apps", {}, "apps", "at least one app"),
    ("apps.shop", "web", "apps.shop", "must be a table"),
    ("apps.shop.services", {}, "apps.shop.services", "at least one service"),
    ("apps.shop.channel", 12, "apps.shop.channel", "non-empty string"),
    ("apps.shop.services.web", "x", "apps.shop.services.web", "must be a table"),
    ("apps.shop.services.web.port", "eighty", "apps.shop.services.web.port", "whole number"),
    ("apps.shop.services.web.port", 0, "apps.shop.services.web.port", "1 to 65535"),
    ("apps.shop.services.web.port", 70_000, "apps.shop.services.web.port", "1 to 65535"),
    ("apps.shop.services.web.port", True, "apps.shop.services.web.port", "whole number"),
    ("apps.shop.services.web.cpu", 64, "apps.shop.services.web.cpu", "256, 512, 1024"),
    ("apps.shop.services.web.memory", "lots", "apps.shop.services.web.memory", "whole"),
    ("apps.shop.services.web.public", "sure", "apps.shop.services.web.public", "true or false"),
    ("apps.shop.services.web.repository", ["a/b"], "apps.shop.services.web.repository", "string"),
    ("apps.shop.services.web.tag", "{branch}-{commit}", "apps.shop.services.web.tag", "{commit}"),
    (
        "apps.shop.services.web.environment",
        "LOG_LEVEL=debug",
        "apps.shop.services.web.environment",
        "table",
    ),
    (
        "apps.shop.services.web.environment",
        {"1ST": "x"},
        "apps.shop.services.web.environment.1ST",
        "not a valid environment variable name",
    ),
    (
        "apps.shop.services.web.environment",
        {"DEBUG": True},
        "apps.shop.services.web.environment.DEBUG",
        "string or number",
    ),
    (
        "apps.shop.services.web.environment",
        {"HOSTS": ["a", "b"]},
        "apps.shop.services.web.environment.HOSTS",
        "string or number",
    ),
]


@pytest.mark.parametrize(("path", "value", "key", "fragment"), WRONG)
def test_wrong_value(path: str, value: Any, key: str, fragment: str) -> None:
    assert_names_key(error_of(with_value(path, value)), key, fragment)


def test_unknown_image_placeholder_lists_the_allowed_ones() -> None:
    data = minimal()
    del web(data)["ecr_repository"]
    web(data)["image"] = "ghcr.io/acme/web:{branch}-{commit}"
    assert_names_key(
        error_of(data),
        "apps.shop.services.web.image",
        "unknown placeholder {commit}",
        "app, branch, env, service, sha, sha7",
    )


def test_ecr_repository_and_image_together_are_refused() -> None:
    data = minimal()
    web(data)["image"] = "ghcr.io/acme/web:{branch}"
    assert_names_key(error_of(data), "apps.shop.services.web.image", "not both")


def test_image_instead_of_ecr_repository_is_accepted() -> None:
    data = minimal()
    del web(data)["ecr_repository"]
    web(data)["image"] = "ghcr.io/acme/web:{branch}"
    svc = settings_from_mapping(data, {}).apps["shop"].services[0]
    assert (svc.ecr_repository, svc.image) == (None, "ghcr.io/acme/web:{branch}")


def test_two_public_services_are_refused() -> None:
    data = two_services(public=True)
    web(data)["public"] = True
    assert_names_key(error_of(data), "apps.shop.services", "at most one service may be public")


@pytest.mark.parametrize("name", ["my-shop", "Shop", "1shop", "shop_2", "s" * 21])
def test_invalid_app_name(name: str) -> None:
    data = minimal()
    data["apps"] = {name: data["apps"]["shop"]}
    assert_names_key(error_of(data), f"apps.{name}", "app names are 1-20 of a-z0-9")


@pytest.mark.parametrize("name", ["web-1", "Web", "2web", "web_app"])
def test_invalid_service_name(name: str) -> None:
    data = minimal()
    data["apps"]["shop"]["services"] = {name: web(data)}
    assert_names_key(error_of(data), f"apps.shop.services.{name}", "service names are 1-20")


UNKNOWN = [
    ("clustr", "clustr", "did you mean 'cluster'?"),
    ("subnet", "subnet", "did you mean 'subnets'?"),
    ("apps.shop.chanel", "apps.shop.chanel", "did you mean 'channel'?"),
    ("apps.shop.services.web.prot", "apps.shop.services.web.prot", "did you mean 'port'?"),
    (
        "apps.shop.services.web.ecr_repo",
        "apps.shop.services.web.ecr_repo",
        "did you mean 'ecr_repository'?",
    ),
    ("region", "region", "unknown key"),
]


@pytest.mark.parametrize(("path", "key", "hint"), UNKNOWN)
def test_unknown_key_with_a_hint(path: str, key: str, hint: str) -> None:
    error = error_of(with_value(path, "x"))
    assert_names_key(error, key, "unknown key", hint, "known keys here:")


def test_unknown_key_without_a_close_match_has_no_hint() -> None:
    assert "did you mean" not in str(error_of(with_value("region", "eu-west-1")))


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("slack_bot_token", "slack_bot_token"),
        ("github_webhook_secret", "github_webhook_secret"),
        ("github_app_private_key", "github_app_private_key"),
        ("apps.shop.slack_token", "apps.shop.slack_token"),
        ("apps.shop.services.web.github_token", "apps.shop.services.web.github_token"),
    ],
)
def test_secret_in_the_file_is_refused(path: str, key: str) -> None:
    error = error_of(with_value(path, "xoxb-not-a-real-token"))
    variable = key.split(".")[-1].upper()
    assert_names_key(
        error, key, "secrets are read only from the environment", f"export {variable}=..."
    )
    assert "xoxb-not-a-real-token" not in str(error)


def test_secret_refusal_says_which_variable_to_export() -> None:
    error = error_of(with_value("slack_bot_token", "xoxb-1"))
    assert "export SLACK_BOT_TOKEN=..." in str(error)


@pytest.mark.parametrize(
    "value",
    ["", "fargate", "EC2", "FARGATE:x", "FARGATE:1:2:3", "FARGATE,", "FARGATE:", "FARGATE:-1", 3],
)
def test_bad_capacity_provider_strategy(value: Any) -> None:
    error = error_of(with_value("capacity_provider_strategy", value))
    assert_names_key(error, "capacity_provider_strategy", "FARGATE_SPOT:3,FARGATE:1:1")


# --- layers: defaults < file < REVIEEE_* variables --------------------------------------------


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no ./revieee.toml to fall back on
    path = tmp_path / "conf" / "review.toml"
    path.parent.mkdir()
    path.write_text(
        MINIMAL_TOML.replace(
            'domain = "review.example.com"\n',
            'domain = "review.example.com"\nworkers = 2\ndeploy_timeout = 120\n',
        ),
        encoding="utf-8",
    )
    return path


def test_file_overrides_defaults(config_file: Path) -> None:
    s = load_settings(cli_path=str(config_file), environ={})
    assert (s.cluster, s.workers, s.deploy_timeout) == ("review-apps", 2, 120.0)
    assert s.poll_interval == 5.0  # not in the file: the default


def test_config_file_from_reviee_config_variable(config_file: Path) -> None:
    s = load_settings(environ={"REVIEEE_CONFIG": str(config_file)})
    assert s.workers == 2


def test_cli_path_wins_over_reviee_config(config_file: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.toml"
    other.write_text(MINIMAL_TOML.replace("review-apps", "other-cluster"), encoding="utf-8")
    s = load_settings(cli_path=str(other), environ={"REVIEEE_CONFIG": str(config_file)})
    assert s.cluster == "other-cluster"


def test_revieee_toml_in_the_working_directory_is_the_fallback(config_file: Path) -> None:
    Path("revieee.toml").write_text(MINIMAL_TOML.replace("review-apps", "cwd"), encoding="utf-8")
    assert load_settings(environ={}).cluster == "cwd"


def test_no_file_at_all_names_the_first_missing_key(config_file: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"REVIEEE_CLUSTER": "c"})
    assert info.value.key == "subnets"


def test_variables_override_the_file(config_file: Path) -> None:
    environ = {
        "REVIEEE_CONFIG": str(config_file),
        "REVIEEE_CLUSTER": "from-env",
        "REVIEEE_SUBNETS": "subnet-1, subnet-2,",
        "REVIEEE_SECURITY_GROUPS": "sg-9",
        "REVIEEE_ASSIGN_PUBLIC_IP": "true",
        "REVIEEE_DEPLOY_TIMEOUT": "30",
        "REVIEEE_WORKERS": "8",
        "REVIEEE_CAPACITY_PROVIDER_STRATEGY": "FARGATE",
        "REVIEEE_DEFAULT_APP": "shop",
        # not settings, but revieee's own: tolerated
        "REVIEEE_PORT": "3000",
        "REVIEEE_SLACK_API_URL": "http://127.0.0.1:1/api/",
        # not ours at all
        "HOME": "/root",
    }
    s = load_settings(environ=environ)
    assert s.cluster == "from-env"
    assert s.subnets == ("subnet-1", "subnet-2")
    assert s.security_groups == ("sg-9",)
    assert s.assign_public_ip is True
    assert s.deploy_timeout == 30.0
    assert s.workers == 8
    assert s.capacity_provider_strategy == (CapacityProvider("FARGATE", 1, 0),)
    assert s.default_app == "shop"
    assert s.namespace == "review.internal"  # untouched: from the file


def test_bad_variable_names_the_variable(config_file: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(cli_path=str(config_file), environ={"REVIEEE_WORKERS": "many"})
    assert_names_key(info.value, "workers", "whole number", "'many'")


@pytest.mark.parametrize(
    ("variable", "hint"),
    [
        ("REVIEEE_CLUSTR", "did you mean REVIEEE_CLUSTER?"),
        ("REVIEEE_SUBNET", "did you mean REVIEEE_SUBNETS?"),
        ("REVIEEE_SLACK_BOT_TOKEN", "unknown variable"),
    ],
)
def test_unknown_variable_is_an_error(config_file: Path, variable: str, hint: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(cli_path=str(config_file), environ={variable: "x"})
    assert_names_key(info.value, variable, "unknown variable", hint, "REVIEEE_CLUSTER=")


def test_invalid_toml(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('cluster = "review-apps\nsubnets = [\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(cli_path=str(path), environ={})
    assert_names_key(info.value, str(path), "not valid TOML", "line 1")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_settings(cli_path=str(path), environ={})
    assert_names_key(info.value, str(path), "config file not found", "revieee --config")
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"REVIEEE_CONFIG": str(path)})
    assert info.value.key == str(path)


# --- secrets ----------------------------------------------------------------------------------


def test_secrets_come_only_from_known_variables() -> None:
    environ = {
        "SLACK_BOT_TOKEN": "xoxb-secret-1",
        "GITHUB_WEBHOOK_SECRET": "hook-secret-2",
        "SLACK_APP_TOKEN": "",  # empty counts as unset
        "SLACK_TOKEN": "not-a-known-name",
        "REVIEEE_CLUSTER": "c",
        "PATH": "/usr/bin",
    }
    secrets = Secrets.from_environ(environ)
    assert dict(secrets.values) == {
        "SLACK_BOT_TOKEN": "xoxb-secret-1",
        "GITHUB_WEBHOOK_SECRET": "hook-secret-2",
    }
    assert secrets.get("SLACK_BOT_TOKEN") == "xoxb-secret-1"
    assert secrets.get("SLACK_APP_TOKEN") is None
    assert secrets.require("GITHUB_WEBHOOK_SECRET") == "hook-secret-2"


def test_every_secret_variable_is_read() -> None:
    environ = {name: f"value-of-{name}" for name in SECRET_VARIABLES}
    assert dict(Secrets.from_environ(environ).values) == environ


def test_secrets_never_show_in_repr_or_str() -> None:
    environ = {name: f"hunter2-{i}" for i, name in enumerate(SECRET_VARIABLES)}
    secrets = Secrets.from_environ(environ)
    for text in (repr(secrets), str(secrets), f"{secrets}", repr([secrets])):
        assert "hunter2" not in text


def test_missing_secret_names_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        Secrets.from_environ({}).require("SLACK_SIGNING_SECRET")
    assert_names_key(info.value, "SLACK_SIGNING_SECRET", "export SLACK_SIGNING_SECRET=")


def test_secrets_are_not_read_by_load_settings(config_file: Path) -> None:
    s = load_settings(cli_path=str(config_file), environ={"SLACK_BOT_TOKEN": "xoxb-123"})
    assert "xoxb-123" not in repr(s)


# --- Settings ---------------------------------------------------------------------------------


def settings_with_apps(*names: str, default_app: str | None = None) -> Settings:
    data = minimal()
    data["apps"] = {name: copy.deepcopy(data["apps"]["shop"]) for name in names}
    if default_app:
        data["default_app"] = default_app
    return settings_from_mapping(data, {})


def test_app_picks_the_only_app() -> None:
    s = settings_with_apps("shop")
    assert s.app(None).name == "shop"
    assert s.app("shop").name == "shop"


def test_app_picks_the_default_app() -> None:
    s = settings_with_apps("shop", "docs", default_app="docs")
    assert s.app(None).name == "docs"
    assert s.app("shop").name == "shop"


def test_app_needs_a_name_when_several_and_no_default() -> None:
    s = settings_with_apps("shop", "docs")
    with pytest.raises(KeyError, match=r"name one with --app \(docs, shop\)"):
        s.app(None)


def test_unknown_app_names_the_known_ones() -> None:
    s = settings_with_apps("shop", "docs", default_app="shop")
    with pytest.raises(KeyError, match=r"unknown app 'blog' \(known: docs, shop\)"):
        s.app("blog")


def test_url_for_uses_the_template() -> None:
    assert (
        settings_with_apps("shop").url_for("shop", "shop-main", "main")
        == "https://shop-main.review.example.com"
    )
    data = with_value("url_template", "https://{domain}/{app}/{env}?branch={branch}")
    s = settings_from_mapping(data, {})
    assert (
        s.url_for("shop", "shop-feature-x-ef6sx5i7", "feature/x")
        == "https://review.example.com/shop/shop-feature-x-ef6sx5i7?branch=feature/x"
    )


def test_url_template_that_cannot_be_rendered_is_refused_at_start() -> None:
    data = with_value("url_template", "https://{Env}.{domain}")
    with pytest.raises(ConfigError):
        settings_from_mapping(data, {}).url_for("shop", "shop-main", "main")


def test_capacity_weight_with_a_non_ascii_digit_is_a_config_error() -> None:
    error_of(with_value("capacity_provider_strategy", "FARGATE:²"))


# --- the example configuration ----------------------------------------------------------------


def test_example_configuration_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings(cli_path=str(EXAMPLE), environ={})
    assert set(s.apps) == {"shop", "docs"}
    shop = s.apps["shop"]
    assert [svc.name for svc in shop.services] == ["web", "api"]
    assert shop.public_service.name == "web"
    assert shop.service("web").repository == "acme/shop-web"
    assert shop.service("api").repository == "acme/shop-api"
    assert len(s.apps["docs"].services) == 1


def test_example_documents_every_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    missing = [
        key
        for key in [*GLOBAL_KEYS, *APP_KEYS, *SERVICE_KEYS, *TASK_KEYS, *DATABASE_KEYS]
        if not re.search(rf"^[ \t]*(?:#[ \t]*)?({key}[ \t]*=|\[{key}\])", text, re.MULTILINE)
    ]
    assert missing == []
    variables = [f"REVIEEE_{key.upper()}" for key in GLOBAL_KEYS]
    assert [v for v in variables if not re.search(rf"\b{v}\b", text)] == []
    assert [name for name in SECRET_VARIABLES if name not in text] == []


def test_example_comments_show_the_real_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Uncommenting every "# key = value" line of a global key must change nothing."""
    monkeypatch.chdir(tmp_path)
    text = EXAMPLE.read_text(encoding="utf-8")
    pattern = re.compile(r"^# ((\w+) = .*)$", re.MULTILINE)
    shown = [m.group(2) for m in pattern.finditer(text)]
    assert shown, "the example shows no defaults"
    assert set(shown) <= set(GLOBAL_KEYS)
    uncommented = tmp_path / "uncommented.toml"
    uncommented.write_text(pattern.sub(r"\1", text), encoding="utf-8")
    assert load_settings(cli_path=str(uncommented), environ={}) == load_settings(
        cli_path=str(EXAMPLE), environ={}
    )


# --- start-up from the command line -----------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "key"),
    [
        (MINIMAL_TOML.replace('subnets = ["subnet-aaa", "subnet-bbb"]\n', ""), "subnets"),
        (MINIMAL_TOML.replace("port = 8080", 'port = "http"'), "apps.shop.services.web.port"),
        ('slack_bot_token = "xoxb-1"\n' + MINIMAL_TOML, "slack_bot_token"),
        # appended after [apps.shop.services.web], so it lands in that table
        (MINIMAL_TOML + 'github_token = "ghp-1"\n', "apps.shop.services.web.github_token"),
    ],
)
def test_cli_stops_on_a_config_error(tmp_path: Path, content: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVIEEE_")}
    result = subprocess.run(
        [str(REVIEEE), "--config", str(path), "list"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("config error: ")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"config error: {key}: ")
    assert len([line for line in lines if line.strip().startswith("example:")]) == 1
    assert result.stdout == ""
    assert "xoxb-1" not in result.stderr
    assert "ghp-1" not in result.stderr


# -- where images come from ------------------------------------------------------------------


def test_image_sources_and_their_defaults() -> None:
    plain = settings_from_mapping(minimal(), environ={})
    svc = plain.apps["shop"].services[0]
    assert (svc.image_source, svc.wait_timeout, svc.build_timeout) == ("existing", 1800.0, 3600.0)
    assert not svc.deletes_images
    assert (plain.log_post_interval, plain.build_log_lines, plain.gc_untagged_images) == (
        2.0,
        200,
        False,
    )
    data = minimal()
    web(data).update(
        image_source="codebuild", codebuild_project="shop-web-images", build_timeout="45m"
    )
    built = settings_from_mapping(data, environ={}).apps["shop"].services[0]
    assert built.codebuild_project == "shop-web-images" and built.build_timeout == 2700.0
    assert built.deletes_images  # what revieee built is removed with the environment
    web(data)["delete_images"] = False
    assert not settings_from_mapping(data, environ={}).apps["shop"].services[0].deletes_images
    data = minimal()
    web(data).update(image_source="wait", wait_timeout="90s", delete_images=True)
    waited = settings_from_mapping(data, environ={}).apps["shop"].services[0]
    assert waited.wait_timeout == 90.0
    assert not waited.deletes_images  # never an image revieee did not build


@pytest.mark.parametrize(
    ("fields", "key", "fragment"),
    [
        ({"image_source": "docker"}, "image_source", "existing, wait, codebuild"),
        ({"image_source": "codebuild"}, "codebuild_project", "is missing"),
        ({"codebuild_project": "x"}, "codebuild_project", "only used with"),
        ({"image_source": "wait", "wait_timeout": "9h"}, "wait_timeout", "1s to 8h"),
        ({"image_source": "wait", "wait_timeout": 0}, "wait_timeout", "1s to 8h"),
        ({"build_timeout": "soon"}, "build_timeout", "delay"),
    ],
)
def test_bad_image_source_settings(fields: dict[str, Any], key: str, fragment: str) -> None:
    data = minimal()
    web(data).update(fields)
    assert_names_key(error_of(data), f"apps.shop.services.web.{key}", fragment)


def test_wait_and_codebuild_need_an_ecr_repository() -> None:
    data = minimal()
    del web(data)["ecr_repository"]
    web(data).update(image="ghcr.io/acme/web:{branch}", image_source="wait")
    assert_names_key(error_of(data), "apps.shop.services.web.image_source", "ecr_repository")


def test_the_whole_file_may_come_from_an_environment_variable(tmp_path: Path) -> None:
    settings = load_settings(environ={"REVIEEE_CONFIG_TOML": MINIMAL_TOML})
    assert "shop" in settings.apps
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"REVIEEE_CONFIG_TOML": "cluster = ["})
    assert "REVIEEE_CONFIG_TOML" in str(info.value) and "not valid TOML" in str(info.value)


# --- what Fargate refuses: task sizes and capacity provider strategies ------------------------


@pytest.mark.parametrize(
    ("cpu", "memory"), [(256, 512), (256, 2048), (512, 4096), (4096, 30720), (16384, 122880)]
)
def test_a_valid_fargate_task_size_is_kept(cpu: int, memory: int) -> None:
    data = minimal()
    web(data).update(cpu=cpu, memory=memory)
    svc = settings_from_mapping(data, environ={}).apps["shop"].services[0]
    assert (svc.cpu, svc.memory) == (cpu, memory)


@pytest.mark.parametrize(
    ("cpu", "memory", "allowed", "example"),
    [
        (256, 4096, "256 CPU units take 512, 1024 or 2048 MiB", "cpu = 512 to keep memory = 4096"),
        (512, 512, "512 CPU units take 1024, 2048, 3072 or 4096 MiB", "memory = 1024"),
        (2048, 30720, "2048 CPU units take 4096 to 16384 MiB in steps of 1024", "cpu = 4096"),
        ("1024", "16384", "1024 CPU units take 2048 to 8192 MiB", "memory = 8192"),
    ],
)
def test_a_task_size_fargate_refuses_is_a_config_error(
    cpu: Any, memory: Any, allowed: str, example: str
) -> None:
    data = minimal()
    web(data).update(cpu=cpu, memory=memory)
    assert_names_key(
        error_of(data),
        "apps.shop.services.web.cpu",
        f"No Fargate configuration exists for given values: {cpu} CPU, {memory} memory",
        allowed,
        example,
    )


@pytest.mark.parametrize("cpu", [128, 384, 1000, 3072, 32768, "1 vCPU", 0.5])
def test_a_cpu_that_is_no_fargate_value_is_refused_alone(cpu: Any) -> None:
    data = with_value("apps.shop.services.web.cpu", cpu)
    assert_names_key(
        error_of(data), "apps.shop.services.web.cpu", "256, 512, 1024, 2048, 4096, 8192 or 16384"
    )


@pytest.mark.parametrize(
    ("memory", "nearest"),
    [
        (128, "512 MiB"),
        (1536, "1024 and 2048 MiB"),
        (32000, "30720 and 32768 MiB"),
        (34816, "32768 and 36864 MiB"),  # 34 GB: above 4 vCPU's 30, between 8 vCPU's steps
        (126976, "122880 MiB"),
    ],
)
def test_a_memory_no_fargate_cpu_takes_is_refused_alone(memory: int, nearest: str) -> None:
    data = with_value("apps.shop.services.web.memory", memory)
    assert_names_key(
        error_of(data), "apps.shop.services.web.memory", f"takes {memory} MiB", nearest
    )


@pytest.mark.parametrize(("key", "value"), [("cpu", 8192), ("memory", 61440), ("memory", 512)])
def test_one_fargate_value_alone_is_kept_for_the_engine_to_pair(key: str, value: int) -> None:
    svc = settings_from_mapping(with_value(f"apps.shop.services.web.{key}", value), {})
    assert getattr(svc.apps["shop"].services[0], key) == value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("FARGATE:1000", [("FARGATE", 1000, 0)]),
        ("FARGATE:0:100000,FARGATE_SPOT:1", [("FARGATE", 0, 100000), ("FARGATE_SPOT", 1, 0)]),
        ("FARGATE_SPOT:0,FARGATE:1:2", [("FARGATE_SPOT", 0, 0), ("FARGATE", 1, 2)]),
    ],
)
def test_capacity_weights_and_bases_at_ecs_limits_are_kept(
    value: str, expected: list[tuple[str, int, int]]
) -> None:
    s = settings_from_mapping(with_value("capacity_provider_strategy", value), {})
    assert [(p.provider, p.weight, p.base) for p in s.capacity_provider_strategy] == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("FARGATE:1001", "a weight is 0 to 1000 (got 1001)"),
        ("FARGATE_SPOT:3,FARGATE:5000:1", "a weight is 0 to 1000 (got 5000)"),
        ("FARGATE:1:100001", "a base is 0 to 100000 (got 100001)"),
        ("FARGATE:1:99999999", "not PROVIDER[:WEIGHT[:BASE]]"),
        ("FARGATE_SPOT:1:1,FARGATE:1:2", "only one capacity provider"),
        ("FARGATE:0", "at least one capacity provider needs a weight above 0"),
        ("FARGATE:0:3", "weight above 0"),
        ("FARGATE_SPOT:0,FARGATE:0:1", "weight above 0"),
    ],
)
def test_capacity_strategies_ecs_refuses_are_config_errors(value: str, fragment: str) -> None:
    error = error_of(with_value("capacity_provider_strategy", value))
    assert_names_key(error, "capacity_provider_strategy", fragment, "FARGATE_SPOT:3,FARGATE:1:1")


def test_capacity_limits_apply_to_the_environment_variable_too() -> None:
    error = error_of(minimal(), {"REVIEEE_CAPACITY_PROVIDER_STRATEGY": "FARGATE:0"})
    assert_names_key(error, "capacity_provider_strategy", "weight above 0")


# --- lifecycle tasks, the database, secret keys ------------------------------------------------


def with_tasks(**tasks: Any) -> dict[str, Any]:
    data = two_services()
    data["apps"]["shop"]["tasks"] = tasks
    return data


def test_lifecycle_tasks_and_database_are_parsed() -> None:
    data = with_tasks(
        migrate={"when": "release", "command": "bin/rails db:migrate", "timeout": "15m"},
        seed={"when": "on_create", "service": "api", "command": ["seed", "--all"]},
    )
    data["apps"]["shop"]["database"] = {"url": "postgres://review@db:5432/{name}"}
    app = settings_from_mapping(data, {}).apps["shop"]
    migrate, seed = app.tasks
    assert (migrate.service, migrate.command, migrate.timeout) == (
        "web",  # the public service (here: the first)
        ("bin/rails", "db:migrate"),
        900.0,
    )
    assert seed.service == "api" and seed.command == ("seed", "--all") and seed.timeout == 600.0
    assert app.tasks_at("release") == (migrate,) and app.tasks_at("on_stop") == ()
    assert migrate.label == "release task migrate" and seed.label == "on create task seed"
    assert app.database is not None and app.database.name == "{env}"


@pytest.mark.parametrize(
    ("tasks", "key", "fragment"),
    [
        ({"m": {"when": "later", "command": ["x"]}}, "apps.shop.tasks.m.when", "must be one of"),
        ({"m": {"when": "release"}}, "apps.shop.tasks.m.command", "is missing"),
        ({"m": {"when": "release", "command": []}}, "apps.shop.tasks.m.command", "non-empty"),
        ({"m": {"when": "release", "command": "a 'b"}}, "apps.shop.tasks.m.command", "split"),
        (
            {"m": {"when": "release", "command": ["x"], "service": "db"}},
            "apps.shop.tasks.m.service",
            "its services: web, api",
        ),
        ({"Migrate": {"when": "release", "command": ["x"]}}, "apps.shop.tasks.Migrate", "1-30"),
        (
            {"m": {"when": "release", "command": ["x"], "timeout": "9h"}},
            "apps.shop.tasks.m.timeout",
            "1s to 8h",
        ),
        (
            {"m": {"when": "release", "command": ["x"], "comand": ["y"]}},
            "apps.shop.tasks.m.comand",
            "did you mean 'command'",
        ),
    ],
)
def test_wrong_lifecycle_task(tasks: dict[str, Any], key: str, fragment: str) -> None:
    assert_names_key(error_of(with_tasks(**tasks)), key, fragment)


@pytest.mark.parametrize(
    ("database", "key", "fragment"),
    [
        ({"url": "postgres://review:hunter2@db:5432/{name}"}, "url", "has a password in it"),
        ({"url": "postgres://db/{database}"}, "url", "unknown placeholder {database}"),
        ({"name": "{branch}"}, "name", "unknown placeholder {branch}"),
        ({"password": "x"}, "password", "unknown key"),
    ],
)
def test_wrong_database(database: dict[str, Any], key: str, fragment: str) -> None:
    data = minimal()
    data["apps"]["shop"]["database"] = database
    assert_names_key(error_of(data), f"apps.shop.database.{key}", fragment)


def test_secret_keys_come_from_the_file_or_a_variable() -> None:
    data = minimal()
    data["secret_keys"] = ["*secret*", "DSN"]
    assert settings_from_mapping(data, {}).secret_keys == ("*SECRET*", "DSN")
    from_env = settings_from_mapping(minimal(), {"REVIEEE_SECRET_KEYS": "*PASS*,*TOKEN*"})
    assert from_env.secret_keys == ("*PASS*", "*TOKEN*")
    data["secret_keys"] = ["no spaces"]
    assert_names_key(error_of(data), "secret_keys", "patterns")

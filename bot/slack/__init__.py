"""Slack: the Bolt app, its listeners, the deploy-message notifier and Block Kit."""

from __future__ import annotations

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)

from bot.authz import Authorizer, CachedGroups

DEFAULT_API_URL = "https://slack.com/api/"


def web_client(token: str, api_url: str | None) -> WebClient:
    """The Web API client: rate limits (429 + Retry-After) and dropped connections retried."""
    base = (api_url or DEFAULT_API_URL).rstrip("/") + "/"
    return WebClient(
        token=token,
        base_url=base,
        timeout=10,
        retry_handlers=[
            RateLimitErrorRetryHandler(max_retry_count=3),
            ConnectionErrorRetryHandler(max_retry_count=2),
        ],
    )


def slack_authorizer(settings, client: WebClient) -> Authorizer:  # type: ignore[no-untyped-def]
    """Authorization with user groups resolved through ``usergroups.users.list`` (cached)."""

    def fetch(group: str) -> set[str]:
        return set(client.usergroups_users_list(usergroup=group).get("users") or [])

    return Authorizer(settings, CachedGroups(fetch))


def bolt_app(client: WebClient, signing_secret: str) -> App:
    """A Bolt app that acks as soon as a listener calls ``ack()`` and runs the rest after."""
    return App(
        client=client,
        signing_secret=signing_secret,
        token_verification_enabled=False,  # Slack being down must not stop revieee starting
        process_before_response=False,
        raise_error_for_unhandled_request=False,
    )

"""Slack: the Bolt app, its listeners, the deploy-message notifier and Block Kit."""

from __future__ import annotations

import logging
import threading

from slack_bolt import App
from slack_bolt.authorization import AuthorizeResult
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)

from bot.authz import Authorizer, CachedGroups

log = logging.getLogger("revieee.slack")

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


class BotIdentity:
    """The bot's own user id, from ``auth.test``, fetched in the background.

    Bolt's default single-workspace authorization calls ``auth.test`` inside the first request,
    before the listener can ack: a slow or unreachable Slack Web API would then cost that
    request Slack's 3 seconds, or fail it. Here no request ever waits for the Web API.
    """

    def __init__(self, client: WebClient, token: str, retry_every: float = 30.0) -> None:
        self.client = client
        self.token = token
        self.retry_every = retry_every
        self.user_id: str | None = None
        self.bot_id: str | None = None
        self._stop = threading.Event()

    def start(self) -> BotIdentity:
        threading.Thread(target=self._fetch, name="revieee-auth-test", daemon=True).start()
        return self

    def close(self) -> None:
        self._stop.set()

    def _fetch(self) -> None:
        while not self._stop.is_set():
            try:
                result = self.client.auth_test()
                self.user_id, self.bot_id = result.get("user_id"), result.get("bot_id")
                return
            except Exception as exc:  # the token is checked again later; nothing waits on it
                log.warning("auth.test failed (retrying in %gs): %s", self.retry_every, exc)
            self._stop.wait(self.retry_every)

    def authorize(self, enterprise_id: str | None, team_id: str | None) -> AuthorizeResult:
        return AuthorizeResult(
            enterprise_id=enterprise_id,
            team_id=team_id,
            bot_token=self.token,
            bot_user_id=self.user_id,
            bot_id=self.bot_id,
        )


def bolt_app(client: WebClient, signing_secret: str, identity: BotIdentity) -> App:
    """The Bolt app: its listeners ack within milliseconds (see ``listeners``)."""
    # Bolt takes either a token or an authorize function: its client carries no token, each
    # request's client (a copy: same base URL, retry handlers) gets it from ``authorize``.
    tokenless = WebClient(
        base_url=client.base_url, timeout=client.timeout, retry_handlers=client.retry_handlers
    )
    return App(
        client=tokenless,
        signing_secret=signing_secret,
        # a plain function: Bolt passes arguments by name and would pass ``self`` twice
        authorize=lambda enterprise_id, team_id: identity.authorize(enterprise_id, team_id),
        # Listeners run in the request's thread and the answer goes out when they return: they
        # only persist and ack (slow replies go to a background pool). Bolt's other mode hands
        # each listener to a pool and polls for the ack every 10 ms, holding the request thread.
        process_before_response=True,
        raise_error_for_unhandled_request=False,
        # bot/server.py checks every request's signature (in constant time, replays refused)
        # before Bolt sees it, and may re-encode the body (see there): Bolt checks nothing again
        request_verification_enabled=False,
    )

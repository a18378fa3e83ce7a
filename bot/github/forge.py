"""The narrow seam around PyGithub: the few GitHub calls revieee makes.

Authentication is a token (``GITHUB_TOKEN``) or a GitHub App (``GITHUB_APP_ID`` +
``GITHUB_APP_PRIVATE_KEY``): the installation of each repository is looked up once and its
installation token is refreshed by PyGithub before it expires. ``REVIEEE_GITHUB_API_URL`` points
at GitHub Enterprise (or, in tests, a local fake). Retries are bounded: a rate limit whose reset
is further away than ``max_rate_limit_wait`` raises :class:`GitHubError` with ``retry_at`` so the
caller can come back later instead of holding a thread for an hour.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import github
from github import Auth, Github, GithubException, GithubIntegration, GithubRetry

from bot.config import ConfigError, Secrets

log = logging.getLogger("revieee.github")

DEFAULT_API_URL = "https://api.github.com"
WRITE_PERMISSIONS = ("admin", "maintain", "write")

# git-check-ref-format(1) (https://git-scm.com/docs/git-check-ref-format), rules 1 and 3-10, and
# what ``--branch`` adds (no leading ``-``, not ``HEAD``): no control characters, space,
# ``~ ^ : ? * [ \``, ``..`` or ``@{``.
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{")


def is_branch_name(name: str) -> bool:
    """Whether git allows ``name`` as a branch (``git check-ref-format --branch``). A fork's
    ``owner:branch`` label is not one: no repository has such a branch, GitHub answers 404."""
    components = name.split("/")
    return not (
        not name
        or name in ("@", "HEAD")
        or name.startswith("-")
        or name.endswith(".")
        or _REF_FORBIDDEN.search(name)
        or any(not c or c.startswith(".") or c.endswith(".lock") for c in components)
    )


def same_repository(a: str, b: str) -> bool:
    """GitHub's owner and repository names are case-insensitive."""
    return a.casefold() == b.casefold()


class GitHubError(Exception):
    """A GitHub call failed; ``status`` is the HTTP status (0: no answer), ``retry_at`` when a
    rate limit says when to come back."""

    def __init__(self, what: str, status: int, message: str, retry_at: datetime | None = None):
        self.status = status
        self.retry_at = retry_at
        super().__init__(f"GitHub {what}: {status or 'no answer'} {message}".strip())


@dataclass(frozen=True)
class PullInfo:
    """A pull request as revieee uses it; ``fork`` when its head is in another repository (or
    in one that was deleted)."""

    repository: str
    number: int
    head_ref: str
    head_sha: str
    head_repository: str
    fork: bool
    author: str
    title: str
    html_url: str
    state: str
    draft: bool
    labels: tuple[str, ...]
    body: str = ""  # the description (its ```revieee block: bot/envsettings.py)


class Forge(Protocol):
    """What revieee needs from GitHub."""

    def resolve(self, repository: str, branch: str) -> str | None: ...
    def permission(self, repository: str, user: str) -> str: ...
    def pull(self, repository: str, number: int) -> PullInfo: ...
    def upsert_comment(
        self, repository: str, number: int, comment_id: int | None, body: str
    ) -> int: ...
    def react(self, repository: str, comment_id: int, content: str) -> None: ...
    def create_deployment(
        self, repository: str, ref: str, environment: str, description: str
    ) -> int: ...
    def deployment_status(
        self,
        repository: str,
        deployment_id: int,
        state: str,
        environment_url: str | None = None,
        description: str = "",
        log_url: str | None = None,
    ) -> None: ...


def _error(what: str, exc: Exception) -> GitHubError:
    if isinstance(exc, GithubException):
        headers = exc.headers or {}
        retry_at = None
        reset = headers.get("x-ratelimit-reset") or headers.get("X-RateLimit-Reset")
        if reset and str(reset).isdigit():
            retry_at = datetime.fromtimestamp(int(reset), UTC)
        message = exc.data.get("message", "") if isinstance(exc.data, dict) else str(exc.data)
        return GitHubError(what, exc.status or 0, message, retry_at)
    return GitHubError(what, 0, str(exc))


class GitHubForge:
    """:class:`Forge` over PyGithub."""

    def __init__(
        self,
        api_url: str,
        token: str | None = None,
        app_id: str | None = None,
        private_key: str | None = None,
        timeout: float = 10.0,
        max_rate_limit_wait: float = 30.0,
        write_interval: float = 1.0,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._write_interval = write_interval  # see Settings.github_write_interval
        self._timeout = timeout
        self._retry = GithubRetry(
            total=3,
            backoff_factor=0.5,
            secondary_rate_wait=10,
            max_rate_limit_wait=max_rate_limit_wait,
        )
        self._lock = threading.Lock()
        self._clients: dict[str, Github] = {}  # by installation id ("token" for a token)
        self._installations: dict[str, int] = {}  # owner, casefolded -> installation id
        self._app: Auth.AppAuth | None = None
        if token:
            self._clients["token"] = self._client(Auth.Token(token))
        elif app_id and private_key:
            self._app = Auth.AppAuth(app_id, private_key)
        else:
            raise ValueError("GitHubForge needs a token or an app id and private key")

    @classmethod
    def from_secrets(
        cls, secrets: Secrets, api_url: str | None, write_interval: float = 1.0
    ) -> GitHubForge | None:
        """The forge for whichever credentials are set; None when none are."""
        token = secrets.get("GITHUB_TOKEN")
        app_id, key = secrets.get("GITHUB_APP_ID"), secrets.get("GITHUB_APP_PRIVATE_KEY")
        if not token and not (app_id or key):
            return None
        if not token and not (app_id and key):
            missing = "GITHUB_APP_PRIVATE_KEY" if app_id else "GITHUB_APP_ID"
            raise ConfigError(
                missing,
                "is not set: a GitHub App needs both GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY "
                "(or set GITHUB_TOKEN instead)",
                f"export {missing}=...",
            )
        if app_id and not app_id.isdigit():
            raise ConfigError(
                "GITHUB_APP_ID", f"must be a number (got {app_id!r})", "export GITHUB_APP_ID=123456"
            )
        return cls(
            api_url or DEFAULT_API_URL,
            token=token,
            app_id=app_id,
            private_key=key,
            write_interval=write_interval,
        )

    def _client(self, auth: Auth.Auth) -> Github:
        # lazy: objects are built from their URL, with no GET before each call
        return Github(
            auth=auth,
            base_url=self.api_url,
            timeout=int(self._timeout),
            retry=self._retry,
            lazy=True,
            seconds_between_requests=self._write_interval / 4,
            seconds_between_writes=self._write_interval,
        )

    def _for(self, repository: str) -> Github:
        if "token" in self._clients:
            return self._clients["token"]
        assert self._app is not None
        owner, _, name = repository.partition("/")
        with self._lock:
            installation = self._installations.get(owner.casefold())  # as GitHub compares owners
        if installation is None:
            integration = GithubIntegration(
                auth=self._app, base_url=self.api_url, timeout=int(self._timeout), retry=self._retry
            )
            try:
                installation = integration.get_repo_installation(owner, name).id
            except Exception as exc:
                raise _error(f"finding the app installation for {repository}", exc) from exc
            with self._lock:
                self._installations[owner.casefold()] = installation
        key = str(installation)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = self._client(self._app.get_installation_auth(installation))
            return self._clients[key]

    def _repo(self, repository: str) -> Any:
        return self._for(repository).get_repo(repository)

    # -- Forge ---------------------------------------------------------------------------------

    def resolve(self, repository: str, branch: str) -> str | None:
        """The branch's head commit, None when the branch does not exist (a CommitResolver).

        A name git does not allow as a branch (a fork pull request's ``owner:branch``) is no
        branch of any repository: None, without asking GitHub."""
        if not is_branch_name(branch):
            log.info("not a branch name, not looked up repo=%s branch=%r", repository, branch)
            return None
        try:
            return str(self._repo(repository).get_branch(branch).commit.sha)
        except github.UnknownObjectException:
            return None
        except Exception as exc:
            raise _error("branch", exc) from exc

    def permission(self, repository: str, user: str) -> str:
        try:
            return str(self._repo(repository).get_collaborator_permission(user))
        except github.UnknownObjectException:
            return "none"
        except Exception as exc:
            raise _error(f"permission of {user} on {repository}", exc) from exc

    def pull(self, repository: str, number: int) -> PullInfo:
        try:
            pr = self._repo(repository).get_pull(number)
            head_repo = pr.head.repo.full_name if pr.head.repo else ""
            return PullInfo(
                repository=repository,
                number=number,
                head_ref=pr.head.ref,
                head_sha=pr.head.sha,
                head_repository=head_repo,
                # a deleted head repository is a fork that went away: untrusted all the same
                fork=not same_repository(head_repo, repository),
                author=pr.user.login if pr.user else "",
                title=pr.title or "",
                html_url=pr.html_url or "",
                state=pr.state,
                draft=bool(pr.draft),
                labels=tuple(label.name for label in pr.labels),
                body=pr.body or "",
            )
        except Exception as exc:
            raise _error(f"pull request {repository}#{number}", exc) from exc

    def upsert_comment(
        self, repository: str, number: int, comment_id: int | None, body: str
    ) -> int:
        """Edit the comment in place; create it when there is none (or it was deleted)."""
        repo = self._repo(repository)
        try:
            if comment_id is not None:
                try:
                    comment = repo.get_issue(number).get_comment(comment_id)
                    comment.edit(body)
                    return comment_id
                except github.UnknownObjectException:
                    log.info("pr comment gone, posting anew repo=%s pr=%s", repository, number)
            return int(repo.get_issue(number).create_comment(body).id)
        except Exception as exc:
            raise _error(f"comment on {repository}#{number}", exc) from exc

    def react(self, repository: str, comment_id: int, content: str) -> None:
        try:
            repo = self._repo(repository)
            repo.get_issue(0).get_comment(comment_id).create_reaction(content)
        except Exception as exc:
            raise _error(f"reaction on comment {comment_id} in {repository}", exc) from exc

    def create_deployment(
        self, repository: str, ref: str, environment: str, description: str
    ) -> int:
        try:
            deployment = self._repo(repository).create_deployment(
                ref=ref,
                environment=environment,
                description=description[:140],
                transient_environment=True,
                production_environment=False,
                auto_merge=False,
                required_contexts=[],
            )
            return int(deployment.id)
        except Exception as exc:
            raise _error(f"deployment of {ref} in {repository}", exc) from exc

    def deployment_status(
        self,
        repository: str,
        deployment_id: int,
        state: str,
        environment_url: str | None = None,
        description: str = "",
        log_url: str | None = None,
    ) -> None:
        try:
            deployment = self._repo(repository).get_deployment(deployment_id)
            kwargs: dict[str, Any] = {"description": description[:140]}
            if environment_url:
                kwargs["environment_url"] = environment_url
            if log_url:
                kwargs["target_url"] = log_url  # PyGithub's name for the status's log link
            deployment.create_status(state, **kwargs)
        except Exception as exc:
            what = f"status {state} of deployment {deployment_id} in {repository}"
            raise _error(what, exc) from exc

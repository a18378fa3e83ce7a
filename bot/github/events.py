"""What each GitHub event does. The webhook endpoint only verifies and persists a delivery; this
runs it afterwards, on the inbox worker, so GitHub gets its answer at once.

Events, per app whose services are built from the event's repository:

- ``pull_request`` ``opened``/``reopened``/``ready_for_review``: deploy the head branch per the
  app's ``pull_requests`` policy (``all``, ``label``, ``off``), drafts only with
  ``deploy_drafts``; ``synchronize``: redeploy the new head if the environment exists (or the
  policy would create it); ``labeled``/``unlabeled`` with the app's label: deploy/stop;
  ``closed``: stop, after ``stop_after_close``; ``edited``: redeploy a live environment
  whose settings the description's fenced ``revieee`` block changes (every deploy of a pull
  request takes that block's ``KEY=VALUE`` lines as the environment's settings; a fork's
  description is ignored).
- ``push`` to a branch that has an environment: redeploy that commit.
- ``delete`` of a branch: stop its environment.
- ``issue_comment`` on a pull request starting with ``/revieee``: the command, for people with
  write permission; the answer is a reaction, and a reply for what has no other place.

Pull requests from forks are never deployed by themselves (not when opened, labelled or pushed
to): their code is untrusted. A maintainer's ``/revieee deploy`` comment deploys the pull
request's head commit as it is when the comment is handled, as that commit: the fork's branch is
never looked up, in the fork or in the base repository (see :func:`branch_of`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bot import envsettings
from bot.authz import Authorizer, Caller
from bot.config import AppConfig, Settings
from bot.container_logs import ContainerLogs
from bot.core import Core, OverQuota, RequestError
from bot.github.forge import (
    Forge,
    GitHubError,
    PullInfo,
    is_branch_name,
    same_repository,
)
from bot.github.markdown import code, fence, mention
from bot.github.markdown import text as md_text
from bot.naming import env_name
from bot.store import Store
from commands.parser import UsageError, parse
from commands.run import logs_summary, run
from commands.verbs import Deploy, Help, Keep, List, Logs, Status, Stop

log = logging.getLogger("revieee.github")

MAX_LOG_CHARS = 60_000  # of log lines in one comment (GitHub takes 65,536 characters)

SOURCE = "github"
HANDLED = ("pull_request", "push", "delete", "issue_comment", "workflow_run")
DEPLOY_ACTIONS = ("opened", "reopened", "ready_for_review")
COMMAND_PREFIX = "/revieee"
STOP_AFTER_CLOSE = "stop-after-close"


@dataclass
class Outcome:
    """What an event did, for the audit log and the tests."""

    text: str
    envs: list[str] = dataclasses.field(default_factory=list)


def pull_from_payload(payload: dict[str, Any]) -> PullInfo:
    pr = payload["pull_request"]
    repository = payload["repository"]["full_name"]
    head_repo = (pr.get("head") or {}).get("repo") or {}
    head_repository = head_repo.get("full_name") or ""
    return PullInfo(
        repository=repository,
        number=int(pr["number"]),
        head_ref=pr["head"]["ref"],
        head_sha=pr["head"]["sha"],
        head_repository=head_repository,
        # a deleted head repository is a fork that went away: untrusted all the same
        fork=not same_repository(head_repository, repository),
        author=(pr.get("user") or {}).get("login", ""),
        title=pr.get("title") or "",
        html_url=pr.get("html_url") or "",
        state="merged" if pr.get("merged") else pr.get("state", "open"),
        draft=bool(pr.get("draft")),
        labels=tuple(label["name"] for label in pr.get("labels") or []),
        body=pr.get("body") or "",
    )


def as_configured(app: AppConfig, repository: str) -> str:
    """``repository`` as ``app`` spells it: the engine and the store compare names exactly, and
    GitHub's (``Codertocat/Hello-World``) may differ in case from the configuration's."""
    return next((r for r in app.repositories if same_repository(r, repository)), repository)


def branch_of(pull: PullInfo) -> str:
    """The branch an environment is named after: a fork's branches are ``owner:branch`` (as
    GitHub labels them), so a fork's ``main`` is never the repository's ``main``.

    That label is a name, never a branch to look up: git refuses ``:`` in branch names, so no
    repository has it. A fork's deploy always carries the pull request's head commit; the image
    tag template's ``{branch}`` renders the label as ``owner-branch`` (``{branch}-{sha7}`` looks
    for ``mallory-changes-1a2b3c4``), and services built from other repositories fall back to
    their default branch."""
    if pull.fork:
        return f"{pull.head_repository.split('/')[0] or 'fork'}:{pull.head_ref}"
    return pull.head_ref


class GitHubEvents:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        core: Core,
        forge: Forge | None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        authz: Authorizer | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.core = core
        self.forge = forge
        self.clock = clock
        self.authz = authz or Authorizer(settings)

    def apps_for(self, repository: str) -> list[AppConfig]:
        return [
            a
            for a in self.settings.apps.values()
            if any(same_repository(repository, r) for r in a.repositories)
        ]

    # -- dispatch ------------------------------------------------------------------------------

    def handle(self, event: str, payload: dict[str, Any]) -> Outcome:
        repository = payload.get("repository") or ""
        if isinstance(repository, dict):  # a webhook's; a delayed action names it plainly
            repository = repository.get("full_name", "")
        apps = self.apps_for(repository)
        outcome: Outcome
        if event == STOP_AFTER_CLOSE:
            outcome = self._stop_after_close(payload)
        elif event not in HANDLED:
            outcome = Outcome(f"ignored: {event} events do nothing")
        elif not apps:
            outcome = Outcome(f"ignored: no app is built from {repository or 'that repository'}")
        else:
            outcome = getattr(self, f"_on_{event}")(payload, apps)
        sender = (payload.get("sender") or {}).get("login")
        envs: list[str | None] = list(outcome.envs) or [None]
        for env in envs:
            self.store.audit(
                "github event",
                sender,
                env,
                SOURCE,
                event=event,
                event_action=payload.get("action"),
                outcome=outcome.text,
            )
        return outcome

    # -- pull requests --------------------------------------------------------------------------

    def _policy_allows(self, app: AppConfig, pull: PullInfo) -> str | None:
        """None when the app's policy deploys this pull request by itself, else why not."""
        if pull.fork:
            return "pull requests from forks are never deployed automatically"
        if app.pull_requests == "off":
            return f"{app.name} does not deploy pull requests by themselves"
        if app.pull_requests == "label" and app.label not in pull.labels:
            return f"{app.name} deploys pull requests labelled {app.label!r}"
        if pull.draft and not app.deploy_drafts:
            return "draft pull requests are not deployed"
        return None

    def _link(self, app: AppConfig, pull: PullInfo) -> str:
        branch = branch_of(pull)
        env = env_name(app.name, branch)
        self.store.link_pull(
            pull.repository,
            pull.number,
            env=env,
            app=app.name,
            branch=branch,
            head_sha=pull.head_sha,
            author=pull.author,
            title=pull.title,
            html_url=pull.html_url,
            fork=int(pull.fork),
            state=pull.state,
        )
        return env

    def _deploy_pull(
        self,
        app: AppConfig,
        pull: PullInfo,
        actor: str | None,
        settings_changed: bool = False,
        tell: bool = False,
    ) -> str:
        """Deploy the pull request's head with its description's settings; ``tell``: answer
        the block's bad lines on the pull request (when it was just opened or edited)."""
        branch = branch_of(pull)
        env = self._link(app, pull)
        if self._already_deploying(env, pull.head_sha) and not settings_changed:
            return env
        block = self._block(pull, tell=settings_changed or tell)
        try:
            self.core.intake.request_deploy(
                branch,
                app.name,
                sha=pull.head_sha,
                requested_by=actor or pull.author,
                source=SOURCE,
                context=self._context(app, pull),
                block=block,
                exempt=self.authz.exempt_from_quotas(Caller(actor or pull.author, SOURCE), app),
            )
        except RequestError as exc:  # over the app's quota, or a setting that cannot be taken
            log.warning("deploy of %s refused: %s", env, exc)
            then = (
                "Stop one of them (`/revieee stop ENV`), then comment `/revieee deploy` here."
                if isinstance(exc, OverQuota)
                else "Fix the revieee block of the description: editing it deploys again."
            )
            if self.forge is not None:
                self._reply(pull.repository, pull.number, answer(pull.author, f"{exc}. {then}"))
        return env

    def _block(self, pull: PullInfo, tell: bool) -> dict[str, str] | None:
        """The settings of the pull request's description (its fenced revieee block), None
        when it has none or is a fork's: a fork's author configures nothing of ours. Lines
        that are not KEY=VALUE are left out, and (``tell``: the description was just written,
        not on every push) answered on the pull request."""
        if pull.fork:
            return None
        block, problems = envsettings.block_of(pull.body)
        if problems and tell and self.forge is not None:
            listed = "; ".join(problems[:5])
            self._reply(
                pull.repository,
                pull.number,
                answer(
                    pull.author,
                    f"the revieee block of the description has lines I skipped: {listed}",
                ),
            )
        return block

    def _settings_changed(self, env: str, pull: PullInfo) -> bool:
        """Whether the description's revieee block says other than what the environment has
        from it."""
        if pull.fork:
            return False
        block = envsettings.block_of(pull.body)[0] or {}
        row = self.store.get_env(env) or {}
        current = {
            k: s.value
            for k, s in envsettings.load(row.get("settings")).items()
            if s.source == envsettings.PULL_REQUEST
        }
        return block != current

    @staticmethod
    def _context(app: AppConfig, pull: PullInfo) -> dict[str, Any]:
        # The head commit belongs to the base repository's services, a fork's too: GitHub makes
        # it reachable there (refs/pull/N/head).
        return {
            "sha_repository": as_configured(app, pull.repository),
            "repository": pull.repository,
            "pr_number": pull.number,
            "pr_url": pull.html_url,
            "pr_author": pull.author,
            "pr_title": pull.title,
        }

    def _already_deploying(self, env: str, sha: str) -> bool:
        """A push and the pull request's ``synchronize`` both announce a new commit: one deploy."""
        for op in self.store.operations(env=env):
            if op.kind == "deploy" and op.status in ("queued", "running"):
                return op.params.get("sha") == sha
        row = self.store.get_env(env)
        return bool(row and row["status"] == "running" and row.get("sha") == sha)

    def _live(self, env: str) -> bool:
        row = self.store.get_env(env)
        return row is not None and row["status"] != "stopped"

    def _on_pull_request(self, payload: dict[str, Any], apps: list[AppConfig]) -> Outcome:
        action = payload.get("action", "")
        pull = pull_from_payload(payload)
        done: list[str] = []
        why: list[str] = []
        for app in apps:
            env = env_name(app.name, branch_of(pull))
            if action in DEPLOY_ACTIONS:
                reason = self._policy_allows(app, pull)
                if reason:
                    why.append(reason)
                    if pull.fork:
                        self._link(app, pull)  # so a maintainer's comment finds it
                    continue
                done.append(self._deploy_pull(app, pull, pull.author, tell=action == "opened"))
            elif action == "synchronize":
                if pull.fork:
                    self._link(app, pull)  # its new head, recorded; a maintainer decides
                    why.append(
                        f"a fork's new commits are not deployed automatically "
                        f"({pull.head_sha[:7]}: a maintainer's `/revieee deploy` deploys it)"
                    )
                    continue
                if self._live(env) or self._policy_allows(app, pull) is None:
                    done.append(self._deploy_pull(app, pull, pull.author))
                else:
                    why.append(f"{env} does not exist")
            elif action == "edited":
                # a new description: its revieee block may change the environment's settings
                if "body" not in (payload.get("changes") or {}) or not self._live(env):
                    why.append(f"pull_request edited: nothing for {env}")
                elif not self._settings_changed(env, pull):
                    why.append(f"the revieee block of the description did not change {env}")
                else:
                    done.append(self._deploy_pull(app, pull, pull.author, settings_changed=True))
            elif action in ("labeled", "unlabeled"):
                label = (payload.get("label") or {}).get("name")
                if label != app.label or app.pull_requests != "label":
                    why.append(f"label {label!r} means nothing to {app.name}")
                    continue
                sender = (payload.get("sender") or {}).get("login")
                if action == "labeled":
                    reason = self._policy_allows(app, pull)
                    if reason:
                        why.append(reason)
                        continue
                    done.append(self._deploy_pull(app, pull, sender))
                elif self._live(env):
                    self._link(app, pull)
                    self.core.intake.request_stop(env, requested_by=sender, source=SOURCE)
                    done.append(env)
                else:
                    why.append(f"{env} is not running")
            elif action == "closed":
                if not self.store.get_pull(pull.repository, pull.number) and not self._live(env):
                    why.append(f"{env} does not exist")
                    continue
                self._link(app, pull)
                if not self._live(env):
                    why.append(f"{env} is already stopped")
                    continue
                done.append(env)
                self._schedule_stop(app, env, pull)
            else:
                why.append(f"pull_request {action} does nothing")
        verb = {"closed": "stop", "unlabeled": "stop"}.get(action, "deploy")
        if done:
            return Outcome(f"{verb} {', '.join(done)}", done)
        return Outcome("ignored: " + "; ".join(dict.fromkeys(why)))

    def _schedule_stop(self, app: AppConfig, env: str, pull: PullInfo) -> None:
        item = {"env": env, "repository": pull.repository, "number": pull.number}
        delay = app.stop_after_close
        if delay <= 0:
            self._stop_after_close(item)
            return
        due = (self.clock() + timedelta(seconds=delay)).isoformat()
        self.store.inbox_add(SOURCE, STOP_AFTER_CLOSE, json.dumps(item), due_at=due)

    def _stop_after_close(self, item: dict[str, Any]) -> Outcome:
        env = item["env"]
        linked = self.store.get_pull(item["repository"], item["number"])
        if linked is not None and linked.get("state") == "open":
            return Outcome(f"kept {env}: its pull request was reopened")
        if not self._live(env):
            return Outcome(f"{env} is already stopped")
        self.core.intake.request_stop(env, requested_by="github", source=SOURCE)
        return Outcome(f"stop {env}", [env])

    # -- pushes and deleted branches -------------------------------------------------------------

    def _on_push(self, payload: dict[str, Any], apps: list[AppConfig]) -> Outcome:
        ref = payload.get("ref", "")
        if not ref.startswith("refs/heads/"):
            return Outcome(f"ignored: {ref} is not a branch")
        if payload.get("deleted"):
            return Outcome("ignored: a deleted branch (the delete event stops it)")
        branch = ref.removeprefix("refs/heads/")
        sha = payload.get("after", "")
        repository = payload["repository"]["full_name"]
        pusher = (payload.get("pusher") or {}).get("name") or (payload.get("sender") or {}).get(
            "login"
        )
        done = []
        for app in apps:
            env = env_name(app.name, branch)
            if not self._live(env) or self._already_deploying(env, sha):
                continue
            context: dict[str, Any] = {
                "sha_repository": as_configured(app, repository),
                "repository": repository,
            }
            self.core.intake.request_deploy(
                branch, app.name, sha=sha, requested_by=pusher, source=SOURCE, context=context
            )
            done.append(env)
        if done:
            return Outcome(f"redeploy {', '.join(done)} at {sha[:7]}", done)
        return Outcome(f"ignored: no environment of {branch} to update")

    def _on_delete(self, payload: dict[str, Any], apps: list[AppConfig]) -> Outcome:
        if payload.get("ref_type") != "branch":
            return Outcome(f"ignored: a deleted {payload.get('ref_type')}")
        branch = payload["ref"]
        sender = (payload.get("sender") or {}).get("login")
        done = []
        for app in apps:
            env = env_name(app.name, branch)
            if self._live(env):
                self.core.intake.request_stop(env, requested_by=sender, source=SOURCE)
                done.append(env)
        if done:
            return Outcome(f"stop {', '.join(done)}", done)
        return Outcome(f"ignored: no environment of {branch}")

    # -- CI ------------------------------------------------------------------------------------

    def _on_workflow_run(self, payload: dict[str, Any], apps: list[AppConfig]) -> Outcome:
        """A finished CI run: deploys waiting for its commit's image (image_source = "wait")
        end their wait early, on success or failure."""
        run = payload.get("workflow_run") or {}
        if payload.get("action") != "completed" or not run.get("head_sha"):
            return Outcome(f"ignored: workflow_run {payload.get('action')}")
        # the engine looks runs up by a service's repository, spelt as the (first) app spells it
        repository = as_configured(apps[0], payload["repository"]["full_name"])
        self.store.record_ci_run(
            int(run["id"]),
            repository=repository,
            sha=str(run["head_sha"]),
            name=run.get("name") or (payload.get("workflow") or {}).get("name") or "",
            conclusion=run.get("conclusion") or "",
            html_url=run.get("html_url") or "",
            completed_at=run.get("updated_at") or self.clock().isoformat(),
        )
        return Outcome(
            f"recorded CI run {run['id']} of {str(run['head_sha'])[:7]}: {run.get('conclusion')}"
        )

    # -- comment commands -------------------------------------------------------------------------

    def _on_issue_comment(self, payload: dict[str, Any], apps: list[AppConfig]) -> Outcome:
        if payload.get("action") != "created":
            return Outcome(f"ignored: comment {payload.get('action')}")
        issue = payload.get("issue") or {}
        comment = payload.get("comment") or {}
        body = (comment.get("body") or "").strip()
        if not issue.get("pull_request"):
            return Outcome("ignored: a comment on an issue, not a pull request")
        if not body.startswith(COMMAND_PREFIX):
            return Outcome("ignored: not a /revieee command")
        repository = payload["repository"]["full_name"]
        user = (comment.get("user") or {}).get("login", "")
        comment_id = int(comment["id"])
        if self.forge is None:
            return Outcome("ignored: no GitHub credentials to answer with")
        line = body.splitlines()[0][len(COMMAND_PREFIX) :].strip()
        permission = self.forge.permission(repository, user)
        caller = Caller(user, SOURCE, {"repository": repository}, permission=permission)
        admitted = self.authz.check(caller)  # before the comment is even parsed
        if not admitted.allowed:
            self.store.audit(
                "refused", user, None, SOURCE, verb=line, reason=f"permission {permission}"
            )
            self.forge.react(repository, comment_id, "-1")
            self._reply(repository, int(issue["number"]), answer(user, admitted.reason + "."))
            return Outcome(f"refused: {user} has {permission} permission")
        pull = self.forge.pull(repository, int(issue["number"]))
        app = apps[0]
        try:
            cmd = parse(self._with_defaults(line, pull))
        except UsageError as exc:
            self.forge.react(repository, comment_id, "confused")
            self._reply(repository, pull.number, answer(user, exc))
            return Outcome(f"usage error: {exc}")
        context: dict[str, Any] = {"repository": repository}
        if isinstance(cmd, Deploy):
            if not cmd.app:
                cmd = dataclasses.replace(cmd, app=app.name)
            if cmd.branch == branch_of(pull) and not cmd.sha:
                # this pull request's head, as that commit (a fork's branch is not looked up)
                cmd = dataclasses.replace(cmd, sha=pull.head_sha)
            elif not cmd.sha and not is_branch_name(cmd.branch):
                error = (
                    f"{cmd.branch!r} is not a branch name (git-check-ref-format): to deploy a "
                    "fork's pull request, comment `/revieee deploy` on it, or pass --sha"
                )
                self.forge.react(repository, comment_id, "confused")
                self._reply(repository, pull.number, answer(user, error))
                return Outcome(f"usage error: {error}")
            chosen = self.settings.apps.get(cmd.app or "", app)
            self._link(chosen, pull)
            context = self._context(chosen, pull)
        elif isinstance(cmd, Stop | Status | Keep | Logs) and not cmd.app:
            cmd = dataclasses.replace(cmd, app=app.name)
        # logs are read here and now: this runs on the inbox worker, not in the webhook's request
        fast = not isinstance(cmd, Logs)
        caller = Caller(user, SOURCE, context, fast=fast, permission=permission)
        reply = run(cmd, self.core, caller, self.authz)
        self.forge.react(repository, comment_id, "+1" if reply.ok else "confused")
        said = reply.text
        if isinstance(cmd, Logs) and reply.ok:
            said = logs_summary(reply.data["logs"])
            self._reply(repository, pull.number, logs_comment(user, reply.data["logs"]))
        elif not reply.ok or isinstance(cmd, Status | List | Help | Keep):
            self._reply(repository, pull.number, answer(user, reply.text))
        envs = [reply.data["env"]] if reply.data.get("env") else []
        return Outcome(f"{'ran' if reply.ok else 'failed'}: {line}: {said}", envs)

    @staticmethod
    def _with_defaults(line: str, pull: PullInfo) -> str:
        """``/revieee deploy`` (or stop, status, keep, logs) with no argument means this PR's
        branch."""
        try:
            words = shlex.split(line)
        except ValueError:
            return line
        verb_only = len(words) == 1 or (len(words) > 1 and words[1].startswith("-"))
        defaulted = ("deploy", "stop", "status", "keep", "logs")
        if words and words[0].lower() in defaulted and verb_only:
            words.insert(1, branch_of(pull))
        return shlex.join(words)

    def _reply(self, repository: str, number: int, text: str) -> None:
        assert self.forge is not None
        try:
            self.forge.upsert_comment(repository, number, None, text)
        except GitHubError as exc:
            log.warning("could not reply on %s#%s: %s", repository, number, exc)


def answer(user: str, said: object) -> str:
    """A command's answer (plain text) as a PR comment: to its author, in a code block."""
    return f"{mention(user)}\n" + "\n".join(fence(str(said), 60_000))


def logs_comment(user: str, result: ContainerLogs) -> str:
    """A ``logs`` answer as a PR comment: the newest lines that fit in :data:`MAX_LOG_CHARS`, in
    a code block, and how many older ones were left out."""
    kept: list[str] = []
    size = 0
    for line in reversed(result.lines):
        if size + len(line) + 1 > MAX_LOG_CHARS:
            break
        kept.append(line)
        size += len(line) + 1
    kept.reverse()
    parts = [f"{mention(user)} {md_text(logs_summary(result), None)}"]
    if kept:
        parts.append("\n".join(fence("\n".join(kept), None)))  # no line can close the block
    left_out = len(result.lines) - len(kept)
    if left_out:
        parts.append(
            f"{left_out} earlier line(s) left out to fit in a comment; ask for fewer with "
            "`--lines` or a shorter `--since`."
        )
    parts += [f"- {md_text(note, 1000)}" for note in result.notes]
    parts += [
        f"- [log group {code(g)} in the AWS console]({link})" for g, link in result.links.items()
    ]
    return "\n\n".join(parts)

"""The ``revieee`` console script.

``revieee [--config PATH] VERB ...`` runs the same verbs as Slack and GitHub (deploy, stop, list,
status, keep, logs, help) through the same parser, plus the terminal-only ``check``, ``worker``
and ``demo``. ``--help`` (or ``-h``), alone or after any of them, and ``help [VERB]`` answer
from the verbs' docstrings and :data:`EXTRA` without loading any configuration.
Exit codes: 0 done, 1 the operation or check failed, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bot.config import ConfigError, Secrets, load_settings
from bot.events import LogLines, Step
from bot.jsonlog import configure as configure_logging
from commands.parser import UsageError, parse_words
from commands.run import Caller, Reply, format_help, run
from commands.verbs import VERBS, Command, Help

if TYPE_CHECKING:
    from bot.app import Runtime
    from bot.config import Settings

# The terminal-only subcommands, written like the verbs' docstrings (commands/verbs.py): the
# first line is the usage, the rest the description; ``help`` and ``--help`` show them.
EXTRA = {
    "check": "check [--permissions [--role ARN]]\n"
    "check the configuration and that the cluster, namespace, subnets, security groups, "
    "template task definitions and ECR repositories exist; --permissions also asks IAM whether "
    "the role may make every call the configuration needs",
    "serve": "serve [--host H] [--port P] [--socket-mode]\n"
    "Slack (and GitHub) front doors and /healthz; the worker pool in a child process",
    "worker": "worker\nrun queued operations (and resume interrupted ones) until stopped",
    "demo": "demo\nrun the whole flow against the built-in AWS sandbox (no AWS account needed)",
    "proxy-config": "proxy-config --revieee-url URL [--resolver IP] [--namespace NAME] "
    "[--out FILE]\n"
    "print (or write to FILE) the reverse proxy's nginx configuration for the apps of "
    "revieee.toml: each app's public service at its port, token-protected apps asking revieee "
    "at URL, and wake on visit through it; NAME: the Cloud Map namespace's name when "
    "revieee.toml names it by id",
    "bypass-token": "bypass-token APP\n"
    "print the token automation sends in the X-Revieee-Token header to open any environment "
    'of APP (access = "token"); made from REVIEEE_PROXY_SECRET',
    "gc-images": "gc-images [--dry-run]\n"
    "delete untagged images in the ECR repositories revieee builds into, except those an "
    "environment runs",
}
HELP_FLAGS = ("-h", "--help")
USAGE = "usage: revieee [--config PATH] [-v] [-h] VERB ..."


def extra_usage(name: str) -> str:
    """``usage: revieee check [--permissions [--role ARN]]``: a terminal-only subcommand's usage."""
    return "usage: revieee " + EXTRA[name].splitlines()[0]


def extra_help(name: str) -> str:
    """A terminal-only subcommand's usage and description, as ``format_help(verb)`` is a verb's."""
    return extra_usage(name) + "\n" + " ".join(EXTRA[name].splitlines()[1:])


def terminal_help() -> str:
    """``revieee help`` (and ``--help``): every verb, then the terminal-only subcommands."""
    lines = [USAGE, "", format_help(), "", "terminal only:"]
    for text in EXTRA.values():
        usage_line, *rest = text.splitlines()
        lines.append(f"  {usage_line:<48} {' '.join(rest)}")
    lines += ["", "options: --config PATH (or REVIEEE_CONFIG), -v/--verbose, -h/--help"]
    lines.append("`revieee VERB --help` shows one verb; none of this needs a configuration.")
    return "\n".join(lines)


def _terminal_help(words: list[str]) -> str | None:
    """The answer to ``help``, ``--help``, ``help SUBCOMMAND`` and ``SUBCOMMAND --help`` for the
    terminal-only subcommands; ``None`` for anything else (the verbs' help is the parser's)."""
    verb = words[0].lower() if words else "help"
    if verb in HELP_FLAGS or (verb == "help" and len(words) == 1):
        return terminal_help()
    if verb == "help" and len(words) == 2 and words[1].lower() in EXTRA:
        return extra_help(words[1].lower())
    if verb in EXTRA and any(word in HELP_FLAGS for word in words[1:]):
        return extra_help(verb)
    return None


def _argparser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="revieee",
        add_help=False,
        description="Review environments on AWS ECS for every branch.",
        epilog="verbs: " + ", ".join([*VERBS, *EXTRA]),
    )
    parser.add_argument("-h", "--help", action="store_true", help="show the verbs and exit")
    parser.add_argument(
        "--config", help="path to revieee.toml (default: $REVIEEE_CONFIG, then ./revieee.toml)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log each step to stderr")
    parser.add_argument("words", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _argparser().parse_args(argv)
    words = list(args.words)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    if args.help:  # `revieee --help`, `revieee -h deploy`
        words = ["help", *words[:1]]
    answer = _terminal_help(words)
    if answer is not None:  # help needs no configuration
        print(answer)
        return 0
    verb = words[0].lower()
    if verb == "demo":
        from bot.demo import run_demo

        return run_demo()
    try:
        if verb == "serve":
            return _serve(words[1:], args.config)
        if verb == "gc-images":
            if words[1:] not in ([], ["--dry-run"]):
                raise UsageError(extra_usage("gc-images"))
            return _gc_images(load_settings(args.config), dry_run=len(words) > 1)
        if verb == "proxy-config":
            found = _proxy_options(words[1:])
            from bot.proxyconf import VPC_RESOLVER, nginx_config

            try:
                text = nginx_config(
                    load_settings(args.config),
                    found["--revieee-url"],
                    found.get("--resolver") or VPC_RESOLVER,
                    namespace=found.get("--namespace"),
                )
            except ValueError as exc:
                raise UsageError(f"{exc}\n{extra_usage('proxy-config')}") from None
            if found.get("--out"):
                Path(found["--out"]).write_text(text)
            else:
                print(text, end="")
            return 0
        if verb == "bypass-token":
            return _bypass_token(words[1:], load_settings(args.config))
        if verb == "check":
            permissions, role = _check_options(words[1:])
            return _check(load_settings(args.config), permissions, role)
        if verb in EXTRA:
            if len(words) > 1:
                raise UsageError(f"{verb} takes no arguments")
            return _worker(load_settings(args.config))
        command = parse_words(words)
        if isinstance(command, Help):  # `help VERB`, `VERB --help`: before any configuration
            print(format_help(command.verb))
            return 0
        settings = load_settings(args.config)
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    return _run_verb(settings, command)


def _bypass_token(words: list[str], settings: Settings) -> int:
    from bot.access import bypass_token

    if len(words) != 1 or words[0] not in settings.apps:
        apps = ", ".join(sorted(settings.apps))
        raise UsageError(f"{extra_usage('bypass-token')}\nAPP: one of {apps}")
    secret = os.environ.get("REVIEEE_PROXY_SECRET", "")
    if not secret:
        raise UsageError("bypass-token needs REVIEEE_PROXY_SECRET in the environment")
    if settings.apps[words[0]].access != "token":
        print(f'note: app {words[0]} is not access = "token"', file=sys.stderr)
    print(bypass_token(secret, words[0]))
    return 0


def _proxy_options(words: list[str]) -> dict[str, str]:
    """``--revieee-url URL [--resolver IP] [--namespace NAME] [--out FILE]`` (each as
    ``--flag=value`` too)."""
    found: dict[str, str] = {}
    rest = iter(words)
    for word in rest:
        name, eq, value = word.partition("=")
        if name not in ("--revieee-url", "--resolver", "--namespace", "--out"):
            raise UsageError(extra_usage("proxy-config"))
        value = value if eq else next(rest, "")
        if not value:
            raise UsageError(f"{name} needs a value\n{extra_usage('proxy-config')}")
        found[name] = value
    if "--revieee-url" not in found:
        raise UsageError(f"--revieee-url is required\n{extra_usage('proxy-config')}")
    return found


def _run_verb(settings: Settings, command: Command) -> int:
    from bot.app import build

    runtime = build(settings)
    try:
        return execute(runtime, command, actor=getpass.getuser())
    finally:
        runtime.store.close()


def execute(runtime: Runtime, command: Command, actor: str | None) -> int:
    """Run one command in this process, printing what a user sees; returns the exit code."""
    reply: Reply = run(command, runtime.core, Caller(actor, "cli"))
    print(reply.text)
    if not reply.ok:
        return 1
    op = reply.operation
    if op is None:
        return 0

    def show(step: Step) -> None:
        if step.op.id == op.id:
            print(f"  [{step.step}] {step.message}", flush=True)

    def show_log(lines: LogLines) -> None:
        if lines.op.id != op.id:
            return
        event = lines.event
        if event.note:
            print(f"  [{event.stream}] {event.note}", flush=True)
        for line in event.lines:
            print(f"  | {line}", flush=True)
        if event.done and event.failed and event.link:
            print(f"  [{event.stream}] full log: {event.link}", flush=True)

    unsubscribe = [runtime.bus.subscribe(Step, show), runtime.bus.subscribe(LogLines, show_log)]
    try:
        if runtime.runner.run_until_idle(only=op.id) == 0:
            print(
                f"operation {op.id} waits behind another operation on {op.env}; a running "
                "`revieee worker` will carry it out"
            )
            return 0
    finally:
        for stop in unsubscribe:
            stop()
    done = runtime.store.get_operation(op.id)
    if done.status != "succeeded":
        print(f"operation {op.id} failed: {done.error}", file=sys.stderr)
        return 1
    env = runtime.store.get_env(op.env) or {}
    print(f"{op.env}: {env.get('status')} {env.get('url') or ''}".rstrip())
    return 0


def _gc_images(settings: Settings, dry_run: bool) -> int:
    from bot.app import build
    from bot.engine import EngineError

    runtime = build(settings)
    try:
        repositories = runtime.core.executor.images.managed_repositories()
        if not repositories:
            print('no repository to collect: no service has image_source = "codebuild"')
            return 0
        said: list[str] = []
        try:
            gone = runtime.core.executor.images.gc_untagged(
                dry_run=dry_run, report=lambda step, line: said.append(line)
            )
        except EngineError as exc:
            print(str(exc), file=sys.stderr)
            return 1
        verb = "would delete" if dry_run else "deleted"
        print(f"{verb} {len(gone)} untagged image(s) in {', '.join(repositories)}")
        for line in said:  # per repository, with what was kept and why
            print(f"  {line}")
        for ref in gone:
            print(f"  {ref}")
        return 0
    finally:
        runtime.close()


def _check_options(words: list[str]) -> tuple[bool, str | None]:
    usage = extra_usage("check")
    permissions, role = False, None
    rest = list(words)
    while rest:
        word = rest.pop(0)
        if word == "--permissions":
            permissions = True
        elif word == "--role" and rest and rest[0].startswith("arn:"):
            role = rest.pop(0)
        else:
            raise UsageError(usage)
    if role and not permissions:
        raise UsageError(usage)
    return permissions, role


def _check(settings: Settings, permissions: bool = False, role: str | None = None) -> int:
    from bot import permissions as perms
    from bot.aws import build_clients
    from bot.engine import Engine

    engine = Engine(build_clients(settings.aws_retry_mode, 2), settings)
    print(f"configuration: OK ({len(settings.apps)} app(s): {settings.app_names})")
    problems = engine.check()
    failed = bool(problems)
    if problems:
        print(f"{len(problems)} problem(s) in AWS:")
        for problem in problems:
            print(f"  - {problem}")
    else:
        print(
            f"AWS: OK (cluster {settings.cluster}, namespace {settings.namespace}, "
            f"{len(settings.subnets)} subnet(s), {len(settings.security_groups)} "
            "security group(s))"
        )
    if permissions:
        lines, allowed = perms.report(settings, engine, role)
        print("\n".join(lines))
        failed = failed or not allowed
    return 1 if failed else 0


def _serve(argv: list[str], config: str | None) -> int:
    from bot.app import build
    from bot.config import Secrets
    from bot.server import port_from, serve

    parser = argparse.ArgumentParser(  # `serve --help` is answered before, from EXTRA
        prog="revieee serve",
        usage=extra_usage("serve").removeprefix("usage: "),
        add_help=False,
        exit_on_error=False,
    )
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--socket-mode", action="store_true")
    try:
        opts = parser.parse_args(argv)
    except argparse.ArgumentError as exc:
        raise UsageError(f"serve: {exc}") from None
    settings = load_settings(config)
    port = port_from(opts.port)
    secrets = Secrets.from_environ()
    secrets.require("SLACK_BOT_TOKEN")
    secrets.require("SLACK_APP_TOKEN" if opts.socket_mode else "SLACK_SIGNING_SECRET")
    configure_logging(settings.log_format, settings.log_level, secrets.values.values())
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    runtime = build(settings, secrets)
    worker = None
    if settings.worker_process:
        from bot.workerproc import WorkerProcess

        worker = WorkerProcess.for_serve(runtime.bus, config)
    serve(runtime, secrets, opts.host, port, opts.socket_mode, stop, worker)
    return 0


def _worker(settings: Settings) -> int:
    from bot.app import build

    configure_logging(
        settings.log_format, settings.log_level, Secrets.from_environ().values.values()
    )
    from bot.workerproc import speak

    runtime = build(settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    speak(runtime.bus, runtime.runner.wake, stop)  # started by `serve`: its events go there
    resumed, failed = runtime.runner.start()
    waiting = len(runtime.store.waiting_operations())
    print(
        f"worker started: {len(resumed)} operation(s) resumed, {len(failed)} failed after "
        f"repeated interruptions, {waiting} rollout(s) waiting",
        flush=True,
    )
    stop.wait()
    print("worker stopping: draining running operations", flush=True)
    runtime.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

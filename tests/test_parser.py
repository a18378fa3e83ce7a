"""commands/parser.py and commands/verbs.py: text becomes a typed command or a usage error."""

from __future__ import annotations

import pytest

from bot.text import span
from commands.parser import UsageError, parse, parse_words
from commands.run import format_help
from commands.verbs import (
    VERBS,
    Command,
    Deploy,
    Help,
    List,
    Logs,
    Status,
    Stop,
    description,
    usage,
)

SHA40 = "0123456789abcdef0123456789abcdef01234567"

VALID: list[tuple[str, Command]] = [
    # deploy
    ("deploy my-branch", Deploy("my-branch")),
    ("deploy feature/x", Deploy("feature/x")),
    (
        "deploy my-branch --app web --sha abc1234 --wait",
        Deploy("my-branch", app="web", sha="abc1234", wait=True),
    ),
    ("deploy my-branch --app=web", Deploy("my-branch", app="web")),
    ("deploy --app web my-branch", Deploy("my-branch", app="web")),
    ("deploy --wait my-branch", Deploy("my-branch", wait=True)),
    ("deploy my-branch --sha=ABCDEF1", Deploy("my-branch", sha="abcdef1")),
    (f"deploy my-branch --sha {SHA40}", Deploy("my-branch", sha=SHA40)),
    ("deploy 'my branch with spaces'", Deploy("my branch with spaces")),
    ('deploy "feature/café ünïcode" --app web', Deploy("feature/café ünïcode", app="web")),
    ("deploy fix\\ bug", Deploy("fix bug")),
    (
        'deploy x --set A=1 --set "B=two words" --set=C=a=b --unset D',
        Deploy("x", set=("A=1", "B=two words", "C=a=b"), unset=("D",)),
    ),
    ("deploy x --set EMPTY=", Deploy("x", set=("EMPTY=",))),
    ("deploy fix#12", Deploy("fix#12")),
    ("  deploy   my-branch  ", Deploy("my-branch")),
    ("DEPLOY Main", Deploy("Main")),  # the verb is case-insensitive, the branch is not
    # stop
    ("stop web-my-branch", Stop("web-my-branch")),
    ("stop feature/x --app shop", Stop("feature/x", app="shop")),
    ("stop 'a b' --app=shop", Stop("a b", app="shop")),
    # list
    ("list", List()),
    ("list --mine", List(mine=True)),
    ("list --all", List(all=True)),
    ("list --app web", List(app="web")),
    ("list --mine --app web --all", List(mine=True, app="web", all=True)),
    ("list --all --app=web --mine", List(mine=True, app="web", all=True)),
    # status
    ("status web-my-branch", Status("web-my-branch")),
    ("status feature/x --app web", Status("feature/x", app="web")),
    # logs: --since becomes seconds, --lines a number
    ("logs web-my-branch", Logs("web-my-branch")),
    ("logs feature/x --app shop --service api", Logs("feature/x", app="shop", service="api")),
    ("logs x --since 30s", Logs("x", since=30)),
    ("logs x --since=2h --lines 5", Logs("x", since=7200, lines=5)),
    ("logs x --since 1D", Logs("x", since=86400)),
    ("logs x --since 10080m --lines 5000", Logs("x", since=604800, lines=5000)),
    ("logs x --lines=1", Logs("x", lines=1)),
    ("logs --lines 7 x", Logs("x", lines=7)),
    ("logs -h", Help("logs")),
    # help
    ("help", Help()),
    ("help deploy", Help("deploy")),
    ("help STOP", Help("stop")),
    ("help help", Help("help")),
    ("", Help()),
    ("   ", Help()),
    ("--help", Help()),
    ("-h", Help()),
    ("deploy --help", Help("deploy")),
    ("stop -h", Help("stop")),
    ("list --mine -h", Help("list")),
]


@pytest.mark.parametrize(("text", "expected"), VALID)
def test_parse(text: str, expected: Command) -> None:
    assert parse(text) == expected
    assert type(parse(text)) is type(expected)


# text -> (fragment of the problem, verb whose usage is shown or None for all verbs)
INVALID: list[tuple[str, str, str | None]] = [
    ("deplyo my-branch", "unknown command 'deplyo' (did you mean 'deploy'?)", None),
    ("stpo x", "(did you mean 'stop'?)", None),
    ("lsit", "(did you mean 'list'?)", None),
    ("frobnicate", "unknown command 'frobnicate'\n", None),
    ("deploy my-branch --force", "unknown option '--force' for deploy", "deploy"),
    ("deploy my-branch --force=yes", "unknown option '--force' for deploy", "deploy"),
    ("deploy my-branch --branch x", "unknown option '--branch' for deploy", "deploy"),
    ("list --wait", "unknown option '--wait' for list", "list"),
    ("stop x --sha abc1234", "unknown option '--sha' for stop", "stop"),
    ("status x --mine", "unknown option '--mine' for status", "status"),
    ("deploy", "deploy needs BRANCH", "deploy"),
    ("deploy --app web", "deploy needs BRANCH", "deploy"),
    ("stop", "stop needs ENV", "stop"),
    ("status --app web", "status needs ENV", "status"),
    ("deploy a b", "unexpected argument 'b' for deploy", "deploy"),
    ("stop a b", "unexpected argument 'b' for stop", "stop"),
    ("status a b", "unexpected argument 'b' for status", "status"),
    ("list everything", "unexpected argument 'everything' for list", "list"),
    ("deploy x --app", "--app needs a value", "deploy"),
    ("deploy x --app=", "--app needs a value", "deploy"),
    ("deploy x --app --wait", "--app needs a value", "deploy"),
    ("deploy x --sha", "--sha needs a value", "deploy"),
    ("list --app", "--app needs a value", "list"),
    ("deploy x --wait=true", "--wait takes no value", "deploy"),
    ("list --mine=yes", "--mine takes no value", "list"),
    ("list --all=", "--all takes no value", "list"),
    (
        "deploy x --sha xyz",
        "--sha must be a commit hash (7-40 hex characters), got 'xyz'",
        "deploy",
    ),
    ("deploy x --sha abc123", "--sha must be a commit hash", "deploy"),
    ("deploy x --sha g123456", "--sha must be a commit hash", "deploy"),
    (f"deploy x --sha {SHA40}0", "--sha must be a commit hash", "deploy"),
    ("deploy x --sha=abc-1234", "--sha must be a commit hash", "deploy"),
    ("logs", "logs needs ENV", "logs"),
    ("logs x y", "unexpected argument 'y' for logs", "logs"),
    ("logs x --tail 5", "unknown option '--tail' for logs", "logs"),
    ("logs x --lines", "--lines needs a value", "logs"),
    ("logs x --since=", "--since needs a value", "logs"),
    (
        "logs x --since 8d",
        "--since for logs must be a duration like 30s, 15m, 2h or 1d, at most 7d (got '8d')",
        "logs",
    ),
    ("logs x --since 15", "--since for logs must be a duration", "logs"),
    ("logs x --since 0m", "--since for logs must be a duration", "logs"),
    ("logs x --since 2w", "--since for logs must be a duration", "logs"),
    ("logs x --since -5m", "--since for logs must be a duration", "logs"),
    ("logs x --since 1h30m", "--since for logs must be a duration", "logs"),
    ("logs x --since 604801s", "at most 7d (got '604801s')", "logs"),
    (
        "logs x --lines 0",
        "--lines for logs must be a whole number from 1 to 5000 (got '0')",
        "logs",
    ),
    ("logs x --lines 5001", "--lines for logs must be a whole number from 1 to 5000", "logs"),
    ("logs x --lines ten", "--lines for logs must be a whole number", "logs"),
    ("logs x --lines 1.5", "--lines for logs must be a whole number", "logs"),
    ("logs x --lines -3", "--lines for logs must be a whole number", "logs"),
    ("deploy 'unbalanced", "cannot read that command: No closing quotation", None),
    ('deploy "unbalanced', "cannot read that command: No closing quotation", None),
    ("deploy x\\", "cannot read that command", None),
    ("help nosuch", "no help for 'nosuch': there is no such command", None),
    ("deploy x --set A", "--set takes KEY=VALUE (got 'A')", "deploy"),
    ("deploy x --set =1", "--set takes KEY=VALUE", "deploy"),
    ("deploy x --set", "--set needs a value", "deploy"),
    ("deploy x --unset A=1", "--unset takes a KEY alone", "deploy"),
]


@pytest.mark.parametrize(("text", "problem", "verb"), INVALID)
def test_usage_error(text: str, problem: str, verb: str | None) -> None:
    with pytest.raises(UsageError) as info:
        parse(text)
    message = str(info.value)
    assert problem in message
    assert "usage:" in message
    assert info.value.verb == verb
    if verb:
        assert message.endswith(f"\nusage: {usage(verb)}")
    else:
        assert all(usage(v) in message for v in VERBS)


def test_no_hint_when_nothing_is_close() -> None:
    with pytest.raises(UsageError) as info:
        parse("xyzzy")
    assert "did you mean" not in str(info.value)


def test_parse_words_takes_words_as_they_are() -> None:
    assert parse_words(["deploy", "my branch", "--app", "web"]) == Deploy("my branch", app="web")
    assert parse_words([]) == Help()


@pytest.mark.parametrize("verb", list(VERBS))
def test_every_verb_has_usage_and_description(verb: str) -> None:
    assert usage(verb).startswith(verb)
    assert description(verb)
    assert parse(f"help {verb}") == Help(verb)


def test_help_lists_every_verb() -> None:
    text = format_help()
    for verb in VERBS:
        assert f"\n  {usage(verb)}" in text


@pytest.mark.parametrize("verb", list(VERBS))
def test_help_for_one_verb_shows_its_usage_and_description(verb: str) -> None:
    assert format_help(verb) == f"usage: {usage(verb)}\n{description(verb)}"


def test_help_verb_given_as_an_option_is_checked() -> None:
    try:
        command = parse("help --verb nosuch")
    except UsageError:
        return
    assert isinstance(command, Help)
    format_help(command.verb)


def test_extra_argument_to_help_names_the_extra_word() -> None:
    with pytest.raises(UsageError, match="unexpected argument 'extra'"):
        parse("help deploy extra")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (1, "1s"),
        (59, "59s"),
        (60, "1m"),
        (900, "15m"),
        (5400, "90m"),
        (3600, "1h"),
        (90000, "25h"),
        (86400, "1d"),
        (604800, "7d"),
    ],
)
def test_logs_since_is_said_the_way_it_is_typed(seconds: int, text: str) -> None:
    assert span(seconds) == text
    assert parse(f"logs x --since {text}") == Logs("x", since=seconds)

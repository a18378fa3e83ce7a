"""``list`` in pages: the parser's ``--page``, the store's page and count, the text and Block
Kit of a page, and Slack's Previous and Next buttons over real signed HTTP."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.slack.blocks import (
    ACTION_LIST_NEXT,
    ACTION_LIST_PREVIOUS,
    MAX_HOME_BLOCKS,
    home_view,
    list_blocks,
)
from bot.store import Store
from commands.parser import UsageError, parse
from commands.run import Caller, format_list, run
from commands.verbs import MAX_PAGE, PAGE_SIZE, List, usage
from tests.conftest import MakeRig
from tests.slack_rig import SlackRig
from tests.slack_rules import block_problems
from tests.test_slack_blocks import golden, within_limits

NOW = datetime(2026, 11, 22, 10, 7, 30, tzinfo=UTC)
ENVS = 95  # three pages of 40: 40, 40 and 15


def _row(
    i: int, app: str = "shop", owner: str = "U0ALICE", status: str = "running"
) -> dict[str, Any]:
    name = f"{app}-feature-{i:03d}"
    return {
        "name": name,
        "app": app,
        "branch": f"feature/{i:03d}",
        "status": status,
        "url": f"https://{name}.review.example.test",
        "owner": owner,
        "created_at": (NOW - timedelta(minutes=i)).isoformat(),  # 000 is the newest
        "expires_at": None,
    }


def _rows(n: int) -> list[dict[str, Any]]:
    return [_row(i) for i in range(n)]


def _fill(store: Store, n: int = ENVS) -> None:
    """``n`` running environments of shop (every third one Bob's), then a stopped one and
    one of another app, each a minute older than the last."""
    with store.immediate():
        for i in range(n):
            row = _row(i, owner="U0BOB" if i % 3 == 0 else "U0ALICE")
            store.upsert_env(row.pop("name"), **row)
        for row in (_row(n, status="stopped"), _row(n + 1, app="blog")):
            store.upsert_env(row.pop("name"), **row)


def _lines(blocks: list[dict[str, Any]]) -> list[str]:
    """The environments' lines of a listing (its sections after the title)."""
    sections = [b["text"]["text"] for b in blocks[1:] if b["type"] == "section"]
    return [line for text in sections for line in text.split("\n")]


def _buttons(blocks: list[dict[str, Any]]) -> dict[str, str]:
    """The listing's page buttons: action_id -> value."""
    actions = [b for b in blocks if b["type"] == "actions"]
    return {e["action_id"]: e["value"] for b in actions for e in b["elements"]}


# -- the parser ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("list", List()),
        ("list --page 3", List(page=3)),
        ("list --page=2 --mine", List(mine=True, page=2)),
        ("list --app web --all --page 12", List(app="web", all=True, page=12)),
        (f"list --page {MAX_PAGE}", List(page=MAX_PAGE)),
    ],
)
def test_list_takes_a_page(text: str, expected: List) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "list --page 0",
        "list --page -1",
        "list --page two",
        "list --page 1.5",
        "list --page \uff12",  # a full-width digit two
        f"list --page {MAX_PAGE + 1}",
        "list --page",
        "list --page=",
    ],
)
def test_a_page_that_is_not_a_whole_number_from_one_is_refused_with_the_usage(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse(text)
    assert "--page" in info.value.problem
    assert f"usage: {usage('list')}" in str(info.value)
    assert "[--page N]" in usage("list")


@pytest.mark.parametrize(
    "cmd",
    [List(), List(mine=True), List(app="shop", all=True), List(app="my app; rm -rf", mine=True)],
)
def test_a_listing_at_a_page_parses_back_to_itself(cmd: List) -> None:
    assert parse(cmd.at_page(7)) == dataclasses.replace(cmd, page=7)


# -- the store ----------------------------------------------------------------------------------


def test_the_store_returns_a_page_in_the_listings_order_and_counts_all(tmp_path: Path) -> None:
    store = Store(tmp_path / "revieee.db")
    _fill(store)
    every = [e["name"] for e in store.list_envs()]
    assert every == [f"shop-feature-{i:03d}" for i in range(ENVS)] + ["blog-feature-096"]
    pages = [
        [e["name"] for e in store.list_envs(limit=PAGE_SIZE, offset=n * PAGE_SIZE)]
        for n in range(4)
    ]
    assert [len(p) for p in pages] == [40, 40, 16, 0]
    assert [name for page in pages for name in page] == every
    assert store.count_envs() == ENVS + 1
    assert store.count_envs(include_stopped=True) == ENVS + 2
    assert store.count_envs(app="shop") == ENVS
    assert store.count_envs(app="shop", include_stopped=True) == ENVS + 1
    assert store.count_envs(owner="U0BOB") == 32
    assert store.count_envs(owner="U0BOB", app="blog") == 0
    bobs = store.list_envs(owner="U0BOB", limit=10, offset=30)
    assert [e["name"] for e in bobs] == ["shop-feature-090", "shop-feature-093"]
    assert [e["name"] for e in store.list_envs(app="blog", include_stopped=True)] == [
        "blog-feature-096"
    ]
    assert len(store.list_envs(limit=5000)) == ENVS + 1  # find_env's hint: a limit, no offset


def test_a_listing_walks_an_index_that_holds_its_filters(tmp_path: Path) -> None:
    """A deep page skips rows in the index, without reading the table for each (migration 9);
    an app's listing walks its own index in order: neither sorts."""
    store = Store(tmp_path / "revieee.db")
    columns = {
        name: [r[2] for r in store.db.conn.execute(f"pragma index_info({name})")]
        for name in ("idx_environments_created", "idx_environments_app_created")
    }
    assert columns["idx_environments_created"][:3] == ["created_at", "name", "status"]
    assert columns["idx_environments_app_created"][:3] == ["app", "created_at", "name"]
    for sql in (
        "select * from environments where +status in ('running') "
        "order by created_at desc, name limit 40 offset 4000",
        "select * from environments where +status in ('running') and app = 'shop' "
        "order by created_at desc, name limit 40 offset 400",
    ):
        plan = " ".join(str(r[-1]) for r in store.db.conn.execute(f"explain query plan {sql}"))
        assert "TEMP B-TREE" not in plan, plan


def test_queries_give_the_page_its_costs_and_the_total(make_rig: MakeRig) -> None:
    rig = make_rig()
    _fill(rig.runtime.store)
    queries = rig.runtime.core.queries
    page = queries.list_envs(page=3, page_size=PAGE_SIZE)
    assert (page.page, page.total, page.pages, len(page)) == (3, ENVS + 1, 3, 16)
    assert page[0]["name"] == "shop-feature-080" and all("cost" in r for r in page)
    past = queries.list_envs(page=9, page_size=PAGE_SIZE)
    assert (len(past), past.total, past.pages) == (0, ENVS + 1, 3)
    every = queries.list_envs()  # without a page size: every row, as before
    assert (len(every), every.total, every.pages) == (ENVS + 1, ENVS + 1, 1)


# -- the answer as text -------------------------------------------------------------------------


def test_the_text_says_which_page_and_how_to_see_the_next(make_rig: MakeRig) -> None:
    rig = make_rig()
    _fill(rig.runtime.store)
    core, caller = rig.runtime.core, Caller("U0ALICE", "cli")
    first = run(parse("list"), core, caller)
    assert first.ok
    assert first.text.splitlines()[-1] == (
        "page 1 of 3 (96 environments); `list --page 2` for more"
    )
    assert len(first.text.splitlines()) == 1 + PAGE_SIZE + 1
    assert {k: first.data[k] for k in ("count", "total", "page", "pages")} == {
        "count": 40,
        "total": 96,
        "page": 1,
        "pages": 3,
    }
    assert len(first.data["rows"]) == 40
    last = run(parse("list --page 3"), core, caller)
    assert last.text.splitlines()[-1] == "page 3 of 3 (96 environments)"
    assert "shop-feature-080" in last.text and "shop-feature-079" not in last.text
    mine = run(parse("list --mine --app shop --page 1"), core, caller)
    assert mine.text.splitlines()[-1] == (
        "page 1 of 2 (63 environments); `list --mine --app shop --page 2` for more"
    )
    past = run(parse("list --page 5"), core, caller)
    assert past.ok and past.data["rows"] == []
    assert past.text == (
        "no page 5: the last is page 3 (96 environment(s)); `list --page 3` shows it"
    )
    beyond = run(parse("list --app blog --page 2"), core, caller)  # one page in all
    assert beyond.text.startswith("no page 2: the last is page 1 (1 environment(s))")
    one = run(parse("list --app blog"), core, caller)
    assert one.text.splitlines()[-1] == "1 environment(s)"
    assert run(parse("list --app nope"), core, caller).text == "no environments"


def test_format_list_of_rows_alone_is_as_before() -> None:
    text = format_list(_rows(3))
    assert text.splitlines()[-1] == "3 environment(s)"
    assert format_list([]) == "no environments"


# -- Block Kit ----------------------------------------------------------------------------------


def test_a_page_golden() -> None:
    rows = _rows(ENVS)[PAGE_SIZE : 2 * PAGE_SIZE]
    text, blocks = list_blocks(rows, NOW, total=ENVS, pages=3, command=List(app="shop", page=2))
    within_limits(blocks)
    assert block_problems(blocks) == []
    golden("list-page", {"text": text, "blocks": blocks})


def test_each_page_has_its_position_and_the_buttons_it_needs() -> None:
    every = _rows(ENVS)
    for page, previous, following in ((1, None, 2), (2, 1, 3), (3, 2, None)):
        rows = every[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        cmd = List(mine=True, page=page)
        text, blocks = list_blocks(rows, NOW, total=ENVS, pages=3, command=cmd)
        assert block_problems(blocks) == []
        within_limits(blocks)
        assert text == f"Environments: {ENVS}, page {page} of 3"
        assert len(_lines(blocks)) == len(rows)
        buttons = _buttons(blocks)
        expected = {}
        if previous:
            expected[ACTION_LIST_PREVIOUS] = f"list --mine --page {previous}"
        if following:
            expected[ACTION_LIST_NEXT] = f"list --mine --page {following}"
        assert buttons == expected
        footer = next(b for b in blocks if b["type"] == "context")["elements"][0]["text"]
        first, last = (page - 1) * PAGE_SIZE + 1, min(page * PAGE_SIZE, ENVS)
        assert footer.startswith(f"Page {page} of 3 ({first}-{last} of {ENVS})")
        assert ("more" in footer) == (page < 3)


def test_a_page_past_the_end_leads_back_to_the_last() -> None:
    _, blocks = list_blocks([], NOW, total=ENVS, pages=3, command=List(page=9))
    assert block_problems(blocks) == []
    assert "Page 9 is past the end" in json.dumps(blocks)
    assert _buttons(blocks) == {ACTION_LIST_PREVIOUS: "list --page 3"}


def test_past_the_only_page_there_is_a_way_back_too() -> None:
    _, blocks = list_blocks([], NOW, total=6, pages=1, command=List(app="shop", page=2))
    assert "Page 2 is past the end: the last is page 1 (6 environment(s))." in json.dumps(blocks)
    assert _buttons(blocks) == {ACTION_LIST_PREVIOUS: "list --app shop --page 1"}


def test_one_page_looks_as_a_listing_always_did() -> None:
    rows = _rows(6)
    assert list_blocks(rows, NOW, total=6, pages=1, command=List()) == list_blocks(rows, NOW)


def test_a_page_of_the_longest_lines_stays_within_slacks_limits() -> None:
    rows = [
        {**r, "branch": "`*<@U1>*`" * 1200, "owner": "<!channel>" * 300, "cost": 1e9}
        for r in _rows(PAGE_SIZE)
    ]
    cmd = List(app="x" * 500, mine=True, all=True, page=MAX_PAGE - 1)
    _, blocks = list_blocks(rows, NOW, total=MAX_PAGE * PAGE_SIZE, pages=MAX_PAGE, command=cmd)
    assert block_problems(blocks) == []
    within_limits(blocks)
    assert len(_lines(blocks)) == PAGE_SIZE  # every line of the page is shown
    assert len(blocks) <= 15


def test_the_home_tab_shows_the_first_page_of_all_running_and_how_many_more() -> None:
    running = _rows(500)
    view = home_view(running[:2], running, NOW)
    assert block_problems(view["blocks"], "home") == []
    within_limits(view["blocks"], MAX_HOME_BLOCKS)
    listing = view["blocks"][[b["type"] for b in view["blocks"]].index("divider") + 1 :]
    assert "All running environments: 500" in listing[0]["text"]["text"]
    assert len(_lines(listing)) == PAGE_SIZE
    shown = json.dumps(listing, ensure_ascii=False)
    assert f"… and {500 - PAGE_SIZE} more: `/revieee list` shows them page by page" in shown
    assert _buttons(listing) == {}  # a Home tab has no response URL to page in


# -- Slack, over HTTP -----------------------------------------------------------------------------


@pytest.fixture
def rig(make_rig: MakeRig) -> SlackRig:
    made = make_rig()
    _fill(made.runtime.store)
    return made


def _response(rig: SlackRig, count: int) -> dict[str, Any]:
    rig.fake.wait_for(lambda: len(rig.fake.responses) >= count)
    rig.drain()
    assert len(rig.fake.responses) == count
    return rig.fake.responses[-1][1]


def test_next_and_previous_page_through_the_list_in_place(rig: SlackRig) -> None:
    answer = rig.command("list").json()
    assert answer["response_type"] == "ephemeral"
    assert answer["text"] == "Environments: 96, page 1 of 3"
    assert block_problems(answer["blocks"]) == []
    assert len(_lines(answer["blocks"])) == PAGE_SIZE
    assert _buttons(answer["blocks"]) == {ACTION_LIST_NEXT: "list --page 2"}

    assert rig.action(ACTION_LIST_NEXT, "list --page 2").status == 200
    second = _response(rig, 1)
    assert second["replace_original"] is True
    assert second["text"] == "Environments: 96, page 2 of 3"
    assert block_problems(second["blocks"]) == []
    lines = _lines(second["blocks"])
    assert len(lines) == PAGE_SIZE
    assert "shop-feature-040" in lines[0] and "shop-feature-079" in lines[-1]
    assert _buttons(second["blocks"]) == {
        ACTION_LIST_PREVIOUS: "list --page 1",
        ACTION_LIST_NEXT: "list --page 3",
    }

    rig.action(ACTION_LIST_PREVIOUS, "list --page 1")
    first = _response(rig, 2)
    assert first["replace_original"] is True
    assert _lines(first["blocks"]) == _lines(answer["blocks"])
    assert rig.runtime.store.operations() == []


def test_a_page_button_runs_list_for_whoever_clicked_it(rig: SlackRig) -> None:
    answer = rig.command("list --mine --app shop", user="U0BOB").json()
    assert answer["text"] == "Environments: 32"  # one page: no buttons
    assert _buttons(answer["blocks"]) == {}
    rig.action(ACTION_LIST_NEXT, "list --mine --page 1", user="U0BOB")
    bobs = _response(rig, 1)
    assert bobs["text"] == "Environments: 32"
    assert all("U0BOB" in line for line in _lines(bobs["blocks"]))


@pytest.mark.parametrize(
    "value",
    [
        "list --page 0",
        "list --page two",
        "list --colour",
        "list 'unterminated",
        "deploy main",  # another command: never run from a page button
        "stop shop-feature-001",
        '{"page": 2}',
        "",
        "x" * 240,  # (the rig names the block after the value: at most 255)
    ],
)
def test_a_forged_or_garbled_page_button_gets_a_clear_error(rig: SlackRig, value: str) -> None:
    assert rig.action(ACTION_LIST_NEXT, value).status == 200
    said = _response(rig, 1)
    assert said["response_type"] == "ephemeral"
    assert not said.get("replace_original")  # the listing stays
    assert said["text"].startswith(":warning: that page button is broken (")
    assert "`/revieee list` again" in said["text"]
    assert rig.runtime.store.operations() == []
    assert rig.runtime.store.get_env("shop-feature-001")["status"] == "running"  # type: ignore[index]

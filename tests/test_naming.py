"""bot/naming.py: branch names become DNS labels that are valid, stable and never collide."""

from __future__ import annotations

import itertools
import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.naming import (
    HASH_LEN,
    MAX_LABEL,
    database_name,
    dns_label,
    ecs_service_name,
    env_name,
    image_tag_part,
    service_label,
    short_hash,
    task_family,
)

# Written here rather than imported, so a mistake in the module's own regexes cannot hide.
LABEL = re.compile(r"^(?:[a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9])\Z")
HASHED = re.compile(r"-?[a-z2-7]{8}\Z")
DOCKER_TAG_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")

PROPERTY = settings(max_examples=300, deadline=None)
APP_NAMES = st.from_regex(r"[a-z][a-z0-9]{0,19}", fullmatch=True)


def assert_label(name: str, max_len: int = MAX_LABEL) -> None:
    assert LABEL.match(name), f"{name!r} is not a DNS label"
    assert 1 <= len(name) <= max_len, f"{name!r} is {len(name)} characters (max {max_len})"


# --- examples ---------------------------------------------------------------------------------

# branch -> exact label. The hashes are pinned on purpose: an environment's name must stay the
# same across releases, or revieee loses track of the environments it already runs.
EXACT = [
    ("feature-x", "feature-x"),
    ("main", "main"),
    ("x", "x"),
    ("release-abcdefg1", "release-abcdefg1"),  # '1' is not base32: not a hash tail
    ("release-abcdefgh2", "release-abcdefgh2"),  # 9 characters after the hyphen
    ("feature/x", "feature-x-ef6sx5i7"),
    ("Feature/X", "feature-x-algbsehv"),
    ("feat_x", "feat-x-tvqtjdnl"),
    ("v1.2", "v1-2-bzhvxtwz"),
    ("café/ünïcode", "cafe-unicode-7brrij3d"),
    ("🚀-launch", "launch-rhrvjgb7"),
    ("fix 🐛 bug", "fix-bug-emqoy2is"),
    ("-lead", "lead-ktqfuc7p"),
    ("trail-", "trail-pesyvcb5"),
    ("UPPER", "upper-ts5byzmt"),
    ("ﬁx", "fix-nb4x34kn"),  # compatibility ligature
    # looks exactly like a hashed label, so it must be hashed itself
    ("release-abcdefgh", "release-abcdefgh-uxse7xlw"),
    ("release-ABCDEFGH", "release-abcdefgh-rex4aaq7"),
]


@pytest.mark.parametrize(("branch", "expected"), EXACT)
def test_dns_label_examples(branch: str, expected: str) -> None:
    assert dns_label(branch) == expected
    assert env_name("web", branch) == f"web-{expected}"


@pytest.mark.parametrize(
    "branch",
    ["feature/x", "Feature/X", "feat_x", "v1.2", "café/ünïcode", "🚀-launch", "release-abcdefgh"],
)
def test_changed_labels_end_in_the_hash_of_the_original_text(branch: str) -> None:
    assert dns_label(branch).endswith("-" + short_hash(branch))


@pytest.mark.parametrize("branch", ["🚀🔥", "!!!///...", "日本語", "", "---", "🎉"])
def test_branch_with_nothing_foldable_is_x_and_its_hash(branch: str) -> None:
    # never a bare hash: that would be a clean label that another branch could be named
    label = dns_label(branch)
    assert label == "x-" + short_hash(branch)
    assert len(label) == HASH_LEN + 2
    assert_label(label)


def test_label_of_63_characters_is_kept_but_hashed_inside_an_env_name() -> None:
    assert dns_label("a" * 63) == "a" * 63
    name = env_name("web", "a" * 63)
    assert name == "web-" + "a" * (MAX_LABEL - 4 - HASH_LEN - 1) + "-" + short_hash("a" * 63)
    assert len(name) == MAX_LABEL


def test_long_branch_is_cut_and_hashed() -> None:
    branch = "a" * 300
    label = dns_label(branch)
    assert len(label) == MAX_LABEL
    assert label == "a" * (MAX_LABEL - HASH_LEN - 1) + "-" + short_hash(branch)
    assert dns_label("a" * 64) != label
    assert len(dns_label("a" * 64)) == MAX_LABEL


def test_long_branch_in_env_name_leaves_room_for_the_app() -> None:
    for app in ("w", "web", "x" * 20):
        name = env_name(app, "feature/" + "long-" * 60)
        assert_label(name)
        assert MAX_LABEL - 1 <= len(name) <= MAX_LABEL  # a hyphen at the cut is dropped
        assert name.startswith(app + "-feature-long-")


def test_cut_never_leaves_a_double_hyphen_before_the_hash() -> None:
    # the cut point falls right after a separator: the hyphen must be stripped, not doubled
    head = "b" * (MAX_LABEL - HASH_LEN - 2)
    label = dns_label(head + "/cccccccccc")
    assert label == head + "-" + short_hash(head + "/cccccccccc")


def test_short_hash_is_lowercase_base32_of_sha256() -> None:
    # pinned: sha256("feature/x") in base32 starts with EF6SX5I7
    assert short_hash("feature/x") == "ef6sx5i7"
    assert re.fullmatch(r"[a-z2-7]{8}", short_hash("🚀"))
    assert short_hash("é") != short_hash(unicodedata.normalize("NFD", "é"))


def test_max_len_below_hash_room_is_refused() -> None:
    with pytest.raises(ValueError, match="max_len"):
        dns_label("feature/x", max_len=HASH_LEN + 1)
    assert_label(dns_label("feature/x", max_len=HASH_LEN + 2), HASH_LEN + 2)


@pytest.mark.parametrize(
    "app", ["", "Web", "web-app", "1web", "web_app", "wéb", "a" * 21, "web ", " web", "web\n"]
)
def test_env_name_rejects_bad_app_names(app: str) -> None:
    with pytest.raises(ValueError, match="invalid app name"):
        env_name(app, "main")


@pytest.mark.parametrize("app", ["w", "web", "web2", "a1b2c3", "a" * 20])
def test_env_name_accepts_good_app_names(app: str) -> None:
    assert env_name(app, "main") == f"{app}-main"


IMAGE_TAGS = [
    ("feature/x", "feature-x"),
    ("Feature/X", "Feature-X"),
    ("feat_x", "feat_x"),
    ("v1.2", "v1.2"),
    (".hidden", "hidden"),
    ("-x-", "x"),
    ("fix 🐛 bug", "fix-bug"),
    ("🚀🔥", "branch"),
    ("...", "branch"),
    ("", "branch"),
]


@pytest.mark.parametrize(("branch", "expected"), IMAGE_TAGS)
def test_image_tag_part_examples(branch: str, expected: str) -> None:
    assert image_tag_part(branch) == expected


def test_resource_names() -> None:
    assert service_label("shop-main", "web") == "web.shop-main"
    assert task_family("shop-main", "api") == "revieee-shop-main-api"
    assert ecs_service_name("shop-main", "api") == "shop-main-api"


# --- properties -------------------------------------------------------------------------------


@PROPERTY
@given(st.text(), st.integers(min_value=HASH_LEN + 2, max_value=MAX_LABEL))
def test_dns_label_is_always_a_valid_label(text: str, max_len: int) -> None:
    label = dns_label(text, max_len)
    assert_label(label, max_len)
    assert dns_label(text, max_len) == label


@PROPERTY
@given(st.text(alphabet=st.characters(codec="utf-8")))
def test_dns_label_keeps_valid_labels_and_hashes_everything_else(text: str) -> None:
    label = dns_label(text)
    if LABEL.match(text) and len(text) <= MAX_LABEL and not re.search(r"-[a-z2-7]{8}\Z", text):
        assert label == text
    else:
        assert HASHED.search(label)
        assert label.endswith(short_hash(text))


@PROPERTY
@given(
    st.from_regex(r"[a-z0-9][a-z0-9-]{0,40}[a-z0-9]", fullmatch=True)
    | st.from_regex(r"[a-z0-9-]{0,20}-[a-z2-7]{8}", fullmatch=True)
)
def test_label_like_branches_are_kept_unless_they_look_hashed(branch: str) -> None:
    if re.search(r"-[a-z2-7]{8}\Z", branch):
        assert dns_label(branch) != branch
        assert dns_label(branch).endswith("-" + short_hash(branch))
    else:
        assert dns_label(branch) == branch


@PROPERTY
@given(APP_NAMES, st.text())
def test_env_name_is_always_a_valid_label(app: str, branch: str) -> None:
    name = env_name(app, branch)
    assert_label(name)
    assert name.startswith(app + "-")
    assert env_name(app, branch) == name


@PROPERTY
@given(st.text())
def test_image_tag_part_is_docker_tag_safe(branch: str) -> None:
    tag = image_tag_part(branch)
    assert DOCKER_TAG_PART.match(tag), tag
    assert not tag.startswith((".", "-"))


@settings(max_examples=60, deadline=None)
@given(st.sets(st.text(max_size=80), min_size=100, max_size=400))
def test_random_branch_sets_map_to_distinct_labels(branches: set[str]) -> None:
    labels = {dns_label(b) for b in branches}
    assert len(labels) == len(branches)


# --- no collisions over a large corpus of tricky names ----------------------------------------

PREFIXES = ["", "feature/", "Feature/", "FEATURE/", "feat_", "fix-", "release/v", "user/ana/", "🚀"]
STEMS = ["x", "login", "Login", "café", "cafe\u0301", "naïve", "日本", "a.b", "a_b", "a b", "ünï"]
SEPARATORS = ["", "/", "-", "_", ".", " ", "--", "//", "-/"]
SUFFIXES = ["", "1", "2", "v1.2", "-abcdefgh", "-ABCDEFGH", "-abcdefg1", "/🐛", "!", "-"]


def tricky_branches() -> list[str]:
    corpus: set[str] = set()
    for parts in itertools.product(PREFIXES, STEMS, SEPARATORS, SUFFIXES):
        corpus.add("".join(parts))
    for n in range(2000):
        corpus.add(f"pr-{n}")
        corpus.add(f"PR/{n}")
    for length in (1, 8, 9, 53, 54, 55, 62, 63, 64, 65, 100, 300):
        for ch in "a", "A", "-", "é", "🚀":
            corpus.add(ch * length)
        corpus.add("feature/" + "x" * length)
        corpus.add("x" * length + "-abcdefgh")
    for n in range(300):  # long names that differ only after the cut
        corpus.add("feature/" + "segment-" * 10 + str(n))
        corpus.add("Feature/" + "Segment_" * 10 + str(n))
    for emoji in "🚀🔥🐛🎉✨💥🙈":
        corpus.update({emoji, emoji * 2, emoji + "/" + emoji, "!" + emoji})
    corpus.update(["", " ", "/", "-", "--", ".", "..."])
    branches = sorted(corpus)
    # also the mapped names themselves and bare hashes, as if someone named a branch after an
    # environment or a hash
    branches += [dns_label(b) for b in branches] + [short_hash(b) for b in branches[:2000]]
    return sorted(set(branches))


CORPUS = tricky_branches()


def test_corpus_is_large_and_tricky() -> None:
    assert len(CORPUS) >= 20_000
    assert sum(dns_label(b) == b for b in CORPUS) > 1000  # untouched labels
    assert sum(dns_label(b) != b for b in CORPUS) > 10_000  # folded labels
    assert sum(len(b) > MAX_LABEL for b in CORPUS) > 50


def test_no_two_branches_share_a_label() -> None:
    seen: dict[str, str] = {}
    for branch in CORPUS:
        label = dns_label(branch)
        assert_label(label)
        other = seen.setdefault(label, branch)
        assert other == branch, f"{branch!r} and {other!r} both map to {label!r}"


def test_no_two_app_branch_pairs_share_an_env_name() -> None:
    apps = ["w", "we", "web", "web2", "web23", "shop", "shop2", "a" * 20]
    seen: dict[str, tuple[str, str]] = {}
    for app in apps:
        for branch in CORPUS[::3]:
            name = env_name(app, branch)
            assert_label(name)
            other = seen.setdefault(name, (app, branch))
            assert other == (app, branch), f"{(app, branch)} and {other} both map to {name!r}"


def test_apps_that_are_prefixes_of_each_other_do_not_collide() -> None:
    assert env_name("web", "2-main") != env_name("web2", "main")
    assert env_name("web", "2") != env_name("web2", "")
    assert env_name("web", "2main") == "web-2main"
    assert env_name("web2", "main") == "web2-main"


def test_bare_hash_branch_does_not_collide_with_emoji_branch() -> None:
    assert dns_label("🚀") != dns_label(short_hash("🚀"))


@pytest.mark.parametrize(
    ("template", "env", "expected"),
    [
        ("{env}", "shop-feature-checkout-s7gghvic", "shop_feature_checkout_s7gghvic"),
        ("review_{app}_{env}", "shop-x", "review_shop_shop_x"),
        ("{env}", "9lives-x", "db_9lives_x"),
        ("Review.{env}!", "shop-a", "review_shop_a"),
    ],
)
def test_database_names_need_no_quoting(template: str, env: str, expected: str) -> None:
    assert database_name(template, "shop", env) == expected


def test_a_long_database_name_keeps_a_hash_of_the_whole() -> None:
    a = database_name("{env}", "shop", "shop-" + "a" * 70 + "-one")
    b = database_name("{env}", "shop", "shop-" + "a" * 70 + "-two")
    assert len(a) == len(b) == 63 and a != b
    assert re.fullmatch(r"[a-z0-9_]+", a)

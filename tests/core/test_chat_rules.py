"""Prompt trimming and title clean-up (core/chat.py): pure rules, no servers.

Every expected value below is worked out from the rules themselves: a message
costs `ceil(len / 4)` tokens plus 4 of framing, the reserve for the answer is
`min(4096, window // 4)` unless given, and a title is at most 60 characters.
"""

from __future__ import annotations

import pytest

from core.chat import TITLE_MAX_CHARS, clean_title, estimate_tokens, trim_history, truncate_title


@pytest.fixture(autouse=True)
def clean_state() -> None:
    """Overrides tests/conftest.py's: nothing here touches PostgreSQL or Redis, and
    truncating every table before each test would be most of this module's run time."""


# 384 characters are 96 tokens, plus 4 of framing: 100 tokens a message.
COST_100 = 384


def turn(index: int, length: int = COST_100, role: str | None = None) -> dict[str, str]:
    """A message whose content starts with its index, padded to `length` characters."""
    tag = f"#{index} "
    return {
        "role": role or ("user" if index % 2 == 0 else "assistant"),
        "content": (tag + "x" * length)[:length] if length >= len(tag) else "x" * length,
    }


def history(count: int, length: int = COST_100) -> list[dict[str, str]]:
    return [turn(index, length) for index in range(count)]


# --- estimate_tokens ---------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "tokens"),
    [(0, 1), (1, 1), (4, 1), (5, 2), (8, 2), (9, 3), (COST_100, 96), (4000, 1000)],
)
def test_estimate_is_a_quarter_of_the_characters_rounded_up(length: int, tokens: int) -> None:
    assert estimate_tokens("a" * length) == tokens


# --- trim_history ------------------------------------------------------------


def test_everything_is_kept_when_it_fits() -> None:
    messages = history(5)
    kept = trim_history("Be brief.", messages, window=10_000)
    assert kept == [{"role": "system", "content": "Be brief."}, *messages]


def test_the_newest_messages_that_fit_are_kept_in_order() -> None:
    # Window 1000, reserve 250: 750 tokens, seven messages of 100 (an eighth needs 800).
    messages = history(10)
    assert trim_history(None, messages, window=1000) == messages[3:]


def test_the_system_prompt_is_kept_and_counts_against_the_window() -> None:
    # The prompt costs 100 of the 750 tokens: six messages of 100 remain.
    prompt = "s" * COST_100
    messages = history(10)
    kept = trim_history(prompt, messages, window=1000)
    assert kept == [{"role": "system", "content": prompt}, *messages[4:]]


def test_a_message_that_fills_the_budget_exactly_is_kept() -> None:
    # No reserve: 400 tokens hold exactly four messages of 100, not five.
    messages = history(6)
    assert trim_history(None, messages, window=400, reserve_for_output=0) == messages[2:]
    # One token less and the fourth no longer fits.
    assert trim_history(None, messages, window=399, reserve_for_output=0) == messages[3:]


def test_an_explicit_reserve_replaces_the_default_one() -> None:
    messages = history(10)
    # Default reserve of window 1000 is 250 (seven kept); a reserve of 500 leaves five.
    assert trim_history(None, messages, window=1000, reserve_for_output=500) == messages[5:]


def test_the_default_reserve_is_capped_at_4096_tokens() -> None:
    # Window 100_000: the reserve is 4096 (not 25_000), so 95_904 tokens are left. The
    # newest costs 100, and a message of 95_800 tokens (+4) fills the rest exactly.
    newest = turn(2)
    big = {"role": "assistant", "content": "b" * (95_800 * 4)}
    oldest = {"role": "user", "content": ""}
    kept = trim_history(None, [oldest, big, newest], window=100_000)
    assert kept == [big, newest]


def test_an_older_message_that_does_not_fit_ends_the_walk() -> None:
    # The middle message (1004 tokens) overflows; the small one before it would fit but
    # is dropped too, so the history the model sees has no hole in it.
    small, middle, newest = turn(0, 8), turn(1, 4000), turn(2)
    assert trim_history(None, [small, middle, newest], window=1000) == [newest]


def test_the_newest_message_is_kept_even_when_it_alone_overflows() -> None:
    huge = turn(1, 40_000)
    assert trim_history(None, [huge], window=1000) == [huge]
    older = turn(0, 8)
    kept = trim_history("Be brief.", [older, huge], window=1000)
    assert kept == [{"role": "system", "content": "Be brief."}, huge]


def test_a_system_prompt_larger_than_the_window_keeps_only_the_newest_turn() -> None:
    prompt = "s" * 10_000
    messages = history(3, 8)
    kept = trim_history(prompt, messages, window=1000)
    assert kept == [{"role": "system", "content": prompt}, messages[-1]]


def test_empty_contents_cost_five_tokens_each() -> None:
    # estimate_tokens("") is 1, plus 4: twenty tokens hold four empty messages.
    messages = [{"role": "user", "content": ""} for _ in range(6)]
    assert len(trim_history(None, messages, window=20, reserve_for_output=0)) == 4


@pytest.mark.parametrize("prompt", [None, ""])
def test_no_history_and_no_prompt_is_an_empty_prompt(prompt: str | None) -> None:
    assert trim_history(prompt, [], window=1000) == []


def test_no_history_keeps_the_system_prompt() -> None:
    assert trim_history("Be brief.", [], window=1000) == [
        {"role": "system", "content": "Be brief."}
    ]


def test_the_callers_list_is_left_as_it_was() -> None:
    messages = history(10)
    snapshot = [dict(message) for message in messages]
    trim_history("Be brief.", messages, window=1000)
    assert messages == snapshot


# --- clean_title -------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "title"),
    [
        ("Rust ownership explained", "Rust ownership explained"),
        # Reasoning, in any case and over several lines, is not the title.
        (
            "<think>The user asks about borrowing.\nA short title.</think>\nRust borrowing rules",
            "Rust borrowing rules",
        ),
        ("<THINK>hmm</THINK>Rust borrowing", "Rust borrowing"),
        # Two reasoning blocks: each is removed, the text between them is not swallowed.
        ("<think>a</think>\n<think>b</think>\nRust borrowing", "Rust borrowing"),
        # `Title:` prefixes.
        ("Title: Pasta recipes", "Pasta recipes"),
        ("title:Pasta recipes", "Pasta recipes"),
        ("TITLE :   Pasta recipes", "Pasta recipes"),
        ('Title: "Pasta recipes"', "Pasta recipes"),
        # Words that only look like the prefix stay.
        ("Title case rules", "Title case rules"),
        ("Subtitle: formats", "Subtitle: formats"),
        # Quotes of several scripts, and Markdown emphasis.
        ('"Pasta recipes"', "Pasta recipes"),
        ("'Pasta recipes'", "Pasta recipes"),
        ("`Pasta recipes`", "Pasta recipes"),
        ("**Pasta recipes**", "Pasta recipes"),
        ("\u201cPasta recipes\u201d", "Pasta recipes"),
        ("\u2018Pasta recipes\u2019", "Pasta recipes"),
        ("「パスタのレシピ」", "パスタのレシピ"),
        # Quotes inside the title are part of it.
        ('The "best" pasta', 'The "best" pasta'),
        # Trailing dots, also inside the quotes; dots inside the title stay.
        ("Pasta recipes.", "Pasta recipes"),
        ("Pasta recipes...", "Pasta recipes"),
        ('"Pasta recipes."', "Pasta recipes"),
        ("Node.js streams", "Node.js streams"),
        # Only the first line of a multi-line answer.
        ("Pasta recipes\nThis conversation is about cooking pasta.", "Pasta recipes"),
        ("\n\n   Pasta recipes  \r\n\nMore text", "Pasta recipes"),
        # What PostgreSQL cannot store is dropped, as for every provider answer.
        ("Pasta\x00 recipes", "Pasta recipes"),
        # Whitespace inside is collapsed.
        ("Pasta \t  recipes", "Pasta recipes"),
        pytest.param(
            "<think>\nThe user wants a title about pasta, so",
            "",
            id="unclosed-reasoning",
        ),
        pytest.param(
            "**Title:** Pasta recipes",
            "Pasta recipes",
            id="markdown-title-prefix",
        ),
        pytest.param(
            '"Pasta recipes".',
            "Pasta recipes",
            id="dot-after-quote",
        ),
        pytest.param(
            "\u00abP\u00e2tes fra\u00eeches\u00bb",
            "P\u00e2tes fra\u00eeches",
            id="guillemets",
        ),
        pytest.param(
            "『パスタのレシピ』",
            "パスタのレシピ",
            id="white-corner-brackets",
        ),
        pytest.param(
            "Title:\nPasta recipes",
            "Pasta recipes",
            id="prefix-on-its-own-line",
        ),
    ],
)
def test_clean_title(raw: str, title: str) -> None:
    assert clean_title(raw) == title


@pytest.mark.parametrize(
    "raw",
    ["", "   \n  ", "<think>only reasoning</think>", '""', "Title:", "...", "\u201c\u201d", "\x00"],
)
def test_an_answer_with_no_title_in_it_is_empty(raw: str) -> None:
    # The title job then falls back to the first message.
    assert clean_title(raw) == ""


def test_a_long_answer_is_truncated() -> None:
    raw = "Title: " + " ".join(["abcdef"] * 20) + "."
    assert clean_title(raw) == " ".join(["abcdef"] * 8) + "\u2026"


# --- truncate_title ----------------------------------------------------------


def test_a_title_of_the_maximum_length_is_kept_whole() -> None:
    text = "a" * 29 + " " + "b" * 30
    assert len(text) == TITLE_MAX_CHARS
    assert truncate_title(text) == text


def test_a_longer_title_is_cut_at_a_word_boundary() -> None:
    # Words of 6 and a space: the first 59 characters end 3 letters into the ninth word,
    # which is dropped whole; eight words are 55 characters, 56 with the ellipsis.
    text = " ".join(["abcdef"] * 10)
    assert truncate_title(text) == " ".join(["abcdef"] * 8) + "\u2026"


def test_a_single_long_word_is_cut_hard() -> None:
    assert truncate_title("a" * 100) == "a" * 59 + "\u2026"


def test_text_without_spaces_is_cut_hard() -> None:
    assert truncate_title("汉" * 80) == "汉" * 59 + "\u2026"


def test_whitespace_is_collapsed_before_measuring() -> None:
    # 72 characters as written, 41 once collapsed: nothing is cut.
    text = "Pasta" + " " * 30 + "\n\t" + "recipes for a weeknight dinner here"
    assert truncate_title(text) == "Pasta recipes for a weeknight dinner here"


def test_an_empty_title_stays_empty() -> None:
    assert truncate_title("") == ""
    assert truncate_title(" \n ") == ""


@pytest.mark.parametrize("word", [1, 2, 3, 5, 7, 11, 13])
@pytest.mark.parametrize("length", [58, 59, 60, 61, 62, 75, 119, 120, 121, 300])
def test_truncation_keeps_a_whole_word_prefix_within_the_limit(word: int, length: int) -> None:
    text = (("w" * word + " ") * length)[:length].strip()
    result = truncate_title(text)
    assert len(result) <= TITLE_MAX_CHARS
    if len(text) <= TITLE_MAX_CHARS:
        assert result == text
        return
    assert result.endswith("\u2026")
    body = result[:-1]
    assert text.startswith(body)
    # The cut falls between two words: the next character of the text is a space.
    assert text[len(body)] == " "


def test_a_word_ending_just_before_the_ellipsis_is_kept() -> None:
    # Words of 4 and a space: the twelfth word ends at character 59, then a space. Twelve
    # words (59) and the ellipsis make 60, the limit.
    text = " ".join(["abcd"] * 13)
    assert truncate_title(text) == " ".join(["abcd"] * 12) + "\u2026"

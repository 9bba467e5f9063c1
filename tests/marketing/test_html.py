"""A broadcast's text: Telegram HTML and the two placeholders, checked when it is handed in, with
a clear code and message for each mistake; filled in per member with escaped values. Every
text the checker takes, the Bot API emulator's parser takes too, and shows alike."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.errors import ApiError
from emulator.formatting import parse_html
from marketing.html import (
    BALANCE_MAX,
    CAPTION_LIMIT,
    EMPTY_TEXT,
    FIRST_NAME_MAX,
    INVALID_HTML,
    TEXT_LIMIT,
    TOO_LONG,
    UNKNOWN_PLACEHOLDER,
    BroadcastTextError,
    check_text,
    fill,
    visible_text,
)

GOOD = [
    "Hello, {first_name}! You have {balance} points.",
    "<b>Sale</b> <strong>today</strong>, <i>only</i> <em>here</em>",
    "<u>under</u> <ins>lined</ins> <s>old</s> <strike>price</strike> <del>gone</del>",
    '<span class="tg-spoiler">secret</span> and <tg-spoiler>another</tg-spoiler>',
    '<a href="https://example.com/?a=1&amp;b=2">the shop</a>',
    "<a href='https://example.com'>single quotes</a>",
    "<a href=https://example.com>no quotes</a>",
    "<code>PROMO10</code>",
    "<pre>line 1\nline 2</pre>",
    '<pre><code class="language-python">print("hi")</code></pre>',
    "<blockquote>A quote</blockquote>",
    "<blockquote expandable>A long quote</blockquote>",
    '<tg-emoji emoji-id="5368324170671202286">👍</tg-emoji> liked',
    "1 &lt; 2 &gt; 0 &amp; &quot;quoted&quot;",
    "&#39;numeric&#39; &#x1F600; &#8381;",
    "<b>bold <i>italic <u>underlined</u></i></b>",
    "<B>upper case tags</B>",
    "{10% off} and { } and {} are plain braces; 5 > 3",
    "<b >spaces in tags</b >",
    "Скидка 10% для {first_name} 🎉\n\nВаш баланс: <b>{balance}</b> баллов",
    '<a href="https://example.com/{first_name}">personal link</a>',
]

# (text, code). The emulator, like Telegram, takes some of these (see LENIENT_EMULATOR).
BAD = [
    ("", EMPTY_TEXT),
    ("   \n ", EMPTY_TEXT),
    ("<b></b>", EMPTY_TEXT),
    ("Hi {name}!", UNKNOWN_PLACEHOLDER),
    ("Your {Balance}", UNKNOWN_PLACEHOLDER),
    ("<b>not closed", INVALID_HTML),
    ("<b><i>crossed</b></i>", INVALID_HTML),
    ("closed </b> too early", INVALID_HTML),
    ("1 < 2", INVALID_HTML),
    ("<script>alert(1)</script>", INVALID_HTML),
    ("<p>paragraph</p>", INVALID_HTML),
    ('<span class="red">x</span>', INVALID_HTML),
    ("<span>x</span>", INVALID_HTML),
    ("<a>no href</a>", INVALID_HTML),
    ('<a href="">empty href</a>', INVALID_HTML),
    ("fish & chips", INVALID_HTML),
    ("&nbsp;not one of Telegram's", INVALID_HTML),
    ("<b/>", INVALID_HTML),
    ('<b class="x">attribute</b>', INVALID_HTML),
    ('<code class="language-python">standalone</code>', INVALID_HTML),
    ("<code><b>bold code</b></code>", INVALID_HTML),
    ('<a href="https://a.example"><a href="https://b.example">x</a></a>', INVALID_HTML),
    ("<blockquote><blockquote>x</blockquote></blockquote>", INVALID_HTML),
    ('<tg-emoji emoji-id="smile">x</tg-emoji>', INVALID_HTML),
    ('<a href="https://example.com/?a=1&b=2">bare &amp; in a value</a>', INVALID_HTML),
    ("&#0; &#xD800;", INVALID_HTML),
    ("<b", INVALID_HTML),
]

# Taken by the emulator (and Telegram), refused here: formatting that would be silently lost,
# a bare '&', entities Telegram does not list, an empty tag.
LENIENT_EMULATOR = {
    "",
    "   \n ",
    "<b></b>",
    "Hi {name}!",
    "Your {Balance}",
    "<a>no href</a>",
    '<a href="">empty href</a>',
    "fish & chips",
    "&nbsp;not one of Telegram's",
    '<b class="x">attribute</b>',
    '<code class="language-python">standalone</code>',
    "<code><b>bold code</b></code>",
    '<a href="https://a.example"><a href="https://b.example">x</a></a>',
    "<blockquote><blockquote>x</blockquote></blockquote>",
    '<tg-emoji emoji-id="smile">x</tg-emoji>',
    '<a href="https://example.com/?a=1&b=2">bare &amp; in a value</a>',
    "&#0; &#xD800;",
}


def _member_text(text: str) -> str:
    return fill(text, first_name='Анна <"&">', balance="1 250")


def _code(text: str, *, caption: bool = False) -> str:
    with pytest.raises(BroadcastTextError) as refused:
        check_text(text, caption=caption)
    return refused.value.code


@pytest.mark.parametrize("text", GOOD)
def test_a_good_text_is_taken_and_the_emulator_shows_it_alike(text: str) -> None:
    check_text(text)
    sent = _member_text(text)

    assert parse_html(sent).text == visible_text(sent)


@pytest.mark.parametrize(("text", "code"), BAD)
def test_a_bad_text_is_refused_with_its_code(text: str, code: str) -> None:
    assert _code(text) == code


@pytest.mark.parametrize(("text", "code"), [bad for bad in BAD if bad[0] not in LENIENT_EMULATOR])
def test_html_refused_here_and_not_listed_as_lenient_is_refused_by_the_emulator_too(
    text: str, code: str
) -> None:
    with pytest.raises(ApiError):
        parse_html(_member_text(text))


@pytest.mark.parametrize("text", sorted(LENIENT_EMULATOR))
def test_what_is_listed_as_lenient_the_emulator_does_take(text: str) -> None:
    assert text in {bad for bad, _ in BAD}
    parse_html(_member_text(text))


# Pieces that make texts of every kind: good, crossed, unclosed, with bare '<' and '&'.
PIECES = [
    *("<b>", "</b>", "<i>", "</i>", '<a href="https://x.example/?a=1&amp;b">', "</a>"),
    *("<pre>", "</pre>", '<code class="language-py">', "<code>", "</code>", "<tg-spoiler>"),
    *("</tg-spoiler>", '<span class="tg-spoiler">', "</span>", "<blockquote expandable>"),
    *("</blockquote>", "&amp;", "&lt;", "&#128512;", "&", "<", ">", "x", " ", "\n", "😀"),
    *("{first_name}", "{balance}", "{x}"),
]


@settings(max_examples=1000)
@given(st.lists(st.sampled_from(PIECES), max_size=10).map("".join))
def test_any_text_taken_here_the_emulator_takes_and_shows_alike(text: str) -> None:
    try:
        check_text(text)
    except BroadcastTextError:
        return
    sent = _member_text(text)
    assert parse_html(sent).text == visible_text(sent)


def test_the_refusal_says_where_and_what_to_write_instead() -> None:
    with pytest.raises(BroadcastTextError) as refused:
        check_text("Hi {first_name}, 1 < 2")

    assert refused.value.details == {"position": 20}
    assert refused.value.message == (
        "HTML at character 20: '<' starts no tag: write &lt; for the character itself."
    )


def test_an_unknown_tag_is_named_and_the_allowed_ones_listed() -> None:
    with pytest.raises(BroadcastTextError) as refused:
        check_text("x <h1>Title</h1>")

    assert refused.value.details == {"position": 3, "tag": "h1"}
    assert "<h1>" in refused.value.message and "tg-spoiler" in refused.value.message


def test_crossed_tags_say_which_closes_first() -> None:
    with pytest.raises(BroadcastTextError) as refused:
        check_text("<b><i>x</b></i>")

    assert refused.value.message == "HTML at character 8: </b> where </i> must come first."


def test_an_unknown_placeholder_is_named_with_the_two_that_exist() -> None:
    with pytest.raises(BroadcastTextError) as refused:
        check_text("Dear {last_name}")

    assert refused.value.details == {"placeholder": "{last_name}", "position": 6}
    assert "{first_name} and {balance}" in refused.value.message


def test_the_length_counts_what_shows_with_the_longest_name_and_balance() -> None:
    longest_fill = FIRST_NAME_MAX + BALANCE_MAX
    tags = "<b></b>" * 100  # formatting does not count
    fits = "x" * (TEXT_LIMIT - longest_fill) + "{first_name}{balance}" + tags
    check_text(fits)

    assert _code("y" + fits) == TOO_LONG
    assert _code("&amp;" * (TEXT_LIMIT + 1)) == TOO_LONG  # an entity counts as one character


def test_an_emoji_outside_the_basic_plane_counts_twice_as_telegram_counts_it() -> None:
    check_text("😀" * (TEXT_LIMIT // 2))

    with pytest.raises(BroadcastTextError) as refused:
        check_text("😀" * (TEXT_LIMIT // 2) + "x")
    assert refused.value.details == {"length": TEXT_LIMIT + 1, "limit": TEXT_LIMIT}


def test_a_caption_under_a_photo_holds_at_most_1024_characters() -> None:
    check_text("x" * CAPTION_LIMIT, caption=True)

    assert _code("x" * (CAPTION_LIMIT + 1), caption=True) == TOO_LONG
    check_text("x" * (CAPTION_LIMIT + 1))


def test_fill_escapes_the_values_so_a_name_breaks_no_tag() -> None:
    filled = fill("<b>{first_name}</b>: {balance}", first_name="<i>Ann & Co", balance="1 250")

    assert filled == "<b>&lt;i&gt;Ann &amp; Co</b>: 1 250"
    assert parse_html(filled).text == "<i>Ann & Co: 1 250"


def test_fill_never_fills_a_value_again() -> None:
    filled = fill("{first_name} has {balance}", first_name="{balance}", balance="{first_name}")

    assert filled == "{balance} has {first_name}"


def test_fill_escapes_quotes_for_a_name_inside_a_link() -> None:
    filled = fill('<a href="https://x.example/{first_name}">go</a>', first_name='"><b>', balance="")

    assert filled == '<a href="https://x.example/&quot;&gt;&lt;b&gt;">go</a>'
    check_text(filled)

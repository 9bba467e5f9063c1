"""Unit tests of the HTML / Markdown parsers behind parse_mode."""

from __future__ import annotations

import pytest

from emulator.errors import ApiError
from emulator.formatting import parse_html, parse_markdown, parse_markdown_v2, parse_text


def test_html_plain_text_entities_and_utf16_offsets() -> None:
    parsed = parse_html('😀 <b>bold <i>both</i></b> &amp; <a href="tg://user?id=1">me</a>')
    assert parsed.text == "😀 bold both & me"
    assert parsed.entities == [
        {"type": "bold", "offset": 3, "length": 9},
        {"type": "italic", "offset": 8, "length": 4},
        {"type": "text_link", "offset": 15, "length": 2, "url": "tg://user?id=1"},
    ]


def test_html_pre_with_language_spoiler_and_blockquote() -> None:
    parsed = parse_html(
        '<pre><code class="language-python">x = 1</code></pre>'
        '<span class="tg-spoiler">s</span><blockquote expandable>q</blockquote>'
    )
    assert parsed.text == "x = 1sq"
    assert parsed.entities == [
        {"type": "pre", "offset": 0, "length": 5, "language": "python"},
        {"type": "spoiler", "offset": 5, "length": 1},
        {"type": "expandable_blockquote", "offset": 6, "length": 1},
    ]


@pytest.mark.parametrize(
    ("html", "error"),
    [
        ("1 < 2", 'Unsupported start tag "" at byte offset 2'),
        ("<div>x</div>", 'Unsupported start tag "div" at byte offset 0'),
        ("<b>x", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("Привет <b", "Unclosed start tag at byte offset 13"),
    ],
)
def test_html_errors_match_telegram(html: str, error: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_html(html)
    assert caught.value.status == 400
    assert caught.value.description == f"Bad Request: can't parse entities: {error}"


def test_html_keeps_unknown_ampersands() -> None:
    assert parse_html("Tom & Jerry &copy; &#65;&#x42;").text == "Tom & Jerry &copy; AB"


def test_markdown_v2() -> None:
    parsed = parse_markdown_v2("*b* _i_ __u__ ~s~ ||sp|| `c` [l](https://x.y/\\)) \\- ok")
    assert parsed.text == "b i u s sp c l - ok"
    assert [e["type"] for e in parsed.entities] == [
        "bold", "italic", "underline", "strikethrough", "spoiler", "code", "text_link",
    ]  # fmt: skip
    assert parsed.entities[-1]["url"] == "https://x.y/)"
    pre = parse_markdown_v2("```python\nprint(1)\n```")
    assert pre.text == "print(1)\n"
    assert pre.entities == [{"type": "pre", "offset": 0, "length": 9, "language": "python"}]
    with pytest.raises(ApiError, match="Character '!' is reserved"):
        parse_markdown_v2("Hi!")
    with pytest.raises(ApiError, match="Can't find end of Italic entity at byte offset 0"):
        parse_markdown_v2("_open")


def test_legacy_markdown_and_modes() -> None:
    parsed = parse_markdown("*bold* _it_ `code` [link](https://a.b) 5.0!")
    assert parsed.text == "bold it code link 5.0!"
    assert [e["type"] for e in parsed.entities] == ["bold", "italic", "code", "text_link"]
    with pytest.raises(ApiError, match="Can't find end of the entity starting at byte offset 0"):
        parse_markdown("*open")
    assert parse_text("<b>raw</b>", None, None).text == "<b>raw</b>"
    assert parse_text("<b>x</b>", "html", None).text == "x"
    with pytest.raises(ApiError, match="unsupported parse_mode"):
        parse_text("x", "BBCode", None)

"""Telegram text formatting: HTML, MarkdownV2 and legacy Markdown.

The parsers turn a formatted message text into what Telegram stores: the plain text plus a
list of ``MessageEntity`` dicts (offsets and lengths in UTF-16 code units). They follow the
rules of Telegram's own parser closely enough to reject the same mistakes with the same
error texts, e.g. an unescaped ``<`` in HTML::

    Bad Request: can't parse entities: Unsupported start tag "" at byte offset 2
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import ApiError, bad_request

Entity = dict[str, Any]


@dataclass
class FormattedText:
    """Plain text and its entities."""

    text: str
    entities: list[Entity] = field(default_factory=list)


def utf16_len(text: str) -> int:
    """Length of ``text`` in UTF-16 code units (the unit of Telegram entity offsets)."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def parse_error(reason: str) -> ApiError:
    """The 400 Telegram answers for malformed formatting."""
    return bad_request(f"can't parse entities: {reason}")


def parse_text(text: str, parse_mode: str | None, entities: list[Entity] | None) -> FormattedText:
    """Parse ``text`` according to ``parse_mode`` (case-insensitive).

    Without a parse mode the text is taken literally together with explicit ``entities``.
    An unknown parse mode is a 400, like on Telegram.
    """
    mode = (parse_mode or "").lower()
    if not mode:
        return FormattedText(text, list(entities or []))
    if mode == "html":
        return parse_html(text)
    if mode == "markdownv2":
        return parse_markdown_v2(text)
    if mode == "markdown":
        return parse_markdown(text)
    raise bad_request(f"unsupported parse_mode {parse_mode}")


class _Builder:
    """Accumulates plain text and tracks the current UTF-16 offset."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pos = 0
        self.entities: list[Entity] = []

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.pos += utf16_len(text)

    def entity(self, kind: str, start: int, **extra: Any) -> None:
        if self.pos > start:
            length = self.pos - start
            self.entities.append({"type": kind, "offset": start, "length": length, **extra})

    def result(self) -> FormattedText:
        self.entities.sort(key=lambda e: (e["offset"], -e["length"]))
        return FormattedText("".join(self.parts), self.entities)


# --------------------------------------------------------------------------- HTML

_HTML_TAGS = {
    "a", "b", "strong", "i", "em", "s", "strike", "del", "u", "ins", "tg-spoiler", "tg-emoji",
    "span", "pre", "code", "blockquote", "tg-time",
}  # fmt: skip
_HTML_ENTITY_TYPES = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline",
    "ins": "underline", "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough",
    "tg-spoiler": "spoiler", "code": "code", "pre": "pre", "blockquote": "blockquote",
}  # fmt: skip
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'", "nbsp": "\xa0"}


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8"))


def _decode_entity(text: str, i: int) -> tuple[str, int] | None:
    """Decode an HTML entity starting at ``text[i] == '&'``: (char, next index) or None."""
    end = text.find(";", i + 1, i + 12)
    if end == -1:
        return None
    name = text[i + 1 : end]
    if name in _NAMED_ENTITIES:
        return _NAMED_ENTITIES[name], end + 1
    try:
        if name.startswith(("#x", "#X")):
            return chr(int(name[2:], 16)), end + 1
        if name.startswith("#"):
            return chr(int(name[1:])), end + 1
    except (ValueError, OverflowError):
        return None
    return None


@dataclass
class _OpenTag:
    name: str
    start: int
    attrs: dict[str, str]


def _parse_attrs(text: str, i: int, tag: str, tag_offset: int) -> tuple[dict[str, str], int]:
    """Parse attributes up to the closing ``>``; returns (attrs, index after '>')."""
    attrs: dict[str, str] = {}
    n = len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            raise parse_error(f"Unclosed start tag at byte offset {tag_offset}")
        if text[i] == ">":
            return attrs, i + 1
        if text[i] == "/" and i + 1 < n and text[i + 1] == ">":
            return attrs, i + 2
        start = i
        while i < n and (text[i].isalnum() or text[i] in "-_"):
            i += 1
        name = text[start:i].lower()
        if not name:
            raise parse_error(
                f'Empty attribute name in the tag "{tag}" at byte offset {tag_offset}'
            )
        while i < n and text[i].isspace():
            i += 1
        if i >= n or text[i] != "=":
            attrs[name] = ""  # a boolean attribute such as <blockquote expandable>
            continue
        i += 1
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            raise parse_error(f"Unclosed start tag at byte offset {tag_offset}")
        if text[i] in "\"'":
            quote = text[i]
            end = text.find(quote, i + 1)
            if end == -1:
                raise parse_error(
                    f'Unclosed end of attribute value in the tag "{tag}" '
                    f"at byte offset {tag_offset}"
                )
            raw_value = text[i + 1 : end]
            i = end + 1
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] != ">":
                i += 1
            raw_value = text[start:i]
        attrs[name] = _unescape_html(raw_value)


def _unescape_html(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "&" and (decoded := _decode_entity(text, i)) is not None:
            out.append(decoded[0])
            i = decoded[1]
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def parse_html(text: str) -> FormattedText:
    """Parse Telegram-flavoured HTML into plain text and entities."""
    b = _Builder()
    stack: list[_OpenTag] = []
    n = len(text)
    i = 0
    chunk_start = 0
    while i < n:
        ch = text[i]
        if ch == "&":
            decoded = _decode_entity(text, i)
            if decoded is None:
                i += 1
                continue
            b.add(text[chunk_start:i])
            b.add(decoded[0])
            i = chunk_start = decoded[1]
            continue
        if ch != "<":
            i += 1
            continue
        b.add(text[chunk_start:i])
        tag_offset = _byte_offset(text, i)
        if i + 1 < n and text[i + 1] == "/":
            end = text.find(">", i + 2)
            if end == -1:
                raise parse_error(f"Unclosed end tag at byte offset {tag_offset}")
            name = text[i + 2 : end].strip().lower()
            if not stack:
                raise parse_error(f"Unexpected end tag at byte offset {tag_offset}")
            open_tag = stack.pop()
            if open_tag.name != name:
                raise parse_error(
                    f'Unmatched end tag at byte offset {tag_offset}, expected "</{open_tag.name}>"'
                    f', found "</{name}>"'
                )
            _close_html_tag(b, open_tag, stack)
            i = chunk_start = end + 1
            continue
        j = i + 1
        while j < n and (text[j].isalnum() or text[j] == "-"):
            j += 1
        name = text[i + 1 : j].lower()
        if name not in _HTML_TAGS:
            raise parse_error(f'Unsupported start tag "{name}" at byte offset {tag_offset}')
        attrs, i = _parse_attrs(text, j, name, tag_offset)
        if name == "span" and attrs.get("class") != "tg-spoiler":
            raise parse_error(
                f'Tag "span" must have class "tg-spoiler" at byte offset {tag_offset}'
            )
        chunk_start = i
        stack.append(_OpenTag(name, b.pos, attrs))
    b.add(text[chunk_start:])
    if stack:
        raise parse_error(f'Can\'t find end tag corresponding to start tag "{stack[-1].name}"')
    return b.result()


def _close_html_tag(b: _Builder, tag: _OpenTag, stack: list[_OpenTag]) -> None:
    if tag.name == "a":
        href = tag.attrs.get("href", "")
        if href:
            b.entity("text_link", tag.start, url=href)
    elif tag.name == "span":
        b.entity("spoiler", tag.start)
    elif tag.name == "code" and stack and stack[-1].name == "pre":
        css_class = tag.attrs.get("class", "")
        if css_class.startswith("language-"):
            stack[-1].attrs["language"] = css_class[len("language-") :]
        else:
            b.entity("code", tag.start)
    elif tag.name == "pre":
        language = tag.attrs.get("language")
        if language:
            b.entity("pre", tag.start, language=language)
        else:
            b.entity("pre", tag.start)
    elif tag.name == "blockquote":
        kind = "expandable_blockquote" if "expandable" in tag.attrs else "blockquote"
        b.entity(kind, tag.start)
    elif tag.name in _HTML_ENTITY_TYPES:
        b.entity(_HTML_ENTITY_TYPES[tag.name], tag.start)


# ------------------------------------------------------------------------ MarkdownV2

_V2_RESERVED = set("_*[]()~`>#+-=|{}.!")
_V2_NAMES = {
    "bold": "Bold", "italic": "Italic", "underline": "Underline",
    "strikethrough": "Strikethrough", "spoiler": "Spoiler", "text_link": "TextUrl",
}  # fmt: skip


@dataclass
class _OpenV2:
    kind: str
    start: int
    byte_offset: int


def _v2_closes(kind: str, text: str, i: int) -> bool:
    ch = text[i]
    nxt = text[i + 1] if i + 1 < len(text) else ""
    return {
        "bold": ch == "*",
        "italic": ch == "_" and nxt != "_",
        "underline": ch == "_" and nxt == "_",
        "strikethrough": ch == "~",
        "spoiler": ch == "|" and nxt == "|",
        "text_link": ch == "]",
    }[kind]


def parse_markdown_v2(text: str) -> FormattedText:
    """Parse MarkdownV2 (bold, italic, underline, strikethrough, spoiler, code, pre, links)."""
    b = _Builder()
    stack: list[_OpenV2] = []
    n = len(text)
    i = 0
    at_line_start = True
    quote_start: int | None = None
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n and 0 < ord(text[i + 1]) <= 126:
            b.add(text[i + 1])
            i += 2
            at_line_start = False
            continue
        if ch == "\n":
            if quote_start is not None and not text.startswith(">", i + 1):
                b.entity("blockquote", quote_start)
                quote_start = None
            b.add(ch)
            i += 1
            at_line_start = True
            continue
        if at_line_start and ch == ">":
            if quote_start is None:
                quote_start = b.pos
            i += 1
            at_line_start = False
            continue
        at_line_start = False
        if stack and _v2_closes(stack[-1].kind, text, i):
            open_entity = stack.pop()
            if open_entity.kind == "text_link":
                url, i = _v2_link_url(text, i + 1)
                if url:
                    b.entity("text_link", open_entity.start, url=url)
                continue
            b.entity(open_entity.kind, open_entity.start)
            i += 2 if open_entity.kind in ("underline", "spoiler") else 1
            continue
        nxt = text[i + 1] if i + 1 < n else ""
        kind = None
        width = 1
        if ch == "*":
            kind = "bold"
        elif ch == "_":
            kind, width = ("underline", 2) if nxt == "_" else ("italic", 1)
        elif ch == "~":
            kind = "strikethrough"
        elif ch == "|" and nxt == "|":
            kind, width = "spoiler", 2
        elif ch == "[":
            kind = "text_link"
        if kind is not None:
            stack.append(_OpenV2(kind, b.pos, _byte_offset(text, i)))
            i += width
            continue
        if ch == "`":
            i = _v2_code(text, i, b)
            continue
        if ch in _V2_RESERVED:
            raise parse_error(
                f"Character '{ch}' is reserved and must be escaped with the preceding '\\'"
            )
        b.add(ch)
        i += 1
    if quote_start is not None:
        b.entity("blockquote", quote_start)
    if stack:
        raise parse_error(
            f"Can't find end of {_V2_NAMES[stack[-1].kind]} entity "
            f"at byte offset {stack[-1].byte_offset}"
        )
    return b.result()


def _v2_link_url(text: str, i: int) -> tuple[str, int]:
    """Read ``(url)`` after a link's ``]``; returns (url, next index)."""
    if i >= len(text) or text[i] != "(":
        return "", i
    out: list[str] = []
    j = i + 1
    while j < len(text) and text[j] != ")":
        if text[j] == "\\" and j + 1 < len(text):
            j += 1
        out.append(text[j])
        j += 1
    if j >= len(text):
        raise parse_error(f"Can't find end of a URL at byte offset {_byte_offset(text, i)}")
    return "".join(out), j + 1


def _v2_code(text: str, i: int, b: _Builder) -> int:
    """Parse inline code or a ``` pre block starting at ``text[i]``; returns next index."""
    offset = _byte_offset(text, i)
    is_pre = text.startswith("```", i)
    j = i + (3 if is_pre else 1)
    language = ""
    if is_pre:
        newline = text.find("\n", j)
        fence = text.find("```", j)
        if newline != -1 and (fence == -1 or newline < fence):
            language = text[j:newline]
            j = newline + 1
    start = b.pos
    out: list[str] = []
    while j < len(text):
        if text[j] == "\\" and j + 1 < len(text) and text[j + 1] in "`\\":
            out.append(text[j + 1])
            j += 2
            continue
        if text.startswith("```" if is_pre else "`", j):
            b.add("".join(out))
            if is_pre:
                b.entity("pre", start, **({"language": language} if language else {}))
                return j + 3
            b.entity("code", start)
            return j + 1
        out.append(text[j])
        j += 1
    kind = "Pre" if is_pre else "Code"
    raise parse_error(f"Can't find end of {kind} entity at byte offset {offset}")


# ----------------------------------------------------------------- legacy Markdown

_LEGACY = {"*": "bold", "_": "italic", "`": "code"}


def parse_markdown(text: str) -> FormattedText:
    """Parse legacy Markdown (``*bold*``, ``_italic_``, ```code```, ```pre```, links)."""
    b = _Builder()
    n = len(text)
    i = 0
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n and text[i + 1] in "_*`[":
            b.add(text[i + 1])
            i += 2
            continue
        if ch not in "_*`[":
            b.add(ch)
            i += 1
            continue
        offset = _byte_offset(text, i)
        missing = parse_error(f"Can't find end of the entity starting at byte offset {offset}")
        if text.startswith("```", i):
            end = text.find("```", i + 3)
            if end == -1:
                raise missing
            body = text[i + 3 : end]
            language = ""
            if "\n" in body:
                first, rest = body.split("\n", 1)
                if first and " " not in first:
                    language, body = first, rest
            start = b.pos
            b.add(body)
            b.entity("pre", start, **({"language": language} if language else {}))
            i = end + 3
            continue
        if ch == "[":
            close = text.find("]", i + 1)
            if close == -1 or not text.startswith("(", close + 1):
                raise missing
            url_end = text.find(")", close + 2)
            if url_end == -1:
                raise missing
            start = b.pos
            b.add(text[i + 1 : close])
            b.entity("text_link", start, url=text[close + 2 : url_end])
            i = url_end + 1
            continue
        end = text.find(ch, i + 1)
        if end == -1:
            raise missing
        start = b.pos
        b.add(text[i + 1 : end])
        b.entity(_LEGACY[ch], start)
        i = end + 1
    return b.result()


def to_html(text: str, entities: list[Entity]) -> str:
    """Render plain text with entities back to Telegram HTML (via aiogram's decorator)."""
    from aiogram.types import MessageEntity
    from aiogram.utils.text_decorations import html_decoration

    return html_decoration.unparse(text, [MessageEntity(**e) for e in entities])

"""A broadcast's text: Telegram HTML (parse_mode HTML) with the placeholders `{first_name}` and
`{balance}`, checked when the marketer hands it in, so that a mistake is answered at once
(HTTP 422, a message in the bot) and not by Telegram at send time, member by member.

What Telegram takes (https://core.telegram.org/bots/api#html-style), and what is refused here:

- tags b, strong, i, em, u, ins, s, strike, del, tg-spoiler, span class="tg-spoiler",
  a href="..." (href required), code, pre (with at most one code class="language-x" right
  inside it), blockquote (optionally `expandable`), tg-emoji emoji-id="digits"; any other tag,
  or an attribute these do not take, is refused;
- every tag closed, in order (`<b><i>x</b></i>` is refused); nothing inside code, nothing but
  that one code inside pre, no link in a link, no quotation in a quotation;
- the entities &lt; &gt; &amp; &quot; and numeric ones (&#39; &#x1F600;); a `<` that starts
  no tag, or an `&` that starts no entity, is refused (write &lt; and &amp;), in attribute
  values too. A bare `>` is taken, as Telegram takes it;
- `{first_name}` and `{balance}`; any other `{identifier}` is refused as a placeholder that
  will never be filled. Braces around anything else (`{10% off}`, `{ }`) are plain text;
- visible text (tags dropped, entities decoded, placeholders at their longest: a first name of
  64 characters, a balance of 10 digits with 3 group separators), not empty, at most 4096
  UTF-16 code units (Telegram's unit; 1024 for a photo's caption).

This checker is stricter than Telegram where Telegram would silently drop formatting (a tag in
code, an unknown attribute); tests/marketing/test_html.py keeps every text it accepts accepted
by the Bot API emulator's parser (emulator/formatting.py) too.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

PLACEHOLDERS = ("first_name", "balance")
FIRST_NAME_MAX = 64  # Telegram's limit on a first name
BALANCE_MAX = 13  # 10 digits with three group separators: "9 999 999 999"
TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024

# The codes of a refused text (the HTTP API answers them with 422).
EMPTY_TEXT = "empty_text"
TOO_LONG = "too_long"
INVALID_HTML = "invalid_html"
UNKNOWN_PLACEHOLDER = "unknown_placeholder"

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_START_TAG = re.compile(r"<([A-Za-z][A-Za-z0-9-]*)")
_END_TAG = re.compile(r"</([A-Za-z][A-Za-z0-9-]*)\s*>")
_ATTRIBUTE = re.compile(
    r"""\s+([A-Za-z][A-Za-z0-9_-]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'<>`]+)))?"""
)
_TAG_END = re.compile(r"\s*>")
_ENTITY = re.compile(r"&(?:(lt|gt|amp|quot)|#([0-9]{1,7})|#[xX]([0-9A-Fa-f]{1,6}));")
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}

# The attributes each tag takes; a required one is marked True.
_TAGS: dict[str, dict[str, bool]] = {
    **{name: {} for name in ("b", "strong", "i", "em", "u", "ins", "s", "strike", "del")},
    "tg-spoiler": {},
    "span": {"class": True},
    "a": {"href": True},
    "code": {"class": False},
    "pre": {},
    "blockquote": {"expandable": False},
    "tg-emoji": {"emoji-id": True},
}
_EMOJI_ID = re.compile(r"[0-9]{1,20}")
_LANGUAGE = re.compile(r"language-[A-Za-z0-9_+#.-]+")


class BroadcastTextError(Exception):
    """A broadcast's text refused: a code a program can act on, a message for the marketer, and
    the details a translated message needs (`position`: 1-based character of the text)."""

    def __init__(self, code: str, message: str, **details: str | int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


def check_text(text: str, *, caption: bool = False, reserve: int = 0) -> None:
    """Refuse (BroadcastTextError) a text Telegram would refuse, that leaves a placeholder
    unfilled, or that is empty or too long once its placeholders are filled. `reserve`:
    characters something added under the text takes (a gift's line)."""
    if not text.strip():
        raise BroadcastTextError(EMPTY_TEXT, "The text is empty: write the message.")
    for found in _PLACEHOLDER.finditer(text):
        if found.group(1) not in PLACEHOLDERS:
            raise BroadcastTextError(
                UNKNOWN_PLACEHOLDER,
                f"Unknown placeholder {found.group(0)} at character {found.start() + 1}: "
                "only {first_name} and {balance} are filled in.",
                placeholder=found.group(0),
                position=found.start() + 1,
            )
    if not visible_text(text).strip():
        raise BroadcastTextError(EMPTY_TEXT, "The text shows nothing but formatting.")
    # The same HTML with inert values in place of the placeholders: it parses alike.
    longest = fill(text, first_name="W" * FIRST_NAME_MAX, balance="9" * BALANCE_MAX)
    length = _utf16_len(visible_text(longest))
    limit = (CAPTION_LIMIT if caption else TEXT_LIMIT) - reserve
    if length > limit:
        raise BroadcastTextError(
            TOO_LONG,
            f"The text is {length} characters long with the longest name and balance; "
            f"at most {limit} fit{' under a photo' if caption else ''}.",
            length=length,
            limit=limit,
        )


def visible_text(text: str) -> str:
    """What Telegram shows of an HTML text: tags dropped, entities decoded (placeholders as they
    are). BroadcastTextError (invalid_html) if Telegram would not take the HTML."""
    return _Scanner(text).run()


def fill(text: str, *, first_name: str, balance: str) -> str:
    """The text with its placeholders filled in, each value HTML-escaped (a name "<Ann>" shows
    as written and breaks no tag). A value is never filled again: a first name "{balance}"
    stays that name."""
    name, points = html.escape(first_name), html.escape(balance)
    return name.join(part.replace("{balance}", points) for part in text.split("{first_name}"))


def _utf16_len(text: str) -> int:
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


@dataclass
class _Open:
    name: str
    position: int  # index of its '<'


class _Scanner:
    """One pass over the text: visible characters out, tags on a stack, the first mistake raised."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.visible: list[str] = []
        self.stack: list[_Open] = []

    def run(self) -> str:
        text, i = self.text, 0
        while i < len(text):
            special = min(
                (found for found in (text.find("<", i), text.find("&", i)) if found != -1),
                default=len(text),
            )
            self.visible.append(text[i:special])
            if special == len(text):
                break
            if text[special] == "&":
                char, i = self._entity(special)
                self.visible.append(char)
            elif text.startswith("</", special):
                i = self._end_tag(special)
            else:
                i = self._start_tag(special)
        if self.stack:
            tag = self.stack[-1]
            raise self._invalid(tag.position, f"<{tag.name}> is never closed: add </{tag.name}>.")
        return "".join(self.visible)

    def _invalid(self, index: int, why: str, **details: str | int) -> BroadcastTextError:
        return BroadcastTextError(
            INVALID_HTML, f"HTML at character {index + 1}: {why}", position=index + 1, **details
        )

    def _entity(self, index: int) -> tuple[str, int]:
        found = _ENTITY.match(self.text, index)
        if found is None:
            raise self._invalid(
                index, "'&' starts no entity: write &amp; for the character itself."
            )
        return self._decoded(found, index), found.end()

    def _decoded(self, entity: re.Match[str], index: int) -> str:
        named, decimal, hexadecimal = entity.groups()
        if named:
            return _NAMED[named]
        code = int(decimal) if decimal else int(hexadecimal, 16)
        if not 0 < code <= 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            raise self._invalid(index, f"{entity.group(0)} is no character.")
        return chr(code)

    def _end_tag(self, index: int) -> int:
        found = _END_TAG.match(self.text, index)
        if found is None:
            raise self._invalid(index, "'</' starts no closing tag: write &lt; for '<'.")
        name = found.group(1).lower()
        if not self.stack:
            raise self._invalid(index, f"</{name}> closes nothing.", tag=name)
        if self.stack[-1].name != name:
            expected = self.stack[-1].name
            raise self._invalid(index, f"</{name}> where </{expected}> must come first.", tag=name)
        self.stack.pop()
        return found.end()

    def _start_tag(self, index: int) -> int:
        found = _START_TAG.match(self.text, index)
        if found is None:
            raise self._invalid(index, "'<' starts no tag: write &lt; for the character itself.")
        name = found.group(1).lower()
        if name not in _TAGS:
            allowed = ", ".join(sorted(_TAGS))
            raise self._invalid(index, f"Telegram has no tag <{name}>; it has {allowed}.", tag=name)
        attributes, end = self._attributes(index, name, found.end())
        self._check_tag(index, name, attributes)
        self.stack.append(_Open(name, index))
        return end

    def _attributes(self, index: int, tag: str, i: int) -> tuple[dict[str, str], int]:
        attributes: dict[str, str] = {}
        while (closing := _TAG_END.match(self.text, i)) is None:
            found = _ATTRIBUTE.match(self.text, i)
            if found is None:
                raise self._invalid(index, f"<{tag} ...> is not closed by '>'.", tag=tag)
            attribute = found.group(1).lower()
            if attribute not in _TAGS[tag] or attribute in attributes:
                raise self._invalid(index, f"<{tag}> takes no attribute {attribute}.", tag=tag)
            raw = next((value for value in found.groups()[1:] if value is not None), "")
            attributes[attribute] = self._value(raw, index)
            i = found.end()
        for attribute, required in _TAGS[tag].items():
            if required and not attributes.get(attribute, "").strip():
                raise self._invalid(index, f'<{tag}> needs {attribute}="...".', tag=tag)
        return attributes, closing.end()

    def _value(self, raw: str, index: int) -> str:
        """An attribute's value with its entities decoded; a '<' in quotes is a character."""
        parts, i = [], 0
        while (ampersand := raw.find("&", i)) != -1:
            found = _ENTITY.match(raw, ampersand)
            if found is None:
                raise self._invalid(index, "'&' in a value starts no entity: write &amp;.")
            parts += [raw[i:ampersand], self._decoded(found, index)]
            i = found.end()
        return "".join([*parts, raw[i:]])

    def _check_tag(self, index: int, name: str, attributes: dict[str, str]) -> None:
        inside = self.stack[-1] if self.stack else None
        if name == "span" and attributes["class"] != "tg-spoiler":
            raise self._invalid(index, '<span> is only <span class="tg-spoiler">.', tag=name)
        if name == "tg-emoji" and not _EMOJI_ID.fullmatch(attributes["emoji-id"]):
            raise self._invalid(index, "<tg-emoji>'s emoji-id is a number.", tag=name)
        if name == "code" and "class" in attributes:
            if inside is None or inside.name != "pre":
                raise self._invalid(index, "A language goes only on a <code> right inside <pre>.")
            if not _LANGUAGE.fullmatch(attributes["class"]):
                raise self._invalid(index, '<code> inside <pre> takes class="language-...".')
        if inside is not None and inside.name == "code":
            raise self._invalid(
                index, f"<code> shows text as it is: no <{name}> inside it.", tag=name
            )
        if inside is not None and inside.name == "pre" and name != "code":
            raise self._invalid(index, f"<pre> holds text or one <code>, not <{name}>.", tag=name)
        if name in ("a", "blockquote", "pre") and any(tag.name == name for tag in self.stack):
            raise self._invalid(index, f"<{name}> cannot be inside another <{name}>.", tag=name)

"""Render a member's loyalty card as a PNG image.

The card is a 1000x600 landscape picture meant to be shown on a phone screen: a tier
coloured gradient with rounded corners, the program name, the member's first name, the
tier label, the grouped card number, and the QR code with the member's deep link on a
white rounded panel.

All text arrives already translated in :class:`CardFace`; this module contains no
user-facing strings.  Fonts (DejaVu Sans, with Cyrillic) ship in ``cards/fonts``.
Characters the font cannot draw (e.g. emoji) are dropped instead of drawn as boxes,
and text too long for its place is shortened with an ellipsis (the card number is
shrunk instead, never cut).
"""

from __future__ import annotations

import io
import threading
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import qrcode
import qrcode.constants
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from cards.number import format_card_number

__all__ = [
    "CARD_SIZE",
    "CardFace",
    "CardLayout",
    "TextItem",
    "clean_text",
    "fit_text",
    "format_card_number",
    "layout_card",
    "render_card",
]

FONT_DIR = Path(__file__).resolve().parent / "fonts"
_FONT_REGULAR = FONT_DIR / "DejaVuSans.ttf"
_FONT_BOLD = FONT_DIR / "DejaVuSans-Bold.ttf"

RGB = tuple[int, int, int]
Box = tuple[int, int, int, int]

#: Width and height of the rendered card in pixels.
CARD_SIZE: tuple[int, int] = (1000, 600)
_W, _H = CARD_SIZE
_RADIUS = 44
_PAD = 60
_QR_PANEL = 356
_QR_PANEL_RADIUS = 28
_QR_PANEL_BOX: Box = (_W - _PAD - _QR_PANEL, _H - _PAD - _QR_PANEL, _W - _PAD, _H - _PAD)
_COLUMN_RIGHT = _QR_PANEL_BOX[0] - 40  # right edge of the text column left of the QR
_SUPERSAMPLE = 4
_ELLIPSIS = "…"
# FreeType faces are shared (cached) and not safe to use from several threads at once,
# e.g. when renders run in ``asyncio.to_thread``; text measuring and drawing hold this.
_FONT_LOCK = threading.RLock()
_TRIM_BEFORE_ELLIPSIS = " -‐–—,.;:·/«(\"'"


@dataclass(frozen=True)
class CardFace:
    """Everything printed on a card.  All strings are shown as given (already translated).

    Attributes:
        program_name: the loyalty program's name, shown on top.
        first_name: the member's first name.
        card_number: the card number digits; shown grouped by four.
        tier_label: the tier's display name, e.g. "Gold" / "Золото".
        deep_link: the URL encoded in the QR code.
        caption_label: the label above the number, e.g. "Card number" / "Номер карты".
        tier: ``"base"``, ``"silver"`` or ``"gold"``; picks the colours (unknown -> base).
    """

    program_name: str
    first_name: str
    card_number: str
    tier_label: str
    deep_link: str
    caption_label: str
    tier: str = "base"


@dataclass(frozen=True)
class _Theme:
    start: RGB  # gradient, top-left
    end: RGB  # gradient, bottom-right
    text: RGB
    muted: RGB
    pill_fill: tuple[int, int, int, int]
    pill_text: RGB
    glow: tuple[int, int, int, int]  # decorative circles


_THEMES: dict[str, _Theme] = {
    "base": _Theme(
        start=(16, 37, 92),
        end=(9, 128, 134),
        text=(255, 255, 255),
        muted=(190, 222, 230),
        pill_fill=(255, 255, 255, 40),
        pill_text=(255, 255, 255),
        glow=(255, 255, 255, 16),
    ),
    "silver": _Theme(
        start=(74, 84, 99),
        end=(168, 179, 194),
        text=(255, 255, 255),
        muted=(226, 232, 240),
        pill_fill=(255, 255, 255, 52),
        pill_text=(255, 255, 255),
        glow=(255, 255, 255, 22),
    ),
    "gold": _Theme(
        start=(108, 68, 10),
        end=(204, 154, 52),
        text=(255, 255, 255),
        muted=(255, 234, 190),
        pill_fill=(255, 255, 255, 48),
        pill_text=(255, 255, 255),
        glow=(255, 246, 220, 22),
    ),
}


@dataclass(frozen=True)
class TextItem:
    """One piece of text as placed on the card.

    Attributes:
        role: what it is (``"program"``, ``"tier"``, ``"name"``, ``"caption"``, ``"number"``).
        text: the text actually drawn (cleaned, possibly shortened with an ellipsis).
        font_size: the font size in pixels.
        bold: whether the bold face is used.
        xy: the anchor point (left baseline; right baseline for the tier label).
        anchor: the Pillow text anchor used with ``xy``.
        bbox: the ink bounding box ``(left, top, right, bottom)`` on the card.
        fill: the text colour.
    """

    role: str
    text: str
    font_size: int
    bold: bool
    xy: tuple[int, int]
    anchor: str
    bbox: Box
    fill: RGB


@dataclass(frozen=True)
class CardLayout:
    """Where everything goes on a card; produced by :func:`layout_card`.

    Attributes:
        size: the card size ``(width, height)``.
        texts: the text items, in drawing order.
        tier_pill: the box of the rounded pill behind the tier label, or ``None``.
        qr_panel: the box of the white panel holding the QR code.
    """

    size: tuple[int, int]
    texts: tuple[TextItem, ...]
    tier_pill: Box | None
    qr_panel: Box


# --------------------------------------------------------------------------- text


@lru_cache(maxsize=64)
def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(_FONT_BOLD if bold else _FONT_REGULAR), size)


@lru_cache(maxsize=1)
def _notdef_mask() -> bytes:
    # U+10FFFD is a private-use code point no bundled font covers: its mask is the
    # font's "missing glyph" box.
    return bytes(_font(32).getmask("\U0010fffd"))


@lru_cache(maxsize=4096)
def _has_glyph(char: str) -> bool:
    if char == " ":
        return True
    return bytes(_font(32).getmask(char)) != _notdef_mask()


def clean_text(text: str) -> str:
    """Make ``text`` safe to draw on one line.

    Control and format characters are removed, runs of whitespace (including newlines)
    become one space, and characters the bundled font has no glyph for (e.g. emoji) are
    dropped rather than drawn as empty boxes.
    """
    kept = []
    for char in text:
        if char.isspace():
            kept.append(" ")
        elif unicodedata.category(char)[0] != "C" and _has_glyph(char):
            kept.append(char)
    return " ".join("".join(kept).split())


def fit_text(text: str, font: ImageFont.FreeTypeFont, max_width: float) -> str:
    """Return ``text``, or its longest prefix plus ``…``, whose width is <= ``max_width``.

    Returns ``""`` if not even the ellipsis fits.
    """
    if font.getlength(text) <= max_width:
        return text
    if font.getlength(_ELLIPSIS) > max_width:
        return ""
    lo, hi = 0, len(text)  # invariant: prefix of length lo fits, hi does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if font.getlength(text[:mid].rstrip(_TRIM_BEFORE_ELLIPSIS) + _ELLIPSIS) <= max_width:
            lo = mid
        else:
            hi = mid
    return text[:lo].rstrip(_TRIM_BEFORE_ELLIPSIS) + _ELLIPSIS


def _tier_key(tier: str) -> str:
    return tier if tier in _THEMES else "base"


def _theme(tier: str) -> _Theme:
    return _THEMES[_tier_key(tier)]


def _text_item(
    role: str,
    text: str,
    size: int,
    bold: bool,
    xy: tuple[int, int],
    fill: RGB,
    anchor: str = "ls",
) -> TextItem:
    font = _font(size, bold)
    left, top, right, bottom = font.getbbox(text, anchor=anchor) if text else (0, 0, 0, 0)
    x, y = xy
    bbox = (x + int(left), y + int(top), x + int(right), y + int(bottom))
    return TextItem(role, text, size, bold, xy, anchor, bbox, fill)


def _largest_fitting_size(text: str, bold: bool, max_width: float, sizes: range) -> int:
    for size in sizes:
        if _font(size, bold).getlength(text) <= max_width:
            return size
    return sizes[-1]


def layout_card(face: CardFace) -> CardLayout:
    """Compute the cleaned, fitted texts and the boxes of everything on the card."""
    with _FONT_LOCK:
        return _layout_card(face)


def _layout_card(face: CardFace) -> CardLayout:
    theme = _theme(face.tier)
    texts: list[TextItem] = []

    # Tier pill, top right.
    pill: Box | None = None
    pill_left = _W - _PAD
    tier_text = clean_text(face.tier_label)
    if tier_text:
        size = 24
        tier_text = fit_text(tier_text, _font(size, True), 260)
        width = round(_font(size, True).getlength(tier_text))
        pill_h, pill_pad = 46, 22
        pill = (_W - _PAD - width - 2 * pill_pad, _PAD - 4, _W - _PAD, _PAD - 4 + pill_h)
        pill_left = pill[0]
        texts.append(
            _text_item(
                "tier",
                tier_text,
                size,
                True,
                (_W - _PAD - pill_pad, pill[1] + pill_h // 2),
                theme.pill_text,
                anchor="rm",
            )
        )

    # Program name, top left; never runs into the pill.
    program_size = 36
    program = fit_text(
        clean_text(face.program_name), _font(program_size, True), pill_left - 28 - _PAD
    )
    texts.insert(
        0, _text_item("program", program, program_size, True, (_PAD, _PAD + 32), theme.text)
    )

    column = _COLUMN_RIGHT - _PAD

    # Member's first name.
    name_size = 56
    name = fit_text(clean_text(face.first_name), _font(name_size, True), column)
    texts.append(_text_item("name", name, name_size, True, (_PAD, 300), theme.text))

    # Caption and the big grouped card number at the bottom left.
    caption_size = 20
    caption = fit_text(clean_text(face.caption_label).upper(), _font(caption_size), column)
    texts.append(
        _text_item("caption", caption, caption_size, False, (_PAD, _H - _PAD - 68), theme.muted)
    )
    number = format_card_number(clean_text(face.card_number))
    number_size = _largest_fitting_size(number, True, column, range(50, 23, -1))
    number = fit_text(number, _font(number_size, True), column)
    texts.append(_text_item("number", number, number_size, True, (_PAD, _H - _PAD - 6), theme.text))

    return CardLayout(CARD_SIZE, tuple(texts), pill, _QR_PANEL_BOX)


# ------------------------------------------------------------------------- images


@lru_cache(maxsize=64)
def _rounded_mask(size: tuple[int, int], radius: int) -> Image.Image:
    """An anti-aliased rounded-rectangle mask (drawn large, then scaled down); shared."""
    big = Image.new("L", (size[0] * _SUPERSAMPLE, size[1] * _SUPERSAMPLE), 0)
    ImageDraw.Draw(big).rounded_rectangle(
        (0, 0, big.width - 1, big.height - 1), radius * _SUPERSAMPLE, fill=255
    )
    return big.resize(size, Image.Resampling.LANCZOS)


@lru_cache(maxsize=8)
def _background(tier: str) -> Image.Image:
    """The tier's full-bleed opaque background: gradient, decoration, white QR panel."""
    theme = _theme(tier)

    # Diagonal gradient from the top-left (start) to the bottom-right (end) corner.
    ramp = Image.blend(
        Image.linear_gradient("L").rotate(90).resize(CARD_SIZE, Image.Resampling.BILINEAR),
        Image.linear_gradient("L").resize(CARD_SIZE, Image.Resampling.BILINEAR),
        0.5,
    )
    card = Image.composite(
        Image.new("RGBA", CARD_SIZE, (*theme.end, 255)),
        Image.new("RGBA", CARD_SIZE, (*theme.start, 255)),
        ramp,
    )

    # Soft decorative circles.
    deco = Image.new("RGBA", CARD_SIZE, (0, 0, 0, 0))
    draw = ImageDraw.Draw(deco)
    draw.ellipse((_W - 430, -330, _W + 250, 330), fill=theme.glow)
    draw.ellipse((_W - 300, -220, _W + 150, 210), fill=theme.glow)
    draw.ellipse((-260, _H - 210, 300, _H + 350), fill=theme.glow)
    card.alpha_composite(deco)

    # White QR panel with a soft shadow.
    x0, y0, x1, y1 = _QR_PANEL_BOX
    panel_mask = _rounded_mask((x1 - x0, y1 - y0), _QR_PANEL_RADIUS)
    shadow = Image.new("RGBA", CARD_SIZE, (0, 0, 0, 0))
    shadow.paste((0, 0, 0, 60), (x0, y0 + 6), panel_mask)
    card.alpha_composite(shadow.filter(ImageFilter.GaussianBlur(10)))
    card.paste((255, 255, 255, 255), (x0, y0), panel_mask)
    return card


def _qr_image(data: str, max_side: int) -> Image.Image:
    """The QR code (error correction M, 4-module quiet zone) at an integer module size."""
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
    qr.add_data(data)
    qr.make(fit=True)
    matrix = qr.get_matrix()
    modules = len(matrix)
    pixels = bytes(0 if dark else 255 for row in matrix for dark in row)
    small = Image.frombytes("L", (modules, modules), pixels)
    scale = max(1, max_side // modules)
    return small.resize((modules * scale, modules * scale), Image.Resampling.NEAREST)


def _draw_texts(card: Image.Image, layout: CardLayout, theme: _Theme) -> None:
    """Draw the tier pill and every text item of ``layout`` onto ``card`` in place."""
    draw = ImageDraw.Draw(card)
    if layout.tier_pill is not None:
        x0, y0, x1, y1 = layout.tier_pill
        pill = Image.new("RGBA", (x1 - x0, y1 - y0), (0, 0, 0, 0))
        pill.paste(theme.pill_fill, (0, 0), _rounded_mask(pill.size, pill.height // 2))
        card.alpha_composite(pill, (x0, y0))
    for item in layout.texts:
        if item.text:
            draw.text(
                item.xy,
                item.text,
                font=_font(item.font_size, item.bold),
                fill=item.fill,
                anchor=item.anchor,
            )


def render_card(face: CardFace, *, opaque: bool = False) -> bytes:
    """Render ``face`` as a 1000x600 PNG and return its bytes.

    By default the image is RGBA with transparent rounded corners (right for sending
    as a document or showing on a web page).  Pass ``opaque=True`` for an RGB image
    with square corners: use that with Telegram ``sendPhoto``, which recompresses to
    JPEG (turning transparency black or white) and rounds the photo's corners itself.
    """
    with _FONT_LOCK:
        layout = _layout_card(face)
        card = _background(_tier_key(face.tier)).copy()
        _draw_texts(card, layout, _theme(face.tier))

    x0, y0, x1, y1 = layout.qr_panel
    qr = _qr_image(face.deep_link, min(x1 - x0, y1 - y0))
    card.paste(qr, (x0 + (x1 - x0 - qr.width) // 2, y0 + (y1 - y0 - qr.height) // 2))

    if opaque:
        out = card.convert("RGB")
    else:
        card.putalpha(_rounded_mask(CARD_SIZE, _RADIUS))
        out = card

    buffer = io.BytesIO()
    # zlib level 6 without ``optimize``: ``optimize=True`` (level 9) takes several times as
    # long for a file hardly smaller.  A 256-colour palette would be much smaller but bands
    # the gradients, and dithering it compresses worse than RGB.
    out.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()

"""Tests for cards.render: the card PNG, its QR code and the text layout."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pytest
import zxingcpp
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFont

from cards.render import (
    CARD_SIZE,
    CardFace,
    CardLayout,
    clean_text,
    fit_text,
    format_card_number,
    layout_card,
    render_card,
)

FONT_DIR = Path(__file__).resolve().parents[2] / "cards" / "fonts"
LINK = "https://t.me/my_loyalty_bot?start=c_AQVzVYMMn5B6RssI5DQaR0hbgFfGiWasgPmNlbEG"
TIERS = ["base", "silver", "gold"]


def make_face(**changes: str) -> CardFace:
    face = CardFace(
        program_name="Кофейня «Зерно»",
        first_name="Анна",
        card_number="123456789012",
        tier_label="Базовый",
        deep_link=LINK,
        caption_label="Номер карты",
        tier="base",
    )
    return replace(face, **changes)


def open_png(data: bytes) -> Image.Image:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def decode_qr(image: Image.Image) -> list[str]:
    return [result.text for result in zxingcpp.read_barcodes(image)]


def assert_inside(inner: tuple[int, int, int, int], outer: tuple[int, int, int, int]) -> None:
    assert outer[0] <= inner[0] <= inner[2] <= outer[2], (inner, outer)
    assert outer[1] <= inner[1] <= inner[3] <= outer[3], (inner, outer)


def overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def assert_layout_sane(layout: CardLayout) -> None:
    width, height = layout.size
    card_box = (0, 0, width, height)
    assert_inside(layout.qr_panel, card_box)
    obstacles = [layout.qr_panel] + ([layout.tier_pill] if layout.tier_pill else [])
    for item in layout.texts:
        if not item.text:
            continue
        assert_inside(item.bbox, card_box)
        if item.role == "tier":
            assert layout.tier_pill is not None
            assert_inside(item.bbox, layout.tier_pill)
            continue
        for obstacle in obstacles:
            assert not overlaps(item.bbox, obstacle), (item, obstacle)
    text_boxes = [item.bbox for item in layout.texts if item.text]
    for i, a in enumerate(text_boxes):
        for b in text_boxes[i + 1 :]:
            assert not overlaps(a, b), (a, b)


# ------------------------------------------------------------------------ render


def test_render_png_size_mode_and_rounded_corners() -> None:
    image = open_png(render_card(make_face()))
    assert image.size == CARD_SIZE == (1000, 600)
    assert image.mode == "RGBA"
    alpha = image.getchannel("A")
    for corner in [(0, 0), (999, 0), (0, 599), (999, 599)]:
        assert alpha.getpixel(corner) == 0
    assert alpha.getpixel((500, 300)) == 255
    assert alpha.getpixel((500, 0)) == 255


def test_render_opaque_variant() -> None:
    image = open_png(render_card(make_face(), opaque=True))
    assert image.size == CARD_SIZE
    assert image.mode == "RGB"
    assert decode_qr(image) == [LINK]


@pytest.mark.parametrize("tier", TIERS)
def test_every_tier_renders_and_qr_decodes(tier: str, tmp_path: Path) -> None:
    data = render_card(make_face(tier=tier, tier_label=tier.title()))
    (tmp_path / f"card_{tier}.png").write_bytes(data)
    image = open_png(data)
    assert decode_qr(image) == [LINK]
    assert len(data) < 200_000


def test_tiers_have_different_colours() -> None:
    colours = {
        open_png(render_card(make_face(tier=tier))).convert("RGB").getpixel((40, 300))
        for tier in TIERS
    }
    assert len(colours) == 3


def test_unknown_tier_falls_back_to_base() -> None:
    unknown = open_png(render_card(make_face(tier="platinum")))
    base = open_png(render_card(make_face(tier="base")))
    assert unknown.getpixel((40, 300)) == base.getpixel((40, 300))


def test_qr_still_decodes_at_phone_size() -> None:
    image = open_png(render_card(make_face(tier="gold"))).convert("RGB")
    small = image.resize((500, 300), Image.Resampling.LANCZOS)
    assert decode_qr(small) == [LINK]


def test_qr_for_long_link_decodes() -> None:
    link = "https://t.me/" + "b" * 32 + "?start=c_" + "A" * 62
    image = open_png(render_card(make_face(deep_link=link)))
    assert decode_qr(image) == [link]


def test_cyrillic_and_hostile_texts_render() -> None:
    face = make_face(
        program_name="Пекарня «Золотой колос»\n🍞",
        first_name="Ёжик\tЩукин 🌸",
        tier_label="Золото",
        caption_label="Номер карты",
        tier="gold",
    )
    image = open_png(render_card(face))
    assert decode_qr(image) == [LINK]
    texts = {item.role: item.text for item in layout_card(face).texts}
    assert texts["name"] == "Ёжик Щукин"
    assert texts["program"] == "Пекарня «Золотой колос»"
    assert texts["caption"] == "НОМЕР КАРТЫ"


def test_empty_texts_render() -> None:
    face = make_face(program_name="", first_name="", tier_label="", caption_label="")
    assert decode_qr(open_png(render_card(face))) == [LINK]
    assert layout_card(face).tier_pill is None


# ------------------------------------------------------------------------ layout


def test_layout_default_face() -> None:
    layout = layout_card(make_face())
    texts = {item.role: item.text for item in layout.texts}
    assert texts == {
        "program": "Кофейня «Зерно»",
        "tier": "Базовый",
        "name": "Анна",
        "caption": "НОМЕР КАРТЫ",
        "number": "1234 5678 9012",
    }
    assert_layout_sane(layout)


def test_very_long_texts_are_ellipsized_and_stay_inside() -> None:
    face = make_face(
        program_name="Пекарня и кондитерская «Золотой колос» на Невском проспекте " * 3,
        first_name="Константин-Александр Вениаминович" * 5,
        tier_label="Платиновый премиум-уровень для самых верных гостей",
        caption_label="Номер карты постоянного покупателя сети пекарен " * 3,
    )
    layout = layout_card(face)
    texts = {item.role: item.text for item in layout.texts}
    for role in ("program", "name", "tier", "caption"):
        assert texts[role].endswith("…"), role
    assert_layout_sane(layout)
    open_png(render_card(face))


def test_sixteen_digit_number_is_shrunk_not_cut() -> None:
    layout = layout_card(make_face(card_number="1234567890123456"))
    number = next(item for item in layout.texts if item.role == "number")
    assert number.text == "1234 5678 9012 3456"
    assert_layout_sane(layout)


@settings(max_examples=40, deadline=None)
@given(
    program=st.text(max_size=120),
    name=st.text(max_size=120),
    tier_label=st.text(max_size=60),
    caption=st.text(max_size=80),
    number=st.from_regex(r"[0-9]{8,16}", fullmatch=True),
)
def test_property_layout_never_overflows(
    program: str, name: str, tier_label: str, caption: str, number: str
) -> None:
    face = make_face(
        program_name=program,
        first_name=name,
        tier_label=tier_label,
        caption_label=caption,
        card_number=number,
    )
    assert_layout_sane(layout_card(face))


# ------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("123456789012", "1234 5678 9012"),
        ("1234567890123456", "1234 5678 9012 3456"),
        ("12345678", "1234 5678"),
        ("1234567890", "1234 5678 90"),
        ("1234 5678 9012", "1234 5678 9012"),
        ("", ""),
    ],
)
def test_format_card_number(number: str, expected: str) -> None:
    assert format_card_number(number) == expected


def test_fit_text() -> None:
    font = ImageFont.truetype(str(FONT_DIR / "DejaVuSans-Bold.ttf"), 40)
    assert fit_text("Анна", font, 500) == "Анна"
    fitted = fit_text("Константин Константинопольский", font, 300)
    assert fitted.endswith("…")
    assert font.getlength(fitted) <= 300
    assert fit_text("Константин", font, 5) == ""
    assert not fit_text("Анна Мария", font, font.getlength("Анна M…")).startswith("Анна …")


def test_clean_text() -> None:
    assert clean_text("  Анна \n Мария\t") == "Анна Мария"
    assert clean_text("Anna 🌸") == "Anna"
    assert clean_text("\u202eevil\u200b") == "evil"
    assert clean_text("Ёлка №1 — «тест»") == "Ёлка №1 — «тест»"


def test_cyrillic_glyphs_are_not_tofu() -> None:
    font = ImageFont.truetype(str(FONT_DIR / "DejaVuSans.ttf"), 32)
    tofu = bytes(font.getmask("\U0010fffd"))
    for char in "АБВГДЕЁЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯабвгдеёжзийклмнопрстуфхцчшщъыьэюя№«»…":
        assert bytes(font.getmask(char)) != tofu, char


def test_fonts_and_license_are_bundled() -> None:
    for name in ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "LICENSE"):
        assert (FONT_DIR / name).is_file()

"""The helper that end-to-end tests expect texts with (tests/texts.py) renders what the bot
writes."""

from __future__ import annotations

import pytest

from tests.texts import count, menu, points, shape, t


def test_a_text_is_rendered_from_its_key_with_its_placeholders_filled() -> None:
    received = t("dispute-received", ticket=7)
    assert (
        "#7" in received
        and "{" not in received
        and received != t("dispute-received", "ru", ticket=7)
    )
    assert t("menu-card", "ru") != t("menu-card", "en")
    with pytest.raises(KeyError):
        t("dispute-received")  # a placeholder left out is a mistake in the test


def test_counts_take_the_plural_form_and_grouping_of_the_language() -> None:
    assert [points(n, "ru") for n in (1, 2, 5, 21)] == ["1 балл", "2 балла", "5 баллов", "21 балл"]
    assert points(1200) == "1,200 points"
    assert count("support-too-long", 1) != count("support-too-long", 2).replace("2", "1")


def test_a_shape_leaves_open_what_the_test_does_not_give() -> None:
    linked = shape("registered-linked")
    assert linked.fullmatch("Your number is now linked to your card 1234 5678. Welcome back!")
    assert not linked.fullmatch("Your number is now linked. Welcome back!")
    assert shape("burn-phrase", "ru", n=22).fullmatch("12 декабря сгорят 22 балла")
    assert not shape("burn-phrase", "ru", n=22).fullmatch("12 декабря сгорит 22 балл")
    assert menu("en")[0] == t("menu-card") and len(menu("ru")) == 6

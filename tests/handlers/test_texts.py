"""How entries and amounts read in the chat (no bot needed: the texts alone)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from bot.i18n import build_i18n
from handlers.history import entry_line
from ledger.views import EntryView
from messaging.texts import burn_text, roubles_text

AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def i18n() -> I18n:
    return build_i18n()


def entry(kind: str, points: int = 0, pending: int = 0, debt: int = 0) -> EntryView:
    return EntryView(
        entry_id=1,
        kind=kind,
        points=points,
        pending=pending,
        debt=debt,
        reference="R-1",
        reason=None,
        created_at=AT,
        reversible=False,
        reversed=False,
    )


def line(i18n: I18n, language: str, item: EntryView) -> str:
    with i18n.context(), i18n.use_locale(language):
        return entry_line(item, "Europe/Moscow")


def test_held_points_their_activation_and_a_take_back_with_debt_read_plainly(i18n: I18n) -> None:
    assert (
        line(i18n, "en", entry("earn", pending=100)) == "2 Mar, 12:00 · +100 · Purchase R-1 · held"
    )
    assert (
        line(i18n, "en", entry("activation", points=100, pending=-100))
        == "2 Mar, 12:00 · Points became usable · 100 points"
    )
    assert (
        line(i18n, "en", entry("refund_reverse", points=-20, debt=80))
        == "2 Mar, 12:00 · -100 · Refund: points taken back R-1 · debt 80 points"
    )
    assert line(i18n, "ru", entry("earn", pending=3)).endswith("Покупка R-1 · на удержании")


def test_a_broadcast_gift_reads_as_gift_points_without_the_broadcast_number(i18n: I18n) -> None:
    gift = entry("gift", points=50)  # its reference is the broadcast's id: not for the member
    assert line(i18n, "en", gift) == "2 Mar, 12:00 · +50 · Gift points"
    assert line(i18n, "ru", gift) == "2 мар., 12:00 · +50 · Подарочные баллы"


@pytest.mark.parametrize(
    ("kopecks", "en", "ru"),
    [(150000, "1,500", "1 500"), (150050, "1,500.50", "1 500,50"), (5, "0.05", "0,05")],
)
def test_roubles_keep_both_kopeck_digits_or_none(
    i18n: I18n, kopecks: int, en: str, ru: str
) -> None:
    for language, want in (("en", en), ("ru", ru)):
        with i18n.context(), i18n.use_locale(language):
            assert roubles_text(kopecks).replace("\u00a0", " ").replace("\u202f", " ") == want


def test_history_changes_are_grouped_like_every_other_number(i18n: I18n) -> None:
    assert line(i18n, "en", entry("earn", points=2000)).startswith("2 Mar, 12:00 · +2,000 · ")
    assert " · -1\u00a0262 · " in line(i18n, "ru", entry("redeem", points=-1262))


@pytest.mark.parametrize(
    ("points", "en", "ru"),
    [
        (1, "1 point burns on 12 December", "12 декабря сгорит 1 балл"),
        (21, "21 points burn on 12 December", "12 декабря сгорит 21 балл"),
        (22, "22 points burn on 12 December", "12 декабря сгорят 22 балла"),
        (100, "100 points burn on 12 December", "12 декабря сгорят 100 баллов"),
    ],
)
def test_the_burn_verb_agrees_with_the_number(i18n: I18n, points: int, en: str, ru: str) -> None:
    day = datetime(2026, 12, 12, 9, 0, tzinfo=UTC)
    for language, expected in (("en", en), ("ru", ru)):
        with i18n.context(), i18n.use_locale(language):
            assert burn_text(points, day, "Europe/Moscow") == expected


def test_a_granted_role_reads_as_a_sentence(i18n: I18n) -> None:
    with i18n.context(), i18n.use_locale("ru"):
        granted = _("staff-granted").format(who="2002", role=_("role-support"))
    with i18n.context(), i18n.use_locale("en"):
        english = _("staff-granted").format(who="2002", role=_("role-support"))
    assert granted == "Готово: 2002 получает роль «поддержка»."  # not "2002 теперь поддержка"
    assert english == "Done: 2002 now has the role “support”."


def test_the_consent_button_suits_anyone_and_the_texts_name_it_as_it_is(i18n: I18n) -> None:
    for language, quoted in (("ru", "«{}»"), ("en", "“{}”")):
        with i18n.context(), i18n.use_locale(language):
            label = _("consent-button").removeprefix("✅ ")
            for key in ("start-greeting", "consent-first"):
                assert quoted.format(label) in _(key), (language, key)
    assert label == "I agree"
    with i18n.context(), i18n.use_locale("ru"):
        assert _("consent-button") == "✅ Принимаю"  # "Согласен" spoke to men only

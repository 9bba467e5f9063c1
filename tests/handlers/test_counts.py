"""Every text with a number in it, rendered for the numbers that trip Russian grammar up: the
noun takes the form its number and its case need, the verb agrees, and nothing is said twice
("Списано баллов: 15 баллов")."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from string import Formatter

import pytest
from aiogram.utils.i18n import I18n
from babel.messages.pofile import read_po
from babel.numbers import format_decimal

from bot.i18n import build_i18n
from messaging import texts as common
from messaging.texts import count_text
from tests.conftest import ROOT

NUMBERS = (1, 2, 5, 11, 21, 22, 25, 101, 1001)

# Russian: the noun's form for a number ending like 1, like 2-4, like 5-0 (and 11-14), by case.
RU_NOUNS = {
    "балл": {"nom": ("балл", "балла", "баллов"), "gen": ("балла", "баллов", "баллов")},
    "день": {"nom": ("день", "дня", "дней")},
    "секунда": {"nom": ("секунда", "секунды", "секунд")},
    "участник": {"nom": ("участник", "участника", "участников")},
    "символ": {
        "acc": ("символ", "символа", "символов"),
        "gen": ("символа", "символов", "символов"),
    },
}
EN_NOUNS = {
    "балл": ("point", "points"),
    "день": ("day", "days"),
    "секунда": ("second", "seconds"),
    "символ": ("character", "characters"),
    "участник": ("member", "members"),
}
RU_STEMS = {
    "балл": "балл",
    "день": "(?:день|дн)",
    "секунда": "секунд",
    "символ": "символ",
    "участник": "участник",
}
EN_STEMS = {
    "балл": "point",
    "день": "day",
    "секунда": "second",
    "символ": "character",
    "участник": "member",
}

# Every plural message: what it counts, the case its sentence puts the noun in and, where a
# verb agrees with the number, the verb's three forms (it stands just before the number).
PLURALS: dict[str, tuple[str, str, tuple[str, str, str] | None]] = {
    "points-count": ("балл", "nom", None),
    "days-count": ("день", "nom", None),
    "seconds-count": ("секунда", "nom", None),
    "burn-phrase": ("балл", "nom", ("сгорит", "сгорят", "сгорят")),
    "burn-warning": ("балл", "nom", ("сгорит", "сгорят", "сгорят")),
    "points-burnt": ("балл", "nom", ("сгорел", "сгорели", "сгорело")),
    "registered": ("балл", "nom", None),
    "birthday-greeting": ("балл", "nom", ("начислен", "начислено", "начислено")),
    "referral-rewarded": ("балл", "nom", ("начислен", "начислено", "начислено")),
    "cashier-redeem-offer": ("балл", "gen", None),
    "cashier-waiting": ("балл", "gen", None),
    "error-redeem_above_limit": ("балл", "gen", None),
    "support-too-long": ("символ", "acc", None),
    "desk-reason-too-long": ("символ", "gen", None),
    "offer-gift": ("балл", "nom", None),
    "bc-members": ("участник", "nom", None),
    "bc-is-burning": ("день", "nom", None),
    "bc-is-inactive": ("день", "nom", None),
    "bc-is-joined": ("день", "nom", None),
}

# Plural messages whose count stands without a noun ("из них получат 1 105", "97 отказались
# от предложений"): the verb agrees with the number, before it or right after it ("не" aside).
VERB_PLURALS: dict[str, tuple[str, tuple[str, str, str]]] = {
    "bc-reachable": ("before", ("получит", "получат", "получат")),
    "bc-opted-out": ("after", ("отказался", "отказались", "отказались")),
    "bc-blocked": ("after", ("заблокировал", "заблокировали", "заблокировали")),
    "bc-no-chat": ("after", ("привязал", "привязали", "привязали")),
}

# What the helpers that fill a message's slot with a count say, as the helper's name.
SLOT_HELPERS: dict[str, tuple[Callable[[int], str], str]] = {
    "points_text": (common.points_text, "балл"),
    "days_text": (common.days_text, "день"),
    "seconds_text": (common.seconds_text, "секунда"),
}
# Russian words after which a count is not in the nominative (a slot filled by a helper is).
NOT_NOMINATIVE = {"до", "от", "из", "без", "для", "около", "кроме", "больше", "меньше", "у", "с"}
NOT_NOMINATIVE |= {"оплату", "списание", "в"}
CLAUSE_END = re.compile(r"[\n.;·,!?(—]")
WORD = re.compile(r"[^\W\d_]+")


@pytest.fixture(scope="module")
def i18n() -> I18n:
    return build_i18n()


def _catalog(language: str) -> list[tuple[str, bool, tuple[str, ...]]]:
    """(key, is plural, its forms) for every translated message."""
    path = ROOT / "locales" / language / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as po_file:
        catalog = read_po(po_file, locale=language)
    found = []
    for message in catalog:
        if not message.id:
            continue
        plural = isinstance(message.id, tuple | list)
        key = message.id[0] if plural else message.id
        forms = tuple(message.string) if plural else (message.string,)
        found.append((key, plural, forms))
    return found


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in Formatter().parse(text) if name}


def _form(number: int) -> int:
    """Russian plural category: 0 for 1, 21, 101; 1 for 2-4, 22-24; 2 for 5-20, 25-30..."""
    if number % 10 == 1 and number % 100 != 11:
        return 0
    if 2 <= number % 10 <= 4 and not 12 <= number % 100 <= 14:
        return 1
    return 2


def _slots() -> dict[str, str]:
    """Slot name -> the helper that fills it, as the code calls it (name=points_text(...))."""
    pattern = re.compile(r"\b(\w+)=(" + "|".join(SLOT_HELPERS) + r")\(")
    slots: dict[str, str] = {}
    for folder in ("handlers", "bot", "scheduler"):
        for path in Path(ROOT, folder).glob("*.py"):
            for name, helper in pattern.findall(path.read_text(encoding="utf-8")):
                assert slots.setdefault(name, helper) == helper, f"{name} is filled two ways"
    return slots


def _marked(text: str) -> dict[str, str]:
    """Every placeholder but the count, as a visible marker without words or digits."""
    return {name: "‹›" for name in _placeholders(text) if name != "n"}


def _rendered(i18n: I18n, language: str, key: str) -> Iterator[tuple[int, str]]:
    with i18n.context(), i18n.use_locale(language):
        for number in NUMBERS:
            forms = i18n.gettext(key, f"{key}-plural", number)
            yield number, count_text(key, number, **_marked(forms))


def test_every_plural_message_is_known_to_this_test() -> None:
    for language in ("ru", "en"):
        plurals = {key for key, plural, _ in _catalog(language) if plural}
        assert sorted(plurals ^ (set(PLURALS) | set(VERB_PLURALS))) == [], language


@pytest.mark.parametrize("key", sorted(PLURALS))
def test_russian_counts_take_the_form_their_number_and_case_need(i18n: I18n, key: str) -> None:
    noun, case, verbs = PLURALS[key]
    for number, text in _rendered(i18n, "ru", key):
        grouped = re.escape(format_decimal(number, locale="ru"))
        after = re.search(grouped + r"\s+(\w+)", text)
        assert after is not None and after.group(1) == RU_NOUNS[noun][case][_form(number)], text
        if verbs is not None:
            before = re.search(r"(\w+)\s+" + grouped, text)
            assert before is not None and before.group(1) == verbs[_form(number)], text
        stems = re.findall(RU_STEMS[noun], text, flags=re.IGNORECASE)
        assert len(stems) == 1, f"said twice: {text}"


@pytest.mark.parametrize("key", sorted(VERB_PLURALS))
def test_russian_verbs_agree_with_a_count_that_has_no_noun(i18n: I18n, key: str) -> None:
    side, verbs = VERB_PLURALS[key]
    for number, text in _rendered(i18n, "ru", key):
        grouped = re.escape(format_decimal(number, locale="ru"))
        if side == "before":
            found = re.search(r"(\w+)\s+" + grouped, text)
        else:
            found = re.search(grouped + r"\s+(?:не\s+)?(\w+)", text)
        assert found is not None and found.group(1) == verbs[_form(number)], text
    for number, text in _rendered(i18n, "en", key):
        assert format_decimal(number, locale="en") in text, text


@pytest.mark.parametrize("key", sorted(PLURALS))
def test_english_counts_agree_with_their_number(i18n: I18n, key: str) -> None:
    noun = PLURALS[key][0]
    for number, text in _rendered(i18n, "en", key):
        grouped = re.escape(format_decimal(number, locale="en"))
        after = re.search(grouped + r"\s+(\w+)", text)
        assert after is not None and after.group(1) == EN_NOUNS[noun][number != 1], text
        stems = re.findall(EN_STEMS[noun], text, flags=re.IGNORECASE)
        assert len(stems) == 1, f"said twice: {text}"


@pytest.mark.parametrize("language", ["ru", "en"])
def test_a_count_put_into_a_message_is_not_named_twice_nor_after_a_preposition(
    i18n: I18n, language: str
) -> None:
    """A slot filled with "21 балл" (points_text and the like) stands where the nominative is
    right, and its clause does not name the noun again."""
    slots = _slots()
    assert {"points", "balance", "seconds"} <= set(slots)  # the scan sees the call sites
    stems = RU_STEMS if language == "ru" else EN_STEMS
    checked = 0
    for key, _plural, forms in _catalog(language):
        for form in forms:
            for slot in _placeholders(form) & set(slots):
                helper, noun = SLOT_HELPERS[slots[slot]]
                values = _marked(form) | {"n": "‹›"}
                with i18n.context(), i18n.use_locale(language):
                    for number in NUMBERS:
                        values[slot] = f"⟦{helper(number)}⟧"
                        text = form.format(**values)
                        start, end = text.index("⟦"), text.index("⟧")
                        head = CLAUSE_END.split(text[:start])[-1]
                        tail = CLAUSE_END.split(text[end + 1 :])[0]
                        clause = head + tail
                        assert not re.search(stems[noun], clause, re.IGNORECASE), (key, text)
                        words = WORD.findall(head.lower())
                        if language == "ru" and words and not head.rstrip().endswith(":"):
                            assert words[-1] not in NOT_NOMINATIVE, (key, text)
                checked += 1
    assert checked > 20


@pytest.mark.parametrize("language", ["ru", "en"])
def test_no_text_says_a_word_twice_in_a_row(language: str) -> None:
    for key, _plural, forms in _catalog(language):
        for form in forms:
            words = WORD.findall(re.sub(r"\{\w*\}|/\w+", "‹›", form))  # not /commands
            assert all(a != b for a, b in itertools.pairwise(words)), (key, form)

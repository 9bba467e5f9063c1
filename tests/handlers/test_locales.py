"""Both languages have every text, and every text the code asks for exists."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.pofile import read_po

from handlers.commands import MEMBER_COMMANDS, ROLE_COMMANDS
from handlers.support import EXPLAINED
from staff.roles import Role
from tests.conftest import ROOT

LANGUAGES = ("en", "ru")
# Keys built at run time from a known set of values.
FAMILIES = {
    "role-": [role.value for role in Role],
    "desk-why-": [*sorted(EXPLAINED), "other"],
    "desk-kind-": ["support", "dispute"],
    "support-new-": ["support", "dispute"],
    "desk-status-": ["open", "closed"],
    "desk-member-": ["active", "erased"],
    "cmd-": [*MEMBER_COMMANDS, *(name for names in ROLE_COMMANDS.values() for name in names)],
}


def _keys(language: str) -> set[str]:
    path = ROOT / "locales" / language / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as po_file:
        catalog = read_po(po_file, locale=language)
    keys = set()
    for message in catalog:
        forms = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.id and all(forms):  # translated, every plural form too
            keys.add(message.id if isinstance(message.id, str) else message.id[0])
    return keys


def _asked_for() -> set[str]:
    """Literal keys in _("..."), gettext("..."), ngettext("...", ...) and count_text("...", ...)
    calls."""
    pattern = re.compile(r'(?:\b_|gettext|ngettext|count_text)\(\s*"([a-z0-9_-]+)"')
    asked = set()
    for folder in ("handlers", "bot", "scheduler"):
        for path in Path(ROOT, folder).glob("*.py"):
            asked |= set(pattern.findall(path.read_text(encoding="utf-8")))
    return asked


def test_both_languages_have_the_same_texts() -> None:
    english, russian = _keys("en"), _keys("ru")
    assert sorted(english - russian) == [] and sorted(russian - english) == []


def test_every_text_the_code_asks_for_exists() -> None:
    known = _keys("en")
    built = {prefix + value for prefix, values in FAMILIES.items() for value in values}
    asked = _asked_for() | built
    assert sorted(asked - known) == []

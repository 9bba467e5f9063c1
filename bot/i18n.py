"""Translations: `locales/<lang>/LC_MESSAGES/messages.po`, compiled at start-up.

aiogram's gettext i18n loads only compiled `.mo` files; compiling the `.po` sources with Babel
into a temporary folder at start-up keeps the repository free of build artefacts. Every text
a person reads is keyed (`menu-card`, `balance-usable`, ...) and lives in the `.po` files.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from aiogram.types import TelegramObject, User
from aiogram.utils.i18n import I18n, I18nMiddleware
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from messaging.languages import language_for

LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"
DEFAULT_LANGUAGE = "en"
DOMAIN = "messages"


def compile_locales(source: Path, target: Path) -> Path:
    """Compile every `.po` under `source` into `target`; returns `target`."""
    for po_path in sorted(source.glob(f"*/LC_MESSAGES/{DOMAIN}.po")):
        language = po_path.parent.parent.name
        with po_path.open("rb") as po_file:
            catalog = read_po(po_file, locale=language)
        mo_path = target / language / "LC_MESSAGES" / f"{DOMAIN}.mo"
        mo_path.parent.mkdir(parents=True)
        with mo_path.open("wb") as mo_file:
            write_mo(mo_file, catalog)
    return target


def build_i18n() -> I18n:
    """Translations loaded into memory (the compiled files are not needed afterwards)."""
    with tempfile.TemporaryDirectory(prefix="loyalty-locales-") as folder:
        compiled = compile_locales(LOCALES_DIR, Path(folder))
        return I18n(path=compiled, default_locale=DEFAULT_LANGUAGE, domain=DOMAIN)


class MemberLanguageMiddleware(I18nMiddleware):
    """The member's chosen language, or their Telegram language before they register."""

    async def get_locale(self, event: TelegramObject, data: dict[str, Any]) -> str:
        member = data.get("member")
        if member is not None:
            return str(member.language)
        user: User | None = data.get("event_from_user")
        return language_for(user.language_code if user else None)

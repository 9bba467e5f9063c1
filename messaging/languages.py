"""Which language to write to someone in."""

from __future__ import annotations

from aiogram.utils.i18n import I18n

from ledger.service import LedgerService
from staff.roles import StaffService


def language_for(telegram_language: str | None) -> str:
    """The member's language from Telegram's: ru for ru*, English otherwise."""
    return "ru" if (telegram_language or "").lower().startswith("ru") else "en"


class StaffLanguage:
    """The language to write to a staff member in, first (they are not the sender): theirs
    as a member, else the one their Telegram was last seen speaking, else `fallback` (or the
    default)."""

    def __init__(self, ledger: LedgerService, i18n: I18n, staff: StaffService) -> None:
        self.ledger = ledger
        self.i18n = i18n
        self.staff = staff

    async def __call__(self, telegram_id: int, fallback: str | None = None) -> str:
        member = await self.ledger.member_by_telegram(telegram_id)
        if member is not None:
            return member.language
        seen = await self.staff.language_of(telegram_id)
        return seen or fallback or self.i18n.default_locale

"""A member deletes their data: each package erases what it keeps of them, in its own tables,
in one transaction (the ledger's, which locks the member first):

    cards          the card picture (it shows the name)
    support        what they wrote to support and were answered
    outbox         the messages to them, and support's news of their requests (which quote
                   them), by the keys' prefix the notices' module gives
    staff          the @username and name kept of them as staff, if they are staff
    ledger         phone, Telegram id, names, birthday: the entries stay, anonymous

Nothing of theirs is left in any table nor, on SQLite, in the database's files (the ledger
empties the write-ahead log after the transaction).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from cards.service import erase_member_cards
from ledger.service import LedgerService
from messaging.notifier import moved_prefix, news_prefix
from messaging.outbox import erase_member_messages
from staff.roles import erase_staff_names
from support.tickets import erase_member_tickets


@dataclass(frozen=True, slots=True)
class Privacy:
    ledger: LedgerService


async def erase_member(privacy: Privacy, member_id: int) -> None:
    """Erase the member's personal data everywhere (MemberNotFound if there is no such
    member). Erasing twice is harmless."""
    member = await privacy.ledger.get_member(member_id)
    telegram_id = member.telegram_id

    def elsewhere(conn: Connection) -> None:
        erase_member_cards(conn, member_id)
        tickets = erase_member_tickets(conn, member_id)
        about = [moved_prefix(member_id), *(news_prefix(t) for t in tickets)]
        erase_member_messages(conn, member_id, about=about)
        if telegram_id is not None:
            erase_staff_names(conn, telegram_id)

    await privacy.ledger.erase_member(member_id, also=elsewhere)

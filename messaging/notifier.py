"""Messages the bot starts on its own, rendered in the member's language and handed to the
outbox (messaging.outbox), the one delivery path. The notices a ledger operation causes (the
receipts, a referral reward) are written by the operation itself (storage/notices.py) and
rendered when they are sent (messaging/notices.py)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from sqlalchemy import Connection

from cards.number import format_card_number
from ledger.service import LedgerService
from ledger.views import Burnt, MemberView
from messaging.languages import StaffLanguage
from messaging.outbox import Outbox, OutboxMessage
from messaging.texts import (
    count_text,
    date_text,
    points_text,
    shorten,
    signed_text,
    tier_text,
)
from staff.roles import StaffService
from storage.notices import write_notice
from support.tickets import Ticket, TicketService

NEWS = "ticket:new:"  # the dedup keys of support's news: ticket:new:<ticket>:<staff id>
IN_FLIGHT = frozenset({"sent", "queued", "sending"})  # delivered, or may still be

# News of a burn waits at most this long for quiet hours or the weekly cap to let it through.
BURNT_NEWS_LIFETIME = timedelta(days=3)


@dataclass(frozen=True, slots=True)
class Recipient:
    """A member as the messages to them need them."""

    member_id: int
    telegram_id: int | None  # None: nobody to tell (imported, or left Telegram)
    language: str
    timezone: str


class Notifier:
    def __init__(self, i18n: I18n, ledger: LedgerService, outbox: Outbox) -> None:
        self.i18n = i18n
        self.ledger = ledger
        self.outbox = outbox

    async def _tell_member(
        self, member_id: int, dedup_key: str, render: Callable[[str], str]
    ) -> bool:
        """Queue a transactional message to a member, rendered in their language by `render`
        (given their usable balance, as text); False if they cannot be messaged."""
        member = await self.ledger.get_member(member_id)
        if member.telegram_id is None or not member.is_active:
            return False
        balance = (await self.ledger.balance(member_id)).balance
        with self.i18n.context(), self.i18n.use_locale(member.language):
            text = render(points_text(balance))
        return await self.outbox.enqueue(
            dedup_key=dedup_key, chat_id=member.telegram_id, member_id=member_id, text=text
        )

    def burn_warning(
        self,
        recipient: Recipient,
        points: int,
        burns_at: datetime,
        *,
        dedup_key: str,
        relevant_until: datetime,
    ) -> dict[str, Any] | None:
        """The warning "N points burn on DATE" in the member's language, as the message to queue
        (`Outbox.enqueue_many`; a warning already queued under `dedup_key`, this date and
        threshold, is not queued again); None for a member without a chat."""
        if recipient.telegram_id is None:
            return None
        with self.i18n.context(), self.i18n.use_locale(recipient.language):
            text = count_text("burn-warning", points, date=date_text(burns_at, recipient.timezone))
        return {
            "dedup_key": dedup_key,
            "chat_id": recipient.telegram_id,
            "member_id": recipient.member_id,
            "text": text,
            "category": "reminder",
            "expires_at": relevant_until,
        }

    def points_burnt(self, conn: Connection, recipient: Recipient, burnt: Burnt) -> None:
        """Queue "N points burnt on DATE; balance M" in the burn's transaction (so a burn is
        never without its notice, nor a notice without its burn), as a notice rendered when it
        is sent. A reminder, as the burn warnings: its opt-out, quiet hours and the weekly cap
        apply."""
        now = self.ledger.clock.now()
        assert recipient.telegram_id is not None
        write_notice(
            conn,
            kind="points-burnt",
            payload={"points": burnt.points, "balance": burnt.balance, "at": now.isoformat()},
            dedup_key=f"burnt:{recipient.member_id}:{now.isoformat()}",
            member_id=recipient.member_id,
            chat_id=recipient.telegram_id,
            now=now,
            category="reminder",
            expires_at=now + BURNT_NEWS_LIFETIME,
        )

    def tier_up(self, recipient: Recipient, tier_name: str, today: str) -> dict[str, Any] | None:
        """The news "You've reached TIER" in the member's language, as the message to queue
        (`Outbox.queue_in`); None for a member without a chat."""
        if recipient.telegram_id is None:
            return None
        tier = self.ledger.rules.tier(tier_name)
        with self.i18n.context(), self.i18n.use_locale(recipient.language):
            text = _("tier-up").format(tier=tier_text(tier_name), rate=tier.rub_per_point)
        return {
            "dedup_key": f"tier:{recipient.member_id}:{tier_name}:{today}",
            "chat_id": recipient.telegram_id,
            "member_id": recipient.member_id,
            "text": text,
            "category": "tier",
        }

    async def birthday(
        self, recipient: Recipient, points: int, valid_until: datetime, year: int
    ) -> bool:
        if recipient.telegram_id is None:
            return False
        with self.i18n.context(), self.i18n.use_locale(recipient.language):
            text = count_text(
                "birthday-greeting", points, date=date_text(valid_until, recipient.timezone)
            )
        return await self.outbox.enqueue(
            dedup_key=f"birthday:{recipient.member_id}:{year}",
            chat_id=recipient.telegram_id,
            member_id=recipient.member_id,
            text=text,
            category="birthday",
            expires_at=valid_until,
        )

    async def account_moved(self, member: MemberView, previous_chat: int) -> bool:
        """Tell the Telegram account a card was linked to that another account (one that
        shared the same phone number) has it now."""
        with self.i18n.context(), self.i18n.use_locale(member.language):
            text = _("account-moved").format(card=format_card_number(member.card_number))
        # Not the member's row (a 403 from the old account must not mark the new one
        # unreachable), so erasing the member finds it by its key's prefix; the key names no
        # Telegram account.
        return await self.outbox.enqueue(
            dedup_key=f"{moved_prefix(member.member_id)}{secrets.token_hex(8)}",
            chat_id=previous_chat,
            text=text,
        )

    # ------------------------------------------------------------------ support

    async def support_answer(self, member_id: int, ticket_id: int, answer: str | None) -> bool:
        """Tell the member their request was answered (with the answer) or closed."""
        return await self._tell_member(
            member_id,
            f"ticket:closed:{ticket_id}",
            lambda _balance: (
                _("support-answered").format(ticket=ticket_id, answer=answer)
                if answer
                else _("support-closed").format(ticket=ticket_id)
            ),
        )

    async def points_changed(self, member_id: int, change: int, reason: str, key: str) -> bool:
        """Tell the member support added or took points (an adjustment or a reversal)."""
        return await self._tell_member(
            member_id,
            f"support:points:{key}",
            lambda balance: _("support-points-changed").format(
                change=signed_text(change), reason=reason, balance=balance
            ),
        )

    async def support_unreachable(self, member_id: int, ticket_id: int) -> bool:
        """Tell the member nobody on the team could be reached about their request (it is
        kept, and answered when someone opens the desk)."""
        return await self._tell_member(
            member_id,
            f"ticket:unreached:{ticket_id}",
            lambda _balance: _("support-unreachable").format(ticket=ticket_id),
        )

    async def new_ticket(
        self, ticket: Ticket, member: MemberView, staff: list[tuple[int, str]]
    ) -> int:
        """Tell support (each of `staff`: their Telegram id and language, see
        messaging.languages.StaffLanguage) about a new request; how many messages were queued."""
        queued = 0
        for staff_id, language in staff:
            with self.i18n.context(), self.i18n.use_locale(language):
                text = _(f"support-new-{ticket.kind}").format(
                    ticket=ticket.ticket_id,
                    name=member.first_name or "—",
                    card=format_card_number(member.card_number),
                    text=shorten(ticket.text, 300),
                )
            queued += await self.outbox.enqueue(
                dedup_key=f"{news_prefix(ticket.ticket_id)}{staff_id}",
                chat_id=staff_id,
                text=text,
            )
        return queued


def moved_prefix(member_id: int) -> str:
    """The start of the keys of the notes that a member's card moved to another account."""
    return f"moved:{member_id}:"


def news_prefix(ticket_id: int) -> str:
    return f"{NEWS}{ticket_id}:"


class SupportNews:
    """A member's new request reaches someone who can answer it: the support staff, else the
    admins. When nobody of one group could be written to (they never opened their chat with
    the bot, or blocked it), the next group is told; when nobody at all, the member is told
    that their request is kept, and the desk shows it (`reached_nobody`)."""

    def __init__(
        self,
        notifier: Notifier,
        staff: StaffService,
        staff_language: StaffLanguage,
        tickets: TicketService,
    ) -> None:
        self.notifier = notifier
        self.staff = staff
        self.staff_language = staff_language
        self.tickets = tickets

    async def announce(self, ticket: Ticket, member: MemberView) -> None:
        await self._tell_next(ticket, member, tried=set())

    async def undelivered(self, message: OutboxMessage) -> None:
        """The outbox could not deliver a message: if it was news of a ticket that now has
        reached nobody, the next group is told (or the member)."""
        if not message.dedup_key.startswith(NEWS):
            return
        ticket_id = int(message.dedup_key.split(":")[2])
        outcomes = await self.notifier.outbox.outcomes(news_prefix(ticket_id))
        if IN_FLIGHT & set(outcomes.values()):
            return  # someone got it, or still may
        ticket = await self.tickets.get(ticket_id)
        if ticket is None or ticket.status != "open":
            return
        member = await self.notifier.ledger.get_member(ticket.member_id)
        tried = {int(key.rsplit(":", 1)[1]) for key in outcomes}
        await self._tell_next(ticket, member, tried)

    async def reached_nobody(self, ticket_id: int) -> bool:
        """Whether no news of this ticket reached anyone, nor still may."""
        outcomes = await self.notifier.outbox.outcomes(news_prefix(ticket_id))
        return not IN_FLIGHT & set(outcomes.values())

    async def _tell_next(self, ticket: Ticket, member: MemberView, tried: set[int]) -> None:
        for group in await self.staff.who_answers_members():
            people = [person for person in group if person not in tried]
            if not people:
                continue
            languages = [(person, await self.staff_language(person)) for person in people]
            if await self.notifier.new_ticket(ticket, member, languages):
                return
        await self.notifier.support_unreachable(ticket.member_id, ticket.ticket_id)

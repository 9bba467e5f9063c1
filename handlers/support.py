"""The support desk, for support staff and admins, in their private chat with the bot.

    /tickets                         the open requests and disputes, oldest first
    /ticket N                        one request: who, what, the disputed entry, its answer
    /reply N TEXT                    send the member TEXT and close the request
    /close N                         close it without an answer (the member is told)
    /member WHO                      profile, balance, open requests, the last entries
    /adjust WHO +50|-50 REASON       add or take points, with a reason
    /reverse ENTRY REASON            undo a bonus or an adjustment

WHO is a card number, a phone (no spaces), @username or #member-id. Every action is audited
(who, what, when, why) and the member is told in their own language, through the outbox.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from cards.number import format_card_number
from handlers.common import plain_number, utf16_length
from handlers.filters import HasRole
from handlers.history import entry_line
from ledger.errors import LedgerError, MemberNotFound
from ledger.phones import mask_phone
from ledger.service import LedgerService
from ledger.views import EntryView, MemberView, PurchaseView
from messaging.notifier import Notifier, SupportNews
from messaging.texts import (
    count_text,
    moment_text,
    points_text,
    roubles_text,
    shorten,
    signed_text,
    tier_text,
)
from staff.audit import AuditLog, staff_actor
from staff.roles import Role
from support.tickets import MAX_TICKET_TEXT, Ticket, TicketService, TicketTooLong
from usecases.desk import Changed, Desk, adjust, reverse

log = logging.getLogger("loyalty.support")

LIST_LIMIT = 20
HISTORY_LINES = 10
MESSAGE_BUDGET = 3800  # UTF-16 units of one answer (Telegram's limit is 4096)
QUOTE_LIMIT = 1500  # a member's text or an answer, quoted on the desk
MAX_REASON = 500  # the reason of an adjustment or a reversal: the member reads it
ID_LIMIT = 2**31 - 1  # ticket, entry and member numbers are 32-bit
PURCHASE_KINDS = frozenset({"earn", "redeem"})  # entries whose reference is a receipt id
# Refusals the desk explains in the reader's language; anything else reads as the ledger's.
EXPLAINED = frozenset(
    {
        "insufficient_points",
        "entry_not_reversible",
        "entry_not_found",
        "points_limit",
        "invalid_points",
        "member_erased",
        "own_account",
    }
)


def build_support_router() -> Router:
    router = Router(name="support-desk")
    router.message.filter(HasRole(Role.SUPPORT, Role.ADMIN), F.chat.type == "private")
    router.message.register(list_tickets, Command("tickets"))
    router.message.register(show_ticket, Command("ticket"))
    router.message.register(answer_ticket, Command("reply", "close"))
    router.message.register(show_member, Command("member"))
    router.message.register(adjust_points, Command("adjust"))
    router.message.register(reverse_entry, Command("reverse"))
    return router


# --------------------------------------------------------------------------- requests


async def list_tickets(
    message: Message, tickets: TicketService, ledger: LedgerService, support_news: SupportNews
) -> None:
    shown, total = await tickets.open_tickets(LIST_LIMIT)
    if not shown:
        await message.answer(_("desk-list-empty"))
        return
    lines = [_("desk-list-title").format(count=total)]
    listed = 0
    for ticket in shown:
        member = await ledger.get_member(ticket.member_id)
        line = _("desk-list-line").format(
            ticket=ticket.ticket_id,
            kind=_(f"desk-kind-{ticket.kind}"),
            name=shorten(_name(member), 40),
            when=moment_text(ticket.created_at, member.timezone),
            text=shorten(ticket.text, 80),
        )
        if await support_news.reached_nobody(ticket.ticket_id):
            line += "\n" + _("desk-reached-nobody")
        if utf16_length("\n\n".join([*lines, line])) > MESSAGE_BUDGET:
            break
        lines.append(line)
        listed += 1
    if total > listed:
        lines.append(_("desk-list-more").format(more=total - listed))
    lines.append(_("desk-list-hint"))
    await message.answer("\n\n".join(lines))


async def show_ticket(
    message: Message,
    command: CommandObject,
    tickets: TicketService,
    ledger: LedgerService,
    support_news: SupportNews,
) -> None:
    ticket = await _ticket_from(message, command, tickets, _("desk-usage-ticket"))
    if ticket is None:
        return
    member = await ledger.get_member(ticket.member_id)
    lines = [
        _("desk-ticket").format(
            ticket=ticket.ticket_id,
            kind=_(f"desk-kind-{ticket.kind}"),
            status=_(f"desk-status-{ticket.status}"),
            when=moment_text(ticket.created_at, member.timezone),
            name=shorten(_name(member), 60),
            card=format_card_number(member.card_number),
            member=member.member_id,
        ),
    ]
    if ticket.entry_id is not None:
        try:
            entry = await ledger.entry(ticket.entry_id)
        except LedgerError:
            entry = None
        if entry is not None:
            lines.append(_("desk-ticket-entry").format(line=_entry(entry, member)))
            purchase = await _purchase_of(entry, ledger)
            if purchase is not None:
                lines.append(_purchase_line(purchase, member))
    lines.append(_("desk-quote").format(text=_cut(ticket.text)))
    if ticket.status == "closed":
        when = moment_text(ticket.closed_at or ticket.created_at, member.timezone)
        if ticket.answer:
            answer = _cut(ticket.answer)
            lines.append(_("desk-ticket-answered").format(when=when, answer=answer))
        else:
            lines.append(_("desk-ticket-closed").format(when=when))
    else:
        if await support_news.reached_nobody(ticket.ticket_id):
            lines.append(_("desk-reached-nobody"))
        lines.append(_("desk-ticket-actions").format(ticket=ticket.ticket_id))
    await message.answer("\n\n".join(lines))


async def answer_ticket(
    message: Message,
    command: CommandObject,
    tickets: TicketService,
    ledger: LedgerService,
    notifier: Notifier,
    audit: AuditLog,
) -> None:
    """/reply N TEXT: send the member TEXT and close; /close N: close without an answer."""
    number, rest = _number_and_text(command.args)
    replying = command.command == "reply"
    ticket_id = plain_number(number, ID_LIMIT)
    if ticket_id is None or replying != bool(rest):
        await message.answer(_("desk-usage-reply" if replying else "desk-usage-close"))
        return
    answer = rest if replying else None
    staff_id = _sender(message)
    try:
        outcome = await tickets.close(ticket_id, by=staff_id, answer=answer)
    except TicketTooLong:
        await message.answer(count_text("support-too-long", MAX_TICKET_TEXT))
        return
    if outcome is None:
        await message.answer(_("desk-no-ticket").format(ticket=ticket_id))
        return
    ticket, closed = outcome
    if not closed:  # someone else answered or closed it first
        member = await ledger.get_member(ticket.member_id)
        when = moment_text(ticket.closed_at or ticket.created_at, member.timezone)
        await message.answer(_("desk-already-closed").format(ticket=ticket_id, when=when))
        return
    await audit.record(
        staff_actor(staff_id),
        "support.reply" if answer else "support.close",
        target=f"ticket:{ticket_id}",
        member=ticket.member_id,
    )
    told = await _tell(notifier.support_answer(ticket.member_id, ticket_id, answer))
    key = "desk-replied" if answer else "desk-closed"
    await message.answer(_(key).format(ticket=ticket_id) + "\n" + _told_text(told))


# ---------------------------------------------------------------------------- members


async def show_member(
    message: Message,
    command: CommandObject,
    ledger: LedgerService,
    tickets: TicketService,
    i18n: I18n,
) -> None:
    usage = _("desk-usage-member")
    member = await _member_from(message, (command.args or "").strip(), ledger, usage)
    if member is None:
        return
    view = await ledger.balance(member.member_id)
    username = f" (@{member.username})" if member.username else ""
    lines = [
        _("desk-member").format(
            name=shorten(_name(member), 60) + username,
            member=member.member_id,
            phone=mask_phone(member.phone or ""),
            card=format_card_number(member.card_number),
            tier=tier_text(member.tier),
            balance=points_text(view.balance),
            pending=points_text(view.pending),
            debt=points_text(view.debt),
            status=_(f"desk-member-{member.status}"),
            joined=moment_text(member.created_at, member.timezone),
        )
    ]
    language = i18n.gettext("language-name", locale=member.language)
    lines.append(_("desk-member-language").format(language=language))
    own = await tickets.tickets_of(member.member_id)
    open_ones = [ticket.ticket_id for ticket in own if ticket.status == "open"]
    if open_ones:
        lines.append(
            _("desk-member-tickets").format(tickets=", ".join(f"#{n}" for n in open_ones))
        )
    history = await ledger.history(member.member_id, 0, HISTORY_LINES)
    if history.entries:
        lines.append(
            "\n".join(
                [_("desk-member-history")] + [_entry(entry, member) for entry in history.entries]
            )
        )
    await message.answer("\n\n".join(lines))


async def adjust_points(message: Message, command: CommandObject, desk: Desk) -> None:
    usage = _("desk-usage-adjust")
    who, signed, reason = _three(command.args)
    sign = -1 if signed.startswith("-") else 1
    size = plain_number(signed.removeprefix("+").removeprefix("-"), ID_LIMIT)
    if not who or size is None or not reason:
        await message.answer(usage)
        return
    if await _reason_too_long(message, reason):
        return
    member = await _member_from(message, who, desk.ledger, usage)
    if member is None:
        return
    staff_id = _sender(message)
    if member.telegram_id == staff_id:  # their own points: another person decides
        await message.answer(_("desk-own-account"))
        return
    changed = await _refusing(
        message,
        lambda: adjust(
            desk,
            staff_id=staff_id,
            member_id=member.member_id,
            points=sign * size,
            reason=reason,
            # A redelivered update (a restart mid-way) adjusts once.
            operation_id=f"tg:{message.chat.id}:{message.message_id}",
        ),
    )
    if changed is not None:
        await _done(message, changed, target=None)


async def reverse_entry(message: Message, command: CommandObject, desk: Desk) -> None:
    number, reason = _number_and_text(command.args)
    target = plain_number(number, ID_LIMIT)
    if target is None or not reason:
        await message.answer(_("desk-usage-reverse"))
        return
    if await _reason_too_long(message, reason):
        return
    changed = await _refusing(
        message,
        lambda: reverse(
            desk, staff_id=_sender(message), entry_id=target, reason=reason
        ),
    )
    if changed is not None:
        await _done(message, changed, target=target)


async def _done(message: Message, changed: Changed, *, target: int | None) -> None:
    """Tell the staff member what happened (and whether the member was told)."""
    entry, change, balance = changed.entry, changed.change, points_text(changed.balance)
    if target is None:
        text = _("desk-adjusted").format(
            change=signed_text(change), entry=entry.entry_id, balance=balance
        )
    else:
        text = _("desk-reversed").format(
            target=target, change=signed_text(change), entry=entry.entry_id, balance=balance
        )
    if changed.told is not None:
        text += "\n" + _told_text(changed.told)
    await message.answer(text)


# ---------------------------------------------------------------------------- helpers


async def _ticket_from(
    message: Message, command: CommandObject, tickets: TicketService, usage: str
) -> Ticket | None:
    number = plain_number((command.args or "").strip().lstrip("#"), ID_LIMIT)
    if number is None:
        await message.answer(usage)
        return None
    ticket = await tickets.get(number)
    if ticket is None:
        await message.answer(_("desk-no-ticket").format(ticket=number))
    return ticket


async def _member_from(
    message: Message, who: str, ledger: LedgerService, usage: str
) -> MemberView | None:
    """A member by card number, phone, @username or #member-id; None after saying why."""
    if not who:
        await message.answer(usage)
        return None
    member: MemberView | None = None
    try:
        if who.startswith("@"):
            member = await ledger.member_by_username(who[1:])
        elif who.startswith("#"):
            number = plain_number(who[1:], ID_LIMIT)
            member = await ledger.get_member(number) if number is not None else None
        else:
            member = await ledger.find_member(who)
    except LedgerError:
        member = None
    if member is None:
        await message.answer(_("desk-no-member").format(who=shorten(who, 40)))
    return member


async def _refusing(message: Message, action: Callable[[], Awaitable[Changed]]) -> Changed | None:
    """Run a ledger action; a refusal is explained to the staff member, and changes nothing."""
    try:
        return await action()
    except MemberNotFound:
        await message.answer(_("desk-why-member_erased"))
    except LedgerError as error:
        if error.code in EXPLAINED:
            await message.answer(_(f"desk-why-{error.code}"))
        else:
            await message.answer(_("desk-why-other").format(why=error.message))
    return None


async def _tell(queued: Awaitable[bool]) -> bool:
    """Queue a message to the member; whether it could be (not erased, reachable)."""
    try:
        return await queued
    except Exception:  # what was done stands; the message is a courtesy
        log.exception("could not queue a support message to a member")
        return False


def _entry(entry: EntryView, member: MemberView) -> str:
    line = f"#{entry.entry_id} · {entry_line(entry, member.timezone)}"
    if entry.reason:  # why support adjusted or reversed it, as the member was told
        line += " · " + _("desk-entry-reason").format(reason=shorten(entry.reason, 80))
    if entry.reversed:
        line += " · " + _("desk-entry-reversed")
    return line


async def _purchase_of(entry: EntryView, ledger: LedgerService) -> PurchaseView | None:
    """The purchase a purchase's entry (its points earned or redeemed) belongs to."""
    if entry.kind not in PURCHASE_KINDS or not entry.reference:
        return None
    return await ledger.receipt(entry.reference)


def _purchase_line(purchase: PurchaseView, member: MemberView) -> str:
    """ "Purchase R-1: 1,500 ₽ on 2 Mar, 12:00 · refunded 500 ₽"."""
    line = _("desk-ticket-purchase").format(
        receipt=purchase.receipt_id,
        amount=roubles_text(purchase.amount),
        when=moment_text(purchase.created_at, member.timezone),
    )
    if purchase.refunded:
        line += " · " + _("desk-ticket-refunded").format(amount=roubles_text(purchase.refunded))
    return line


def _number_and_text(args: str | None) -> tuple[str, str]:
    """ "12 some text" (or "#12" and text on the next lines) -> ("12", "some text")."""
    parts = (args or "").strip().split(maxsplit=1)
    parts += [""] * (2 - len(parts))
    return parts[0].lstrip("#"), parts[1].strip()


def _three(args: str | None) -> tuple[str, str, str]:
    parts = (args or "").strip().split(maxsplit=2)
    parts += [""] * (3 - len(parts))
    return parts[0], parts[1], parts[2].strip()


async def _reason_too_long(message: Message, reason: str) -> bool:
    """The member reads the reason: at most MAX_REASON characters, else say so."""
    if len(reason) <= MAX_REASON:
        return False
    await message.answer(count_text("desk-reason-too-long", MAX_REASON))
    return True


def _cut(text: str) -> str:
    return text if len(text) <= QUOTE_LIMIT else text[: QUOTE_LIMIT - 1] + "…"


def _told_text(told: bool) -> str:
    return _("desk-told") if told else _("desk-not-told")


def _name(member: MemberView) -> str:
    if not member.is_active:
        return _("desk-erased")
    return " ".join(part for part in (member.first_name, member.last_name) if part) or "—"


def _sender(message: Message) -> int:
    return message.from_user.id if message.from_user else 0

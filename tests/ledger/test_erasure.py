"""What stays of a member who deleted their data: nothing that gives their phone back, and no
copy of it, their name or their words in the database files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.service import LedgerService
from messaging.outbox import Outbox
from staff.audit import AuditLog
from staff.roles import Role, SeenAs, StaffService
from storage.engine import sqlite_file
from storage.schema import metadata, outbox
from support.tickets import TicketService
from tests.conftest import Phones
from usecases.privacy import Privacy, erase_member

RUB = 100


def unkeyed_hashes(phone: str) -> set[str]:
    """Every plain digest of the usual spellings of a phone that a loop can recompute."""
    spellings = {phone, phone.removeprefix("+"), "8" + phone.removeprefix("+7")}
    algorithms = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512", "blake2b", "blake2s")
    return {
        digest
        for spelling in spellings
        for name in algorithms
        for raw in [hashlib.new(name, spelling.encode()).digest()]
        for digest in (raw.hex(), raw.hex().upper())
    }


async def stored_values(engine: AsyncEngine) -> list[str]:
    """Every value of every row of every table, as text (bytes also as hex)."""
    values: list[str] = []
    async with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in await conn.execute(select(table)):
                for value in row:
                    if isinstance(value, bytes):
                        values.append(value.hex())
                    elif value is not None:
                        values.append(str(value))
    return values


async def test_nothing_stored_of_an_erased_member_gives_their_phone_back_by_hashing(
    ledger: LedgerService, phones: Phones
) -> None:
    inviter = (await ledger.register_member(phones.next())).member
    phone = phones.next()
    friend = await ledger.register_member(phone, referral_code=inviter.referral_code)
    assert friend.welcome_points == 100
    await ledger.purchase(
        receipt_id="R-1", member_id=friend.member.member_id, amount_kopecks=100 * RUB
    )
    assert (await ledger.balance(inviter.member_id)).balance == 300  # the referral was paid
    await erase_member(Privacy(ledger), friend.member.member_id)

    hashes = unkeyed_hashes(phone)
    stored = await stored_values(ledger.engine)
    found = [value for value in stored if any(digest in value for digest in hashes)]
    assert found == []

    # Once per phone still holds: no second welcome, no second referral reward.
    again = await ledger.register_member(phone, referral_code=inviter.referral_code)
    assert again.created and again.welcome_points == 0
    await ledger.purchase(
        receipt_id="R-2", member_id=again.member.member_id, amount_kopecks=100 * RUB
    )
    assert (await ledger.balance(inviter.member_id)).balance == 300
    other = await ledger.register_member(phones.next(), referral_code=inviter.referral_code)
    assert other.welcome_points == 100


@pytest.mark.parametrize("backend", ["sqlite"])  # the files of PostgreSQL are its own
async def test_an_erased_member_leaves_no_copy_of_phone_name_or_words_in_the_database_files(
    ledger: LedgerService, database_url: str
) -> None:
    phone, name, words = "+79991234567", "Zinaida", "Please call me back about my order 4471"
    for other in range(20):  # neighbours on the same pages
        await ledger.register_member(f"+7999000{other:04d}", first_name=f"Neighbour {other}")
    member = (
        await ledger.register_member(phone, telegram_id=4242, first_name=name, last_name="Q")
    ).member
    await ledger.register_member("+79990009999", first_name="After")
    tickets = TicketService(ledger.engine, ledger.clock)
    ticket = await tickets.open_ticket(member.member_id, f"{words}. " + "More. " * 300)
    await Outbox(ledger.engine, ledger.clock).enqueue(
        dedup_key=f"ticket:new:{ticket.ticket_id}:77",
        chat_id=77,
        member_id=None,
        text=f"{name} ({phone}) writes: {words}",
    )
    await ledger.purchase(receipt_id="R-1", member_id=member.member_id, amount_kopecks=500 * RUB)
    await erase_member(Privacy(ledger), member.member_id)

    database = Path(sqlite_file(database_url) or "")
    files = [Path(f"{database}{suffix}") for suffix in ("", "-wal", "-shm", "-journal")]
    secrets = [phone, phone.removeprefix("+"), name, words]
    found = {
        (file.name, secret)
        for file in files
        if file.exists()
        for secret in secrets
        if secret.encode() in file.read_bytes()
    }
    assert found == set()
    # Zeroing what is freed is what keeps the file clean; some builds of SQLite (Debian's) have
    # it on by default, others not.
    async with ledger.engine.connect() as conn:
        assert (await conn.exec_driver_sql("PRAGMA secure_delete")).scalar() == 1


async def test_a_member_who_is_also_staff_leaves_no_name_or_username_of_theirs_when_erased(
    ledger: LedgerService, phones: Phones
) -> None:
    """Staff keep what a staff member's Telegram said of them (to find them by @username and
    list them by name); a staff member who erases their member data takes that with them (their
    role stays, by Telegram id)."""
    name, username = "Zoya", "zoya_at_the_till"
    member = (
        await ledger.register_member(
            phones.next(), telegram_id=4343, first_name=name, username=username
        )
    ).member
    staff = StaffService(ledger.engine, (), AuditLog(ledger.engine, ledger.clock), ledger.clock)
    await staff.remember_seen(4343, SeenAs(language="ru", username=username, first_name=name))
    await staff.grant(4343, Role.CASHIER, by=1, username=username)
    await erase_member(Privacy(ledger), member.member_id)

    stored = await stored_values(ledger.engine)
    assert [value for value in stored if name in value or username in value] == []
    assert await staff.roles_of(4343) == frozenset({Role.CASHIER})


async def test_a_member_whose_card_moved_to_a_new_account_leaves_neither_account_when_erased(
    ledger: LedgerService, phones: Phones
) -> None:
    """The note to the old account ("your card is on another account now") named the card and
    kept both Telegram ids in its key: erasing the member must take those too."""
    from bot.i18n import build_i18n
    from messaging.notifier import Notifier

    old_chat, new_chat = 733_000_001, 733_000_002
    phone = phones.next()
    await ledger.register_member(phone, telegram_id=old_chat)
    member = (await ledger.register_member(phone, telegram_id=new_chat)).member
    notifier = Notifier(build_i18n(), ledger, Outbox(ledger.engine, ledger.clock))
    assert await notifier.account_moved(member, old_chat)
    await erase_member(Privacy(ledger), member.member_id)
    values = await stored_values(ledger.engine)
    for account in (str(old_chat), str(new_chat)):
        assert not [value for value in values if account in value], account
    async with ledger.engine.connect() as conn:  # the card number stays on the ledger's row
        texts = (await conn.execute(select(outbox.c.text))).scalars().all()
    assert not [text for text in texts if member.card_number in text.replace(" ", "")]

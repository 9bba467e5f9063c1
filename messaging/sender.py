"""The one delivery path for every message the bot starts on its own.

Producers (receipts, reminders, tier news, broadcasts) queue messages and notices in the
outbox (messaging/outbox.py). The `Sender` drains it:

- transactional messages (receipts, confirmations, support replies) go out as soon as the
  rate limit allows, never capped;
- the others (reminder, tier, offer) respect the member's opt-outs, quiet hours in the
  member's time zone and the cap of N per rolling 7 days, where a burn warning wins over tier
  news, which wins over offers; a deferred message waits for its next allowed moment, or is
  dropped with a reason once it no longer makes sense (past `expires_at`);
- Telegram's limits: at most `rate_per_second` messages overall and one per chat per
  `per_chat_interval`; a 429 pauses sending for retry_after; network errors and 5xx back off;
  a 403 marks the member unreachable and nothing more is sent to them.

Every message ends in a recorded status: sent, skipped_optout, skipped_cap (the weekly cap would
hold it past its expiry), skipped_unreachable, dropped or failed, with a reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import InlineKeyboardMarkup
from sqlalchemy import select, update

from ledger.clock import Clock
from ledger.rules import MessageRules
from messaging.composing import Composed, Composer, Recipient, Withdrawn
from messaging.limits import RateLimiter, quiet_hours_end
from messaging.notices import Notices
from messaging.outbox import (
    BATCH,
    CAP_WINDOW,
    OPT_OUT_FIELD,
    TRANSACTIONAL,
    Outbox,
    OutboxMessage,
    Superseded,
)
from storage.schema import members

log = logging.getLogger("loyalty.outbox")

MAX_ATTEMPTS = 8
SENDS_IN_FLIGHT = 32  # sends awaited together; their outcomes are recorded together
# Sends that went out are recorded in groups of about this many seconds' worth (at least one):
# at Telegram's ordinary 25-30 a second each one is recorded before the next goes, so a process
# killed mid-batch leaves only the send in flight unrecorded (sent again by the next sender);
# at a paid broadcast's rates, a group of up to SENDS_IN_FLIGHT per transaction.
RECORD_EVERY_S = 0.04
MAX_FAILURE_WAIT_S = 60.0


class Sender:
    """Drains the outbox into Telegram, politely."""

    def __init__(
        self,
        outbox: Outbox,
        bot: Bot,
        rules: MessageRules,
        *,
        rate_per_second: float = 25.0,
        per_chat_interval: float = 1.0,
        poll_interval: float = 1.0,
        on_undelivered: Callable[[OutboxMessage], Awaitable[None]] | None = None,
        notices: Notices | None = None,
        holder: str = "",
        composers: Mapping[str, Composer] | None = None,
        on_sent: Callable[[Sequence[OutboxMessage]], Awaitable[None]] | None = None,
    ) -> None:
        self.outbox = outbox
        # kind -> what makes its message for a member (a broadcast's text, photo and buttons)
        self.composers: dict[str, Composer] = dict(composers or {})
        # Told of the messages recorded as sent, once recorded (a broadcast's gift points).
        self.on_sent = on_sent
        self.notices = notices  # renders the notices (kind + payload) in the member's language
        # The epoch of this sender's claims (Outbox.take_epoch), taken at its first claim after
        # it starts: then the claims of a sender that died are void at once.
        self.epoch: int | None = None
        # A sender of a later epoch took over (a new leader): this one claims nothing more
        # until `restart()` (its scheduler stops it when it notices the lost lock).
        self.superseded = False
        self.holder = holder or f"sender:{id(self):x}"
        # About a second's worth of messages per claim: a message queued meanwhile (a receipt)
        # waits for at most that, not for a long batch to others.
        self.batch = max(1, min(BATCH, int(rate_per_second)))
        self.record_group = max(1, min(SENDS_IN_FLIGHT, round(rate_per_second * RECORD_EVERY_S)))
        # Told of each message that ended without reaching its chat (failed, or unreachable),
        # once its outcome is recorded: a producer may find another way (support's news).
        self.on_undelivered = on_undelivered
        self.bot = bot
        self.rules = rules
        self.limiter = RateLimiter(rate_per_second, per_chat_interval)
        self.poll_interval = poll_interval
        self._stopping = asyncio.Event()
        self.retry_after_seen = 0

    @property
    def clock(self) -> Clock:
        return self.outbox.clock

    async def run(self) -> None:
        """Send until `stop()`; wakes at once when something is enqueued. While batches fail
        (the database is down, say) it waits longer each time, up to a minute, and logs the
        first failure in full and then one line now and then, not a traceback a second."""
        failures = 0
        while not self._stopping.is_set():
            try:
                sent = await self.drain_once()
            except Exception as error:  # keep delivering whatever one batch did
                failures += 1
                if failures == 1:
                    log.exception("outbox batch failed")
                elif failures & (failures - 1) == 0:  # 2, 4, 8, ...: less and less often
                    log.warning(
                        "outbox: %d batches failed in a row (%s)", failures, type(error).__name__
                    )
                sent = 0
            else:
                if failures:
                    log.info("outbox: delivering again after %d failed batches", failures)
                failures = 0
            if sent:
                continue
            self.outbox.wakeup.clear()
            wait = min(self.poll_interval * 2 ** min(failures, 6), MAX_FAILURE_WAIT_S)
            chat_free_in = self.limiter.next_ready_in()  # a busy chat may have more waiting
            if chat_free_in is not None and not failures:
                wait = min(wait, chat_free_in)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wait_for_work(), wait)

    async def _wait_for_work(self) -> None:
        stop = asyncio.ensure_future(self._stopping.wait())
        wake = asyncio.ensure_future(self.outbox.wakeup.wait())
        try:
            await asyncio.wait({stop, wake}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            wake.cancel()

    def stop(self) -> None:
        """Finish the messages in flight, put the rest of the batch back, then return from
        `run()`."""
        self._stopping.set()

    def restart(self) -> None:
        self._stopping = asyncio.Event()
        self.epoch = None  # the next run takes a new epoch (see `drain_once`)
        self.superseded = False

    async def drain(self) -> int:
        """Send everything due now (used by tests and jobs); returns how many were handled."""
        handled = 0
        while True:
            batch = await self.drain_once()
            if batch:
                handled += batch
                continue
            chat_free_in = self.limiter.next_ready_in()
            if chat_free_in is None:
                return handled
            await asyncio.sleep(chat_free_in)  # a busy chat may have more waiting

    async def drain_once(self) -> int:
        if self.superseded:
            return 0
        if self.epoch is None:
            self.epoch = await self.outbox.take_epoch(self.holder)
        try:
            messages = await self.outbox.claim_due(
                self.batch, epoch=self.epoch, busy_chats=self.limiter.busy_chats()
            )
        except Superseded as error:
            log.info("outbox: another sender took over (%s); this one claims nothing more", error)
            self.superseded = True
            return 0
        recipients = await self._recipients({m.member_id for m in messages if m.member_id})
        sending: list[tuple[OutboxMessage, asyncio.Task[int | None]]] = []
        composed: Composed | None = None
        granted: dict[int, set[int]] = {}  # capped messages let through in this batch
        try:
            for message in messages:
                if self._stopping.is_set():
                    await self._record(message, "queued")
                    continue
                recipient = recipients.get(message.member_id) if message.member_id else None
                if not await self._allowed_now(message, recipient, granted):
                    continue
                composed = None
                if message.kind in self.composers and recipient is not None:
                    composed = await self._compose(message, recipient)
                    if composed is None:
                        continue
                    message = replace(
                        message, text=composed.text, reply_markup=composed.reply_markup
                    )
                elif message.kind is not None:
                    rendered = await self._render(message, recipient)
                    if rendered is None:
                        continue
                    message = replace(message, text=rendered)
                if message.category != TRANSACTIONAL and message.member_id is not None:
                    granted.setdefault(message.member_id, set()).add(message.message_id)
                # At most one message per chat is claimed, and none for a busy chat: this
                # waits for the overall rate only.
                await self.limiter.acquire(message.chat_id)
                finished = [pair for pair in sending if pair[1].done()]
                if len(finished) >= self.record_group:  # those that went out meanwhile
                    sending = [pair for pair in sending if not pair[1].done()]
                    await self._record_sent(finished)
                sending.append((message, asyncio.create_task(self._send(message, composed))))
                if len(sending) >= SENDS_IN_FLIGHT:
                    in_flight, sending = sending, []
                    await self._record_sent(in_flight)
        finally:
            # Also when something above failed: what went out is recorded as sent, or a later
            # claim would send it again.
            if sending:
                await self._record_sent(sending)
        return len(messages)

    async def _record_sent(
        self, sending: list[tuple[OutboxMessage, asyncio.Task[int | None]]]
    ) -> None:
        """Wait for the sends in flight; record those that went out in one transaction (one
        write per message competed with the purchases for the database). A send that failed
        in a way `_send` does not handle is raised once the others are recorded: it stays
        claimed, and is tried again after CLAIM_TIMEOUT, while the rest are not sent twice."""
        results = await asyncio.gather(*(task for _, task in sending), return_exceptions=True)
        sent = {
            message.message_id: telegram_id
            for (message, _), telegram_id in zip(sending, results, strict=True)
            if isinstance(telegram_id, int)
        }
        assert self.epoch is not None  # a claimed message: `drain_once` took the epoch
        recorded = await self.outbox.record_sent(sent, epoch=self.epoch)
        for message_id in sorted(sent.keys() - recorded):
            log.info(
                "outbox: message %d was taken over by a later sender; sent not recorded here",
                message_id,
            )
        if self.on_sent is not None and recorded:
            try:
                await self.on_sent(
                    [message for message, _ in sending if message.message_id in recorded]
                )
            except Exception:  # the sends are recorded; what follows them is its owner's
                log.exception("outbox: the handler of sent messages failed")
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _compose(self, message: OutboxMessage, recipient: Recipient) -> Composed | None:
        """The message its kind's composer makes for this member; None (and recorded as
        failed) when it makes none or fails."""
        assert message.kind is not None
        try:
            composed = await self.composers[message.kind](message, recipient)
        except Withdrawn as withdrawn:
            await self._record(message, withdrawn.status, reason=withdrawn.reason)
            return None
        except Exception as error:
            log.exception("outbox: a %s message could not be composed", message.kind)
            await self._record(message, "failed", reason=f"compose: {type(error).__name__}")
            return None
        if composed is None:
            await self._record(message, "failed", reason="nothing to send")
        return composed

    async def _render(self, message: OutboxMessage, recipient: Recipient | None) -> str | None:
        """A notice's text in its member's language; None (and recorded) if it cannot be."""
        if self.notices is None or recipient is None or message.kind is None:
            await self._record(message, "failed", reason="cannot render")
            return None
        try:
            return self.notices.render(
                message.kind, message.payload or {}, recipient.language, recipient.timezone
            )
        except Exception as error:
            log.exception("outbox: notice %s could not be rendered", message.kind)
            await self._record(message, "failed", reason=f"render: {type(error).__name__}")
            return None

    async def _recipients(self, member_ids: set[int]) -> dict[int, Recipient]:
        if not member_ids:
            return {}
        async with self.outbox.reader.connect() as conn:
            rows = (await conn.execute(select(members).where(members.c.id.in_(member_ids)))).all()
        return {
            row.id: Recipient(
                language=row.language,
                timezone=row.timezone,
                unreachable=row.unreachable,
                active=row.status == "active",
                opted_in={cat: bool(getattr(row, field)) for cat, field in OPT_OUT_FIELD.items()},
                first_name=row.first_name or "",
                balance=row.balance,
            )
            for row in rows
        }

    async def _allowed_now(
        self, message: OutboxMessage, recipient: Recipient | None, granted: dict[int, set[int]]
    ) -> bool:
        """Apply opt-outs, expiry, quiet hours and the weekly cap; record why not."""
        now = self.clock.now()
        record = self._record
        if recipient is not None and (recipient.unreachable or not recipient.active):
            await record(
                message,
                "skipped_unreachable",
                reason="blocked the bot" if recipient.unreachable else "left the program",
            )
            return False
        if message.category == TRANSACTIONAL:
            return True
        if message.expires_at is not None and message.expires_at <= now:
            await record(message, "dropped", reason="no longer relevant")
            return False
        if recipient is None:
            return True
        if not recipient.opted_in.get(message.category, True):
            await record(message, "skipped_optout", reason=message.category)
            return False
        # The cap first: a message it holds past its expiry is skipped at once, also at night.
        if message.member_id is not None and self.rules.weekly_cap >= 0:
            recorded = await self.outbox.capped_sent_since(message.member_id, now - CAP_WINDOW)
            in_batch = granted.get(message.member_id, set()) - {id_ for id_, _ in recorded}
            sent = [moment for _, moment in recorded] + [now] * len(in_batch)
            if len(sent) >= self.rules.weekly_cap:
                # The window frees a slot when the oldest counted message leaves it.
                frees_at = sent[len(sent) - self.rules.weekly_cap] + CAP_WINDOW
                await self._defer(message, frees_at, "weekly cap", too_late="skipped_cap")
                return False
        quiet_end = quiet_hours_end(now, recipient.timezone, self.rules)
        if quiet_end is not None:
            await self._defer(message, quiet_end, "quiet hours")
            return False
        return True

    async def _defer(
        self, message: OutboxMessage, until: datetime, why: str, *, too_late: str = "dropped"
    ) -> None:
        """Queue the message again for `until`; if that is past its expiry, record it now as
        `too_late` (dropped; skipped_cap when it is the weekly cap that holds it back)."""
        if message.expires_at is not None and until >= message.expires_at:
            await self._record(message, too_late, reason=f"{why}; would arrive too late")
            return
        await self._record(message, "queued", reason=f"deferred: {why}", not_before=until)

    async def _send(self, message: OutboxMessage, composed: Composed | None = None) -> int | None:
        """Send one message (a composed one as Telegram HTML, a photo with `message.text` as
        its caption if it has one): Telegram's message id if it went out (the caller records it
        with the others in flight); any other outcome is recorded here."""
        markup = (
            InlineKeyboardMarkup.model_validate(message.reply_markup)
            if message.reply_markup
            else None
        )
        try:
            if composed is not None and composed.photo is not None:
                sent = await self.bot.send_photo(
                    message.chat_id,
                    composed.photo,
                    caption=message.text,
                    parse_mode="HTML",
                    reply_markup=markup,
                )
            elif composed is not None:
                sent = await self.bot.send_message(
                    message.chat_id, message.text, parse_mode="HTML", reply_markup=markup
                )
            else:
                sent = await self.bot.send_message(
                    message.chat_id, message.text, reply_markup=markup
                )
        except TelegramRetryAfter as error:
            self.retry_after_seen += 1
            self.limiter.pause(error.retry_after)
            await self._record(
                message,
                "queued",
                reason=f"429, retry after {error.retry_after}s",
                not_before=self.clock.now() + timedelta(seconds=error.retry_after),
            )
        except TelegramForbiddenError:
            await self._mark_unreachable(message)
        except (TelegramServerError, TelegramNetworkError) as error:
            await self._back_off(message, type(error).__name__)
        except TelegramBadRequest as error:
            if await self._record(message, "failed", reason=error.message[:200], attempt=True):
                await self._undelivered(message)
        else:
            return sent.message_id
        return None

    async def _record(self, message: OutboxMessage, status: str, **outcome: Any) -> bool:
        """Record a claimed message's outcome under this sender's epoch; False when a sender
        of a later epoch took the message over (its outcome is that sender's to record: this
        one does nothing more about it and does not retry)."""
        assert self.epoch is not None  # a claimed message: `drain_once` took the epoch
        if await self.outbox.record(message.message_id, status, epoch=self.epoch, **outcome):
            return True
        log.info(
            "outbox: message %d was taken over by a later sender; %s not recorded here",
            message.message_id,
            status,
        )
        return False

    async def _back_off(self, message: OutboxMessage, why: str) -> None:
        if message.attempts + 1 >= MAX_ATTEMPTS:
            if await self._record(message, "failed", reason=why, attempt=True):
                await self._undelivered(message)
            return
        delay = timedelta(seconds=min(2**message.attempts, 300))
        await self._record(
            message,
            "queued",
            reason=f"retry: {why}",
            not_before=self.clock.now() + delay,
            attempt=True,
        )

    async def _mark_unreachable(self, message: OutboxMessage) -> None:
        if not await self._record(
            message, "skipped_unreachable", reason="blocked the bot", attempt=True
        ):
            return  # the later sender that has it learns of the block itself
        await self._undelivered(message)
        if message.member_id is not None:
            async with self.outbox.engine.begin() as conn:
                await conn.execute(
                    update(members)
                    .where(members.c.id == message.member_id)
                    .values(unreachable=True)
                )

    async def _undelivered(self, message: OutboxMessage) -> None:
        if self.on_undelivered is None:
            return
        try:
            await self.on_undelivered(message)
        except Exception:  # the outcome is recorded; what the producer does next is theirs
            log.exception("outbox: the handler of an undelivered message failed")


__all__: Sequence[str] = ["RateLimiter", "Sender", "quiet_hours_end"]

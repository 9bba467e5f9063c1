"""What a marketer reads of a broadcast: the lift in words (both languages, each state), the
live count's reasons, and the progress message edited at most once every few seconds with a
last edit for the report."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiogram.exceptions import TelegramBadRequest
from aiogram.methods import EditMessageText
from aiogram.utils.i18n import I18n

from bot.i18n import build_i18n
from handlers.broadcast_texts import attribution_text, counts_text
from handlers.broadcasts import ProgressMessages
from ledger.rules import Rules
from marketing.audience import SegmentCounts
from marketing.broadcasts import Broadcast, Progress
from marketing.lift import GroupOutcome, measure
from marketing.reports import Attribution
from marketing.segments import SegmentFilter

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def i18n() -> I18n:
    return build_i18n()


def _report(recipients: GroupOutcome, control: GroupOutcome, *, days_later: int) -> Attribution:
    return Attribution(
        window_days=14,
        start=START,
        end=START + timedelta(days=14),
        complete=days_later >= 14,
        recipients=recipients,
        control=control,
        lift=measure(recipients, control),
    )


def _group(members: int, buyers: int, revenue_each: int) -> GroupOutcome:
    """`buyers` members who each spent `revenue_each` kopecks once; the rest nothing."""
    return GroupOutcome.of_members([(1, revenue_each)] * buyers + [(0, 0)] * (members - buyers))


def _render(i18n: I18n, language: str, report: Attribution) -> str:
    with i18n.context(), i18n.use_locale(language):
        return attribution_text(report, "Europe/Moscow")


def test_a_measured_lift_reads_as_points_of_buyers_with_its_range(i18n: I18n) -> None:
    report = _report(_group(900, 180, 50_000), _group(100, 10, 50_000), days_later=20)
    lift = report.lift
    assert lift.buyers.low is not None and lift.buyers.high is not None
    low, high = lift.buyers.low * 100, lift.buyers.high * 100
    english = _render(i18n, "en", report)
    assert "(final)" in english
    assert f"+10.0 pp buyers (from {low:+.1f} to {high:+.1f})" in english, english
    assert "Buyers: 180 (20.0%) — 10 (10.0%)" in english
    assert "The broadcast brought more buyers" in english
    assert "+50.00 ₽ revenue per member (from +" in english
    russian = _render(i18n, "ru", report)
    ru_low, ru_high = f"{low:+.1f}".replace(".", ","), f"{high:+.1f}".replace(".", ",")
    assert f"Покупателей больше на 10,0 процентного пункта (от {ru_low} до {ru_high})" in russian
    assert "Рассылка привела больше покупателей" in russian


def test_a_lift_whose_range_includes_zero_may_be_chance(i18n: I18n) -> None:
    report = _report(_group(300, 31, 10_000), _group(40, 4, 10_000), days_later=3)
    english = _render(i18n, "en", report)
    assert "so far; the window closes" in english
    assert re.search(r"\+0\.3 pp buyers \(from -\d+\.\d to \+\d+\.\d\)", english), english
    assert "may be chance" in english
    assert "too few buyers for a range" in english  # 4 buyers in the control group


def test_too_few_members_and_no_control_group_are_said_as_such(i18n: I18n) -> None:
    small = _report(_group(20, 5, 10_000), _group(2, 0, 0), days_later=14)
    assert "Too few members to tell the lift: it takes at least 30" in _render(i18n, "en", small)
    assert "Слишком мало участников" in _render(i18n, "ru", small)
    none = _report(_group(20, 5, 10_000), _group(0, 0, 0), days_later=14)
    english = _render(i18n, "en", none)
    assert "No control group: the lift cannot be measured." in english
    assert "Members: 20 — —" in english


def test_the_live_count_names_each_reason_once_in_the_right_form(i18n: I18n) -> None:
    counts = SegmentCounts(count=1240, reachable=1105, opted_out=97, blocked=38, no_chat=0)
    with i18n.context(), i18n.use_locale("en"):
        assert (
            counts_text(counts)
            == "1,240 members, 1,105 reachable: 97 opted out of offers, 38 blocked the bot"
        )
    with i18n.context(), i18n.use_locale("ru"):
        assert counts_text(counts) == (
            "1\xa0240 участников, из них получат 1\xa0105: 97 отказались от предложений, "
            "38 заблокировали бота"
        )
        one = SegmentCounts(count=21, reachable=21, opted_out=0, blocked=0, no_chat=1)
        assert counts_text(one) == "21 участник, из них получит 21: 1 не привязал Telegram"


# ------------------------------------------------------------------ progress messages


def _broadcast(status: str = "sending", **changes: Any) -> Broadcast:
    values: dict[str, Any] = {
        "id": 1,
        "public_id": "B-1",
        "status": status,
        "created_by": "tg:1",
        "created_at": START,
        "filter": SegmentFilter(),
        "segment_name": None,
        "text": "Hi",
        "photo": None,
        "button_text": None,
        "button_url": None,
        "control_percent": 10,
        "gift_points": 0,
        "gift_days": 14,
        "window_days": 14,
        "send_at": START,
        "audience": 11,
        "control": 1,
        "recipients": 10,
        "started_at": START,
        "finished_at": None,
        "progress_chat_id": 500,
        "progress_message_id": 42,
    }
    return Broadcast(**(values | changes))


@dataclass
class FakeClock:
    def now(self) -> datetime:
        return START + timedelta(seconds=30)


@dataclass
class FakeBroadcasts:
    current: Broadcast
    sent: int = 0
    clock: FakeClock = field(default_factory=FakeClock)

    async def by_id(self, broadcast_id: int) -> Broadcast:
        return self.current

    async def progress(self, broadcast: Broadcast) -> Progress:
        return Progress(recipients=broadcast.recipients, sent=self.sent)


@dataclass
class FakeBot:
    edits: list[str] = field(default_factory=list)
    unchanged: bool = False

    async def edit_message_text(self, text: str, **kwargs: Any) -> None:
        if self.unchanged:
            raise TelegramBadRequest(
                EditMessageText(text=text), "Bad Request: message is not modified"
            )
        self.edits.append(text)


async def _language(telegram_id: int, fallback: str | None = None) -> str:
    return "en"


async def test_a_progress_message_is_edited_at_most_every_five_seconds_and_once_at_the_end(
    i18n: I18n, rules: Rules
) -> None:
    seconds = [0.0]
    bot = FakeBot()
    broadcasts = FakeBroadcasts(_broadcast())
    shown = ProgressMessages(
        bot,  # type: ignore[arg-type]
        broadcasts,  # type: ignore[arg-type]
        _language,  # type: ignore[arg-type]
        i18n,
        rules,
        monotonic=lambda: seconds[0],
    )
    await shown.show([broadcasts.current])
    assert len(bot.edits) == 1 and "Sent: 0 of 10" in bot.edits[0]
    broadcasts.sent = 3
    seconds[0] = 4.9
    await shown.show([broadcasts.current])
    assert len(bot.edits) == 1  # too soon
    seconds[0] = 5.0
    await shown.show([broadcasts.current])
    assert len(bot.edits) == 2 and "Sent: 3 of 10" in bot.edits[1]
    assert "Rate: 6 a minute\n" in bot.edits[1] and "Time left: about 1 min 10 s" in bot.edits[1]
    # It ends a moment later: the report is shown at once.
    broadcasts.sent, seconds[0] = 10, 5.5
    broadcasts.current = replace(broadcasts.current, status="done", finished_at=START)
    await shown.show([broadcasts.current])
    assert len(bot.edits) == 3 and "done" in bot.edits[2] and "Sent: 10 of 10" in bot.edits[2]
    # A broadcast without a progress message has nothing to edit.
    await shown.show([replace(broadcasts.current, progress_chat_id=None)])
    assert len(bot.edits) == 3


async def test_a_progress_message_that_would_not_change_is_not_edited_again(
    i18n: I18n, rules: Rules
) -> None:
    """A scheduled broadcast waits for hours: its message is not edited every five seconds
    with the same text; after a restart, Telegram's "message is not modified" is no error."""
    seconds = [0.0]
    bot = FakeBot()
    broadcasts = FakeBroadcasts(_broadcast("scheduled", started_at=None))

    def shown() -> ProgressMessages:
        return ProgressMessages(
            bot,  # type: ignore[arg-type]
            broadcasts,  # type: ignore[arg-type]
            _language,  # type: ignore[arg-type]
            i18n,
            rules,
            monotonic=lambda: seconds[0],
        )

    progress = shown()
    for second in (0, 5, 10, 15):
        seconds[0] = second
        await progress.show([broadcasts.current])
    assert len(bot.edits) == 1 and "Starts:" in bot.edits[0]
    bot.unchanged = True  # a new process shows it as it is
    await shown().show([broadcasts.current])
    assert len(bot.edits) == 1

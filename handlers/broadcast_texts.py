"""How a marketer reads segments and broadcasts: a segment's conditions and its live count, a
broadcast's progress and its delivery report, the duration of a send, the buttons of a
broadcast. Rendered in the current language (gettext's); no words live here.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.i18n import gettext as _
from babel.dates import get_month_names

from handlers.keyboards import BroadcastCb, inline_keyboard
from marketing.audience import SegmentCounts
from marketing.broadcasts import Broadcast, BroadcastError, Progress
from marketing.lift import MIN_MEMBERS, GroupOutcome, Lift, LiftState
from marketing.reports import Attribution
from marketing.segments import SegmentFilter
from messaging.texts import (
    count_text,
    current_language,
    days_text,
    format_decimal,
    moment_text,
    number_text,
    roubles_text,
)
from messaging.texts import tier_text as tier_name

# The composer's menu of conditions, in the order of the contract; "balance" sets
# balance_min and balance_max.
CONDITIONS = (
    "tiers",
    "balance",
    "burning_within_days",
    "inactive_days",
    "joined_within_days",
    "language",
    "birthday_month",
    "purchases_min",
    "spent_365_min",
)
# The filter's keys each menu entry sets.
KEYS: dict[str, tuple[str, ...]] = {
    name: (("balance_min", "balance_max") if name == "balance" else (name,)) for name in CONDITIONS
}


def condition_label(name: str) -> str:
    """A condition's name on its menu button."""
    labels = {
        "tiers": _("bc-cond-tiers"),
        "balance": _("bc-cond-balance"),
        "burning_within_days": _("bc-cond-burning"),
        "inactive_days": _("bc-cond-inactive"),
        "joined_within_days": _("bc-cond-joined"),
        "language": _("bc-cond-language"),
        "birthday_month": _("bc-cond-birthday"),
        "purchases_min": _("bc-cond-purchases"),
        "spent_365_min": _("bc-cond-spent"),
    }
    return labels[name]


def month_name(month: int) -> str:
    return str(get_month_names("wide", context="stand-alone", locale=current_language())[month])


def language_name(language: str) -> str:
    from aiogram.utils.i18n import get_i18n

    return get_i18n().gettext("language-name", locale=language)


def condition_lines(segment: SegmentFilter) -> list[tuple[str, str]]:
    """(menu entry, what it says) for each condition set, in the menu's order."""
    lines: list[tuple[str, str]] = []
    if segment.tiers is not None:
        names = ", ".join(tier_name(tier) for tier in segment.tiers)
        lines.append(("tiers", _("bc-is-tiers").format(tiers=names)))
    low, high = segment.balance_min, segment.balance_max
    if low is not None and high is not None:
        text = _("bc-is-balance-range").format(low=number_text(low), high=number_text(high))
        lines.append(("balance", text))
    elif low is not None:
        lines.append(("balance", _("bc-is-balance-min").format(low=number_text(low))))
    elif high is not None:
        lines.append(("balance", _("bc-is-balance-max").format(high=number_text(high))))
    if segment.burning_within_days is not None:
        lines.append(
            ("burning_within_days", count_text("bc-is-burning", segment.burning_within_days))
        )
    if segment.inactive_days is not None:
        lines.append(("inactive_days", count_text("bc-is-inactive", segment.inactive_days)))
    if segment.joined_within_days is not None:
        lines.append(("joined_within_days", count_text("bc-is-joined", segment.joined_within_days)))
    if segment.language is not None:
        text = _("bc-is-language").format(language=language_name(segment.language))
        lines.append(("language", text))
    if segment.birthday_month is not None:
        text = _("bc-is-birthday").format(month=month_name(segment.birthday_month))
        lines.append(("birthday_month", text))
    if segment.purchases_min is not None:
        text = _("bc-is-purchases").format(count=number_text(segment.purchases_min))
        lines.append(("purchases_min", text))
    if segment.spent_365_min is not None:
        text = _("bc-is-spent").format(amount=roubles_text(segment.spent_365_min))
        lines.append(("spent_365_min", text))
    return lines


def audience_text(segment: SegmentFilter, segment_name: str | None) -> str:
    """The conditions, one a line ("everyone in the program" without any)."""
    lines = [f"• {text}" for _key, text in condition_lines(segment)]
    if not lines:
        lines = [_("bc-everyone")]
    if segment_name:
        lines.insert(0, _("bc-segment-named").format(name=segment_name))
    return "\n".join(lines)


def counts_text(counts: SegmentCounts) -> str:
    """ "1,240 members, 1,105 reachable: 97 opted out of offers, 38 blocked the bot"."""
    text = (
        count_text("bc-members", counts.count) + ", " + count_text("bc-reachable", counts.reachable)
    )
    reasons = []
    if counts.opted_out:
        reasons.append(count_text("bc-opted-out", counts.opted_out))
    if counts.blocked:
        reasons.append(count_text("bc-blocked", counts.blocked))
    if counts.no_chat:
        reasons.append(count_text("bc-no-chat", counts.no_chat))
    return text + (": " + ", ".join(reasons) if reasons else "")


def duration_text(seconds: float) -> str:
    """ "2 h 5 min", "3 min 20 s", "40 s" (abbreviated: no plural forms needed)."""
    whole = max(1, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return _("bc-hours-minutes").format(hours=hours, minutes=minutes)
    if minutes:
        return _("bc-minutes-seconds").format(minutes=minutes, seconds=secs)
    return _("bc-seconds").format(seconds=secs)


def status_text(status: str) -> str:
    statuses = {
        "scheduled": _("bc-status-scheduled"),
        "sending": _("bc-status-sending"),
        "paused": _("bc-status-paused"),
        "cancelled": _("bc-status-cancelled"),
        "done": _("bc-status-done"),
    }
    return statuses.get(status, status)


def progress_text(broadcast: Broadcast, progress: Progress, now: datetime, timezone: str) -> str:
    """The progress message (while it sends) or the delivery report (once it has ended)."""
    lines = [
        _("bc-progress-title").format(id=broadcast.public_id, status=status_text(broadcast.status)),
        _("bc-progress-sent").format(
            sent=number_text(progress.sent), total=number_text(progress.recipients)
        ),
    ]
    skipped = [
        (progress.skipped_optout, _("bc-skipped-optout")),
        (progress.skipped_cap, _("bc-skipped-cap")),
        (progress.skipped_unreachable, _("bc-skipped-unreachable")),
    ]
    shown = [f"{why} — {number_text(count)}" for count, why in skipped if count]
    if shown:
        lines.append(_("bc-progress-skipped").format(reasons="; ".join(shown)))
    if progress.failed:
        lines.append(_("bc-progress-failed").format(failed=number_text(progress.failed)))
    if broadcast.status == "scheduled":
        starts = moment_text(broadcast.send_at, timezone, now=now)
        lines.append(_("bc-progress-starts").format(when=starts))
    elif broadcast.active:
        lines += _rate_lines(broadcast, progress, now)
    elif progress.pending:
        lines.append(_("bc-report-pending").format(pending=number_text(progress.pending)))
    lines.append(
        _("bc-report-control").format(
            control=number_text(broadcast.control), percent=broadcast.control_percent
        )
    )
    if broadcast.gift_points:
        lines.append(
            _("bc-report-gifts").format(total=number_text(broadcast.gift_points * progress.sent))
        )
    return "\n".join(lines)


def _rate_lines(broadcast: Broadcast, progress: Progress, now: datetime) -> list[str]:
    if broadcast.started_at is None or broadcast.status != "sending":
        return []
    elapsed = (now - broadcast.started_at).total_seconds()
    if elapsed < 1 or not progress.done:
        return []
    per_second = progress.done / elapsed
    if per_second >= 1:
        lines = [_("bc-progress-rate-second").format(rate=number_text(round(per_second)))]
    else:
        lines = [_("bc-progress-rate-minute").format(rate=number_text(round(per_second * 60)))]
    if progress.pending:
        lines.append(
            _("bc-progress-left").format(left=duration_text(progress.pending / per_second))
        )
    return lines


def broadcast_buttons(broadcast: Broadcast) -> InlineKeyboardMarkup | None:
    """Pause, Resume and Cancel where they apply (none once it has ended)."""
    row: list[tuple[str, Any]] = []
    if broadcast.status == "sending":
        row.append((_("bc-pause"), BroadcastCb(action="pause", broadcast_id=broadcast.id)))
    if broadcast.status == "paused":
        row.append((_("bc-resume"), BroadcastCb(action="resume", broadcast_id=broadcast.id)))
    if broadcast.active:
        row.append((_("bc-cancel"), BroadcastCb(action="cancel", broadcast_id=broadcast.id)))
    return inline_keyboard([row]) if row else None


def broadcast_error_text(error: BroadcastError) -> str:
    """A refused broadcast, in the reader's language (the text's errors say where)."""
    details = error.details
    if error.code == "invalid_html":
        tag = details.get("tag")
        if tag:
            return _("bc-error-html-tag").format(position=details.get("position", 1), tag=tag)
        return _("bc-error-html").format(position=details.get("position", 1))
    if error.code == "unknown_placeholder":
        return _("bc-error-placeholder").format(
            placeholder=details.get("placeholder", "{}"), position=details.get("position", 1)
        )
    if error.code == "empty_text":
        return _("bc-error-empty")
    if error.code == "too_long":
        return _("bc-error-too-long").format(
            length=number_text(int(details.get("length", 0))),
            limit=number_text(int(details.get("limit", 0))),
        )
    if error.field == "button_url":
        return _("bc-error-url")
    return _("bc-error-other")


# ------------------------------------------------------------------ the lift


def attribution_text(report: Attribution, timezone: str) -> str:
    """Recipients against the control group over the attribution window, and the lift in
    words: "+4.1 pp buyers (from +1.2 to +7.0)", or why it cannot be told."""
    title = (
        _("bc-attr-final").format(days=days_text(report.window_days))
        if report.complete
        else _("bc-attr-running").format(
            days=days_text(report.window_days), end=moment_text(report.end, timezone)
        )
    )
    r, c = report.recipients, report.control
    lines = [
        title,
        _("bc-attr-groups"),
        _("bc-attr-members").format(
            recipients=number_text(r.members), control=_count(c, c.members)
        ),
        _("bc-attr-buyers").format(
            recipients=f"{number_text(r.buyers)} ({_share(r.buyers_share)})",
            control=f"{_count(c, c.buyers)} ({_share(c.buyers_share)})",
        ),
        _("bc-attr-purchases").format(
            recipients=number_text(r.purchases), control=_count(c, c.purchases)
        ),
        _("bc-attr-revenue").format(
            recipients=_roubles(r.revenue_per_member), control=_roubles(c.revenue_per_member)
        ),
    ]
    lift = report.lift
    if lift.state == LiftState.NO_CONTROL:
        lines.append(_("bc-lift-no-control"))
    elif lift.state == LiftState.TOO_SMALL:
        lines.append(_("bc-lift-too-small").format(least=MIN_MEMBERS))
    else:
        lines += _lift_lines(lift)
    return "\n".join(lines)


def _lift_lines(lift: Lift) -> list[str]:
    buyers, revenue = lift.buyers, lift.revenue_per_member
    lines = []
    if buyers.difference is not None and buyers.low is not None and buyers.high is not None:
        values = {
            "amount": _points(abs(buyers.difference) * 100, signed=False),
            "low": _points(buyers.low * 100),
            "high": _points(buyers.high * 100),
        }
        if buyers.difference >= 0:
            lines.append(_("bc-lift-buyers-more").format(**values))
        else:
            lines.append(_("bc-lift-buyers-less").format(**values))
        if buyers.low > 0:
            lines.append(_("bc-lift-verdict-up"))
        elif buyers.high < 0:
            lines.append(_("bc-lift-verdict-down"))
        else:
            lines.append(_("bc-lift-verdict-chance"))
    if revenue.difference is not None:
        more = revenue.difference >= 0
        values = {"amount": _roubles(abs(revenue.difference))}
        if revenue.low is not None and revenue.high is not None:
            values |= {"low": _roubles(revenue.low, signed=True)}
            values |= {"high": _roubles(revenue.high, signed=True)}
            if more:
                lines.append(_("bc-lift-revenue-more").format(**values))
            else:
                lines.append(_("bc-lift-revenue-less").format(**values))
        elif more:
            lines.append(_("bc-lift-revenue-more-open").format(**values))
        else:
            lines.append(_("bc-lift-revenue-less-open").format(**values))
    return lines


def _count(group: GroupOutcome, value: int) -> str:
    return number_text(value) if group.members else "—"


def _share(share: float | None) -> str:
    if share is None:
        return "—"
    return format_decimal(Decimal(str(round(share * 100, 1))), format="#,##0.0") + "%"


def _points(value: float, *, signed: bool = True) -> str:
    """Percentage points with one decimal: "+1.2", "-0.4" / "+1,2"."""
    pattern = "+#,##0.0;-#,##0.0" if signed else "#,##0.0"
    return format_decimal(Decimal(str(round(value, 1))), format=pattern)


def _roubles(kopecks: float | None, *, signed: bool = False) -> str:
    if kopecks is None:
        return "—"
    pattern = "+#,##0.00;-#,##0.00" if signed else "#,##0.00"
    return format_decimal(Decimal(str(round(kopecks / 100, 2))), format=pattern)

"""What each notice says: a notice is a kind and its data, written in the transaction of the
change it tells of (storage/notices.py); the sender renders it here, in the member's language
and time zone, when it sends it. No words live here: they come from the locales."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from ledger import policy
from ledger.rules import Rules
from messaging.texts import count_text, date_text, points_text, roubles_text, tier_text

Payload = Mapping[str, Any]


class UnknownNotice(ValueError):
    """A notice of a kind this version cannot render."""


class Notices:
    """Renders notices: `render(kind, payload, language, timezone)` -> the message's text."""

    def __init__(self, i18n: I18n, rules: Rules) -> None:
        self.i18n = i18n
        self.rules = rules
        self._kinds: dict[str, Callable[[Payload, str], str]] = {
            "purchase": self._purchase,
            "refund": self._refund,
            "referral": self._referral,
            "points-burnt": self._points_burnt,
        }

    def render(self, kind: str, payload: Payload, language: str, timezone: str) -> str:
        render = self._kinds.get(kind)
        if render is None:
            raise UnknownNotice(kind)
        with self.i18n.context(), self.i18n.use_locale(language):
            return render(payload, timezone)

    def _purchase(self, p: Payload, _timezone: str) -> str:
        amount = roubles_text(p["amount"])
        lines = [
            _("receipt-purchase").format(receipt=p["receipt_id"], amount=amount)
            if p["shop_receipt"]
            else _("receipt-purchase-in-bot").format(amount=amount)
        ]
        if p["redeemed"]:
            lines.append(_("receipt-redeemed").format(points=points_text(p["redeemed"])))
        if p["accrued"]:
            key = "receipt-earned-pending" if self.rules.hold_days else "receipt-earned"
            lines.append(_(key).format(points=points_text(p["accrued"])))
        lines.append(_("receipt-balance").format(points=points_text(p["balance"])))
        # Progress to the next tier, as of the purchase; reaching a tier is tier news.
        upper = policy.next_tier(self.rules, self.rules.tier(p["tier"]))
        if upper is not None:
            to_next = max(0, upper.threshold_kopecks - p["spend"])
            lines.append(
                _("receipt-next-tier").format(
                    amount=roubles_text(to_next), tier=tier_text(upper.name)
                )
            )
        return "\n".join(lines)

    def _refund(self, p: Payload, _timezone: str) -> str:
        lines = [_("receipt-refund").format(refund=p["refund_id"], receipt=p["receipt_id"])]
        if p["reversed"]:
            lines.append(_("receipt-reversed").format(points=points_text(p["reversed"])))
        if p["returned"]:
            lines.append(_("receipt-returned").format(points=points_text(p["returned"])))
        lines.append(_("receipt-balance").format(points=points_text(p["balance"])))
        if p["debt"]:
            lines.append(_("receipt-debt").format(points=points_text(p["debt"])))
        return "\n".join(lines)

    def _referral(self, p: Payload, _timezone: str) -> str:
        return count_text("referral-rewarded", p["points"], balance=points_text(p["balance"]))

    def _points_burnt(self, p: Payload, timezone: str) -> str:
        return count_text(
            "points-burnt",
            p["points"],
            date=date_text(datetime.fromisoformat(p["at"]), timezone),
            balance=points_text(p["balance"]),
        )

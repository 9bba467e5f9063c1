"""What the ledger answers with: plain frozen dataclasses, no database rows leak out."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class MemberView:
    member_id: int
    card_number: str
    phone: str | None
    telegram_id: int | None
    first_name: str | None
    last_name: str | None
    username: str | None
    language: str
    timezone: str
    birthday: date | None
    birthday_set_at: datetime | None
    referral_code: str
    referred_by: int | None
    status: str
    notify_reminders: bool
    notify_tier: bool
    notify_offers: bool
    unreachable: bool
    created_at: datetime
    balance: int
    pending: int
    debt: int
    tier: str

    @property
    def is_active(self) -> bool:
        return self.status == "active"


@dataclass(frozen=True, slots=True)
class Registration:
    member: MemberView
    created: bool  # False when the phone was already known and is now linked
    welcome_points: int  # credited by this call (0 when it was credited before)
    # The Telegram account the card was linked to until this call moved it (a new account
    # shared the same phone), if any: it should hear of it.
    moved_from: int | None = None


@dataclass(frozen=True, slots=True)
class Burn:
    """Points that burn on the nearest date."""

    points: int
    burns_at: datetime


@dataclass(frozen=True, slots=True)
class Burnt:
    """Points of one member the burn job has just written off, and their usable balance after."""

    member_id: int
    points: int
    balance: int


@dataclass(frozen=True, slots=True)
class BalanceView:
    member_id: int
    balance: int
    pending: int
    debt: int
    tier: str
    qualifying_spend: int  # kopecks over the tier window
    next_tier: str | None
    to_next_tier: int  # kopecks still to spend; 0 at the top tier
    nearest_burn: Burn | None


@dataclass(frozen=True, slots=True)
class EntryView:
    entry_id: int
    kind: str
    points: int
    pending: int
    debt: int
    reference: str | None
    reason: str | None
    created_at: datetime
    reversible: bool
    reversed: bool
    actor: str | None = None  # who recorded it: "api:<key>" (the till), "tg:<id>" (staff) ...


@dataclass(frozen=True, slots=True)
class PurchaseView:
    """A recorded purchase, as support sees it beside a disputed entry."""

    receipt_id: str
    amount: int  # kopecks, the whole receipt
    refunded: int  # kopecks refunded so far
    created_at: datetime


@dataclass(frozen=True, slots=True)
class HistoryPage:
    entries: tuple[EntryView, ...]
    page: int  # 0-based
    pages: int
    total: int


@dataclass(frozen=True, slots=True)
class PurchaseResult:
    receipt_id: str
    member_id: int
    card_number: str
    accrued: int
    redeemed: int
    balance: int
    pending: int
    tier: str
    previous_tier: str  # the tier before this purchase: a change is tier news
    rewarded_inviter: int | None = None  # the member paid the referral reward by this purchase
    replayed: bool = False  # True when this is the stored answer to an earlier identical request

    def to_json(self) -> dict[str, Any]:
        """The body the HTTP API answers with (the interface contract's fields)."""
        return {
            "receipt_id": self.receipt_id,
            "member_id": self.member_id,
            "card_number": self.card_number,
            "accrued": self.accrued,
            "redeemed": self.redeemed,
            "balance": self.balance,
            "tier": self.tier,
        }


@dataclass(frozen=True, slots=True)
class RefundResult:
    refund_id: str
    receipt_id: str
    member_id: int
    card_number: str
    reversed: int  # earned points taken back
    returned: int  # redeemed points given back
    debt: int  # what the member owes after this refund
    balance: int
    pending: int
    tier: str
    replayed: bool = False

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body.pop("replayed")
        return body


@dataclass(frozen=True, slots=True)
class TierChange:
    member_id: int
    old_tier: str
    new_tier: str


@dataclass(frozen=True, slots=True)
class GiftResult:
    """A broadcast's gift to one member: the points credited (0 when the member had erased
    their data) and when they burn; `replayed` when they were credited before, not by this call."""

    member_id: int
    broadcast_id: int
    points: int
    expires_at: datetime | None  # None when nothing was credited
    replayed: bool = False

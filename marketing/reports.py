"""A broadcast's report: what its recipients and its control group did in the attribution
window after sending started (purchases, buyers, revenue net of refunds), and the lift
(marketing/lift.py). Every member drawn into a group counts, whether their message went out
or was skipped (the control group was drawn from the same audience, so comparing only those
reached would compare different people); members who erased their data are left out of both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, func, select

from ledger import policy
from marketing.lift import GroupOutcome, Lift, measure
from storage.schema import broadcast_members, members, purchases


@dataclass(frozen=True, slots=True)
class Attribution:
    window_days: int
    start: datetime  # when sending started
    end: datetime  # start + window_days
    complete: bool  # the window has passed: the numbers are final
    recipients: GroupOutcome
    control: GroupOutcome
    lift: Lift

    def to_json(self) -> dict[str, Any]:
        """The contract's `attribution` object (revenue as money, "1234.56")."""
        return {
            "window_days": self.window_days,
            "recipients": _group_json(self.recipients),
            "control": _group_json(self.control),
            "lift": self.lift.to_json(),
        }


def attribution(
    conn: Connection, broadcast_id: int, start: datetime, window_days: int, now: datetime
) -> Attribution:
    """The report of a broadcast whose sending started at `start`, as of `now`. Reads the
    group sizes in one statement and each buyer's purchases of the window in another (only
    buyers come back: summed here in Python integers, where a big spender's square cannot
    overflow)."""
    end = start + timedelta(days=window_days)
    bm = broadcast_members.c
    kept = and_(bm.broadcast_id == broadcast_id, members.c.status != "erased")
    sizes: dict[bool, int] = dict(
        conn.execute(
            select(bm.control, func.count())
            .select_from(broadcast_members.join(members, members.c.id == bm.member_id))
            .where(kept)
            .group_by(bm.control)
        ).all()
    )
    p = purchases.c
    buyers = conn.execute(
        select(bm.control, func.count(), func.sum(p.amount - p.refunded_amount))
        .select_from(
            broadcast_members.join(members, members.c.id == bm.member_id).join(
                purchases, p.member_id == bm.member_id
            )
        )
        .where(kept, p.created_at >= start, p.created_at < min(end, now))
        .group_by(bm.member_id, bm.control)
    )
    sums: dict[bool, list[int]] = {
        False: [0, 0, 0, 0],
        True: [0, 0, 0, 0],
    }  # buyers, purchases, revenue, squares
    for control, count, revenue in buyers:
        group = sums[bool(control)]
        group[0] += 1
        group[1] += int(count)
        group[2] += int(revenue)
        group[3] += int(revenue) ** 2
    outcomes = {side: GroupOutcome(int(sizes.get(side, 0)), *sums[side]) for side in (False, True)}
    return Attribution(
        window_days=window_days,
        start=start,
        end=end,
        complete=now >= end,
        recipients=outcomes[False],
        control=outcomes[True],
        lift=measure(outcomes[False], outcomes[True]),
    )


def _group_json(group: GroupOutcome) -> dict[str, Any]:
    return {
        "members": group.members,
        "buyers": group.buyers,
        "revenue": policy.format_amount(group.revenue),
    }


__all__: Sequence[str] = ["Attribution", "attribution"]

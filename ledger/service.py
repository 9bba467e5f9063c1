"""The ledger as the rest of the code sees it: one object, `LedgerService`, assembled from the
ledger's rooms (see ledger/operations.py for the runner they share and what each room holds).
"""

from __future__ import annotations

from ledger.adjustments import Adjustments
from ledger.calendar import Calendar
from ledger.gifts import Gifts
from ledger.members import Members
from ledger.purchases import Purchases
from ledger.queries import Queries


class LedgerService(Purchases, Adjustments, Calendar, Gifts, Members, Queries):
    """Owns every change to members' points."""

"""The scheduler's jobs deliver through the same sender as tests/messaging."""

from tests.messaging.conftest import Delivery, delivery

__all__ = ["Delivery", "delivery"]

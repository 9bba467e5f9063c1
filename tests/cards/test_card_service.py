"""Cards are drawn off the event loop, one at a time, on the cards' own thread."""

from __future__ import annotations

import asyncio
import threading
import time

from sqlalchemy.ext.asyncio import AsyncEngine

from cards.service import CardPrint, CardService


async def test_cards_asked_for_at_once_are_drawn_one_at_a_time_on_one_thread(
    engine: AsyncEngine,
) -> None:
    """A drawing holds several full-size images: twenty members pressing "Card" at once must
    not mean twenty drawings in memory at once (nor one per thread of the default executor)."""
    service = CardService(engine, "secret")
    render = service.render
    threads: set[str] = set()
    drawing = 0
    most = 0
    guard = threading.Lock()

    def counted(card: CardPrint, bot_username: str) -> bytes:
        nonlocal drawing, most
        with guard:
            drawing += 1
            most = max(most, drawing)
            threads.add(threading.current_thread().name)
        time.sleep(0.01)  # long enough for a second drawing to start if it could
        try:
            return render(card, bot_username)
        finally:
            with guard:
                drawing -= 1

    service.render = counted  # type: ignore[method-assign]
    cards = [
        CardPrint("Coffee", f"Member {i}", f"{i:012d}", "base", "Base", "Card") for i in range(8)
    ]
    try:
        pictures = await asyncio.gather(*(service.draw(card, "loyalty_bot") for card in cards))
    finally:
        service.close()
    assert len(set(pictures)) == len(cards)
    assert all(picture.startswith(b"\x89PNG") for picture in pictures)
    assert most == 1
    assert len(threads) == 1 and threading.main_thread().name not in threads

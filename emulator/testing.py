"""Helpers for running an aiogram dispatcher against the emulator inside a test."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiogram import Bot, Dispatcher


@contextlib.asynccontextmanager
async def running_polling(dp: Dispatcher, *bots: Bot, **kwargs: Any) -> AsyncIterator[None]:
    """Run ``dp.start_polling(*bots)`` in a background task for the ``async with`` body.

    The body starts once the dispatcher's first getUpdates is possible (startup handlers
    done); on exit polling is stopped and bot sessions are closed. Extra ``kwargs`` go to
    ``start_polling`` (``handle_signals`` is always False). A polling task that crashed
    re-raises its exception on exit.

    Example::

        async with running_polling(dp, bot):
            await alice.send_text("hi")
            await alice.wait_messages(1)
    """
    started = asyncio.Event()

    async def on_startup() -> None:
        started.set()

    dp.startup.register(on_startup)
    task = asyncio.create_task(dp.start_polling(*bots, handle_signals=False, **kwargs))
    waiter = asyncio.create_task(started.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # re-raise a startup failure
        yield
    finally:
        waiter.cancel()
        if not task.done():
            with contextlib.suppress(RuntimeError):
                await dp.stop_polling()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        dp.startup.handlers = [h for h in dp.startup.handlers if h.callback is not on_startup]

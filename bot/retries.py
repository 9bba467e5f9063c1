"""Replies to a person's own action survive a brief Telegram hiccup.

A request middleware on the session of the bot that answers updates: a 429 is retried after
the server's retry_after, a 5xx or a network error after a short backoff, as long as the
waits stay within a budget of a few seconds; past it, the error goes on to the caller (and the
person gets the apology). The outbox (messaging/) has a session of its own without
this middleware: it keeps its own policy (a 429 pauses all its sending, a message that failed
is put back with its attempts counted), so no message is retried by both.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import TelegramNetworkError, TelegramRetryAfter, TelegramServerError
from aiogram.methods import GetUpdates
from aiogram.methods.base import Response, TelegramMethod, TelegramType
from aiogram.utils.backoff import Backoff, BackoffConfig

if TYPE_CHECKING:
    from aiogram import Bot

log = logging.getLogger("loyalty.retries")

RETRY_BUDGET_S = 12.0  # at most this much waiting for one request, all tries together
MAX_TRIES = 6
BACKOFF = BackoffConfig(min_delay=0.5, max_delay=4.0, factor=2.0, jitter=0.1)


class RetryBriefFailures(BaseRequestMiddleware):
    """Retry a request that met a 429, a 5xx or a network error, within `budget` seconds of
    waiting in all. getUpdates is left alone: aiogram's polling loop has its own backoff."""

    def __init__(
        self,
        *,
        budget: float = RETRY_BUDGET_S,
        max_tries: int = MAX_TRIES,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.budget = budget
        self.max_tries = max_tries
        self.sleep = sleep

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        if _is_polling(method):
            return await make_request(bot, method)
        backoff = Backoff(BACKOFF)
        waited = 0.0
        tries = 0
        while True:
            tries += 1
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as error:
                wait = float(error.retry_after)
                failure: Exception = error
            except (TelegramServerError, TelegramNetworkError) as error:
                wait = max(0.0, next(backoff))
                failure = error
            if tries >= self.max_tries or waited + wait > self.budget:
                raise failure
            log.info(
                "%s: %s, retrying in %.1f s",
                type(method).__name__,
                type(failure).__name__,
                wait,
            )
            started = time.monotonic()
            await self.sleep(wait)
            waited += max(wait, time.monotonic() - started)


def _is_polling(method: TelegramMethod[Any]) -> bool:
    return isinstance(method, GetUpdates)

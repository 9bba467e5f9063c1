"""A Telegram Bot API emulator for offline end-to-end tests, demos and benchmarks.

See ``docs/EMULATOR.md``. The main entry points::

    from emulator import BotAPIEmulator, FaultKind

    emu = BotAPIEmulator()
    emu.add_bot("123456:TEST", username="loyalty_test_bot")
    await emu.start()
"""

from .client import OWN, CallbackHandle, EmulatedUser
from .errors import ApiError
from .faults import FaultInjector, FaultKind, FaultRule, RateLimitConfig, RateLimiter
from .params import UploadedFile
from .server import BotAPIEmulator
from .state import (
    ApiCall,
    BotMessage,
    CallbackAnswer,
    EmulatedBot,
    InlineButton,
    KeyboardButton,
    MessageEdit,
    Stats,
    StoredFile,
    UserProfile,
)
from .testing import running_polling

__all__ = [
    "OWN",
    "ApiCall",
    "ApiError",
    "BotAPIEmulator",
    "BotMessage",
    "CallbackAnswer",
    "CallbackHandle",
    "EmulatedBot",
    "EmulatedUser",
    "FaultInjector",
    "FaultKind",
    "FaultRule",
    "InlineButton",
    "KeyboardButton",
    "MessageEdit",
    "RateLimitConfig",
    "RateLimiter",
    "Stats",
    "StoredFile",
    "UploadedFile",
    "UserProfile",
    "running_polling",
]

"""Run the emulator standalone: ``python -m emulator --port 8081 --token 123:ABC``.

Prints the base URL (first line of stdout), then serves until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from .faults import RateLimitConfig
from .server import BotAPIEmulator


def build_parser() -> argparse.ArgumentParser:
    """The command line interface."""
    parser = argparse.ArgumentParser(
        prog="python -m emulator", description="Telegram Bot API emulator"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081, help="0 picks a free port")
    parser.add_argument(
        "--token", action="append", default=None, help="bot token, repeatable (123456:SECRET)"
    )
    parser.add_argument(
        "--username", action="append", default=None, help="bot username, one per --token"
    )
    parser.add_argument("--first-name", default="Bot")
    parser.add_argument("--rate-limit", action="store_true", help="enforce flood limits")
    parser.add_argument("--global-per-second", type=int, default=30)
    parser.add_argument("--per-chat-per-second", type=float, default=1.0)
    parser.add_argument("--per-chat-burst", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="seed for probabilistic faults")
    parser.add_argument("--strict-images", action="store_true")
    parser.add_argument(
        "--call-log-size", type=int, default=100_000, help="API calls kept in the log"
    )
    return parser


async def serve(args: argparse.Namespace) -> None:
    """Start the emulator described by ``args`` and serve until SIGINT/SIGTERM."""
    tokens: list[str] = args.token or ["123456:TEST"]
    usernames: list[str] = args.username or []
    emu = BotAPIEmulator(
        rate_limit=RateLimitConfig(
            enabled=args.rate_limit,
            global_per_second=args.global_per_second,
            per_chat_per_second=args.per_chat_per_second,
            per_chat_burst=args.per_chat_burst,
        ),
        seed=args.seed,
        strict_images=args.strict_images,
        call_log_size=args.call_log_size,
    )
    for index, token in enumerate(tokens):
        username = usernames[index] if index < len(usernames) else f"emulated_{index + 1}_bot"
        emu.add_bot(token, username, args.first_name)
    base_url = await emu.start(args.host, args.port)
    print(base_url, flush=True)
    for bot in emu.bots:
        print(f"bot @{bot.username} id={bot.id} token={bot.token}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await emu.stop()


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    args = build_parser().parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()

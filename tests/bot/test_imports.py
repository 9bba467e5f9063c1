"""What the running process loads at start: libraries needed only on some paths wait for them.

Every module a long-running process imports stays in its memory (the target is under 200 MB
idle, docs/BENCHMARKS.md): Pillow and qrcode load with the first card drawn, Alembic (with
Mako and Pygments) only when there is a migration to run (tests/storage/test_migrations.py),
and nothing of the tests' tools or the emulator is imported by the program itself.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT

NOT_AT_START = ("PIL", "qrcode", "alembic", "mako", "pygments", "emulator", "hypothesis", "pytest")
NOT_AT_START += ("matplotlib", "schemathesis")


def _loaded_after(statements: str) -> list[str]:
    script = (
        f"{statements}\n"
        "import sys\n"
        f"print(' '.join(sorted(m for m in {NOT_AT_START!r} if m in sys.modules)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_the_process_starts_without_the_imaging_library_or_alembic() -> None:
    assert _loaded_after("import bot.cli, bot.run, bot.build") == []


def test_the_first_card_drawn_loads_the_imaging_library() -> None:
    """The check above can see a lazy import happen: drawing a card loads Pillow and qrcode."""
    draw = (
        "import bot.cli, bot.run\n"
        "from sqlalchemy.ext.asyncio import create_async_engine\n"
        "from cards.service import CardPrint, CardService\n"
        "engine = create_async_engine('sqlite+aiosqlite://')\n"
        "card = CardPrint('Coffee', 'Ivan', '123456789012', 'base', 'Base', 'Card')\n"
        "png = CardService(engine, 'secret').render(card, 'loyalty_bot')\n"
        "assert png.startswith(bytes([137]) + b'PNG')\n"
    )
    assert _loaded_after(draw) == ["PIL", "qrcode"]

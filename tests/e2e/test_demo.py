"""`python -m bot demo` as a real process: offline, no token, exit 0, a readable transcript and
a card PNG whose QR opens the bot on the member's card."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import zxingcpp
from PIL import Image

from bot.demo import BOT_USERNAME
from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # the whole demo, in a real process

TIMEOUT = 90  # seconds; the demo itself takes a few, imports and start-up the rest


def _demo_env() -> dict[str, str]:
    """The caller's environment without anything that would point the bot somewhere real."""
    drop = {"BOT_TOKEN", "DATABASE_URL", "TELEGRAM_API_URL", "SECRET_KEY", "REDIS_URL", "ADMIN_IDS"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = str(ROOT)
    env["NO_COLOR"] = "1"
    return env


def _run_demo(cwd: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, "-m", "bot", "demo"],
            cwd=cwd,
            env=_demo_env(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        output = error.stdout
        so_far = output.decode() if isinstance(output, bytes) else output or ""
        raise AssertionError(
            f"python -m bot demo did not finish within {TIMEOUT} s; output so far:\n{so_far}"
        ) from None


def test_demo_runs_offline_and_tells_the_whole_story(tmp_path: Path) -> None:
    result = _run_demo(tmp_path)
    out, err = result.stdout, result.stderr
    assert result.returncode == 0, f"exit {result.returncode}\n--- stdout\n{out}\n--- stderr\n{err}"
    assert err == "", err  # no log noise, warnings or tracebacks

    # The member joins and gets the welcome bonus.
    assert "👤 Anna: /start" in out
    assert "[✅ I agree]" in out and "👤 Anna taps [✅ I agree]" in out
    assert "⌨ [📱 Share my phone]" in out
    assert "100 points are already on your account" in out
    assert "⌨ [💳 Card] [💰 Balance]" in out
    assert "Здравствуйте, Борис!" in out  # a Russian-speaking user is greeted in Russian

    # The till posts over HTTP; each purchase reaches the member as a receipt.
    assert out.count("🧾 Till → POST /api/v1/purchases") == 4  # two, one refused, its retry
    assert "← 422" in out and "redeem_above_limit" in out
    for receipt in ("R-1001", "R-1002", "R-1003"):
        assert f"🧾 Purchase {receipt}:" in out
    assert "➖ Spent:" in out

    # Balance, history, card, and the cashier's sale in the bot.
    assert "💰 Balance:" in out and "🏅 Tier: Silver" in out
    assert "📜 History, page 1 of 1" in out and "Welcome bonus" in out
    assert "saved to data/demo-card.png" in out
    assert "✅ Recorded." in out and "🧾 Purchase: 640 ₽" in out and "tg-7001" not in out
    assert not re.search(r"B-[0-9A-F]{12}\b", out)  # the bot's internal sale id

    # The marketer's offer: composed, sent to all its recipients, and its lift measured.
    assert "👤 Mia: /broadcast" in out and "🎁 A gift for you: 50 points" in out
    assert re.search(r"Broadcast B-\d{8}-[0-9a-f]{6}: done\n   │ Sent: 121 of 121", out)
    assert "Control group: 30 (20%)" in out
    assert re.search(r'"state":\s+"measured"', out) and "pp buyers (from +" in out
    assert "Silver tier" in out and "✅ Demo finished" in out

    # The card is saved relative to the current directory and its QR opens the bot.
    card = tmp_path / "data" / "demo-card.png"
    assert card.is_file()
    with Image.open(card) as image:
        assert image.format == "PNG"
        found = zxingcpp.read_barcodes(image)
    assert len(found) == 1
    link = urlparse(found[0].text)
    assert (link.scheme, link.netloc, link.path) == ("https", "t.me", f"/{BOT_USERNAME}")
    payload = parse_qs(link.query)["start"][0]
    assert payload.startswith("c_") and len(payload) <= 64

    # Nothing else was left behind: the database lived in a temporary directory.
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["data", "demo-card.png"]

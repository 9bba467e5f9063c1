"""bench.broadcasts runs end to end at a tiny size (nothing timed): materialising in its own
process, then the whole program sending through the emulator with its rate limiter on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import broadcasts
from bench.common import FIGURES_ENV
from bench.prepared import template_name

pytestmark = pytest.mark.slow  # the real program started twice on generated data


def test_quick_and_default_sizes_and_the_per_bot_limit_is_not_exceeded() -> None:
    quick = broadcasts.parse_args(["--quick"])
    assert (quick.members, quick.send_members, quick.messages) == (20_000, 20_000, 1_000)
    default = broadcasts.parse_args([])
    assert (default.members, default.send_members, default.messages) == (200_000, 20_000, 10_000)
    assert default.rate == 25.0
    with pytest.raises(SystemExit):  # 28 + 3 answers a second: over the emulator's 30/s
        broadcasts.parse_args(["--rate", "28"])


async def test_the_broadcast_benchmark_runs_and_checks_what_was_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path))
    figures_file = tmp_path / "figures.jsonl"
    monkeypatch.setenv(FIGURES_ENV, str(figures_file))
    args = broadcasts.parse_args(
        ["--members", "300", "--messages", "40", "--askers", "10", "--only", "sqlite"]
    )
    assert await broadcasts.main(args) == 0  # 0: every check passed (one copy per chat...)
    figures = [json.loads(line) for line in figures_file.read_text().splitlines()]
    by_name = {figure["name"].split(",")[0]: figure for figure in figures}
    assert by_name["materialise a broadcast to everyone (10% control)"]["value"] > 0
    assert by_name["RSS peak while materialising (sampled every 20 ms)"]["value"] > 50
    sent = next(f for f in figures if f["name"].startswith("offers sent/s over the first 40"))
    assert 0 < sent["value"] <= 25 * 1.1  # never faster than the configured rate
    assert any(f["name"].startswith("members' Balance p99") for f in figures)
    assert _copies_left(tmp_path) == []  # the copies are gone, the template stays


def _copies_left(folder: Path) -> list[str]:
    copy = f"{template_name(300)}_"
    return [path.name for path in folder.iterdir() if path.name.startswith(copy)]

"""bench.memory runs the real process end to end (nothing timed): the figures it prints come
from that process, idle and under both loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import memory
from bench.prepared import template_name

pytestmark = pytest.mark.slow  # a real bot process, started twice (imports), on generated data


async def test_the_memory_benchmark_measures_the_running_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path))
    args = memory.build_parser().parse_args(
        ["--members", "300", "--users", "4", "--purchases", "40", "--clients", "4"]
    )
    args.settle = 1.0
    figures = {figure.name: figure for figure in await memory.measure(args)}
    library = figures["import aiogram: peak RSS in a fresh interpreter"].value
    idle = next(figure for name, figure in figures.items() if " idle RSS, sqlite, 300 " in name)
    peak = next(figure for name, figure in figures.items() if "peak RSS under load" in name)
    # The process imports aiogram and more: read from its own /proc entry, it cannot weigh less.
    assert library < idle.value <= peak.value
    assert idle.met is (idle.value < 200) and peak.met is (peak.value < 300)
    assert _copies_left(tmp_path) == []  # the copy and its files are gone


def _copies_left(folder: Path) -> list[str]:
    copy = f"{template_name(300)}_"  # copies are named after the template and a random tail
    return [path.name for path in folder.iterdir() if path.name.startswith(copy)]

"""bench.all: the summary table is built from the figures files the modules write (not timed)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from bench import all as bench_all
from bench.common import FIGURES_ENV, Figure, report


def test_the_table_shows_each_reported_figure_with_floor_ratio_target_and_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = tmp_path / "ledger.jsonl"
    monkeypatch.setenv(FIGURES_ENV, str(figures))
    report(
        [
            Figure(
                "ledger",
                "purchases, SQLite, 1 worker",
                1234.5,
                "/s",
                met=False,
                floor=4000.0,
                ratio=0.3086,
                ratio_target=">= 0.35",
            ),
            Figure("updates", "p99", 42.25, "ms", target="< 100 ms", met=True),
            Figure("scheduler", "429 answers", 0, "", target="0", met=True),
            Figure("scheduler", "selection", 0.1234, "s"),
        ]
    )
    read = bench_all.read_figures(figures)
    assert [f.name for f in read] == [
        "purchases, SQLite, 1 worker",
        "p99",
        "429 answers",
        "selection",
    ]
    runs = [
        bench_all.ModuleRun("ledger", status=0, figures=read),
        bench_all.ModuleRun("jobs", found=False),
        bench_all.ModuleRun("api", status=2),
    ]
    rows = bench_all.rows(runs)
    assert rows[0] == (
        "ledger",
        "purchases, SQLite, 1 worker",
        "1,234/s",
        "4,000/s",
        "0.31",
        "ratio >= 0.35",
        "NO",
    )
    assert rows[1] == ("updates", "p99", "42.2 ms", "", "", "< 100 ms", "yes")
    assert rows[2] == ("scheduler", "429 answers", "0", "", "", "0", "yes")
    assert rows[3] == ("scheduler", "selection", "0.12 s", "", "", "", "")
    assert rows[4][:2] == ("jobs", "not run: bench/jobs.py does not exist")
    assert rows[5][:2] == ("api", "FAILED: exit status 2, no figures")
    lines = bench_all.table(runs).splitlines()
    assert lines[0].split() == list(bench_all.COLUMNS)
    assert len(lines) == 2 + len(rows)
    assert "1,234/s" in lines[2] and lines[2].rstrip().endswith("NO")


def test_a_module_that_does_not_exist_is_not_run(tmp_path: Path) -> None:
    run = bench_all.run_module("no_such_benchmark", quick=True, only="", workdir=tmp_path)
    assert not run.found and run.status is None and not run.figures


def test_only_goes_to_the_modules_that_take_it_and_quick_to_all(tmp_path: Path) -> None:
    with_only = tmp_path / "a.py"
    with_only.write_text('parser.add_argument("--only")\n')
    without = tmp_path / "b.py"
    without.write_text("parser.add_argument('--quick')\n")
    assert bench_all.command("a", with_only, True, "sqlite")[2:] == [
        "bench.a",
        "--quick",
        "--only",
        "sqlite",
    ]
    assert bench_all.command("b", without, False, "sqlite")[2:] == ["bench.b"]


def test_a_figures_file_holds_one_json_object_per_figure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = tmp_path / "f.jsonl"
    monkeypatch.setenv(FIGURES_ENV, str(figures))
    figure = Figure("scheduler", "delivery", 24.6, "/s", target=">= 23.75/s", met=True)
    report([figure])
    report([figure])
    lines = figures.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [asdict(figure)] * 2

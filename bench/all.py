"""Every benchmark, one after the other, and one table of their figures.

    .venv/bin/python -m bench.all                 # `make bench`: 200,000 generated members
    .venv/bin/python -m bench.all --quick         # `make bench-quick`: 20,000, a few minutes
    .venv/bin/python -m bench.all --only sqlite   # passed on to the modules that have both
    .venv/bin/python -m bench.all --modules ledger,updates

Each module (bench.ledger, bench.api, bench.updates, bench.scheduler, bench.jobs,
bench.aggregates, bench.memory, bench.broadcasts) runs as a subprocess of this one's Python,
with --quick when given and $BENCH_FIGURES set to a temporary file; its own output goes
through as it comes, and
what it reported with `bench.common.report` is read back from that file. A module that does not
exist (yet) is not run, and the table says so; so does it for a module that exits non-zero.
The table: benchmark, figure, value, floor, ratio, target, met.

Exit status: 1 when a module failed (or, with --strict, when a figure missed its target).
Set $BENCH_DATA_DIR to where the dataset templates are (bench.prepared), or the first module
to need a size builds it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import FIGURES_ENV, ROOT, Figure

MODULES = (
    "ledger",
    "api",
    "updates",
    "scheduler",
    "jobs",
    "aggregates",
    "memory",
    "segments",
    "broadcasts",
)
COLUMNS = ("benchmark", "figure", "value", "floor", "ratio", "target", "met")


@dataclass
class ModuleRun:
    """One module's run: whether it exists, how it ended, what it reported."""

    name: str
    found: bool = True
    status: int | None = None  # exit status; None when not run
    seconds: float = 0.0
    figures: list[Figure] = field(default_factory=list)


def module_source(name: str) -> Path | None:
    """The source file of bench.<name>, or None when there is no such module."""
    spec = importlib.util.find_spec(f"bench.{name}")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin)


def read_figures(path: Path) -> list[Figure]:
    """The figures `bench.common.report` appended to `path` (JSON lines); none if no file."""
    if not path.exists():
        return []
    figures = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            figures.append(Figure(**json.loads(line)))
    return figures


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return ""
    if abs(value) >= 100 or (not unit and float(value).is_integer()):
        text = f"{value:,.0f}"  # a count, or a large figure
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text}{unit}" if unit in ("/s", "") else f"{text} {unit}"


def rows(runs: Sequence[ModuleRun]) -> list[tuple[str, ...]]:
    """The table's rows: a module's figures, or one row saying why it has none."""
    found: list[tuple[str, ...]] = []
    for run in runs:
        if not run.found:
            found.append((run.name, f"not run: bench/{run.name}.py does not exist", *[""] * 5))
            continue
        for figure in run.figures:
            targets = [figure.target] if figure.target else []
            if figure.ratio_target:
                targets.append(f"ratio {figure.ratio_target}")
            met = "" if figure.met is None else ("yes" if figure.met else "NO")
            found.append(
                (
                    figure.benchmark,
                    figure.name,
                    _number(figure.value, figure.unit),
                    _number(figure.floor, figure.unit),
                    "" if figure.ratio is None else f"{figure.ratio:.2f}",
                    ", ".join(targets),
                    met,
                )
            )
        if run.status:
            what = "no figures" if not run.figures else "figures above may be incomplete"
            found.append((run.name, f"FAILED: exit status {run.status}, {what}", *[""] * 5))
        elif run.status == 0 and not run.figures:
            found.append((run.name, "ran, but reported no figures", *[""] * 5))
    return found


def table(runs: Sequence[ModuleRun]) -> str:
    body = rows(runs)
    widths = [max(len(row[i]) for row in [COLUMNS, *body]) for i in range(len(COLUMNS))]
    right = {2, 3, 4}  # numbers

    def line(row: Sequence[str]) -> str:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        return "  ".join(cells).rstrip()

    return "\n".join([line(COLUMNS), "  ".join("-" * w for w in widths), *map(line, body)])


def command(name: str, source: Path, quick: bool, only: str) -> list[str]:
    argv = [sys.executable, "-m", f"bench.{name}"]
    if quick:
        argv.append("--quick")
    # --only goes to the modules that have both databases (they say so by taking --only).
    if only and '"--only"' in source.read_text(encoding="utf-8"):
        argv += ["--only", only]
    return argv


def run_module(name: str, quick: bool, only: str, workdir: Path) -> ModuleRun:
    source = module_source(name)
    if source is None:
        print(f"\n=== bench.{name}: not found, skipped", flush=True)
        return ModuleRun(name, found=False)
    figures = workdir / f"{name}.jsonl"
    argv = command(name, source, quick, only)
    print(f"\n=== {' '.join(argv[1:])}", flush=True)
    env = {**os.environ, FIGURES_ENV: str(figures)}
    started = time.perf_counter()
    status = subprocess.call(argv, env=env, cwd=ROOT)
    run = ModuleRun(name, status=status, seconds=time.perf_counter() - started)
    run.figures = read_figures(figures)
    print(f"=== bench.{name}: exit status {status} after {run.seconds:.0f} s", flush=True)
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.all", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the 20,000-member version")
    parser.add_argument("--only", choices=("sqlite", "postgresql"), help="one database")
    parser.add_argument(
        "--modules", default=",".join(MODULES), help=f"comma-separated subset of {MODULES}"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    wanted = [m.strip() for m in args.modules.split(",") if m.strip()]
    if unknown := [m for m in wanted if m not in MODULES]:
        parser.error(f"unknown module(s) {unknown}; choose from {MODULES}")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-all-") as tmp:
        runs = [run_module(name, args.quick, args.only or "", Path(tmp)) for name in wanted]
    print(
        f"\nbench.all{' --quick' if args.quick else ''}: {time.perf_counter() - started:.0f} s;"
        f" load average at the start {load}, at the end"
        f" {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(table(runs))
    failed = any(run.status for run in runs)
    missed = any(f.met is False for run in runs for f in run.figures)
    return 1 if failed or (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())

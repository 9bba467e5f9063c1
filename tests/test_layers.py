"""The packages keep their layers: no import from a lower layer to a higher one, no import cycle
between top-level packages, and nothing in the product leans on the emulator or the benchmarks.

Layers, top to bottom (a module may import from its own layer or any layer below; the two
entry points, api and handlers, do not import each other):

    bot                         assembly: settings, building the services, running them
    api, handlers               entry points (HTTP; aiogram routers)
    usecases                    one use case per action a person takes
    scheduler                   what is due, and the jobs
    marketing                   segments (and the broadcasts built on them)
    messaging                   outbox, sender, notices and their rendering, text formatting
    staff, support, cards       domain services around the ledger
    ledger                      the points ledger
    storage                     tables, engines, transactions, migrations

`emulator` and `bench` stand apart: only `bot/demo.py` may import the emulator. Every import
counts, also one inside a function or under `if TYPE_CHECKING:`. A package that does not exist
(yet) is simply absent; a new top-level package must be given a layer here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import ROOT

LAYERS: tuple[tuple[str, ...], ...] = (
    ("bot",),
    ("api", "handlers"),
    ("usecases",),
    ("scheduler",),
    ("marketing",),
    ("messaging",),
    ("staff", "support", "cards"),
    ("ledger",),
    ("storage",),
)
LEVEL = {package: level for level, packages in enumerate(LAYERS) for package in packages}
# Entry points do not call each other: what two of them share lives in a layer below.
ENTRY_POINTS = {"api", "handlers"}
APART = {"emulator", "bench"}
# The only modules of the product that may import a package that stands apart.
APART_ALLOWED = {("bot/demo.py", "emulator")}
# Scripts a tool runs, never imported by the product: they assemble, like bot/, wherever the tool
# wants them to live.
ENTRY_SCRIPTS = {
    "storage/migrations/env.py",  # the `alembic` command's; reads DATABASE_URL as the bot does
}
NOT_PRODUCT = {"tests"}


@dataclass(frozen=True)
class Import:
    source: str  # path relative to ROOT, e.g. "handlers/commands.py"
    line: int
    package: str  # the importing module's top-level package
    target: str  # the imported top-level package

    def __str__(self) -> str:
        return f"{self.source}:{self.line} {self.package} -> {self.target}"


def top_level_packages(root: Path = ROOT) -> list[str]:
    return sorted(
        path.parent.name
        for path in root.glob("*/__init__.py")
        if path.parent.name not in NOT_PRODUCT and not path.parent.name.startswith(".")
    )


def _module_parts(path: Path, root: Path) -> list[str]:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _imported(tree: ast.AST, parts: list[str], is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of every module the tree imports, relative imports resolved."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                yield node.lineno, node.module or ""
                continue
            here = parts if is_package else parts[:-1]
            base = here[: len(here) - (node.level - 1)]
            yield node.lineno, ".".join([*base, *([node.module] if node.module else [])])


def package_imports(root: Path = ROOT) -> list[Import]:
    """Every import from one top-level package of the product into another."""
    packages = set(top_level_packages(root))
    found = []
    for package in sorted(packages):
        for path in sorted((root / package).rglob("*.py")):
            parts = _module_parts(path, root)
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for line, name in _imported(tree, parts, path.name == "__init__.py"):
                target = name.split(".")[0]
                source = path.relative_to(root).as_posix()
                if target in packages and target != package and source not in ENTRY_SCRIPTS:
                    found.append(Import(source, line, package, target))
    return found


def _why_wrong(each: Import) -> str | None:
    if each.target in APART:
        if each.package not in APART and (each.source, each.target) not in APART_ALLOWED:
            return "stands apart"
    elif each.package in APART:
        return None  # the emulator and the benchmarks may drive the product
    elif LEVEL[each.target] < LEVEL[each.package]:
        return f"up from layer {each.package} to {each.target}"
    elif each.package in ENTRY_POINTS and each.target in ENTRY_POINTS:
        return "one entry point into another"
    return None


def wrong_imports(imports: list[Import]) -> list[tuple[Import, str]]:
    """Imports that go up a layer, from one entry point into another, or into a package that
    stands apart; with the reason."""
    return [(each, why) for each in imports if (why := _why_wrong(each)) is not None]


def layer_violations(imports: list[Import]) -> list[str]:
    return [f"{each} ({why})" for each, why in wrong_imports(imports)]


def package_cycles(imports: list[Import]) -> list[list[str]]:
    """Groups of top-level packages that import each other, directly or round a loop."""
    graph: dict[str, set[str]] = {}
    for each in imports:
        graph.setdefault(each.package, set()).add(each.target)
        graph.setdefault(each.target, set())
    # Tarjan's strongly connected components; a component of two or more is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(cycles)


def _cycle_report(imports: list[Import], cycles: list[list[str]]) -> list[str]:
    """One line per package edge inside a cycle: how many imports, and where the first is."""
    edges: dict[tuple[str, str], list[Import]] = {}
    for each in imports:
        if any(each.package in cycle and each.target in cycle for cycle in cycles):
            edges.setdefault((each.package, each.target), []).append(each)
    return [
        f"{a} -> {b}: {len(found)} import(s), first {found[0].source}:{found[0].line}"
        + (" (goes up)" if a in LEVEL and b in LEVEL and LEVEL[b] < LEVEL[a] else "")
        for (a, b), found in sorted(edges.items())
    ]


# The checks on a made-up tree: they must catch what they are meant to catch.


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(source, encoding="utf-8")
    return root


def test_an_import_from_the_ledger_up_into_handlers_is_reported(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "ledger/service.py": "def f():\n    from handlers.common import x\n",
            "handlers/common.py": "from ledger.service import f\n",
            "storage/engine.py": "",
        },
    )
    imports = package_imports(root)
    assert layer_violations(imports) == [
        "ledger/service.py:2 ledger -> handlers (up from layer ledger to handlers)"
    ]
    assert package_cycles(imports) == [["handlers", "ledger"]]


def test_relative_imports_and_type_only_imports_count(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "storage/engine.py": "from ..bot import settings\n",
            "storage/__init__.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from ledger import views\n",
            "bot/settings.py": "from . import app\nfrom .app import x\n",
            "ledger/views.py": "",
        },
    )
    assert layer_violations(package_imports(root)) == [
        "storage/__init__.py:3 storage -> ledger (up from layer storage to ledger)",
        "storage/engine.py:1 storage -> bot (up from layer storage to bot)",
    ]


def test_the_product_may_not_lean_on_the_emulator_nor_one_entry_point_on_another(
    tmp_path: Path,
) -> None:
    root = _tree(
        tmp_path,
        {
            "bot/demo.py": "import emulator.server\n",
            "bot/app.py": "from emulator import server\n",
            "emulator/server.py": "",
            "bench/api.py": "from bot import app\nfrom emulator import server\n",
            "api/app.py": "from handlers.cashier import ask\n",
            "handlers/cashier.py": "",
        },
    )
    assert layer_violations(package_imports(root)) == [
        "api/app.py:1 api -> handlers (one entry point into another)",
        "bot/app.py:1 bot -> emulator (stands apart)",
    ]


def test_a_cycle_within_one_layer_is_reported(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "staff/roles.py": "import support.tickets\n",
            "support/tickets.py": "import cards.token\n",
            "cards/token.py": "from staff import roles\n",
        },
    )
    imports = package_imports(root)
    assert layer_violations(imports) == []
    assert package_cycles(imports) == [["cards", "staff", "support"]]


# The checks on the project itself.


def test_every_top_level_package_has_a_layer() -> None:
    unknown = [p for p in top_level_packages() if p not in LEVEL and p not in APART]
    assert unknown == [], "give each new package a layer in tests/test_layers.py"


def test_no_package_imports_from_a_layer_above_it() -> None:
    wrong = layer_violations(package_imports())
    assert wrong == [], "\n".join(["imports against the layers:", *wrong])


def test_the_ledger_and_storage_know_nothing_of_telegram_or_translations() -> None:
    outside = ("aiogram", "babel")
    found = []
    for package in ("ledger", "storage"):
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            parts = _module_parts(path, ROOT)
            for line, name in _imported(tree, parts, path.name == "__init__.py"):
                if name.split(".")[0] in outside:
                    found.append(f"{path.relative_to(ROOT).as_posix()}:{line} imports {name}")
    assert found == []


def test_no_two_top_level_packages_import_each_other() -> None:
    imports = package_imports()
    cycles = package_cycles(imports)
    assert cycles == [], "\n".join([f"import cycles: {cycles}", *_cycle_report(imports, cycles)])

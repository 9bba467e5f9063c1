"""The project uses only the public API of its libraries: every `x._name` it reads or calls is
a name the project itself defines (a private attribute of SQLAlchemy, asyncpg, aiosqlite or
aiogram can change in any patch release, which is what let the pins become ranges)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "api", "bench", "bot", "cards", "emulator", "handlers", "ledger", "scheduler", "staff",
    "storage", "support",
)  # fmt: skip
# The documented API of collections.namedtuple (underscored so as not to clash with fields).
NAMEDTUPLE_API = {"_make", "_replace", "_asdict", "_fields", "_field_defaults"}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _defined_here(trees: list[ast.Module]) -> set[str]:
    """Private names the project defines: functions, classes, attributes it assigns, slots."""
    names: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
            elif isinstance(node, ast.Assign) and any(
                isinstance(target, ast.Name) and target.id == "__slots__" for target in node.targets
            ):
                names.update(
                    element.value
                    for element in ast.walk(node.value)
                    if isinstance(element, ast.Constant) and isinstance(element.value, str)
                )
    return {name for name in names if _private(name)}


def test_no_private_attribute_of_a_library_is_used() -> None:
    files = [path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]
    trees = [ast.parse(path.read_text(encoding="utf-8"), str(path)) for path in files]
    ours = _defined_here(trees) | NAMEDTUPLE_API
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno}: .{node.attr}"
        for path, tree in zip(files, trees, strict=True)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and _private(node.attr) and node.attr not in ours
    ]
    assert not found, "private attributes of libraries:\n" + "\n".join(found)

"""No module in ledger/, handlers/ or messaging/ is over ~500 lines unless its opening docstring
says why ("Over 500 lines because ..."): a module should read top-down in one sitting."""

from __future__ import annotations

import ast
import re

from tests.conftest import ROOT

FOLDERS = ("ledger", "handlers", "messaging")  # a folder that does not exist yet is skipped
LIMIT = 500
REASON = re.compile(r"\bover 500 lines because\b", re.IGNORECASE)


def too_long(sources: dict[str, str], limit: int = LIMIT) -> list[str]:
    """The files (name -> source) over `limit` lines whose docstring gives no reason."""
    found = []
    for name, source in sorted(sources.items()):
        lines = source.count("\n")
        docstring = ast.get_docstring(ast.parse(source)) or ""
        if lines > limit and not REASON.search(docstring):
            found.append(f"{name}: {lines} lines")
    return found


def _sources() -> dict[str, str]:
    return {
        path.relative_to(ROOT).as_posix(): path.read_text(encoding="utf-8")
        for folder in FOLDERS
        for path in sorted((ROOT / folder).rglob("*.py"))
    }


def test_a_long_file_without_a_reason_is_listed_and_one_with_a_reason_is_not() -> None:
    body = "x = 1\n" * 600
    assert too_long(
        {
            "short.py": '"""Short."""\n' + "x = 1\n" * 10,
            "long.py": '"""Members."""\n' + body,
            "explained.py": '"""Operations.\n\nOver 500 lines because one runner.\n"""\n' + body,
        }
    ) == ["long.py: 601 lines"]


def test_no_file_in_ledger_handlers_or_messaging_is_over_500_lines_without_a_reason() -> None:
    assert too_long(_sources()) == []

"""Both languages have every text, every text the code asks for exists, and a text's
`{placeholders}` are the same in both languages, in every plural form, and are what the code
fills in."""

from __future__ import annotations

import ast
import re
import string
from collections.abc import Iterator
from pathlib import Path

from babel.messages.pofile import read_po

from handlers.commands import MEMBER_COMMANDS, ROLE_COMMANDS
from handlers.support import EXPLAINED
from staff.roles import Role
from tests.conftest import ROOT

LANGUAGES = ("en", "ru")
# Keys built at run time from a known set of values.
FAMILIES = {
    "role-": [role.value for role in Role],
    "desk-why-": [*sorted(EXPLAINED), "other"],
    "desk-kind-": ["support", "dispute"],
    "support-new-": ["support", "dispute"],
    "desk-status-": ["open", "closed"],
    "desk-member-": ["active", "erased"],
    # The journal's entry kinds, as the history names them (handlers.history.entry_line).
    "kind-": [
        "welcome",
        "earn",
        "redeem",
        "refund_reverse",
        "refund_return",
        "adjustment",
        "reversal",
        "expiry",
        "referral",
        "birthday",
        "gift",
        "activation",
        "debt_payoff",
    ],
    "cmd-": [*MEMBER_COMMANDS, *(name for names in ROLE_COMMANDS.values() for name in names)],
}


# Where texts are asked for (a folder that does not exist yet is skipped).
TEXT_FOLDERS = ("bot", "api", "handlers", "usecases", "scheduler", "messaging")


def _texts(language: str) -> dict[str, tuple[str, ...]]:
    """Each key's translated forms (one, or one per plural form)."""
    path = ROOT / "locales" / language / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as po_file:
        catalog = read_po(po_file, locale=language)
    texts = {}
    for message in catalog:
        forms = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.id:
            texts[message.id if isinstance(message.id, str) else message.id[0]] = forms
    return texts


def _keys(language: str) -> set[str]:
    """The keys translated, every plural form too."""
    return {key for key, forms in _texts(language).items() if all(forms)}


def _sources() -> Iterator[Path]:
    for folder in TEXT_FOLDERS:
        yield from sorted(Path(ROOT, folder).rglob("*.py"))


def _asked_for() -> set[str]:
    """Literal keys in _("..."), gettext("..."), ngettext("...", ...) and count_text("...", ...)
    calls."""
    pattern = re.compile(r'(?:\b_|gettext|ngettext|count_text)\(\s*"([a-z0-9_-]+)"')
    asked = set()
    for path in _sources():
        asked |= set(pattern.findall(path.read_text(encoding="utf-8")))
    return asked


def placeholders(text: str) -> frozenset[str]:
    """The names of the `{placeholders}` in a text ("{n:,}" and "{member.name}" count as n and
    member; "{{" is not one)."""
    fields = (field for _, field, _, _ in string.Formatter().parse(text) if field is not None)
    return frozenset(re.split(r"[.\[]", field)[0] for field in fields)


def placeholder_mismatches(
    english: dict[str, tuple[str, ...]], russian: dict[str, tuple[str, ...]]
) -> list[str]:
    """Keys whose forms, in either language, do not all have the same placeholders."""
    wrong = []
    for key in sorted(english.keys() & russian.keys()):
        forms = {
            f"{language}[{number}]": sorted(placeholders(form))
            for language, texts in (("en", english), ("ru", russian))
            for number, form in enumerate(texts[key])
            if form
        }
        if len({tuple(names) for names in forms.values()}) > 1:
            wrong.append(f"{key}: {forms}")
    return wrong


def _call_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _literal_key(call: ast.Call) -> str | None:
    if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    return None


def filled_in(source: str) -> Iterator[tuple[int, str, frozenset[str] | None]]:
    """(line, key, the placeholders the code fills in) for every text asked for by a literal
    key: `_("key").format(a=...)`, `i18n.gettext("key", locale=...).format(a=...)`,
    `count_text("key", count, a=...)` (which fills in n). None when it cannot be told
    (`**values`, positional arguments); an empty set for a text used as it is."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or (key := _literal_key(node)) is None:
            continue
        name = _call_name(node)
        if name == "count_text":
            unknown = any(keyword.arg is None for keyword in node.keywords)
            names = {"n", *(keyword.arg for keyword in node.keywords if keyword.arg)}
            yield node.lineno, key, None if unknown else frozenset(names)
        elif name in ("_", "gettext"):
            attribute = parents.get(node)
            call = parents.get(attribute) if attribute is not None else None
            if not (isinstance(attribute, ast.Attribute) and attribute.attr == "format"):
                yield node.lineno, key, frozenset()
            elif isinstance(call, ast.Call):
                keywords = call.keywords
                unknown = bool(call.args) or any(keyword.arg is None for keyword in keywords)
                names = {keyword.arg for keyword in keywords if keyword.arg}
                yield node.lineno, key, None if unknown else frozenset(names)


def unfilled_placeholders(texts: dict[str, tuple[str, ...]], files: dict[str, str]) -> list[str]:
    """Call sites (in files: name -> source) that leave a placeholder of their text unfilled
    (the person would read "{amount}") or fill in one it does not have."""
    wrong = []
    for name, source in files.items():
        for line, key, names in sorted(filled_in(source), key=lambda found: found[0]):
            if key not in texts or names is None:
                continue
            needed = placeholders(texts[key][0])
            if names != needed:
                wrong.append(
                    f"{name}:{line} {key}: text has {sorted(needed)}, code {sorted(names)}"
                )
    return wrong


def test_both_languages_have_the_same_texts() -> None:
    english, russian = _keys("en"), _keys("ru")
    assert sorted(english - russian) == [] and sorted(russian - english) == []


def test_every_text_the_code_asks_for_exists() -> None:
    known = _keys("en")
    built = {prefix + value for prefix, values in FAMILIES.items() for value in values}
    asked = _asked_for() | built
    assert sorted(asked - known) == []


def test_a_text_has_the_same_placeholders_in_both_languages_and_every_plural_form() -> None:
    assert placeholder_mismatches(_texts("en"), _texts("ru")) == []


def test_the_code_fills_in_exactly_the_placeholders_of_its_text() -> None:
    files = {
        path.relative_to(ROOT).as_posix(): path.read_text(encoding="utf-8") for path in _sources()
    }
    assert unfilled_placeholders(_texts("en"), files) == []


def test_a_placeholder_missing_from_one_russian_plural_form_is_found() -> None:
    english = {"left": ("{n} point left, {who}", "{n} points left, {who}")}
    russian = {
        "left": ("Остался {n} балл, {who}", "Осталось {n} балла", "Осталось {n} баллов, {who}")
    }
    assert placeholder_mismatches(english, russian) == [
        "left: {'en[0]': ['n', 'who'], 'en[1]': ['n', 'who'], 'ru[0]': ['n', 'who'], "
        "'ru[1]': ['n'], 'ru[2]': ['n', 'who']}"
    ]
    assert placeholder_mismatches(english, {"left": ("{n} {who}", "{n} {who}", "{n} {who}")}) == []


def test_a_call_that_leaves_a_placeholder_unfilled_is_found() -> None:
    source = (
        'a = _("receipt").format(amount=1)\n'
        'b = i18n.gettext("receipt", locale="ru").format(amount=1, points=2)\n'
        'c = count_text("left", 3, who="Anna")\n'
        'd = count_text("left", 3)\n'
        'e = _("receipt")\n'
        'f = _("receipt").format(**values)\n'
        'g = _("thanks")\n'
        'h = _("thanks").format(who="Anna")\n'
    )
    texts = {
        "receipt": ("{amount} ₽, {points} points",),
        "left": ("{n}, {who}",),
        "thanks": ("Hi",),
    }
    assert unfilled_placeholders(texts, {"made_up.py": source}) == [
        "made_up.py:1 receipt: text has ['amount', 'points'], code ['amount']",
        "made_up.py:4 left: text has ['n', 'who'], code ['n']",
        "made_up.py:5 receipt: text has ['amount', 'points'], code []",
        "made_up.py:8 thanks: text has [], code ['who']",
    ]

"""The rules file: defaults from the product page, and errors that name the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.rules import RulesError, load_rules
from tests.conftest import ROOT


def test_default_rules_match_the_product_page() -> None:
    rules = load_rules(ROOT / "rules.toml")
    assert [(t.name, t.threshold_rub, t.rub_per_point) for t in rules.tiers] == [
        ("base", 0, 50),
        ("silver", 10_000, 40),
        ("gold", 30_000, 30),
    ]
    assert (rules.max_redeem_percent, rules.welcome_bonus, rules.points_lifetime_days) == (
        30,
        100,
        180,
    )
    assert rules.referral.inviter_points == 200
    assert (rules.birthday.points, rules.birthday.valid_days) == (300, 14)
    assert rules.messages.burn_warning_days == (7, 3) and rules.messages.weekly_cap == 3


def _write(tmp_path: Path, old: str, new: str) -> Path:
    text = (ROOT / "rules.toml").read_text().replace(old, new, 1)
    assert text != (ROOT / "rules.toml").read_text()
    path = tmp_path / "rules.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        ("max_redeem_percent = 30", "max_redeem_percent = 130", "max_redeem_percent"),
        ("welcome_bonus = 100", "welcome_bonus = -1", "welcome_bonus"),
        ("welcome_bonus = 100", "welcom_bonus = 100", "welcom_bonus"),
        ("rub_per_point = 40", "rub_per_point = 0", "tiers.1.rub_per_point"),
        (
            'default_timezone = "Europe/Moscow"',
            'default_timezone = "Mars/Base"',
            "default_timezone",
        ),
        ("threshold_rub = 10000", "threshold_rub = 40000", "thresholds must strictly increase"),
        ("hold_days = 0", "hold_days = 'soon'", "hold_days"),
    ],
)
def test_a_bad_value_is_refused_with_its_key(
    tmp_path: Path, old: str, new: str, named: str
) -> None:
    with pytest.raises(RulesError, match=named.replace(".", r"\.")):
        load_rules(_write(tmp_path, old, new))


def test_missing_and_broken_files_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="not found"):
        load_rules(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("welcome_bonus = = 1")
    with pytest.raises(RulesError, match="not valid TOML"):
        load_rules(broken)


@pytest.mark.parametrize(
    "text",
    [
        "welcome_bonus = 50\n",
        'program_name = "Coffee"\nmax_redeem_percent = 20\n',
        "[messages]\nweekly_cap = 5\n",
    ],
)
def test_a_partial_rules_file_takes_the_shipped_defaults_for_what_it_omits(
    tmp_path: Path, text: str
) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    rules = load_rules(path)
    shipped = load_rules(ROOT / "rules.toml").model_dump()
    given = rules.model_dump()
    changed = {
        (section, key)
        for section, values in given.items()
        for key, value in (values.items() if isinstance(values, dict) else [(None, values)])
        if (shipped[section] if key is None else shipped[section][key]) != value
    }
    expected = {
        "welcome_bonus = 50\n": {("welcome_bonus", None)},
        'program_name = "Coffee"\nmax_redeem_percent = 20\n': {
            ("program_name", None),
            ("max_redeem_percent", None),
        },
        "[messages]\nweekly_cap = 5\n": {("messages", "weekly_cap")},
    }[text]
    assert changed == expected


def test_a_partial_rules_file_with_a_wrong_value_still_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text("[messages]\nweekly_cap = -1\n")
    with pytest.raises(RulesError, match=r"messages\.weekly_cap") as refused:
        load_rules(path)
    assert "Field required" not in str(refused.value)


def test_the_shipped_rules_file_says_what_the_defaults_are(tmp_path: Path) -> None:
    empty = tmp_path / "rules.toml"
    empty.write_text("")
    assert load_rules(empty) == load_rules(ROOT / "rules.toml")

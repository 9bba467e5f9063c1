"""Settings: the contract's variables, and .env.example documents every one of them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.settings import Settings
from ledger.rules import load_rules
from tests.conftest import ROOT


def test_env_example_lists_every_setting() -> None:
    listed = set(re.findall(r"^#?\s*([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert {name.upper() for name in Settings.model_fields} <= listed


def test_contract_defaults() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.telegram_api_url == "https://api.telegram.org"
    assert settings.database_url == "sqlite+aiosqlite:///./data/loyalty.db"
    assert (settings.api_host, settings.api_port) == ("127.0.0.1", 8080)
    assert settings.admin_ids == ()


def test_the_rules_file_is_found_from_any_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    found = Settings(_env_file=None).rules_file  # type: ignore[call-arg]
    assert found == ROOT / "rules.toml" and load_rules(found).tiers  # the project's own
    (tmp_path / "rules.toml").write_text((ROOT / "rules.toml").read_text())
    assert Settings(_env_file=None).rules_file == Path("rules.toml")  # type: ignore[call-arg]
    monkeypatch.setenv("RULES_FILE", "/etc/loyalty/rules.toml")
    assert Settings(_env_file=None).rules_file == Path("/etc/loyalty/rules.toml")  # type: ignore[call-arg]


def test_admin_ids_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_IDS", "1, 22,333")
    assert Settings(_env_file=None).admin_ids == (1, 22, 333)  # type: ignore[call-arg]
    monkeypatch.setenv("ADMIN_IDS", "1,abc")
    with pytest.raises(ValidationError, match="comma-separated"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_database_urls_in_their_usual_spellings_mean_the_async_drivers() -> None:
    def url(value: str) -> str:
        return Settings(_env_file=None, database_url=value).database_url  # type: ignore[call-arg]

    assert url("postgresql://u@h:5432/db") == "postgresql+asyncpg://u@h:5432/db"
    assert url("postgres://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert url("sqlite:///./data/x.db") == "sqlite+aiosqlite:///./data/x.db"
    assert url("postgresql+asyncpg://u@h/db") == "postgresql+asyncpg://u@h/db"
    for bad in ("mysql://u@h/db", "nonsense", "postgresql+psycopg2://u@h/db"):
        with pytest.raises(ValidationError, match="database_url"):
            url(bad)
    with pytest.raises(ValidationError, match="LOG_LEVEL must be one of"):
        Settings(_env_file=None, log_level="LOUD")  # type: ignore[call-arg]


def test_a_bad_database_url_is_refused_without_showing_its_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", "mysql://loyalty:S3cret@db/loyalty")
    assert main(["ledger", "check"]) == 2
    said = capsys.readouterr().err
    assert "DATABASE_URL" in said and "S3cret" not in said and "loyalty:***@db" in said

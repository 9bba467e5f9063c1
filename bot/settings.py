"""Settings from the environment and `.env`, exactly as the interface contract names them."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./data/loyalty.db"
_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
PROJECT_RULES = Path(__file__).resolve().parent.parent / "rules.toml"


def default_rules_file() -> Path:
    """RULES_FILE when it is not set: `rules.toml` in the working directory if there is one,
    else the one that comes with the project (so `python -m bot` starts from any directory)."""
    local = Path("rules.toml")
    if local.exists() or not PROJECT_RULES.exists():
        return local
    return PROJECT_RULES


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    bot_token: str | None = None
    telegram_api_url: str = "https://api.telegram.org"
    database_url: str = DEFAULT_DATABASE_URL
    admin_ids: Annotated[tuple[int, ...], NoDecode] = ()
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=0, le=65535)
    secret_key: str | None = None
    redis_url: str | None = None
    rules_file: Path = Field(default_factory=default_rules_file)
    log_level: str = "INFO"
    # Telegram's limits: ~30 messages/s overall, 1/s per chat; we stay under them.
    send_rate_per_second: float = Field(default=25.0, gt=0)
    send_per_chat_interval: float = Field(default=1.0, ge=0)
    # How long a member has to confirm a large redemption asked for at the till.
    redemption_confirm_seconds: int = Field(default=120, gt=0)
    # The HTTP API closes a connection that has not sent a request's head (or sits idle)
    # this long, and answers 408 to a body that has not arrived this long after its head.
    api_header_timeout_seconds: float = Field(default=10.0, gt=0)
    api_body_timeout_seconds: float = Field(default=30.0, gt=0)

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [part.strip() for part in value.split(",") if part.strip()]
            try:
                return tuple(int(part) for part in parts)
            except ValueError as exc:
                raise ValueError("ADMIN_IDS must be comma-separated Telegram user ids") from exc
        if isinstance(value, int):
            return (value,)
        return value

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        """The async drivers this program runs on; the usual spellings of both databases
        (postgresql://, postgres://, sqlite:///) mean them."""
        scheme, sep, rest = value.partition("://")
        if not sep:
            raise ValueError(
                "it must look like sqlite+aiosqlite:///./data/loyalty.db or "
                "postgresql+asyncpg://user@host:5432/dbname"
            )
        scheme = _DRIVERS.get(scheme.lower(), scheme)
        if scheme not in _DRIVERS.values():
            raise ValueError(
                f"{scheme}:// is not supported; use postgresql+asyncpg:// or sqlite+aiosqlite://"
            )
        return f"{scheme}://{rest}"

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in _LEVELS:
            raise ValueError(f"LOG_LEVEL must be one of {', '.join(_LEVELS)}")
        return value.upper()

    @field_validator("telegram_api_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    def resolved_secret_key(self, data_dir: Path = Path("data")) -> str:
        """SECRET_KEY, or one generated once and kept in data/secret_key so that QR cards
        stay valid across restarts."""
        if self.secret_key:
            return self.secret_key
        path = data_dir / "secret_key"
        if path.exists():
            return path.read_text().strip()
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = secrets.token_urlsafe(32)
        try:  # readable by its owner only from the start
            created = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:  # another process made it just now
            return path.read_text().strip()
        with os.fdopen(created, "w") as file:
            file.write(key)
        return key

"""The program rules: plain typed data loaded from one TOML file and validated at start-up.

Every key has a default, the value in the shipped rules.toml (a test keeps the two equal): a
rules file may set only what it changes."""

from __future__ import annotations

import tomllib
from datetime import time
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

KOPECKS_PER_RUB = 100


class RulesError(ValueError):
    """The rules file is missing or wrong; the message names the file and the bad key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tier(_Strict):
    # No defaults here: a tier written in the file is written whole.
    name: str = Field(min_length=1, max_length=16, pattern=r"^[a-z][a-z0-9_]*$")
    threshold_rub: int = Field(ge=0)
    rub_per_point: int = Field(gt=0)

    @property
    def threshold_kopecks(self) -> int:
        return self.threshold_rub * KOPECKS_PER_RUB

    @property
    def kopecks_per_point(self) -> int:
        return self.rub_per_point * KOPECKS_PER_RUB


class ReferralRules(_Strict):
    inviter_points: int = Field(default=200, ge=0)


class BirthdayRules(_Strict):
    points: int = Field(default=300, ge=0)
    valid_days: int = Field(default=14, gt=0)
    min_days_set_before: int = Field(default=7, ge=0)


class MessageRules(_Strict):
    burn_warning_days: tuple[int, ...] = (7, 3)
    weekly_cap: int = Field(default=3, ge=0)
    quiet_hours_start: time = time(21, 0)
    quiet_hours_end: time = time(10, 0)
    default_timezone: str = "Europe/Moscow"

    @field_validator("burn_warning_days")
    @classmethod
    def _positive_days(cls, days: tuple[int, ...]) -> tuple[int, ...]:
        if any(day <= 0 for day in days):
            raise ValueError("every warning day must be positive")
        return tuple(sorted(set(days), reverse=True))

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {zone!r}") from exc
        return zone


class BroadcastRules(_Strict):
    """A marketer's broadcasts: the defaults the composer offers, and what a report measures."""

    control_percent: int = Field(default=10, ge=0, le=50)  # held back to measure the lift
    attribution_days: int = Field(default=14, gt=0, le=90)  # purchases counted after sending
    gift_days: int = Field(default=14, gt=0, le=365)  # how long gift points live
    max_gift_points: int = Field(default=10_000, ge=0)


class Rules(_Strict):
    program_name: str = Field(default="Bonus Club", min_length=1, max_length=64)
    point_value_kopecks: int = Field(default=100, gt=0)
    max_redeem_percent: int = Field(default=30, ge=0, le=100)
    welcome_bonus: int = Field(default=100, ge=0)
    hold_days: int = Field(default=0, ge=0)
    points_lifetime_days: int = Field(default=180, gt=0)
    tier_window_days: int = Field(default=365, gt=0)
    member_confirm_above: int = Field(default=1000, ge=0)
    tiers: tuple[Tier, ...] = Field(
        default=(
            Tier(name="base", threshold_rub=0, rub_per_point=50),
            Tier(name="silver", threshold_rub=10_000, rub_per_point=40),
            Tier(name="gold", threshold_rub=30_000, rub_per_point=30),
        ),
        min_length=1,
    )
    referral: ReferralRules = ReferralRules()
    birthday: BirthdayRules = BirthdayRules()
    messages: MessageRules = MessageRules()
    broadcasts: BroadcastRules = BroadcastRules()

    @model_validator(mode="after")
    def _tiers_ascending(self) -> Rules:
        thresholds = [tier.threshold_rub for tier in self.tiers]
        if thresholds[0] != 0:
            raise ValueError("tiers: the first tier must start at threshold_rub = 0")
        if thresholds != sorted(set(thresholds)):
            raise ValueError("tiers: thresholds must strictly increase")
        if len({tier.name for tier in self.tiers}) != len(self.tiers):
            raise ValueError("tiers: names must be unique")
        return self

    def tier(self, name: str) -> Tier:
        """The tier called `name`; the lowest tier for an unknown name."""
        for tier in self.tiers:
            if tier.name == name:
                return tier
        return self.tiers[0]


def load_rules(path: str | Path) -> Rules:
    """Read and validate the rules file; RulesError names the file and the offending key."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RulesError(f"rules file not found: {path} (set RULES_FILE)") from exc
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return Rules.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(top level)'}: {error['msg']}"
            for error in exc.errors()
        )
        raise RulesError(f"{path}: {problems}") from exc

"""bot/ in two parts: building the services (one typed registry, the handlers' only list of
what they may ask for) and running them (an object with every part present)."""

from __future__ import annotations

import dataclasses
import typing

from bot.build import Services, build_dispatcher, build_services, close_services
from bot.run import Running
from bot.settings import Settings
from ledger.clock import ManualClock
from tests.conftest import ROOT


async def test_the_handlers_get_exactly_the_services_of_the_registry_and_the_bots_username(
    database_url: str, clock: ManualClock
) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        bot_token="1:T",
        database_url=database_url,
        secret_key="s",
        rules_file=ROOT / "rules.toml",
    )
    services = await build_services(settings, clock)
    try:
        dispatcher = build_dispatcher(services, bot_username="shop_bot")
        try:
            names = {field.name for field in dataclasses.fields(Services)}
            assert set(dispatcher.workflow_data) == names | {"bot_username"}
            assert all(dispatcher.workflow_data[name] is getattr(services, name) for name in names)
        finally:
            await dispatcher.storage.close()
    finally:
        await close_services(services)


def test_nothing_that_runs_or_is_built_is_optional() -> None:
    for cls in (Services, Running):
        hints = typing.get_type_hints(cls)
        optional = [name for name, hint in hints.items() if type(None) in typing.get_args(hint)]
        assert optional == [], f"{cls.__name__}: {optional}"


def test_buttons_and_filters_are_defined_apart_from_the_handlers() -> None:
    """A button's callback data is defined in handlers.keyboards (the member's answer to a
    large redemption, which the outbox queues, in usecases.sales) and a filter in
    handlers.filters: a handler module only uses them."""
    import importlib
    import pkgutil

    from aiogram.filters import BaseFilter
    from aiogram.filters.callback_data import CallbackData

    import handlers

    misplaced = []
    for info in pkgutil.iter_modules(handlers.__path__):
        module = importlib.import_module(f"handlers.{info.name}")
        for name, value in vars(module).items():
            if not isinstance(value, type) or value.__module__ != module.__name__:
                continue
            if issubclass(value, CallbackData) and info.name != "keyboards":
                misplaced.append(f"{module.__name__}.{name}")
            if issubclass(value, BaseFilter) and info.name != "filters":
                misplaced.append(f"{module.__name__}.{name}")
    assert misplaced == []

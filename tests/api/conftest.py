"""The HTTP API served by aiohttp's test server, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from api.app import ApiServices, build_api
from api.keys import ApiKeyService
from api.openapi import openapi_document
from bot.i18n import build_i18n
from ledger.service import LedgerService
from messaging.notifier import Notifier
from messaging.outbox import Outbox
from staff.sales import ConfirmationService

SECRET = "api-test-secret"


@dataclass
class Till:
    """A POS client with a valid key, checking every answer against the OpenAPI document."""

    client: TestClient[Any, Any]
    key: str
    ledger: LedgerService
    keys: ApiKeyService
    outbox: Outbox
    confirmations: ConfirmationService

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: str | None = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.key if key is None else key}", **(headers or {})}
        if key == "":
            headers.pop("Authorization")
        kwargs: dict[str, Any] = {"headers": headers}
        if raw is not None:
            kwargs["data"] = raw
        elif body is not None:
            kwargs["json"] = body
        response = await self.client.request(method, path, **kwargs)
        payload = await response.json()
        check_against_openapi(method, path, response.status, payload)
        return response.status, payload

    async def purchase(self, **body: Any) -> tuple[int, Any]:
        return await self.call("POST", "/api/v1/purchases", body)

    async def refund(self, **body: Any) -> tuple[int, Any]:
        return await self.call("POST", "/api/v1/refunds", body)


@pytest.fixture
async def till(ledger: LedgerService) -> AsyncIterator[Till]:
    keys = ApiKeyService(ledger.engine, ledger.clock, ledger.db)  # one SyncDatabase, as bot.build
    outbox = Outbox(ledger.engine, ledger.clock)
    notifier = Notifier(build_i18n(), ledger, outbox)
    confirmations = ConfirmationService(ledger.engine, ledger.clock)
    services = ApiServices(
        ledger=ledger,
        keys=keys,
        secret_key=SECRET,
        notifier=notifier,
        confirmations=confirmations,
    )
    app = build_api(services)
    _, secret = await keys.create("till-1")
    async with TestClient(TestServer(app)) as client:
        yield Till(client, secret, ledger, keys, outbox, confirmations)
    await keys.close()


# ----------------------------------------------------- checking answers against the document


def _template(path: str, paths: dict[str, Any]) -> str | None:
    parts = path.split("?")[0].strip("/").split("/")
    for template in paths:
        t_parts = template.strip("/").split("/")
        if len(t_parts) == len(parts) and all(
            t == p or (t.startswith("{") and t.endswith("}"))
            for t, p in zip(t_parts, parts, strict=True)
        ):
            return template
    return None


def _resolve(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = document["components"]["schemas"][name]
    return schema


def validate(value: Any, schema: dict[str, Any], document: dict[str, Any], where: str) -> None:
    schema = _resolve(schema, document)
    kind = schema.get("type")
    if kind == "object":
        assert isinstance(value, dict), f"{where}: expected an object, got {value!r}"
        for name in schema.get("required", []):
            assert name in value, f"{where}: required {name!r} missing in {value!r}"
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                validate(value[name], sub, document, f"{where}.{name}")
        if schema.get("additionalProperties") is False:
            extra = set(value) - set(schema.get("properties", {}))
            assert not extra, f"{where}: undocumented {sorted(extra)} in {value!r}"
    elif kind == "integer":
        assert isinstance(value, int) and not isinstance(value, bool), f"{where}: {value!r}"
    elif kind == "string":
        assert isinstance(value, str), f"{where}: expected a string, got {value!r}"
    if "const" in schema:
        assert value == schema["const"], f"{where}: {value!r} != {schema['const']!r}"


def check_against_openapi(method: str, path: str, status: int, payload: Any) -> None:
    """The answer's status is documented for this operation and its body fits the schema."""
    document = openapi_document()
    template = _template(path, document["paths"])
    if template is None:
        assert status in (404, 405), f"{method} {path} is undocumented but answered {status}"
        validate(payload, {"$ref": "#/components/schemas/Error"}, document, "error")
        return
    operation = document["paths"][template].get(method.lower())
    if operation is None:
        assert status == 405
        return
    response = operation["responses"].get(str(status))
    assert response is not None, f"{method} {template}: status {status} is not documented"
    schema = response["content"]["application/json"]["schema"]
    validate(payload, schema, document, f"{method} {template} {status}")

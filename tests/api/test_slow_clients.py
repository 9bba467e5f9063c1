"""Slow and vanishing clients, over raw sockets against the server as `python -m bot` runs it
(api.app.api_runner), with timeouts of half a second."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web

from api.app import ApiServices, api_runner, build_api
from api.keys import ApiKeyService
from ledger.service import LedgerService
from tests.api.conftest import SECRET

TIMEOUT_S = 0.5
# What the server may take beyond the timeout to close: its lingering read after an answer
# (api.app.LINGER_S) and a slow machine.
GRACE_S = 3.5


@dataclass
class Server:
    host: str
    port: int
    key: str

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(self.host, self.port)

    def purchase_head(self, length: int) -> bytes:
        return (
            "POST /api/v1/purchases HTTP/1.1\r\n"
            f"Host: {self.host}\r\n"
            f"Authorization: Bearer {self.key}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n"
        ).encode()


@pytest.fixture
async def server(ledger: LedgerService) -> AsyncIterator[Server]:
    keys = ApiKeyService(ledger.engine, ledger.clock, ledger.db)
    app = build_api(
        ApiServices(ledger=ledger, keys=keys, secret_key=SECRET, body_timeout=TIMEOUT_S)
    )
    _, secret = await keys.create("till-1")
    runner = api_runner(app, header_timeout=TIMEOUT_S)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield Server(host, port, secret)
    await runner.cleanup()
    await keys.close()


async def _until_closed(reader: asyncio.StreamReader, limit: float) -> tuple[float, bytes]:
    """Read until the server closes the connection; how long it took and what came."""
    started, received = time.monotonic(), b""
    try:
        async with asyncio.timeout(limit):
            while chunk := await reader.read(4096):
                received += chunk
    except ConnectionResetError:
        pass
    return time.monotonic() - started, received


async def test_a_client_that_sends_half_its_headers_is_disconnected(server: Server) -> None:
    reader, writer = await server.connect()
    writer.write(server.purchase_head(10)[:40])  # the request line and part of a header
    await writer.drain()
    took, _ = await _until_closed(reader, limit=10)
    writer.close()
    assert took < TIMEOUT_S + GRACE_S, f"held for {took:.1f} s"


async def test_an_idle_connection_is_closed_after_the_header_timeout(server: Server) -> None:
    reader, writer = await server.connect()
    took, received = await _until_closed(reader, limit=10)
    writer.close()
    assert took < TIMEOUT_S + GRACE_S and received == b""


@pytest.mark.slow  # waits for the body timeout
async def test_a_client_that_trickles_its_body_is_disconnected_with_408(server: Server) -> None:
    reader, writer = await server.connect()
    body = b'{"receipt_id": "R-1", "customer": "000000000000", "amount": "10"}'
    writer.write(server.purchase_head(len(body)))
    started = time.monotonic()

    async def trickle() -> None:
        for byte in body:  # a byte every 0.1 s: the whole body would take 6.5 s
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.1)

    sending = asyncio.create_task(trickle())
    _, received = await _until_closed(reader, limit=10)
    took = time.monotonic() - started
    sending.cancel()
    with pytest.raises((asyncio.CancelledError, ConnectionError)):
        await sending
    writer.close()
    assert took < TIMEOUT_S + GRACE_S, f"held for {took:.1f} s"
    assert received.startswith(b"HTTP/1.1 408 "), received[:100]
    assert b'"code": "body_timeout"' in received


async def test_a_client_that_disconnects_mid_body_is_one_info_line(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    _, writer = await server.connect()
    writer.write(server.purchase_head(100) + b'{"receipt_id": "R-1"')
    await writer.drain()
    await asyncio.sleep(0.2)  # the handler is reading the body
    writer.close()
    await writer.wait_closed()
    await asyncio.sleep(0.3)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    lines = [r for r in caplog.records if r.name == "loyalty.api"]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO, lines
    assert lines[0].exc_info is None and "disconnected" in lines[0].getMessage()

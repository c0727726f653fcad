"""The Binance emulator speaks the real wire protocol: paths, control replies, errors, pings."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from emulators.binance import BinanceEmulator, emulator_thread


async def recv_json(ws: object) -> dict[str, object]:
    return orjson.loads(await asyncio.wait_for(ws.recv(), 5))  # type: ignore[attr-defined]


async def test_combined_and_raw_paths() -> None:
    async with BinanceEmulator(rate=500) as emu:
        async with connect(f"{emu.url}/stream?streams=btcusdt@trade/ethusdt@trade") as ws:
            msg = await recv_json(ws)
            assert msg["stream"] in ("btcusdt@trade", "ethusdt@trade")
            assert msg["data"]["e"] == "trade"  # type: ignore[index]
        async with connect(f"{emu.url}/ws/btcusdt@trade") as ws:
            msg = await recv_json(ws)
            assert msg["e"] == "trade" and msg["s"] == "BTCUSDT"


async def test_control_messages_and_error_codes() -> None:
    async with BinanceEmulator(rate=50) as emu:
        async with connect(f"{emu.url}/stream") as ws:
            req = {"method": "SUBSCRIBE", "params": ["btcusdt@aggTrade"], "id": 1}
            await ws.send(orjson.dumps(req).decode())
            assert await recv_json(ws) == {"result": None, "id": 1}
            await ws.send('{"method":"LIST_SUBSCRIPTIONS","id":2}')
            while (reply := await recv_json(ws)).get("id") != 2:
                pass  # data frames of the new subscription interleave
            assert reply == {"result": ["btcusdt@aggTrade"], "id": 2}
            await ws.send('{"method":"SUBSCRIBE","params":["xxxyyy@trade"],"id":3}')
            while "id" not in (reply := await recv_json(ws)):
                pass
            assert reply["code"] == 2 and reply["id"] == 3
            assert "Invalid request" in str(reply["msg"])
            await ws.send('{"method":"FOO","id":4}')
            while "id" not in (reply := await recv_json(ws)):
                pass
            assert reply["code"] == 2 and reply["id"] == 4
        await asyncio.sleep(1.1)  # fresh rate-limit window
        async with connect(f"{emu.url}/stream") as ws:
            await ws.send("{nope")
            reply = await recv_json(ws)
            assert reply["code"] == 3 and str(reply["msg"]).startswith("Invalid JSON")


async def test_more_than_five_control_messages_per_second_disconnects() -> None:
    async with BinanceEmulator(rate=10) as emu, connect(f"{emu.url}/stream") as ws:
        for i in range(7):
            await ws.send(orjson.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}).decode())
        with pytest.raises(ConnectionClosed) as info:
            for _ in range(10):
                await asyncio.wait_for(ws.recv(), 5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1008
        assert emu.stats.rate_limit_disconnects == 1


async def test_unknown_symbol_in_url_is_http_400() -> None:
    async with BinanceEmulator(rate=10) as emu:
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"{emu.url}/stream?streams=nosuchcoin@trade"):
                pass
        assert info.value.response.status_code == 400
        assert b"nosuchcoin" in info.value.response.body


async def test_client_library_answers_server_pings() -> None:
    emu = BinanceEmulator(rate=10, ping_interval=0.1, ping_timeout=0.5)
    async with emu, connect(f"{emu.url}/stream?streams=btcusdt@trade", ping_interval=None) as ws:
        await asyncio.sleep(0.8)  # several ping rounds; no pong => server closes the socket
        assert len(emu.clients) == 1
        assert next(iter(emu.clients)).ws.latency > 0  # a pong came back
        await ws.send('{"method":"LIST_SUBSCRIPTIONS","id":1}')
        while "id" not in (reply := await recv_json(ws)):
            pass
        assert reply["result"] == ["btcusdt@trade"]


def test_runs_in_a_thread_for_sync_callers() -> None:
    import websockets.sync.client

    with emulator_thread(rate=200) as emu:
        with websockets.sync.client.connect(f"{emu.url}/ws/btcusdt@trade") as ws:
            assert orjson.loads(ws.recv(timeout=5))["e"] == "trade"
        emu.server_shutdown()  # callable from another thread

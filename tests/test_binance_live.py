"""The live code path against the emulator: reconnects, overlap rotation, faults, dead letters.

Trade ids on the emulator's market are consecutive per symbol, so "no gap, no duplicate" is
checked exactly: after a proactive rotation or serverShutdown ids stay consecutive; after a drop
or stall frames are lost in between (Binance has no replay) but none is published twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable

import orjson
import pytest
from test_binance_helpers import CollectingPublisher

from emulators.binance import BinanceEmulator
from harness.dead_letters import DeadLetters
from producers.binance.live import BinanceLiveClient, BinanceRequestError, LiveConfig
from producers.binance.service import BinancePipeline, run_live
from producers.run_control import StopAfter

STREAMS = ["btcusdt@trade", "ethusdt@trade"]


class Running:
    def __init__(self, emu: BinanceEmulator, client: BinanceLiveClient) -> None:
        self.emu, self.client = emu, client
        self.pub = CollectingPublisher()
        self.dead = DeadLetters("binance-producer")
        self.pipe = BinancePipeline(self.pub, self.dead)
        self.stop = StopAfter()

    def trade_ids(self) -> dict[bytes, list[int]]:
        out: dict[bytes, list[int]] = {}
        for env in self.pub.messages:
            if env.topic == "binance.trade":
                out.setdefault(env.key or b"", []).append(orjson.loads(env.value)["t"])
        return out

    async def until(self, cond: Callable[[], bool], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, "condition not reached in time"
            await asyncio.sleep(0.02)

    async def published_more(self, n: int) -> None:
        target = self.pipe.counters.published + n
        await self.until(lambda: self.pipe.counters.published >= target)


@contextlib.asynccontextmanager
async def running(
    streams: list[str] = STREAMS, emu_kwargs: dict[str, object] | None = None, **cfg: object
) -> AsyncIterator[Running]:
    async with BinanceEmulator(rate=400, **(emu_kwargs or {})) as emu:  # type: ignore[arg-type]
        config = LiveConfig(endpoint=emu.url, backoff_initial_s=0.05, **cfg)  # type: ignore[arg-type]
        client = BinanceLiveClient(streams, config)
        r = Running(emu, client)
        task = asyncio.create_task(run_live(r.pipe, client, r.stop))
        try:
            yield r
        finally:
            r.stop.event.set()
            await asyncio.wait_for(task, 10)


def assert_no_duplicates(ids: dict[bytes, list[int]]) -> None:
    for sym, seq in ids.items():
        assert all(b > a for a, b in itertools.pairwise(seq)), f"{sym!r} out of order/dup"


def assert_consecutive(ids: dict[bytes, list[int]]) -> None:
    for sym, seq in ids.items():
        assert seq == list(range(seq[0], seq[0] + len(seq))), f"{sym!r} has a gap or duplicate"


async def test_rotation_before_max_age_has_no_gap_and_no_duplicate() -> None:
    async with running(max_connection_age_s=0.6) as r:
        await r.until(lambda: r.client.stats.rotations >= 3)
        await r.published_more(50)
    assert r.client.stats.drops == 0
    assert r.emu.stats.connections >= 4
    assert_consecutive(r.trade_ids())


async def test_server_shutdown_reconnects_without_gap() -> None:
    async with running(emu_kwargs={"shutdown_grace_s": 1.5}) as r:
        await r.published_more(100)
        r.emu.server_shutdown()
        await r.until(lambda: r.client.stats.server_shutdowns == 1)
        await r.until(lambda: r.emu.stats.open_connections == 1 and r.emu.stats.connections == 2)
        await r.published_more(100)
    assert r.pipe.counters.server_shutdowns == 1
    assert_consecutive(r.trade_ids())


async def test_reconnect_after_drop_without_duplicates() -> None:
    async with running() as r:
        await r.published_more(100)
        r.emu.drop_connections()
        await r.until(lambda: r.client.stats.drops == 1)
        await r.published_more(200)
    assert r.emu.stats.connections == 2
    assert_no_duplicates(r.trade_ids())


async def test_reconnect_after_stall_without_duplicates() -> None:
    async with running(stall_timeout_s=0.5) as r:
        await r.published_more(100)
        r.emu.stall()
        await r.until(lambda: r.client.stats.stalls == 1)
        await r.published_more(200)
    assert r.emu.stats.connections == 2
    assert_no_duplicates(r.trade_ids())


async def test_bad_frames_dead_lettered_while_good_ones_flow() -> None:
    kinds = ["malformed_json", "invalid_utf8", "missing_field", "unknown_event", "bad_value"]
    async with running() as r:
        await r.published_more(50)
        for kind in [*kinds, "oversize"]:
            r.emu.send_malformed(kind)
        await r.until(lambda: r.dead.total == len(kinds) + 1)
        await r.published_more(100)
    assert r.client.stats.drops == 0  # invalid UTF-8 did not kill the connection
    assert set(r.dead.counts) == {*kinds, "oversize"}
    assert all(v == 1 for v in r.dead.counts.values())
    assert_consecutive(r.trade_ids())


async def test_runtime_subscribe_and_list() -> None:
    async with running(streams=["btcusdt@trade"]) as r:
        await r.published_more(10)
        await r.client.subscribe(["ethusdt@bookTicker"])
        assert sorted(await r.client.list_subscriptions()) == [
            "btcusdt@trade",
            "ethusdt@bookTicker",
        ]
        await r.until(lambda: any(e.topic == "binance.bookTicker" for e in r.pub.messages))
        with pytest.raises(BinanceRequestError, match="code 2"):
            await r.client.subscribe(["nosuchcoin@trade"])
        await r.client.unsubscribe(["ethusdt@bookTicker"])
        assert await r.client.list_subscriptions() == ["btcusdt@trade"]


async def test_unknown_symbol_is_a_fatal_request_error() -> None:
    async with BinanceEmulator(rate=10) as emu:
        client = BinanceLiveClient(["nosuchcoin@trade"], LiveConfig(endpoint=emu.url))
        pipe = BinancePipeline(CollectingPublisher(), DeadLetters("t"))
        with pytest.raises(BinanceRequestError, match="HTTP 400"):
            await asyncio.wait_for(run_live(pipe, client, StopAfter()), 10)


async def test_streams_are_sharded_across_connections() -> None:
    streams = ["btcusdt@trade", "ethusdt@trade", "btcusdt@bookTicker"]
    async with running(streams=streams, max_streams_per_connection=2) as r:
        await r.until(lambda: r.emu.stats.open_connections == 2)
        await r.until(
            lambda: {e.topic for e in r.pub.messages} >= {"binance.trade", "binance.bookTicker"}
        )
    assert len(r.client.shards) == 2

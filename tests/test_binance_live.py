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
from test_binance_helpers import CollectingPublisher, binance_producer

from core.dead_letters import DeadLetters
from emulators.binance import BinanceEmulator
from producers.binance.live import BinanceLiveClient, BinanceRequestError, LiveConfig
from producers.binance.schema import BinanceDecoder
from producers.runtime.producer import Producer, drive_async
from producers.runtime.stop import StopAfter

STREAMS = ["btcusdt@trade", "ethusdt@trade"]


class Running:
    def __init__(self, emu: BinanceEmulator, client: BinanceLiveClient) -> None:
        self.emu, self.client = emu, client
        self.pub = CollectingPublisher()
        self.dead = DeadLetters("binance-producer")
        self.decoder = BinanceDecoder()
        self.pipe = Producer(self.pub, self.decoder, self.dead)
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
        target = self.pipe.published + n
        await self.until(lambda: self.pipe.published >= target)


@contextlib.asynccontextmanager
async def running(
    streams: list[str] = STREAMS,
    emu_kwargs: dict[str, object] | None = None,
    before_start: Callable[[BinanceEmulator], None] | None = None,
    **cfg: object,
) -> AsyncIterator[Running]:
    kwargs: dict[str, object] = {"rate": 400, **(emu_kwargs or {})}
    async with BinanceEmulator(**kwargs) as emu:  # type: ignore[arg-type]
        if before_start is not None:
            before_start(emu)
            await asyncio.sleep(0)  # faults are scheduled on the emulator's loop
        settings: dict[str, object] = {"backoff_initial_s": 0.05, **cfg}
        config = LiveConfig(endpoint=emu.url, **settings)  # type: ignore[arg-type]
        client = BinanceLiveClient(streams, config)
        r = Running(emu, client)
        task = asyncio.create_task(drive_async(r.pipe, client.frames(), r.stop))
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


@pytest.mark.slow
async def test_rotation_before_max_age_has_no_gap_and_no_duplicate() -> None:
    async with running(max_connection_age_s=0.6) as r:
        await r.until(lambda: r.client.stats.rotations >= 3, timeout=45.0)
        await r.published_more(50)
    assert r.client.stats.drops == 0
    # each switch came when the old connection had caught up on every stream, not at the 10 s
    # overlap timeout (a race between the two sockets once made a slow stream miss it)
    assert r.client.stats.overlap_timeouts == 0
    assert r.emu.stats.connections >= 4
    assert_consecutive(r.trade_ids())


@pytest.mark.slow
async def test_server_shutdown_reconnects_without_gap() -> None:
    async with running(emu_kwargs={"shutdown_grace_s": 1.5}) as r:
        await r.published_more(100)
        r.emu.server_shutdown()
        await r.until(lambda: r.client.stats.server_shutdowns == 1)
        await r.until(lambda: r.emu.stats.open_connections == 1 and r.emu.stats.connections == 2)
        await r.published_more(100)
    assert r.decoder.server_shutdowns == 1
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
        pipe = binance_producer(CollectingPublisher(), DeadLetters("t"))
        with pytest.raises(BinanceRequestError, match="HTTP 400"):
            await asyncio.wait_for(drive_async(pipe, client.frames(), StopAfter()), 10)


async def test_streams_are_sharded_across_connections() -> None:
    streams = ["btcusdt@trade", "ethusdt@trade", "btcusdt@bookTicker"]
    async with running(streams=streams, max_streams_per_connection=2) as r:
        await r.until(lambda: r.emu.stats.open_connections == 2)
        await r.until(
            lambda: {e.topic for e in r.pub.messages} >= {"binance.trade", "binance.bookTicker"}
        )
    assert len(r.client.shards) == 2


def gaps(times: list[float], apart: int = 1) -> list[float]:
    """Seconds between handshake ``i`` and handshake ``i + apart``."""
    return [b - a for a, b in zip(times, times[apart:], strict=False)]


@pytest.mark.slow
async def test_http_429_on_connect_waits_the_retry_after() -> None:
    refuse = lambda emu: emu.refuse_handshakes(2, status=429, retry_after_s=1)  # noqa: E731
    async with running(before_start=refuse, backoff_initial_s=0.01) as r:
        await r.published_more(10)
    assert r.emu.stats.rejected_handshakes == 2
    assert r.client.stats.connect_failures == 2
    # full jitter alone would retry within 0.01 s; the exchange said one second
    assert all(gap >= 0.99 for gap in gaps(r.emu.stats.handshake_times[:3]))


async def test_ip_ban_418_is_retried_not_fatal() -> None:
    refuse = lambda emu: emu.refuse_handshakes(1, status=418, retry_after_s=1)  # noqa: E731
    async with running(before_start=refuse, backoff_initial_s=0.01) as r:
        await r.published_more(10)
    assert r.emu.stats.rejected_handshakes == 1
    assert gaps(r.emu.stats.handshake_times[:2])[0] >= 0.99


@pytest.mark.slow
async def test_connection_attempts_are_capped_per_window() -> None:
    """Binance bans an IP past 300 attempts in 5 minutes: the cap holds even when every attempt
    fails at once (here 2 per second, refusals without Retry-After, near-zero backoff)."""
    refuse = lambda emu: emu.refuse_handshakes(4, status=503)  # noqa: E731
    async with running(
        before_start=refuse, backoff_initial_s=0.001, attempts_per_window=2, attempt_window_s=1.0
    ) as r:
        await r.published_more(10)
    times = r.emu.stats.handshake_times
    assert len(times) == 5 and r.client.stats.connect_failures == 4
    assert max(gaps(times[:2])) < 0.5  # two attempts go at once ...
    assert all(gap >= 0.99 for gap in gaps(times, apart=2))  # ... never a third in one second


async def test_streams_beyond_the_url_are_subscribed_in_batches() -> None:
    """A combined-stream URL holds ~8,000 characters; the rest is SUBSCRIBEd after connecting,
    200 streams per request, paced under the 5 control messages/s limit."""
    symbols = tuple(f"c{i:03d}usdt" for i in range(150))
    kinds = ("trade", "aggTrade", "bookTicker", "ticker", "kline_1m")
    streams = [f"{sym}@{kind}" for sym in symbols for kind in kinds]
    async with running(streams=streams, emu_kwargs={"symbols": symbols, "rate": 50}) as r:
        await r.published_more(5)
        listed = await r.client.list_subscriptions()
    in_url = r.emu.stats.paths[0].split("streams=")[1].split("/")
    assert len(r.emu.stats.paths[0]) <= 8000 and 200 < len(streams) - len(in_url) <= 400
    assert sorted(listed) == sorted(streams)
    assert r.emu.stats.rate_limit_disconnects == 0

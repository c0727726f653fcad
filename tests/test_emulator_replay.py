"""The emulator replays a recording as it happened: held until a client subscribes, timestamps
rebased to now with their gaps kept, at a speed factor or flat out, once unless asked to loop;
its REST depth answers follow the replayed book."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path

import orjson
from websockets.asyncio.client import connect

from core.recording import RecordingWriter
from emulators.binance import BinanceEmulator

OLD_MS = 1_700_000_000_000  # November 2023


def trade(i: int) -> str:
    data = {"e": "trade", "E": OLD_MS + 100 * i, "s": "BTCUSDT", "t": 1000 + i,
            "p": "37000.00000000", "q": "0.01000000", "T": OLD_MS + 100 * i - 1, "m": True,
            "M": True}  # fmt: skip
    return orjson.dumps({"stream": "btcusdt@trade", "data": data}).decode()


def diff(first: int, final: int, e_ms: int, bids: list[list[str]]) -> str:
    data = {"e": "depthUpdate", "E": e_ms, "s": "BTCUSDT", "U": first, "u": final, "b": bids,
            "a": []}  # fmt: skip
    return orjson.dumps({"stream": "btcusdt@depth@100ms", "data": data}).decode()


def recording(path: Path) -> Path:
    with RecordingWriter(path) as w:
        w.write(diff(95, 100, OLD_MS - 50, [["36999.00000000", "5.00000000"]]), OLD_MS * 10**6)
        snapshot = {"lastUpdateId": 98, "bids": [["36999.00000000", "1.00000000"],
                                                  ["36998.00000000", "2.00000000"]],
                    "asks": [["37001.00000000", "3.00000000"]]}  # fmt: skip
        w.write(orjson.dumps({"stream": "btcusdt@depthSnapshot", "data": snapshot}).decode(),
                OLD_MS * 10**6 + 10**6)
        for i in range(20):
            w.write(trade(i), (OLD_MS + 100 * i) * 10**6 + 2 * 10**6)
        w.write(diff(101, 104, OLD_MS + 1950, [["36998.00000000", "0.00000000"]]),
                (OLD_MS + 1950) * 10**6)
    return path


Received = list[tuple[float, dict]]


async def collect(url: str, stream: str, count: int, timeout: float = 10) -> Received:
    got: Received = []
    # a client that stops reading a flat-out replay pauses its socket: its close handshake
    # waits behind the frames in flight, so do not wait the default 10 s for it
    async with connect(f"{url}/stream?streams={stream}", close_timeout=0.5) as ws:
        while len(got) < count:
            raw = await asyncio.wait_for(ws.recv(), timeout)
            got.append((time.monotonic(), orjson.loads(raw)["data"]))
    return got


async def test_replay_is_held_rebased_and_played_once(tmp_path: Path) -> None:
    rec = recording(tmp_path / "rec.jsonl.gz")
    async with BinanceEmulator(recording=rec, symbols=("btcusdt",), speed=4.0) as emu:
        await asyncio.sleep(0.5)  # nobody subscribed yet: nothing may be lost meanwhile
        started = time.monotonic()
        got = await collect(emu.url, "btcusdt@trade", 20)
        assert [d["t"] for _, d in got] == list(range(1000, 1020))  # from the first, in order
        now_ms = time.time_ns() // 1_000_000
        offset = emu.rebase_offset_ms
        assert offset % 1000 == 0 and abs(got[0][1]["E"] - now_ms) < 3_000
        assert all(d["E"] == OLD_MS + 100 * i + offset for i, (_, d) in enumerate(got))
        assert all(d["T"] == d["E"] - 1 for _, d in got)  # every time field moved alike
        span = got[-1][0] - started
        assert 0.3 < span < 2.0  # 1.9 s recorded at 4x
        for _ in range(100):
            if emu.replay_done:
                break
            await asyncio.sleep(0.05)
        assert emu.replay_done and emu.stats.frames_sent == 20  # once: no loop

        base = emu.url.replace("ws://", "http://")
        body = await asyncio.to_thread(
            lambda: json.loads(urllib.request.urlopen(f"{base}/api/v3/depth?symbol=BTCUSDT")
                               .read())
        )
        # the recorded snapshot (98), the diff 95..100 re-applied over it, then 101..104
        assert body == {"lastUpdateId": 104, "bids": [["36999.00000000", "5.00000000"]],
                        "asks": [["37001.00000000", "3.00000000"]]}  # fmt: skip


async def test_replay_flat_out_and_looped(tmp_path: Path) -> None:
    rec = recording(tmp_path / "rec.jsonl.gz")
    async with BinanceEmulator(recording=rec, symbols=("btcusdt",), speed=0, loop=True) as emu:
        got = await collect(emu.url, "btcusdt@trade", 45)
        assert [d["t"] for _, d in got] == [1000 + i % 20 for i in range(45)]
        assert got[-1][0] - got[0][0] < 1.0
        times = [d["E"] for _, d in got]
        assert times == sorted(times)  # each lap is rebased after the previous one

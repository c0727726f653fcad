"""The Binance source for the producer runtime: its topics, its settings, its three factories.

``harness produce binance`` publishes Binance Spot market data from the live combined-stream
websocket (sharded, reconnecting; with diff depth streams also the REST snapshots that
synchronise them), a recording, or the synthetic market. Messages: see ``schema.BinanceDecoder``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from core.dead_letters import DeadLetters
from core.errors import UserError
from core.recording import Frame
from core.settings import Setting, parse_csv, positive_float, positive_int
from producers.binance.schema import DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_SKEW_MS, BinanceDecoder
from producers.binance.topics import (
    ALL_TOPICS,
    STREAM_ENDPOINT,
    is_diff_depth_stream,
    stream_names,
)
from producers.runtime.source import Config, Source
from producers.runtime.stop import StopAfter

SETTINGS: tuple[Setting, ...] = (
    Setting("symbols", ["btcusdt"], "comma-separated symbols", parse=parse_csv),
    Setting(
        "streams",
        ["trade", "aggTrade", "kline_1m", "ticker", "bookTicker"],
        "comma-separated stream types (trade, aggTrade, kline_<interval>, ticker, miniTicker, "
        "bookTicker, depth[@100ms|@1000ms], depth<5|10|20>[@100ms|@1000ms])",
        parse=parse_csv,
    ),
    Setting("endpoint", STREAM_ENDPOINT, "websocket base URL (an emulator for offline use)"),
    Setting("rest_endpoint", "", "live depth: REST base for /api/v3/depth snapshots (default: "
            "api.binance.com for Binance's streams, else the websocket's host)"),
    Setting("depth_snapshot_limit", 1000, "live depth: levels per side in a REST snapshot",
            parse=int),
    Setting("depth_snapshot_every", 60.0, "live depth: seconds between fresh snapshots per "
            "symbol, so a consumer that lost messages resynchronises (0 = only on gaps)",
            parse=float),
    Setting("max_connection_age", 23.5 * 3600, "live: rotate connections after s",
            parse=positive_float),
    Setting("stall_timeout", 60.0, "live: reconnect after s without a frame",
            parse=positive_float),
    Setting("max_skew_ms", DEFAULT_MAX_SKEW_MS, "reject E this far from receive time",
            parse=positive_int),
)


def check(cfg: Config) -> None:
    stream_names(cfg["symbols"], cfg["streams"])  # ValueError names the bad symbol or stream


def decoder(cfg: Config, dead_letters: DeadLetters) -> BinanceDecoder:
    return BinanceDecoder(DEFAULT_MAX_FRAME_BYTES, cfg["max_skew_ms"])


def synthetic(cfg: Config) -> Iterator[Frame]:
    from producers.binance.synthetic import SyntheticMarket

    market = SyntheticMarket(cfg["symbols"], cfg["streams"], seed=cfg["seed"],
                             start_ms=cfg["start_ms"], rate=cfg["rate"] or None)
    return market.frames()


class BinanceLive:
    """The websocket client, wrapped in the depth synchronisation when diff streams are on;
    an exchange refusing a subscription (bad symbol or stream) is the user's to fix."""

    def __init__(self, cfg: Config) -> None:
        from producers.binance.depth_sync import DepthSync, RestSnapshots, rest_endpoint_for
        from producers.binance.live import BinanceLiveClient, LiveConfig

        streams = stream_names(cfg["symbols"], cfg["streams"])
        client = BinanceLiveClient(streams, LiveConfig(
            endpoint=cfg["endpoint"], max_connection_age_s=cfg["max_connection_age"],
            stall_timeout_s=cfg["stall_timeout"]))
        self.source: BinanceLiveClient | DepthSync = client
        if any(is_diff_depth_stream(s) for s in streams):
            rest = cfg["rest_endpoint"] or rest_endpoint_for(cfg["endpoint"])
            self.source = DepthSync(client, RestSnapshots(rest, cfg["depth_snapshot_limit"]),
                                    refresh_s=cfg["depth_snapshot_every"],
                                    max_skew_ms=cfg["max_skew_ms"])

    async def frames(self) -> AsyncIterator[Frame]:
        from producers.binance.live import BinanceRequestError

        try:
            async for frame in self.source.frames():
                yield frame
        except BinanceRequestError as exc:
            raise UserError(f"exchange refused the subscription: {exc}") from None

    def counters(self) -> dict[str, object]:
        return self.source.counters()


def live(cfg: Config, stop: StopAfter) -> BinanceLive:
    return BinanceLive(cfg)


SOURCE = Source(
    name="binance",
    help="Binance Spot market data: live websocket, replay or synthetic",
    topics=ALL_TOPICS,
    transport="zmq+tcp://127.0.0.1:5555",
    settings=SETTINGS,
    decoder=decoder,
    synthetic=synthetic,
    live=live,
    rate=0.0,
    rate_help="synthetic trades/s (the other streams in proportion), paced in real time; 0 = "
              "as fast as possible",
    check=check,
)

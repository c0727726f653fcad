"""What a pipeline run did, computed from what the stages wrote (HDF5) and reported (JSON).

Loss is exact: every producer reports how many messages it published per topic; every processor
reports what it received, what it saw twice and what it could not decode. Latency comes from the
``trades`` table, which carries each trade's publish and receive time (ns, one host clock).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from harness.pipeline import PipelineResult

MARKET_PREFIX = "binance."
TWEET_PREFIX = "twitter."
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def _published(stages: dict[str, dict[str, Any]], producer: str, prefix: str) -> int:
    by_topic = stages.get(producer, {}).get("published_by_topic", {})
    return sum(int(n) for topic, n in by_topic.items() if topic.startswith(prefix))


def _lost(published: int, processor: dict[str, Any]) -> int | None:
    if not processor:
        return None
    delivered = int(processor.get("received", 0)) - int(processor.get("duplicates", 0))
    return published - delivered


def latency_percentiles(path: Path) -> dict[str, float]:
    """Transport hop (publish -> processor receive) in ms from the trades table."""
    from sinks.hdf5_reader import read_table

    if not path.exists():
        return {}
    try:
        trades = read_table(path, "trades")
    except Exception:
        return {}
    if len(trades) == 0:
        return {}
    hop = (trades["receive_time_ns"] - trades["publish_time_ns"]) / 1e6
    values = np.percentile(hop, PERCENTILES)
    out = {f"p{p:g}": float(v) for p, v in zip(PERCENTILES, values, strict=True)}
    out["max"] = float(hop.max())
    return out


def summarize(result: PipelineResult) -> dict[str, Any]:
    stages = result.stages
    candles, sentiment = stages.get("candles", {}), stages.get("sentiment", {})
    market_published = _published(stages, "binance", MARKET_PREFIX)
    tweets_published = _published(stages, "twitter", TWEET_PREFIX)
    rows = {**candles.get("rows", {}), **{f"sentiment:{k}": v for k, v in
                                         sentiment.get("rows", {}).items()}}
    return {
        "transport": result.transport,
        "broker": result.broker,
        "output": str(result.output),
        "seconds": round(result.seconds, 1),
        "market_published": market_published,
        "market_received": candles.get("received"),
        "market_lost": _lost(market_published, candles),
        "market_duplicates": candles.get("duplicates"),
        "tweets_published": tweets_published,
        "tweets_received": sentiment.get("received"),
        "tweets_lost": _lost(tweets_published, sentiment),
        "dead_letters": sum(candles.get("dead_letters", {}).values())
        + sum(sentiment.get("dead_letters", {}).values()),
        "late": rows.get("late_trades", 0) + rows.get("late_tickers", 0)
        + rows.get("sentiment:late_tweets", 0),
        "rows": rows,
        "latency_ms": latency_percentiles(result.output / "market.h5"),
        "sink_hop_ms": candles.get("sink_hop_ms", {}),
        "failed": result.failed,
    }


def render_table(summaries: list[dict[str, Any]]) -> str:
    """A plain side-by-side table (one column per transport) for terminals and the README."""
    lines = [
        ("", [s["transport"] for s in summaries]),
        ("broker", [_short_broker(s.get("broker", "")) for s in summaries]),
        ("market msgs published", [s["market_published"] for s in summaries]),
        ("market msgs received", [s["market_received"] for s in summaries]),
        ("market lost (exact)", [s["market_lost"] for s in summaries]),
        ("market duplicates", [s["market_duplicates"] for s in summaries]),
        ("tweets published", [s["tweets_published"] for s in summaries]),
        ("tweets lost (exact)", [s["tweets_lost"] for s in summaries]),
        ("candles_1s rows", [s["rows"].get("candles_1s", 0) for s in summaries]),
        ("candles_1m rows", [s["rows"].get("candles_1m", 0) for s in summaries]),
        ("trades rows", [s["rows"].get("trades", 0) for s in summaries]),
        ("tweets rows", [s["rows"].get("sentiment:tweets", 0) for s in summaries]),
        ("late events", [s["late"] for s in summaries]),
        ("dead letters", [s["dead_letters"] for s in summaries]),
    ]
    for p in ("p50", "p99", "p99.9", "max"):
        lines.append(
            (f"publish->processor {p} ms",
             [_fmt_ms(s["latency_ms"].get(p)) for s in summaries])
        )
    for p in ("p50", "p99", "max"):
        lines.append(
            (f"processor->HDF5 {p} ms",
             [_fmt_ms(s["sink_hop_ms"].get(p)) for s in summaries])
        )
    lines.append(("wall seconds", [s["seconds"] for s in summaries]))
    width = max(len(label) for label, _ in lines)
    cols = [max(len(str(v)) for v in col) for col in zip(*(vals for _, vals in lines), strict=True)]
    out = []
    for label, values in lines:
        cells = "  ".join(str(v).rjust(w) for v, w in zip(values, cols, strict=True))
        out.append(f"{label.ljust(width)}  {cells}")
    return "\n".join(out)


def _short_broker(identity: str) -> str:
    """"Apache Kafka 4.4.0 (embedded, ...)" -> "Apache Kafka 4.4.0"; ZeroMQ has none: "-"."""
    return identity.split(" (")[0] if identity else "-"


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"

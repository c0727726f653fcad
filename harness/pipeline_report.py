"""What a pipeline run did, computed from what the stages wrote (HDF5) and reported (JSON).

Loss is exact: every producer reports how many messages it published per topic; every processor
reports what it received, what it saw twice and what it could not decode. Latency comes from the
``trades`` table, which carries each trade's publish and receive time (ns, one host clock).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.text_table import TERMINAL_WIDTH, render
from harness.verdict import percentile_interval

if TYPE_CHECKING:
    from harness.pipeline import PipelineResult

MARKET_PREFIX = "binance."
TWEET_PREFIX = "twitter."
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def _published(stages: dict[str, dict[str, Any]], producer: str, prefix: str) -> int:
    by_topic = stages.get(producer, {}).get("published_by_topic", {})
    return sum(int(n) for topic, n in by_topic.items() if topic.startswith(prefix))


def _producer_dead_letters(producer: dict[str, Any]) -> int:
    """Frames a producer refused (Binance counts them as ``rejected``, Twitter as
    ``dead_letters``): they never reached a transport, so no processor can count them."""
    return int(producer.get("dead_letters", producer.get("rejected", 0)))


def _lost(published: int, processor: dict[str, Any]) -> int | None:
    if not processor:
        return None
    delivered = int(processor.get("received", 0)) - int(processor.get("duplicates", 0))
    return published - delivered


def latency_percentiles(path: Path) -> dict[str, Any]:
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
    out: dict[str, Any] = {f"p{p:g}": float(v) for p, v in zip(PERCENTILES, values, strict=True)}
    out["max"] = float(hop.max())
    # what the verdict needs to tell a difference from noise: the samples behind each
    # percentile and its 95 % confidence interval
    out["count"] = len(hop)
    out["ci"] = {f"p{p:g}": [float(v) for v in np.percentile(hop, percentile_interval(p, len(hop)))]
                 for p in PERCENTILES}
    return out


def summarize(result: PipelineResult) -> dict[str, Any]:
    stages = result.stages
    candles, sentiment = stages.get("candles", {}), stages.get("sentiment", {})
    market_published = _published(stages, "binance", MARKET_PREFIX)
    tweets_published = _published(stages, "twitter", TWEET_PREFIX)
    rows = {**candles.get("rows", {}), **{f"sentiment:{k}": v for k, v in
                                         sentiment.get("rows", {}).items()}}
    producer_dead = _producer_dead_letters(stages.get("binance", {})) + _producer_dead_letters(
        stages.get("twitter", {})
    )
    processor_dead = sum(candles.get("dead_letters", {}).values()) + sum(
        sentiment.get("dead_letters", {}).values()
    )
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
        "dead_letters": producer_dead + processor_dead,
        "producer_dead_letters": producer_dead,
        "stopped_by": {
            name: stages[name].get("stopped_by", "") for name in ("candles", "sentiment")
            if stages.get(name)
        },
        "late": rows.get("late_trades", 0) + rows.get("late_tickers", 0)
        + rows.get("sentiment:late_tweets", 0),
        "rows": rows,
        "latency_ms": latency_percentiles(result.output / "market.h5"),
        "sink_hop_ms": candles.get("sink_hop_ms", {}),
        # target vs achieved msg/s per producer: a missed target means a busy machine
        "pace": {name: stages[name]["pace"] for name in ("binance", "twitter")
                 if isinstance(stages.get(name, {}).get("pace"), dict)},
        "failed": result.failed,
    }


def render_table(summaries: list[dict[str, Any]], width: int | None = TERMINAL_WIDTH) -> str:
    """A plain side-by-side table (one column per transport) for terminals and the README;
    ``width=None`` never splits it (report files)."""
    lines = [
        ("broker", [_short_broker(s.get("broker", "")) for s in summaries]),
        ("market msgs published", [s["market_published"] for s in summaries]),
        ("market msgs received", [s["market_received"] for s in summaries]),
        ("market lost (exact)", [s["market_lost"] for s in summaries]),
        ("market duplicates", [s["market_duplicates"] for s in summaries]),
        ("binance msg/s: sent / target", [_pace(s, "binance") for s in summaries]),
        ("tweets published", [s["tweets_published"] for s in summaries]),
        ("tweets lost (exact)", [s["tweets_lost"] for s in summaries]),
        ("candles_1s rows", [s["rows"].get("candles_1s", 0) for s in summaries]),
        ("candles_1m rows", [s["rows"].get("candles_1m", 0) for s in summaries]),
        ("trades rows", [s["rows"].get("trades", 0) for s in summaries]),
        ("tweets rows", [s["rows"].get("sentiment:tweets", 0) for s in summaries]),
        *(
            [("depth_1s rows", [s["rows"].get("depth_1s", 0) for s in summaries])]
            if any(s["rows"].get("depth_1s") for s in summaries) else []
        ),
        ("late events", [s["late"] for s in summaries]),
        ("dead letters", [s["dead_letters"] for s in summaries]),
        ("  of them at producers", [s.get("producer_dead_letters", 0) for s in summaries]),
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
    return render(["", *(s["transport"] for s in summaries)],
                  [[label, *("-" if v is None else v for v in values)] for label, values in lines],
                  width=width)


def _short_broker(identity: str) -> str:
    """"Apache Kafka 4.4.0 (embedded, ...)" -> "Apache Kafka 4.4.0"; ZeroMQ has none: "-"."""
    return identity.split(" (")[0] if identity else "-"


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _pace(summary: dict[str, Any], producer: str) -> str:
    pace = summary.get("pace", {}).get(producer, {})
    achieved, target = pace.get("achieved_rate"), pace.get("target_rate")
    if achieved is None:
        return "-"
    return f"{achieved:,.0f} / {target:,.0f}" if target else f"{achieved:,.0f} / max"

"""``harness produce twitter``: tweets from the API, a recording or the generator, published.

    harness produce twitter --source live --mode search --interval 10   (TWITTER_BEARER_TOKEN)
    harness produce twitter --source live --api-url http://127.0.0.1:8089   (the emulator)
    harness produce twitter --source live --record tweets.jsonl.gz
    harness produce twitter --source replay --recording tweets.jsonl.gz --speed max
    harness produce twitter --source synthetic --rate 50 --seed 7 --max-messages 1000

``--record`` writes the raw API bodies (search pages or stream lines) with their receive times;
``--source replay`` feeds them through the same validation and publishing code, so a replay
publishes byte-identical values, keys, event times and headers.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.dead_letters import DeadLetters, JsonlDeadLetterStore
from core.errors import UserError
from core.heartbeat import Heartbeat
from core.output_paths import expand_output
from core.recording import RecordingWriter, paced, read_recording
from core.settings import (
    Setting,
    add_settings,
    describe,
    folder_path,
    non_negative_float,
    non_negative_int,
    parse_csv,
    parse_speed,
    positive_float,
    positive_int,
    resolve,
)
from producers.run_control import (
    PaceTracker,
    ProgressReporter,
    StopAfter,
    publishing,
    write_summary,
)
from producers.twitter.schema import Frame
from producers.twitter.service import SOURCE_NAME, TOPIC, TweetPipeline, run
from producers.twitter.synthetic import (
    DEFAULT_TWEET_FIELDS,
    DEFAULT_USER_FIELDS,
    TweetGenerator,
    synthetic_frames,
)
from transports import open_transport
from transports.base import new_producer_id

log = logging.getLogger("producers.twitter")






SETTINGS: tuple[Setting, ...] = (
    Setting("transport", "zmq+tcp://127.0.0.1:5556", "transport URL to publish to"),
    Setting("source", "live", "where tweets come from", choices=("live", "replay", "synthetic")),
    Setting("mode", "search", "live API: recent-search polling or filtered stream",
            choices=("search", "stream")),
    Setting("query", "($BTC OR $ETH OR bitcoin OR ethereum) -is:retweet lang:en",
            "search query / stream rule"),
    Setting("interval", 10.0, "seconds between recent-search polls", positive_float),
    Setting("api_url", "https://api.twitter.com", "API base URL (the emulator for offline use)"),
    Setting("bearer_token", None, "API v2 bearer token", secret=True, env="TWITTER_BEARER_TOKEN"),
    Setting("tweet_fields", DEFAULT_TWEET_FIELDS, "tweet.fields to request (comma-separated)",
            parse_csv),
    Setting("user_fields", DEFAULT_USER_FIELDS,
            "user.fields for the author expansion ('' for no author info)", parse_csv),
    Setting("max_results", 100, "tweets per search page (10..100)", positive_int),
    Setting("first_poll_pages", 1, "pages the first poll reads (later polls read all new)",
            positive_int),
    Setting("recording", None, "recording to replay (--source replay)"),
    Setting("record", None, "write the raw API bodies received to this .jsonl.gz"),
    Setting("speed", 1.0, "replay pace: 1 = as recorded, N = N times faster, 0/max = flat out",
            parse_speed),
    Setting("rate", 5.0, "synthetic tweets per second (0 = flat out)", non_negative_float),
    Setting("seed", 0, "synthetic generator seed", int),
    Setting("start_ms", 0, "synthetic created_at of the first tweet, ms (0 = now)",
            non_negative_int),
    Setting("duration", 0.0, "stop after this many seconds (0 = no limit)", non_negative_float),
    Setting("max_messages", 0, "stop after publishing this many tweets (0 = no limit)",
            non_negative_int),
    Setting("topic", TOPIC, "topic to publish to"),
    Setting("producer_id", "", "producer id in envelopes (default: host-pid-random)"),
    Setting("output_dir", "output", "where dead letters are written ({transport} becomes the "
            "transport's folder name: kafka, zmq, ...)", folder_path),
    Setting("progress_every", 5.0, "seconds between progress lines", positive_float),
    Setting("summary_json", None, "write the final counts (per topic) as JSON to this path"),
    Setting("heartbeat", None, "touch this file every few seconds while running (checked by "
            "`harness health FILE`, the compose healthcheck)"),
)


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "twitter", help="tweets: live API (search/stream), replay or synthetic",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_settings(parser, SETTINGS)
    parser.set_defaults(func=main)


def _check_recording(path_text: str | None) -> Path:
    if not path_text:
        raise UserError("--source replay needs --recording FILE")
    path = Path(path_text)
    if not path.is_file():
        raise UserError(f"recording {path} does not exist or is not a file")
    try:
        with gzip.open(path, "rb") as fh:
            fh.read(1)
    except (OSError, EOFError, zlib.error) as exc:
        raise UserError(f"recording {path} is unreadable ({exc})") from None
    return path


def replay_frames(path: Path, speed: float, pace: PaceTracker | None = None) -> Iterator[Frame]:
    """The recorded bodies, re-encoded to the exact bytes received, at ``speed``."""
    for rec in paced(read_recording(path), speed, pace):
        yield Frame(rec.recv_ns, rec.raw.encode("utf-8"))


def build_frames(
    cfg: dict[str, Any], stop: StopAfter, pace: PaceTracker | None = None
) -> Iterator[Frame]:
    source = cfg["source"]
    if source == "synthetic":
        gen = TweetGenerator(seed=cfg["seed"], start_ms=cfg["start_ms"] or time.time_ns() // 10**6,
                             rate=cfg["rate"] if cfg["rate"] > 0 else 1000.0)
        return synthetic_frames(gen, cfg["rate"], stop, cfg["tweet_fields"],
                                cfg["user_fields"] or None, tracker=pace)
    if source == "replay":
        return replay_frames(_check_recording(cfg["recording"]), cfg["speed"], pace)
    return _live_frames(cfg, stop)


def _live_frames(cfg: dict[str, Any], stop: StopAfter) -> Iterator[Frame]:
    token = cfg["bearer_token"]
    if not token:
        raise UserError("TWITTER_BEARER_TOKEN is not set (needed for --source live)")
    # tweepy is imported only for live use: replay and synthetic runs need no API client.
    from producers.twitter.live import (
        ApiCaller,
        ApiCounters,
        FilteredStream,
        SearchPoller,
        make_client,
    )

    caller = ApiCaller(stop, ApiCounters(), cfg["api_url"], secrets=(token,))
    user_fields = cfg["user_fields"]
    expansions = ("author_id",) if user_fields else ()
    if cfg["mode"] == "stream":
        return FilteredStream(
            token, cfg["api_url"], caller, query=cfg["query"], tweet_fields=cfg["tweet_fields"],
            user_fields=user_fields, expansions=expansions,
        ).frames()
    if not 10 <= cfg["max_results"] <= 100:
        raise UserError(f"--max-results {cfg['max_results']} must be between 10 and 100")
    return SearchPoller(
        make_client(token, cfg["api_url"]), caller, query=cfg["query"],
        tweet_fields=cfg["tweet_fields"], user_fields=user_fields, expansions=expansions,
        max_results=cfg["max_results"], interval_s=cfg["interval"],
        first_poll_pages=cfg["first_poll_pages"],
    ).frames()


def main(args: argparse.Namespace) -> int:
    cfg = resolve(args, SETTINGS)
    for line in describe(cfg, SETTINGS):
        print(f"twitter producer: {line}", file=sys.stderr)
    stop = StopAfter(cfg["duration"], cfg["max_messages"])
    pace = PaceTracker()
    frames = build_frames(cfg, stop, pace)  # user errors (token, recording) before opening anything
    producer_id = cfg["producer_id"] or new_producer_id("twitter")
    name = producer_id if producer_id.startswith("twitter") else f"twitter-{producer_id}"
    out = Path(expand_output(cfg["output_dir"], cfg["transport"]))
    store = JsonlDeadLetterStore(out / "dead_letters" / f"{name}.jsonl.gz")
    recorder = RecordingWriter(Path(cfg["record"])) if cfg["record"] else None
    try:
        with open_transport(cfg["transport"]) as transport:
            publisher = transport.publisher(producer_id)
            try:
                pipeline = TweetPipeline(
                    publisher, DeadLetters(SOURCE_NAME, store.write), topic=cfg["topic"],
                    recorder=recorder,
                )
                progress = ProgressReporter("twitter producer", pipeline.snapshot,
                                            cfg["progress_every"],
                                            heartbeat=Heartbeat(cfg["heartbeat"]))
                try:
                    with publishing(publisher, stop, "twitter producer"):
                        run(frames, pipeline, stop, progress)
                finally:
                    progress.final()
            finally:
                publisher.close()
            write_summary(
                cfg["summary_json"], producer_id, publisher.published_by_topic,
                pipeline.snapshot(), pace,
            )
    finally:
        store.close()
        if recorder is not None:
            recorder.close()
    return 0

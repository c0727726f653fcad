"""The Twitter/X source for the producer runtime: its topic, its settings, its three factories.

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

from collections.abc import Iterator

from core.dead_letters import DeadLetters
from core.errors import UserError
from core.recording import Frame
from core.settings import Setting, parse_csv, positive_float, positive_int
from producers.runtime.source import Config, LiveSource, Source
from producers.runtime.stop import StopAfter
from producers.twitter.schema import DEFAULT_QUERY, TOPIC, TweetDecoder
from producers.twitter.synthetic import (
    DEFAULT_TWEET_FIELDS,
    DEFAULT_USER_FIELDS,
    TweetGenerator,
    synthetic_frames,
)

SETTINGS: tuple[Setting, ...] = (
    Setting("mode", "search", "live API: recent-search polling or filtered stream",
            choices=("search", "stream")),
    Setting("query", DEFAULT_QUERY, "search query / stream rule"),
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
    Setting("topic", TOPIC, "topic to publish to"),
)


def decoder(cfg: Config, dead_letters: DeadLetters) -> TweetDecoder:
    return TweetDecoder(dead_letters, topic=cfg["topic"])


def synthetic(cfg: Config) -> Iterator[Frame]:
    rate = cfg["rate"] if cfg["rate"] > 0 else 1000.0  # flat out: created_at still advances
    generator = TweetGenerator(seed=cfg["seed"], start_ms=cfg["start_ms"], rate=rate)
    return synthetic_frames(generator, cfg["tweet_fields"], cfg["user_fields"] or None)


def live(cfg: Config, stop: StopAfter) -> LiveSource:
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
        )
    if not 10 <= cfg["max_results"] <= 100:
        raise UserError(f"--max-results {cfg['max_results']} must be between 10 and 100")
    return SearchPoller(
        make_client(token, cfg["api_url"]), caller, query=cfg["query"],
        tweet_fields=cfg["tweet_fields"], user_fields=user_fields, expansions=expansions,
        max_results=cfg["max_results"], interval_s=cfg["interval"],
        first_poll_pages=cfg["first_poll_pages"],
    )


SOURCE = Source(
    name="twitter",
    help="tweets: live API (search/stream), replay or synthetic",
    description=__doc__,
    topics=(TOPIC,),
    transport="zmq+tcp://127.0.0.1:5556",
    settings=SETTINGS,
    decoder=decoder,
    synthetic=synthetic,
    live=live,
    rate=5.0,
    seed=0,
    rate_help="synthetic tweets/s (Poisson arrivals), paced in real time; 0 = as fast as "
              "possible",
)

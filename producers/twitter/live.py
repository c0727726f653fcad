"""Live tweets through tweepy v2: recent-search polling (default) or the filtered stream.

Both sources yield ``Frame``s: the raw bytes of one HTTP response body (search page) or one
stream line, with the receive time. Nothing is parsed into tweepy model objects: the producer
publishes the API's own JSON, and a recording of these bytes replays byte-exact.

Search polling follows the API's contract: ``since_id`` = the newest id seen by the last poll
that completed (so nothing is fetched twice), ``next_token`` pages within one poll, and the
``x-rate-limit-remaining``/``x-rate-limit-reset`` headers: at 0 remaining, or on a 429, the
poller sleeps until the reset instant instead of hammering the API. ``since_id`` only advances
when every page of a poll arrived intact; after a failed page the next poll re-reads that span
and the service's id de-duplication drops what was already published.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import requests
import tweepy

from core.errors import UserError
from core.recording import Frame
from core.redaction import redact_text
from producers.runtime.progress import nonzero_counts
from producers.runtime.stop import StopAfter
from producers.twitter.routing import redact_in_loggers, route_session
from producers.twitter.schema import DEFAULT_QUERY

log = logging.getLogger("producers.twitter.live")

DEFAULT_EXPANSIONS = ("author_id",)
STREAM_RULE_TAG = "harness"
#: Backoff for 5xx and connection errors: 1, 2, 4 ... capped (the API's documented advice).
BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 64.0
#: When a 429 carries no reset header, wait a full 15-minute window's worth in steps.
NO_RESET_WAIT_S = 60.0

R = TypeVar("R")


@dataclass(slots=True)
class ApiCounters:
    requests: int = 0
    pages: int = 0
    polls: int = 0
    rate_limit_waits: int = 0
    rate_limit_wait_s: float = 0.0
    retries: int = 0
    stream_connects: int = 0
    keep_alives: int = 0

    def summary(self) -> dict[str, object]:
        return nonzero_counts(self, "api_")


def _api_message(exc: tweepy.HTTPException) -> str:
    parts = list(exc.api_messages) or [str(exc.response.reason)]
    return "; ".join(parts)[:300]


class ApiCaller:
    """Calls one tweepy method with the API's error rules, waiting out rate limits.

    401/403/400 are the user's to fix (token, access level, query) and become one
    ``UserError``; 429 sleeps until ``x-rate-limit-reset``; 5xx and network errors retry with
    exponential backoff. All sleeps end early when ``stop`` fires.
    """

    def __init__(
        self, stop: StopAfter, counters: ApiCounters, api_url: str, secrets: tuple[str, ...] = ()
    ) -> None:
        self.stop = stop
        self.counters = counters
        self.api_url = api_url
        #: Never quoted back: a 401 reply may echo the token it refused.
        self.secrets = secrets
        self._reset_at: float | None = None  # epoch s when the exhausted window resets

    def _message(self, exc: tweepy.HTTPException) -> str:
        return redact_text(_api_message(exc), self.secrets)

    def _wait_until(self, epoch_s: float, why: str) -> bool:
        delay = max(epoch_s - time.time(), 0.0) + 0.5  # reset is whole seconds; be past it
        log.info("%s: waiting %.1f s for the rate-limit window to reset", why, delay)
        self.counters.rate_limit_waits += 1
        self.counters.rate_limit_wait_s += delay
        return self.stop.wait(delay)

    def call(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R | None:
        """Return ``fn``'s result, or None if stopping while waiting."""
        backoff = BACKOFF_START_S
        while not self.stop.reached(0):
            if self._reset_at is not None:
                reset_at, self._reset_at = self._reset_at, None
                if reset_at > time.time() and self._wait_until(reset_at, "rate limit exhausted"):
                    return None
            self.counters.requests += 1
            try:
                result = fn(*args, **kwargs)
            except tweepy.TooManyRequests as exc:
                reset = exc.reset_time
                if reset is None:
                    reset = int(time.time() + NO_RESET_WAIT_S)
                if self._wait_until(reset, "429 Too Many Requests"):
                    return None
                continue
            except tweepy.Unauthorized as exc:
                raise UserError(
                    f"Twitter API at {self.api_url} rejected the bearer token "
                    f"(401 Unauthorized: {self._message(exc)}); check TWITTER_BEARER_TOKEN"
                ) from None
            except tweepy.Forbidden as exc:
                raise UserError(
                    f"Twitter API at {self.api_url} refused access (403: {self._message(exc)}); "
                    "the token's access level may not include this endpoint"
                ) from None
            except tweepy.BadRequest as exc:
                raise UserError(
                    f"Twitter API at {self.api_url} rejected the request (400: "
                    f"{self._message(exc)})"
                ) from None
            except (tweepy.TwitterServerError, requests.ConnectionError, requests.Timeout) as exc:
                self.counters.retries += 1
                log.warning("Twitter API error (%s); retrying in %.0f s",
                            redact_text(_short(exc), self.secrets), backoff)
                if self.stop.wait(backoff):
                    return None
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            if isinstance(result, requests.Response):
                self._note_rate_limit(result.headers)
            return result
        return None

    def _note_rate_limit(self, headers: Any) -> None:
        remaining = headers.get("x-rate-limit-remaining")
        reset = headers.get("x-rate-limit-reset")
        if remaining is not None and reset is not None:
            try:
                if int(remaining) <= 0:
                    self._reset_at = float(int(reset))
            except ValueError:
                log.warning("unparseable rate-limit headers %r/%r", remaining, reset)


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


def make_client(bearer_token: str, api_url: str) -> tweepy.Client:
    """A tweepy v2 client returning raw ``requests.Response`` objects, routed to ``api_url``."""
    redact_in_loggers(bearer_token)
    client = tweepy.Client(
        bearer_token=bearer_token, return_type=requests.Response, wait_on_rate_limit=False
    )
    route_session(client.session, api_url)
    return client


class SearchPoller:
    """Polls recent search every ``interval_s``; yields each page body once, oldest poll first."""

    def __init__(
        self,
        client: tweepy.Client,
        caller: ApiCaller,
        *,
        query: str = DEFAULT_QUERY,
        tweet_fields: Sequence[str],
        user_fields: Sequence[str] = (),
        expansions: Sequence[str] = DEFAULT_EXPANSIONS,
        max_results: int = 100,
        interval_s: float = 10.0,
        first_poll_pages: int = 1,
        since_id: str | None = None,
    ) -> None:
        self.client = client
        self.caller = caller
        self.query = query
        self.params: dict[str, Any] = {
            "max_results": max_results,
            "tweet_fields": list(tweet_fields),
        }
        if expansions:
            self.params["expansions"] = list(expansions)
        if user_fields:
            self.params["user_fields"] = list(user_fields)
        self.interval_s = interval_s
        self.first_poll_pages = first_poll_pages
        self.since_id = since_id
        self._polled = since_id is not None

    def counters(self) -> dict[str, object]:
        return self.caller.counters.summary()

    def frames(self) -> Iterator[Frame]:
        stop = self.caller.stop
        while not stop.reached(0):
            started = time.monotonic()
            yield from self._poll()
            self.caller.counters.polls += 1
            if stop.wait(self.interval_s - (time.monotonic() - started)):
                return

    def _poll(self) -> Iterator[Frame]:
        first_poll = not self._polled
        newest: str | None = None
        next_token: str | None = None
        pages = 0
        while True:
            params = dict(self.params)
            if self.since_id is not None:
                params["since_id"] = self.since_id
            if next_token is not None:
                params["next_token"] = next_token
            response = self.caller.call(self.client.search_recent_tweets, self.query, **params)
            if response is None:
                return  # stopping
            frame = Frame(time.time_ns(), response.content)
            pages += 1
            self.caller.counters.pages += 1
            meta = _meta_of(frame.raw)
            yield frame
            if meta is None:
                log.warning("unreadable page; since_id stays %s, next poll re-reads", self.since_id)
                return
            if newest is None and isinstance(meta.get("newest_id"), str):
                newest = meta["newest_id"]
            next_token = meta.get("next_token")
            if not isinstance(next_token, str) or (first_poll and pages >= self.first_poll_pages):
                break
        self._polled = True
        if newest is not None and (self.since_id is None or int(newest) > int(self.since_id)):
            self.since_id = newest


def _meta_of(raw: bytes) -> dict[str, Any] | None:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict):
        return None
    meta = body.get("meta", {})
    return meta if isinstance(meta, dict) else None


class _QueueingStream(tweepy.StreamingClient):
    """Hands each raw stream line to a queue; turns a 401/403 into a fatal error."""

    def __init__(self, bearer_token: str, out: queue.Queue[Frame], counters: ApiCounters,
                 **kwargs: Any) -> None:
        super().__init__(bearer_token, return_type=dict, **kwargs)
        self.out = out
        self.counters = counters
        self.fatal_status: int | None = None

    def on_data(self, raw_data: bytes) -> None:
        self.out.put(Frame(time.time_ns(), raw_data))

    def on_connect(self) -> None:
        self.counters.stream_connects += 1
        log.info("stream connected (connection %d)", self.counters.stream_connects)

    def on_closed(self, response: requests.Response) -> None:
        if self.running:  # not our own disconnect(): tweepy reconnects right away
            log.warning("stream closed by the server; reconnecting")

    def on_keep_alive(self) -> None:
        self.counters.keep_alives += 1

    def on_request_error(self, status_code: int) -> None:
        if status_code in (401, 403):
            self.fatal_status = status_code
            self.disconnect()
        log.warning("stream HTTP %d; tweepy reconnects with backoff", status_code)


class FilteredStream:
    """The filtered stream: ensures a rule for ``query`` exists, then yields lines as they come.

    tweepy's own loop reconnects (immediately after a clean close, with backoff after errors).
    """

    def __init__(
        self,
        bearer_token: str,
        api_url: str,
        caller: ApiCaller,
        *,
        query: str = DEFAULT_QUERY,
        tweet_fields: Sequence[str],
        user_fields: Sequence[str] = (),
        expansions: Sequence[str] = DEFAULT_EXPANSIONS,
    ) -> None:
        redact_in_loggers(bearer_token)
        self.caller = caller
        self.api_url = api_url
        self.query = query
        self._queue: queue.Queue[Frame] = queue.Queue()
        self.stream = _QueueingStream(bearer_token, self._queue, caller.counters, daemon=True)
        route_session(self.stream.session, api_url)
        self.params: dict[str, Any] = {"tweet_fields": list(tweet_fields)}
        if expansions:
            self.params["expansions"] = list(expansions)
        if user_fields:
            self.params["user_fields"] = list(user_fields)

    def ensure_rule(self) -> None:
        """Add a rule for ``query`` (tag ``harness``) unless present; drop stale harness rules."""
        current = self.caller.call(self.stream.get_rules)
        rules = (current or {}).get("data") or []
        stale = [r["id"] for r in rules if r.get("tag") == STREAM_RULE_TAG
                 and r.get("value") != self.query]
        if stale:
            self.caller.call(self.stream.delete_rules, stale)
        if not any(r.get("value") == self.query for r in rules):
            added = self.caller.call(
                self.stream.add_rules, tweepy.StreamRule(value=self.query, tag=STREAM_RULE_TAG)
            )
            errors = (added or {}).get("errors")
            if errors:
                raise UserError(f"the stream rule {self.query!r} was refused: {errors!r:.300}")

    def counters(self) -> dict[str, object]:
        return self.caller.counters.summary()

    def frames(self) -> Iterator[Frame]:
        self.ensure_rule()
        thread: threading.Thread = self.stream.filter(threaded=True, **self.params)
        stop = self.caller.stop
        try:
            while not stop.reached(0):
                try:
                    yield self._queue.get(timeout=0.1)
                except queue.Empty:
                    if self.stream.fatal_status is not None:
                        raise UserError(
                            f"Twitter stream at {self.api_url} refused the bearer token "
                            f"(HTTP {self.stream.fatal_status}); check TWITTER_BEARER_TOKEN"
                        ) from None
                    if not thread.is_alive():
                        raise UserError("the Twitter stream stopped (see the log)") from None
        finally:
            self.stream.disconnect()
            thread.join(timeout=2.0)

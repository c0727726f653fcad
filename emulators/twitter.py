"""A local Twitter API v2 emulator: recent search, filtered stream and stream rules over HTTP.

It exists so the live producer's real code path (tweepy -> requests -> a socket) runs in tests
and for anyone without API access. It speaks the real shapes: ``{"data", "includes", "meta"}``
pages newest first with ``since_id``/``until_id``/``next_token``/``max_results``, field
selection by ``tweet.fields``/``user.fields``/``expansions=author_id``, the problem-JSON error
bodies for 400/401/429/503, and ``x-rate-limit-limit/remaining/reset`` headers with a 429 once
a window is used up. The stream is chunked newline-delimited JSON with ``\\r\\n`` keep-alives.

Tweets come from ``emulators.tweets``, the emulator's own model (no producer code).

Not emulated: the query language. Every stored tweet matches every query and every stream
rule (the feed *is* the matching set); a missing or empty query is still a 400 like the API.

Faults are queued with ``inject(kind, count)`` and consumed by the next matching requests:
``malformed_json``, ``invalid_utf8``, ``bad_tweet`` (a page with one tweet lacking
``created_at``), ``status_503``, ``status_429`` (search); ``stream_malformed_json``,
``stream_invalid_utf8``, ``stream_drop`` (stream, applied before the next tweet line).

    python -m emulators.twitter --port 8089 --token my-token --rate 2 --preload 200
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import math
import os
import threading
import time
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from core.recording import read_recording
from emulators.tweets import EmulatedTweet, TweetSource, select_fields, snowflake

log = logging.getLogger("emulators.twitter")

DEFAULT_TOKEN = "emulator-token"
SEARCH_PATH = "/2/tweets/search/recent"
STREAM_PATH = "/2/tweets/search/stream"
RULES_PATH = "/2/tweets/search/stream/rules"
SEARCH_FAULTS = ("malformed_json", "invalid_utf8", "bad_tweet", "status_503", "status_429")
STREAM_FAULTS = ("stream_malformed_json", "stream_invalid_utf8", "stream_drop")


def tweets_in_body(raw: bytes) -> tuple[list[Any], dict[str, dict[str, Any]]]:
    """The tweets and authors of one recorded search page or stream line; nothing for a body
    that is not a JSON object. The emulator reads the API's shape itself instead of using the
    producer's schema, so a bug in that schema cannot hide in what the emulator serves."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return [], {}
    if not isinstance(obj, dict):
        return [], {}
    data = obj.get("data")
    tweets = data if isinstance(data, list) else [data] if isinstance(data, dict) else []
    includes = obj.get("includes")
    listed = includes.get("users") if isinstance(includes, dict) else None
    users = {
        u["id"]: u for u in listed or () if isinstance(u, dict) and isinstance(u.get("id"), str)
    }
    return tweets, users


def problem(status: int, title: str, detail: str | None = None) -> dict[str, Any]:
    """The v2 API's problem JSON for a non-2xx response."""
    return {"title": title, "detail": detail or title, "type": "about:blank", "status": status}


def invalid_request(parameter: str, message: str) -> dict[str, Any]:
    return {
        "errors": [{"parameters": {parameter: []}, "message": message}],
        "title": "Invalid Request",
        "detail": "One or more parameters to your request was invalid.",
        "type": "https://api.twitter.com/2/problems/invalid-request",
    }


class RateWindow:
    """A fixed window of ``limit`` requests per ``window_s``, reported like the API does."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._lock = threading.Lock()
        self._reset = 0
        self.remaining = limit

    def take(self) -> tuple[bool, dict[str, str]]:
        """Consume one request; returns (allowed, headers)."""
        with self._lock:
            now = time.time()
            if now >= self._reset:
                self._reset = math.ceil(now + self.window_s)
                self.remaining = self.limit
            allowed = self.remaining > 0
            if allowed:
                self.remaining -= 1
            return allowed, {
                "x-rate-limit-limit": str(self.limit),
                "x-rate-limit-remaining": str(self.remaining),
                "x-rate-limit-reset": str(self._reset),
            }


@dataclass(frozen=True, slots=True)
class StoredTweet:
    id: int
    tweet: dict[str, Any]
    user: dict[str, Any] | None


class TweetStore:
    """Tweets ordered by id; a condition wakes stream connections when tweets arrive."""

    def __init__(self) -> None:
        self._ids: list[int] = []
        self._by_id: dict[int, StoredTweet] = {}
        self.changed = threading.Condition()

    def add(self, items: Iterable[StoredTweet]) -> int:
        added = 0
        with self.changed:
            for item in items:
                if item.id in self._by_id:
                    continue
                self._by_id[item.id] = item
                insort(self._ids, item.id)
                added += 1
            self.changed.notify_all()
        return added

    def newest_first(self, after: int, before: int | None) -> list[StoredTweet]:
        with self.changed:
            lo = bisect_right(self._ids, after)
            hi = len(self._ids) if before is None else bisect_left(self._ids, before)
            return [self._by_id[i] for i in reversed(self._ids[lo:hi])]

    def newer_than(self, after: int) -> list[StoredTweet]:
        with self.changed:
            return [self._by_id[i] for i in self._ids[bisect_right(self._ids, after):]]

    @property
    def max_id(self) -> int:
        with self.changed:
            return self._ids[-1] if self._ids else 0

    def __len__(self) -> int:
        return len(self._ids)


class TwitterEmulator:
    """Run with ``with TwitterEmulator() as emu:``; point the producer at ``emu.url``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        bearer_token: str = DEFAULT_TOKEN,
        seed: int = 0,
        start_ms: int | None = None,
        search_limit: int = 450,
        window_s: float = 900.0,
        keepalive_s: float = 20.0,
        echo_token_on_401: bool = False,
    ) -> None:
        self.bearer_token = bearer_token
        #: Quote the refused token in the 401 body, as some servers and proxies do.
        self.echo_token_on_401 = echo_token_on_401
        self.keepalive_s = keepalive_s
        self.store = TweetStore()
        self.generator = TweetSource(
            seed=seed,
            start_ms=start_ms if start_ms is not None else time.time_ns() // 10**6 - 600_000,
        )
        self.search_window = RateWindow(search_limit, window_s)
        self.stream_window = RateWindow(50, 900.0)
        self.rules_window = RateWindow(450, 900.0)
        self.rules: dict[str, dict[str, str]] = {}
        self.requests: list[tuple[str, str, dict[str, list[str]]]] = []
        self.stream_connections = 0
        self.status_counts: collections.Counter[int] = collections.Counter()
        self._faults: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._server.emulator = self  # type: ignore[attr-defined]
        self._threads: list[threading.Thread] = []
        self._rule_seq = 0

    # ---- lifecycle -------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self._server.server_address[0]}:{self.port}"

    def start(self) -> TwitterEmulator:
        thread = threading.Thread(target=self._server.serve_forever, name="twitter-emulator",
                                  kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self.store.changed:
            self.store.changed.notify_all()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> TwitterEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- feeding ---------------------------------------------------------------------------
    def add_tweets(self, n: int) -> list[EmulatedTweet]:
        """Generate ``n`` tweets (ids increasing past everything stored) and store them."""
        items = self.generator.take(n)
        self.store.add(StoredTweet(int(i.tweet["id"]), i.tweet, i.user) for i in items)
        return items

    def add_raw(self, tweets: Iterable[dict[str, Any]],
                users: dict[str, dict[str, Any]] | None = None) -> int:
        users = users or {}
        return self.store.add(
            StoredTweet(int(t["id"]), t, users.get(t.get("author_id", "")))
            for t in tweets
            if isinstance(t, dict) and isinstance(t.get("id"), str) and t["id"].isdigit()
        )

    def load_recording(self, path: Path) -> int:
        """Serve the tweets of a producer recording (search pages or stream lines)."""
        added = 0
        for frame in read_recording(path):
            tweets, users = tweets_in_body(frame.raw_bytes())
            added += self.add_raw(tweets, users)
        return added

    def feed(self, rate: float) -> None:
        """Add tweets in the background at ``rate`` per second until stopped."""

        def loop() -> None:
            interval = 1.0 / rate
            while not self._stopping.wait(interval):
                self.generator.advance_to(time.time_ns() // 10**6)
                self.add_tweets(1)

        thread = threading.Thread(target=loop, name="twitter-emulator-feed", daemon=True)
        thread.start()
        self._threads.append(thread)

    def inject(self, kind: str, count: int = 1) -> None:
        if kind not in SEARCH_FAULTS + STREAM_FAULTS:
            raise ValueError(f"unknown fault {kind!r}; known: {SEARCH_FAULTS + STREAM_FAULTS}")
        with self._lock:
            self._faults[kind] += count

    def take_fault(self, kinds: tuple[str, ...]) -> str | None:
        with self._lock:
            for kind in kinds:
                if self._faults[kind] > 0:
                    self._faults[kind] -= 1
                    return kind
        return None

    def wait_for_stream(self, connections: int = 1, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stream_connections >= connections:
                return True
            time.sleep(0.01)
        return False

    def next_rule_id(self) -> str:
        with self._lock:
            self._rule_seq += 1
            return str(snowflake(time.time_ns() // 10**6, 1, self._rule_seq))


def _fields(params: dict[str, list[str]], name: str) -> tuple[str, ...]:
    return tuple(f for v in params.get(name, []) for f in v.split(",") if f)


def _one(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "twitter-emulator/1"

    @property
    def emu(self) -> TwitterEmulator:
        return self.server.emulator  # type: ignore[attr-defined,no-any-return]

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    # ---- plumbing --------------------------------------------------------------------------
    def _send(self, status: int, body: bytes | dict[str, Any],
              headers: dict[str, str] | None = None) -> None:
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        self.emu.status_counts[status] += 1
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def _authorized(self) -> bool:
        offered = self.headers.get("Authorization") or ""
        if offered == f"Bearer {self.emu.bearer_token}":
            return True
        detail = f"Invalid credentials: {offered}" if self.emu.echo_token_on_401 else None
        self._send(401, problem(401, "Unauthorized", detail))
        return False

    def _read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return orjson.loads(raw) if raw else {}

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        params = parse_qs(parts.query)
        self.emu.requests.append(("GET", parts.path, params))
        if not self._authorized():
            return
        if parts.path == SEARCH_PATH:
            self._search(params)
        elif parts.path == RULES_PATH:
            self._get_rules(params)
        elif parts.path == STREAM_PATH:
            self._stream(params)
        else:
            self._send(404, problem(404, "Not Found Error", f"no route {parts.path}"))

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        params = parse_qs(parts.query)
        self.emu.requests.append(("POST", parts.path, params))
        if not self._authorized():
            return
        if parts.path == RULES_PATH:
            self._post_rules(params)
        else:
            self._send(404, problem(404, "Not Found Error", f"no route {parts.path}"))

    # ---- recent search ---------------------------------------------------------------------
    def _search(self, params: dict[str, list[str]]) -> None:
        emu = self.emu
        allowed, rate_headers = emu.search_window.take()
        fault = emu.take_fault(SEARCH_FAULTS)
        if not allowed or fault == "status_429":
            self._send(429, problem(429, "Too Many Requests"), rate_headers)
            return
        if fault == "status_503":
            self._send(503, problem(503, "Service Unavailable"), rate_headers)
            return
        query = _one(params, "query")
        if not query:
            self._send(400, invalid_request("query", "The `query` query parameter can not be "
                                            "empty"), rate_headers)
            return
        try:
            max_results = int(_one(params, "max_results") or 10)
            since = int(_one(params, "since_id") or 0)
            until = _one(params, "until_id")
            token = _one(params, "next_token")
            before = int(until) if until else None
            if token:
                token_id = int(token, 36)
                before = token_id if before is None else min(before, token_id)
        except ValueError as exc:
            self._send(400, invalid_request("since_id", f"invalid parameter: {exc}"),
                       rate_headers)
            return
        if not 10 <= max_results <= 100:
            self._send(400, invalid_request(
                "max_results", f"The `max_results` query parameter value [{max_results}] is not "
                "between 10 and 100"), rate_headers)
            return
        matches = emu.store.newest_first(since, before)
        page, rest = matches[:max_results], matches[max_results:]
        body = self._body([s for s in page], params)
        meta: dict[str, Any] = {"result_count": len(page)}
        if page:
            meta = {"newest_id": str(page[0].id), "oldest_id": str(page[-1].id), **meta}
            if rest:
                meta["next_token"] = _base36(page[-1].id)
        body["meta"] = meta
        if fault == "bad_tweet" and body.get("data"):
            body["data"][-1] = {k: v for k, v in body["data"][-1].items() if k != "created_at"}
        raw = orjson.dumps(body)
        if fault == "malformed_json":
            raw = raw[: len(raw) // 2]
        elif fault == "invalid_utf8":
            raw = raw.replace(b'"text":"', b'"text":"\xff\xfe', 1)
        self._send(200, raw, rate_headers)

    def _body(self, items: list[StoredTweet], params: dict[str, list[str]]) -> dict[str, Any]:
        if not items:
            return {}
        tweet_fields = _fields(params, "tweet.fields")
        body: dict[str, Any] = {"data": [select_fields(s.tweet, tweet_fields) for s in items]}
        if "author_id" in _fields(params, "expansions"):
            user_fields = _fields(params, "user.fields")
            users: dict[str, dict[str, Any]] = {}
            for s in items:
                if s.user is not None:
                    users.setdefault(
                        s.user["id"], select_fields(s.user, user_fields, ("id", "name", "username"))
                    )
            if users:
                body["includes"] = {"users": list(users.values())}
        return body

    # ---- stream rules ----------------------------------------------------------------------
    def _get_rules(self, params: dict[str, list[str]]) -> None:
        allowed, headers = self.emu.rules_window.take()
        if not allowed:
            self._send(429, problem(429, "Too Many Requests"), headers)
            return
        rules = list(self.emu.rules.values())
        meta = {"sent": _now_iso(), "result_count": len(rules)}
        self._send(200, {"data": rules, "meta": meta} if rules else {"meta": meta}, headers)

    def _post_rules(self, params: dict[str, list[str]]) -> None:
        emu = self.emu
        allowed, headers = emu.rules_window.take()
        if not allowed:
            self._send(429, problem(429, "Too Many Requests"), headers)
            return
        try:
            body = self._read_json()
        except orjson.JSONDecodeError:
            self._send(400, invalid_request("body", "request body is not JSON"), headers)
            return
        dry_run = (_one(params, "dry_run") or "false").lower() == "true"
        if isinstance(body, dict) and isinstance(body.get("add"), list):
            created = []
            for rule in body["add"]:
                entry = {"id": emu.next_rule_id(), "value": str(rule.get("value", ""))}
                if rule.get("tag") is not None:
                    entry["tag"] = str(rule["tag"])
                created.append(entry)
                if not dry_run:
                    emu.rules[entry["id"]] = entry
            summary = {"created": len(created), "not_created": 0, "valid": len(created),
                       "invalid": 0}
            self._send(201, {"data": created, "meta": {"sent": _now_iso(), "summary": summary}},
                       headers)
        elif isinstance(body, dict) and isinstance(body.get("delete"), dict):
            ids = [str(i) for i in body["delete"].get("ids", [])]
            deleted = [i for i in ids if i in emu.rules]
            if not dry_run:
                for i in deleted:
                    del emu.rules[i]
            summary = {"deleted": len(deleted), "not_deleted": len(ids) - len(deleted)}
            self._send(200, {"meta": {"sent": _now_iso(), "summary": summary}}, headers)
        else:
            self._send(400, invalid_request("add", "body must contain 'add' or 'delete'"),
                       headers)

    # ---- filtered stream -------------------------------------------------------------------
    def _stream(self, params: dict[str, list[str]]) -> None:
        emu = self.emu
        allowed, headers = emu.stream_window.take()
        if not allowed:
            self._send(429, problem(429, "Too Many Requests"), headers)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.flush()
        cursor = emu.store.max_id
        with emu._lock:
            emu.stream_connections += 1
        try:
            while not emu._stopping.is_set():
                with emu.store.changed:
                    fresh = emu.store.newer_than(cursor)
                    if not fresh:
                        emu.store.changed.wait(emu.keepalive_s)
                        fresh = emu.store.newer_than(cursor)
                if not fresh:
                    self._chunk(b"\r\n")  # keep-alive
                    continue
                for item in fresh:
                    cursor = item.id
                    if not emu.rules:
                        continue  # no rules: nothing matches, like the real stream
                    fault = emu.take_fault(STREAM_FAULTS)
                    if fault == "stream_drop":
                        self.close_connection = True
                        return  # abrupt end: no terminating chunk
                    if fault == "stream_malformed_json":
                        self._chunk(b'{"data": {"id": "1", "text": \r\n')
                    elif fault == "stream_invalid_utf8":
                        self._chunk(b'{"data": {"id": "2", "text": "\xff\xfe"}}\r\n')
                    self._chunk(orjson.dumps(self._stream_line(item, params)) + b"\r\n")
            self._chunk(b"")  # terminating chunk: a clean end of the response
        except OSError:  # the client went away (BrokenPipe, ConnectionReset)
            self.close_connection = True

    def _stream_line(self, item: StoredTweet, params: dict[str, list[str]]) -> dict[str, Any]:
        body = self._body([item], params)
        body["data"] = body["data"][0]
        body["matching_rules"] = [
            {"id": r["id"], **({"tag": r["tag"]} if "tag" in r else {})}
            for r in self.emu.rules.values()
        ]
        return body

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out or "0"


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulators.twitter", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--token", default=os.environ.get("TWITTER_BEARER_TOKEN", DEFAULT_TOKEN),
                        help="bearer token to accept [env TWITTER_BEARER_TOKEN; default "
                        f"{DEFAULT_TOKEN!r}]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preload", type=int, default=100, help="tweets stored at start")
    parser.add_argument("--rate", type=float, default=2.0, help="new tweets per second (0: none)")
    parser.add_argument("--recording", type=Path, help="serve the tweets of this recording")
    parser.add_argument("--search-limit", type=int, default=450, help="requests per window")
    parser.add_argument("--window", type=float, default=900.0, help="rate-limit window, s")
    parser.add_argument("--keepalive", type=float, default=20.0, help="stream keep-alive, s")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    emu = TwitterEmulator(host=args.host, port=args.port, bearer_token=args.token, seed=args.seed,
                          search_limit=args.search_limit, window_s=args.window,
                          keepalive_s=args.keepalive)
    if args.recording:
        log.info("loaded %d tweets from %s", emu.load_recording(args.recording), args.recording)
    if args.preload:
        emu.add_tweets(args.preload)
    emu.start()
    if args.rate > 0:
        emu.feed(args.rate)
    print(json.dumps({"url": emu.url, "tweets": len(emu.store)}), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

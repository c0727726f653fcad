"""The live producer's side of the local order book: REST snapshots when the diffs need one.

Only the producer can ask the exchange for ``/api/v3/depth``, so it owns the synchronisation
Binance documents: it follows each symbol's diff chain (``LocalBook`` without levels: ids only)
and fetches a snapshot when a symbol has none yet or a gap opened (a reconnect, a lost frame).
``DepthSync`` wraps the live client: its frames are the client's, with each snapshot put among
them as the frame ``<symbol>@depthSnapshot``, so it takes the way every frame takes (recorded,
validated, published on the depth topic among the diffs) and a replay of the recording
republishes it in its place. Every ``refresh_s`` each symbol gets a fresh one too: a downstream
order book that lost messages (ZeroMQ drops) resynchronises from it.

A snapshot goes out before the next frame the client delivers, as if it had arrived then, and
the chain is followed in that same order, so what this module decides matches what the topic
carries. A snapshot older than the buffered diffs (Binance step 4) is asked for again after a
short wait. REST failures back off exponentially (``Retry-After`` honoured on 429/418); fetches
run one at a time, at most one per symbol per ``min_interval_s``, since each weighs 50 of the
exchange's 6,000-a-minute request budget at ``limit=1000``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from core.recording import Frame
from processors.order_book import DepthDiff, DepthSnapshot, LocalBook, Outcome
from producers.binance.live import BinanceLiveClient, stream_name_of
from producers.binance.schema import DEFAULT_MAX_SKEW_MS, MarketEvent, ValidationError, parse_frame
from producers.binance.topics import is_diff_depth_stream
from producers.runtime.progress import nonzero_counts

log = logging.getLogger("producers.binance.depth_sync")

DEFAULT_REST_ENDPOINT = "https://api.binance.com"
DEFAULT_LIMIT = 1000
DEFAULT_REFRESH_S = 60.0
#: REST answers larger than this are refused before parsing (5000 levels a side is ~320 KB).
MAX_BODY_BYTES = 4 << 20


def rest_endpoint_for(ws_endpoint: str) -> str:
    """The REST base beside a websocket endpoint: Binance's own, or the same host (emulator)."""
    parts = urlsplit(ws_endpoint)
    if parts.hostname in ("stream.binance.com", "data-stream.binance.vision"):
        return DEFAULT_REST_ENDPOINT
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, "", "", ""))


class SnapshotError(Exception):
    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RestSnapshots:
    """``GET /api/v3/depth`` in a worker thread (stdlib HTTP: one request at a time)."""

    def __init__(self, endpoint: str, limit: int = DEFAULT_LIMIT, timeout_s: float = 10.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.limit = limit
        self.timeout_s = timeout_s

    async def fetch(self, symbol: str) -> bytes:
        url = f"{self.endpoint}/api/v3/depth?symbol={symbol.upper()}&limit={self.limit}"
        return await asyncio.to_thread(self._get, url)

    def _get(self, url: str) -> bytes:
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as response:
                body = response.read(MAX_BODY_BYTES + 1)
        except urllib.error.HTTPError as exc:
            retry = exc.headers.get("Retry-After") if exc.headers else None
            detail = exc.read(300).decode("utf-8", "replace")
            raise SnapshotError(
                f"HTTP {exc.code} from {url}: {detail}", float(retry) if retry else None
            ) from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise SnapshotError(f"{url}: {exc}") from None
        if len(body) > MAX_BODY_BYTES:
            raise SnapshotError(f"{url}: answer larger than {MAX_BODY_BYTES} bytes")
        return body


@dataclass(slots=True)
class DepthSyncStats:
    snapshots: int = 0  # published
    snapshot_errors: int = 0  # REST failures and answers that failed validation
    snapshots_too_old: int = 0
    gaps: int = 0
    resyncs: int = 0

    def summary(self) -> dict[str, object]:
        return nonzero_counts(self, "depth_")


class DepthSync:
    """The live client's frames with REST snapshots among the diffs, when due (a live source).

    ``max_skew_ms`` must be the decoder's: a diff the producer dead-letters is, here too, a
    diff that never came.
    """

    def __init__(
        self,
        client: BinanceLiveClient,
        snapshots: RestSnapshots,
        *,
        refresh_s: float = DEFAULT_REFRESH_S,
        min_interval_s: float = 1.0,
        backoff_max_s: float = 30.0,
        max_skew_ms: int = DEFAULT_MAX_SKEW_MS,
    ) -> None:
        self.client = client
        self.snapshots = snapshots
        streams = [s for shard in client.shards for s in shard.streams if is_diff_depth_stream(s)]
        #: diff stream name (as it starts a frame) -> symbol, for the streams this follows
        self._diff_streams = {s.encode(): s.split("@", 1)[0].upper() for s in streams}
        self.books = {s: LocalBook(s, keep_levels=False) for s in self._diff_streams.values()}
        self.refresh_s = refresh_s
        self.min_interval_s = min_interval_s
        self.backoff_max_s = backoff_max_s
        self.max_skew_ms = max_skew_ms
        self.stats = DepthSyncStats()
        self._ready: deque[tuple[Frame, str, int | None]] = deque()  # fetched, not yet out
        self._due: dict[str, float] = {}  # symbol -> monotonic time a snapshot is wanted
        self._last_fetch: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._failures = 0

    def counters(self) -> dict[str, object]:
        return {**self.client.counters(), **self.stats.summary()}

    async def frames(self) -> AsyncIterator[Frame]:
        """The client's frames; fetched snapshots go out before the next one."""
        task = asyncio.create_task(self._run(), name="binance-depth-snapshots")
        try:
            async for frame in self.client.frames():
                while self._ready:
                    yield self._snapshot_out(*self._ready.popleft())
                symbol = self._diff_streams.get(stream_name_of(frame.raw))  # type: ignore[arg-type]
                if symbol is not None:
                    self._follow(symbol, frame)
                yield frame
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _follow(self, symbol: str, frame: Frame) -> None:
        """A diff on a followed stream: extend the chain, or ask for a snapshot."""
        try:
            parsed = parse_frame(frame.raw, frame.recv_ns // 1_000_000,
                                 max_skew_ms=self.max_skew_ms)
        except ValidationError:
            return  # dead-lettered by the producer: for the chain it never came
        if type(parsed) is not MarketEvent or parsed.event != "depthUpdate":
            return
        data = parsed.data
        diff = DepthDiff(symbol, data["U"], data["u"], data["E"], (), ())
        book = self.books[symbol]
        outcome = book.on_diff(diff)
        if outcome is Outcome.GAP:
            self.stats.gaps += 1
            log.warning("%s: depth diffs missing (U=%d after u=%d); resynchronising",
                        symbol, diff.first_id, book.last_update_id)
            self._want(symbol, 0.0)
        elif outcome is Outcome.BUFFERED and symbol not in self._due:
            self._want(symbol, 0.0)

    def _snapshot_out(self, frame: Frame, symbol: str, last_update_id: int | None) -> Frame:
        """A fetched snapshot goes out now: the chain takes it in the same place."""
        if last_update_id is None:  # failed validation: the producer dead-letters it
            return frame
        self.stats.snapshots += 1
        book = self.books[symbol]
        was_synced_before = book.counters.syncs > 0
        outcome = book.on_snapshot(DepthSnapshot(symbol, last_update_id, 0, (), ()))
        if outcome is Outcome.SNAPSHOT_TOO_OLD:
            self.stats.snapshots_too_old += 1
            self._want(symbol, 0.5)
        elif outcome is Outcome.SYNCED and was_synced_before:
            self.stats.resyncs += 1
        elif outcome is Outcome.GAP:  # a gap inside the buffered diffs: try again
            self._want(symbol, 0.5)
        if self.refresh_s > 0 and symbol not in self._due:
            self._want(symbol, self.refresh_s)
        return frame

    def _want(self, symbol: str, delay_s: float) -> None:
        at = time.monotonic() + delay_s
        self._due[symbol] = min(self._due.get(symbol, at), at)
        self._wake.set()

    async def _run(self) -> None:
        while True:
            now = time.monotonic()
            due = [(at, s) for s, at in self._due.items() if at <= now]
            if not due:
                wait = min((at - now for at in self._due.values()), default=None)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                continue
            _, symbol = min(due)
            since = now - self._last_fetch.get(symbol, -1e9)
            if since < self.min_interval_s:
                self._due[symbol] = now + self.min_interval_s - since
                continue
            del self._due[symbol]
            self._last_fetch[symbol] = now
            await self._snapshot(symbol)

    async def _snapshot(self, symbol: str) -> None:
        try:
            body = await self.snapshots.fetch(symbol)
        except SnapshotError as exc:
            self._failed(symbol, str(exc), exc.retry_after_s)
            return
        raw = b'{"stream":"%s@depthSnapshot","data":%s}' % (symbol.lower().encode(), body)
        frame = Frame(time.time_ns(), raw)
        try:
            parsed = parse_frame(raw, frame.recv_ns // 1_000_000, max_skew_ms=self.max_skew_ms)
        except ValidationError:
            parsed = None
        if type(parsed) is not MarketEvent:
            self._ready.append((frame, symbol, None))  # recorded and dead-lettered all the same
            self._failed(symbol, "the snapshot failed validation", None)
            return
        self._failures = 0
        self._ready.append((frame, symbol, parsed.data["lastUpdateId"]))

    def _failed(self, symbol: str, why: str, retry_after_s: float | None) -> None:
        self.stats.snapshot_errors += 1
        self._failures += 1
        cap = min(self.backoff_max_s, 0.5 * 2 ** (self._failures - 1))
        delay = max(random.uniform(cap / 2, cap), retry_after_s or 0.0)
        log.warning("%s: depth snapshot failed (%s); retry in %.1f s", symbol, why, delay)
        self._want(symbol, delay)

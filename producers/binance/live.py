"""Live Binance Spot combined-stream client that survives the exchange's real rules.

- 1024 streams per connection: streams are sharded across connections.
- Pings every 20 s: ``websockets`` answers server pings with pongs inside its protocol layer
  (no code needed; the emulator test checks the server measures a pong latency).
- 24 h connection limit and ``serverShutdown``: the shard opens a *second* connection before
  closing the first. Frames of the new connection are buffered until the old one has delivered
  a frame the new one already has, for every stream seen on the new one (both carry the same
  exchange sequence, byte-identical), then the old one is closed and the buffer released minus
  what the old one already delivered: no gap, no duplicate, per-stream order kept.
- Drops and stalls (no frame within ``stall_timeout_s``): reconnect with full-jitter exponential
  backoff, at most 300 connection attempts per 5 minutes across all shards.
- 5 incoming control messages/s per connection: SUBSCRIBE/UNSUBSCRIBE/LIST_SUBSCRIPTIONS are
  spaced; streams beyond what fits in the URL are subscribed in batches after connecting.

Frames are yielded as ``Frame(recv_ns, raw_bytes)`` *undecoded* (``decode=False``): invalid
UTF-8 reaches the producer's validation and dead-letter store instead of killing the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from core.recording import Frame
from producers.binance.schema import ControlReply, ServerShutdown, ValidationError, parse_frame
from producers.binance.topics import STREAM_ENDPOINT
from producers.runtime.progress import nonzero_counts

log = logging.getLogger("producers.binance.live")

MAX_STREAMS_PER_CONNECTION = 1024
MAX_URL_CHARS = 8000
SUBSCRIBE_BATCH = 200
_COMBINED_PREFIX = b'{"stream":"'


class BinanceRequestError(Exception):
    """The exchange refused a request (bad stream/symbol): retrying cannot help."""


@dataclass(frozen=True, slots=True)
class LiveConfig:
    endpoint: str = STREAM_ENDPOINT
    max_streams_per_connection: int = MAX_STREAMS_PER_CONNECTION
    #: Binance closes connections at 24 h; rotate well before.
    max_connection_age_s: float = 23.5 * 3600
    #: Longest a rotation waits for the old connection to catch up with the new one.
    overlap_timeout_s: float = 10.0
    #: No frame for this long on an open connection => reconnect. Quiet symbols need more.
    stall_timeout_s: float = 60.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 60.0
    attempts_per_window: int = 300
    attempt_window_s: float = 300.0
    control_messages_per_s: float = 5.0
    open_timeout_s: float = 10.0
    #: Transport-level cap; oversize frames below it reach validation and are dead-lettered.
    max_ws_message_bytes: int = 4 * 1024 * 1024
    queue_frames: int = 100_000


@dataclass(slots=True)
class LiveStats:
    connects: int = 0
    connect_failures: int = 0
    drops: int = 0
    stalls: int = 0
    server_shutdowns: int = 0
    rotations: int = 0
    overlap_duplicates: int = 0
    #: Rotations that switched at the overlap timeout, the old connection not caught up.
    overlap_timeouts: int = 0
    control_errors: int = 0

    def summary(self) -> dict[str, object]:
        """For progress lines and the producer's summary (control replies and shutdowns are
        counted by the decoder, which sees them too)."""
        return nonzero_counts(self, "ws_", ("connects", "connect_failures", "drops", "stalls",
                                            "rotations", "overlap_duplicates",
                                            "overlap_timeouts"))  # fmt: skip


class AttemptLimiter:
    """At most ``limit`` connection attempts in any ``window_s`` (the exchange bans beyond)."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._times: deque[float] = deque()

    async def acquire(self) -> None:
        while True:
            now = time.monotonic()
            while self._times and now - self._times[0] >= self.window_s:
                self._times.popleft()
            if len(self._times) < self.limit:
                self._times.append(now)
                return
            await asyncio.sleep(self.window_s - (now - self._times[0]) + 0.001)


class _Connection:
    """One websocket plus the control-message pacing and reply matching it needs."""

    def __init__(self, ws: ClientConnection, rate: float) -> None:
        self.ws = ws
        self.opened = time.monotonic()
        self.last_frame = self.opened
        self.shutdown_announced = False
        self._spacing = 1.0 / rate if rate > 0 else 0.0
        self._next_send = 0.0
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = 0
        self.reader: asyncio.Task[None] | None = None

    async def request(self, method: str, params: list[str] | None = None) -> Any:
        """Send a control message respecting the rate limit; wait for its reply."""
        now = time.monotonic()
        if self._next_send > now:
            await asyncio.sleep(self._next_send - now)
        self._next_send = max(now, self._next_send) + self._spacing
        self._ids += 1
        msg: dict[str, Any] = {"method": method, "id": self._ids}
        if params is not None:
            msg["params"] = params
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[self._ids] = fut
        await self.ws.send(orjson.dumps(msg).decode())
        return await asyncio.wait_for(fut, 10.0)

    def on_reply(self, reply: ControlReply) -> bool:
        fut = self._pending.pop(reply.id, None) if isinstance(reply.id, int) else None
        if fut is None or fut.done():
            return False
        if reply.is_error:
            fut.set_exception(BinanceRequestError(f"code {reply.error_code}: {reply.error_msg}"))
        else:
            fut.set_result(reply.result)
        return True


def shard_streams(streams: list[str], per_connection: int) -> list[list[str]]:
    """Split streams into connections of at most ``per_connection`` (Binance: 1024)."""
    unique = list(dict.fromkeys(streams))
    return [unique[i : i + per_connection] for i in range(0, len(unique), per_connection)]


def stream_url(endpoint: str, streams: list[str]) -> tuple[str, list[str]]:
    """Combined-stream URL for as many streams as fit; return the rest for SUBSCRIBE."""
    base = endpoint.rstrip("/") + "/stream"
    in_url: list[str] = []
    length = len(base) + 9
    for s in streams:
        if length + len(s) + 1 > MAX_URL_CHARS:
            break
        in_url.append(s)
        length += len(s) + 1
    rest = streams[len(in_url) :]
    return (base + "?streams=" + "/".join(in_url) if in_url else base), rest


class BinanceLiveClient:
    """``frames()``: an async iterator of every requested stream's frames, forever."""

    def __init__(self, streams: list[str], config: LiveConfig | None = None) -> None:
        if not streams:
            raise ValueError("no streams requested")
        self.config = config or LiveConfig()
        self.shards = [
            _Shard(i, s, self)
            for i, s in enumerate(shard_streams(streams, self.config.max_streams_per_connection))
        ]
        self.stats = LiveStats()
        self.limiter = AttemptLimiter(self.config.attempts_per_window, self.config.attempt_window_s)
        self.queue: asyncio.Queue[tuple[bytes, int] | BaseException] | None = None

    async def frames(self) -> AsyncIterator[Frame]:
        self.queue = asyncio.Queue(self.config.queue_frames)
        tasks = [asyncio.create_task(s.run(), name=f"binance-shard-{s.index}") for s in self.shards]
        try:
            while True:
                item = await self.queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield Frame(item[1], item[0])
        finally:
            for t in tasks:
                t.cancel()
            for s in self.shards:
                await s.close_all()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def subscribe(self, streams: list[str]) -> None:
        """Add streams at runtime (to the last shard with room); survives reconnects."""
        for shard in self.shards:
            room = self.config.max_streams_per_connection - len(shard.streams)
            take = [s for s in streams if s not in shard.streams][: max(room, 0)]
            if take:
                await shard.control("SUBSCRIBE", take)
                shard.streams.extend(take)
                streams = [s for s in streams if s not in take]
        if streams:
            raise BinanceRequestError(f"no connection has room for {len(streams)} more streams")

    async def unsubscribe(self, streams: list[str]) -> None:
        for shard in self.shards:
            mine = [s for s in streams if s in shard.streams]
            if mine:
                await shard.control("UNSUBSCRIBE", mine)
                shard.streams[:] = [s for s in shard.streams if s not in mine]

    async def list_subscriptions(self) -> list[str]:
        out: list[str] = []
        for shard in self.shards:
            out.extend(await shard.control("LIST_SUBSCRIPTIONS", None) or [])
        return out

    def counters(self) -> dict[str, object]:
        return self.stats.summary()


class _Shard:
    """One group of <= 1024 streams: an active connection and, while rotating, a pending one."""

    def __init__(self, index: int, streams: list[str], client: BinanceLiveClient) -> None:
        self.index = index
        self.streams = list(streams)
        self.client = client
        self.cfg = client.config
        self.active: _Connection | None = None
        self.pending: _Connection | None = None
        self._buffer: list[tuple[bytes, int]] = []
        self._buffered: set[bytes] = set()
        self._buffered_streams: set[bytes] = set()
        self._caught_up: set[bytes] = set()
        self._delivered_by_old: set[bytes] = set()
        self._wake = asyncio.Event()
        self._failures = 0

    async def control(self, method: str, params: list[str] | None) -> Any:
        conn = self.active
        if conn is None:
            raise BinanceRequestError("not connected")
        return await conn.request(method, params)

    async def run(self) -> None:
        stats = self.client.stats
        try:
            self.active = await self._open()
            while True:
                reason = await self._watch(self.active)
                if reason in ("rotate", "shutdown"):
                    if reason == "shutdown":
                        stats.server_shutdowns += 1
                    stats.rotations += 1
                    await self._rotate()
                else:
                    if reason == "stall":
                        stats.stalls += 1
                    else:
                        stats.drops += 1
                    log.warning("shard %d: connection %s; reconnecting", self.index, reason)
                    await self._close(self.active)
                    self.active = await self._open()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # fatal: hand it to the consumer of frames()
            assert self.client.queue is not None
            await self.client.queue.put(exc)

    async def _watch(self, conn: _Connection) -> str:
        """Wait until the connection needs replacing; return why."""
        cfg = self.cfg
        while True:
            self._wake.clear()
            now = time.monotonic()
            if conn.shutdown_announced:
                return "shutdown"
            if conn.reader is not None and conn.reader.done():
                return "closed"
            if now - conn.last_frame > cfg.stall_timeout_s:
                return "stall"
            if now - conn.opened > cfg.max_connection_age_s:
                return "rotate"
            deadline = min(
                conn.last_frame + cfg.stall_timeout_s, conn.opened + cfg.max_connection_age_s
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(deadline - now, 0.0) + 0.01)

    async def _rotate(self) -> None:
        """Open a new connection, wait for the old one to catch up, then switch over."""
        old = self.active
        assert old is not None
        self._buffer, self._buffered, self._buffered_streams = [], set(), set()
        self._caught_up, self._delivered_by_old = set(), set()
        new = await self._open(pending=True)
        cfg = self.cfg
        deadline = time.monotonic() + cfg.overlap_timeout_s
        while True:
            if time.monotonic() >= deadline:
                self.client.stats.overlap_timeouts += 1
                break
            if old.reader is None or old.reader.done():
                break
            if time.monotonic() - old.last_frame > min(cfg.stall_timeout_s, cfg.overlap_timeout_s):
                break  # the old connection is stalled: it will never catch up
            if self._buffered_streams and self._caught_up >= self._buffered_streams:
                break
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.05)
        # Switch: the old connection's frames are ignored from here; the new one keeps
        # buffering until the buffer is drained, so its frames cannot overtake buffered ones.
        self.active = new
        await self._close(old)
        queue = self.client.queue
        assert queue is not None
        i = 0
        while i < len(self._buffer):
            raw, recv_ns = self._buffer[i]
            i += 1
            if raw in self._delivered_by_old:
                self.client.stats.overlap_duplicates += 1
                continue
            await queue.put((raw, recv_ns))
        self.pending = None  # no await since the last length check: nothing is left behind
        self._buffer, self._buffered, self._delivered_by_old = [], set(), set()

    async def _open(self, pending: bool = False) -> _Connection:
        cfg, client = self.cfg, self.client
        while True:
            await client.limiter.acquire()
            url, rest = stream_url(cfg.endpoint, self.streams)
            try:
                ws = await connect(
                    url,
                    open_timeout=cfg.open_timeout_s,
                    max_size=cfg.max_ws_message_bytes,
                    compression=None,
                )
            except InvalidStatus as exc:
                status = exc.response.status_code
                body = (
                    exc.response.body.decode("utf-8", "replace")[:200] if exc.response.body else ""
                )
                if status in (400, 404):
                    raise BinanceRequestError(f"HTTP {status} for {url[:120]}: {body}") from None
                retry_after = exc.response.headers.get("Retry-After")
                await self._backoff(f"HTTP {status}", float(retry_after) if retry_after else None)
                continue
            except (OSError, TimeoutError, ConnectionClosed) as exc:
                await self._backoff(type(exc).__name__)
                continue
            client.stats.connects += 1
            conn = _Connection(ws, cfg.control_messages_per_s)
            if pending:
                self.pending = conn
            conn.reader = asyncio.create_task(self._read(conn))
            for i in range(0, len(rest), SUBSCRIBE_BATCH):
                await conn.request("SUBSCRIBE", rest[i : i + SUBSCRIBE_BATCH])
            return conn

    async def _backoff(self, why: str, at_least: float | None = None) -> None:
        self.client.stats.connect_failures += 1
        self._failures += 1
        cap = min(self.cfg.backoff_max_s, self.cfg.backoff_initial_s * 2 ** (self._failures - 1))
        delay = max(random.uniform(0, cap), at_least or 0.0)
        log.warning("shard %d: connect failed (%s); retry in %.2f s", self.index, why, delay)
        await asyncio.sleep(delay)

    async def _read(self, conn: _Connection) -> None:
        queue = self.client.queue
        assert queue is not None
        try:
            async for raw in _frames(conn.ws):
                recv_ns = time.time_ns()
                conn.last_frame = time.monotonic()
                self._failures = 0
                if not raw.startswith(_COMBINED_PREFIX) or b"serverShutdown" in raw[:64]:
                    self._inspect(conn, raw, recv_ns)
                if conn is self.pending:
                    self._buffer.append((raw, recv_ns))
                    self._buffered.add(raw)
                    stream = stream_name_of(raw)
                    self._buffered_streams.add(stream)
                    if raw in self._delivered_by_old:
                        # the old connection delivered this frame first: it has caught up on
                        # this stream as much as if it delivered it after (both read one feed,
                        # and which socket is read first is a race a slow stream can lose for
                        # its whole overlap)
                        self._caught_up.add(stream)
                        self._wake.set()
                    continue
                if self.pending is not None and conn is self.active:
                    self._delivered_by_old.add(raw)
                    if raw in self._buffered:
                        self._caught_up.add(stream_name_of(raw))
                        self._wake.set()
                elif conn is not self.active:
                    continue  # a connection being closed: its frames are not ours any more
                await queue.put((raw, recv_ns))
        except ConnectionClosed:
            pass
        finally:
            self._wake.set()

    def _inspect(self, conn: _Connection, raw: bytes, recv_ns: int) -> None:
        try:
            parsed = parse_frame(raw, recv_ns // 1_000_000, max_skew_ms=1 << 62)
        except ValidationError:
            return  # the producer's validation dead-letters it
        if isinstance(parsed, ControlReply):
            if parsed.is_error:
                self.client.stats.control_errors += 1
            conn.on_reply(parsed)
        elif isinstance(parsed, ServerShutdown):
            conn.shutdown_announced = True
            self._wake.set()

    async def _close(self, conn: _Connection | None) -> None:
        if conn is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.ws.close(), 2.0)
        if conn.reader is not None:
            conn.reader.cancel()
            with contextlib.suppress(BaseException):
                await conn.reader

    async def close_all(self) -> None:
        for conn in (self.pending, self.active):
            await self._close(conn)


async def _frames(ws: ClientConnection) -> AsyncIterator[bytes]:
    while True:
        data = await ws.recv(decode=False)
        yield data if type(data) is bytes else bytes(data)


def stream_name_of(raw: bytes) -> bytes:
    """``btcusdt@trade`` of a combined-stream frame, without parsing it; ``b""`` for others."""
    if raw.startswith(_COMBINED_PREFIX):
        end = raw.find(b'"', 11)
        if end > 0:
            return raw[11:end]
    return b""

"""A local Binance Spot websocket server speaking the real wire format, with injectable faults.

For tests and for anyone without access to Binance: ``python -m emulators.binance --port 9443``
then ``harness produce binance --endpoint ws://127.0.0.1:9443``.

Speaks: ``/stream?streams=a/b`` (combined wrapper ``{"stream":..,"data":..}``) and
``/ws/<stream>[/<stream>...]`` (raw payloads); SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS
with ``{"result":null,"id":N}`` replies and Binance's error shapes (``{"code":2,"msg":"Invalid
request: ..."}``, ``{"code":3,"msg":"Invalid JSON: ..."}``); more than 5 incoming messages per
second closes the connection, like the exchange. Server pings every ``ping_interval`` s (20 on
Binance); a client that does not pong within ``ping_timeout`` is disconnected.

Like an exchange, one market (``emulators.market``, the emulator's own model, sharing no code
with the producer it checks) feeds every connection: two connections subscribed to the same
stream receive byte-identical frames (what the producer's overlap de-duplication relies on).
Unlike Binance, unknown symbols are refused (HTTP 400 in the URL, code 2 in SUBSCRIBE) so a
typo is visible at once; Binance silently sends nothing for them.

Depth (``emulators.binance_depth``): a book per symbol behind the ``depth`` diff and partial
streams, and ``GET /api/v3/depth`` on the same port (``http://host:port``), as the exchange
serves its REST snapshots beside the streams.

A recording (``recording=``) is replayed as it happened: nothing is sent until a client has
subscribed, then frames keep their recorded gaps (``speed`` times faster; 0 = as fast as the
clients take them), their timestamps rebased to now (shifted by whole seconds,
``rebase_granularity_ms``, so one-second windows keep their contents), once (``loop=True``
repeats it). Recorded REST snapshots keep the emulator's book in step with the replayed diffs.

Faults (thread-safe; call from tests): ``drop_connections``, ``send_raw`` (malformed frames:
see ``MALFORMED``), ``server_shutdown``, ``stall`` (current connections only),
``max_connection_age_s``, ``refuse_handshakes`` (HTTP 429 / 418 with ``Retry-After``, as Binance
answers too many connection attempts), ``lose_depth_diffs`` (a gap in ``U``/``u``),
``freeze_depth`` (books stop moving, to compare a client's book with ``depth_book``),
``refuse_rest`` (REST answers 429/418 with ``Retry-After``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from core.recording import read_recording
from emulators.binance_depth import EmulatedDepth, is_depth_stream
from emulators.market import STREAM_TYPES as MARKET_STREAM_TYPES
from emulators.market import EmulatedMarket

log = logging.getLogger("emulators.binance")

CONTROL_MESSAGES_PER_S = 5
MAX_STREAMS = 1024
DEPTH_TICK_S = 0.1
#: Frames a client may have queued before a flat-out replay waits for it.
MAX_BACKLOG_FLAT_OUT = 1000
#: Recorded time fields per event type, shifted when a recording is rebased to now.
_TIME_FIELDS = {
    "trade": ("E", "T"),
    "aggTrade": ("E", "T"),
    "24hrTicker": ("E", "O", "C"),
}
_TRADE = (
    '{"stream":"btcusdt@trade","data":{"e":"trade","E":%d,"s":"BTCUSDT","t":1,'
    '"p":"60000.00000000","q":"0.00100000","T":%d,"m":true,"M":true}}'
)
#: Malformed frames a test can inject by name; each maps to a validation kind in the producer.
MALFORMED: dict[str, bytes] = {
    "malformed_json": b'{"stream":"btcusdt@trade","data":{"e":"trade",',
    "invalid_utf8": b'{"stream":"btcusdt@trade","data":{"e":"trade","s":"\xff\xfe"}}',
    "missing_field": b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT"}}',
    "unknown_event": b'{"stream":"btcusdt@avgPrice","data":{"e":"avgPrice","E":1,"s":"BTCUSDT"}}',
    "bad_value": (
        b'{"stream":"btcusdt@trade","data":{"e":"trade","E":%d,"s":"BTCUSDT","t":1,'
        b'"p":"NaN","q":"-1","T":%d,"m":true,"M":true}}'
    ),
    "oversize": b'{"stream":"btcusdt@trade","data":{"e":"trade","pad":"' + b"x" * 100_000 + b'"}}',
}


@dataclass(slots=True)
class EmulatorStats:
    connections: int = 0
    open_connections: int = 0
    control_messages: int = 0
    frames_sent: int = 0
    pongs_seen: int = 0  # connections on which the client answered our keepalive pings
    rejected_handshakes: int = 0
    #: time.monotonic() of every websocket handshake the server was asked for, refused or not.
    handshake_times: list[float] = field(default_factory=list)
    rate_limit_disconnects: int = 0
    slow_client_disconnects: int = 0
    paths: list[str] = field(default_factory=list)


@dataclass(eq=False, slots=True)
class _Client:
    ws: ServerConnection
    combined: bool
    streams: set[str]
    queue: asyncio.Queue[tuple[bytes, bool]]
    opened: float
    stalled: bool = False
    control_times: deque[float] = field(default_factory=deque)


def _split_stream(stream: str) -> tuple[str, str]:
    sym, _, kind = stream.partition("@")
    return sym, kind


class BinanceEmulator:
    """Run with ``async with BinanceEmulator(...) as emu`` or ``with emulator_thread(...)``."""

    def __init__(
        self,
        *,
        symbols: tuple[str, ...] = ("btcusdt", "ethusdt"),
        rate: float = 200.0,
        seed: int = 1,
        recording: Path | None = None,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 60.0,
        max_connection_age_s: float | None = None,
        shutdown_grace_s: float = 1.0,
        host: str = "127.0.0.1",
        port: int = 0,
        queue_frames: int = 50_000,
        speed: float = 1.0,
        loop: bool = False,
        rebase_granularity_ms: int | None = 1000,
    ) -> None:
        self.symbols = tuple(s.lower() for s in symbols)
        self.rate, self.seed, self.recording = rate, seed, recording
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
        self.max_connection_age_s = max_connection_age_s
        self.shutdown_grace_s = shutdown_grace_s
        self.host, self.port = host, port
        self.queue_frames = queue_frames
        self.speed, self.loop = speed, loop
        self.rebase_granularity_ms = rebase_granularity_ms
        #: ms added to recorded timestamps (set when the replay starts)
        self.rebase_offset_ms = 0
        self.replay_done = False
        self.depth = EmulatedDepth(self.symbols, seed, synthetic=recording is None)
        #: a REST snapshot asked for before the recording replayed one waits this long for it
        self.rest_wait_s = 3.0
        self.stats = EmulatorStats()
        self.clients: set[_Client] = set()
        self._server: Server | None = None
        self._feeder: asyncio.Task[None] | None = None
        self._depth_feeder: asyncio.Task[None] | None = None
        self._subscribed: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        #: (handshakes still to refuse, HTTP status, Retry-After seconds or None)
        self._refusing: tuple[int, int, int | None] = (0, 0, None)
        self._refusing_rest: tuple[int, int, int | None] = (0, 0, None)

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> BinanceEmulator:
        self._loop = asyncio.get_running_loop()
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._check_request,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            compression=None,
            max_size=65_536,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._subscribed = asyncio.Event()
        if self.recording is not None:
            self._feeder = asyncio.create_task(self._replay())
        else:
            self._feeder = asyncio.create_task(self._feed())
            self._depth_feeder = asyncio.create_task(self._feed_depth())
        return self

    async def stop(self) -> None:
        for task in (self._feeder, self._depth_feeder):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5.0)

    async def __aenter__(self) -> BinanceEmulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- faults (safe from any thread) -----------------------------------------------------
    def _call(self, fn: Any, *args: Any) -> None:
        assert self._loop is not None, "emulator not started"
        self._loop.call_soon_threadsafe(fn, *args)

    def drop_connections(self) -> None:
        """Abort every open TCP connection without a close frame (a network failure)."""
        self._call(lambda: [c.ws.transport.abort() for c in list(self.clients)])

    def send_raw(self, frame: bytes | str) -> None:
        """Send one frame (as a text frame, even if it is not valid UTF-8) to every client."""
        raw = frame.encode() if isinstance(frame, str) else frame
        if b"%d" in raw:
            now = time.time_ns() // 1_000_000
            raw = raw.replace(b"%d", str(now).encode())
        self._call(self._broadcast_all, raw)

    def send_malformed(self, kind: str) -> None:
        self.send_raw(MALFORMED[kind])

    def server_shutdown(self) -> None:
        """Announce ``serverShutdown`` on every connection, close them after the grace time."""
        self._call(self._shutdown_all)

    def refuse_handshakes(
        self, count: int, status: int = 429, retry_after_s: int | None = None
    ) -> None:
        """Answer the next ``count`` handshakes with ``status`` instead of upgrading: Binance
        sends 429 when connection attempts exceed its limit and 418 once the IP is banned, with
        ``Retry-After`` in seconds."""
        self._call(setattr, self, "_refusing", (count, status, retry_after_s))

    def refuse_rest(self, count: int, status: int = 429, retry_after_s: int | None = None) -> None:
        """Answer the next ``count`` REST requests with ``status`` (Binance: 429, then 418)."""
        self._call(setattr, self, "_refusing_rest", (count, status, retry_after_s))

    def lose_depth_diffs(self, symbol: str | None = None, frames: int = 1) -> None:
        """Do not send the next ``frames`` diff frames (of ``symbol`` or every symbol) while the
        books move on: a client sees the next ``U`` beyond its ``u + 1``, as after lost frames."""
        self._call(self.depth.lose_diffs, symbol, frames)

    def freeze_depth(self, frozen: bool = True) -> None:
        """Stop (or restart) the synthetic books' changes."""
        self._call(self.depth.freeze, frozen)

    def depth_book(self, symbol: str) -> tuple[int, dict[float, float], dict[float, float]]:
        """(lastUpdateId, bids, asks) of the emulator's own book, read on its event loop."""
        assert self._loop is not None, "emulator not started"

        async def read() -> tuple[int, dict[float, float], dict[float, float]]:
            return self.depth.levels(symbol)

        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            return self.depth.levels(symbol)
        return asyncio.run_coroutine_threadsafe(read(), self._loop).result(10)

    def stall(self) -> None:
        """Stop sending data on current connections; sockets stay open and answer pings."""
        self._call(lambda: [setattr(c, "stalled", True) for c in self.clients])

    # -- internals -------------------------------------------------------------------------
    def _broadcast_all(self, raw: bytes) -> None:
        for c in list(self.clients):
            self._enqueue(c, raw, True)

    def _shutdown_all(self) -> None:
        msg = orjson.dumps({"e": "serverShutdown", "E": time.time_ns() // 1_000_000})
        for c in list(self.clients):
            self._enqueue(c, msg, True)
            asyncio.get_running_loop().call_later(
                self.shutdown_grace_s, lambda ws=c.ws: self._background(ws.close(1001))
            )

    def _background(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _enqueue(self, c: _Client, raw: bytes, text: bool) -> None:
        if c.ws.state is not State.OPEN:
            return  # closing: a flat-out replay must not keep its close handshake waiting
        try:
            c.queue.put_nowait((raw, text))
        except asyncio.QueueFull:  # Binance disconnects consumers that fall behind
            self.stats.slow_client_disconnects += 1
            c.ws.transport.abort()

    def _valid_stream(self, stream: str) -> str | None:
        """None if valid, else why not."""
        sym, kind = _split_stream(stream)
        if sym not in self.symbols:
            return f"unknown symbol {sym!r} in stream {stream!r}"
        if kind not in MARKET_STREAM_TYPES and not is_depth_stream(kind):
            return f"unsupported stream type {kind!r}"
        return None

    def _parse_path(self, path: str) -> tuple[bool, list[str]]:
        parts = urlsplit(path)
        if parts.path.rstrip("/") == "/stream":
            raw = parse_qs(parts.query).get("streams", [""])[0]
            return True, [s for s in raw.split("/") if s]
        if parts.path.startswith("/ws"):
            return False, [s for s in parts.path[3:].split("/") if s]
        raise ValueError(f"unknown path {parts.path!r}; use /stream?streams= or /ws/<stream>")

    def _check_request(self, conn: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if parts.path == "/api/v3/depth":  # REST beside the streams, as plain HTTP
            return self._rest_depth(parse_qs(parts.query))  # a coroutine: websockets awaits it
        self.stats.paths.append(request.path)
        self.stats.handshake_times.append(time.monotonic())
        left, status, retry_after = self._refusing
        if left:
            self._refusing = (left - 1, status, retry_after)
            return self._reject(
                conn,
                http.HTTPStatus(status),
                -1003,
                "Way too many requests; IP banned until later." if status == 418
                else "Too many requests; please use the websocket for live updates.",
                retry_after_s=retry_after,
            )
        try:
            _, streams = self._parse_path(request.path)
        except ValueError as exc:
            return self._reject(conn, http.HTTPStatus.NOT_FOUND, 2, str(exc))
        if len(streams) > MAX_STREAMS:
            return self._reject(conn, http.HTTPStatus.BAD_REQUEST, 2, "too many streams")
        for s in streams:
            why = self._valid_stream(s)
            if why is not None:
                return self._reject(conn, http.HTTPStatus.BAD_REQUEST, 2, f"Invalid request: {why}")
        return None

    def _reject(
        self,
        conn: ServerConnection,
        status: http.HTTPStatus,
        code: int,
        msg: str,
        *,
        retry_after_s: int | None = None,
    ) -> Response:
        self.stats.rejected_handshakes += 1
        response = self._json_response(status.value, {"code": code, "msg": msg})
        if retry_after_s is not None:
            response.headers["Retry-After"] = str(retry_after_s)
        return response

    async def _rest_depth(self, query: dict[str, list[str]]) -> Response:
        """A replayed market only knows its book once a recorded snapshot was replayed: until
        then (at most ``rest_wait_s``) the answer waits, as a slow exchange would."""
        left, status, retry_after = self._refusing_rest
        if left:
            self._refusing_rest = (left - 1, status, retry_after)
            response = self._json_response(status, {"code": -1003, "msg": "Too many requests."})
            if retry_after is not None:
                response.headers["Retry-After"] = str(retry_after)
            return response
        symbol = (query.get("symbol") or [""])[0].lower()
        deadline = time.monotonic() + self.rest_wait_s
        while symbol in self.depth.books and symbol not in self.depth.known:
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.005)
        status, body = self.depth.rest_depth(query)
        return self._json_response(status, body)

    @staticmethod
    def _json_response(status: int, obj: object) -> Response:
        body = orjson.dumps(obj)
        headers = Headers({"Content-Type": "application/json", "Content-Length": str(len(body))})
        return Response(status, http.HTTPStatus(status).phrase, headers, body)

    async def _handle(self, ws: ServerConnection) -> None:
        combined, streams = self._parse_path(ws.request.path if ws.request else "/ws")
        client = _Client(
            ws, combined, set(streams), asyncio.Queue(self.queue_frames), time.monotonic()
        )
        self.clients.add(client)
        if client.streams and self._subscribed is not None:
            self._subscribed.set()
        self.stats.connections += 1
        self.stats.open_connections += 1
        sender = asyncio.create_task(self._send_loop(client))
        ager = None
        if self.max_connection_age_s:
            ager = asyncio.get_running_loop().call_later(
                self.max_connection_age_s, lambda: self._background(ws.close(1000))
            )
        try:
            async for message in ws:
                reply = self._control(client, message)
                if reply is None:
                    await ws.close(1008, "Too many requests")
                    break
                await ws.send(orjson.dumps(reply).decode())
        except ConnectionClosed:
            pass
        finally:
            if ws.latency > 0:
                self.stats.pongs_seen += 1
            if ager is not None:
                ager.cancel()
            self.clients.discard(client)
            self.stats.open_connections -= 1
            sender.cancel()
            with contextlib.suppress(BaseException):
                await sender

    async def _send_loop(self, c: _Client) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                raw, text = await c.queue.get()
                if c.stalled:
                    continue
                await c.ws.send(raw, text=text)
                self.stats.frames_sent += 1

    def _control(self, c: _Client, message: str | bytes) -> dict[str, Any] | None:
        """Answer one control message like Binance does; None = close the connection."""
        self.stats.control_messages += 1
        now = time.monotonic()
        c.control_times.append(now)
        while c.control_times and now - c.control_times[0] > 1.0:
            c.control_times.popleft()
        if len(c.control_times) > CONTROL_MESSAGES_PER_S:
            self.stats.rate_limit_disconnects += 1
            return None
        try:
            req = orjson.loads(message)
        except orjson.JSONDecodeError as exc:
            return {"code": 3, "msg": f"Invalid JSON: {exc}"}
        if not isinstance(req, dict):
            return {"code": 2, "msg": "Invalid request: expected an object"}
        rid = req.get("id")
        if not (type(rid) is int and rid >= 0) and not isinstance(rid, str):
            return {"code": 2, "msg": "Invalid request: request ID must be an unsigned integer"}
        method = req.get("method")
        params = req.get("params", [])
        if method == "LIST_SUBSCRIPTIONS":
            return {"result": sorted(c.streams), "id": rid}
        if method not in ("SUBSCRIBE", "UNSUBSCRIBE"):
            return {
                "code": 2,
                "msg": f"Invalid request: unknown variant {method!r}, expected one "
                "of SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS",
                "id": rid,
            }
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            return {"code": 1, "msg": "Invalid value type: expected array of strings", "id": rid}
        if method == "SUBSCRIBE":
            for p in params:
                why = self._valid_stream(p)
                if why is not None:
                    return {"code": 2, "msg": f"Invalid request: {why}", "id": rid}
            if len(c.streams | set(params)) > MAX_STREAMS:
                return {"code": 2, "msg": "Invalid request: too many streams", "id": rid}
            c.streams.update(params)
            if params and self._subscribed is not None:
                self._subscribed.set()
        else:
            c.streams.difference_update(params)
        return {"result": None, "id": rid}

    async def _feed(self) -> None:
        """Pace the synthetic market in real time and route each frame to subscribed clients."""
        market = EmulatedMarket(self.symbols, seed=self.seed,
                                start_ms=time.time_ns() // 1_000_000, rate=self.rate)
        loop = asyncio.get_running_loop()
        start = loop.time()
        first: int | None = None
        for at_ns, raw in market.frames():
            if first is None:
                first = at_ns
            delay = start + (at_ns - first) / 1e9 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self._route(raw)

    async def _feed_depth(self) -> None:
        """Move the books every 100 ms; a diff or partial frame goes to whoever wants it."""
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while True:
            next_tick += DEPTH_TICK_S
            await asyncio.sleep(max(next_tick - loop.time(), 0.0))
            wanted = {s for c in self.clients for s in c.streams}
            for stream, raw in self.depth.tick(time.time_ns() // 1_000_000, wanted):
                self._route_frame(stream, raw)

    async def _replay(self) -> None:
        """Replay the recording as it happened, from the moment a client has subscribed."""
        assert self.recording is not None and self._subscribed is not None
        frames = read_recording(self.recording)
        first = next(frames, None)
        if first is None:
            self.replay_done = True
            return
        await self._subscribed.wait()
        loop = asyncio.get_running_loop()
        start_ns = time.time_ns()
        granularity = self.rebase_granularity_ms
        if granularity:
            behind_ms = start_ns // 1_000_000 - first.recv_ns // 1_000_000
            self.rebase_offset_ms = behind_ms - behind_ms % granularity
        span_ns = 0
        while True:
            start = loop.time()
            for frame in itertools.chain([first], frames):
                span_ns = max(span_ns, frame.recv_ns - first.recv_ns)
                if self.speed > 0:
                    delay = start + (frame.recv_ns - first.recv_ns) / 1e9 / self.speed
                    if delay - loop.time() > 0:
                        await asyncio.sleep(delay - loop.time())
                else:
                    await self._wait_for_clients()
                stream, raw = self._recorded_frame(frame.raw)
                if raw is not None:
                    self._route_frame(stream, raw)
            if not self.loop:
                break
            step = granularity or 1
            self.rebase_offset_ms += (span_ns // 1_000_000 // step + 1) * step
            frames = read_recording(self.recording)
            first = next(frames)
        self.replay_done = True

    async def _wait_for_clients(self) -> None:
        """Flat out, but never faster than the clients take frames (Binance would cut them):
        a turn of the event loop per frame, and a pause while any client has a backlog."""
        await asyncio.sleep(0)
        while any(c.queue.qsize() > MAX_BACKLOG_FLAT_OUT for c in self.clients):
            await asyncio.sleep(0.001)

    def _recorded_frame(self, text: str | bytes) -> tuple[str, bytes | None]:
        """(stream, bytes to send, or None for a recorded REST snapshot), time fields rebased."""
        if isinstance(text, bytes):  # recorded as received because it is not UTF-8: as it was
            return _stream_name(text.decode("utf-8", "replace")), text
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError:
            return _stream_name(text), text.encode()  # a bad frame is replayed as it was
        if not isinstance(obj, dict):
            return "", text.encode()
        data = obj.get("data") if "stream" in obj else obj
        stream = obj.get("stream") if isinstance(obj.get("stream"), str) else ""
        if not isinstance(data, dict):
            return stream, text.encode()
        if stream and not self.depth.apply_recorded(stream, data):
            return stream, None
        offset = self.rebase_offset_ms
        if offset:
            event = data.get("e")
            for name in _TIME_FIELDS.get(event, ("E",)) if isinstance(event, str) else ("E",):
                if type(data.get(name)) is int:
                    data[name] += offset
            kline = data.get("k") if event == "kline" else None
            if isinstance(kline, dict):
                for name in ("t", "T"):
                    if type(kline.get(name)) is int:
                        kline[name] += offset
            return stream, orjson.dumps(obj)
        return stream, text.encode()

    def _route(self, raw: str) -> None:
        if self.clients:
            self._route_frame(_stream_name(raw), raw.encode())

    def _route_frame(self, stream: str, combined: bytes) -> None:
        payload: bytes | None = None
        for c in list(self.clients):
            if stream not in c.streams:
                continue
            if c.combined or not stream:
                self._enqueue(c, combined, True)
            else:
                if payload is None:
                    payload = combined[combined.index(b'"data":') + 7 : -1]
                self._enqueue(c, payload, True)


def _stream_name(raw: str) -> str:
    end = raw.find('"', 11)
    return raw[11:end] if raw.startswith('{"stream":"') and end > 0 else ""


@contextlib.contextmanager
def emulator_thread(**kwargs: Any) -> Iterator[BinanceEmulator]:
    """Run an emulator on its own event loop in a daemon thread (for sync tests and CLIs)."""
    emu = BinanceEmulator(**kwargs)
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    errors: list[BaseException] = []

    async def main() -> None:
        try:
            await emu.start()
        except BaseException as exc:
            errors.append(exc)
            ready.set()
            return
        ready.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
        await emu.stop()

    thread = threading.Thread(target=lambda: loop.run_until_complete(main_task()), daemon=True)
    task_box: list[asyncio.Task[None]] = []

    async def main_task() -> None:
        task_box.append(asyncio.current_task())  # type: ignore[arg-type]
        await main()

    thread.start()
    ready.wait(10)
    if errors:
        raise errors[0]
    try:
        yield emu
    finally:
        if task_box:
            loop.call_soon_threadsafe(task_box[0].cancel)
        thread.join(10)
        loop.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m emulators.binance", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9443)
    parser.add_argument("--symbols", default="btcusdt,ethusdt")
    parser.add_argument("--rate", type=float, default=200.0, help="trades/s across symbols")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--recording", type=Path, help="replay this recording as it happened")
    parser.add_argument("--speed", type=float, default=1.0, help="replay pace (0 = max)")
    parser.add_argument("--loop", action="store_true", help="repeat the recording")
    parser.add_argument("--ping-interval", type=float, default=20.0)
    parser.add_argument("--max-connection-age", type=float, default=24 * 3600.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    emu = BinanceEmulator(
        symbols=tuple(s for s in args.symbols.split(",") if s),
        rate=args.rate,
        seed=args.seed,
        recording=args.recording,
        speed=args.speed,
        loop=args.loop,
        ping_interval=args.ping_interval,
        max_connection_age_s=args.max_connection_age,
        host=args.host,
        port=args.port,
    )

    async def serve_forever() -> None:
        await emu.start()
        print(
            f"Binance emulator on {emu.url} (try {emu.url}/stream?streams=btcusdt@trade)",
            flush=True,
        )
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever())


if __name__ == "__main__":
    main()

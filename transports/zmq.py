"""ZeroMQ backend (pyzmq): PUSH/PULL for load-balanced workers, PUB/SUB for fan-out.

    zmq+tcp://127.0.0.1:5555?pattern=pushpull&bind=publisher&hwm=100000
    zmq+ipc:///tmp/harness.sock      zmq+inproc://name

Envelopes of one topic share a frame only when they are handed over together: ``batch=N``
(default 16) is the most envelopes per frame, and with the default ``batch_linger_ms=0`` no
message is ever held back for one. ``publish`` sends its message at once, alone; ``publish_many``
(an unpaced replay or generator hands over hundreds of messages at a time) packs its messages
per topic into frames of up to N envelopes and sends them before it returns, so the packing
adds no waiting, only the encoding of the frame's other envelopes. ``batch=1`` sends one frame
per message whatever the caller does (one send per message is ~4x faster than send_multipart
here). ``batch_linger_ms=M`` (M > 0) also batches single publishes, the way Kafka's linger does:
a batch goes out when full, on ``flush()``/``close()``, or at the latest M ms after its first
envelope (a linger thread sends it, so an idle producer's last messages are not stranded). That
batching is adaptive: an envelope published when nothing is pending and no frame went out for
M ms is sent at once, alone, so a producer slower than one message per linger pays no latency;
only messages that arrive while others wait are batched, and they wait at most M ms (that one
send never blocks: with no peer or a full pipe the envelope is batched instead). A batch is
validated and delivered or rejected as a whole; every envelope in it keeps its own sequence
number, so a lost batch counts as that many lost messages. Subscribers read both frame kinds
whatever their own URL says. Batching moves the per-frame costs (recv, send, syscalls) off the
per-message path: see ``benchmarks/test_bench_zmq.py`` for what it buys.

``bind`` says which side binds: ``publisher`` (default; subscribers
connect) or ``subscriber`` (several producers can connect and fan in to one processor). The bind
address is the URL host: the harness defaults use 127.0.0.1; ``*`` or ``0.0.0.0`` exposes the
socket on every interface and is the user's explicit choice (a connecting side given a wildcard
host connects to 127.0.0.1).

Why these defaults (figures.md): PUB/SUB with libzmq's default HWM of 1000 dropped 44-95 % under
a slow receiver, and HWM 0 (unbounded) lets memory grow without limit. ``hwm=100000`` frames
(~20 MB of 200-byte single-message frames per pipe) absorbs ~0.1 s at 1 M msg/s, or the worst
Binance burst (735 trades in one millisecond) a hundred times over, while staying bounded. libzmq
counts frames, not envelopes: when an unpaced replay's frames are packed, a full pipe holds up to
``batch`` times as many envelopes (~320 MB of 200-byte trades at the defaults; ``batch=1`` or a
lower ``hwm`` bounds it tighter). For PUSH/PULL the
HWM is the back-pressure point: a full pipe blocks ``publish`` (``send_timeout_ms`` turns an
endless block into a ``TransportError``; that message's sequence number then shows up as lost).
``linger_ms=1000`` bounds how long close() keeps trying to deliver queued messages.

With ``pattern=pubsub&bind=subscriber`` the binding SUB hands its subscriptions to a newly
connected publisher only while the SUB is being polled (libzmq issue #2267), so a publisher's
``wait_subscribers`` succeeds only if the subscriber process is already polling.

Receiving: PUB/SUB filters in libzmq by the prefix ``topic + b"\\0"``; PUSH/PULL cannot filter,
so a frame for a topic this subscriber did not ask for is a valid frame for another consumer: it
is counted in ``skipped_other_topics``, not rejected. Frames that are not envelopes (foreign
senders, truncation, invalid UTF-8, multipart messages) are rejected with a kind, counted and
kept for the dead-letter store. A multipart message is recognised when one of its parts fails to
decode (the rest of it is then rejected as one ``multipart`` item): reading RCVMORE for every
frame would cost more than the receive itself, and a part that happens to be a valid envelope is
accepted like any other valid envelope. Oversize: libzmq's MAXMSGSIZE would silently disconnect the
sender, so by default it is off and a frame whose value exceeds ``max_message_bytes`` is received
and rejected as ``oversize`` (its first 4 KiB kept). ``max_frame_bytes`` sets MAXMSGSIZE as a
hard memory guard for hostile networks; frames over it are then NOT counted (libzmq drops the
connection); the sender's lost messages still show up as sequence gaps.

Not durable, not replayable: ``commit()`` is a no-op and ``seek()`` raises. ``flush()`` cannot
confirm delivery (libzmq has no such call); ``close()`` gives queued messages ``linger_ms``.
CURVE security: see ``transports.zmq_curve``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import zmq

from transports.base import (
    CLOSE_TIMEOUT_S,
    DEFAULT_MAX_MESSAGE_BYTES,
    Capabilities,
    Envelope,
    Headers,
    Message,
    Positions,
    Publisher,
    PublishInterrupted,
    RejectedMessage,
    Subscriber,
    Transport,
    TransportClosedError,
    TransportError,
    TransportOptionError,
)
from transports.framing import (
    CODEC,
    BatchEncoder,
    FrameError,
    decode_into,
    encode_frame,
    receive_into,
)
from transports.url import Option, choice, integer, option_table, parse_url, text
from transports.zmq_curve import CurveConfig, ZapGuard, apply_client, apply_server
from transports.zmq_curve import load_curve_config as _load_curve_config

log = logging.getLogger("transports.zmq")

DEFAULT_HWM = 100_000
#: Envelopes per frame at most. Packing more saves little (the per-frame costs are already a
#: sixteenth) while a pipe's ``hwm`` counts frames, so this multiplies what it can hold.
DEFAULT_BATCH = 16
#: How long one blocked send waits before asking the publisher's ``interrupt`` again.
SEND_SLICE_MS = 200
#: A batch frame is sent once it holds this many bytes, whatever ``batch`` says, so frames stay
#: bounded when values are large (a batch ends at most one envelope past it).
BATCH_FRAME_BYTES = 256 * 1024
#: How much of an oversize or multipart frame is kept for the dead-letter store.
KEPT_RAW_BYTES = 4096
_WILDCARD_HOSTS = {"*", "0.0.0.0", "::", "[::]"}


_INT_MAX = 2**31 - 1
_COUNT = integer(0, _INT_MAX)
OPTIONS = option_table(
    Option("pattern", choice("pushpull", "pubsub"), "pushpull",
           "pushpull = load-balanced workers with back-pressure; pubsub = fan-out, drops at HWM"),
    Option("bind", choice("publisher", "subscriber"), "publisher",
           "which side binds; the other connects (subscriber = several producers fan in)"),
    Option("hwm", _COUNT, DEFAULT_HWM,
           "send and receive high-water mark in frames (packed ones too); 0 = unbounded"),
    Option("sndhwm", _COUNT, None, "send HWM override"),
    Option("rcvhwm", _COUNT, None, "receive HWM override"),
    Option("linger_ms", integer(0, 60_000), 1000, "how long close() may deliver queued messages"),
    Option("reconnect_ivl_ms", integer(1, 60_000), 100, "first reconnect delay"),
    Option("reconnect_ivl_max_ms", integer(0, 600_000), 2000,
           "reconnect backoff cap (0 = no backoff)"),
    Option("max_message_bytes", _COUNT, DEFAULT_MAX_MESSAGE_BYTES,
           "largest value accepted by publish() and by the subscriber (else 'oversize')"),
    Option("max_frame_bytes", _COUNT, 0,
           "libzmq MAXMSGSIZE hard guard (0 = off); over it the peer is disconnected, uncounted"),
    Option("sndbuf", _COUNT, 0, "kernel send buffer bytes (0 = OS default)"),
    Option("rcvbuf", _COUNT, 0, "kernel receive buffer bytes (0 = OS default)"),
    Option("send_timeout_ms", integer(-1, _INT_MAX), -1,
           "-1 = publish blocks at a full HWM (back-pressure); else raise after this long"),
    Option("batch", integer(1, 100_000), DEFAULT_BATCH,
           "publisher: up to this many envelopes of one topic per frame (1 = one per frame)"),
    Option("batch_linger_ms", integer(0, 60_000), 0,
           "publisher with batch>1: longest an envelope waits for its batch to fill (0 = never: "
           "only messages handed over together by publish_many share frames)"),
    Option("wait_subscribers", integer(0, 10_000), 0,
           "pubsub: before the first send on a topic wait for this many subscriptions to it"),
    Option("connect_timeout_ms", integer(0, 600_000), 5000,
           "how long wait_subscribers waits before sending anyway (with a warning)"),
    Option("curve_server_public", text(), "", "CURVE server public key (file or z85)"),
    Option("curve_server_secret", text(), "", "CURVE server secret key (file or z85)",
           secret=True),
    Option("curve_client_public", text(), "", "CURVE client public key (file or z85)"),
    Option("curve_client_secret", text(), "", "CURVE client secret key (file or z85)",
           secret=True),
    Option("curve_allowed_clients", text(), "",
           "client public keys the binding side admits: key dir, comma list, or *"),
)


class _Context:
    """One zmq.Context.instance() per process (inproc needs a shared context), terminated with
    a bounded wait when the last transport using it closes, so queued messages get ``linger``."""

    _lock = threading.Lock()
    _users = 0

    @classmethod
    def acquire(cls) -> zmq.Context[Any]:
        with cls._lock:
            cls._users += 1
            return zmq.Context.instance()

    @classmethod
    def release(cls, wait_s: float) -> None:
        with cls._lock:
            cls._users -= 1
            if cls._users:
                return
            ctx = zmq.Context.instance()
            closer = threading.Thread(target=ctx.term, name="zmq-context-term", daemon=True)
            closer.start()
            closer.join(wait_s)
            if closer.is_alive():
                log.warning(
                    "zmq context still terminating after %.1f s (sockets left open)", wait_s
                )


class ZmqTransport(Transport):
    """Factory for ZeroMQ publishers/subscribers; ``context`` lets tests own (and check) one."""

    def __init__(self, url: str, *, context: zmq.Context[Any] | None = None) -> None:
        parsed = parse_url(url, OPTIONS)
        self.options = opts = dict(parsed.options)
        self.display_url = parsed.display_url
        kind = parsed.scheme.removeprefix("zmq+")
        self.kind = kind
        self.pattern: str = opts["pattern"]
        self.endpoint = _endpoint(kind, parsed.netloc, parsed.path, url=self.display_url)
        if opts["wait_subscribers"] and self.pattern != "pubsub":
            raise TransportOptionError("wait_subscribers only applies to pattern=pubsub")
        largest_batch = BATCH_FRAME_BYTES + opts["max_message_bytes"] + 64 * 1024
        if opts["batch"] > 1 and 0 < opts["max_frame_bytes"] < largest_batch:
            raise TransportOptionError(
                f"batch frames can reach {largest_batch} bytes (256 KiB + max_message_bytes + "
                f"key/headers); max_frame_bytes={opts['max_frame_bytes']} would make libzmq drop "
                "the connection: raise it, lower max_message_bytes or set batch=1"
            )
        self.curve: CurveConfig | None = _load_curve_config(opts)
        pubsub = self.pattern == "pubsub"
        self.capabilities = Capabilities(
            durable=False,
            replayable=False,
            ordered_per_key=not pubsub,  # per connection; one producer -> one consumer pipe
            load_balanced=not pubsub,
            fan_out=pubsub,
            drops_when_slow=pubsub,
        )
        self.identity = (
            f"pyzmq {zmq.__version__} / libzmq {zmq.zmq_version()} / {CODEC} codec"
            f" {self.pattern} {kind}"
            + (" curve" if self.curve else "")
        )
        self._owns_context = context is None
        self.context = context if context is not None else _Context.acquire()
        self._closed = False
        #: Clients refused by the ZAP handler on this transport's binding sockets.
        self._allow_lists: list[Any] = []

    @property
    def curve_denied(self) -> int:
        return sum(a.denied for a in self._allow_lists)

    # -- socket construction ---------------------------------------------------------------
    def _socket(self, socket_type: int, binds: bool) -> tuple[zmq.Socket[Any], str | None]:
        if self._closed:
            raise TransportClosedError("transport is closed")
        opts = self.options
        sock: zmq.Socket[Any] = self.context.socket(socket_type)
        hwm = opts["hwm"]
        sock.sndhwm = hwm if opts["sndhwm"] is None else opts["sndhwm"]
        sock.rcvhwm = hwm if opts["rcvhwm"] is None else opts["rcvhwm"]
        sock.linger = opts["linger_ms"]
        sock.reconnect_ivl = opts["reconnect_ivl_ms"]
        sock.reconnect_ivl_max = opts["reconnect_ivl_max_ms"]
        sock.sndtimeo = opts["send_timeout_ms"]
        if opts["max_frame_bytes"]:
            sock.maxmsgsize = opts["max_frame_bytes"]
        if opts["sndbuf"]:
            sock.sndbuf = opts["sndbuf"]
        if opts["rcvbuf"]:
            sock.rcvbuf = opts["rcvbuf"]
        if socket_type == zmq.XPUB:
            sock.xpub_verbose = True  # see every subscriber's subscription, not just the first
        domain = None
        try:
            if self.curve is not None:
                if binds:
                    domain, allow = apply_server(sock, self.curve, self.context)
                    self._allow_lists.append(allow)
                else:
                    apply_client(sock, self.curve)
            if binds:
                sock.bind(self.endpoint)
            else:
                sock.connect(_connect_endpoint(self.endpoint))
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            if domain:
                ZapGuard.release(self.context, domain)
            verb = "bind" if binds else "connect"
            raise TransportError(f"cannot {verb} {self.display_url}: {exc}") from None
        except TransportError:
            sock.close(linger=0)
            if domain:
                ZapGuard.release(self.context, domain)
            raise
        return sock, domain

    def publisher(self, producer_id: str | None = None) -> ZmqPublisher:
        binds = self.options["bind"] == "publisher"
        sock_type = zmq.XPUB if self.pattern == "pubsub" else zmq.PUSH
        sock, domain = self._socket(sock_type, binds)
        return ZmqPublisher(self, sock, domain, producer_id)

    def subscriber(
        self,
        topics: Sequence[str],
        *,
        group: str | None = None,
        start: str | Positions = "earliest",
    ) -> ZmqSubscriber:
        """``group`` is ignored: the pattern decides whether subscribers share work."""
        if not topics:
            raise TransportError("subscribe to at least one topic")
        if isinstance(start, Mapping):
            raise TransportError("ZeroMQ cannot replay; start from stored positions is impossible")
        prefixes = [_topic_prefix(topic) for topic in topics]  # validate before any socket
        binds = self.options["bind"] == "subscriber"
        sock_type = zmq.SUB if self.pattern == "pubsub" else zmq.PULL
        sock, domain = self._socket(sock_type, binds)
        if sock_type == zmq.SUB:
            for prefix in prefixes:
                sock.subscribe(prefix)
        return ZmqSubscriber(self, sock, domain, list(topics))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_context:
            _Context.release(self.options["linger_ms"] / 1000 + 2.0)


def _topic_prefix(topic: str) -> bytes:
    raw = topic.encode()
    if b"\x00" in raw:
        raise TransportError(f"topic {topic!r} contains a NUL byte (it ends the topic on the wire)")
    return raw + b"\x00"


def _endpoint(kind: str, netloc: str, path: str, *, url: str) -> str:
    if kind == "tcp":
        host, sep, port = netloc.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise TransportOptionError(f"{url}: expected zmq+tcp://host:port with a port 1-65535")
        return f"tcp://{host}:{port}"
    target = netloc + path
    if not target:
        raise TransportOptionError(f"{url}: expected a name, e.g. zmq+{kind}://name")
    return f"{kind}://{target}"


def _connect_endpoint(endpoint: str) -> str:
    if endpoint.startswith("tcp://"):
        host, _, port = endpoint[6:].rpartition(":")
        if host in _WILDCARD_HOSTS:
            return f"tcp://127.0.0.1:{port}"
    return endpoint


class ZmqPublisher(Publisher):
    def __init__(
        self,
        transport: ZmqTransport,
        sock: zmq.Socket[Any],
        domain: str | None,
        producer_id: str | None,
    ) -> None:
        super().__init__(producer_id, transport.options["max_message_bytes"])
        self._transport = transport
        self._sock = sock
        self._domain = domain
        self._send_frame = sock.send
        self._wait_for = transport.options["wait_subscribers"]
        self._wait_s = transport.options["connect_timeout_ms"] / 1000
        self._is_xpub = transport.pattern == "pubsub"
        self._subscriptions: dict[bytes, int] = {}
        self._ready: set[str] = set()
        self._checked: set[str] = set()
        batch, linger_ms = transport.options["batch"], transport.options["batch_linger_ms"]
        #: Envelopes per frame for ``publish_many`` without a linger (1 = one frame each).
        self._pack = batch if linger_ms == 0 else 1
        self._batcher: _Batcher | None = None
        if batch > 1 and linger_ms > 0:
            self._batcher = _Batcher(self, batch, linger_ms)
        #: Not closed: ``publish`` may take its flattened path.
        self._open = True
        #: ``send_timeout_ms=-1`` (back-pressure): a blocked send waits in slices of
        #: ``SEND_SLICE_MS``, asking ``interrupt`` between them, so a producer whose PUSH socket
        #: has no peer still stops at its duration or on a signal.
        self._wait_forever = transport.options["send_timeout_ms"] < 0
        if self._wait_forever:
            sock.sndtimeo = SEND_SLICE_MS

    def publish(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: Headers = (),
        event_time_ns: int = 0,
    ) -> int:
        """``Publisher.publish``, flattened for the hot case (a topic already checked, a value
        within the limit): one Python call around the codec and the send (or the batch),
        because each extra call level cost ~10 % of ZeroMQ's throughput. Everything else (first
        message on a topic, oversize, closed) takes the general path."""
        if self._open and topic in self._checked and len(value) <= self.max_message_bytes:
            next_seq = self._next_seq
            seq = next_seq[topic]
            next_seq[topic] = seq + 1
            batcher = self._batcher
            if batcher is None:
                frame = encode_frame(
                    topic, value, key, headers, self.producer_id, seq, event_time_ns, time.time_ns()
                )
                try:
                    self._send_frame(frame)
                except zmq.ZMQError as exc:
                    self._send_blocked_or_release(topic, frame, exc, seq)
            else:
                batcher.add(topic, value, key, headers, seq, event_time_ns, time.time_ns())
            self.published += 1
            return seq
        return Publisher.publish(
            self, topic, value, key=key, headers=headers, event_time_ns=event_time_ns
        )

    def publish_many(self, messages: Sequence[Message]) -> None:
        """``Publisher.publish_many``: packed into frames of up to ``batch`` envelopes per
        topic (``_publish_packed``); with a linger the messages go straight into the pending
        batches under one lock hold (a ``publish`` per message costs twice as much); with
        ``batch=1`` each is encoded and sent in this one loop (``publish``'s hot case, a call
        level less per message). Topics not yet checked take the general path."""
        if not self._open or not self._checked.issuperset([m[0] for m in messages]):
            Publisher.publish_many(self, messages)
            return
        self._check_sizes(messages)
        if self._pack > 1:
            self._publish_packed(messages)
            return
        batcher = self._batcher
        if batcher is not None:
            batcher.add_many(messages, self._next_seq)  # counts each in ``published`` as added
            return
        next_seq, producer_id, send = self._next_seq, self.producer_id, self._send_frame
        for topic, key, value, event_time_ns, headers in messages:
            seq = next_seq[topic]
            frame = encode_frame(
                topic, value, key, headers, producer_id, seq, event_time_ns, time.time_ns()
            )
            next_seq[topic] = seq + 1
            try:
                send(frame)
            except zmq.ZMQError as exc:
                self._send_blocked_or_release(topic, frame, exc, seq)
            self.published += 1

    def _publish_packed(self, messages: Sequence[Message]) -> None:
        """Pack ``messages`` per topic into frames of up to ``batch`` envelopes (and at most
        ``BATCH_FRAME_BYTES``) and send every frame before returning: nothing waits for a
        later call. A message is counted in ``published`` when its frame is sent. Numbers stay
        exact: a key too long to encode fails that message only, after the ones before it are
        sent (as one by one); a stop or an error leaves the numbers of frames never sent free
        again, and a frame whose send failed shows up as lost, as one message does."""
        size, producer_id, clock = self._pack, self.producer_id, time.time_ns
        next_seq = self._next_seq
        packs: dict[str, BatchEncoder] = {}  # not sent yet
        try:
            try:
                for topic, key, value, event_time_ns, headers in messages:
                    pack = packs.get(topic)
                    if pack is None:
                        pack = packs[topic] = BatchEncoder(topic, producer_id, next_seq[topic])
                    seq = next_seq[topic]
                    pack.add(value, key, headers, seq, event_time_ns, clock())
                    next_seq[topic] = seq + 1
                    if pack.count >= size or pack.size >= BATCH_FRAME_BYTES:
                        self._send_pack(topic, packs.pop(topic))
            except ValueError:  # a key or header too long to encode: the ones before it go out
                self._send_packs(packs)
                raise
            self._send_packs(packs)
        except BaseException:
            for topic, pack in packs.items():  # never sent: their numbers are free again
                next_seq[topic] = pack.first_seq
            raise

    def _send_packs(self, packs: dict[str, BatchEncoder]) -> None:
        """Send every pack in order, each taken out of ``packs`` before its send."""
        while packs:
            topic = next(iter(packs))
            self._send_pack(topic, packs.pop(topic))

    def _send_pack(self, topic: str, pack: BatchEncoder) -> None:
        if pack.count == 0:  # its only message failed to encode
            return
        frame = pack.frame()
        try:
            self._send_frame(frame)
        except zmq.ZMQError as exc:
            self._send_blocked_or_release(topic, frame, exc, pack.first_seq)
        self.published += pack.count

    def _send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: Headers,
        seq: int,
        event_time_ns: int,
        publish_time_ns: int,
    ) -> None:
        if topic not in self._checked:
            if self._batcher is not None:
                with self._batcher.lock:  # the linger thread may be sending right now
                    self._check_topic(topic)
            else:
                self._check_topic(topic)
        if self._batcher is not None:
            self._batcher.add(topic, value, key, headers, seq, event_time_ns, publish_time_ns)
            return
        self._send_wire(
            topic,
            encode_frame(
                topic, value, key, headers, self.producer_id, seq, event_time_ns, publish_time_ns
            ),
        )

    def _check_topic(self, topic: str) -> None:
        _topic_prefix(topic)
        self._checked.add(topic)
        if self._wait_for:
            self._await_subscribers(topic)

    def _send_wire(self, topic: str, frame: bytes) -> None:
        try:
            self._send_frame(frame)
        except zmq.ZMQError as exc:
            self._send_blocked(topic, frame, exc)

    def _send_blocked_or_release(
        self, topic: str, frame: bytes, exc: zmq.ZMQError, seq: int
    ) -> None:
        """``_send_blocked`` for a frame numbered ``seq``; a send given up on stop frees the
        number again (nothing went out), so the next message takes it."""
        try:
            self._send_blocked(topic, frame, exc)
        except PublishInterrupted:
            self._next_seq[topic] = seq
            raise

    def _send_blocked(self, topic: str, frame: bytes, exc: zmq.ZMQError) -> None:
        """A send that did not go out within its slice: wait on (back-pressure) unless a
        ``send_timeout_ms`` was set or ``interrupt`` says stop."""
        while self._wait_forever and isinstance(exc, zmq.Again):
            interrupt = self.interrupt
            if interrupt is not None and interrupt():
                raise PublishInterrupted(
                    f"publish on {topic!r} given up on stop: no receiver took it "
                    "(a PUSH socket without a peer, or a full high-water mark)"
                )
            try:
                self._send_frame(frame)
                return
            except zmq.ZMQError as again:
                exc = again
        raise self._send_error(topic, exc) from None

    def end_streams(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """``Publisher.end_streams``; on PUB/SUB sent three times, since PUB drops at its HWM
        (receivers apply a repeated announcement once)."""
        super().end_streams(timeout)
        if self._is_xpub and any(self._next_seq.values()):
            for _ in range(2):
                time.sleep(0.05)
                super().end_streams(timeout)

    def _send_error(self, topic: str, exc: zmq.ZMQError) -> TransportError:
        if isinstance(exc, zmq.Again):
            return TransportError(
                f"send on {topic!r} timed out after {self._transport.options['send_timeout_ms']} "
                "ms: high-water mark full (receiver stalled or absent)"
            )
        return TransportError(f"send on {topic!r} failed: {exc}")

    def _read_subscriptions(self, timeout_ms: int) -> None:
        """Count XPUB (un)subscribe messages: byte 1 = subscribe, 0 = unsubscribe."""
        sock = self._sock
        if not sock.poll(timeout_ms, zmq.POLLIN):
            return
        while True:
            try:
                msg = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if msg:
                delta = 1 if msg[0] == 1 else -1 if msg[0] == 0 else 0
                prefix = msg[1:]
                self._subscriptions[prefix] = self._subscriptions.get(prefix, 0) + delta

    def subscribers_for(self, topic: str) -> int:
        """Subscriptions seen so far that match ``topic`` (one per subscribing socket)."""
        wire = _topic_prefix(topic)
        return sum(n for prefix, n in self._subscriptions.items() if wire.startswith(prefix))

    def _await_subscribers(self, topic: str) -> None:
        """Avoid the slow-joiner loss: what is sent before a subscription arrives is lost."""
        deadline = time.monotonic() + self._wait_s
        while self.subscribers_for(topic) < self._wait_for:
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning(
                    "only %d of %d subscribers on %r after %.1f s; sending anyway",
                    self.subscribers_for(topic),
                    self._wait_for,
                    topic,
                    self._wait_s,
                )
                return
            self._read_subscriptions(max(1, int(left * 1000)))

    def flush(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """libzmq sends asynchronously and cannot confirm delivery; close() lingers instead."""
        if self._closed:
            raise TransportClosedError("flush() after close()")
        if self._batcher is not None:
            with self._batcher.lock:
                self._batcher.flush()
                if self._is_xpub:
                    self._read_subscriptions(0)
        elif self._is_xpub:
            self._read_subscriptions(0)

    def _close(self, timeout: float) -> None:
        self._open = False
        self._wait_forever = False
        if self._batcher is not None:
            # The last batches get ``timeout`` to be queued (no peer / full HWM would otherwise
            # block close() for ever); what cannot be queued is logged and shows up as lost.
            with self._batcher.lock:
                self._sock.sndtimeo = max(0, int(timeout * 1000))
            self._batcher.close(timeout)
        linger = min(self._transport.options["linger_ms"], int(timeout * 1000))
        self._sock.close(linger=linger)
        if self._domain:
            ZapGuard.release(self._transport.context, self._domain)


class _Batcher:
    """Collects envelopes per topic into batch frames for ``batch=N``.

    Adaptive: an envelope that finds nothing pending, a linger after the last frame sent, goes
    out at once as a single frame (a slow trickle is never delayed); the ones that follow within
    a linger are batched.

    A batch is sent when it holds N envelopes, on ``flush()``/``close()``, and at the latest
    ``batch_linger_ms`` after its oldest envelope was added: a daemon thread sleeps until then, so
    delivery never depends on the caller publishing again. That deadline is the latency cost of
    batching (the first envelope of a slow trickle waits up to ``batch_linger_ms``, plus the
    sleep's ~0.1 ms granularity). The thread and ``publish`` share the socket under one lock (a
    zmq socket may change threads with a memory barrier in between; the lock is that barrier).
    An error in the thread (send timeout) is raised from the next ``publish``/``flush``; the
    lost batch shows up as sequence gaps at the receiver.
    """

    def __init__(self, publisher: ZmqPublisher, size: int, linger_ms: int) -> None:
        self._publisher = publisher
        self._size = size
        self._linger_s = linger_ms / 1000
        self._pending: dict[str, BatchEncoder] = {}
        self._producer_id = publisher.producer_id
        self._oldest = 0.0  # monotonic time of the oldest pending envelope
        self._last_sent = -1e9  # monotonic time the last frame went out
        #: Guards the socket and ``_pending``; re-entrant so ``publish`` can hold it around its
        #: first-send subscription check (which reads the socket) and ``add``.
        self.lock = threading.RLock()
        self._wake = threading.Event()  # set while anything is pending
        self._stop = threading.Event()
        self._error: TransportError | None = None
        self._thread = threading.Thread(
            target=self._linger_loop, name="zmq-batch-linger", daemon=True
        )
        self._thread.start()

    def add(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: Headers,
        seq: int,
        event_time_ns: int,
        publish_time_ns: int,
    ) -> None:
        with self.lock:
            if self._error is not None:
                self._raise_deferred()
            envelope = (topic, value, key, headers, seq, event_time_ns, publish_time_ns)
            quiet = not self._pending and time.monotonic() - self._last_sent >= self._linger_s
            if not (quiet and self._send_alone(*envelope)):
                self._queue(*envelope)

    def add_many(self, messages: Sequence[Message], next_seq: dict[str, int]) -> None:
        """``add`` of each message, numbered from ``next_seq``, with the lock held once and
        without ``add``'s send-alone case (these messages are queued up by definition). Each is
        counted in the publisher's ``published`` once it is in a batch, so a send that fails
        or is interrupted midway leaves the count exact."""
        with self.lock:
            if self._error is not None:
                self._raise_deferred()
            queue, clock, publisher = self._queue, time.time_ns, self._publisher
            for topic, key, value, event_time_ns, headers in messages:
                seq = next_seq[topic]
                next_seq[topic] = seq + 1
                queue(topic, value, key, headers, seq, event_time_ns, clock(), publisher)

    def _send_alone(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: Headers,
        seq: int,
        event_time_ns: int,
        publish_time_ns: int,
    ) -> bool:
        """Send one envelope as its own frame now, without waiting; False when the socket
        would block (no peer, a full pipe): then it is batched, as if others were waiting."""
        frame = encode_frame(topic, value, key, headers, self._producer_id, seq, event_time_ns,
                             publish_time_ns)  # fmt: skip
        try:
            self._publisher._send_frame(frame, zmq.NOBLOCK)
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            raise self._publisher._send_error(topic, exc) from None
        self._last_sent = time.monotonic()
        return True

    def _queue(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: Headers,
        seq: int,
        event_time_ns: int,
        publish_time_ns: int,
        counted_by: ZmqPublisher | None = None,
    ) -> None:
        """Add one envelope to its topic's pending batch (started now, with a linger deadline,
        if there is none) and send the batch once full; ``counted_by`` counts it as published
        once it is in. Caller holds the lock."""
        batch = self._pending.get(topic)
        if batch is None:
            batch = self._pending[topic] = BatchEncoder(topic, self._producer_id)
            if not self._wake.is_set():
                self._oldest = time.monotonic()
                self._wake.set()
        batch.add(value, key, headers, seq, event_time_ns, publish_time_ns)
        if counted_by is not None:
            counted_by.published += 1
        if batch.count >= self._size or batch.size >= BATCH_FRAME_BYTES:
            del self._pending[topic]
            if not self._pending:
                self._wake.clear()  # the next envelope starts a new linger deadline
            self._last_sent = time.monotonic()
            self._publisher._send_wire(topic, batch.frame())

    def flush(self) -> None:
        with self.lock:
            self._raise_deferred()
            self._send_all()

    def close(self, timeout: float) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        if not self.lock.acquire(timeout=timeout):
            log.warning("batch sender still blocked after %.1f s; pending batches dropped", timeout)
            return
        try:
            self._send_all()
        except TransportError as exc:
            log.warning("pending batches not sent at close: %s", exc)
        finally:
            self.lock.release()

    def _send_all(self) -> None:
        """Caller holds the lock."""
        pending, self._pending = self._pending, {}
        self._wake.clear()
        self._last_sent = time.monotonic()
        for topic, batch in pending.items():
            if batch.count:  # empty if its only envelope failed to encode (key too long)
                self._publisher._send_wire(topic, batch.frame())

    def _raise_deferred(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _linger_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            left = self._oldest + self._linger_s - time.monotonic()
            if left > 0:
                self._stop.wait(left)
                continue  # the batch may have been sent by size meanwhile: look again
            with self.lock:
                if self._pending and self._oldest + self._linger_s <= time.monotonic():
                    try:
                        self._send_all()
                    except TransportError as exc:
                        log.warning("batch send failed in the linger thread: %s", exc)
                        self._error = exc


class ZmqSubscriber(Subscriber):
    def __init__(
        self,
        transport: ZmqTransport,
        sock: zmq.Socket[Any],
        domain: str | None,
        topics: list[str],
    ) -> None:
        super().__init__()
        self._transport = transport
        self._sock = sock
        self._domain = domain
        self.topics = topics
        self._max_bytes: int = transport.options["max_message_bytes"]
        # PULL receives every topic; keep the wanted prefixes to filter client-side.
        self._prefixes = (
            None if transport.pattern == "pubsub" else tuple(_topic_prefix(t) for t in topics)
        )
        #: Valid frames for topics this subscriber did not ask for (PUSH/PULL only).
        self.skipped_other_topics = 0
        #: Envelopes of a batch frame beyond ``max_messages``, handed out by the next poll.
        self._carry: list[Envelope] = []
        self._poller = zmq.Poller()
        self._poller.register(sock, zmq.POLLIN)

    def poll(self, max_messages: int = 1000, timeout: float = 0.1) -> list[Envelope]:
        """Receive and decode up to ``max_messages`` frames in one tight loop (in C with the
        compiled codec: ``framing.receive_into``; frames it does not take go through ``_take``).

        ``receive_time_ns`` is one wall-clock reading per batch, taken when the batch is handed
        to the caller (after the last frame was received and decoded): a latency computed from
        it is the delivery latency the application sees and is never understated; a frame early
        in a full batch waited at most the batch's decode time (~0.3 us per frame with the
        compiled codec, ~1 us without) on top. One
        reading per frame would cost about as much as the receive itself. Each frame is decoded
        right after its recv() so a failing frame can still ask the socket whether more parts
        of the same (foreign, multipart) message follow.
        """
        if self._closed:
            raise TransportClosedError("poll() after close()")
        if self._carry:
            batch, self._carry = self._carry[:max_messages], self._carry[max_messages:]
            return self._hand_over(batch)
        recv = self._sock.recv
        noblock = zmq.NOBLOCK
        again = zmq.Again
        try:
            frame = recv(noblock)
        except again:
            if not self._poller.poll(max(0, int(timeout * 1000))):
                return []
            try:
                frame = recv(noblock)
            except again:
                return []
        batch: list[Envelope] = []
        left = max_messages - self._take(frame, batch)
        if receive_into is not None:  # the compiled loop; frames it does not take come back here
            prefixes, max_bytes = self._prefixes, self._max_bytes
            while left > 0:
                got, odd = receive_into(recv, noblock, again, batch, left, prefixes, max_bytes)
                left -= got
                if odd is None:
                    break
                left -= self._take(odd, batch)
        else:
            take = self._take
            while left > 0:
                try:
                    frame = recv(noblock)
                except again:
                    break
                left -= take(frame, batch)
        if left < 0:  # a batch frame overshot max_messages: hand the rest out next time
            self._carry = batch[max_messages:]
            del batch[max_messages:]
        return self._hand_over(batch)

    def _take(self, frame: bytes, batch: list[Envelope]) -> int:
        """Decode one frame into ``batch`` (return how many envelopes) or account for it: a
        frame of another topic is skipped, a bad one rejected, an oversize value rejected."""
        if self._prefixes is not None and not frame.startswith(self._prefixes):
            self._skip_or_reject(frame)
            return 0
        try:
            got = decode_into(frame, batch)
        except FrameError as err:
            self._reject_bad(frame, err)
            return 0
        if len(frame) > self._max_bytes:
            return self._reject_oversize(batch, got, frame)
        return got

    def _hand_over(self, batch: list[Envelope]) -> list[Envelope]:
        now = time.time_ns()
        for env in batch:
            env.receive_time_ns = now
        return self._accept(batch)

    def _skip_or_reject(self, frame: bytes) -> None:
        """A frame for another topic is fine (counted); one that is not an envelope is rejected."""
        try:
            skipped = decode_into(frame, [])
        except FrameError as err:
            self._reject_bad(frame, err)
        else:
            self.skipped_other_topics += skipped

    def _reject_bad(self, frame: bytes, err: FrameError) -> None:
        """RCVMORE is read only here: per frame it costs ~0.6 us, more than recv() itself."""
        now = time.time_ns()
        if self._sock.get(zmq.RCVMORE):
            self._reject_multipart(frame, now)
        else:
            self._reject(RejectedMessage(err.kind, str(err), frame, receive_time_ns=now))

    def _reject_multipart(self, first: bytes, now: int) -> None:
        parts = [first]
        while self._sock.get(zmq.RCVMORE):
            parts.append(self._sock.recv())  # the rest of a multipart message is already here
        raw = b"".join(parts)
        self._reject(
            RejectedMessage(
                "multipart",
                f"multipart message of {len(parts)} frames, {len(raw)} bytes: foreign sender",
                raw[:KEPT_RAW_BYTES],
                receive_time_ns=now,
            )
        )

    def _reject_oversize(self, batch: list[Envelope], got: int, frame: bytes) -> int:
        """Move the envelopes just decoded from ``frame`` whose value is over the limit out of
        ``batch`` into the rejected list; return how many stay."""
        start = len(batch) - got
        keep = [env for env in batch[start:] if len(env.value) <= self._max_bytes]
        if len(keep) == got:
            return got
        now = time.time_ns()
        for env in batch[start:]:
            if len(env.value) > self._max_bytes:
                self._reject(
                    RejectedMessage(
                        "oversize",
                        f"value of {len(env.value)} bytes exceeds "
                        f"max_message_bytes={self._max_bytes} (first {KEPT_RAW_BYTES} bytes of "
                        "its frame kept)",
                        frame[:KEPT_RAW_BYTES],
                        topic=env.topic,
                        receive_time_ns=now,
                    )
                )
        batch[start:] = keep
        return len(keep)

    def _close(self, timeout: float) -> None:
        self._sock.close(linger=0)
        if self._domain:
            ZapGuard.release(self._transport.context, self._domain)

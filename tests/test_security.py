"""Security properties, each tested against the real code paths a user runs.

(a) No code-executing decoder (pickle & co., unsafe YAML, eval/exec) anywhere in project code:
    a message crossing a process boundary must never be able to run code in the receiver.
(b) Tokens and passwords never reach logs, printed settings, written files or error messages
    (the real CLI in a subprocess, with debug logging on).
(c) ZeroMQ binds 127.0.0.1 unless the user asks for more: every command's default transport,
    and what a bound socket actually listens on.
(d) CURVE: an unauthenticated peer can neither publish to nor subscribe from a CURVE socket.
    (No other test module covers CURVE end to end; tests/test_zmq_backend.py only checks that a
    secret option's value is hidden in errors.)
"""

from __future__ import annotations

import ast
import contextlib
import gzip
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.auth

from emulators.twitter import TwitterEmulator
from harness.cli import build_parser
from transports import TransportError, open_transport
from transports.brokers import free_tcp_port
from transports.framing import encode_frame
from transports.zmq import ZmqTransport

ROOT = Path(__file__).resolve().parents[1]
HARNESS = [sys.executable, "-m", "harness.cli"]

# -- (a) no code-executing decoders -----------------------------------------------------------

#: Modules whose loaders run code from the data they read.
UNSAFE_MODULES = {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "marshal", "shelve",
                  "joblib", "jsonpickle"}
#: attribute calls that unpickle under the hood
UNSAFE_CALLS = {"read_pickle", "to_pickle", "unsafe_load", "full_load", "load_all"}
SAFE_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader"}


def project_sources() -> list[Path]:
    skip = {".venv", "tests", ".git", "build", "dist", "node_modules", "__pycache__"}
    return sorted(
        p for p in ROOT.rglob("*.py")
        if not (set(p.relative_to(ROOT).parts[:-1]) & skip)
        and not any(part.endswith(".egg-info") for part in p.parts)
    )


def unsafe_uses(source: str, name: str) -> list[str]:
    """Every import of a pickle-like module and every code-executing call, as 'file:line what'."""
    found: list[str] = []
    tree = ast.parse(source, filename=name)
    for node in ast.walk(tree):
        where = f"{name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [f"{where} import {a.name}" for a in node.names
                      if a.name.split(".")[0] in UNSAFE_MODULES]
        elif isinstance(node, ast.ImportFrom):
            if (node.module or "").split(".")[0] in UNSAFE_MODULES:
                found.append(f"{where} from {node.module} import ...")
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in ("eval", "exec", "__import__"):
                found.append(f"{where} {func.id}()")
            elif isinstance(func, ast.Attribute):
                owner = func.value.id if isinstance(func.value, ast.Name) else ""
                if func.attr in UNSAFE_CALLS and owner not in ("json", "orjson"):
                    found.append(f"{where} {owner}.{func.attr}()")
                elif func.attr == "load" and owner == "yaml" and not _safe_yaml_loader(node):
                    found.append(f"{where} yaml.load() without a safe Loader")
                elif func.attr == "load" and owner in ("np", "numpy") and any(
                    k.arg == "allow_pickle" and not (
                        isinstance(k.value, ast.Constant) and k.value.value is False)
                    for k in node.keywords
                ):
                    found.append(f"{where} numpy.load(allow_pickle=...)")
    return found


def _safe_yaml_loader(call: ast.Call) -> bool:
    loader = next((k.value for k in call.keywords if k.arg == "Loader"), None)
    if loader is None and len(call.args) > 1:
        loader = call.args[1]
    name = loader.attr if isinstance(loader, ast.Attribute) else getattr(loader, "id", None)
    return name in SAFE_LOADERS


def test_no_code_executing_decoder_in_project_code() -> None:
    sources = project_sources()
    assert len(sources) > 30, "the scan found too few files to be looking in the right place"
    offenders = [hit for p in sources
                 for hit in unsafe_uses(p.read_text(), str(p.relative_to(ROOT)))]
    assert offenders == [], "code-executing decoders found:\n" + "\n".join(offenders)


def test_the_scanner_catches_what_it_looks_for() -> None:
    planted = (
        "import pickle\nfrom dill import loads\nimport yaml\nimport pandas as pd\n"
        "import numpy as np\n"
        "pickle.loads(b'')\nyaml.load(s)\nyaml.load(s, Loader=yaml.Loader)\n"
        "yaml.load(s, Loader=yaml.SafeLoader)\nyaml.safe_load(s)\neval('1')\nexec('x=1')\n"
        "pd.read_pickle('f')\nnp.load('f', allow_pickle=True)\nnp.load('f')\n"
    )
    hits = unsafe_uses(planted, "planted.py")
    assert [h.split(" ", 1)[1] for h in hits] == [
        "import pickle",
        "from dill import ...",
        "yaml.load() without a safe Loader",
        "yaml.load() without a safe Loader",
        "eval()",
        "exec()",
        "pd.read_pickle()",
        "numpy.load(allow_pickle=...)",
    ]


def test_notebooks_do_not_unpickle_either() -> None:
    import json

    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        magic = ("%", "!")
        code = "\n".join(ln for ln in code.splitlines() if not ln.lstrip().startswith(magic))
        assert unsafe_uses(code, nb.name) == []


# -- (b) secrets never leak ----------------------------------------------------------------------


def run_cli(
    args: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HARNESS, "-v", *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **env}, cwd=ROOT, check=False,
    )


def written_text(folder: Path) -> str:
    """Everything under ``folder`` as text (gzip members decompressed), for a substring check."""
    chunks = []
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            chunks.append(data.decode("latin-1"))
    return "\n".join(chunks)


@pytest.mark.slow
def test_twitter_bearer_token_never_appears_in_output_logs_or_files(tmp_path: Path) -> None:
    right = f"right-{uuid.uuid4().hex}"
    wrong = f"wrong-{uuid.uuid4().hex}"
    port = free_tcp_port()
    base = ["produce", "twitter", "--source", "live", "--mode", "search", "--interval", "0.5",
            "--transport", f"zmq+tcp://127.0.0.1:{port}?pattern=pubsub",
            "--output-dir", str(tmp_path / "out"), "--record", str(tmp_path / "out/rec.jsonl.gz")]
    with TwitterEmulator(bearer_token=right, window_s=1.0) as emu:
        emu.add_tweets(20)
        emu.inject("bad_tweet")  # a dead letter gets written too
        ok = run_cli([*base, "--api-url", emu.url, "--max-messages", "15", "--duration", "20"],
                     {"TWITTER_BEARER_TOKEN": right})
        refused = run_cli([*base, "--api-url", emu.url, "--duration", "10"],
                          {"TWITTER_BEARER_TOKEN": wrong})
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert refused.returncode == 2 and "401" in refused.stderr, refused.stderr[-2000:]
    assert refused.stderr.strip().splitlines()[-1].startswith("harness produce: error:")
    files = written_text(tmp_path)
    assert "bearer_token = ***" in ok.stderr  # the settings are printed, the value is not
    for secret in (right, wrong):
        for where, text in (("stdout", ok.stdout + refused.stdout),
                            ("stderr", ok.stderr + refused.stderr), ("files", files)):
            assert secret not in text, f"token leaked into {where}"


@pytest.mark.parametrize(
    ("url_template", "secret"),
    [
        ("kafka://127.0.0.1:{port}?security_protocol=SASL_PLAINTEXT&sasl_mechanism=PLAIN"
         "&sasl_username=alice&sasl_password={secret}&request_timeout_ms=2000", "pw-{id}"),
        ("kafka://alice:{secret}@127.0.0.1:{port}?request_timeout_ms=2000", "pw-{id}"),
        ("kafka+confluent://127.0.0.1:{port}?security_protocol=SASL_PLAINTEXT"
         "&sasl_mechanism=PLAIN&sasl_username=alice&sasl_password={secret}", "pw-{id}"),
    ],
)
def test_kafka_password_never_appears_in_errors_or_printed_settings(
    tmp_path: Path, url_template: str, secret: str
) -> None:
    secret = secret.format(id=uuid.uuid4().hex)
    url = url_template.format(port=free_tcp_port(), secret=secret)  # nothing listens there
    result = run_cli(["produce", "binance", "--source", "synthetic", "--max-messages", "5",
                      "--transport", url, "--output-dir", str(tmp_path)], {}, timeout=90)
    assert result.returncode != 0
    assert "***" in result.stderr  # the URL is shown, redacted
    assert secret not in result.stdout + result.stderr + written_text(tmp_path)


def test_display_url_and_option_errors_hide_secrets() -> None:
    secret = f"s-{uuid.uuid4().hex}"
    with pytest.raises(Exception) as info:
        open_transport(f"kafka://127.0.0.1:1?sasl_password={secret}&bogus=1")
    assert secret not in str(info.value)
    with pytest.raises(Exception) as info:
        open_transport(f"zmq+tcp://127.0.0.1:1?curve_server_secret={secret}")
    assert secret not in str(info.value)


# -- (c) ZeroMQ binds loopback by default ---------------------------------------------------------


def _transport_defaults() -> dict[str, str]:
    """command path -> default of its --transport setting, read from the real CLI parser."""
    found: dict[str, str] = {}

    def walk(parser: Any, path: str) -> None:
        for action in parser._actions:
            if action.dest == "transport" and action.help:
                match = re.search(r"default '([^']*)'", action.help)
                if match:
                    found[path] = match.group(1)
            choices = getattr(action, "choices", None)
            if isinstance(choices, dict):
                for name, sub in choices.items():
                    walk(sub, f"{path} {name}".strip())

    walk(build_parser(), "harness")
    return found


def test_every_commands_default_zmq_transport_binds_loopback() -> None:
    defaults = _transport_defaults()
    assert any(k.startswith("harness produce binance") for k in defaults), defaults
    for command, url in defaults.items():
        if url.startswith("zmq+tcp://"):
            host = url.removeprefix("zmq+tcp://").split("/")[0].rsplit(":", 1)[0]
            assert host in ("127.0.0.1", "localhost", "[::1]"), f"{command}: {url}"


def _non_loopback_ip() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent; picks the outgoing interface
            ip = s.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") else ip


def test_a_bound_zmq_socket_listens_on_loopback_only_unless_asked() -> None:
    ip = _non_loopback_ip()
    for host, expect_reachable in (("127.0.0.1", False), ("*", True)):
        port = free_tcp_port()
        with ZmqTransport(f"zmq+tcp://{host}:{port}?pattern=pushpull") as t, \
                t.publisher("p") as pub:
            endpoint = pub._sock.getsockopt(zmq.LAST_ENDPOINT).decode()  # type: ignore[attr-defined]
            assert endpoint == (f"tcp://127.0.0.1:{port}" if host == "127.0.0.1"
                                else f"tcp://0.0.0.0:{port}")
            if ip is not None:
                with socket.socket() as probe:
                    probe.settimeout(2)
                    reachable = probe.connect_ex((ip, port)) == 0
                assert reachable is expect_reachable, (host, ip)


# -- (d) CURVE -------------------------------------------------------------------------------------


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name in ("server", "client", "stranger"):
        public, secret = zmq.auth.create_certificates(str(tmp_path), name)
        out[name], out[name + "_secret"] = Path(public), Path(secret)
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "client.key").write_bytes(out["client"].read_bytes())
    out["allowed"] = allowed
    return out


def _server_url(port: int, keys: dict[str, Path], pattern: str, bind: str) -> str:
    return (f"zmq+tcp://127.0.0.1:{port}?pattern={pattern}&bind={bind}"
            f"&curve_server_public={keys['server']}&curve_server_secret={keys['server_secret']}"
            f"&curve_allowed_clients={keys['allowed']}")


def _client_url(port: int, keys: dict[str, Path], pattern: str, bind: str, who: str) -> str:
    return (f"zmq+tcp://127.0.0.1:{port}?pattern={pattern}&bind={bind}"
            f"&curve_server_public={keys['server']}&curve_client_public={keys[who]}"
            f"&curve_client_secret={keys[who + '_secret']}")


@pytest.fixture
def ctx() -> Iterator[zmq.Context[Any]]:
    context: zmq.Context[Any] = zmq.Context()
    yield context
    context.destroy(linger=0)


def _poll_for(sub: Any, seconds: float) -> list[Any]:
    got: list[Any] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got += sub.poll(100, 0.05)
    return got


@pytest.mark.slow
@pytest.mark.parametrize("pattern", ["pubsub", "pushpull"])
def test_curve_publisher_serves_only_authenticated_subscribers(
    ctx: zmq.Context[Any], keys: dict[str, Path], pattern: str
) -> None:
    port = free_tcp_port()
    server = ZmqTransport(_server_url(port, keys, pattern, "publisher"), context=ctx)
    pub = server.publisher("curve")
    subs = {}
    ts = []
    for who in ("client", "stranger"):
        t = ZmqTransport(_client_url(port, keys, pattern, "publisher", who), context=ctx)
        ts.append(t)
        subs[who] = t.subscriber(["t"])
    plain = ctx.socket(zmq.SUB if pattern == "pubsub" else zmq.PULL)  # no CURVE at all
    plain.linger = 0
    if pattern == "pubsub":
        plain.subscribe(b"")
    plain.connect(f"tcp://127.0.0.1:{port}")
    try:
        time.sleep(0.5)  # handshakes (and refusals) settle
        for i in range(20):
            pub.publish("t", b"secret-%d" % i)
        got = _poll_for(subs["client"], 2.0)
        assert [e.value for e in got] == [b"secret-%d" % i for i in range(20)]
        assert _poll_for(subs["stranger"], 0.3) == []
        assert plain.poll(300) == 0
        assert server.curve_denied >= 1  # the stranger's key was refused by the ZAP handler
    finally:
        plain.close()
        for s in subs.values():
            s.close()
        pub.close(timeout=0.5)
        for t in [*ts, server]:
            t.close()


@pytest.mark.slow
def test_curve_subscriber_accepts_only_authenticated_publishers(
    ctx: zmq.Context[Any], keys: dict[str, Path]
) -> None:
    port = free_tcp_port()
    server = ZmqTransport(_server_url(port, keys, "pushpull", "subscriber"), context=ctx)
    sub = server.subscriber(["t"])
    stranger_t = ZmqTransport(
        _client_url(port, keys, "pushpull", "subscriber", "stranger") + "&send_timeout_ms=50",
        context=ctx,
    )
    client_t = ZmqTransport(_client_url(port, keys, "pushpull", "subscriber", "client"),
                            context=ctx)
    plain = ctx.socket(zmq.PUSH)
    plain.linger = 0
    plain.sndtimeo = 0
    plain.connect(f"tcp://127.0.0.1:{port}")
    try:
        stranger = stranger_t.publisher("stranger")
        client = client_t.publisher("client")
        time.sleep(0.5)
        for i in range(5):
            client.publish("t", b"good-%d" % i)
            # refused by the ZAP handler: queued at best (or a send timeout), never delivered
            with contextlib.suppress(TransportError):
                stranger.publish("t", b"forged-%d" % i)
            with contextlib.suppress(zmq.Again):  # a plain peer fails the CURVE handshake
                plain.send(encode_frame("t", b"forged", None, (), "plain", i, 0, 0), zmq.NOBLOCK)
        got = _poll_for(sub, 2.0)
        assert [e.value for e in got] == [b"good-%d" % i for i in range(5)]
        assert {e.producer_id for e in got} == {"client"}
        assert server.curve_denied >= 1
        stranger.close(timeout=0)
        client.close(timeout=0.5)
    finally:
        plain.close()
        sub.close()
        for t in (stranger_t, client_t, server):
            t.close()


def test_secrets_in_the_command_line_never_reach_the_hdf5_file(tmp_path: Path) -> None:
    """Issue 18 item 2: the ``argv`` attribute kept ``curve_server_secret=`` (and would keep
    ``sasl_password=`` or ``--bearer-token``) unredacted, beside the redacted ``settings``."""
    import urllib.parse

    import h5py

    public, secret = zmq.curve_keypair()
    quoted = urllib.parse.quote(secret.decode(), safe="")
    url = (f"zmq+tcp://127.0.0.1:{free_tcp_port()}?bind=subscriber"
           f"&curve_server_secret={quoted}&curve_server_public="
           f"{urllib.parse.quote(public.decode(), safe='')}&curve_allowed_clients=*")
    output = tmp_path / "market.h5"
    result = run_cli(["process", "candles", "--transport", url, "--output", str(output),
                      "--duration", "1", "--quiet"], {})
    assert result.returncode == 0, result.stderr[-2000:]
    with h5py.File(output, "r") as f:
        stored = " ".join(str(v) for v in f.attrs.values())
    assert "--transport" in stored  # the argv attribute is there
    assert "curve_server_secret=***" in stored
    for leaked in (secret.decode(), quoted):
        assert leaked not in stored and leaked not in result.stdout + result.stderr


def test_redact_argv_hides_every_secret_form() -> None:
    from core.redaction import redact_argv

    argv = ["harness", "produce", "twitter", "--bearer-token", "AAA-tok", "--x-password=pw1",
            "--transport", "kafka://u:pw2@h:9092?sasl_password=pw3&acks=all"]
    shown = " ".join(redact_argv(argv))
    for secret in ("AAA-tok", "pw1", "pw2", "pw3"):
        assert secret not in shown
    assert "acks=all" in shown and "--bearer-token ***" in shown

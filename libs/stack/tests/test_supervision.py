"""The launcher supervises: a crashed service or broker is restarted with backoff, on real processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tillsammans_common.testing import wait_for
from tillsammans_stack.launcher import (
    RestartPolicy,
    Stack,
    StackConfig,
    SupervisionEvent,
    SupervisionKind,
    free_base_port,
)

pytestmark = pytest.mark.stack

CONCERN = {"unit_id": "norrskolan", "child": {"personnummer": "20130412-1237", "name": "Testbarn Testsson"},
           "wheel_areas": ["trygghet", "hemmet"], "description": "Frånvaron har ökat."}

# Ready at once; exits with code 3 at start while the flag file exists: a crash loop on demand.
CRASHY_SERVICE = """
import http.server, os, sys

if os.path.exists(os.environ["CRASHY_FLAG"]):
    sys.exit(3)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", int(os.environ["TILLSAMMANS_CRASHY_PORT"])), Handler).serve_forever()
"""


class Clock:
    """A monotonic clock the test moves by hand, so backoff is asserted without waiting it out."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass."""
        self.now += seconds


def _config(root: Path, services: list[str], **kwargs: object) -> StackConfig:
    base = free_base_port(1)
    return StackConfig(root=root, orgs=["school"], services=services, nats_port=base, base_port=base,
                       **kwargs)  # type: ignore[arg-type]


class Watcher:
    """Runs the supervisor's passes for a test and keeps every event, in order, however passes group them."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.seen: list[SupervisionEvent] = []
        self._read = 0  # events before this index have been waited for already

    def step(self) -> list[SupervisionEvent]:
        """One pass of the supervisor; its events."""
        events = self.stack.supervise()
        self.seen.extend(events)
        return events

    def until(self, name: str, kind: SupervisionKind, timeout: float = 60.0) -> SupervisionEvent:
        """The next event of ``kind`` for ``name``, supervising until there is one."""
        def found() -> SupervisionEvent | None:
            for index in range(self._read, len(self.seen)):
                if (self.seen[index].name, self.seen[index].kind) == (name, kind):
                    self._read = index + 1
                    return self.seen[index]
            self.step()
            return None

        try:
            event: SupervisionEvent = wait_for(found, timeout=timeout, interval=0.02, message=f"{name} {kind}")
        except AssertionError as error:
            raise AssertionError(f"{error}; seen: {[str(event) for event in self.seen]}") from None
        return event


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    # Reaped by the supervisor's poll, so only wait until it is no longer running.
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
             message=f"pid {pid} killed")


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/health/ready", timeout=2.0, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def _crashy_module(tmp_path: Path) -> Path:
    """A directory holding the ``tillsammans_crashy`` service, for PYTHONPATH."""
    package = tmp_path / "modules" / "tillsammans_crashy"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(CRASHY_SERVICE)
    return tmp_path / "modules"


def test_a_restart_policy_must_make_sense() -> None:
    assert [RestartPolicy(initial_seconds=0.5, max_seconds=3).delay(n) for n in range(1, 6)] == [0.5, 1, 2, 3, 3]
    with pytest.raises(ValueError, match="initial <= max"):
        RestartPolicy(initial_seconds=10, max_seconds=1)
    with pytest.raises(ValueError, match="max_quick_restarts"):
        RestartPolicy(max_quick_restarts=-1)


@pytest.fixture
def crashy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Stack, Clock, Path]]:
    """One organisation whose only service crashes at start while a flag file exists, on a hand-moved clock."""
    modules = _crashy_module(tmp_path)
    monkeypatch.syspath_prepend(str(modules))
    flag = tmp_path / "crash"
    clock = Clock()
    stack = Stack(_config(tmp_path / "state", ["crashy"],
                          extra_env={"PYTHONPATH": str(modules), "CRASHY_FLAG": str(flag)}),
                  restart_policy=RestartPolicy(initial_seconds=1, max_seconds=8, reset_after_seconds=60,
                                               max_quick_restarts=6),
                  clock=clock)
    stack.start(timeout=30, quiet=True)
    try:
        yield stack, clock, flag
    finally:
        pids = list(stack.pids().values())
        stack.stop()
        assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                       for pid in pids)


def test_quick_crashes_back_off_doubling_to_a_cap_then_the_launcher_gives_up(
        crashy: tuple[Stack, Clock, Path]) -> None:
    stack, clock, flag = crashy
    name = "school/crashy"
    watcher = Watcher(stack)

    # A crash after a long time up starts the count again: the first pause, not the next one.
    _kill(stack.pids()[name])
    assert watcher.until(name, "exited").delay == 1
    clock.advance(1)
    watcher.until(name, "restarted")
    watcher.until(name, "ready")
    clock.advance(61)
    first = stack.pids()[name]
    _kill(first)
    exited = watcher.until(name, "exited")
    assert (exited.delay, exited.code) == (1, -signal.SIGKILL)
    assert "exited with signal SIGKILL after 61.0s up; restarting in 1s" in str(exited)

    # From now on it crashes at start: each quick crash doubles the pause, up to the cap.
    flag.write_text("crash")
    delays = [exited.delay]
    for _ in range(5):
        pause = delays[-1]
        assert pause is not None
        clock.advance(pause * 0.99)
        assert not [event for event in watcher.step() if event.kind == "restarted"]  # not before its time
        assert stack.pids()[name] == first
        clock.advance(pause * 0.01)
        watcher.until(name, "restarted")
        assert stack.pids()[name] != first
        first = stack.pids()[name]
        event = watcher.until(name, "exited")
        delays.append(event.delay)
        assert event.code == 3
    assert delays == [1, 2, 4, 8, 8, 8]

    clock.advance(8)
    gave_up = watcher.until(name, "gave up")
    assert "7 quick crashes in a row, giving up" in str(gave_up)
    assert "school-crashy.log" in str(gave_up)
    last = stack.pids()[name]
    assert last != first
    clock.advance(3600)
    assert stack.supervise() == []  # given up: never started again
    assert stack.pids()[name] == last and not psutil.pid_exists(last)

    # A start by hand begins with a clean record.
    flag.unlink()
    stack.start_service("school", "crashy", timeout=30)
    _kill(stack.pids()[name])
    assert watcher.until(name, "exited").delay == 1


@pytest.fixture(scope="module")
def intake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Clock]]:
    """One organisation with intake, on a hand-moved clock; the relay retries a failed publish within a second."""
    clock = Clock()
    stack = Stack(_config(tmp_path_factory.mktemp("intake"), ["intake"],
                          extra_env={"TILLSAMMANS_RELAY_BACKOFF_MAX_SECONDS": "1"}),
                  restart_policy=RestartPolicy(initial_seconds=2), clock=clock)
    stack.start(timeout=60, quiet=True)
    try:
        yield stack, clock
    finally:
        stack.stop()


def test_a_service_killed_with_sigkill_is_restarted_and_ready_again(intake: tuple[Stack, Clock]) -> None:
    stack, clock = intake
    watcher = Watcher(stack)
    old = stack.pids()["school/intake"]
    _kill(old)
    exited = watcher.until("school/intake", "exited")
    assert exited.code == -signal.SIGKILL and exited.delay == 2
    assert not _ready(stack.url("school", "intake"))
    clock.advance(2)
    watcher.until("school/intake", "restarted")
    back = watcher.until("school/intake", "ready")
    assert str(back) == "school/intake is back: ready"
    assert [(event.name, event.kind) for event in watcher.seen] == [
        ("school/intake", "exited"), ("school/intake", "restarted"), ("school/intake", "ready")]
    assert stack.pids()["school/intake"] != old
    assert _ready(stack.url("school", "intake"))


def _post_concern(stack: Stack, key: str) -> str:
    response = httpx.post(stack.url("school", "intake") + "/concerns", json=CONCERN, timeout=10, trust_env=False,
                          headers={"Authorization": f"Bearer {stack.token('school', 'professional', 'mentor.anna')}",
                                   "Idempotency-Key": key})
    assert response.status_code == 201, response.text
    return str(response.json()["case_id"])


def _inbox(stack: Stack) -> set[str]:
    response = httpx.get(stack.url("school", "intake") + "/inbox", timeout=10, trust_env=False,
                         headers={"Authorization": f"Bearer {stack.token('school', 'bba', 'bba.norrskolan')}"})
    return {item["case_id"] for item in response.json()} if response.status_code == 200 else set()


def test_the_stack_rides_out_a_broker_restart(intake: tuple[Stack, Clock]) -> None:
    stack, clock = intake
    watcher = Watcher(stack)
    before = _post_concern(stack, "before")
    wait_for(lambda: before in _inbox(stack), timeout=20, message="the concern routed before the broker restart")
    broker, service = stack.pids()["nats"], stack.pids()["school/intake"]

    _kill(broker)
    assert watcher.until("nats", "exited").delay == 2
    # While the broker is down, intake says so and still takes concerns: they wait in its outbox.
    wait_for(lambda: httpx.get(stack.url("school", "intake") + "/health/ready", trust_env=False).json()["broker"]
             == "unavailable", message="intake noticing the broker is gone")
    during = _post_concern(stack, "during")

    clock.advance(2)
    restarted = watcher.until("nats", "restarted")
    assert "same configuration, JetStream store and port" in str(restarted)
    assert str(watcher.until("nats", "ready")) == f"nats-server is back: listening on {stack.nats_url}"
    assert str(watcher.until("school/intake", "ready")) == (
        "school/intake reconnected: ready")
    assert stack.pids()["nats"] != broker and stack.pids()["school/intake"] == service  # not restarted

    # The relay publishes what waited, and the consumers route both concerns to the BBA's inbox.
    after = _post_concern(stack, "after")
    wait_for(lambda: {before, during, after} <= _inbox(stack), timeout=30,
             message="concerns raised during and after the broker restart in the BBA's inbox")
    assert not [event for event in watcher.seen if event.kind in ("gave up", "not ready")]


def _command() -> list[str]:
    script = Path(sys.executable).parent / "tillsammans"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tillsammans_stack"]


def test_up_prints_a_restart_and_still_stops_cleanly(tmp_path: Path) -> None:
    root = tmp_path / "state"
    base = free_base_port(1)
    output = tmp_path / "up.out"
    modules = _crashy_module(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(modules), os.environ.get("PYTHONPATH", "")]),
           "CRASHY_FLAG": str(tmp_path / "no-such-flag")}
    with output.open("w") as sink:
        up = subprocess.Popen([*_command(), "up", "--root", str(root), "--nats-port", str(base), "--base-port",
                               str(base), "--orgs", "school", "--services", "crashy"],
                              stdout=sink, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        wait_for(lambda: "ready in" in output.read_text() or up.poll() is not None, timeout=60,
                 message="`tillsammans up` ready")
        assert up.poll() is None, output.read_text()
        service = next(child for child in psutil.Process(up.pid).children()
                       if "tillsammans_crashy" in " ".join(child.cmdline()))
        service.kill()
        wait_for(lambda: "school/crashy is back: ready" in output.read_text(), timeout=60,
                 message="the restart reported by `tillsammans up`")
        text = output.read_text()
        assert "school/crashy exited with signal SIGKILL" in text
        restarted = re.search(r"school/crashy restarted \(pid (\d+);", text)
        assert restarted is not None, text
        pid = int(restarted.group(1))
        assert pid != service.pid and pid in {child.pid for child in psutil.Process(up.pid).children()}
        # Started in a supervisor's pass, it must still obey the SIGTERM that stops it (no blocked mask inherited).
        blocked = int(next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                           if line.startswith("SigBlk:")).split()[1], 16)
        assert not blocked & (1 << (signal.SIGTERM - 1) | 1 << (signal.SIGINT - 1))
        down = subprocess.run([*_command(), "down", "--root", str(root)], capture_output=True, text=True, timeout=60)
        assert (down.returncode, down.stdout.strip()) == (0, "stopped")
        assert up.wait(timeout=30) == 0
    finally:
        if up.poll() is None:
            up.terminate()
            up.wait(timeout=30)
    assert output.read_text().rstrip().endswith("stopped")
    assert not (root / "stack.pid").exists()
    assert not _ready(f"http://127.0.0.1:{base + 1}")

"""``make bench``: throughput, latency and memory of a real stack, printed and written as JSON.

Measures, in one run on this machine:
- intake throughput (HTTP, validation, auth, database, outbox, broker) next to a bare FastAPI
  endpoint served with the same uvicorn settings, as a ratio;
- end-to-end latency from POST /concerns to the routed event handled in the BBA's inbox, at a
  fixed open-loop rate (default 200 concerns/s) and at half of the intake throughput the same run
  measured (a fixed rate saturates intake on a slower machine and then reports its queueing);
- latency of a cross-organisation invitation, from POST /meetings in the school to the row stored
  by the region's meetings service;
- resident memory of one organisation's four services plus the broker.
Timestamps on both ends come from the same clock (one machine): the client's send time and the
``received_at`` the handler writes. With ``--durable`` the same measurements run a second time on a
stack with the stronger durability settings (SQLite ``synchronous=FULL``, JetStream
``sync_interval: always``; docs/decisions/0015-durability.md) and both are reported, with the
cost of a single SQLite commit and a single acknowledged JetStream publish under each setting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import nats
from sqlalchemy import text

from tillsammans_common.db import make_engine
from tillsammans_common.natsconf import render
from tillsammans_common.testing import NatsServer, free_port, wait_for, wait_for_port
from tillsammans_stack.launcher import Stack, StackConfig, free_base_port

CHILD = {"personnummer": "20130412-1237", "name": "Bench Barn"}
CONCERN = {"unit_id": "norrskolan", "child": CHILD, "wheel_areas": ["trygghet"], "description": "benchmark"}
TARGETS = {"intake_ratio_min": 0.35, "e2e_p50_ms_max": 5.0, "e2e_p99_ms_max": 20.0,
           "cross_org_p99_ms_max": 30.0, "org_rss_mb_max": 400.0, "stack_ready_s_max": 20.0}


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def throughput(url: str, token: str, *, seconds: int, connections: int) -> dict[str, Any]:
    """Requests/s of POST url with the concern body, by wrk when installed, else a Python client."""
    wrk = shutil.which("wrk")
    if wrk:
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write('wrk.method = "POST"\n'
                         f"wrk.body = {json.dumps(json.dumps(CONCERN))}\n"
                         'wrk.headers["Content-Type"] = "application/json"\n'
                         f'wrk.headers["Authorization"] = "Bearer {token}"\n')
        out = subprocess.run([wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "-s", script.name, url],
                             capture_output=True, text=True, check=True).stdout
        rps = float(next(line for line in out.splitlines() if line.startswith("Requests/sec")).split()[1])
        errors = next((int(line.split()[-1]) for line in out.splitlines() if "Non-2xx" in line), 0)
        return {"tool": "wrk", "requests_per_s": rps, "non_2xx": errors}
    return asyncio.run(_python_throughput(url, token, seconds=seconds, connections=connections))


async def _python_throughput(url: str, token: str, *, seconds: int, connections: int) -> dict[str, Any]:
    done = errors = 0
    deadline = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {token}"}

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done, errors
        while time.monotonic() < deadline:
            response = await client.post(url, json=CONCERN, headers=headers)
            done += 1
            errors += response.status_code >= 300

    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=connections)) as client:
        await asyncio.gather(*(worker(client) for _ in range(connections)))
    return {"tool": "python-httpx (install wrk for a faster client)", "requests_per_s": done / seconds,
            "non_2xx": errors}


class _KeepAliveConnection:
    """One HTTP/1.1 keep-alive connection that POSTs JSON.

    The open-loop load generator shares this machine's two cores with the services it measures;
    writing the request bytes by hand costs a fraction of a full HTTP client, so the generator
    disturbs the latencies it records as little as it can.
    """

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path
        self.head = "".join(f"{name}: {value}\r\n" for name, value in
                            {"Host": f"{self.host}:{self.port}", "Content-Type": "application/json",
                             **headers}.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> tuple[int, bytes]:
        """POST ``body``; returns the status code and the response body."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(f"POST {self.path} HTTP/1.1\r\n{self.head}Content-Length: {len(body)}\r\n\r\n".encode()
                          + body)
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        """Close the connection."""
        if self.writer is not None:
            self.writer.close()


async def _open_loop(url: str, headers: dict[str, str], bodies: list[dict[str, Any]], rate: float
                     ) -> list[tuple[float, dict[str, Any]]]:
    """Send one request every 1/rate s regardless of responses; return (send time, response body)."""
    results: list[tuple[float, dict[str, Any]]] = []
    idle: asyncio.Queue[_KeepAliveConnection] = asyncio.Queue()
    connections = [_KeepAliveConnection(url, headers) for _ in range(64)]
    for connection in connections:
        idle.put_nowait(connection)

    async def one(body: bytes, due: float) -> None:
        # Latency counts from when the request was due, so time spent waiting for a free
        # connection is not hidden (no coordinated omission).
        connection = await idle.get()
        try:
            status, answer = await connection.post(body)
            if status == 201:
                results.append((due, json.loads(answer)))
        finally:
            idle.put_nowait(connection)

    start, wall_start = time.monotonic(), time.time()
    tasks = []
    for index, body in enumerate(bodies):
        delay = start + index / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing the load generator, not waiting for a result
        tasks.append(asyncio.create_task(one(json.dumps(body).encode(), wall_start + index / rate)))
    await asyncio.gather(*tasks)
    for connection in connections:
        connection.close()
    return results


def _stored_times(db: Path, sql: str) -> dict[str, float]:
    with sqlite3.connect(db) as connection:
        rows = connection.execute(sql).fetchall()
    return {row[0]: datetime.fromisoformat(row[1]).replace(tzinfo=UTC).timestamp() for row in rows}


def _all_stored(db: Path, sql: str, ids: dict[str, float]) -> dict[str, float] | None:
    """The stored times once every id is stored, else None (to wait on)."""
    times = _stored_times(db, sql)
    return times if all(key in times for key in ids) else None


def _latencies(sent: list[tuple[float, dict[str, Any]]], db: Path, sql: str, where: str) -> dict[str, Any]:
    """Wait until every sent id is stored at the far end; the latencies from send to store."""
    ids = {body["id"]: at for at, body in sent}
    stored = wait_for(lambda: _all_stored(db, sql, ids), timeout=60, message=f"every item in {where}")
    latencies = [(stored[key] - at) * 1000 for key, at in ids.items()]
    return {"count": len(latencies), "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
            "max_ms": max(latencies)}


def end_to_end(stack: Stack, *, rate: float, seconds: float) -> dict[str, Any]:
    """Latency from POST /concerns to the item in the BBA's inbox, at ``rate`` concerns/s."""
    count = int(rate * seconds)
    headers = {"Authorization": f"Bearer {stack.token('school', 'professional', 'bench')}"}
    sent = asyncio.run(_open_loop(stack.url("school", "intake") + "/concerns", headers, [CONCERN] * count, rate))
    return {"rate_per_s": rate, **_latencies(sent, stack.config.root / "data" / "school" / "intake.db",
                                             "SELECT concern_id, received_at FROM inbox_item", "the BBA's inbox")}


def cross_org(stack: Stack, *, rate: float, count: int) -> dict[str, Any]:
    """Latency from POST /meetings in the school to the invitation stored by the region."""
    bba = {"Authorization": f"Bearer {stack.token('school', 'bba', 'bba.norrskolan')}"}
    now = datetime.now(UTC)
    # The child's case is intake's (one per child); consent and meetings learn it from intake's event.
    raised = httpx.post(stack.url("school", "intake") + "/concerns", json=CONCERN,
                        headers={"Authorization": f"Bearer {stack.token('school', 'professional', 'bench')}"})
    raised.raise_for_status()
    case_id = raised.json()["case_id"]
    consent_body = {
        "case_id": case_id, "child": {"personnummer": CHILD["personnummer"]}, "custody": "sole",
        "grantors": [{"role": "guardian", "name": "V", "given_at": now.isoformat()}],
        "child_view": {"heard": True, "agrees": True, "note": None}, "receiving_orgs": ["region"],
        "categories": ["identity", "concern", "mapping_summary"], "purpose": "coordination_meeting",
        "valid_from": (now - timedelta(minutes=1)).isoformat(), "valid_until": (now + timedelta(days=30)).isoformat()}
    def record_consent() -> httpx.Response | None:
        response = httpx.post(stack.url("school", "consent") + "/consents", headers=bba, json=consent_body)
        return None if response.status_code == 422 else response

    consent: httpx.Response = wait_for(record_consent, message="consent to know the case")
    consent.raise_for_status()
    body = {"case_id": case_id, "scheduled_at": (now + timedelta(days=7)).isoformat(), "child": CHILD,
            "invited_orgs": ["region"], "flagged_areas": ["halsa"], "concern_summary": "benchmark"}
    wait_for(lambda: httpx.post(stack.url("school", "meetings") + "/meetings", headers=bba, json=body
                                ).status_code == 201, message="meetings to know the consent")
    sent = asyncio.run(_open_loop(stack.url("school", "meetings") + "/meetings", bba, [body] * count, rate))
    return {"rate_per_s": rate, **_latencies(sent, stack.config.root / "data" / "region" / "meetings.db",
                                             "SELECT meeting_id, received_at FROM receivedinvitation",
                                             "the region's received invitations")}


def _drained(db: Path) -> bool:
    """Whether every concern intake stored has reached the BBA's inbox."""
    with sqlite3.connect(db) as connection:
        concerns = connection.execute("SELECT count(*) FROM concern").fetchone()[0]
        routed = connection.execute("SELECT count(*) FROM inbox_item").fetchone()[0]
    return bool(concerns == routed)


def measure_stack(config: StackConfig, *, rate: float, seconds: int, connections: int) -> dict[str, Any]:
    """Every measurement of one stack: memory, start-up, latencies (fixed rate and half capacity), throughput."""
    results: dict[str, Any] = {}
    with Stack(config) as stack:
        # Steady state is what is measured: a fresh process is slower for its first thousand or so
        # requests (lazy imports, statement caches, SQLite's page cache).
        print("warming up ...")
        asyncio.run(_open_loop(stack.url("school", "intake") + "/concerns",
                               {"Authorization": f"Bearer {stack.token('school', 'professional', 'bench')}"},
                               [CONCERN] * int(rate * 5), rate))
        results["memory"] = {"org": "school", "rss_mb": stack.peak_rss("school") / 2**20}
        results["stack_ready_s"] = stack.start_seconds
        print(f"end-to-end latency at {rate:.0f}/s ...")
        results["end_to_end"] = end_to_end(stack, rate=rate, seconds=10)
        print("cross-organisation latency ...")
        results["cross_org"] = cross_org(stack, rate=50, count=300)
        print("intake throughput ...")
        results["intake"] = throughput(stack.url("school", "intake") + "/concerns",
                                       stack.token("school", "professional", "bench"), seconds=seconds,
                                       connections=connections)
        results["memory"]["rss_mb_after_load"] = stack.peak_rss("school") / 2**20
        results["memory"]["peak_mb_by_process"] = {name: round(peak / 2**20, 1)
                                                   for name, peak in stack.peak_rss_by_process("school").items()}
        # The throughput run leaves a backlog behind intake (relay, consumer): measured from an idle start.
        wait_for(lambda: _drained(stack.config.root / "data" / "school" / "intake.db"), timeout=300,
                 message="the throughput run's concerns to reach the BBA's inbox")
        half = results["intake"]["requests_per_s"] / 2
        print(f"end-to-end latency at half of intake's capacity ({half:.0f}/s) ...")
        results["end_to_end_half_capacity"] = end_to_end(stack, rate=half, seconds=10)
    return results


def _sqlite_commits(workdir: Path, synchronous: str, count: int) -> list[float]:
    """Milliseconds per committed insert of one outbox-sized row."""
    engine = make_engine(f"sqlite:///{workdir / f'{synchronous}.db'}", sqlite_synchronous=synchronous)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE probe (id INTEGER PRIMARY KEY, body BLOB)"))
    times = []
    for _ in range(count):
        began = time.perf_counter()
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO probe (body) VALUES (:body)"), {"body": b"x" * 600})
        times.append((time.perf_counter() - began) * 1000)
    engine.dispose()
    return times


async def _jetstream_publishes(workdir: Path, sync_interval: str | None, count: int) -> list[float]:
    """Milliseconds from publishing one event-sized message to the broker's acknowledgement."""
    port = free_port()
    server = NatsServer(workdir, port=port, config=render(["bench"], {"bench": "bench"}, port=port,
                                                          store_dir=str(workdir / "jetstream"),
                                                          sync_interval=sync_interval)).start()
    try:
        client = await nats.connect(server.url, user="bench", password="bench")
        js = client.jetstream()
        await js.add_stream(name="EVENTS", subjects=["bench.>"])
        times = []
        for _ in range(count):
            began = time.perf_counter()
            await js.publish("bench.probe", b"x" * 600)
            times.append((time.perf_counter() - began) * 1000)
        await client.close()
        return times
    finally:
        server.stop()


def durability_costs(*, count: int = 500) -> dict[str, Any]:
    """What one commit and one acknowledged publish cost with each durability setting, measured back to back.

    Less disturbed by the rest of the machine than the stack-wide figures: one operation at a time,
    the default and the stronger setting alternated on the same disk.
    """
    def summary(times: list[float]) -> dict[str, float]:
        return {"p50_ms": round(percentile(times, 50), 3), "p99_ms": round(percentile(times, 99), 3)}

    with tempfile.TemporaryDirectory(prefix="tillsammans-durability-") as scratch:
        root = Path(scratch)
        return {
            "sqlite_commit": {mode: summary(_sqlite_commits(root, mode, count)) for mode in ("NORMAL", "FULL")},
            "jetstream_publish": {
                label: summary(asyncio.run(_jetstream_publishes(root / label, sync, count)))
                for label, sync in (("default", None), ("always", "always"))},
        }


def bare_throughput(*, seconds: int, connections: int) -> dict[str, Any]:
    """Throughput of the bare endpoint under the same uvicorn settings as the services."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "tillsammans_stack.bare:app", "--port", str(port),
                                "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level",
                                "warning"])
    try:
        wait_for_port(port)
        return throughput(f"http://127.0.0.1:{port}/concerns", "unused", seconds=seconds, connections=connections)
    finally:
        process.terminate()
        process.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    """Run every measurement, print a table and write JSON."""
    parser = argparse.ArgumentParser(prog="tillsammans bench", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="duration of each throughput run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rate", type=float, default=200.0, help="concerns/s for the fixed-rate latency run")
    parser.add_argument("--durable", action="store_true",
                        help="measure again with SQLite synchronous=FULL and JetStream sync_interval always, "
                             "and report both")
    parser.add_argument("--output", type=Path, default=Path("bench-results/bench.json"))
    args = parser.parse_args(argv)

    results: dict[str, Any] = {"machine": {"cpus": __import__("os").cpu_count(), "python": sys.version.split()[0]}}
    # Stated outright, so that neither stack takes a durability setting from the caller's environment.
    variants = {"default": StackConfig(nats_sync_interval=None, extra_env={"TILLSAMMANS_SQLITE_SYNCHRONOUS": "NORMAL"})}
    if args.durable:
        variants["durable"] = StackConfig(nats_sync_interval="always",
                                          extra_env={"TILLSAMMANS_SQLITE_SYNCHRONOUS": "FULL"})
    measured: dict[str, dict[str, Any]] = {}
    for name, variant in variants.items():
        root = Path(tempfile.mkdtemp(prefix="tillsammans-bench-"))
        base = free_base_port()
        print(f"stack with {name} settings ...")
        measured[name] = measure_stack(
            StackConfig(root=root, nats_port=base, base_port=base, nats_sync_interval=variant.nats_sync_interval,
                        extra_env=variant.extra_env),
            rate=args.rate, seconds=args.seconds, connections=args.connections)
        shutil.rmtree(root, ignore_errors=True)
    print("bare endpoint throughput ...")
    bare = bare_throughput(seconds=args.seconds, connections=args.connections)
    costs = None
    if args.durable:
        print("one commit and one publish, with each durability setting ...")
        costs = durability_costs()

    default = measured["default"]
    intake = default["intake"]
    results.update({key: value for key, value in default.items() if key != "intake"})
    results["throughput"] = {"intake": intake, "bare": bare,
                             "ratio": intake["requests_per_s"] / bare["requests_per_s"]}
    if "durable" in measured:
        results["durable"] = {"settings": {"sqlite_synchronous": "FULL", "nats_sync_interval": "always"},
                              **measured["durable"], "operations": costs}

    memory = max(results["memory"]["rss_mb"], results["memory"]["rss_mb_after_load"])
    rows = [
        ("intake throughput", f"{intake['requests_per_s']:.0f} req/s", ""),
        ("bare FastAPI endpoint", f"{bare['requests_per_s']:.0f} req/s", ""),
        ("intake / bare", f"{results['throughput']['ratio']:.2f}", f">= {TARGETS['intake_ratio_min']}"),
        (f"end-to-end p50 @ {args.rate:.0f}/s", f"{results['end_to_end']['p50_ms']:.1f} ms",
         f"<= {TARGETS['e2e_p50_ms_max']} ms"),
        (f"end-to-end p99 @ {args.rate:.0f}/s", f"{results['end_to_end']['p99_ms']:.1f} ms",
         f"<= {TARGETS['e2e_p99_ms_max']} ms"),
        *_half_rows(results["end_to_end_half_capacity"], ""),
        ("cross-org invitation p50", f"{results['cross_org']['p50_ms']:.1f} ms", ""),
        ("cross-org invitation p99", f"{results['cross_org']['p99_ms']:.1f} ms",
         f"<= {TARGETS['cross_org_p99_ms_max']} ms"),
        ("one organisation RSS (4 services + broker)", f"{memory:.0f} MB", f"<= {TARGETS['org_rss_mb_max']} MB"),
        ("3 organisations x 4 services ready", f"{results['stack_ready_s']:.1f} s",
         f"<= {TARGETS['stack_ready_s_max']} s"),
    ]
    if "durable" in measured:
        durable = measured["durable"]
        rows += [
            ("durable: intake throughput", f"{durable['intake']['requests_per_s']:.0f} req/s", ""),
            (f"durable: end-to-end p50 @ {args.rate:.0f}/s", f"{durable['end_to_end']['p50_ms']:.1f} ms", ""),
            (f"durable: end-to-end p99 @ {args.rate:.0f}/s", f"{durable['end_to_end']['p99_ms']:.1f} ms", ""),
            *_half_rows(durable["end_to_end_half_capacity"], "durable: "),
            ("durable: cross-org invitation p50", f"{durable['cross_org']['p50_ms']:.1f} ms", ""),
            ("durable: cross-org invitation p99", f"{durable['cross_org']['p99_ms']:.1f} ms", ""),
        ]
        assert costs is not None
        for store, settings in costs.items():
            for setting, cost in settings.items():
                rows.append((f"{store} ({setting}) p50 / p99", f"{cost['p50_ms']:.2f} / {cost['p99_ms']:.2f} ms", ""))
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}}  {'value':>14}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>14}  {target}")
    results["targets"] = TARGETS
    results["met"] = {
        "intake_ratio": results["throughput"]["ratio"] >= TARGETS["intake_ratio_min"],
        "e2e_p50": results["end_to_end"]["p50_ms"] <= TARGETS["e2e_p50_ms_max"],
        "e2e_p99": results["end_to_end"]["p99_ms"] <= TARGETS["e2e_p99_ms_max"],
        "cross_org_p99": results["cross_org"]["p99_ms"] <= TARGETS["cross_org_p99_ms_max"],
        "org_rss": memory <= TARGETS["org_rss_mb_max"],
        "stack_ready": results["stack_ready_s"] <= TARGETS["stack_ready_s_max"],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"\nwritten to {args.output}")
    return 0


def _half_rows(half: dict[str, Any], prefix: str) -> list[tuple[str, str, str]]:
    return [(f"{prefix}end-to-end p50 @ half capacity ({half['rate_per_s']:.0f}/s)", f"{half['p50_ms']:.1f} ms", ""),
            (f"{prefix}end-to-end p99 @ half capacity ({half['rate_per_s']:.0f}/s)", f"{half['p99_ms']:.1f} ms", "")]

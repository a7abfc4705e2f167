"""The benchmark report: both latency runs and, with --durable, both stacks, printed and written (no stack)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tillsammans_stack import bench
from tillsammans_stack.launcher import StackConfig


def _latency(rate: float, p50: float) -> dict[str, Any]:
    return {"rate_per_s": rate, "count": 10, "p50_ms": p50, "p99_ms": p50 * 3, "max_ms": p50 * 4}


def test_the_report_holds_the_half_capacity_run_and_the_durable_stack(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[StackConfig] = []

    def measure_stack(config: StackConfig, *, rate: float, seconds: int, connections: int) -> dict[str, Any]:
        seen.append(config)
        durable = config.nats_sync_interval == "always"
        capacity = 300.0 if durable else 500.0
        return {"memory": {"org": "school", "rss_mb": 300.0, "rss_mb_after_load": 310.0, "peak_mb_by_process": {}},
                "stack_ready_s": 9.0, "end_to_end": _latency(rate, 4.0), "cross_org": _latency(50, 8.0),
                "intake": {"tool": "wrk", "requests_per_s": capacity, "non_2xx": 0},
                "end_to_end_half_capacity": _latency(capacity / 2, 6.0 if durable else 3.0)}

    monkeypatch.setattr(bench, "measure_stack", measure_stack)
    monkeypatch.setattr(bench, "bare_throughput", lambda **_: {"tool": "wrk", "requests_per_s": 1000.0, "non_2xx": 0})
    costs = {"sqlite_commit": {"NORMAL": {"p50_ms": 0.2, "p99_ms": 0.4}, "FULL": {"p50_ms": 0.7, "p99_ms": 1.4}},
             "jetstream_publish": {"default": {"p50_ms": 0.4, "p99_ms": 0.6}, "always": {"p50_ms": 0.6, "p99_ms": 0.8}}}
    monkeypatch.setattr(bench, "durability_costs", lambda: costs)
    output = tmp_path / "bench.json"

    assert bench.main(["--durable", "--output", str(output)]) == 0

    # The stronger settings reach the second stack: the broker's sync and SQLite's synchronous mode.
    assert [config.nats_sync_interval for config in seen] == [None, "always"]
    assert seen[1].extra_env["TILLSAMMANS_SQLITE_SYNCHRONOUS"] == "FULL"
    assert seen[0].extra_env["TILLSAMMANS_SQLITE_SYNCHRONOUS"] == "NORMAL"
    report = json.loads(output.read_text())
    assert report["end_to_end_half_capacity"]["rate_per_s"] == 250.0
    assert report["throughput"]["ratio"] == 0.5
    assert report["durable"]["end_to_end_half_capacity"]["rate_per_s"] == 150.0
    assert report["durable"]["operations"] == costs
    printed = capsys.readouterr().out
    assert "half capacity (250/s)" in printed and "durable: end-to-end p50 @ half capacity (150/s)" in printed
    assert "sqlite_commit (FULL) p50 / p99" in printed


def test_without_durable_only_the_default_stack_is_measured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[StackConfig] = []

    def measure_stack(config: StackConfig, **_: Any) -> dict[str, Any]:
        calls.append(config)
        return {"memory": {"rss_mb": 1.0, "rss_mb_after_load": 1.0}, "stack_ready_s": 1.0,
                "end_to_end": _latency(200, 1.0), "cross_org": _latency(50, 1.0),
                "intake": {"requests_per_s": 100.0}, "end_to_end_half_capacity": _latency(50, 1.0)}

    monkeypatch.setattr(bench, "measure_stack", measure_stack)
    monkeypatch.setattr(bench, "bare_throughput", lambda **_: {"requests_per_s": 200.0})
    monkeypatch.setattr(bench, "durability_costs", lambda: pytest.fail("measured without --durable"))
    assert bench.main(["--output", str(tmp_path / "b.json")]) == 0
    assert len(calls) == 1 and "durable" not in json.loads((tmp_path / "b.json").read_text())

"""The many-accounts benchmark's arithmetic (bench/ip_weight.py) and its shared clock (bench/simclock.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from bench.ip_weight import analyse
from bench.simclock import SharedClock
from localdev.exchange_emulator import AUTO_COLLECTION_PATH, BALANCE_PATH, RecordedRequest

START = 1_800_000_000_000


def _request(at_s: float, account: str, status: int = 200, path: str = AUTO_COLLECTION_PATH) -> RecordedRequest:
    ok = status == 200 and path == AUTO_COLLECTION_PATH
    code = None if status == 200 else -1003
    return RecordedRequest(START + int(at_s * 1000), "POST", path, "k", account, {}, None, status, code, ok, ok)


def _tick(k: int, **fields: Any) -> dict[str, Any]:
    tick = {"at_ms": START + k * 60_000, "late_ms": 0, "duration_ms": 1000, "statuses": {}}
    return tick | {"deferred_wait_ms": None, "errors": []} | fields


def test_analyse_counts_what_the_exchange_saw() -> None:
    requests = [
        _request(1, "a"),
        _request(30, "b"),
        _request(59.9, "a", path=BALANCE_PATH),
        _request(61.2, "b", path=BALANCE_PATH),
        _request(61.5, "b"),  # the minute (1.5 s, 61.5 s] no longer holds the one at 1 s
        _request(62, "c", status=429),  # refused: no weight, not a collection
        _request(150, "a"),
    ]
    ticks = [_tick(0), _tick(1), _tick(2, deferred_wait_ms=70_000)]
    summary = analyse({"ticks": ticks}, requests, {"DynamoDB_20120810.PutItem": 6}, ["a", "b", "c"])

    assert summary["collections"] == 4
    assert summary["per_tick"] == {1: 2, 2: 1}
    assert summary["refused_429_418"] == 1
    assert summary["max_weight_60s"] == 1500 + 20 + 20 + 1500
    assert summary["per_account"] == {"min": 0, "max": 2, "median": 2}
    assert summary["accounts_never_collected"] == 1
    assert summary["longest_gap_s"] == 149
    assert summary["longest_without_s"] == 180  # account c: the whole three minutes
    assert summary["aws_per_collection"] == 6 / 4
    assert summary["idle_ticks"] == 0
    assert summary["drift_s"] == pytest.approx(((61.5 - 60) - 1 + (150 - 120) - (61.5 - 60)) / 2)


def test_shared_clock_moves_forward_for_every_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = SharedClock(tmp_path / "clock", create=True)
    reader = SharedClock(tmp_path / "clock")
    writer.advance_ns(90 * 10**9)
    assert reader.shift_ns() == 90 * 10**9
    assert abs(reader.now_ms() - (time.time_ns() // 10**6 + 90_000)) < 1000
    reader.advance_to_ns(reader.now_ns() - 10**9)  # never back
    assert writer.shift_ns() == 90 * 10**9

    monkeypatch.setattr(time, "time_ns", time.time_ns)
    monkeypatch.setattr(time, "sleep", time.sleep)
    reader.install(sleep=True)
    before = time.time_ns()
    time.sleep(3600)  # moves the clock on instead of waiting
    assert time.time_ns() - before >= 3600 * 10**9
    assert writer.shift_ns() >= 3690 * 10**9

"""The table's value codec (records.py): boto3's serializer both ways, numbers exact, readers given plain values."""

from __future__ import annotations

from decimal import Decimal

import pytest

from auto_collector.events import Invocation
from auto_collector.exchange import AttemptResult, FuturesBalance
from auto_collector.outcome import AttemptRecord, Outcome
from auto_collector.records import account_key, from_item, outcome_record, plain, plain_record, to_item

BEYOND_FLOAT = 2**53 + 1  # the first integer a float cannot hold


def test_numbers_keep_every_digit_both_ways() -> None:
    item = to_item({"big": BEYOND_FLOAT, "exact": Decimal("0.1000000000000000000001"), "none": None})
    assert item["big"] == {"N": str(BEYOND_FLOAT)}
    record = from_item(item)
    assert record["big"] == Decimal(BEYOND_FLOAT) and record["exact"] == Decimal("0.1000000000000000000001")
    assert plain_record(item)["big"] == BEYOND_FLOAT


def test_readers_get_ints_for_whole_numbers_and_floats_for_the_rest() -> None:
    value = plain({"n": Decimal(3), "f": Decimal("2.5"), "l": [Decimal(1), {"m": Decimal("0.25")}], "s": "x"})
    assert value == {"n": 3, "f": 2.5, "l": [1, {"m": 0.25}], "s": "x"}
    assert type(value["n"]) is int and type(value["f"]) is float


def test_a_float_is_refused_rather_than_rounded() -> None:
    with pytest.raises(TypeError):
        to_item({"x": 0.1})


def test_the_outcome_record_round_trips_through_the_codec() -> None:
    outcome = Outcome("fund-a", "inv-1", Invocation(trigger="schedule"), started_ms=1_764_561_166_123)
    outcome.status, outcome.finished_ms = "collected", 1_764_561_166_423
    outcome.attempts.append(
        AttemptRecord(7, 1_764_561_166_200, AttemptResult("success", 200, None, "", 42, used_weight_1m=1_501))
    )
    outcome.balances_before = {
        "USDT": FuturesBalance(Decimal("120.5"), Decimal(0)),
        "BTC": FuturesBalance(Decimal(0), Decimal(0)),
    }
    outcome.balances_after = {}
    record = outcome_record(outcome, retention_days=90)
    assert record["pk"] == account_key("fund-a") == "ACCOUNT#fund-a"
    assert record["sk"] == "OUTCOME#2025-12-01T03:52:46.123Z#inv-1"
    assert record["expiresAt"] == 1_764_561_166 + 90 * 86_400
    assert record["balancesBefore"] == {"USDT": {"um": "120.5", "cm": "0"}}
    assert record["moved"] == {"USDT": "120.5"}
    assert plain_record(to_item(record)) == record

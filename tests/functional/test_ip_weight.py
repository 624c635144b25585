"""Many accounts behind one IP: every signed request paced under the exchange's IP weight (issue 9).

The emulator keeps the exchange's real limits (12,000 IP weight a minute, 500 collections an hour per account).
Time between scheduled ticks is travelled, not waited: `time.time_ns` is shifted for the whole process, so the
emulator, moto and the function all see the same clock jump.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from auto_collector.ip_store import IP_WINDOW_KEY
from tests.functional.test_accounts_and_balances import add_accounts, outcomes_of
from tests.support.deployment import Deployment
from tests.support.events import scheduled_event

COLLECT = "/sapi/v1/portfolio/auto-collection"
LABELS = [f"fund-{index:02d}" for index in range(12)]


def statuses(result: dict[str, Any]) -> dict[str, str]:
    return {summary["account"]: summary["status"] for summary in result["accounts"]}


def assert_exchange_never_refused(deployment: Deployment) -> None:
    refused = [r for r in deployment.exchange.requests() if r.status in (418, 429)]
    assert refused == [] and deployment.exchange.violations() == []


def test_twelve_accounts_on_a_two_minute_schedule_are_all_collected_within_three_ticks(
    deployment: Deployment, travel: Callable[[int], None]
) -> None:
    add_accounts(deployment, LABELS)
    collected_at: dict[str, int] = {}
    collections = 0

    for tick in range(3):
        result = deployment.invoke(scheduled_event())  # returns normally: deferring is not a failure
        by_account = statuses(result)
        assert set(by_account.values()) <= {"collected", "deferred"}, by_account
        collections += list(by_account.values()).count("collected")
        for label, status in by_account.items():
            if status == "collected":
                collected_at.setdefault(label, tick)
        if tick == 0:
            # The first minute: each key's restrictions are read once (weight 1, 12 in all), so 7 collections fit
            # into 12,000 weight (8 would need all of it); the other 5 are deferred, not failed.
            assert sorted(by_account.values()).count("collected") == 7
            deferred = sorted(label for label, status in by_account.items() if status == "deferred")
            assert len(deferred) == 5
        if tick == 1:
            # Least recently attempted first: every account deferred on the first tick is collected on the second.
            assert all(by_account[label] == "collected" for label in deferred)
        travel(120_000)

    assert sorted(collected_at) == LABELS  # every account collected within three ticks
    assert_exchange_never_refused(deployment)
    assert [r.status for r in deployment.exchange.requests(COLLECT)] == [200] * collections  # one request each


def test_a_deferred_account_has_an_outcome_record_saying_when_weight_frees(
    deployment: Deployment, travel: Callable[[int], None]
) -> None:
    add_accounts(deployment, LABELS[:8])
    result = deployment.invoke({})
    (deferred,) = [label for label, status in statuses(result).items() if status == "deferred"]
    (record,) = outcomes_of(deployment, deferred)
    assert record["status"] == "deferred" and record["error"] is None
    assert record["attempts"] == 0 and record["reservations"] == []
    # 7 collections and the 8 keys' restrictions reads (weight 1 each): an 8th collection would pass 12,000.
    assert record["deferredUntil"] is not None and record["ipWeightUsed"] == 7 * 1_500 + 8
    assert deployment.exchange.accepted_collections(deferred) == 0
    assert_exchange_never_refused(deployment)


def test_weight_used_by_another_program_on_the_address_slows_the_deployment_down(deployment: Deployment) -> None:
    add_accounts(deployment, LABELS[:3])
    deployment.exchange.use_ip_weight(8_900)  # another bot behind the same NAT address

    result = deployment.invoke({})

    # The first key restrictions read's answer reports 8,901 used: 8,900 more than this deployment reserved. That is
    # recorded, so after two collections and three reads (weight 1 each) the window holds 11,903 and the third
    # account is deferred rather than sent into a 429.
    assert sorted(statuses(result).values()) == ["collected", "collected", "deferred"]
    assert_exchange_never_refused(deployment)
    item = deployment.dynamodb.get_item(TableName=deployment.table, Key=IP_WINDOW_KEY, ConsistentRead=True)["Item"]
    weights = sorted(int(pair["L"][1]["N"]) for pair in item["entries"]["L"])
    assert weights == [1, 1, 1, 1_500, 1_500, 8_900]


def test_a_429_blocks_every_account_of_the_deployment_until_retry_after(deployment: Deployment) -> None:
    from localdev.exchange_emulator import Fault

    add_accounts(deployment, LABELS[:2])
    deployment.exchange.inject(Fault(path=COLLECT, status=429, code=-1003, retry_after=30, count=1))
    with pytest.raises(Exception, match="429"):
        deployment.invoke({"accounts": [LABELS[0]]})
    seen = len(deployment.exchange.requests())

    result = deployment.invoke({"accounts": [LABELS[1]]})  # another account: same address, same block

    assert result["status"] == "backing_off"
    assert len(deployment.exchange.requests()) == seen  # nothing sent into the known 429

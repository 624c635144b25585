"""IP-weight admission end to end: what happens when weight is not there at the moment a request is signed."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from auto_collector.ip_store import IpWeightStore
from auto_collector.ip_window import (
    ADMISSION_SLACK_MS,
    COLLECTION_WEIGHT,
    EXCHANGE_IP_WEIGHT_PER_MINUTE,
    IpWeightPolicy,
    WeightGrant,
)
from auto_collector.store import WindowStore
from auto_collector.window import Grant, WindowPolicy
from tests.conftest import Deployment
from tests.support.fault_proxy import DYNAMODB_TARGET, FaultProxy


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture
def slow_dynamodb(deployment: Deployment) -> Iterator[FaultProxy]:
    with FaultProxy(deployment.dynamodb.meta.endpoint_url) as proxy:
        deployment.set_env(AWS_ENDPOINT_URL_DYNAMODB=proxy.endpoint)
        yield proxy


def test_an_account_window_slower_than_the_slack_defers_instead_of_failing(
    deployment: Deployment, slow_dynamodb: FaultProxy
) -> None:
    """A busy host (many accounts on a small Lambda) can take longer than ADMISSION_SLACK_MS between the IP-weight
    reservation and the account's slot; when the weight for the later signing timestamp is gone by then, nothing
    is sent and the account is deferred: no failed invocation, no alarm, its slot recorded as unsent."""
    policy = IpWeightPolicy(EXCHANGE_IP_WEIGHT_PER_MINUTE, recv_window_ms=2_000)
    # Other invocations of the deployment hold all but one collection's weight.
    taken, _ = IpWeightStore(deployment.dynamodb, deployment.table).reserve(
        policy, EXCHANGE_IP_WEIGHT_PER_MINUTE - COLLECTION_WEIGHT, now_ms, lambda: 60_000
    )
    assert isinstance(taken, WeightGrant)
    # ... and one of them collected for this account, so this container's first write of its window conflicts
    # and is made again with a new timestamp: after the delay, past the IP weight's slack.
    earlier, _ = WindowStore(deployment.dynamodb, deployment.table).reserve(
        "default", WindowPolicy(500, recv_window_ms=2_000), now_ms, lambda: 60_000
    )
    assert isinstance(earlier, Grant)
    slow_dynamodb.delay_next(
        1, f"{DYNAMODB_TARGET}UpdateItem", (ADMISSION_SLACK_MS + 300) / 1000, body_contains=b"ACCOUNT#default"
    )

    result = deployment.invoke({})

    assert result["status"] == "deferred"
    assert result["error"] is None
    assert deployment.exchange.requests() == []  # nothing sent past its IP-weight reservation
    (record,) = WindowStore(deployment.dynamodb, deployment.table).outcomes("default")
    assert record["status"] == "deferred"
    assert (record["reservations"], record["unsentReservations"]) == ([1], [1])
    assert record["deferredUntil"] > record["startedAt"]
    assert record["windowUsed"] == 2
    assert record["ipWeightUsed"] == EXCHANGE_IP_WEIGHT_PER_MINUTE

"""The rolling window under real concurrency, against DynamoDB Local (atomic conditional writes).

moto's DynamoDB evaluates a condition and applies the write without a lock, so it can let two
conditional writes through that DynamoDB refuses: these tests would prove nothing there.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections import Counter

import pytest

from auto_collector.store import CollectorTable
from auto_collector.window import FUTURE_TOLERANCE_MS, HOUR_MS, Decision, Grant, Refusal, WindowPolicy
from tests.support.deployment import Deployment
from tests.support.dynamodb_local import DynamoDBLocal
from tests.support.table import create_table
from tests.support.workers import invoke_repeatedly, worker_environment

pytestmark = pytest.mark.dynamodb_local

RECV = 5_000
OCCUPANCY = HOUR_MS + RECV + FUTURE_TOLERANCE_MS


def test_parallel_processes_send_exactly_the_budget(local_deployment: Deployment) -> None:
    budget, processes, invocations_each = 5, 8, 4
    local_deployment.set_env(MAX_CALLS_PER_HOUR=str(budget))
    local_deployment.exchange.hourly_limit = budget  # any request beyond it would be a recorded violation
    environment = worker_environment()
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    workers = [
        context.Process(target=invoke_repeatedly, args=(environment, invocations_each, start, results))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    start.set()
    statuses = Counter(status for _ in workers for status in results.get(timeout=120))
    for worker in workers:
        worker.join(timeout=30)

    assert statuses == {"collected": budget, "budget_exhausted": processes * invocations_each - budget}
    exchange = local_deployment.exchange
    assert exchange.accepted_collections() == budget
    assert exchange.violations() == []
    assert exchange.max_counted_in_any_window() == budget
    outcomes = local_deployment.outcomes()
    assert len(outcomes) == processes * invocations_each  # every invocation left its record
    reservations = sorted(n for record in outcomes for n in record["reservations"])
    assert reservations == list(range(budget))  # each slot used by exactly one request


@pytest.fixture
def local_table(dynamodb_local: DynamoDBLocal) -> str:
    name = f"window-{os.urandom(4).hex()}"
    create_table(dynamodb_local.client(), name)
    return name


def test_threads_racing_on_separate_stores_get_exactly_the_budget(
    dynamodb_local: DynamoDBLocal, local_table: str
) -> None:
    budget, racers = 7, 24
    policy = WindowPolicy(limit=budget, recv_window_ms=RECV)
    barrier = threading.Barrier(racers)
    grants: list[int] = []
    lock = threading.Lock()

    def race() -> None:
        store = CollectorTable(dynamodb_local.client(), local_table)  # each racer is its own "container"
        barrier.wait()
        decision, _ = store.reserve("acct", policy, lambda: 1_000_000, lambda: 60_000)
        if isinstance(decision, Grant):
            with lock:
                grants.append(decision.sequence)

    threads = [threading.Thread(target=race) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(grants) == list(range(budget))


def test_slots_free_exactly_when_they_expire(dynamodb_local: DynamoDBLocal, local_table: str) -> None:
    clock = {"now": 1_800_000_000_000}
    policy = WindowPolicy(limit=3, recv_window_ms=RECV)
    store = CollectorTable(dynamodb_local.client(), local_table)
    other = CollectorTable(dynamodb_local.client(), local_table)  # a second container with a stale view

    def reserve(which: CollectorTable = store) -> Decision:
        return which.reserve("acct", policy, lambda: clock["now"], lambda: 60_000)[0]

    t0 = clock["now"]
    sent = []
    for offset in (0, 1_000, 2_000):
        clock["now"] = t0 + offset
        decision = reserve()
        assert isinstance(decision, Grant)
        sent.append(decision.timestamp_ms)

    clock["now"] = t0 + 3_000
    refusal = reserve(other)
    assert isinstance(refusal, Refusal) and refusal.next_free_ms == t0 + OCCUPANCY

    clock["now"] = t0 + OCCUPANCY - 1  # one millisecond early: still an hour's worth of calls
    assert isinstance(reserve(), Refusal)
    clock["now"] = t0 + OCCUPANCY
    granted = reserve(other)
    assert isinstance(granted, Grant) and granted.sequence == 3
    # the next frees exactly when the second original reservation expires
    refused = reserve()
    assert isinstance(refused, Refusal) and refused.next_free_ms == sent[1] + OCCUPANCY
    clock["now"] = sent[1] + OCCUPANCY
    assert isinstance(reserve(), Grant)
    assert policy.used(store.read("acct"), clock["now"]) == 3

"""The IP-weight window under real concurrency: several processes, each a warm container collecting for many
accounts, all behind one address, against DynamoDB Local (atomic conditional writes) and ONE exchange emulator
with the exchange's real limits (12,000 IP weight a minute, 500 collections an hour per account)."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
import uuid
from collections import Counter

import pytest

from auto_collector.config import Settings
from auto_collector.exchange import AUTO_COLLECTION_PATH, BALANCE_PATH
from auto_collector.ip_store import IpWeightStore
from auto_collector.ip_window import (
    BALANCE_WEIGHT,
    COLLECTION_WEIGHT,
    EXCHANGE_IP_WEIGHT_PER_MINUTE,
    MINUTE_MS,
    IpWeightPolicy,
    WeightGrant,
)
from auto_collector.store import CollectorTable
from auto_collector.window import BackingOff
from localdev.exchange_emulator import ApiCredential, RecordedRequest
from localdev.keys import new_ed25519_pem as ed25519_pem
from tests.support.deployment import Deployment
from tests.support.dynamodb_local import DynamoDBLocal
from tests.support.table import create_table
from tests.support.workers import invoke_accounts_repeatedly, worker_environment

pytestmark = pytest.mark.dynamodb_local

PROCESSES, ACCOUNTS_EACH, INVOCATIONS_EACH = 4, 6, 3
WEIGHTS = {AUTO_COLLECTION_PATH: COLLECTION_WEIGHT, BALANCE_PATH: BALANCE_WEIGHT}
#: What an invocation may answer for an account when the IP weight runs out: nothing failed, nothing raised.
NORMAL_STATUSES = {"collected", "deferred", "budget_exhausted"}


def register_accounts(deployment: Deployment, labels: list[str]) -> str:
    """Give each label its own key, secret and account on the one emulator; returns the ACCOUNTS value."""
    accounts = []
    for label in labels:
        private_pem, public_pem = ed25519_pem()
        api_key = uuid.uuid4().hex
        deployment.exchange.add_credential(ApiCredential(api_key=api_key, public_key_pem=public_pem, account=label))
        deployment.exchange.set_balances(label, {"USDT": {"umWalletBalance": "10"}})
        secret_id = f"collector/{label}-{uuid.uuid4().hex[:6]}"
        deployment.secrets.create_secret(
            Name=secret_id, SecretString=json.dumps({"apiKey": api_key, "privateKey": private_pem})
        )
        accounts.append({"label": label, "secretId": secret_id})
    return json.dumps(accounts)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def counted_weight(request: RecordedRequest) -> int:
    """The weight the emulator counted for a request: counted at arrival for a known key, unless refused for it."""
    if request.account is None or request.status == 429:
        return 0
    return WEIGHTS.get(request.path, 0)


def most_weight_in_any_minute(requests: list[RecordedRequest]) -> int:
    """The largest weight the emulator counted inside any half-open minute (T - 60 s, T] of its clock."""
    counted = sorted((r.received_ms, counted_weight(r)) for r in requests if counted_weight(r))
    best, start, inside = 0, 0, 0
    for received, weight in counted:
        inside += weight
        while counted[start][0] <= received - MINUTE_MS:
            inside -= counted[start][1]
            start += 1
        best = max(best, inside)
    return best


def run_processes(environments: list[dict[str, str]]) -> list[list[list[str]]]:
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    workers = [
        context.Process(target=invoke_accounts_repeatedly, args=(environment, INVOCATIONS_EACH, start, results))
        for environment in environments
    ]
    for worker in workers:
        worker.start()
    start.set()
    per_process: list[list[list[str]]] = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    return per_process


@pytest.mark.parametrize("balance_check", ["off", "record-only"])
def test_many_accounts_in_parallel_processes_never_exceed_the_ip_weight(
    local_deployment: Deployment, balance_check: str
) -> None:
    exchange = local_deployment.exchange
    assert exchange.ip_weight_limit_1m == EXCHANGE_IP_WEIGHT_PER_MINUTE  # the exchange's real limit, not lifted
    local_deployment.monkeypatch.delenv("SECRET_ID")  # every process names its accounts in ACCOUNTS instead
    labels = [[f"p{p}-fund-{a}" for a in range(ACCOUNTS_EACH)] for p in range(PROCESSES)]
    environments = [
        {
            **worker_environment(),
            "ACCOUNTS": register_accounts(local_deployment, process_labels),
            "BALANCE_CHECK": balance_check,
        }
        for process_labels in labels
    ]

    started = time.monotonic()
    per_process = run_processes(environments)

    statuses = Counter(status for invocations in per_process for statuses in invocations for status in statuses)
    assert set(statuses) <= NORMAL_STATUSES, statuses  # no invocation raised, no account failed
    assert all(len(statuses) == ACCOUNTS_EACH for invocations in per_process for statuses in invocations)
    requests = exchange.requests()
    assert [r for r in requests if r.status in (418, 429)] == []
    assert exchange.violations() == []
    assert exchange.internal_errors() == []
    busiest = most_weight_in_any_minute(requests)
    assert busiest <= EXCHANGE_IP_WEIGHT_PER_MINUTE
    collected = sum(exchange.accepted_collections(label) for process_labels in labels for label in process_labels)
    assert collected == statuses["collected"]
    assert 1 <= collected <= EXCHANGE_IP_WEIGHT_PER_MINUTE // COLLECTION_WEIGHT  # 8 a minute at most
    assert statuses["deferred"] == PROCESSES * ACCOUNTS_EACH * INVOCATIONS_EACH - collected
    # ... and an account is deferred only when the weight is really taken: the run is shorter than a reservation's
    # occupancy, so everything reserved still counts, and no further collection fits
    policy = IpWeightPolicy(EXCHANGE_IP_WEIGHT_PER_MINUTE, recv_window_ms=Settings.recv_window_ms)
    assert time.monotonic() - started < policy.occupancy_ms / 1000
    reserved = policy.used(IpWeightStore(local_deployment.dynamodb, local_deployment.table).read(), now_ms())
    assert reserved + COLLECTION_WEIGHT > EXCHANGE_IP_WEIGHT_PER_MINUTE, reserved

    store = CollectorTable(local_deployment.dynamodb, local_deployment.table)
    recorded: Counter[str] = Counter()
    for process_labels in labels:
        for label in process_labels:
            outcomes = store.outcomes(label)
            assert len(outcomes) == INVOCATIONS_EACH, label  # every invocation left the account's record
            recorded.update(outcome["status"] for outcome in outcomes)
            for outcome in outcomes:
                if outcome["status"] == "deferred":
                    assert outcome["deferredUntil"] > outcome["startedAt"], outcome  # when it will be tried
    assert recorded == statuses


@pytest.fixture
def local_table(dynamodb_local: DynamoDBLocal) -> str:
    name = f"ip-window-{uuid.uuid4().hex[:8]}"
    create_table(dynamodb_local.client(), name)
    return name


def test_threads_racing_on_separate_stores_get_exactly_the_limit(
    dynamodb_local: DynamoDBLocal, local_table: str
) -> None:
    racers = 24
    policy = IpWeightPolicy(EXCHANGE_IP_WEIGHT_PER_MINUTE, recv_window_ms=2_000)
    barrier = threading.Barrier(racers)
    granted: list[int] = []
    lock = threading.Lock()

    def race(weight: int) -> None:
        store = IpWeightStore(dynamodb_local.client(), local_table)  # each racer is its own container
        barrier.wait()
        decision, _ = store.reserve(policy, weight, lambda: 1_800_000_000_000, lambda: 60_000)
        if isinstance(decision, WeightGrant):
            with lock:
                granted.append(decision.weight)

    weights = [COLLECTION_WEIGHT] * 12 + [BALANCE_WEIGHT] * 12
    threads = [threading.Thread(target=race, args=(weight,)) for weight in weights]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stored = IpWeightStore(dynamodb_local.client(), local_table).read()
    assert sorted(weight for _, weight in stored.entries) == sorted(granted)  # every grant stored, nothing else
    assert stored.sequence == len(granted)
    assert sum(granted) <= EXCHANGE_IP_WEIGHT_PER_MINUTE
    # whatever the interleaving, what was refused did not fit any more
    refused = sorted(weights)
    for weight in granted:
        refused.remove(weight)
    assert all(sum(granted) + weight > EXCHANGE_IP_WEIGHT_PER_MINUTE for weight in refused)


def test_a_block_stops_a_writer_that_has_not_seen_it(dynamodb_local: DynamoDBLocal, local_table: str) -> None:
    now = 1_800_000_000_000
    policy = IpWeightPolicy(EXCHANGE_IP_WEIGHT_PER_MINUTE, recv_window_ms=2_000)
    unaware = IpWeightStore(dynamodb_local.client(), local_table)
    first, _ = unaware.reserve(policy, COLLECTION_WEIGHT, lambda: now, lambda: 60_000)
    assert isinstance(first, WeightGrant)

    heard_429 = IpWeightStore(dynamodb_local.client(), local_table)
    heard_429.block(now + 30_000, "HTTP 429 code -1003: Too much request weight used")
    heard_429.block(now + 10_000, "shorter: ignored")  # a block is only ever extended

    decision, _ = unaware.reserve(policy, COLLECTION_WEIGHT, lambda: now + 1, lambda: 60_000)
    assert decision == BackingOff(now + 30_000, "HTTP 429 code -1003: Too much request weight used")
    assert unaware.read().blocked_until_ms == now + 30_000
    # what the exchange reports is still recorded during a block
    assert unaware.observe(policy, 4_000, lambda: now + 2) == 4_000 - COLLECTION_WEIGHT
    granted, _ = unaware.reserve(policy, COLLECTION_WEIGHT, lambda: now + 30_000, lambda: 60_000)
    assert isinstance(granted, WeightGrant)
    assert policy.used(unaware.read(), now + 30_000) == 4_000 + COLLECTION_WEIGHT

"""The collection policy (collection.py) specified on in-memory fakes of its ports: no HTTP, no DynamoDB.

The same rules are exercised end to end against the HTTP emulator and moto / DynamoDB Local in tests/functional
and tests/integration; here each is stated on its own, with the exact requests the exchange received.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from auto_collector.admission import IpWeightGate
from auto_collector.collection import MIN_HTTP_TIMEOUT_MS, OUTCOME_RESERVE_MS, Collector
from auto_collector.config import AccountConfig, Settings
from auto_collector.errors import (
    DeadlineError,
    ExchangeRateLimitedError,
    ExchangeRejectedError,
    ExchangeUnavailableError,
)
from auto_collector.events import Invocation
from auto_collector.exchange import API_RESTRICTIONS_PATH, AUTO_COLLECTION_PATH, BALANCE_PATH, SPOT_ACCOUNT_PATH
from auto_collector.identity import IdentityBook, account_window_key
from auto_collector.ip_window import COLLECTION_WEIGHT, EXCHANGE_IP_WEIGHT_PER_MINUTE, IpWeightPolicy
from auto_collector.outcome import Outcome
from tests.support.fakes import (
    UID,
    Clock,
    FakeCredentials,
    FakeExchange,
    InMemoryAccountWindows,
    InMemoryIpWeightLedger,
    InMemoryRegistry,
    balances,
    credentials,
    failure,
)

ACCOUNT = "fund-a"
#: The window the fake key's exchange account spends (identity.py).
WINDOW = account_window_key(UID)
SCHEDULED = Invocation(trigger="schedule")


@dataclass
class Rig:
    """One account's collector on fakes, with everything a test looks at."""

    settings: Settings
    clock: Clock = field(default_factory=Clock)
    exchange: FakeExchange = field(init=False)
    windows: InMemoryAccountWindows = field(default_factory=InMemoryAccountWindows)
    ledger: InMemoryIpWeightLedger = field(init=False)
    secret: FakeCredentials = field(default_factory=FakeCredentials)
    registry: InMemoryRegistry = field(default_factory=InMemoryRegistry)
    collector: Collector = field(init=False)

    def __post_init__(self) -> None:
        self.exchange = FakeExchange(self.clock)
        policy = IpWeightPolicy(self.settings.ip_weight_per_minute, self.settings.recv_window_ms)
        self.ledger = InMemoryIpWeightLedger(policy)
        gate = IpWeightGate(self.ledger, policy, self.settings.ip_weight_max_wait_s * 1000, sleep=self.clock.sleep)
        self.collector = Collector(
            self.settings,
            ACCOUNT,
            self.windows,
            self.exchange,
            self.secret,
            gate=gate,
            identities=IdentityBook([ACCOUNT], self.registry),
            wall_clock_ms=self.clock.now_ms,
            sleep=self.clock.sleep,
        )

    def run(self, invocation: Invocation = SCHEDULED, invocation_id: str = "inv-1", time_ms: int = 60_000) -> Outcome:
        """One invocation given `time_ms` before its deadline (the template's 60 s Timeout by default)."""
        self.clock.deadline = self.clock.now + time_ms
        return self.collector.run(invocation, invocation_id, self.clock.remaining_ms)

    def collections_sent(self) -> int:
        return self.exchange.paths().count(AUTO_COLLECTION_PATH)


def rig(**settings: Any) -> Rig:
    """A rig with these Settings changed (the exchange's limits unless a test says otherwise)."""
    return Rig(settings=replace(Settings(table_name="t", accounts=(AccountConfig(ACCOUNT, "s"),)), **settings))


def test_a_collection_reads_the_key_once_then_collects_with_one_reservation() -> None:
    r = rig()
    outcome = r.run()
    assert (outcome.status, outcome.error) == ("collected", None)
    # The key's restrictions, then its exchange account, whose window the slot is taken in.
    assert r.exchange.paths() == [API_RESTRICTIONS_PATH, SPOT_ACCOUNT_PATH, AUTO_COLLECTION_PATH]
    assert [(account, sequence) for account, sequence, _ in r.windows.reservations] == [(WINDOW, 0)]
    assert outcome.window_key == WINDOW and r.registry.items == {ACCOUNT: WINDOW}
    # The request is signed with the instant its slot was reserved at.
    assert r.exchange.sent[2].timestamp_ms == r.windows.reservations[0][2] == outcome.attempts[0].timestamp_ms
    assert (outcome.window_used, outcome.key_type) == (1, "hmac")

    r.run(invocation_id="inv-2")  # warm: the key's restrictions and account are kept with the secret's value
    assert r.exchange.paths()[3:] == [AUTO_COLLECTION_PATH]
    assert r.registry.writes == [(ACCOUNT, WINDOW)]


def test_a_5xx_is_retried_up_to_max_attempts_each_with_a_new_reservation() -> None:
    r = rig(max_attempts=3)
    r.exchange.collections = [failure(503), failure(502), failure(500)]
    outcome = r.run()
    assert outcome.status == "failed" and type(outcome.error) is ExchangeUnavailableError
    assert r.collections_sent() == 3
    assert [attempt.sequence for attempt in outcome.attempts] == [0, 1, 2]
    timestamps = [request.timestamp_ms for request in r.exchange.sent if request.path == AUTO_COLLECTION_PATH]
    assert timestamps == [timestamp for _, _, timestamp in r.windows.reservations]
    assert r.clock.slept_ms == [250, 500]  # the pause doubles; none after the last attempt


def test_a_5xx_then_success_is_collected() -> None:
    r = rig()
    r.exchange.collections = [failure(503)]
    outcome = r.run()
    assert outcome.status == "collected" and len(outcome.attempts) == 2 and outcome.window_used == 2


def test_a_timestamp_outside_recv_window_resyncs_the_clock_once() -> None:
    r = rig()
    r.exchange.skew_ms = 7_000
    r.exchange.collections = [failure(400, -1021)]
    outcome = r.run()
    assert outcome.status == "collected" and r.exchange.clock_syncs == 1
    first, second = (request for request in r.exchange.sent if request.path == AUTO_COLLECTION_PATH)
    # The retry is reserved and signed in the exchange's clock as just learned.
    assert second.timestamp_ms - first.timestamp_ms >= 7_000
    assert outcome.clock_offset_ms == 7_000


def test_a_second_timestamp_refusal_is_not_resynced_again() -> None:
    r = rig()
    r.exchange.collections = [failure(400, -1021), failure(400, -1021)]
    outcome = r.run()
    assert type(outcome.error) is ExchangeRejectedError and outcome.error.code == -1021
    assert r.exchange.clock_syncs == 1 and r.collections_sent() == 2


def test_a_refused_key_rereads_the_secret_once_and_checks_the_rotated_key() -> None:
    r = rig()
    r.exchange.collections = [failure(401, -2015)]
    r.secret.rotated = credentials("key-2", "secret-2")
    outcome = r.run()
    assert outcome.status == "collected" and r.secret.forced_reads == 1
    assert [(request.path, request.api_key) for request in r.exchange.sent] == [
        (API_RESTRICTIONS_PATH, "key-1"),
        (SPOT_ACCOUNT_PATH, "key-1"),
        (AUTO_COLLECTION_PATH, "key-1"),
        (API_RESTRICTIONS_PATH, "key-2"),  # a rotated key is checked before anything is collected with it
        (SPOT_ACCOUNT_PATH, "key-2"),  # ...and its account read: it may belong to another one
        (AUTO_COLLECTION_PATH, "key-2"),
    ]


def test_a_refused_key_whose_secret_has_not_changed_fails_without_another_attempt() -> None:
    r = rig()
    r.exchange.collections = [failure(400, -1022, "Signature for this request is not valid.")]
    outcome = r.run()
    assert type(outcome.error) is ExchangeRejectedError and outcome.error.code == -1022
    assert "the secret was re-read and has not changed" in str(outcome.error)
    assert r.secret.forced_reads == 1 and r.collections_sent() == 1


@pytest.mark.parametrize(("status", "retry_after_s", "blocked_s"), [(429, 120, 120), (429, None, 60), (418, None, 300)])
def test_a_rate_limit_is_stored_as_a_back_off_and_nothing_is_sent_while_it_holds(
    status: int, retry_after_s: int | None, blocked_s: int
) -> None:
    r = rig()
    r.exchange.collections = [failure(status, -1003, retry_after_s=retry_after_s)]
    outcome = r.run()
    assert type(outcome.error) is ExchangeRateLimitedError and r.collections_sent() == 1
    until = outcome.blocked_until_ms
    assert until is not None and until - r.exchange.server_now_ms() == pytest.approx(blocked_s * 1000, abs=100)
    assert r.windows.blocks == [((WINDOW,), until, f"HTTP {status} code -1003: HTTP {status}")]
    assert [block[0] for block in r.ledger.blocks] == [until]  # every account of the deployment

    sent = len(r.exchange.sent)
    r.clock.now += blocked_s * 1000 - 1_000  # a second before it ends
    later = r.run(invocation_id="inv-2")
    assert later.status == "backing_off" and later.blocked_until_ms == until
    assert len(r.exchange.sent) == sent

    r.clock.now += 1_000
    assert r.run(invocation_id="inv-3").status == "collected"


def test_no_attempt_starts_without_the_time_to_finish_it() -> None:
    r = rig()
    outcome = r.run(time_ms=OUTCOME_RESERVE_MS + MIN_HTTP_TIMEOUT_MS - 1)
    assert type(outcome.error) is DeadlineError and r.exchange.sent == []


def test_retries_stop_when_no_time_is_left_for_another_attempt() -> None:
    r = rig(max_attempts=5)
    r.exchange.latency_ms = 0
    r.exchange.collections = [failure(503)] * 5
    outcome = r.run(time_ms=2_800)
    assert type(outcome.error) is ExchangeUnavailableError
    assert str(outcome.error).endswith("; no time left for another attempt")
    assert r.collections_sent() == 2  # 2,800 ms; 2,550 after the first pause; 2,050 would be too little
    # Every attempt's HTTP time ends before the outcome's reserve.
    for request in r.exchange.sent:
        assert request.timeout_s <= (2_800 - OUTCOME_RESERVE_MS) / 1000 + 1e-9


def test_without_ip_weight_the_account_is_deferred_and_nothing_is_sent() -> None:
    r = rig()
    r.ledger.take(r.clock.now, EXCHANGE_IP_WEIGHT_PER_MINUTE)  # another program spent the address's minute
    outcome = r.run()
    assert (outcome.status, outcome.error) == ("deferred", None)
    assert r.exchange.sent == [] and r.windows.reservations == []
    assert outcome.deferred_until_ms is not None and outcome.deferred_until_ms > r.exchange.server_now_ms()


def test_a_collection_without_ip_weight_is_deferred_without_taking_a_slot() -> None:
    r = rig()
    r.ledger.take(r.clock.now, EXCHANGE_IP_WEIGHT_PER_MINUTE - COLLECTION_WEIGHT + 1)  # room for the key read only
    outcome = r.run()
    assert outcome.status == "deferred" and r.exchange.paths() == [API_RESTRICTIONS_PATH, SPOT_ACCOUNT_PATH]
    assert r.windows.reservations == [] and outcome.window_used == 0


def test_an_exhausted_budget_sends_nothing_and_says_when_a_slot_frees() -> None:
    r = rig(max_calls_per_hour=2)
    assert [r.run(invocation_id=f"inv-{n}").status for n in range(2)] == ["collected", "collected"]
    sent = len(r.exchange.sent)
    outcome = r.run(invocation_id="inv-3")
    assert outcome.status == "budget_exhausted" and len(r.exchange.sent) == sent
    first_expiry = r.windows.states[WINDOW].expiries[0]
    assert (outcome.window_used, outcome.next_free_ms) == (2, first_expiry)


def test_a_redelivered_event_is_a_duplicate_and_sends_nothing() -> None:
    r = rig()
    event = Invocation(trigger="schedule", event_id="e-1")
    assert r.run(event, "inv-1").status == "collected"
    sent = len(r.exchange.sent)
    again = r.run(event, "inv-2")
    assert again.status == "duplicate" and "already handled by invocation inv-1" in (again.note or "")
    assert len(r.exchange.sent) == sent


def test_an_empty_wallet_is_not_collected_when_the_check_says_so() -> None:
    r = rig(balance_check="skip-when-empty")
    outcome = r.run()
    assert outcome.status == "nothing_to_collect" and r.collections_sent() == 0
    r.exchange.wallets = balances(USDT="12.5")
    collected = r.run(invocation_id="inv-2")
    assert collected.status == "collected"
    assert r.exchange.paths()[-3:] == [BALANCE_PATH, AUTO_COLLECTION_PATH, BALANCE_PATH]  # before and after

"""Admission: the Turnstile's fairness order under real threads, and IpWeightGate's wait-or-defer rule.

The gate runs on an in-memory store (the real policy's decisions on one shared state, as the DynamoDB
store makes them) and an injected clock whose `sleep` moves time on, so waits are exact and instant.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from auto_collector.admission import Deferred, IpWeightGate, Turnstile
from auto_collector.ip_window import (
    BALANCE_WEIGHT,
    COLLECTION_WEIGHT,
    MINUTE_MS,
    IpWeightPolicy,
    WeightGrant,
)
from auto_collector.window import FUTURE_TOLERANCE_MS, BackingOff
from tests.support.fakes import InMemoryIpWeightLedger

#: A request is signed at the instant its IP weight is reserved (store.py reserves it with the account slot in
#: one transaction; a balance read is signed with its reservation's timestamp): no slack between the two.
ADMISSION_SLACK_MS = 0


RECV = 2_000
OCCUPANCY = ADMISSION_SLACK_MS + RECV + FUTURE_TOLERANCE_MS + MINUTE_MS
T0 = 1_800_000_000_000
JOIN_TIMEOUT_S = 5

# --- Turnstile -------------------------------------------------------------------------------------


def run_in_threads(targets: list[Callable[[], None]], stagger_s: float = 0.05) -> None:
    """Start the targets in the order given, each a little after the previous; fail on a deadlock."""
    threads = [threading.Thread(target=target, daemon=True) for target in targets]
    for thread in threads:
        thread.start()
        time.sleep(stagger_s)  # the earlier-started ones are waiting on their turn by now
    for thread in threads:
        thread.join(timeout=JOIN_TIMEOUT_S)
    assert not any(thread.is_alive() for thread in threads), "a turn never came: deadlock"


def test_accounts_pass_in_the_given_order_even_when_started_in_reverse() -> None:
    order = ["a", "b", "c", "d"]
    turnstile = Turnstile(order)
    passed: list[str] = []

    def take(label: str) -> Callable[[], None]:
        def run() -> None:
            with turnstile.turn(label):
                passed.append(label)

        return run

    run_in_threads([take(label) for label in reversed(order)])
    assert passed == order


def test_nobody_passes_before_the_first_in_order_starts() -> None:
    turnstile = Turnstile(["first", "second"])
    passed: list[str] = []

    def second() -> None:
        with turnstile.turn("second"):
            passed.append("second")

    thread = threading.Thread(target=second, daemon=True)
    thread.start()
    time.sleep(0.2)
    assert passed == []  # still waiting for "first"
    with turnstile.turn("first"):
        passed.append("first")
    thread.join(timeout=JOIN_TIMEOUT_S)
    assert passed == ["first", "second"]


def test_a_turn_released_without_use_passes_it_on() -> None:
    """An account that needs no IP weight (it failed early, or its budget is spent) releases its turn unused."""
    turnstile = Turnstile(["a", "b", "c"])
    c_passed = threading.Event()

    def c() -> None:
        with turnstile.turn("c"):
            c_passed.set()

    thread = threading.Thread(target=c, daemon=True)
    thread.start()
    with turnstile.turn("a"):
        pass
    assert not c_passed.wait(0.2)  # "b" still holds its place
    turnstile.turn("b").release()  # never entered: finished without needing weight
    assert c_passed.wait(JOIN_TIMEOUT_S)
    thread.join(timeout=JOIN_TIMEOUT_S)


def test_no_deadlock_when_a_turn_is_never_entered() -> None:
    """Turns released in any order (never entered, or left by an exception) never leave a later one waiting."""
    order = ["a", "b", "c", "d", "e"]
    turnstile = Turnstile(order)
    passed: list[str] = []

    def use(label: str) -> Callable[[], None]:
        def run() -> None:
            with turnstile.turn(label):
                passed.append(label)

        return run

    def fail_inside(label: str) -> Callable[[], None]:
        def run() -> None:
            with pytest.raises(RuntimeError), turnstile.turn(label):
                raise RuntimeError("the reservation failed")

        return run

    turnstile.turn("d").release()  # finished before anyone else started
    run_in_threads([use("e"), fail_inside("b"), use("c"), lambda: turnstile.turn("a").release()])
    assert passed == ["c", "e"]


def test_a_turn_is_taken_once_and_releasing_twice_passes_nobody_else_s_turn() -> None:
    turnstile = Turnstile(["a", "b", "c"])
    a = turnstile.turn("a")
    with a:
        pass
    with a:  # a second reservation of the same account (a retry) does not wait again
        pass
    a.release()
    a.release()
    c_passed = threading.Event()

    def c() -> None:
        with turnstile.turn("c"):
            c_passed.set()

    thread = threading.Thread(target=c, daemon=True)
    thread.start()
    assert not c_passed.wait(0.2)  # "b" has not passed: "a"'s repeated release did not pass it
    turnstile.turn("b").release()
    assert c_passed.wait(JOIN_TIMEOUT_S)
    thread.join(timeout=JOIN_TIMEOUT_S)


def test_an_account_outside_the_order_never_waits() -> None:
    turnstile = Turnstile(["a", "b"])
    with turnstile.turn("not-in-the-order"):
        pass  # would hang here if it waited for a place it does not have


# --- IpWeightGate ----------------------------------------------------------------------------------


@dataclass
class Clock:
    """The exchange's clock as the invocation sees it; `sleep` moves it on instead of waiting."""

    now: int = T0
    deadline: int = T0 + 60_000
    slept_ms: list[int] = field(default_factory=list)
    #: Run during a sleep: what other writers do meanwhile.
    while_asleep: Callable[[int], None] | None = None

    def now_ms(self) -> int:
        return self.now

    def remaining_ms(self) -> int:
        return self.deadline - self.now

    def sleep(self, seconds: float) -> None:
        ms = round(seconds * 1000)
        self.slept_ms.append(ms)
        self.now += ms
        if self.while_asleep is not None:
            self.while_asleep(self.now)


def gate_on(limit: int = 3_000, max_wait_ms: int = 10_000) -> tuple[IpWeightGate, InMemoryIpWeightLedger, Clock]:
    policy = IpWeightPolicy(limit, recv_window_ms=RECV)
    store = InMemoryIpWeightLedger(policy)
    clock = Clock()
    return IpWeightGate(store, policy, max_wait_ms, sleep=clock.sleep), store, clock


def fill_until(store: InMemoryIpWeightLedger, clock: Clock, frees_in_ms: int) -> None:
    """Fill the window so that one collection's weight frees `frees_in_ms` from now."""
    store.take(clock.now + frees_in_ms - OCCUPANCY, COLLECTION_WEIGHT)
    store.take(clock.now, COLLECTION_WEIGHT)


def test_free_weight_is_granted_without_waiting() -> None:
    gate, store, clock = gate_on()
    admission = gate.acquire(COLLECTION_WEIGHT, clock.now_ms, clock.remaining_ms)
    assert isinstance(admission, WeightGrant) and admission.timestamp_ms == T0
    assert clock.slept_ms == [] and store.reserved_at == [T0]


def test_waits_for_weight_that_frees_within_max_wait_and_the_deadline() -> None:
    gate, store, clock = gate_on(max_wait_ms=10_000)
    fill_until(store, clock, frees_in_ms=3_000)
    admission = gate.acquire(COLLECTION_WEIGHT, clock.now_ms, clock.remaining_ms)
    assert isinstance(admission, WeightGrant)
    assert clock.slept_ms == [3_005]  # until it frees, and a few ms past it
    assert admission.timestamp_ms == T0 + 3_005


def test_waits_exactly_max_wait_but_not_a_millisecond_more() -> None:
    gate, store, clock = gate_on(max_wait_ms=10_000)
    fill_until(store, clock, frees_in_ms=10_000)
    assert isinstance(gate.acquire(COLLECTION_WEIGHT, clock.now_ms, clock.remaining_ms), WeightGrant)

    gate, store, clock = gate_on(max_wait_ms=10_000)
    fill_until(store, clock, frees_in_ms=10_001)
    assert gate.acquire(COLLECTION_WEIGHT, clock.now_ms, clock.remaining_ms) == Deferred(T0 + 10_001)
    assert clock.slept_ms == [] and store.reserved_at == []


def test_defers_with_the_instant_weight_frees_when_it_frees_too_late() -> None:
    gate, store, clock = gate_on(limit=4_500, max_wait_ms=5_000)
    store.take(T0 - 1_000, COLLECTION_WEIGHT)
    store.take(T0 - 500, COLLECTION_WEIGHT)
    store.take(T0, COLLECTION_WEIGHT)
    # 3000 needs the two oldest entries gone: the second expires at T0 - 500 + OCCUPANCY
    admission = gate.acquire(3_000, clock.now_ms, clock.remaining_ms)
    assert admission == Deferred(next_free_ms=T0 - 500 + OCCUPANCY)
    assert clock.slept_ms == []


def test_defers_when_the_wait_would_not_leave_time_for_the_attempt() -> None:
    # 4 s must remain after the wait to reserve the account slot, send and record the outcome
    gate, store, clock = gate_on(max_wait_ms=10_000)
    fill_until(store, clock, frees_in_ms=3_000)
    clock.deadline = T0 + 3_000 + 4_000
    assert isinstance(gate.acquire(COLLECTION_WEIGHT, clock.now_ms, clock.remaining_ms), WeightGrant)

    gate, store, clock = gate_on(max_wait_ms=10_000)
    fill_until(store, clock, frees_in_ms=3_000)
    clock.deadline = T0 + 3_000 + 3_999
    assert gate.acquire(COLLECTION_WEIGHT, clock.now_ms, clock.remaining_ms) == Deferred(T0 + 3_000)
    assert clock.slept_ms == []


def test_waits_add_up_against_max_wait_when_others_take_the_freed_weight() -> None:
    gate, store, clock = gate_on(max_wait_ms=10_000)
    fill_until(store, clock, frees_in_ms=6_000)
    taken_at: list[int] = []

    def another_writer_takes_it(now: int) -> None:
        if not taken_at:
            taken_at.append(now)
            store.take(now, COLLECTION_WEIGHT)  # the weight that just freed goes to another invocation

    clock.while_asleep = another_writer_takes_it
    admission = gate.acquire(COLLECTION_WEIGHT, clock.now_ms, clock.remaining_ms)
    # the next weight frees when the second original entry expires: 6005 + that wait > 10 s in all
    assert admission == Deferred(T0 + OCCUPANCY)
    assert clock.slept_ms == [6_005]
    assert store.reserved_at == []


def test_waits_again_when_the_total_stays_within_max_wait() -> None:
    gate, store, clock = gate_on(max_wait_ms=10_000)
    store.take(T0 + 2_000 - OCCUPANCY, COLLECTION_WEIGHT)
    store.take(T0 + 5_000 - OCCUPANCY, COLLECTION_WEIGHT)
    taken: list[int] = []

    def another_writer_takes_the_first(now: int) -> None:
        if not taken:
            taken.append(now)
            store.take(now, COLLECTION_WEIGHT)

    clock.while_asleep = another_writer_takes_the_first
    admission = gate.acquire(COLLECTION_WEIGHT, clock.now_ms, clock.remaining_ms)
    assert isinstance(admission, WeightGrant)
    assert clock.slept_ms == [2_005, 2_995 + 5]  # to the first expiry, then to the second
    assert admission.timestamp_ms == T0 + 5_005


def test_a_block_is_returned_at_once() -> None:
    gate, store, clock = gate_on()
    gate.block(T0 + 30_000, "HTTP 429 code -1003: Too much request weight used")
    assert store.blocks == [(T0 + 30_000, "HTTP 429 code -1003: Too much request weight used")]
    admission = gate.acquire(COLLECTION_WEIGHT, clock.now_ms, clock.remaining_ms)
    assert admission == BackingOff(T0 + 30_000, "HTTP 429 code -1003: Too much request weight used")
    assert clock.slept_ms == [] and store.reserved_at == []
    assert gate.known().blocked_until_ms == T0 + 30_000


def test_zero_max_wait_always_defers_weight_that_is_not_free_now() -> None:
    gate, store, clock = gate_on(max_wait_ms=0)
    fill_until(store, clock, frees_in_ms=1)
    assert gate.acquire(COLLECTION_WEIGHT, clock.now_ms, clock.remaining_ms) == Deferred(T0 + 1)
    assert isinstance(gate.acquire(BALANCE_WEIGHT, clock.now_ms, clock.remaining_ms), Deferred)


def test_observe_records_the_exchange_s_report_and_never_fails() -> None:
    gate, store, clock = gate_on(limit=12_000)
    gate.observe(None, clock.now_ms)  # an answer without the header
    assert store.observed == []
    gate.observe(4_000, clock.now_ms)
    assert store.observed == [4_000]
    assert gate.policy.used(gate.known(), T0) == 4_000
    store.fail_observe = True
    gate.observe(9_000, clock.now_ms)  # a store failure is logged, not raised: the collection already happened
    assert gate.policy.used(gate.known(), T0) == 4_000

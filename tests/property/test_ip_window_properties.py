"""Properties of the IP-weight window, checked the way the exchange counts (see ip_window.py's proof).

Several writers (Lambda containers) each hold their own, possibly stale, copy of the window state and their
own clock, which may run fast or slow or step backwards (a skewed host, a clock resync, a request reserving
at its earlier signed timestamp). They interleave arbitrarily. A write succeeds only if the writer's copy has
the stored sequence number (ip_store.py's conditional UpdateItem); otherwise the writer gets the stored state
back and retries on its next turn. A request granted at `t` is signed with a timestamp `ts` in
`[t, t + ADMISSION_SLACK_MS]`, and the adversary delivers it at any exchange time `a` the exchange accepts:
`ts - 1000 < a <= ts + recvWindow`. The exchange counts its weight at `a`.

Asserted:
- safety: no half-open minute `(T - 60 s, T]` of exchange time holds more than `limit` weight;
- liveness: a writer with the current state is granted iff the weight still counting at its clock plus its
  request's weight is at most `limit` (exactly, while no merge has made the stored entries conservative).

The first test drives the pure policy (`IpWeightPolicy`) through a model of the store; the second drives the
real `IpWeightStore` against DynamoDB Local (atomic conditional writes).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings, target
from hypothesis import strategies as st

from auto_collector.ip_store import IP_WINDOW_KEY, IpWeightStore
from auto_collector.ip_window import (
    BALANCE_WEIGHT,
    COLLECTION_WEIGHT,
    EXCHANGE_IP_WEIGHT_PER_MINUTE,
    MAX_ENTRIES,
    MINUTE_MS,
    Entry,
    IpWeightPolicy,
    IpWeightState,
    WeightGrant,
    WeightRefusal,
)
from auto_collector.window import FUTURE_TOLERANCE_MS
from tests.support.dynamodb_local import DynamoDBLocal
from tests.support.table import create_table

#: A request is signed at the instant its IP weight is reserved (store.py reserves it with the account slot in
#: one transaction; a balance read is signed with its reservation's timestamp): no slack between the two.
ADMISSION_SLACK_MS = 0

EPOCH_MS = 1_800_000_000_000
MAX_RECV_WINDOW_MS = 60_000
#: How far one step may move a skewed host's clock backwards.
MAX_BACKWARD_STEP_MS = 5_000
WEIGHTS = (COLLECTION_WEIGHT, BALANCE_WEIGHT, 1)


# --- what the exchange accepts and counts ----------------------------------------------------------


def accepted(timestamp_ms: int, arrival_ms: int, recv_window_ms: int) -> bool:
    """Binance's timing rule (binance-api-notes.md, "Timing")."""
    return timestamp_ms < arrival_ms + FUTURE_TOLERANCE_MS and arrival_ms - timestamp_ms <= recv_window_ms


def most_weight_in_any_minute(arrivals: list[tuple[int, int]]) -> int:
    """The largest weight arriving inside any half-open interval (T - 60 s, T] (T can be taken at an arrival)."""
    times = sorted(arrivals)
    best, start, inside = 0, 0, 0
    for arrival, weight in times:
        inside += weight
        while times[start][0] <= arrival - MINUTE_MS:
            inside -= times[start][1]
            start += 1
        best = max(best, inside)
    return best


def counting(entries: list[Entry], now_ms: int) -> int:
    return sum(weight for expiry, weight in entries if expiry > now_ms)


# --- strategies ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    writer: int
    #: ("by", delta) moves the writer's clock; ("next_free", jitter) jumps it to just around the moment its
    #: own copy of the window says the weight frees (where off-by-one mistakes live); ("last_write", delta) sets
    #: it a little before or after the clock of the last successful write (hosts a few ms apart).
    clock: tuple[str, int]
    weight: int
    #: How long after its reservation the request is signed (the account window reserves in between).
    signed_after_ms: int
    #: Chosen by the adversary: arrival = timestamp + offset, clamped to what the exchange accepts.
    arrival_offset_ms: int
    #: Instead of reserving, the writer hears X-SAPI-USED-IP-WEIGHT-1M = this (other programs on the address).
    reported_used: int | None


def steps(writers: int) -> st.SearchStrategy[Step]:
    clock_moves = st.one_of(
        st.tuples(st.just("by"), st.integers(-MAX_BACKWARD_STEP_MS, 0)),  # a skewed host stepping back
        st.tuples(st.just("by"), st.integers(0, 5_000)),
        st.tuples(st.just("by"), st.integers(0, 2 * MINUTE_MS + 2 * MAX_RECV_WINDOW_MS)),
        st.tuples(st.just("next_free"), st.integers(-2, 2)),
        st.tuples(st.just("last_write"), st.integers(-3_000, 50)),
    )
    offsets = st.one_of(
        st.sampled_from([-(FUTURE_TOLERANCE_MS - 1), MAX_RECV_WINDOW_MS]),  # the two extremes
        st.integers(-(FUTURE_TOLERANCE_MS - 1), MAX_RECV_WINDOW_MS),
    )
    slack = st.one_of(st.sampled_from([0, ADMISSION_SLACK_MS]), st.integers(0, ADMISSION_SLACK_MS))
    reports = st.one_of(st.none(), st.none(), st.none(), st.integers(0, EXCHANGE_IP_WEIGHT_PER_MINUTE))
    return st.builds(Step, st.integers(0, writers - 1), clock_moves, st.sampled_from(WEIGHTS), slack, offsets, reports)


@dataclass(frozen=True)
class Scenario:
    limit: int
    max_entries: int
    recv_windows: list[int]
    skews: list[int]
    plan: list[Step]


@st.composite
def scenarios(draw: st.DrawFn, max_steps: int = 150) -> Scenario:
    limit = draw(st.one_of(st.sampled_from([COLLECTION_WEIGHT, 12_000]), st.integers(COLLECTION_WEIGHT, 12_000)))
    # mostly the real bound; sometimes a tiny one, so that merged (conservative) entries are exercised too
    max_entries = draw(st.sampled_from([MAX_ENTRIES, MAX_ENTRIES, 2, 5]))
    writers = draw(st.integers(1, 4))
    recv_windows = draw(
        st.one_of(
            st.integers(1, MAX_RECV_WINDOW_MS).map(lambda recv: [recv] * writers),  # one configuration
            st.lists(st.integers(1, MAX_RECV_WINDOW_MS), min_size=writers, max_size=writers),  # mid-deploy
        )
    )
    skews = draw(st.lists(st.integers(-30_000, 30_000), min_size=writers, max_size=writers))
    plan = draw(st.lists(steps(writers), min_size=1, max_size=max_steps))
    return Scenario(limit, max_entries, recv_windows, skews, plan)


# --- a model of ip_store.py's optimistic write -----------------------------------------------------------


@dataclass
class StoredItem:
    """The DynamoDB item, as `_try_write`'s condition sees it (no block is ever written here)."""

    state: IpWeightState = field(default_factory=IpWeightState)

    def try_write(self, seen: IpWeightState, after: IpWeightState) -> IpWeightState | None:
        """None if written; otherwise the stored state (ReturnValuesOnConditionCheckFailure=ALL_OLD)."""
        if seen.sequence == self.state.sequence:
            self.state = after
            return None
        return self.state


@dataclass
class Writer:
    policy: IpWeightPolicy
    clock_ms: int
    known: IpWeightState = field(default_factory=IpWeightState)  # IpWeightStore._known for this container


@dataclass(frozen=True)
class Sent:
    granted_at_ms: int
    timestamp_ms: int
    weight: int
    arrival_ms: int


def move_clock(policy: IpWeightPolicy, known: IpWeightState, clock_ms: int, last_write_ms: int, step: Step) -> int:
    kind, amount = step.clock
    if kind == "by":
        return clock_ms + amount
    if kind == "last_write":
        return last_write_ms + amount
    return policy.next_free_ms(known, clock_ms, step.weight) + amount


def deliver(granted_at_ms: int, weight: int, recv_window_ms: int, step: Step) -> Sent:
    """Sign within the slack after the grant and arrive when the adversary says, as the exchange accepts."""
    timestamp = granted_at_ms + step.signed_after_ms
    arrival = timestamp + min(step.arrival_offset_ms, recv_window_ms)
    assert accepted(timestamp, arrival, recv_window_ms)
    return Sent(granted_at_ms, timestamp, weight, arrival)


@dataclass
class History:
    """What was written, independently of the policy: every entry (never dropped or merged), and the latest
    expiry any write dropped (the entries expired at the clock of the write)."""

    ledger: list[Entry] = field(default_factory=list)
    dropped_until_ms: int = 0
    merged: bool = False
    last_write_ms: int = EPOCH_MS
    latest_write_ms: int = EPOCH_MS

    def written(self, now: int, entry: Entry, before: IpWeightState, after: IpWeightState) -> None:
        self.dropped_until_ms = max([self.dropped_until_ms, *(e for e, _ in self.ledger if e <= now)])
        self.ledger.append(entry)
        self.merged |= len(after.entries) < len([e for e in before.entries if e[0] > now]) + 1
        self.last_write_ms = now
        self.latest_write_ms = max(self.latest_write_ms, now)


def assert_liveness(policy: IpWeightPolicy, history: History, now: int, weight: int, granted: bool) -> None:
    """On the current state: granted iff the weight counting at `now` leaves room (exact unless merged) and no
    write has dropped, at a later clock, weight that may still count at this one."""
    exact_used = counting(history.ledger, now)
    fits = exact_used + weight <= policy.limit
    if granted:
        assert fits, f"granted {weight} with {exact_used} of {policy.limit} counting at {now}"
    if not history.merged:  # merges only make the stored entries more conservative than the exact history
        assert granted == (fits and now >= history.dropped_until_ms), (now, weight, exact_used, history)


# --- 1a: the pure policy -------------------------------------------------------------------------------

#: A writer 2 ms behind the one that dropped two full entries: granted without `pruned_until_ms`, it puts 4500
#: weight into one minute with limit 3000 (the two dropped ones arrive late, its own early).
DROPPED_BY_A_FASTER_CLOCK = Scenario(
    limit=3_000,
    max_entries=MAX_ENTRIES,
    recv_windows=[2_000, 2_000, 2_000],
    skews=[0, 0, 0],
    plan=[
        Step(0, ("by", 0), COLLECTION_WEIGHT, ADMISSION_SLACK_MS, MAX_RECV_WINDOW_MS, None),
        Step(0, ("by", 0), COLLECTION_WEIGHT, ADMISSION_SLACK_MS, MAX_RECV_WINDOW_MS, None),
        Step(1, ("by", 63_500), 1, 0, 0, None),  # stale: its write fails and it learns the state
        Step(1, ("by", 0), 1, 0, 0, None),  # both entries expire exactly now: dropped
        Step(2, ("last_write", -2), 1, 0, 0, None),  # stale: learns the state
        Step(2, ("by", 0), COLLECTION_WEIGHT, 0, -(FUTURE_TOLERANCE_MS - 1), None),
    ],
)


@settings(max_examples=300, deadline=None)
@given(scenarios())
@example(DROPPED_BY_A_FASTER_CLOCK)
def test_no_minute_ever_holds_more_than_the_limit_and_no_allowed_request_is_refused(scenario: Scenario) -> None:
    limit = scenario.limit
    writers = [
        Writer(IpWeightPolicy(limit, recv, max_entries=scenario.max_entries), clock_ms=EPOCH_MS + skew)
        for recv, skew in zip(scenario.recv_windows, scenario.skews, strict=True)
    ]
    item = StoredItem()
    history = History()
    sent: list[Sent] = []

    for step in scenario.plan:
        writer = writers[step.writer]
        writer.clock_ms = move_clock(writer.policy, writer.known, writer.clock_ms, history.last_write_ms, step)
        now = writer.clock_ms
        current = writer.known.sequence == item.state.sequence

        if step.reported_used is not None:
            after = writer.policy.observe(writer.known, now, step.reported_used)
            if after is None:
                assert step.reported_used <= writer.policy.used(writer.known, now)
                continue
            added = (now + writer.policy.occupancy_ms, step.reported_used - writer.policy.used(writer.known, now))
            before, returned = writer.known, item.try_write(writer.known, after)
            writer.known = after if returned is None else returned
            if returned is None:
                history.written(now, added, before, after)
            continue

        decision = writer.policy.decide(writer.known, now, step.weight)
        if current:
            assert_liveness(writer.policy, history, now, step.weight, isinstance(decision, WeightGrant))
        if isinstance(decision, WeightRefusal):
            assert decision.next_free_ms > now
            continue
        assert isinstance(decision, WeightGrant)
        assert decision.expiry_ms == now + writer.policy.occupancy_ms
        before, returned = writer.known, item.try_write(writer.known, decision.state_after)
        if returned is not None:
            writer.known = returned  # the retry happens on this writer's next turn, after any interleaving
            continue
        writer.known = decision.state_after
        history.written(now, (decision.expiry_ms, step.weight), before, decision.state_after)
        sent.append(deliver(now, step.weight, writer.policy.recv_window_ms, step))
        assert len(item.state.entries) <= scenario.max_entries

    busiest = most_weight_in_any_minute([(s.arrival_ms, s.weight) for s in sent])
    target(busiest / limit, label="fullest minute / limit")
    assert busiest <= limit, f"{busiest} weight counted in one minute with limit {limit}: {sent}"


def test_the_checker_counts_a_half_open_minute() -> None:
    assert most_weight_in_any_minute([(0, 5), (MINUTE_MS - 1, 7)]) == 12
    assert most_weight_in_any_minute([(0, 5), (MINUTE_MS, 7)]) == 7  # (0, 60 s] does not hold 0
    assert most_weight_in_any_minute([]) == 0


def test_the_model_would_catch_a_window_that_forgets_the_recv_window() -> None:
    """The checker itself: expiries that ignore recvWindow let more than `limit` weight into one minute."""
    limit, recv = 3_000, 60_000
    sloppy = IpWeightPolicy(limit, recv_window_ms=1)  # expiries as if requests were sent with recvWindow=1
    state, arrivals, now = IpWeightState(), [], EPOCH_MS
    for n in range(3):
        decision = sloppy.decide(state, now, COLLECTION_WEIGHT)
        assert isinstance(decision, WeightGrant)
        # the first two arrive as late as recvWindow allows, the next as early as the exchange allows
        timestamp = decision.timestamp_ms + ADMISSION_SLACK_MS
        arrival = timestamp + recv if n < 2 else timestamp - (FUTURE_TOLERANCE_MS - 1)
        assert accepted(timestamp, arrival, recv)
        arrivals.append((arrival, COLLECTION_WEIGHT))
        state = decision.state_after
        now = sloppy.next_free_ms(state, now, COLLECTION_WEIGHT)
    assert most_weight_in_any_minute(arrivals) == limit + COLLECTION_WEIGHT


# --- 1b: the real IpWeightStore on DynamoDB Local ---------------------------------------------------------


@pytest.fixture(scope="module")
def local_ip_table(dynamodb_local: DynamoDBLocal) -> Iterator[tuple[Any, str]]:
    client = dynamodb_local.client()
    name = f"ip-window-props-{uuid.uuid4().hex[:8]}"
    create_table(client, name)
    yield client, name
    client.delete_table(TableName=name)


@pytest.mark.dynamodb_local
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios(max_steps=40))
@example(DROPPED_BY_A_FASTER_CLOCK)
def test_stores_with_stale_caches_on_dynamodb_local_keep_the_same_invariant(
    local_ip_table: tuple[Any, str], scenario: Scenario
) -> None:

    client, table = local_ip_table
    client.delete_item(TableName=table, Key=IP_WINDOW_KEY)  # one window per deployment: a fresh one per example
    limit = scenario.limit
    clocks = [EPOCH_MS + skew for skew in scenario.skews]
    stores = [IpWeightStore(client, table) for _ in clocks]  # each its own container with its own cache
    policies = [IpWeightPolicy(limit, recv, max_entries=scenario.max_entries) for recv in scenario.recv_windows]
    history = History()
    sent: list[Sent] = []

    for step in scenario.plan:
        w = step.writer
        clocks[w] = move_clock(policies[w], stores[w].known, clocks[w], history.last_write_ms, step)
        now = clocks[w]
        if step.reported_used is not None:
            before = stores[w].read()  # what the write is conditioned on (nobody writes in between)
            added = stores[w].observe(policies[w], step.reported_used, clock_of(clocks, w))
            assert added == max(0, step.reported_used - policies[w].used(before, now))
            if added:
                history.written(now, (now + policies[w].occupancy_ms, added), before, stores[w].known)
            continue
        decision, seen = stores[w].reserve(policies[w], step.weight, clock_of(clocks, w), lambda: 60_000)
        exact_used = counting(history.ledger, now)
        if isinstance(decision, WeightRefusal):
            # possibly made on a stale cache, without a write: still never one the exact history allows
            assert seen.pruned_until_ms <= history.dropped_until_ms
            assert history.merged or now < seen.pruned_until_ms or exact_used + step.weight > limit, (now, seen)
            continue
        assert isinstance(decision, WeightGrant)
        # granted only on the current state (a failed write returns it and the store decides again)
        assert decision.timestamp_ms == now
        assert exact_used + step.weight <= limit and now >= history.dropped_until_ms
        history.written(now, (decision.expiry_ms, step.weight), seen, decision.state_after)
        sent.append(deliver(now, step.weight, policies[w].recv_window_ms, step))

    assert most_weight_in_any_minute([(s.arrival_ms, s.weight) for s in sent]) <= limit
    stored = stores[0].read()
    assert len(stored.entries) <= scenario.max_entries
    assert stored.sequence == len(history.ledger)
    if not history.merged:
        assert stored.pruned_until_ms == history.dropped_until_ms
    # nothing was lost: from the latest clock that wrote on, the item counts at least what the history does
    for instant in sorted({history.latest_write_ms} | {e for e, _ in history.ledger}):
        if instant >= history.latest_write_ms:
            assert policies[0].used(stored, instant) >= counting(history.ledger, instant), instant


def clock_of(clocks: list[int], writer: int) -> Callable[[], int]:
    """The writer's clock as the store reads it: whatever `clocks[writer]` holds when called."""
    return lambda: clocks[writer]

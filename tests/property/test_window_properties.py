"""Properties of the rolling window, checked the way the exchange counts (see window.py's proof).

Several writers (Lambda containers) each hold their own, possibly stale, copy of the window state and
their own clock, which may be fast, slow or step backwards by a few seconds (skewed hosts). They
interleave arbitrarily. A write succeeds only if the writer's copy has the stored sequence number (the
conditional UpdateItem of store.py); otherwise the writer gets the stored state back and retries on its
next turn. Every granted request is then delivered at an arrival time the adversary picks among those
the exchange accepts: a request signed at `ts` arriving at server time `a` is accepted iff
`ts < a + 1000` and `a - ts <= recvWindow`.

Asserted:
- safety: no half-open hour `[t, t + 3600 s)` of server time holds more than `limit` accepted requests;
- the window never refuses a call the budget allows: a writer with the current state is granted iff
  fewer than `limit` reservations are unexpired at its clock, and a refusal made on a stale copy is
  one the current state would make too.

The first test drives the pure policy (`WindowPolicy.decide`) through a model of the store; the second
drives the real `CollectorTable` against DynamoDB Local (atomic conditional writes).
"""

from __future__ import annotations

import bisect
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings, target
from hypothesis import strategies as st

from auto_collector.store import CollectorTable
from auto_collector.window import (
    FUTURE_TOLERANCE_MS,
    HOUR_MS,
    Grant,
    Refusal,
    WindowPolicy,
    WindowState,
)
from tests.support.dynamodb_local import DynamoDBLocal
from tests.support.table import create_table

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

EPOCH_MS = 1_800_000_000_000
MAX_RECV_WINDOW_MS = 60_000
#: How far one step may move a skewed host's clock backwards.
MAX_BACKWARD_STEP_MS = 5_000


# --- what the exchange accepts and counts ----------------------------------------------------------


def accepted(timestamp_ms: int, arrival_ms: int, recv_window_ms: int) -> bool:
    """Binance's timing rule ("Timing security" in its REST API documentation), as the emulator enforces it
    (localdev/exchange_emulator/checks.py)."""
    return timestamp_ms < arrival_ms + FUTURE_TOLERANCE_MS and arrival_ms - timestamp_ms <= recv_window_ms


def most_in_any_hour(arrivals: list[int]) -> int:
    """The largest number of arrivals inside any half-open interval [t, t + 1 h)."""
    times = sorted(arrivals)
    # the busiest interval can always be slid to start at an arrival
    return max((bisect.bisect_left(times, t + HOUR_MS) - i for i, t in enumerate(times)), default=0)


def unexpired(expiries: list[int], now_ms: int) -> int:
    return sum(1 for expiry in expiries if expiry > now_ms)


# --- strategies ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    writer: int
    #: ("by", delta) moves the writer's clock; ("next_free", jitter) jumps it to just around the moment its
    #: own copy of the window says the next slot frees (where off-by-one mistakes live).
    clock: tuple[str, int]
    #: Chosen by the adversary: arrival = timestamp + min(offset, recvWindow), always accepted.
    arrival_offset_ms: int


def steps(writers: int) -> st.SearchStrategy[Step]:
    clock_moves = st.one_of(
        st.tuples(st.just("by"), st.integers(-MAX_BACKWARD_STEP_MS, 0)),  # a skewed host stepping back
        st.tuples(st.just("by"), st.integers(0, 120_000)),
        st.tuples(st.just("by"), st.integers(0, HOUR_MS + 2 * MAX_RECV_WINDOW_MS)),
        st.tuples(st.just("next_free"), st.integers(-2, 2)),
    )
    offsets = st.one_of(
        st.sampled_from([-(FUTURE_TOLERANCE_MS - 1), MAX_RECV_WINDOW_MS]),  # the two extremes
        st.integers(-(FUTURE_TOLERANCE_MS - 1), MAX_RECV_WINDOW_MS),
    )
    return st.builds(Step, st.integers(0, writers - 1), clock_moves, offsets)


@st.composite
def scenarios(draw: st.DrawFn, max_steps: int = 120) -> tuple[int, list[int], list[int], list[Step]]:
    limit = draw(st.integers(1, 20), label="limit")
    writers = draw(st.integers(1, 5), label="writers")
    recv_windows = draw(
        st.one_of(
            st.integers(1, MAX_RECV_WINDOW_MS).map(lambda recv: [recv] * writers),  # one configuration
            st.lists(st.integers(1, MAX_RECV_WINDOW_MS), min_size=writers, max_size=writers),  # mid-deploy
        ),
        label="recv_windows",
    )
    skews = draw(st.lists(st.integers(-30_000, 30_000), min_size=writers, max_size=writers), label="skews")
    plan = draw(st.lists(steps(writers), min_size=1, max_size=max_steps), label="steps")
    return limit, recv_windows, skews, plan


# --- a model of store.py's optimistic write ----------------------------------------------------------


@dataclass
class StoredItem:
    """The DynamoDB item, as `_try_write`'s condition sees it."""

    state: WindowState = field(default_factory=WindowState)

    def try_write(self, seen: WindowState, grant: Grant, now_ms: int) -> WindowState | None:
        """None if written; otherwise the stored state (ReturnValuesOnConditionCheckFailure=ALL_OLD)."""
        not_blocked = self.state.blocked_until_ms <= now_ms
        if not_blocked and seen.sequence == self.state.sequence:
            self.state = grant.state_after
            return None
        return self.state


@dataclass
class Writer:
    policy: WindowPolicy
    clock_ms: int
    known: WindowState = field(default_factory=WindowState)  # store._known for this container


@dataclass(frozen=True)
class Sent:
    sequence: int
    timestamp_ms: int
    expiry_ms: int
    arrival_ms: int


def move_clock(writer: Writer, step: Step) -> None:
    kind, amount = step.clock
    if kind == "by":
        writer.clock_ms += amount
    else:
        writer.clock_ms = writer.policy.next_free_ms(writer.known, writer.clock_ms) + amount


# --- 1a: the pure policy -------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_no_hour_ever_holds_more_than_the_limit_and_no_allowed_call_is_refused(
    scenario: tuple[int, list[int], list[int], list[Step]],
) -> None:
    limit, recv_windows, skews, plan = scenario
    writers = [
        Writer(WindowPolicy(limit, recv_window_ms=recv), clock_ms=EPOCH_MS + skew)
        for recv, skew in zip(recv_windows, skews, strict=True)
    ]
    item = StoredItem()
    sent: list[Sent] = []

    for step in plan:
        writer = writers[step.writer]
        move_clock(writer, step)
        now = writer.clock_ms
        decision = writer.policy.decide(writer.known, now)
        current = writer.known.sequence == item.state.sequence
        if current:
            # exactly "fewer than `limit` reservations are unexpired" decides, by this writer's clock
            allowed = unexpired([s.expiry_ms for s in sent], now) < limit
            assert isinstance(decision, Grant) == allowed, (decision, now, sent)
        if isinstance(decision, Refusal):
            # a refusal on a stale copy (returned without a write) is one the current state makes too
            assert isinstance(writer.policy.decide(item.state, now), Refusal)
            continue
        assert isinstance(decision, Grant)
        returned = item.try_write(writer.known, decision, now)
        if returned is not None:
            writer.known = returned  # the retry happens on this writer's next turn, after any interleaving
            continue
        writer.known = decision.state_after
        recv = writer.policy.recv_window_ms
        arrival = decision.timestamp_ms + min(step.arrival_offset_ms, recv)
        assert accepted(decision.timestamp_ms, arrival, recv)
        sent.append(Sent(decision.sequence, decision.timestamp_ms, decision.expiry_ms, arrival))

    assert [s.sequence for s in sent] == list(range(len(sent)))  # every slot granted once, in order
    expiries = [s.expiry_ms for s in sent]
    assert expiries == sorted(expiries)  # the proof's premise: non-decreasing along the sequence
    busiest = most_in_any_hour([s.arrival_ms for s in sent])
    target(busiest / limit, label="fullest hour / limit")
    assert busiest <= limit, f"{busiest} accepted requests in one hour with limit {limit}"


def test_the_model_would_catch_a_window_that_forgets_the_recv_window() -> None:
    """The checker itself: a policy whose expiries ignore recvWindow lets limit + 1 requests into one hour."""
    limit, recv = 2, 60_000
    sloppy = WindowPolicy(limit, recv_window_ms=1)  # expiries as if requests were sent with recvWindow=1
    state, arrivals, now = WindowState(), [], EPOCH_MS
    for n in range(limit + 1):
        decision = sloppy.decide(state, now)
        assert isinstance(decision, Grant)
        # the first `limit` arrive as late as recvWindow allows, the next as early as the exchange allows
        offset = recv if n < limit else -(FUTURE_TOLERANCE_MS - 1)
        arrival = decision.timestamp_ms + offset
        assert accepted(decision.timestamp_ms, arrival, recv)
        arrivals.append(arrival)
        state = decision.state_after
        now = sloppy.next_free_ms(state, now)
    assert most_in_any_hour(arrivals) == limit + 1


# --- 1b: the real CollectorTable on DynamoDB Local ---------------------------------------------------------


def clock_of(clocks: list[int], writer: int) -> Callable[[], int]:
    """A writer's clock as its store reads it: the current value, however often it is read."""
    return lambda: clocks[writer]


@pytest.fixture(scope="module")
def local_window_table(dynamodb_local: DynamoDBLocal) -> Iterator[tuple[DynamoDBClient, str]]:
    client = dynamodb_local.client()
    name = f"window-props-{uuid.uuid4().hex[:8]}"
    create_table(client, name)
    yield client, name
    client.delete_table(TableName=name)


@pytest.mark.dynamodb_local
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios(max_steps=30))
def test_stores_with_stale_caches_on_dynamodb_local_keep_the_same_invariant(
    local_window_table: tuple[DynamoDBClient, str], scenario: tuple[int, list[int], list[int], list[Step]]
) -> None:
    client, table = local_window_table
    limit, recv_windows, skews, plan = scenario
    account = f"acct-{uuid.uuid4().hex[:12]}"  # a fresh window per example
    clocks = [EPOCH_MS + skew for skew in skews]
    stores = [CollectorTable(client, table) for _ in clocks]  # each its own container with its own cache
    policies = [WindowPolicy(limit, recv_window_ms=recv) for recv in recv_windows]
    sent: list[Sent] = []

    for step in plan:
        w = step.writer
        kind, amount = step.clock
        if kind == "by":
            clocks[w] += amount
        else:
            cached = stores[w]._known.get(account, WindowState())
            clocks[w] = policies[w].next_free_ms(cached, clocks[w]) + amount
        now = clocks[w]
        decision, _ = stores[w].reserve(account, policies[w], clock_of(clocks, w), lambda: 60_000)
        if isinstance(decision, Refusal):
            # whatever its cache held, a refusal is never one the budget allows
            assert unexpired([s.expiry_ms for s in sent], now) >= limit, (now, sent)
            continue
        assert isinstance(decision, Grant)
        assert decision.timestamp_ms == now
        assert unexpired([s.expiry_ms for s in sent], now) < limit
        arrival = now + min(step.arrival_offset_ms, policies[w].recv_window_ms)
        assert accepted(now, arrival, policies[w].recv_window_ms)
        sent.append(Sent(decision.sequence, now, decision.expiry_ms, arrival))

    assert [s.sequence for s in sent] == list(range(len(sent)))
    assert [s.expiry_ms for s in sent] == sorted(s.expiry_ms for s in sent)
    assert most_in_any_hour([s.arrival_ms for s in sent]) <= limit
    stored = stores[0].read(account)
    assert stored.sequence == len(sent)
    assert [stored.expiry_of(s.sequence) for s in sent] == [s.expiry_ms for s in sent]

"""The IP-weight window policy, driven with an explicit clock (see ip_window.py's proof)."""

from __future__ import annotations

import pytest

from auto_collector.ip_window import (
    BALANCE_WEIGHT,
    COLLECTION_WEIGHT,
    EXCHANGE_IP_WEIGHT_PER_MINUTE,
    MAX_ENTRIES,
    MINUTE_MS,
    IpWeightPolicy,
    IpWeightState,
    WeightGrant,
    WeightRefusal,
)
from auto_collector.window import FUTURE_TOLERANCE_MS, BackingOff

#: A request is signed at the instant its IP weight is reserved (store.py reserves it with the account slot in
#: one transaction; a balance read is signed with its reservation's timestamp): no slack between the two.
ADMISSION_SLACK_MS = 0

RECV = 2_000
OCCUPANCY = ADMISSION_SLACK_MS + RECV + FUTURE_TOLERANCE_MS + MINUTE_MS
T0 = 1_800_000_000_000


def grant(policy: IpWeightPolicy, state: IpWeightState, now: int, weight: int) -> IpWeightState:
    decision = policy.decide(state, now, weight)
    assert isinstance(decision, WeightGrant), decision
    return decision.state_after


def test_occupancy_is_recv_window_plus_tolerance_plus_a_minute() -> None:
    assert IpWeightPolicy(12_000, recv_window_ms=RECV).occupancy_ms == OCCUPANCY == 63_000
    assert IpWeightPolicy(12_000, recv_window_ms=60_000).occupancy_ms == 60_000 + 1_000 + 60_000


def test_grants_up_to_the_limit_then_refuses() -> None:
    policy = IpWeightPolicy(EXCHANGE_IP_WEIGHT_PER_MINUTE, recv_window_ms=RECV)
    state = IpWeightState()
    for n in range(8):  # 8 x 1500 = 12000: exactly the limit
        state = grant(policy, state, T0 + n, COLLECTION_WEIGHT)
    assert policy.used(state, T0 + 8) == 12_000
    assert isinstance(policy.decide(state, T0 + 8, 1), WeightRefusal)
    assert isinstance(policy.decide(state, T0 + 8, BALANCE_WEIGHT), WeightRefusal)


def test_a_grant_that_fills_the_limit_exactly_is_allowed() -> None:
    policy = IpWeightPolicy(1_540, recv_window_ms=RECV)
    state = grant(policy, IpWeightState(), T0, COLLECTION_WEIGHT)
    state = grant(policy, state, T0, BALANCE_WEIGHT)
    state = grant(policy, state, T0, BALANCE_WEIGHT)  # 1540 = limit
    assert isinstance(policy.decide(state, T0, 1), WeightRefusal)


def test_a_grant_expires_exactly_one_occupancy_after_it_was_made() -> None:
    policy = IpWeightPolicy(12_000, recv_window_ms=RECV)
    decision = policy.decide(IpWeightState(), T0 + 7, COLLECTION_WEIGHT)
    assert isinstance(decision, WeightGrant)
    assert decision.timestamp_ms == T0 + 7
    assert decision.weight == COLLECTION_WEIGHT
    assert decision.expiry_ms == T0 + 7 + OCCUPANCY
    assert decision.state_after.entries == ((T0 + 7 + OCCUPANCY, COLLECTION_WEIGHT),)
    assert decision.state_after.sequence == 1


def test_refusal_names_the_exact_instant_enough_weight_frees() -> None:
    policy = IpWeightPolicy(4_500, recv_window_ms=RECV)
    state = IpWeightState()
    for offset in (0, 1_000, 2_000):
        state = grant(policy, state, T0 + offset, COLLECTION_WEIGHT)

    one = policy.decide(state, T0 + 3_000, COLLECTION_WEIGHT)
    assert one == WeightRefusal(next_free_ms=T0 + OCCUPANCY)  # the first entry's expiry frees 1500
    two = policy.decide(state, T0 + 3_000, 3_000)
    assert two == WeightRefusal(next_free_ms=T0 + 1_000 + OCCUPANCY)  # 3000 needs the first two gone
    small = policy.decide(state, T0 + 3_000, 1)
    assert small == WeightRefusal(next_free_ms=T0 + OCCUPANCY)
    assert policy.next_free_ms(state, T0 + 3_000, 4_500) == T0 + 2_000 + OCCUPANCY

    # one millisecond early it is still refused, at the instant it is granted
    assert isinstance(policy.decide(state, T0 + OCCUPANCY - 1, COLLECTION_WEIGHT), WeightRefusal)
    assert isinstance(policy.decide(state, T0 + OCCUPANCY, COLLECTION_WEIGHT), WeightGrant)
    assert isinstance(policy.decide(state, T0 + 1_000 + OCCUPANCY - 1, 3_000), WeightRefusal)
    assert isinstance(policy.decide(state, T0 + 1_000 + OCCUPANCY, 3_000), WeightGrant)


def test_next_free_is_now_when_the_weight_fits() -> None:
    policy = IpWeightPolicy(3_000, recv_window_ms=RECV)
    state = grant(policy, IpWeightState(), T0, COLLECTION_WEIGHT)
    assert policy.next_free_ms(state, T0 + 5, COLLECTION_WEIGHT) == T0 + 5


def test_used_counts_only_unexpired_entries() -> None:
    policy = IpWeightPolicy(12_000, recv_window_ms=RECV)
    state = grant(policy, IpWeightState(), T0, COLLECTION_WEIGHT)
    state = grant(policy, state, T0 + 1_000, BALANCE_WEIGHT)
    assert policy.used(state, T0 + 1_000) == 1_520
    assert policy.used(state, T0 + OCCUPANCY - 1) == 1_520
    assert policy.used(state, T0 + OCCUPANCY) == BALANCE_WEIGHT  # expired exactly at its expiry
    assert policy.used(state, T0 + 1_000 + OCCUPANCY) == 0


def test_expired_entries_are_pruned_on_the_next_write() -> None:
    policy = IpWeightPolicy(12_000, recv_window_ms=RECV)
    state = grant(policy, IpWeightState(), T0, COLLECTION_WEIGHT)
    state = grant(policy, state, T0 + 10_000, BALANCE_WEIGHT)
    after = grant(policy, state, T0 + OCCUPANCY, 1)  # the first entry expires exactly now
    assert after.entries == ((T0 + 10_000 + OCCUPANCY, BALANCE_WEIGHT), (T0 + 2 * OCCUPANCY, 1))
    assert after.sequence == 3


def test_entries_are_kept_sorted_by_expiry_even_when_reserved_out_of_order() -> None:
    """A request may reserve at its (earlier) signed timestamp: its entry goes where its expiry belongs."""
    policy = IpWeightPolicy(12_000, recv_window_ms=RECV)
    state = grant(policy, IpWeightState(), T0 + 500, COLLECTION_WEIGHT)
    state = grant(policy, state, T0, BALANCE_WEIGHT)
    assert state.entries == ((T0 + OCCUPANCY, BALANCE_WEIGHT), (T0 + 500 + OCCUPANCY, COLLECTION_WEIGHT))


def test_merging_keeps_at_most_max_entries_and_merges_the_closest_into_the_later_expiry() -> None:
    policy = IpWeightPolicy(12_000, recv_window_ms=RECV, max_entries=3)
    state = IpWeightState()
    for offset, weight in ((0, 1), (100, 2), (110, 4)):
        state = grant(policy, state, T0 + offset, weight)
    state = grant(policy, state, T0 + 1_000, 8)
    # 100 and 110 were closest: merged into one entry at the later expiry with their summed weight
    assert state.entries == ((T0 + OCCUPANCY, 1), (T0 + 110 + OCCUPANCY, 6), (T0 + 1_000 + OCCUPANCY, 8))
    assert policy.used(state, T0 + 1_000) == 15


@pytest.mark.parametrize("max_entries", [2, 3, 5, MAX_ENTRIES])
def test_merging_only_ever_delays_expiry_and_preserves_the_weight(max_entries: int) -> None:
    bounded = IpWeightPolicy(12_000, recv_window_ms=RECV, max_entries=max_entries)
    exact = IpWeightPolicy(12_000, recv_window_ms=RECV, max_entries=10_000)
    bounded_state = exact_state = IpWeightState()
    # uneven gaps and weights, some reservations at earlier signed timestamps, all within one occupancy
    times = [T0 + (i * 7_919) % 50_000 for i in range(90)]
    weights = [(1, 20, 5, 100, 3)[i % 5] for i in range(90)]
    for now, weight in zip(times, weights, strict=True):
        bounded_state = grant(bounded, bounded_state, now, weight)
        exact_state = grant(exact, exact_state, now, weight)
        assert len(bounded_state.entries) <= max_entries
        assert [e for e, _ in bounded_state.entries] == sorted(e for e, _ in bounded_state.entries)
    assert len(exact_state.entries) == 90
    assert sum(w for _, w in bounded_state.entries) == sum(weights)  # nothing lost
    # at every instant, the bounded window counts at least what the exact one does (merges delay expiry only)
    checkpoints = sorted({e for e, _ in exact_state.entries} | {e - 1 for e, _ in exact_state.entries})
    for instant in [T0, *checkpoints]:
        assert bounded.used(bounded_state, instant) >= exact.used(exact_state, instant), instant
    # and frees everything exactly when the exact window does: the latest expiry is never moved
    last = max(e for e, _ in exact_state.entries)
    assert bounded.used(bounded_state, last) == 0
    assert bounded.used(bounded_state, last - 1) > 0


def test_observe_adds_only_the_excess_over_our_live_weight() -> None:
    policy = IpWeightPolicy(12_000, recv_window_ms=RECV)
    state = grant(policy, IpWeightState(), T0, COLLECTION_WEIGHT)
    state = grant(policy, state, T0, COLLECTION_WEIGHT)

    assert policy.observe(state, T0 + 100, reported_used=3_000) is None  # all of it is ours
    assert policy.observe(state, T0 + 100, reported_used=1_500) is None  # the exchange counts less: nothing new
    observed = policy.observe(state, T0 + 100, reported_used=5_000)
    assert observed is not None
    assert observed.entries == ((T0 + OCCUPANCY, 1_500), (T0 + OCCUPANCY, 1_500), (T0 + 100 + OCCUPANCY, 2_000))
    assert observed.sequence == state.sequence + 1
    assert policy.used(observed, T0 + 100) == 5_000
    # observing the same report again adds nothing: the excess is now ours too
    assert policy.observe(observed, T0 + 200, reported_used=5_000) is None


def test_observe_counts_our_expired_weight_as_someone_elses() -> None:
    policy = IpWeightPolicy(12_000, recv_window_ms=RECV)
    state = grant(policy, IpWeightState(), T0, COLLECTION_WEIGHT)
    later = T0 + OCCUPANCY  # our entry no longer counts; the exchange still says 1500
    observed = policy.observe(state, later, reported_used=COLLECTION_WEIGHT)
    assert observed is not None
    assert observed.entries == ((later + OCCUPANCY, COLLECTION_WEIGHT),)


def test_observed_weight_slows_down_every_reservation() -> None:
    policy = IpWeightPolicy(12_000, recv_window_ms=RECV)
    observed = policy.observe(IpWeightState(), T0, reported_used=11_000)
    assert observed is not None
    assert isinstance(policy.decide(observed, T0 + 1, 1_000), WeightGrant)
    assert policy.decide(observed, T0 + 1, COLLECTION_WEIGHT) == WeightRefusal(T0 + OCCUPANCY)


def test_a_block_refuses_everything_until_it_ends_and_survives_writes() -> None:
    policy = IpWeightPolicy(12_000, recv_window_ms=RECV)
    blocked = IpWeightState(sequence=4, blocked_until_ms=T0 + 30_000, blocked_reason="HTTP 429 code -1003")
    assert policy.decide(blocked, T0, 1) == BackingOff(T0 + 30_000, "HTTP 429 code -1003")
    assert policy.decide(blocked, T0 + 29_999, 1) == BackingOff(T0 + 30_000, "HTTP 429 code -1003")
    # a block wins over a weight that could never be granted, too
    assert isinstance(policy.decide(blocked, T0, 12_001), BackingOff)
    after = grant(policy, blocked, T0 + 30_000, COLLECTION_WEIGHT)  # free exactly when it ends
    assert (after.blocked_until_ms, after.blocked_reason) == (T0 + 30_000, "HTTP 429 code -1003")
    observed = policy.observe(blocked, T0, reported_used=100)  # observing is allowed while blocked
    assert observed is not None and observed.blocked_until_ms == T0 + 30_000


def test_a_weight_above_the_limit_is_refused_for_a_full_occupancy() -> None:
    policy = IpWeightPolicy(1_000, recv_window_ms=RECV)
    assert policy.decide(IpWeightState(), T0, COLLECTION_WEIGHT) == WeightRefusal(T0 + OCCUPANCY)
    assert isinstance(policy.decide(IpWeightState(), T0, 1_000), WeightGrant)


@pytest.mark.parametrize(
    ("limit", "max_entries", "message"),
    [
        (0, MAX_ENTRIES, "limit must be within 1..12000"),
        (12_001, MAX_ENTRIES, "limit must be within 1..12000"),
        (12_000, 1, "max_entries must be at least 2"),
    ],
)
def test_invalid_policies_are_refused(limit: int, max_entries: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        IpWeightPolicy(limit, recv_window_ms=RECV, max_entries=max_entries)


def test_weight_dropped_by_a_faster_clock_still_counts_for_a_slower_one() -> None:
    """An entry is dropped by a write at a clock past its expiry; a writer whose clock is behind that one (another
    host a few ms slower, a clock resynced backwards, a request reserving at its earlier signed timestamp) must not
    be granted weight the dropped entry may still share a minute with, in the exchange's clock."""
    policy = IpWeightPolicy(3_000, recv_window_ms=RECV)
    state = grant(policy, IpWeightState(), T0, COLLECTION_WEIGHT)
    state = grant(policy, state, T0, COLLECTION_WEIGHT)  # full until T0 + OCCUPANCY
    fast = T0 + OCCUPANCY
    state = grant(policy, state, fast, 1)  # both entries expire exactly now: dropped
    assert state.entries == ((fast + OCCUPANCY, 1),)

    slow = fast - 2  # 2 ms behind the writer that dropped them
    refusal = policy.decide(state, slow, COLLECTION_WEIGHT)
    assert refusal == WeightRefusal(next_free_ms=fast)
    # Had it been granted: the two dropped requests arrive as late as the exchange accepts, this one as early,
    # and all three (4500 > 3000) fall into one half-open minute of the exchange's clock.
    late = T0 + ADMISSION_SLACK_MS + RECV
    early = slow - (FUTURE_TOLERANCE_MS - 1)
    assert early - late < MINUTE_MS
    # from the dropping writer's instant on, the slower writer is served as the window allows
    assert isinstance(policy.decide(state, fast, COLLECTION_WEIGHT), WeightGrant)
    observed = policy.observe(state, slow, reported_used=100)
    assert observed is not None and observed.pruned_until_ms == fast  # an observation never lowers it


def test_deferred_requests_are_told_to_come_back_in_turn_as_the_weight_frees() -> None:
    policy = IpWeightPolicy(limit=EXCHANGE_IP_WEIGHT_PER_MINUTE, recv_window_ms=RECV)
    state = IpWeightState()
    for index in range(8):  # a full minute: 8 collections, one a second
        state = grant(policy, state, T0 + index * 1_000, COLLECTION_WEIGHT)
    now = T0 + 10_000
    turns = policy.free_in_turn(state, now, COLLECTION_WEIGHT, 10)
    # Each in turn takes the weight the next expiring collection frees; the 9th and 10th take the weight of the
    # 1st and 2nd come-backs, a full occupancy after them.
    firsts = [T0 + index * 1_000 + OCCUPANCY for index in range(8)]
    assert turns == [*firsts, firsts[0] + OCCUPANCY, firsts[1] + OCCUPANCY]
    # With the minute free, 8 may go at once and the 9th waits for the first of them to expire.
    free = policy.free_in_turn(IpWeightState(), now, COLLECTION_WEIGHT, 9)
    assert free == [now] * 8 + [now + OCCUPANCY]
    # Weight a faster clock dropped still counts: nobody is told to come back before it.
    pruned = IpWeightState(pruned_until_ms=now + 5_000)
    assert policy.free_in_turn(pruned, now, COLLECTION_WEIGHT, 1) == [now + 5_000]

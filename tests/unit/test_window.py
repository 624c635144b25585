"""The rolling-window policy, driven with an explicit clock."""

import pytest

from auto_collector.window import FUTURE_TOLERANCE_MS, HOUR_MS, RING_SIZE, Grant, Refusal, WindowPolicy, WindowState

RECV = 5_000
OCCUPANCY = HOUR_MS + RECV + FUTURE_TOLERANCE_MS


def reserve_many(policy: WindowPolicy, state: WindowState, times: list[int]) -> tuple[WindowState, list[bool]]:
    granted = []
    for now in times:
        decision = policy.decide(state, now)
        if isinstance(decision, Grant):
            state = decision.state_after
        granted.append(isinstance(decision, Grant))
    return state, granted


def test_grants_exactly_the_limit_then_refuses_until_the_first_slot_expires() -> None:
    policy = WindowPolicy(limit=3, recv_window_ms=RECV)
    start = 1_700_000_000_000
    state, granted = reserve_many(policy, WindowState(), [start, start + 10, start + 20, start + 30])
    assert granted == [True, True, True, False]
    refusal = policy.decide(state, start + 40)
    assert isinstance(refusal, Refusal)
    assert refusal.next_free_ms == start + OCCUPANCY
    assert isinstance(policy.decide(state, start + OCCUPANCY - 1), Refusal)
    assert isinstance(policy.decide(state, start + OCCUPANCY), Grant)


def test_used_counts_only_unexpired_reservations() -> None:
    policy = WindowPolicy(limit=5, recv_window_ms=RECV)
    state, _ = reserve_many(policy, WindowState(), [0, 1000, 2000])
    assert policy.used(state, 2000) == 3
    assert policy.used(state, OCCUPANCY) == 2  # the first has expired exactly then
    assert policy.used(state, OCCUPANCY + 2000) == 0


def test_a_host_whose_clock_is_behind_signs_with_its_own_time_and_cannot_shorten_the_window() -> None:
    policy = WindowPolicy(limit=1, recv_window_ms=RECV)
    first = policy.decide(WindowState(), 5_000)
    assert isinstance(first, Grant)
    # A host 1 s behind: its request is signed with its own clock (or the exchange would refuse it) ...
    assert isinstance(policy.decide(first.state_after, 4_000 + OCCUPANCY), Refusal)
    late = policy.decide(first.state_after, 5_000 + OCCUPANCY)
    assert isinstance(late, Grant) and late.timestamp_ms == 5_000 + OCCUPANCY


def test_a_host_whose_clock_is_ahead_only_delays_later_reservations() -> None:
    policy = WindowPolicy(limit=2, recv_window_ms=RECV)
    ahead = policy.decide(WindowState(), 20_000)  # 20 s fast
    assert isinstance(ahead, Grant)
    behind = policy.decide(ahead.state_after, 0)
    assert isinstance(behind, Grant)
    assert behind.timestamp_ms == 0  # signs with the time the exchange will accept
    assert behind.expiry_ms == ahead.expiry_ms  # but its expiry never precedes an earlier one


def test_expiries_never_decrease_when_recv_window_shrinks() -> None:
    wide = WindowPolicy(limit=10, recv_window_ms=60_000)
    narrow = WindowPolicy(limit=10, recv_window_ms=1)
    first = wide.decide(WindowState(), 0)
    assert isinstance(first, Grant)
    second = narrow.decide(first.state_after, 10)
    assert isinstance(second, Grant)
    assert second.expiry_ms >= first.expiry_ms


def test_ring_wraps_around_and_a_lowered_limit_applies_at_once() -> None:
    policy = WindowPolicy(limit=RING_SIZE, recv_window_ms=RECV)
    state, granted = reserve_many(policy, WindowState(), list(range(0, RING_SIZE * 1000, 1000)))
    assert all(granted)
    assert isinstance(policy.decide(state, RING_SIZE * 1000), Refusal)
    later = OCCUPANCY + 600_000
    state, granted = reserve_many(policy, state, [later + i for i in range(10)])
    assert all(granted) and state.sequence == RING_SIZE + 10
    lowered = WindowPolicy(limit=5, recv_window_ms=RECV)
    assert isinstance(lowered.decide(state, later + 20), Refusal)


def test_limit_outside_the_exchange_ceiling_is_refused() -> None:
    with pytest.raises(ValueError, match="limit"):
        WindowPolicy(limit=RING_SIZE + 1, recv_window_ms=RECV)

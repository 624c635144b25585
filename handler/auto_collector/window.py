"""The rolling-window budget: at most `limit` requests per account in any hour, as the exchange sees it.

How it works. Reservations are numbered 0, 1, 2, ... (the sequence). Each carries an *expiry*:

    signed timestamp + recvWindow + 1 s + 3600 s

raised if needed to the previous reservation's expiry, so expiries never decrease along the sequence.
Reservation n may be granted only if its signed timestamp is at or after the expiry of reservation
n - limit.

Why that is exact in the exchange's own clock: the exchange refuses a request arriving later than
`timestamp + recvWindow`, or claiming a timestamp 1 s or more ahead of its clock. So for any i <= n - limit,
request n arrives after `ts_n - 1 s >= expiry_(n-limit) - 1 s >= expiry_i - 1 s >= arrival_i + 3600 s`:
any two requests `limit` apart in the sequence arrive more than an hour apart, so no hour ever holds more
than `limit` of them, whatever the Lambda hosts' clocks say (a host whose clock is fast only makes its
own expiry later). And with expiries non-decreasing, "n - limit has expired" is exactly "fewer than
`limit` reservations are unexpired": the window never refuses a call the budget allows.

The state is one DynamoDB item holding the expiries of the last RING_SIZE reservations (RING_SIZE is
the exchange's ceiling, so any configured limit <= 500 can be checked): a constant-size record, with
no scan or count over history.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

HOUR_MS = 3_600_000
#: Binance accepts timestamps up to 1000 ms ahead of its clock.
FUTURE_TOLERANCE_MS = 1_000
#: Ring size: the exchange never allows more than 500 calls an hour, so 500 expiries always suffice.
RING_SIZE = 500
#: How long a scheduled event id is remembered to recognise a duplicate delivery of it.
EVENT_MEMORY_MS = 3 * HOUR_MS


@dataclass(frozen=True)
class WindowState:
    """The last known state of one account's window (an exact copy of the stored item)."""

    sequence: int = 0
    expiries: Mapping[int, int] = field(default_factory=dict)  # ring slot -> expiry (ms)
    last_timestamp_ms: int = 0
    last_expiry_ms: int = 0
    #: The exchange asked us (429/418) to stop until then; no reservation is granted before it.
    blocked_until_ms: int = 0
    blocked_reason: str = ""
    #: Scheduled event id -> (invocation that reserved with it, when): duplicate deliveries are refused.
    events: Mapping[str, tuple[str, int]] = field(default_factory=dict)

    def expiry_of(self, reservation: int) -> int:
        return self.expiries.get(reservation % RING_SIZE, 0)


@dataclass(frozen=True)
class Grant:
    """Reservation `sequence` may be sent, signed with `timestamp_ms`."""

    sequence: int
    slot: int
    timestamp_ms: int
    expiry_ms: int
    state_after: WindowState


@dataclass(frozen=True)
class Refusal:
    """The window is full until `next_free_ms`."""

    next_free_ms: int


@dataclass(frozen=True)
class BackingOff:
    """The exchange told us to stop calling until `until_ms` (stored by whichever invocation heard it)."""

    until_ms: int
    reason: str


@dataclass(frozen=True)
class Duplicate:
    """This scheduled event already reserved a slot in another invocation: a repeated delivery."""

    event_id: str
    original_invocation_id: str


Decision = Grant | Refusal | BackingOff | Duplicate


@dataclass(frozen=True)
class WindowPolicy:
    limit: int
    recv_window_ms: int

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= RING_SIZE:
            raise ValueError(f"limit must be within 1..{RING_SIZE}")

    def decide(self, state: WindowState, now_ms: int, event_id: str | None = None, invocation_id: str = "") -> Decision:
        """Whether a request may be sent now, for this invocation and (scheduled) event."""
        if state.blocked_until_ms > now_ms:
            return BackingOff(state.blocked_until_ms, state.blocked_reason)
        if event_id is not None and event_id in state.events:
            original = state.events[event_id][0]
            if original != invocation_id:  # the same invocation may retry; another delivery may not
                return Duplicate(event_id, original)
        blocking_expiry = self._blocking_expiry(state)
        if now_ms < blocking_expiry:
            return Refusal(next_free_ms=blocking_expiry)
        expiry = max(now_ms + self.recv_window_ms + FUTURE_TOLERANCE_MS + HOUR_MS, state.last_expiry_ms)
        slot = state.sequence % RING_SIZE
        events = {e: seen for e, seen in state.events.items() if seen[1] > now_ms - EVENT_MEMORY_MS}
        if event_id is not None:
            events[event_id] = (invocation_id, now_ms)
        after = WindowState(
            sequence=state.sequence + 1,
            expiries={**state.expiries, slot: expiry},
            last_timestamp_ms=now_ms,
            last_expiry_ms=expiry,
            blocked_until_ms=state.blocked_until_ms,
            blocked_reason=state.blocked_reason,
            events=events,
        )
        return Grant(state.sequence, slot, now_ms, expiry, after)

    def used(self, state: WindowState, now_ms: int) -> int:
        """Reservations still counting against the window at `now_ms`."""
        newest = range(max(0, state.sequence - RING_SIZE), state.sequence)
        return sum(1 for n in newest if state.expiry_of(n) > now_ms)

    def next_free_ms(self, state: WindowState, now_ms: int) -> int:
        """The earliest instant a new reservation could be granted."""
        return max(now_ms, self._blocking_expiry(state))

    def _blocking_expiry(self, state: WindowState) -> int:
        # The reservation `limit` places back must have expired before another may start.
        if state.sequence < self.limit:
            return 0
        return state.expiry_of(state.sequence - self.limit)

"""The IP-weight window: at most `limit` request weight a minute from this deployment's address, as the exchange
counts it.

The exchange limits every IP to 12,000 request weight per rolling minute on /sapi (a collection weighs 1500, a
balance read 20). The limit belongs to the address, so it is shared by every account this deployment collects
for, by every invocation running at the same time, and by whatever else the customer runs behind the same NAT.

How it works. Every signed request reserves its weight before it is sent. A reservation made at `t` (the
invocation's estimate of the exchange's clock) is an *entry* (expiry, weight) with

    expiry = t + recvWindow + 1 s + 60 s

and a reservation of weight `w` at `t` is granted only if the weight of the entries still unexpired at `t`
plus `w` is at most `limit`. The request is then signed with timestamp `t` itself: a collection's slot in its
account window and its IP weight are reserved in one DynamoDB transaction at one instant (store.py), a balance
read is signed with its reservation's instant. The entries live in one DynamoDB item, written with a conditional
write on a sequence number, so reservations are totally ordered.

Why that holds in the exchange's own clock. The exchange accepts a request signed at `t` only if it arrives at `a`
with `t - 1 s < a <= t + recvWindow`. Take any minute `(T - 60 s, T]` of the exchange's clock and the requests S
counted in it; let n be the last of them in the reservation order. For every i in S, `a_n - a_i < 60 s`, so
`t_n - 1 s < a_n < a_i + 60 s <= t_i + recvWindow + 60 s`, i.e. `t_n < expiry_i`: entry i was unexpired when n
was reserved, and n's reservation saw it: it came earlier in the order, and it was not dropped in between. A
write drops the entries expired at *its* `t`, which may be later than `t_n` (another host's clock a few ms ahead,
a clock resynced backwards); so every write raises `pruned_until_ms` to the latest expiry it drops, and no
reservation is granted at a `t` before it: had i been dropped, `t_n >= pruned_until_ms >= expiry_i`. So
`sum(S) <= unexpired weight at n's reservation + w_n <= limit`. Nothing here depends on the Lambda hosts' clocks
agreeing, as long as the exchange accepts the requests' timestamps (a writer behind the one that last dropped
entries waits for its clock to catch up: the difference between the hosts' clocks).

What the exchange sees that we do not, and what the proof does not cover:
- other programs behind the same address: every answer carries `X-SAPI-USED-IP-WEIGHT-1M`; when it reports
  more than our unexpired entries add up to, the difference is recorded as an entry of its own (`observe`),
  so every invocation slows down until it expires;
- a request the exchange refuses for its timestamp (-1021) may still be counted, outside the interval above:
  that needs a clock off by more than the tolerance, happens once before the resync, and is answered by the
  header like any other unknown weight;
- a 429/418 anywhere blocks the whole window until Retry-After (`blocked_until_ms`).

The stored entries are bounded: when more than MAX_ENTRIES are unexpired, the two with the closest expiries
are merged into one with the later expiry and the summed weight. That only ever makes weight expire later
(conservative), so the proof above still holds; in practice the item holds a few dozen entries at most.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .window import FUTURE_TOLERANCE_MS, BackingOff

MINUTE_MS = 60_000
#: The exchange's IP weight limit per minute on /sapi.
EXCHANGE_IP_WEIGHT_PER_MINUTE = 12_000
#: Entries kept in the stored item before the closest are merged (conservatively).
MAX_ENTRIES = 64

#: Documented request weights of the signed /sapi calls the collector makes.
COLLECTION_WEIGHT = 1500
BALANCE_WEIGHT = 20
API_RESTRICTIONS_WEIGHT = 1

Entry = tuple[int, int]  # (expiry ms, weight)


@dataclass(frozen=True)
class IpWeightState:
    """The last known state of the deployment's IP-weight window (an exact copy of the stored item)."""

    sequence: int = 0
    #: Reserved (or observed) weight and when it stops counting, sorted by expiry.
    entries: tuple[Entry, ...] = ()
    blocked_until_ms: int = 0
    blocked_reason: str = ""
    #: The latest expiry of an entry dropped from `entries`: its weight may count for a clock before it.
    pruned_until_ms: int = 0


@dataclass(frozen=True)
class WeightGrant:
    """`weight` may be sent now; `state_after` is what the store must hold once it is reserved."""

    timestamp_ms: int
    expiry_ms: int
    weight: int
    state_after: IpWeightState


@dataclass(frozen=True)
class WeightRefusal:
    """Not enough weight is free until `next_free_ms`."""

    next_free_ms: int


WeightDecision = WeightGrant | WeightRefusal | BackingOff


@dataclass(frozen=True)
class IpWeightPolicy:
    limit: int
    recv_window_ms: int
    period_ms: int = MINUTE_MS
    max_entries: int = field(default=MAX_ENTRIES)

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= EXCHANGE_IP_WEIGHT_PER_MINUTE:
            raise ValueError(f"limit must be within 1..{EXCHANGE_IP_WEIGHT_PER_MINUTE}")
        if self.max_entries < 2:
            raise ValueError("max_entries must be at least 2")

    @property
    def occupancy_ms(self) -> int:
        """How long a reservation's weight counts, from the moment it is made."""
        return self.recv_window_ms + FUTURE_TOLERANCE_MS + self.period_ms

    def decide(self, state: IpWeightState, now_ms: int, weight: int) -> WeightDecision:
        """Whether `weight` may be sent now."""
        if state.blocked_until_ms > now_ms:
            return BackingOff(state.blocked_until_ms, state.blocked_reason)
        if weight > self.limit:
            # Never grantable: configuration must prevent it (see config.py); refuse for a full period.
            return WeightRefusal(now_ms + self.occupancy_ms)
        if now_ms < state.pruned_until_ms:
            # Weight dropped by a writer whose clock was ahead may still count at ours.
            return WeightRefusal(self.next_free_ms(state, state.pruned_until_ms, weight))
        if self.used(state, now_ms) + weight > self.limit:
            return WeightRefusal(self.next_free_ms(state, now_ms, weight))
        expiry = now_ms + self.occupancy_ms
        after = self._with_entry(state, now_ms, (expiry, weight))
        return WeightGrant(now_ms, expiry, weight, after)

    def observe(self, state: IpWeightState, now_ms: int, reported_used: int) -> IpWeightState | None:
        """The state that also counts weight the exchange reports and we did not reserve (None: nothing new).

        `reported_used` is X-SAPI-USED-IP-WEIGHT-1M of an answer received just now: everything the address used in
        the exchange's last minute, ours included. Weight beyond our unexpired entries belongs to someone else (or
        to a request of ours the proof does not cover); it counts for a full occupancy from now, which is at least
        as long as the exchange will count it.
        """
        unknown = reported_used - self.used(state, now_ms)
        if unknown <= 0:
            return None
        return self._with_entry(state, now_ms, (now_ms + self.occupancy_ms, unknown))

    def used(self, state: IpWeightState, now_ms: int) -> int:
        """Weight still counting at `now_ms`."""
        return sum(weight for expiry, weight in state.entries if expiry > now_ms)

    def next_free_ms(self, state: IpWeightState, now_ms: int, weight: int) -> int:
        """The earliest instant `weight` could be reserved (ignoring any block)."""
        used = self.used(state, now_ms)
        if used + weight <= self.limit:
            return now_ms
        for expiry, entry_weight in state.entries:
            if expiry <= now_ms:
                continue
            used -= entry_weight
            if used + weight <= self.limit:
                return expiry
        return now_ms + self.occupancy_ms  # unreachable while weight <= limit

    def free_in_turn(self, state: IpWeightState, now_ms: int, weight: int, count: int) -> list[int]:
        """When each of `count` requests of `weight` could be sent, one after another as soon as weight frees, if
        nothing else took weight meanwhile: where deferred requests are told to come back, in turn rather than all
        at the instant the first of them could go (ignoring any block; the window still decides when they do)."""
        times: list[int] = []
        at = max(now_ms, state.pruned_until_ms)
        for _ in range(count):
            at = self.next_free_ms(state, at, weight)
            times.append(at)
            state = self._with_entry(state, at, (at + self.occupancy_ms, weight))
        return times

    def _with_entry(self, state: IpWeightState, now_ms: int, entry: Entry) -> IpWeightState:
        entries = sorted([e for e in state.entries if e[0] > now_ms] + [entry])
        dropped = [expiry for expiry, _ in state.entries if expiry <= now_ms]
        while len(entries) > self.max_entries:
            # Merge the neighbours closest in expiry: the merged weight counts until the later expiry.
            index = min(range(len(entries) - 1), key=lambda i: entries[i + 1][0] - entries[i][0])
            merged = (entries[index + 1][0], entries[index][1] + entries[index + 1][1])
            entries[index : index + 2] = [merged]
        return IpWeightState(
            sequence=state.sequence + 1,
            entries=tuple(entries),
            blocked_until_ms=state.blocked_until_ms,
            blocked_reason=state.blocked_reason,
            pruned_until_ms=max([state.pruned_until_ms, *dropped]),
        )

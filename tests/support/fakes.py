"""In-memory fakes of the collector's ports (handler/auto_collector/ports.py), for unit tests without HTTP or
DynamoDB: one clock that every fake reads and every sleep moves, an exchange that answers from a script, the
account windows and the IP-weight window held in memory and decided by the real policies.

The fakes keep the exchange's real limits: the windows are decided by `WindowPolicy` and `IpWeightPolicy` with the
limits the test's `Settings` give (500 calls an hour, 12,000 IP weight a minute unless a test says otherwise).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal

from auto_collector.credentials import ApiCredentials, parse_secret
from auto_collector.errors import DeadlineError, WindowStoreError
from auto_collector.exchange import (
    API_RESTRICTIONS_PATH,
    AUTO_COLLECTION_PATH,
    BALANCE_PATH,
    SPOT_ACCOUNT_PATH,
    AttemptResult,
    FuturesBalance,
    Verdict,
)
from auto_collector.ip_window import IpWeightPolicy, IpWeightState, WeightDecision, WeightGrant
from auto_collector.key_policy import KeyRestrictions, parse_restrictions
from auto_collector.ports import IpWeightLedger
from auto_collector.store import JointReservation, decide
from auto_collector.window import Grant, WindowPolicy, WindowState

#: 2025-12-01T03:52:46Z, on our clock.
T0 = 1_764_561_166_000
#: What the store keeps back to write the outcome (store.py, ip_store.py): no reservation with less time left.
MIN_MS_TO_RESERVE = 1_500

OK = AttemptResult("success", 200, None, "", 0)
#: The exchange account every fake key belongs to, unless a test gives a key another (FakeExchange.uids).
UID = 1001
#: An IP-restricted key without withdrawals: what a collector key should be.
GOOD_KEY = {"ipRestrict": True, "enableWithdrawals": False, "enableReading": True, "enablePortfolioMarginTrading": True}


def failure(
    http_status: int, code: int | None = None, message: str = "", retry_after_s: int | None = None
) -> AttemptResult:
    """An answer as exchange.classify would read it."""
    verdict: Verdict
    if http_status in (418, 429):
        verdict = "rate_limited"
    elif http_status >= 500 or http_status == 0:
        verdict = "retryable"
    elif code == -1021:
        verdict = "clock_skew"
    else:
        verdict = "rejected"
    return AttemptResult(verdict, http_status, code, message or f"HTTP {http_status}", 0, retry_after_s=retry_after_s)


def credentials(api_key: str = "key-1", api_secret: str = "secret-1") -> ApiCredentials:
    return parse_secret(json.dumps({"apiKey": api_key, "apiSecret": api_secret}), "binance/test")


@dataclass
class Clock:
    """Our clock (ms), the invocation's deadline, and a sleep that moves the clock instead of waiting."""

    now: int = T0
    deadline: int = T0 + 60_000
    slept_ms: list[int] = field(default_factory=list)

    def now_ms(self) -> int:
        return self.now

    def remaining_ms(self) -> int:
        return self.deadline - self.now

    def sleep(self, seconds: float) -> None:
        ms = round(seconds * 1000)
        self.slept_ms.append(ms)
        self.now += ms


@dataclass(frozen=True)
class Sent:
    """One signed request the fake exchange received."""

    path: str
    api_key: str
    timestamp_ms: int
    timeout_s: float


@dataclass
class FakeExchange:
    """Answers collections from `collections` (in order, then success), key restrictions from `key` (or from
    `refused_keys`, whose requests all get -2015) and balances from `wallets`. Every request takes `latency_ms`."""

    clock: Clock
    collections: list[AttemptResult] = field(default_factory=list)
    key: dict[str, object] = field(default_factory=lambda: dict(GOOD_KEY))
    refused_keys: set[str] = field(default_factory=set)
    wallets: dict[str, FuturesBalance] = field(default_factory=dict)
    #: The exchange account of each key (GET /api/v3/account's uid); UID for any other.
    uids: dict[str, int] = field(default_factory=dict)
    #: The exchange's clock minus ours: what `sync_clock` learns.
    skew_ms: int = 0
    latency_ms: int = 20
    sent: list[Sent] = field(default_factory=list)
    clock_syncs: int = 0
    clock_offset_ms: int = 0

    def server_now_ms(self) -> int:
        return self.clock.now + self.clock_offset_ms

    def auto_collect(
        self, credentials: ApiCredentials, timestamp_ms: int, recv_window_ms: int, timeout_s: float
    ) -> AttemptResult:
        refused = self._request(AUTO_COLLECTION_PATH, credentials, timestamp_ms, timeout_s)
        return refused or (self.collections.pop(0) if self.collections else OK)

    def balances(
        self, credentials: ApiCredentials, recv_window_ms: int, timeout_s: float, timestamp_ms: int | None = None
    ) -> tuple[AttemptResult, dict[str, FuturesBalance]]:
        timestamp = self.server_now_ms() if timestamp_ms is None else timestamp_ms
        refused = self._request(BALANCE_PATH, credentials, timestamp, timeout_s)
        return (refused, {}) if refused else (OK, dict(self.wallets))

    def api_restrictions(
        self, credentials: ApiCredentials, recv_window_ms: int, timeout_s: float, timestamp_ms: int
    ) -> tuple[AttemptResult, KeyRestrictions | None]:
        refused = self._request(API_RESTRICTIONS_PATH, credentials, timestamp_ms, timeout_s)
        return (refused, None) if refused else (OK, parse_restrictions(self.key, self.server_now_ms()))

    def account_uid(
        self, credentials: ApiCredentials, recv_window_ms: int, timeout_s: float, timestamp_ms: int
    ) -> tuple[AttemptResult, int | None]:
        refused = self._request(SPOT_ACCOUNT_PATH, credentials, timestamp_ms, timeout_s)
        return (refused, None) if refused else (OK, self.uids.get(credentials.api_key, UID))

    def sync_clock(self, timeout_s: float) -> int:
        self.clock_syncs += 1
        self.clock.now += self.latency_ms
        self.clock_offset_ms = self.skew_ms
        return self.clock_offset_ms

    def paths(self) -> list[str]:
        return [request.path for request in self.sent]

    def _request(
        self, path: str, credentials: ApiCredentials, timestamp_ms: int, timeout_s: float
    ) -> AttemptResult | None:
        self.sent.append(Sent(path, credentials.api_key, timestamp_ms, timeout_s))
        self.clock.now += self.latency_ms
        if credentials.api_key in self.refused_keys:
            return failure(401, -2015, "Invalid API-key, IP, or permissions for action.")
        return None


@dataclass
class FakeCredentials:
    """The secret: `current`, until a test puts `rotated` in it (read only when the cache is bypassed)."""

    current: ApiCredentials = field(default_factory=credentials)
    rotated: ApiCredentials | None = None
    forced_reads: int = 0

    def load(self, force_fetch: bool = False) -> ApiCredentials:
        if force_fetch:
            self.forced_reads += 1
            if self.rotated is not None:
                self.current, self.rotated = self.rotated, None
        return self.current


@dataclass
class InMemoryIpWeightLedger:
    """The deployment's IP-weight window in memory (every writer sees the current state); `take` is weight another
    program spends."""

    policy: IpWeightPolicy
    state: IpWeightState = field(default_factory=IpWeightState)
    reserved_at: list[int] = field(default_factory=list)
    observed: list[int] = field(default_factory=list)
    blocks: list[tuple[int, str]] = field(default_factory=list)
    #: The table is unreachable for the exchange's reports of used weight.
    fail_observe: bool = False

    @property
    def known(self) -> IpWeightState:
        return self.state

    def reserve(
        self, policy: IpWeightPolicy, weight: int, now_ms: Callable[[], int], remaining_ms: Callable[[], int]
    ) -> tuple[WeightDecision, IpWeightState]:
        seen = self.state
        decision = policy.decide(seen, now_ms(), weight)
        if isinstance(decision, WeightGrant):
            if remaining_ms() < MIN_MS_TO_RESERVE:
                raise DeadlineError("not enough time left to reserve IP weight")
            self.state = decision.state_after
            self.reserved_at.append(decision.timestamp_ms)
        return decision, seen

    def observe(self, policy: IpWeightPolicy, reported_used: int, now_ms: Callable[[], int]) -> int:
        if self.fail_observe:
            raise WindowStoreError("could not reserve IP weight in table 't': unreachable")
        self.observed.append(reported_used)
        now = now_ms()
        after = policy.observe(self.state, now, reported_used)
        if after is None:
            return 0
        added = policy.used(after, now) - policy.used(self.state, now)
        self.state = after
        return added

    def block(self, until_ms: int, reason: str) -> None:
        self.blocks.append((until_ms, reason))
        if self.state.blocked_until_ms < until_ms:
            self.state = replace(self.state, blocked_until_ms=until_ms, blocked_reason=reason)

    def remember(self, state: IpWeightState) -> None:
        self.state = state

    def read(self) -> IpWeightState:
        return self.state

    def take(self, now_ms: int, weight: int) -> None:
        decision = self.policy.decide(self.state, now_ms, weight)
        assert isinstance(decision, WeightGrant), decision
        self.state = decision.state_after


@dataclass
class InMemoryAccountWindows:
    """Every account's rolling window in memory; a joint reservation takes the slot and the IP weight together."""

    states: dict[str, WindowState] = field(default_factory=dict)
    #: (account, reservation, signed timestamp) of every slot taken.
    reservations: list[tuple[str, int, int]] = field(default_factory=list)
    blocks: list[tuple[tuple[str, ...], int, str]] = field(default_factory=list)

    def known(self, account: str) -> WindowState:
        return self.states.get(account, WindowState())

    def read(self, account: str) -> WindowState:
        return self.known(account)

    def block(self, accounts: list[str], until_ms: int, reason: str) -> None:
        self.blocks.append((tuple(accounts), until_ms, reason))
        for account in accounts:
            state = self.known(account)
            if state.blocked_until_ms < until_ms:
                self.states[account] = replace(state, blocked_until_ms=until_ms, blocked_reason=reason)

    def reserve_with_weight(
        self,
        account: str,
        policy: WindowPolicy,
        now_ms: Callable[[], int],
        remaining_ms: Callable[[], int],
        event_id: str | None,
        invocation_id: str,
        ip: IpWeightLedger,
        ip_policy: IpWeightPolicy,
        weight: int,
    ) -> JointReservation:
        state = self.known(account)
        now = now_ms()
        decision = decide(policy, state, now, event_id, invocation_id)
        if not isinstance(decision, Grant):
            return JointReservation(decision, None, state)
        weight_decision = ip_policy.decide(ip.known, now, weight)
        if not isinstance(weight_decision, WeightGrant):
            return JointReservation(None, weight_decision, state)
        if remaining_ms() < MIN_MS_TO_RESERVE:
            raise DeadlineError("not enough time left to reserve a window slot")
        self.states[account] = decision.state_after
        ip.remember(weight_decision.state_after)
        self.reservations.append((account, decision.sequence, decision.timestamp_ms))
        return JointReservation(decision, weight_decision, state)


@dataclass
class InMemoryRegistry:
    """The registry (label -> window key) in memory, with every write."""

    items: dict[str, str] = field(default_factory=dict)
    writes: list[tuple[str, str]] = field(default_factory=list)

    def read(self, labels: Sequence[str]) -> dict[str, str]:
        return {label: self.items[label] for label in labels if label in self.items}

    def register(self, label: str, window_key: str) -> bool:
        self.writes.append((label, window_key))
        self.items[label] = window_key
        return True


def balances(**wallets: str) -> dict[str, FuturesBalance]:
    """{"USDT": "12.5"} -> the UM wallet holds 12.5 USDT."""
    return {asset: FuturesBalance(Decimal(amount), Decimal(0)) for asset, amount in wallets.items()}

"""The collection policy: one invocation, from secret to outcome, without any Lambda types.

Order of work, and why:
1. credentials first: a bad secret must fail before a window slot is spent;
2. one window reservation per HTTP attempt, made before sending: the exchange counts attempts;
3. retries only where they can help (5XX, timeouts, dropped connections: the collection is safe to
   repeat), one clock resync on -1021, never on a refused key or signature, never through a 429/418;
4. no attempt starts that could not finish before the deadline with time left to record the outcome.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, Protocol

from aws_lambda_powertools import Logger

from .config import Settings
from .credentials import ApiCredentials
from .errors import (
    CollectorError,
    DeadlineError,
    ExchangeError,
    ExchangeRateLimitedError,
    ExchangeRejectedError,
    ExchangeUnavailableError,
)
from .events import Invocation
from .exchange import AttemptResult, BinanceClient, FuturesBalance
from .observability import SERVICE
from .store import WindowStore, account_key
from .window import BackingOff, Duplicate, Grant, Refusal, WindowPolicy, WindowState

logger = Logger(service=SERVICE, child=True)

Status = Literal["collected", "dry_run", "budget_exhausted", "backing_off", "duplicate", "nothing_to_collect", "failed"]

#: Time kept back at the end of an invocation to write the outcome record.
OUTCOME_RESERVE_MS = 1_500
#: An attempt is not started with less HTTP time than this.
MIN_HTTP_TIMEOUT_MS = 1_000
#: Auto-collection never moves BNB.
NEVER_COLLECTED = frozenset({"BNB"})
#: -2015 invalid key/IP/permissions, -1022 bad signature: what a rotated key looks like from here.
KEY_REFUSED_CODES = frozenset({-2015, -1022})
#: Back-off when a 429/418 comes without Retry-After (a 418 ban lasts at least 2 minutes).
DEFAULT_RATE_LIMIT_S = 60
DEFAULT_BAN_S = 300
#: Pause before retrying a 5XX/timeout, doubled each time (bounded by the deadline).
RETRY_BACKOFF_MS = 250


@dataclass
class AttemptRecord:
    sequence: int
    timestamp_ms: int
    result: AttemptResult

    def to_item(self) -> dict[str, Any]:
        return {
            "reservation": self.sequence,
            "timestampMs": self.timestamp_ms,
            "verdict": self.result.verdict,
            "httpStatus": self.result.http_status,
            "code": self.result.code,
            "message": self.result.message,
            "latencyMs": self.result.latency_ms,
            "usedWeight1m": self.result.used_weight_1m,
            "retryAfterSeconds": self.result.retry_after_s,
        }


@dataclass
class Outcome:
    """The record of one invocation: what it was asked, what it did, and how the window stands."""

    account: str
    invocation_id: str
    invocation: Invocation
    started_ms: int
    status: Status = "failed"
    finished_ms: int = 0
    attempts: list[AttemptRecord] = field(default_factory=list)
    window_used: int | None = None
    window_limit: int = 0
    next_free_ms: int | None = None
    clock_offset_ms: int = 0
    key_type: str | None = None
    blocked_until_ms: int | None = None
    note: str | None = None
    #: Reservations made but not sent (no time was left): spent, and listed so they are not taken for a crash.
    unsent_reservations: list[int] = field(default_factory=list)
    balances_before: dict[str, FuturesBalance] | None = None
    balances_after: dict[str, FuturesBalance] | None = None
    error: CollectorError | None = None

    def moved(self) -> dict[str, str] | None:
        """Per asset, how much left the futures wallets during the collection (BNB never moves)."""
        if self.balances_before is None or self.balances_after is None:
            return None
        moved = {}
        for asset, before in self.balances_before.items():
            after = self.balances_after.get(asset, FuturesBalance(Decimal(0), Decimal(0)))
            if asset not in NEVER_COLLECTED and before.total - after.total > 0:
                moved[asset] = str(before.total - after.total)
        return moved

    @property
    def last_attempt(self) -> AttemptResult | None:
        return self.attempts[-1].result if self.attempts else None

    def summary(self) -> dict[str, Any]:
        """The handler's return value (and the core of the stored record)."""
        last = self.last_attempt
        return {
            "status": self.status,
            "account": self.account,
            "trigger": self.invocation.trigger,
            "dryRun": self.invocation.dry_run,
            "attempts": len(self.attempts),
            "windowUsed": self.window_used,
            "windowLimit": self.window_limit,
            "nextSlotAt": _iso(self.next_free_ms) if self.next_free_ms is not None else None,
            "httpStatus": last.http_status if last else None,
            "exchangeCode": last.code if last else None,
            "usedWeight1m": last.used_weight_1m if last else None,
            "blockedUntil": _iso(self.blocked_until_ms) if self.blocked_until_ms else None,
            "note": self.note,
            "error": _error_summary(self.error),
        }

    def to_item(self, retention_days: int) -> dict[str, Any]:
        started = _iso(self.started_ms)
        return {
            "pk": account_key(self.account),
            "sk": f"OUTCOME#{started}#{self.invocation_id}",
            "expiresAt": self.finished_ms // 1000 + retention_days * 86_400,
            **self.summary(),
            "invocationId": self.invocation_id,
            "eventId": self.invocation.event_id_for(self.account),
            "scheduledTime": self.invocation.scheduled_time,
            "startedAt": started,
            "finishedAt": _iso(self.finished_ms),
            "durationMs": self.finished_ms - self.started_ms,
            "attemptLog": [attempt.to_item() for attempt in self.attempts],
            "reservations": sorted([attempt.sequence for attempt in self.attempts] + self.unsent_reservations),
            "unsentReservations": self.unsent_reservations,
            "clockOffsetMs": self.clock_offset_ms,
            "keyType": self.key_type,
            "balancesBefore": _balances_item(self.balances_before),
            "balancesAfter": _balances_item(self.balances_after),
            "moved": self.moved(),
        }


class CredentialsLoader(Protocol):
    def load(self, force_fetch: bool = False) -> ApiCredentials:
        """The account's credentials; `force_fetch` bypasses any cache (after the exchange refused the key)."""
        ...


class Collector:
    """Collects for one account. Keeps no per-invocation state, so a warm container reuses it."""

    def __init__(
        self,
        settings: Settings,
        account: str,
        store: WindowStore,
        exchange: BinanceClient,
        credentials: CredentialsLoader,
        *,
        block_scope: Sequence[str] = (),
        wall_clock_ms: Callable[[], int] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._settings = settings
        self._account = account
        self._store = store
        self._exchange = exchange
        self._credentials = credentials
        # Accounts sharing this function's outbound IP: a 429/418 stops all of them.
        self._block_scope = list(block_scope) or [account]
        self._wall_clock_ms = wall_clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._sleep = sleep
        self._policy = WindowPolicy(settings.max_calls_per_hour, settings.recv_window_ms)

    def run(self, invocation: Invocation, invocation_id: str, remaining_ms: Callable[[], int]) -> Outcome:
        """Do what `invocation` asks. Expected failures end up in `Outcome.error`, not raised."""
        outcome = Outcome(
            account=self._account,
            invocation_id=invocation_id,
            invocation=invocation,
            started_ms=self._wall_clock_ms(),
            window_limit=self._settings.max_calls_per_hour,
        )
        try:
            credentials = self._credentials.load()
            outcome.key_type = credentials.key_type
            if invocation.dry_run:
                self._dry_run(outcome, credentials, remaining_ms)
            else:
                self._collect(outcome, credentials, remaining_ms)
        except CollectorError as error:
            outcome.status, outcome.error = "failed", error
        outcome.clock_offset_ms = self._exchange.clock_offset_ms
        outcome.finished_ms = self._wall_clock_ms()
        return outcome

    def _dry_run(self, outcome: Outcome, credentials: ApiCredentials, remaining_ms: Callable[[], int]) -> None:
        credentials.signer.sign("recvWindow=5000&timestamp=0")  # proves the key can sign; nothing is sent
        state = self._store.read(outcome.account)
        self._record_window(outcome, state)
        outcome.status = "dry_run"
        if state.blocked_until_ms > self._exchange.server_now_ms():
            outcome.blocked_until_ms = state.blocked_until_ms  # even the server-time call would extend a ban
            return
        try:
            self._exchange.sync_clock(self._http_timeout_s(remaining_ms))
        except DeadlineError:
            raise
        except Exception as error:  # noqa: BLE001 - any transport failure means "not reachable"
            raise ExchangeUnavailableError(
                f"dry run could not read the exchange's server time ({type(error).__name__})"
            ) from None

    def _collect(self, outcome: Outcome, credentials: ApiCredentials, remaining_ms: Callable[[], int]) -> None:
        check = self._settings.balance_check
        if check != "off" and not self._check_balances(outcome, credentials, remaining_ms):
            return
        self._send(outcome, credentials, remaining_ms)
        if check != "off" and outcome.status == "collected":
            self._record_balances_after(outcome, credentials, remaining_ms)

    def _record_balances_after(
        self, outcome: Outcome, credentials: ApiCredentials, remaining_ms: Callable[[], int]
    ) -> None:
        """Best effort: the collection already happened, so nothing here may turn it into a failure."""
        try:
            timeout_s = self._http_timeout_s(remaining_ms)
        except DeadlineError:
            outcome.note = "balances after the collection not read: no time left in the invocation"
            return
        result, balances = self._exchange.balances(credentials, self._settings.recv_window_ms, timeout_s)
        if result.verdict == "success":
            outcome.balances_after = balances
            return
        if result.verdict == "rate_limited":
            self._back_off(outcome, result)  # no later invocation may call through it
        outcome.note = f"balances after the collection unavailable: HTTP {result.http_status} {result.message}"

    def _check_balances(self, outcome: Outcome, credentials: ApiCredentials, remaining_ms: Callable[[], int]) -> bool:
        """Read the futures balances first (weight 20); False when the collection must not be sent."""
        state = self._store.read(outcome.account)
        invocation = outcome.invocation
        decision = self._policy.decide(
            state, self._exchange.server_now_ms(), invocation.event_id_for(outcome.account), outcome.invocation_id
        )
        if not isinstance(decision, Grant):
            # Backing off: the balance call would also go through a 429/418. Budget exhausted or a
            # duplicate delivery: nothing would be collected, so the weight need not be spent either.
            self._record_window(outcome, state)
            self._refused(outcome, decision)
            return False
        result, balances = self._exchange.balances(
            credentials, self._settings.recv_window_ms, self._http_timeout_s(remaining_ms)
        )
        if result.verdict == "rate_limited":
            self._back_off(outcome, result)
            raise _failure(result)
        if result.verdict != "success":
            # Collecting blind is harmless: the check only saves budget, so its failure must not stop the job.
            outcome.note = f"balance check failed (HTTP {result.http_status}, code {result.code}): {result.message}"
            return True
        outcome.balances_before = balances
        if self._settings.balance_check == "skip-when-empty" and not collectable(balances):
            self._record_window(outcome, state)
            outcome.status = "nothing_to_collect"
            return False
        return True

    def _send(self, outcome: Outcome, credentials: ApiCredentials, remaining_ms: Callable[[], int]) -> None:
        """Reserve and send until collected, refused, or out of attempts."""
        invocation = outcome.invocation
        retryable_attempts = 0
        clock_resynced = key_reread = False
        backoff_ms = RETRY_BACKOFF_MS
        while True:
            timeout_s = self._http_timeout_s(remaining_ms)
            decision, state = self._store.reserve(
                outcome.account,
                self._policy,
                self._exchange.server_now_ms,
                remaining_ms,
                event_id=invocation.event_id_for(outcome.account),
                invocation_id=outcome.invocation_id,
            )
            if not isinstance(decision, Grant):
                self._record_window(outcome, state)
                if outcome.attempts:  # earlier attempts failed and no retry may be sent now
                    raise _failure(outcome.attempts[-1].result)
                self._refused(outcome, decision)
                return
            # Reserving may have waited on contention or a slow DynamoDB: the attempt must still end before the
            # deadline. If it cannot, the reservation stays spent (safe) and is recorded as not sent.
            available_ms = remaining_ms() - OUTCOME_RESERVE_MS
            if available_ms < MIN_HTTP_TIMEOUT_MS:
                outcome.unsent_reservations.append(decision.sequence)
                raise DeadlineError(f"only {max(0, remaining_ms())} ms left after reserving a window slot; not sent")
            timeout_s = min(timeout_s, available_ms / 1000)
            logger.info("window slot reserved", extra={"account": outcome.account, "reservation": decision.sequence})
            result = self._exchange.auto_collect(
                credentials, decision.timestamp_ms, self._settings.recv_window_ms, timeout_s
            )
            outcome.attempts.append(AttemptRecord(decision.sequence, decision.timestamp_ms, result))
            self._record_window(outcome, decision.state_after)
            if result.verdict == "success":
                outcome.status = "collected"
                return
            if result.verdict == "clock_skew" and not clock_resynced:
                clock_resynced = True
                self._resync_clock(remaining_ms)
                continue
            if result.verdict == "rate_limited":
                self._back_off(outcome, result)
                raise _failure(result)
            if result.verdict == "rejected" and result.code in KEY_REFUSED_CODES and not key_reread:
                key_reread = True
                credentials = self._reread_rotated_key(credentials, result)
                outcome.key_type = credentials.key_type
                continue
            if result.verdict != "retryable":
                raise _failure(result)
            retryable_attempts += 1
            if retryable_attempts >= self._settings.max_attempts:
                raise _failure(result)
            if remaining_ms() - backoff_ms < OUTCOME_RESERVE_MS + MIN_HTTP_TIMEOUT_MS:
                raise _failure(result, "; no time left for another attempt")
            self._sleep(backoff_ms / 1000)
            backoff_ms *= 2

    def _refused(self, outcome: Outcome, decision: Refusal | BackingOff | Duplicate) -> None:
        if isinstance(decision, Refusal):
            outcome.status = "budget_exhausted"
            outcome.next_free_ms = decision.next_free_ms
        elif isinstance(decision, BackingOff):
            outcome.status = "backing_off"
            outcome.blocked_until_ms = decision.until_ms
            outcome.note = decision.reason
        else:
            outcome.status = "duplicate"
            outcome.note = (
                f"event {decision.event_id} was already handled by invocation {decision.original_invocation_id}"
            )

    def _back_off(self, outcome: Outcome, result: AttemptResult) -> None:
        """Store the exchange's 'stop calling' so no invocation calls through it (that gets the IP banned)."""
        default_s = DEFAULT_BAN_S if result.http_status == 418 else DEFAULT_RATE_LIMIT_S
        until = self._exchange.server_now_ms() + 1000 * (result.retry_after_s or default_s)
        reason = f"HTTP {result.http_status} code {result.code}: {result.message}"[:500]
        outcome.blocked_until_ms = until
        self._store.block(self._block_scope, until, reason)

    def _reread_rotated_key(self, current: ApiCredentials, result: AttemptResult) -> ApiCredentials:
        """After -2015/-1022 the key may just have been rotated: read the secret again, bypassing the cache."""
        fresh = self._credentials.load(force_fetch=True)
        if fresh is current or (fresh.api_key == current.api_key and fresh.fingerprint == current.fingerprint):
            raise _failure(
                result,
                "; the secret was re-read and has not changed: check the key, its permissions "
                "and IP whitelist, or put the new key in the secret",
            )
        logger.warning("the exchange refused the key and the secret has changed: retrying once with the new key")
        return fresh

    def _resync_clock(self, remaining_ms: Callable[[], int]) -> None:
        try:
            self._exchange.sync_clock(self._http_timeout_s(remaining_ms))
        except DeadlineError:
            raise
        except Exception as error:  # noqa: BLE001 - a failed resync is reported as the -1021 it was meant to cure
            raise ExchangeRejectedError(
                f"timestamp outside recvWindow and the server time could not be read ({type(error).__name__})",
                http_status=400,
                code=-1021,
            ) from None

    def _http_timeout_s(self, remaining_ms: Callable[[], int]) -> float:
        """HTTP time available now, or DeadlineError if an attempt could not finish in time."""
        available_ms = remaining_ms() - OUTCOME_RESERVE_MS
        if available_ms < MIN_HTTP_TIMEOUT_MS:
            raise DeadlineError(
                f"only {max(0, remaining_ms())} ms left in the invocation; an attempt needs at least "
                f"{OUTCOME_RESERVE_MS + MIN_HTTP_TIMEOUT_MS} ms (raise the function timeout)"
            )
        return min(self._settings.http_timeout_s, available_ms / 1000)

    def _record_window(self, outcome: Outcome, state: WindowState) -> None:
        now = self._exchange.server_now_ms()
        outcome.window_used = self._policy.used(state, now)
        outcome.next_free_ms = self._policy.next_free_ms(state, now)


def _failure(result: AttemptResult, note: str = "") -> ExchangeError:
    message = (result.message or "no message") + note
    if result.verdict == "rate_limited":
        return ExchangeRateLimitedError(
            message, http_status=result.http_status, code=result.code, retry_after_s=result.retry_after_s
        )
    if result.verdict == "retryable":
        return ExchangeUnavailableError(message, http_status=result.http_status, code=result.code)
    return ExchangeRejectedError(message, http_status=result.http_status, code=result.code)


def _error_summary(error: CollectorError | None) -> dict[str, Any] | None:
    if error is None:
        return None
    summary: dict[str, Any] = {"type": error.kind, "message": str(error)}
    if isinstance(error, ExchangeError):
        summary.update(httpStatus=error.http_status, code=error.code)
    return summary


def _balances_item(balances: dict[str, FuturesBalance] | None) -> dict[str, dict[str, str]] | None:
    if balances is None:
        return None
    return {
        asset: {"um": str(balance.um), "cm": str(balance.cm)}
        for asset, balance in sorted(balances.items())
        if balance.um or balance.cm
    }


def collectable(balances: dict[str, FuturesBalance]) -> bool:
    """Whether a collection would move anything: a positive UM or CM wallet balance in an asset other than BNB."""
    return any(balance.um > 0 or balance.cm > 0 for asset, balance in balances.items() if asset not in NEVER_COLLECTED)


def _iso(epoch_ms: int) -> str:
    seconds, millis = divmod(epoch_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"

"""The collection policy: one invocation, from secret to outcome, without any Lambda types.

Order of work, and why:
1. credentials first: a bad secret must fail before a window slot is spent;
2. one window reservation per HTTP attempt, made before sending: the exchange counts attempts;
3. IP weight for every signed request, reserved in the deployment's IP-weight window after the account
   window says it could send and before its slot is taken (admission.py); deferred when none frees soon;
4. retries only where they can help (attempts.py);
5. no attempt starts that could not finish before the deadline with time left to record the outcome.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aws_lambda_powertools import Logger

from .admission import NO_TURN, Deferred, IpWeightGate, Turn
from .attempts import RETRY_BACKOFF_MS, Tried, after_attempt
from .attempts import exchange_error as _failure
from .config import Settings
from .credentials import ApiCredentials
from .errors import (
    CollectorError,
    DeadlineError,
    ExchangeRejectedError,
    TradingPermissionExpiredError,
    WindowStoreError,
)
from .events import Invocation
from .exchange import AttemptResult, FuturesBalance
from .identity import IdentityBook
from .ip_window import BALANCE_WEIGHT, COLLECTION_WEIGHT, WeightGrant
from .key_check import KeyCheck, SignedCalls
from .key_policy import expired_explanation
from .observability import SERVICE
from .outcome import NEVER_COLLECTED, AttemptRecord, Outcome
from .ports import AccountWindows, CredentialsLoader, Exchange
from .store import decide
from .window import BackingOff, Duplicate, Grant, Refusal, WindowPolicy, WindowState

logger = Logger(service=SERVICE, child=True)

#: Time kept back at the end of an invocation to write the outcome record.
OUTCOME_RESERVE_MS = 1_500
#: An attempt is not started with less HTTP time than this.
MIN_HTTP_TIMEOUT_MS = 1_000
#: Back-off when a 429/418 comes without Retry-After (a 418 ban lasts at least 2 minutes).
DEFAULT_RATE_LIMIT_S = 60
DEFAULT_BAN_S = 300
MAX_BAN_S = 3 * 86_400
#: A reserved request is not sent once its timestamp is this close to recvWindow's end (it would arrive too late).
STALE_MARGIN_MS = 1_000


class Collector:
    """Collects for one account. Keeps no per-invocation state, so a warm container reuses it."""

    def __init__(
        self,
        settings: Settings,
        account: str,
        store: AccountWindows,
        exchange: Exchange,
        credentials: CredentialsLoader,
        *,
        gate: IpWeightGate,
        identities: IdentityBook,
        wall_clock_ms: Callable[[], int] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._settings = settings
        self._account = account
        self._store = store
        self._exchange = exchange
        self._credentials = credentials
        # The deployment's IP-weight window, shared by every account and invocation.
        self._gate = gate
        # Which exchange account's window each label spends (identity.py), shared by the deployment's accounts.
        self._identities = identities
        self._wall_clock_ms = wall_clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._sleep = sleep
        self._policy = WindowPolicy(settings.max_calls_per_hour, settings.recv_window_ms)
        # The key check's reads are admitted, observed and handled like the collection's own requests.
        calls = SignedCalls(
            admitted=self._admitted,
            observe=self._observe,
            back_off=self._back_off,
            resync_clock=self._resync_clock,
            reread_key=self._reread_rotated_key,
            http_timeout_s=self._http_timeout_s,
            sleep=sleep,
            unblocked=self._unblocked,
        )
        self._keys = KeyCheck(settings, exchange, calls, identities)

    def run(
        self, invocation: Invocation, invocation_id: str, remaining_ms: Callable[[], int], turn: Turn = NO_TURN
    ) -> Outcome:
        """Do what `invocation` asks. Expected failures end up in `Outcome.error`, not raised.

        `turn` is the account's place in the invocation's fairness order (see admission.Turnstile): taken for the
        first IP-weight reservation, and passed on once the answer to that request is in (or none is needed).
        """
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
                self._dry_run(outcome, credentials, remaining_ms, turn)
            elif (checked := self._keys.before_collection(outcome, credentials, remaining_ms, turn)) is not None:
                self._collect(outcome, checked, remaining_ms, turn)
            else:  # the key could not be checked now (deferred, backing off): the record still shows the window
                self._record_known_window(outcome)
        except CollectorError as error:
            outcome.status, outcome.error = "failed", error
        finally:
            turn.release()
        outcome.clock_offset_ms = self._exchange.clock_offset_ms
        outcome.finished_ms = self._wall_clock_ms()
        return outcome

    def _dry_run(
        self, outcome: Outcome, credentials: ApiCredentials, remaining_ms: Callable[[], int], turn: Turn
    ) -> None:
        """Signed reads only (key_check.py): the key's restrictions, its account and the balances; never a
        collection. The window shown is the key's account's, read once the key check named it."""
        outcome.status = "dry_run"
        # During a 429/418 the restrictions read is refused its IP weight (the deployment's stored back-off):
        # nothing is sent, since a call would only extend it.
        self._keys.dry_run(outcome, credentials, remaining_ms, turn)
        if outcome.key is None and outcome.blocked_until_ms is not None:
            outcome.note = f"key not checked: {outcome.note}"
        if outcome.window_key:
            self._record_window(outcome, self._store.read(outcome.window_key))
        else:
            self._record_known_window(outcome)

    def _collect(
        self, outcome: Outcome, credentials: ApiCredentials, remaining_ms: Callable[[], int], turn: Turn
    ) -> None:
        check = self._settings.balance_check
        if check != "off" and not self._check_balances(outcome, credentials, remaining_ms, turn):
            return
        self._send(outcome, credentials, remaining_ms, turn)
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
        weight = self._admitted(outcome, BALANCE_WEIGHT, remaining_ms, NO_TURN, record=False)
        if weight is None:
            outcome.note = "balances after the collection not read: no IP weight free"
            return
        result, balances = self._exchange.balances(
            credentials, self._settings.recv_window_ms, timeout_s, weight.timestamp_ms
        )
        if result.verdict == "success":
            self._observe(result)
            outcome.balances_after = balances
            return
        if result.verdict == "rate_limited":
            self._back_off(outcome, result)  # no later invocation may call through it
        self._observe(result)
        outcome.note = f"balances after the collection unavailable: HTTP {result.http_status} {result.message}"

    def _check_balances(
        self, outcome: Outcome, credentials: ApiCredentials, remaining_ms: Callable[[], int], turn: Turn
    ) -> bool:
        """Read the futures balances first (weight 20); False when the collection must not be sent."""
        state = self._store.read(outcome.window_key)
        invocation = outcome.invocation
        decision = decide(
            self._policy,
            state,
            self._exchange.server_now_ms(),
            invocation.event_id_for(outcome.account),
            outcome.invocation_id,
        )
        if not isinstance(decision, Grant):
            # Backing off: the balance call would also go through a 429/418. Budget exhausted or a
            # duplicate delivery: nothing would be collected, so the weight need not be spent either.
            self._record_window(outcome, state)
            self._refused(outcome, decision)
            return False
        weight = self._admitted(outcome, BALANCE_WEIGHT, remaining_ms, turn)
        if weight is None:
            self._record_window(outcome, state)
            return False
        result, balances = self._exchange.balances(
            credentials, self._settings.recv_window_ms, self._http_timeout_s(remaining_ms), weight.timestamp_ms
        )
        self._observe(result)
        turn.release()
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

    def _send(self, outcome: Outcome, credentials: ApiCredentials, remaining_ms: Callable[[], int], turn: Turn) -> None:
        """Reserve and send until collected, refused, or out of attempts."""
        invocation = outcome.invocation
        event_id = invocation.event_id_for(outcome.account)
        tried = Tried()
        backoff_ms = RETRY_BACKOFF_MS
        while True:
            timeout_s = self._http_timeout_s(remaining_ms)
            decision = self._reserve_attempt(outcome, event_id, remaining_ms, turn)
            if decision is None:
                return
            # Reserving may have waited on contention or a slow DynamoDB: the attempt must still end before the
            # deadline. If it cannot, the reservation stays spent (safe) and is recorded as not sent.
            available_ms = remaining_ms() - OUTCOME_RESERVE_MS
            if available_ms < MIN_HTTP_TIMEOUT_MS:
                outcome.unsent_reservations.append(decision.sequence)
                raise DeadlineError(f"only {max(0, remaining_ms())} ms left after reserving a window slot; not sent")
            timeout_s = min(timeout_s, available_ms / 1000)
            # A reservation that took longer than recvWindow allows (a slow or retried DynamoDB write) signs a stale
            # timestamp: the exchange would refuse it, but could count its weight after the window's entry expired.
            age_ms = self._exchange.server_now_ms() - decision.timestamp_ms
            if age_ms > self._settings.recv_window_ms - STALE_MARGIN_MS:
                outcome.unsent_reservations.append(decision.sequence)
                raise WindowStoreError(
                    f"reserving took {age_ms} ms, too long for recvWindow {self._settings.recv_window_ms} ms; not sent"
                )
            logger.info("window slot reserved", extra={"account": outcome.account, "reservation": decision.sequence})
            result = self._exchange.auto_collect(
                credentials, decision.timestamp_ms, self._settings.recv_window_ms, timeout_s
            )
            outcome.attempts.append(AttemptRecord(decision.sequence, decision.timestamp_ms, result))
            self._record_window(outcome, decision.state_after)
            self._observe(result)
            turn.release()
            step, tried = after_attempt(result, tried, self._settings.max_attempts)
            if step == "done":
                outcome.status = "collected"
                return
            if step == "resync_clock":
                self._resync_clock(remaining_ms)
                continue
            if step == "back_off":
                self._back_off(outcome, result)
                raise _failure(result)
            if step == "reread_key":
                rotated = self._reread_rotated_key(credentials, result)
                outcome.key_type = rotated.key_type
                # A rotated key is checked like any other before anything is collected with it.
                checked = self._keys.before_collection(outcome, rotated, remaining_ms, turn)
                if checked is None:
                    raise _failure(result, "; the rotated key could not be checked now (no IP weight free)")
                credentials = checked
                continue
            if step == "fail":
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
        # Binance's longest ban is 3 days: a longer Retry-After is garbage that would stop the deployment for good.
        until = self._exchange.server_now_ms() + 1000 * min(result.retry_after_s or default_s, MAX_BAN_S)
        reason = f"HTTP {result.http_status} code {result.code}: {result.message}"[:500]
        outcome.blocked_until_ms = until
        try:
            self._gate.block(until, reason)  # every account, every invocation of the deployment
            # The windows this process knows; the IP-weight item above stops every other account and process.
            known = {*self._identities.window_keys(), *([outcome.window_key] if outcome.window_key else [])}
            self._store.block(sorted(known), until, reason)
        except WindowStoreError as error:
            # The exchange's answer stays the outcome's error; this process already stands back (ip_store.block),
            # and the next invocation meets the exchange's own refusal and stores it then.
            logger.error("back-off not stored", extra={"account": outcome.account, "error": str(error)})
            outcome.note = f"the back-off could not be stored: {error}"[:500]

    def _reread_rotated_key(
        self, current: ApiCredentials, result: AttemptResult, context: str = "", advice: str = ""
    ) -> ApiCredentials:
        """After -2015/-1022 the key may just have been rotated: read the secret again, bypassing the cache.

        Unchanged, it raises: with the cause when a collection's -2015 meets restrictions showing the trading
        permission ended; else with `context` (what was being done) and `advice` (what to check for the code)."""
        fresh = self._credentials.load(force_fetch=True)
        if fresh is current or (fresh.api_key == current.api_key and fresh.fingerprint == current.fingerprint):
            now, known = self._exchange.server_now_ms(), self._keys.cached(current)
            if not context and result.code == -2015 and known is not None and known.trading_lapsed(now):
                message = f"{result.message}; {expired_explanation(known, now)}"
                raise TradingPermissionExpiredError(message, http_status=result.http_status, code=result.code)
            advice = advice or "check the key, its permissions and IP whitelist, or put the new key in the secret"
            raise _failure(result, f"{context}; the secret was re-read and has not changed: {advice}")
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

    def _reserve_attempt(
        self, outcome: Outcome, event_id: str | None, remaining_ms: Callable[[], int], turn: Turn
    ) -> Grant | None:
        """The account's slot and the request's IP weight, together, for one attempt; None (with the outcome's status
        set) when nothing may be sent. After failed attempts, a refusal raises the last failure instead."""
        # Held until the answer is observed (the caller releases it): the next account reserves knowing what the
        # exchange reported, other programs on the address included.
        turn.wait()
        joint, deferred = self._gate.admit_with_slot(
            self._store,
            outcome.window_key,
            policy=self._policy,
            event_id=event_id,
            invocation_id=outcome.invocation_id,
            weight=COLLECTION_WEIGHT,
            now_ms=self._exchange.server_now_ms,
            remaining_ms=remaining_ms,
        )
        outcome.ip_weight_used = self._gate.policy.used(self._gate.known(), self._exchange.server_now_ms())
        if isinstance(joint.decision, Grant):
            return joint.decision
        # A container that never saw this account reads its window once, so the record shows it truly.
        self._record_window(outcome, joint.state if joint.state.sequence else self._store.read(outcome.window_key))
        if outcome.attempts:  # earlier attempts failed and no retry may be sent now
            raise _failure(outcome.attempts[-1].result, "" if joint.decision else "; no IP weight free for a retry")
        if joint.decision is not None:
            self._refused(outcome, joint.decision)
        elif deferred is not None:
            self._deferred(outcome, deferred)
        elif isinstance(joint.weight, BackingOff):
            self._refused(outcome, joint.weight)
        return None

    def _admitted(
        self, outcome: Outcome, weight: int, remaining_ms: Callable[[], int], turn: Turn, record: bool = True
    ) -> WeightGrant | None:
        """Reserve `weight` in the IP-weight window (waiting briefly if it frees soon); None when it cannot be sent.

        Unless `record` is false, a refusal sets the outcome's status: `deferred` or `backing_off`.
        """
        # The turn is held until the answer to this request is observed (the caller releases it), so the next
        # account reserves knowing what the exchange reported, other programs on the address included.
        turn.wait()
        admission = self._gate.acquire(weight, self._exchange.server_now_ms, remaining_ms)
        outcome.ip_weight_used = self._gate.policy.used(self._gate.known(), self._exchange.server_now_ms())
        if isinstance(admission, WeightGrant):
            return admission
        if record and isinstance(admission, Deferred):
            self._deferred(outcome, admission)
        elif record and isinstance(admission, BackingOff):
            self._refused(outcome, admission)
        return None

    def _unblocked(self, outcome: Outcome, record: bool = True) -> int | None:
        """Now, to sign a request that takes no IP weight of ours; None while the address is backing off (as this
        process last saw the IP-weight item: a read admitted just before refreshed it)."""
        now = self._exchange.server_now_ms()
        known = self._gate.known()
        if known.blocked_until_ms <= now:
            return now
        if record:
            self._refused(outcome, BackingOff(known.blocked_until_ms, known.blocked_reason))
        return None

    def _record_known_window(self, outcome: Outcome) -> None:
        """Show the window of the key's account when it is known: read here, or in the registry (a cold container
        whose key check could not be sent). A key never read, anywhere, shows none."""
        window_key = outcome.window_key or self._identities.windows_of([outcome.account]).get(outcome.account)
        if window_key:
            outcome.window_key = window_key
            known = self._store.known(window_key)
            self._record_window(outcome, known if known.sequence else self._store.read(window_key))

    def _deferred(self, outcome: Outcome, deferred: Deferred) -> None:
        outcome.status = "deferred"
        outcome.deferred_until_ms = deferred.next_free_ms
        outcome.note = f"IP weight for this deployment is taken (limit {self._gate.policy.limit} a minute)"

    def _observe(self, result: AttemptResult) -> None:
        self._gate.observe(result.used_weight_1m, self._exchange.server_now_ms)

    def _record_window(self, outcome: Outcome, state: WindowState) -> None:
        now = self._exchange.server_now_ms()
        outcome.window_used = self._policy.used(state, now)
        outcome.next_free_ms = self._policy.next_free_ms(state, now)


def collectable(balances: dict[str, FuturesBalance]) -> bool:
    """Whether a collection would move anything: a positive UM or CM wallet balance in an asset other than BNB."""
    return any(balance.um > 0 or balance.cm > 0 for asset, balance in balances.items() if asset not in NEVER_COLLECTED)

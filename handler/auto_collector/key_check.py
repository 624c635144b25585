"""The key check before a collection, and the dry run at the exchange.

Before a real collection the key's restrictions (GET /sapi/v1/account/apiRestrictions, IP weight 1) are read
once per secret value and kept with it: a warm invocation pays nothing. They are read again after a day (the
trading permission's days left must stay true), after an hour while that permission ends within the alarm's
7 days or has ended (so a fix - a whitelisted IP, the permission re-enabled - shows soon), and at once for a
rotated key. A key that can withdraw is refused before anything is collected with it (key_policy.py).

With the restrictions, once per secret value, the key's exchange account is read (GET /api/v3/account, weight 20
on the /api limits, so outside the /sapi IP-weight window; never sent during a 429/418 back-off): its `uid` names
the rolling window the account's collections spend from (identity.py). A key rotated to another account is
read afresh like any rotated key.

A dry run reads the restrictions afresh and the balances (weight 20), and reports the key (type, permissions, IP
restriction, the trading permission's expiry), what a collection would move now, and every warning. It sends no
collection. A key the exchange refuses (-2015/-1022) fails the dry run with the exchange's code and what to check.

Every read gets the collection's fault handling (attempts.py: 5XX and timeouts retried within the deadline, one
clock resync on -1021, one re-read of a possibly rotated secret on -2015/-1022, a 429/418 stored as a back-off
for every invocation) and its weight goes through the deployment's IP-weight window first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from aws_lambda_powertools import Logger

from .admission import Turn
from .attempts import KEY_REFUSED_CODES, RETRY_BACKOFF_MS, Tried, after_attempt, exchange_error
from .config import Settings
from .credentials import ApiCredentials
from .errors import ExchangeRejectedError, KeyPolicyError
from .exchange import AttemptResult, FuturesBalance
from .identity import IdentityBook, account_window_key
from .ip_window import API_RESTRICTIONS_WEIGHT, BALANCE_WEIGHT, WeightGrant
from .key_policy import DAY_MS, EXPIRY_WARNING_DAYS, KeyRestrictions, refusal, warnings
from .observability import SERVICE
from .outcome import Outcome, would_move
from .ports import Exchange

logger = Logger(service=SERVICE, child=True)

HOUR_MS = 3_600_000
#: Time kept back for the outcome record and the smallest HTTP time worth an attempt (collection.py's values).
_TIME_NEEDED_FOR_ANOTHER_ATTEMPT_MS = 2_500

#: What to check when the exchange refuses the key, by its code.
KEY_REFUSED_HINTS = {
    -2015: (
        "check that the secret's apiKey is the key itself, that 'Enable Reading' is on, and, for an IP-restricted "
        "key, that the deployment's egress IP is whitelisted on it"
    ),
    -1022: (
        "check that the secret's apiSecret (HMAC) or privateKey (Ed25519/RSA, whose public key is the one "
        "registered at Binance) belongs to its apiKey"
    ),
}

T = TypeVar("T")
Send = Callable[[ApiCredentials, int, float], tuple[AttemptResult, T | None]]


@dataclass(frozen=True)
class SignedCalls:
    """What the collector lends the key check, so every signed request is admitted and handled one way."""

    #: Reserve IP weight (outcome, weight, remaining_ms, turn, record a refusal in the outcome).
    admitted: Callable[[Outcome, int, Callable[[], int], Turn, bool], WeightGrant | None]
    observe: Callable[[AttemptResult], None]
    back_off: Callable[[Outcome, AttemptResult], None]
    resync_clock: Callable[[Callable[[], int]], None]
    #: Re-read the secret after -2015/-1022: the fresh credentials; raises (context, advice) when unchanged.
    reread_key: Callable[[ApiCredentials, AttemptResult, str, str], ApiCredentials]
    http_timeout_s: Callable[[Callable[[], int]], float]
    #: The instant to sign a request that takes no IP weight of ours (the /api pool), or None while the address is
    #: backing off from a 429/418 (recorded in the outcome when the flag is true).
    unblocked: Callable[[Outcome, bool], int | None]
    sleep: Callable[[float], None]


class KeyCheck:
    """One account's key check; keeps the restrictions last read for its secret value while warm."""

    def __init__(self, settings: Settings, exchange: Exchange, calls: SignedCalls, identities: IdentityBook) -> None:
        self._settings = settings
        self._exchange = exchange
        self._calls = calls
        self._identities = identities
        self._cached: tuple[tuple[str, str], KeyRestrictions] | None = None
        #: The exchange account of the secret value last read: a key never changes account, so no refresh.
        self._uid: tuple[tuple[str, str], int] | None = None

    def cached(self, credentials: ApiCredentials) -> KeyRestrictions | None:
        """The restrictions last read for exactly this secret value, however old."""
        if self._cached is None or self._cached[0] != _identity(credentials):
            return None
        return self._cached[1]

    def before_collection(
        self, outcome: Outcome, credentials: ApiCredentials, remaining_ms: Callable[[], int], turn: Turn
    ) -> ApiCredentials | None:
        """The credentials to collect with (the secret may have been rotated meanwhile), or None when the key could
        not be checked now (the outcome says why: deferred or backing off). Raises KeyPolicyError for a key that
        must not be used, SharedAccountError for one whose account another label holds. Sets the outcome's window
        key: the key's account's."""
        return self._checked(outcome, credentials, remaining_ms, turn, dry_run=False)

    def dry_run(
        self, outcome: Outcome, credentials: ApiCredentials, remaining_ms: Callable[[], int], turn: Turn
    ) -> None:
        """Prove the key at the exchange and report what a collection would move now; sends no collection."""
        checked = self._checked(outcome, credentials, remaining_ms, turn, dry_run=True)
        if checked is None:
            return
        credentials = checked
        recv_window_ms = self._settings.recv_window_ms

        def balances(
            key: ApiCredentials, timestamp_ms: int, timeout_s: float
        ) -> tuple[AttemptResult, dict[str, FuturesBalance] | None]:
            result, found = self._exchange.balances(key, recv_window_ms, timeout_s, timestamp_ms)
            return result, found if result.verdict == "success" else None

        read_balances = self._signed_read(
            outcome,
            credentials,
            BALANCE_WEIGHT,
            balances,
            remaining_ms=remaining_ms,
            turn=turn,
            what="reading the balances",
            release_turn=True,
        )
        if read_balances is None:
            return
        outcome.balances_before = read_balances[1]
        outcome.would_move = would_move(read_balances[1])

    def _checked(
        self,
        outcome: Outcome,
        credentials: ApiCredentials,
        remaining_ms: Callable[[], int],
        turn: Turn,
        *,
        dry_run: bool,
    ) -> ApiCredentials | None:
        """The key's restrictions judged and its account resolved; None when a read could not be sent now."""
        for _ in range(2):  # a secret rotated during the account read: its new key is checked from the start, once
            # The account is read only right after restrictions admitted through the IP-weight window: that admission
            # has just seen the deployment's stored back-off, if any (the account read takes no weight of ours).
            restrictions = None if dry_run else self._still_valid(credentials)
            if restrictions is not None and not (self._uid is not None and self._uid[0] == _identity(credentials)):
                self._judge(outcome, restrictions, dry_run=False, just_read=False)  # a refused key needs no account
                restrictions = None
            just_read = restrictions is None
            if restrictions is None:
                read = self._read_restrictions(outcome, credentials, remaining_ms, turn)
                if read is None:
                    return None
                credentials, restrictions = read
            self._judge(outcome, restrictions, dry_run=dry_run, just_read=just_read)
            identified = self._account_of(outcome, credentials, remaining_ms, turn)
            if identified is None:
                return None
            key, uid = identified
            if key is credentials:
                outcome.window_key = account_window_key(uid)  # also on a refusal: the record names the account
                self._identities.claim(outcome.account, uid)
                return credentials
            credentials = key
        raise ExchangeRejectedError(
            "the secret changed again while its new key was being checked; the next invocation checks it",
            http_status=0,
        )

    def _account_of(
        self, outcome: Outcome, credentials: ApiCredentials, remaining_ms: Callable[[], int], turn: Turn
    ) -> tuple[ApiCredentials, int] | None:
        """The key's exchange account uid: kept per secret value, else read (and the key, if it was rotated)."""
        if self._uid is not None and self._uid[0] == _identity(credentials):
            return credentials, self._uid[1]
        recv_window_ms = self._settings.recv_window_ms

        def send(key: ApiCredentials, timestamp_ms: int, timeout_s: float) -> tuple[AttemptResult, int | None]:
            return self._exchange.account_uid(key, recv_window_ms, timeout_s, timestamp_ms)

        read = self._signed_read(
            outcome,
            credentials,
            None,
            send,
            remaining_ms=remaining_ms,
            turn=turn,
            what="reading the key's account, whose hourly budget it spends",
            release_turn=False,
        )
        if read is not None:
            self._uid = (_identity(read[0]), read[1])
        return read

    def _still_valid(self, credentials: ApiCredentials) -> KeyRestrictions | None:
        restrictions = self.cached(credentials)
        if restrictions is None:
            return None
        now = self._exchange.server_now_ms()
        days = restrictions.days_left(now)
        max_age_ms = HOUR_MS if days is not None and days <= EXPIRY_WARNING_DAYS else DAY_MS
        return restrictions if now - restrictions.read_at_ms < max_age_ms else None

    def _read_restrictions(
        self, outcome: Outcome, credentials: ApiCredentials, remaining_ms: Callable[[], int], turn: Turn
    ) -> tuple[ApiCredentials, KeyRestrictions] | None:
        recv_window_ms = self._settings.recv_window_ms

        def send(
            key: ApiCredentials, timestamp_ms: int, timeout_s: float
        ) -> tuple[AttemptResult, KeyRestrictions | None]:
            return self._exchange.api_restrictions(key, recv_window_ms, timeout_s, timestamp_ms)

        read = self._signed_read(
            outcome,
            credentials,
            API_RESTRICTIONS_WEIGHT,
            send,
            remaining_ms=remaining_ms,
            turn=turn,
            what="reading the key's restrictions",
            release_turn=False,
        )
        if read is not None:
            self._cached = (_identity(read[0]), read[1])
        return read

    def _judge(self, outcome: Outcome, restrictions: KeyRestrictions, dry_run: bool, just_read: bool) -> None:
        """Record the key in the outcome; raise KeyPolicyError for a key that must not be used. Warnings are logged
        when the restrictions are read (every outcome and its log line carry them too)."""
        now = self._exchange.server_now_ms()
        found = warnings(restrictions, now, self._settings.egress_mode)
        outcome.key = restrictions
        outcome.key_warnings = found
        why = refusal(restrictions, now, dry_run)
        if why is not None:
            raise KeyPolicyError(why)
        if found and just_read:
            logger.warning("API key flagged", extra={"account": outcome.account, "keyWarnings": found})

    def _signed_read(
        self,
        outcome: Outcome,
        credentials: ApiCredentials,
        weight: int | None,
        send: Send[T],
        *,
        remaining_ms: Callable[[], int],
        turn: Turn,
        what: str,
        release_turn: bool,
    ) -> tuple[ApiCredentials, T] | None:
        """One signed read, with the collection's fault handling; None when its weight was not admitted (the
        outcome's status says why). Raises the exchange's error, with what to check, when it fails.

        The read waits for the account's turn (admission.Turnstile). The key's restrictions keep it: the account's
        next request (its collection, its balances) passes it on, so the accounts' first heavy requests still go
        out in the fairness order, a weight-1 read before each on a cold start.

        `weight` None: an /api read, outside the /sapi IP-weight window; it is still never sent during a back-off."""
        tried = Tried()
        backoff_ms = RETRY_BACKOFF_MS
        last: AttemptResult | None = None
        while True:
            if weight is None:
                timestamp_ms = self._calls.unblocked(outcome, last is None)
            else:
                grant = self._calls.admitted(outcome, weight, remaining_ms, turn, last is None)
                timestamp_ms = None if grant is None else grant.timestamp_ms
            if timestamp_ms is None:
                if last is not None:
                    free = "the address is backing off" if weight is None else "no IP weight free for a retry"
                    raise exchange_error(last, f" ({what}; {free})")
                return None
            result, value = send(credentials, timestamp_ms, self._calls.http_timeout_s(remaining_ms))
            self._calls.observe(result)
            if release_turn:
                turn.release()
            last = result
            step, tried = after_attempt(result, tried, self._settings.max_attempts)
            if step == "done" and value is not None:
                return credentials, value
            if step == "resync_clock":
                self._calls.resync_clock(remaining_ms)
                continue
            if step == "back_off":
                self._calls.back_off(outcome, result)
                raise exchange_error(result, f" ({what})")
            hint = KEY_REFUSED_HINTS.get(result.code) if result.code in KEY_REFUSED_CODES else None
            if step == "reread_key":
                credentials = self._calls.reread_key(credentials, result, f" ({what})", hint or "")
                outcome.key_type = credentials.key_type
                continue
            if step != "retry":
                raise exchange_error(result, f" ({what}): {hint}" if hint else f" ({what})")
            if remaining_ms() - backoff_ms < _TIME_NEEDED_FOR_ANOTHER_ATTEMPT_MS:
                raise exchange_error(result, f" ({what}); no time left for another attempt")
            self._calls.sleep(backoff_ms / 1000)
            backoff_ms *= 2


def _identity(credentials: ApiCredentials) -> tuple[str, str]:
    return credentials.fingerprint, credentials.api_key

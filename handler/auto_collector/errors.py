"""The collector's own exceptions.

Every failure the function can meet is one of these, so the handler can record it, count it and
re-raise it with a message that names what is wrong. None of them ever carries key material.
"""

from __future__ import annotations

import reprlib
import traceback
from pathlib import PurePath

#: The most characters of one input an error message quotes: enough to recognise it, never enough to bloat a record.
ECHO_LIMIT = 120
#: The longest message any collector error carries (and so the outcome record stores), whatever it quotes.
MAX_MESSAGE_CHARS = 4_000


class _BoundedRepr(reprlib.Repr):
    """reprlib's bounds on depth and length, and no decimal text for huge integers (str() of one raises)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.maxlevel, self.maxdict, self.maxlist, self.maxtuple, self.maxset = 3, 6, 6, 6, 6
        self.maxstring = self.maxother = limit

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 64:
            return f"<{x.bit_length()}-bit integer>"
        return repr(x)


def echo(value: object, limit: int = ECHO_LIMIT) -> str:
    """repr() of an input for an error message, bounded in length and nesting whatever the input holds."""
    text = _BoundedRepr(limit).repr(value)
    return text if len(text) <= limit + 5 else f"{text[:limit]}...(cut)"


class CollectorError(Exception):
    """Base of every error the collector raises on purpose."""

    #: Short machine-readable name recorded in the outcome's `error.type`.
    kind = "collector_error"

    def __str__(self) -> str:
        # A final bound: no message, whatever it quotes, can make the outcome record too large to store.
        text = super().__str__()
        return text if len(text) <= MAX_MESSAGE_CHARS else f"{text[:MAX_MESSAGE_CHARS]}...(cut)"


class ConfigurationError(CollectorError):
    """An environment variable is missing or invalid; the message names the variable."""

    kind = "configuration"


class SharedAccountError(ConfigurationError):
    """Two configured labels hold API keys of one exchange account; the message names both and the account's uid."""

    kind = "shared_account"


class InvalidEventError(CollectorError):
    """The invocation event is not one the function accepts; nothing was sent."""

    kind = "invalid_event"


class SecretError(CollectorError):
    """The API credentials secret cannot be read or is malformed; nothing was sent."""

    kind = "secret"


class SigningError(CollectorError):
    """A signature failed the check made before it leaves the process (an RSA signature that does not verify with
    the key's public exponent: a fault in the computation); nothing was sent with it."""

    kind = "signing"


class WindowStoreError(CollectorError):
    """The rolling window in DynamoDB could not be read or written; nothing was sent."""

    kind = "window_store"


class QueueError(CollectorError):
    """The fan-out dispatcher could not send some accounts' messages to the work queue."""

    kind = "queue"


class KeyPolicyError(CollectorError):
    """The API key is one the collector must not use (it can withdraw; for a dry run also: no PM trading, or its
    trading permission ended); nothing was sent with it. The message says why and what fixes it."""

    kind = "key_policy"


class DeadlineError(CollectorError):
    """Not enough time left in the invocation to start (another) attempt safely."""

    kind = "deadline"


class ExchangeError(CollectorError):
    """The exchange refused the request or could not be reached.

    Carries the HTTP status (0 when no response arrived), the exchange's error code (None when the
    body had none) and its message, so Lambda's error metric and failure destinations show them.
    """

    kind = "exchange"

    def __init__(self, message: str, *, http_status: int = 0, code: int | None = None) -> None:
        self.http_status = http_status
        self.code = code
        self.exchange_message = message
        super().__init__(f"HTTP {http_status}, code {code}: {message}" if http_status else message)


class ExchangeRejectedError(ExchangeError):
    """A 4XX answer that retrying cannot fix (bad key, bad signature, wrong account type...)."""

    kind = "exchange_rejected"


class TradingPermissionExpiredError(ExchangeRejectedError):
    """-2015 from a key whose restrictions show its trading permission ended (Binance's 30 days for a key without
    whitelisted IPs): the message says so and what fixes it, not only the exchange's generic text."""

    kind = "trading_permission_expired"


class ExchangeRateLimitedError(ExchangeError):
    """429 or 418: the exchange asks us to stop calling for `retry_after_s` seconds."""

    kind = "exchange_rate_limited"

    def __init__(self, message: str, *, http_status: int, code: int | None, retry_after_s: int | None) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message, http_status=http_status, code=code)


class ExchangeUnavailableError(ExchangeError):
    """5XX, timeouts or dropped connections on every allowed attempt."""

    kind = "exchange_unavailable"


class RecordNotStoredError(CollectorError):
    """The invocation did its work (the statuses say what) but its outcome record could not be written; the full
    record is in the log. Raised so Lambda's error metric and the alarm see it."""

    kind = "record_not_stored"

    def __init__(self, statuses: dict[str, str], cause: CollectorError | None) -> None:
        self.statuses = statuses
        done = ", ".join(f"{account}: {status}" for account, status in statuses.items())
        super().__init__(f"outcome record not stored ({done}); the full record is in the log: {cause}")


class AccountsFailedError(CollectorError):
    """Several accounts were collected and some failed; raised after every account was done and recorded."""

    kind = "accounts_failed"

    def __init__(self, failures: dict[str, CollectorError]) -> None:
        self.failures = failures
        details = "; ".join(f"{account}: {error}" for account, error in failures.items())
        super().__init__(f"{len(failures)} account(s) failed - {details}")


class UnexpectedError(CollectorError):
    """A failure the collector has no specific error for (a bug): recorded like any other, then raised.

    The message names the exception's type and where it was raised, never its text: that text may quote
    an input or a secret (a UnicodeEncodeError quotes the character it could not encode).
    """

    kind = "unexpected"

    def __init__(self, error: BaseException) -> None:
        frames = traceback.extract_tb(error.__traceback__)
        where = f" at {PurePath(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
        super().__init__(f"unexpected {type(error).__name__}{where}; its text is not shown (it may quote an input)")

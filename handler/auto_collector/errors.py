"""The collector's own exceptions.

Every failure the function can meet is one of these, so the handler can record it, count it and
re-raise it with a message that names what is wrong. None of them ever carries key material.
"""

from __future__ import annotations


class CollectorError(Exception):
    """Base of every error the collector raises on purpose."""

    #: Short machine-readable name recorded in the outcome's `error.type`.
    kind = "collector_error"


class ConfigurationError(CollectorError):
    """An environment variable is missing or invalid; the message names the variable."""

    kind = "configuration"


class InvalidEventError(CollectorError):
    """The invocation event is not one the function accepts; nothing was sent."""

    kind = "invalid_event"


class SecretError(CollectorError):
    """The API credentials secret cannot be read or is malformed; nothing was sent."""

    kind = "secret"


class WindowStoreError(CollectorError):
    """The rolling window in DynamoDB could not be read or written; nothing was sent."""

    kind = "window_store"


class QueueError(CollectorError):
    """The fan-out dispatcher could not send some accounts' messages to the work queue."""

    kind = "queue"


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


class ExchangeRateLimitedError(ExchangeError):
    """429 or 418: the exchange asks us to stop calling for `retry_after_s` seconds."""

    kind = "exchange_rate_limited"

    def __init__(self, message: str, *, http_status: int, code: int | None, retry_after_s: int | None) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message, http_status=http_status, code=code)


class ExchangeUnavailableError(ExchangeError):
    """5XX, timeouts or dropped connections on every allowed attempt."""

    kind = "exchange_unavailable"


class AccountsFailedError(CollectorError):
    """Several accounts were collected and some failed; raised after every account was done and recorded."""

    kind = "accounts_failed"

    def __init__(self, failures: dict[str, CollectorError]) -> None:
        self.failures = failures
        details = "; ".join(f"{account}: {error}" for account, error in failures.items())
        super().__init__(f"{len(failures)} account(s) failed - {details}")

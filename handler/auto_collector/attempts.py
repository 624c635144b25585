"""What to do after one attempt at the exchange: a pure rule, tested like `WindowPolicy.decide`.

Retries only where they can help: 5XX, timeouts and dropped connections (the collection is safe to repeat, and
every attempt takes a new reservation because the exchange counts attempts), one clock resync on -1021, one
re-read of the secret when the key is refused (it may just have been rotated), never through a 429/418.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from .errors import ExchangeError, ExchangeRateLimitedError, ExchangeRejectedError, ExchangeUnavailableError
from .exchange import AttemptResult

#: -2015 invalid key/IP/permissions, -1022 bad signature: what a rotated key looks like from here.
KEY_REFUSED_CODES = frozenset({-2015, -1022})

#: Pause before retrying a 5XX/timeout, doubled each time (bounded by the deadline): every signed read and the
#: collection alike.
RETRY_BACKOFF_MS = 250

NextStep = Literal["done", "resync_clock", "back_off", "reread_key", "retry", "fail"]


@dataclass(frozen=True)
class Tried:
    """What an invocation has already tried for one account."""

    retryable_failures: int = 0
    clock_resynced: bool = False
    key_reread: bool = False


def after_attempt(result: AttemptResult, tried: Tried, max_attempts: int) -> tuple[NextStep, Tried]:
    """The next step after `result`, and what will then have been tried."""
    if result.verdict == "success":
        return "done", tried
    if result.verdict == "clock_skew" and not tried.clock_resynced:
        return "resync_clock", replace(tried, clock_resynced=True)
    if result.verdict == "rate_limited":
        return "back_off", tried
    if result.verdict == "rejected" and result.code in KEY_REFUSED_CODES and not tried.key_reread:
        return "reread_key", replace(tried, key_reread=True)
    if result.verdict != "retryable":
        return "fail", tried
    tried = replace(tried, retryable_failures=tried.retryable_failures + 1)
    if tried.retryable_failures >= max_attempts:
        return "fail", tried
    return "retry", tried


def exchange_error(result: AttemptResult, note: str = "") -> ExchangeError:
    """The error an attempt's failure is raised as: its verdict picks the type, the exchange's text the message."""
    message = (result.message or "no message") + note
    if result.verdict == "rate_limited":
        return ExchangeRateLimitedError(
            message, http_status=result.http_status, code=result.code, retry_after_s=result.retry_after_s
        )
    if result.verdict == "retryable":
        return ExchangeUnavailableError(message, http_status=result.http_status, code=result.code)
    return ExchangeRejectedError(message, http_status=result.http_status, code=result.code)

"""The outcome record of one invocation: what it was asked, what it did, and how the windows stand."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from .errors import CollectorError, ExchangeError
from .events import Invocation
from .exchange import AttemptResult, FuturesBalance
from .key_policy import KeyRestrictions, key_record
from .times import iso

Status = Literal[
    "collected", "dry_run", "budget_exhausted", "backing_off", "duplicate", "nothing_to_collect", "deferred", "failed"
]

#: Auto-collection never moves BNB.
NEVER_COLLECTED = frozenset({"BNB"})


@dataclass
class AttemptRecord:
    sequence: int
    timestamp_ms: int
    result: AttemptResult


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
    #: Deferred: the IP weight this deployment may use is taken until this instant (the exchange's clock).
    deferred_until_ms: int | None = None
    #: IP weight the deployment's window held after this invocation's last reservation (all accounts, other programs).
    ip_weight_used: int | None = None
    balances_before: dict[str, FuturesBalance] | None = None
    balances_after: dict[str, FuturesBalance] | None = None
    #: The key's restrictions this invocation went by (read now or kept from an earlier one), and its warnings.
    key: KeyRestrictions | None = None
    key_warnings: list[str] = field(default_factory=list)
    #: Dry run: per asset, what a collection would move now.
    would_move: dict[str, str] | None = None
    error: CollectorError | None = None
    #: The rolling window this invocation spent from: `uid:<uid>` of the exchange account behind the key
    #: (identity.py); "" while the key's account is not known.
    window_key: str = ""
    #: Set when the outcome record itself could not be written (the log holds it): reported apart from `error`.
    record_error: CollectorError | None = None

    def trading_days_left(self) -> int | None:
        """Whole days left of the key's dated trading permission at the invocation's start (None: not dated)."""
        return self.key.days_left(self._exchange_started_ms) if self.key is not None else None

    @property
    def _exchange_started_ms(self) -> int:
        # The invocation's start in the exchange's clock: the offset is learned from the exchange.
        return self.started_ms + self.clock_offset_ms

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
        """The handler's return value (and the core of the stored record, records.py)."""
        last = self.last_attempt
        return {
            "status": self.status,
            "account": self.account,
            "trigger": self.invocation.trigger,
            "dryRun": self.invocation.dry_run,
            "attempts": len(self.attempts),
            "windowUsed": self.window_used,
            "windowLimit": self.window_limit,
            "nextSlotAt": iso(self.next_free_ms) if self.next_free_ms is not None else None,
            # A failed read before any collection attempt (the key check) shows the exchange's answer too.
            "httpStatus": last.http_status if last else getattr(self.error, "http_status", None),
            "exchangeCode": last.code if last else getattr(self.error, "code", None),
            "usedWeight1m": last.used_weight_1m if last else None,
            "blockedUntil": iso(self.blocked_until_ms) if self.blocked_until_ms else None,
            "deferredUntil": iso(self.deferred_until_ms) if self.deferred_until_ms is not None else None,
            "ipWeightUsed": self.ip_weight_used,
            "keyType": self.key_type,
            "key": key_record(self.key, self._exchange_started_ms, self.key_warnings) if self.key else None,
            "wouldMove": self.would_move,
            "note": self.note,
            "error": _error_summary(self.error),
        }


def would_move(balances: dict[str, FuturesBalance]) -> dict[str, str]:
    """Per asset, what a collection would move now: the positive UM and CM futures wallet balances (never BNB)."""
    moving = {}
    for asset, balance in sorted(balances.items()):
        amount = max(balance.um, Decimal(0)) + max(balance.cm, Decimal(0))
        if asset not in NEVER_COLLECTED and amount > 0:
            moving[asset] = str(amount)
    return moving


def _error_summary(error: CollectorError | None) -> dict[str, Any] | None:
    if error is None:
        return None
    summary: dict[str, Any] = {"type": error.kind, "message": str(error)}
    if isinstance(error, ExchangeError):
        summary.update(httpStatus=error.http_status, code=error.code)
    return summary

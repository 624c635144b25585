"""What the operator's view shows, as plain values: per account, the window, any back-off, the outcomes
and the crash traces."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import EXCHANGE_HOURLY_LIMIT, Settings
from ..key_policy import EXPIRY_WARNING_DAYS, trading_permission_text
from ..times import iso, parse_iso_ms
from ..window import HOUR_MS

DAY_MS = 24 * HOUR_MS
#: Lambda's longest run: a reservation younger than this without an outcome may belong to a running invocation.
MAX_INVOCATION_MS = 15 * 60_000
DEFAULT_LAST = 10
#: The label of a single-account deployment, shown even before it ever reserved a slot (a secret that
#: never worked leaves failed outcomes but no registry entry).
DEFAULT_ACCOUNT = "default"


@dataclass(frozen=True)
class KeyView:
    """The API key as the newest outcome that checked it saw it (key_policy.py): flags and dates, no key material."""

    ip_restricted: bool | None
    expires_ms: int | None
    warnings: tuple[str, ...]
    checked_at: str | None

    @classmethod
    def from_record(cls, key: Mapping[str, Any]) -> KeyView:
        expires = _text(key.get("tradingPermissionExpiresAt"))
        restricted = key.get("ipRestricted")
        return cls(
            ip_restricted=restricted if isinstance(restricted, bool) else None,
            expires_ms=(parse_iso_ms(expires) or None) if expires else None,
            warnings=tuple(w for w in key.get("warnings") or [] if isinstance(w, str)),
            checked_at=_text(key.get("checkedAt")),
        )

    def days_left(self, now_ms: int) -> int | None:
        return None if self.expires_ms is None else -(-(self.expires_ms - now_ms) // DAY_MS)  # whole days, rounded up

    def trading_permission(self, now_ms: int) -> str | None:
        """'trading permission expires on DATE (N days)', counted from now rather than from the outcome."""
        return None if self.expires_ms is None else trading_permission_text(self.expires_ms, now_ms)


@dataclass(frozen=True)
class OutcomeLine:
    """The part of one outcome record the operator reads."""

    started_ms: int
    started_at: str
    trigger: str
    status: str
    dry_run: bool
    attempts: int
    http_status: int | None
    exchange_code: int | None
    #: The exchange's answer time summed over the attempts, or the whole invocation's when nothing was sent.
    latency_ms: int | None
    duration_ms: int | None
    window_used: int | None
    window_limit: int | None
    next_slot_at: str | None
    blocked_until: str | None
    moved: dict[str, str] | None
    note: str | None
    error: dict[str, Any] | None
    invocation_id: str
    reservations: tuple[int, ...]
    key: KeyView | None = None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> OutcomeLine:
        started_at = _text(record.get("startedAt")) or _started_from_key(str(record.get("sk", "")))
        attempt_log = [a for a in record.get("attemptLog") or [] if isinstance(a, Mapping)]
        latencies = [a["latencyMs"] for a in attempt_log if isinstance(a.get("latencyMs"), int)]
        duration = _number(record.get("durationMs"))
        moved = record.get("moved")
        error = record.get("error")
        key = record.get("key")
        return cls(
            started_ms=parse_iso_ms(started_at),
            started_at=started_at,
            trigger=_text(record.get("trigger")) or "unknown",
            status=_text(record.get("status")) or "unknown",
            dry_run=record.get("dryRun") is True,
            attempts=_number(record.get("attempts")) or 0,
            http_status=_number(record.get("httpStatus")),
            exchange_code=_number(record.get("exchangeCode")),
            latency_ms=sum(latencies) if latencies else duration,
            duration_ms=duration,
            window_used=_number(record.get("windowUsed")),
            window_limit=_number(record.get("windowLimit")),
            next_slot_at=_text(record.get("nextSlotAt")),
            blocked_until=_text(record.get("blockedUntil")),
            moved={str(k): str(v) for k, v in moved.items()} if isinstance(moved, Mapping) else None,
            note=_text(record.get("note")),
            error=dict(error) if isinstance(error, Mapping) else None,
            invocation_id=_text(record.get("invocationId")) or "",
            reservations=tuple(n for n in record.get("reservations") or [] if isinstance(n, int)),
            key=KeyView.from_record(key) if isinstance(key, Mapping) else None,
        )


@dataclass(frozen=True)
class WindowView:
    used: int
    limit: int
    #: Where the limit came from: "window" (the last reservation's), "outcome", "option", "environment", "default".
    limit_source: str
    next_slot_ms: int
    reservations: int
    last_reservation_ms: int | None


@dataclass(frozen=True)
class BackOff:
    until_ms: int  # 0: never blocked
    reason: str
    active: bool


@dataclass(frozen=True)
class CrashTrace:
    """A reservation no outcome record claims."""

    reservation: int
    reserved_ms: int  # derived from the expiry, so approximate (expiries never decrease along the sequence)
    expiry_ms: int
    #: Younger than the longest invocation: the process holding it may still be running.
    possibly_running: bool


@dataclass(frozen=True)
class AccountStatus:
    account: str
    window: WindowView
    back_off: BackOff
    last_outcomes: list[OutcomeLine]
    failures: list[OutcomeLine]  # in the last day, newest first
    crash_traces: list[CrashTrace]  # oldest first
    #: The key as the newest outcome that checked it saw it; None when none did.
    key: KeyView | None = None
    #: When the report was made (the key's days left are counted from it).
    now_ms: int = 0

    @property
    def alerts(self) -> list[str]:
        alerts = []
        days = self.key.days_left(self.now_ms) if self.key is not None else None
        if self.key is not None and days is not None and days <= EXPIRY_WARNING_DAYS:
            alerts.append(f"the API key's {self.key.trading_permission(self.now_ms)}")
        if self.failures:
            alerts.append(f"{len(self.failures)} failure(s) in the last day")
        if self.back_off.active:
            alerts.append(f"back-off until {iso(self.back_off.until_ms)}")
        crashed = [trace for trace in self.crash_traces if not trace.possibly_running]
        if crashed:
            alerts.append(f"{len(crashed)} reservation(s) with no outcome recorded")
        return alerts


@dataclass(frozen=True)
class StatusReport:
    table: str
    now_ms: int
    accounts: list[AccountStatus]

    @property
    def alert(self) -> bool:
        return any(account.alerts for account in self.accounts)


@dataclass(frozen=True)
class Limits:
    """What the view needs from the configuration when the table does not say (the function's defaults)."""

    fallback_limit: int = EXCHANGE_HOURLY_LIMIT
    fallback_source: str = "default"
    recv_window_ms: int = Settings.recv_window_ms


def _started_from_key(sort_key: str) -> str:
    """The start time in an outcome's sort key, "OUTCOME#<startedAt>#<invocation id>"."""
    parts = sort_key.split("#")
    return parts[1] if len(parts) > 1 else ""


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None

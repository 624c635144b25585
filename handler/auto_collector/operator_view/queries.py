"""Reading the table: the status of each account, from one GetItem and two Queries per account.

Each label's window is the one the registry names for it: its exchange account's (identity.py), shared by every
label whose key belongs to that account (a renamed label, say), so reservations are matched against the outcomes
of all of them. A registry entry from before identities names no window: the label's own is shown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ConfigurationError
from ..store import CollectorTable
from ..times import iso
from ..window import FUTURE_TOLERANCE_MS, HOUR_MS, RING_SIZE, WindowPolicy, WindowState
from .model import (
    DAY_MS,
    DEFAULT_ACCOUNT,
    MAX_INVOCATION_MS,
    AccountStatus,
    BackOff,
    CrashTrace,
    Limits,
    OutcomeLine,
    StatusReport,
    WindowView,
)


def build_report(
    store: CollectorTable, table: str, *, accounts: Sequence[str], last: int, limits: Limits, now_ms: int
) -> StatusReport:
    """The status of `accounts`, or of every account in the table when none are named."""
    registry = store.windows()
    if accounts:
        views = [
            account_status(store, label, last, limits, now_ms, must_exist=True, table=table, registry=registry)
            for label in dict.fromkeys(accounts)  # named twice, shown once
        ]
    else:
        labels = list(registry)
        if DEFAULT_ACCOUNT not in labels and store.outcomes(DEFAULT_ACCOUNT, limit=1):
            labels = sorted([*labels, DEFAULT_ACCOUNT])
        views = [account_status(store, label, last, limits, now_ms, registry=registry) for label in labels]
    return StatusReport(table, now_ms, views)


def account_status(
    store: CollectorTable,
    account: str,
    last: int,
    limits: Limits,
    now_ms: int,
    *,
    must_exist: bool = False,
    table: str = "",
    registry: Mapping[str, str] | None = None,
) -> AccountStatus:
    registry = store.windows() if registry is None else registry
    window_key = registry.get(account, account)
    state, item = store.read_item(window_key)
    newest = [OutcomeLine.from_record(r) for r in store.outcomes(account, limit=max(last, 1))]
    if must_exist and not item and not newest:
        raise ConfigurationError(
            f"account {account!r} has no window and no outcome records in table {table!r} "
            f"(accounts in its registry: {', '.join(registry) or 'none'})"
        )
    # Outcomes are keyed by their start: one that started up to an invocation's length before the day began
    # may hold a reservation made within it. Every label spending from this window may hold one.
    since = iso(now_ms - DAY_MS - MAX_INVOCATION_MS)
    recent = [OutcomeLine.from_record(r) for r in store.outcomes(account, since_iso=since)]
    sharing = [label for label, key in registry.items() if key == window_key and label != account]
    window_outcomes = recent + [OutcomeLine.from_record(r) for label in sharing for r in store.outcomes(label, since)]
    limit, source = _limit(item, newest, limits)
    policy = WindowPolicy(limit, limits.recv_window_ms)
    window = WindowView(
        used=policy.used(state, now_ms),
        limit=limit,
        limit_source=source,
        next_slot_ms=policy.next_free_ms(state, now_ms),
        reservations=state.sequence,
        last_reservation_ms=state.last_timestamp_ms or None,
    )
    back_off = BackOff(state.blocked_until_ms, state.blocked_reason, state.blocked_until_ms > now_ms)
    failures = [o for o in recent if o.status == "failed" and o.started_ms >= now_ms - DAY_MS]
    return AccountStatus(
        account,
        window,
        back_off,
        newest[:last],
        failures,
        crash_traces(state, window_outcomes, limits.recv_window_ms, now_ms),
        key=next((outcome.key for outcome in newest if outcome.key is not None), None),
        now_ms=now_ms,
    )


def crash_traces(
    state: WindowState, outcomes: Sequence[OutcomeLine], recv_window_ms: int, now_ms: int
) -> list[CrashTrace]:
    """Reservations of the last day, still in the ring, that no outcome record lists."""
    claimed = {n for outcome in outcomes for n in outcome.reservations}
    traces = []
    for n in range(max(0, state.sequence - RING_SIZE), state.sequence):
        expiry = state.expiry_of(n)
        if not expiry or n in claimed:
            continue
        reserved = expiry - HOUR_MS - recv_window_ms - FUTURE_TOLERANCE_MS
        if reserved >= now_ms - DAY_MS:
            traces.append(CrashTrace(n, reserved, expiry, possibly_running=reserved > now_ms - MAX_INVOCATION_MS))
    return traces


def _limit(item: Mapping[str, Any], newest: Sequence[OutcomeLine], limits: Limits) -> tuple[int, str]:
    """The limit in force: a configured one (--limit, the stack's MaxCallsPerHour, MAX_CALLS_PER_HOUR) over the
    one the window recorded at its last reservation, which may predate a lowered configuration."""
    if limits.fallback_source in ("option", "stack", "environment"):
        return limits.fallback_limit, limits.fallback_source
    stored = item.get("windowLimit")
    if isinstance(stored, int) and 1 <= stored <= RING_SIZE:
        return stored, "window"
    for outcome in newest:
        if outcome.window_limit is not None and 1 <= outcome.window_limit <= RING_SIZE:
            return outcome.window_limit, "outcome"
    return limits.fallback_limit, limits.fallback_source

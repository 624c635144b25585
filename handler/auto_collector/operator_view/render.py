"""Showing a status report: as text for a person, or as JSON with stable keys for scripts."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..times import iso, iso_seconds, parse_iso_ms
from .model import AccountStatus, KeyView, OutcomeLine, StatusReport

_DETAIL_WIDTH = 90
_SOURCES = {
    "window": "the window item",
    "outcome": "the newest outcome",
    "option": "--limit",
    "environment": "MAX_CALLS_PER_HOUR",
    "stack": "the stack's MaxCallsPerHour",
    "default": "the exchange's ceiling",
}


# --- as JSON -----------------------------------------------------------------------------------------


def render_json(report: StatusReport) -> str:
    document = {
        "table": report.table,
        "generatedAt": iso(report.now_ms),
        "alert": report.alert,
        "accounts": [_account_json(account) for account in report.accounts],
    }
    return json.dumps(document, indent=2)


def _account_json(account: AccountStatus) -> dict[str, Any]:
    window, back_off = account.window, account.back_off
    return {
        "account": account.account,
        "window": {
            "used": window.used,
            "limit": window.limit,
            "limitSource": window.limit_source,
            "free": max(0, window.limit - window.used),
            "nextSlotAt": iso(window.next_slot_ms),
            "reservations": window.reservations,
            "lastReservationAt": iso(window.last_reservation_ms) if window.last_reservation_ms else None,
        },
        "backOff": {
            "active": back_off.active,
            "until": iso(back_off.until_ms) if back_off.until_ms else None,
            "reason": back_off.reason or None,
        },
        "lastOutcomes": [_outcome_json(outcome) for outcome in account.last_outcomes],
        "failuresLastDay": {
            "count": len(account.failures),
            "outcomes": [_outcome_json(outcome) for outcome in account.failures],
        },
        "crashTraces": [
            {
                "reservation": trace.reservation,
                "reservedAt": iso(trace.reserved_ms),
                "expiresAt": iso(trace.expiry_ms),
                "possiblyRunning": trace.possibly_running,
            }
            for trace in account.crash_traces
        ],
        "key": _key_json(account.key, account.now_ms),
        "alerts": account.alerts,
    }


def _key_json(key: KeyView | None, now: int) -> dict[str, Any] | None:
    if key is None:
        return None
    return {
        "ipRestricted": key.ip_restricted,
        "tradingPermission": key.trading_permission(now),
        "tradingPermissionExpiresAt": iso(key.expires_ms) if key.expires_ms is not None else None,
        "tradingPermissionDaysLeft": key.days_left(now),
        "warnings": list(key.warnings),
        "checkedAt": key.checked_at,
    }


def _outcome_json(outcome: OutcomeLine) -> dict[str, Any]:
    return {
        "startedAt": outcome.started_at,
        "trigger": outcome.trigger,
        "status": outcome.status,
        "dryRun": outcome.dry_run,
        "attempts": outcome.attempts,
        "httpStatus": outcome.http_status,
        "exchangeCode": outcome.exchange_code,
        "latencyMs": outcome.latency_ms,
        "durationMs": outcome.duration_ms,
        "windowUsed": outcome.window_used,
        "windowLimit": outcome.window_limit,
        "nextSlotAt": outcome.next_slot_at,
        "blockedUntil": outcome.blocked_until,
        "moved": outcome.moved,
        "note": outcome.note,
        "error": outcome.error,
        "invocationId": outcome.invocation_id,
        "reservations": list(outcome.reservations),
    }


# --- as text -----------------------------------------------------------------------------------------


def render_text(report: StatusReport) -> str:
    now = report.now_ms
    lines = [f"table {report.table!r} at {iso_seconds(now)}"]
    if not report.accounts:
        lines.append("no accounts yet: nothing has reserved a window slot in this table (name one with --account)")
    for account in report.accounts:
        lines += ["", *_account_text(account, now)]
    lines.append("")
    alerts = [f"{account.account}: {'; '.join(account.alerts)}" for account in report.accounts if account.alerts]
    if alerts:
        lines += [f"ALERT {alert}" for alert in alerts]
    else:
        lines.append("OK: no failures in the last day, no active back-off, no crash traces")
    return "\n".join(lines) + "\n"


def _account_text(account: AccountStatus, now: int) -> list[str]:
    window = account.window
    if window.next_slot_ms <= now:
        next_slot = f"next slot free now ({max(0, window.limit - window.used)} left)"
    else:
        next_slot = f"next slot {when(window.next_slot_ms, now)}"
    lines = [
        f"account {account.account}",
        f"  window    {window.used}/{window.limit} calls in the rolling hour "
        f"(limit from {_SOURCES[window.limit_source]}); {next_slot}",
    ]
    if window.last_reservation_ms:
        last = when(window.last_reservation_ms, now)
        lines.append(f"            {window.reservations} reservation(s) so far, the last {last}")
    back_off = account.back_off
    if back_off.active:
        lines.append(f"  back-off  ACTIVE until {when(back_off.until_ms, now)}: {back_off.reason}")
    elif back_off.until_ms:
        lines.append(f"  back-off  none (the last one ended {when(back_off.until_ms, now)})")
    else:
        lines.append("  back-off  none")
    lines.append(f"  key       {_key_text(account.key, now)}")
    lines.append(f"  failures  {len(account.failures)} in the last day")
    running = sum(1 for trace in account.crash_traces if trace.possibly_running)
    crashed = len(account.crash_traces) - running
    crashes = f"{crashed} reservation(s) with no outcome recorded" if crashed else "none"
    if running:
        crashes += f" ({running} more may still be running)"
    lines.append(f"  crashes   {crashes}")

    lines += ["", f"  last {len(account.last_outcomes)} outcome(s), newest first:"]
    rows = [["started", "trigger", "status", "result", "latency", "detail"]]
    rows += [
        [
            when(o.started_ms, now),
            o.trigger,
            o.status,
            _result(o),
            f"{o.latency_ms} ms" if o.latency_ms is not None else "-",
            _clip(_detail(o, now)),
        ]
        for o in account.last_outcomes
    ]
    lines += _table(rows, indent="    ") if account.last_outcomes else ["    none recorded"]

    if account.failures:
        lines += ["", "  failures in the last day:"]
        lines += _table(
            [[when(o.started_ms, now), o.trigger, _result(o), _error_text(o.error or {})] for o in account.failures],
            indent="    ",
        )
    if account.crash_traces:
        lines += ["", "  crash traces:"]
        for trace in account.crash_traces:
            tail = "no outcome recorded yet (may still be running)" if trace.possibly_running else "no outcome recorded"
            lines.append(f"    reservation #{trace.reservation} reserved at {when(trace.reserved_ms, now)}, {tail}")
    return lines


def _key_text(key: KeyView | None, now: int) -> str:
    if key is None:
        return "not checked yet (no outcome records the key's restrictions)"
    if key.ip_restricted is False:
        parts = ["NOT IP-restricted (flagged: whitelist a fixed egress IP, see EgressMode)"]
    else:
        parts = ["IP-restricted" if key.ip_restricted else "IP restriction unknown"]
    parts.append(key.trading_permission(now) or "trading permission does not expire")
    if key.checked_at:
        parts.append(f"checked {key.checked_at}")
    return "; ".join(parts)


def _result(outcome: OutcomeLine) -> str:
    if outcome.http_status is None:
        return "-"
    text = f"HTTP {outcome.http_status}" if outcome.http_status else "no response"
    return text if outcome.exchange_code is None else f"{text} code {outcome.exchange_code}"


def _detail(outcome: OutcomeLine, now: int) -> str:
    parts = []
    if outcome.moved:
        parts.append("moved " + ", ".join(f"{asset} {amount}" for asset, amount in sorted(outcome.moved.items())))
    elif outcome.moved is not None:
        parts.append("moved nothing")
    if outcome.error:
        parts.append(_error_text(outcome.error))
    elif outcome.status == "budget_exhausted" and outcome.next_slot_at:
        parts.append(f"next slot {when(parse_iso_ms(outcome.next_slot_at), now)}")
    elif outcome.status == "backing_off" and outcome.blocked_until:
        parts.append(f"blocked until {when(parse_iso_ms(outcome.blocked_until), now)}")
    if outcome.note and not outcome.error:
        parts.append(outcome.note)
    return " ".join("; ".join(parts).split())


def _error_text(error: Mapping[str, Any]) -> str:
    return " ".join(f"{error.get('type', 'error')}: {error.get('message', '')}".split())


def _clip(text: str) -> str:
    return text if len(text) <= _DETAIL_WIDTH else text[: _DETAIL_WIDTH - 3] + "..."


def _table(rows: list[list[str]], indent: str) -> list[str]:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return [
        indent + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


# --- times for a person ------------------------------------------------------------------------------


def relative(then_ms: int, now_ms: int) -> str:
    """'in 12 min', '3 min ago', 'now'."""
    delta = then_ms - now_ms
    seconds = abs(delta) / 1000
    if seconds < 1:
        return "now"
    if seconds < 90:
        text = f"{int(seconds)} s"
    elif seconds < 90 * 60:
        text = f"{round(seconds / 60)} min"
    elif seconds < 48 * 3600:
        hours, minutes = divmod(round(seconds / 60), 60)
        text = f"{hours} h {minutes} min" if minutes else f"{hours} h"
    else:
        text = f"{round(seconds / 86400)} d"
    return f"in {text}" if delta > 0 else f"{text} ago"


def when(then_ms: int, now_ms: int) -> str:
    return f"{iso_seconds(then_ms)} ({relative(then_ms, now_ms)})"

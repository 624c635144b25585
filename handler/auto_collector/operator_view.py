"""The operator's view: `python -m auto_collector status` shows what the collector did, read from its table.

Per account: the calls counting against the rolling hour and when the next slot frees, any back-off the
exchange imposed (429/418), the last outcomes, the failures of the last day, and crash traces - window
reservations that no outcome record claims, left by a process killed between reserving a slot and
recording what it did. Read-only: one GetItem and two Queries per account, plus one for the registry.

Exit codes (for cron and scripts): 0 all well; 1 an account has failures in the last day, an active
back-off or a crash trace; 2 a usage, configuration or access problem (nothing shown).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from .config import EXCHANGE_HOURLY_LIMIT
from .errors import CollectorError, ConfigurationError
from .store import WindowStore
from .window import FUTURE_TOLERANCE_MS, HOUR_MS, RING_SIZE, WindowPolicy, WindowState

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

DAY_MS = 24 * HOUR_MS
#: Lambda's longest run: a reservation younger than this without an outcome may belong to a running invocation.
MAX_INVOCATION_MS = 15 * 60_000
DEFAULT_LAST = 10
#: The label of a single-account deployment, shown even before it ever reserved a slot (a secret that
#: never worked leaves failed outcomes but no registry entry).
DEFAULT_ACCOUNT = "default"
_DETAIL_WIDTH = 90


# --- the model ---------------------------------------------------------------------------------------


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

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> OutcomeLine:
        started_at = _text(record.get("startedAt")) or _started_from_key(str(record.get("sk", "")))
        attempt_log = [a for a in record.get("attemptLog") or [] if isinstance(a, Mapping)]
        latencies = [a["latencyMs"] for a in attempt_log if isinstance(a.get("latencyMs"), int)]
        duration = _number(record.get("durationMs"))
        moved = record.get("moved")
        error = record.get("error")
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
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "startedAt": self.started_at,
            "trigger": self.trigger,
            "status": self.status,
            "dryRun": self.dry_run,
            "attempts": self.attempts,
            "httpStatus": self.http_status,
            "exchangeCode": self.exchange_code,
            "latencyMs": self.latency_ms,
            "durationMs": self.duration_ms,
            "windowUsed": self.window_used,
            "windowLimit": self.window_limit,
            "nextSlotAt": self.next_slot_at,
            "blockedUntil": self.blocked_until,
            "moved": self.moved,
            "note": self.note,
            "error": self.error,
            "invocationId": self.invocation_id,
            "reservations": list(self.reservations),
        }


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

    @property
    def alerts(self) -> list[str]:
        alerts = []
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

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "generatedAt": iso(self.now_ms),
            "alert": self.alert,
            "accounts": [_account_json(account) for account in self.accounts],
        }


@dataclass(frozen=True)
class Limits:
    """What the view needs from the configuration when the table does not say."""

    fallback_limit: int = EXCHANGE_HOURLY_LIMIT
    fallback_source: str = "default"
    recv_window_ms: int = 5_000


# --- reading the table -------------------------------------------------------------------------------


def build_report(
    store: WindowStore, table: str, *, accounts: Sequence[str], last: int, limits: Limits, now_ms: int
) -> StatusReport:
    """The status of `accounts`, or of every account in the table when none are named."""
    if accounts:
        views = [
            account_status(store, label, last, limits, now_ms, must_exist=True, table=table)
            for label in dict.fromkeys(accounts)  # named twice, shown once
        ]
    else:
        labels = store.accounts()
        if DEFAULT_ACCOUNT not in labels and store.outcomes(DEFAULT_ACCOUNT, limit=1):
            labels = sorted([*labels, DEFAULT_ACCOUNT])
        views = [account_status(store, label, last, limits, now_ms) for label in labels]
    return StatusReport(table, now_ms, views)


def account_status(
    store: WindowStore,
    account: str,
    last: int,
    limits: Limits,
    now_ms: int,
    *,
    must_exist: bool = False,
    table: str = "",
) -> AccountStatus:
    state, item = store.read_item(account)
    newest = [OutcomeLine.from_record(r) for r in store.outcomes(account, limit=max(last, 1))]
    if must_exist and not item and not newest:
        raise ConfigurationError(
            f"account {account!r} has no window and no outcome records in table {table!r} "
            f"(accounts in its registry: {', '.join(store.accounts()) or 'none'})"
        )
    # Outcomes are keyed by their start: one that started up to an invocation's length before the day began
    # may hold a reservation made within it.
    recent = [
        OutcomeLine.from_record(r) for r in store.outcomes(account, since_iso=iso(now_ms - DAY_MS - MAX_INVOCATION_MS))
    ]
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
        account, window, back_off, newest[:last], failures, crash_traces(state, recent, limits.recv_window_ms, now_ms)
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
    stored = item.get("windowLimit")
    if isinstance(stored, int) and 1 <= stored <= RING_SIZE:
        return stored, "window"
    for outcome in newest:
        if outcome.window_limit is not None and 1 <= outcome.window_limit <= RING_SIZE:
            return outcome.window_limit, "outcome"
    return limits.fallback_limit, limits.fallback_source


# --- showing it --------------------------------------------------------------------------------------


def render_json(report: StatusReport) -> str:
    return json.dumps(report.to_json(), indent=2)


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


_SOURCES = {
    "window": "the window item",
    "outcome": "the newest outcome",
    "option": "--limit",
    "environment": "MAX_CALLS_PER_HOUR",
    "default": "the exchange's ceiling",
}


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
        "lastOutcomes": [outcome.to_json() for outcome in account.last_outcomes],
        "failuresLastDay": {
            "count": len(account.failures),
            "outcomes": [outcome.to_json() for outcome in account.failures],
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
        "alerts": account.alerts,
    }


# --- times -------------------------------------------------------------------------------------------


def iso(epoch_ms: int) -> str:
    """ISO 8601 UTC with milliseconds, as the outcome records write it."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def iso_seconds(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso_ms(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return 0
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


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


# --- the command -------------------------------------------------------------------------------------


def status(
    table: str,
    *,
    accounts: Sequence[str] = (),
    last: int = DEFAULT_LAST,
    limits: Limits | None = None,
    as_json: bool = False,
    client: DynamoDBClient | None = None,
    clock_ms: Callable[[], int] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Print the status of `table`'s accounts; the exit code (0 fine, 1 alert, 2 could not read the table)."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        client = client or _dynamodb_client()
        now_ms = clock_ms() if clock_ms else time.time_ns() // 1_000_000
        report = build_report(
            WindowStore(client, table), table, accounts=accounts, last=last, limits=limits or Limits(), now_ms=now_ms
        )
    except CollectorError as error:
        print(f"error: {explain(error, table, client)}", file=err)
        return 2
    out.write(render_json(report) + "\n" if as_json else render_text(report))
    return 1 if report.alert else 0


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """`python -m auto_collector [status] [options]`; returns the exit code (see the module docstring)."""
    env = os.environ if environ is None else environ
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or (arguments[0].startswith("-") and arguments[0] not in ("-h", "--help")):
        arguments.insert(0, "status")
    try:
        args = _parser().parse_args(arguments)
    except SystemExit as stop:  # argparse has printed the usage error (2) or the help (0)
        return stop.code if isinstance(stop.code, int) else 2
    try:
        table = (args.table or env.get("TABLE_NAME", "")).strip()
        if not table:
            raise ConfigurationError("no table given: pass --table NAME or set TABLE_NAME (the stack's table name)")
        limits = _limits(args.limit, env)
    except ConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return status(table, accounts=args.account or (), last=args.last, limits=limits, as_json=args.json)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m auto_collector",
        description="The operator's view of the Fund Auto-collection function, read from its DynamoDB table.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser(
        "status",
        help="window usage, back-off, last outcomes, failures and crash traces per account (the default)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show.add_argument("--table", help="the collector's DynamoDB table (default: $TABLE_NAME)")
    show.add_argument(
        "--account",
        action="append",
        metavar="LABEL",
        help="an account label; repeat for several (default: every account in the table's registry)",
    )
    show.add_argument(
        "--last",
        type=_bounded(0, 1000),
        default=DEFAULT_LAST,
        metavar="N",
        help=f"how many recent outcomes to show per account (default {DEFAULT_LAST})",
    )
    show.add_argument(
        "--limit",
        type=_bounded(1, EXCHANGE_HOURLY_LIMIT),
        metavar="CALLS",
        help="calls per hour to assume when the table records none (default: $MAX_CALLS_PER_HOUR, else 500)",
    )
    show.add_argument("--json", action="store_true", help="machine-readable output with stable keys")
    return parser


def _bounded(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {raw!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


def _limits(option: int | None, env: Mapping[str, str]) -> Limits:
    recv_window = _env_integer(env, "RECV_WINDOW_MS", 1, 60_000)
    limits = Limits(recv_window_ms=recv_window or Limits.recv_window_ms)
    if option is not None:
        return Limits(option, "option", limits.recv_window_ms)
    configured = _env_integer(env, "MAX_CALLS_PER_HOUR", 1, EXCHANGE_HOURLY_LIMIT)
    if configured is not None:
        return Limits(configured, "environment", limits.recv_window_ms)
    return limits


def _env_integer(env: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ConfigurationError(f"{name} must be a whole number between {low} and {high}, got {raw!r}")
    return int(raw)


def _dynamodb_client() -> DynamoDBClient:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    from .errors import WindowStoreError

    config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=10)
    try:
        # A session of its own: the environment (AWS_PROFILE, AWS_ENDPOINT_URL...) is read now, not cached
        # from an earlier client in the same process.
        return boto3.session.Session().client("dynamodb", config=config)
    except BotoCoreError as error:
        raise WindowStoreError(f"could not create a DynamoDB client: {error}") from error


def explain(error: CollectorError, table: str, client: DynamoDBClient | None) -> str:
    """One line naming what is wrong with reaching the table (the store's errors keep the AWS error as cause)."""
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
        ProfileNotFound,
    )

    cause = error.__cause__
    where = ""
    if client is not None:
        where = f" (region {client.meta.region_name}, endpoint {client.meta.endpoint_url})"
    if isinstance(cause, NoCredentialsError | PartialCredentialsError):
        return (
            "no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(after `aws sso login` for SSO profiles)"
        )
    if isinstance(cause, NoRegionError):
        return "no AWS region configured: set AWS_REGION (or a region in your AWS profile)"
    if isinstance(cause, ProfileNotFound):
        return f"{cause} (check AWS_PROFILE)"
    if isinstance(cause, EndpointConnectionError):
        return f"cannot reach DynamoDB{where}: {cause}"
    if isinstance(cause, ClientError):
        details = cause.response.get("Error", {})
        code, message = details.get("Code", "?"), details.get("Message", "")
        if code == "ResourceNotFoundException":
            return f"table {table!r} not found{where}: check --table / TABLE_NAME, the region and the account"
        return f"AWS refused to read table {table!r}{where}: {code}: {message}"
    return " ".join(str(error).split())


def _started_from_key(sort_key: str) -> str:
    """The start time in an outcome's sort key, "OUTCOME#<startedAt>#<invocation id>"."""
    parts = sort_key.split("#")
    return parts[1] if len(parts) > 1 else ""


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None

"""The table's layout and its value codec: where each item lives, what an outcome record holds, and how values
travel to and from DynamoDB.

Keys: `pk` = "ACCOUNT#<label>"; the account's window is `sk` = "WINDOW", each outcome `sk` =
"OUTCOME#<ISO time>#<invocation id>" and expires by TTL (`expiresAt`, epoch seconds). The registry of accounts is
`pk` = "REGISTRY", `sk` = "ACCOUNT#<label>", with `windowKey`: the window the label spends (identity.py), which
is its exchange account's, `pk` = "ACCOUNT#uid:<uid>". Values go through boto3's TypeSerializer /
TypeDeserializer: numbers are Decimals both ways, so none loses precision; `plain` turns a read record into the
ints, floats and strings its readers (the operator's view, the local runner, the tests) work with.

Only boto3 is imported here (no Powertools), so the operator's command can use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from .times import iso

if TYPE_CHECKING:
    from .exchange import FuturesBalance
    from .outcome import AttemptRecord, Outcome

ACCOUNT_PREFIX = "ACCOUNT#"
OUTCOME_PREFIX = "OUTCOME#"
WINDOW_SORT_KEY = "WINDOW"
REGISTRY_KEY = "REGISTRY"

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def account_key(account: str) -> str:
    return ACCOUNT_PREFIX + account


def account_of(key: str) -> str:
    """The label in an `account_key`."""
    return key.removeprefix(ACCOUNT_PREFIX)


def outcome_record(outcome: Outcome, retention_days: int) -> dict[str, Any]:
    """The stored record of `outcome` (plain values), kept `retention_days` after the invocation finished."""
    started = iso(outcome.started_ms)
    return {
        "pk": account_key(outcome.account),
        "sk": f"{OUTCOME_PREFIX}{started}#{outcome.invocation_id}",
        "expiresAt": outcome.finished_ms // 1000 + retention_days * 86_400,
        **outcome.summary(),
        "invocationId": outcome.invocation_id,
        "windowKey": outcome.window_key or None,
        "eventId": outcome.invocation.event_id_for(outcome.account),
        "scheduledTime": outcome.invocation.scheduled_time,
        "startedAt": started,
        "finishedAt": iso(outcome.finished_ms),
        "durationMs": outcome.finished_ms - outcome.started_ms,
        "attemptLog": [_attempt_record(attempt) for attempt in outcome.attempts],
        "reservations": sorted([attempt.sequence for attempt in outcome.attempts] + outcome.unsent_reservations),
        "unsentReservations": outcome.unsent_reservations,
        "clockOffsetMs": outcome.clock_offset_ms,
        "balancesBefore": _balances_record(outcome.balances_before),
        "balancesAfter": _balances_record(outcome.balances_after),
        "moved": outcome.moved(),
    }


def _attempt_record(attempt: AttemptRecord) -> dict[str, Any]:
    result = attempt.result
    return {
        "reservation": attempt.sequence,
        "timestampMs": attempt.timestamp_ms,
        "verdict": result.verdict,
        "httpStatus": result.http_status,
        "code": result.code,
        "message": result.message,
        "latencyMs": result.latency_ms,
        "usedWeight1m": result.used_weight_1m,
        "retryAfterSeconds": result.retry_after_s,
    }


def _balances_record(balances: dict[str, FuturesBalance] | None) -> dict[str, dict[str, str]] | None:
    if balances is None:
        return None
    return {
        asset: {"um": str(balance.um), "cm": str(balance.cm)}
        for asset, balance in sorted(balances.items())
        if balance.um or balance.cm
    }


def to_item(record: Mapping[str, Any]) -> dict[str, Any]:
    """DynamoDB attribute values of a record (ints and Decimals as numbers; a float is refused by boto3)."""
    return {name: _serializer.serialize(value) for name, value in record.items()}


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """The record in a DynamoDB item, its numbers as Decimals."""
    return {name: _deserializer.deserialize(value) for name, value in item.items()}


def plain(value: Any) -> Any:
    """`value` with every Decimal made an int when it is whole as written, else a float (what readers expect)."""
    if isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        return int(value) if isinstance(exponent, int) and exponent >= 0 else float(value)
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def plain_record(item: Mapping[str, Any]) -> dict[str, Any]:
    """The record in a DynamoDB item, as plain Python values."""
    return {name: plain(value) for name, value in from_item(item).items()}

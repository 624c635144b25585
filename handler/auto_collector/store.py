"""DynamoDB access: the rolling-window item and the outcome records, in one table.

Keys: `pk` = "ACCOUNT#<label>"; the window is `sk` = "WINDOW", each outcome `sk` =
"OUTCOME#<ISO time>#<invocation id>" and expires by TTL (`expiresAt`, epoch seconds).

A reservation is ONE conditional UpdateItem against the state this process last saw. When another
writer got there first, the failed call returns the current item (ReturnValuesOnConditionCheckFailure),
so the retry needs no extra read. Warm invocations usually win on the first call: with the outcome
write, two DynamoDB requests per invocation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from .errors import DeadlineError, WindowStoreError
from .window import RING_SIZE, Grant, Refusal, WindowPolicy, WindowState

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

WINDOW_SORT_KEY = "WINDOW"
#: Give up reserving when fewer than this many ms remain (the outcome must still be written).
_MIN_MS_TO_RESERVE = 1_500


def account_key(account: str) -> str:
    return f"ACCOUNT#{account}"


def _slot_attribute(slot: int) -> str:
    return f"e{slot:03d}"


class WindowStore:
    """Reserves window slots and reads window state for any number of accounts in one table."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name
        # Last state seen per account: lets a warm invocation reserve with a single request.
        self._known: dict[str, WindowState] = {}

    def reserve(
        self,
        account: str,
        policy: WindowPolicy,
        now_ms: Callable[[], int],
        remaining_ms: Callable[[], int],
    ) -> tuple[Grant | Refusal, WindowState]:
        """Reserve the next slot, or say when one frees. Returns the decision and the state it was made on."""
        state = self._known.get(account, WindowState())
        while True:
            decision = policy.decide(state, now_ms())
            if isinstance(decision, Refusal):
                # Safe even on a stale state: newer reservations only move expiries later.
                return decision, state
            if remaining_ms() < _MIN_MS_TO_RESERVE:
                raise DeadlineError("not enough time left to reserve a window slot")
            current = self._try_write(account, state, decision)
            if current is None:
                self._known[account] = decision.state_after
                return decision, state
            if current.sequence < state.sequence:
                # The item was reset (deleted or restored from a backup): start again from what is stored.
                self._known.pop(account, None)
            state = current

    def read(self, account: str) -> WindowState:
        try:
            response = self._client.get_item(
                TableName=self._table,
                Key=self._key(account),
                ConsistentRead=True,
            )
        except (ClientError, BotoCoreError) as error:
            raise WindowStoreError(f"could not read the window from table {self._table!r}: {error}") from error
        state = _state_from_item(response.get("Item"))
        self._known[account] = state
        return state

    def put_outcome(self, item: Mapping[str, Any]) -> None:
        try:
            self._client.put_item(TableName=self._table, Item=_to_attribute_map(item))
        except (ClientError, BotoCoreError) as error:
            raise WindowStoreError(f"could not write the outcome to table {self._table!r}: {error}") from error

    def _try_write(self, account: str, state: WindowState, grant: Grant) -> WindowState | None:
        """Apply `grant` if the stored item is still `state`; otherwise return the stored state."""
        names = {"#seq": "seq", "#slot": _slot_attribute(grant.slot)}
        values: dict[str, Any] = {
            ":next": {"N": str(state.sequence + 1)},
            ":ts": {"N": str(grant.timestamp_ms)},
            ":expiry": {"N": str(grant.expiry_ms)},
            ":updated": {"N": str(int(time.time()))},
        }
        if state.sequence == 0:
            condition = "attribute_not_exists(#seq)"
        else:
            condition = "#seq = :seq"
            values[":seq"] = {"N": str(state.sequence)}
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key(account),
                UpdateExpression=(
                    "SET #seq = :next, lastTimestampMs = :ts, lastExpiryMs = :expiry, "
                    "#slot = :expiry, updatedAt = :updated"
                ),
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return _state_from_item(error.response.get("Item"))  # type: ignore[arg-type]
            raise WindowStoreError(f"could not reserve a window slot in table {self._table!r}: {error}") from error
        except BotoCoreError as error:
            raise WindowStoreError(f"could not reserve a window slot in table {self._table!r}: {error}") from error
        return None

    @staticmethod
    def _key(account: str) -> dict[str, Any]:
        return {"pk": {"S": account_key(account)}, "sk": {"S": WINDOW_SORT_KEY}}


def _state_from_item(item: Mapping[str, Any] | None) -> WindowState:
    if not item or "seq" not in item:
        return WindowState()
    expiries = {
        slot: int(item[_slot_attribute(slot)]["N"])
        for slot in range(RING_SIZE)
        if _slot_attribute(slot) in item
    }
    return WindowState(
        sequence=int(item["seq"]["N"]),
        expiries=expiries,
        last_timestamp_ms=int(item.get("lastTimestampMs", {"N": "0"})["N"]),
        last_expiry_ms=int(item.get("lastExpiryMs", {"N": "0"})["N"]),
    )


def _to_attribute(value: Any) -> dict[str, Any]:
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": str(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, Mapping):
        return {"M": _to_attribute_map(value)}
    if isinstance(value, list | tuple):
        return {"L": [_to_attribute(v) for v in value]}
    raise TypeError(f"cannot store {type(value).__name__} in DynamoDB")


def _to_attribute_map(item: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _to_attribute(value) for key, value in item.items()}


def from_attribute(value: Mapping[str, Any]) -> Any:
    """Plain Python value of a DynamoDB attribute (used by readers of outcome records)."""
    (kind, raw), = value.items()
    if kind == "N":
        number = float(raw)
        return int(number) if number.is_integer() and "." not in raw else number
    if kind == "M":
        return {k: from_attribute(v) for k, v in raw.items()}
    if kind == "L":
        return [from_attribute(v) for v in raw]
    if kind == "NULL":
        return None
    return raw

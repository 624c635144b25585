"""Reading the collector's table for the operator: the window item, the outcome records and the registry.

Read-only, and with boto3 as its only third-party import, so that the installed `fund-collector` command needs
nothing else: the function's own store (store.py) imports Powertools for its logging, which an operator's
machine or CloudShell need not have. The layout is the store's (see store.py's docstring); the functional test
`test_the_view_reads_what_the_store_writes` holds the two readings equal over items the store wrote.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from ..errors import WindowStoreError
from ..window import RING_SIZE, WindowState

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

WINDOW_SORT_KEY = "WINDOW"
REGISTRY_KEY = "REGISTRY"
_EVENT_PREFIX = "event:"


def account_key(account: str) -> str:
    return f"ACCOUNT#{account}"


class TableReader:
    """The reads the operator's view makes: one GetItem per window, Queries for outcomes and the registry."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def accounts(self) -> list[str]:
        """Every account that ever reserved a slot in this table."""
        return list(self.windows())

    def windows(self) -> dict[str, str]:
        """Every label in the registry, with the key of the window it spends: its exchange account's
        (`windowKey`, see identity.py), or, for an entry from before identities, the label's own window."""
        items = self._query(REGISTRY_KEY, "ACCOUNT#")
        windows: dict[str, str] = {}
        for item in items:
            label = item["sk"]["S"].removeprefix("ACCOUNT#")
            windows[label] = item.get("windowKey", {}).get("S") or label
        return windows

    def outcomes(self, account: str, since_iso: str = "", limit: int | None = None) -> list[dict[str, Any]]:
        """Outcome records of an account started at or after `since_iso` (ISO UTC, "" for all), newest first,
        as plain Python values."""
        items = self._query(
            account_key(account), "OUTCOME#", newest_first=True, limit=limit, sk_from=f"OUTCOME#{since_iso}"
        )
        return [{k: from_attribute(v) for k, v in item.items()} for item in items]

    def read_item(self, window_key: str) -> tuple[WindowState, dict[str, Any]]:
        """The window state and the stored item as plain values (the view also shows `windowLimit`)."""
        try:
            response = self._client.get_item(
                TableName=self._table,
                Key={"pk": {"S": account_key(window_key)}, "sk": {"S": WINDOW_SORT_KEY}},
                ConsistentRead=True,
            )
        except (ClientError, BotoCoreError) as error:
            raise WindowStoreError(f"could not read the window from table {self._table!r}: {error}") from error
        item = response.get("Item") or {}
        return state_from_item(item), {k: from_attribute(v) for k, v in item.items()}

    def _query(
        self, pk: str, sk_prefix: str, newest_first: bool = False, limit: int | None = None, sk_from: str = ""
    ) -> list[dict[str, Any]]:
        """Items of `pk` whose sort key starts with `sk_prefix` and, if given, is at least `sk_from`."""
        if sk_from > sk_prefix:
            # Everything starting with the prefix sorts below the prefix with its last character raised.
            upper = sk_prefix[:-1] + chr(ord(sk_prefix[-1]) + 1)
            condition = "pk = :pk AND sk BETWEEN :from AND :upper"
            values = {":pk": {"S": pk}, ":from": {"S": sk_from}, ":upper": {"S": upper}}
        else:
            condition = "pk = :pk AND begins_with(sk, :prefix)"
            values = {":pk": {"S": pk}, ":prefix": {"S": sk_prefix}}
        arguments: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": not newest_first,
        }
        items: list[dict[str, Any]] = []
        try:
            while True:
                if limit is not None:
                    arguments["Limit"] = limit - len(items)
                page = self._client.query(**arguments)
                items.extend(page["Items"])
                if "LastEvaluatedKey" not in page or (limit is not None and len(items) >= limit):
                    return items
                arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except (ClientError, BotoCoreError) as error:
            raise WindowStoreError(f"could not query table {self._table!r}: {error}") from error


def state_from_item(item: Mapping[str, Any] | None) -> WindowState:
    """The window state in a stored window item (DynamoDB attribute values)."""
    if not item:
        return WindowState()
    expiries = {slot: int(item[f"e{slot:03d}"]["N"]) for slot in range(RING_SIZE) if f"e{slot:03d}" in item}
    events = {
        name.removeprefix(_EVENT_PREFIX): (value["M"]["invocationId"]["S"], int(value["M"]["atMs"]["N"]))
        for name, value in item.items()
        if name.startswith(_EVENT_PREFIX)
    }
    return WindowState(
        sequence=int(item.get("seq", {"N": "0"})["N"]),
        expiries=expiries,
        last_timestamp_ms=int(item.get("lastTimestampMs", {"N": "0"})["N"]),
        last_expiry_ms=int(item.get("lastExpiryMs", {"N": "0"})["N"]),
        blocked_until_ms=int(item.get("blockedUntilMs", {"N": "0"})["N"]),
        blocked_reason=item.get("blockedReason", {"S": ""})["S"],
        events=events,
    )


def from_attribute(value: Mapping[str, Any]) -> Any:
    """Plain Python value of a DynamoDB attribute."""
    ((kind, raw),) = value.items()
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

"""DynamoDB access for the IP-weight window: one item, `pk` = "IPWEIGHT", `sk` = "WINDOW", in the outcome table.

Like the account window (store.py), a reservation is ONE conditional UpdateItem against the state this process
last saw; when another writer got there first, the failed call returns the current item and the decision is
made again on it. A warm invocation usually reserves with a single request.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from .errors import DeadlineError, WindowStoreError
from .ip_window import IpWeightPolicy, IpWeightState, WeightDecision, WeightGrant

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

IP_WINDOW_KEY = {"pk": {"S": "IPWEIGHT"}, "sk": {"S": "WINDOW"}}
#: Give up reserving when fewer than this many ms remain (the outcome must still be written).
MIN_MS_TO_RESERVE = 1_500


class IpWeightStore:
    """Reserves and observes IP weight for every account and invocation of one deployment (one table)."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name
        self._known = IpWeightState()
        # Accounts run on parallel threads of one invocation: one writer at a time per process keeps them from
        # losing conditional writes to each other (other processes are handled by the condition itself).
        self._lock = threading.Lock()

    @property
    def known(self) -> IpWeightState:
        return self._known

    def reserve(
        self, policy: IpWeightPolicy, weight: int, now_ms: Callable[[], int], remaining_ms: Callable[[], int]
    ) -> tuple[WeightDecision, IpWeightState]:
        """Reserve `weight` now, or say why not. Returns the decision and the state it was made on."""
        with self._lock:
            state = self._known
            while True:
                decision = policy.decide(state, now_ms(), weight)
                if not isinstance(decision, WeightGrant):
                    # Safe on a stale state: newer writes only add weight and extend blocks.
                    return decision, state
                if remaining_ms() < MIN_MS_TO_RESERVE:
                    raise DeadlineError("not enough time left to reserve IP weight")
                current = self._try_write(state, decision.state_after, policy.limit, decision.timestamp_ms)
                if current is None:
                    self._known = decision.state_after
                    return decision, state
                state = self._known = current

    def observe(self, policy: IpWeightPolicy, reported_used: int, now_ms: Callable[[], int]) -> int:
        """Record weight the exchange reports beyond what the window holds; returns the weight added (0 if none)."""
        with self._lock:
            state = self._known
            while True:
                now = now_ms()
                after = policy.observe(state, now, reported_used)
                if after is None:
                    return 0
                current = self._try_write(state, after, policy.limit, now, ignore_block=True)
                if current is None:
                    self._known = after
                    return policy.used(after, now) - policy.used(state, now)
                state = self._known = current

    def block(self, until_ms: int, reason: str) -> None:
        """No request from this deployment until `until_ms` (a 429/418). Only ever extended.

        This process stops at once, even if the write then fails (the other threads of the invocation must not call
        through the block while the table is unreachable)."""
        with self._lock:
            if self._known.blocked_until_ms < until_ms:
                self._known = replace(self._known, blocked_until_ms=until_ms, blocked_reason=reason)
        extend_block(self._client, self._table, IP_WINDOW_KEY, until_ms, reason)

    def read(self) -> IpWeightState:
        try:
            response = self._client.get_item(TableName=self._table, Key=IP_WINDOW_KEY, ConsistentRead=True)
        except (ClientError, BotoCoreError) as error:
            raise WindowStoreError(
                f"could not read the IP-weight window from table {self._table!r}: {error}"
            ) from error
        state = state_from_item(response.get("Item"))
        with self._lock:
            self._known = state
        return state

    def remember(self, state: IpWeightState) -> None:
        """The stored state, as a joint reservation (store.py) wrote or found it."""
        with self._lock:
            self._known = state

    def _try_write(
        self, state: IpWeightState, after: IpWeightState, limit: int, now_ms: int, ignore_block: bool = False
    ) -> IpWeightState | None:
        """Store `after` if the item still holds `state` (and is not blocked); otherwise return what it holds."""
        token = new_write_token()
        try:
            self._client.update_item(
                TableName=self._table,
                **conditional_update(state, after, limit, now_ms, ignore_block=ignore_block, token=token),
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                item = error.response.get("Item")
                if written_by(item, token):
                    return None  # our own write, applied before its answer was lost (botocore retried it)
                return state_from_item(item)  # type: ignore[arg-type]
            raise WindowStoreError(f"could not reserve IP weight in table {self._table!r}: {error}") from error
        except BotoCoreError as error:
            raise WindowStoreError(f"could not reserve IP weight in table {self._table!r}: {error}") from error
        return None


def extend_block(client: DynamoDBClient, table: str, key: dict[str, Any], until_ms: int, reason: str) -> None:
    """Store a 429/418 back-off on a window item, unless a later one is already there: a block only ever grows, so
    a stale view of it is always safe."""
    try:
        client.update_item(
            TableName=table,
            Key=key,
            UpdateExpression="SET blockedUntilMs = :until, blockedReason = :reason",
            ConditionExpression="attribute_not_exists(blockedUntilMs) OR blockedUntilMs < :until",
            ExpressionAttributeValues={":until": {"N": str(until_ms)}, ":reason": {"S": reason[:500]}},
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise WindowStoreError(f"could not store the back-off in table {table!r}: {error}") from error
    except BotoCoreError as error:
        raise WindowStoreError(f"could not store the back-off in table {table!r}: {error}") from error


def new_write_token() -> str:
    """Names one conditional write, stored with it: a retry of a write whose answer was lost comes back as a conflict,
    and the token says the stored item is that write's own, not another writer's (whose state may be identical)."""
    return uuid.uuid4().hex


def written_by(item: object, token: str) -> bool:
    """Whether a stored item (as a failed conditional write returns it) carries this write's token."""
    return isinstance(item, Mapping) and item.get("writeToken", {}).get("S") == token


def conditional_update(
    state: IpWeightState, after: IpWeightState, limit: int, now_ms: int, *, ignore_block: bool = False, token: str = ""
) -> dict[str, Any]:
    """The UpdateItem arguments (all but the table) storing `after` if the item still holds `state` and, unless
    `ignore_block`, is not blocked (store.py puts it in the transaction that also takes an account's slot)."""
    values: dict[str, Any] = {
        ":next": {"N": str(after.sequence)},
        ":entries": {"L": [{"L": [{"N": str(expiry)}, {"N": str(weight)}]} for expiry, weight in after.entries]},
        ":limit": {"N": str(limit)},
        ":pruned": {"N": str(after.pruned_until_ms)},
        ":token": {"S": token or new_write_token()},
    }
    condition = "attribute_not_exists(#seq)" if state.sequence == 0 else "#seq = :seq"
    if state.sequence:
        values[":seq"] = {"N": str(state.sequence)}
    if not ignore_block:
        # A block is written without a sequence number, so it is checked on its own.
        condition = f"(attribute_not_exists(blockedUntilMs) OR blockedUntilMs <= :now) AND {condition}"
        values[":now"] = {"N": str(now_ms)}
    return {
        "Key": IP_WINDOW_KEY,
        "UpdateExpression": (
            "SET #seq = :next, entries = :entries, weightLimit = :limit, prunedUntilMs = :pruned, writeToken = :token"
        ),
        "ConditionExpression": condition,
        "ExpressionAttributeNames": {"#seq": "seq"},
        "ExpressionAttributeValues": values,
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


def state_from_item(item: dict[str, Any] | None) -> IpWeightState:
    if not item:
        return IpWeightState()
    entries = tuple(
        sorted((int(pair["L"][0]["N"]), int(pair["L"][1]["N"])) for pair in item.get("entries", {"L": []})["L"])
    )
    return IpWeightState(
        sequence=int(item.get("seq", {"N": "0"})["N"]),
        entries=entries,
        blocked_until_ms=int(item.get("blockedUntilMs", {"N": "0"})["N"]),
        blocked_reason=item.get("blockedReason", {"S": ""})["S"],
        pruned_until_ms=int(item.get("prunedUntilMs", {"N": "0"})["N"]),
    )

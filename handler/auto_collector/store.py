"""DynamoDB access: the collector's table, holding each account's rolling-window item, the outcome records and the
registry of accounts (layout and value codec: records.py).

A reservation is ONE conditional UpdateItem against the state this process last saw. When another
writer got there first, the failed call returns the current item (ReturnValuesOnConditionCheckFailure),
so the retry needs no extra read. Warm invocations usually win on the first call: with the outcome
write, two DynamoDB requests per invocation.

Powertools is imported only where a warning is logged: the operator's command reads the table through this
module on machines that need not have it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from .errors import DeadlineError, WindowStoreError
from .ip_store import MIN_MS_TO_RESERVE, extend_block, new_write_token, written_by
from .ip_store import conditional_update as ip_window_update
from .ip_store import state_from_item as ip_state_from_item
from .ip_window import IpWeightPolicy, WeightDecision, WeightGrant
from .observability import SERVICE
from .records import (
    ACCOUNT_PREFIX,
    OUTCOME_PREFIX,
    REGISTRY_KEY,
    WINDOW_SORT_KEY,
    account_key,
    account_of,
    plain_record,
    to_item,
)
from .window import RING_SIZE, Decision, Duplicate, Grant, WindowPolicy, WindowState

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

    from .ports import IpWeightLedger

_EVENT_PREFIX = "event:"


@dataclass(frozen=True)
class JointReservation:
    """What `reserve_with_weight` did: `decision` is None when the account could send but the IP weight refused
    (`weight` says why); `weight` is None when the account window refused (`decision` says why)."""

    decision: Decision | None
    weight: WeightDecision | None
    state: WindowState


def decide(policy: WindowPolicy, state: WindowState, now_ms: int, event_id: str | None, invocation_id: str) -> Decision:
    """`policy.decide` on a stored state, whose event ids are kept as `event_key`s; a duplicate names the id itself."""
    decision = policy.decide(state, now_ms, None if event_id is None else event_key(event_id), invocation_id)
    if isinstance(decision, Duplicate) and event_id is not None:
        decision = replace(decision, event_id=event_id)
    return decision


def event_key(event_id: str) -> str:
    """The fixed-length form an event id takes in the window item (as `event:<key>`): whatever id arrives,
    it cannot grow the item. The outcome record keeps the id itself."""
    return hashlib.sha256(event_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _slot_attribute(slot: int) -> str:
    return f"e{slot:03d}"


class CollectorTable:
    """The collector's table: reserves window slots and reads window state for any number of accounts, writes and
    reads their outcome records, and keeps the registry of accounts."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name
        # Last state seen per account: lets a warm invocation reserve with a single request.
        self._known: dict[str, WindowState] = {}

    def reserve(  # noqa: PLR0917 - mirrors WindowPolicy.decide's inputs
        self,
        account: str,
        policy: WindowPolicy,
        now_ms: Callable[[], int],
        remaining_ms: Callable[[], int],
        event_id: str | None = None,
        invocation_id: str = "",
    ) -> tuple[Decision, WindowState]:
        """Reserve the next slot, or say why not. Returns the decision and the state it was made on."""
        state = self._known.get(account, WindowState())
        while True:
            decision = decide(policy, state, now_ms(), event_id, invocation_id)
            if not isinstance(decision, Grant):
                # Safe even on a stale state: newer writes only move expiries and blocks later
                # and only add event ids.
                return decision, state
            if remaining_ms() < MIN_MS_TO_RESERVE:
                raise DeadlineError("not enough time left to reserve a window slot")
            current = self._try_write(account, state, decision, policy.limit, now_ms())
            if current is None:
                self._known[account] = decision.state_after
                if state.sequence == 0:
                    self._register(account)
                return decision, state
            if current.sequence < state.sequence:
                # The item was reset (deleted or restored from a backup): start again from what is stored.
                self._known.pop(account, None)
            state = current

    def known(self, account: str) -> WindowState:
        """The last state this process saw (possibly stale: only ever behind the stored one)."""
        return self._known.get(account, WindowState())

    def block(self, accounts: list[str], until_ms: int, reason: str) -> None:
        """Tell every later invocation for these accounts to stay away from the exchange until `until_ms`.

        A block is only ever extended, never shortened, so a stale view of it is always safe.
        """
        for account in accounts:
            extend_block(self._client, self._table, self._key(account), until_ms, reason)
            known = self._known.get(account, WindowState())
            if known.blocked_until_ms < until_ms:
                self._known[account] = replace(known, blocked_until_ms=until_ms, blocked_reason=reason)

    def accounts(self) -> list[str]:
        """Every account that ever reserved a slot in this table (for the operator's view)."""
        items = self._query(REGISTRY_KEY, ACCOUNT_PREFIX)
        return [account_of(item["sk"]["S"]) for item in items]

    def windows(self) -> dict[str, str]:
        """Every label in the registry with the key of the window it spends: its exchange account's (`windowKey`,
        see identity.py), or, for an entry from before identities, the label's own window."""
        windows: dict[str, str] = {}
        for item in self._query(REGISTRY_KEY, ACCOUNT_PREFIX):
            label = account_of(item["sk"]["S"])
            windows[label] = item.get("windowKey", {}).get("S") or label
        return windows

    def outcomes(self, account: str, since_iso: str = "", limit: int | None = None) -> list[dict[str, Any]]:
        """Outcome records of an account started at or after `since_iso` (ISO UTC, "" for all), newest first,
        as plain Python values."""
        items = self._query(
            account_key(account), OUTCOME_PREFIX, newest_first=True, limit=limit, sk_from=OUTCOME_PREFIX + since_iso
        )
        return [plain_record(item) for item in items]

    def read_many(self, accounts: list[str]) -> dict[str, WindowState]:
        """The stored window state of each account, in as few requests as DynamoDB allows (100 keys each)."""
        states = {account: WindowState() for account in accounts}
        by_key = {account_key(account): account for account in accounts}
        pending = [self._key(account) for account in accounts]
        try:
            while pending:
                batch, pending = pending[:100], pending[100:]
                request: Any = {self._table: {"Keys": batch, "ConsistentRead": True}}
                while request:
                    response = self._client.batch_get_item(RequestItems=request)
                    for item in response.get("Responses", {}).get(self._table, []):
                        states[by_key[item["pk"]["S"]]] = _state_from_item(item)
                    request = response.get("UnprocessedKeys") or {}
        except (ClientError, BotoCoreError) as error:
            raise WindowStoreError(f"could not read the windows from table {self._table!r}: {error}") from error
        self._known.update(states)
        return states

    def read(self, account: str) -> WindowState:
        return self.read_item(account)[0]

    def read_item(self, account: str) -> tuple[WindowState, dict[str, Any]]:
        """The window state and the stored item as plain values (the operator's view also shows `windowLimit`)."""
        try:
            response = self._client.get_item(
                TableName=self._table,
                Key=self._key(account),
                ConsistentRead=True,
            )
        except (ClientError, BotoCoreError) as error:
            raise WindowStoreError(f"could not read the window from table {self._table!r}: {error}") from error
        item = response.get("Item") or {}
        state = _state_from_item(item)
        self._known[account] = state
        return state, plain_record(item)

    def put_outcome(self, record: Mapping[str, Any]) -> None:
        """Store an outcome record (records.outcome_record)."""
        try:
            self._client.put_item(TableName=self._table, Item=to_item(record))
        except (ClientError, BotoCoreError) as error:
            raise WindowStoreError(f"could not write the outcome to table {self._table!r}: {error}") from error

    def reserve_with_weight(  # noqa: PLR0917 - the account window's inputs and the IP weight's
        self,
        account: str,
        policy: WindowPolicy,
        now_ms: Callable[[], int],
        remaining_ms: Callable[[], int],
        event_id: str | None,
        invocation_id: str,
        ip: IpWeightLedger,
        ip_policy: IpWeightPolicy,
        weight: int,
    ) -> JointReservation:
        """Reserve the account's slot and the request's IP weight in ONE transaction, at one instant, or neither.

        Both windows are decided on what this process last saw; a transaction cancelled by a newer write returns
        the stored items (ReturnValuesOnConditionCheckFailure), and the decision is made again on them. So no IP
        weight is ever taken for a request the account window refuses, and no slot for one the IP weight cannot
        carry; and the request is signed with the instant both were reserved at.
        """
        state = self._known.get(account, WindowState())
        while True:
            now = now_ms()
            decision = decide(policy, state, now, event_id, invocation_id)
            if not isinstance(decision, Grant):
                return JointReservation(decision, None, state)
            ip_state = ip.known
            weight_decision = ip_policy.decide(ip_state, now, weight)
            if not isinstance(weight_decision, WeightGrant):
                return JointReservation(None, weight_decision, state)
            if remaining_ms() < MIN_MS_TO_RESERVE:
                raise DeadlineError("not enough time left to reserve a window slot")
            token = new_write_token()
            items: list[Any] = [
                {
                    "Update": {
                        "TableName": self._table,
                        **self._update(account, state, decision, policy.limit, now, token=token),
                    }
                },
                {
                    "Update": {
                        "TableName": self._table,
                        **ip_window_update(ip_state, weight_decision.state_after, ip_policy.limit, now, token=token),
                    }
                },
            ]
            try:
                self._client.transact_write_items(TransactItems=items)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                    raise WindowStoreError(
                        f"could not reserve a window slot and IP weight in table {self._table!r}: {error}"
                    ) from error
                reasons: list[Any] = error.response.get("CancellationReasons", [])
                codes = [reason.get("Code") for reason in reasons]
                if any(code not in ("None", "ConditionalCheckFailed", "TransactionConflict") for code in codes):
                    raise WindowStoreError(
                        f"could not reserve a window slot and IP weight in table {self._table!r}: {error}"
                    ) from error
                # Our own transaction, applied before its answer was lost and retried by botocore, comes back as
                # a conflict with both items carrying its token: it is ours, and must not take a second slot.
                own = codes == ["ConditionalCheckFailed"] * 2 and all(
                    written_by(reason.get("Item"), token) for reason in reasons
                )
                if not own:
                    if codes[:1] == ["ConditionalCheckFailed"]:
                        current = _state_from_item(reasons[0].get("Item"))
                        if current.sequence < state.sequence:
                            self._known.pop(account, None)  # the item was reset: start again from what is stored
                        state = current
                    if codes[1:2] == ["ConditionalCheckFailed"]:
                        ip.remember(ip_state_from_item(reasons[1].get("Item")))
                    continue  # decide again on what is stored (or, after a TransactionConflict, simply again)
            except BotoCoreError as error:
                raise WindowStoreError(
                    f"could not reserve a window slot and IP weight in table {self._table!r}: {error}"
                ) from error
            self._known[account] = decision.state_after
            ip.remember(weight_decision.state_after)
            if state.sequence == 0:
                self._register(account)
            return JointReservation(decision, weight_decision, state)

    def _try_write(self, account: str, state: WindowState, grant: Grant, limit: int, now_ms: int) -> WindowState | None:
        """Apply `grant` if the stored item is still `state` and not blocked; otherwise return the stored state."""
        token = new_write_token()
        try:
            self._client.update_item(
                TableName=self._table, **self._update(account, state, grant, limit, now_ms, token=token)
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                item = error.response.get("Item")
                if written_by(item, token):
                    return None  # our own write, applied before its answer was lost (botocore retried it)
                return _state_from_item(item)  # type: ignore[arg-type]
            raise WindowStoreError(f"could not reserve a window slot in table {self._table!r}: {error}") from error
        except BotoCoreError as error:
            raise WindowStoreError(f"could not reserve a window slot in table {self._table!r}: {error}") from error
        return None

    def _update(
        self, account: str, state: WindowState, grant: Grant, limit: int, now_ms: int, *, token: str
    ) -> dict[str, Any]:
        """The conditional update that applies `grant` if the stored item is still `state` and not blocked; `token`
        names the write (see ip_store.new_write_token)."""
        names = {"#seq": "seq", "#slot": _slot_attribute(grant.slot)}
        values: dict[str, Any] = {
            ":next": {"N": str(state.sequence + 1)},
            ":ts": {"N": str(grant.timestamp_ms)},
            ":expiry": {"N": str(grant.expiry_ms)},
            ":limit": {"N": str(limit)},
            ":now": {"N": str(now_ms)},
            ":token": {"S": token},
        }
        assignments = [
            "#seq = :next",
            "lastTimestampMs = :ts",
            "lastExpiryMs = :expiry",
            "#slot = :expiry",
            "windowLimit = :limit",
            "updatedAtMs = :now",
            "writeToken = :token",
        ]
        after_events = grant.state_after.events
        for index, event_id in enumerate(sorted(set(after_events) - set(state.events))):
            names[f"#new{index}"] = _EVENT_PREFIX + event_id
            values[f":new{index}"] = {
                "M": {
                    "invocationId": {"S": after_events[event_id][0]},
                    "atMs": {"N": str(after_events[event_id][1])},
                }
            }
            assignments.append(f"#new{index} = :new{index}")
        removals = []
        for index, event_id in enumerate(sorted(set(state.events) - set(after_events))):
            names[f"#old{index}"] = _EVENT_PREFIX + event_id
            removals.append(f"#old{index}")
        update = "SET " + ", ".join(assignments) + (" REMOVE " + ", ".join(removals) if removals else "")
        # The sequence number pins every part of the state the decision read, except a block, which
        # is written without a reservation and so is checked on its own.
        condition = "(attribute_not_exists(blockedUntilMs) OR blockedUntilMs <= :now) AND "
        if state.sequence == 0:
            condition += "attribute_not_exists(#seq)"
        else:
            condition += "#seq = :seq"
            values[":seq"] = {"N": str(state.sequence)}
        return {
            "Key": self._key(account),
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }

    def _register(self, account: str) -> None:
        """Note the account in the registry the operator's view lists (once per account, ever)."""
        if ":" in account:
            return  # an exchange account's window (identity.py): the registry lists labels, registered with it
        try:
            self._client.put_item(
                TableName=self._table,
                Item={"pk": {"S": REGISTRY_KEY}, "sk": {"S": account_key(account)}},
            )
        except (ClientError, BotoCoreError) as error:
            # Only the operator's listing misses the account; the window itself is already safe.
            from aws_lambda_powertools import Logger

            Logger(service=SERVICE, child=True).warning(
                "account not added to the registry", extra={"account": account, "error": str(error)}
            )

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

    @staticmethod
    def _key(account: str) -> dict[str, Any]:
        return {"pk": {"S": account_key(account)}, "sk": {"S": WINDOW_SORT_KEY}}


def _state_from_item(item: Mapping[str, Any] | None) -> WindowState:
    if not item:
        return WindowState()
    expiries = {
        slot: int(item[_slot_attribute(slot)]["N"]) for slot in range(RING_SIZE) if _slot_attribute(slot) in item
    }
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

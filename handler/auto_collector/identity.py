"""Whose budget a key spends: the exchange account behind it, not the label we give it.

The exchange allows 500 collections an hour per *account*. Two labels whose secrets hold one key, two keys of one
account, or a label renamed in the same table must therefore spend from one rolling window. The account's `uid`
(GET /api/v3/account, the same for every key of the account) names that window: its key is `uid:<uid>`, which no
label can spell (labels have no ':'). The key check reads it once per secret value with the key's restrictions
(key_check.py), so a warm invocation pays nothing. Labels stay what people read, and keep keying outcome records.

The registry (`pk` = "REGISTRY", `sk` = "ACCOUNT#<label>") tells other readers which window a label spends:
`windowKey`. The fairness order of a cold container reads it (BatchGetItem) to find the labels' windows, the
operator's view to show them. An entry without `windowKey` is from a deployment before identities: readers fall
back to the label's own window; the function never does (it always spends from the account's window).

One deployment refuses two configured labels on one account (SharedAccountError, recorded in the later label's
outcome; the label configured first keeps collecting). The budget would be shared anyway - every label spends
from the account's window - but two labels for one account is a configuration mistake worth naming. Two
deployments with two tables for one account cannot see each other: the README says how to avoid that.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from .errors import SharedAccountError, WindowStoreError
from .observability import SERVICE
from .records import REGISTRY_KEY, account_key, account_of

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

logger = Logger(service=SERVICE, child=True)

#: Window keys of exchange accounts start with this; a label never contains ':'.
IDENTITY_PREFIX = "uid:"
#: BatchGetItem takes at most 100 keys a request.
_BATCH = 100


def account_window_key(uid: int) -> str:
    """The key of the rolling window of the exchange account `uid` (in place of a label in `ACCOUNT#<key>`)."""
    return f"{IDENTITY_PREFIX}{uid}"


def _registry_key(label: str) -> dict[str, Any]:
    return {"pk": {"S": REGISTRY_KEY}, "sk": {"S": account_key(label)}}


class IdentityRegistry:
    """The registry items in the table: which account window each label spends."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def read(self, labels: Sequence[str]) -> dict[str, str]:
        """The window key the registry holds for each of `labels` that has one (BatchGetItem, 100 keys a request)."""
        found: dict[str, str] = {}
        pending = [_registry_key(label) for label in dict.fromkeys(labels)]
        try:
            while pending:
                batch, pending = pending[:_BATCH], pending[_BATCH:]
                request: Any = {self._table: {"Keys": batch, "ConsistentRead": True}}
                while request:
                    response = self._client.batch_get_item(RequestItems=request)
                    for item in response.get("Responses", {}).get(self._table, []):
                        window_key = item.get("windowKey", {}).get("S")
                        if window_key:
                            found[account_of(item["sk"]["S"])] = window_key
                    request = response.get("UnprocessedKeys") or {}
        except (ClientError, BotoCoreError) as error:
            raise WindowStoreError(f"could not read the registry in table {self._table!r}: {error}") from error
        return found

    def register(self, label: str, window_key: str) -> bool:
        """Note that `label` spends from `window_key`; False (logged) when the table could not be written."""
        try:
            self._client.put_item(TableName=self._table, Item={**_registry_key(label), "windowKey": {"S": window_key}})
        except (ClientError, BotoCoreError) as error:
            # Only readers (the fairness order, the operator's view) miss it; the window itself is the account's.
            logger.warning("account identity not added to the registry", extra={"account": label, "error": str(error)})
            return False
        return True


class Registry(Protocol):
    """The registry's two operations (IdentityRegistry in the table; a dict in unit tests)."""

    def read(self, labels: Sequence[str]) -> dict[str, str]: ...

    def register(self, label: str, window_key: str) -> bool: ...


class IdentityBook:
    """For one deployment: the account window each label spends, and which label holds each account."""

    def __init__(self, labels: Sequence[str], registry: Registry) -> None:
        self._position = {label: index for index, label in enumerate(labels)}
        self._registry = registry
        self._lock = threading.Lock()
        self._window_of: dict[str, str] = {}  # label -> window key, as resolved by this process
        self._holder: dict[str, str] = {}  # window key -> the label that collects for it
        self._registered: dict[str, str] = {}  # label -> window key the registry holds (as far as we know)

    def claim(self, label: str, uid: int) -> str:
        """The window key of account `uid`, which the key of `label` belongs to; noted in the registry when new.

        Raises SharedAccountError when another configured label holds the account: the one configured first keeps
        it, so the refusal is the same in every container whatever order the accounts ran in."""
        window_key = account_window_key(uid)
        with self._lock:
            before = self._window_of.get(label)
            if before is not None and before != window_key and self._holder.get(before) == label:
                del self._holder[before]  # the label's key moved to another account (a rotation)
            self._window_of[label] = window_key
            holder = self._holder.get(window_key)
            if holder is None or holder == label or self._rank(label) < self._rank(holder):
                self._holder[window_key] = label
                holder = None
            register = self._registered.get(label) != window_key
            if register:
                self._registered[label] = window_key
        if register and not self._registry.register(label, window_key):
            with self._lock:
                self._registered.pop(label, None)  # try again next time
        if holder is not None:
            raise SharedAccountError(
                f"accounts {holder!r} and {label!r} hold API keys of the same exchange account (uid {uid}); the "
                f"exchange's collections an hour belong to the account, so {label!r} is not collected: keep one "
                "label for it in ACCOUNTS"
            )
        return window_key

    def window_key(self, label: str) -> str | None:
        """The window `label` spent from in this process, if its key was read."""
        with self._lock:
            return self._window_of.get(label)

    def window_keys(self) -> list[str]:
        """Every account window this process has resolved (a 429/418 is stored in each)."""
        with self._lock:
            return sorted(self._holder)

    def windows_of(self, labels: Sequence[str]) -> dict[str, str]:
        """The window each of `labels` spends, where known: resolved here, else as the registry says now (one
        BatchGetItem for the labels not resolved here: none for a warm collector; every time for the fan-out
        dispatcher, which reads no keys, so a rename or rotation elsewhere reaches its order). A label absent from
        both is left out."""
        with self._lock:
            missing = [label for label in labels if label not in self._window_of]
        found = self._registry.read(missing) if missing else {}
        with self._lock:
            for label, window_key in found.items():
                self._registered[label] = window_key
            known = {**found, **self._window_of}
        return {label: known[label] for label in labels if label in known}

    def _rank(self, label: str) -> int:
        return self._position.get(label, len(self._position))

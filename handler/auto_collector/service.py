"""One invocation from raw inputs to a stored outcome: the part of the handler that tests drive without Lambda.

Every invocation that knows its table leaves an outcome record, whatever went wrong; when even that
write fails, the whole record goes to the log so nothing is lost.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

from aws_lambda_powertools import Logger

from .collection import Outcome
from .config import Settings, account_label_from
from .errors import CollectorError, ConfigurationError, InvalidEventError, UnexpectedError, WindowStoreError, echo
from .events import Invocation, parse_event
from .observability import SERVICE
from .runtime import Runtime, runtime_for

logger = Logger(service=SERVICE, child=True)

_DEFAULT_RETENTION_DAYS = Settings.outcome_retention_days
#: The longest a PutItem can take before botocore gives up (runtime.py's client: 3 x (1 s connect + 3 s read)).
WORST_OUTCOME_WRITE_MS = 12_000
#: Accounts collected at once: each waits mostly on the network, so threads are enough.
MAX_PARALLEL_ACCOUNTS = 32


def invoke(
    event: object,
    invocation_id: str,
    remaining_ms: Callable[[], int],
    environment: Mapping[str, str],
) -> list[Outcome]:
    """Run one invocation and store one outcome per account acted on, in configuration order.

    Accounts run concurrently; one account's failure never stops the others. Errors are left in the
    outcomes for the caller to raise once everything is recorded.
    """
    try:
        settings = Settings.from_environment(environment)
    except ConfigurationError as error:
        return [_store_early_failure(environment, invocation_id, error)]
    runtime = runtime_for(settings)
    try:
        invocation = parse_event(event)
        labels = _selected_accounts(invocation, settings)
    except InvalidEventError as error:
        unknown = Invocation(trigger="unknown")
        outcomes = [_failed_outcome(label, invocation_id, unknown, error) for label in settings.labels]
        for outcome in outcomes:
            _store(outcome, settings.outcome_retention_days, runtime.store.put_outcome, remaining_ms)
        return outcomes
    return _run_accounts(runtime, labels, invocation, invocation_id, remaining_ms)


def _selected_accounts(invocation: Invocation, settings: Settings) -> list[str]:
    if invocation.accounts is None:
        return settings.labels
    unknown = sorted(set(invocation.accounts) - set(settings.labels))
    if unknown:
        raise InvalidEventError(
            f"the event names accounts {echo(unknown)} that are not configured; known: {settings.labels}"
        )
    return [label for label in settings.labels if label in invocation.accounts]


def _run_accounts(
    runtime: Runtime, labels: list[str], invocation: Invocation, invocation_id: str, remaining_ms: Callable[[], int]
) -> list[Outcome]:
    def run_and_record(label: str) -> Outcome:
        # Each account records its own outcome on its own thread: one round trip in all, not one per account.
        try:
            outcome = runtime.collectors[label].run(invocation, invocation_id, remaining_ms)
        except Exception as error:  # noqa: BLE001 - not hidden: recorded, then raised as UnexpectedError
            outcome = _failed_outcome(label, invocation_id, invocation, UnexpectedError(error))
        _store(outcome, runtime.settings.outcome_retention_days, runtime.store.put_outcome, remaining_ms)
        return outcome

    if len(labels) == 1:
        return [run_and_record(labels[0])]
    with ThreadPoolExecutor(max_workers=min(len(labels), MAX_PARALLEL_ACCOUNTS)) as pool:
        return list(pool.map(run_and_record, labels))


def _store(
    outcome: Outcome,
    retention_days: int,
    put: Callable[[dict[str, object]], None],
    remaining_ms: Callable[[], int] | None = None,
) -> None:
    item = outcome.to_item(retention_days)
    if remaining_ms is not None and remaining_ms() < WORST_OUTCOME_WRITE_MS:
        # Lambda could stop us before a slow write gives up: the log keeps the record whatever happens.
        logger.warning("little time left: outcome record logged before it is written", extra={"outcome": item})
    try:
        put(item)
    except WindowStoreError as error:
        # The table is unreachable: the log is the record of last resort.
        logger.error("outcome not stored; full record follows", extra={"outcome": json.loads(json.dumps(item))})
        if outcome.error is None:
            outcome.error = error
        outcome.status = "failed"


def _failed_outcome(account: str, invocation_id: str, invocation: Invocation, error: CollectorError) -> Outcome:
    now = time.time_ns() // 1_000_000
    return Outcome(account, invocation_id, invocation, started_ms=now, finished_ms=now, error=error)


def _store_early_failure(environment: Mapping[str, str], invocation_id: str, error: CollectorError) -> Outcome:
    """Record a configuration failure when the table and account are still known."""
    table = environment.get("TABLE_NAME", "").strip()
    try:
        account = account_label_from(environment)
    except ConfigurationError:
        account = ""
    outcome = _failed_outcome(account or "unknown", invocation_id, Invocation(trigger="unknown"), error)
    if not table or not account:
        logger.error("configuration invalid; no table to store the outcome in", extra={"error": str(error)})
        return outcome
    import boto3  # only on this rare path

    from .store import WindowStore

    _store(outcome, _DEFAULT_RETENTION_DAYS, WindowStore(boto3.client("dynamodb"), table).put_outcome)
    return outcome

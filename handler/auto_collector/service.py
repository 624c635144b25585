"""One invocation from raw inputs to a stored outcome: the part of the handler that tests drive without Lambda.

Every invocation that knows its table leaves an outcome record, whatever went wrong; when even that
write fails, the whole record goes to the log so nothing is lost.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping

from aws_lambda_powertools import Logger

from .collection import Outcome
from .config import Settings, account_label_from
from .errors import CollectorError, ConfigurationError, InvalidEventError, WindowStoreError
from .events import Invocation, parse_event
from .runtime import runtime_for

logger = Logger(service="fund-auto-collector", child=True)

_DEFAULT_RETENTION_DAYS = Settings.outcome_retention_days


def invoke(
    event: object,
    invocation_id: str,
    remaining_ms: Callable[[], int],
    environment: Mapping[str, str],
) -> Outcome:
    """Run one invocation and store its outcome. The outcome's `error`, if any, is for the caller to raise."""
    try:
        settings = Settings.from_environment(environment)
    except ConfigurationError as error:
        return _store_early_failure(environment, invocation_id, error)
    runtime = runtime_for(settings)
    try:
        invocation = parse_event(event)
    except InvalidEventError as error:
        outcome = _failed_outcome(settings.account_label, invocation_id, Invocation(trigger="unknown"), error)
    else:
        outcome = runtime.collector.run(invocation, invocation_id, remaining_ms)
    _store(outcome, settings.outcome_retention_days, runtime.store.put_outcome)
    return outcome


def _store(outcome: Outcome, retention_days: int, put: Callable[[dict[str, object]], None]) -> None:
    item = outcome.to_item(retention_days)
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

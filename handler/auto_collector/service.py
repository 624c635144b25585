"""One invocation from raw inputs to a stored outcome: the part of the handler that tests drive without Lambda.

Every invocation that knows its table leaves an outcome record, whatever went wrong; when even that
write fails, the whole record goes to the log so nothing is lost.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from .admission import Turnstile
from .config import Settings, account_label_from
from .errors import (
    AccountsFailedError,
    CollectorError,
    ConfigurationError,
    InvalidEventError,
    RecordNotStoredError,
    UnexpectedError,
    WindowStoreError,
    echo,
)
from .events import Invocation, parse_event
from .ip_window import COLLECTION_WEIGHT
from .observability import SERVICE
from .outcome import Outcome
from .records import outcome_record
from .runtime import Runtime, runtime_for

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient

logger = Logger(service=SERVICE, child=True)

_DEFAULT_RETENTION_DAYS = Settings.outcome_retention_days
#: The longest a PutItem can take before botocore gives up (runtime.py's client: 3 x (1 s connect + 3 s read)).
WORST_OUTCOME_WRITE_MS = 12_000
#: Accounts collected at once: each waits mostly on the network, so threads are enough.
MAX_PARALLEL_ACCOUNTS = 32
#: SQS's longest visibility timeout (12 hours).
MAX_VISIBILITY_TIMEOUT_S = 43_200


@dataclass
class InvocationResult:
    """Every outcome of one invocation (stored), and what the caller returns or raises for them."""

    outcomes: list[Outcome]
    #: One error behind every outcome (invalid configuration or event): raised as it is, not per account.
    common_error: CollectorError | None = None

    def response(self) -> dict[str, Any]:
        """The invocation's return value; raises when an account failed, once everything is recorded."""
        if self.common_error is not None:
            raise self.common_error
        sqs = bool(self.outcomes) and self.outcomes[0].invocation.trigger == "sqs"
        if sqs:
            # From the queue, a raise would hand every message of the batch back: the collected ones would come back
            # as duplicates, and one account's lasting failure would carry healthy ones to the dead-letter queue.
            # Failures are recorded, logged and counted (CollectionFailed, its alarm); only deferred messages return.
            return self._batch_response()
        errors = {outcome.account: outcome.error for outcome in self.outcomes if outcome.error is not None}
        if len(self.outcomes) == 1 and errors:
            raise next(iter(errors.values()))
        if errors:
            raise AccountsFailedError(errors)
        lost = [outcome for outcome in self.outcomes if outcome.record_error is not None]
        if lost:
            # What happened at the exchange stands (the summaries say it); the lost records are an error of their own.
            raise RecordNotStoredError({o.account: o.status for o in lost}, lost[0].record_error)
        if len(self.outcomes) == 1:
            response = self.outcomes[0].summary()
        else:
            statuses = {outcome.status for outcome in self.outcomes}
            response = {
                "status": statuses.pop() if len(statuses) == 1 else "mixed",
                "accounts": [outcome.summary() for outcome in self.outcomes],
            }
        return response

    def _batch_response(self) -> dict[str, Any]:
        """An SQS batch's answer: every account's summary, and the deferred messages for ReportBatchItemFailures."""
        statuses = {outcome.status for outcome in self.outcomes}
        return {
            "status": statuses.pop() if len(statuses) == 1 else "mixed",
            "accounts": [outcome.summary() for outcome in self.outcomes],
            "batchItemFailures": [
                {"itemIdentifier": message[0]}
                for outcome in self.outcomes
                if outcome.status == "deferred" and (message := outcome.invocation.message_of(outcome.account))
            ],
        }


def invoke(
    event: object,
    invocation_id: str,
    remaining_ms: Callable[[], int],
    environment: Mapping[str, str],
    sqs: SQSClient | None = None,
) -> InvocationResult:
    """Run one invocation and store one outcome per account acted on, in configuration order.

    Accounts run concurrently; one account's failure never stops the others. Errors are left in the
    outcomes for the caller to raise once everything is recorded. In the fan-out mode the messages of deferred
    accounts are handed back to the queue (QUEUE_URL) to reappear when IP weight frees (`sqs`: a client to use
    instead of the runtime's).
    """
    try:
        settings = Settings.from_environment(environment)
    except ConfigurationError as error:
        return InvocationResult([_store_early_failure(environment, invocation_id, error)], common_error=error)
    runtime = runtime_for(settings)
    try:
        invocation = parse_event(event)
        labels = selected_accounts(invocation, settings)
    except InvalidEventError as error:
        unknown = Invocation(trigger="unknown")
        outcomes = [_failed_outcome(label, invocation_id, unknown, error) for label in settings.labels]
        outcomes = [
            _store(o, settings.outcome_retention_days, runtime.store.put_outcome, remaining_ms) for o in outcomes
        ]
        return InvocationResult(outcomes, common_error=error)
    order = fairness_order(runtime, labels)
    outcomes = _run_accounts(runtime, labels, invocation, invocation_id, remaining_ms, order=order)
    if invocation.trigger == "sqs":
        deferred = {outcome.account: outcome for outcome in outcomes if outcome.status == "deferred"}
        if deferred:
            queue_url = environment.get("QUEUE_URL", "").strip()
            hand_back_deferred(
                [deferred[label] for label in order if label in deferred],
                runtime,
                queue_url,
                sqs or (runtime.queue_client() if queue_url else None),
            )
    return InvocationResult(outcomes)


def selected_accounts(invocation: Invocation, settings: Settings) -> list[str]:
    if invocation.accounts is None:
        return settings.labels
    unknown = sorted(set(invocation.accounts) - set(settings.labels))
    if unknown:
        raise InvalidEventError(
            f"the event names accounts {echo(unknown)} that are not configured; known: {settings.labels}"
        )
    return [label for label in settings.labels if label in invocation.accounts]


def _run_accounts(
    runtime: Runtime,
    labels: list[str],
    invocation: Invocation,
    invocation_id: str,
    remaining_ms: Callable[[], int],
    *,
    order: list[str],
) -> list[Outcome]:
    turnstile = Turnstile(order)

    def run_and_record(label: str) -> Outcome:
        # Each account records its own outcome on its own thread: one round trip in all, not one per account.
        try:
            outcome = runtime.collectors[label].run(invocation, invocation_id, remaining_ms, turnstile.turn(label))
        except Exception as error:  # noqa: BLE001 - not hidden: recorded, then raised as UnexpectedError
            outcome = _failed_outcome(label, invocation_id, invocation, UnexpectedError(error))
        return _store(outcome, runtime.settings.outcome_retention_days, runtime.store.put_outcome, remaining_ms)

    if len(labels) == 1:
        return [run_and_record(labels[0])]
    # Submitted in the fairness order: the pool starts them in that order, so no turn waits on an unstarted one.
    with ThreadPoolExecutor(max_workers=min(len(labels), MAX_PARALLEL_ACCOUNTS)) as pool:
        outcomes = dict(zip(order, pool.map(run_and_record, order), strict=True))
    return [outcomes[label] for label in labels]


def hand_back_deferred(deferred: list[Outcome], runtime: Runtime, queue_url: str, sqs: SQSClient | None) -> None:
    """Make each deferred account's message visible again when IP weight frees for it (ChangeMessageVisibility).

    `deferred` is in the fairness order. Each deferral knows when weight frees for one collection; the accounts of
    a batch are told to come back in turn, each when the weight would free after those before it had been sent
    (IpWeightPolicy.free_in_turn), so they do not all wake at the first instant to find it taken. The message
    stays in batchItemFailures, so Lambda does not delete it. A visibility that cannot be changed is harmless:
    the message comes back after the queue's own visibility timeout, and the windows decide again then.
    """
    if sqs is None or not queue_url:
        logger.warning(
            "QUEUE_URL is not set: deferred messages come back after the queue's visibility timeout",
            extra={"accounts": [outcome.account for outcome in deferred]},
        )
        return
    now_ms = time.time_ns() // 1_000_000
    gate = runtime.gate
    turns = gate.policy.free_in_turn(gate.known(), now_ms, COLLECTION_WEIGHT, len(deferred))
    for outcome, free_ms in zip(deferred, turns, strict=True):
        receipt_handle = outcome.invocation.receipt_handle_of(outcome.account)
        if receipt_handle is None:
            continue
        visible_at_ms = max(free_ms, outcome.deferred_until_ms or now_ms)
        timeout_s = min(MAX_VISIBILITY_TIMEOUT_S, max(0, math.ceil((visible_at_ms - now_ms) / 1000) + 1))
        try:
            sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=timeout_s)
        except (BotoCoreError, ClientError) as error:
            logger.warning(
                "deferred message not handed back: it comes back after the queue's visibility timeout",
                extra={"account": outcome.account, "error": str(error)},
            )


def fairness_order(runtime: Runtime, labels: list[str]) -> list[str]:
    """Accounts least recently attempted first, so those deferred for lack of IP weight go first next time.

    An account that reserves moves to the back: round robin, whoever fails or succeeds, and no account starves.
    """
    if len(labels) == 1:
        return labels
    # Each label's window is its exchange account's (identity.py): known once its key was read, else from the
    # registry (a cold container: one BatchGetItem of the registry, then one of the windows).
    try:
        windows = runtime.identities.windows_of(labels)
        states = runtime.store.read_many(sorted(set(windows.values())))
    except WindowStoreError as error:
        # The order only decides who waits; each reservation still goes through the windows.
        logger.warning("windows not read: accounts run in the order last seen", extra={"error": str(error)})
        windows = {label: key for label in labels if (key := runtime.identities.window_key(label))}
        states = {key: runtime.store.known(key) for key in windows.values()}
    last = {label: states[windows[label]].last_timestamp_ms if label in windows else 0 for label in labels}
    position = {label: index for index, label in enumerate(labels)}
    return sorted(labels, key=lambda label: (last[label], position[label]))


def _store(
    outcome: Outcome,
    retention_days: int,
    put: Callable[[dict[str, object]], None],
    remaining_ms: Callable[[], int] | None = None,
) -> Outcome:
    """Store the outcome's record; returns the outcome to report: `outcome` itself, or, when the write failed, a
    copy that keeps what happened and names the lost record's error apart (`record_error`)."""
    try:
        item = outcome_record(outcome, retention_days)
    except Exception as error:  # noqa: BLE001 - a value DynamoDB cannot hold: the summary still goes to the log
        logger.error("outcome record could not be built; its summary follows", extra={"outcome": outcome.summary()})
        return replace(outcome, record_error=UnexpectedError(error))
    if remaining_ms is not None and remaining_ms() < WORST_OUTCOME_WRITE_MS:
        # Lambda could stop us before a slow write gives up: the log keeps the record whatever happens.
        logger.warning("little time left: outcome record logged before it is written", extra={"outcome": item})
    try:
        put(item)
    except WindowStoreError as error:
        # The table is unreachable: the log is the record of last resort.
        logger.error("outcome not stored; full record follows", extra={"outcome": json.loads(json.dumps(item))})
        return replace(outcome, record_error=error)
    return outcome


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

    from .aws_config import BOUNDED_CLIENT_CONFIG
    from .store import CollectorTable

    client = boto3.client("dynamodb", config=BOUNDED_CLIENT_CONFIG)
    return _store(outcome, _DEFAULT_RETENTION_DAYS, CollectorTable(client, table).put_outcome)

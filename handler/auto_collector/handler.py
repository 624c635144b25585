"""Lambda entry point: observability wiring around `service.invoke`. Nothing else lives here."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from .collection import Outcome
from .errors import AccountsFailedError
from .observability import SERVICE
from .service import invoke

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "FundAutoCollector"), service=SERVICE)
tracer = Tracer(service=SERVICE)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    outcomes = invoke(event, context.aws_request_id, context.get_remaining_time_in_millis, os.environ)
    for outcome in outcomes:
        publish(outcome)
    errors = {outcome.account: outcome.error for outcome in outcomes if outcome.error is not None}
    if len({id(error) for error in errors.values()}) == 1 and len(errors) == len(outcomes):
        raise next(iter(errors.values()))  # one cause for all (a bad event or configuration, or one account)
    if errors:
        raise AccountsFailedError(errors)
    if len(outcomes) == 1:
        return outcomes[0].summary()
    statuses = {outcome.status for outcome in outcomes}
    return {
        "status": statuses.pop() if len(statuses) == 1 else "mixed",
        "accounts": [outcome.summary() for outcome in outcomes],
    }


def publish(outcome: Outcome) -> None:
    """Metrics and one log line per invocation; failures are logged at ERROR so alarms and readers see them."""
    counters = {
        "collected": "CollectionSucceeded",
        "failed": "CollectionFailed",
        "budget_exhausted": "BudgetExhausted",
        "backing_off": "BackingOff",
        "duplicate": "DuplicateDelivery",
        "nothing_to_collect": "NothingToCollect",
        "dry_run": "DryRun",
    }
    metrics.add_metric(name=counters[outcome.status], unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="ExchangeAttempts", unit=MetricUnit.Count, value=len(outcome.attempts))
    if outcome.window_used is not None:
        metrics.add_metric(name="WindowUsage", unit=MetricUnit.Count, value=outcome.window_used)
        metrics.add_metric(name="WindowLimit", unit=MetricUnit.Count, value=outcome.window_limit)
    last = outcome.last_attempt
    if last is not None and last.used_weight_1m is not None:
        metrics.add_metric(name="UsedIpWeight1m", unit=MetricUnit.Count, value=last.used_weight_1m)
    summary = outcome.summary()
    if outcome.error is not None:
        logger.error("collection failed", extra={"outcome": summary})
    elif outcome.status in ("budget_exhausted", "backing_off"):
        logger.warning(f"nothing sent: {outcome.status}", extra={"outcome": summary})
    else:
        logger.info(f"invocation finished: {outcome.status}", extra={"outcome": summary})

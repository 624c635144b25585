"""Lambda entry point: observability wiring around `service.invoke`. Nothing else lives here."""

from __future__ import annotations

import gc

# A cold start is mostly imports, and the objects they create (modules, classes, functions) live as long as the
# process. Python's cyclic garbage collector would scan them again and again while they are created (about a
# fifth of the CPU time of a cold start) and at every full collection after: it is paused until this module is
# imported, and what the imports created is then frozen out of its scans (_freeze_import_time_objects below).
_GC_WAS_ENABLED = gc.isenabled()
gc.disable()

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.shared.functions import resolve_truthy_env_var_choice
from aws_lambda_powertools.utilities.typing import LambdaContext

from .events import delivery_id
from .observability import SERVICE
from .outcome import Outcome
from .service import invoke

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

Handler = Callable[[Any, LambdaContext], dict[str, Any]]


def _tracer() -> Tracer | None:
    """Powertools' Tracer, or None when POWERTOOLS_TRACE_DISABLED is true (the template's default).

    A disabled Tracer records nothing, but creating one imports aws_xray_sdk, whose recorder builds two X-Ray
    clients at import: about half of a cold start. So it is only created when tracing may be on - at import
    time as before, so that it still patches boto3 and requests before any client exists.
    """
    if resolve_truthy_env_var_choice(env=os.getenv("POWERTOOLS_TRACE_DISABLED", "false")):
        return None
    from aws_lambda_powertools import Tracer

    return Tracer(service=SERVICE)


logger = Logger(service=SERVICE)
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "FundAutoCollector")
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = _tracer()


def _capture_lambda_handler(handler: Handler) -> Handler:
    """`tracer.capture_lambda_handler` when tracing may be on; the handler itself otherwise."""
    return handler if tracer is None else cast(Handler, tracer.capture_lambda_handler(handler))


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@_capture_lambda_handler
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    # Every log line carries the delivery's own id (the scheduled tick, the SQS message), so one search finds
    # everything a delivery did, its duplicates included; a console test has only the request id.
    logger.set_correlation_id(delivery_id(event) or context.aws_request_id)
    result = invoke(event, context.aws_request_id, context.get_remaining_time_in_millis, os.environ)
    for outcome in result.outcomes:
        publish(outcome)
    return result.response()


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
        "deferred": "CollectionDeferred",
    }
    metrics.add_metric(name=counters[outcome.status], unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="ExchangeAttempts", unit=MetricUnit.Count, value=len(outcome.attempts))
    if outcome.record_error is not None:
        metrics.add_metric(name="OutcomeNotRecorded", unit=MetricUnit.Count, value=1)
    if outcome.window_used is not None:
        metrics.add_metric(name="WindowUsage", unit=MetricUnit.Count, value=outcome.window_used)
        metrics.add_metric(name="WindowLimit", unit=MetricUnit.Count, value=outcome.window_limit)
    last = outcome.last_attempt
    if last is not None and last.used_weight_1m is not None:
        metrics.add_metric(name="UsedIpWeight1m", unit=MetricUnit.Count, value=last.used_weight_1m)
    moved = outcome.moved()
    if moved is not None:
        # With the balance check on: how many assets the collection moved (their amounts are in the record; a sum
        # over assets would mean nothing).
        metrics.add_metric(name="AssetsMoved", unit=MetricUnit.Count, value=len(moved))
    days_left = outcome.trading_days_left()
    if days_left is not None:
        # Its own EMF document with dimensions service and account only: an account dimension on the shared
        # Metrics object would split every service-only metric (and its alarm) by account.
        with single_metric(
            name="TradingPermissionDaysLeft",
            unit=MetricUnit.Count,
            value=max(0, days_left),
            namespace=NAMESPACE,
            default_dimensions={"service": SERVICE},
        ) as metric:
            metric.add_dimension(name="account", value=outcome.account)
    summary = outcome.summary()
    if outcome.error is not None:
        logger.error("collection failed", extra={"outcome": summary})
    elif outcome.status in ("budget_exhausted", "backing_off", "deferred"):
        logger.warning(f"nothing sent: {outcome.status}", extra={"outcome": summary})
    else:
        logger.info(f"invocation finished: {outcome.status}", extra={"outcome": summary})


def _freeze_import_time_objects() -> None:
    """Move every object the imports created to the collector's permanent generation, then collect as usual.

    They are never garbage, so no collection needs to look at them, including the ones the interpreter runs
    when it exits. The cycles the imports left behind stay with them: about 750 objects, 155 KiB, measured.
    """
    gc.freeze()
    if _GC_WAS_ENABLED:
        gc.enable()


_freeze_import_time_objects()

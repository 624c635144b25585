"""Fan-out mode: the scheduled function that sends one SQS message per account, least recently attempted first.

The collector function consumes the queue (template.yaml, `Mode: FanOut`): each message names one account and the
tick (the scheduled event's id), which identifies duplicates, so neither a repeated schedule delivery nor an SQS
redelivery collects twice. A message that cannot get IP weight goes back to the queue (ReportBatchItemFailures)
without spending anything, hidden until the weight frees (service.hand_back_deferred).

Each round is paced by the IP weight: message i of the round is sent with DelaySeconds until the IP-weight window
(read once) would free weight for it, had the i before it been collected as soon as they could
(IpWeightPolicy.free_in_turn), so the collector finds weight instead of deferring. A round holds the accounts
whose delay leaves them at least one hold (recvWindow + 61 s) before the queue's retention would drop them, and at
most SQS's 900 s; the others go first in the next round.

One round at a time: a tick that finds messages still in the queue sends nothing. The IP serves 8 collections a
minute, so with many accounts a round outlasts the tick; sending every account again each tick would put a
second message of an account beside the first (an SQS batch naming one account twice is refused as a whole),
serve the queue's order instead of the fairness order, and pay a deferral (an outcome record and a visibility
change) for every message that waits. A message the retention drops leaves its account for the next round, where
the fairness order (least recently attempted first) puts it first. The queue's counts are approximate (SQS
settles them within about a minute): a round sent beside a few late messages is served all the same.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from .aws_config import BOUNDED_CLIENT_CONFIG
from .config import Settings
from .errors import ConfigurationError, InvalidEventError, QueueError, WindowStoreError
from .events import parse_event
from .ip_window import COLLECTION_WEIGHT
from .observability import SERVICE
from .runtime import Runtime, runtime_for
from .service import fairness_order, selected_accounts

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "FundAutoCollector"), service=SERVICE)

#: SendMessageBatch takes at most 10 entries.
_BATCH = 10
#: The queue's messages waiting, in flight (a deferred one is) and delayed.
_BACKLOG_ATTRIBUTES: tuple[QueueAttributeNameType, ...] = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)
#: SQS's longest message timer.
MAX_DELAY_S = 900
#: The queue's retention when it cannot be read: FanOutMessageRetentionSeconds' default.
_DEFAULT_RETENTION_S = 300


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    result = dispatch(event, context.aws_request_id, os.environ)
    metrics.add_metric(name="MessagesDispatched", unit=MetricUnit.Count, value=result["messages"])
    logger.info("accounts dispatched", extra={"dispatch": result})
    return result


def dispatch(
    event: object, invocation_id: str, environment: Mapping[str, str], sqs: SQSClient | None = None
) -> dict[str, Any]:
    """Send one message per selected account to QUEUE_URL, in the fairness order."""
    settings = Settings.from_environment(environment)
    queue_url = environment.get("QUEUE_URL", "").strip()
    if not queue_url:
        raise ConfigurationError("QUEUE_URL is required but not set (the fan-out mode's work queue)")
    invocation = parse_event(event)
    if invocation.trigger == "sqs":
        raise InvalidEventError("the dispatcher is started by the schedule or by hand, not by an SQS batch")
    labels = selected_accounts(invocation, settings)
    tick = invocation.event_id or f"console:{invocation_id}"
    client = sqs or boto3.client("sqs", config=BOUNDED_CLIENT_CONFIG)
    backlog, retention_s = _queue_state(client, queue_url)
    if backlog:
        return {"status": "round_in_progress", "tick": tick, "messages": 0, "waiting": backlog, "order": []}
    runtime = runtime_for(settings)
    order = fairness_order(runtime, labels)
    delays = [0] * len(order) if invocation.dry_run else round_delays(runtime, len(order), retention_s)
    order = order[: len(delays)]
    bodies = [
        json.dumps({"account": label, "tick": tick, **({"dryRun": True} if invocation.dry_run else {})})
        for label in order
    ]
    unsent = []
    for start in range(0, len(bodies), _BATCH):
        entries: list[SendMessageBatchRequestEntryTypeDef] = [
            {"Id": str(index), "MessageBody": body, "DelaySeconds": delays[start + index]}
            for index, body in enumerate(bodies[start : start + _BATCH])
        ]
        for _ in range(2):  # one retry of the entries SQS did not take
            try:
                response = client.send_message_batch(QueueUrl=queue_url, Entries=entries)
            except Exception as error:  # noqa: BLE001 - botocore's errors; the accounts are named below
                logger.warning("send_message_batch failed", extra={"error": str(error)})
                continue
            failed = {entry["Id"] for entry in response.get("Failed", [])}
            entries = [entry for entry in entries if entry["Id"] in failed]
            if not entries:
                break
        unsent += [json.loads(entry["MessageBody"])["account"] for entry in entries]
    if unsent:
        raise QueueError(f"could not send the messages of accounts {unsent} to the work queue; they wait a tick")
    return {
        "status": "dispatched",
        "tick": tick,
        "messages": len(bodies),
        "order": order,
        "delays": delays,
        "nextRound": len(labels) - len(order),
    }


def round_delays(runtime: Runtime, accounts: int, retention_s: int) -> list[int]:
    """DelaySeconds for the first accounts of the fairness order: each until weight would free for it. As many as
    can still wait a full hold within the retention (at least one)."""
    gate = runtime.gate
    try:
        state = gate.store.read()
    except WindowStoreError as error:
        # The delays only spare deferrals; the window still decides when each account is sent.
        logger.warning(
            "IP-weight window not read: the round is paced from the last state seen", extra={"error": str(error)}
        )
        state = gate.known()
    now_ms = time.time_ns() // 1_000_000
    hold_s = math.ceil(gate.policy.occupancy_ms / 1000)
    latest_s = max(0, min(MAX_DELAY_S, retention_s - hold_s))
    # One second more: the window's instants are the exchange's clock as the collector estimates it.
    delays = [
        0 if free_ms <= now_ms else math.ceil((free_ms - now_ms) / 1000) + 1
        for free_ms in gate.policy.free_in_turn(state, now_ms, COLLECTION_WEIGHT, accounts)
    ]
    fitting = [delay for delay in delays if delay <= latest_s]
    return fitting or [min(delays[0], latest_s)]


def _queue_state(client: SQSClient, queue_url: str) -> tuple[int, int]:
    """The messages still in the queue (approximate) and its retention in seconds. Uncounted: 0 messages, so a
    round is never skipped for want of a count (a duplicate round costs deferrals, a skipped one a tick)."""
    names: list[QueueAttributeNameType] = [*_BACKLOG_ATTRIBUTES, "MessageRetentionPeriod"]
    try:
        attributes = client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)
    except Exception as error:  # noqa: BLE001 - botocore's errors; sending is still right
        logger.warning("work queue not counted: a round is sent", extra={"error": str(error)})
        return 0, _DEFAULT_RETENTION_S
    counts = attributes.get("Attributes", {})
    backlog = sum(int(counts.get(name, "0")) for name in _BACKLOG_ATTRIBUTES)
    return backlog, int(counts.get("MessageRetentionPeriod", str(_DEFAULT_RETENTION_S)))

"""The many-accounts hour in the fan-out mode (issue 9): the dispatcher enqueues, an SQS poller feeds the collector.

Same hour, accounts, limits and simulated clock as bench/ip_weight.py, with `Mode: FanOut` instead of one
function per tick: each simulated minute the dispatcher (dispatcher.dispatch, the real code) sends one message
per account; a poller delivers the visible messages to the collector (service.invoke, the real code) in batches
of up to 10, deletes the ones it did not report in batchItemFailures, and leaves the others to the queue. The
collector hands a deferred message back with ChangeMessageVisibility, so it reappears when IP weight frees.

The queue is simulated here, on the simulated clock (`SimulatedQueue`), not moto's SQS: moto times visibility
and retention by the real clock, which this hour skips. It keeps the template's settings: VisibilityTimeout
120 s, MessageRetentionPeriod 300 s (FanOutMessageRetentionSeconds' default), maxReceiveCount 10 to the
dead-letter queue, SendMessageBatch/ChangeMessageVisibility/ReceiveMessage/DeleteMessageBatch with their
documented effects, and counts every call (SQS bills each). The functional tests drive the same calls through
moto (tests/functional/test_fan_out.py).

One poller, one invocation at a time (the template's MaximumConcurrency is 2). Concurrency does not add
weight: at most 8 collections fit in a minute whoever sends them, and a second invocation would only wait or
defer alongside the first. What it would change is how soon a message that becomes visible while an invocation
waits for weight is picked up; here it waits for that invocation to end (at most IP_WEIGHT_MAX_WAIT_SECONDS of
waiting plus the work). Real Lambda long-polls the queue when it is empty; those empty receives are billed too
and are not counted here (AWS does not document their rate).

The dispatcher sends a round only when the queue is empty (GetQueueAttributes), so an account never has two
messages queued, and paces it with DelaySeconds as the IP weight will free (dispatcher.py says why). The counts
this queue gives are exact; SQS's settle within about a minute. The dispatcher runs in the collector's process
(so it shares its warm objects; in AWS it is a function of its own, with its own container).
"""

from __future__ import annotations

import hashlib
import os
import traceback
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, cast

from bench.simclock import SharedClock

MINUTE_MS = 60_000
#: template.yaml: WorkQueue's VisibilityTimeout, FanOutMessageRetentionSeconds' default, RedrivePolicy.
VISIBILITY_TIMEOUT_MS = 120_000
RETENTION_MS = 300_000
MAX_RECEIVE_COUNT = 10
#: template.yaml: WorkQueueMapping's BatchSize.
BATCH_SIZE = 10
QUEUE_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/bench-work"
QUEUE_ARN = "arn:aws:sqs:eu-west-1:123456789012:bench-work"


@dataclass
class _Message:
    message_id: str
    body: str
    sent_ms: int
    visible_ms: int
    receive_count: int = 0
    receipt_handle: str = ""
    first_receive_ms: int = 0


@dataclass
class SimulatedQueue:
    """A standard SQS queue on the simulated clock, with the boto3 client methods the collector and dispatcher call."""

    clock: SharedClock
    retention_ms: int = RETENTION_MS
    messages: dict[str, _Message] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    dropped_by_retention: int = 0
    dead_lettered: int = 0
    visibility_changes_refused: int = 0
    most_messages: int = 0
    #: How often each message was received before it was deleted, dropped or dead-lettered.
    receives_per_message: list[int] = field(default_factory=list)

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls["SendMessageBatch"] += 1
        now = self.clock.now_ms()
        successful = []
        for entry in Entries:
            delay_s = int(entry.get("DelaySeconds", 0))
            if not 0 <= delay_s <= 900:
                raise ValueError(f"DelaySeconds {delay_s} out of range")
            message = _Message(str(uuid.uuid4()), entry["MessageBody"], now, now + delay_s * 1000)
            self.messages[message.message_id] = message
            successful.append({"Id": entry["Id"], "MessageId": message.message_id})
        self.most_messages = max(self.most_messages, len(self.messages))
        return {"Successful": successful, "Failed": []}

    def get_queue_attributes(self, QueueUrl: str, AttributeNames: list[str]) -> dict[str, Any]:
        self.calls["GetQueueAttributes"] += 1
        now = self.clock.now_ms()
        self._expire(now)
        delayed = sum(1 for m in self.messages.values() if m.visible_ms > now and m.receive_count == 0)
        in_flight = sum(1 for m in self.messages.values() if m.visible_ms > now and m.receive_count > 0)
        counts = {
            "ApproximateNumberOfMessages": len(self.messages) - delayed - in_flight,
            "ApproximateNumberOfMessagesNotVisible": in_flight,
            "ApproximateNumberOfMessagesDelayed": delayed,
            "MessageRetentionPeriod": self.retention_ms // 1000,
        }
        return {"Attributes": {name: str(counts[name]) for name in AttributeNames if name in counts}}

    def change_message_visibility(self, QueueUrl: str, ReceiptHandle: str, VisibilityTimeout: int) -> None:
        self.calls["ChangeMessageVisibility"] += 1
        if not 0 <= VisibilityTimeout <= 43_200:
            raise ValueError(f"VisibilityTimeout {VisibilityTimeout} out of range")
        for message in self.messages.values():
            if message.receipt_handle == ReceiptHandle:
                message.visible_ms = self.clock.now_ms() + VisibilityTimeout * 1000
                return
        self.visibility_changes_refused += 1  # SQS: ReceiptHandleIsInvalid / MessageNotInflight
        raise RuntimeError("ReceiptHandleIsInvalid")

    def receive(self, limit: int = BATCH_SIZE) -> list[_Message]:
        """One ReceiveMessage of the Lambda poller: visible messages, oldest visible first, each hidden for the
        queue's visibility timeout; a message received more than maxReceiveCount times goes to the DLQ instead."""
        now = self.clock.now_ms()
        self._expire(now)
        visible = sorted((m for m in self.messages.values() if m.visible_ms <= now), key=lambda m: m.visible_ms)
        batch: list[_Message] = []
        for message in visible:
            if len(batch) == limit:
                break
            if message.receive_count >= MAX_RECEIVE_COUNT:
                self.dead_lettered += 1
                self._forget(message)
                continue
            message.receive_count += 1
            message.first_receive_ms = message.first_receive_ms or now
            message.receipt_handle = uuid.uuid4().hex
            message.visible_ms = now + VISIBILITY_TIMEOUT_MS
            batch.append(message)
        if batch:
            self.calls["ReceiveMessage"] += 1
        return batch

    def delete(self, messages: list[_Message]) -> None:
        """DeleteMessageBatch of the messages an invocation did not report as failed (one call per 10)."""
        if messages:
            self.calls["DeleteMessageBatch"] += (len(messages) + 9) // 10
        for message in messages:
            self._forget(message)

    def next_visible_ms(self) -> int | None:
        return min((m.visible_ms for m in self.messages.values()), default=None)

    def _expire(self, now: int) -> None:
        for message in [m for m in self.messages.values() if m.sent_ms + self.retention_ms <= now]:
            self.dropped_by_retention += 1
            self._forget(message)

    def _forget(self, message: _Message) -> None:
        self.receives_per_message.append(message.receive_count)
        del self.messages[message.message_id]


def sqs_event(batch: list[_Message]) -> dict[str, Any]:
    """The records as the Lambda SQS poller hands them to the function."""
    return {
        "Records": [
            {
                "messageId": m.message_id,
                "receiptHandle": m.receipt_handle,
                "body": m.body,
                "attributes": {
                    "ApproximateReceiveCount": str(m.receive_count),
                    "SentTimestamp": str(m.sent_ms),
                    "SenderId": "AROAEXAMPLE:dispatcher",
                    "ApproximateFirstReceiveTimestamp": str(m.first_receive_ms),
                },
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(m.body.encode(), usedforsecurity=False).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": QUEUE_ARN,
                "awsRegion": "eu-west-1",
            }
            for m in batch
        ]
    }


def worker(config: dict[str, Any], clock: SharedClock) -> dict[str, Any]:
    """The fan-out hour in this process (bench/ip_weight.py's worker has installed the simulated clock)."""
    from auto_collector.dispatcher import dispatch
    from auto_collector.errors import CollectorError
    from auto_collector.handler import metrics, publish
    from auto_collector.service import invoke
    from bench.ip_weight import _Context, scheduled_event

    queue = SimulatedQueue(clock)
    sqs = cast(Any, queue)
    environment = dict(os.environ)
    first_ms = ((clock.now_ms() + MINUTE_MS - 1) // MINUTE_MS + 2) * MINUTE_MS
    ticks: list[dict[str, Any]] = []
    invocations: list[dict[str, Any]] = []
    unexpected: list[str] = []
    for k in range(config["minutes"]):
        at_ms = first_ms + k * MINUTE_MS
        late_ms = max(0, clock.now_ms() - at_ms)  # an invocation ran past this tick
        clock.advance_to_ns(at_ms * 1_000_000)
        errors: list[str] = []
        dispatched = 0
        try:
            dispatched = dispatch(scheduled_event(at_ms), str(uuid.uuid4()), environment, sqs=sqs)["messages"]
        except CollectorError as error:
            errors.append(f"dispatch: {type(error).__name__}: {error}"[:300])
        statuses: Counter[str] = Counter()
        durations: list[int] = []
        next_tick_ms = at_ms + MINUTE_MS
        while clock.now_ms() < next_tick_ms:
            batch = queue.receive()
            if not batch:
                visible = queue.next_visible_ms()
                clock.advance_to_ns(min(next_tick_ms, visible if visible is not None else next_tick_ms) * 1_000_000)
                continue
            context = _Context()
            begun = clock.now_ms()
            failed: set[str] = {m.message_id for m in batch}  # an invocation that raises: the whole batch back
            try:
                result = invoke(
                    sqs_event(batch), context.aws_request_id, context.get_remaining_time_in_millis, environment, sqs=sqs
                )
                for outcome in result.outcomes:
                    publish(outcome)
                    statuses[outcome.status] += 1
                metrics.flush_metrics()
                response = result.response()
                failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
            except CollectorError as error:
                errors.append(f"{type(error).__name__}: {error}"[:300])
            except Exception as error:  # escaped the collector: the parent fails the scenario with it
                unexpected.append(f"{type(error).__name__}: {error}"[:300])
                traceback.print_exc()
            queue.delete([m for m in batch if m.message_id not in failed])
            durations.append(clock.now_ms() - begun)
            invocations.append({"at_ms": begun, "duration_ms": durations[-1], "batch": len(batch)})
        ticks.append(
            {
                "at_ms": at_ms,
                "late_ms": late_ms,
                "duration_ms": max(durations, default=0),
                "statuses": dict(statuses),
                "deferred_wait_ms": None,
                "errors": errors,
                "dispatched": dispatched,
                "invocations": len(durations),
            }
        )
    return {
        "ticks": ticks,
        "unexpected": unexpected,
        "invocations": invocations,
        "queue": {
            "calls": dict(queue.calls),
            "dropped_by_retention": queue.dropped_by_retention,
            "dead_lettered": queue.dead_lettered,
            "visibility_changes_refused": queue.visibility_changes_refused,
            "most_messages": queue.most_messages,
            "left_in_queue": len(queue.messages),
            "receives_per_message": dict(sorted(Counter(queue.receives_per_message).items())),
        },
    }

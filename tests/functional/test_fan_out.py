"""Fan-out mode: the dispatcher sends one SQS message per account, the collector consumes them (issue 9).

SQS is moto's server; the records handed to the collector are the messages moto delivers, in the shape the
Lambda SQS poller gives them. The emulator keeps the exchange's real limits.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from auto_collector.dispatcher import dispatch
from auto_collector.errors import ConfigurationError, InvalidEventError
from tests.functional.test_accounts_and_balances import add_accounts
from tests.functional.test_ip_weight import LABELS
from tests.support.deployment import Deployment
from tests.support.events import scheduled_event

COLLECT = "/sapi/v1/portfolio/auto-collection"


def sqs_event(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message["Attributes"],
                "messageAttributes": {},
                "md5OfBody": message["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:work",
                "awsRegion": "eu-west-1",
            }
            for message in messages
        ]
    }


@pytest.fixture
def queue(deployment: Deployment, moto_endpoint: str) -> str:
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint)
    url: str = sqs.create_queue(QueueName=f"work-{deployment.table}", Attributes={"VisibilityTimeout": "0"})["QueueUrl"]
    deployment.set_env(QUEUE_URL=url, AWS_ENDPOINT_URL_SQS=moto_endpoint)
    return url


def receive_all(queue: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    messages: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, AttributeNames=["All"])
        if not batch.get("Messages"):
            return messages
        messages += [dict(message) for message in batch["Messages"]]
        for message in batch["Messages"]:
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])


def test_dispatched_messages_are_collected_deferred_and_never_collected_twice(
    deployment: Deployment, queue: str
) -> None:
    import os
    import uuid

    add_accounts(deployment, LABELS)
    tick = scheduled_event()
    sent = dispatch(tick, "dispatcher-request", os.environ)
    # The round is paced by the IP weight: 8 collections fit in the minute, the other 4 wait until it frees
    # (recvWindow 5 s + 1 s + 60 s, and a second for the clocks).
    assert sent["messages"] == 12 and sent["tick"] == tick["id"]
    assert sent["delays"] == [0] * 8 + [67] * 4
    messages = sorted(receive_all(queue), key=lambda m: sent["order"].index(json.loads(m["Body"])["account"]))
    assert [json.loads(m["Body"]) for m in messages] == [{"account": a, "tick": tick["id"]} for a in sent["order"][:8]]

    first = deployment.invoke(sqs_event(messages))

    first_statuses = [summary["status"] for summary in first["accounts"]]
    # Each key's restrictions are read once (weight 1): 7 collections and 8 reads fit into 12,000, an 8th does not.
    assert sorted(first_statuses) == ["collected"] * 7 + ["deferred"]
    deferred_ids = {m["MessageId"] for m, status in zip(messages, first_statuses, strict=True) if status != "collected"}
    assert {item["itemIdentifier"] for item in first["batchItemFailures"]} == deferred_ids

    # SQS redelivers the whole batch, and EventBridge delivers the tick twice (new messages, the same tick):
    # nothing is collected twice.
    again = deployment.invoke(sqs_event(messages))
    assert sorted(s["status"] for s in again["accounts"]) == ["deferred"] + ["duplicate"] * 7
    copies = [{**m, "MessageId": str(uuid.uuid4())} for m in messages]
    twice = deployment.invoke(sqs_event(copies))
    assert "collected" not in {s["status"] for s in twice["accounts"]}
    # While the round's 4 delayed messages are queued, the repeated tick sends nothing.
    assert dispatch(tick, "dispatcher-request-2", os.environ)["status"] == "round_in_progress"
    assert len(deployment.exchange.requests(COLLECT)) == 7
    assert [r for r in deployment.exchange.requests() if r.status in (418, 429)] == []


def test_a_tick_sends_no_new_round_while_the_last_one_is_queued(deployment: Deployment, queue: str) -> None:
    import os

    add_accounts(deployment, LABELS[:3])
    first = dispatch(scheduled_event(), "dispatcher-request", os.environ)
    assert first["messages"] == 3
    receive(queue)  # in flight, as the collector's poller holds them

    second = dispatch(scheduled_event(), "dispatcher-request-2", os.environ)

    assert second["status"] == "round_in_progress" and second["messages"] == 0 and second["waiting"] == 3
    receive_all(queue)  # the round is done
    third = dispatch(scheduled_event(), "dispatcher-request-3", os.environ)
    assert third["messages"] == 3 and len(receive_all(queue)) == 3


def test_a_round_holds_only_the_accounts_that_can_be_served_before_the_retention_drops_them(
    deployment: Deployment, moto_endpoint: str
) -> None:
    import os

    sqs = boto3.client("sqs", endpoint_url=moto_endpoint)
    url = sqs.create_queue(QueueName=f"short-{deployment.table}", Attributes={"MessageRetentionPeriod": "120"})
    deployment.set_env(QUEUE_URL=url["QueueUrl"], AWS_ENDPOINT_URL_SQS=moto_endpoint)
    add_accounts(deployment, LABELS)

    sent = dispatch(scheduled_event(), "dispatcher-request", os.environ)

    # The 9th would wait 67 s for weight and then need a hold (66 s) to be served: past the 120 s retention.
    assert sent["messages"] == 8 and sent["nextRound"] == 4 and sent["delays"] == [0] * 8


def test_the_dispatcher_refuses_what_it_cannot_do(deployment: Deployment) -> None:
    import os

    with pytest.raises(ConfigurationError, match="QUEUE_URL is required"):
        dispatch(scheduled_event(), "request", os.environ)
    deployment.set_env(QUEUE_URL="https://sqs.eu-west-1.amazonaws.com/123456789012/work")
    message_id = "3f1b7c52-1d5e-4b7e-9a57-8f0e4c1d2a11"
    sqs_batch = {"Records": [{"eventSource": "aws:sqs", "messageId": message_id, "body": '{"account": "default"}'}]}
    with pytest.raises(InvalidEventError, match="not by an SQS batch"):
        dispatch(sqs_batch, "request", os.environ)


def receive(queue: str, wait_s: int = 0) -> list[dict[str, Any]]:
    """One receive, as the Lambda poller makes it (the messages stay in flight until deleted)."""
    sqs = boto3.client("sqs")
    batch = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=wait_s)
    return [dict(message) for message in batch.get("Messages", [])]


def delete(queue: str, messages: list[dict[str, Any]]) -> None:
    """What the Lambda poller does with the messages not listed in batchItemFailures."""
    sqs = boto3.client("sqs")
    for message in messages:
        sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])


def test_a_deferred_message_stays_hidden_until_ip_weight_frees(deployment: Deployment, queue: str) -> None:
    import os

    add_accounts(deployment, LABELS)
    dispatch(scheduled_event(), "dispatcher-request", os.environ)
    first = receive(queue)
    result = deployment.invoke(sqs_event(first))

    failed = {item["itemIdentifier"] for item in result["batchItemFailures"]}
    deferred = [summary for summary in result["accounts"] if summary["status"] == "deferred"]
    assert failed and len(failed) == len(deferred)
    delete(queue, [m for m in first if m["MessageId"] not in failed])
    # The queue's visibility timeout is 0: without the hand-back the deferred messages would be offered again at
    # once. They are hidden until the weight of the collections just made frees (about 66 s), as are the round's
    # last 4 messages (DelaySeconds).
    assert len(first) == 8
    assert receive(queue) == []
    assert_exchange_never_refused(deployment)


def test_a_deferred_message_comes_back_when_ip_weight_frees(deployment: Deployment, queue: str) -> None:
    import os
    import time

    from auto_collector.ip_store import IpWeightStore
    from auto_collector.ip_window import IpWeightPolicy

    add_accounts(deployment, LABELS[:1])
    # No waiting in the function: the account is deferred at once.
    deployment.set_env(IP_WEIGHT_MAX_WAIT_SECONDS="0")
    dispatch(scheduled_event(), "dispatcher-request", os.environ)
    (message,) = receive(queue)
    # Meanwhile another program behind the address used the whole minute; that weight stops counting in 3 s.
    policy = IpWeightPolicy(limit=12_000, recv_window_ms=5_000)
    started_ms = time.time_ns() // 1_000_000
    IpWeightStore(deployment.dynamodb, deployment.table).observe(
        policy, 12_000, lambda: started_ms - policy.occupancy_ms + 3_000
    )

    result = deployment.invoke(sqs_event([message]))

    assert result["status"] == "deferred"
    assert result["batchItemFailures"] == [{"itemIdentifier": message["MessageId"]}]
    assert receive(queue) == []  # hidden, although the queue's visibility timeout is 0
    (back,) = receive(queue, wait_s=8)
    returned_ms = time.time_ns() // 1_000_000
    assert back["MessageId"] == message["MessageId"]
    assert returned_ms >= started_ms + 3_000  # not before the weight frees
    assert deployment.exchange.requests(COLLECT) == []


def test_a_visibility_that_cannot_be_changed_leaves_the_message_to_the_queue(
    deployment: Deployment, queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    import os

    add_accounts(deployment, LABELS)
    dispatch(scheduled_event(), "dispatcher-request", os.environ)
    messages = receive_all(queue)[:10]  # deleted: their receipt handles no longer change anything
    for message in messages:
        message["ReceiptHandle"] = "no-longer-valid"

    result = deployment.invoke(sqs_event(messages))

    # The deferred messages are still reported, so Lambda leaves them to the queue's own visibility timeout.
    deferred = [s for s in result["accounts"] if s["status"] == "deferred"]
    assert deferred and len(result["batchItemFailures"]) == len(deferred)
    warnings = [r.getMessage() for r in caplog.records if "deferred message not handed back" in r.getMessage()]
    assert len(warnings) == len(deferred)


def assert_exchange_never_refused(deployment: Deployment) -> None:
    assert [r for r in deployment.exchange.requests() if r.status in (418, 429)] == []

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

    add_accounts(deployment, LABELS)
    tick = scheduled_event()
    sent = dispatch(tick, "dispatcher-request", os.environ)
    assert sent["messages"] == 12 and sent["tick"] == tick["id"]
    messages = sorted(receive_all(queue), key=lambda m: sent["order"].index(json.loads(m["Body"])["account"]))
    assert [json.loads(m["Body"]) for m in messages] == [{"account": a, "tick": tick["id"]} for a in sent["order"]]

    first, second = deployment.invoke(sqs_event(messages[:10])), deployment.invoke(sqs_event(messages[10:]))

    first_statuses = [summary["status"] for summary in first["accounts"]]
    # Each key's restrictions are read once (weight 1): 7 collections and 10 reads fit into 12,000, an 8th does not.
    assert sorted(first_statuses) == ["collected"] * 7 + ["deferred"] * 3
    deferred_ids = {
        m["MessageId"] for m, status in zip(messages[:10], first_statuses, strict=True) if status != "collected"
    }
    assert {item["itemIdentifier"] for item in first["batchItemFailures"]} == deferred_ids
    assert [s["status"] for s in second["accounts"]] == ["deferred", "deferred"]
    assert len(second["batchItemFailures"]) == 2

    # SQS redelivers the whole first batch, and EventBridge delivers the tick twice: nothing is collected twice.
    again = deployment.invoke(sqs_event(messages[:10]))
    assert sorted(s["status"] for s in again["accounts"]) == ["deferred"] * 3 + ["duplicate"] * 7
    dispatch(tick, "dispatcher-request-2", os.environ)
    repeated = sorted(receive_all(queue), key=lambda m: m["MessageId"])
    twice = deployment.invoke(sqs_event(repeated[:10]))
    assert "collected" not in {s["status"] for s in twice["accounts"]}
    assert len(deployment.exchange.requests(COLLECT)) == 7
    assert [r for r in deployment.exchange.requests() if r.status in (418, 429)] == []


def test_the_dispatcher_refuses_what_it_cannot_do(deployment: Deployment) -> None:
    import os

    with pytest.raises(ConfigurationError, match="QUEUE_URL is required"):
        dispatch(scheduled_event(), "request", os.environ)
    deployment.set_env(QUEUE_URL="https://sqs.eu-west-1.amazonaws.com/123456789012/work")
    message_id = "3f1b7c52-1d5e-4b7e-9a57-8f0e4c1d2a11"
    sqs_batch = {"Records": [{"eventSource": "aws:sqs", "messageId": message_id, "body": '{"account": "default"}'}]}
    with pytest.raises(InvalidEventError, match="not by an SQS batch"):
        dispatch(sqs_batch, "request", os.environ)

"""Hostile and careless inputs through the real handler on DynamoDB Local (which enforces DynamoDB's item and
name limits as AWS does; moto does not), secrets on moto's server, the exchange emulator on 127.0.0.1.

Every hostile event or secret must end in a specific error and a stored outcome record, quote nothing of a
secret anywhere, send nothing to the exchange, and leave the account able to collect on the next tick.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from auto_collector.errors import MAX_MESSAGE_CHARS, InvalidEventError, SecretError
from auto_collector.store import CollectorTable, event_key
from auto_collector.window import Duplicate, Grant, WindowPolicy
from tests.support.deployment import Deployment
from tests.support.dynamodb_local import DynamoDBLocal
from tests.support.events import scheduled_event
from tests.support.hostile import deep_json, hostile_events, hostile_secrets
from tests.support.table import create_table

pytestmark = pytest.mark.dynamodb_local

COLLECT = "/sapi/v1/portfolio/auto-collection"
HOSTILE = settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


def window_item(deployment: Deployment) -> dict[str, Any]:
    response = deployment.dynamodb.get_item(
        TableName=deployment.table,
        Key={"pk": {"S": f"ACCOUNT#{deployment.window_key}"}, "sk": {"S": "WINDOW"}},
        ConsistentRead=True,
    )
    return response.get("Item", {})  # type: ignore[no-any-return]


def newest_outcome(deployment: Deployment, count_before: int) -> dict[str, Any]:
    outcomes = deployment.outcomes()
    assert len(outcomes) == count_before + 1, "the refused invocation left no outcome record"
    invocation_id = deployment.contexts[-1].aws_request_id
    (record,) = [record for record in outcomes if record["invocationId"] == invocation_id]
    return record


def assert_still_collects(deployment: Deployment) -> None:
    before = deployment.exchange.accepted_collections()
    assert deployment.invoke(scheduled_event())["status"] == "collected"
    assert deployment.exchange.accepted_collections() == before + 1


def test_a_60_kb_event_id_is_refused_and_later_ticks_still_collect(local_deployment: Deployment) -> None:
    with pytest.raises(InvalidEventError, match="'id' must be a UUID") as raised:
        local_deployment.invoke(scheduled_event("e" * 60_000))
    assert len(str(raised.value)) < 400
    (record,) = local_deployment.outcomes()
    assert record["status"] == "failed" and record["error"]["type"] == "invalid_event"
    assert record["eventId"] is None and len(json.dumps(record)) < 5_000
    assert local_deployment.exchange.requests() == []

    assert_still_collects(local_deployment)
    assert_still_collects(local_deployment)
    assert local_deployment.exchange.accepted_collections() == 2


def test_event_ids_take_a_fixed_size_in_the_window_item(local_deployment: Deployment) -> None:
    event = scheduled_event()
    assert local_deployment.invoke(event)["status"] == "collected"
    names = [name for name in window_item(local_deployment) if name.startswith("event:")]
    assert names == [f"event:{event_key(event['id'])}"] and len(names[0]) == len("event:") + 32
    # the outcome record keeps the id as it arrived, and a redelivery is still recognised as one
    assert local_deployment.outcomes()[0]["eventId"] == event["id"]
    result = local_deployment.invoke(event)
    assert result["status"] == "duplicate"
    assert local_deployment.exchange.accepted_collections() == 1


def test_whatever_event_id_reaches_the_store_the_window_item_stays_small(dynamodb_local: DynamoDBLocal) -> None:
    # Below the event parser: even an id no event may carry takes 32 characters in the item.
    client, table = dynamodb_local.client(), f"window-{uuid.uuid4().hex[:8]}"
    create_table(client, table)
    store, policy, clock = (
        CollectorTable(client, table),
        WindowPolicy(limit=500, recv_window_ms=5_000),
        [1_800_000_000_000],
    )
    ids = ["e" * 60_000, "\ud800" * 1_000, "f" * 300_000]
    for event_id in ids:
        clock[0] += 1_000
        decision, _ = store.reserve("acct", policy, lambda: clock[0], lambda: 60_000, event_id, "invocation-1")
        assert isinstance(decision, Grant)
    item = client.get_item(TableName=table, Key={"pk": {"S": "ACCOUNT#acct"}, "sk": {"S": "WINDOW"}})["Item"]
    assert sorted(name for name in item if name.startswith("event:")) == sorted(f"event:{event_key(i)}" for i in ids)
    assert len(json.dumps(item)) < 2_000
    # a fresh container recognises the redelivery and names it by the id it was given
    again, _ = CollectorTable(client, table).reserve("acct", policy, lambda: clock[0], lambda: 60_000, ids[0], "other")
    assert isinstance(again, Duplicate) and again.event_id == ids[0] and again.original_invocation_id == "invocation-1"


def test_sqs_body_100k_levels_deep_ends_in_a_recorded_error(local_deployment: Deployment) -> None:
    message = {"eventSource": "aws:sqs", "messageId": str(uuid.uuid4()), "body": deep_json(100_000)}
    with pytest.raises(InvalidEventError, match="body is 200000 characters, more than 1024"):
        local_deployment.invoke({"Records": [message]})
    (record,) = local_deployment.outcomes()
    assert record["error"]["type"] == "invalid_event"
    assert_still_collects(local_deployment)


def test_lone_surrogate_secret_ends_in_a_recorded_error_that_reveals_nothing(
    local_deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    secret_text = "Zk9vQ3hiT2xk"
    local_deployment.put_secret(
        '{"apiKey": "%s", "apiSecret": "%s\\ud800%s"}' % (local_deployment.api_key, secret_text, secret_text[::-1])  # noqa: UP031
    )
    with pytest.raises(SecretError, match="'apiSecret' holds a lone surrogate") as raised:
        local_deployment.invoke({})
    (record,) = local_deployment.outcomes()
    assert record["error"]["type"] == "secret"
    shown = str(raised.value) + json.dumps(record) + "".join(capsys.readouterr())
    for part in (secret_text, secret_text[::-1], "\ud800", "\\ud800'", "position"):
        assert part not in shown
    assert local_deployment.exchange.requests() == []


def test_hostile_events_end_in_specific_recorded_errors_and_the_account_still_collects(
    local_deployment: Deployment,
) -> None:
    deployment = local_deployment

    @HOSTILE
    @given(hostile=hostile_events())
    def refused(hostile: object) -> None:
        count_before = len(deployment.outcomes())
        with pytest.raises(InvalidEventError) as raised:
            deployment.invoke(hostile)
        event(str(raised.value)[:36])  # which refusal: shown by --hypothesis-show-statistics
        assert len(str(raised.value)) <= MAX_MESSAGE_CHARS + 10
        record = newest_outcome(deployment, count_before)
        assert record["status"] == "failed" and record["trigger"] == "unknown"
        assert record["error"]["type"] == "invalid_event"
        assert deployment.exchange.requests() == []

    refused()
    assert_still_collects(deployment)
    assert len(window_item(deployment)) < 20  # seq, limits, one slot, one event: nothing the hostile events left


def test_hostile_secrets_end_in_specific_recorded_errors_that_quote_nothing_of_them(
    local_deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment = local_deployment
    good_secret = json.dumps({"apiKey": deployment.api_key, "privateKey": deployment.private_pem})
    canary = "Qz" + uuid.uuid4().hex[:10]

    @HOSTILE
    @given(secret=hostile_secrets(deployment.api_key, canary), trigger=st.sampled_from(["console", "schedule"]))
    def refused(secret: str, trigger: str) -> None:
        deployment.put_secret(secret)
        count_before = len(deployment.outcomes())
        capsys.readouterr()
        with pytest.raises(SecretError) as raised:
            deployment.invoke({} if trigger == "console" else scheduled_event())
        event(str(raised.value).split(": ", 1)[-1][:36])
        record = newest_outcome(deployment, count_before)
        assert record["status"] == "failed" and record["error"]["type"] == "secret"
        assert record["reservations"] == []
        shown = str(raised.value) + json.dumps(record) + "".join(capsys.readouterr())
        assert canary not in shown
        assert "7" * 20 not in shown and "position" not in shown and "codec" not in shown
        assert raised.value.__cause__ is None
        assert deployment.exchange.requests() == []

    refused()
    deployment.put_secret(good_secret)
    assert_still_collects(deployment)

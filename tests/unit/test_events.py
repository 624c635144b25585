import json
from typing import Any

import pytest

from auto_collector.errors import ECHO_LIMIT, InvalidEventError
from auto_collector.events import MAX_RECEIPT_HANDLE_CHARS, MAX_SQS_BODY_CHARS, Invocation, parse_event

SCHEDULED: dict[str, Any] = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2026-11-25T14:00:00Z",
    "region": "eu-west-1",
    "resources": ["arn:aws:events:eu-west-1:123456789012:rule/collector"],
    "detail": {},
}


def test_scheduled_event_is_a_schedule_trigger_with_its_id_and_time() -> None:
    assert parse_event(SCHEDULED) == Invocation(
        trigger="schedule", event_id=SCHEDULED["id"], scheduled_time="2026-11-25T14:00:00Z"
    )


def test_console_events() -> None:
    assert parse_event({}) == Invocation(trigger="console")
    assert parse_event({"dryRun": True}) == Invocation(trigger="console", dry_run=True)
    assert parse_event({"dryRun": False}) == Invocation(trigger="console")


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (None, "must be a JSON object, got NoneType"),
        ([], "must be a JSON object, got list"),
        ("run", "must be a JSON object, got str"),
        ({"key1": "value1", "key2": "value2", "key3": "value3"}, "unknown event keys ['key1', 'key2', 'key3']"),
        ({"dryRun": "true"}, "'dryRun' must be true or false (a JSON boolean), got str 'true'"),
        ({"dryRun": 1}, "got int 1"),
        ({**SCHEDULED, "source": "aws.s3"}, "source 'aws.s3'"),
        ({**SCHEDULED, "detail-type": "Object Created"}, "detail-type 'Object Created'"),
        ({**SCHEDULED, "extra": 1}, "unexpected keys ['extra']"),
        ({**SCHEDULED, "id": ""}, "no 'id'"),
        ({**SCHEDULED, "detail": {"x": 1}}, "'detail' must be an empty object"),
    ],
)
def test_anything_else_is_refused_with_a_specific_message(event: object, message: str) -> None:
    with pytest.raises(InvalidEventError) as raised:
        parse_event(event)
    assert message in str(raised.value)


def sqs(*bodies: str) -> dict[str, object]:
    return {
        "Records": [
            {"eventSource": "aws:sqs", "messageId": message_id(index), "body": body}
            for index, body in enumerate(bodies)
        ]
    }


def message_id(index: int) -> str:
    return f"6f1c2a3b-0000-4000-8000-{index:012d}"


def test_sqs_fan_out_batch() -> None:
    invocation = parse_event(sqs('{"account": "fund-a"}', '{"account": "fund-b"}'))
    assert invocation.trigger == "sqs" and invocation.accounts == ("fund-a", "fund-b")
    assert invocation.event_id_for("fund-b") == f"sqs:{message_id(1)}"


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (sqs('{"account": "fund-a"}', '{"account": "fund-a"}'), "names account 'fund-a' twice"),
        (sqs("not json"), "body is not JSON"),
        (sqs('{"account": "a", "extra": 1}'), "unknown keys ['extra']"),
        (sqs('{"account": "a"}', '{"account": "b", "dryRun": true}'), "mixes dry runs"),
        ({"Records": []}, "at least one record"),
    ],
)
def test_bad_sqs_batches_are_refused(event: object, message: str) -> None:
    with pytest.raises(InvalidEventError) as raised:
        parse_event(event)
    assert message in str(raised.value)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({**SCHEDULED, "id": "tick-1"}, "'id' must be a UUID"),
        ({**SCHEDULED, "id": SCHEDULED["id"] + "\n"}, "'id' must be a UUID"),
        ({**SCHEDULED, "id": "x" * 60_000}, "'id' must be a UUID"),
        ({**SCHEDULED, "time": "tomorrow"}, "'time' must be an ISO 8601 time"),
        ({**SCHEDULED, "time": "2026-11-25T14:00:00Z" + "0" * 500_000}, "'time' must be an ISO 8601 time"),
        (sqs(nested(100_000)), f"body is {200_000} characters, more than {MAX_SQS_BODY_CHARS}"),
        (sqs(nested(500) + "]"), "body is not JSON"),
        (sqs('{"account": ' + "9" * 5_000 + "}"), "more than 1024"),
        (sqs('{"account": "a", "dryRun": ' + "9" * 900 + "}"), "'dryRun' must be true or false"),
    ],
)
def test_ids_times_and_bodies_are_bounded_and_validated(event: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidEventError) as raised:
        parse_event(event)
    assert message in str(raised.value)


def test_sqs_receipt_handles_are_kept_per_account_and_bounded() -> None:
    event = sqs('{"account": "fund-a"}', '{"account": "fund-b"}')
    records = event["Records"]
    assert isinstance(records, list)
    records[0]["receiptHandle"] = "AQEB-handle-a"
    invocation = parse_event(event)
    # A hand-written event without receipt handles is still accepted: there is just nothing to hand back.
    assert invocation.receipt_handle_of("fund-a") == "AQEB-handle-a"
    assert invocation.receipt_handle_of("fund-b") is None
    for bad in ("", "h" * (MAX_RECEIPT_HANDLE_CHARS + 1), 7):
        records[0]["receiptHandle"] = bad
        with pytest.raises(InvalidEventError, match=r"record 0 receiptHandle must be a string of 1\.\.1024 characters"):
            parse_event(event)


def test_sqs_message_ids_must_be_uuids() -> None:
    event = {"Records": [{"eventSource": "aws:sqs", "messageId": "m" * 70_000, "body": '{"account": "a"}'}]}
    with pytest.raises(InvalidEventError, match="messageId must be a UUID"):
        parse_event(event)


def deep_list(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "hostile",
    ["x" * 500_000, 10**5_000, deep_list(100_000), "\ud800" * 100_000, {"k" * 1_000: "v" * 1_000}],
    ids=["500 KB string", "5000-digit number", "100k-deep list", "many surrogates", "long key and value"],
)
@pytest.mark.parametrize(
    "build",
    [
        lambda v: {**SCHEDULED, "source": v},
        lambda v: {**SCHEDULED, "id": v},
        lambda v: {**SCHEDULED, "time": v},
        lambda v: {"dryRun": v},
        lambda v: {"accounts": v},
        lambda v: {"dryRun": True, "unknown": v},
    ],
    ids=["source", "id", "time", "dryRun", "accounts", "an unknown key"],
)
def test_an_error_echoes_a_bounded_part_of_any_input(build, hostile: object) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidEventError) as raised:
        parse_event(build(hostile))
    text = str(raised.value)
    assert len(text) < 2 * ECHO_LIMIT + 400
    json.dumps(text).encode()  # storable: no lone surrogate survives into the message

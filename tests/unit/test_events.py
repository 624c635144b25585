from typing import Any

import pytest

from auto_collector.errors import InvalidEventError
from auto_collector.events import Invocation, parse_event

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
            {"eventSource": "aws:sqs", "messageId": f"m-{index}", "body": body} for index, body in enumerate(bodies)
        ]
    }


def test_sqs_fan_out_batch() -> None:
    invocation = parse_event(sqs('{"account": "fund-a"}', '{"account": "fund-b"}'))
    assert invocation.trigger == "sqs" and invocation.accounts == ("fund-a", "fund-b")
    assert invocation.event_id_for("fund-b") == "sqs:m-1"


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

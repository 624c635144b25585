"""The invocation events the function accepts, and the refusal of everything else.

Accepted:
- the EventBridge rule's scheduled event (``"source": "aws.events"``, ``"detail-type": "Scheduled Event"``);
- a console test event ``{}`` (runs a real collection);
- ``{"dryRun": true}`` (checks configuration, secret, key and window; sends nothing signed);
- either console event with ``"accounts": ["label", ...]`` to act on some of the configured accounts only;
- an SQS batch whose message bodies are ``{"account": "label"}`` (optionally ``"dryRun"``, and ``"tick"``: the
  scheduled event id the dispatcher fanned out, which then identifies duplicates instead of the message id):
  the fan-out mode's one message per account (dispatcher.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from .errors import InvalidEventError

#: "unknown" only labels the outcome of an event that was refused.
Trigger = Literal["schedule", "console", "sqs", "unknown"]

_SCHEDULED_EVENT_KEYS = frozenset(
    {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}
)
_CONSOLE_EVENT_KEYS = frozenset({"dryRun", "accounts"})
_SQS_BODY_KEYS = frozenset({"account", "dryRun", "tick"})
#: The dispatcher's tick is a scheduled event id (a UUID); anything much longer is not one.
_MAX_TICK_LENGTH = 128
_ACCEPTED = (
    'accepted events are an EventBridge scheduled event, {}, {"dryRun": true} (either may add '
    '"accounts": [...]) and an SQS batch of {"account": ...} messages'
)


@dataclass(frozen=True)
class Invocation:
    """What one invocation was asked to do."""

    trigger: Trigger
    dry_run: bool = False
    event_id: str | None = None
    scheduled_time: str | None = None
    #: The accounts to act on; None means every configured account.
    accounts: tuple[str, ...] | None = None
    #: Per-account delivery ids (the dispatcher's tick, else the SQS message id), used like `event_id` to refuse
    #: redeliveries and repeated dispatches.
    account_event_ids: tuple[tuple[str, str], ...] = ()
    #: SQS: per account, the message id (to hand a deferred message back to the queue) and when it was sent (ms).
    messages: tuple[tuple[str, str, int], ...] = ()

    def message_of(self, account: str) -> tuple[str, int] | None:
        """The SQS message id and sent time (ms) that asked for `account`, if it came from SQS."""
        for label, message_id, sent_ms in self.messages:
            if label == account:
                return message_id, sent_ms
        return None

    def event_id_for(self, account: str) -> str | None:
        return dict(self.account_event_ids).get(account, self.event_id)


def parse_event(event: object) -> Invocation:
    if not isinstance(event, Mapping):
        raise InvalidEventError(f"the event must be a JSON object, got {type(event).__name__}; {_ACCEPTED}")
    if event.get("source") == "aws.events" or "detail-type" in event:
        return _scheduled(event)
    if "Records" in event:
        return _sqs(event)
    return _console(event)


def _scheduled(event: Mapping[str, object]) -> Invocation:
    unknown = sorted(set(event) - _SCHEDULED_EVENT_KEYS)
    if unknown:
        raise InvalidEventError(f"scheduled event has unexpected keys {unknown}; {_ACCEPTED}")
    if event.get("source") != "aws.events" or event.get("detail-type") != "Scheduled Event":
        raise InvalidEventError(
            "only EventBridge scheduled events are accepted "
            f"(source 'aws.events', detail-type 'Scheduled Event'), got source {event.get('source')!r} "
            f"and detail-type {event.get('detail-type')!r}"
        )
    event_id, time = event.get("id"), event.get("time")
    if not isinstance(event_id, str) or not event_id:
        raise InvalidEventError("scheduled event has no 'id' string")
    if not isinstance(time, str) or not time:
        raise InvalidEventError("scheduled event has no 'time' string")
    detail = event.get("detail", {})
    if not isinstance(detail, Mapping) or detail:
        raise InvalidEventError("scheduled event 'detail' must be an empty object")
    return Invocation(trigger="schedule", event_id=event_id, scheduled_time=time)


def _console(event: Mapping[str, object]) -> Invocation:
    unknown = sorted(str(key) for key in set(event) - _CONSOLE_EVENT_KEYS)
    if unknown:
        raise InvalidEventError(f"unknown event keys {unknown}; {_ACCEPTED}")
    accounts = event.get("accounts")
    if accounts is not None and (
        not isinstance(accounts, list) or not accounts or not all(isinstance(a, str) and a for a in accounts)
    ):
        raise InvalidEventError(f"'accounts' must be a non-empty list of account labels, got {accounts!r}")
    return Invocation(
        trigger="console",
        dry_run=_dry_run_flag(event),
        accounts=tuple(dict.fromkeys(accounts)) if accounts else None,
    )


def _dry_run_flag(document: Mapping[str, object]) -> bool:
    dry_run = document.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise InvalidEventError(
            f"'dryRun' must be true or false (a JSON boolean), got {type(dry_run).__name__} {dry_run!r}"
        )
    return dry_run


def _sqs(event: Mapping[str, object]) -> Invocation:
    records = event.get("Records")
    if set(event) != {"Records"} or not isinstance(records, list) or not records:
        raise InvalidEventError(f"an SQS event must be {{'Records': [...]}} with at least one record; {_ACCEPTED}")
    accounts: dict[str, str] = {}
    messages: list[tuple[str, str, int]] = []
    dry_runs = set()
    for index, record in enumerate(records):
        if not isinstance(record, Mapping) or record.get("eventSource") != "aws:sqs":
            raise InvalidEventError(f"record {index} is not an SQS message (eventSource 'aws:sqs')")
        message_id, body = record.get("messageId"), record.get("body")
        if not isinstance(message_id, str) or not isinstance(body, str):
            raise InvalidEventError(f"SQS record {index} has no messageId/body strings")
        try:
            document = json.loads(body)
        except json.JSONDecodeError:
            raise InvalidEventError(f'SQS record {index} body is not JSON; expected {{"account": "label"}}') from None
        if not isinstance(document, Mapping) or not isinstance(document.get("account"), str):
            raise InvalidEventError(f'SQS record {index} body must be {{"account": "label"}}')
        unknown = sorted(set(document) - _SQS_BODY_KEYS)
        if unknown:
            raise InvalidEventError(f"SQS record {index} body has unknown keys {unknown}")
        if document["account"] in accounts:
            # Each message id guards its account against redelivery; two in one batch cannot both be kept.
            raise InvalidEventError(
                f"SQS batch names account {document['account']!r} twice; send one message per account per round"
            )
        tick = document.get("tick")
        if tick is not None and (not isinstance(tick, str) or not 0 < len(tick) <= _MAX_TICK_LENGTH):
            raise InvalidEventError(f"SQS record {index} 'tick' must be a string of 1-{_MAX_TICK_LENGTH} characters")
        accounts[document["account"]] = f"tick:{tick}" if tick else f"sqs:{message_id}"
        messages.append((document["account"], message_id, _sent_ms(record)))
        dry_runs.add(_dry_run_flag(document))
    if len(dry_runs) > 1:
        raise InvalidEventError("an SQS batch mixes dry runs and real collections; send them separately")
    return Invocation(
        trigger="sqs",
        dry_run=dry_runs.pop(),
        accounts=tuple(accounts),
        account_event_ids=tuple(accounts.items()),
        messages=tuple(messages),
    )


def _sent_ms(record: Mapping[str, object]) -> int:
    """SentTimestamp of an SQS record (0 when absent, as in a hand-written test event)."""
    attributes = record.get("attributes")
    sent = attributes.get("SentTimestamp") if isinstance(attributes, Mapping) else None
    return int(sent) if isinstance(sent, str) and sent.isdigit() and len(sent) <= 16 else 0

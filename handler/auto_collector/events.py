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
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from .errors import InvalidEventError, echo

#: "unknown" only labels the outcome of an event that was refused.
Trigger = Literal["schedule", "console", "sqs", "unknown"]

_SCHEDULED_EVENT_KEYS = frozenset(
    {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}
)
_CONSOLE_EVENT_KEYS = frozenset({"dryRun", "accounts"})
_SQS_BODY_KEYS = frozenset({"account", "dryRun", "tick"})
#: EventBridge event ids and SQS message ids are both UUIDs; nothing longer or stranger is stored.
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
#: EventBridge's `time`, e.g. "2026-11-25T14:00:00Z" (fractions and offsets tolerated).
_EVENT_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)", re.ASCII)
#: The longest SQS body read: {"account": <64-character label>, "dryRun": false} fits many times over, and
#: nothing this short can nest deep enough or hold a number long enough to break the JSON parser.
MAX_SQS_BODY_CHARS = 1_024
#: The longest receipt handle kept (SQS documents up to 1,024 characters).
MAX_RECEIPT_HANDLE_CHARS = 1_024
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
    #: SQS: per account, the receipt handle of its message (to make a deferred message visible when weight frees).
    receipt_handles: tuple[tuple[str, str], ...] = ()

    def message_of(self, account: str) -> tuple[str, int] | None:
        """The SQS message id and sent time (ms) that asked for `account`, if it came from SQS."""
        for label, message_id, sent_ms in self.messages:
            if label == account:
                return message_id, sent_ms
        return None

    def receipt_handle_of(self, account: str) -> str | None:
        """The receipt handle of the SQS message that asked for `account` (None: not from SQS, or none given)."""
        return dict(self.receipt_handles).get(account)

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
    unknown = sorted(str(key) for key in set(event) - _SCHEDULED_EVENT_KEYS)
    if unknown:
        raise InvalidEventError(f"scheduled event has unexpected keys {echo(unknown)}; {_ACCEPTED}")
    if event.get("source") != "aws.events" or event.get("detail-type") != "Scheduled Event":
        raise InvalidEventError(
            "only EventBridge scheduled events are accepted "
            f"(source 'aws.events', detail-type 'Scheduled Event'), got source {echo(event.get('source'))} "
            f"and detail-type {echo(event.get('detail-type'))}"
        )
    event_id, time = event.get("id"), event.get("time")
    if not isinstance(event_id, str) or not event_id:
        raise InvalidEventError("scheduled event has no 'id' string")
    if not _is_tick(event_id, console=False):
        raise InvalidEventError(
            "scheduled event 'id' must be a UUID (an EventBridge rule's) or the scheduled time (the template's "
            f"EventBridge Scheduler input), got {echo(event_id)}"
        )
    if not isinstance(time, str) or not time:
        raise InvalidEventError("scheduled event has no 'time' string")
    if not _EVENT_TIME.fullmatch(time):
        raise InvalidEventError(
            f"scheduled event 'time' must be an ISO 8601 time like 2026-11-25T14:00:00Z, got {echo(time)}"
        )
    detail = event.get("detail", {})
    if not isinstance(detail, Mapping) or detail:
        raise InvalidEventError("scheduled event 'detail' must be an empty object")
    return Invocation(trigger="schedule", event_id=event_id, scheduled_time=time)


def _console(event: Mapping[str, object]) -> Invocation:
    unknown = sorted(str(key) for key in set(event) - _CONSOLE_EVENT_KEYS)
    if unknown:
        raise InvalidEventError(f"unknown event keys {echo(unknown)}; {_ACCEPTED}")
    accounts = event.get("accounts")
    if accounts is not None and (
        not isinstance(accounts, list) or not accounts or not all(isinstance(a, str) and a for a in accounts)
    ):
        raise InvalidEventError(f"'accounts' must be a non-empty list of account labels, got {echo(accounts)}")
    return Invocation(
        trigger="console",
        dry_run=_dry_run_flag(event),
        accounts=tuple(dict.fromkeys(accounts)) if accounts else None,
    )


def _dry_run_flag(document: Mapping[str, object]) -> bool:
    dry_run = document.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise InvalidEventError(
            f"'dryRun' must be true or false (a JSON boolean), got {type(dry_run).__name__} {echo(dry_run)}"
        )
    return dry_run


def _sqs(event: Mapping[str, object]) -> Invocation:
    records = event.get("Records")
    if set(event) != {"Records"} or not isinstance(records, list) or not records:
        raise InvalidEventError(f"an SQS event must be {{'Records': [...]}} with at least one record; {_ACCEPTED}")
    accounts: dict[str, str] = {}
    messages: list[tuple[str, str, int]] = []
    receipt_handles: list[tuple[str, str]] = []
    dry_runs = set()
    for index, record in enumerate(records):
        if not isinstance(record, Mapping) or record.get("eventSource") != "aws:sqs":
            raise InvalidEventError(f"record {index} is not an SQS message (eventSource 'aws:sqs')")
        message_id, body = record.get("messageId"), record.get("body")
        if not isinstance(message_id, str) or not isinstance(body, str):
            raise InvalidEventError(f"SQS record {index} has no messageId/body strings")
        if not _UUID.fullmatch(message_id):
            raise InvalidEventError(
                f"SQS record {index} messageId must be a UUID, as SQS sends, got {echo(message_id)}"
            )
        receipt_handle = record.get("receiptHandle")
        if receipt_handle is not None and not (
            isinstance(receipt_handle, str) and 0 < len(receipt_handle) <= MAX_RECEIPT_HANDLE_CHARS
        ):
            raise InvalidEventError(
                f"SQS record {index} receiptHandle must be a string of 1..{MAX_RECEIPT_HANDLE_CHARS} characters, "
                f"as SQS sends, got {type(receipt_handle).__name__} of length "
                f"{len(receipt_handle) if isinstance(receipt_handle, str) else '-'}"
            )
        if len(body) > MAX_SQS_BODY_CHARS:
            raise InvalidEventError(
                f"SQS record {index} body is {len(body)} characters, more than {MAX_SQS_BODY_CHARS}; "
                'expected {"account": "label"}'
            )
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
            raise InvalidEventError(f'SQS record {index} body is not JSON; expected {{"account": "label"}}') from None
        if not isinstance(document, Mapping) or not isinstance(document.get("account"), str):
            raise InvalidEventError(f'SQS record {index} body must be {{"account": "label"}}')
        unknown = sorted(set(document) - _SQS_BODY_KEYS)
        if unknown:
            raise InvalidEventError(f"SQS record {index} body has unknown keys {echo(unknown)}")
        if document["account"] in accounts:
            # Each message id guards its account against redelivery; two in one batch cannot both be kept.
            raise InvalidEventError(
                f"SQS batch names account {echo(document['account'])} twice; send one message per account per round"
            )
        tick = document.get("tick")
        if tick is not None and not (isinstance(tick, str) and _is_tick(tick)):
            raise InvalidEventError(
                f"SQS record {index} 'tick' must be a scheduled event id (the dispatcher's), got {echo(tick)}"
            )
        accounts[document["account"]] = f"tick:{tick}" if tick else f"sqs:{message_id}"
        messages.append((document["account"], message_id, _sent_ms(record)))
        if receipt_handle is not None:
            receipt_handles.append((document["account"], receipt_handle))
        dry_runs.add(_dry_run_flag(document))
    if len(dry_runs) > 1:
        raise InvalidEventError("an SQS batch mixes dry runs and real collections; send them separately")
    return Invocation(
        trigger="sqs",
        dry_run=dry_runs.pop(),
        accounts=tuple(accounts),
        account_event_ids=tuple(accounts.items()),
        messages=tuple(messages),
        receipt_handles=tuple(receipt_handles),
    )


def _is_tick(value: str, console: bool = True) -> bool:
    """A scheduled event id: a UUID, or the scheduled time the template's Scheduler puts there; the dispatcher's
    ticks may also be "console:" and the UUID of a hand-started dispatch."""
    if console:
        value = value.removeprefix("console:")
    return bool(_UUID.fullmatch(value) or _EVENT_TIME.fullmatch(value))


def _sent_ms(record: Mapping[str, object]) -> int:
    """SentTimestamp of an SQS record (0 when absent, as in a hand-written test event)."""
    attributes = record.get("attributes")
    sent = attributes.get("SentTimestamp") if isinstance(attributes, Mapping) else None
    return int(sent) if isinstance(sent, str) and sent.isdigit() and len(sent) <= 16 else 0


def delivery_id(event: object) -> str | None:
    """The id of what delivered this invocation, for log correlation: the scheduled event's id, the SQS message id
    of a one-message batch (a batch of several joins at most 10 of them). Never raises, whatever the event is: it
    runs before the event is validated, and an id that is not a short printable string is ignored."""
    if not isinstance(event, Mapping):
        return None
    candidate = event.get("id")
    if event.get("source") == "aws.events" and _short_text(candidate):
        return str(candidate)
    records = event.get("Records")
    if isinstance(records, list) and records:
        ids = [r.get("messageId") for r in records[:10] if isinstance(r, Mapping)]
        if ids and all(_short_text(i) for i in ids):
            return ",".join(str(i) for i in ids)
    return None


def _short_text(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 64 and value.isprintable()

"""The invocation events the function accepts, and the refusal of everything else.

Accepted:
- the EventBridge rule's scheduled event (``"source": "aws.events"``, ``"detail-type": "Scheduled Event"``);
- a console test event ``{}`` (runs a real collection);
- ``{"dryRun": true}`` (checks configuration, secret, key and window; sends nothing signed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from .errors import InvalidEventError

#: "unknown" only labels the outcome of an event that was refused.
Trigger = Literal["schedule", "console", "unknown"]

_SCHEDULED_EVENT_KEYS = frozenset(
    {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}
)
_CONSOLE_EVENT_KEYS = frozenset({"dryRun"})
_ACCEPTED = 'accepted events are an EventBridge scheduled event, {} and {"dryRun": true}'


@dataclass(frozen=True)
class Invocation:
    """What one invocation was asked to do."""

    trigger: Trigger
    dry_run: bool = False
    event_id: str | None = None
    scheduled_time: str | None = None


def parse_event(event: object) -> Invocation:
    if not isinstance(event, Mapping):
        raise InvalidEventError(f"the event must be a JSON object, got {type(event).__name__}; {_ACCEPTED}")
    if event.get("source") == "aws.events" or "detail-type" in event:
        return _scheduled(event)
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
    dry_run = event.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise InvalidEventError(
            f"'dryRun' must be true or false (a JSON boolean), got {type(dry_run).__name__} {dry_run!r}"
        )
    return Invocation(trigger="console", dry_run=dry_run)

"""Invocation events as AWS delivers them, for tests."""

from __future__ import annotations

import uuid
from typing import Any


def scheduled_event(event_id: str | None = None, time: str = "2026-11-25T14:00:00Z") -> dict[str, Any]:
    """The classic EventBridge rule's scheduled event (a fresh id unless one is given)."""
    return {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": time,
        "region": "eu-west-1",
        "resources": ["arn:aws:events:eu-west-1:123456789012:rule/fund-auto-collector"],
        "detail": {},
    }

"""The one timestamp format of the table: ISO 8601 UTC with milliseconds, "2026-12-01T03:52:46.123Z".

Outcome records and their sort keys are written in it, so it sorts as text in time order.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


def iso(epoch_ms: int) -> str:
    seconds, millis = divmod(epoch_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def iso_seconds(epoch_ms: int) -> str:
    """The same to the second, for people: "2026-12-01T03:52:46Z"."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_ms // 1000))


def parse_iso_ms(text: str) -> int:
    """Epoch milliseconds of an ISO 8601 time (UTC when it names no zone); 0 when `text` is not one."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return 0
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)

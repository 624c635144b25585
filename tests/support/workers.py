"""Code run in separate processes by the concurrency tests (importable by multiprocessing's spawn)."""

from __future__ import annotations

import os
from typing import Any


def invoke_repeatedly(environment: dict[str, str], count: int, start: Any, results: Any) -> None:
    """Wait for `start`, then invoke the handler `count` times as one warm Lambda container would."""
    os.environ.update(environment)
    from auto_collector.errors import CollectorError
    from auto_collector.handler import lambda_handler
    from tests.support.lambda_context import FakeLambdaContext

    start.wait()
    statuses = []
    for _ in range(count):
        try:
            statuses.append(lambda_handler({}, FakeLambdaContext())["status"])
        except CollectorError as error:
            statuses.append(f"error:{error.kind}:{error}")
    results.put(statuses)

"""Code run in separate processes by the concurrency tests (importable by multiprocessing's spawn)."""

from __future__ import annotations

import os
from typing import Any

#: What a worker process takes from the test's environment to reach the same emulators, secret and table.
WORKER_VARIABLES = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION",
    "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    "SECRET_ID", "TABLE_NAME", "BINANCE_BASE_URL", "MAX_CALLS_PER_HOUR",
    "POWERTOOLS_TRACE_DISABLED", "POWERTOOLS_METRICS_NAMESPACE",
)  # fmt: skip


def worker_environment() -> dict[str, str]:
    """The test's environment as a worker process needs it (variables not set are left out)."""
    return {name: os.environ[name] for name in WORKER_VARIABLES if name in os.environ}


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


def invoke_accounts_repeatedly(environment: dict[str, str], count: int, start: Any, results: Any) -> None:
    """Like `invoke_repeatedly` for a deployment of several accounts: puts each invocation's per-account statuses."""
    os.environ.update(environment)
    from auto_collector.errors import CollectorError
    from auto_collector.handler import lambda_handler
    from tests.support.lambda_context import FakeLambdaContext

    start.wait()
    invocations = []
    for _ in range(count):
        try:
            result = lambda_handler({}, FakeLambdaContext())
            invocations.append([account["status"] for account in result.get("accounts", [result])])
        except CollectorError as error:
            invocations.append([f"error:{error.kind}:{error}"])
    results.put(invocations)

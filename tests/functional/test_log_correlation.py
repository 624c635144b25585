"""Every log line of an invocation carries its delivery's id, and the balance check publishes what moved (issue 10)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from auto_collector.events import delivery_id
from tests.support.deployment import Deployment
from tests.support.events import scheduled_event


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """The function's log lines (its logger keeps the stream it was created with, so capsys cannot see them)."""
    from auto_collector.handler import logger

    handler = logger.logger_handler
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        yield stream
    finally:
        handler.setStream(previous)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_every_log_line_of_a_scheduled_invocation_carries_the_event_id(
    deployment: Deployment, log_lines: io.StringIO
) -> None:
    event = scheduled_event()
    deployment.invoke(event)
    logged = json_lines(log_lines.getvalue())
    assert logged and {line["correlation_id"] for line in logged} == {event["id"]}


def test_a_console_test_is_correlated_by_its_request_id(deployment: Deployment, log_lines: io.StringIO) -> None:
    deployment.invoke({})
    logged = json_lines(log_lines.getvalue())
    assert logged and {line["correlation_id"] for line in logged} == {deployment.contexts[-1].aws_request_id}


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            {"source": "aws.events", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa"},
            "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        ),
        ({"Records": [{"messageId": "m-1"}, {"messageId": "m-2"}]}, "m-1,m-2"),
        ({"source": "aws.events", "id": "x" * 60_000}, None),  # not echoed into every log line
        ({"Records": [{"messageId": {"nested": 1}}]}, None),
        ([], None),
        ({}, None),
    ],
)
def test_the_delivery_id_is_read_without_ever_failing(event: Any, expected: str | None) -> None:
    assert delivery_id(event) == expected


def test_the_balance_check_publishes_how_many_assets_moved(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment.exchange.set_balances(
        "default",
        {"USDT": {"umWalletBalance": "10"}, "BTC": {"cmWalletBalance": "0.5"}, "BNB": {"umWalletBalance": "1"}},
    )
    deployment.set_env(BALANCE_CHECK="record-only")
    deployment.invoke({})
    emf = [line for line in json_lines(capsys.readouterr().out) if "_aws" in line]
    assert [line["AssetsMoved"] for line in emf if "AssetsMoved" in line] == [[2.0]]  # BNB never moves

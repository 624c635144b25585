"""Shared fixtures. AWS is moto's server (real HTTP) or DynamoDB Local; the exchange is our emulator
on 127.0.0.1. Global warm state (runtime objects, Powertools caches) is reset around every test."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from localdev.exchange_emulator import ExchangeEmulator
from tests.support.cold_start import cold_start
from tests.support.deployment import Deployment, deploy
from tests.support.dynamodb_local import DynamoDBLocal, free_port

REGION = "eu-west-1"


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_SECRETS_MANAGER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "FundAutoCollector")
    cold_start()
    yield
    cold_start()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session")
def dynamodb_local() -> Iterator[DynamoDBLocal]:
    server = DynamoDBLocal().start()
    yield server
    server.stop()


@pytest.fixture
def exchange() -> Iterator[ExchangeEmulator]:
    with ExchangeEmulator() as emulator:
        yield emulator


@pytest.fixture
def deployment(monkeypatch: pytest.MonkeyPatch, exchange: ExchangeEmulator, moto_endpoint: str) -> Deployment:
    """A collector on moto's server (DynamoDB and Secrets Manager) and the exchange emulator."""
    return deploy(monkeypatch, exchange, moto_endpoint, moto_endpoint)


@pytest.fixture
def local_deployment(
    monkeypatch: pytest.MonkeyPatch, exchange: ExchangeEmulator, moto_endpoint: str, dynamodb_local: DynamoDBLocal
) -> Deployment:
    """A collector whose DynamoDB is DynamoDB Local (atomic conditional writes) and secrets on moto."""
    return deploy(monkeypatch, exchange, dynamodb_local.endpoint, moto_endpoint)


@pytest.fixture
def travel(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """Move every clock of this process (the function, moto, the emulator) forward by `milliseconds`: time between
    scheduled ticks is travelled, not waited."""
    offset_ns = [0]
    real_time_ns = time.time_ns
    monkeypatch.setattr(time, "time_ns", lambda: real_time_ns() + offset_ns[0])

    def forward(milliseconds: int) -> None:
        offset_ns[0] += milliseconds * 1_000_000

    return forward

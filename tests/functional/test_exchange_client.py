"""The exchange client over HTTP against the emulator: one transport for both signed requests, and the time
each answer really took recorded whatever became of it."""

import pytest

from auto_collector.credentials import ApiCredentials
from auto_collector.exchange import BinanceClient
from auto_collector.signing import HmacSigner
from localdev.exchange_emulator import AUTO_COLLECTION_PATH, BALANCE_PATH, ApiCredential, ExchangeEmulator, Fault


@pytest.fixture
def client_and_credentials(exchange: ExchangeEmulator) -> tuple[BinanceClient, ApiCredentials]:
    exchange.add_credential(ApiCredential(api_key="unit-key", hmac_secret="unit-secret"))
    return BinanceClient(exchange.base_url), ApiCredentials(api_key="unit-key", signer=HmacSigner("unit-secret"))


def test_a_balance_answer_that_cannot_be_parsed_is_rejected_with_its_real_latency(
    exchange: ExchangeEmulator, client_and_credentials: tuple[BinanceClient, ApiCredentials]
) -> None:
    client, credentials = client_and_credentials
    exchange.inject(Fault(path=BALANCE_PATH, status=200, body='{"not": "a list"}', delay_s=0.2))
    result, balances = client.balances(credentials, recv_window_ms=5_000, timeout_s=5.0)
    assert (result.verdict, result.http_status, result.code) == ("rejected", 200, None)
    assert result.message == "unexpected balance response" and balances == {}
    assert result.latency_ms >= 200  # the time the answer took, not 0
    assert result.used_weight_1m == 20  # what the exchange reported with it


@pytest.mark.parametrize("path", [AUTO_COLLECTION_PATH, BALANCE_PATH])
def test_both_requests_share_one_transport_classification(
    exchange: ExchangeEmulator, client_and_credentials: tuple[BinanceClient, ApiCredentials], path: str
) -> None:
    client, credentials = client_and_credentials
    exchange.inject(Fault(path=path, drop=True), Fault(path=path, delay_s=1.0))
    results = []
    for _ in range(2):
        if path == AUTO_COLLECTION_PATH:
            results.append(client.auto_collect(credentials, client.server_now_ms(), 5_000, timeout_s=0.5))
        else:
            results.append(client.balances(credentials, 5_000, timeout_s=0.5)[0])
    dropped, timed_out = results
    assert (dropped.verdict, dropped.http_status) == ("retryable", 0)
    assert dropped.message.startswith(("connection failed (", "the answer could not be read ("))
    assert (timed_out.verdict, timed_out.http_status) == ("retryable", 0)
    assert (
        timed_out.message == "timed out waiting for the exchange" and timed_out.latency_ms >= 300
    )  # the read timeout: 2/3 of the 0.5 s bound

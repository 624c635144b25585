"""The Lambda handler end to end: moto's server for Secrets Manager and DynamoDB, the exchange emulator
on 127.0.0.1 verifying signatures and timing. Nothing inside our own code is mocked."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from auto_collector.errors import (
    ConfigurationError,
    DeadlineError,
    ExchangeRateLimitedError,
    ExchangeRejectedError,
    ExchangeUnavailableError,
    InvalidEventError,
    SecretError,
)
from localdev.exchange_emulator import (
    API_RESTRICTIONS_PATH,
    AUTO_COLLECTION_PATH,
    BALANCE_PATH,
    SPOT_ACCOUNT_PATH,
    ApiCredential,
    Fault,
    RecordedRequest,
)
from tests.support.deployment import Deployment
from tests.support.events import scheduled_event

EVENTS = Path(__file__).resolve().parents[2] / "events"
SCHEDULED = scheduled_event("2f0b0a4e-7f7e-4b4e-9a51-6f1f0d5c9a11")


def collections(deployment: Deployment) -> list[RecordedRequest]:
    return deployment.exchange.requests(AUTO_COLLECTION_PATH)


def test_scheduled_event_collects_and_records_the_outcome(deployment: Deployment) -> None:
    result = deployment.invoke(SCHEDULED)

    assert result["status"] == "collected"
    assert result["trigger"] == "schedule"
    assert result["windowUsed"] == 1 and result["windowLimit"] == 500
    assert result["httpStatus"] == 200 and result["exchangeCode"] is None
    sent = collections(deployment)
    assert [(r.status, r.executed, r.api_key) for r in sent] == [(200, True, deployment.api_key)]
    assert set(sent[0].params) == {"recvWindow", "timestamp", "signature"}
    assert sent[0].params["recvWindow"] == "5000"

    (record,) = deployment.outcomes()
    assert record["status"] == "collected"
    assert record["eventId"] == SCHEDULED["id"] and record["scheduledTime"] == SCHEDULED["time"]
    assert record["invocationId"] == deployment.contexts[-1].aws_request_id
    assert record["keyType"] == "ed25519"
    assert record["reservations"] == [0]
    (attempt,) = record["attemptLog"]
    assert attempt["httpStatus"] == 200 and attempt["verdict"] == "success"
    assert attempt["timestampMs"] == int(sent[0].params["timestamp"])
    assert attempt["usedWeight1m"] == 1500 + 1  # and the key's restrictions, read once before it
    # ...with the key's account (/api weight, not /sapi): its uid names the window spent
    paths = [r.path for r in deployment.exchange.requests()]
    assert paths == [API_RESTRICTIONS_PATH, SPOT_ACCOUNT_PATH, AUTO_COLLECTION_PATH]
    assert record["windowKey"] == deployment.window_key
    assert record["key"]["ipRestricted"] is True and record["key"]["warnings"] == []
    assert record["expiresAt"] - time.time() == pytest.approx(90 * 86400, abs=120)


def test_console_test_event_collects(deployment: Deployment) -> None:
    assert deployment.invoke({})["status"] == "collected"
    assert deployment.exchange.accepted_collections() == 1
    assert deployment.outcomes()[0]["trigger"] == "console"


def test_dry_run_reads_the_key_and_balances_sends_no_collection_and_reports_the_window(
    deployment: Deployment,
) -> None:
    deployment.invoke({})
    deployment.exchange.set_balances("default", {"USDT": {"umWalletBalance": "12.5"}, "BNB": {"cmWalletBalance": "1"}})
    seen = len(deployment.exchange.requests())
    result = deployment.invoke({"dryRun": True})

    assert result["status"] == "dry_run"
    assert result["windowUsed"] == 1
    assert len(collections(deployment)) == 1  # only the earlier real one
    # The dry run reads the key's restrictions afresh (a warm real run would not) and the balances, both signed.
    new = deployment.exchange.requests()[seen:]
    assert [(r.path, r.status) for r in new] == [(API_RESTRICTIONS_PATH, 200), (BALANCE_PATH, 200)]
    assert result["wouldMove"] == {"USDT": "12.5"}  # never BNB
    assert result["key"]["permissions"] == [
        "enableReading",
        "enableSpotAndMarginTrading",
        "enablePortfolioMarginTrading",
    ]
    assert sorted(r["status"] for r in deployment.outcomes()) == ["collected", "dry_run"]


def test_every_event_file_is_accepted(deployment: Deployment) -> None:
    files = sorted(EVENTS.glob("*.json"))
    if not files:
        pytest.skip("events/ not written yet")
    statuses = {f.name: deployment.invoke(json.loads(f.read_text()))["status"] for f in files}
    assert set(statuses.values()) <= {"collected", "dry_run"}
    assert statuses.get("dry-run.json", "dry_run") == "dry_run"


def test_budget_exhausted_returns_normally_with_the_next_free_slot(deployment: Deployment) -> None:
    deployment.set_env(MAX_CALLS_PER_HOUR="2")
    first = deployment.invoke({})
    deployment.invoke({})
    third = deployment.invoke(SCHEDULED)

    assert third["status"] == "budget_exhausted"
    assert third["windowUsed"] == 2 and third["windowLimit"] == 2
    assert third["attempts"] == 0
    assert len(collections(deployment)) == 2
    outcomes = {r["status"]: r for r in deployment.outcomes()}
    assert outcomes["budget_exhausted"]["nextSlotAt"] == third["nextSlotAt"]
    # the first reservation frees one hour (plus recvWindow and the 1 s tolerance) after it was signed
    first_signed = collections(deployment)[0].params["timestamp"]
    frees_at_ms = int(first_signed) + 3_600_000 + 5_000 + 1_000
    assert third["nextSlotAt"] == time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(frees_at_ms // 1000)) + (
        f".{frees_at_ms % 1000:03d}Z"
    )
    assert first["status"] == "collected"


def rsa_secret(api_key: str) -> tuple[str, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"rsa pass phrase"),
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return json.dumps({"apiKey": api_key, "privateKey": private, "privateKeyPassphrase": "rsa pass phrase"}), public


def test_hmac_and_passphrase_protected_rsa_keys_are_accepted_by_the_exchange(deployment: Deployment) -> None:
    deployment.exchange.add_credential(ApiCredential(api_key="hmac-key", hmac_secret="hmac-secret-value"))
    deployment.put_secret(json.dumps({"apiKey": "hmac-key", "apiSecret": "hmac-secret-value"}))
    assert deployment.invoke({})["status"] == "collected"

    value, public = rsa_secret("rsa-key")
    deployment.exchange.add_credential(ApiCredential(api_key="rsa-key", public_key_pem=public))
    deployment.put_secret(value)
    assert deployment.invoke({})["status"] == "collected"
    assert [r.status for r in collections(deployment)] == [200, 200]
    assert [r["keyType"] for r in sorted(deployment.outcomes(), key=lambda r: r["startedAt"])] == ["hmac", "rsa"]


# --- exchange faults -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Fault(status=500),
        Fault(status=502, body="<html>Bad Gateway</html>"),
        Fault(status=503, execute=True),
        Fault(drop=True),
    ],
    ids=["500", "502-html", "503-executed", "dropped-connection"],
)
def test_transient_failures_are_retried_with_a_new_reservation_each(deployment: Deployment, fault: Fault) -> None:
    deployment.exchange.inject(fault)
    result = deployment.invoke({})

    assert result["status"] == "collected"
    assert result["attempts"] == 2
    assert len(collections(deployment)) == 2
    (record,) = deployment.outcomes()
    assert record["reservations"] == [0, 1]
    assert [a["verdict"] for a in record["attemptLog"]] == ["retryable", "success"]
    assert result["windowUsed"] == 2


def test_timeout_is_retried_and_bounded(deployment: Deployment) -> None:
    deployment.set_env(HTTP_TIMEOUT_SECONDS="1")
    deployment.exchange.inject(Fault(delay_s=3))
    started = time.monotonic()
    result = deployment.invoke({})
    assert result["status"] == "collected"
    assert time.monotonic() - started < 3
    (record,) = deployment.outcomes()
    assert record["attemptLog"][0]["message"] == "timed out waiting for the exchange"


def test_persistent_5xx_fails_after_max_attempts_with_the_exchange_status(deployment: Deployment) -> None:
    deployment.exchange.inject(Fault(status=500, count=5))
    with pytest.raises(ExchangeUnavailableError) as raised:
        deployment.invoke({})
    assert raised.value.http_status == 500
    assert len(collections(deployment)) == 3
    (record,) = deployment.outcomes()
    assert record["status"] == "failed"
    assert record["error"]["type"] == "exchange_unavailable" and record["error"]["httpStatus"] == 500
    assert record["reservations"] == [0, 1, 2]


@pytest.mark.parametrize(
    ("fault", "error", "status", "code"),
    [
        (Fault(status=429, code=-1003, retry_after=60), ExchangeRateLimitedError, 429, -1003),
        (Fault(status=418, code=-1003, retry_after=7200), ExchangeRateLimitedError, 418, -1003),
        (Fault(status=451), ExchangeRejectedError, 451, 0),  # Binance sends code 0 with 451
        (Fault(status=400, code=-21001), ExchangeRejectedError, 400, -21001),
        (Fault(status=403), ExchangeRejectedError, 403, None),
    ],
    ids=["429", "418", "451", "not-portfolio-margin", "waf-403"],
)
def test_refusals_are_never_retried(
    deployment: Deployment, fault: Fault, error: type[Exception], status: int, code: int | None
) -> None:
    deployment.exchange.inject(fault)
    with pytest.raises(error) as raised:
        deployment.invoke({})
    assert (raised.value.http_status, raised.value.code) == (status, code)  # type: ignore[attr-defined]
    assert len(collections(deployment)) == 1
    (record,) = deployment.outcomes()
    assert record["status"] == "failed" and record["httpStatus"] == status and record["exchangeCode"] == code
    if status in (418, 429):
        assert record["attemptLog"][0]["retryAfterSeconds"] == fault.retry_after


def test_unknown_api_key_fails_with_2015_without_retry(deployment: Deployment) -> None:
    deployment.put_secret(json.dumps({"apiKey": "not-registered", "privateKey": deployment.private_pem}))
    with pytest.raises(ExchangeRejectedError) as raised:
        deployment.invoke({})
    assert (raised.value.http_status, raised.value.code) == (401, -2015)
    assert collections(deployment) == []  # refused at the key's restrictions, its first signed request
    assert len(deployment.exchange.requests(API_RESTRICTIONS_PATH)) == 1  # the same secret re-read, not resent


def test_wrong_key_fails_with_1022_without_retry(deployment: Deployment) -> None:
    deployment.exchange.add_credential(ApiCredential(api_key="hmac-key", hmac_secret="the-real-secret"))
    deployment.put_secret(json.dumps({"apiKey": "hmac-key", "apiSecret": "a-stale-secret"}))
    with pytest.raises(ExchangeRejectedError) as raised:
        deployment.invoke({})
    assert (raised.value.http_status, raised.value.code) == (400, -1022)
    assert collections(deployment) == []
    assert len(deployment.exchange.requests(API_RESTRICTIONS_PATH)) == 1


def test_clock_drift_is_corrected_once_and_remembered_while_warm(deployment: Deployment) -> None:
    deployment.exchange.server_time_offset_ms = -20_000  # our clock is 20 s ahead of the exchange
    result = deployment.invoke({})
    assert result["status"] == "collected"
    # The first signed request, the key's restrictions, meets the drift; the clock is resynced once.
    assert [r.code for r in deployment.exchange.requests(API_RESTRICTIONS_PATH)] == [-1021, None]
    assert [r.code for r in collections(deployment)] == [None]
    (record,) = deployment.outcomes()
    assert record["clockOffsetMs"] == pytest.approx(-20_000, abs=200)

    assert deployment.invoke({})["status"] == "collected"
    assert [r.code for r in collections(deployment)] == [None, None]  # no second -1021
    assert len(deployment.exchange.requests("/api/v3/time")) == 1


def test_clock_drift_that_persists_fails_without_looping(deployment: Deployment) -> None:
    deployment.exchange.inject(Fault(status=400, code=-1021, count=5))
    with pytest.raises(ExchangeRejectedError) as raised:
        deployment.invoke({})
    assert raised.value.code == -1021
    assert len(collections(deployment)) == 2


# --- deadline --------------------------------------------------------------------------------------


def test_no_attempt_starts_without_time_to_finish(deployment: Deployment) -> None:
    with pytest.raises(DeadlineError, match="ms left in the invocation"):
        deployment.invoke({}, timeout_ms=2_000)
    assert collections(deployment) == []
    assert deployment.outcomes()[0]["error"]["type"] == "deadline"


def test_http_timeout_is_bounded_by_the_remaining_time(deployment: Deployment) -> None:
    deployment.exchange.inject(Fault(delay_s=10, count=3))
    started = time.monotonic()
    with pytest.raises(ExchangeUnavailableError):
        deployment.invoke({}, timeout_ms=4_000)
    elapsed_ms = (time.monotonic() - started) * 1000
    assert elapsed_ms < 4_000
    assert len(collections(deployment)) == 1  # no second attempt could have finished in time
    assert deployment.outcomes()[0]["status"] == "failed"


# --- bad inputs: specific errors, a recorded outcome, nothing sent ---------------------------------


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("{not json", "is not valid JSON"),
        ('{"apiSecret": "x"}', "has no 'apiKey'"),
        (
            '{"apiKey": "k", "privateKey": "-----BEGIN PRIVATE KEY-----\\nAAAA\\n-----END PRIVATE KEY-----"}',
            "'privateKey' could not be read",
        ),
    ],
    ids=["not-json", "no-api-key", "unreadable-pem"],
)
def test_bad_secret_sends_nothing(deployment: Deployment, secret: str, message: str) -> None:
    deployment.put_secret(secret)
    with pytest.raises(SecretError, match=message):
        deployment.invoke({})
    assert deployment.exchange.requests() == []
    (record,) = deployment.outcomes()
    assert record["status"] == "failed" and record["error"]["type"] == "secret"
    assert record["reservations"] == []


def test_missing_secret_is_named(deployment: Deployment) -> None:
    deployment.set_env(SECRET_ID="does/not/exist")
    with pytest.raises(SecretError, match="could not read secret 'does/not/exist'"):
        deployment.invoke({})
    assert deployment.exchange.requests() == []
    assert deployment.outcomes()[0]["error"]["type"] == "secret"


@pytest.mark.parametrize(
    "event",
    [{"key1": "value1", "key2": "value2", "key3": "value3"}, {"dryRun": "yes"}, [], "go", {**SCHEDULED, "x": 1}],
    ids=["console-template", "dryrun-string", "list", "string", "scheduled-extra-key"],
)
def test_bad_event_is_refused_recorded_and_sends_nothing(deployment: Deployment, event: object) -> None:
    with pytest.raises(InvalidEventError):
        deployment.invoke(event)
    assert deployment.exchange.requests() == []
    (record,) = deployment.outcomes()
    assert record["status"] == "failed" and record["trigger"] == "unknown"
    assert record["error"]["type"] == "invalid_event"


def test_invalid_configuration_is_refused_and_recorded(deployment: Deployment) -> None:
    deployment.set_env(MAX_CALLS_PER_HOUR="501")
    with pytest.raises(ConfigurationError, match="MAX_CALLS_PER_HOUR must be between 1 and 500, got 501"):
        deployment.invoke({})
    assert deployment.exchange.requests() == []
    assert deployment.outcomes()[0]["error"]["type"] == "configuration"


def test_missing_table_name_still_fails_loudly(deployment: Deployment) -> None:
    deployment.monkeypatch.delenv("TABLE_NAME")
    with pytest.raises(ConfigurationError, match="TABLE_NAME is required"):
        deployment.invoke({})
    assert deployment.exchange.requests() == []


def test_unreachable_table_sends_nothing(deployment: Deployment) -> None:
    deployment.set_env(TABLE_NAME="no-such-table")
    with pytest.raises(Exception, match="no-such-table"):
        deployment.invoke({})
    assert collections(deployment) == []

"""The key check through the real handler (moto's server, the exchange emulator on 127.0.0.1): the dry run proves
the key at the exchange, a key that can withdraw is never used, an unrestricted key is flagged, the trading
permission's expiry is watched (dry run, outcome, logs, metric, operator view), and after it the failure says why.

The emulator keeps the exchange's real limits (12,000 IP weight a minute, 500 collections an hour)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auto_collector.errors import (
    ExchangeRateLimitedError,
    ExchangeRejectedError,
    KeyPolicyError,
    TradingPermissionExpiredError,
)
from auto_collector.ip_store import IP_WINDOW_KEY, IpWeightStore
from auto_collector.ip_window import IpWeightPolicy, WeightGrant
from auto_collector.operator_view import main as operator_main
from localdev.exchange_emulator import (
    API_RESTRICTIONS_PATH,
    AUTO_COLLECTION_PATH,
    BALANCE_PATH,
    SPOT_ACCOUNT_PATH,
    ApiCredential,
    Fault,
)
from localdev.keys import new_ed25519_pem
from tests.support.cold_start import cold_start
from tests.support.deployment import Deployment

DAY_MS = 86_400_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def key_rules(deployment: Deployment, **rules: Any) -> None:
    """Register the deployment's own key again at the exchange, with these restrictions."""
    private = serialization.load_pem_private_key(deployment.private_pem.encode(), password=None)
    assert isinstance(private, Ed25519PrivateKey)
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    deployment.exchange.add_credential(ApiCredential(api_key=deployment.api_key, public_key_pem=public, **rules))


def collections(deployment: Deployment) -> list[Any]:
    return deployment.exchange.requests(AUTO_COLLECTION_PATH)


def restriction_reads(deployment: Deployment) -> list[Any]:
    return deployment.exchange.requests(API_RESTRICTIONS_PATH)


def newest_outcome(deployment: Deployment) -> dict[str, Any]:
    wanted = deployment.contexts[-1].aws_request_id
    (record,) = [r for r in deployment.outcomes() if r["invocationId"] == wanted]
    return record


def emf_documents(text: str) -> list[dict[str, Any]]:
    documents = []
    for line in text.splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict) and "_aws" in document:
            documents.append(document)
    return documents


# --- the dry run at the exchange ---------------------------------------------------------------------------


def test_a_sound_keys_dry_run_passes_reports_the_key_and_sends_no_collection(deployment: Deployment) -> None:
    deployment.exchange.set_balances("default", {"USDT": {"umWalletBalance": "40", "cmWalletBalance": "2.5"}})

    result = deployment.invoke({"dryRun": True})

    assert result["status"] == "dry_run" and result["error"] is None
    assert result["keyType"] == "ed25519"
    assert result["key"]["ipRestricted"] is True and result["key"]["warnings"] == []
    assert result["key"]["tradingPermission"] is None  # a whitelisted key does not expire
    assert result["wouldMove"] == {"USDT": "42.5"}
    assert collections(deployment) == []
    paths = [r.path for r in deployment.exchange.requests()]
    assert paths == [API_RESTRICTIONS_PATH, SPOT_ACCOUNT_PATH, BALANCE_PATH]  # the key, its account, the balances
    record = newest_outcome(deployment)
    assert (record["status"], record["keyType"], record["wouldMove"]) == ("dry_run", "ed25519", {"USDT": "42.5"})


@pytest.mark.parametrize(
    ("secret", "code", "advice"),
    [
        ("unknown-key", -2015, "check that the secret's apiKey is the key itself"),
        ("wrong-private-key", -1022, "belongs to its apiKey"),
    ],
)
def test_a_key_the_exchange_refuses_fails_the_dry_run_with_its_code_and_what_to_check(
    deployment: Deployment, secret: str, code: int, advice: str
) -> None:
    other_pem, _ = new_ed25519_pem()
    value = (
        {"apiKey": "not-registered-" + "0" * 20, "privateKey": deployment.private_pem}
        if secret == "unknown-key"
        else {"apiKey": deployment.api_key, "privateKey": other_pem}
    )
    deployment.put_secret(json.dumps(value))

    with pytest.raises(ExchangeRejectedError) as raised:
        deployment.invoke({"dryRun": True})

    assert raised.value.code == code
    assert "reading the key's restrictions" in str(raised.value) and advice in str(raised.value)
    record = newest_outcome(deployment)
    assert record["status"] == "failed" and record["exchangeCode"] == code
    assert record["error"]["code"] == code and advice in record["error"]["message"]
    assert collections(deployment) == [] and deployment.exchange.requests(BALANCE_PATH) == []


def test_a_key_created_before_portfolio_margin_fails_the_dry_run_with_that_reason(deployment: Deployment) -> None:
    key_rules(deployment, enable_pm_trading=False)

    with pytest.raises(KeyPolicyError, match="enablePortfolioMarginTrading is false"):
        deployment.invoke({"dryRun": True})

    record = newest_outcome(deployment)
    assert record["error"]["type"] == "key_policy" and "created before Portfolio Margin" in record["error"]["message"]
    assert collections(deployment) == []


# --- withdrawals: never ------------------------------------------------------------------------------------


@pytest.mark.parametrize("event", [{}, {"dryRun": True}], ids=["real-run", "dry-run"])
def test_a_key_that_can_withdraw_is_refused_and_never_collects(deployment: Deployment, event: dict[str, Any]) -> None:
    key_rules(deployment, enable_withdrawals=True)

    for _ in range(2):  # cold, then warm (the restrictions kept with the secret value)
        with pytest.raises(KeyPolicyError, match="withdrawals enabled"):
            deployment.invoke(event)
        record = newest_outcome(deployment)
        assert (record["status"], record["error"]["type"]) == ("failed", "key_policy")
        assert "never used" in record["error"]["message"] and record["key"]["permissions"][-1] == "enableWithdrawals"
        assert record["reservations"] == []

    assert collections(deployment) == []
    assert deployment.exchange.requests(BALANCE_PATH) == []
    assert len(restriction_reads(deployment)) == (1 if event == {} else 2)  # a dry run always reads afresh


def test_no_setting_lets_a_withdrawal_key_through(deployment: Deployment) -> None:
    key_rules(deployment, enable_withdrawals=True)
    deployment.set_env(BALANCE_CHECK="record-only", EGRESS_MODE="StaticIp", MAX_ATTEMPTS="10")
    with pytest.raises(KeyPolicyError):
        deployment.invoke({})
    assert collections(deployment) == [] and deployment.exchange.requests(BALANCE_PATH) == []


def test_a_rotated_key_that_can_withdraw_is_refused_before_it_collects(deployment: Deployment) -> None:
    assert deployment.invoke({})["status"] == "collected"  # a warm container holding the old key
    private_pem, public_pem = new_ed25519_pem()
    new_key = "rotated-" + "1" * 40
    deployment.exchange.add_credential(
        ApiCredential(api_key=new_key, public_key_pem=public_pem, enable_withdrawals=True)
    )
    deployment.secrets.put_secret_value(
        SecretId=deployment.secret_id, SecretString=json.dumps({"apiKey": new_key, "privateKey": private_pem})
    )
    deployment.exchange.inject(Fault(status=401, code=-2015))  # the old key is revoked

    with pytest.raises(KeyPolicyError, match="withdrawals"):
        deployment.invoke({})

    assert [r.api_key for r in collections(deployment)] == [deployment.api_key, deployment.api_key]
    assert [r.api_key for r in restriction_reads(deployment)] == [deployment.api_key, new_key]


# --- an unrestricted key: allowed, flagged; its trading permission watched ----------------------------------


def test_an_unrestricted_key_collects_and_is_flagged_in_outcome_logs_and_operator_view(
    deployment: Deployment, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    key_rules(deployment, ip_restricted=False, trading_expires_ms=now_ms() + 20 * DAY_MS)

    result = deployment.invoke({})

    assert result["status"] == "collected"
    assert result["key"]["ipRestricted"] is False
    assert any("not IP-restricted" in warning for warning in result["key"]["warnings"])
    assert "(20 days)" in result["key"]["tradingPermission"]
    (flagged,) = [r for r in caplog.records if r.getMessage() == "API key flagged"]
    assert flagged.levelname == "WARNING" and "not IP-restricted" in str(flagged.__dict__["keyWarnings"])
    capsys.readouterr()
    assert newest_outcome(deployment)["key"]["ipRestricted"] is False

    assert operator_main(["status"]) == 0  # flagged, not an alert: 20 days left
    view = capsys.readouterr().out
    assert "key       NOT IP-restricted (flagged" in view and "trading permission expires on" in view


def test_expiry_in_five_days_named_in_the_dry_run_metric_and_operator_alert(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    expires = now_ms() + 5 * DAY_MS
    key_rules(deployment, ip_restricted=False, trading_expires_ms=expires)
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(expires // 1000))

    result = deployment.invoke({"dryRun": True})

    assert result["status"] == "dry_run"
    assert result["key"]["tradingPermission"] == f"trading permission expires on {date} (5 days)"
    assert result["key"]["tradingPermissionDaysLeft"] == 5
    assert any(w.startswith(f"trading permission expires on {date} (5 days)") for w in result["key"]["warnings"])
    documents = [d for d in emf_documents(capsys.readouterr().out) if "TradingPermissionDaysLeft" in d]
    (metric,) = documents
    (directive,) = metric["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "FundAutoCollector"
    assert directive["Dimensions"] == [["service", "account"]]  # service and account only
    assert (metric["TradingPermissionDaysLeft"], metric["account"]) == ([5.0], "default")

    assert operator_main(["status"]) == 1  # 7 days or fewer: an alert
    assert f"ALERT default: the API key's trading permission expires on {date} (5 days)" in capsys.readouterr().out
    assert operator_main(["status", "--json"]) == 1
    (account,) = json.loads(capsys.readouterr().out)["accounts"]
    assert account["key"]["ipRestricted"] is False and account["key"]["tradingPermissionDaysLeft"] == 5
    assert account["lastOutcomes"][0]["status"] == "dry_run"


def test_service_only_metrics_keep_the_service_dimension_alone(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    key_rules(deployment, ip_restricted=False, trading_expires_ms=now_ms() + 3 * DAY_MS)
    deployment.invoke({})
    documents = emf_documents(capsys.readouterr().out)
    shared = [d for d in documents if "CollectionSucceeded" in d]
    assert shared and all(d["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]] for d in shared)
    assert all("TradingPermissionDaysLeft" not in d for d in shared)


def test_static_ip_mode_warns_while_the_key_is_still_unrestricted(deployment: Deployment) -> None:
    deployment.set_env(EGRESS_MODE="StaticIp")
    key_rules(deployment, ip_restricted=False, trading_expires_ms=now_ms() + 25 * DAY_MS)

    result = deployment.invoke({"dryRun": True})

    assert result["status"] == "dry_run"
    assert any("EgressMode is StaticIp but the API key is still unrestricted" in w for w in result["key"]["warnings"])


def test_after_the_date_the_failed_collection_says_the_trading_permission_expired(deployment: Deployment) -> None:
    expired = now_ms() - 2 * DAY_MS - 60_000
    key_rules(deployment, ip_restricted=False, trading_expires_ms=expired)

    with pytest.raises(TradingPermissionExpiredError) as raised:
        deployment.invoke({})

    message = str(raised.value)
    assert (raised.value.http_status, raised.value.code) == (401, -2015)
    assert "trading permission expired on" in message and "(2 days ago)" in message
    assert "whitelist the deployment's egress IP" in message and "re-enable" in message
    record = newest_outcome(deployment)
    assert record["error"]["type"] == "trading_permission_expired" and "expired on" in record["error"]["message"]
    assert [r.code for r in collections(deployment)] == [-2015]  # tried: the exchange decides, then explained
    with pytest.raises(KeyPolicyError, match="trading permission expired on"):
        deployment.invoke({"dryRun": True})  # and the dry run refuses it


def test_a_permission_ending_while_warm_is_explained_from_the_kept_restrictions(
    deployment: Deployment, travel: Callable[[int], None]
) -> None:
    key_rules(deployment, ip_restricted=False, trading_expires_ms=now_ms() + 5_000)
    assert deployment.invoke({})["status"] == "collected"
    travel(10_000)  # past the date; the restrictions kept with the secret are still fresh (read 10 s ago)

    with pytest.raises(TradingPermissionExpiredError, match="trading permission expired on"):
        deployment.invoke({})

    assert len(restriction_reads(deployment)) == 1  # explained from what was kept, not from a new read
    assert [r.code for r in collections(deployment)] == [None, -2015]


# --- once per secret value; through the IP-weight window; the collection's fault handling ------------------


def test_a_warm_invocation_reads_no_restrictions_until_a_day_has_passed(
    deployment: Deployment, travel: Callable[[int], None]
) -> None:
    for _ in range(3):
        assert deployment.invoke({})["status"] == "collected"
    assert len(restriction_reads(deployment)) == 1
    travel(DAY_MS + 60_000)
    assert deployment.invoke({})["status"] == "collected"
    assert len(restriction_reads(deployment)) == 2  # refreshed at least daily
    cold_start()
    assert deployment.invoke({})["status"] == "collected"
    assert len(restriction_reads(deployment)) == 3  # a new container reads once


def test_an_expiring_key_is_read_again_hourly_so_a_fix_shows_soon(
    deployment: Deployment, travel: Callable[[int], None]
) -> None:
    key_rules(deployment, ip_restricted=False, trading_expires_ms=now_ms() + 6 * DAY_MS)
    assert deployment.invoke({})["key"]["tradingPermissionDaysLeft"] == 6
    key_rules(deployment)  # the operator whitelists the IP: a restricted key does not expire
    travel(3_600_000 + 60_000)
    result = deployment.invoke({})
    assert result["key"]["ipRestricted"] is True and result["key"]["tradingPermission"] is None
    assert len(restriction_reads(deployment)) == 2


def test_the_restrictions_read_weight_goes_through_the_ip_window(deployment: Deployment) -> None:
    deployment.invoke({})
    item = deployment.dynamodb.get_item(TableName=deployment.table, Key=IP_WINDOW_KEY, ConsistentRead=True)["Item"]
    entries = {int(pair["L"][1]["N"]): int(pair["L"][0]["N"]) for pair in item["entries"]["L"]}  # weight: expiry
    assert sorted(entries) == [1, 1500]
    (read,) = restriction_reads(deployment)
    # Signed with the instant its weight was reserved: the entry counts until then + recvWindow + 1 s + 60 s.
    occupancy_ms = IpWeightPolicy(12_000, 5_000).occupancy_ms
    assert entries[1] == int(read.params["timestamp"]) + occupancy_ms
    assert read.params["recvWindow"] == "5000"


def test_a_full_ip_window_defers_the_key_check_and_sends_nothing(deployment: Deployment) -> None:
    # Another invocation of this deployment holds the whole minute's weight.
    held = IpWeightStore(deployment.dynamodb, deployment.table)
    grant, _ = held.reserve(IpWeightPolicy(12_000, 2_000), 12_000, now_ms, lambda: 60_000)
    assert isinstance(grant, WeightGrant)

    result = deployment.invoke({})

    assert result["status"] == "deferred" and result["deferredUntil"] is not None
    # The key's account was never read (here or in the registry): no window to show.
    assert result["windowUsed"] is None and result["attempts"] == 0
    assert deployment.exchange.requests() == []  # not even the weight-1 read


def test_the_restrictions_read_is_retried_after_a_5xx_and_resyncs_after_1021(deployment: Deployment) -> None:
    deployment.exchange.inject(Fault(path=API_RESTRICTIONS_PATH, status=503))
    deployment.exchange.inject(Fault(path=API_RESTRICTIONS_PATH, status=400, code=-1021))
    assert deployment.invoke({})["status"] == "collected"
    assert [r.status for r in restriction_reads(deployment)] == [503, 400, 200]
    assert len(deployment.exchange.requests("/api/v3/time")) == 1
    assert len(collections(deployment)) == 1


def test_a_429_on_the_restrictions_read_backs_off_every_account_and_sends_no_collection(
    deployment: Deployment,
) -> None:
    deployment.exchange.inject(Fault(path=API_RESTRICTIONS_PATH, status=429, retry_after=30))
    with pytest.raises(ExchangeRateLimitedError, match="reading the key's restrictions"):
        deployment.invoke({})
    assert collections(deployment) == []
    seen = len(deployment.exchange.requests())
    result = deployment.invoke({})
    assert result["status"] == "backing_off" and result["windowUsed"] is None  # the key's account never read
    assert len(deployment.exchange.requests()) == seen


def test_a_dry_run_during_a_back_off_checks_nothing_and_says_so(deployment: Deployment) -> None:
    deployment.exchange.inject(Fault(status=429, retry_after=30))  # on the collection
    with pytest.raises(ExchangeRateLimitedError):
        deployment.invoke({})
    seen = len(deployment.exchange.requests())

    result = deployment.invoke({"dryRun": True})

    assert result["status"] == "backing_off" and result["blockedUntil"] is not None
    assert result["note"].startswith("key not checked: HTTP 429")
    assert len(deployment.exchange.requests()) == seen  # a signed read would only extend the block

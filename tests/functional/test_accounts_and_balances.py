"""Several accounts in one deployment, and the balance-aware collection, end to end."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from auto_collector.errors import AccountsFailedError, InvalidEventError
from localdev.exchange_emulator import AUTO_COLLECTION_PATH, ApiCredential, Fault
from localdev.keys import new_ed25519_pem
from tests.support.deployment import Deployment

BALANCE = "/sapi/v1/portfolio/balance"


def add_accounts(deployment: Deployment, labels: list[str], broken: str | None = None) -> None:
    """Give each label its own key, secret and exchange account; `broken`'s secret holds an unknown key."""
    accounts = []
    for label in labels:
        private_pem, public_pem = new_ed25519_pem()
        api_key = uuid.uuid4().hex
        deployment.exchange.add_credential(ApiCredential(api_key=api_key, public_key_pem=public_pem, account=label))
        secret_id = f"collector/{label}-{uuid.uuid4().hex[:6]}"
        stored_key = "revoked-key" if label == broken else api_key
        deployment.secrets.create_secret(
            Name=secret_id, SecretString=json.dumps({"apiKey": stored_key, "privateKey": private_pem})
        )
        accounts.append({"label": label, "secretId": secret_id})
    deployment.monkeypatch.delenv("SECRET_ID")
    deployment.set_env(ACCOUNTS=json.dumps(accounts))


def outcomes_of(deployment: Deployment, label: str) -> list[dict[str, Any]]:
    from auto_collector.store import CollectorTable

    return CollectorTable(deployment.dynamodb, deployment.table).outcomes(label)


def test_accounts_are_collected_independently_and_a_failure_is_raised_after_all(deployment: Deployment) -> None:
    add_accounts(deployment, ["fund-a", "fund-b", "fund-c"], broken="fund-b")

    with pytest.raises(AccountsFailedError) as raised:
        deployment.invoke({})

    assert list(raised.value.failures) == ["fund-b"]
    assert "fund-b: HTTP 401, code -2015" in str(raised.value)
    for label in ("fund-a", "fund-c"):
        assert deployment.exchange.accepted_collections(label) == 1
        assert [r["status"] for r in outcomes_of(deployment, label)] == ["collected"]
    (failed,) = outcomes_of(deployment, "fund-b")
    assert failed["status"] == "failed" and failed["exchangeCode"] == -2015 and failed["httpStatus"] == 401
    assert "reading the key's restrictions" in failed["error"]["message"]  # refused before any collection


def test_each_account_has_its_own_window(deployment: Deployment) -> None:
    add_accounts(deployment, ["fund-a", "fund-b"])
    deployment.set_env(MAX_CALLS_PER_HOUR="1")
    first = deployment.invoke({})
    assert first["status"] == "collected"
    assert [a["windowUsed"] for a in first["accounts"]] == [1, 1]
    second = deployment.invoke({})
    assert second["status"] == "budget_exhausted"
    assert [a["account"] for a in second["accounts"]] == ["fund-a", "fund-b"]


def test_console_event_can_name_a_subset(deployment: Deployment) -> None:
    add_accounts(deployment, ["fund-a", "fund-b"])
    result = deployment.invoke({"accounts": ["fund-b"]})
    assert result["status"] == "collected" and result["account"] == "fund-b"
    assert deployment.exchange.accepted_collections("fund-a") == 0
    with pytest.raises(InvalidEventError, match=r"accounts \['fund-z'\] that are not configured"):
        deployment.invoke({"accounts": ["fund-z"]})
    assert len(deployment.exchange.requests(AUTO_COLLECTION_PATH)) == 1


def test_sqs_fan_out_message_collects_its_account_once(deployment: Deployment) -> None:
    add_accounts(deployment, ["fund-a", "fund-b"])
    message = {"eventSource": "aws:sqs", "messageId": str(uuid.uuid4()), "body": json.dumps({"account": "fund-a"})}
    assert deployment.invoke({"Records": [message]})["status"] == "collected"
    assert deployment.invoke({"Records": [message]})["status"] == "duplicate"  # redelivered message
    assert deployment.exchange.accepted_collections("fund-a") == 1


def test_single_account_contract_is_unchanged(deployment: Deployment) -> None:
    result = deployment.invoke({})
    assert result["status"] == "collected" and result["account"] == "default"
    assert "accounts" not in result


# --- balance-aware collection -----------------------------------------------------------------------


def test_balance_check_off_sends_no_balance_request(deployment: Deployment) -> None:
    deployment.exchange.set_balances("default", {"BNB": {"umWalletBalance": "1"}})
    assert deployment.invoke({})["status"] == "collected"
    assert deployment.exchange.requests(BALANCE) == []
    assert deployment.outcomes()[0]["moved"] is None


def test_skip_when_empty_skips_an_account_holding_only_bnb(deployment: Deployment) -> None:
    deployment.set_env(BALANCE_CHECK="skip-when-empty")
    deployment.exchange.set_balances("default", {"BNB": {"umWalletBalance": "2.5"}, "USDT": {"crossMarginFree": "100"}})
    result = deployment.invoke({})
    assert result["status"] == "nothing_to_collect"
    assert deployment.exchange.requests(AUTO_COLLECTION_PATH) == []
    assert len(deployment.exchange.requests(BALANCE)) == 1
    (record,) = deployment.outcomes()
    assert record["status"] == "nothing_to_collect"
    assert record["balancesBefore"] == {"BNB": {"um": "2.5", "cm": "0"}}
    assert record["reservations"] == []


def test_skip_when_empty_collects_and_records_what_moved(deployment: Deployment) -> None:
    deployment.set_env(BALANCE_CHECK="skip-when-empty")
    deployment.exchange.set_balances(
        "default",
        {
            "USDT": {"umWalletBalance": "120.5", "cmWalletBalance": "0"},
            "BTC": {"cmWalletBalance": "0.01"},
            "BNB": {"umWalletBalance": "1"},
        },
    )
    assert deployment.invoke({})["status"] == "collected"
    (record,) = deployment.outcomes()
    assert record["moved"] == {"USDT": "120.5", "BTC": "0.01"}
    assert record["balancesAfter"] == {"BNB": {"um": "1", "cm": "0"}}
    assert deployment.exchange.balances("default")["USDT"]["crossMarginFree"] == "120.5"


def test_record_only_always_collects(deployment: Deployment) -> None:
    deployment.set_env(BALANCE_CHECK="record-only")
    deployment.exchange.set_balances("default", {"BNB": {"umWalletBalance": "1"}})
    assert deployment.invoke({})["status"] == "collected"
    assert len(deployment.exchange.requests(AUTO_COLLECTION_PATH)) == 1
    assert len(deployment.exchange.requests(BALANCE)) == 2  # before and after
    (record,) = deployment.outcomes()
    assert record["balancesBefore"] == {"BNB": {"um": "1", "cm": "0"}} and record["moved"] == {}


def test_failed_balance_check_still_collects(deployment: Deployment) -> None:
    deployment.set_env(BALANCE_CHECK="skip-when-empty")
    deployment.exchange.inject(Fault(path=BALANCE, status=503))
    assert deployment.invoke({})["status"] == "collected"
    assert "balance check failed (HTTP 503" in deployment.outcomes()[0]["note"]


def test_balance_check_setting_is_validated(deployment: Deployment) -> None:
    from auto_collector.errors import ConfigurationError

    deployment.set_env(BALANCE_CHECK="sometimes")
    with pytest.raises(ConfigurationError, match="BALANCE_CHECK must be one of off, skip-when-empty, record-only"):
        deployment.invoke({})


def test_balance_check_is_skipped_when_the_budget_is_spent(deployment: Deployment) -> None:
    deployment.set_env(BALANCE_CHECK="skip-when-empty", MAX_CALLS_PER_HOUR="1")
    deployment.exchange.set_balances("default", {"USDT": {"umWalletBalance": "5"}})
    assert deployment.invoke({})["status"] == "collected"
    assert deployment.invoke({})["status"] == "budget_exhausted"
    assert len(deployment.exchange.requests(BALANCE)) == 2  # before and after the first; none for the second


def test_a_429_on_the_balance_read_after_collecting_still_backs_off(deployment: Deployment) -> None:
    deployment.set_env(BALANCE_CHECK="record-only")
    deployment.exchange.inject(Fault(path=BALANCE), Fault(path=BALANCE, status=429, code=-1003, retry_after=120))
    assert deployment.invoke({})["status"] == "collected"  # the collection itself succeeded
    assert deployment.invoke({})["status"] == "backing_off"
    assert len(deployment.exchange.requests(AUTO_COLLECTION_PATH)) == 1

"""The budget belongs to the exchange account (identity.py): every way of reaching one account through several labels
or keys spends from one window, through the real handler (moto server + exchange emulator at its real limits).

Per case: what the exchange executed for the account (never more than the budget in any hour), each label's outcome,
and how often the key's account (GET /api/v3/account) was read.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
import uuid
from typing import Any

import pytest

from auto_collector import runtime
from auto_collector.config import Settings
from auto_collector.errors import (
    AccountsFailedError,
    ExchangeRateLimitedError,
    ExchangeUnavailableError,
    SharedAccountError,
)
from auto_collector.operator_view.cli import status
from auto_collector.service import fairness_order
from auto_collector.store import CollectorTable
from auto_collector.window import WindowPolicy
from localdev.exchange_emulator import (
    API_RESTRICTIONS_PATH,
    AUTO_COLLECTION_PATH,
    SPOT_ACCOUNT_PATH,
    ApiCredential,
    Fault,
)
from localdev.keys import new_ed25519_pem
from tests.support.cold_start import cold_start
from tests.support.deployment import Deployment, window_key
from tests.support.events import scheduled_event


def new_key(deployment: Deployment, account: str) -> str:
    """A new key of the emulator's `account`, in a new secret; returns the secret's id."""
    private_pem, public_pem = new_ed25519_pem()
    api_key = uuid.uuid4().hex
    deployment.exchange.add_credential(ApiCredential(api_key=api_key, public_key_pem=public_pem, account=account))
    secret_id = f"collector/{account}-{uuid.uuid4().hex[:6]}"
    deployment.secrets.create_secret(
        Name=secret_id, SecretString=json.dumps({"apiKey": api_key, "privateKey": private_pem})
    )
    return secret_id


def configure(deployment: Deployment, secrets: dict[str, str]) -> None:
    """ACCOUNTS: label -> secret id, in this order."""
    deployment.monkeypatch.delenv("SECRET_ID", raising=False)
    deployment.set_env(ACCOUNTS=json.dumps([{"label": label, "secretId": sid} for label, sid in secrets.items()]))


def outcomes_of(deployment: Deployment, label: str) -> list[dict[str, Any]]:
    """Oldest first."""
    return list(reversed(CollectorTable(deployment.dynamodb, deployment.table).outcomes(label)))


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def account_reads(deployment: Deployment) -> int:
    return len(deployment.exchange.requests(SPOT_ACCOUNT_PATH))


def test_two_labels_on_one_key_spend_one_window_and_the_later_label_is_refused(deployment: Deployment) -> None:
    # The measurement: budget 3, the same key behind two labels; the exchange executed 6.
    configure(deployment, {"main": deployment.secret_id, "alias": deployment.secret_id})
    deployment.set_env(MAX_CALLS_PER_HOUR="3")

    for _ in range(4):
        with pytest.raises(AccountsFailedError) as raised:
            deployment.invoke(scheduled_event())
        assert list(raised.value.failures) == ["alias"]
        refusal = raised.value.failures["alias"]
        assert isinstance(refusal, SharedAccountError)
        assert "'main' and 'alias'" in str(refusal) and "same exchange account" in str(refusal)

    assert deployment.exchange.accepted_collections("default") == 3
    assert deployment.exchange.max_counted_in_any_window("default") == 3
    assert [o["status"] for o in outcomes_of(deployment, "main")] == ["collected"] * 3 + ["budget_exhausted"]
    refused = outcomes_of(deployment, "alias")
    assert [(o["status"], o["error"]["type"]) for o in refused] == [("failed", "shared_account")] * 4
    assert all(o["windowKey"] == deployment.window_key for o in [*refused, *outcomes_of(deployment, "main")])
    assert account_reads(deployment) == 2  # one per label's secret, then kept while warm


def test_the_label_configured_first_keeps_the_account_once_both_keys_were_read(deployment: Deployment) -> None:
    configure(deployment, {"main": deployment.secret_id, "alias": deployment.secret_id})
    deployment.set_env(MAX_CALLS_PER_HOUR="6")
    assert deployment.invoke({"accounts": ["alias"]})["status"] == "collected"  # the later label alone first
    # Warm, alias may claim the account before main's key is read (a race between the two threads): then both
    # collect once more, from the one window. Once both keys were read, main holds it.
    with contextlib.suppress(AccountsFailedError):
        deployment.invoke({})
    with pytest.raises(AccountsFailedError) as raised:
        deployment.invoke({})
    assert list(raised.value.failures) == ["alias"]
    cold_start()  # a cold container: main's key is read first (the fairness order), alias refused at once
    with pytest.raises(AccountsFailedError) as raised:
        deployment.invoke({})
    assert list(raised.value.failures) == ["alias"]

    collected = [o for label in ("main", "alias") for o in outcomes_of(deployment, label) if o["status"] == "collected"]
    sent = deployment.exchange.accepted_collections("default")
    assert sorted(o["windowUsed"] for o in collected) == list(range(1, sent + 1))  # one window, every call in it
    assert sent in {4, 5} and deployment.exchange.max_counted_in_any_window("default") == sent
    assert [o["status"] for o in outcomes_of(deployment, "main")][-2:] == ["collected", "collected"]


def test_a_renamed_label_continues_the_accounts_window(deployment: Deployment) -> None:
    deployment.set_env(MAX_CALLS_PER_HOUR="2", ACCOUNT_LABEL="fund-old")
    assert deployment.invoke(scheduled_event())["status"] == "collected"
    assert deployment.invoke(scheduled_event())["status"] == "collected"

    deployment.set_env(ACCOUNT_LABEL="fund-new")  # a new deployment of the same stack: a cold container
    cold_start()
    third = deployment.invoke(scheduled_event())

    assert (third["status"], third["windowUsed"]) == ("budget_exhausted", 2)
    assert deployment.exchange.accepted_collections("default") == 2
    # The operator's view: both labels on the account's window, every reservation claimed by an outcome.
    out = io.StringIO()
    assert status(deployment.table, as_json=True, client=deployment.dynamodb, out=out) == 0
    report = {account["account"]: account for account in json.loads(out.getvalue())["accounts"]}
    assert sorted(report) == ["fund-new", "fund-old"]
    for label in report:
        assert report[label]["window"]["used"] == 2 and report[label]["crashTraces"] == []


def test_two_keys_of_one_account_share_its_window(deployment: Deployment) -> None:
    configure(deployment, {"fund-a": deployment.secret_id, "fund-b": new_key(deployment, "default")})
    deployment.set_env(MAX_CALLS_PER_HOUR="2")

    for _ in range(3):
        with pytest.raises(AccountsFailedError) as raised:
            deployment.invoke(scheduled_event())
        assert isinstance(raised.value.failures["fund-b"], SharedAccountError)

    assert deployment.exchange.accepted_collections("default") == 2
    assert [o["status"] for o in outcomes_of(deployment, "fund-a")] == ["collected", "collected", "budget_exhausted"]
    assert {request.account for request in deployment.exchange.requests(AUTO_COLLECTION_PATH)} == {"default"}


def test_a_key_rotated_to_another_key_of_the_account_keeps_the_window(deployment: Deployment) -> None:
    deployment.set_env(MAX_CALLS_PER_HOUR="2")
    assert deployment.invoke({})["status"] == "collected"
    assert deployment.invoke({})["status"] == "collected"
    rotated = deployment.secrets.get_secret_value(SecretId=new_key(deployment, "default"))["SecretString"]
    deployment.put_secret(rotated)  # and a cold container

    result = deployment.invoke({})

    assert (result["status"], result["windowUsed"]) == ("budget_exhausted", 2)
    assert account_reads(deployment) == 2  # the new secret value's account is read once
    assert deployment.exchange.accepted_collections("default") == 2


def test_a_key_rotated_to_another_account_spends_that_accounts_window(deployment: Deployment) -> None:
    deployment.set_env(MAX_CALLS_PER_HOUR="2")
    assert deployment.invoke({})["status"] == "collected"
    other = deployment.secrets.get_secret_value(SecretId=new_key(deployment, "other"))["SecretString"]
    # Put behind the warm container's cache: the old key, revoked, is refused and the secret re-read.
    deployment.secrets.put_secret_value(SecretId=deployment.secret_id, SecretString=other)
    deployment.exchange.inject(Fault(status=401, code=-2015))

    result = deployment.invoke({})

    assert result["status"] == "collected"
    assert deployment.exchange.accepted_collections("other") == 1
    record = outcomes_of(deployment, "default")[-1]
    # The refused attempt spent the old account's slot; the retry the new account's first.
    assert record["windowKey"] == window_key("other") and record["windowUsed"] == 1
    assert account_reads(deployment) == 2
    assert deployment.invoke({})["windowUsed"] == 2
    assert deployment.invoke({})["status"] == "budget_exhausted"
    assert deployment.exchange.accepted_collections("other") == 2


def test_a_warm_invocation_reads_no_account(deployment: Deployment) -> None:
    for _ in range(3):
        assert deployment.invoke(scheduled_event())["status"] == "collected"
    assert account_reads(deployment) == 1
    (read,) = deployment.exchange.requests(SPOT_ACCOUNT_PATH)
    assert read.status == 200 and read.params["omitZeroBalances"] == "true"
    # Its weight is the /api pool's, not the /sapi one the deployment's IP-weight window counts.
    assert deployment.exchange.used_ip_weight_1m() == 3 * 1500 + 1


def test_the_account_read_gets_the_collections_fault_handling(deployment: Deployment) -> None:
    deployment.exchange.inject(Fault(path=SPOT_ACCOUNT_PATH, status=503))
    deployment.exchange.inject(Fault(path=SPOT_ACCOUNT_PATH, status=400, code=-1021))
    assert deployment.invoke({})["status"] == "collected"
    assert [r.status for r in deployment.exchange.requests(SPOT_ACCOUNT_PATH)] == [503, 400, 200]
    assert len(deployment.exchange.requests("/api/v3/time")) == 1


def test_a_429_on_the_account_read_backs_off_and_nothing_is_sent_after_it(deployment: Deployment) -> None:
    deployment.exchange.inject(Fault(path=SPOT_ACCOUNT_PATH, status=429, retry_after=30))
    with pytest.raises(ExchangeRateLimitedError, match="reading the key's account"):
        deployment.invoke({})
    seen = len(deployment.exchange.requests())
    cold_start()  # even a container that never saw the 429 sends nothing, the account read included

    assert deployment.invoke({})["status"] == "backing_off"
    assert len(deployment.exchange.requests()) == seen
    assert deployment.exchange.requests(AUTO_COLLECTION_PATH) == []


def test_a_cold_containers_fairness_order_reads_the_windows_through_the_registry(deployment: Deployment) -> None:
    configure(deployment, {"fund-a": new_key(deployment, "acct-a"), "fund-b": new_key(deployment, "acct-b")})
    deployment.invoke({})
    deployment.invoke({"accounts": ["fund-a"]})  # fund-a attempted last: fund-b goes first next time
    cold_start()
    reads_before = account_reads(deployment)

    settings = Settings.from_environment(dict(os.environ))
    order = fairness_order(runtime.runtime_for(settings), ["fund-a", "fund-b"])

    assert order == ["fund-b", "fund-a"]
    assert account_reads(deployment) == reads_before  # from the table, not the exchange


def test_an_account_read_that_fails_sends_no_collection_and_is_tried_again_after_a_fresh_key_check(
    deployment: Deployment,
) -> None:
    deployment.set_env(MAX_ATTEMPTS="2")
    deployment.exchange.inject(Fault(path=SPOT_ACCOUNT_PATH, status=503, count=2))
    with pytest.raises(ExchangeUnavailableError, match="reading the key's account"):
        deployment.invoke({})
    assert deployment.exchange.requests(AUTO_COLLECTION_PATH) == []
    record = outcomes_of(deployment, "default")[-1]
    assert (record["status"], record["windowKey"], record["reservations"]) == ("failed", None, [])

    assert deployment.invoke({})["status"] == "collected"
    # The account read follows a restrictions read admitted just before it (which saw any stored back-off).
    paths = [r.path for r in deployment.exchange.requests() if r.path != "/api/v3/time"]
    reads = [API_RESTRICTIONS_PATH, SPOT_ACCOUNT_PATH, SPOT_ACCOUNT_PATH, API_RESTRICTIONS_PATH, SPOT_ACCOUNT_PATH]
    assert paths == [*reads, AUTO_COLLECTION_PATH]


def test_an_upgrade_starts_the_accounts_window_afresh_and_the_view_follows_the_registry(
    deployment: Deployment,
) -> None:
    # A table from before identities: the label's own window, and a registry entry naming no window.
    table = CollectorTable(deployment.dynamodb, deployment.table)
    for _ in range(2):
        table.reserve("default", WindowPolicy(500, 5_000), now_ms, lambda: 60_000)

    def shown() -> dict[str, Any]:
        out = io.StringIO()
        status(deployment.table, as_json=True, client=deployment.dynamodb, out=out)
        (account,) = json.loads(out.getvalue())["accounts"]
        return account  # type: ignore[no-any-return]

    assert table.windows() == {"default": "default"}
    assert shown()["window"]["reservations"] == 2  # the old window, read by its label

    assert deployment.invoke({})["windowUsed"] == 1  # the account's window starts afresh (README: upgrading)
    assert table.windows() == {"default": deployment.window_key}
    assert shown()["window"]["reservations"] == 1

"""The operator's view (`python -m auto_collector status`) over a table filled by real invocations:
moto's server for DynamoDB and Secrets Manager, the exchange emulator for the exchange."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from auto_collector.errors import ConfigurationError, ExchangeRateLimitedError, ExchangeRejectedError
from auto_collector.operator_view import main
from auto_collector.operator_view.render import relative
from auto_collector.store import CollectorTable
from auto_collector.times import iso, parse_iso_ms
from auto_collector.window import WindowPolicy
from localdev.exchange_emulator import AUTO_COLLECTION_PATH, Fault
from tests.support.deployment import Deployment
from tests.support.events import scheduled_event

REPO = Path(__file__).resolve().parents[2]
SCHEDULED = scheduled_event("9d1c2b7e-0f3a-4c55-8e0b-5a2f1d3c4b6e")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def invoke(deployment: Deployment, event: Any, raises: type[Exception] | None = None) -> None:
    if raises is None:
        deployment.invoke(event)
    else:
        with pytest.raises(raises):
            deployment.invoke(event)
    time.sleep(0.005)  # distinct start times, so "newest first" is one order


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()  # drop the function's own logs and metrics
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def status_json(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, Any]]:
    code, out, err = run(["status", "--json", *extra], capsys)
    assert err == ""
    return code, json.loads(out)


@pytest.fixture
def busy(deployment: Deployment) -> Deployment:
    """A table holding, oldest first: collected, failed (400 -21001), budget_exhausted, dry_run,
    failed (429 -> back-off), backing_off."""
    deployment.set_env(MAX_CALLS_PER_HOUR="2")
    invoke(deployment, {})
    deployment.exchange.inject(Fault(status=400, code=-21001))
    invoke(deployment, {}, raises=ExchangeRejectedError)
    invoke(deployment, SCHEDULED)
    invoke(deployment, {"dryRun": True})
    deployment.set_env(MAX_CALLS_PER_HOUR="3")
    deployment.exchange.inject(Fault(status=429, code=-1003, retry_after=120))
    invoke(deployment, {}, raises=ExchangeRateLimitedError)
    invoke(deployment, {})
    return deployment


def test_status_json_reports_window_back_off_outcomes_and_failures(
    busy: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    started = now_ms()
    code, report = status_json(capsys, "--last", "4")

    assert code == 1  # failures in the last day and an active back-off
    assert report["table"] == busy.table and report["alert"] is True
    (account,) = report["accounts"]
    assert account["account"] == "default"

    first_signed = int(busy.exchange.requests(AUTO_COLLECTION_PATH)[0].params["timestamp"])
    assert account["window"] == {
        "used": 3,
        "limit": 3,  # the limit in force: the function's configuration (this test's environment)
        "limitSource": "environment",
        "free": 0,
        "nextSlotAt": iso(first_signed + 3_600_000 + 5_000 + 1_000),  # when the first reservation expires
        "reservations": 3,
        "lastReservationAt": account["window"]["lastReservationAt"],
    }

    records = {r["status"]: r for r in busy.outcomes()}
    back_off = account["backOff"]
    assert back_off["active"] is True
    assert back_off["until"] == records["backing_off"]["blockedUntil"]
    assert started + 100_000 < _ms(back_off["until"]) <= started + 121_000
    assert "HTTP 429 code -1003" in back_off["reason"]

    last = account["lastOutcomes"]
    assert [o["status"] for o in last] == ["backing_off", "failed", "dry_run", "budget_exhausted"]
    assert [o["trigger"] for o in last] == ["console", "console", "console", "schedule"]
    assert (last[1]["httpStatus"], last[1]["exchangeCode"]) == (429, -1003)
    assert last[1]["error"]["type"] == "exchange_rate_limited"
    assert last[2]["dryRun"] is True and last[2]["reservations"] == []
    assert last[3]["nextSlotAt"] == iso(first_signed + 3_606_000)
    assert all(isinstance(o["latencyMs"], int) and o["latencyMs"] >= 0 for o in last)
    assert set(last[0]) == {
        "startedAt",
        "trigger",
        "status",
        "dryRun",
        "attempts",
        "httpStatus",
        "exchangeCode",
        "latencyMs",
        "durationMs",
        "windowUsed",
        "windowLimit",
        "nextSlotAt",
        "blockedUntil",
        "moved",
        "note",
        "error",
        "invocationId",
        "reservations",
    }

    failures = account["failuresLastDay"]
    assert failures["count"] == 2
    assert [(f["httpStatus"], f["exchangeCode"]) for f in failures["outcomes"]] == [(429, -1003), (400, -21001)]
    assert [f["reservations"] for f in failures["outcomes"]] == [[2], [1]]
    assert account["crashTraces"] == []
    assert account["alerts"] == [
        "2 failure(s) in the last day",
        f"back-off until {back_off['until']}",
    ]


def test_last_defaults_to_ten_and_latency_sums_the_attempts(
    busy: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    _, report = status_json(capsys)
    last = report["accounts"][0]["lastOutcomes"]
    assert len(last) == 6
    collected = last[-1]
    assert collected["status"] == "collected" and collected["httpStatus"] == 200
    (record,) = [r for r in busy.outcomes() if r["status"] == "collected"]
    assert collected["latencyMs"] == sum(a["latencyMs"] for a in record["attemptLog"])
    dry_run = last[2]
    assert dry_run["latencyMs"] == dry_run["durationMs"]  # nothing sent: the invocation's own time


def test_human_output_shows_the_key_facts(busy: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["status", "--last", "6"], capsys)

    assert code == 1 and err == ""
    assert f"table {busy.table!r}" in out
    assert "account default" in out
    assert "3/3 calls in the rolling hour (limit from MAX_CALLS_PER_HOUR); next slot " in out
    assert "(in 60 min)" in out
    assert "back-off  ACTIVE until " in out and "HTTP 429 code -1003" in out
    assert "failures  2 in the last day" in out
    assert "crashes   none" in out
    assert "last 6 outcome(s), newest first:" in out
    for status in ("collected", "failed", "budget_exhausted", "dry_run", "backing_off"):
        assert status in out
    assert "HTTP 400 code -21001" in out and "HTTP 200" in out
    assert "exchange_rejected:" in out  # the failure list carries the error type and message
    assert "ALERT default: 2 failure(s) in the last day; back-off until " in out
    assert out.index("backing_off") < out.index("budget_exhausted") < out.index("collected")


def test_a_quiet_account_exits_zero(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    invoke(deployment, {})
    code, out, _ = run([], capsys)  # "status" is the default command
    assert code == 0
    assert "1/500 calls in the rolling hour" in out and "next slot free now (499 left)" in out
    assert "back-off  none" in out
    assert "OK: no failures in the last day, no active back-off, no crash traces" in out


def test_a_reservation_without_an_outcome_is_a_crash_trace(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    store = CollectorTable(deployment.dynamodb, deployment.table)
    policy = WindowPolicy(500, 5_000)
    twenty_minutes_ago = now_ms() - 20 * 60_000
    # A process that reserved a slot 20 minutes ago and died before recording its outcome...
    store.reserve(deployment.window_key, policy, lambda: twenty_minutes_ago, lambda: 60_000)
    # ...then a normal invocation, and one that reserved just now (possibly still running).
    invoke(deployment, {})
    CollectorTable(deployment.dynamodb, deployment.table).reserve(deployment.window_key, policy, now_ms, lambda: 60_000)

    code, report = status_json(capsys)
    assert code == 1
    traces = report["accounts"][0]["crashTraces"]
    assert [(t["reservation"], t["possiblyRunning"]) for t in traces] == [(0, False), (2, True)]
    assert abs(_ms(traces[0]["reservedAt"]) - twenty_minutes_ago) < 5
    assert report["accounts"][0]["alerts"] == ["1 reservation(s) with no outcome recorded"]

    code, out, _ = run(["status"], capsys)
    assert code == 1
    assert "crashes   1 reservation(s) with no outcome recorded (1 more may still be running)" in out
    assert "reservation #0 reserved at " in out and "(20 min ago), no outcome recorded" in out
    assert "reservation #2 reserved at " in out and "no outcome recorded yet (may still be running)" in out


def test_a_running_invocation_alone_does_not_alert(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    store = CollectorTable(deployment.dynamodb, deployment.table)
    store.reserve("default", WindowPolicy(5, 5_000), now_ms, lambda: 60_000)
    code, report = status_json(capsys)
    assert code == 0
    account = report["accounts"][0]
    assert [t["possiblyRunning"] for t in account["crashTraces"]] == [True]
    assert account["window"]["used"] == 1 and account["window"]["limit"] == 5


def test_an_account_that_never_reserved_is_shown_from_its_outcomes(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    invoke(deployment, {"dryRun": True})  # reserves nothing, so the registry stays empty
    deployment.monkeypatch.delenv("MAX_CALLS_PER_HOUR", raising=False)
    code, report = status_json(capsys)
    assert code == 0
    (account,) = report["accounts"]
    assert account["account"] == "default"
    assert account["window"]["limitSource"] == "outcome" and account["window"]["limit"] == 500
    assert account["window"]["reservations"] == 0 and account["window"]["lastReservationAt"] is None
    # A lowered configuration is the limit in force, whatever the records of earlier runs say (issue 14).
    deployment.set_env(MAX_CALLS_PER_HOUR="7")
    _, report = status_json(capsys)
    assert (report["accounts"][0]["window"]["limitSource"], report["accounts"][0]["window"]["limit"]) == (
        "environment",
        7,
    )


def test_the_limit_falls_back_to_the_option_then_the_environment(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment.set_env(MAX_CALLS_PER_HOUR="501")
    invoke(deployment, {}, raises=ConfigurationError)  # recorded without a limit: the configuration was refused

    deployment.set_env(MAX_CALLS_PER_HOUR="7")
    window = status_json(capsys)[1]["accounts"][0]["window"]
    assert (window["limit"], window["limitSource"]) == (7, "environment")
    window = status_json(capsys, "--limit", "9")[1]["accounts"][0]["window"]
    assert (window["limit"], window["limitSource"]) == (9, "option")
    deployment.monkeypatch.delenv("MAX_CALLS_PER_HOUR")
    window = status_json(capsys)[1]["accounts"][0]["window"]
    assert (window["limit"], window["limitSource"]) == (500, "default")


def test_what_moved_is_shown_from_real_collections(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    deployment.set_env(BALANCE_CHECK="skip-when-empty")
    deployment.exchange.set_balances(
        "default", {"USDT": {"umWalletBalance": "120.5"}, "BTC": {"cmWalletBalance": "0.01"}}
    )
    invoke(deployment, {})
    invoke(deployment, {})  # the wallets are empty now

    code, report = status_json(capsys)
    assert code == 0
    nothing, collected = report["accounts"][0]["lastOutcomes"]
    assert (nothing["status"], nothing["moved"]) == ("nothing_to_collect", None)
    assert (collected["status"], collected["moved"]) == ("collected", {"USDT": "120.5", "BTC": "0.01"})
    _, out, _ = run(["status"], capsys)
    assert "moved BTC 0.01, USDT 120.5" in out and "nothing_to_collect" in out


def test_several_accounts_are_listed_from_the_registry(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = WindowPolicy(500, 5_000)
    store = CollectorTable(deployment.dynamodb, deployment.table)
    for label in ("fund-b", "fund-a"):
        store.reserve(label, policy, now_ms, lambda: 60_000)
    started = iso(now_ms())
    store.put_outcome(
        {
            "pk": "ACCOUNT#fund-a",
            "sk": f"OUTCOME#{started}#inv-1",
            "status": "collected",
            "trigger": "schedule",
            "startedAt": started,
            "httpStatus": 200,
            "reservations": [0],
            "attemptLog": [{"latencyMs": 42}],
            "moved": {"USDT": "1250.5", "BTC": "0.02"},
            "windowLimit": 500,
        }
    )

    code, report = status_json(capsys)
    assert code == 0  # fund-b's reservation is too young to call a crash
    assert [a["account"] for a in report["accounts"]] == ["fund-a", "fund-b"]
    (collected,) = report["accounts"][0]["lastOutcomes"]
    assert collected["moved"] == {"USDT": "1250.5", "BTC": "0.02"} and collected["latencyMs"] == 42

    _, out, _ = run(["status", "--account", "fund-a"], capsys)
    assert "moved BTC 0.02, USDT 1250.5" in out and "42 ms" in out
    assert "account fund-b" not in out


def test_failures_older_than_a_day_no_longer_alert(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    invoke(deployment, {})
    two_days_ago = iso(now_ms() - 2 * 86_400_000)
    CollectorTable(deployment.dynamodb, deployment.table).put_outcome(
        {
            "pk": "ACCOUNT#default",
            "sk": f"OUTCOME#{two_days_ago}#old",
            "status": "failed",
            "trigger": "schedule",
            "startedAt": two_days_ago,
            "reservations": [],
            "error": {"type": "exchange_unavailable", "message": "HTTP 503"},
        }
    )
    code, report = status_json(capsys)
    assert code == 0
    account = report["accounts"][0]
    assert [o["status"] for o in account["lastOutcomes"]] == ["collected", "failed"]
    assert account["failuresLastDay"] == {"count": 0, "outcomes": []}
    _, out, _ = run(["status"], capsys)
    assert "(2 d ago)" in out and "failures  0 in the last day" in out


# --- errors --------------------------------------------------------------------------------------


def test_no_table_is_a_usage_error(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    deployment.monkeypatch.delenv("TABLE_NAME")
    code, out, err = run(["status"], capsys)
    assert code == 2 and out == ""
    assert err == (
        "error: no table given: pass --table NAME, --stack NAME or set TABLE_NAME (the stack's table name)\n"
    )


def test_a_missing_table_is_named_in_one_line(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["status", "--table", "no-such-table"], capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: table 'no-such-table' not found (region eu-west-1, endpoint http://127.0.0.1:")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_missing_credentials_are_explained(
    deployment: Deployment, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        deployment.monkeypatch.delenv(name, raising=False)
    deployment.set_env(
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",  # never ask the instance metadata service
    )
    code, _, err = run(["status"], capsys)
    assert code == 2
    assert err.startswith("error: no AWS credentials found") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["status", "--account", "nobody"], "account 'nobody' has no window and no outcome records in table"),
        (["status", "--last", "-1"], "argument --last: must be between 0 and 1000, got -1"),
        (["status", "--limit", "501"], "argument --limit: must be between 1 and 500, got 501"),
        (["report"], "invalid choice: 'report'"),
    ],
    ids=["unknown-account", "bad-last", "bad-limit", "bad-command"],
)
def test_usage_errors_exit_2(
    deployment: Deployment, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    invoke(deployment, {})
    code, out, err = run(argv, capsys)
    assert code == 2 and out == ""
    assert message in err


def test_a_bad_limit_in_the_environment_is_named(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    deployment.set_env(MAX_CALLS_PER_HOUR="lots")
    code, _, err = run(["status"], capsys)
    assert code == 2
    # The function's own rule and words for the variable (config.py), so the view refuses what the function refuses.
    assert err == "error: MAX_CALLS_PER_HOUR must be a whole number, got 'lots'\n"


# --- as a real command -----------------------------------------------------------------------------


def test_python_dash_m_in_a_subprocess(busy: Deployment, moto_endpoint: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    env.update(PYTHONPATH=str(REPO / "handler"), AWS_ENDPOINT_URL=moto_endpoint, TABLE_NAME=busy.table)
    completed = subprocess.run(
        [sys.executable, "-m", "auto_collector", "status", "--json"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 1, completed.stderr
    report = json.loads(completed.stdout)
    (account,) = report["accounts"]
    assert account["window"]["used"] == 3 and account["backOff"]["active"] is True
    assert account["failuresLastDay"]["count"] == 2
    assert [o["status"] for o in account["lastOutcomes"]][:2] == ["backing_off", "failed"]

    env.pop("TABLE_NAME")
    completed = subprocess.run(
        [sys.executable, "-m", "auto_collector"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2 and "no table given" in completed.stderr and completed.stdout == ""


# --- pure helpers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delta_ms", "text"),
    [
        (0, "now"),
        (-999, "now"),
        (45_000, "in 45 s"),
        (-180_000, "3 min ago"),
        (720_000, "in 12 min"),
        (-7_500_000, "2 h 5 min ago"),
        (3 * 86_400_000, "in 3 d"),
    ],
)
def test_relative_times(delta_ms: int, text: str) -> None:
    assert relative(1_800_000_000_000 + delta_ms, 1_800_000_000_000) == text


def _ms(iso_text: str) -> int:
    return parse_iso_ms(iso_text)

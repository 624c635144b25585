import pytest

from auto_collector.config import AccountConfig, Settings
from auto_collector.errors import ConfigurationError

BASE = {"SECRET_ID": "binance/collector", "TABLE_NAME": "collector"}


def test_defaults() -> None:
    settings = Settings.from_environment(BASE)
    assert settings == Settings(table_name="collector", accounts=(AccountConfig("default", "binance/collector"),))
    assert settings.base_url == "https://api.binance.com"
    assert settings.max_calls_per_hour == 500
    assert settings.recv_window_ms == 5000
    assert (settings.ip_weight_per_minute, settings.ip_weight_max_wait_s) == (12000, 10)


def test_every_setting_is_read() -> None:
    settings = Settings.from_environment(
        {
            **BASE,
            "BINANCE_BASE_URL": "http://127.0.0.1:8080/",
            "MAX_CALLS_PER_HOUR": "12",
            "RECV_WINDOW_MS": "60000",
            "ACCOUNT_LABEL": "fund-a.sub_1",
            "OUTCOME_RETENTION_DAYS": "7",
            "MAX_ATTEMPTS": "5",
            "HTTP_TIMEOUT_SECONDS": "4",
            "SECRET_MAX_AGE_SECONDS": "0",
        }
    )
    assert settings.base_url == "http://127.0.0.1:8080"
    assert (settings.max_calls_per_hour, settings.recv_window_ms, settings.labels) == (12, 60000, ["fund-a.sub_1"])
    assert (settings.outcome_retention_days, settings.max_attempts, settings.http_timeout_s) == (7, 5, 4)
    assert settings.secret_max_age_s == 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"SECRET_ID": ""}, "SECRET_ID is required but not set (or ACCOUNTS, for several accounts)"),
        ({"ACCOUNTS": '[{"label": "a", "secretId": "s"}]'}, "either SECRET_ID (one account) or ACCOUNTS"),
        ({"TABLE_NAME": "  "}, "TABLE_NAME is required but not set"),
        ({"MAX_CALLS_PER_HOUR": "0"}, "MAX_CALLS_PER_HOUR must be between 1 and 500, got 0"),
        ({"MAX_CALLS_PER_HOUR": "501"}, "MAX_CALLS_PER_HOUR must be between 1 and 500, got 501"),
        ({"HTTP_TIMEOUT_SECONDS": "2.5"}, "HTTP_TIMEOUT_SECONDS must be a whole number, got '2.5'"),
        ({"MAX_CALLS_PER_HOUR": "ten"}, "MAX_CALLS_PER_HOUR must be a whole number, got 'ten'"),
        ({"RECV_WINDOW_MS": "60001"}, "RECV_WINDOW_MS must be between 1 and 60000"),
        ({"BINANCE_BASE_URL": "http://api.binance.com"}, "plain http only for a loopback host"),
        ({"BINANCE_BASE_URL": "https://api.binance.com/sapi"}, "scheme and host only"),
        ({"BINANCE_BASE_URL": "ftp://x"}, "must be an http(s) URL"),
        ({"ACCOUNT_LABEL": "a b"}, "ACCOUNT_LABEL must be"),
        ({"MAX_ATTEMPTS": "11"}, "MAX_ATTEMPTS must be between 1 and 10"),
    ],
)
def test_invalid_values_name_the_variable(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_environment({**BASE, **overrides})
    assert message in str(raised.value)


def test_secret_id_missing_entirely() -> None:
    with pytest.raises(ConfigurationError, match="SECRET_ID"):
        Settings.from_environment({"TABLE_NAME": "t"})


def test_several_accounts() -> None:
    settings = Settings.from_environment(
        {
            "TABLE_NAME": "t",
            "ACCOUNTS": '[{"label": "fund-a", "secretId": "s/a"}, {"label": "fund-b", "secretId": "s/b"}]',
        }
    )
    assert settings.accounts == (AccountConfig("fund-a", "s/a"), AccountConfig("fund-b", "s/b"))


@pytest.mark.parametrize(
    ("accounts", "message"),
    [
        ("[", "it is not valid JSON"),
        ("{}", "got dict"),
        ("[]", "got list"),
        ('["a"]', "entry 0 is a str"),
        ('[{"label": "a"}]', "entry 0 has keys ['label']"),
        ('[{"label": "a b", "secretId": "s"}]', "ACCOUNTS[0].label must be"),
        ('[{"label": "a", "secretId": "s"}, {"label": "a", "secretId": "t"}]', "duplicate labels ['a']"),
        # `$` matches before a trailing newline: the label must match as a whole string.
        ('[{"label": "a\\n", "secretId": "s"}]', "ACCOUNTS[0].label must be"),
        ('[{"label": "a", "secretId": "s"}, {"label": "a\\n", "secretId": "t"}]', "ACCOUNTS[1].label must be"),
        (
            '[{"label": "Fund-A", "secretId": "s"}, {"label": "fund-a", "secretId": "t"}]',
            "labels 'Fund-A' and 'fund-a' differ only by case",
        ),
        ("[" * 100_000, "it is not valid JSON"),
        ("[" + "9" * 5_000 + "]", "it is not valid JSON"),
        ('[{"label": "' + "x" * 100_000 + '", "secretId": "s"}]', "ACCOUNTS[0].label must be"),
    ],
)
def test_invalid_accounts(accounts: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_environment({"TABLE_NAME": "t", "ACCOUNTS": accounts})
    assert message in str(raised.value)


def test_label_errors_echo_a_bounded_part_of_the_label() -> None:
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_environment(
            {"TABLE_NAME": "t", "ACCOUNTS": '[{"label": "' + "x" * 100_000 + '", "secretId": "s"}]'}
        )
    assert len(str(raised.value)) < 400


def test_a_trailing_newline_in_account_label_is_not_a_new_label() -> None:
    # ACCOUNT_LABEL is stripped, so "fund-a\n" is the same account as "fund-a", never a second budget.
    settings = Settings.from_environment({**BASE, "ACCOUNT_LABEL": "fund-a\n"})
    assert settings.labels == ["fund-a"]

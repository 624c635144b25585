"""The key rules as pure functions: parsing Binance's answer, what is refused, what is flagged, and the texts."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from auto_collector.config import Settings
from auto_collector.errors import ConfigurationError
from auto_collector.exchange import FuturesBalance
from auto_collector.key_policy import (
    DAY_MS,
    KeyRestrictions,
    key_record,
    parse_restrictions,
    refusal,
    warnings,
)
from auto_collector.outcome import would_move

NOW = 1_796_000_000_000  # 2026-12-01T...Z
SOUND: dict[str, Any] = {
    "ipRestrict": True,
    "createTime": NOW - 40 * DAY_MS,
    "enableReading": True,
    "enableWithdrawals": False,
    "enableInternalTransfer": False,
    "enableMargin": False,
    "enableFutures": False,
    "permitsUniversalTransfer": False,
    "enableVanillaOptions": False,
    "enableSpotAndMarginTrading": True,
    "enablePortfolioMarginTrading": True,
}


def key(**changes: Any) -> KeyRestrictions:
    return parse_restrictions({**SOUND, **changes}, NOW)


def test_binances_answer_is_read_field_by_field() -> None:
    restrictions = key(tradingAuthorityExpirationTime=NOW + DAY_MS, ipRestrict=False)
    assert restrictions.ip_restricted is False and restrictions.enable_withdrawals is False
    assert restrictions.permissions == ("enableReading", "enableSpotAndMarginTrading", "enablePortfolioMarginTrading")
    assert restrictions.trading_expires_ms == NOW + DAY_MS and restrictions.created_ms == NOW - 40 * DAY_MS
    assert restrictions.read_at_ms == NOW


@pytest.mark.parametrize(
    "body",
    [[], "x", {**SOUND, "enableWithdrawals": "false"}, {k: v for k, v in SOUND.items() if k != "ipRestrict"}],
    ids=["list", "text", "withdrawals-as-text", "no-ipRestrict"],
)
def test_an_answer_that_does_not_say_is_never_guessed(body: object) -> None:
    with pytest.raises(ValueError, match="key restrictions answer"):
        parse_restrictions(body, NOW)


def test_a_sound_key_is_neither_refused_nor_flagged() -> None:
    sound = key()
    assert refusal(sound, NOW, dry_run=True) is None and refusal(sound, NOW, dry_run=False) is None
    assert warnings(sound, NOW, "StaticIp") == []
    assert sound.trading_permission(NOW) is None and sound.days_left(NOW) is None


@pytest.mark.parametrize("dry_run", [True, False])
def test_withdrawals_are_refused_on_every_run(dry_run: bool) -> None:
    why = refusal(key(enableWithdrawals=True), NOW, dry_run)
    assert why is not None and "withdrawals enabled" in why and "Nothing was sent" in why


def test_no_portfolio_margin_trading_fails_the_dry_run_and_is_flagged_on_a_real_one() -> None:
    pre_pm = key(enablePortfolioMarginTrading=False)
    assert "created before Portfolio Margin" in (refusal(pre_pm, NOW, dry_run=True) or "")
    assert refusal(pre_pm, NOW, dry_run=False) is None  # the exchange decides on a real run
    assert any("enablePortfolioMarginTrading false" in w for w in warnings(pre_pm, NOW, "Shared"))


@pytest.mark.parametrize(
    ("left_ms", "text", "days"),
    [
        (5 * DAY_MS, "(5 days)", 5),
        (5 * DAY_MS - 1, "(5 days)", 5),  # rounded up: "in 5 days" until 4 full days are left
        (DAY_MS, "(1 day)", 1),
        (1, "(1 day)", 1),
        (0, "expired on", 0),
        (-DAY_MS, "(1 day ago)", -1),
        (-3 * DAY_MS - 5, "(3 days ago)", -3),
    ],
)
def test_days_left_and_the_text(left_ms: int, text: str, days: int) -> None:
    dated = key(ipRestrict=False, tradingAuthorityExpirationTime=NOW + left_ms)
    assert text in (dated.trading_permission(NOW) or "")
    assert dated.days_left(NOW) == days
    assert dated.trading_lapsed(NOW) is (left_ms <= 0)


def test_an_unrestricted_key_is_flagged_and_more_so_behind_a_fixed_ip() -> None:
    unrestricted = key(ipRestrict=False, tradingAuthorityExpirationTime=NOW + 20 * DAY_MS)
    shared = warnings(unrestricted, NOW, "Shared")
    assert len(shared) == 1 and "not IP-restricted" in shared[0]
    for mode in ("StaticIp", "ExistingVpc"):
        assert any(f"EgressMode is {mode}" in w for w in warnings(unrestricted, NOW, mode))


def test_seven_days_or_fewer_is_a_warning_and_an_ended_permission_fails_the_dry_run() -> None:
    assert not any("expires on" in w for w in warnings(key(tradingAuthorityExpirationTime=NOW + 8 * DAY_MS), NOW, ""))
    assert any("expires on" in w for w in warnings(key(tradingAuthorityExpirationTime=NOW + 7 * DAY_MS), NOW, ""))
    ended = key(ipRestrict=False, tradingAuthorityExpirationTime=NOW - 1)
    assert "whitelist the deployment's egress IP" in (refusal(ended, NOW, dry_run=True) or "")
    assert refusal(ended, NOW, dry_run=False) is None  # tried: the exchange says whether it needs the permission


def test_an_unchecked_permission_on_an_unrestricted_key_counts_as_lapsed() -> None:
    assert key(ipRestrict=False, enableSpotAndMarginTrading=False).trading_lapsed(NOW)
    assert not key(enableSpotAndMarginTrading=False).trading_lapsed(NOW)  # restricted: unticked by its owner


def test_the_record_holds_flags_and_dates_only() -> None:
    record = key_record(key(ipRestrict=False, tradingAuthorityExpirationTime=NOW + 2 * DAY_MS), NOW, ["w"])
    assert set(record) == {
        "ipRestricted",
        "permissions",
        "tradingPermission",
        "tradingPermissionExpiresAt",
        "tradingPermissionDaysLeft",
        "warnings",
        "checkedAt",
    }
    assert record["tradingPermissionDaysLeft"] == 2 and record["warnings"] == ["w"]


def test_what_a_collection_would_move() -> None:
    balances = {
        "USDT": FuturesBalance(Decimal("10"), Decimal("-2")),  # a negative wallet is not moved
        "BTC": FuturesBalance(Decimal("0"), Decimal("0.5")),
        "BNB": FuturesBalance(Decimal("3"), Decimal("0")),  # never
        "ETH": FuturesBalance(Decimal("0"), Decimal("0")),
    }
    assert would_move(balances) == {"BTC": "0.5", "USDT": "10"}


def test_egress_mode_is_validated() -> None:
    base = {"TABLE_NAME": "t", "SECRET_ID": "s"}
    assert Settings.from_environment(base).egress_mode == "Shared"
    assert Settings.from_environment({**base, "EGRESS_MODE": "StaticIp"}).egress_mode == "StaticIp"
    with pytest.raises(ConfigurationError, match="EGRESS_MODE must be one of Shared, StaticIp, ExistingVpc"):
        Settings.from_environment({**base, "EGRESS_MODE": "static"})


def test_an_expiry_no_exchange_sends_is_read_as_none() -> None:
    from auto_collector.key_policy import parse_restrictions

    body = {
        "ipRestrict": False,
        "enableReading": True,
        "enableWithdrawals": False,
        "enablePortfolioMarginTrading": True,
        "tradingAuthorityExpirationTime": 10**20,
    }
    assert parse_restrictions(body, 0).trading_expires_ms is None

"""The emulator's key rules over real HTTP: GET /sapi/v1/account/apiRestrictions in Binance's field names, and a
key's trading permission ending at its date (before, near and after it), a key without Portfolio Margin trading,
and withdrawals only on an IP-restricted key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from localdev.exchange_emulator import (
    ACCOUNT_PATH,
    API_RESTRICTIONS_PATH,
    AUTO_COLLECTION_PATH,
    BALANCE_PATH,
    ApiCredential,
    ExchangeEmulator,
    Fault,
)
from tests.emulator.test_exchange_emulator import HMAC_KEY, HMAC_SECRET, T0, Client, FakeClock, err

DAY_MS = 86_400_000
UNRESTRICTED_KEY = "emu-unrestricted-key"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emu(clock: FakeClock) -> Iterator[ExchangeEmulator]:
    with ExchangeEmulator(clock_ms=clock) as emulator:
        emulator.add_credential(ApiCredential(api_key=HMAC_KEY, hmac_secret=HMAC_SECRET))
        emulator.add_credential(
            ApiCredential(
                api_key=UNRESTRICTED_KEY,
                hmac_secret=HMAC_SECRET,
                ip_restricted=False,
                trading_expires_ms=T0 + 5 * DAY_MS,
            )
        )
        yield emulator
        assert emulator.internal_errors() == []


def restrictions(emu: ExchangeEmulator, clock: FakeClock, key: str = HMAC_KEY) -> requests.Response:
    return Client(emu, clock, key=key).call(API_RESTRICTIONS_PATH, {"recvWindow": "5000"})


def test_restrictions_of_a_whitelisted_key_in_binances_field_names(emu: ExchangeEmulator, clock: FakeClock) -> None:
    response = restrictions(emu, clock)

    assert response.status_code == 200
    body = response.json()
    assert body == {
        "ipRestrict": True,
        "createTime": T0,
        "enableReading": True,
        "enableWithdrawals": False,
        "enableInternalTransfer": False,
        "enableMargin": False,
        "enableFutures": False,
        "permitsUniversalTransfer": False,
        "enableVanillaOptions": False,
        "enableFixApiTrade": False,
        "enableFixReadOnly": False,
        "enableSpotAndMarginTrading": True,
        "enablePortfolioMarginTrading": True,
    }
    assert "tradingAuthorityExpirationTime" not in body  # a whitelisted key does not expire
    assert response.headers["X-SAPI-USED-IP-WEIGHT-1M"] == "1"  # weight 1, on the /sapi pool


def test_restrictions_are_signed_like_every_sapi_call(emu: ExchangeEmulator, clock: FakeClock) -> None:
    assert err(Client(emu, clock).call(API_RESTRICTIONS_PATH, sign=False)) == (400, -1102)
    assert err(Client(emu, clock, key="nobody").call(API_RESTRICTIONS_PATH)) == (401, -2015)
    assert err(Client(emu, clock).call(API_RESTRICTIONS_PATH, timestamp=T0 - 10_000)) == (400, -1021)
    assert err(Client(emu, clock).call(API_RESTRICTIONS_PATH, {"extra": "1"})) == (400, -1104)


def test_before_the_date_an_unrestricted_key_trades_and_reports_its_expiry(
    emu: ExchangeEmulator, clock: FakeClock
) -> None:
    body = restrictions(emu, clock, UNRESTRICTED_KEY).json()
    assert (body["ipRestrict"], body["tradingAuthorityExpirationTime"]) == (False, T0 + 5 * DAY_MS)
    assert body["enableSpotAndMarginTrading"] is True
    assert Client(emu, clock, key=UNRESTRICTED_KEY).call(AUTO_COLLECTION_PATH).status_code == 200


def test_a_millisecond_before_the_date_the_collection_still_works(emu: ExchangeEmulator, clock: FakeClock) -> None:
    clock.advance(5 * DAY_MS - 1)
    assert Client(emu, clock, key=UNRESTRICTED_KEY).call(AUTO_COLLECTION_PATH).status_code == 200
    assert emu.accepted_collections() == 1


def test_after_the_date_trading_is_refused_with_2015_and_reads_still_work(
    emu: ExchangeEmulator, clock: FakeClock
) -> None:
    clock.advance(5 * DAY_MS)
    client = Client(emu, clock, key=UNRESTRICTED_KEY)

    assert err(client.call(AUTO_COLLECTION_PATH)) == (401, -2015)
    assert emu.accepted_collections() == 0
    (refused,) = emu.requests(AUTO_COLLECTION_PATH)
    assert (refused.counted, refused.executed) == (False, False)  # refused before the hourly rule
    assert client.call(BALANCE_PATH).status_code == 200
    assert client.call(ACCOUNT_PATH).status_code == 200
    body = restrictions(emu, clock, UNRESTRICTED_KEY).json()
    assert body["enableSpotAndMarginTrading"] is False  # Binance unchecks it
    assert body["tradingAuthorityExpirationTime"] == T0 + 5 * DAY_MS
    # the whitelisted key of the same account is untouched
    assert Client(emu, clock).call(AUTO_COLLECTION_PATH).status_code == 200


def test_the_date_is_the_exchanges_clock(emu: ExchangeEmulator, clock: FakeClock) -> None:
    emu.server_time_offset_ms = 5 * DAY_MS  # the exchange is past the date, our caller is not
    client = Client(emu, clock, key=UNRESTRICTED_KEY)
    assert err(client.call(AUTO_COLLECTION_PATH, timestamp=clock() + 5 * DAY_MS)) == (401, -2015)


def test_a_key_without_portfolio_margin_trading_is_refused_on_pm_endpoints_only(
    emu: ExchangeEmulator, clock: FakeClock
) -> None:
    emu.add_credential(ApiCredential(api_key="pre-pm-key", hmac_secret=HMAC_SECRET, enable_pm_trading=False))
    client = Client(emu, clock, key="pre-pm-key")

    assert restrictions(emu, clock, "pre-pm-key").json()["enablePortfolioMarginTrading"] is False
    for path in (AUTO_COLLECTION_PATH, BALANCE_PATH, ACCOUNT_PATH):
        assert err(client.call(path)) == (401, -2015), path


def test_withdrawals_only_on_an_ip_restricted_key(emu: ExchangeEmulator, clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="IP-restricted"):
        emu.add_credential(
            ApiCredential(api_key="bad", hmac_secret=HMAC_SECRET, ip_restricted=False, enable_withdrawals=True)
        )
    emu.add_credential(ApiCredential(api_key="can-withdraw", hmac_secret=HMAC_SECRET, enable_withdrawals=True))
    assert restrictions(emu, clock, "can-withdraw").json()["enableWithdrawals"] is True


def test_faults_apply_to_the_restrictions_path(emu: ExchangeEmulator, clock: FakeClock) -> None:
    emu.inject(Fault(path=API_RESTRICTIONS_PATH, status=503))
    assert restrictions(emu, clock).status_code == 503
    assert restrictions(emu, clock).status_code == 200


def test_key_rules_over_the_admin_interface(emu: ExchangeEmulator, clock: FakeClock) -> None:
    admin = emu.base_url + "/_emulator/credentials"
    fields = {"api_key": "admin-key", "hmac_secret": HMAC_SECRET, "ip_restricted": False}
    response = requests.post(admin, json={**fields, "trading_expires_ms": T0 + DAY_MS}, timeout=5)
    assert response.status_code == 200, response.text
    assert restrictions(emu, clock, "admin-key").json()["tradingAuthorityExpirationTime"] == T0 + DAY_MS
    refused = requests.post(admin, json={**fields, "api_key": "x", "enable_withdrawals": True}, timeout=5)
    assert refused.status_code == 400 and "IP-restricted" in refused.text

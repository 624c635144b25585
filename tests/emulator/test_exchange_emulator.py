"""Tests of the local Binance exchange emulator itself, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from localdev.exchange_emulator import (
    ACCOUNT_PATH,
    AUTO_COLLECTION_PATH,
    BALANCE_PATH,
    SPOT_ACCOUNT_PATH,
    TIME_PATH,
    ApiCredential,
    ExchangeEmulator,
    Fault,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000_000
HMAC_KEY = "emu-hmac-key-0001"
HMAC_SECRET = "emu-hmac-secret-do-not-print"
VECTOR_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
VECTOR_TS = 1499827319559
FORM = {"Content-Type": "application/x-www-form-urlencoded"}

Signer = Callable[[str], str]


class FakeClock:
    def __init__(self, start_ms: int = T0) -> None:
        self.now = start_ms

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


def hmac_signer(secret: str) -> Signer:
    return lambda payload: hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def ed25519_signer(key: ed25519.Ed25519PrivateKey) -> Signer:
    return lambda payload: base64.b64encode(key.sign(payload.encode())).decode()


def rsa_signer(key: rsa.RSAPrivateKey) -> Signer:
    return lambda payload: base64.b64encode(key.sign(payload.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


def public_pem(key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


class Client:
    """Minimal signing client: query string params, signature appended last and percent-encoded."""

    def __init__(
        self,
        emu: ExchangeEmulator,
        clock: Callable[[], int],
        *,
        key: str = HMAC_KEY,
        signer: Signer | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.emu = emu
        self.clock = clock
        self.key = key
        self.signer = signer or hmac_signer(HMAC_SECRET)
        self.http: Any = session or requests

    def call(
        self,
        path: str = AUTO_COLLECTION_PATH,
        params: dict[str, str] | None = None,
        *,
        method: str | None = None,
        timestamp: int | None = None,
        sign: bool = True,
        with_timestamp: bool = True,
        in_body: bool = False,
        timeout: float = 5,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        method = method or ("POST" if path == AUTO_COLLECTION_PATH else "GET")
        all_params = dict(params or {})
        if with_timestamp:
            all_params.setdefault("timestamp", str(self.clock() if timestamp is None else timestamp))
        payload = urlencode(all_params)
        if sign:
            payload = f"{payload}&signature={quote(self.signer(payload), safe='')}"
        hdrs = {"X-MBX-APIKEY": self.key} if self.key else {}
        hdrs.update(headers or {})
        url = self.emu.base_url + path
        resp: requests.Response
        if in_body:
            resp = self.http.request(method, url, data=payload, headers={**hdrs, **FORM}, timeout=timeout)
        else:
            resp = self.http.request(method, f"{url}?{payload}", headers=hdrs, timeout=timeout)
        return resp


def err(resp: requests.Response) -> tuple[int, int]:
    return resp.status_code, resp.json()["code"]


@pytest.fixture(scope="module")
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emu(clock: FakeClock) -> Iterator[ExchangeEmulator]:
    with ExchangeEmulator(clock_ms=clock) as emulator:
        emulator.add_credential(ApiCredential(api_key=HMAC_KEY, hmac_secret=HMAC_SECRET))
        yield emulator
        assert emulator.internal_errors() == []


@pytest.fixture
def client(emu: ExchangeEmulator, clock: FakeClock) -> Client:
    return Client(emu, clock)


# --------------------------------------------------------------------------- signatures


def test_published_hmac_vector_is_accepted() -> None:
    assert hmac_signer(VECTOR_SECRET)(f"recvWindow=5000&timestamp={VECTOR_TS}") == (
        "82f4e72e95e63d666b6da651e82a701722ad8a785a169318d91f36f279c55821"
    )
    with ExchangeEmulator(clock_ms=lambda: VECTOR_TS) as emu:
        emu.add_credential(ApiCredential(api_key="vector-key", hmac_secret=VECTOR_SECRET))
        sig = "82f4e72e95e63d666b6da651e82a701722ad8a785a169318d91f36f279c55821"
        raw = f"recvWindow=5000&timestamp={VECTOR_TS}&signature={sig}"
        hdr = {"X-MBX-APIKEY": "vector-key"}
        url = emu.base_url + AUTO_COLLECTION_PATH
        resp = requests.post(f"{url}?{raw}", headers=hdr, timeout=5)
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"msg": "success"}
        # the same bytes as an x-www-form-urlencoded body
        assert requests.post(url, data=raw, headers={**hdr, **FORM}, timeout=5).status_code == 200
        # The order-endpoint vector verifies too; the unread order parameters are then -1104.
        order = (
            "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000"
            f"&timestamp={VECTOR_TS}&signature=c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
        )
        resp = requests.post(f"{url}?{order}", headers=hdr, timeout=5)
        assert err(resp) == (400, -1104)
        assert resp.json()["msg"] == "Not all sent parameters were read; read 3 parameter(s) but was sent 9."
        # a wrong secret's signature over the same payload is -1022
        bad = raw.replace("82f4e72e", "82f4e72f")
        assert err(requests.post(f"{url}?{bad}", headers=hdr, timeout=5)) == (400, -1022)


def test_params_split_between_query_and_body_are_concatenated(emu: ExchangeEmulator, clock: FakeClock) -> None:
    query = "recvWindow=5000"
    body = f"timestamp={clock()}"
    sig = hmac_signer(HMAC_SECRET)(query + body)  # no separator between query and body
    resp = requests.post(
        f"{emu.base_url}{AUTO_COLLECTION_PATH}?{query}",
        data=f"{body}&signature={sig}",
        headers={"X-MBX-APIKEY": HMAC_KEY, **FORM},
        timeout=5,
    )
    assert resp.status_code == 200, resp.text
    assert emu.requests()[-1].params == {"recvWindow": "5000", "timestamp": str(clock()), "signature": sig}


@pytest.mark.parametrize("kind", ["ed25519", "rsa"])
def test_asymmetric_signatures(
    emu: ExchangeEmulator,
    clock: FakeClock,
    kind: str,
    ed_key: ed25519.Ed25519PrivateKey,
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    key = ed_key if kind == "ed25519" else rsa_key
    signer = ed25519_signer(ed_key) if kind == "ed25519" else rsa_signer(rsa_key)
    emu.add_credential(ApiCredential(api_key=f"{kind}-key", public_key_pem=public_pem(key), account="acct-b"))
    c = Client(emu, clock, key=f"{kind}-key", signer=signer)
    resp = c.call(params={"recvWindow": "5000"})
    assert resp.status_code == 200, resp.text
    assert c.call(in_body=True).status_code == 200
    assert emu.accepted_collections("acct-b") == 2
    assert emu.accepted_collections("default") == 0

    # tampered: signature made for another timestamp
    tampered = Client(emu, clock, key=f"{kind}-key", signer=lambda p: signer(p.replace(str(clock()), str(clock() - 1))))
    assert err(tampered.call()) == (400, -1022)
    # not percent-encoded: "+" in base64 would turn into a space; garbage base64 is -1022 too
    garbage = Client(emu, clock, key=f"{kind}-key", signer=lambda p: "not base64 !!")
    assert err(garbage.call()) == (400, -1022)
    # an HMAC signature for an asymmetric key is -1022
    assert err(Client(emu, clock, key=f"{kind}-key").call()) == (400, -1022)


def test_add_credential_validation(ed_key: ed25519.Ed25519PrivateKey) -> None:
    emu = ExchangeEmulator()
    with pytest.raises(ValueError):
        emu.add_credential(ApiCredential(api_key="k"))
    with pytest.raises(ValueError):
        emu.add_credential(ApiCredential(api_key="k", hmac_secret="s", public_key_pem=public_pem(ed_key)))
    with pytest.raises(ValueError):
        emu.add_credential(ApiCredential(api_key="", hmac_secret="s"))


# --------------------------------------------------------------------------- request checks


def test_api_key_errors(emu: ExchangeEmulator, clock: FakeClock) -> None:
    no_key = Client(emu, clock, key="")
    resp = no_key.call()
    assert err(resp) == (401, -2014)
    assert resp.json()["msg"] == "API-key format invalid."
    resp = Client(emu, clock, key="unknown-key").call()
    assert err(resp) == (401, -2015)
    assert resp.json()["msg"] == "Invalid API-key, IP, or permissions for action."
    assert [r.counted for r in emu.requests()] == [False, False]


def test_mandatory_params(client: Client, emu: ExchangeEmulator) -> None:
    resp = client.call(with_timestamp=False)
    assert err(resp) == (400, -1102)
    assert "'timestamp'" in resp.json()["msg"]
    resp = client.call(sign=False)
    assert err(resp) == (400, -1102)
    assert "'signature'" in resp.json()["msg"]
    assert err(client.call(params={"timestamp": "abc"})) == (400, -1102)
    assert emu.accepted_collections() == 0


def test_unread_and_duplicate_params(client: Client, emu: ExchangeEmulator, clock: FakeClock) -> None:
    resp = client.call(params={"asset": "USDT"})  # asset is not a parameter of auto-collection
    assert err(resp) == (400, -1104)
    assert resp.json()["msg"] == "Not all sent parameters were read; read 2 parameter(s) but was sent 3."
    assert client.call(BALANCE_PATH, {"asset": "USDT"}).status_code == 200  # ...but of the balance endpoint
    payload = f"timestamp={clock()}&timestamp={clock()}"
    sig = hmac_signer(HMAC_SECRET)(payload)
    url = f"{emu.base_url}{AUTO_COLLECTION_PATH}?{payload}&signature={sig}"
    assert err(requests.post(url, headers={"X-MBX-APIKEY": HMAC_KEY}, timeout=5)) == (400, -1101)


def test_recv_window_limits(client: Client) -> None:
    resp = client.call(params={"recvWindow": "60001"})
    assert err(resp) == (400, -1131)
    assert resp.json()["msg"] == "recvWindow must be less than 60000"
    assert client.call(params={"recvWindow": "60000"}).status_code == 200
    assert err(client.call(params={"recvWindow": "5e3"})) == (400, -1100)


def test_timestamp_window_both_sides(client: Client, emu: ExchangeEmulator, clock: FakeClock) -> None:
    emu.ip_weight_limit_1m = 10**9  # more than 8 collections within one (frozen) minute
    now = clock()
    assert client.call(timestamp=now - 5000).status_code == 200
    resp = client.call(timestamp=now - 5001)
    assert err(resp) == (400, -1021)
    assert resp.json()["msg"] == "Timestamp for this request is outside of the recvWindow."
    assert client.call(timestamp=now - 5001, params={"recvWindow": "6000"}).status_code == 200
    assert client.call(timestamp=now + 999).status_code == 200
    assert err(client.call(timestamp=now + 1000)) == (400, -1021)

    # the server's clock runs ahead of the client's by 6 s: the client's "now" is too old
    emu.server_time_offset_ms = 6000
    assert err(client.call()) == (400, -1021)
    server_time = requests.get(emu.base_url + TIME_PATH, timeout=5).json()["serverTime"]
    assert server_time == now + 6000
    assert client.call(timestamp=server_time).status_code == 200
    # the server is 1 s behind the client: the client's "now" is too far ahead
    emu.server_time_offset_ms = -1000
    assert err(client.call()) == (400, -1021)
    assert client.call(timestamp=now - 1000).status_code == 200
    assert [r.code for r in emu.requests(AUTO_COLLECTION_PATH) if r.status != 200] == [-1021] * 4


def test_unknown_path(emu: ExchangeEmulator) -> None:
    resp = requests.get(emu.base_url + "/sapi/v1/nope", timeout=5)
    assert resp.status_code == 404
    assert isinstance(resp.json()["code"], int)
    assert requests.get(emu.base_url + AUTO_COLLECTION_PATH, timeout=5).status_code == 404  # wrong method


# --------------------------------------------------------------------------- the hourly rule


def test_hourly_limit_rolling_window(clock: FakeClock) -> None:
    with ExchangeEmulator(clock_ms=clock, hourly_limit=3) as emu:
        emu.add_credential(ApiCredential(api_key=HMAC_KEY, hmac_secret=HMAC_SECRET))
        emu.add_credential(ApiCredential(api_key="second-key", hmac_secret="other", account="default"))
        c = Client(emu, clock)
        for _ in range(3):
            assert c.call().status_code == 200
            clock.advance(1000)
        # a second key of the same account shares the budget
        resp = Client(emu, clock, key="second-key", signer=hmac_signer("other")).call()
        assert err(resp) == (429, -1003)
        assert resp.json()["msg"] == (
            "Too many requests; current limit of auto-collection is 3 requests per hour. "
            "Please use the websocket for live updates to avoid polling the API."
        )
        assert int(resp.headers["Retry-After"]) == 3600 - 3
        assert len(emu.violations()) == 1
        assert emu.violations()[0].counted is False
        assert emu.violations()[0].executed is False
        # non-collection endpoints are not limited by it
        assert c.call(BALANCE_PATH).status_code == 200

        clock.now = T0 + 3_600_000  # the first request (at T0) leaves the window (t-1h, t]
        assert c.call().status_code == 200
        assert err(c.call()) == (429, -1003)
        assert emu.accepted_collections() == 4
        assert emu.max_counted_in_any_window() == 3
        assert emu.max_counted_in_any_window(window_ms=3_600_001) == 4
        assert len(emu.violations()) == 2

        emu.reset()
        assert emu.requests() == [] and emu.violations() == []
        assert c.call().status_code == 200  # counters cleared, credentials kept


def test_clear_faults_keeps_the_log_and_the_counters(clock: FakeClock) -> None:
    with ExchangeEmulator(clock_ms=clock, hourly_limit=2) as emu:
        emu.add_credential(ApiCredential(api_key=HMAC_KEY, hmac_secret=HMAC_SECRET))
        c = Client(emu, clock)
        assert c.call().status_code == 200
        emu.inject(Fault(status=503, count=5))
        emu.clear_faults()
        assert emu.pending_faults() == []
        assert c.call().status_code == 200  # the fault is gone
        assert err(c.call()) == (429, -1003)  # the hourly count is not: 2 already
        assert len(emu.requests()) == 3


def test_hourly_limit_under_concurrency(clock: FakeClock) -> None:
    # The IP weight limit is lifted here on purpose: this test counts the hourly limit alone, and its 30 collections
    # in one instant would otherwise be refused by the 12,000-a-minute weight first.
    with ExchangeEmulator(clock_ms=clock, hourly_limit=10, ip_weight_limit_1m=10**9) as emu:
        emu.add_credential(ApiCredential(api_key=HMAC_KEY, hmac_secret=HMAC_SECRET))
        c = Client(emu, clock)
        statuses: list[int] = []
        lock = threading.Lock()

        def worker() -> None:
            code = c.call().status_code
            with lock:
                statuses.append(code)

        threads = [threading.Thread(target=worker) for _ in range(30)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(statuses) == [200] * 10 + [429] * 20
        assert emu.max_counted_in_any_window() == 10
        assert len(emu.violations()) == 20


# --------------------------------------------------------------------------- faults


def test_5xx_without_and_with_execution(client: Client, emu: ExchangeEmulator) -> None:
    emu.set_balances("default", {"USDT": {"umWalletBalance": "10", "crossMarginFree": "1"}})
    emu.inject(Fault(status=500), Fault(status=500, execute=True))
    resp = client.call()
    assert err(resp) == (500, -1000)
    rec = emu.requests()[-1]
    assert (rec.status, rec.code, rec.counted, rec.executed) == (500, -1000, True, False)
    assert emu.balances("default")["USDT"]["crossMarginFree"] == "1"

    assert client.call().status_code == 500
    rec = emu.requests()[-1]
    assert (rec.counted, rec.executed) == (True, True)
    assert emu.balances("default")["USDT"]["crossMarginFree"] == "11"
    assert emu.accepted_collections() == 1
    assert emu.max_counted_in_any_window() == 2
    assert client.call().status_code == 200  # faults consumed


def test_5xx_default_bodies_and_count(client: Client, emu: ExchangeEmulator) -> None:
    emu.inject(Fault(status=503, count=2), Fault(status=504), Fault(status=502, code=-1007, msg="custom"))
    resp = client.call()
    assert resp.json() == {"code": -1000, "msg": "Unknown error, please check your request or try again later."}
    assert client.call().status_code == 503
    assert err(client.call()) == (504, -1007)
    assert client.call().json() == {"code": -1007, "msg": "custom"}
    assert client.call().status_code == 200
    assert emu.pending_faults() == []


def test_rate_limit_and_ban_faults_do_not_count(client: Client, emu: ExchangeEmulator) -> None:
    emu.inject(
        Fault(status=429, retry_after=7),
        Fault(status=418, retry_after=120),
        Fault(status=451),
        Fault(status=403),
        Fault(code=-21001),
    )
    resp = client.call()
    assert err(resp) == (429, -1003)
    assert resp.headers["Retry-After"] == "7"
    resp = client.call()
    assert err(resp) == (418, -1003)
    assert resp.headers["Retry-After"] == "120"
    assert "banned until" in resp.json()["msg"]
    resp = client.call()
    assert err(resp) == (451, 0)
    assert "restricted location" in resp.json()["msg"]
    resp = client.call()
    assert resp.status_code == 403
    assert resp.headers["Content-Type"].startswith("text/html")
    resp = client.call()
    assert resp.json() == {"code": -21001, "msg": "Request ID is not a Portfolio Margin Account."}
    assert resp.status_code == 400
    recs = emu.requests()
    assert [r.status for r in recs] == [429, 418, 451, 403, 400]
    assert not any(r.counted or r.executed for r in recs)
    assert emu.max_counted_in_any_window() == 0


def test_drop_closes_connection(client: Client, emu: ExchangeEmulator) -> None:
    emu.set_balances("default", {"BTC": {"cmWalletBalance": "2"}})
    emu.inject(Fault(drop=True), Fault(drop=True, execute=True))
    with pytest.raises(requests.ConnectionError):
        client.call()
    rec = emu.requests()[-1]
    assert (rec.status, rec.counted, rec.executed) == (0, True, False)
    with pytest.raises(requests.ConnectionError):
        client.call()
    assert emu.requests()[-1].executed is True
    assert emu.balances("default")["BTC"]["crossMarginFree"] == "2"
    assert client.call().status_code == 200


def test_delay_provokes_client_timeout_and_still_executes(client: Client, emu: ExchangeEmulator) -> None:
    emu.inject(Fault(delay_s=0.6))
    with pytest.raises(requests.Timeout):
        client.call(timeout=0.15)
    rec = emu.requests()[-1]
    assert (rec.status, rec.counted, rec.executed) == (200, True, True)
    assert emu.accepted_collections() == 1
    # delay + status: slow error answer
    emu.inject(Fault(status=500, delay_s=0.1))
    assert client.call(timeout=5).status_code == 500


def test_faults_on_other_paths(client: Client, emu: ExchangeEmulator) -> None:
    emu.inject(Fault(path=BALANCE_PATH, status=500), Fault(path=TIME_PATH, status=502))
    assert client.call(BALANCE_PATH).status_code == 500
    assert client.call(BALANCE_PATH).status_code == 200
    assert requests.get(emu.base_url + TIME_PATH, timeout=5).status_code == 502
    assert requests.get(emu.base_url + TIME_PATH, timeout=5).status_code == 200
    assert emu.max_counted_in_any_window() == 0


def test_faults_apply_after_auth_checks(client: Client, emu: ExchangeEmulator, clock: FakeClock) -> None:
    emu.inject(Fault(status=500))
    assert err(Client(emu, clock, key="unknown-key").call()) == (401, -2015)
    assert err(client.call(timestamp=clock() - 60_000)) == (400, -1021)
    assert client.call().status_code == 500  # the fault was still queued


# --------------------------------------------------------------------------- balances, account, weight


def test_balances_and_collection(client: Client, emu: ExchangeEmulator, clock: FakeClock) -> None:
    emu.set_balances(
        "default",
        {
            "USDT": {"umWalletBalance": "100.5", "cmWalletBalance": "0", "crossMarginFree": "10"},
            "BTC": {"umWalletBalance": "0.1", "cmWalletBalance": "0.25", "crossMarginLocked": "1"},
            "BNB": {"umWalletBalance": "3", "crossMarginFree": "0.5"},
            "ETH": {"umWalletBalance": "-1", "cmWalletBalance": "0.2"},
        },
    )
    resp = client.call(BALANCE_PATH)
    assert resp.status_code == 200
    rows = {row["asset"]: row for row in resp.json()}
    assert set(rows) == {"USDT", "BTC", "BNB", "ETH"}
    usdt = rows["USDT"]
    assert set(usdt) == {
        "asset",
        "totalWalletBalance",
        "crossMarginAsset",
        "crossMarginBorrowed",
        "crossMarginFree",
        "crossMarginInterest",
        "crossMarginLocked",
        "umWalletBalance",
        "umUnrealizedPNL",
        "cmWalletBalance",
        "cmUnrealizedPNL",
        "updateTime",
        "negativeBalance",
    }
    assert usdt["totalWalletBalance"] == "110.5"
    assert usdt["crossMarginBorrowed"] == "0"
    assert usdt["updateTime"] == clock()
    only = client.call(BALANCE_PATH, {"asset": "BTC"}).json()
    assert len(only) == 1 and only[0]["asset"] == "BTC"
    assert only[0]["totalWalletBalance"] == "1.35"

    assert client.call().json() == {"msg": "success"}
    after = emu.balances("default")
    assert after["USDT"]["umWalletBalance"] == "0"
    assert after["USDT"]["crossMarginFree"] == "110.5"
    assert after["USDT"]["totalWalletBalance"] == "110.5"
    assert (after["BTC"]["crossMarginFree"], after["BTC"]["umWalletBalance"], after["BTC"]["cmWalletBalance"]) == (
        "0.35",
        "0",
        "0",
    )
    assert after["BTC"]["totalWalletBalance"] == "1.35"
    assert after["BNB"]["umWalletBalance"] == "3"  # BNB is never collected
    assert after["BNB"]["crossMarginFree"] == "0.5"
    assert (after["ETH"]["umWalletBalance"], after["ETH"]["crossMarginFree"]) == ("-1", "0.2")  # only positive moves
    # a second collection moves nothing
    assert client.call().status_code == 200
    assert emu.balances("default") == after

    account = client.call(ACCOUNT_PATH).json()
    assert account["accountStatus"] == "NORMAL" and account["accountType"] == "PM_1"
    assert {"uniMMR", "accountEquity", "actualEquity", "accountMaintMargin"} <= set(account)
    emu.set_account_info("default", accountStatus="MARGIN_CALL")
    assert client.call(ACCOUNT_PATH).json()["accountStatus"] == "MARGIN_CALL"

    with pytest.raises(ValueError):
        emu.set_balances("default", {"USDT": {"umWalletBalance": "lots"}})
    with pytest.raises(ValueError):
        emu.set_balances("default", {"USDT": {"umWallet": "1"}})


def test_sapi_weight_header_and_limit(client: Client, emu: ExchangeEmulator, clock: FakeClock) -> None:
    for i in range(1, 9):
        resp = client.call()
        assert resp.status_code == 200
        assert resp.headers["X-SAPI-USED-IP-WEIGHT-1M"] == str(1500 * i)
        clock.advance(1000)
    resp = client.call()  # 8 * 1500 = 12000 used in the last minute
    assert err(resp) == (429, -1003)
    assert resp.headers["X-SAPI-USED-IP-WEIGHT-1M"] == "12000"
    assert resp.headers["Retry-After"] == "52"  # the first 1500 leave the window at T0 + 60 s
    assert err(client.call(ACCOUNT_PATH)) == (429, -1003)
    refused = emu.requests()[-1]
    assert (refused.counted, refused.executed) == (False, False)
    assert emu.violations() == []  # weight refusals are not hourly-rule violations
    clock.now = T0 + 60_000
    resp = client.call()
    assert resp.status_code == 200
    assert resp.headers["X-SAPI-USED-IP-WEIGHT-1M"] == "12000"
    t = requests.get(emu.base_url + TIME_PATH, timeout=5)
    assert t.headers["X-MBX-USED-WEIGHT-1M"] == "1"
    assert "X-SAPI-USED-IP-WEIGHT-1M" not in t.headers
    # errors on /sapi carry the header too
    assert "X-SAPI-USED-IP-WEIGHT-1M" in Client(emu, clock, key="nope").call().headers


def test_the_spot_account_names_the_account_by_uid_on_the_api_weight_pool(
    client: Client, emu: ExchangeEmulator, clock: FakeClock
) -> None:
    emu.add_credential(ApiCredential(api_key="second-key", hmac_secret=HMAC_SECRET))  # another key, same account
    emu.add_credential(ApiCredential(api_key="other-key", hmac_secret=HMAC_SECRET, account="other"))
    uids = []
    for key in (HMAC_KEY, "second-key", "other-key"):
        resp = Client(emu, clock, key=key).call(SPOT_ACCOUNT_PATH, {"omitZeroBalances": "true"})
        assert resp.status_code == 200
        uids.append(resp.json()["uid"])
        assert "X-SAPI-USED-IP-WEIGHT-1M" not in resp.headers
    assert uids[0] == uids[1] != uids[2]
    assert resp.headers["X-MBX-USED-WEIGHT-1M"] == "60"  # three reads of weight 20, on /api's own limit
    assert emu.used_ip_weight_1m() == 0  # nothing on /sapi
    assert err(client.call(SPOT_ACCOUNT_PATH, {"omitZeroBalances": "true"}, timestamp=T0 - 10_000)) == (400, -1021)


# --------------------------------------------------------------------------- HTTP behaviour


def test_keep_alive_reuses_one_connection(emu: ExchangeEmulator, clock: FakeClock) -> None:
    with requests.Session() as session:
        c = Client(emu, clock, session=session)
        assert session.get(emu.base_url + TIME_PATH, timeout=5).status_code == 200
        assert c.call().status_code == 200
        assert err(c.call(params={"recvWindow": "70000"})) == (400, -1131)
        assert c.call(BALANCE_PATH).status_code == 200
        assert c.call(ACCOUNT_PATH).status_code == 200
        assert c.call(in_body=True).status_code == 200
        assert emu.connections_opened == 1
        # a drop on the reused connection surfaces as one ConnectionError, not a silent retry
        emu.inject(Fault(drop=True))
        before = len(emu.requests())
        with pytest.raises(requests.ConnectionError):
            c.call()
        assert len(emu.requests()) == before + 1
        assert c.call().status_code == 200  # the session reconnects
    assert emu.connections_opened == 2


def test_server_never_prints_secrets(
    capfd: pytest.CaptureFixture[str], client: Client, emu: ExchangeEmulator, clock: FakeClock
) -> None:
    emu.inject(Fault(status=500), Fault(drop=True))
    client.call()
    with pytest.raises(requests.ConnectionError):
        client.call()
    client.call()
    Client(emu, clock, key="unknown-key").call()
    requests.get(emu.base_url + "/nowhere?secret=x", timeout=5)
    out, errout = capfd.readouterr()
    for text in (out, errout):
        assert HMAC_KEY not in text
        assert HMAC_SECRET not in text
        assert "signature" not in text
        assert "timestamp" not in text


def test_stop_releases_port(clock: FakeClock) -> None:
    emu = ExchangeEmulator(clock_ms=clock).start()
    url = emu.base_url
    assert requests.get(url + TIME_PATH, timeout=5).status_code == 200
    emu.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(url + TIME_PATH, timeout=2)
    emu.stop()  # idempotent


# --------------------------------------------------------------------------- admin HTTP API and standalone


def test_admin_http_api(clock: FakeClock, ed_key: ed25519.Ed25519PrivateKey) -> None:
    with ExchangeEmulator(clock_ms=clock) as emu:
        admin = emu.base_url + "/_emulator"
        pem = public_pem(ed_key).decode()
        resp = requests.post(
            f"{admin}/credentials", json={"api_key": "ed-key", "public_key_pem": pem, "account": "main"}, timeout=5
        )
        assert resp.status_code == 200, resp.text
        assert requests.post(f"{admin}/credentials", json={"api_key": "x", "bogus": 1}, timeout=5).status_code == 400
        balances = {"USDT": {"umWalletBalance": "5", "crossMarginFree": "1"}}
        assert requests.put(f"{admin}/balances/main", json=balances, timeout=5).status_code == 200
        assert requests.get(f"{admin}/balances/main", timeout=5).json()["USDT"]["totalWalletBalance"] == "6"
        faults = [{"status": 503}, {"status": 429, "retry_after": 3}]
        assert requests.post(f"{admin}/faults", json=faults, timeout=5).json()["queued"] == 2
        assert len(requests.get(f"{admin}/faults", timeout=5).json()) == 2

        c = Client(emu, clock, key="ed-key", signer=ed25519_signer(ed_key))
        assert c.call().status_code == 503
        assert c.call().headers["Retry-After"] == "3"
        assert c.call().status_code == 200
        assert emu.balances("main")["USDT"]["crossMarginFree"] == "6"

        recs = requests.get(f"{admin}/requests", timeout=5).json()
        assert [r["status"] for r in recs] == [503, 429, 200]
        assert recs[0]["account"] == "main" and recs[0]["counted"] is True and recs[0]["executed"] is False
        assert set(recs[0]) == {
            "received_ms",
            "method",
            "path",
            "api_key",
            "account",
            "params",
            "signature",
            "status",
            "code",
            "counted",
            "executed",
        }
        assert requests.get(f"{admin}/requests", params={"path": TIME_PATH}, timeout=5).json() == []
        stats = requests.get(f"{admin}/stats", timeout=5).json()
        assert stats["accepted_collections"] == {"main": 1}
        assert stats["max_counted_in_any_window"] == {"main": 2}

        assert requests.put(f"{admin}/server-time-offset", json={"server_time_offset_ms": 2500}, timeout=5).ok
        assert requests.get(emu.base_url + TIME_PATH, timeout=5).json() == {"serverTime": clock() + 2500}

        assert requests.post(f"{admin}/reset", timeout=5).status_code == 200
        assert requests.get(f"{admin}/requests", timeout=5).json() == []
        assert emu.requests() == []
        assert c.call(timestamp=clock() + 2500).status_code == 200  # credentials survive reset
        assert requests.get(f"{admin}/nothing", timeout=5).status_code == 404


def test_standalone_process() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "localdev.exchange_emulator", "--port", "0"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        threading.Thread(target=lambda: lines.put(proc.stdout.readline() if proc.stdout else ""), daemon=True).start()
        first = lines.get(timeout=10)
        assert first.startswith("exchange emulator listening on http://127.0.0.1:"), first
        base = first.rsplit(" ", 1)[1].strip()
        creds = {"api_key": "cli-key", "hmac_secret": "cli-secret"}
        assert requests.post(f"{base}/_emulator/credentials", data=json.dumps(creds), timeout=5).ok
        server_time = requests.get(base + TIME_PATH, timeout=5).json()["serverTime"]
        payload = f"timestamp={server_time}"
        sig = hmac_signer("cli-secret")(payload)
        resp = requests.post(
            f"{base}{AUTO_COLLECTION_PATH}?{payload}&signature={sig}", headers={"X-MBX-APIKEY": "cli-key"}, timeout=5
        )
        assert resp.json() == {"msg": "success"}
    finally:
        proc.terminate()
        _, errout = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "cli-secret" not in errout and "cli-key" not in errout

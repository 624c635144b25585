"""The exchange over HTTP: one signed request at a time, classified the way the collector decides on it.

One `requests.Session` per process keeps the TLS connection alive across warm invocations. The
signed parameters travel in the POST body, so they never show up in URL logs (urllib3 logs URLs).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Literal

import requests

from .credentials import ApiCredentials
from .key_policy import KeyRestrictions, parse_restrictions
from .signing import signed_payload

AUTO_COLLECTION_PATH = "/sapi/v1/portfolio/auto-collection"
BALANCE_PATH = "/sapi/v1/portfolio/balance"
API_RESTRICTIONS_PATH = "/sapi/v1/account/apiRestrictions"
#: The spot account (weight 20 on the /api limits, not /sapi): its `uid` names the exchange account.
SPOT_ACCOUNT_PATH = "/api/v3/account"
SERVER_TIME_PATH = "/api/v3/time"
#: The timestamp is outside recvWindow by the exchange's clock: a resync (GET /api/v3/time) fixes it.
CODE_TIMESTAMP_OUTSIDE_WINDOW = -1021
_CONNECT_TIMEOUT_S = 3.0
#: Error codes, weights and Retry-After are small numbers; anything longer is garbage and is ignored.
_MAX_INT_DIGITS = 9
#: Lambda hosts keep NTP time; the exchange's clock is never further off than this.
MAX_CLOCK_OFFSET_MS = 15 * 60_000

# urllib3 would log request URLs at DEBUG; keep our transport quiet whatever the root level is.
logging.getLogger("urllib3").setLevel(logging.WARNING)

Verdict = Literal["success", "retryable", "clock_skew", "rate_limited", "rejected"]


@dataclass(frozen=True)
class AttemptResult:
    """What one HTTP attempt produced (nothing secret: status, code, message, timings)."""

    verdict: Verdict
    http_status: int  # 0 when no response arrived
    code: int | None
    message: str
    latency_ms: int
    used_weight_1m: int | None = None
    retry_after_s: int | None = None


class BinanceClient:
    def __init__(
        self,
        base_url: str,
        session: requests.Session | None = None,
        local_clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self.base_url = base_url
        self._session = session or requests.Session()
        self._local_clock_ms = local_clock_ms or (lambda: time.time_ns() // 1_000_000)
        #: server clock minus local clock, learned from /api/v3/time after a -1021; kept while warm.
        self.clock_offset_ms = 0

    def server_now_ms(self) -> int:
        return self._local_clock_ms() + self.clock_offset_ms

    def auto_collect(
        self, credentials: ApiCredentials, timestamp_ms: int, recv_window_ms: int, timeout_s: float
    ) -> AttemptResult:
        body = signed_payload({"recvWindow": recv_window_ms, "timestamp": timestamp_ms}, credentials.signer)
        headers = {"X-MBX-APIKEY": credentials.api_key, "Content-Type": "application/x-www-form-urlencoded"}
        result, _ = self._send("POST", self.base_url + AUTO_COLLECTION_PATH, headers, timeout_s, body=body)
        return result

    def balances(
        self, credentials: ApiCredentials, recv_window_ms: int, timeout_s: float, timestamp_ms: int | None = None
    ) -> tuple[AttemptResult, dict[str, FuturesBalance]]:
        """The futures wallet balances per asset (GET /sapi/v1/portfolio/balance, weight 20), signed with
        `timestamp_ms` (the instant its IP weight was reserved) or now."""
        timestamp = self.server_now_ms() if timestamp_ms is None else timestamp_ms
        query = signed_payload({"recvWindow": recv_window_ms, "timestamp": timestamp}, credentials.signer)
        url = f"{self.base_url}{BALANCE_PATH}?{query}"
        result, response = self._send("GET", url, {"X-MBX-APIKEY": credentials.api_key}, timeout_s)
        if result.verdict != "success" or response is None:
            return result, {}
        try:
            return result, parse_balances(response.json())
        except (ValueError, KeyError, TypeError, ArithmeticError):
            return replace(result, verdict="rejected", message="unexpected balance response"), {}

    def api_restrictions(
        self, credentials: ApiCredentials, recv_window_ms: int, timeout_s: float, timestamp_ms: int
    ) -> tuple[AttemptResult, KeyRestrictions | None]:
        """What the key may do (GET /sapi/v1/account/apiRestrictions, weight 1), signed with `timestamp_ms`."""
        query = signed_payload({"recvWindow": recv_window_ms, "timestamp": timestamp_ms}, credentials.signer)
        url = f"{self.base_url}{API_RESTRICTIONS_PATH}?{query}"
        result, response = self._send("GET", url, {"X-MBX-APIKEY": credentials.api_key}, timeout_s)
        if result.verdict != "success" or response is None:
            return result, None
        try:
            return result, parse_restrictions(response.json(), self.server_now_ms())
        except ValueError as error:
            return replace(result, verdict="rejected", message=f"unexpected key restrictions response: {error}"), None

    def account_uid(
        self, credentials: ApiCredentials, recv_window_ms: int, timeout_s: float, timestamp_ms: int
    ) -> tuple[AttemptResult, int | None]:
        """The exchange account's uid (GET /api/v3/account): every key of one account answers the same uid, so it
        names whose hourly collection budget the key spends."""
        params: dict[str, str | int] = {
            "omitZeroBalances": "true",
            "recvWindow": recv_window_ms,
            "timestamp": timestamp_ms,
        }
        url = f"{self.base_url}{SPOT_ACCOUNT_PATH}?{signed_payload(params, credentials.signer)}"
        result, response = self._send("GET", url, {"X-MBX-APIKEY": credentials.api_key}, timeout_s)
        if result.verdict != "success" or response is None:
            return result, None
        try:
            uid = response.json()["uid"]
        except (ValueError, KeyError, TypeError):
            uid = None
        if not isinstance(uid, int) or isinstance(uid, bool) or not 0 < uid < 2**63:
            return replace(result, verdict="rejected", message="the account answer carries no uid"), None
        return result, uid

    def _send(
        self, method: str, url: str, headers: dict[str, str], timeout_s: float, body: str | None = None
    ) -> tuple[AttemptResult, requests.Response | None]:
        """One request, classified, with the time it took; the response too when one was read."""
        started = time.perf_counter()
        try:
            response = self._session.request(method, url, data=body, headers=headers, timeout=_split_timeout(timeout_s))
        except requests.Timeout:
            return AttemptResult("retryable", 0, None, "timed out waiting for the exchange", _ms_since(started)), None
        except requests.ConnectionError as error:
            message = f"connection failed ({type(error).__name__})"
            return AttemptResult("retryable", 0, None, message, _ms_since(started)), None
        except requests.RequestException as error:
            # The request went out but its answer was cut off or garbled (e.g. ChunkedEncodingError when the
            # connection drops mid-body): like a 5XX, the execution status is unknown and a retry may help.
            message = f"the answer could not be read ({type(error).__name__})"
            return AttemptResult("retryable", 0, None, message, _ms_since(started)), None
        return classify(response, _ms_since(started)), response

    def sync_clock(self, timeout_s: float) -> int:
        """Learn the offset between the exchange's clock and ours; returns it in ms."""
        before = self._local_clock_ms()
        response = self._session.get(self.base_url + SERVER_TIME_PATH, timeout=_split_timeout(timeout_s))
        after = self._local_clock_ms()
        response.raise_for_status()
        server_time = int(response.json()["serverTime"])
        offset_ms = server_time - (before + after) // 2
        if abs(offset_ms) > MAX_CLOCK_OFFSET_MS:
            # A server time this far off is garbage (a unit mix-up, a broken answer): signing with it would put
            # far-future expiries into both windows and lock the account for that long.
            raise ValueError(f"implausible server time: {offset_ms} ms from this host's clock")
        self.clock_offset_ms = offset_ms
        return self.clock_offset_ms


@dataclass(frozen=True)
class FuturesBalance:
    """What auto-collection can move for one asset: its UM and CM futures wallet balances."""

    um: Decimal
    cm: Decimal

    @property
    def total(self) -> Decimal:
        return self.um + self.cm


def parse_balances(body: object) -> dict[str, FuturesBalance]:
    if not isinstance(body, list):
        raise TypeError("balance response is not a list")
    return {
        str(row["asset"]): FuturesBalance(
            Decimal(str(row.get("umWalletBalance", "0"))), Decimal(str(row.get("cmWalletBalance", "0")))
        )
        for row in body
    }


def classify(response: requests.Response, latency_ms: int) -> AttemptResult:
    status = response.status_code
    code, message = _error_body(response)
    weight = _int_header(response, "X-SAPI-USED-IP-WEIGHT-1M")
    retry_after = _int_header(response, "Retry-After")
    verdict: Verdict
    if status == 200 and code is None:
        verdict = "success"
    elif status in (418, 429):
        verdict = "rate_limited"
    elif status >= 500:
        verdict = "retryable"  # execution status unknown; collecting twice is harmless
    elif code == CODE_TIMESTAMP_OUTSIDE_WINDOW:
        verdict = "clock_skew"
    else:
        verdict = "rejected"
    return AttemptResult(verdict, status, code, message, latency_ms, weight, retry_after)


def _error_body(response: requests.Response) -> tuple[int | None, str]:
    try:
        body = response.json()
    except ValueError:
        return None, f"non-JSON body ({len(response.content)} bytes)" if response.status_code != 200 else ""
    if isinstance(body, dict):
        code = body.get("code")
        message = str(body.get("msg", ""))[:500]
        if isinstance(code, int) and not isinstance(code, bool) and abs(code) < 10**_MAX_INT_DIGITS and code != 200:
            return code, message
        return None, message
    return None, ""


def _int_header(response: requests.Response, name: str) -> int | None:
    """A numeric header, or None: also for a value no sane exchange sends (it would end up in records and windows)."""
    value = str(response.headers.get(name) or "").strip()
    if not value.isdigit() or len(value) > _MAX_INT_DIGITS:
        return None
    return int(value)


def _split_timeout(total_s: float) -> tuple[float, float]:
    """(connect, read) timeouts whose sum is `total_s`: requests applies them one after the other, and the
    caller's bound (the invocation's remaining time) is for the whole attempt."""
    connect = min(_CONNECT_TIMEOUT_S, total_s / 3)
    return connect, total_s - connect


def _ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)

"""Local Binance exchange emulator for Portfolio Margin Pro "Fund Auto-collection".

There is no Binance testnet for the PM Pro ``/sapi`` endpoints, so this module serves a real HTTP
server on 127.0.0.1 that checks what Binance checks (API key, timestamp/recvWindow, HMAC / Ed25519 /
RSA signatures, unread parameters, the 500-calls-per-rolling-hour rule of auto-collection, the
per-minute /sapi IP weight) and answers like Binance (``{"code": <int>, "msg": "<text>"}``).

Endpoints served:

* ``GET  /api/v3/time``                          unsigned, weight 1
* ``POST /sapi/v1/portfolio/auto-collection``    signed, weight 1500, at most ``hourly_limit`` per
  account in any rolling hour
* ``GET  /sapi/v1/portfolio/balance``            signed, weight 20, optional ``asset``
* ``GET  /sapi/v1/portfolio/account``            signed, weight 5

Faults (5XX with or without execution, 429/418 with Retry-After, 451, 4XX, delays, dropped
connections) can be injected from Python (:meth:`ExchangeEmulator.inject`) or over the admin HTTP
interface under ``/_emulator/`` so that a separate process (``make run``) can drive it::

    POST /_emulator/faults               JSON list (or one object) of Fault fields
    GET  /_emulator/requests[?path=...]  JSON list of RecordedRequest
    POST /_emulator/reset
    POST /_emulator/credentials          JSON object (or list) of ApiCredential fields, PEM as string
    PUT  /_emulator/balances/<account>   JSON {asset: {field: "decimal string"}}
    GET  /_emulator/balances/<account>
    PUT  /_emulator/server-time-offset   JSON {"server_time_offset_ms": <int>}
    GET  /_emulator/stats

Standalone: ``python -m localdev.exchange_emulator --port 8765``.

The server never writes request parameters, signatures, keys or secrets to stdout/stderr.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import dataclasses
import hashlib
import hmac
import json
import math
import signal
import socket
import socketserver
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, unquote, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

__all__ = [
    "ACCOUNT_PATH",
    "AUTO_COLLECTION_PATH",
    "BALANCE_PATH",
    "TIME_PATH",
    "ApiCredential",
    "ExchangeEmulator",
    "Fault",
    "RecordedRequest",
    "main",
]

TIME_PATH = "/api/v3/time"
AUTO_COLLECTION_PATH = "/sapi/v1/portfolio/auto-collection"
BALANCE_PATH = "/sapi/v1/portfolio/balance"
ACCOUNT_PATH = "/sapi/v1/portfolio/account"

ADMIN_PREFIX = "/_emulator/"
HOUR_MS = 3_600_000
MINUTE_MS = 60_000
MAX_RECV_WINDOW_MS = 60_000
DEFAULT_RECV_WINDOW_MS = 5_000
SAPI_WEIGHT_HEADER = "X-SAPI-USED-IP-WEIGHT-1M"
API_WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"

# Binance's texts for the codes this emulator produces or that tests are likely to inject.
MESSAGES: dict[int, str] = {
    -1000: "An unknown error occurred while processing the request.",
    -1001: "Internal error; unable to process your request. Please try again.",
    -1002: "You are not authorized to execute this request.",
    -1003: (
        "Too much request weight used; current limit is 12000 request weight per 1 MINUTE. "
        "Please use WebSocket Streams for live updates to avoid polling the API."
    ),
    -1006: "An unexpected response was received from the message bus. Execution status unknown.",
    -1007: "Timeout waiting for response from backend server. Send status unknown; execution status unknown.",
    -1008: "Server is currently overloaded with other requests. Please try again in a few minutes.",
    -1021: "Timestamp for this request is outside of the recvWindow.",
    -1022: "Signature for this request is not valid.",
    -1100: "Illegal characters found in a parameter.",
    -1101: "Duplicate values for a parameter detected.",
    -1102: "A mandatory parameter was not sent, was empty/null, or malformed.",
    -1104: "Not all sent parameters were read.",
    -1131: "recvWindow must be less than 60000",
    -2014: "API-key format invalid.",
    -2015: "Invalid API-key, IP, or permissions for action.",
    -21001: "Request ID is not a Portfolio Margin Account.",
    -21003: "Fail to retrieve margin assets.",
    -21007: "User failed to repay portfolio margin bankruptcy loan since liquidation was in process.",
}

HOURLY_LIMIT_MSG = (
    "Too many requests; current limit of auto-collection is {limit} requests per hour. "
    "Please use the websocket for live updates to avoid polling the API."
)
IP_BANNED_MSG = (
    "Way too much request weight used; IP banned until {until}. "
    "Please use WebSocket Streams for live updates to avoid bans."
)
RESTRICTED_LOCATION_MSG = (
    "Service unavailable from a restricted location according to 'b. Eligibility' in "
    "https://www.binance.com/en/terms. Please contact customer service if you believe you "
    "received this message in error."
)
WAF_403_BODY = (
    '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01 Transitional//EN">\n'
    "<HTML><HEAD><TITLE>ERROR: The request could not be satisfied</TITLE></HEAD>"
    "<BODY><H1>403 ERROR</H1><H2>The request could not be satisfied.</H2>"
    "Request blocked.</BODY></HTML>\n"
)

# Fields of one asset in GET /sapi/v1/portfolio/balance, in Binance's order.
BALANCE_FIELDS: tuple[str, ...] = (
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
    "negativeBalance",
)
# Derived fields, always recomputed: totalWalletBalance = free + locked + um + cm,
# crossMarginAsset = free + locked.
DERIVED_FIELDS = frozenset({"totalWalletBalance", "crossMarginAsset"})
NEVER_COLLECTED = frozenset({"BNB"})


# --------------------------------------------------------------------------- public data types


@dataclass
class ApiCredential:
    """One registered API key."""

    api_key: str
    hmac_secret: str | None = None  # HMAC-SHA256 key
    public_key_pem: bytes | None = None  # Ed25519 or RSA public key (PEM, SubjectPublicKeyInfo)
    account: str = "default"  # several keys may share an account


@dataclass
class Fault:
    """One injected fault, consumed by the next matching request(s) on ``path``.

    Faults are applied after the API-key, weight, parameter, timing and signature checks.
    On the auto-collection path a fault that is a 5XX, a pure delay or a drop counts against the
    hourly limit (an "attempt"); 4XX faults (including 429/418/451) neither count nor execute.
    ``execute`` makes a 5XX (or a drop) still perform the collection.
    """

    path: str = AUTO_COLLECTION_PATH
    status: int | None = None
    code: int | None = None
    retry_after: int | None = None
    delay_s: float = 0.0
    drop: bool = False
    execute: bool = False
    count: int = 1
    msg: str | None = None  # overrides the message of the JSON body
    body: str | None = None  # raw body to send instead of JSON (e.g. an HTML gateway page)


@dataclass
class RecordedRequest:
    received_ms: int  # emulator clock (clock_ms(), without server_time_offset_ms)
    method: str
    path: str
    api_key: str | None
    account: str | None
    params: dict[str, str]  # merged query + body params (query wins on a clash)
    signature: str | None
    status: int  # HTTP status answered (0 for dropped)
    code: int | None  # Binance code if error
    counted: bool  # whether it counted against the hourly auto-collection rule
    executed: bool  # whether the collection was executed


# --------------------------------------------------------------------------- internals


@dataclass
class _Reply:
    status: int
    body: bytes
    content_type: str = "application/json;charset=UTF-8"
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    delay_s: float = 0.0
    drop: bool = False


@dataclass(frozen=True)
class _Endpoint:
    method: str
    weight: int
    params: frozenset[str]  # parameters the endpoint reads (signature included)


_SIGNED_BASE = frozenset({"timestamp", "recvWindow", "signature"})
_ENDPOINTS: dict[str, _Endpoint] = {
    AUTO_COLLECTION_PATH: _Endpoint("POST", 1500, _SIGNED_BASE),
    BALANCE_PATH: _Endpoint("GET", 20, _SIGNED_BASE | {"asset"}),
    ACCOUNT_PATH: _Endpoint("GET", 5, _SIGNED_BASE),
}


@dataclass(frozen=True)
class _Incoming:
    now: int  # emulator clock at receipt
    method: str
    path: str
    query: str  # raw query string, as sent
    body: str  # raw form body, as sent ("" unless application/x-www-form-urlencoded)
    api_key: str | None


class _Rejected(Exception):
    """A Binance-style refusal raised inside the check pipeline."""

    def __init__(self, status: int, code: int, msg: str, headers: dict[str, str] | None = None):
        super().__init__(code)
        self.status = status
        self.code = code
        self.msg = msg
        self.headers = headers or {}


@dataclass
class _LoadedCredential:
    cred: ApiCredential
    public_key: ed25519.Ed25519PublicKey | rsa.RSAPublicKey | None


def _default_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


def _error_reply(status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> _Reply:
    return _Reply(status=status, body=_json_bytes({"code": code, "msg": msg}), headers=dict(headers or {}))


def _fmt_decimal(value: Decimal) -> str:
    if value == 0:
        return "0"
    return format(value, "f")


def _parse_decimal(value: object, what: str) -> Decimal:
    try:
        dec = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise ValueError(f"{what}: not a decimal: {value!r}") from exc
    if not dec.is_finite():
        raise ValueError(f"{what}: not a finite decimal: {value!r}")
    return dec


def _strip_signature(part: str) -> str:
    """Remove the ``signature=...`` item from a raw query string or form body, keep the rest as sent."""
    if not part:
        return ""
    items = part.split("&")
    kept = [item for item in items if not (item == "signature" or item.startswith("signature="))]
    return "&".join(kept)


def _parse_part(part: str) -> dict[str, str]:
    """Parse one raw query string / form body; a duplicated name is Binance's -1101."""
    out: dict[str, str] = {}
    for name, value in parse_qsl(part, keep_blank_values=True, errors="replace"):
        if name in out:
            raise _Rejected(400, -1101, f"Duplicate values for parameter '{name}'.")
        out[name] = value
    return out


def _is_digits(value: str, max_len: int = 20) -> bool:
    return 0 < len(value) <= max_len and value.isascii() and value.isdigit()


def _load_public_key(pem: bytes) -> ed25519.Ed25519PublicKey | rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(pem)
    if isinstance(key, (ed25519.Ed25519PublicKey, rsa.RSAPublicKey)):
        return key
    raise ValueError(f"unsupported public key type {type(key).__name__} (need Ed25519 or RSA)")


def _verify_signature(loaded: _LoadedCredential, payload: bytes, signature: str) -> bool:
    if loaded.cred.hmac_secret is not None:
        if not signature.isascii():
            return False
        expected = hmac.new(loaded.cred.hmac_secret.encode("utf-8"), payload, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, signature.lower())
    try:
        raw = base64.b64decode(signature.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return False
    key = loaded.public_key
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(raw, payload)
            return True
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(raw, payload, padding.PKCS1v15(), hashes.SHA256())
            return True
    except InvalidSignature:
        return False
    return False


def _fault_counts(fault: Fault) -> bool:
    """Whether a fault on the auto-collection path is an attempt that counts against the hourly rule."""
    if fault.drop:
        return True
    if fault.status is None and fault.code is None:
        return True
    status = fault.status if fault.status is not None else 400
    return status >= 500 or 200 <= status < 300


def _fault_is_error(fault: Fault) -> bool:
    """Whether the fault answers with an error status (otherwise: normal answer, maybe delayed)."""
    if fault.status is None:
        return fault.code is not None
    return not 200 <= fault.status < 300


# --------------------------------------------------------------------------- the emulator


class ExchangeEmulator:
    """In-process Binance emulator serving HTTP on ``host:port`` (port 0 = any free port)."""

    def __init__(
        self,
        *,
        clock_ms: Callable[[], int] | None = None,
        hourly_limit: int = 500,
        ip_weight_limit_1m: int = 12000,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._clock: Callable[[], int] = clock_ms or _default_clock_ms
        self.hourly_limit = hourly_limit
        self.ip_weight_limit_1m = ip_weight_limit_1m
        self.server_time_offset_ms: int = 0
        self._host = host
        self._port = port
        self._lock = threading.RLock()
        self._credentials: dict[str, _LoadedCredential] = {}
        self._balances: dict[str, dict[str, dict[str, str]]] = {}
        self._account_info: dict[str, dict[str, str]] = {}
        self._faults: dict[str, deque[Fault]] = {}
        self._log: list[RecordedRequest] = []
        self._violations: list[RecordedRequest] = []
        self._counted: dict[str, deque[int]] = {}
        self._sapi_weight: deque[tuple[int, int]] = deque()
        self._api_weight: deque[tuple[int, int]] = deque()
        self._internal_errors: list[str] = []
        self.connections_opened: int = 0
        self._open_connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        if self._server is not None:
            return self
        server = _Server((self._host, self._port), _Handler, self)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="exchange-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            conns = list(self._open_connections)
            self._open_connections.clear()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("emulator not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("emulator not started")
        host = str(self._server.server_address[0])
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    # ------------------------------------------------------------------ configuration

    def add_credential(self, cred: ApiCredential) -> None:
        if not cred.api_key or not cred.api_key.isprintable():
            raise ValueError("api_key must be a non-empty printable string")
        if (cred.hmac_secret is None) == (cred.public_key_pem is None):
            raise ValueError("exactly one of hmac_secret and public_key_pem must be given")
        public_key = _load_public_key(cred.public_key_pem) if cred.public_key_pem is not None else None
        with self._lock:
            self._credentials[cred.api_key] = _LoadedCredential(dataclasses.replace(cred), public_key)

    def set_balances(self, account: str, balances: Mapping[str, Mapping[str, object]]) -> None:
        table: dict[str, dict[str, str]] = {}
        for asset, fields in balances.items():
            row: dict[str, str] = {}
            for name, value in fields.items():
                if name not in BALANCE_FIELDS and name != "updateTime":
                    raise ValueError(f"{asset}: unknown balance field {name!r}")
                if name in DERIVED_FIELDS or name == "updateTime":
                    continue  # derived / stamped by the emulator
                row[name] = _fmt_decimal(_parse_decimal(value, f"{asset}.{name}"))
            table[str(asset)] = self._complete_row(row)
        with self._lock:
            self._balances[account] = table

    def balances(self, account: str) -> dict[str, dict[str, str]]:
        with self._lock:
            return {asset: dict(row) for asset, row in self._balances.get(account, {}).items()}

    def set_account_info(self, account: str, **fields: str) -> None:
        """Override fields of GET /sapi/v1/portfolio/account (e.g. uniMMR="1.2", accountStatus="MARGIN_CALL")."""
        with self._lock:
            self._account_info.setdefault(account, {}).update({k: str(v) for k, v in fields.items()})

    def inject(self, *faults: Fault) -> None:
        for fault in faults:
            if fault.count < 1:
                raise ValueError("Fault.count must be >= 1")
            if fault.status is not None and not 100 <= fault.status <= 599:
                raise ValueError(f"Fault.status out of range: {fault.status}")
            if fault.delay_s < 0:
                raise ValueError("Fault.delay_s must be >= 0")
        with self._lock:
            for fault in faults:
                self._faults.setdefault(fault.path, deque()).append(dataclasses.replace(fault))

    def pending_faults(self, path: str | None = None) -> list[Fault]:
        with self._lock:
            queues = [self._faults.get(path, deque())] if path is not None else list(self._faults.values())
            return [dataclasses.replace(f) for q in queues for f in q]

    def clear_faults(self) -> None:
        """Drop the faults not yet consumed; the request log and every counter are kept."""
        with self._lock:
            self._faults.clear()

    def reset(self) -> None:
        """Clear the request log, faults, violations and all counters. Credentials, balances,
        account info and server_time_offset_ms are kept."""
        with self._lock:
            self._faults.clear()
            self._log.clear()
            self._violations.clear()
            self._counted.clear()
            self._sapi_weight.clear()
            self._api_weight.clear()
            self._internal_errors.clear()

    # ------------------------------------------------------------------ inspection

    def requests(self, path: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [_copy_record(r) for r in self._log if path is None or r.path == path]

    def accepted_collections(self, account: str = "default") -> int:
        with self._lock:
            return sum(1 for r in self._log if r.path == AUTO_COLLECTION_PATH and r.account == account and r.executed)

    def max_counted_in_any_window(self, account: str = "default", window_ms: int = HOUR_MS) -> int:
        with self._lock:
            times = sorted(r.received_ms for r in self._log if r.counted and r.account == account)
        best = 0
        start = 0
        for end, t in enumerate(times):
            while times[start] <= t - window_ms:
                start += 1
            best = max(best, end - start + 1)
        return best

    def violations(self) -> list[RecordedRequest]:
        with self._lock:
            return [_copy_record(r) for r in self._violations]

    def internal_errors(self) -> list[str]:
        """Tracebacks of bugs inside the emulator (answered as HTTP 500 code -1000); should stay empty."""
        with self._lock:
            return list(self._internal_errors)

    def used_ip_weight_1m(self) -> int:
        with self._lock:
            return self._used_weight(self._sapi_weight, self._clock())

    def server_now_ms(self) -> int:
        return self._clock() + self.server_time_offset_ms

    # ------------------------------------------------------------------ request pipeline

    def _dispatch(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> _Reply:
        split = urlsplit(target)
        path = split.path
        if path.startswith(ADMIN_PREFIX):
            return self._admin(method, path, split.query, body)
        now = self._clock()
        if path == TIME_PATH and method == "GET":
            return self._serve_time(now, method, path, split.query)
        endpoint = _ENDPOINTS.get(path)
        api_key = headers.get("x-mbx-apikey")
        if endpoint is None or endpoint.method != method:
            with self._lock:
                self._log.append(RecordedRequest(now, method, path, api_key, None, {}, None, 404, -1000, False, False))
            return _error_reply(404, -1000, f"Unsupported path or method: {method} {path}")
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        # Like Binance, only an application/x-www-form-urlencoded body carries parameters.
        form = body.decode("utf-8", errors="replace") if content_type == "application/x-www-form-urlencoded" else ""
        return self._serve_signed(_Incoming(now, method, path, split.query, form, api_key), endpoint)

    def _serve_time(self, now: int, method: str, path: str, query: str) -> _Reply:
        with self._lock:
            self._api_weight.append((now, 1))
            used = self._used_weight(self._api_weight, now)
            params = dict(parse_qsl(query, keep_blank_values=True, errors="replace"))
            rec = RecordedRequest(now, method, path, None, None, params, None, 200, None, False, False)
            self._log.append(rec)
            fault = self._pop_fault(path)
            weight_headers = {API_WEIGHT_HEADER: str(used)}
            server_time = {"serverTime": now + self.server_time_offset_ms}
            if fault is not None:
                return self._fault_reply(fault, rec, now, weight_headers, normal=lambda: server_time)
            return _Reply(200, _json_bytes(server_time), headers=weight_headers)

    def _serve_signed(self, req: _Incoming, endpoint: _Endpoint) -> _Reply:
        now = req.now
        with self._lock:
            rec = RecordedRequest(now, req.method, req.path, req.api_key, None, {}, None, 0, None, False, False)
            self._log.append(rec)
            weight_headers = {SAPI_WEIGHT_HEADER: str(self._used_weight(self._sapi_weight, now))}
            try:
                try:
                    query_params = _parse_part(req.query)
                    body_params = _parse_part(req.body)
                except _Rejected as dup:
                    query_params, body_params = {}, {}
                    duplicate: _Rejected | None = dup
                else:
                    duplicate = None
                rec.params = {**body_params, **query_params}
                rec.signature = rec.params.get("signature")
                loaded = self._check_key_and_weight(req, endpoint, rec, weight_headers)
                if duplicate is not None:
                    raise duplicate
                self._check_params_timing_signature(req, endpoint, rec.params, loaded)
            except _Rejected as rej:
                rec.status = rej.status
                rec.code = rej.code
                return _error_reply(rej.status, rej.code, rej.msg, {**weight_headers, **rej.headers})

            # The endpoint itself (faults come after all the checks).
            account = loaded.cred.account
            params = rec.params
            if req.path == AUTO_COLLECTION_PATH:
                return self._serve_collection(now, rec, account, weight_headers)
            fault = self._pop_fault(req.path)
            normal = self._balance_reply if req.path == BALANCE_PATH else self._account_reply
            if fault is not None:
                return self._fault_reply(fault, rec, now, weight_headers, normal=lambda: normal(account, params, now))
            rec.status = 200
            return _Reply(200, _json_bytes(normal(account, params, now)), headers=weight_headers)

    def _check_key_and_weight(
        self, req: _Incoming, endpoint: _Endpoint, rec: RecordedRequest, weight_headers: dict[str, str]
    ) -> _LoadedCredential:
        api_key = req.api_key
        if api_key is None or not api_key.strip() or not api_key.isprintable():
            raise _Rejected(401, -2014, MESSAGES[-2014])
        loaded = self._credentials.get(api_key)
        if loaded is None:
            raise _Rejected(401, -2015, MESSAGES[-2015])
        rec.account = loaded.cred.account
        # IP weight: rolling 60 s, all /sapi endpoints share one pool here. A refused request uses no weight.
        used = self._used_weight(self._sapi_weight, req.now)
        if used + endpoint.weight > self.ip_weight_limit_1m:
            retry_after = self._weight_retry_after_s(req.now, endpoint.weight)
            raise _Rejected(429, -1003, self._weight_msg(), {"Retry-After": str(retry_after)})
        self._sapi_weight.append((req.now, endpoint.weight))
        weight_headers[SAPI_WEIGHT_HEADER] = str(used + endpoint.weight)
        return loaded

    def _check_params_timing_signature(
        self, req: _Incoming, endpoint: _Endpoint, params: Mapping[str, str], loaded: _LoadedCredential
    ) -> None:
        timestamp = params.get("timestamp", "")
        if not _is_digits(timestamp):
            raise _Rejected(400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.")
        recv_window_raw = params.get("recvWindow")
        recv_window = DEFAULT_RECV_WINDOW_MS
        if recv_window_raw is not None:
            if not _is_digits(recv_window_raw):
                raise _Rejected(
                    400, -1100, "Illegal characters found in parameter 'recvWindow'; legal range is '^[0-9]{1,20}$'."
                )
            recv_window = int(recv_window_raw)
            if recv_window > MAX_RECV_WINDOW_MS:
                raise _Rejected(400, -1131, MESSAGES[-1131])
        server_now = req.now + self.server_time_offset_ms
        ts = int(timestamp)
        if not (ts < server_now + 1000 and server_now - ts <= recv_window):
            raise _Rejected(400, -1021, MESSAGES[-1021])
        signature = params.get("signature", "")
        if not signature:
            raise _Rejected(400, -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
        payload = (_strip_signature(req.query) + _strip_signature(req.body)).encode("utf-8")
        if not _verify_signature(loaded, payload, signature):
            raise _Rejected(400, -1022, MESSAGES[-1022])
        read = sum(1 for name in params if name in endpoint.params)
        if read != len(params):
            raise _Rejected(
                400, -1104, f"Not all sent parameters were read; read {read} parameter(s) but was sent {len(params)}."
            )

    def _serve_collection(self, now: int, rec: RecordedRequest, account: str, weight_headers: dict[str, str]) -> _Reply:
        queue = self._faults.get(AUTO_COLLECTION_PATH)
        fault = queue[0] if queue else None
        if fault is not None and not _fault_counts(fault):
            self._pop_fault(AUTO_COLLECTION_PATH)
            return self._fault_reply(fault, rec, now, weight_headers, normal=None)

        counted = self._counted.setdefault(account, deque())
        while counted and counted[0] <= now - HOUR_MS:
            counted.popleft()
        in_window = sum(1 for t in counted if now - HOUR_MS < t <= now)
        if in_window >= self.hourly_limit:
            rec.status, rec.code = 429, -1003
            self._violations.append(rec)
            oldest = min((t for t in counted if now - HOUR_MS < t <= now), default=now)
            retry_after = max(1, math.ceil((oldest + HOUR_MS - now) / 1000))
            return _error_reply(
                429,
                -1003,
                HOURLY_LIMIT_MSG.format(limit=self.hourly_limit),
                {**weight_headers, "Retry-After": str(retry_after)},
            )

        if fault is not None:
            self._pop_fault(AUTO_COLLECTION_PATH)
        counted.append(now)
        rec.counted = True
        execute = fault is None or fault.execute or (not fault.drop and not _fault_is_error(fault))
        if execute:
            self._collect(account, now)
            rec.executed = True
        if fault is None:
            rec.status = 200
            return _Reply(200, _json_bytes({"msg": "success"}), headers=weight_headers)
        return self._fault_reply(fault, rec, now, weight_headers, normal=lambda: {"msg": "success"})

    def _fault_reply(
        self,
        fault: Fault,
        rec: RecordedRequest,
        now: int,
        weight_headers: dict[str, str],
        normal: Callable[[], Any] | None,
    ) -> _Reply:
        if fault.drop:
            rec.status = 0
            rec.code = None
            return _Reply(0, b"", delay_s=fault.delay_s, drop=True)
        if not _fault_is_error(fault):
            status = fault.status or 200
            rec.status = status
            if fault.body is not None:
                reply = _Reply(status, fault.body.encode("utf-8"), headers=dict(weight_headers))
            elif normal is not None:
                reply = _Reply(status, _json_bytes(normal()), headers=dict(weight_headers))
            else:
                reply = _Reply(status, _json_bytes({"msg": "success"}), headers=dict(weight_headers))
            reply.delay_s = fault.delay_s
            return reply
        status = fault.status if fault.status is not None else 400
        headers = dict(weight_headers)
        if fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        rec.status = status
        if fault.body is not None:
            rec.code = fault.code
            reply = _Reply(status, fault.body.encode("utf-8"), content_type="text/html", headers=headers)
        elif fault.code is None and status == 403:
            reply = _Reply(status, WAF_403_BODY.encode("utf-8"), content_type="text/html", headers=headers)
        else:
            code, msg = self._default_error(status, fault.code, fault.retry_after, now)
            if fault.msg is not None:
                msg = fault.msg
            rec.code = code
            reply = _error_reply(status, code, msg, headers)
        reply.delay_s = fault.delay_s
        return reply

    def _default_error(self, status: int, code: int | None, retry_after: int | None, now: int) -> tuple[int, str]:
        if code is None:
            code = {
                401: -2015,
                418: -1003,
                429: -1003,
                451: 0,
                502: -1006,
                504: -1007,
            }.get(status, -1000)
        if status == 451 and code == 0:
            return code, RESTRICTED_LOCATION_MSG
        if code == -1003:
            if status == 418:
                until = now + self.server_time_offset_ms + 1000 * (retry_after if retry_after is not None else 120)
                return code, IP_BANNED_MSG.format(until=until)
            return code, self._weight_msg()
        if status == 503 and code == -1000:
            return code, "Unknown error, please check your request or try again later."
        return code, MESSAGES.get(code, f"Emulated error {code}.")

    def _weight_msg(self) -> str:
        return (
            f"Too much request weight used; current limit is {self.ip_weight_limit_1m} request weight per "
            "1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API."
        )

    def _pop_fault(self, path: str) -> Fault | None:
        queue = self._faults.get(path)
        if not queue:
            return None
        head = queue[0]
        if head.count > 1:
            head.count -= 1
            return dataclasses.replace(head, count=1)
        queue.popleft()
        return head

    @staticmethod
    def _used_weight(window: deque[tuple[int, int]], now: int) -> int:
        while window and window[0][0] <= now - MINUTE_MS:
            window.popleft()
        return sum(w for t, w in window if now - MINUTE_MS < t <= now)

    def _weight_retry_after_s(self, now: int, weight: int) -> int:
        if weight > self.ip_weight_limit_1m:
            return 60
        entries = sorted((t, w) for t, w in self._sapi_weight if now - MINUTE_MS < t <= now)
        used = sum(w for _, w in entries)
        for t, w in entries:
            used -= w
            if used + weight <= self.ip_weight_limit_1m:
                return max(1, math.ceil((t + MINUTE_MS - now) / 1000))
        return 60

    # ------------------------------------------------------------------ balances

    @staticmethod
    def _complete_row(row: dict[str, str]) -> dict[str, str]:
        full = {name: row.get(name, "0") for name in BALANCE_FIELDS}
        free = Decimal(full["crossMarginFree"])
        locked = Decimal(full["crossMarginLocked"])
        um = Decimal(full["umWalletBalance"])
        cm = Decimal(full["cmWalletBalance"])
        full["crossMarginAsset"] = _fmt_decimal(free + locked)
        full["totalWalletBalance"] = _fmt_decimal(free + locked + um + cm)
        return full

    def _collect(self, account: str, now: int) -> None:
        """Move positive UM and CM wallet balances of every asset except BNB into crossMarginFree."""
        table = self._balances.get(account, {})
        for asset, row in table.items():
            if asset in NEVER_COLLECTED:
                continue
            moved = Decimal(0)
            for name in ("umWalletBalance", "cmWalletBalance"):
                value = Decimal(row[name])
                if value > 0:
                    moved += value
                    row[name] = "0"
            if moved:
                row["crossMarginFree"] = _fmt_decimal(Decimal(row["crossMarginFree"]) + moved)
                table[asset] = self._complete_row(row)

    def _balance_reply(self, account: str, params: Mapping[str, str], now: int) -> list[dict[str, Any]]:
        table = self._balances.get(account, {})
        asset = params.get("asset")
        assets = [asset] if asset is not None else sorted(table)
        out: list[dict[str, Any]] = []
        for name in assets:
            row = table.get(name)
            if row is None:
                continue
            item: dict[str, Any] = {"asset": name}
            item.update({f: row[f] for f in BALANCE_FIELDS})
            item["updateTime"] = now + self.server_time_offset_ms
            out.append(item)
        return out

    def _account_reply(self, account: str, params: Mapping[str, str], now: int) -> dict[str, str]:
        rows = self._balances.get(account, {}).values()
        equity = sum((Decimal(row["totalWalletBalance"]) for row in rows), Decimal(0))
        info = {
            "uniMMR": "5.00000000",
            "accountEquity": _fmt_decimal(equity),
            "actualEquity": _fmt_decimal(equity),
            "accountMaintMargin": "0",
            "accountStatus": "NORMAL",
            "accountType": "PM_1",
        }
        info.update(self._account_info.get(account, {}))
        return info

    # ------------------------------------------------------------------ admin HTTP interface

    def _admin(self, method: str, path: str, query: str, body: bytes) -> _Reply:
        route = path[len(ADMIN_PREFIX) :]
        try:
            data: Any = json.loads(body.decode("utf-8")) if body else None
            if method == "POST" and route == "faults":
                items = data if isinstance(data, list) else [data]
                self.inject(*[Fault(**_only_fields(Fault, item)) for item in items])
                return _Reply(200, _json_bytes({"ok": True, "queued": len(items)}))
            if method == "GET" and route == "faults":
                return _Reply(200, _json_bytes([dataclasses.asdict(f) for f in self.pending_faults()]))
            if method == "GET" and route == "requests":
                wanted = dict(parse_qsl(query)).get("path")
                return _Reply(200, _json_bytes([dataclasses.asdict(r) for r in self.requests(wanted)]))
            if method == "GET" and route == "violations":
                return _Reply(200, _json_bytes([dataclasses.asdict(r) for r in self.violations()]))
            if method == "POST" and route == "reset":
                self.reset()
                return _Reply(200, _json_bytes({"ok": True}))
            if method == "POST" and route == "credentials":
                items = data if isinstance(data, list) else [data]
                for item in items:
                    fields = _only_fields(ApiCredential, item)
                    pem = fields.get("public_key_pem")
                    if isinstance(pem, str):
                        fields["public_key_pem"] = pem.encode("ascii")
                    self.add_credential(ApiCredential(**fields))
                return _Reply(200, _json_bytes({"ok": True, "registered": len(items)}))
            if route.startswith("balances/") and len(route) > len("balances/"):
                account = unquote(route[len("balances/") :])
                if method == "PUT":
                    if not isinstance(data, dict):
                        raise ValueError("balances must be a JSON object {asset: {field: value}}")
                    self.set_balances(account, data)
                    return _Reply(200, _json_bytes({"ok": True}))
                if method == "GET":
                    return _Reply(200, _json_bytes(self.balances(account)))
            if method == "PUT" and route == "server-time-offset":
                if not isinstance(data, dict) or not isinstance(data.get("server_time_offset_ms"), int):
                    raise ValueError('expected {"server_time_offset_ms": <int>}')
                self.server_time_offset_ms = int(data["server_time_offset_ms"])
                return _Reply(200, _json_bytes({"ok": True}))
            if method == "GET" and route == "stats":
                return _Reply(200, _json_bytes(self._stats()))
        except (ValueError, TypeError, KeyError) as exc:
            # Only the exception type and our own validation text, never the submitted secrets.
            return _error_reply(400, -1000, f"admin request rejected: {type(exc).__name__}: {_safe_text(exc)}")
        return _error_reply(404, -1000, f"Unknown admin route: {method} {path}")

    def _stats(self) -> dict[str, Any]:
        with self._lock:
            accounts = sorted({c.cred.account for c in self._credentials.values()} | set(self._counted))
        return {
            "accepted_collections": {a: self.accepted_collections(a) for a in accounts},
            "max_counted_in_any_window": {a: self.max_counted_in_any_window(a) for a in accounts},
            "violations": len(self.violations()),
            "requests": len(self.requests()),
            "used_ip_weight_1m": self.used_ip_weight_1m(),
            "server_time_offset_ms": self.server_time_offset_ms,
            "server_time": self.server_now_ms(),
            "internal_errors": len(self.internal_errors()),
        }

    # ------------------------------------------------------------------ called by the HTTP handler

    def _record_internal_error(self) -> None:
        with self._lock:
            self._internal_errors.append(traceback.format_exc())

    def _connection_opened(self, conn: socket.socket) -> None:
        with self._lock:
            self.connections_opened += 1
            self._open_connections.add(conn)

    def _connection_closed(self, conn: socket.socket) -> None:
        with self._lock:
            self._open_connections.discard(conn)


def _copy_record(rec: RecordedRequest) -> RecordedRequest:
    return dataclasses.replace(rec, params=dict(rec.params))


def _only_fields(cls: type, item: object) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise TypeError(f"expected a JSON object of {cls.__name__} fields")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(item) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
    return dict(item)


def _safe_text(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."


# --------------------------------------------------------------------------- HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 256  # listen backlog: many clients may connect at once

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], emulator: ExchangeEmulator
    ) -> None:
        self.emulator = emulator
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would call socket.getfqdn() (a reverse DNS lookup); not needed here.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Default prints a traceback to stderr; connection resets from clients are expected here.
        return


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "BinanceEmulator/1.0"
    sys_version = ""
    timeout = 60  # idle keep-alive connections are closed after this
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return  # never log request lines (they hold parameters and signatures)

    def setup(self) -> None:
        super().setup()
        # headers and body are separate writes: without NODELAY, Nagle + delayed ACK add ~40 ms per reply
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.emulator._connection_opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.emulator._connection_closed(self.connection)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        emulator = self.server.emulator
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        body = self.rfile.read(length) if length > 0 else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            reply = emulator._dispatch(method, self.path, headers, body)
        except Exception:  # any emulator bug becomes a visible, recorded 500
            emulator._record_internal_error()
            reply = _error_reply(500, -1000, "emulator internal error (see ExchangeEmulator.internal_errors())")
        if reply.delay_s > 0:
            time.sleep(reply.delay_s)
        if reply.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True


# --------------------------------------------------------------------------- standalone


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localdev.exchange_emulator",
        description="Local Binance PM Pro emulator. Register keys via POST /_emulator/credentials.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (0 = any free port; default 8765)")
    parser.add_argument("--hourly-limit", type=int, default=500)
    parser.add_argument("--ip-weight-limit-1m", type=int, default=12000)
    args = parser.parse_args(argv)

    emulator = ExchangeEmulator(
        hourly_limit=args.hourly_limit,
        ip_weight_limit_1m=args.ip_weight_limit_1m,
        host=args.host,
        port=args.port,
    ).start()
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    print(f"exchange emulator listening on {emulator.base_url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
    print("exchange emulator stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

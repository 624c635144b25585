"""The emulator: its state (keys, balances, faults, the request log, the hourly and IP-weight windows),
the Python interface tests drive it with, and the request pipeline the HTTP server calls."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import socket
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

from .admin import serve_admin
from .balances import BalanceTable, account_reply, balance_reply, balance_table, collect, spot_account_reply
from .checks import (
    ENDPOINTS,
    Endpoint,
    Incoming,
    LoadedCredential,
    Rejected,
    check_params_timing_signature,
    load_public_key,
    parse_part,
    used_weight,
    weight_retry_after_s,
)
from .key_rules import check_registration, permission_refusal, restrictions_reply
from .protocol import (
    ADMIN_PREFIX,
    API_RESTRICTIONS_PATH,
    API_WEIGHT_HEADER,
    API_WEIGHT_LIMIT_1M,
    AUTO_COLLECTION_PATH,
    BALANCE_PATH,
    HOUR_MS,
    HOURLY_LIMIT_MSG,
    MESSAGES,
    SAPI_WEIGHT_HEADER,
    SPOT_ACCOUNT_PATH,
    TIME_PATH,
)
from .records import ApiCredential, Fault, RecordedRequest
from .replies import Reply, error_reply, fault_counts, fault_is_error, fault_reply, json_bytes, weight_message
from .server import Handler, Server


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
        self._credentials: dict[str, LoadedCredential] = {}
        self._balances: dict[str, BalanceTable] = {}
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
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        if self._server is not None:
            return self
        server = Server((self._host, self._port), Handler, self)
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
        check_registration(cred)
        public_key = load_public_key(cred.public_key_pem) if cred.public_key_pem is not None else None
        with self._lock:
            loaded = LoadedCredential(dataclasses.replace(cred), public_key, self.server_now_ms())
            self._credentials[cred.api_key] = loaded

    def set_balances(self, account: str, balances: Mapping[str, Mapping[str, object]]) -> None:
        table = balance_table(balances)
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

    def use_ip_weight(self, weight: int) -> None:
        """Another program behind the same address spends `weight` now (counted like any request's)."""
        with self._lock:
            self._sapi_weight.append((self._clock(), weight))

    def used_ip_weight_1m(self) -> int:
        with self._lock:
            return used_weight(self._sapi_weight, self._clock())

    def server_now_ms(self) -> int:
        return self._clock() + self.server_time_offset_ms

    def stats(self) -> dict[str, Any]:
        """Counters for the admin interface's GET /_emulator/stats."""
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

    # ------------------------------------------------------------------ request pipeline

    def _dispatch(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Reply:
        split = urlsplit(target)
        path = split.path
        if path.startswith(ADMIN_PREFIX):
            return serve_admin(self, method, path, split.query, body)
        now = self._clock()
        if path == TIME_PATH and method == "GET":
            return self._serve_time(now, method, path, split.query)
        endpoint = ENDPOINTS.get(path)
        api_key = headers.get("x-mbx-apikey")
        if endpoint is None or endpoint.method != method:
            with self._lock:
                self._log.append(RecordedRequest(now, method, path, api_key, None, {}, None, 404, -1000, False, False))
            return error_reply(404, -1000, f"Unsupported path or method: {method} {path}")
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        # Like Binance, only an application/x-www-form-urlencoded body carries parameters.
        form = body.decode("utf-8", errors="replace") if content_type == "application/x-www-form-urlencoded" else ""
        return self._serve_signed(Incoming(now, method, path, split.query, form, api_key), endpoint)

    def _serve_time(self, now: int, method: str, path: str, query: str) -> Reply:
        with self._lock:
            self._api_weight.append((now, 1))
            used = used_weight(self._api_weight, now)
            params = dict(parse_qsl(query, keep_blank_values=True, errors="replace"))
            rec = RecordedRequest(now, method, path, None, None, params, None, 200, None, False, False)
            self._log.append(rec)
            fault = self._pop_fault(path)
            weight_headers = {API_WEIGHT_HEADER: str(used)}
            server_time = {"serverTime": now + self.server_time_offset_ms}
            if fault is not None:
                return self._fault_reply(fault, rec, now, weight_headers, normal=lambda: server_time)
            return Reply(200, json_bytes(server_time), headers=weight_headers)

    def _serve_signed(self, req: Incoming, endpoint: Endpoint) -> Reply:
        now = req.now
        with self._lock:
            rec = RecordedRequest(now, req.method, req.path, req.api_key, None, {}, None, 0, None, False, False)
            self._log.append(rec)
            if endpoint.pool == "api":
                weight_headers = {API_WEIGHT_HEADER: str(used_weight(self._api_weight, now))}
            else:
                weight_headers = {SAPI_WEIGHT_HEADER: str(used_weight(self._sapi_weight, now))}
            try:
                try:
                    query_params = parse_part(req.query)
                    body_params = parse_part(req.body)
                except Rejected as dup:
                    query_params, body_params = {}, {}
                    duplicate: Rejected | None = dup
                else:
                    duplicate = None
                rec.params = {**body_params, **query_params}
                rec.signature = rec.params.get("signature")
                loaded = self._check_key_and_weight(req, endpoint, rec, weight_headers)
                if duplicate is not None:
                    raise duplicate
                server_now = req.now + self.server_time_offset_ms
                check_params_timing_signature(req, endpoint, rec.params, loaded, server_now)
                refusal = permission_refusal(loaded, req.path, server_now)
                if refusal is not None:
                    raise refusal
            except Rejected as rej:
                rec.status = rej.status
                rec.code = rej.code
                return error_reply(rej.status, rej.code, rej.msg, {**weight_headers, **rej.headers})

            # The endpoint itself (faults come after all the checks).
            account = loaded.cred.account
            params = rec.params
            if req.path == AUTO_COLLECTION_PATH:
                return self._serve_collection(now, rec, account, weight_headers)
            path = req.path
            fault = self._pop_fault(path)
            if fault is not None:
                return self._fault_reply(
                    fault, rec, now, weight_headers, normal=lambda: self._portfolio_reply(path, loaded, params, now)
                )
            rec.status = 200
            return Reply(200, json_bytes(self._portfolio_reply(path, loaded, params, now)), headers=weight_headers)

    def _check_key_and_weight(
        self, req: Incoming, endpoint: Endpoint, rec: RecordedRequest, weight_headers: dict[str, str]
    ) -> LoadedCredential:
        api_key = req.api_key
        if api_key is None or not api_key.strip() or not api_key.isprintable():
            raise Rejected(401, -2014, MESSAGES[-2014])
        loaded = self._credentials.get(api_key)
        if loaded is None:
            raise Rejected(401, -2015, MESSAGES[-2015])
        rec.account = loaded.cred.account
        # IP weight: rolling 60 s, all /sapi endpoints share one pool here, /api ones another (with its own header).
        # A refused request uses no weight.
        if endpoint.pool == "api":
            window, limit, header = self._api_weight, API_WEIGHT_LIMIT_1M, API_WEIGHT_HEADER
        else:
            window, limit, header = self._sapi_weight, self.ip_weight_limit_1m, SAPI_WEIGHT_HEADER
        used = used_weight(window, req.now)
        if used + endpoint.weight > limit:
            retry_after = weight_retry_after_s(window, req.now, endpoint.weight, limit)
            raise Rejected(429, -1003, weight_message(limit), {"Retry-After": str(retry_after)})
        window.append((req.now, endpoint.weight))
        weight_headers[header] = str(used + endpoint.weight)
        return loaded

    def _serve_collection(self, now: int, rec: RecordedRequest, account: str, weight_headers: dict[str, str]) -> Reply:
        queue = self._faults.get(AUTO_COLLECTION_PATH)
        fault = queue[0] if queue else None
        if fault is not None and not fault_counts(fault):
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
            return error_reply(
                429,
                -1003,
                HOURLY_LIMIT_MSG.format(limit=self.hourly_limit),
                {**weight_headers, "Retry-After": str(retry_after)},
            )

        if fault is not None:
            self._pop_fault(AUTO_COLLECTION_PATH)
        counted.append(now)
        rec.counted = True
        execute = fault is None or fault.execute or (not fault.drop and not fault_is_error(fault))
        if execute:
            collect(self._balances.get(account, {}))
            rec.executed = True
        if fault is None:
            rec.status = 200
            return Reply(200, json_bytes({"msg": "success"}), headers=weight_headers)
        return self._fault_reply(fault, rec, now, weight_headers, normal=lambda: {"msg": "success"})

    def _portfolio_reply(self, path: str, loaded: LoadedCredential, params: Mapping[str, str], now: int) -> Any:
        account = loaded.cred.account
        if path == API_RESTRICTIONS_PATH:
            return restrictions_reply(loaded, now + self.server_time_offset_ms)
        if path == SPOT_ACCOUNT_PATH:
            return spot_account_reply(account, now + self.server_time_offset_ms)
        table = self._balances.get(account, {})
        if path == BALANCE_PATH:
            return balance_reply(table, params.get("asset"), now + self.server_time_offset_ms)
        return account_reply(table, self._account_info.get(account, {}))

    def _fault_reply(
        self,
        fault: Fault,
        rec: RecordedRequest,
        now: int,
        weight_headers: dict[str, str],
        normal: Callable[[], Any] | None,
    ) -> Reply:
        return fault_reply(
            fault,
            rec,
            weight_headers,
            normal,
            server_now=now + self.server_time_offset_ms,
            ip_weight_limit_1m=self.ip_weight_limit_1m,
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


def _default_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _copy_record(rec: RecordedRequest) -> RecordedRequest:
    return dataclasses.replace(rec, params=dict(rec.params))

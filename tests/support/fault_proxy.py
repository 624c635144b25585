"""A tiny HTTP proxy on 127.0.0.1 in front of a local emulator (moto, DynamoDB Local, the exchange emulator)
that counts requests and injects the faults those emulators cannot produce themselves:

- `fail_next`: answer the next N AWS JSON-protocol calls whose `X-Amz-Target` matches with an error
  (by default DynamoDB's ProvisionedThroughputExceededException), instead of forwarding them;
- `truncate_next`: forward the next N requests to a path, then cut the upstream's answer off halfway through
  its body and close the connection (a load balancer resetting the connection mid-response);
- `delay_next`: hold the next N matching requests (by `X-Amz-Target` and a fragment of the body) for a while
  before forwarding them (a slow store, or a busy host).

Point one client at it (`AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_SECRETS_MANAGER`, `BINANCE_BASE_URL`).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

DYNAMODB_TARGET = "DynamoDB_20120810."
SECRETS_MANAGER_TARGET = "secretsmanager."
THROTTLED = {
    "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
    "message": "The level of configured provisioned throughput for the table was exceeded.",
}
# Not copied: hop-by-hop headers (RFC 9110 7.6.1), and those each side of the proxy sets itself.
_NOT_FORWARDED = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "server", "date"}
)


@dataclass
class _Failure:
    target_prefix: str
    remaining: int
    status: int
    body: dict[str, str]


@dataclass
class _Delay:
    target_prefix: str
    body_contains: bytes
    remaining: int
    seconds: float


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        if parts.hostname not in ("127.0.0.1", "localhost"):
            raise ValueError("the proxy only forwards to a local emulator")
        self._upstream = (parts.hostname, parts.port or 80)
        self._lock = threading.Lock()
        self._failures: list[_Failure] = []
        self._truncations: Counter[str] = Counter()  # path -> answers still to cut off
        self._delays: list[_Delay] = []
        self._lost_answers: list[_Delay] = []
        #: X-Amz-Target (or "" for other requests) -> number of requests seen.
        self.calls: Counter[str] = Counter()
        #: X-Amz-Target (or path) -> number of requests answered with an injected failure or cut off.
        self.failed: Counter[str] = Counter()
        self._server = _Server(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def fail_next(
        self, count: int, target_prefix: str = DYNAMODB_TARGET, status: int = 400, body: dict[str, str] | None = None
    ) -> None:
        """Answer the next `count` requests whose X-Amz-Target starts with `target_prefix` with `status`/`body`."""
        with self._lock:
            self._failures.append(_Failure(target_prefix, count, status, body or THROTTLED))

    def truncate_next(self, count: int, path: str) -> None:
        """Forward the next `count` requests to `path`, but deliver only half of each answer's body."""
        with self._lock:
            self._truncations[path] += count

    def lose_answer_next(self, count: int, target_prefix: str) -> None:
        """Forward the next `count` requests matching `target_prefix`, then answer 500 instead of DynamoDB's answer:
        the write was applied, the caller cannot know it (and botocore retries it)."""
        with self._lock:
            self._lost_answers.append(_Delay(target_prefix, b"", count, 0.0))

    def delay_next(self, count: int, target_prefix: str, seconds: float, body_contains: bytes = b"") -> None:
        """Forward the next `count` requests matching `target_prefix` and `body_contains` only after `seconds`."""
        with self._lock:
            self._delays.append(_Delay(target_prefix, body_contains, count, seconds))

    def count(self, target_prefix: str) -> int:
        with self._lock:
            return sum(n for target, n in self.calls.items() if target.startswith(target_prefix))

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _injected(self, target: str) -> _Failure | None:
        with self._lock:
            self.calls[target] += 1
            for failure in self._failures:
                if failure.remaining > 0 and target.startswith(failure.target_prefix):
                    failure.remaining -= 1
                    self.failed[target] += 1
                    return failure
            return None

    def _delay(self, target: str, body: bytes) -> float:
        with self._lock:
            for delay in self._delays:
                if delay.remaining > 0 and target.startswith(delay.target_prefix) and delay.body_contains in body:
                    delay.remaining -= 1
                    return delay.seconds
            return 0.0

    def _answer_lost(self, target: str) -> bool:
        with self._lock:
            for lost in self._lost_answers:
                if lost.remaining > 0 and target.startswith(lost.target_prefix):
                    lost.remaining -= 1
                    self.failed[target] += 1
                    return True
            return False

    def _cut_off(self, path: str) -> bool:
        with self._lock:
            if self._truncations[path] <= 0:
                return False
            self._truncations[path] -= 1
            self.failed[path] += 1
            return True

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, bytes]:
        connection = http.client.HTTPConnection(*self._upstream, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # clients keep connections alive: closing must not wait for them


def _handler_for(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return  # request lines hold signed parameters; bodies may hold test secrets

        def do_POST(self) -> None:
            self._relay("POST")

        def do_GET(self) -> None:
            self._relay("GET")

        def _relay(self, method: str) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            target = self.headers.get("X-Amz-Target", "")
            failure = proxy._injected(target)
            if failure is not None:
                self._answer(
                    failure.status, [("Content-Type", "application/x-amz-json-1.0")], json.dumps(failure.body).encode()
                )
                return
            time.sleep(proxy._delay(target, body))
            headers = {name: value for name, value in self.headers.items() if name.lower() not in _NOT_FORWARDED}
            status, response_headers, response_body = proxy._forward(method, self.path, headers, body)
            if proxy._answer_lost(target):
                lost = {"__type": "com.amazonaws.dynamodb.v20120810#InternalServerError", "message": "answer lost"}
                self._answer(500, [("Content-Type", "application/x-amz-json-1.0")], json.dumps(lost).encode())
                return
            kept = [(name, value) for name, value in response_headers if name.lower() not in _NOT_FORWARDED]
            self._answer(status, kept, response_body, cut_off=proxy._cut_off(urlsplit(self.path).path))

        def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes, cut_off: bool = False) -> None:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if cut_off else body)
            if cut_off:
                self.wfile.flush()
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

    return Handler

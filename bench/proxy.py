"""A counting, optionally delaying HTTP proxy on 127.0.0.1 in front of moto's server.

Every AWS request the collector (or the raw baseline) makes passes through it, so the request counts in the
results are what the emulator saw, not what the client believes it sent. AWS JSON-protocol calls
(DynamoDB, Secrets Manager) are counted by their `X-Amz-Target` header ("DynamoDB_20120810.UpdateItem",
"secretsmanager.GetSecretValue"). `delay_s` adds that much latency to every forwarded request.

`GET /_bench/counts` (not forwarded) answers the counters as JSON, so a child process can count the requests
of each of its own invocations.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

ADMIN_PATH = "/_bench/counts"
# Hop-by-hop headers are not forwarded; the length is set again for the body sent on.
_NOT_FORWARDED = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"})


class CountingProxy:
    def __init__(self, upstream: str, delay_s: float = 0.0) -> None:
        parts = urlsplit(upstream)
        if parts.hostname not in ("127.0.0.1", "localhost"):
            raise ValueError("the proxy only forwards to an emulator on this machine")
        self.upstream = (str(parts.hostname), parts.port or 80)
        self.delay_s = delay_s
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()
        #: client connections accepted (keep-alive reuse shows as few connections for many requests)
        self.connections = 0
        self._local = threading.local()
        self._server = _Server(("127.0.0.1", 0), _Handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="bench-proxy", daemon=True
        )

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._calls)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _count(self, target: str) -> None:
        with self._lock:
            self._calls[target] += 1

    def _forward(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> tuple[int, Any, bytes]:
        """Send the request upstream on this thread's keep-alive connection (one reconnect if it went stale)."""
        for attempt in (1, 2):
            connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
            if connection is None:
                connection = http.client.HTTPConnection(*self.upstream, timeout=60)
                self._local.connection = connection
            try:
                connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
                for name, value in headers:
                    connection.putheader(name, value)
                connection.putheader("Content-Length", str(len(body)))
                connection.endheaders(body)
                response = connection.getresponse()
                return response.status, response.getheaders(), response.read()
            except (http.client.HTTPException, OSError):
                connection.close()
                self._local.connection = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], proxy: CountingProxy) -> None:
        self.proxy = proxy
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would do a reverse DNS lookup of the address; not needed on loopback.
        import socketserver

        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # clients closing keep-alive connections are expected


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def setup(self) -> None:
        super().setup()
        with self.server.proxy._lock:
            self.server.proxy.connections += 1
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        if self.path == ADMIN_PATH:
            self._reply(200, [("Content-Type", "application/json")], json.dumps(self.server.proxy.counts()).encode())
            return
        self._relay("GET")

    def do_POST(self) -> None:
        self._relay("POST")

    def do_PUT(self) -> None:
        self._relay("PUT")

    def do_DELETE(self) -> None:
        self._relay("DELETE")

    def _relay(self, method: str) -> None:
        proxy = self.server.proxy
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        target = self.headers.get("X-Amz-Target") or f"{method} {urlsplit(self.path).path}"
        proxy._count(target)
        if proxy.delay_s:
            time.sleep(proxy.delay_s)
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in _NOT_FORWARDED]
        try:
            status, response_headers, response_body = proxy._forward(method, self.path, headers, body)
        except (http.client.HTTPException, OSError) as error:
            self._reply(502, [("Content-Type", "text/plain")], f"proxy: upstream failed ({error})".encode())
            return
        self._reply(status, [(k, v) for k, v in response_headers if k.lower() not in _NOT_FORWARDED], response_body)

    def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        try:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            self.close_connection = True

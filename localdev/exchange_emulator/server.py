"""HTTP plumbing: a threading HTTP/1.1 server that hands every request to the emulator."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from .replies import error_reply

if TYPE_CHECKING:
    from .emulator import ExchangeEmulator


class Server(ThreadingHTTPServer):
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


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "BinanceEmulator/1.0"
    sys_version = ""
    timeout = 60  # idle keep-alive connections are closed after this
    server: Server

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
            reply = error_reply(500, -1000, "emulator internal error (see ExchangeEmulator.internal_errors())")
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

"""Lambda's Invoke API on 127.0.0.1, running the collector's real handler in this process.

moto runs invoked functions only in Docker, so the operator command's `dry-run` and `invoke` are tested
against this endpoint instead (AWS_ENDPOINT_URL_LAMBDA). It speaks the REST protocol boto3 and the AWS CLI
use - POST /2015-03-31/functions/<name>/invocations, the event as the body - and answers as Lambda does: the
handler's JSON with 200; a raised exception as the Python runtime reports it (errorMessage, errorType,
requestId, stackTrace) with 200 and X-Amz-Function-Error: Unhandled; an unknown function with 404 and
ResourceNotFoundException; and, on demand, Lambda's own failure (500 ServiceException).
"""

from __future__ import annotations

import json
import threading
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import unquote

_PREFIX = "/2015-03-31/functions/"
_SUFFIX = "/invocations"


@dataclass
class LambdaInvokeApi:
    """Serves `handler` as the function `function_name` until `stop()`; `events` holds every event received."""

    function_name: str
    handler: Callable[[Any], Any]
    events: list[Any] = field(default_factory=list)
    #: Answer this many of the next invocations with Lambda's own failure (500 ServiceException), unhandled.
    service_errors: int = 0
    _server: HTTPServer | None = None

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> LambdaInvokeApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not (self.path.startswith(_PREFIX) and self.path.endswith(_SUFFIX)):
                    self._answer(404, {"message": f"no route {self.path}"}, {"x-amzn-ErrorType": "UnknownOperation"})
                    return
                name = unquote(self.path[len(_PREFIX) : -len(_SUFFIX)])
                if name != api.function_name and not name.endswith(f":function:{api.function_name}"):
                    message = f"Function not found: arn:aws:lambda:eu-west-1:123456789012:function:{name}"
                    self._answer(
                        404,
                        {"Type": "User", "Message": message},
                        {"x-amzn-ErrorType": "ResourceNotFoundException"},
                    )
                    return
                event = json.loads(body) if body else {}
                api.events.append(event)
                if api.service_errors > 0:
                    api.service_errors -= 1
                    self._answer(500, {"Message": "Service error"}, {"x-amzn-ErrorType": "ServiceException"})
                    return
                request_id = str(uuid.uuid4())
                headers = {"X-Amz-Executed-Version": "$LATEST", "x-amzn-RequestId": request_id}
                try:
                    result = api.handler(event)
                except Exception as error:
                    document = {
                        "errorMessage": str(error),
                        "errorType": type(error).__name__,
                        "requestId": request_id,
                        "stackTrace": traceback.format_tb(error.__traceback__),
                    }
                    self._answer(200, document, {**headers, "X-Amz-Function-Error": "Unhandled"})
                    return
                self._answer(200, result, headers)

            def _answer(self, status: int, document: Any, headers: dict[str, str]) -> None:
                payload = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # quiet: the test output is the CLI's
                return

        self._server = HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

"""The answers: Binance's JSON error shape, and what an injected fault turns a reply into."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .protocol import IP_BANNED_MSG, MESSAGES, RESTRICTED_LOCATION_MSG, WAF_403_BODY
from .records import Fault, RecordedRequest


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json;charset=UTF-8"
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    delay_s: float = 0.0
    drop: bool = False


def json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


def error_reply(status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status=status, body=json_bytes({"code": code, "msg": msg}), headers=dict(headers or {}))


def weight_message(ip_weight_limit_1m: int) -> str:
    return (
        f"Too much request weight used; current limit is {ip_weight_limit_1m} request weight per "
        "1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API."
    )


def fault_counts(fault: Fault) -> bool:
    """Whether a fault on the auto-collection path is an attempt that counts against the hourly rule."""
    if fault.drop:
        return True
    if fault.status is None and fault.code is None:
        return True
    status = fault.status if fault.status is not None else 400
    return status >= 500 or 200 <= status < 300


def fault_is_error(fault: Fault) -> bool:
    """Whether the fault answers with an error status (otherwise: normal answer, maybe delayed)."""
    if fault.status is None:
        return fault.code is not None
    return not 200 <= fault.status < 300


def fault_reply(
    fault: Fault,
    rec: RecordedRequest,
    weight_headers: dict[str, str],
    normal: Callable[[], Any] | None,
    *,
    server_now: int,
    ip_weight_limit_1m: int,
) -> Reply:
    if fault.drop:
        rec.status = 0
        rec.code = None
        return Reply(0, b"", delay_s=fault.delay_s, drop=True)
    if not fault_is_error(fault):
        status = fault.status or 200
        rec.status = status
        if fault.body is not None:
            reply = Reply(status, fault.body.encode("utf-8"), headers=dict(weight_headers))
        elif normal is not None:
            reply = Reply(status, json_bytes(normal()), headers=dict(weight_headers))
        else:
            reply = Reply(status, json_bytes({"msg": "success"}), headers=dict(weight_headers))
        reply.delay_s = fault.delay_s
        return reply
    status = fault.status if fault.status is not None else 400
    headers = dict(weight_headers)
    if fault.retry_after is not None:
        headers["Retry-After"] = str(fault.retry_after)
    rec.status = status
    if fault.body is not None:
        rec.code = fault.code
        reply = Reply(status, fault.body.encode("utf-8"), content_type="text/html", headers=headers)
    elif fault.code is None and status == 403:
        reply = Reply(status, WAF_403_BODY.encode("utf-8"), content_type="text/html", headers=headers)
    else:
        code, msg = _default_error(status, fault.code, fault.retry_after, server_now, ip_weight_limit_1m)
        if fault.msg is not None:
            msg = fault.msg
        rec.code = code
        reply = error_reply(status, code, msg, headers)
    reply.delay_s = fault.delay_s
    return reply


def _default_error(
    status: int, code: int | None, retry_after: int | None, server_now: int, ip_weight_limit_1m: int
) -> tuple[int, str]:
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
            until = server_now + 1000 * (retry_after if retry_after is not None else 120)
            return code, IP_BANNED_MSG.format(until=until)
        return code, weight_message(ip_weight_limit_1m)
    if status == 503 and code == -1000:
        return code, "Unknown error, please check your request or try again later."
    return code, MESSAGES.get(code, f"Emulated error {code}.")

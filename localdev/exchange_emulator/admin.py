"""The admin HTTP interface under /_emulator/, so that a separate process (``make run``) can drive the emulator."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

from .protocol import ADMIN_PREFIX
from .records import ApiCredential, Fault
from .replies import Reply, error_reply, json_bytes

if TYPE_CHECKING:
    from .emulator import ExchangeEmulator


def serve_admin(emulator: ExchangeEmulator, method: str, path: str, query: str, body: bytes) -> Reply:
    route = path[len(ADMIN_PREFIX) :]
    try:
        data: Any = json.loads(body.decode("utf-8")) if body else None
        if method == "POST" and route == "faults":
            items = data if isinstance(data, list) else [data]
            emulator.inject(*[Fault(**_only_fields(Fault, item)) for item in items])
            return Reply(200, json_bytes({"ok": True, "queued": len(items)}))
        if method == "GET" and route == "faults":
            return Reply(200, json_bytes([dataclasses.asdict(f) for f in emulator.pending_faults()]))
        if method == "GET" and route == "requests":
            wanted = dict(parse_qsl(query)).get("path")
            return Reply(200, json_bytes([dataclasses.asdict(r) for r in emulator.requests(wanted)]))
        if method == "GET" and route == "violations":
            return Reply(200, json_bytes([dataclasses.asdict(r) for r in emulator.violations()]))
        if method == "POST" and route == "reset":
            emulator.reset()
            return Reply(200, json_bytes({"ok": True}))
        if method == "POST" and route == "credentials":
            items = data if isinstance(data, list) else [data]
            for item in items:
                fields = _only_fields(ApiCredential, item)
                pem = fields.get("public_key_pem")
                if isinstance(pem, str):
                    fields["public_key_pem"] = pem.encode("ascii")
                emulator.add_credential(ApiCredential(**fields))
            return Reply(200, json_bytes({"ok": True, "registered": len(items)}))
        if route.startswith("balances/") and len(route) > len("balances/"):
            account = unquote(route[len("balances/") :])
            if method == "PUT":
                if not isinstance(data, dict):
                    raise ValueError("balances must be a JSON object {asset: {field: value}}")
                emulator.set_balances(account, data)
                return Reply(200, json_bytes({"ok": True}))
            if method == "GET":
                return Reply(200, json_bytes(emulator.balances(account)))
        if method == "PUT" and route == "server-time-offset":
            if not isinstance(data, dict) or not isinstance(data.get("server_time_offset_ms"), int):
                raise ValueError('expected {"server_time_offset_ms": <int>}')
            emulator.server_time_offset_ms = int(data["server_time_offset_ms"])
            return Reply(200, json_bytes({"ok": True}))
        if method == "GET" and route == "stats":
            return Reply(200, json_bytes(emulator.stats()))
    except (ValueError, TypeError, KeyError) as exc:
        # Only the exception type and our own validation text, never the submitted secrets.
        return error_reply(400, -1000, f"admin request rejected: {type(exc).__name__}: {_safe_text(exc)}")
    return error_reply(404, -1000, f"Unknown admin route: {method} {path}")


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

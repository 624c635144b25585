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
* ``GET  /sapi/v1/account/apiRestrictions``      signed, weight 1; what the key may do (key_rules.py: an
  unrestricted key's trading permission ends at ``trading_expires_ms``, then the collection gets 401 / -2015)

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

The modules: protocol.py (Binance's paths, limits and texts), records.py (the public data types),
checks.py (what is checked before serving), key_rules.py (a key's restrictions and permission rules),
replies.py (error and fault answers), balances.py (the portfolio), emulator.py (state, Python interface, request
pipeline), admin.py (the admin interface), server.py (HTTP plumbing), standalone.py (the command).

The server never writes request parameters, signatures, keys or secrets to stdout/stderr.
"""

from .emulator import ExchangeEmulator
from .protocol import (
    ACCOUNT_PATH,
    API_RESTRICTIONS_PATH,
    AUTO_COLLECTION_PATH,
    BALANCE_PATH,
    SPOT_ACCOUNT_PATH,
    TIME_PATH,
)
from .records import ApiCredential, Fault, RecordedRequest
from .standalone import main

__all__ = [
    "ACCOUNT_PATH",
    "API_RESTRICTIONS_PATH",
    "AUTO_COLLECTION_PATH",
    "BALANCE_PATH",
    "SPOT_ACCOUNT_PATH",
    "TIME_PATH",
    "ApiCredential",
    "ExchangeEmulator",
    "Fault",
    "RecordedRequest",
    "main",
]

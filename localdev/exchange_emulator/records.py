"""The emulator's public data types: a registered key, an injected fault, a recorded request."""

from __future__ import annotations

from dataclasses import dataclass

from .protocol import AUTO_COLLECTION_PATH


@dataclass
class ApiCredential:
    """One registered API key."""

    api_key: str
    hmac_secret: str | None = None  # HMAC-SHA256 key
    public_key_pem: bytes | None = None  # Ed25519 or RSA public key (PEM, SubjectPublicKeyInfo)
    account: str = "default"  # several keys may share an account
    # What GET /sapi/v1/account/apiRestrictions reports, and what the exchange enforces (key_rules.py).
    ip_restricted: bool = True  # a whitelisted key: its trading permission never expires
    enable_withdrawals: bool = False  # Binance allows it only on an IP-restricted key
    enable_pm_trading: bool = True  # False: created before Portfolio Margin was activated
    trading_expires_ms: int | None = None  # tradingAuthorityExpirationTime (exchange clock); then trading is refused


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

"""What the exchange checks before it serves a signed request: parameters, timing, signature, IP weight."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from .protocol import (
    ACCOUNT_PATH,
    API_RESTRICTIONS_PATH,
    AUTO_COLLECTION_PATH,
    BALANCE_PATH,
    DEFAULT_RECV_WINDOW_MS,
    MAX_RECV_WINDOW_MS,
    MESSAGES,
    MINUTE_MS,
    SPOT_ACCOUNT_PATH,
)
from .records import ApiCredential


@dataclass(frozen=True)
class Endpoint:
    method: str
    weight: int
    params: frozenset[str]  # parameters the endpoint reads (signature included)
    pool: str = "sapi"  # whose per-IP weight it counts against: "sapi" or "api"


_SIGNED_BASE = frozenset({"timestamp", "recvWindow", "signature"})
ENDPOINTS: dict[str, Endpoint] = {
    AUTO_COLLECTION_PATH: Endpoint("POST", 1500, _SIGNED_BASE),
    BALANCE_PATH: Endpoint("GET", 20, _SIGNED_BASE | {"asset"}),
    ACCOUNT_PATH: Endpoint("GET", 5, _SIGNED_BASE),
    API_RESTRICTIONS_PATH: Endpoint("GET", 1, _SIGNED_BASE),
    SPOT_ACCOUNT_PATH: Endpoint("GET", 20, _SIGNED_BASE | {"omitZeroBalances"}, pool="api"),
}


@dataclass(frozen=True)
class Incoming:
    now: int  # emulator clock at receipt
    method: str
    path: str
    query: str  # raw query string, as sent
    body: str  # raw form body, as sent ("" unless application/x-www-form-urlencoded)
    api_key: str | None


class Rejected(Exception):
    """A Binance-style refusal raised inside the check pipeline."""

    def __init__(self, status: int, code: int, msg: str, headers: dict[str, str] | None = None):
        super().__init__(code)
        self.status = status
        self.code = code
        self.msg = msg
        self.headers = headers or {}


@dataclass
class LoadedCredential:
    cred: ApiCredential
    public_key: ed25519.Ed25519PublicKey | rsa.RSAPublicKey | None
    created_ms: int = 0  # when it was registered (the restrictions' createTime)


def parse_part(part: str) -> dict[str, str]:
    """Parse one raw query string / form body; a duplicated name is Binance's -1101."""
    out: dict[str, str] = {}
    for name, value in parse_qsl(part, keep_blank_values=True, errors="replace"):
        if name in out:
            raise Rejected(400, -1101, f"Duplicate values for parameter '{name}'.")
        out[name] = value
    return out


def check_params_timing_signature(
    req: Incoming, endpoint: Endpoint, params: Mapping[str, str], loaded: LoadedCredential, server_now: int
) -> None:
    timestamp = params.get("timestamp", "")
    if not _is_digits(timestamp):
        raise Rejected(400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.")
    recv_window_raw = params.get("recvWindow")
    recv_window = DEFAULT_RECV_WINDOW_MS
    if recv_window_raw is not None:
        if not _is_digits(recv_window_raw):
            raise Rejected(
                400, -1100, "Illegal characters found in parameter 'recvWindow'; legal range is '^[0-9]{1,20}$'."
            )
        recv_window = int(recv_window_raw)
        if recv_window > MAX_RECV_WINDOW_MS:
            raise Rejected(400, -1131, MESSAGES[-1131])
    ts = int(timestamp)
    if not (ts < server_now + 1000 and server_now - ts <= recv_window):
        raise Rejected(400, -1021, MESSAGES[-1021])
    signature = params.get("signature", "")
    if not signature:
        raise Rejected(400, -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
    payload = (_strip_signature(req.query) + _strip_signature(req.body)).encode("utf-8")
    if not _verify_signature(loaded, payload, signature):
        raise Rejected(400, -1022, MESSAGES[-1022])
    read = sum(1 for name in params if name in endpoint.params)
    if read != len(params):
        raise Rejected(
            400, -1104, f"Not all sent parameters were read; read {read} parameter(s) but was sent {len(params)}."
        )


def load_public_key(pem: bytes) -> ed25519.Ed25519PublicKey | rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(pem)
    if isinstance(key, (ed25519.Ed25519PublicKey, rsa.RSAPublicKey)):
        return key
    raise ValueError(f"unsupported public key type {type(key).__name__} (need Ed25519 or RSA)")


# --- IP weight: a rolling minute of (time, weight) entries -------------------------------------------


def used_weight(window: deque[tuple[int, int]], now: int) -> int:
    while window and window[0][0] <= now - MINUTE_MS:
        window.popleft()
    return sum(w for t, w in window if now - MINUTE_MS < t <= now)


def weight_retry_after_s(window: deque[tuple[int, int]], now: int, weight: int, limit: int) -> int:
    if weight > limit:
        return 60
    entries = sorted((t, w) for t, w in window if now - MINUTE_MS < t <= now)
    used = sum(w for _, w in entries)
    for t, w in entries:
        used -= w
        if used + weight <= limit:
            return max(1, math.ceil((t + MINUTE_MS - now) / 1000))
    return 60


def _strip_signature(part: str) -> str:
    """Remove the ``signature=...`` item from a raw query string or form body, keep the rest as sent."""
    if not part:
        return ""
    items = part.split("&")
    kept = [item for item in items if not (item == "signature" or item.startswith("signature="))]
    return "&".join(kept)


def _is_digits(value: str, max_len: int = 20) -> bool:
    return 0 < len(value) <= max_len and value.isascii() and value.isdigit()


def _verify_signature(loaded: LoadedCredential, payload: bytes, signature: str) -> bool:
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

"""Request signing the way Binance verifies it: HMAC-SHA256, Ed25519 and RSA (PKCS#1 v1.5, SHA-256).

The signed payload is the exact query string plus body that is sent, without the `signature`
parameter. Signers hold key material, so their repr never shows it.

Ed25519 is PyNaCl's (libsodium), imported when an Ed25519 signer is made: an HMAC key imports nothing of it.
RSA is plain Python (`rsa`), verified before it is returned.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import TYPE_CHECKING, Literal, Protocol
from urllib.parse import urlencode

if TYPE_CHECKING:  # imported only when such a key is used (cold-start cost)
    from .rsa import RsaPrivateKey

KeyType = Literal["hmac", "ed25519", "rsa"]


class Signer(Protocol):
    key_type: KeyType

    def sign(self, payload: str) -> str:
        """Return the signature in the text form Binance expects (before URL encoding)."""
        ...


class HmacSigner:
    key_type: KeyType = "hmac"

    def __init__(self, secret: str) -> None:
        try:
            self._secret = secret.encode()
        except UnicodeEncodeError:
            # The codec's message quotes the offending character of the secret and its position.
            raise ValueError("the HMAC secret is not valid text (it holds a lone surrogate)") from None

    def sign(self, payload: str) -> str:
        return hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return "HmacSigner(<secret hidden>)"


class Ed25519Signer:
    key_type: KeyType = "ed25519"

    def __init__(self, seed: bytes) -> None:
        """`seed`: the 32-byte private key (RFC 8032's secret key, PKCS#8's CurvePrivateKey)."""
        from nacl.signing import SigningKey

        if len(seed) != 32:
            raise ValueError("an Ed25519 private key is 32 bytes")
        self._key = SigningKey(seed)

    @property
    def public_key(self) -> bytes:
        return bytes(self._key.verify_key)

    def sign(self, payload: str) -> str:
        return base64.b64encode(self._key.sign(payload.encode()).signature).decode()

    def __repr__(self) -> str:
        return "Ed25519Signer(<key hidden>)"


class RsaSigner:
    key_type: KeyType = "rsa"

    def __init__(self, key: RsaPrivateKey) -> None:
        self._key = key

    def sign(self, payload: str) -> str:
        return base64.b64encode(self._key.sign_sha256(payload.encode())).decode()

    def __repr__(self) -> str:
        return "RsaSigner(<key hidden>)"


def signed_payload(params: dict[str, str | int], signer: Signer) -> str:
    """URL-encode `params` in order and append `signature` last, percent-encoded."""
    payload = urlencode(params)
    return f"{payload}&{urlencode({'signature': signer.sign(payload)})}"

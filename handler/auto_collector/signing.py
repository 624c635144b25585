"""Request signing the way Binance verifies it: HMAC-SHA256, Ed25519 and RSA (PKCS#1 v1.5, SHA-256).

The signed payload is the exact query string plus body that is sent, without the `signature`
parameter. Signers hold key material, so their repr never shows it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import TYPE_CHECKING, Literal, Protocol
from urllib.parse import urlencode

if TYPE_CHECKING:  # cryptography is imported only when a PEM key is actually used (cold-start cost)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

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

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key

    def sign(self, payload: str) -> str:
        return base64.b64encode(self._key.sign(payload.encode())).decode()

    def __repr__(self) -> str:
        return "Ed25519Signer(<key hidden>)"


class RsaSigner:
    key_type: KeyType = "rsa"

    def __init__(self, key: RSAPrivateKey) -> None:
        self._key = key

    def sign(self, payload: str) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        signature = self._key.sign(payload.encode(), padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(signature).decode()

    def __repr__(self) -> str:
        return "RsaSigner(<key hidden>)"


def signed_payload(params: dict[str, str | int], signer: Signer) -> str:
    """URL-encode `params` in order and append `signature` last, percent-encoded."""
    payload = urlencode(params)
    return f"{payload}&{urlencode({'signature': signer.sign(payload)})}"

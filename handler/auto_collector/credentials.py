"""The API credentials secret: parsing, validation and key loading.

Accepted secret values (JSON):
- HMAC: ``{"apiKey": "...", "apiSecret": "..."}``
- Ed25519 or RSA: ``{"apiKey": "...", "privateKey": "<PEM>", "privateKeyPassphrase": "..."}``
  (passphrase only for an encrypted PEM); the key type is read from the PEM itself.

Error messages say what is wrong with the secret's shape, never what it contains: not a character, not a
position inside a value, not the name of an unknown field (a pasted key can end up as a field name).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, field, replace

from .errors import SecretError
from .signing import Ed25519Signer, HmacSigner, RsaSigner, Signer

_ALLOWED_FIELDS = frozenset({"apiKey", "apiSecret", "privateKey", "privateKeyPassphrase"})
#: An unencrypted Ed25519 private key in PKCS#8 (RFC 8410), as `openssl genpkey -algorithm ed25519` and Binance's
#: key generator write it: exactly this DER prefix, then the 32-byte private key.
_ED25519_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")


@dataclass(frozen=True)
class ApiCredentials:
    api_key: str = field(repr=False)
    signer: Signer
    #: A digest of the whole secret value, to tell a rotated secret from the same one (not reversible).
    fingerprint: str = ""

    @property
    def key_type(self) -> str:
        return self.signer.key_type

    def __repr__(self) -> str:
        return f"ApiCredentials(key_type={self.key_type!r}, api_key=<hidden>)"


def parse_secret(secret_value: str | bytes | None, secret_id: str) -> ApiCredentials:
    credentials = _parse(secret_value, secret_id)
    raw = secret_value.encode("utf-8", "surrogatepass") if isinstance(secret_value, str) else b""
    digest = hashlib.sha256(raw).hexdigest()[:16]
    return replace(credentials, fingerprint=digest)


def _parse(secret_value: str | bytes | None, secret_id: str) -> ApiCredentials:
    if secret_value is None or (isinstance(secret_value, bytes)):
        raise SecretError(f"secret {secret_id!r} has no SecretString (binary secrets are not supported)")
    try:
        document = json.loads(secret_value)
    except json.JSONDecodeError as error:
        # The position is safe to show; the decoder's message never quotes the content.
        raise SecretError(
            f"secret {secret_id!r} is not valid JSON ({error.msg} at line {error.lineno} column {error.colno}); "
            'expected {"apiKey": ..., "apiSecret": ...} or {"apiKey": ..., "privateKey": ...}'
        ) from None
    except RecursionError:
        raise SecretError(f"secret {secret_id!r} is nested too deeply to read; expected a flat JSON object") from None
    except ValueError:
        # Python refuses to read integers of more than 4,300 digits (sys.int_info.default_max_str_digits).
        raise SecretError(
            f"secret {secret_id!r} holds a number too long to read; expected a flat JSON object"
        ) from None
    if not isinstance(document, dict):
        raise SecretError(f"secret {secret_id!r} must be a JSON object, got {type(document).__name__}")
    unknown = sorted(set(document) - _ALLOWED_FIELDS)
    if unknown:
        raise SecretError(
            f"secret {secret_id!r} has {len(unknown)} unknown field(s) (names not shown); "
            f"allowed: {sorted(_ALLOWED_FIELDS)}"
        )

    api_key = _text_field(document, "apiKey", secret_id)
    if api_key is None:
        raise SecretError(f"secret {secret_id!r} has no 'apiKey'")
    if not api_key.isascii() or not api_key.isprintable() or any(ch.isspace() for ch in api_key):
        raise SecretError(f"secret {secret_id!r}: 'apiKey' must be printable ASCII without spaces")

    api_secret = _text_field(document, "apiSecret", secret_id)
    private_key = _text_field(document, "privateKey", secret_id)
    # Not stripped: spaces at either end of a passphrase are part of it.
    passphrase = _text_field(document, "privateKeyPassphrase", secret_id, strip=False)
    if api_secret is not None and private_key is not None:
        raise SecretError(f"secret {secret_id!r} has both 'apiSecret' and 'privateKey'; keep only one")
    if api_secret is not None:
        if not api_secret.isascii() or not api_secret.isprintable() or any(ch.isspace() for ch in api_secret):
            raise SecretError(f"secret {secret_id!r}: 'apiSecret' must be printable ASCII without spaces")
        if passphrase is not None:
            raise SecretError(f"secret {secret_id!r}: 'privateKeyPassphrase' only applies to 'privateKey'")
        return ApiCredentials(api_key=api_key, signer=HmacSigner(api_secret))
    if private_key is not None:
        return ApiCredentials(api_key=api_key, signer=_pem_signer(private_key, passphrase, secret_id))
    raise SecretError(f"secret {secret_id!r} needs 'apiSecret' (HMAC key) or 'privateKey' (Ed25519/RSA PEM)")


def _text_field(document: dict[str, object], name: str, secret_id: str, *, strip: bool = True) -> str | None:
    value = document.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise SecretError(f"secret {secret_id!r}: '{name}' must be a non-empty string")
    try:
        value.encode()
    except UnicodeEncodeError:
        # The codec's own message would quote the character and its position: say only what is wrong.
        raise SecretError(
            f"secret {secret_id!r}: '{name}' holds a lone surrogate (a \\ud800-\\udfff escape) and is not valid text"
        ) from None
    return value.strip() if strip else value


def _pem_signer(pem: str, passphrase: str | None, secret_id: str) -> Signer:
    if not pem.isascii():
        raise SecretError(f"secret {secret_id!r}: 'privateKey' must be ASCII text (a PEM block)")
    if "-----BEGIN" not in pem:
        raise SecretError(f"secret {secret_id!r}: 'privateKey' is not a PEM block (no '-----BEGIN' line)")
    seed = _ed25519_private_bytes(pem) if passphrase is None else None
    if seed is not None:
        # The common key needs only PyNaCl's signing module, not the general reader below (PKCS#1, PKCS#8, PEM
        # encryption, RSA), nor its import time at a cold start.
        return Ed25519Signer(seed)
    return _any_pem_signer(pem, passphrase, secret_id)


def _ed25519_private_bytes(pem: str) -> bytes | None:
    """The 32-byte key of an unencrypted PKCS#8 Ed25519 PEM block; None for anything else (the general loader
    then reads it, or says what is wrong with it)."""
    lines = pem.strip().splitlines()
    if len(lines) < 3 or lines[0].strip() != "-----BEGIN PRIVATE KEY-----":
        return None
    if lines[-1].strip() != "-----END PRIVATE KEY-----":
        return None
    try:
        der = base64.b64decode("".join(line.strip() for line in lines[1:-1]), validate=True)
    except binascii.Error:
        return None
    if len(der) != len(_ED25519_PKCS8_PREFIX) + 32 or not der.startswith(_ED25519_PKCS8_PREFIX):
        return None
    return der[len(_ED25519_PKCS8_PREFIX) :]


def _any_pem_signer(pem: str, passphrase: str | None, secret_id: str) -> Signer:
    # Imported here: HMAC and plain Ed25519 keys never pay for loading it at cold start.
    from .private_keys import Ed25519Key, PrivateKeyError, load_private_key

    try:
        key = load_private_key(pem, passphrase)
    except PrivateKeyError as error:
        raise SecretError(f"secret {secret_id!r}: {error}") from None
    if isinstance(key, Ed25519Key):
        signer = Ed25519Signer(key.seed)
        if key.public_key is not None and key.public_key != signer.public_key:
            raise SecretError(
                f"secret {secret_id!r}: 'privateKey' holds an Ed25519 public key that does not match its private "
                "key; export the key again"
            )
        return signer
    return RsaSigner(key)

"""The secret's private key, read from its PEM text in plain Python: Ed25519 or RSA, plain or passphrase-protected.

What is read:
- ``-----BEGIN PRIVATE KEY-----``: PKCS#8 (RFC 5208, and RFC 5958's version 2 with a public key) holding an
  Ed25519 key (RFC 8410) or an rsaEncryption key (a PKCS#1 RSAPrivateKey, RFC 8017 A.1.2);
- ``-----BEGIN RSA PRIVATE KEY-----``: PKCS#1;
- ``-----BEGIN ENCRYPTED PRIVATE KEY-----``: PKCS#8 EncryptedPrivateKeyInfo with PBES2 (RFC 8018 §6.2): key
  derivation by PBKDF2 (HMAC-SHA1/224/256/384/512) or scrypt (RFC 7914), encryption by AES-128/192/256-CBC;
- OpenSSL's legacy encrypted PEM (``Proc-Type: 4,ENCRYPTED`` and ``DEK-Info: AES-...-CBC,<IV>``, the key from
  EVP_BytesToKey: MD5, one iteration, the IV's first 8 bytes as salt) around a traditional block.

Everything else is refused with a message that says what it is and what to do: DES and 3DES (old `openssl genrsa
-des3` keys), RC2, PBES1, EC/Ed448/X25519/DSA keys, RSA keys under 2048 bits, RSA numbers that do not make a key.
The text around the PEM block, its line breaks and base64 padding are read as leniently as OpenSSL reads them.

Why plain Python: the function must not ship cryptography (13.5 MB for arm64, issue 12); reading a key happens
once per container, so its speed does not matter, and what it decrypts with is `aes` (tested against cryptography).
Messages say what is wrong, never what the key holds: no byte, number or position of it (the RSA size excepted).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from . import der
from .der import DerError, DerReader
from .rsa import InvalidRsaKeyError, RsaPrivateKey

MIN_RSA_BITS = 2048
#: Binance's largest RSA size. Signing time grows with about the cube of the size, and every request is signed: a
#: 16384-bit key took 1.8 s a signature on a full core here, about 13 s at the function's 256 MB (a seventh of one).
MAX_RSA_BITS = 4096
#: OpenSSL's bound on the public exponent of large keys (RSA_SMALL_MODULUS_MAX_PUBLIC_EXPONENT is 64 bits); each
#: signature computes two powers with it (blinding and the check), so an exponent as large as the modulus would
#: cost as much as the private operation twice more.
MAX_RSA_PUBLIC_EXPONENT_BITS = 64
#: PBKDF2 iterations one cold start will run (OpenSSL and cryptography write 2048; OWASP suggests up to 1.3 M):
#: measured on a full core here, 0.35 s of HMAC-SHA256 for a 32-byte key, 0.7 s of HMAC-SHA1 (two 20-byte blocks
#: for an AES-256 key); about seven times that at the function's 256 MB, once per secret value.
MAX_PBKDF2_ITERATIONS = 2_000_000
#: scrypt's memory (128 * r * N bytes; `openssl pkcs8 -scrypt` uses 16 MiB) and work (memory times p) bounds, so
#: that a hostile secret cannot exhaust a 256 MB function.
MAX_SCRYPT_MEMORY = 64 * 1024 * 1024
MAX_SCRYPT_WORK = 256 * 1024 * 1024

_ED25519 = "1.3.101.112"
_RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
_OTHER_KEY_TYPES = {
    _EC_PUBLIC_KEY: "an EC key",
    "1.3.101.113": "an Ed448 key",
    "1.3.101.110": "an X25519 key (for key agreement, not signatures)",
    "1.3.101.111": "an X448 key (for key agreement, not signatures)",
    "1.2.840.10040.4.1": "a DSA key",
    "1.2.840.113549.1.1.10": "an RSA-PSS key (restricted to PSS signatures; Binance verifies PKCS#1 v1.5 ones)",
    "1.2.840.113549.1.3.1": "a DH key",
    "1.2.840.10046.2.1": "a DH key",
    "1.2.156.10197.1.301": "an SM2 key",
}
_EC_CURVES = {
    "1.2.840.10045.3.1.7": "P-256",
    "1.3.132.0.34": "P-384",
    "1.3.132.0.35": "P-521",
    "1.3.132.0.10": "secp256k1",
}
_PEM_KINDS = {
    "PUBLIC KEY": "a public key",
    "RSA PUBLIC KEY": "a public key",
    "CERTIFICATE": "a certificate",
    "CERTIFICATE REQUEST": "a certificate request",
    "NEW CERTIFICATE REQUEST": "a certificate request",
    "EC PARAMETERS": "EC parameters",
    "DH PARAMETERS": "DH parameters",
    "DSA PARAMETERS": "DSA parameters",
    "PGP PRIVATE KEY BLOCK": "a PGP key",
    "PGP PUBLIC KEY BLOCK": "a PGP key",
}
_PRIVATE_LABELS = frozenset(
    {"PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "DSA PRIVATE KEY"}
    | {"OPENSSH PRIVATE KEY"}
)

_PBES2 = "1.2.840.113549.1.5.13"
_PBKDF2 = "1.2.840.113549.1.5.12"
_SCRYPT = "1.3.6.1.4.1.11591.4.11"
_PBKDF2_PRFS = {
    "1.2.840.113549.2.7": "sha1",
    "1.2.840.113549.2.8": "sha224",
    "1.2.840.113549.2.9": "sha256",
    "1.2.840.113549.2.10": "sha384",
    "1.2.840.113549.2.11": "sha512",
}
_AES_CBC = {"2.16.840.1.101.3.4.1.2": 16, "2.16.840.1.101.3.4.1.22": 24, "2.16.840.1.101.3.4.1.42": 32}
_PBES1 = {
    "1.2.840.113549.1.5.1": "pbeWithMD2AndDES-CBC",
    "1.2.840.113549.1.5.3": "pbeWithMD5AndDES-CBC",
    "1.2.840.113549.1.5.4": "pbeWithMD2AndRC2-CBC",
    "1.2.840.113549.1.5.6": "pbeWithMD5AndRC2-CBC",
    "1.2.840.113549.1.5.10": "pbeWithSHA1AndDES-CBC",
    "1.2.840.113549.1.5.11": "pbeWithSHA1AndRC2-CBC",
    "1.2.840.113549.1.12.1.1": "pbeWithSHAAnd128BitRC4",
    "1.2.840.113549.1.12.1.2": "pbeWithSHAAnd40BitRC4",
    "1.2.840.113549.1.12.1.3": "pbeWithSHAAnd3-KeyTripleDES-CBC",
    "1.2.840.113549.1.12.1.4": "pbeWithSHAAnd2-KeyTripleDES-CBC",
    "1.2.840.113549.1.12.1.5": "pbeWithSHAAnd128BitRC2-CBC",
    "1.2.840.113549.1.12.1.6": "pbeWithSHAAnd40BitRC2-CBC",
}
_REFUSED_CIPHERS = {
    "1.2.840.113549.3.7": "DES-EDE3-CBC (3DES)",
    "1.3.14.3.2.7": "DES-CBC",
    "1.2.840.113549.3.2": "RC2-CBC",
    "2.16.840.1.101.3.4.1.6": "AES-128-GCM",
    "2.16.840.1.101.3.4.1.26": "AES-192-GCM",
    "2.16.840.1.101.3.4.1.46": "AES-256-GCM",
}
_AES_BLOCK = 16
_LEGACY_AES = {"AES-128-CBC": 16, "AES-192-CBC": 24, "AES-256-CBC": 32}
_LEGACY_REFUSED = {
    "DES-EDE3-CBC": "DES-EDE3-CBC (3DES)",
    "DES-EDE-CBC": "DES-EDE-CBC (2-key 3DES)",
    "DES-CBC": "DES-CBC",
    "RC2-CBC": "RC2-CBC",
    "RC2-40-CBC": "RC2-40-CBC",
    "RC2-64-CBC": "RC2-64-CBC",
    "BF-CBC": "Blowfish (BF-CBC)",
}

_REENCRYPT = (
    "re-encrypt it with AES (`openssl pkcs8 -topk8 -v2 aes-256-cbc -in old.pem -out new.pem`) or store it "
    "unencrypted (Secrets Manager already encrypts the secret with KMS)"
)
_NOT_DECRYPTED = (
    "'privateKey' could not be decrypted: 'privateKeyPassphrase' is wrong (or the encrypted key is damaged)"
)


class PrivateKeyError(Exception):
    """The key cannot be used; the message (to follow "secret '<id>': ") says why and what to do."""


@dataclass(frozen=True, repr=False, eq=False)
class Ed25519Key:
    """An Ed25519 private key: its 32-byte seed, and the public key when the PKCS#8 block carries one. Like
    RsaPrivateKey, it shows nothing of itself, is compared by identity only and cannot be pickled."""

    seed: bytes = field(repr=False)
    public_key: bytes | None = None

    def __repr__(self) -> str:
        return "Ed25519Key(<hidden>)"

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("an Ed25519 private key is not pickled")


PrivateKey = Ed25519Key | RsaPrivateKey


def load_private_key(text: str, passphrase: str | None) -> PrivateKey:
    """The Ed25519 or RSA key of the first private-key PEM block in `text`; PrivateKeyError when there is none,
    it cannot be read or decrypted, or it is not a key Binance accepts."""
    label, body = _private_block(text)
    if label == "OPENSSH PRIVATE KEY":
        raise PrivateKeyError(
            "'privateKey' is in OpenSSH's format, which this function does not read; use a PEM key "
            "(`openssl genpkey -algorithm ed25519 -out key.pem`)"
        )
    if label == "EC PRIVATE KEY":
        raise _not_for_binance("an EC key")
    if label == "DSA PRIVATE KEY":
        raise _not_for_binance("a DSA key")
    headers, data = _decode_body(body)
    secret = None if passphrase is None else passphrase.encode()
    if label == "ENCRYPTED PRIVATE KEY":
        if headers:
            raise PrivateKeyError("'privateKey' could not be read: an ENCRYPTED PRIVATE KEY block has no headers")
        return _encrypted_pkcs8(data, secret)
    read = _pkcs8 if label == "PRIVATE KEY" else _pkcs1
    if headers.get("Proc-Type", "").replace(" ", "").upper() == "4,ENCRYPTED":
        plaintext = _legacy_decrypt(headers, data, secret)
        try:
            return read(plaintext)
        except DerError:
            raise PrivateKeyError(_NOT_DECRYPTED) from None
    if secret is not None:
        raise PrivateKeyError("'privateKey' is not encrypted, remove 'privateKeyPassphrase'")
    try:
        return read(data)
    except DerError as error:
        raise PrivateKeyError(f"'privateKey' could not be read: its DER structure is malformed ({error})") from None


def _not_for_binance(what: str) -> PrivateKeyError:
    return PrivateKeyError(f"'privateKey' is {what}; Binance accepts Ed25519 or RSA keys")


def _unreadable(why: str) -> PrivateKeyError:
    return PrivateKeyError(f"'privateKey' could not be read: {why}")


# --- PEM armor -----------------------------------------------------------------------------------------------------


def _private_block(text: str) -> tuple[str, str]:
    """Label and body of the first private-key PEM block; text around the blocks is ignored, as OpenSSL does."""
    other: str | None = None  # the label of the first block that is not a private key
    position = 0
    while (begin := text.find("-----BEGIN ", position)) >= 0:
        label_start = begin + len("-----BEGIN ")
        label_end = text.find("-----", label_start)
        if label_end < 0 or any(ch in text[label_start:label_end] for ch in "\r\n"):
            raise _unreadable("a '-----BEGIN' line does not end in '-----'")
        label = text[label_start:label_end]
        end_line = f"-----END {label}-----"
        end = text.find(end_line, label_end + 5)
        if end < 0:
            raise _unreadable("a '-----BEGIN' line has no matching '-----END' line")
        if label in _PRIVATE_LABELS:
            return label, text[label_end + 5 : end]
        other = label if other is None else other
        position = end + len(end_line)
    if other is None:
        raise _unreadable("it holds no complete PEM block")
    kind = _PEM_KINDS.get(other, "a PEM block of another kind")
    raise PrivateKeyError(
        f"'privateKey' holds {kind}, not a private key; put the private key's PEM in it "
        "(the block that begins '-----BEGIN PRIVATE KEY-----')"
    )


def _decode_body(body: str) -> tuple[dict[str, str], bytes]:
    """RFC 1421 headers ("Name: value" lines before the base64) and the decoded base64 of a PEM block's body."""
    headers: dict[str, str] = {}
    encoded: list[str] = []
    for line in body.splitlines():
        if not line.strip():
            continue
        if ":" in line:
            if encoded:
                raise _unreadable("its PEM block has a header line inside its base64")
            name, _, value = line.partition(":")
            headers[name.strip()] = value.strip()
        else:
            encoded.append(line)
    # Whitespace anywhere and missing '=' padding are accepted, as OpenSSL and cryptography accept them.
    letters = "".join("".join(encoded).split()).rstrip("=")
    if not letters or len(letters) % 4 == 1:
        raise _unreadable("its PEM block holds no valid base64")
    try:
        return headers, base64.b64decode(letters + "=" * (-len(letters) % 4), validate=True)
    except binascii.Error:
        raise _unreadable("its PEM block holds characters that are not base64") from None


# --- Plain keys ----------------------------------------------------------------------------------------------------


def _pkcs8(data: bytes) -> PrivateKey:
    """PrivateKeyInfo / OneAsymmetricKey (RFC 5208, RFC 5958): an Ed25519 or RSA key, or a refusal naming the type."""
    info = der.parse(data)
    version = info.read_unsigned(8)
    if version > 1:
        raise DerError("unknown PrivateKeyInfo version")
    algorithm = info.enter()
    oid = algorithm.read_oid()
    private = info.read(der.OCTET_STRING)
    if info.peek_tag() == der.CONTEXT_0_CONSTRUCTED:
        info.read(der.CONTEXT_0_CONSTRUCTED)  # attributes: nothing a signature needs
    public = info.read(der.CONTEXT_1_PRIMITIVE) if version == 1 and not info.at_end() else None
    info.finish()
    if oid == _ED25519:
        algorithm.finish()  # RFC 8410: the parameters are absent
        inner = DerReader(private)
        seed = inner.read(der.OCTET_STRING)
        inner.finish()
        if len(seed) != 32:
            raise DerError("an Ed25519 private key is 32 bytes")
        if public is not None and (len(public) != 33 or public[0] != 0):
            raise DerError("an Ed25519 public key is 32 bytes")
        return Ed25519Key(seed, None if public is None else public[1:])
    if oid == _RSA_ENCRYPTION:
        if not algorithm.at_end():
            algorithm.read_null()
            algorithm.finish()
        return _pkcs1(private)
    what = _OTHER_KEY_TYPES.get(oid, "a key of a type this function does not know")
    if oid == _EC_PUBLIC_KEY and algorithm.peek_tag() == der.OBJECT_IDENTIFIER:
        curve = _EC_CURVES.get(algorithm.read_oid())
        what = f"an EC ({curve}) key" if curve else what
    raise _not_for_binance(what)


def _pkcs1(data: bytes) -> RsaPrivateKey:
    """RSAPrivateKey (RFC 8017 A.1.2), two primes, validated by RsaPrivateKey."""
    key = der.parse(data)
    version = key.read_unsigned(8)
    if version == 1:
        raise PrivateKeyError(
            "'privateKey' is a multi-prime RSA key, which this function does not sign with; "
            "use a two-prime key (`openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`) or Ed25519"
        )
    if version != 0:
        raise DerError("unknown RSAPrivateKey version")
    # Bounded by what a secret can hold (64 KB); the size itself is judged below, before any arithmetic.
    n, e, d, p, q, dp, dq, qinv = (key.read_unsigned(max_bits=8 * 65536) for _ in range(8))
    key.finish()
    bits = n.bit_length()
    if bits < MIN_RSA_BITS:
        raise PrivateKeyError(f"RSA key is {bits} bits; Binance needs {MIN_RSA_BITS} or more")
    if bits > MAX_RSA_BITS:
        raise PrivateKeyError(
            f"RSA key is {bits} bits; this function signs with keys of up to {MAX_RSA_BITS} bits (Binance's sizes are "
            "2048 and 4096)"
        )
    if e.bit_length() > MAX_RSA_PUBLIC_EXPONENT_BITS:
        raise PrivateKeyError(
            f"RSA key's public exponent is longer than {MAX_RSA_PUBLIC_EXPONENT_BITS} bits; keys made by OpenSSL, "
            "Binance's generator or cryptography use 65537: make a new one"
        )
    try:
        return RsaPrivateKey(n=n, e=e, d=d, p=p, q=q, dp=dp, dq=dq, qinv=qinv)
    except InvalidRsaKeyError as error:
        raise PrivateKeyError(
            f"'privateKey' holds inconsistent RSA parameters ({error}); export the key again or make a new one"
        ) from None


# --- Encrypted keys ------------------------------------------------------------------------------------------------


def _encrypted_pkcs8(data: bytes, secret: bytes | None) -> PrivateKey:
    """EncryptedPrivateKeyInfo (RFC 5958 §3) with PBES2; the parameters are checked before the passphrase is."""
    try:
        info = der.parse(data)
        algorithm = info.enter()
        scheme = algorithm.read_oid()
        if scheme in _PBES1:
            raise PrivateKeyError(
                f"'privateKey' is encrypted with PBES1 ({_PBES1[scheme]}), an old scheme this function does not "
                f"decrypt; {_REENCRYPT}"
            )
        if scheme != _PBES2:
            raise PrivateKeyError(f"'privateKey' is encrypted with a scheme this function does not know; {_REENCRYPT}")
        params = algorithm.enter()
        algorithm.finish()
        kdf = params.enter()
        cipher = params.enter()
        params.finish()
        ciphertext = info.read(der.OCTET_STRING)
        info.finish()
        key_size, iv = _cipher(cipher)
        derive = _kdf(kdf, key_size)
    except DerError as error:
        raise _unreadable(f"its encryption parameters are malformed ({error})") from None
    if secret is None:
        raise PrivateKeyError("'privateKey' is encrypted; add 'privateKeyPassphrase'")
    plaintext = _decrypt(derive(secret), iv, ciphertext)
    try:
        return _pkcs8(plaintext)
    except DerError:
        raise PrivateKeyError(_NOT_DECRYPTED) from None


def _cipher(cipher: DerReader) -> tuple[int, bytes]:
    """Key size and IV of PBES2's encryption scheme: AES-CBC only."""
    oid = cipher.read_oid()
    if oid not in _AES_CBC:
        name = _REFUSED_CIPHERS.get(oid, "a cipher this function does not know")
        raise PrivateKeyError(
            f"'privateKey' is encrypted with {name}, which this function does not decrypt; {_REENCRYPT}"
        )
    iv = cipher.read(der.OCTET_STRING)
    cipher.finish()
    if len(iv) != _AES_BLOCK:
        raise DerError("an AES-CBC IV is 16 bytes")
    return _AES_CBC[oid], iv


def _kdf(kdf: DerReader, key_size: int) -> Callable[[bytes], bytes]:
    """PBES2's key derivation, its parameters checked and bounded now, run later on the passphrase."""
    oid = kdf.read_oid()
    if oid not in (_PBKDF2, _SCRYPT):
        raise PrivateKeyError(f"'privateKey' uses a key derivation this function does not know; {_REENCRYPT}")
    params = kdf.enter()
    kdf.finish()
    if oid == _PBKDF2:
        if params.peek_tag() != der.OCTET_STRING:
            raise PrivateKeyError(f"'privateKey' uses a PBKDF2 salt source this function does not know; {_REENCRYPT}")
        salt = params.read(der.OCTET_STRING)
        iterations = params.read_unsigned(max_bits=64)
        _check_key_length(params, key_size)
        prf = "sha1"  # the DEFAULT of RFC 8018 A.2
        if not params.at_end():
            prf_id = params.enter()
            prf_oid = prf_id.read_oid()
            if not prf_id.at_end():
                prf_id.read_null()
                prf_id.finish()
            if prf_oid not in _PBKDF2_PRFS:
                raise PrivateKeyError(f"'privateKey' uses a PBKDF2 hash this function does not know; {_REENCRYPT}")
            prf = _PBKDF2_PRFS[prf_oid]
        params.finish()
        if not 1 <= iterations <= MAX_PBKDF2_ITERATIONS:
            raise PrivateKeyError(
                f"'privateKey' is encrypted with {iterations} PBKDF2 iterations; this function runs at most "
                f"{MAX_PBKDF2_ITERATIONS:,} (re-encrypt with fewer: `openssl pkcs8 -topk8 -v2 aes-256-cbc -iter "
                "600000`, or store it unencrypted: Secrets Manager already encrypts the secret with KMS)"
            )
        return lambda secret: hashlib.pbkdf2_hmac(prf, secret, salt, iterations, key_size)
    salt = params.read(der.OCTET_STRING)
    cost = params.read_unsigned(max_bits=64)
    block_size = params.read_unsigned(max_bits=64)
    parallelism = params.read_unsigned(max_bits=64)
    _check_key_length(params, key_size)
    params.finish()
    if cost < 2 or cost & (cost - 1) or block_size < 1 or parallelism < 1:
        raise DerError("scrypt needs N a power of 2 above 1, r and p at least 1")
    memory = 128 * block_size * cost
    if memory > MAX_SCRYPT_MEMORY or memory * parallelism > MAX_SCRYPT_WORK:
        raise PrivateKeyError(
            f"'privateKey' is encrypted with scrypt parameters needing more than this function allows "
            f"({MAX_SCRYPT_MEMORY >> 20} MiB for 128*r*N, {MAX_SCRYPT_WORK >> 20} MiB for 128*r*N*p); "
            "re-encrypt it with `openssl pkcs8 -topk8 -scrypt` (N=16384, r=8, p=1) or store it unencrypted "
            "(Secrets Manager already encrypts the secret with KMS)"
        )
    # OpenSSL counts 128*r*(N+2) bytes for V and 128*r*p for B against maxmem.
    limit = 128 * block_size * (cost + 2 + parallelism)

    def scrypt(secret: bytes) -> bytes:
        try:
            return hashlib.scrypt(secret, salt=salt, n=cost, r=block_size, p=parallelism, maxmem=limit, dklen=key_size)
        except (ValueError, MemoryError):
            raise PrivateKeyError("'privateKey' could not be decrypted: scrypt refused its parameters") from None

    return scrypt


def _check_key_length(params: DerReader, key_size: int) -> None:
    """The optional keyLength of PBKDF2-params and scrypt-params, which must be the cipher's key size."""
    if params.peek_tag() == der.INTEGER and params.read_unsigned(max_bits=16) != key_size:
        raise DerError("the key length does not match the cipher")


def _legacy_decrypt(headers: dict[str, str], ciphertext: bytes, secret: bytes | None) -> bytes:
    """OpenSSL's traditional PEM encryption: DEK-Info's cipher and IV, the key from EVP_BytesToKey (MD5, 1 round)."""
    cipher, _, iv_hex = headers.get("DEK-Info", "").partition(",")
    cipher = cipher.strip().upper()
    if not cipher:
        raise _unreadable("its PEM block says it is encrypted but has no DEK-Info header")
    if cipher not in _LEGACY_AES:
        name = _LEGACY_REFUSED.get(cipher, "a cipher this function does not know")
        raise PrivateKeyError(
            f"'privateKey' is encrypted with {name}, which this function does not decrypt; {_REENCRYPT}"
        )
    try:
        iv = bytes.fromhex(iv_hex.strip())
    except ValueError:
        raise _unreadable("its DEK-Info IV is not hexadecimal") from None
    if len(iv) != _AES_BLOCK:
        raise _unreadable("its DEK-Info IV is not 16 bytes")
    if secret is None:
        raise PrivateKeyError("'privateKey' is encrypted; add 'privateKeyPassphrase'")
    key_size = _LEGACY_AES[cipher]
    derived = b""
    block = b""
    while len(derived) < key_size:
        # The format's fixed derivation, needed to read it; nothing is ever encrypted this way here.
        block = hashlib.md5(block + secret + iv[:8], usedforsecurity=False).digest()
        derived += block
    return _decrypt(derived[:key_size], iv, ciphertext)


def _decrypt(key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    if not ciphertext or len(ciphertext) % _AES_BLOCK:
        raise _unreadable("its encrypted data is not a whole number of AES blocks")
    from . import aes  # its tables are built at import: only for an encrypted key

    try:
        return aes.decrypt_cbc_pkcs7(key, iv, ciphertext)
    except aes.PaddingError:
        raise PrivateKeyError(_NOT_DECRYPTED) from None

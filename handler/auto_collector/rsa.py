"""RSA signatures the way Binance verifies them: RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017 §8.2.1), in plain Python.

Plain Python because cryptography, which did it before, ships a 13.5 MB extension module for arm64: more than the
whole artifact may weigh (issue 12). Python's integers do the arithmetic; what a library would add is done here
explicitly:

- the private operation uses the Chinese Remainder Theorem with the key's own dP, dQ and qInv (RSASP1, RFC 8017
  §5.2.1);
- it is blinded (as OpenSSL does): the message representative m is multiplied by r^e for a fresh random r from
  `secrets` before exponentiation, and the result by r^-1 after, so what the exponentiations work on is random and
  unrelated to the message;
- every signature is verified with the public exponent before it is returned, and a failure raises
  SigningError: a CRT result broken by a fault (one wrong half gives away a prime factor, Boneh-DeMillo-Lipton)
  never leaves the process;
- a key is validated when it is made (n = p*q, e*d = 1 modulo lcm(p-1, q-1), the CRT values), then signs a test
  message: a key that cannot make verifiable signatures is refused at load, not at every request.

PKCS#1 v1.5 signatures are deterministic: for one key and message, this module's signature is byte for byte the
one any other implementation makes (the tests compare it with cryptography's). Python's big-integer arithmetic is
not constant-time; blinding covers the message, and Binance's recommended key type is Ed25519 anyway (libsodium).
"""

from __future__ import annotations

import hashlib
import math
import secrets

from .errors import SigningError

#: DER of DigestInfo{AlgorithmIdentifier{id-sha256, NULL}, OCTET STRING(32)} before the digest (RFC 8017 §9.2 note 1).
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
_SELF_TEST_MESSAGE = b"auto_collector rsa self-test"


class InvalidRsaKeyError(Exception):
    """The numbers do not make a usable RSA key; the message says which relation fails, never a number."""


class RsaPrivateKey:
    """An RSA private key in CRT form that signs with RSASSA-PKCS1-v1_5 and SHA-256. Its repr shows the size only."""

    __slots__ = ("_d", "_dp", "_dq", "_e", "_k", "_n", "_p", "_q", "_qinv")

    def __init__(self, *, n: int, e: int, d: int, p: int, q: int, dp: int, dq: int, qinv: int) -> None:
        if p < 3 or q < 3 or p == q or n != p * q:
            raise InvalidRsaKeyError("its modulus is not the product of its two primes")
        if e < 3 or e % 2 == 0 or e >= n:
            raise InvalidRsaKeyError("its public exponent is not an odd number between 3 and the modulus")
        if not 0 < d < n or e * d % math.lcm(p - 1, q - 1) != 1:
            raise InvalidRsaKeyError("its private exponent is not the inverse of its public exponent")
        if not (0 < dp < p and 0 < dq < q and 0 < qinv < p) or (
            e * dp % (p - 1) != 1 or e * dq % (q - 1) != 1 or q * qinv % p != 1
        ):
            raise InvalidRsaKeyError("its CRT values (dP, dQ, qInv) do not match its primes and exponents")
        self._n, self._e, self._d, self._p, self._q = n, e, d, p, q
        self._dp, self._dq, self._qinv = dp, dq, qinv
        self._k = (n.bit_length() + 7) // 8
        try:
            self.sign_sha256(_SELF_TEST_MESSAGE)
        except SigningError:
            # A composite "prime" passes every relation above but makes signatures that do not verify.
            raise InvalidRsaKeyError("a test signature made with it does not verify") from None

    @property
    def bits(self) -> int:
        return self._n.bit_length()

    @property
    def public_numbers(self) -> tuple[int, int]:
        """(n, e): what the exchange verifies with."""
        return self._n, self._e

    def sign_sha256(self, message: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5-SIGN (RFC 8017 §8.2.1) with SHA-256: k bytes, k the modulus' length in bytes."""
        n, e, p, q = self._n, self._e, self._p, self._q
        # EMSA-PKCS1-v1_5 (§9.2): 0x00 0x01 PS 0x00 T, PS at least 8 bytes of 0xff; k >= 256 here, so it fits.
        t = SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
        encoded = b"\x00\x01" + b"\xff" * (self._k - len(t) - 3) + b"\x00" + t
        m = int.from_bytes(encoded, "big")
        r = self._blinding_factor()
        blinded = m * pow(r, e, n) % n
        # RSASP1 in CRT form (§5.2.1 step 2b): s = s2 + q * (qInv * (s1 - s2) mod p).
        s1 = pow(blinded % p, self._dp, p)
        s2 = pow(blinded % q, self._dq, q)
        s = (s2 + q * (self._qinv * (s1 - s2) % p)) * pow(r, -1, n) % n
        if pow(s, e, n) != m:
            raise SigningError("an RSA signature did not verify with the key's public exponent (a computation fault)")
        return s.to_bytes(self._k, "big")

    def _blinding_factor(self) -> int:
        while True:
            r = secrets.randbelow(self._n - 2) + 2
            if math.gcd(r, self._n) == 1:  # anything else would be a factor of n: never, for a real key
                return r

    def __repr__(self) -> str:
        return f"RsaPrivateKey({self.bits} bits, <hidden>)"

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("an RSA private key is not pickled")

"""Test keys: the openssl-written fixtures of tests/fixtures/keys and cryptography keys made once per session."""

from __future__ import annotations

import functools
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "keys"
#: The passphrase of every encrypted fixture (tests/fixtures/keys/make-keys.sh).
PASSPHRASE = "throwaway-test-passphrase"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


@functools.cache
def rsa_key(bits: int) -> rsa.RSAPrivateKey:
    """One RSA key per size for the whole session: generating them is slow (a 4096-bit key takes seconds)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)

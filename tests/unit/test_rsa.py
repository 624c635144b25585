"""auto_collector.rsa: byte-identical to cryptography's PKCS#1 v1.5 signatures, blinded, verified before returned."""

import hashlib
import math
import re
import secrets
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric import rsa as crypto_rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from auto_collector import rsa as rsa_module
from auto_collector.errors import SigningError
from auto_collector.rsa import SHA256_DIGEST_INFO, InvalidRsaKeyError, RsaPrivateKey
from tests.support.keys import rsa_key

SIZES = (2048, 3072, 4096)


def numbers(key: crypto_rsa.RSAPrivateKey) -> dict[str, int]:
    private = key.private_numbers()
    return {
        "n": private.public_numbers.n,
        "e": private.public_numbers.e,
        "d": private.d,
        "p": private.p,
        "q": private.q,
        "dp": private.dmp1,
        "dq": private.dmq1,
        "qinv": private.iqmp,
    }


def ours(bits: int) -> RsaPrivateKey:
    return RsaPrivateKey(**numbers(rsa_key(bits)))


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(SIZES), st.binary(max_size=2_000))
def test_signatures_are_byte_identical_to_cryptographys(bits: int, payload: bytes) -> None:
    expected = rsa_key(bits).sign(payload, padding.PKCS1v15(), hashes.SHA256())
    assert ours(bits).sign_sha256(payload) == expected


@pytest.mark.parametrize("bits", SIZES)
def test_signatures_verify_with_the_public_key_and_have_the_modulus_length(bits: int) -> None:
    signature = ours(bits).sign_sha256(b"recvWindow=5000&timestamp=1499827319559")
    assert len(signature) == bits // 8
    rsa_key(bits).public_key().verify(
        signature, b"recvWindow=5000&timestamp=1499827319559", padding.PKCS1v15(), hashes.SHA256()
    )
    assert ours(bits).public_numbers == (numbers(rsa_key(bits))["n"], 65537)


def test_each_signature_is_blinded_by_a_fresh_random_factor(monkeypatch: pytest.MonkeyPatch) -> None:
    key = ours(2048)
    drawn: list[int] = []
    real = secrets.randbelow

    def recording(limit: int) -> int:
        drawn.append(real(limit))
        return drawn[-1]

    monkeypatch.setattr(secrets, "randbelow", recording)
    first, second = key.sign_sha256(b"payload"), key.sign_sha256(b"payload")
    assert first == second  # PKCS#1 v1.5 is deterministic: the blinding never shows in the result
    assert len(drawn) == 2 and drawn[0] != drawn[1]
    assert all(1 < r < numbers(rsa_key(2048))["n"] for r in drawn)


def test_the_private_exponentiations_work_on_the_blinded_message_not_the_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the key's secret exponents are applied to is m * r^e mod n for the drawn r, never m itself."""
    key = ours(2048)
    n, e = key.public_numbers
    p = numbers(rsa_key(2048))["p"]
    dp = key._dp
    drawn: list[int] = []
    bases: list[int] = []
    real_randbelow = secrets.randbelow

    def recording_randbelow(limit: int) -> int:
        drawn.append(real_randbelow(limit))
        return drawn[-1]

    def recording_pow(base: int, exponent: int, modulus: int | None = None) -> int:
        if exponent == dp and modulus == p:
            bases.append(base)
        return pow(base, exponent, modulus)

    monkeypatch.setattr(secrets, "randbelow", recording_randbelow)
    monkeypatch.setattr(rsa_module, "pow", recording_pow, raising=False)  # the module's name shadows the builtin
    payload = b"recvWindow=5000&timestamp=1499827319559"
    key.sign_sha256(payload)
    digest = SHA256_DIGEST_INFO + hashlib.sha256(payload).digest()
    m = int.from_bytes(b"\x00\x01" + b"\xff" * (256 - len(digest) - 3) + b"\x00" + digest, "big")
    r = drawn[0] + 2  # the factor is drawn from [2, n - 1]
    assert bases == [m * pow(r, e, n) % n % p]
    assert bases[0] != m % p


def test_a_faulty_crt_half_never_leaves_the_process() -> None:
    key = ours(2048)
    key._dp += 2  # a fault in one CRT half: the result would give away a prime factor (gcd(s^e - m, n))
    with pytest.raises(SigningError, match="did not verify") as raised:
        key.sign_sha256(b"payload")
    assert re.search(r"\d{4}", str(raised.value)) is None


def test_the_key_shows_its_size_and_nothing_else() -> None:
    key = ours(2048)
    text = repr(key)
    assert text == "RsaPrivateKey(2048 bits, <hidden>)"
    for value in numbers(rsa_key(2048)).values():
        assert str(value) not in text and f"{value:x}" not in text
    with pytest.raises(TypeError, match="not pickled"):
        key.__reduce__()


def _composite_p_key() -> dict[str, int]:
    """A key whose "p" is the product of two primes: every relation between the numbers holds, yet signatures
    made with it do not verify."""
    first, second = numbers(rsa_key(2048)), numbers(rsa_key(3072))
    p, q, e = first["p"] * first["q"], second["p"], 65537
    assert math.gcd(e, p - 1) == 1 and math.gcd(e, q - 1) == 1
    d = pow(e, -1, math.lcm(p - 1, q - 1))
    return {"n": p * q, "e": e, "d": d, "p": p, "q": q, "dp": d % (p - 1), "dq": d % (q - 1), "qinv": pow(q, -1, p)}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(lambda k: {**k, "n": k["n"] + 2}, "modulus is not the product", id="n != p*q"),
        pytest.param(lambda k: {**k, "p": k["q"], "n": k["q"] ** 2}, "modulus is not the product", id="p == q"),
        pytest.param(lambda k: {**k, "p": 1, "n": k["q"]}, "modulus is not the product", id="p == 1"),
        pytest.param(lambda k: {**k, "e": 65536}, "public exponent", id="even e"),
        pytest.param(lambda k: {**k, "e": 1}, "public exponent", id="e == 1"),
        pytest.param(lambda k: {**k, "d": k["d"] + 2}, "private exponent", id="d"),
        pytest.param(lambda k: {**k, "d": 0}, "private exponent", id="d == 0"),
        pytest.param(lambda k: {**k, "dp": k["dp"] + 2}, "CRT values", id="dP"),
        pytest.param(lambda k: {**k, "dq": k["dq"] + 2}, "CRT values", id="dQ"),
        pytest.param(lambda k: {**k, "qinv": k["qinv"] + 1}, "CRT values", id="qInv"),
        pytest.param(lambda k: {**k, "qinv": 0}, "CRT values", id="qInv == 0"),
        pytest.param(lambda k: _composite_p_key(), "test signature", id="composite p"),
    ],
)
def test_inconsistent_numbers_are_refused_at_load_without_quoting_them(change: Any, message: str) -> None:
    values = change(numbers(rsa_key(2048)))
    with pytest.raises(InvalidRsaKeyError, match=message) as raised:
        RsaPrivateKey(**values)
    assert re.search(r"\d{4}", str(raised.value)) is None  # no number of the key
    assert raised.value.__cause__ is None and (raised.value.__context__ is None or raised.value.__suppress_context__)

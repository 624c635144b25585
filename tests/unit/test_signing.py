import ast
import base64
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.hashes import SHA256

from auto_collector.rsa import RsaPrivateKey
from auto_collector.signing import Ed25519Signer, HmacSigner, RsaSigner, signed_payload
from tests.support.keys import rsa_key

HANDLER = Path(__file__).resolve().parents[2] / "handler"

PUBLISHED_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"


def test_hmac_matches_binance_published_vector() -> None:
    payload = (
        "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
    )
    assert HmacSigner(PUBLISHED_SECRET).sign(payload) == (
        "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
    )


def test_signed_payload_for_auto_collection_matches_official_sdk_vector() -> None:
    body = signed_payload({"recvWindow": 5000, "timestamp": 1499827319559}, HmacSigner(PUBLISHED_SECRET))
    assert body == (
        "recvWindow=5000&timestamp=1499827319559"
        "&signature=82f4e72e95e63d666b6da651e82a701722ad8a785a169318d91f36f279c55821"
    )


def test_ed25519_signature_is_base64_percent_encoded_and_verifies() -> None:
    key = Ed25519PrivateKey.generate()
    body = signed_payload({"recvWindow": 5000, "timestamp": 1}, Ed25519Signer(key.private_bytes_raw()))
    payload, _, encoded = body.rpartition("&signature=")
    assert "+" not in encoded and "/" not in encoded and "=" not in encoded  # percent-encoded
    signature = dict(parse_qsl(body))["signature"]
    key.public_key().verify(base64.b64decode(signature), payload.encode())


def test_ed25519_signature_is_libsodiums_and_equals_cryptographys() -> None:
    key = Ed25519PrivateKey.generate()
    signer = Ed25519Signer(key.private_bytes_raw())
    assert signer.public_key == key.public_key().public_bytes_raw()
    # Ed25519 is deterministic (RFC 8032): two implementations give the same bytes.
    assert base64.b64decode(signer.sign("recvWindow=5000&timestamp=1")) == key.sign(b"recvWindow=5000&timestamp=1")
    with pytest.raises(ValueError, match="32 bytes"):
        Ed25519Signer(key.private_bytes_raw()[:31])


def _our_rsa(bits: int) -> RsaPrivateKey:
    private = rsa_key(bits).private_numbers()
    return RsaPrivateKey(
        n=private.public_numbers.n,
        e=private.public_numbers.e,
        d=private.d,
        p=private.p,
        q=private.q,
        dp=private.dmp1,
        dq=private.dmq1,
        qinv=private.iqmp,
    )


def test_rsa_signature_is_pkcs1v15_sha256_and_verifies() -> None:
    key = rsa_key(2048)
    body = signed_payload({"recvWindow": 5000, "timestamp": 1}, RsaSigner(_our_rsa(2048)))
    payload = body.rpartition("&signature=")[0]
    signature = base64.b64decode(dict(parse_qsl(body))["signature"])
    key.public_key().verify(signature, payload.encode(), padding.PKCS1v15(), SHA256())
    assert signature == key.sign(payload.encode(), padding.PKCS1v15(), SHA256())


def test_signers_never_show_key_material() -> None:
    ed = Ed25519PrivateKey.generate()
    pem = ed.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    signers = (HmacSigner(PUBLISHED_SECRET), Ed25519Signer(ed.private_bytes_raw()), RsaSigner(_our_rsa(2048)))
    for signer in signers:
        assert PUBLISHED_SECRET not in repr(signer)
        assert pem.decode() not in repr(signer)
        assert ed.private_bytes_raw().hex() not in repr(signer) and str(rsa_key(2048).private_numbers().d) not in repr(
            signer
        )
        assert "hidden" in repr(signer)


def test_an_hmac_secret_that_is_not_valid_text_is_refused_without_quoting_it() -> None:
    with pytest.raises(ValueError, match="not valid text") as raised:
        HmacSigner("abc\ud800def")
    assert "abc" not in str(raised.value) and "\ud800" not in str(raised.value) and "position" not in str(raised.value)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_nothing_in_the_function_imports_cryptography() -> None:
    """The artifact does not ship it (issue 12): cryptography is the tests' independent verifier only."""
    importing = []
    for module in sorted((HANDLER / "auto_collector").rglob("*.py")):
        for node in ast.walk(ast.parse(module.read_text(), str(module))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            if any(name.partition(".")[0] == "cryptography" for name in names):
                importing.append(f"{module.relative_to(HANDLER)}:{node.lineno}")
    assert importing == []

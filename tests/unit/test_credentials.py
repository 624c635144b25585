import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auto_collector.credentials import parse_secret
from auto_collector.errors import SecretError
from tests.support.keys import PASSPHRASE, fixture

SECRET_ID = "binance/collector"
HANDLER = Path(__file__).resolve().parents[2] / "handler"
API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"


def pem(key: object, passphrase: bytes | None = None) -> str:
    encryption = serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    return key.private_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()


def test_hmac_secret() -> None:
    credentials = parse_secret(json.dumps({"apiKey": API_KEY, "apiSecret": "s3cr3t"}), SECRET_ID)
    assert credentials.key_type == "hmac"
    assert credentials.api_key == API_KEY
    assert API_KEY not in repr(credentials) and "s3cr3t" not in repr(credentials)


def test_ed25519_and_rsa_keys_are_detected_from_the_pem() -> None:
    ed = parse_secret(json.dumps({"apiKey": API_KEY, "privateKey": pem(Ed25519PrivateKey.generate())}), SECRET_ID)
    assert ed.key_type == "ed25519"
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert parse_secret(json.dumps({"apiKey": API_KEY, "privateKey": pem(rsa_key)}), SECRET_ID).key_type == "rsa"


def test_passphrase_protected_pem() -> None:
    value = {
        "apiKey": API_KEY,
        "privateKey": pem(Ed25519PrivateKey.generate(), b"correct horse"),
        "privateKeyPassphrase": "correct horse",
    }
    assert parse_secret(json.dumps(value), SECRET_ID).key_type == "ed25519"


def test_spaces_at_the_ends_of_a_passphrase_are_part_of_it() -> None:
    value = {
        "apiKey": API_KEY,
        "privateKey": pem(Ed25519PrivateKey.generate(), b" padded passphrase "),
        "privateKeyPassphrase": " padded passphrase ",
    }
    assert parse_secret(json.dumps(value), SECRET_ID).key_type == "ed25519"
    with pytest.raises(SecretError, match="'privateKeyPassphrase' is wrong"):
        parse_secret(json.dumps({**value, "privateKeyPassphrase": "padded passphrase"}), SECRET_ID)


def test_plain_ed25519_pem_is_read_by_the_fast_path_and_signs_with_the_same_key() -> None:
    key = Ed25519PrivateKey.generate()
    for text in (pem(key), pem(key).replace("\n", "\r\n"), "\n" + pem(key) + "\n"):
        signer = parse_secret(json.dumps({"apiKey": API_KEY, "privateKey": text}), SECRET_ID).signer
        assert signer.key_type == "ed25519"
        key.public_key().verify(
            base64.b64decode(signer.sign("recvWindow=5000&timestamp=1")), b"recvWindow=5000&timestamp=1"
        )


#: Run in a fresh interpreter with cryptography made unimportable: parse the secret, sign once, list the modules.
IMPORT_PROBE = """
import importlib.abc, json, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] == "cryptography":
            raise ImportError(f"{name} must not be needed")
sys.meta_path.insert(0, Refuse())
from auto_collector.credentials import parse_secret
parse_secret(sys.argv[1], "x").signer.sign("recvWindow=5000&timestamp=1")
print(json.dumps(sorted(m for m in sys.modules if m.partition(".")[0] in ("nacl", "auto_collector", "cryptography"))))
"""
READER = {"auto_collector.private_keys", "auto_collector.der", "auto_collector.rsa"}


@pytest.mark.parametrize(
    ("secret", "present", "absent"),
    [
        pytest.param(
            {"apiSecret": "s3cr3t"}, set(), {"nacl", "nacl.signing", *READER, "auto_collector.aes"}, id="hmac"
        ),
        pytest.param(
            {"privateKey": fixture("ed25519.pem")},
            {"nacl.signing"},
            {*READER, "auto_collector.aes"},
            id="plain ed25519",
        ),
        pytest.param(
            {"privateKey": fixture("rsa-2048-pkcs1.pem")}, READER, {"nacl", "auto_collector.aes"}, id="plain rsa"
        ),
        pytest.param(
            {"privateKey": fixture("rsa-legacy-aes256.pem"), "privateKeyPassphrase": PASSPHRASE},
            {*READER, "auto_collector.aes"},
            {"nacl"},
            id="encrypted rsa",
        ),
        pytest.param(
            {"privateKey": fixture("ed25519-scrypt.pem"), "privateKeyPassphrase": PASSPHRASE},
            {*READER, "auto_collector.aes", "nacl.signing"},
            set(),
            id="encrypted ed25519",
        ),
    ],
)
def test_each_key_type_imports_only_what_it_needs_and_never_cryptography(
    secret: dict[str, str], present: set[str], absent: set[str]
) -> None:
    value = json.dumps({"apiKey": API_KEY, **secret})
    run = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE, value], capture_output=True, text=True, check=False, cwd=HANDLER
    )
    assert run.returncode == 0, run.stderr[-2000:]
    loaded = set(json.loads(run.stdout))
    assert not any(name.startswith("cryptography") for name in loaded)
    assert present <= loaded, present - loaded
    assert not absent & loaded, absent & loaded


@pytest.mark.parametrize(
    "der_change",
    [
        pytest.param(lambda der: der[:-1], id="truncated"),
        pytest.param(lambda der: der + b"\x00", id="trailing byte"),
        pytest.param(lambda der: b"\x30\x2f" + der[2:], id="other prefix"),
    ],
)
def test_a_pem_that_is_not_exactly_a_plain_ed25519_key_goes_to_the_general_loader(der_change: Any) -> None:
    der = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    body = base64.encodebytes(der_change(der)).decode()
    text = f"-----BEGIN PRIVATE KEY-----\n{body}-----END PRIVATE KEY-----\n"
    with pytest.raises(SecretError, match="'privateKey' could not be read"):
        parse_secret(json.dumps({"apiKey": API_KEY, "privateKey": text}), SECRET_ID)


PRIVATE = pem(Ed25519PrivateKey.generate())
ENCRYPTED = pem(Ed25519PrivateKey.generate(), b"correct horse")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not json {", "is not valid JSON (Expecting value at line 1 column 1)"),
        ("[1, 2]", "must be a JSON object, got list"),
        (json.dumps({"apiSecret": "x"}), "has no 'apiKey'"),
        (json.dumps({"apiKey": "", "apiSecret": "x"}), "'apiKey' must be a non-empty string"),
        (json.dumps({"apiKey": "has space", "apiSecret": "x"}), "printable ASCII without spaces"),
        (json.dumps({"apiKey": API_KEY}), "needs 'apiSecret' (HMAC key) or 'privateKey'"),
        (json.dumps({"apiKey": API_KEY, "apiSecret": "x", "privateKey": PRIVATE}), "has both"),
        (json.dumps({"apiKey": API_KEY, "apiSecret": "x", "extra": 1}), "1 unknown field(s) (names not shown)"),
        (json.dumps({"apiKey": API_KEY, "privateKey": "MC4CAQAwBQYDK2VwBCIEI"}), "is not a PEM block"),
        (json.dumps({"apiKey": API_KEY, "privateKey": PRIVATE.replace("M", "A", 3)}), "could not be read"),
        (json.dumps({"apiKey": API_KEY, "privateKey": ENCRYPTED}), "is encrypted; add 'privateKeyPassphrase'"),
        (
            json.dumps({"apiKey": API_KEY, "privateKey": ENCRYPTED, "privateKeyPassphrase": "incorrect"}),
            "'privateKey' could not be decrypted: 'privateKeyPassphrase' is wrong",
        ),
        (json.dumps({"apiKey": API_KEY, "privateKey": PRIVATE, "privateKeyPassphrase": "p"}), "is not encrypted"),
        (
            json.dumps({"apiKey": API_KEY, "privateKey": pem(ec.generate_private_key(ec.SECP256R1()))}),
            "Binance accepts Ed25519 or RSA keys",
        ),
        (
            json.dumps({"apiKey": API_KEY, "privateKey": pem(rsa.generate_private_key(65537, 1024))}),
            "RSA key is 1024 bits",
        ),
    ],
)
def test_bad_secrets_give_specific_errors_without_the_content(value: str, message: str) -> None:
    with pytest.raises(SecretError) as raised:
        parse_secret(value, SECRET_ID)
    text = str(raised.value)
    assert message in text
    assert SECRET_ID in text
    for secret_part in (API_KEY, PRIVATE.splitlines()[1], ENCRYPTED.splitlines()[1], "correct horse"):
        assert secret_part not in text
    # no chained exception (which could quote the secret) travels with the error
    assert raised.value.__cause__ is None
    assert raised.value.__context__ is None or raised.value.__suppress_context__


def test_binary_secret_is_refused() -> None:
    with pytest.raises(SecretError, match="no SecretString"):
        parse_secret(b"\x00", SECRET_ID)


LONE_SURROGATE_HMAC = '{"apiKey": "' + API_KEY + '", "apiSecret": "abc\\ud800def"}'


@pytest.mark.parametrize(
    ("value", "message"),
    [
        # The JSON escape reads as a lone surrogate, which no encoder accepts; the codec's own message
        # would name the character and its position in the secret.
        (LONE_SURROGATE_HMAC, "'apiSecret' holds a lone surrogate"),
        ('{"apiKey": "\\udfff' + API_KEY + '", "apiSecret": "x"}', "'apiKey' holds a lone surrogate"),
        (json.dumps({"apiKey": API_KEY, "privateKey": PRIVATE, "privateKeyPassphrase": "\ud800"}), "lone surrogate"),
        (json.dumps({"apiKey": API_KEY, "apiSecret": "s3cr3t\u00e9"}), "'apiSecret' must be printable ASCII"),
        (json.dumps({"apiKey": API_KEY, "privateKey": PRIVATE + "\u00e9"}), "'privateKey' must be ASCII text"),
        ('{"apiKey": "' + API_KEY + '", "apiSecret": ' + "7" * 5_000 + "}", "holds a number too long to read"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"apiKey": "' + API_KEY + '", "apiSecret": "x", "pasted-secret-text": 1}', "1 unknown field(s)"),
    ],
)
def test_hostile_secrets_give_specific_errors_that_quote_nothing_of_them(value: str, message: str) -> None:
    with pytest.raises(SecretError) as raised:
        parse_secret(value, SECRET_ID)
    text = str(raised.value)
    assert message in text
    for secret_part in ("abc", "def", "\ud800", "\udfff", "s3cr3t", "777", "pasted-secret-text", API_KEY):
        assert secret_part not in text
    assert "position" not in text and "codec" not in text
    assert raised.value.__cause__ is None
    assert raised.value.__context__ is None or raised.value.__suppress_context__

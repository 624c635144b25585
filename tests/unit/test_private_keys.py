"""auto_collector.private_keys: every format cryptography and the openssl CLI write, read as cryptography reads them;
everything else refused with a message that says what it is and quotes nothing of it."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding
from cryptography.hazmat.primitives.asymmetric import rsa as crypto_rsa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from auto_collector.credentials import parse_secret
from auto_collector.errors import SecretError
from auto_collector.private_keys import (
    MAX_PBKDF2_ITERATIONS,
    Ed25519Key,
    PrivateKey,
    PrivateKeyError,
    load_private_key,
)
from auto_collector.rsa import RsaPrivateKey
from tests.support import der as build
from tests.support.keys import FIXTURES, PASSPHRASE, fixture, rsa_key

CryptoKey = ed25519.Ed25519PrivateKey | crypto_rsa.RSAPrivateKey
SECRET_ID = "binance/collector"


def _passphrase_for(text: str) -> str | None:
    return PASSPHRASE if "ENCRYPTED" in text else None


def assert_same_key(ours: PrivateKey, theirs: object) -> None:
    """The key read here is the one cryptography reads: the same seed, or the same signatures."""
    if isinstance(theirs, ed25519.Ed25519PrivateKey):
        assert isinstance(ours, Ed25519Key)
        assert ours.seed == theirs.private_bytes_raw()
    else:
        assert isinstance(theirs, crypto_rsa.RSAPrivateKey) and isinstance(ours, RsaPrivateKey)
        assert ours.public_numbers == (theirs.public_key().public_numbers().n, theirs.public_key().public_numbers().e)
        payload = b"recvWindow=5000&timestamp=1499827319559"
        assert ours.sign_sha256(payload) == theirs.sign(payload, padding.PKCS1v15(), hashes.SHA256())


def assert_quotes_nothing(message: str, text: str, passphrase: str | None = PASSPHRASE) -> None:
    """No passphrase, no piece of the PEM's base64 and no number of more than 4 digits but a key size."""
    if passphrase:
        assert passphrase not in message
    letters = "".join(line for line in text.splitlines() if "-----" not in line and ":" not in line)
    pieces = [letters[start : start + 12] for start in range(0, len(letters) - 11, 4)] + [letters[-12:]]
    for piece in pieces:
        assert len(piece) < 12 or piece not in message
    allowed = re.sub(
        r"ed25519|x25519|\d+ PBKDF2 iterations|2,000,000|-iter 600000|RSA key is \d+ bits|65537",
        "",
        message,
        flags=re.IGNORECASE,
    )
    assert re.search(r"\d{5}", allowed) is None, message


# --- what cryptography writes ---------------------------------------------------------------------------------------

ENCRYPTIONS = {
    "plain": serialization.NoEncryption(),
    "BestAvailableEncryption": serialization.BestAvailableEncryption(PASSPHRASE.encode()),
}


def _crypto_keys() -> list[tuple[str, Callable[[], CryptoKey], serialization.PrivateFormat, str]]:
    cases = []
    formats = {
        "PKCS8": serialization.PrivateFormat.PKCS8,
        "TraditionalOpenSSL": serialization.PrivateFormat.TraditionalOpenSSL,
    }
    makers: dict[str, Callable[[], CryptoKey]] = {
        "ed25519": ed25519.Ed25519PrivateKey.generate,
        "rsa-2048": lambda: rsa_key(2048),
        "rsa-4096": lambda: rsa_key(4096),
    }
    for kind, make in makers.items():
        for format_name, private_format in formats.items():
            if kind == "ed25519" and format_name == "TraditionalOpenSSL":
                continue  # cryptography has no traditional form for Ed25519
            for encryption in ENCRYPTIONS:
                cases.append((f"{kind}-{format_name}-{encryption}", make, private_format, encryption))
    return cases


@pytest.mark.parametrize(
    ("make", "private_format", "encryption"),
    [pytest.param(make, fmt, enc, id=name) for name, make, fmt, enc in _crypto_keys()],
)
def test_every_pem_format_cryptography_writes_is_read_as_the_same_key(
    make: Callable[[], CryptoKey], private_format: serialization.PrivateFormat, encryption: str
) -> None:
    key = make()
    text = key.private_bytes(serialization.Encoding.PEM, private_format, ENCRYPTIONS[encryption]).decode()
    assert_same_key(load_private_key(text, PASSPHRASE if encryption != "plain" else None), key)


def test_cryptographys_openssh_format_is_refused_with_what_to_use() -> None:
    text = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    with pytest.raises(PrivateKeyError, match=r"OpenSSH's format.*openssl genpkey -algorithm ed25519"):
        load_private_key(text.decode(), None)


# --- what the openssl CLI writes (tests/fixtures/keys/make-keys.sh) --------------------------------------------------

READABLE = [
    "ed25519.pem",
    "rsa-2048-pkcs8.pem",
    "rsa-2048-pkcs1.pem",
    "rsa-4096-pkcs8.pem",
    "ed25519-genpkey-aes256.pem",
    "rsa-genpkey-aes256.pem",
    "rsa-genrsa-aes128.pem",
    "rsa-legacy-aes128.pem",
    "rsa-legacy-aes192.pem",
    "rsa-legacy-aes256.pem",
    "ed25519-pbkdf2-sha1-aes128.pem",
    "ed25519-pbkdf2-sha224-aes128.pem",
    "ed25519-pbkdf2-sha384-aes128.pem",
    "ed25519-pbkdf2-sha512-aes192.pem",
    "ed25519-scrypt.pem",
    "rsa-scrypt.pem",
]
ENCRYPTED = [name for name in READABLE if "ENCRYPTED" in fixture(name)]


def test_the_fixtures_are_what_their_names_say() -> None:
    assert "DEK-Info: AES-128-CBC," in fixture("rsa-legacy-aes128.pem")
    assert "DEK-Info: AES-192-CBC," in fixture("rsa-legacy-aes192.pem")
    assert "DEK-Info: DES-EDE3-CBC," in fixture("rsa-legacy-des3.pem")
    assert fixture("rsa-2048-pkcs1.pem").startswith("-----BEGIN RSA PRIVATE KEY-----\nMII")
    assert fixture("rsa-genrsa-aes128.pem").startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert len(ENCRYPTED) == 12
    listed = {path.name for path in FIXTURES.iterdir() if path.suffix in (".pem", ".key")}
    assert set(READABLE) | set(REFUSED) == listed


@pytest.mark.parametrize("name", READABLE)
def test_openssl_written_keys_are_read_as_cryptography_reads_them(name: str) -> None:
    text = fixture(name)
    passphrase = _passphrase_for(text)
    # cryptography reads AES-128 and AES-256 legacy PEM only: its key is read from the AES-128 copy.
    same = fixture(name.replace("rsa-legacy-aes192", "rsa-legacy-aes128"))
    theirs = serialization.load_pem_private_key(same.encode(), passphrase.encode() if passphrase else None)
    assert_same_key(load_private_key(text, passphrase), theirs)


def test_legacy_aes_192_is_read_although_cryptography_does_not() -> None:
    with pytest.raises(ValueError, match="unknown cipher"):
        serialization.load_pem_private_key(fixture("rsa-legacy-aes192.pem").encode(), PASSPHRASE.encode())


REENCRYPT = "`openssl pkcs8 -topk8 -v2 aes-256-cbc -in old.pem -out new.pem`"
REFUSED = {
    "rsa-legacy-des3.pem": f"is encrypted with DES-EDE3-CBC (3DES), which this function does not decrypt; "
    f"re-encrypt it with AES ({REENCRYPT}) or store it unencrypted (Secrets Manager already encrypts the secret "
    "with KMS)",
    "ed25519-pbes2-des3.pem": f"is encrypted with DES-EDE3-CBC (3DES), which this function does not decrypt; "
    f"re-encrypt it with AES ({REENCRYPT})",
    "ed25519-pbes1-sha1-3des.pem": "is encrypted with PBES1 (pbeWithSHAAnd3-KeyTripleDES-CBC), an old scheme",
    "ed25519-pbkdf2-3m-iterations.pem": f"is encrypted with 3000000 PBKDF2 iterations; this function runs at most "
    f"{MAX_PBKDF2_ITERATIONS:,}",
    "ec-p256.pem": "'privateKey' is an EC (P-256) key; Binance accepts Ed25519 or RSA keys",
    "ec-p256-traditional.pem": "'privateKey' is an EC key; Binance accepts Ed25519 or RSA keys",
    "ed448.pem": "'privateKey' is an Ed448 key; Binance accepts Ed25519 or RSA keys",
    "x25519.pem": "'privateKey' is an X25519 key (for key agreement, not signatures)",
    "dsa.pem": "'privateKey' is a DSA key; Binance accepts Ed25519 or RSA keys",
    "rsa-pss.pem": "'privateKey' is an RSA-PSS key (restricted to PSS signatures",
    "rsa-1024.pem": "RSA key is 1024 bits; Binance needs 2048 or more",
    "ed25519-public.pem": "'privateKey' holds a public key, not a private key",
    "openssh-ed25519.key": "'privateKey' is in OpenSSH's format",
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_keys_the_function_cannot_use_are_refused_saying_what_they_are(name: str) -> None:
    text = fixture(name)
    with pytest.raises(PrivateKeyError) as raised:
        load_private_key(text, _passphrase_for(text))
    assert REFUSED[name] in str(raised.value)
    assert_quotes_nothing(str(raised.value), text)


@pytest.mark.parametrize("name", ENCRYPTED)
def test_passphrase_missing_or_wrong(name: str) -> None:
    text = fixture(name)
    with pytest.raises(PrivateKeyError, match=r"^'privateKey' is encrypted; add 'privateKeyPassphrase'$"):
        load_private_key(text, None)
    for wrong in ("not-the-passphrase", PASSPHRASE + "!", PASSPHRASE.upper()):
        with pytest.raises(PrivateKeyError, match="could not be decrypted: 'privateKeyPassphrase' is wrong") as raised:
            load_private_key(text, wrong)
        assert_quotes_nothing(str(raised.value), text, wrong)


@pytest.mark.parametrize("name", [name for name in READABLE if name not in ENCRYPTED])
def test_a_passphrase_for_a_plain_key_is_refused(name: str) -> None:
    with pytest.raises(PrivateKeyError, match=r"^'privateKey' is not encrypted, remove 'privateKeyPassphrase'$"):
        load_private_key(fixture(name), PASSPHRASE)


# --- the PEM armor, read as leniently as OpenSSL and cryptography read it --------------------------------------------

ARMOR_VARIANTS: dict[str, Callable[[str], str]] = {
    "one line with spaces": lambda text: text.replace("\n", " "),
    "one line": lambda text: text.replace("\n", ""),
    "CRLF": lambda text: text.replace("\n", "\r\n"),
    "text around": lambda text: "Bag Attributes\n    localKeyID: 01 02\nsubject=/CN=x\n" + text + "\ntrailing words\n",
    "a certificate first": lambda text: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n" + text,
    "EC parameters first": lambda text: (
        "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n" + text
    ),
    "no base64 padding": lambda text: text.replace("=", ""),
    "tabs and trailing spaces": lambda text: "\n".join("\t" + line + "  " for line in text.splitlines()),
    "one long base64 line": lambda text: (
        text.splitlines()[0] + "\n" + "".join(text.splitlines()[1:-1]) + "\n" + text.splitlines()[-1]
    ),
}


@pytest.mark.parametrize("variant", sorted(ARMOR_VARIANTS))
@pytest.mark.parametrize("name", ["ed25519.pem", "rsa-2048-pkcs1.pem", "ed25519-scrypt.pem"])
def test_pem_layouts_cryptography_accepts_are_accepted(name: str, variant: str) -> None:
    text = ARMOR_VARIANTS[variant](fixture(name))
    passphrase = _passphrase_for(text)
    theirs = serialization.load_pem_private_key(text.encode(), passphrase.encode() if passphrase else None)
    assert_same_key(load_private_key(text, passphrase), theirs)


def test_legacy_encrypted_pem_with_crlf_line_ends() -> None:
    text = fixture("rsa-legacy-aes256.pem").replace("\n", "\r\n")
    assert_same_key(
        load_private_key(text, PASSPHRASE), serialization.load_pem_private_key(text.encode(), PASSPHRASE.encode())
    )


ED25519_BODY = "".join(fixture("ed25519.pem").splitlines()[1:-1])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-----BEGIN PRIVATE KEY-----\n" + ED25519_BODY, "has no matching '-----END' line"),
        ("-----BEGIN PRIVATE KEY\n" + ED25519_BODY + "\n-----END PRIVATE KEY-----", "does not end in '-----'"),
        (
            "-----BEGIN PRIVATE KEY-----\n" + ED25519_BODY + "\n-----END RSA PRIVATE KEY-----",
            "has no matching '-----END' line",
        ),
        ("-----BEGIN PRIVATE KEY-----\n*" + ED25519_BODY[1:] + "\n-----END PRIVATE KEY-----", "not base64"),
        ("-----BEGIN PRIVATE KEY-----\nA\n-----END PRIVATE KEY-----", "no valid base64"),
        ("-----BEGIN PRIVATE KEY-----\n\n-----END PRIVATE KEY-----", "no valid base64"),
        (
            "-----BEGIN PRIVATE KEY-----\n" + ED25519_BODY + "\nX-Note: y\nAAAA\n-----END PRIVATE KEY-----",
            "header line inside its base64",
        ),
        ("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", "holds a certificate, not a private key"),
        ("-----BEGIN SOMETHING-----\nMIIB\n-----END SOMETHING-----", "holds a PEM block of another kind"),
        ("-----BEGIN PRIVATE KEY", "does not end in '-----'"),
        ("-----BEGIN", "holds no complete PEM block"),
        ("-----BEGINPRIVATE KEY-----", "holds no complete PEM block"),
        (
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\n"
            + ED25519_BODY
            + "\n-----END ENCRYPTED PRIVATE KEY-----",
            "an ENCRYPTED PRIVATE KEY block has no headers",
        ),
    ],
)
def test_broken_armor_is_named(text: str, message: str) -> None:
    with pytest.raises(PrivateKeyError, match=re.escape(message)) as raised:
        load_private_key(text, None)
    assert_quotes_nothing(str(raised.value), text)


LEGACY = fixture("rsa-legacy-aes128.pem")
LEGACY_IV = LEGACY.split("DEK-Info: AES-128-CBC,")[1].split("\n")[0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda text: text.replace("AES-128-CBC", "DES-EDE3-CBC"), "DES-EDE3-CBC (3DES), which this function"),
        (lambda text: text.replace("AES-128-CBC", "DES-CBC"), "encrypted with DES-CBC, which"),
        (lambda text: text.replace("AES-128-CBC", "BF-CBC"), "encrypted with Blowfish (BF-CBC)"),
        (lambda text: text.replace("AES-128-CBC", "CAMELLIA-256-CBC"), "a cipher this function does not know"),
        (lambda text: text.replace("DEK-Info", "X-Info"), "has no DEK-Info header"),
        (lambda text: text.replace(LEGACY_IV, "XY" + LEGACY_IV[2:]), "IV is not hexadecimal"),
        (lambda text: text.replace(LEGACY_IV, LEGACY_IV[:16]), "IV is not 16 bytes"),
        (lambda text: text.replace(LEGACY_IV, LEGACY_IV[16:] + LEGACY_IV[:16]), "'privateKeyPassphrase' is wrong"),
        (lambda text: text.replace("\n-----END", "AAAA\n-----END"), "not a whole number of AES blocks"),
    ],
)
def test_legacy_pem_encryption_problems_are_named(change: Callable[[str], str], message: str) -> None:
    text = change(LEGACY)
    with pytest.raises(PrivateKeyError, match=re.escape(message)) as raised:
        load_private_key(text, PASSPHRASE)
    assert_quotes_nothing(str(raised.value), text)


# --- structures no tool here writes ------------------------------------------------------------------------------


def _ed25519_v2(seed: bytes, public: bytes, version: int = 1) -> str:
    private = build.octets(seed)
    der = build.pkcs8(build.ED25519, private, version=version, extra=build.tlv(0x81, b"\x00" + public))
    return build.pem("PRIVATE KEY", der)


def test_pkcs8_version_2_with_its_public_key() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes_raw()
    loaded = load_private_key(_ed25519_v2(key.private_bytes_raw(), public), None)
    assert isinstance(loaded, Ed25519Key)
    assert (loaded.seed, loaded.public_key) == (key.private_bytes_raw(), public)
    assert repr(loaded) == "Ed25519Key(<hidden>)"
    with pytest.raises(PrivateKeyError, match="malformed"):
        load_private_key(_ed25519_v2(key.private_bytes_raw(), public, version=0), None)


def test_a_pkcs8_public_key_that_is_not_the_private_keys_is_refused() -> None:
    key, other = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    text = _ed25519_v2(key.private_bytes_raw(), other.public_key().public_bytes_raw())
    with pytest.raises(SecretError, match="holds an Ed25519 public key that does not match its private key"):
        parse_secret(json.dumps({"apiKey": "k", "privateKey": text}), SECRET_ID)


def _rsa_numbers() -> list[int]:
    private = rsa_key(2048).private_numbers()
    public = private.public_numbers
    return [public.n, public.e, private.d, private.p, private.q, private.dmp1, private.dmq1, private.iqmp]


def test_rsa_key_in_pkcs8_without_the_null_parameters() -> None:
    der = build.pkcs8(build.sequence(build.oid("1.2.840.113549.1.1.1")), build.rsa_private_key(_rsa_numbers()))
    assert_same_key(load_private_key(build.pem("PRIVATE KEY", der), None), rsa_key(2048))


@pytest.mark.parametrize(
    ("der", "message"),
    [
        pytest.param(
            build.rsa_private_key(_rsa_numbers(), version=1),
            "is a multi-prime RSA key, which this function does not sign with",
            id="multi-prime",
        ),
        pytest.param(
            build.rsa_private_key([2**4097 + 1, 3, 5, 7, 11, 13, 17, 19]),
            "RSA key is 4098 bits; this function signs with keys of up to 4096 bits",
            id="too large",
        ),
        pytest.param(
            # A public exponent as long as the modulus: consistent, but each signature would cost three private
            # operations' time (found by review: 15 s a signature for a 16384-bit key of this kind).
            build.rsa_private_key([_rsa_numbers()[0], 2**65 + 1, *_rsa_numbers()[2:]]),
            "RSA key's public exponent is longer than 64 bits",
            id="huge public exponent",
        ),
        pytest.param(
            build.rsa_private_key([*_rsa_numbers()[:2], _rsa_numbers()[2] + 2, *_rsa_numbers()[3:]]),
            "holds inconsistent RSA parameters (its private exponent is not the inverse of its public exponent)",
            id="wrong d",
        ),
        pytest.param(
            build.rsa_private_key(_rsa_numbers(), version=2), "DER structure is malformed", id="unknown version"
        ),
    ],
)
def test_rsa_keys_that_cannot_be_used(der: bytes, message: str) -> None:
    text = build.pem("RSA PRIVATE KEY", der)
    with pytest.raises(PrivateKeyError, match=re.escape(message)) as raised:
        load_private_key(text, None)
    assert_quotes_nothing(str(raised.value), text)


def test_an_unknown_key_type_is_refused_without_its_identifier() -> None:
    der = build.pkcs8(build.sequence(build.oid("1.2.3.4.5.6789")), build.octets(bytes(32)))
    with pytest.raises(PrivateKeyError, match="is a key of a type this function does not know") as raised:
        load_private_key(build.pem("PRIVATE KEY", der), None)
    assert "6789" not in str(raised.value)


PBKDF2 = "1.2.840.113549.1.5.12"
SCRYPT = "1.3.6.1.4.1.11591.4.11"
AES_256_CBC = build.sequence(build.oid("2.16.840.1.101.3.4.1.42"), build.octets(bytes(16)))


def _encrypted(kdf: bytes, cipher: bytes = AES_256_CBC, scheme: str = "1.2.840.113549.1.5.13") -> str:
    algorithm = build.sequence(build.oid(scheme), build.sequence(kdf, cipher))
    return build.pem("ENCRYPTED PRIVATE KEY", build.sequence(algorithm, build.octets(bytes(48))))


def _pbkdf2(*params: bytes) -> bytes:
    return build.sequence(build.oid(PBKDF2), build.sequence(build.octets(b"salt" * 4), *params))


def _scrypt(n: int, r: int, p: int) -> bytes:
    return build.sequence(
        build.oid(SCRYPT),
        build.sequence(build.octets(b"salt" * 4), build.integer(n), build.integer(r), build.integer(p)),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            _encrypted(_scrypt(2**20, 8, 1)), "scrypt parameters needing more than this function allows", id="scrypt N"
        ),
        pytest.param(
            _encrypted(_scrypt(2**14, 8, 17)), "scrypt parameters needing more than this function allows", id="scrypt p"
        ),
        pytest.param(_encrypted(_scrypt(3, 8, 1)), "malformed (scrypt needs N a power of 2", id="scrypt N not 2^k"),
        pytest.param(
            _encrypted(_pbkdf2(build.integer(MAX_PBKDF2_ITERATIONS + 1))),
            f"{MAX_PBKDF2_ITERATIONS + 1} PBKDF2 iterations",
            id="iterations",
        ),
        pytest.param(_encrypted(_pbkdf2(build.integer(0))), "is encrypted with 0 PBKDF2 iterations", id="0 iterations"),
        pytest.param(
            _encrypted(_pbkdf2(build.integer(2048), build.integer(16))),
            "malformed (the key length does not match the cipher)",
            id="key length",
        ),
        pytest.param(
            _encrypted(_pbkdf2(build.integer(2048), build.sequence(build.oid("1.2.840.113549.2.12"), build.null()))),
            "uses a PBKDF2 hash this function does not know",
            id="SHA-512/224 PRF",
        ),
        pytest.param(
            _encrypted(
                build.sequence(build.oid(PBKDF2), build.sequence(build.sequence(build.oid("1.2.3")), build.integer(1)))
            ),
            "uses a PBKDF2 salt source this function does not know",
            id="salt source",
        ),
        pytest.param(
            _encrypted(build.sequence(build.oid("1.2.840.113549.1.5.99"), build.sequence())),
            "uses a key derivation this function does not know",
            id="unknown KDF",
        ),
        pytest.param(
            _encrypted(
                _pbkdf2(build.integer(2048)),
                build.sequence(build.oid("2.16.840.1.101.3.4.1.46"), build.octets(bytes(12))),
            ),
            "is encrypted with AES-256-GCM, which this function does not decrypt",
            id="AES-GCM",
        ),
        pytest.param(
            _encrypted(
                _pbkdf2(build.integer(2048)), build.sequence(build.oid("1.2.840.113549.3.2"), build.octets(bytes(8)))
            ),
            "is encrypted with RC2-CBC, which this function does not decrypt",
            id="RC2",
        ),
        pytest.param(
            _encrypted(
                _pbkdf2(build.integer(2048)),
                build.sequence(build.oid("2.16.840.1.101.3.4.1.42"), build.octets(bytes(8))),
            ),
            "malformed (an AES-CBC IV is 16 bytes)",
            id="short IV",
        ),
        pytest.param(
            _encrypted(_pbkdf2(build.integer(2048)), scheme="1.2.840.113549.1.5.3"),
            "is encrypted with PBES1 (pbeWithMD5AndDES-CBC)",
            id="PBES1",
        ),
        pytest.param(
            _encrypted(_pbkdf2(build.integer(2048)), scheme="1.2.840.113549.1.12.1.6"),
            "is encrypted with PBES1 (pbeWithSHAAnd40BitRC2-CBC)",
            id="PKCS#12 RC2",
        ),
        pytest.param(
            _encrypted(_pbkdf2(build.integer(2048)), scheme="1.2.3.4"),
            "is encrypted with a scheme this function does not know",
            id="unknown scheme",
        ),
    ],
)
def test_encryption_parameters_the_function_will_not_run(text: str, message: str) -> None:
    with pytest.raises(PrivateKeyError, match=re.escape(message)) as raised:
        load_private_key(text, PASSPHRASE)
    assert "re-encrypt" in str(raised.value) or "malformed" in str(raised.value)


# --- hostile input: mutated keys never raise anything but SecretError, nor quote anything -------------------------

FUZZED = [
    "ed25519.pem",
    "rsa-2048-pkcs1.pem",
    "rsa-2048-pkcs8.pem",
    "ed25519-genpkey-aes256.pem",
    "ed25519-pbkdf2-sha1-aes128.pem",
    "rsa-legacy-aes256.pem",
    "rsa-genrsa-aes128.pem",
    "ec-p256.pem",
    "ed25519-pbes1-sha1-3des.pem",
]


def _armor(name: str, der: bytes) -> str:
    """`der` in the PEM block (label and headers) of fixture `name`."""
    lines = fixture(name).splitlines()
    headers = "".join(line + "\n" for line in lines[1:] if ":" in line)
    label = lines[0].removeprefix("-----BEGIN ").removesuffix("-----")
    return build.pem(label, der, headers + ("\n" if headers else ""))


def _der(name: str) -> bytes:
    return base64.b64decode("".join(line for line in fixture(name).splitlines()[1:-1] if ":" not in line))


@st.composite
def mutated_keys(draw: st.DrawFn) -> tuple[str, str | None]:
    name = draw(st.sampled_from(FUZZED))
    der = bytearray(_der(name))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(der)))
        action = draw(st.sampled_from(["set", "flip", "truncate", "delete", "insert", "length"]))
        if action == "set" and at < len(der):
            der[at] = draw(st.integers(0, 255))
        elif action == "flip" and at < len(der):
            der[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "truncate":
            del der[at:]
        elif action == "delete":
            del der[at : at + draw(st.integers(1, 40))]
        elif action == "insert":
            der[at:at] = draw(st.binary(min_size=1, max_size=40))
        elif action == "length" and at < len(der):
            der[at] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0x81, 0x82, 0x84, 0x85, 0xFF]))
    passphrase = (
        draw(st.sampled_from([PASSPHRASE, None, "not-the-passphrase"])) if "ENCRYPTED" in fixture(name) else None
    )
    return _armor(name, bytes(der)), passphrase


def _assert_secret_error_or_credentials(text: str, passphrase: str | None) -> None:
    secret = {"apiKey": "k", "privateKey": text} | ({"privateKeyPassphrase": passphrase} if passphrase else {})
    try:
        credentials = parse_secret(json.dumps(secret), SECRET_ID)
    except SecretError as error:
        message = str(error)
        event(re.sub(r"\(.*", "", message.removeprefix(f"secret {SECRET_ID!r}: "))[:60])
        assert message.startswith(f"secret {SECRET_ID!r}: ")
        assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
        assert_quotes_nothing(message, text, passphrase)
    else:
        event(f"read: {credentials.key_type}")
        assert credentials.key_type in ("ed25519", "rsa")
        assert text not in repr(credentials)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_keys())
def test_mutated_keys_give_a_key_or_a_secret_error_and_never_quote_it(key: tuple[str, str | None]) -> None:
    _assert_secret_error_or_credentials(*key)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(FUZZED),
    st.data(),
)
def test_mutated_pem_text_gives_a_key_or_a_secret_error(name: str, data: st.DataObject) -> None:
    text = fixture(name)
    at = data.draw(st.integers(0, len(text)))
    replacement = data.draw(st.text(alphabet="ABCabc+/=-: \n\r\t0189,", max_size=8))
    cut = data.draw(st.integers(0, 8))
    mutated = text[:at] + replacement + text[at + cut :]
    if "-----BEGIN" not in mutated:
        return
    passphrase = PASSPHRASE if "ENCRYPTED" in text else None
    _assert_secret_error_or_credentials(mutated, passphrase)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["PRIVATE KEY", "RSA PRIVATE KEY", "ENCRYPTED PRIVATE KEY"]),
    st.binary(max_size=400),
    st.sampled_from([None, PASSPHRASE]),
)
def test_random_bytes_in_any_private_key_block_give_a_secret_error(
    label: str, der: bytes, passphrase: str | None
) -> None:
    text = build.pem(label, der)
    if not der:
        text = text.replace("\n\n", "\n")
    with pytest.raises(SecretError):
        parse_secret(
            json.dumps(
                {"apiKey": "k", "privateKey": text} | ({"privateKeyPassphrase": passphrase} if passphrase else {})
            ),
            SECRET_ID,
        )

"""auto_collector.aes: the published vectors, then cryptography's AES as the oracle for random keys and data."""

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from auto_collector import aes

FIPS_197_PLAINTEXT = bytes.fromhex("00112233445566778899aabbccddeeff")


@pytest.mark.parametrize(
    ("key", "ciphertext"),
    [
        pytest.param(bytes(range(16)), "69c4e0d86a7b0430d8cdb78070b4c55a", id="C.1 AES-128"),
        pytest.param(bytes(range(24)), "dda97ca4864cdfe06eaf70a0ec0d7191", id="C.2 AES-192"),
        pytest.param(bytes(range(32)), "8ea2b7ca516745bfeafc49904b496089", id="C.3 AES-256"),
    ],
)
def test_fips_197_appendix_c_inverse_cipher(key: bytes, ciphertext: str) -> None:
    # One block with a zero IV: CBC decryption is the bare inverse cipher.
    assert aes.decrypt_cbc(key, bytes(16), bytes.fromhex(ciphertext)) == FIPS_197_PLAINTEXT


SP_800_38A_PLAINTEXT = bytes.fromhex(
    "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710"
)


@pytest.mark.parametrize(
    ("key", "ciphertext"),
    [
        pytest.param(
            "2b7e151628aed2a6abf7158809cf4f3c",
            "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2"
            "73bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7",
            id="F.2.2 CBC-AES128.Decrypt",
        ),
        pytest.param(
            "8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b",
            "4f021db243bc633d7178183a9fa071e8b4d9ada9ad7dedf4e5e738763f69145a"
            "571b242012fb7ae07fa9baac3df102e008b0e27988598881d920a9e64f5615cd",
            id="F.2.4 CBC-AES192.Decrypt",
        ),
        pytest.param(
            "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
            "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d"
            "39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b",
            id="F.2.6 CBC-AES256.Decrypt",
        ),
    ],
)
def test_sp_800_38a_cbc_vectors(key: str, ciphertext: str) -> None:
    iv = bytes(range(16))
    assert aes.decrypt_cbc(bytes.fromhex(key), iv, bytes.fromhex(ciphertext)) == SP_800_38A_PLAINTEXT


keys = st.sampled_from(aes.KEY_SIZES).flatmap(lambda size: st.binary(min_size=size, max_size=size))
ivs = st.binary(min_size=16, max_size=16)


blocks = st.integers(1, 20).flatmap(lambda count: st.binary(min_size=16 * count, max_size=16 * count))


@given(keys, ivs, blocks)
def test_decryption_equals_cryptographys_for_any_key_iv_and_blocks(key: bytes, iv: bytes, ciphertext: bytes) -> None:
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    assert aes.decrypt_cbc(key, iv, ciphertext) == decryptor.update(ciphertext) + decryptor.finalize()


@given(keys, ivs, st.binary(max_size=300))
def test_what_cryptography_encrypts_and_pads_comes_back(key: bytes, iv: bytes, plaintext: bytes) -> None:
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padder.update(plaintext) + padder.finalize()) + encryptor.finalize()
    assert aes.decrypt_cbc_pkcs7(key, iv, ciphertext) == plaintext


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(bytes(15) + b"\x01" + b"x", id="not whole blocks"),
        pytest.param(bytes(16), id="zero count"),
        pytest.param(bytes(15) + b"\x11", id="count above 16"),
        pytest.param(bytes(14) + b"\x01\x02", id="inconsistent bytes"),
        pytest.param(b"a" * 16 + bytes(13) + b"\x04\x04\x04", id="too few bytes of the count"),
    ],
)
def test_invalid_padding_is_a_padding_error(data: bytes) -> None:
    with pytest.raises(aes.PaddingError):
        aes.unpad_pkcs7(data)


def test_full_padding_block_and_single_byte_padding() -> None:
    assert aes.unpad_pkcs7(b"x" * 16 + bytes([16]) * 16) == b"x" * 16
    assert aes.unpad_pkcs7(b"y" * 15 + b"\x01") == b"y" * 15


@pytest.mark.parametrize(
    ("key", "iv", "ciphertext"),
    [(bytes(15), bytes(16), bytes(16)), (bytes(16), bytes(8), bytes(16)), (bytes(16), bytes(16), bytes(17))],
    ids=["15-byte key", "8-byte IV", "17-byte ciphertext"],
)
def test_wrong_sizes_are_refused(key: bytes, iv: bytes, ciphertext: bytes) -> None:
    with pytest.raises(ValueError, match="16"):
        aes.decrypt_cbc(key, iv, ciphertext)

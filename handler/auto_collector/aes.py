"""AES decryption (FIPS-197) in CBC mode with PKCS#7 padding (SP 800-38A, RFC 5652 §6.3), in plain Python.

Only for reading a passphrase-protected private key, once per container (never on the request path), so that
the function need not ship a native crypto library for it. Decryption only: the function never encrypts.

The inverse cipher is the table-driven "equivalent inverse cipher" of FIPS-197 §5.3.5: four 256-entry tables
(InvSubBytes and InvMixColumns combined) built at import from the S-box, which is itself computed from its
definition (the multiplicative inverse in GF(2^8) followed by the affine map) rather than typed in. Table
lookups are not constant-time, as nothing in plain Python is: acceptable here, where the ciphertext is the
secret's own and nobody can ask for more decryptions to time them.
"""

from __future__ import annotations

BLOCK = 16
KEY_SIZES = (16, 24, 32)


class PaddingError(Exception):
    """The decrypted data does not end in valid PKCS#7 padding (for a key: a wrong passphrase, or damage)."""


def _rotl8(byte: int, shift: int) -> int:
    return ((byte << shift) | (byte >> (8 - shift))) & 0xFF


def _gf_mul(a: int, b: int) -> int:
    """Multiplication in GF(2^8) modulo x^8 + x^4 + x^3 + x + 1."""
    product = 0
    while b:
        if b & 1:
            product ^= a
        a = ((a << 1) ^ 0x11B) if a & 0x80 else a << 1
        b >>= 1
    return product


def _sboxes() -> tuple[list[int], list[int]]:
    """The S-box and its inverse: walk GF(2^8)* by powers of 3 (p) and of its inverse (q) together."""
    sbox = [0x63] * 256
    p = q = 1
    while True:
        p = p ^ ((p << 1) & 0xFF) ^ (0x1B if p & 0x80 else 0)  # p * 3
        q ^= q << 1
        q ^= q << 2
        q ^= q << 4
        q &= 0xFF
        q ^= 0x09 if q & 0x80 else 0  # q / 3, so q = 1/p
        sbox[p] = q ^ _rotl8(q, 1) ^ _rotl8(q, 2) ^ _rotl8(q, 3) ^ _rotl8(q, 4) ^ 0x63
        if p == 1:
            break
    inverse = [0] * 256
    for index, value in enumerate(sbox):
        inverse[value] = index
    return sbox, inverse


_SBOX, _INV_SBOX = _sboxes()
# TD0[x]: the column InvMixColumns makes of InvSubBytes(x) in row 0; TD1..TD3 are its byte rotations (rows 1-3).
_TD0 = [(_gf_mul(s, 14) << 24) | (_gf_mul(s, 9) << 16) | (_gf_mul(s, 13) << 8) | _gf_mul(s, 11) for s in _INV_SBOX]
_TD1 = [(word >> 8) | ((word & 0xFF) << 24) for word in _TD0]
_TD2 = [(word >> 16) | ((word & 0xFFFF) << 16) for word in _TD0]
_TD3 = [(word >> 24) | ((word & 0xFFFFFF) << 8) for word in _TD0]


def _sub_word(word: int) -> int:
    return (
        (_SBOX[word >> 24] << 24)
        | (_SBOX[(word >> 16) & 0xFF] << 16)
        | (_SBOX[(word >> 8) & 0xFF] << 8)
        | _SBOX[word & 0xFF]
    )


def _inv_mix_column(word: int) -> int:
    # The tables apply InvSubBytes first: undo it with SubBytes to get InvMixColumns alone.
    return (
        _TD0[_SBOX[word >> 24]]
        ^ _TD1[_SBOX[(word >> 16) & 0xFF]]
        ^ _TD2[_SBOX[(word >> 8) & 0xFF]]
        ^ _TD3[_SBOX[word & 0xFF]]
    )


def _decryption_schedule(key: bytes) -> list[tuple[int, int, int, int]]:
    """Round keys for the equivalent inverse cipher, in the order they are used (last round key first)."""
    if len(key) not in KEY_SIZES:
        raise ValueError("AES keys are 16, 24 or 32 bytes")
    nk = len(key) // 4
    rounds = nk + 6
    words = [int.from_bytes(key[4 * i : 4 * i + 4], "big") for i in range(nk)]
    rcon = 1
    for i in range(nk, 4 * (rounds + 1)):  # KeyExpansion, FIPS-197 §5.2
        word = words[i - 1]
        if i % nk == 0:
            word = _sub_word(((word << 8) & 0xFFFFFFFF) | (word >> 24)) ^ (rcon << 24)
            rcon = _gf_mul(rcon, 2)
        elif nk > 6 and i % nk == 4:
            word = _sub_word(word)
        words.append(words[i - nk] ^ word)
    schedule = []
    for round_index in range(rounds, -1, -1):
        w0, w1, w2, w3 = words[4 * round_index : 4 * round_index + 4]
        if 0 < round_index < rounds:
            w0, w1, w2, w3 = (_inv_mix_column(w) for w in (w0, w1, w2, w3))
        schedule.append((w0, w1, w2, w3))
    return schedule


def _decrypt_block(schedule: list[tuple[int, int, int, int]], block: bytes) -> tuple[int, int, int, int]:
    td0, td1, td2, td3, inv = _TD0, _TD1, _TD2, _TD3, _INV_SBOX
    k0, k1, k2, k3 = schedule[0]
    s0 = int.from_bytes(block[0:4], "big") ^ k0
    s1 = int.from_bytes(block[4:8], "big") ^ k1
    s2 = int.from_bytes(block[8:12], "big") ^ k2
    s3 = int.from_bytes(block[12:16], "big") ^ k3
    for k0, k1, k2, k3 in schedule[1:-1]:
        # InvShiftRows moves row r of column c to column c + r: row r of the result's column c comes from c - r.
        s0, s1, s2, s3 = (
            td0[s0 >> 24] ^ td1[(s3 >> 16) & 0xFF] ^ td2[(s2 >> 8) & 0xFF] ^ td3[s1 & 0xFF] ^ k0,
            td0[s1 >> 24] ^ td1[(s0 >> 16) & 0xFF] ^ td2[(s3 >> 8) & 0xFF] ^ td3[s2 & 0xFF] ^ k1,
            td0[s2 >> 24] ^ td1[(s1 >> 16) & 0xFF] ^ td2[(s0 >> 8) & 0xFF] ^ td3[s3 & 0xFF] ^ k2,
            td0[s3 >> 24] ^ td1[(s2 >> 16) & 0xFF] ^ td2[(s1 >> 8) & 0xFF] ^ td3[s0 & 0xFF] ^ k3,
        )
    k0, k1, k2, k3 = schedule[-1]  # the last round has no InvMixColumns
    return (
        ((inv[s0 >> 24] << 24) | (inv[(s3 >> 16) & 0xFF] << 16) | (inv[(s2 >> 8) & 0xFF] << 8) | inv[s1 & 0xFF]) ^ k0,
        ((inv[s1 >> 24] << 24) | (inv[(s0 >> 16) & 0xFF] << 16) | (inv[(s3 >> 8) & 0xFF] << 8) | inv[s2 & 0xFF]) ^ k1,
        ((inv[s2 >> 24] << 24) | (inv[(s1 >> 16) & 0xFF] << 16) | (inv[(s0 >> 8) & 0xFF] << 8) | inv[s3 & 0xFF]) ^ k2,
        ((inv[s3 >> 24] << 24) | (inv[(s2 >> 16) & 0xFF] << 16) | (inv[(s1 >> 8) & 0xFF] << 8) | inv[s0 & 0xFF]) ^ k3,
    )


def decrypt_cbc(key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    """AES-CBC decryption of whole blocks, padding left in place (SP 800-38A §6.2)."""
    if len(iv) != BLOCK or len(ciphertext) % BLOCK:
        raise ValueError("CBC needs a 16-byte IV and whole 16-byte blocks")
    schedule = _decryption_schedule(key)
    plaintext = bytearray()
    previous = int.from_bytes(iv, "big")
    for offset in range(0, len(ciphertext), BLOCK):
        block = ciphertext[offset : offset + BLOCK]
        w0, w1, w2, w3 = _decrypt_block(schedule, block)
        decrypted = (w0 << 96) | (w1 << 64) | (w2 << 32) | w3
        plaintext += (decrypted ^ previous).to_bytes(BLOCK, "big")
        previous = int.from_bytes(block, "big")
    return bytes(plaintext)


def unpad_pkcs7(data: bytes) -> bytes:
    """`data` without its PKCS#7 padding (1 to 16 bytes, each holding the padding's length)."""
    if not data or len(data) % BLOCK:
        raise PaddingError("not whole blocks")
    count = data[-1]
    if not 1 <= count <= BLOCK or data[-count:] != bytes([count]) * count:
        raise PaddingError("invalid padding")
    return data[:-count]


def decrypt_cbc_pkcs7(key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    """AES-CBC decryption and PKCS#7 unpadding; PaddingError when the padding is not valid."""
    return unpad_pkcs7(decrypt_cbc(key, iv, ciphertext))

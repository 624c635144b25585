"""A tiny DER writer for tests: key structures no tool writes (other numbers, parameters, versions)."""

from __future__ import annotations

import base64
import textwrap


def tlv(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + content


def sequence(*items: bytes) -> bytes:
    return tlv(0x30, b"".join(items))


def integer(value: int) -> bytes:
    assert value >= 0
    return tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def octets(content: bytes) -> bytes:
    return tlv(0x04, content)


def null() -> bytes:
    return tlv(0x05, b"")


def oid(dotted: str) -> bytes:
    first, second, *rest = (int(arc) for arc in dotted.split("."))
    content = bytearray()
    for arc in [40 * first + second, *rest]:
        chunk, value = [arc & 0x7F], arc >> 7
        while value:
            chunk.append(0x80 | (value & 0x7F))
            value >>= 7
        content += bytes(reversed(chunk))
    return tlv(0x06, bytes(content))


def pem(label: str, der: bytes, headers: str = "") -> str:
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
    return f"-----BEGIN {label}-----\n{headers}{body}\n-----END {label}-----\n"


def rsa_private_key(numbers: list[int], version: int = 0) -> bytes:
    """PKCS#1 RSAPrivateKey with exactly these numbers (n, e, d, p, q, dP, dQ, qInv)."""
    return sequence(*(integer(value) for value in (version, *numbers)))


def pkcs8(algorithm: bytes, private_key: bytes, *, version: int = 0, extra: bytes = b"") -> bytes:
    return sequence(integer(version), algorithm, octets(private_key), extra)


RSA_ENCRYPTION = sequence(oid("1.2.840.113549.1.1.1"), null())
ED25519 = sequence(oid("1.3.101.112"))

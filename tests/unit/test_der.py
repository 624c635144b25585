"""auto_collector.der: what strict DER means, and that nothing but DerError comes out of any bytes."""

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auto_collector import der
from auto_collector.der import DerError, DerReader
from tests.support import der as build


def test_a_nested_structure_reads_back() -> None:
    data = build.sequence(
        build.integer(0), build.sequence(build.oid("1.2.840.113549.1.1.1"), build.null()), build.octets(b"x" * 300)
    )
    reader = der.parse(data)
    assert reader.read_unsigned(8) == 0
    algorithm = reader.enter()
    assert algorithm.read_oid() == "1.2.840.113549.1.1.1"
    algorithm.read_null()
    algorithm.finish()
    assert reader.peek_tag() == der.OCTET_STRING
    assert reader.read(der.OCTET_STRING) == b"x" * 300
    reader.finish()
    assert reader.peek_tag() is None


@pytest.mark.parametrize(
    ("dotted", "encoded"),
    [
        ("1.3.101.112", "06032b6570"),
        ("2.16.840.1.101.3.4.1.42", "060960864801650304012a"),
        ("1.3.6.1.4.1.11591.4.11", "06092b06010401da47040b"),
        ("2.999.3", "0603883703"),
    ],
)
def test_object_identifiers(dotted: str, encoded: str) -> None:
    assert build.oid(dotted).hex() == encoded
    assert DerReader(bytes.fromhex(encoded)).read_oid() == dotted


@pytest.mark.parametrize(
    ("data", "read", "message"),
    [
        pytest.param("3080020100 0000", "sequence", "indefinite length", id="indefinite length"),
        pytest.param("30810100", "sequence", "shortest form", id="long form for a short length"),
        pytest.param("3082000100", "sequence", "shortest form", id="leading zero length octet"),
        pytest.param("3085010000000000", "sequence", "runs past", id="5 length octets"),
        pytest.param("300102", "sequence", "truncated", id="truncated child"),
        pytest.param("3005020100", "sequence", "runs past", id="length past the end"),
        pytest.param("30030201000000", "sequence", "after the last element", id="trailing data"),
        pytest.param("1f2100", "sequence", "multi-byte tag", id="multi-byte tag"),
        pytest.param("3100", "sequence", "unexpected element", id="wrong tag"),
        pytest.param("30", "sequence", "truncated", id="one byte"),
        pytest.param("0200", "integer", "empty INTEGER", id="empty integer"),
        pytest.param("02020001", "integer", "shortest form", id="padded integer"),
        pytest.param("0202ff80", "integer", "shortest form", id="padded negative integer"),
        pytest.param("020180", "integer", "negative", id="negative integer"),
        pytest.param("0203010000", "integer", "too large", id="integer beyond its bound"),
        pytest.param("0600", "oid", "impossible length", id="empty oid"),
        pytest.param("06022b80", "oid", "truncated", id="unterminated oid"),
        pytest.param("0603808001", "oid", "shortest form", id="padded oid arc"),
        pytest.param("050100", "null", "NULL with content", id="null with content"),
    ],
)
def test_what_is_not_der_is_refused_by_name(data: str, read: str, message: str) -> None:
    raw = bytes.fromhex(data.replace(" ", ""))
    with pytest.raises(DerError, match=message):
        if read == "sequence":
            inside = der.parse(raw)
            while not inside.at_end():
                inside.read_unsigned(16)
        else:
            reader = DerReader(raw)
            if read == "integer":
                reader.read_unsigned(16)
            elif read == "oid":
                reader.read_oid()
            else:
                reader.read_null()


def test_a_length_field_claiming_gigabytes_is_refused_before_anything_is_read() -> None:
    with pytest.raises(DerError, match="runs past"):
        der.parse(bytes.fromhex("3084ffffffff") + bytes(10))


def test_deep_nesting_costs_one_level_per_call() -> None:
    data = b""
    for _ in range(5_000):
        data = build.sequence(data)
    reader = der.parse(data)
    for _ in range(4_999):
        reader = reader.enter()
    reader.finish()


def _walk(reader: DerReader, budget: list[int]) -> None:
    """Read everything in every way the reader offers (without recursion), as a hostile input would be read."""
    pending = [reader]
    while pending and budget[0] > 0:
        budget[0] -= 1
        current = pending.pop()
        while not current.at_end():
            tag = current.peek_tag()
            assert tag is not None
            if tag & 0x20:
                pending.append(current.enter(tag))
            elif tag == der.INTEGER:
                current.read_unsigned(4096)
            elif tag == der.OBJECT_IDENTIFIER:
                current.read_oid()
            elif tag == der.NULL:
                current.read_null()
            else:
                current.read(tag)


@given(st.binary(max_size=300))
def test_any_bytes_give_a_reading_or_a_der_error_and_nothing_else(data: bytes) -> None:
    with contextlib.suppress(DerError):
        _walk(DerReader(data), [200])

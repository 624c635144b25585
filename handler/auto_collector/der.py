"""A strict reader of DER (ITU-T X.690), enough for private keys: one element at a time, no recursion.

Strict means: definite lengths only, in their shortest form; every length checked against what is left of its
enclosing element before anything is read; one-byte tags only; INTEGERs and OBJECT IDENTIFIERs in their minimal
encoding. The caller descends one level at a time (`enter`), so a hostile input cannot nest its way into deep
recursion, and nothing is ever copied but the contents asked for.

`DerError` says what was wrong with the structure, never what the data holds: the data is key material.
"""

from __future__ import annotations

INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
NULL = 0x05
OBJECT_IDENTIFIER = 0x06
SEQUENCE = 0x30
#: Context-specific tags of PKCS#8 (RFC 5958): [0] IMPLICIT attributes (constructed), [1] IMPLICIT publicKey.
CONTEXT_0_CONSTRUCTED = 0xA0
CONTEXT_1_PRIMITIVE = 0x81

#: Longer lengths than 4 bytes can hold (4 GiB) cannot occur in a secret of at most 64 KB.
_MAX_LENGTH_OCTETS = 4
#: The longest OBJECT IDENTIFIER content accepted; the ones keys use have at most 11 bytes.
_MAX_OID_OCTETS = 32


class DerError(Exception):
    """The bytes are not the DER structure expected; the message names the structure, never its content."""


class DerReader:
    """A cursor over the elements inside one DER element (or over a whole buffer)."""

    __slots__ = ("_data", "_end", "_pos")

    def __init__(self, data: bytes, start: int = 0, end: int | None = None) -> None:
        self._data = data
        self._pos = start
        self._end = len(data) if end is None else end

    def at_end(self) -> bool:
        return self._pos >= self._end

    def peek_tag(self) -> int | None:
        """The tag of the next element, or None when there is none."""
        return None if self.at_end() else self._data[self._pos]

    def finish(self) -> None:
        """Nothing may follow the elements read."""
        if not self.at_end():
            raise DerError("unexpected data after the last element")

    def _next(self, tag: int) -> tuple[int, int]:
        """Start and end of the next element's content, which must carry `tag`; the cursor moves past it."""
        data, pos, end = self._data, self._pos, self._end
        if end - pos < 2:
            raise DerError("truncated element")
        found = data[pos]
        if found & 0x1F == 0x1F:
            raise DerError("multi-byte tag")
        if found != tag:
            raise DerError(f"unexpected element (expected tag 0x{tag:02x})")
        first = data[pos + 1]
        pos += 2
        if first < 0x80:
            length = first
        elif first == 0x80:
            raise DerError("indefinite length (not DER)")
        else:
            octets = first & 0x7F
            if octets > _MAX_LENGTH_OCTETS or end - pos < octets:
                raise DerError("length field runs past the end")
            length = int.from_bytes(data[pos : pos + octets], "big")
            if data[pos] == 0 or length < 0x80:
                raise DerError("length not in its shortest form (not DER)")
            pos += octets
        if length > end - pos:
            raise DerError("element runs past the end of its container")
        self._pos = pos + length
        return pos, pos + length

    def read(self, tag: int) -> bytes:
        """The content of the next element, which must carry `tag`."""
        start, end = self._next(tag)
        return self._data[start:end]

    def enter(self, tag: int = SEQUENCE) -> DerReader:
        """A reader over the elements inside the next element (a SEQUENCE unless told)."""
        start, end = self._next(tag)
        return DerReader(self._data, start, end)

    def read_unsigned(self, max_bits: int) -> int:
        """A non-negative INTEGER of at most `max_bits` bits."""
        content = self.read(INTEGER)
        if not content:
            raise DerError("empty INTEGER")
        if len(content) > 1 and (
            (content[0] == 0x00 and content[1] < 0x80) or (content[0] == 0xFF and content[1] >= 0x80)
        ):
            raise DerError("INTEGER not in its shortest form (not DER)")
        if content[0] & 0x80:
            raise DerError("negative INTEGER where a non-negative one belongs")
        # The length bounds the work before any conversion: no huge number is ever built.
        if len(content) > max_bits // 8 + 1:
            raise DerError("INTEGER too large")
        value = int.from_bytes(content, "big")
        if value.bit_length() > max_bits:
            raise DerError("INTEGER too large")
        return value

    def read_oid(self) -> str:
        """An OBJECT IDENTIFIER in dotted form."""
        content = self.read(OBJECT_IDENTIFIER)
        if not content or len(content) > _MAX_OID_OCTETS:
            raise DerError("OBJECT IDENTIFIER of an impossible length")
        if content[-1] & 0x80:
            raise DerError("truncated OBJECT IDENTIFIER")
        arcs: list[int] = []
        value = 0
        starting = True
        for octet in content:
            if starting and octet == 0x80:
                raise DerError("OBJECT IDENTIFIER not in its shortest form (not DER)")
            value = (value << 7) | (octet & 0x7F)
            starting = not octet & 0x80
            if starting:
                arcs.append(value)
                value = 0
        first = min(arcs[0] // 40, 2)
        return ".".join(map(str, [first, arcs[0] - 40 * first, *arcs[1:]]))

    def read_null(self) -> None:
        if self.read(NULL):
            raise DerError("NULL with content")


def parse(data: bytes, tag: int = SEQUENCE) -> DerReader:
    """A reader inside the one element that `data` must be exactly (nothing before or after it)."""
    outer = DerReader(data)
    inner = outer.enter(tag)
    outer.finish()
    return inner

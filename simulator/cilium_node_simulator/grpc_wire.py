"""gRPC-over-HTTP/2 wire helpers: protobuf varints, length-prefixed messages, status codes.

Small and dependency-free so the simulator can pre-serialize messages and splice bytes without
going through protobuf objects on the hot path.
"""

from __future__ import annotations

import struct
from enum import IntEnum

_BE32 = struct.Struct(">I")
MAX_RECEIVE_MESSAGE = 4 * 1024 * 1024  # grpc-go's default server receive limit


class Status(IntEnum):
    """gRPC status codes (the subset the simulator uses is the full list anyway)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


def varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative integer."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_VARINTS = [varint(i) for i in range(1 << 14)]


def fast_varint(value: int) -> bytes:
    """:func:`varint` with a table for small values (message lengths)."""
    return _VARINTS[value] if value < 16384 else varint(value)


def tag(field: int, wire_type: int) -> bytes:
    """Encoded key of a protobuf field."""
    return varint((field << 3) | wire_type)


def len_field(field: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    return tag(field, 2) + fast_varint(len(payload)) + payload


def timestamp(time_ns: int) -> bytes:
    """Serialized ``google.protobuf.Timestamp`` for a Unix time in nanoseconds."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    out = b""
    if seconds:
        out += b"\x08" + varint(seconds)
    if nanos:
        out += b"\x10" + varint(nanos)
    return out


def frame(message: bytes, compressed: bool = False) -> bytes:
    """gRPC length-prefixed message: flag byte, 4-byte big-endian length, payload."""
    return (b"\x01" if compressed else b"\x00") + _BE32.pack(len(message)) + message


def frame_header(length: int) -> bytes:
    """Just the 5-byte prefix of an uncompressed message of ``length`` bytes."""
    return b"\x00" + _BE32.pack(length)


class MessageTooLarge(ValueError):
    """A request message exceeds the receive limit."""


class MessageReader:
    """Reassembles length-prefixed gRPC messages from DATA payloads split anywhere."""

    def __init__(self, limit: int = MAX_RECEIVE_MESSAGE) -> None:
        self._buf = bytearray()
        self._limit = limit

    def feed(self, data: bytes) -> list[tuple[bool, bytes]]:
        """Add bytes; return the complete messages as (compressed, payload)."""
        self._buf += data
        out: list[tuple[bool, bytes]] = []
        while len(self._buf) >= 5:
            length = _BE32.unpack_from(self._buf, 1)[0]
            if length > self._limit:
                raise MessageTooLarge(f"grpc: received message larger than max ({length} vs. {self._limit})")
            if len(self._buf) < 5 + length:
                break
            out.append((self._buf[0] == 1, bytes(self._buf[5:5 + length])))
            del self._buf[:5 + length]
        return out

    @property
    def pending(self) -> int:
        """Bytes of an incomplete message still buffered."""
        return len(self._buf)


def encode_grpc_message(text: str) -> str:
    """Percent-encode a ``grpc-message`` value as the gRPC HTTP/2 spec requires."""
    out = []
    for byte in text.encode("utf-8"):
        if 0x20 <= byte <= 0x7E and byte != 0x25:
            out.append(chr(byte))
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def decode_grpc_message(text: str) -> str:
    """Inverse of :func:`encode_grpc_message` (for tests and the raw bench reader)."""
    raw = bytearray()
    i = 0
    while i < len(text):
        if text[i] == "%" and _is_hex(text[i + 1:i + 3]):
            raw.append(int(text[i + 1:i + 3], 16))
            i += 3
        else:
            raw += text[i].encode("utf-8")
            i += 1
    return raw.decode("utf-8", "replace")


def _is_hex(pair: str) -> bool:
    return len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair)


def iter_messages(buf: bytes | bytearray | memoryview) -> tuple[list[bytes], int]:
    """Split complete length-prefixed messages off ``buf``; return them and the bytes consumed."""
    out = []
    pos = 0
    n = len(buf)
    unpack = _BE32.unpack_from
    while n - pos >= 5:
        length = unpack(buf, pos + 1)[0]
        end = pos + 5 + length
        if end > n:
            break
        out.append(bytes(buf[pos + 5:end]))
        pos = end
    return out, pos

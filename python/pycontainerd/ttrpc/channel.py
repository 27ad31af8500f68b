"""ttrpc's framing: a 10-byte header, then one protobuf message.

The header is the payload's length (u32, big-endian), the stream id (u32, big-endian), the
message type (u8: 1 request, 2 response) and flags (u8, unused here). A client numbers its
calls with odd stream ids. A payload longer than :data:`MESSAGE_LENGTH_MAX` is read past and
refused, as ttrpc does, so the connection stays usable.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from pycontainerd import errdefs
from pycontainerd.errdefs import Code

__all__ = [
    "HEADER_LENGTH",
    "MESSAGE_LENGTH_MAX",
    "Closed",
    "Frame",
    "MessageTooLarge",
    "MessageType",
    "encode_frame",
    "read_frame",
    "socket_path",
]

HEADER_LENGTH: Final = 10
#: The largest payload either side accepts (ttrpc's 4 MiB).
MESSAGE_LENGTH_MAX: Final = 4 << 20

_HEADER = struct.Struct(">IIBB")


class MessageType(IntEnum):
    """The type byte of a frame."""

    REQUEST = 1
    RESPONSE = 2


class Closed(errdefs.Unavailable):
    """The connection is gone: ttrpc's ``ErrClosed``."""

    def __init__(self, message: str = "ttrpc: closed") -> None:
        super().__init__(message)


class MessageTooLarge(errdefs.ContainerdError):
    """A frame's payload was over :data:`MESSAGE_LENGTH_MAX`; it was skipped."""

    code = Code.RESOURCE_EXHAUSTED

    def __init__(self, stream_id: int, length: int) -> None:
        super().__init__(
            f"message length {length} exceed maximum message size of {MESSAGE_LENGTH_MAX}"
        )
        self.stream_id = stream_id


@dataclass(frozen=True)
class Frame:
    """One message read from a connection."""

    stream_id: int
    type: int
    flags: int
    payload: bytes


def encode_frame(stream_id: int, type_: MessageType, payload: bytes, flags: int = 0) -> bytes:
    """The bytes of one frame; a payload over the limit is refused before anything is sent."""
    if len(payload) > MESSAGE_LENGTH_MAX:
        raise errdefs.InvalidArgument(
            f"ttrpc message of {len(payload)} bytes: over the limit of {MESSAGE_LENGTH_MAX}"
        )
    return _HEADER.pack(len(payload), stream_id, type_, flags) + payload


async def read_frame(reader: asyncio.StreamReader) -> Frame:
    """The next frame; :class:`Closed` at the end of the stream (also within a frame)."""
    try:
        header = await reader.readexactly(HEADER_LENGTH)
        length, stream_id, type_, flags = _HEADER.unpack(header)
        if length > MESSAGE_LENGTH_MAX:
            remaining = length
            while remaining:
                chunk = await reader.read(min(remaining, 1 << 16))
                if not chunk:
                    raise asyncio.IncompleteReadError(b"", remaining)
                remaining -= len(chunk)
            raise MessageTooLarge(stream_id, length)
        payload = await reader.readexactly(length) if length else b""
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        raise Closed() from exc
    return Frame(stream_id, type_, flags, payload)


def socket_path(address: str) -> str:
    """The filesystem path (or ``\\0``-prefixed abstract name) of a ttrpc address.

    Shims print ``unix:///run/.../s/<hash>``; an abstract socket is ``unix://@name`` or a
    leading ``\\0``.
    """
    path = address.removeprefix("unix://")
    if path.startswith("@"):
        path = "\0" + path[1:]
    if not path:
        raise errdefs.InvalidArgument(f"ttrpc address {address!r}: empty")
    return path

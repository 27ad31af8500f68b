"""Helpers over any content store, as containerd's ``content/helpers.go``."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from pycontainerd import errdefs
from pycontainerd.descriptor import Descriptor

if TYPE_CHECKING:
    from pycontainerd.content import Ingester, Provider, Writer

__all__ = ["BUFFER_SIZE", "Readable", "copy", "open_writer", "read_blob", "write_blob"]

#: The buffer copies use, as containerd's (1 MiB).
BUFFER_SIZE = 1 << 20


class Readable(Protocol):
    """A binary stream: a file, a socket's file, ``sys.stdin.buffer``."""

    def read(self, size: int = -1, /) -> bytes: ...


def read_blob(provider: Provider, desc: Descriptor | str) -> bytes:
    """The whole blob."""
    with provider.reader_at(desc) as ra:
        size = ra.size
        data = ra.read_at(0, size)
    if len(data) != size:
        raise errdefs.Unknown(
            f"read blob {_digest_of(desc)}: unexpected end of data ({len(data)} of {size} bytes)"
        )
    return data


def open_writer(
    ingester: Ingester, ref: str, desc: Descriptor | None = None, *, timeout: float = 60.0
) -> Writer:
    """A writer for ``ref``, waiting (with backoff) while another writer holds it."""
    deadline = time.monotonic() + timeout
    retry = 16
    while True:
        try:
            return ingester.writer(ref, desc=desc)
        except errdefs.Unavailable:
            if time.monotonic() >= deadline:
                raise
        time.sleep(random.randrange(retry) / 1000)
        retry = min(retry * 2, 2048)


def write_blob(
    ingester: Ingester,
    ref: str,
    reader: Readable,
    desc: Descriptor | None = None,
    *,
    labels: Mapping[str, str] | None = None,
) -> None:
    """Ingest ``reader`` under ``ref``, checked against ``desc``; a blob already there is fine."""
    try:
        writer = open_writer(ingester, ref, desc)
    except errdefs.AlreadyExists:
        return
    with writer:
        size, expected = (desc.size, desc.digest) if desc is not None else (0, "")
        copy(writer, reader, size, expected, labels=labels)


def copy(
    writer: Writer,
    reader: Readable,
    size: int = 0,
    expected: str = "",
    *,
    labels: Mapping[str, str] | None = None,
) -> None:
    """Write ``reader`` to ``writer`` from the writer's offset on, then commit.

    A resumed ingest skips the bytes it already holds: by seeking when ``reader`` can, by
    reading past them otherwise. ``AlreadyExists`` at commit is success.
    """
    status = writer.status()
    offset = status.offset
    if offset:
        _skip(reader, offset)
    copied = 0
    while True:
        chunk = reader.read(BUFFER_SIZE)
        if not chunk:
            break
        writer.write(chunk)
        copied += len(chunk)
    if size and offset + copied < size:
        raise errdefs.Unknown(
            f"copy to ref {status.ref!r}: unexpected end of data "
            f"({offset + copied} of {size} bytes)"
        )
    with contextlib.suppress(errdefs.AlreadyExists):
        writer.commit(size, expected, labels=labels)


def _skip(reader: Readable, offset: int) -> None:
    seek = getattr(reader, "seek", None)
    seekable = getattr(reader, "seekable", None)
    if seek is not None and (seekable is None or seekable()):
        seek(offset)
        return
    left = offset
    while left:
        chunk = reader.read(min(left, BUFFER_SIZE))
        if not chunk:
            raise errdefs.FailedPrecondition(
                f"resume at offset {offset}: the data ends after {offset - left} bytes"
            )
        left -= len(chunk)


def _digest_of(desc: Descriptor | str) -> str:
    return desc if isinstance(desc, str) else desc.digest

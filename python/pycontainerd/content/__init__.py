"""The content store: blobs addressed by digest, written through resumable ingests.

containerd's ``content`` package as Protocols. A :class:`Store` is a :class:`Manager` (info,
update, walk, delete), a :class:`Provider` (``reader_at``), an :class:`IngestManager` (status,
list_statuses, abort) and an :class:`Ingester` (``writer``). Three implementations share it:

- :class:`pycontainerd.content.local.LocalStore`: the bytes on disk, not namespaced, no labels;
- :class:`pycontainerd.metadata.content.ContentStore`: namespaces, labels and sharing over a
  local store, one namespace at a time through ``namespaced(ns)``;
- :class:`pycontainerd.client.content.ProxyContentStore`: the same Protocol over the Content
  gRPC service (``Client.content``).

A writer is keyed by a *ref*, a caller-chosen name of one ingest (``layer-sha256:...``). Only
one writer may hold a ref at a time; closing a writer without committing keeps the ingest, and
a later ``writer(ref)`` resumes it at its offset. ``commit`` checks size and digest: a blob
becomes visible only when its bytes match.

Times are nanoseconds since the epoch (UTC).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol

from pycontainerd.content.helpers import copy, open_writer, read_blob, write_blob
from pycontainerd.descriptor import Descriptor

__all__ = [
    "Descriptor",
    "Info",
    "IngestManager",
    "Ingester",
    "Manager",
    "Provider",
    "ReaderAt",
    "Status",
    "Store",
    "WalkFunc",
    "Writer",
    "copy",
    "open_writer",
    "read_blob",
    "write_blob",
]


@dataclass(frozen=True)
class Info:
    """What the store knows of one blob (containerd's ``content.Info``)."""

    digest: str
    size: int = 0
    created_at: int = 0
    updated_at: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Status:
    """The state of one ingest (containerd's ``content.Status``)."""

    ref: str
    offset: int = 0
    total: int = 0
    expected: str = ""
    started_at: int = 0
    updated_at: int = 0


WalkFunc = Callable[[Info], None]


class ReaderAt(Protocol):
    """Random access to one blob."""

    @property
    def size(self) -> int:
        """The blob's size in bytes."""
        ...

    def read_at(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes from ``offset``; fewer only at the end of the blob."""
        ...

    def close(self) -> None:
        """Release the reader."""
        ...

    def __enter__(self) -> ReaderAt: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class Writer(Protocol):
    """One ingest in progress (containerd's ``content.Writer``).

    ``close`` without ``commit`` keeps the ingest for a later writer of the same ref;
    ``commit`` always closes the writer, even when it fails.
    """

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append ``data``; returns how many bytes were written (all of them)."""
        ...

    def digest(self) -> str:
        """The digest of the bytes written so far."""
        ...

    def status(self) -> Status:
        """The ingest's ref, offset, expected digest and times."""
        ...

    def commit(
        self, size: int = 0, expected: str = "", *, labels: Mapping[str, str] | None = None
    ) -> None:
        """Verify ``size`` and ``expected`` (when not zero/empty) and make the blob visible.

        :class:`~pycontainerd.errdefs.FailedPrecondition` when they do not match,
        :class:`~pycontainerd.errdefs.AlreadyExists` when the blob is already there.
        """
        ...

    def truncate(self, size: int) -> None:
        """Cut the ingest back to ``size`` bytes (0 restarts it)."""
        ...

    def close(self) -> None:
        """Release the writer; the ingest stays for a later writer unless committed."""
        ...

    def __enter__(self) -> Writer: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class Provider(Protocol):
    """Reads blobs: containerd's ``content.Provider``."""

    def reader_at(self, desc: Descriptor | str) -> ReaderAt:
        """Open a blob by its descriptor (only the digest is needed) or its digest."""
        ...


class Ingester(Protocol):
    """Writes new blobs: containerd's ``content.Ingester``."""

    def writer(self, ref: str, *, desc: Descriptor | None = None) -> Writer:
        """Begin or resume the ingest ``ref``; ``desc`` gives the expected size and digest.

        :class:`~pycontainerd.errdefs.Unavailable` when another writer holds ``ref``,
        :class:`~pycontainerd.errdefs.AlreadyExists` when ``desc.digest`` is already stored.
        """
        ...


class Manager(Protocol):
    """The blobs and their labels: containerd's ``content.Manager``."""

    def info(self, dgst: str) -> Info:
        """The blob ``dgst``'s size, times and labels; NotFound if absent."""
        ...

    def update(self, info: Info, *fieldpaths: str) -> Info:
        """Replace the labels, or only the ``labels`` / ``labels.KEY`` paths given."""
        ...

    def walk(self, fn: WalkFunc, *filters: str) -> None:
        """Call ``fn`` for every blob matching any of ``filters`` (all without filters)."""
        ...

    def delete(self, dgst: str) -> None:
        """Remove the blob ``dgst``; NotFound if absent."""
        ...


class IngestManager(Protocol):
    """The ingests in progress: containerd's ``content.IngestManager``."""

    def status(self, ref: str) -> Status:
        """The progress of the ingest ``ref``; NotFound if there is none."""
        ...

    def list_statuses(self, *filters: str) -> list[Status]:
        """Active ingests; filters on ``ref`` (``ref~=^layer-``)."""
        ...

    def abort(self, ref: str) -> None:
        """Cancel the ingest ``ref`` and remove what it wrote."""
        ...


class Store(Manager, Provider, IngestManager, Ingester, Protocol):
    """A complete content store."""

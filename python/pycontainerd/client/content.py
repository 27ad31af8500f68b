"""``Client.content``: the daemon's content store as a :class:`pycontainerd.content.Store`.

containerd's ``content/proxy``: every method is a call of the Content service in the client's
namespace. A writer is one ``Write`` stream, a request and its answer at a time; a reader
streams ``Read`` from where the last read ended, so reading a blob front to back is one call.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeVar

import grpc
from google.protobuf import field_mask_pb2, timestamp_pb2

from pycontainerd import errdefs
from pycontainerd.api.containerd.services.content.v1 import content_pb2, content_pb2_grpc
from pycontainerd.content import Info, Status, Store, WalkFunc
from pycontainerd.descriptor import Descriptor
from pycontainerd.namespaces import NAMESPACE_HEADER

if TYPE_CHECKING:
    from pycontainerd.client.connection import Connection

__all__ = ["LEASE_HEADER", "ProxyContentStore", "RemoteReaderAt", "RemoteWriter"]

#: gRPC metadata key naming the lease of a call.
LEASE_HEADER: Final = "containerd-lease"
#: The most bytes one Write request carries.
WRITE_CHUNK: Final = 1 << 20

Resp = TypeVar("Resp")


def _ns(ts: timestamp_pb2.Timestamp) -> int:
    return ts.ToNanoseconds()


def _timestamp(ns: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(ns)
    return ts


def _info(info: content_pb2.Info) -> Info:
    return Info(
        digest=info.digest,
        size=info.size,
        created_at=_ns(info.created_at),
        updated_at=_ns(info.updated_at),
        labels=dict(info.labels),
    )


def _status(status: content_pb2.Status) -> Status:
    return Status(
        ref=status.ref,
        offset=status.offset,
        total=status.total,
        expected=status.expected,
        started_at=_ns(status.started_at),
        updated_at=_ns(status.updated_at),
    )


class ProxyContentStore:
    """The Content service of one namespace (and optionally one lease)."""

    def __init__(
        self,
        conn: Connection,
        namespace: str,
        *,
        timeout: float | None = None,
        lease: str | None = None,
    ) -> None:
        self._conn = conn
        self._stub = content_pb2_grpc.ContentStub(conn.channel)
        self.namespace = namespace
        self.lease = lease
        self._timeout = timeout
        md = [(NAMESPACE_HEADER, namespace)]
        if lease:
            md.append((LEASE_HEADER, lease))
        self._metadata = tuple(md)

    def _call(self, method: Callable[..., Resp], request: Any) -> Resp:
        try:
            return method(request, metadata=self._metadata, timeout=self._timeout)
        except grpc.RpcError as exc:
            raise self._conn.error(exc) from None

    # --- Manager -------------------------------------------------------------------------

    def info(self, dgst: str) -> Info:
        """The blob ``dgst``'s size, times and labels; NotFound if absent."""
        resp = self._call(self._stub.Info, content_pb2.InfoRequest(digest=dgst))
        return _info(resp.info)

    def update(self, info: Info, *fieldpaths: str) -> Info:
        """Change a blob's labels: the ``labels.K`` or ``labels`` paths given."""
        req = content_pb2.UpdateRequest(
            info=content_pb2.Info(
                digest=info.digest,
                size=info.size,
                created_at=_timestamp(info.created_at),
                updated_at=_timestamp(info.updated_at),
                labels=dict(info.labels),
            ),
            update_mask=field_mask_pb2.FieldMask(paths=list(fieldpaths)),
        )
        return _info(self._call(self._stub.Update, req).info)

    def walk(self, fn: WalkFunc, *filters: str) -> None:
        """Call ``fn`` with the info of each blob matching any of ``filters``."""
        req = content_pb2.ListContentRequest(filters=list(filters))
        stream = self._stub.List(req, metadata=self._metadata, timeout=self._timeout)
        try:
            for resp in stream:
                for info in resp.info:
                    fn(_info(info))
        except grpc.RpcError as exc:
            raise self._conn.error(exc) from None
        finally:
            stream.cancel()

    def delete(self, dgst: str) -> None:
        """Remove the blob ``dgst`` from the namespace; NotFound if it has none."""
        self._call(self._stub.Delete, content_pb2.DeleteContentRequest(digest=dgst))

    # --- Provider ------------------------------------------------------------------------

    def reader_at(self, desc: Descriptor | str) -> RemoteReaderAt:
        """A reader of the blob ``desc`` (a descriptor or a digest); close it after."""
        dgst = desc if isinstance(desc, str) else desc.digest
        info = self.info(dgst)
        return RemoteReaderAt(self._conn, self._stub, self._metadata, dgst, info.size)

    # --- IngestManager -------------------------------------------------------------------

    def status(self, ref: str) -> Status:
        """The progress of the ingest ``ref``; NotFound if none."""
        return _status(self._call(self._stub.Status, content_pb2.StatusRequest(ref=ref)).status)

    def list_statuses(self, *filters: str) -> list[Status]:
        """The ingests in progress matching any of ``filters`` (``ref~=^pull-``)."""
        req = content_pb2.ListStatusesRequest(filters=list(filters))
        return [_status(s) for s in self._call(self._stub.ListStatuses, req).statuses]

    def abort(self, ref: str) -> None:
        """Cancel the ingest ``ref`` and discard what it wrote; NotFound if none."""
        self._call(self._stub.Abort, content_pb2.AbortRequest(ref=ref))

    # --- Ingester ------------------------------------------------------------------------

    def writer(self, ref: str, *, desc: Descriptor | None = None) -> RemoteWriter:
        """A writer for the ingest ``ref`` (resumed if it exists); ``desc`` is what it
        must become. Unavailable while another writer holds ``ref``."""
        total, expected = (desc.size, desc.digest) if desc is not None else (0, "")
        return RemoteWriter(self._conn, self._stub, self._metadata, ref, total, expected)


class RemoteReaderAt:
    """A blob read through ``Read`` streams; sequential reads continue one stream."""

    def __init__(
        self,
        conn: Connection,
        stub: content_pb2_grpc.ContentStub,
        metadata: tuple[tuple[str, str], ...],
        dgst: str,
        size: int,
    ) -> None:
        self._conn = conn
        self._stub = stub
        self._metadata = metadata
        self.digest = dgst
        self._size = size
        self._stream: Any = None
        self._responses: Iterator[content_pb2.ReadContentResponse] | None = None
        self._pos = 0  # the offset of the next byte the stream gives
        self._buf = memoryview(b"")

    @property
    def size(self) -> int:
        """The blob's size in bytes."""
        return self._size

    def _open(self, offset: int) -> None:
        self._stop()
        req = content_pb2.ReadContentRequest(digest=self.digest, offset=offset)
        self._stream = self._stub.Read(req, metadata=self._metadata)
        self._responses = iter(self._stream)
        self._pos = offset

    def _stop(self) -> None:
        if self._stream is not None:
            self._stream.cancel()
        self._stream = None
        self._responses = None
        self._buf = memoryview(b"")

    def read_at(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes from ``offset`` (fewer at the end of the blob)."""
        if offset < 0 or size < 0:
            raise errdefs.InvalidArgument(f"read at {offset}: negative offset or size")
        size = max(0, min(size, self._size - offset))
        if size == 0:
            return b""
        if self._responses is None or offset != self._pos:
            self._open(offset)
        assert self._responses is not None
        parts: list[bytes | memoryview] = []
        need = size
        try:
            while need:
                if not self._buf:
                    resp = next(self._responses, None)
                    if resp is None:
                        break
                    self._buf = memoryview(resp.data)
                take = self._buf[:need]
                parts.append(take)
                self._buf = self._buf[len(take) :]
                need -= len(take)
        except grpc.RpcError as exc:
            self._stop()
            raise self._conn.error(exc) from None
        self._pos = offset + size - need
        return (
            parts[0].tobytes()
            if len(parts) == 1 and isinstance(parts[0], memoryview)
            else (b"".join(parts))
        )

    def close(self) -> None:
        """End the read stream."""
        self._stop()

    def __enter__(self) -> RemoteReaderAt:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class RemoteWriter:
    """One ``Write`` stream: each request waits for its answer."""

    def __init__(
        self,
        conn: Connection,
        stub: content_pb2_grpc.ContentStub,
        metadata: tuple[tuple[str, str], ...],
        ref: str,
        total: int,
        expected: str,
    ) -> None:
        self._conn = conn
        self.ref = ref
        self._requests: queue.SimpleQueue[content_pb2.WriteContentRequest | None] = (
            queue.SimpleQueue()
        )
        self._call: Any = stub.Write(iter(self._requests.get, None), metadata=metadata)
        self._responses: Iterator[content_pb2.WriteContentResponse] | None = iter(self._call)
        self._digest = ""
        resp = self._send(
            content_pb2.WriteContentRequest(
                action=content_pb2.STAT, ref=ref, total=total, expected=expected
            )
        )
        self._offset = resp.offset

    def _send(self, req: content_pb2.WriteContentRequest) -> content_pb2.WriteContentResponse:
        if self._responses is None:
            raise errdefs.FailedPrecondition(f"write to ref {self.ref}: the writer is closed")
        self._requests.put(req)
        try:
            resp = next(self._responses)
        except StopIteration:
            self._end()
            raise errdefs.Unknown(
                f"write to ref {self.ref}: the daemon ended the stream without an answer"
            ) from None
        except grpc.RpcError as exc:
            self._end()
            raise self._conn.error(exc) from None
        if resp.digest:
            self._digest = resp.digest
        return resp

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append ``data``; the number of bytes written."""
        view = memoryview(data).cast("B")
        whole = data if isinstance(data, bytes) and len(data) <= WRITE_CHUNK else None
        written = 0
        for start in range(0, len(view), WRITE_CHUNK):
            chunk = view[start : start + WRITE_CHUNK]
            offset = self._offset
            resp = self._send(
                content_pb2.WriteContentRequest(
                    action=content_pb2.WRITE,
                    offset=offset,
                    data=whole if whole is not None else bytes(chunk),
                )
            )
            n = resp.offset - offset
            self._offset = resp.offset
            written += max(n, 0)
            if n < len(chunk):
                raise errdefs.Unknown(
                    f"write to ref {self.ref}: short write ({n} of {len(chunk)} bytes)"
                )
        return written

    def digest(self) -> str:
        """The digest of what was written so far."""
        return self._digest

    def status(self) -> Status:
        """The ingest's progress, as the daemon has it."""
        resp = self._send(content_pb2.WriteContentRequest(action=content_pb2.STAT))
        return Status(
            ref=self.ref,
            offset=resp.offset,
            total=resp.total,
            started_at=_ns(resp.started_at),
            updated_at=_ns(resp.updated_at),
        )

    def commit(
        self, size: int = 0, expected: str = "", *, labels: Mapping[str, str] | None = None
    ) -> None:
        """Finish the ingest: the blob must be ``size`` bytes (if not 0) and hash to
        ``expected`` (if given); it becomes the blob, with ``labels``."""
        try:
            resp = self._send(
                content_pb2.WriteContentRequest(
                    action=content_pb2.COMMIT,
                    total=size,
                    offset=self._offset,
                    expected=expected,
                    labels=dict(labels or {}),
                )
            )
        finally:
            self.close()
        if size and resp.offset != size:
            raise errdefs.FailedPrecondition(
                f"commit ref {self.ref}: unexpected size {resp.offset}, expected {size}"
            )
        if expected and resp.digest != expected:
            raise errdefs.FailedPrecondition(
                f"commit ref {self.ref}: unexpected digest {resp.digest}, expected {expected}"
            )
        self._offset = resp.offset

    def truncate(self, size: int) -> None:
        """As containerd's proxy: the daemon truncates on the next write, which must be at 0."""
        self._offset = size

    def _end(self) -> None:
        """Half-close the stream (ending the request thread) and forget the responses."""
        if self._responses is not None:
            self._requests.put(None)
            self._responses = None

    def close(self) -> None:
        """End the stream and wait for the daemon to finish it, so the ref is free again."""
        responses = self._responses
        if responses is None:
            return
        self._end()
        try:
            for _ in responses:
                pass
        except grpc.RpcError:
            pass

    def __enter__(self) -> RemoteWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


if TYPE_CHECKING:

    def _is_a_store(
        store: ProxyContentStore,
    ) -> Store:  # mypy checks ProxyContentStore against the Protocol
        return store

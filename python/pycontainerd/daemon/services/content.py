"""``containerd.services.content.v1.Content``: blobs of the caller's namespace.

Two plugins, as containerd's: ``io.containerd.service.v1 content-service`` is the namespaced
store (the metadata content store over the ``io.containerd.content.v1`` local store), for this
service and any other part of the daemon; ``io.containerd.grpc.v1 content`` serves it.

The store's calls block (disk, hashing, SQLite): each runs in a worker thread of the service's
own pool, so one large write never stalls the daemon's other calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final, TypeVar, cast

from google.protobuf import empty_pb2, timestamp_pb2

from pycontainerd import errdefs
from pycontainerd.api.containerd.events import content_pb2 as events_pb2
from pycontainerd.api.containerd.services.content.v1 import content_pb2
from pycontainerd.content import Info, ReaderAt, Status, Store, Writer
from pycontainerd.daemon.rpc import AbortError, RPCServer, ServicerContext
from pycontainerd.daemon.services.base import LEASE_HEADER, lease_of, namespace_of
from pycontainerd.daemon.services.events import publisher
from pycontainerd.descriptor import Descriptor
from pycontainerd.errdefs import Code
from pycontainerd.events import Publisher
from pycontainerd.gc.scheduler import gc_scheduler
from pycontainerd.metadata import DB, ContentStore, NamespacedContentStore
from pycontainerd.metadata.gc import GarbageCollector
from pycontainerd.plugin import InitContext, Registration, Type

__all__ = [
    "LEASE_HEADER",
    "ContentService",
    "info_from_proto",
    "info_to_proto",
    "registration",
    "service_registration",
    "status_to_proto",
]

log = logging.getLogger(__name__)

#: The most bytes one Read response carries, as containerd's.
READ_CHUNK: Final = 1 << 20
#: Infos per List response, as containerd's.
LIST_BATCH: Final = 100
#: Worker threads for the store's blocking calls: enough that slow commits (fsync of a large
#: blob) leave room for the quick calls.
WORKERS: Final = 32

T = TypeVar("T")


def _timestamp(ns: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(ns)
    return ts


def info_to_proto(info: Info) -> content_pb2.Info:
    return content_pb2.Info(
        digest=info.digest,
        size=info.size,
        created_at=_timestamp(info.created_at),
        updated_at=_timestamp(info.updated_at),
        labels=dict(info.labels),
    )


def info_from_proto(info: content_pb2.Info) -> Info:
    return Info(
        digest=info.digest,
        size=info.size,
        created_at=info.created_at.ToNanoseconds(),
        updated_at=info.updated_at.ToNanoseconds(),
        labels=dict(info.labels),
    )


def status_to_proto(status: Status) -> content_pb2.Status:
    return content_pb2.Status(
        ref=status.ref,
        offset=status.offset,
        total=status.total,
        expected=status.expected,
        started_at=_timestamp(status.started_at),
        updated_at=_timestamp(status.updated_at),
    )


def _open_read(
    store: Store, request: content_pb2.ReadContentRequest
) -> tuple[ReaderAt, int, int, bytes]:
    """Open the blob of a Read request: the reader, the range and the first chunk."""
    ra = store.reader_at(request.digest)
    try:
        blob_size = ra.size
        offset = max(request.offset, 0)
        if offset > blob_size:
            raise AbortError(Code.OUT_OF_RANGE, f"read past object length {blob_size} bytes")
        size = request.size
        if size <= 0 or offset + size > blob_size:
            size = blob_size - offset
        end = offset + size
        data = ra.read_at(offset, min(READ_CHUNK, size)) if size else b""
    except BaseException:
        ra.close()
        raise
    return ra, offset, end, data


class _WriteSession:
    """One Write stream: the answer to each request, as containerd's content server gives it.

    The response message is kept across requests, as containerd's is: a field set by one
    answer (``started_at`` of a STAT, say) stays in the following ones.
    """

    def __init__(self, store: Store, writer: Writer, ref: str, total: int, expected: str) -> None:
        self.store = store
        self.writer = writer
        self.ref = ref
        self.total = total
        self.expected = expected
        self.msg = content_pb2.WriteContentResponse()

    def handle(self, req: content_pb2.WriteContentRequest) -> content_pb2.WriteContentResponse:
        wr = self.writer
        msg = self.msg
        msg.action = req.action
        ws = wr.status()
        msg.offset = ws.offset
        if req.expected:
            self.expected = req.expected
            try:
                self.store.info(req.expected)
            except errdefs.NotFound:
                pass
            else:
                wr.close()
                try:
                    self.store.abort(self.ref)
                except errdefs.ContainerdError as exc:
                    log.debug("write %s: abort after finding the blob: %s", self.ref, exc)
                raise errdefs.AlreadyExists(f"blob with expected digest {req.expected} exists")
        if req.total > 0:
            self.total = req.total
        if req.action == content_pb2.STAT:
            msg.digest = wr.digest()
            msg.started_at.CopyFrom(_timestamp(ws.started_at))
            msg.updated_at.CopyFrom(_timestamp(ws.updated_at))
            msg.total = self.total
        elif req.action in (content_pb2.WRITE, content_pb2.COMMIT):
            if req.offset > 0 and req.offset != ws.offset:
                raise AbortError(
                    Code.OUT_OF_RANGE,
                    f"write @{req.offset} must occur at current offset {ws.offset}",
                )
            if req.offset == 0 and ws.offset > 0:
                wr.truncate(0)
                msg.offset = 0
            if req.data:
                msg.offset += wr.write(req.data)
            if req.action == content_pb2.COMMIT:
                wr.commit(self.total, self.expected, labels=dict(req.labels) or None)
            msg.digest = wr.digest()
        else:
            raise errdefs.InvalidArgument(f"write {self.ref}: unknown action {req.action}")
        out = content_pb2.WriteContentResponse()
        out.CopyFrom(msg)
        return out


def _close(writer: Writer) -> None:
    writer.close()


class ContentService:
    """Content over the namespaced content store; publishes ``/content/delete``."""

    def __init__(
        self, store: ContentStore, *, workers: int = WORKERS, events: Publisher | None = None
    ) -> None:
        self._content = store
        self._events = events
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="content")

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` in a worker thread."""
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, functools.partial(fn, *args)
        )

    async def _open(self, fn: Callable[[], T], close: Callable[[T], object]) -> T:
        """``fn()`` in a worker thread; if the call is cancelled meanwhile, close what it opens."""
        fut = asyncio.get_running_loop().run_in_executor(self._executor, fn)
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:

            def done(f: asyncio.Future[T]) -> None:
                if not f.cancelled() and f.exception() is None:
                    with contextlib.suppress(RuntimeError):  # shut down: the process is ending
                        self._executor.submit(close, f.result())

            fut.add_done_callback(done)
            raise

    def register(self, server: RPCServer) -> None:
        server.add_service(content_pb2.DESCRIPTOR.services_by_name["Content"], self)

    def _store(self, context: ServicerContext) -> NamespacedContentStore:
        return self._content.namespaced(namespace_of(context), lease=lease_of(context))

    async def Info(
        self, request: content_pb2.InfoRequest, context: ServicerContext
    ) -> content_pb2.InfoResponse:
        info = await self._run(self._store(context).info, request.digest)
        return content_pb2.InfoResponse(info=info_to_proto(info))

    async def Update(
        self, request: content_pb2.UpdateRequest, context: ServicerContext
    ) -> content_pb2.UpdateResponse:
        store = self._store(context)
        paths = list(request.update_mask.paths) if request.HasField("update_mask") else []
        info = await self._run(store.update, info_from_proto(request.info), *paths)
        return content_pb2.UpdateResponse(info=info_to_proto(info))

    async def List(
        self, request: content_pb2.ListContentRequest, context: ServicerContext
    ) -> AsyncIterator[content_pb2.ListContentResponse]:
        store = self._store(context)
        infos: list[Info] = []
        await self._run(store.walk, infos.append, *request.filters)
        for start in range(0, len(infos), LIST_BATCH):
            batch = infos[start : start + LIST_BATCH]
            yield content_pb2.ListContentResponse(info=[info_to_proto(i) for i in batch])

    async def Delete(
        self, request: content_pb2.DeleteContentRequest, context: ServicerContext
    ) -> empty_pb2.Empty:
        ns = namespace_of(context)
        await self._run(self._store(context).delete, request.digest)
        if self._events is not None:
            event = events_pb2.ContentDelete(digest=request.digest)
            self._events.publish(ns, "/content/delete", event)
        return empty_pb2.Empty()

    async def Read(
        self, request: content_pb2.ReadContentRequest, context: ServicerContext
    ) -> AsyncIterator[content_pb2.ReadContentResponse]:
        store = self._store(context)
        # one hop opens the blob and reads the first chunk: ctr reads 32 KiB per call
        ra, offset, end, data = await self._open(
            functools.partial(_open_read, store, request), lambda opened: opened[0].close()
        )
        try:
            while data:
                yield content_pb2.ReadContentResponse(offset=offset, data=data)
                offset += len(data)
                if offset >= end:
                    break
                data = await self._run(ra.read_at, offset, min(READ_CHUNK, end - offset))
        finally:
            ra.close()

    async def Status(
        self, request: content_pb2.StatusRequest, context: ServicerContext
    ) -> content_pb2.StatusResponse:
        status = await self._run(self._store(context).status, request.ref)
        return content_pb2.StatusResponse(status=status_to_proto(status))

    async def ListStatuses(
        self, request: content_pb2.ListStatusesRequest, context: ServicerContext
    ) -> content_pb2.ListStatusesResponse:
        statuses = await self._run(self._store(context).list_statuses, *request.filters)
        return content_pb2.ListStatusesResponse(statuses=[status_to_proto(s) for s in statuses])

    async def Write(
        self,
        requests: AsyncIterator[content_pb2.WriteContentRequest],
        context: ServicerContext,
    ) -> AsyncIterator[content_pb2.WriteContentResponse]:
        store = self._store(context)
        it = aiter(requests)
        req = await anext(it, None)
        if req is None:
            return
        ref = req.ref
        if not ref:
            raise errdefs.InvalidArgument("first message must have a reference")
        desc = Descriptor("", req.expected, req.total)
        writer = await self._open(functools.partial(store.writer, ref, desc=desc), _close)
        session = _WriteSession(store, writer, ref, req.total, req.expected)
        try:
            while True:
                yield await self._run(session.handle, req)
                if req.action == content_pb2.COMMIT:
                    return
                req = await anext(it, None)
                if req is None:
                    return
        finally:
            # shielded: a cancelled call still closes its writer, so the ref is free again
            await asyncio.shield(self._run(writer.close))

    async def Abort(
        self, request: content_pb2.AbortRequest, context: ServicerContext
    ) -> empty_pb2.Empty:
        await self._run(self._store(context).abort, request.ref)
        return empty_pb2.Empty()


def _init_store(ic: InitContext) -> ContentStore:
    db = ic.get(Type.METADATA)
    assert isinstance(db, DB)
    store = ContentStore(db, cast(Store, ic.get(Type.CONTENT)))
    ic.meta.exports["policy"] = "shared" if store.shared else "isolated"
    # the collector cleans the backend of what no namespace records any more
    gc = gc_scheduler(ic)
    if gc is not None and isinstance(gc.collector, GarbageCollector):
        gc.collector.add_content_store(store)
    return store


def _init(ic: InitContext) -> ContentService:
    store = ic.get(Type.SERVICE, "content-service")
    assert isinstance(store, ContentStore)
    return ContentService(store, events=publisher(ic))


service_registration = Registration(
    type=Type.SERVICE,
    id="content-service",
    init=_init_store,
    requires=(Type.METADATA, Type.CONTENT, Type.GC),
)

registration = Registration(
    type=Type.GRPC, id="content", init=_init, requires=(Type.EVENT, Type.SERVICE)
)

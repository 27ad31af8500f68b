"""Content in namespaces: containerd's ``metadata/content.go`` over the SQLite database.

The bytes live once, in a backend store (the local store); this layer decides who sees them.
``blobs`` holds a record per namespace and digest (size, labels, times), so the same blob can be
visible in several namespaces while it is stored once. ``ingests`` maps a namespace's ref to the
backend's ref (``<namespace>/<token>/<ref>``), so two namespaces may use the same ref at once.

Sharing follows containerd's default ``content_sharing_policy = "shared"``: a writer that names
the expected digest of a blob the backend already holds (for another namespace) writes nothing;
its status shows the blob complete, and its commit only adds this namespace's record. The
``"isolated"`` policy (``shared=False``) makes every namespace upload its own copy first.

Deleting a blob removes this namespace's record only; files are never removed here. Blobs no
namespace records, and ingests past their expiry (24 hours after their writer last opened, as
containerd's), are swept by garbage collection, which holds :meth:`ContentStore.exclusive`
while it does: commits, deletes and aborts hold the shared side, so a blob linked into the
backend is never swept before its record is written.

A call may name a lease (the ``containerd-lease`` header), which must exist in the namespace:
as containerd's, an ingest started under it belongs to it (and does not expire on its own), a
blob committed under it moves from the ingest to the lease, and a writer refused because the
blob is already here still adds the blob to the lease. Deleting a blob or aborting an ingest
drops it from the call's lease. A deletion marks the database dirty for the collector.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Final

from pycontainerd import errdefs, fieldpath, filters
from pycontainerd.content import Info, ReaderAt, Status, Store, WalkFunc, Writer
from pycontainerd.content.adaptor import adapt_info, adapt_status
from pycontainerd.content.local import validate_ref
from pycontainerd.descriptor import Descriptor
from pycontainerd.digest import validate_digest
from pycontainerd.leases import RESOURCE_CONTENT, RESOURCE_INGESTS
from pycontainerd.metadata.db import DB, register_holdings, table_holdings
from pycontainerd.metadata.leases import add_resource_tx, remove_resource_tx
from pycontainerd.metadata.namespaces import ensure_namespace

__all__ = ["INGEST_EXPIRY", "ContentStore", "NamespacedContentStore", "NamespacedWriter"]

register_holdings(table_holdings("blobs", "blobs"))

#: How long an ingest outlives the last opening of its writer (nanoseconds), as containerd's.
INGEST_EXPIRY: Final = 24 * 3600 * 1_000_000_000

_COPY_BUFFER: Final = 1 << 20


def _quote(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _digest_of(desc: Descriptor | str) -> str:
    return desc if isinstance(desc, str) else desc.digest


class _SharedLock:
    """Many holders of the shared side, or one of the exclusive side, fairly.

    A waiting exclusive holder goes before shared holders that come after it, so a steady
    stream of commits cannot starve the garbage collector; and the shared holders that waited
    through an exclusive hold go before the next one, so a collector taking the lock batch
    after batch cannot starve the commits. The shared side is not reentrant.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._waiting = 0  # exclusive holders waiting
        self._queued = 0  # shared holders waiting
        self._admit = 0  # shared holders let in by the last exclusive release, not in yet
        self._releases = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            if self._exclusive or self._waiting:
                seen = self._releases
                self._queued += 1
                try:
                    while self._exclusive or (self._waiting and self._releases == seen):
                        self._cond.wait()
                finally:
                    self._queued -= 1
                    if self._releases != seen and self._admit:
                        self._admit -= 1
                        if not self._admit:
                            self._cond.notify_all()
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                if not self._shared:
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            try:
                while self._exclusive or self._shared or self._admit:
                    self._cond.wait()
            finally:
                self._waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._releases += 1
                self._admit = self._queued
                self._cond.notify_all()


class ContentStore:
    """The namespaced content store over ``backend``; use one namespace via :meth:`namespaced`."""

    def __init__(self, db: DB, backend: Store, *, shared: bool = True) -> None:
        self.db = db
        self.backend = backend
        self.shared = shared
        self._lock = _SharedLock()

    def namespaced(self, namespace: str, *, lease: str | None = None) -> NamespacedContentStore:
        """The :class:`~pycontainerd.content.Store` of ``namespace``."""
        return NamespacedContentStore(self, namespace, lease=lease)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold off every commit, delete and abort (for a garbage collection sweep)."""
        with self._lock.exclusive():
            yield

    @contextmanager
    def _shared(self) -> Iterator[None]:
        with self._lock.shared():
            yield


@contextmanager
def _named(bref: str, ref: str) -> Iterator[None]:
    """Errors of the backend's ingest ``bref`` told with the caller's ``ref``."""
    try:
        yield
    except errdefs.ContainerdError as exc:
        if bref not in exc.message:
            raise
        raise type(exc)(exc.message.replace(bref, ref)) from exc


def _row_to_info(row: Sequence[object]) -> Info:
    dgst, size, labels, created, updated = row
    return Info(
        digest=str(dgst),
        size=int(str(size)),
        labels=json.loads(str(labels)),
        created_at=int(str(created)),
        updated_at=int(str(updated)),
    )


_INFO_COLUMNS = "digest, size, labels, created_at, updated_at"


class NamespacedContentStore:
    """One namespace's view of a :class:`ContentStore`: a :class:`~pycontainerd.content.Store`."""

    def __init__(self, store: ContentStore, namespace: str, *, lease: str | None = None) -> None:
        self._store = store
        self._db = store.db
        self._backend = store.backend
        self.namespace = namespace
        self.lease = lease

    # --- Manager -------------------------------------------------------------------------

    def info(self, dgst: str) -> Info:
        validate_digest(dgst)
        with self._db.view() as tx:
            row = tx.execute(
                f"SELECT {_INFO_COLUMNS} FROM blobs WHERE namespace = ? AND digest = ?",
                (self.namespace, dgst),
            ).fetchone()
        if row is None:
            raise errdefs.NotFound(f"content digest {dgst}: not found")
        return _row_to_info(row)

    def update(self, info: Info, *fieldpaths: str) -> Info:
        """Labels only: all of them, or the ``labels`` / ``labels.KEY`` paths given."""
        dgst = info.digest
        validate_digest(dgst)
        fieldpath.check_paths(fieldpaths, (), ("labels",), kind="content info", name=dgst)
        with self._store._shared(), self._db.update() as tx:
            row = tx.execute(
                f"SELECT {_INFO_COLUMNS} FROM blobs WHERE namespace = ? AND digest = ?",
                (self.namespace, dgst),
            ).fetchone()
            if row is None:
                raise errdefs.NotFound(f"content digest {dgst}: not found")
            current = _row_to_info(row)
            labels = fieldpath.apply_map_updates(
                current.labels, info.labels, fieldpaths, field="labels"
            )
            labels = {k: v for k, v in labels.items() if v}
            fieldpath.validate_labels(labels, prefix="info.Labels")
            updated = Info(
                digest=dgst,
                size=current.size,
                created_at=current.created_at,
                updated_at=time.time_ns(),
                labels=labels,
            )
            tx.execute(
                "UPDATE blobs SET labels = ?, updated_at = ? WHERE namespace = ? AND digest = ?",
                (json.dumps(labels, sort_keys=True), updated.updated_at, self.namespace, dgst),
            )
        return updated

    def walk(self, fn: WalkFunc, *filter_strings: str) -> None:
        match = filters.parse(*filter_strings)
        with self._db.view() as tx:
            rows = tx.execute(
                f"SELECT {_INFO_COLUMNS} FROM blobs WHERE namespace = ? ORDER BY digest",
                (self.namespace,),
            ).fetchall()
        infos = [_row_to_info(row) for row in rows]
        for info in infos:  # outside the transaction: fn may call the store
            if match.match(adapt_info(info)):
                fn(info)

    def delete(self, dgst: str) -> None:
        """Forget the blob in this namespace; garbage collection removes unreferenced bytes."""
        validate_digest(dgst)
        with self._store._shared(), self._db.update() as tx:
            cur = tx.execute(
                "DELETE FROM blobs WHERE namespace = ? AND digest = ?", (self.namespace, dgst)
            )
            if cur.rowcount == 0:
                raise errdefs.NotFound(f"content digest {dgst}: not found")
            if self.lease:
                remove_resource_tx(tx, self.namespace, self.lease, RESOURCE_CONTENT, dgst)
            self._db.mark_dirty("content")

    # --- Provider ------------------------------------------------------------------------

    def reader_at(self, desc: Descriptor | str) -> ReaderAt:
        self.info(_digest_of(desc))  # access check: the blob must be in this namespace
        return self._backend.reader_at(desc)

    def blob_path(self, dgst: str) -> Path:
        """The file holding blob ``dgst``, for native code that reads it whole (layer apply).

        NotFound unless this namespace records the blob; NotImplemented when the backend keeps
        no files. The file stays while the blob is referenced (a lease, an image).
        """
        self.info(dgst)
        path_of = getattr(self._backend, "blob_path", None)
        if not callable(path_of):
            raise errdefs.NotImplemented(f"content {dgst}: the store keeps no blob files")
        path = path_of(dgst)
        assert isinstance(path, Path)
        return path

    # --- IngestManager -------------------------------------------------------------------

    def _ingest(self, ref: str) -> tuple[str, str] | None:
        with self._db.view() as tx:
            row = tx.execute(
                "SELECT bref, expected FROM ingests WHERE namespace = ? AND ref = ?",
                (self.namespace, ref),
            ).fetchone()
        return (str(row[0]), str(row[1])) if row is not None else None

    def status(self, ref: str) -> Status:
        validate_ref(ref)
        ingest = self._ingest(ref)
        if ingest is None:
            raise errdefs.NotFound(f"ingest ref {_quote(ref)}: not found")
        try:
            st = self._backend.status(ingest[0])
        except errdefs.NotFound:
            raise errdefs.NotFound(f"ingest ref {_quote(ref)}: not found") from None
        return _with_ref(st, ref)

    def list_statuses(self, *filter_strings: str) -> list[Status]:
        match = filters.parse(*filter_strings)
        with self._db.view() as tx:
            rows = tx.execute(
                "SELECT ref, bref FROM ingests WHERE namespace = ? ORDER BY ref",
                (self.namespace,),
            ).fetchall()
        out: list[Status] = []
        for ref, bref in rows:
            try:
                st = _with_ref(self._backend.status(bref), ref)
            except errdefs.NotFound:
                continue
            if match.match(adapt_status(st)):
                out.append(st)
        return out

    def abort(self, ref: str) -> None:
        validate_ref(ref)
        with self._store._shared():
            with self._db.update() as tx:
                row = tx.execute(
                    "DELETE FROM ingests WHERE namespace = ? AND ref = ? RETURNING bref",
                    (self.namespace, ref),
                ).fetchone()
                if row is not None and self.lease:
                    remove_resource_tx(tx, self.namespace, self.lease, RESOURCE_INGESTS, ref)
            if row is None:
                raise errdefs.NotFound(f"ingest ref {_quote(ref)}: not found")
            # not found: a shared ingest that wrote nothing, or one that never started
            with contextlib.suppress(errdefs.NotFound):
                self._backend.abort(str(row[0]))

    # --- Ingester ------------------------------------------------------------------------

    def writer(self, ref: str, *, desc: Descriptor | None = None) -> NamespacedWriter:
        validate_ref(ref)
        desc = desc or Descriptor("", "", 0)
        if desc.digest:
            validate_digest(desc.digest)
        ns = self.namespace
        lease = self.lease
        with self._store._shared():
            shared = False
            exists = False
            bref = ""
            with self._db.update() as tx:
                ensure_namespace(tx, ns)
                if desc.digest:
                    exists = (
                        tx.execute(
                            "SELECT 1 FROM blobs WHERE namespace = ? AND digest = ?",
                            (ns, desc.digest),
                        ).fetchone()
                        is not None
                    )
                    if exists:
                        # the lease still takes the blob, so that another reference going
                        # away does not lose it while the lease's work goes on
                        if lease:
                            add_resource_tx(tx, ns, lease, RESOURCE_CONTENT, desc.digest)
                    elif self._store.shared:
                        try:
                            held = self._backend.info(desc.digest)
                        except errdefs.NotFound:
                            pass
                        else:
                            # a size that differs is the caller's to resolve at commit
                            if desc.size <= 0 or desc.size == held.size:
                                shared = True
                                desc = Descriptor(desc.media_type, desc.digest, held.size)
                if not exists:
                    bref = self._record_ingest(tx, ref, desc.digest if shared else "")
            if exists:
                raise errdefs.AlreadyExists(f"content {desc.digest}: already exists")
            backend_writer: Writer | None = None
            if not shared:
                # Not the expected digest: the content must be committed in this namespace
                # before it counts as here, whatever the backend holds.
                with _named(bref, ref):
                    backend_writer = self._backend.writer(
                        bref, desc=Descriptor(desc.media_type, "", desc.size)
                    )
        return NamespacedWriter(self, ref, bref, desc, backend_writer)

    def _record_ingest(self, tx: sqlite3.Connection, ref: str, expected: str) -> str:
        """Record (or refresh) the ingest ``ref`` in ``tx``; its backend ref.

        Under a lease the ingest lives as long as the lease holds it; otherwise it expires
        :data:`INGEST_EXPIRY` after this opening.
        """
        ns = self.namespace
        row = tx.execute(
            "SELECT bref FROM ingests WHERE namespace = ? AND ref = ?", (ns, ref)
        ).fetchone()
        bref = str(row[0]) if row is not None else f"{ns}/{secrets.token_hex(8)}/{ref}"
        expires: int | None = None
        if self.lease:
            add_resource_tx(tx, ns, self.lease, RESOURCE_INGESTS, ref)
        else:
            expires = time.time_ns() + INGEST_EXPIRY
        tx.execute(
            "INSERT INTO ingests (namespace, ref, bref, expected, expires_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (namespace, ref) DO UPDATE SET "
            "expected = excluded.expected, expires_at = excluded.expires_at",
            (ns, ref, bref, expected, expires),
        )
        return bref

    def _forget_ingest(self, ref: str, bref: str) -> None:
        """Drop the record of an ingest whose backend data is gone (a failed commit)."""
        try:
            self._backend.status(bref)
        except errdefs.NotFound:
            with self._db.update() as tx:
                tx.execute(
                    "DELETE FROM ingests WHERE namespace = ? AND ref = ? AND bref = ?",
                    (self.namespace, ref, bref),
                )


def _with_ref(st: Status, ref: str) -> Status:
    return Status(
        ref=ref,
        offset=st.offset,
        total=st.total,
        expected=st.expected,
        started_at=st.started_at,
        updated_at=st.updated_at,
    )


class NamespacedWriter:
    """A writer in one namespace: over a backend writer, or none while the blob is shared."""

    def __init__(
        self,
        store: NamespacedContentStore,
        ref: str,
        bref: str,
        desc: Descriptor,
        writer: Writer | None,
    ) -> None:
        self._store = store
        self._ref = ref
        self._bref = bref
        self._desc = desc
        self._w = writer
        self._started = time.time_ns()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._w is None:
            if not len(data):
                return 0
            self._create_and_copy(self._desc.size)
        assert self._w is not None
        with _named(self._bref, self._ref):
            return self._w.write(data)

    def digest(self) -> str:
        return self._w.digest() if self._w is not None else self._desc.digest

    def status(self) -> Status:
        if self._w is not None:
            return _with_ref(self._w.status(), self._ref)
        return Status(
            ref=self._ref,
            offset=self._desc.size,
            total=self._desc.size,
            expected=self._desc.digest,
            started_at=self._started,
            updated_at=self._started,
        )

    def truncate(self, size: int) -> None:
        if self._w is not None:
            with _named(self._bref, self._ref):
                self._w.truncate(size)
        else:
            self._create_and_copy(size)

    def _create_and_copy(self, size: int) -> None:
        """Stop sharing: start a backend ingest holding the first ``size`` shared bytes."""
        backend = self._store._backend
        desc = self._desc
        with _named(self._bref, self._ref):
            w = backend.writer(self._bref, desc=Descriptor(desc.media_type, "", desc.size))
        try:
            if size > 0:
                with backend.reader_at(desc) as ra:
                    offset = 0
                    while offset < size:
                        chunk = ra.read_at(offset, min(_COPY_BUFFER, size - offset))
                        if not chunk:
                            raise errdefs.FailedPrecondition(
                                f"copy shared content {desc.digest}: it ends at {offset} bytes"
                            )
                        w.write(chunk)
                        offset += len(chunk)
        except BaseException:
            w.close()
            raise
        self._w = w

    def commit(
        self, size: int = 0, expected: str = "", *, labels: Mapping[str, str] | None = None
    ) -> None:
        store = self._store
        ref = self._ref
        labels = {k: v for k, v in (labels or {}).items() if v}
        try:
            if expected:
                validate_digest(expected)
            fieldpath.validate_labels(labels, prefix="info.Labels")
        except BaseException:
            self.close()
            raise
        with store._store._shared():
            if self._w is None:
                if size and size != self._desc.size:
                    raise errdefs.FailedPrecondition(
                        f"commit ref {_quote(ref)}: unexpected commit size {self._desc.size}, "
                        f"expected {size}"
                    )
                if expected and expected != self._desc.digest:
                    raise errdefs.FailedPrecondition(
                        f"commit ref {_quote(ref)}: unexpected commit digest "
                        f"{self._desc.digest}, expected {expected}"
                    )
                actual, size = self._desc.digest, self._desc.size
            else:
                w = self._w
                size = w.status().offset if size <= 0 else size
                try:
                    with _named(self._bref, ref):
                        w.commit(size, expected)
                except errdefs.AlreadyExists:
                    pass  # in the backend for another namespace: record it here
                except errdefs.FailedPrecondition:
                    store._forget_ingest(ref, self._bref)
                    raise
                actual = w.digest()
            now = time.time_ns()
            with store._db.update() as tx:
                ensure_namespace(tx, store.namespace)
                cur = tx.execute(
                    "INSERT INTO blobs (namespace, digest, size, labels, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (namespace, digest) DO NOTHING",
                    (
                        store.namespace,
                        actual,
                        size,
                        json.dumps(labels, sort_keys=True),
                        now,
                        now,
                    ),
                )
                tx.execute(
                    "DELETE FROM ingests WHERE namespace = ? AND ref = ?", (store.namespace, ref)
                )
                if store.lease:
                    remove_resource_tx(tx, store.namespace, store.lease, RESOURCE_INGESTS, ref)
                    add_resource_tx(tx, store.namespace, store.lease, RESOURCE_CONTENT, actual)
        if cur.rowcount == 0:
            raise errdefs.AlreadyExists(f"content {actual}: already exists")

    def close(self) -> None:
        if self._w is not None:
            self._w.close()

    def __enter__(self) -> NamespacedWriter:
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
        store: NamespacedContentStore,
    ) -> Store:  # mypy checks NamespacedContentStore against the Protocol
        return store

"""Garbage collection of the metadata store: containerd's ``metadata/gc.go`` and ``GarbageCollect``.

**What is kept.** The roots are images (their target, and what their ``containerd.io/gc.ref.*``
labels name), leases that have not expired (what they hold; with ``containerd.io/gc.flat``,
only that), blobs labelled ``containerd.io/gc.root``, and ingests that have not expired. From
there references are followed: a blob's ``containerd.io/gc.ref.content[.|/]NAME`` labels name
other blobs in its namespace, ``containerd.io/gc.ref.snapshot.SNAPSHOTTER[/NAME]`` snapshots; an
ingest refers to the blob it expects. Everything else that can be collected (blob records,
ingests, leases) is removed. Then the backends are cleaned: a blob file that no namespace
records (nor any ingest expects) is deleted, and so is the data of an ingest no namespace
records.

**Kinds of record are sources.** A :class:`Source` says, for the tables it owns, which rows are
roots, what a node refers to, which nodes may be swept, how to remove them, and which writes
may add a reference (:class:`Trigger`). Containers and snapshots plug in the same way once
their tables exist; a source whose tables are missing is skipped.

**Without stalling others.** containerd holds its database's write lock through the mark. Here
the mark runs in a snapshot on a read connection of its own (:meth:`DB.snapshot`), while reads
and writes go on. Writes made meanwhile are caught by temporary SQLite triggers, installed
before the snapshot begins, which record every node a write may have made reachable (an image
created, a label changed, a blob recommitted, a resource added to a lease). The sweep then runs
in short write transactions of :data:`SWEEP_BATCH` nodes: each first traces the nodes the
triggers recorded, in the current state, so nothing that became reachable after the snapshot
is swept. Blob files are deleted in batches under :meth:`ContentStore.exclusive`, each batch
checked against the database again inside the lock: a commit holds the shared side from
linking its file to recording its blob, so a blob committed (or recommitted) while the sweep
runs keeps its file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Final, Protocol

from pycontainerd import errdefs
from pycontainerd.gc import RESOURCE_MAX, Node, tricolor
from pycontainerd.leases import LABEL_GC_EXPIRE, LABEL_GC_FLAT, parse_rfc3339
from pycontainerd.metadata.db import DB

if TYPE_CHECKING:
    from pycontainerd.metadata.content import ContentStore

__all__ = [
    "LABEL_GC_REF_CONTENT",
    "LABEL_GC_REF_SNAPSHOT",
    "LABEL_GC_ROOT",
    "SWEEP_BATCH",
    "ContainerSource",
    "ContentSource",
    "GCStats",
    "GarbageCollector",
    "ImageSource",
    "LeaseSource",
    "ResourceType",
    "SnapshotSource",
    "Source",
    "Trigger",
    "default_sources",
    "label_refs",
]

log = logging.getLogger(__name__)

LABEL_GC_ROOT: Final = "containerd.io/gc.root"
LABEL_GC_REF_CONTENT: Final = "containerd.io/gc.ref.content"
LABEL_GC_REF_SNAPSHOT: Final = "containerd.io/gc.ref.snapshot."
_LABEL_GC: Final = '"containerd.io/gc.'

#: Nodes removed per write transaction of the sweep.
SWEEP_BATCH: Final = 256
#: Files deleted per hold of the content store's exclusive lock.
FILE_BATCH: Final = 128


class ResourceType(IntEnum):
    """Node types: containerd's values, and one of ours for images."""

    UNKNOWN = 0
    CONTENT = 1
    SNAPSHOT = 2
    CONTAINER = 3
    TASK = 4
    LEASE = 5
    INGEST = 6
    #: Images are roots and never swept; the node lets a changed image be traced again.
    IMAGE = 7


#: Flag of a reference whose own labels are not followed (a ``gc.flat`` lease's).
FLAT: Final = 0x20
CONTENT_FLAT: Final = ResourceType.CONTENT | FLAT
SNAPSHOT_FLAT: Final = ResourceType.SNAPSHOT | FLAT

Emit = Callable[[Node], None]


def _node(rtype: int, namespace: str, key: str) -> Node:
    return Node(int(rtype), namespace, key)


def _labels(text: str) -> dict[str, str]:
    """The labels of a row, parsed only when a ``containerd.io/gc.`` key may be there."""
    if _LABEL_GC not in text:
        return {}
    labels = json.loads(text)
    return labels if isinstance(labels, dict) else {}


def label_refs(namespace: str, labels: dict[str, str], emit: Emit) -> None:
    """The nodes ``containerd.io/gc.ref.*`` labels name (containerd's ``sendLabelRefs``)."""
    plen = len(LABEL_GC_REF_CONTENT)
    for key, value in sorted(labels.items()):
        if key.startswith(LABEL_GC_REF_CONTENT):
            # the prefix itself, or the prefix and a name after "." or "/"
            if len(key) == plen or key[plen] in "./":
                emit(_node(ResourceType.CONTENT, namespace, value))
        elif key.startswith(LABEL_GC_REF_SNAPSHOT):
            snapshotter = key[len(LABEL_GC_REF_SNAPSHOT) :].split("/", 1)[0]
            emit(_node(ResourceType.SNAPSHOT, namespace, f"{snapshotter}/{value}"))


@dataclass(frozen=True)
class Trigger:
    """A write to ``table`` that may make a node reachable, and the node, in SQL over ``NEW``."""

    table: str
    type_sql: str
    namespace_sql: str
    key_sql: str
    events: tuple[str, ...] = ("INSERT", "UPDATE")


class Source(Protocol):
    """One kind of metadata record, as the collector sees it."""

    #: The tables it reads; without all of them (not migrated yet) it takes no part.
    tables: tuple[str, ...]
    #: Node types whose references it follows and which it may sweep.
    types: frozenset[int]
    #: Writes to watch while a collection runs.
    triggers: tuple[Trigger, ...]

    def scan_roots(self, tx: sqlite3.Connection, now: int, emit: Emit) -> None:
        """Emit the nodes that are kept whatever refers to them."""
        ...

    def references(self, tx: sqlite3.Connection, node: Node, emit: Emit) -> None:
        """Emit the nodes ``node`` (one of :attr:`types`, with flags) refers to."""
        ...

    def scan_all(self, tx: sqlite3.Connection, emit: Emit) -> None:
        """Emit every node that the sweep may remove."""
        ...

    def remove(self, tx: sqlite3.Connection, nodes: Sequence[Node]) -> set[str]:
        """Remove ``nodes``; the backing stores (``content``) left holding garbage."""
        ...


class ContentSource:
    """Blob records and ingests (``blobs``, ``ingests``)."""

    tables: tuple[str, ...] = ("blobs", "ingests")
    types: frozenset[int] = frozenset({ResourceType.CONTENT, CONTENT_FLAT, ResourceType.INGEST})
    triggers: tuple[Trigger, ...] = (
        Trigger("blobs", str(int(ResourceType.CONTENT)), "NEW.namespace", "NEW.digest"),
        Trigger("ingests", str(int(ResourceType.INGEST)), "NEW.namespace", "NEW.ref"),
    )

    def scan_roots(self, tx: sqlite3.Connection, now: int, emit: Emit) -> None:
        rows = tx.execute(
            "SELECT namespace, digest, labels FROM blobs WHERE instr(labels, ?) > 0",
            (json.dumps(LABEL_GC_ROOT),),
        )
        for ns, dgst, labels in rows:
            if LABEL_GC_ROOT in _labels(labels):
                emit(_node(ResourceType.CONTENT, ns, dgst))
        rows = tx.execute(
            "SELECT namespace, ref FROM ingests WHERE expires_at IS NOT NULL AND expires_at > ?",
            (now,),
        )
        for ns, ref in rows:
            emit(_node(ResourceType.INGEST, ns, ref))

    def references(self, tx: sqlite3.Connection, node: Node, emit: Emit) -> None:
        if node.type == ResourceType.CONTENT:
            row = tx.execute(
                "SELECT labels FROM blobs WHERE namespace = ? AND digest = ?",
                (node.namespace, node.key),
            ).fetchone()
            if row is not None:  # a reference may name a blob that is not (yet) there
                label_refs(node.namespace, _labels(row[0]), emit)
        elif node.type == ResourceType.INGEST:
            row = tx.execute(
                "SELECT expected FROM ingests WHERE namespace = ? AND ref = ?",
                (node.namespace, node.key),
            ).fetchone()
            if row is not None and row[0]:
                emit(_node(ResourceType.CONTENT, node.namespace, row[0]))
        # CONTENT_FLAT: held as itself only

    def scan_all(self, tx: sqlite3.Connection, emit: Emit) -> None:
        for ns, dgst in tx.execute("SELECT namespace, digest FROM blobs"):
            emit(_node(ResourceType.CONTENT, ns, dgst))
        for ns, ref in tx.execute("SELECT namespace, ref FROM ingests"):
            emit(_node(ResourceType.INGEST, ns, ref))

    def remove(self, tx: sqlite3.Connection, nodes: Sequence[Node]) -> set[str]:
        blobs = [(n.namespace, n.key) for n in nodes if n.type == ResourceType.CONTENT]
        ingests = [(n.namespace, n.key) for n in nodes if n.type == ResourceType.INGEST]
        tx.executemany("DELETE FROM blobs WHERE namespace = ? AND digest = ?", blobs)
        tx.executemany("DELETE FROM ingests WHERE namespace = ? AND ref = ?", ingests)
        for ns, key in blobs:
            log.debug("gc: removed content %s in namespace %s", key, ns)
        for ns, key in ingests:
            log.debug("gc: removed ingest %s in namespace %s", key, ns)
        return {"content"} if nodes else set()


class ImageSource:
    """Image records (``images``): roots, never swept."""

    tables: tuple[str, ...] = ("images",)
    types: frozenset[int] = frozenset({ResourceType.IMAGE})
    triggers: tuple[Trigger, ...] = (
        Trigger("images", str(int(ResourceType.IMAGE)), "NEW.namespace", "NEW.name"),
    )

    def scan_roots(self, tx: sqlite3.Connection, now: int, emit: Emit) -> None:
        for ns, dgst, labels in tx.execute("SELECT namespace, digest, labels FROM images"):
            emit(_node(ResourceType.CONTENT, ns, dgst))
            label_refs(ns, _labels(labels), emit)

    def references(self, tx: sqlite3.Connection, node: Node, emit: Emit) -> None:
        row = tx.execute(
            "SELECT digest, labels FROM images WHERE namespace = ? AND name = ?",
            (node.namespace, node.key),
        ).fetchone()
        if row is not None:
            emit(_node(ResourceType.CONTENT, node.namespace, row[0]))
            label_refs(node.namespace, _labels(row[1]), emit)

    def scan_all(self, tx: sqlite3.Connection, emit: Emit) -> None:
        return None

    def remove(self, tx: sqlite3.Connection, nodes: Sequence[Node]) -> set[str]:
        return set()


class ContainerSource:
    """Container records (``containers``): roots, never swept.

    As containerd's ``scanRoots``: a container holds its snapshot (``SNAPSHOTTER/KEY``) and
    what its ``containerd.io/gc.ref.*`` labels name.
    """

    tables: tuple[str, ...] = ("containers",)
    types: frozenset[int] = frozenset({ResourceType.CONTAINER})
    triggers: tuple[Trigger, ...] = (
        Trigger("containers", str(int(ResourceType.CONTAINER)), "NEW.namespace", "NEW.id"),
    )

    @staticmethod
    def _emit(ns: str, snapshotter: str, key: str, labels: str, emit: Emit) -> None:
        if snapshotter:
            emit(_node(ResourceType.SNAPSHOT, ns, f"{snapshotter}/{key}"))
        label_refs(ns, _labels(labels), emit)

    def scan_roots(self, tx: sqlite3.Connection, now: int, emit: Emit) -> None:
        rows = tx.execute("SELECT namespace, snapshotter, snapshot_key, labels FROM containers")
        for ns, snapshotter, key, labels in rows:
            self._emit(ns, snapshotter, key, labels, emit)

    def references(self, tx: sqlite3.Connection, node: Node, emit: Emit) -> None:
        row = tx.execute(
            "SELECT snapshotter, snapshot_key, labels FROM containers "
            "WHERE namespace = ? AND id = ?",
            (node.namespace, node.key),
        ).fetchone()
        if row is not None:
            self._emit(node.namespace, row[0], row[1], row[2], emit)

    def scan_all(self, tx: sqlite3.Connection, emit: Emit) -> None:
        return None

    def remove(self, tx: sqlite3.Connection, nodes: Sequence[Node]) -> set[str]:
        return set()


class SnapshotSource:
    """Snapshot records (``snapshots``): containerd's snapshot nodes, ``SNAPSHOTTER/KEY``.

    Roots are snapshots labelled ``containerd.io/gc.root``. A snapshot refers to its parent
    (a flat one to a flat parent) and, unless flat, to what its ``gc.ref`` labels name. A
    swept record leaves its backend holding garbage: the ``snapshots`` cleaner removes it.
    """

    tables: tuple[str, ...] = ("snapshots",)
    types: frozenset[int] = frozenset({ResourceType.SNAPSHOT, SNAPSHOT_FLAT})
    triggers: tuple[Trigger, ...] = (
        Trigger(
            "snapshots",
            str(int(ResourceType.SNAPSHOT)),
            "NEW.namespace",
            "NEW.snapshotter || '/' || NEW.key",
        ),
    )

    def scan_roots(self, tx: sqlite3.Connection, now: int, emit: Emit) -> None:
        rows = tx.execute(
            "SELECT namespace, snapshotter, key, labels FROM snapshots WHERE instr(labels, ?) > 0",
            (json.dumps(LABEL_GC_ROOT),),
        )
        for ns, snapshotter, key, labels in rows:
            if LABEL_GC_ROOT in _labels(labels):
                emit(_node(ResourceType.SNAPSHOT, ns, f"{snapshotter}/{key}"))

    def references(self, tx: sqlite3.Connection, node: Node, emit: Emit) -> None:
        snapshotter, _, key = node.key.partition("/")
        row = tx.execute(
            "SELECT parent, labels FROM snapshots "
            "WHERE namespace = ? AND snapshotter = ? AND key = ?",
            (node.namespace, snapshotter, key),
        ).fetchone()
        if row is None:
            return
        parent, labels = row
        if parent:
            emit(Node(node.type, node.namespace, f"{snapshotter}/{parent}"))
        if node.type == ResourceType.SNAPSHOT:
            label_refs(node.namespace, _labels(labels), emit)

    def scan_all(self, tx: sqlite3.Connection, emit: Emit) -> None:
        for ns, snapshotter, key in tx.execute("SELECT namespace, snapshotter, key FROM snapshots"):
            emit(_node(ResourceType.SNAPSHOT, ns, f"{snapshotter}/{key}"))

    def remove(self, tx: sqlite3.Connection, nodes: Sequence[Node]) -> set[str]:
        rows = [(n.namespace, *n.key.partition("/")[::2]) for n in nodes]
        tx.executemany(
            "DELETE FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key = ?", rows
        )
        for ns, snapshotter, key in rows:
            log.debug("gc: removed snapshot %s/%s in namespace %s", snapshotter, key, ns)
        return {"snapshots"} if nodes else set()


def _resource_node(namespace: str, rtype: str, rid: str, *, flat: bool) -> Node | None:
    if rtype == "content":
        return _node(CONTENT_FLAT if flat else ResourceType.CONTENT, namespace, rid)
    if rtype == "ingests":
        return _node(ResourceType.INGEST, namespace, rid)
    if rtype.startswith("snapshots/"):
        snapshotter = rtype[len("snapshots/") :]
        kind = SNAPSHOT_FLAT if flat else ResourceType.SNAPSHOT
        return _node(kind, namespace, f"{snapshotter}/{rid}")
    return None


def _lease_state(labels: dict[str, str], now: int, what: str) -> tuple[bool, bool]:
    """Whether a lease is live (not expired) and flat."""
    expire = labels.get(LABEL_GC_EXPIRE)
    if expire is not None:
        try:
            if parse_rfc3339(expire) < now:
                return False, False
        except errdefs.InvalidArgument:
            log.info("gc: lease %s: ignoring invalid expiration value %r", what, expire)
    return True, LABEL_GC_FLAT in labels


class LeaseSource:
    """Leases (``leases``, ``lease_resources``): live ones are roots, expired ones swept."""

    tables: tuple[str, ...] = ("leases", "lease_resources")
    types: frozenset[int] = frozenset({ResourceType.LEASE})
    triggers: tuple[Trigger, ...] = (
        Trigger("leases", str(int(ResourceType.LEASE)), "NEW.namespace", "NEW.id", ("INSERT",)),
        Trigger(
            "lease_resources",
            f"CASE WHEN NEW.type = 'content' THEN {int(ResourceType.CONTENT)} "
            f"WHEN NEW.type = 'ingests' THEN {int(ResourceType.INGEST)} "
            f"WHEN substr(NEW.type, 1, 10) = 'snapshots/' THEN {int(ResourceType.SNAPSHOT)} "
            "ELSE 0 END",
            "NEW.namespace",
            "CASE WHEN substr(NEW.type, 1, 10) = 'snapshots/' "
            "THEN substr(NEW.type, 11) || '/' || NEW.id ELSE NEW.id END",
            ("INSERT",),
        ),
    )

    def __init__(self) -> None:
        self._now = 0

    def scan_roots(self, tx: sqlite3.Connection, now: int, emit: Emit) -> None:
        self._now = now
        for ns, lid, labels in tx.execute("SELECT namespace, id, labels FROM leases"):
            live, _ = _lease_state(json.loads(labels), now, lid)
            if live:
                emit(_node(ResourceType.LEASE, ns, lid))

    def references(self, tx: sqlite3.Connection, node: Node, emit: Emit) -> None:
        row = tx.execute(
            "SELECT labels FROM leases WHERE namespace = ? AND id = ?",
            (node.namespace, node.key),
        ).fetchone()
        if row is None:
            return
        live, flat = _lease_state(json.loads(row[0]), self._now or time.time_ns(), node.key)
        if not live:
            return
        rows = tx.execute(
            "SELECT type, id FROM lease_resources WHERE namespace = ? AND lease = ?",
            (node.namespace, node.key),
        )
        for rtype, rid in rows:
            target = _resource_node(node.namespace, rtype, rid, flat=flat)
            if target is not None:
                emit(target)

    def scan_all(self, tx: sqlite3.Connection, emit: Emit) -> None:
        for ns, lid in tx.execute("SELECT namespace, id FROM leases"):
            emit(_node(ResourceType.LEASE, ns, lid))

    def remove(self, tx: sqlite3.Connection, nodes: Sequence[Node]) -> set[str]:
        tx.executemany(
            "DELETE FROM leases WHERE namespace = ? AND id = ?",
            [(n.namespace, n.key) for n in nodes],
        )
        for n in nodes:
            log.debug("gc: removed lease %s in namespace %s", n.key, n.namespace)
        return set()


def default_sources() -> tuple[Source, ...]:
    """The sources of every built-in kind of record (fresh: a source may keep state)."""
    return (
        LeaseSource(),
        ImageSource(),
        ContentSource(),
        ContainerSource(),
        SnapshotSource(),
    )


@dataclass
class GCStats:
    """One collection: durations in seconds, counts of what went."""

    mark: float = 0.0
    sweep: float = 0.0
    stores: float = 0.0
    #: The longest single hold of the database's write lock or of a store's exclusive lock.
    longest_hold: float = 0.0
    removed: dict[str, int] = field(default_factory=dict)

    def elapsed(self) -> float:
        """The metadata phase, as containerd's ``GCStats.Elapsed``."""
        return self.mark + self.sweep

    def count(self, what: str, n: int = 1) -> None:
        if n:
            self.removed[what] = self.removed.get(what, 0) + n


_NAMES: Final[dict[int, str]] = {
    ResourceType.CONTENT: "content",
    ResourceType.INGEST: "ingests",
    ResourceType.LEASE: "leases",
    ResourceType.SNAPSHOT: "snapshots",
    ResourceType.CONTAINER: "containers",
}


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class GarbageCollector:
    """Mark and sweep over the metadata database, then clean the stores that hold garbage.

    Stores register a cleaner by name (:meth:`register_cleaner`; the content store through
    :meth:`add_content_store`): it runs after a sweep that removed records of its kind, or
    after a deletion marked it dirty. The first collection cleans every store, for what a
    crash may have left.
    """

    def __init__(
        self,
        db: DB,
        *,
        sources: Iterable[Source] | None = None,
        sweep_batch: int = SWEEP_BATCH,
        file_batch: int = FILE_BATCH,
    ) -> None:
        self.db = db
        self._sources = tuple(sources) if sources is not None else default_sources()
        self._sweep_batch = sweep_batch
        self._file_batch = file_batch
        self._lock = threading.Lock()
        self._cleaners: dict[str, Callable[[GCStats], None]] = {}
        #: Stores to clean at the next collection whatever it sweeps.
        self._pending: set[str] = set()
        #: Test hook: called between the mark and the sweep.
        self.after_mark: Callable[[], None] | None = None

    # --- wiring --------------------------------------------------------------------------

    def register_mutation_callback(self, fn: Callable[[bool], None]) -> None:
        self.db.register_mutation_callback(fn)

    def register_cleaner(self, name: str, fn: Callable[[GCStats], None]) -> None:
        """Have ``fn`` clean the store ``name`` when it may hold garbage, and at the next
        collection in any case (for what a crash may have left)."""
        with self._lock:
            self._cleaners[name] = fn
            self._pending.add(name)

    def add_content_store(self, store: ContentStore) -> None:
        """Clean ``store``'s backend of blobs and ingests no namespace records."""
        self.register_cleaner("content", lambda stats: self.clean_content(store, stats))

    # --- collection ----------------------------------------------------------------------

    def garbage_collect(self) -> GCStats:
        """Collect once; returns what it did. Calls are serialized."""
        with self._lock:
            stats = GCStats()
            _, dirty = self.db.take_dirty()
            sources = self._active_sources()
            t0 = time.perf_counter()
            self._install_triggers(sources)
            try:
                with self.db.snapshot() as rtx:
                    visited: set[Node] = set()
                    marked = self._mark(rtx, sources, visited)
                    candidates: list[Node] = []
                    for src in sources:
                        src.scan_all(rtx, lambda n: None if n in marked else candidates.append(n))
                stats.mark = time.perf_counter() - t0
                if self.after_mark is not None:
                    self.after_mark()
                t1 = time.perf_counter()
                dirty |= self._sweep(sources, candidates, marked, visited, stats)
                stats.sweep = time.perf_counter() - t1
            finally:
                self._remove_triggers(sources)
            t2 = time.perf_counter()
            self._clean(dirty | self._pending, stats)
            stats.stores = time.perf_counter() - t2
        log.debug(
            "gc: mark %.1fms, sweep %.1fms, stores %.1fms, removed %s",
            stats.mark * 1e3,
            stats.sweep * 1e3,
            stats.stores * 1e3,
            stats.removed or "nothing",
        )
        return stats

    def _active_sources(self) -> tuple[Source, ...]:
        with self.db.view() as tx:
            tables = {row[0] for row in tx.execute("SELECT name FROM sqlite_master")}
        return tuple(s for s in self._sources if all(t in tables for t in s.tables))

    @staticmethod
    def _refs(tx: sqlite3.Connection, by_type: dict[int, Source]) -> Callable[[Node], list[Node]]:
        def refs(node: Node) -> list[Node]:
            src = by_type.get(node.type)
            out: list[Node] = []
            if src is not None:
                src.references(tx, node, out.append)
            return out

        return refs

    def _mark(
        self, tx: sqlite3.Connection, sources: Sequence[Source], visited: set[Node]
    ) -> set[Node]:
        now = time.time_ns()
        roots: list[Node] = []
        for src in sources:
            src.scan_roots(tx, now, roots.append)
        by_type = {t: s for s in sources for t in s.types}
        return tricolor(roots, self._refs(tx, by_type), visited=visited)

    def _install_triggers(self, sources: Sequence[Source]) -> None:
        """Record, from now until the sweep ends, every node a write may make reachable."""
        with self.db.update() as tx:
            tx.execute(
                "CREATE TEMP TABLE IF NOT EXISTS gc_touched ("
                "type INTEGER NOT NULL, namespace TEXT NOT NULL, key TEXT NOT NULL, "
                "PRIMARY KEY (type, namespace, key))"
            )
            tx.execute("DELETE FROM temp.gc_touched")
            for src in sources:
                for trig in src.triggers:
                    for event in trig.events:
                        tx.execute(
                            f"CREATE TEMP TRIGGER IF NOT EXISTS {_trigger_name(trig, event)} "
                            f"AFTER {event} ON main.{trig.table} BEGIN "
                            "INSERT OR IGNORE INTO gc_touched (type, namespace, key) "
                            f"VALUES ({trig.type_sql}, {trig.namespace_sql}, {trig.key_sql}); "
                            "END"
                        )

    def _remove_triggers(self, sources: Sequence[Source]) -> None:
        with self.db.update() as tx:
            for src in sources:
                for trig in src.triggers:
                    for event in trig.events:
                        tx.execute(f"DROP TRIGGER IF EXISTS temp.{_trigger_name(trig, event)}")
            tx.execute("DELETE FROM temp.gc_touched")

    def _sweep(
        self,
        sources: Sequence[Source],
        candidates: list[Node],
        marked: set[Node],
        visited: set[Node],
        stats: GCStats,
    ) -> set[str]:
        """Remove the candidates still unreachable, a batch per write transaction."""
        dirty: set[str] = set()
        if not candidates:
            return dirty
        by_type = {t: s for s in sources for t in s.types}
        pos = 0
        while pos < len(candidates):
            with self.db.update() as tx:
                held = time.perf_counter()
                touched = [
                    Node(*row)
                    for row in tx.execute("SELECT type, namespace, key FROM temp.gc_touched")
                ]
                if touched:
                    tx.execute("DELETE FROM temp.gc_touched")
                    # a touched node is traced again, in the state as it is now
                    visited.difference_update(touched)
                    marked |= tricolor(touched, self._refs(tx, by_type), visited=visited)
                batch: dict[Source, list[Node]] = {}
                taken = 0
                while pos < len(candidates) and taken < self._sweep_batch:
                    node = candidates[pos]
                    pos += 1
                    if node in marked:
                        continue
                    src = by_type.get(node.type & RESOURCE_MAX)
                    if src is not None:
                        batch.setdefault(src, []).append(node)
                        taken += 1
                for src, nodes in batch.items():
                    dirty |= src.remove(tx, nodes)
                    for n in nodes:
                        stats.count(_NAMES.get(n.type, "other"))
                stats.longest_hold = max(stats.longest_hold, time.perf_counter() - held)
        return dirty

    def _clean(self, stores: set[str], stats: GCStats) -> None:
        pending: set[str] = set()
        for name in sorted(stores):
            fn = self._cleaners.get(name)
            if fn is None:
                pending.add(name)  # its store is not attached yet: clean it once it is
                continue
            try:
                fn(stats)
            except Exception:
                log.exception("gc: cleaning store %s failed", name)
                pending.add(name)
        self._pending = pending

    # --- the content store's backend ------------------------------------------------------

    def clean_content(self, store: ContentStore, stats: GCStats) -> None:
        """Delete blob files and ingest data that no namespace records.

        The candidates are found without locks; each batch is checked against the database
        again and deleted under the store's exclusive lock, so a commit or a new ingest that
        raced the scan keeps its data.
        """
        backend = store.backend
        with self.db.snapshot() as rtx:
            seen = {row[0] for row in rtx.execute("SELECT DISTINCT digest FROM blobs")}
            seen.update(
                row[0]
                for row in rtx.execute("SELECT DISTINCT expected FROM ingests WHERE expected != ''")
            )
            brefs = {row[0] for row in rtx.execute("SELECT bref FROM ingests")}
        blobs: list[str] = []
        backend.walk(lambda info: None if info.digest in seen else blobs.append(info.digest))
        status_refs = getattr(backend, "status_refs", None)
        refs = (
            list(status_refs())
            if callable(status_refs)
            else [s.ref for s in backend.list_statuses()]
        )
        refs = [r for r in refs if r not in brefs]
        for batch in _chunks(blobs, self._file_batch):
            with store.exclusive():
                held = time.perf_counter()
                keep = self._still_used(
                    batch,
                    "SELECT digest FROM blobs WHERE digest IN ({}) "
                    "UNION SELECT expected FROM ingests WHERE expected IN ({})",
                )
                for dgst in batch:
                    if dgst in keep:
                        continue
                    with contextlib.suppress(errdefs.NotFound):
                        backend.delete(dgst)
                        stats.count("content files")
                        log.debug("gc: removed blob file %s", dgst)
                stats.longest_hold = max(stats.longest_hold, time.perf_counter() - held)
        for batch in _chunks(refs, self._file_batch):
            with store.exclusive():
                held = time.perf_counter()
                keep = self._still_used(batch, "SELECT bref FROM ingests WHERE bref IN ({})")
                for ref in batch:
                    if ref in keep:
                        continue
                    with contextlib.suppress(errdefs.NotFound):
                        backend.abort(ref)
                        stats.count("ingest files")
                        log.debug("gc: removed ingest data %s", ref)
                stats.longest_hold = max(stats.longest_hold, time.perf_counter() - held)

    def _still_used(self, batch: Sequence[str], query: str) -> set[str]:
        marks = ", ".join("?" * len(batch))
        sql = query.format(*([marks] * query.count("{}")))
        with self.db.view() as tx:
            return {row[0] for row in tx.execute(sql, list(batch) * query.count("{}"))}


def _trigger_name(trig: Trigger, event: str) -> str:
    return f"gc_touch_{trig.table}_{event.lower()}"

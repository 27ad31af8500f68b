"""The SQLite database behind every metadata store."""

from __future__ import annotations

import logging
import sqlite3
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from pycontainerd import errdefs
from pycontainerd.metadata.migrations import MIGRATIONS

__all__ = ["DB", "NAMESPACE_HOLDINGS", "SCHEMA_VERSION", "register_holdings", "table_holdings"]

log = logging.getLogger(__name__)

#: The schema version this release writes: one per entry of ``MIGRATIONS``.
SCHEMA_VERSION: Final = len(MIGRATIONS)

#: What a namespace still holds, in containerd's words ("images", "snapshots on "x" snapshotter"):
#: each store registers one function, and a namespace that holds anything cannot be deleted.
NamespaceHoldings = Callable[[sqlite3.Connection, str], list[str]]
NAMESPACE_HOLDINGS: list[NamespaceHoldings] = []


def register_holdings(check: NamespaceHoldings) -> NamespaceHoldings:
    """Add a store's check of what a namespace holds (a decorator, or called directly)."""
    NAMESPACE_HOLDINGS.append(check)
    return check


def table_holdings(table: str, what: str) -> NamespaceHoldings:
    """The check for a table with a ``namespace`` column: ``what`` when a row names it."""

    def check(tx: sqlite3.Connection, namespace: str) -> list[str]:
        row = tx.execute(f"SELECT 1 FROM {table} WHERE namespace = ? LIMIT 1", (namespace,))
        return [what] if row.fetchone() is not None else []

    return check


class DB:
    """One SQLite database in WAL mode, shared by the metadata stores.

    ``update()`` runs a write transaction (``BEGIN IMMEDIATE``; rolled back on any exception),
    ``view()`` a read. Calls are serialized by a lock, so the object may be shared between the
    daemon's event loop and worker threads. ``snapshot()`` is a read on a connection of its own,
    outside that lock, for long reads (the garbage collector's mark) that must not stall others.

    As containerd's ``metadata.DB``, it counts deletions (``mark_dirty``, called by the stores
    inside the transaction that removes a reference) and tells every mutation callback, after
    each committed write, whether any deletion is pending collection.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o711)
            conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
        except (OSError, sqlite3.Error) as exc:
            raise errdefs.Unavailable(f"open metadata database {path}: {exc}") from exc
        self._conn = conn
        self._lock = threading.RLock()
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()
        self._dirty = 0
        self._dirty_stores: set[str] = set()
        self._callbacks: list[Callable[[bool], None]] = []
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise errdefs.Unavailable(
                    f"open metadata database {path}: journal mode is {mode}, WAL is required"
                )
            # FULL: a committed transaction survives a power cut, not only a crash.
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.Error as exc:
            conn.close()
            raise errdefs.Unavailable(f"open metadata database {path}: {exc}") from exc
        except BaseException:
            conn.close()
            raise

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        current = self.schema_version
        if current > SCHEMA_VERSION:
            raise errdefs.FailedPrecondition(
                f"open metadata database {self.path}: schema version {current} is newer than "
                f"this release supports ({SCHEMA_VERSION})"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            log.info("migrating metadata database %s to schema version %d", self.path, version)
            with self.update() as tx:
                for statement in _statements(MIGRATIONS[version - 1]):
                    tx.execute(statement)
                tx.execute(f"PRAGMA user_version = {version}")

    @contextmanager
    def update(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed when the block ends, rolled back if it raises.

        Mutation callbacks run after the commit, outside the lock.
        """
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            dirty = self._dirty > 0
            callbacks = tuple(self._callbacks)
        for fn in callbacks:
            try:
                fn(dirty)
            except Exception:
                log.exception("metadata mutation callback failed")

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction on a second, read-only connection, holding no lock of ``update``.

        It sees the database as committed when the block began, while writes go on (WAL).
        One snapshot at a time; the connection must be used from the calling thread only.
        """
        with self._reader_lock:
            conn = self._reader
            if conn is None:
                try:
                    conn = sqlite3.connect(
                        f"file:{urllib.parse.quote(str(self.path))}?mode=ro",
                        uri=True,
                        isolation_level=None,
                        check_same_thread=False,
                        timeout=30.0,
                    )
                except sqlite3.Error as exc:
                    raise errdefs.Unavailable(
                        f"open metadata database {self.path} for reading: {exc}"
                    ) from exc
                self._reader = conn
            conn.execute("BEGIN DEFERRED")
            try:
                # A deferred read begins at its first read: take the snapshot now.
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                yield conn
            finally:
                conn.execute("ROLLBACK")

    # --- garbage collection bookkeeping (containerd's dirty flags) -----------------------

    def mark_dirty(self, *stores: str) -> None:
        """Count a deletion that may leave garbage; ``stores`` names backends to clean
        (``content``, ``snapshots/<name>``). Call it inside the deleting transaction."""
        with self._lock:
            self._dirty += 1
            self._dirty_stores.update(stores)

    def take_dirty(self) -> tuple[int, set[str]]:
        """The deletions counted and the stores marked since the last call; resets both."""
        with self._lock:
            dirty, stores = self._dirty, self._dirty_stores
            self._dirty, self._dirty_stores = 0, set()
            return dirty, stores

    @property
    def dirty(self) -> int:
        """Deletions counted since the garbage collector last took them."""
        return self._dirty

    def register_mutation_callback(self, fn: Callable[[bool], None]) -> None:
        """Call ``fn(dirty)`` after every committed write (containerd's
        ``RegisterMutationCallback``); ``dirty`` says whether deletions await collection."""
        with self._lock:
            self._callbacks.append(fn)

    @contextmanager
    def view(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: a consistent snapshot for the duration of the block."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN DEFERRED")
            try:
                yield conn
            finally:
                conn.execute("ROLLBACK")

    def close(self) -> None:
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
        with self._lock:
            self._conn.close()


def _statements(script: str) -> Iterator[str]:
    """Split a migration script into statements, keeping each complete one whole."""
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                yield buf.strip()
            buf = ""
    if buf.strip():
        yield buf.strip()

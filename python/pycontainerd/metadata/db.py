"""The SQLite database behind every metadata store."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from pycontainerd import errdefs
from pycontainerd.metadata.migrations import MIGRATIONS

__all__ = ["DB", "SCHEMA_VERSION"]

log = logging.getLogger(__name__)

#: The schema version this release writes: one per entry of ``MIGRATIONS``.
SCHEMA_VERSION: Final = len(MIGRATIONS)

#: Tables holding namespaced objects, with the word containerd uses for them when a namespace
#: cannot be deleted because it still holds some. Stores add theirs as their migrations land.
NAMESPACED_TABLES: dict[str, str] = {}


class DB:
    """One SQLite database in WAL mode, shared by the metadata stores.

    ``update()`` runs a write transaction (``BEGIN IMMEDIATE``; rolled back on any exception),
    ``view()`` a read. Calls are serialized by a lock, so the object may be shared between the
    daemon's event loop and worker threads.
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
        """A write transaction: committed when the block ends, rolled back if it raises."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

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

"""A snapshotter's own records (containerd's ``snapshots/storage`` metastore), in SQLite.

One database per snapshotter, at ``<root>/metadata.db``: each snapshot's key, parent, kind,
labels, times, and the numeric id naming its directory on disk. Ids are never reused, so a
directory left by a crash can be told from a live one (``cleanup``).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pycontainerd import errdefs
from pycontainerd.snapshots import Info, Kind, Usage

__all__ = ["MetaStore", "Record"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    key        TEXT NOT NULL UNIQUE,
    parent     TEXT NOT NULL DEFAULT '',
    kind       TEXT NOT NULL,
    labels     TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    size       INTEGER NOT NULL DEFAULT 0,
    inodes     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS snapshots_by_parent ON snapshots (parent);
"""

_COLUMNS = "id, key, parent, kind, labels, created_at, updated_at, size, inodes"


@dataclass(frozen=True)
class Record:
    """One snapshot as stored, with the ids of its parents (nearest first)."""

    id: int
    info: Info
    usage: Usage
    parent_ids: tuple[int, ...] = ()


def _record(row: tuple[object, ...]) -> tuple[int, Info, Usage]:
    id_, key, parent, kind, labels, created, updated, size, inodes = row
    info = Info(
        name=str(key),
        kind=Kind(str(kind)),
        parent=str(parent),
        labels=json.loads(str(labels)),
        created_at=int(str(created)),
        updated_at=int(str(updated)),
    )
    return int(str(id_)), info, Usage(int(str(size)), int(str(inodes)))


class MetaStore:
    """The records of one snapshotter; every change a transaction."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o711)
        self.path = path
        self._conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        self._lock = threading.RLock()
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(_SCHEMA)

    @contextmanager
    def transaction(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        """A transaction, rolled back if the block raises (so may be the file work in it)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN DEFERRED")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT" if write else "ROLLBACK")

    def get(self, tx: sqlite3.Connection, key: str) -> Record:
        row = tx.execute(f"SELECT {_COLUMNS} FROM snapshots WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise errdefs.NotFound(f'snapshot "{key}": not found')
        id_, info, usage = _record(row)
        parents: list[int] = []
        parent = info.parent
        while parent:
            prow = tx.execute(
                "SELECT id, parent FROM snapshots WHERE key = ?", (parent,)
            ).fetchone()
            if prow is None:
                raise errdefs.NotFound(f'parent snapshot "{parent}" of "{key}": not found')
            parents.append(int(prow[0]))
            parent = str(prow[1])
        return Record(id_, info, usage, tuple(parents))

    def all(self, tx: sqlite3.Connection) -> list[Info]:
        rows = tx.execute(f"SELECT {_COLUMNS} FROM snapshots ORDER BY key").fetchall()
        return [_record(row)[1] for row in rows]

    def ids(self, tx: sqlite3.Connection) -> set[int]:
        return {int(row[0]) for row in tx.execute("SELECT id FROM snapshots")}

    def create(
        self,
        tx: sqlite3.Connection,
        kind: Kind,
        key: str,
        parent: str,
        labels: Mapping[str, str],
    ) -> Record:
        if not key:
            raise errdefs.InvalidArgument("snapshot key must not be empty")
        if parent:
            prow = tx.execute("SELECT kind FROM snapshots WHERE key = ?", (parent,)).fetchone()
            if prow is None:
                raise errdefs.NotFound(f'parent snapshot "{parent}": not found')
            if prow[0] != Kind.COMMITTED:
                raise errdefs.InvalidArgument(f'parent "{parent}" is not a committed snapshot')
        now = time.time_ns()
        try:
            tx.execute(
                "INSERT INTO snapshots (key, parent, kind, labels, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (key, parent, kind.value, json.dumps(dict(labels), sort_keys=True), now, now),
            )
        except sqlite3.IntegrityError:
            raise errdefs.AlreadyExists(f'snapshot "{key}": already exists') from None
        return self.get(tx, key)

    def commit(
        self,
        tx: sqlite3.Connection,
        name: str,
        key: str,
        labels: Mapping[str, str],
        usage: Usage,
    ) -> None:
        """Turn the active ``key`` into the committed ``name``, keeping its id (and directory)."""
        if not name:
            raise errdefs.InvalidArgument("snapshot name must not be empty")
        rec = self.get(tx, key)
        if rec.info.kind != Kind.ACTIVE:
            raise errdefs.FailedPrecondition(f'commit snapshot "{key}": it is not active')
        now = time.time_ns()
        try:
            tx.execute(
                "UPDATE snapshots SET key = ?, kind = ?, labels = ?, created_at = ?, "
                "updated_at = ?, size = ?, inodes = ? WHERE id = ?",
                (
                    name,
                    Kind.COMMITTED.value,
                    json.dumps(dict(labels), sort_keys=True),
                    now,
                    now,
                    usage.size,
                    usage.inodes,
                    rec.id,
                ),
            )
        except sqlite3.IntegrityError:
            raise errdefs.AlreadyExists(f'snapshot "{name}": already exists') from None

    def set_usage(self, tx: sqlite3.Connection, id_: int, usage: Usage) -> None:
        """Record the usage of the snapshot ``id_`` (measured after its commit)."""
        tx.execute(
            "UPDATE snapshots SET size = ?, inodes = ? WHERE id = ?",
            (usage.size, usage.inodes, id_),
        )

    def set_parent(self, tx: sqlite3.Connection, key: str, parent: str) -> None:
        """Give the active ``key`` the committed ``parent``."""
        prow = tx.execute("SELECT kind FROM snapshots WHERE key = ?", (parent,)).fetchone()
        if prow is None:
            raise errdefs.NotFound(f'parent snapshot "{parent}": not found')
        if prow[0] != Kind.COMMITTED:
            raise errdefs.InvalidArgument(f'parent "{parent}" is not a committed snapshot')
        tx.execute("UPDATE snapshots SET parent = ? WHERE key = ?", (parent, key))

    def update_labels(self, tx: sqlite3.Connection, key: str, labels: Mapping[str, str]) -> Info:
        rec = self.get(tx, key)
        tx.execute(
            "UPDATE snapshots SET labels = ?, updated_at = ? WHERE id = ?",
            (json.dumps(dict(labels), sort_keys=True), time.time_ns(), rec.id),
        )
        return self.get(tx, key).info

    def remove(self, tx: sqlite3.Connection, key: str) -> Record:
        rec = self.get(tx, key)
        child = tx.execute("SELECT key FROM snapshots WHERE parent = ? LIMIT 1", (key,)).fetchone()
        if child is not None:
            raise errdefs.FailedPrecondition(
                f'remove snapshot "{key}": cannot remove snapshot with child "{child[0]}"'
            )
        tx.execute("DELETE FROM snapshots WHERE id = ?", (rec.id,))
        return rec

    def close(self) -> None:
        with self._lock:
            self._conn.close()

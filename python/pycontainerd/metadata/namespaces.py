"""Namespaces: the top-level partition of every other record."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping, Sequence

from pycontainerd import errdefs, fieldpath, identifiers
from pycontainerd.metadata.db import DB, NAMESPACE_HOLDINGS
from pycontainerd.namespaces import Namespace

__all__ = ["Namespace", "NamespaceStore", "ensure_namespace"]


def _now_ns() -> int:
    return time.time_ns()


def _labels(tx: sqlite3.Connection, name: str) -> dict[str, str]:
    rows = tx.execute(
        "SELECT key, value FROM namespace_labels WHERE namespace = ? ORDER BY key", (name,)
    )
    return dict(rows)


def _exists(tx: sqlite3.Connection, name: str) -> bool:
    row = tx.execute("SELECT 1 FROM namespaces WHERE name = ?", (name,)).fetchone()
    return row is not None


def _validate_labels(labels: Mapping[str, str]) -> None:
    fieldpath.validate_labels(labels, prefix="namespace.Labels")


def ensure_namespace(tx: sqlite3.Connection, name: str) -> None:
    """Create ``name`` inside ``tx`` if it does not exist, as containerd does on first use."""
    identifiers.validate(name)
    now = _now_ns()
    tx.execute(
        "INSERT OR IGNORE INTO namespaces (name, created_at, updated_at) VALUES (?, ?, ?)",
        (name, now, now),
    )


class NamespaceStore:
    """containerd's ``namespaces.Store`` over the metadata database."""

    def __init__(self, db: DB) -> None:
        self._db = db

    def create(self, name: str, labels: Mapping[str, str] | None = None) -> Namespace:
        identifiers.validate(name)
        labels = dict(labels or {})
        _validate_labels(labels)
        now = _now_ns()
        with self._db.update() as tx:
            try:
                tx.execute(
                    "INSERT INTO namespaces (name, created_at, updated_at) VALUES (?, ?, ?)",
                    (name, now, now),
                )
            except sqlite3.IntegrityError:
                raise errdefs.AlreadyExists(f'namespace "{name}": already exists') from None
            tx.executemany(
                "INSERT INTO namespace_labels (namespace, key, value) VALUES (?, ?, ?)",
                [(name, k, v) for k, v in labels.items() if v],
            )
        return Namespace(name, {k: v for k, v in labels.items() if v})

    def get(self, name: str) -> Namespace:
        with self._db.view() as tx:
            if not _exists(tx, name):
                raise errdefs.NotFound(f'namespace "{name}": not found')
            return Namespace(name, _labels(tx, name))

    def list(self) -> list[Namespace]:
        with self._db.view() as tx:
            names = [row[0] for row in tx.execute("SELECT name FROM namespaces ORDER BY name")]
            labels: dict[str, dict[str, str]] = {name: {} for name in names}
            for ns, key, value in tx.execute(
                "SELECT namespace, key, value FROM namespace_labels ORDER BY namespace, key"
            ):
                labels[ns][key] = value
        return [Namespace(name, labels[name]) for name in names]

    def update(self, name: str, labels: Mapping[str, str], paths: Sequence[str] = ()) -> Namespace:
        """Update labels: all of them without ``paths``, else only ``labels.KEY`` paths."""
        with self._db.update() as tx:
            if not _exists(tx, name):
                raise errdefs.NotFound(f'namespace "{name}": not found')
            current = _labels(tx, name)
            updated = fieldpath.apply_label_updates(
                current, labels, paths, kind="namespace", name=name
            )
            tx.execute("DELETE FROM namespace_labels WHERE namespace = ?", (name,))
            tx.executemany(
                "INSERT INTO namespace_labels (namespace, key, value) VALUES (?, ?, ?)",
                [(name, k, v) for k, v in updated.items()],
            )
            tx.execute("UPDATE namespaces SET updated_at = ? WHERE name = ?", (_now_ns(), name))
        return Namespace(name, updated)

    def delete(self, name: str) -> None:
        """Delete an empty namespace; one that still holds objects is refused."""
        with self._db.update() as tx:
            if not _exists(tx, name):
                raise errdefs.NotFound(f'namespace "{name}": not found')
            holding = [what for check in NAMESPACE_HOLDINGS for what in check(tx, name)]
            if holding:
                raise errdefs.FailedPrecondition(
                    f'namespace "{name}" must be empty, but it still has ' + ", ".join(holding)
                )
            tx.execute("DELETE FROM namespaces WHERE name = ?", (name,))

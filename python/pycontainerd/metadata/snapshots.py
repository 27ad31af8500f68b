"""Snapshots per namespace over the backend snapshotters (containerd's ``metadata/snapshot.go``).

Each namespace has its own keys; a key maps to a backend key ``<namespace>/<seq>/<key>``, so
two namespaces may use the same key (and the same chain IDs) without meeting. Labels live in
the metadata database (only ``containerd.io/snapshot/`` labels are passed down); the kind and
the mounts come from the backend. The backend's call runs inside the metadata transaction, so a
failure on either side leaves neither changed.

Garbage collection: the collector's ``SnapshotSource`` sweeps records no root reaches; then
:meth:`SnapshotStore.clean` removes from each backend the snapshots no namespace records,
children first, and deletes their files after the database lock is released.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Mapping
from typing import Final

from pycontainerd import errdefs, fieldpath, filters
from pycontainerd.metadata.db import DB, register_holdings
from pycontainerd.metadata.leases import add_resource_tx, remove_resource_tx
from pycontainerd.metadata.namespaces import ensure_namespace
from pycontainerd.mount import Mount
from pycontainerd.snapshots import (
    INHERITED_LABEL_PREFIX,
    Info,
    Kind,
    Snapshotter,
    Usage,
    WalkFunc,
    adapt_info,
)

__all__ = ["LABEL_REBASE", "NamespacedSnapshotter", "SnapshotStore"]

#: A commit label naming the parent to commit a parentless snapshot onto (layers unpacked in
#: parallel); the snapshotter must have the ``rebase`` capability.
LABEL_REBASE: Final = "pycontainerd.io/snapshot.rebase"

log = logging.getLogger(__name__)

_COLUMNS = "key, backend_key, parent, labels, created_at, updated_at"


def _inherited(labels: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if k.startswith(INHERITED_LABEL_PREFIX)}


@register_holdings
def _holdings(tx: sqlite3.Connection, namespace: str) -> list[str]:
    """A namespace holding snapshots cannot be deleted; containerd names each snapshotter."""
    rows = tx.execute(
        "SELECT DISTINCT snapshotter FROM snapshots WHERE namespace = ? ORDER BY snapshotter",
        (namespace,),
    )
    return [f'snapshots on "{name}" snapshotter' for (name,) in rows]


class SnapshotStore:
    """The namespaced view of every backend snapshotter, by name."""

    def __init__(self, db: DB, snapshotters: Mapping[str, Snapshotter]) -> None:
        self._db = db
        self._snapshotters = dict(snapshotters)

    @property
    def names(self) -> list[str]:
        return list(self._snapshotters)

    def namespaced(
        self, namespace: str, snapshotter: str, *, lease: str | None = None
    ) -> NamespacedSnapshotter:
        """``snapshotter`` as seen from ``namespace``; what it creates joins ``lease``."""
        if not snapshotter:
            raise errdefs.InvalidArgument("snapshotter argument missing")
        backend = self._snapshotters.get(snapshotter)
        if backend is None:
            raise errdefs.InvalidArgument(f"snapshotter not loaded: {snapshotter}")
        return NamespacedSnapshotter(self._db, namespace, snapshotter, backend, lease=lease)

    def clean(self) -> int:
        """Remove from every backend what no namespace records; the count removed."""
        removed = 0
        for name, backend in self._snapshotters.items():
            with self._db.update() as tx:
                live = {
                    str(row[0])
                    for row in tx.execute(
                        "SELECT backend_key FROM snapshots WHERE snapshotter = ?", (name,)
                    )
                }
                infos: list[Info] = []
                backend.walk(infos.append)
                doomed = {i.name: i.parent for i in infos if i.name not in live}
                # children first: a parent goes once none of its children is left
                while doomed:
                    parents = set(doomed.values())
                    leaves = [k for k in doomed if k not in parents]
                    if not leaves:  # a cycle cannot be; refuse to loop
                        log.error("snapshots %s: parent cycle among %s", name, sorted(doomed))
                        break
                    for key in leaves:
                        _forget(backend, key)
                        del doomed[key]
                        removed += 1
            backend.cleanup()
        return removed

    def close(self) -> None:
        for backend in self._snapshotters.values():
            backend.close()


def _forget(backend: Snapshotter, key: str) -> None:
    """Remove ``key`` from ``backend``, leaving the files to its ``cleanup`` when it can."""
    forget = getattr(backend, "forget", None)
    if callable(forget):
        forget(key)
    else:
        backend.remove(key)


class NamespacedSnapshotter:
    """One backend snapshotter as seen from one namespace: a :class:`Snapshotter` itself."""

    def __init__(
        self,
        db: DB,
        namespace: str,
        name: str,
        backend: Snapshotter,
        *,
        lease: str | None = None,
    ) -> None:
        self._db = db
        self.namespace = namespace
        self.name = name
        self._backend = backend
        self.lease = lease

    def _lease_add(self, tx: sqlite3.Connection, key: str) -> None:
        """A snapshot made under a lease belongs to it (containerd's ``addSnapshotLease``)."""
        if self.lease:
            add_resource_tx(tx, self.namespace, self.lease, f"snapshots/{self.name}", key)

    def _lease_remove(self, tx: sqlite3.Connection, key: str) -> None:
        if self.lease:
            remove_resource_tx(tx, self.namespace, self.lease, f"snapshots/{self.name}", key)

    def _row(
        self, tx: sqlite3.Connection, key: str
    ) -> tuple[str, str, str, dict[str, str], int, int]:
        row = tx.execute(
            f"SELECT {_COLUMNS} FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key = ?",
            (self.namespace, self.name, key),
        ).fetchone()
        if row is None:
            raise errdefs.NotFound(f'snapshot "{key}": not found')
        k, bkey, parent, labels, created, updated = row
        return str(k), str(bkey), str(parent), json.loads(labels), int(created), int(updated)

    def _info(self, tx: sqlite3.Connection, key: str) -> Info:
        k, bkey, parent, labels, created, updated = self._row(tx, key)
        kind = self._backend.stat(bkey).kind
        return Info(k, kind, parent, labels, created, updated)

    def _backend_key(self, key: str) -> str:
        with self._db.view() as tx:
            return self._row(tx, key)[1]

    # --- Snapshotter ---------------------------------------------------------------------

    def stat(self, key: str) -> Info:
        with self._db.view() as tx:
            return self._info(tx, key)

    def update(self, info: Info, *fieldpaths: str) -> Info:
        if not info.name:
            raise errdefs.InvalidArgument("snapshot name is required for update")
        with self._db.update() as tx:
            _, _, _, current, _, _ = self._row(tx, info.name)
            labels = fieldpath.apply_label_updates(
                current, info.labels, fieldpaths, kind="snapshot", name=info.name
            )
            tx.execute(
                "UPDATE snapshots SET labels = ?, updated_at = ? "
                "WHERE namespace = ? AND snapshotter = ? AND key = ?",
                (
                    json.dumps(labels, sort_keys=True),
                    time.time_ns(),
                    self.namespace,
                    self.name,
                    info.name,
                ),
            )
            return self._info(tx, info.name)

    def usage(self, key: str) -> Usage:
        return self._backend.usage(self._backend_key(key))

    def mounts(self, key: str) -> list[Mount]:
        return self._backend.mounts(self._backend_key(key))

    def prepare(
        self, key: str, parent: str = "", *, labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        return self._create(Kind.ACTIVE, key, parent, labels or {})

    def view(
        self, key: str, parent: str = "", *, labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        return self._create(Kind.VIEW, key, parent, labels or {})

    def _create(self, kind: Kind, key: str, parent: str, labels: Mapping[str, str]) -> list[Mount]:
        if not key:
            raise errdefs.InvalidArgument("snapshot key must not be empty")
        fieldpath.validate_labels(labels, prefix="snapshot.Labels")
        now = time.time_ns()
        with self._db.update() as tx:
            ensure_namespace(tx, self.namespace)
            bparent = ""
            if parent:
                try:
                    bparent = self._row(tx, parent)[1]
                except errdefs.NotFound:
                    raise errdefs.NotFound(f'parent snapshot "{parent}": not found') from None
            bkey = f"{self.namespace}/{time.time_ns()}/{key}"
            try:
                tx.execute(
                    "INSERT INTO snapshots (namespace, snapshotter, key, backend_key, parent, "
                    "labels, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        self.namespace,
                        self.name,
                        key,
                        bkey,
                        parent,
                        json.dumps(dict(labels), sort_keys=True),
                        now,
                        now,
                    ),
                )
            except sqlite3.IntegrityError:
                raise errdefs.AlreadyExists(f'snapshot "{key}": already exists') from None
            self._lease_add(tx, key)
            inherited = _inherited(labels)
            if kind == Kind.ACTIVE:
                return self._backend.prepare(bkey, bparent, labels=inherited)
            return self._backend.view(bkey, bparent, labels=inherited)

    def commit(self, name: str, key: str, *, labels: Mapping[str, str] | None = None) -> None:
        """containerd's ``Commit``; with the label :data:`LABEL_REBASE` naming a committed
        snapshot, a snapshot prepared without a parent is committed on top of that one (on a
        snapshotter with the ``rebase`` capability; the label is not kept)."""
        if not name:
            raise errdefs.InvalidArgument("snapshot name must not be empty")
        labels = dict(labels or {})
        rebase = labels.pop(LABEL_REBASE, "")
        fieldpath.validate_labels(labels, prefix="snapshot.Labels")
        now = time.time_ns()
        with self._db.update() as tx:
            _, bkey, parent, _, _, _ = self._row(tx, key)
            if self._backend.stat(bkey).kind != Kind.ACTIVE:
                raise errdefs.FailedPrecondition(f'commit snapshot "{key}": it is not active')
            bparent = ""
            if rebase:
                if parent:
                    raise errdefs.FailedPrecondition(
                        f'commit snapshot "{key}" onto "{rebase}": it has parent "{parent}"'
                    )
                try:
                    bparent = self._row(tx, rebase)[1]
                except errdefs.NotFound:
                    raise errdefs.NotFound(f'parent snapshot "{rebase}": not found') from None
                parent = rebase
            nbkey = f"{self.namespace}/{time.time_ns()}/{name}"
            try:
                tx.execute(
                    "INSERT INTO snapshots (namespace, snapshotter, key, backend_key, parent, "
                    "labels, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        self.namespace,
                        self.name,
                        name,
                        nbkey,
                        parent,
                        json.dumps(labels, sort_keys=True),
                        now,
                        now,
                    ),
                )
            except sqlite3.IntegrityError:
                raise errdefs.AlreadyExists(f'snapshot "{name}": already exists') from None
            tx.execute(
                "DELETE FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key = ?",
                (self.namespace, self.name, key),
            )
            self._lease_remove(tx, key)
            self._lease_add(tx, name)
            if rebase:
                commit_onto = getattr(self._backend, "commit_onto", None)
                if not callable(commit_onto) or not getattr(self._backend, "can_rebase", False):
                    raise errdefs.NotImplemented(
                        f'commit snapshot "{key}" onto "{rebase}": '
                        f'snapshotter "{self.name}" cannot rebase'
                    )
                commit_onto(nbkey, bkey, bparent, labels=_inherited(labels))
            else:
                self._backend.commit(nbkey, bkey, labels=_inherited(labels))

    def remove(self, key: str) -> None:
        with self._db.update() as tx:
            _, bkey, _, _, _, _ = self._row(tx, key)
            child = tx.execute(
                "SELECT key FROM snapshots WHERE namespace = ? AND snapshotter = ? AND parent = ? "
                "LIMIT 1",
                (self.namespace, self.name, key),
            ).fetchone()
            if child is not None:
                raise errdefs.FailedPrecondition(
                    f'remove snapshot "{key}": cannot remove snapshot with child "{child[0]}"'
                )
            tx.execute(
                "DELETE FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key = ?",
                (self.namespace, self.name, key),
            )
            self._lease_remove(tx, key)
            _forget(self._backend, bkey)
            self._db.mark_dirty()  # its parents may now be garbage
        self._backend.cleanup()

    def walk(self, fn: WalkFunc, *filter_strings: str) -> None:
        match = filters.parse(*filter_strings)
        with self._db.view() as tx:
            keys = [
                str(row[0])
                for row in tx.execute(
                    "SELECT key FROM snapshots WHERE namespace = ? AND snapshotter = ? "
                    "ORDER BY key",
                    (self.namespace, self.name),
                )
            ]
            infos = [self._info(tx, key) for key in keys]
        for info in infos:
            if match.match(adapt_info(info)):
                fn(info)

    def cleanup(self) -> None:
        self._backend.cleanup()

    def close(self) -> None:
        """The backend is shared: closing one namespace's view leaves it open."""

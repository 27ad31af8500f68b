"""Leases over the metadata database: containerd's ``metadata/leases.go``.

``leases`` holds one row per lease and namespace (labels as JSON, creation time);
``lease_resources`` the objects each holds, by containerd's resource type (``content``,
``ingests``, ``snapshots/<snapshotter>``) and id. A resource need not exist to be added: a
lease may be taken before the object it protects is written.

Leases do not keep a namespace from being deleted (containerd's ``listNs`` does not look at
them); they go with it. Deleting a lease, or a resource from one, marks the database dirty so
the garbage collector looks for what it no longer holds.

The ``tx`` helpers are for the stores that write under a lease (content, later snapshots): in
their own transaction they add what they make to the lease the call names.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from pycontainerd import errdefs, fieldpath, filters
from pycontainerd.leases import (
    Lease,
    Manager,
    Resource,
    adapt_lease,
    parse_resource,
    random_id,
    validate_id,
)
from pycontainerd.metadata.db import DB
from pycontainerd.metadata.namespaces import ensure_namespace

__all__ = [
    "GCWaiter",
    "LeaseStore",
    "NamespacedLeases",
    "add_resource_tx",
    "lease_exists",
    "remove_resource_tx",
]


class GCWaiter(Protocol):
    """What a synchronous delete waits on: the garbage collection scheduler."""

    def schedule_and_wait(self, timeout: float | None = None) -> object: ...


def lease_exists(tx: sqlite3.Connection, namespace: str, lease: str) -> bool:
    row = tx.execute(
        "SELECT 1 FROM leases WHERE namespace = ? AND id = ?", (namespace, lease)
    ).fetchone()
    return row is not None


def add_resource_tx(
    tx: sqlite3.Connection, namespace: str, lease: str, rtype: str, rid: str
) -> None:
    """Add a resource to ``lease`` inside ``tx``; NotFound when the lease does not exist."""
    if not lease_exists(tx, namespace, lease):
        raise _not_found(lease)
    tx.execute(
        "INSERT OR IGNORE INTO lease_resources (namespace, lease, type, id) VALUES (?, ?, ?, ?)",
        (namespace, lease, rtype, rid),
    )


def remove_resource_tx(
    tx: sqlite3.Connection, namespace: str, lease: str, rtype: str, rid: str
) -> bool:
    """Remove a resource from ``lease`` inside ``tx``; whether it held it."""
    cur = tx.execute(
        "DELETE FROM lease_resources WHERE namespace = ? AND lease = ? AND type = ? AND id = ?",
        (namespace, lease, rtype, rid),
    )
    return cur.rowcount > 0


def _row_to_lease(row: tuple[object, ...]) -> Lease:
    lid, labels, created = row
    return Lease(id=str(lid), labels=json.loads(str(labels)), created_at=int(str(created)))


def _not_found(lease_id: str) -> errdefs.NotFound:
    return errdefs.NotFound(f'lease "{lease_id}": not found')


class LeaseStore:
    """containerd's lease manager over the metadata database, per namespace."""

    def __init__(self, db: DB) -> None:
        self._db = db

    def namespaced(self, namespace: str, *, gc: GCWaiter | None = None) -> NamespacedLeases:
        """The :class:`~pycontainerd.leases.Manager` of ``namespace``."""
        return NamespacedLeases(self, namespace, gc=gc)

    def create(
        self, namespace: str, lease_id: str = "", labels: Mapping[str, str] | None = None
    ) -> Lease:
        """Create a lease; an empty id gets a random one, as containerd's service gives."""
        lease_id = lease_id or random_id()
        validate_id(lease_id)
        labels = dict(labels or {})
        fieldpath.validate_labels(labels, prefix="lease.Labels")
        now = time.time_ns()
        with self._db.update() as tx:
            ensure_namespace(tx, namespace)
            try:
                tx.execute(
                    "INSERT INTO leases (namespace, id, labels, created_at) VALUES (?, ?, ?, ?)",
                    (namespace, lease_id, json.dumps(labels, sort_keys=True), now),
                )
            except sqlite3.IntegrityError:
                raise errdefs.AlreadyExists(f'lease "{lease_id}": already exists') from None
        return Lease(id=lease_id, created_at=now, labels=labels)

    def get(self, namespace: str, lease_id: str) -> Lease:
        with self._db.view() as tx:
            row = tx.execute(
                "SELECT id, labels, created_at FROM leases WHERE namespace = ? AND id = ?",
                (namespace, lease_id),
            ).fetchone()
        if row is None:
            raise _not_found(lease_id)
        return _row_to_lease(row)

    def delete(self, namespace: str, lease_id: str) -> None:
        """Delete a lease and its hold on its resources; they await garbage collection."""
        with self._db.update() as tx:
            cur = tx.execute(
                "DELETE FROM leases WHERE namespace = ? AND id = ?", (namespace, lease_id)
            )
            if cur.rowcount == 0:
                raise _not_found(lease_id)
            self._db.mark_dirty()

    def list(self, namespace: str, *filter_strings: str) -> builtins.list[Lease]:
        match = filters.parse(*filter_strings)
        with self._db.view() as tx:
            rows = tx.execute(
                "SELECT id, labels, created_at FROM leases WHERE namespace = ? ORDER BY id",
                (namespace,),
            ).fetchall()
        leases = (_row_to_lease(row) for row in rows)
        return [lease for lease in leases if match.match(adapt_lease(lease))]

    def add_resource(self, namespace: str, lease_id: str, resource: Resource) -> None:
        rtype, rid = parse_resource(resource)
        with self._db.update() as tx:
            add_resource_tx(tx, namespace, lease_id, rtype, rid)

    def delete_resource(self, namespace: str, lease_id: str, resource: Resource) -> None:
        """Drop a resource from a lease; one it does not hold is not an error."""
        rtype, rid = parse_resource(resource)
        with self._db.update() as tx:
            if not lease_exists(tx, namespace, lease_id):
                raise _not_found(lease_id)
            remove_resource_tx(tx, namespace, lease_id, rtype, rid)
            self._db.mark_dirty()

    def list_resources(self, namespace: str, lease_id: str) -> builtins.list[Resource]:
        """Content first, then ingests, then snapshots by snapshotter, as containerd lists."""
        with self._db.view() as tx:
            if not lease_exists(tx, namespace, lease_id):
                raise _not_found(lease_id)
            rows = tx.execute(
                "SELECT type, id FROM lease_resources WHERE namespace = ? AND lease = ?",
                (namespace, lease_id),
            ).fetchall()

        def order(row: tuple[str, str]) -> tuple[int, str, str]:
            rtype, rid = row
            rank = {"content": 0, "ingests": 1}.get(rtype, 2)
            return rank, rtype, rid

        return [Resource(id=rid, type=rtype) for rtype, rid in sorted(rows, key=order)]


class NamespacedLeases:
    """One namespace's leases: a :class:`~pycontainerd.leases.Manager`.

    With ``gc``, ``delete(sync=True)`` waits for a garbage collection (containerd's leases
    service); without, ``sync`` is refused.
    """

    def __init__(self, store: LeaseStore, namespace: str, *, gc: GCWaiter | None = None) -> None:
        self._store = store
        self.namespace = namespace
        self._gc = gc

    def create(self, id: str = "", *, labels: Mapping[str, str] | None = None) -> Lease:
        return self._store.create(self.namespace, id, labels)

    def delete(self, id: str, *, sync: bool = False) -> None:
        self._store.delete(self.namespace, id)
        if sync:
            if self._gc is None:
                raise errdefs.FailedPrecondition(
                    f'delete lease "{id}": no garbage collector to wait for'
                )
            self._gc.schedule_and_wait()

    def list(self, *filters: str) -> builtins.list[Lease]:
        return self._store.list(self.namespace, *filters)

    def add_resource(self, id: str, resource: Resource) -> None:
        self._store.add_resource(self.namespace, id, resource)

    def delete_resource(self, id: str, resource: Resource) -> None:
        self._store.delete_resource(self.namespace, id, resource)

    def list_resources(self, id: str) -> builtins.list[Resource]:
        return self._store.list_resources(self.namespace, id)


if TYPE_CHECKING:

    def _is_a_manager(leases: NamespacedLeases) -> Manager:  # checked against the Protocol
        return leases

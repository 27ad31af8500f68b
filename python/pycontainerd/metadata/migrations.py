"""Forward-only schema migrations; ``PRAGMA user_version`` records the one applied last.

A migration is appended, never edited: a store written by an older release is brought forward
step by step, each step in its own transaction.
"""

from __future__ import annotations

from typing import Final

__all__ = ["MIGRATIONS"]

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: namespaces and their labels.
    """
    CREATE TABLE namespaces (
        name       TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE namespace_labels (
        namespace TEXT NOT NULL REFERENCES namespaces(name) ON DELETE CASCADE,
        key       TEXT NOT NULL,
        value     TEXT NOT NULL,
        PRIMARY KEY (namespace, key)
    ) WITHOUT ROWID;
    """,
    # 2: images, by name within a namespace.
    """
    CREATE TABLE images (
        namespace   TEXT NOT NULL REFERENCES namespaces(name),
        name        TEXT NOT NULL,
        media_type  TEXT NOT NULL,
        digest      TEXT NOT NULL,
        size        INTEGER NOT NULL,
        annotations TEXT NOT NULL DEFAULT '{}',
        labels      TEXT NOT NULL DEFAULT '{}',
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL,
        PRIMARY KEY (namespace, name)
    ) WITHOUT ROWID;
    CREATE INDEX images_by_digest ON images (digest);
    """,
    # 3: content: the blobs each namespace may see, and its ingests in progress.
    """
    CREATE TABLE blobs (
        namespace  TEXT NOT NULL REFERENCES namespaces(name),
        digest     TEXT NOT NULL,
        size       INTEGER NOT NULL,
        labels     TEXT NOT NULL DEFAULT '{}',
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (namespace, digest)
    ) WITHOUT ROWID;
    CREATE INDEX blobs_by_digest ON blobs (digest);
    CREATE TABLE ingests (
        namespace  TEXT NOT NULL REFERENCES namespaces(name) ON DELETE CASCADE,
        ref        TEXT NOT NULL,
        bref       TEXT NOT NULL UNIQUE,
        expected   TEXT NOT NULL DEFAULT '',
        expires_at INTEGER,
        PRIMARY KEY (namespace, ref)
    ) WITHOUT ROWID;
    """,
    # 4: leases and the resources each holds (content, ingests, snapshots/<snapshotter>).
    """
    CREATE TABLE leases (
        namespace  TEXT NOT NULL REFERENCES namespaces(name) ON DELETE CASCADE,
        id         TEXT NOT NULL,
        labels     TEXT NOT NULL DEFAULT '{}',
        created_at INTEGER NOT NULL,
        PRIMARY KEY (namespace, id)
    ) WITHOUT ROWID;
    CREATE TABLE lease_resources (
        namespace TEXT NOT NULL,
        lease     TEXT NOT NULL,
        type      TEXT NOT NULL,
        id        TEXT NOT NULL,
        PRIMARY KEY (namespace, lease, type, id),
        FOREIGN KEY (namespace, lease) REFERENCES leases(namespace, id) ON DELETE CASCADE
    ) WITHOUT ROWID;
    CREATE INDEX lease_resources_by_resource ON lease_resources (namespace, type, id);
    """,
    # 5: snapshots: each namespace's keys per snapshotter, mapped to the backend's keys.
    """
    CREATE TABLE snapshots (
        namespace   TEXT NOT NULL REFERENCES namespaces(name),
        snapshotter TEXT NOT NULL,
        key         TEXT NOT NULL,
        backend_key TEXT NOT NULL,
        parent      TEXT NOT NULL DEFAULT '',
        labels      TEXT NOT NULL DEFAULT '{}',
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL,
        PRIMARY KEY (namespace, snapshotter, key)
    ) WITHOUT ROWID;
    CREATE INDEX snapshots_by_parent ON snapshots (namespace, snapshotter, parent);
    CREATE UNIQUE INDEX snapshots_by_backend_key ON snapshots (snapshotter, backend_key);
    """,
    # 6: containers; every Any (spec, runtime options, extensions) as type URL and raw bytes.
    """
    CREATE TABLE containers (
        namespace            TEXT NOT NULL REFERENCES namespaces(name),
        id                   TEXT NOT NULL,
        runtime_name         TEXT NOT NULL,
        runtime_options_type TEXT,
        runtime_options      BLOB,
        spec_type            TEXT,
        spec                 BLOB,
        labels               TEXT NOT NULL DEFAULT '{}',
        image                TEXT NOT NULL DEFAULT '',
        snapshotter          TEXT NOT NULL DEFAULT '',
        snapshot_key         TEXT NOT NULL DEFAULT '',
        extensions           TEXT NOT NULL DEFAULT '{}',
        created_at           INTEGER NOT NULL,
        updated_at           INTEGER NOT NULL,
        PRIMARY KEY (namespace, id)
    ) WITHOUT ROWID;
    """,
)

"""The metadata store: SQLite in WAL mode, every change a transaction, every record namespaced."""

from pycontainerd.metadata.containers import ContainerStore
from pycontainerd.metadata.content import ContentStore, NamespacedContentStore
from pycontainerd.metadata.db import DB, SCHEMA_VERSION
from pycontainerd.metadata.gc import GarbageCollector, GCStats
from pycontainerd.metadata.images import Image, ImageStore
from pycontainerd.metadata.leases import LeaseStore, NamespacedLeases
from pycontainerd.metadata.namespaces import NamespaceStore
from pycontainerd.metadata.snapshots import NamespacedSnapshotter, SnapshotStore
from pycontainerd.namespaces import Namespace

__all__ = [
    "DB",
    "SCHEMA_VERSION",
    "ContainerStore",
    "ContentStore",
    "GCStats",
    "GarbageCollector",
    "Image",
    "ImageStore",
    "LeaseStore",
    "Namespace",
    "NamespaceStore",
    "NamespacedContentStore",
    "NamespacedLeases",
    "NamespacedSnapshotter",
    "SnapshotStore",
]

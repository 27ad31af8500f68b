"""Container records per namespace (containerd's ``metadata/containers.go``).

A record keeps every ``Any`` (the spec, the runtime options, each extension) as its type URL
and raw bytes, never decoded. Validation, update field paths, filters and messages are
containerd's:

- create: the id is an identifier, labels within size, the runtime name and the spec set, and a
  snapshot key only with its snapshotter; an extension key is never empty;
- update: with no field paths, ``labels``, ``spec``, ``extensions``, ``image`` and
  ``snapshotkey`` are replaced, and a different snapshotter or runtime name is refused (they are
  immutable); otherwise the paths are those five and ``labels.KEY`` / ``extensions.KEY``;
- filters: ``id``, ``runtime.name``, ``image``, ``labels.KEY``.

For garbage collection a container is a root: it holds its snapshot and whatever its
``containerd.io/gc.ref.*`` labels name (see :class:`pycontainerd.metadata.gc.ContainerSource`).
"""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from pycontainerd import errdefs, fieldpath, filters, identifiers
from pycontainerd.containers import AnyValue, Container, RuntimeInfo
from pycontainerd.metadata.db import DB, register_holdings, table_holdings
from pycontainerd.metadata.namespaces import ensure_namespace

__all__ = ["UPDATABLE_FIELDS", "ContainerStore", "adapt_container", "validate_container"]

register_holdings(table_holdings("containers", "containers"))

#: The fields an update may name (besides ``labels.KEY`` and ``extensions.KEY``), and the
#: ones replaced by an update without field paths.
UPDATABLE_FIELDS: tuple[str, ...] = ("labels", "spec", "extensions", "image", "snapshotkey")

_COLUMNS = (
    "id, runtime_name, runtime_options_type, runtime_options, spec_type, spec, labels, image, "
    "snapshotter, snapshot_key, extensions, created_at, updated_at"
)


def _any(type_url: object, value: object) -> AnyValue | None:
    if type_url is None or value is None:
        return None
    return AnyValue(str(type_url), bytes(value))  # type: ignore[call-overload]


def _encode_extensions(extensions: Mapping[str, AnyValue]) -> str:
    return json.dumps(
        {
            key: [ext.type_url, base64.b64encode(ext.value).decode("ascii")]
            for key, ext in extensions.items()
        },
        sort_keys=True,
    )


def _decode_extensions(text: str) -> dict[str, AnyValue]:
    raw: dict[str, list[str]] = json.loads(text)
    return {key: AnyValue(url, base64.b64decode(value)) for key, (url, value) in raw.items()}


def _row_to_container(row: Sequence[object]) -> Container:
    (
        cid,
        runtime_name,
        options_type,
        options,
        spec_type,
        spec,
        labels,
        image,
        snapshotter,
        snapshot_key,
        extensions,
        created,
        updated,
    ) = row
    return Container(
        id=str(cid),
        runtime=RuntimeInfo(str(runtime_name), _any(options_type, options)),
        spec=_any(spec_type, spec),
        labels=json.loads(str(labels)),
        image=str(image),
        snapshotter=str(snapshotter),
        snapshot_key=str(snapshot_key),
        created_at=int(str(created)),
        updated_at=int(str(updated)),
        extensions=_decode_extensions(str(extensions)),
    )


def adapt_container(container: Container) -> filters.Adaptor:
    """The filter adaptor of a container: ``id``, ``runtime.name``, ``image``, ``labels.KEY``."""

    def field_(path: Sequence[str]) -> tuple[str, bool]:
        if not path:
            return "", False
        head = path[0]
        if head == "id":
            return container.id, bool(container.id)
        if head == "runtime":
            if len(path) >= 2 and path[1] == "name":
                return container.runtime.name, bool(container.runtime.name)
            return "", False
        if head == "image":
            return container.image, bool(container.image)
        if head == "labels":
            return filters.check_map(path[1:], container.labels)
        return "", False

    return filters.AdaptorFunc(field_)


def validate_container(container: Container) -> None:
    """Raise :class:`errdefs.InvalidArgument` for a record containerd would refuse."""
    try:
        identifiers.validate(container.id)
    except errdefs.InvalidArgument as exc:
        raise errdefs.InvalidArgument(f"container.ID: {exc.message}") from None
    if any(not key for key in container.extensions):
        raise errdefs.InvalidArgument("container.Extension keys must not be zero-length")
    fieldpath.validate_labels(container.labels, prefix="containers.Labels")
    if not container.runtime.name:
        raise errdefs.InvalidArgument("container.Runtime.Name must be set")
    if container.spec is None:
        raise errdefs.InvalidArgument("container.Spec must be set")
    if container.snapshot_key and not container.snapshotter:
        raise errdefs.InvalidArgument(
            "container.Snapshotter must be set if container.SnapshotKey is set"
        )


def _apply_paths(current: Container, new: Container, paths: Sequence[str]) -> Container:
    labels = dict(current.labels)
    extensions = dict(current.extensions)
    for path in paths:
        if path.startswith("labels."):
            key = path[len("labels.") :]
            labels[key] = new.labels.get(key, "")
            continue
        if path.startswith("extensions."):
            key = path[len("extensions.") :]
            if key in new.extensions:
                extensions[key] = new.extensions[key]
            else:
                extensions.pop(key, None)
            continue
        if path == "labels":
            labels = dict(new.labels)
        elif path == "spec":
            current = replace(current, spec=new.spec)
        elif path == "extensions":
            extensions = dict(new.extensions)
        elif path == "image":
            current = replace(current, image=new.image)
        elif path == "snapshotkey":
            current = replace(current, snapshot_key=new.snapshot_key)
        else:
            raise fieldpath.update_error(path, name=new.id)
    return replace(current, labels=labels, extensions=extensions)


def _without_empty_labels(container: Container) -> Container:
    return replace(container, labels={k: v for k, v in container.labels.items() if v})


class ContainerStore:
    """containerd's ``containers.Store`` over the metadata database, per namespace."""

    def __init__(self, db: DB) -> None:
        self._db = db

    @staticmethod
    def _read(tx: sqlite3.Connection, namespace: str, cid: str) -> Container | None:
        row = tx.execute(
            f"SELECT {_COLUMNS} FROM containers WHERE namespace = ? AND id = ?",
            (namespace, cid),
        ).fetchone()
        return None if row is None else _row_to_container(row)

    def get(self, namespace: str, id: str) -> Container:
        """The container ``id``; :class:`errdefs.NotFound` when there is none."""
        with self._db.view() as tx:
            container = self._read(tx, namespace, id)
        if container is None:
            raise errdefs.NotFound(f'container "{id}" in namespace "{namespace}": not found')
        return container

    def list(self, namespace: str, filter_strings: Iterable[str] = ()) -> list[Container]:
        """The containers matching any of the filters (all without filters), by id."""
        match = filters.parse(*filter_strings)
        with self._db.view() as tx:
            rows = tx.execute(
                f"SELECT {_COLUMNS} FROM containers WHERE namespace = ? ORDER BY id",
                (namespace,),
            ).fetchall()
        containers = (_row_to_container(row) for row in rows)
        return [c for c in containers if match.match(adapt_container(c))]

    def create(self, namespace: str, container: Container) -> Container:
        """Record ``container``; its times are set here. Returns the record as stored."""
        try:
            validate_container(container)
        except errdefs.InvalidArgument as exc:
            raise errdefs.InvalidArgument(
                f"create container failed validation: {exc.message}"
            ) from None
        now = time.time_ns()
        container = _without_empty_labels(replace(container, created_at=now, updated_at=now))
        with self._db.update() as tx:
            ensure_namespace(tx, namespace)
            try:
                self._write(tx, namespace, container, insert=True)
            except sqlite3.IntegrityError:
                raise errdefs.AlreadyExists(f'container "{container.id}": already exists') from None
        return container

    def update(self, namespace: str, container: Container, *fieldpaths: str) -> Container:
        """Update ``container.id`` with the fields ``fieldpaths`` name (see the module)."""
        if not container.id:
            raise errdefs.InvalidArgument("must specify a container id")
        with self._db.update() as tx:
            current = self._read(tx, namespace, container.id)
            if current is None:
                raise errdefs.NotFound(f'container "{container.id}": not found')
            paths: Sequence[str] = fieldpaths
            if not paths:
                paths = UPDATABLE_FIELDS
                if current.snapshotter != container.snapshotter:
                    raise errdefs.InvalidArgument("container.Snapshotter field is immutable")
                if current.runtime.name != container.runtime.name:
                    raise errdefs.InvalidArgument("container.Runtime.Name field is immutable")
            updated = _without_empty_labels(_apply_paths(current, container, paths))
            try:
                validate_container(updated)
            except errdefs.InvalidArgument as exc:
                raise errdefs.InvalidArgument(f"update failed validation: {exc.message}") from None
            updated = replace(updated, created_at=current.created_at, updated_at=time.time_ns())
            self._write(tx, namespace, updated, insert=False)
            if current.snapshot_key != updated.snapshot_key or current.labels != updated.labels:
                self._db.mark_dirty()  # a reference may have gone
        return updated

    def delete(self, namespace: str, id: str) -> None:
        """Remove the record ``id``; what it held may now be collected."""
        with self._db.update() as tx:
            cur = tx.execute(
                "DELETE FROM containers WHERE namespace = ? AND id = ?", (namespace, id)
            )
            if cur.rowcount == 0:
                raise errdefs.NotFound(f'container "{id}": not found')
            self._db.mark_dirty()

    @staticmethod
    def _write(tx: sqlite3.Connection, namespace: str, c: Container, *, insert: bool) -> None:
        options = c.runtime.options
        values = (
            c.runtime.name,
            None if options is None else options.type_url,
            None if options is None else options.value,
            None if c.spec is None else c.spec.type_url,
            None if c.spec is None else c.spec.value,
            json.dumps(dict(c.labels), sort_keys=True),
            c.image,
            c.snapshotter,
            c.snapshot_key,
            _encode_extensions(c.extensions),
            c.created_at,
            c.updated_at,
        )
        if insert:
            tx.execute(
                "INSERT INTO containers (namespace, id, runtime_name, runtime_options_type, "
                "runtime_options, spec_type, spec, labels, image, snapshotter, snapshot_key, "
                "extensions, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (namespace, c.id, *values),
            )
        else:
            tx.execute(
                "UPDATE containers SET runtime_name = ?, runtime_options_type = ?, "
                "runtime_options = ?, spec_type = ?, spec = ?, labels = ?, image = ?, "
                "snapshotter = ?, snapshot_key = ?, extensions = ?, created_at = ?, "
                "updated_at = ? WHERE namespace = ? AND id = ?",
                (*values, namespace, c.id),
            )

"""Image records: a name in a namespace pointing at a target descriptor, with labels."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace

from pycontainerd import errdefs, fieldpath, filters
from pycontainerd.descriptor import Descriptor
from pycontainerd.images.image import Image
from pycontainerd.metadata.db import DB, register_holdings, table_holdings
from pycontainerd.metadata.namespaces import ensure_namespace

__all__ = ["Image", "ImageStore"]

register_holdings(table_holdings("images", "images"))


def _row_to_image(row: sqlite3.Row | tuple[object, ...]) -> Image:
    name, media_type, digest, size, annotations, labels, created, updated = row
    return Image(
        name=str(name),
        target=Descriptor(
            str(media_type), str(digest), int(str(size)), json.loads(str(annotations))
        ),
        labels=json.loads(str(labels)),
        created_at=int(str(created)),
        updated_at=int(str(updated)),
    )


_COLUMNS = "name, media_type, digest, size, annotations, labels, created_at, updated_at"


def _adapt(image: Image) -> filters.Adaptor:
    def field_(path: Sequence[str]) -> tuple[str, bool]:
        if not path:
            return "", False
        head = path[0]
        if head == "name":
            return image.name, bool(image.name)
        if head == "target" and len(path) >= 2:
            if path[1] == "digest":
                return image.target.digest, bool(image.target.digest)
            if path[1] == "mediatype":
                return image.target.media_type, bool(image.target.media_type)
            return "", False
        if head == "labels":
            return filters.check_map(path[1:], image.labels)
        if head == "annotations":
            return filters.check_map(path[1:], image.target.annotations)
        return "", False

    return filters.AdaptorFunc(field_)


def _validate(image: Image) -> None:
    if not image.name:
        raise errdefs.InvalidArgument("image name must not be empty")
    fieldpath.validate_labels(image.labels, prefix="image.Labels")
    image.target.validate()


class ImageStore:
    """containerd's ``images.Store`` over the metadata database, per namespace."""

    def __init__(self, db: DB) -> None:
        self._db = db

    def get(self, namespace: str, name: str) -> Image:
        with self._db.view() as tx:
            row = tx.execute(
                f"SELECT {_COLUMNS} FROM images WHERE namespace = ? AND name = ?",
                (namespace, name),
            ).fetchone()
        if row is None:
            raise errdefs.NotFound(f'image "{name}": not found')
        return _row_to_image(row)

    def list(self, namespace: str, filter_strings: Iterable[str] = ()) -> list[Image]:
        match = filters.parse(*filter_strings)
        with self._db.view() as tx:
            rows = tx.execute(
                f"SELECT {_COLUMNS} FROM images WHERE namespace = ? ORDER BY name", (namespace,)
            ).fetchall()
        images = (_row_to_image(row) for row in rows)
        return [image for image in images if match.match(_adapt(image))]

    def create(self, namespace: str, image: Image) -> Image:
        _validate(image)
        now = time.time_ns()
        image = replace(image, created_at=now, updated_at=now)
        with self._db.update() as tx:
            ensure_namespace(tx, namespace)
            try:
                self._write(tx, namespace, image, insert=True)
            except sqlite3.IntegrityError:
                raise errdefs.AlreadyExists(f'image "{image.name}": already exists') from None
        return image

    def update(self, namespace: str, image: Image, paths: Sequence[str] = ()) -> Image:
        """Containerd's field paths: labels, labels.K, target, annotations, annotations.K."""
        if not image.name:
            raise errdefs.InvalidArgument("image name is required for update")
        with self._db.update() as tx:
            row = tx.execute(
                f"SELECT {_COLUMNS} FROM images WHERE namespace = ? AND name = ?",
                (namespace, image.name),
            ).fetchone()
            if row is None:
                raise errdefs.NotFound(f'image "{image.name}": not found')
            current = _row_to_image(row)
            updated = image if not paths else self._apply_paths(current, image, paths)
            _validate(updated)
            updated = replace(updated, created_at=current.created_at, updated_at=time.time_ns())
            self._write(tx, namespace, updated, insert=False)
        return updated

    @staticmethod
    def _apply_paths(current: Image, new: Image, paths: Sequence[str]) -> Image:
        fieldpath.check_paths(
            paths, ("target",), ("labels", "annotations"), kind="image", name=current.name
        )
        target = new.target if "target" in paths else current.target
        labels = fieldpath.apply_map_updates(current.labels, new.labels, paths, field="labels")
        annotations = fieldpath.apply_map_updates(
            target.annotations, new.target.annotations, paths, field="annotations"
        )
        return replace(
            current,
            labels={k: v for k, v in labels.items() if v},
            target=replace(target, annotations={k: v for k, v in annotations.items() if v}),
        )

    def delete(self, namespace: str, name: str) -> None:
        with self._db.update() as tx:
            cur = tx.execute(
                "DELETE FROM images WHERE namespace = ? AND name = ?", (namespace, name)
            )
            if cur.rowcount == 0:
                raise errdefs.NotFound(f'image "{name}": not found')
            self._db.mark_dirty()  # its content may now be garbage

    @staticmethod
    def _write(tx: sqlite3.Connection, namespace: str, image: Image, *, insert: bool) -> None:
        values = (
            image.target.media_type,
            image.target.digest,
            image.target.size,
            json.dumps(dict(image.target.annotations), sort_keys=True),
            json.dumps(dict(image.labels), sort_keys=True),
            image.created_at,
            image.updated_at,
        )
        if insert:
            tx.execute(
                "INSERT INTO images (namespace, name, media_type, digest, size, annotations, "
                "labels, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (namespace, image.name, *values),
            )
        else:
            tx.execute(
                "UPDATE images SET media_type = ?, digest = ?, size = ?, annotations = ?, "
                "labels = ?, created_at = ?, updated_at = ? WHERE namespace = ? AND name = ?",
                (*values, namespace, image.name),
            )

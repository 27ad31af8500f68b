"""Task bundles: containerd's ``runtime/v2`` bundle on disk.

A bundle is ``<state>/<namespace>/<id>`` with the OCI ``config.json``, an empty ``rootfs``
the shim mounts the container's root on, a ``work`` symlink to ``<root>/<namespace>/<id>``
(persistent scratch space), and, once a shim runs, its ``address`` and the ``log`` FIFO. Removal
never walks into a mounted rootfs: the rootfs is unmounted and removed as an empty directory
first, then the bundle is renamed aside and deleted.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from pycontainerd import errdefs, identifiers
from pycontainerd.mount import unmount_all

__all__ = ["CONFIG_FILENAME", "Bundle"]

CONFIG_FILENAME = "config.json"


@dataclass(frozen=True)
class Bundle:
    """One task's bundle directory."""

    id: str
    namespace: str
    path: Path

    @property
    def rootfs(self) -> Path:
        """Where the shim mounts the container's root."""
        return self.path / "rootfs"

    @classmethod
    def new(cls, root: Path, state: Path, namespace: str, id_: str, spec: bytes) -> Bundle:
        """Create the bundle for task ``id_`` with ``spec`` as its ``config.json``.

        Fails with AlreadyExists when the bundle is there; on any failure nothing is left.
        """
        try:
            identifiers.validate(id_)
        except errdefs.InvalidArgument as exc:
            raise errdefs.InvalidArgument(f"invalid task id {id_}: {exc.message}") from None
        identifiers.validate(namespace)
        bundle = cls(id=id_, namespace=namespace, path=state / namespace / id_)
        work = root / namespace / id_
        bundle.path.parent.mkdir(parents=True, exist_ok=True, mode=0o711)
        try:
            bundle.path.mkdir(mode=0o700)
        except FileExistsError:
            raise errdefs.AlreadyExists(
                f"bundle {bundle.path}: already exists (task {namespace}/{id_})"
            ) from None
        try:
            gid = _remapped_gid(spec)
            if gid:
                os.chown(bundle.path, -1, gid)
                os.chmod(bundle.path, 0o710)
            bundle.rootfs.mkdir(mode=0o711)
            work.parent.mkdir(parents=True, exist_ok=True, mode=0o711)
            if work.exists():
                shutil.rmtree(work)
            work.mkdir(mode=0o711)
            (bundle.path / "work").symlink_to(work)
            (bundle.path / CONFIG_FILENAME).write_bytes(spec)
        except BaseException:
            with contextlib.suppress(OSError):
                bundle.delete()
            raise
        return bundle

    @classmethod
    def load(cls, state: Path, namespace: str, id_: str) -> Bundle:
        """The existing bundle of task ``id_``."""
        bundle = cls(id=id_, namespace=namespace, path=state / namespace / id_)
        if not bundle.path.is_dir():
            raise errdefs.NotFound(f"bundle of task {namespace}/{id_}: not found")
        return bundle

    def read(self, name: str) -> str | None:
        """A small file of the bundle (``address``, ``shim-binary-path``), None if absent."""
        try:
            return (self.path / name).read_text().strip()
        except FileNotFoundError:
            return None

    def delete(self) -> None:
        """Remove the bundle and its work directory; a rootfs still mounted is unmounted."""
        work: str | None
        try:
            work = os.readlink(self.path / "work")
        except OSError:
            work = None
        try:
            unmount_all(self.rootfs)
        except errdefs.ContainerdError as exc:
            raise errdefs.FailedPrecondition(
                f"unmount bundle rootfs {self.rootfs}: {exc.message}"
            ) from None
        try:
            os.rmdir(self.rootfs)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise errdefs.FailedPrecondition(
                f"remove bundle rootfs {self.rootfs}: {exc.strerror}"
            ) from exc
        _atomic_delete(self.path)
        if work is not None:
            _atomic_delete(Path(work))


def _atomic_delete(path: Path) -> None:
    aside = path.parent / f".{path.name}"
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    shutil.rmtree(aside)


def _remapped_gid(spec: bytes) -> int:
    """The host gid of the container's gid 0 when the spec maps gids, else 0."""
    try:
        doc = json.loads(spec)
    except ValueError as exc:
        raise errdefs.InvalidArgument(f"task spec: not valid json: {exc}") from None
    linux = doc.get("linux") if isinstance(doc, dict) else None
    mappings = linux.get("gidMappings") if isinstance(linux, dict) else None
    for mapping in mappings or ():
        if isinstance(mapping, dict) and mapping.get("containerID") == 0:
            return int(mapping.get("hostID", 0))
    return 0

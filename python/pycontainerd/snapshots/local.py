"""What the directory-backed snapshotters share: records in a :class:`MetaStore`, one
directory per snapshot id under ``<root>/snapshots/<id>``, removal by rename-then-delete."""

from __future__ import annotations

import os
import shutil
import stat as stat_mod
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path

from pycontainerd import errdefs, fieldpath, filters
from pycontainerd.mount import Mount
from pycontainerd.snapshots import Info, Kind, Usage, WalkFunc, adapt_info
from pycontainerd.snapshots.storage import MetaStore, Record

__all__ = ["LocalSnapshotter", "disk_usage"]

#: The usage a snapshot is committed with: measured when first asked for (walking a layer's
#: files in Python on every commit of an unpack costs more than the commit itself).
_UNMEASURED = Usage(size=-1, inodes=-1)


def disk_usage(root: Path) -> Usage:
    """Bytes (allocated blocks) and inodes under ``root``, each hardlinked inode once."""
    seen: set[tuple[int, int]] = set()
    size = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (dirpath, *(os.path.join(dirpath, n) for n in (*dirnames, *filenames))):
            try:
                st = os.lstat(name)
            except FileNotFoundError:
                continue
            ident = (st.st_dev, st.st_ino)
            if ident in seen:
                continue
            seen.add(ident)
            size += st.st_blocks * 512
    return Usage(size=size, inodes=len(seen))


class LocalSnapshotter(ABC):
    """A snapshotter keeping each snapshot in ``<root>/snapshots/<id>/fs``.

    Subclasses say how a snapshot's directories are made (:meth:`_populate`) and mounted
    (:meth:`_mounts_of`).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "snapshots").mkdir(parents=True, exist_ok=True, mode=0o700)
        self._ms = MetaStore(root / "metadata.db")

    # --- layout --------------------------------------------------------------------------

    def _dir(self, id_: int) -> Path:
        return self.root / "snapshots" / str(id_)

    def _fs(self, id_: int) -> Path:
        return self._dir(id_) / "fs"

    @abstractmethod
    def _populate(self, rec: Record, path: Path) -> None:
        """Create the snapshot's directories under ``path`` (not yet at its final name)."""

    @abstractmethod
    def _mounts_of(self, rec: Record) -> list[Mount]:
        """The mounts of an active snapshot or a view."""

    # --- Snapshotter ---------------------------------------------------------------------

    def stat(self, key: str) -> Info:
        with self._ms.transaction() as tx:
            return self._ms.get(tx, key).info

    def update(self, info: Info, *fieldpaths: str) -> Info:
        with self._ms.transaction(write=True) as tx:
            current = self._ms.get(tx, info.name).info
            labels = fieldpath.apply_label_updates(
                current.labels, info.labels, fieldpaths, kind="snapshot", name=info.name
            )
            return self._ms.update_labels(tx, info.name, labels)

    def usage(self, key: str) -> Usage:
        """An active snapshot's usage is measured at each call; a committed one's (which no
        longer changes) on the first call after its commit, then kept with its record."""
        with self._ms.transaction() as tx:
            rec = self._ms.get(tx, key)
        if rec.info.kind == Kind.ACTIVE:
            return disk_usage(self._fs(rec.id))
        if rec.usage != _UNMEASURED:
            return rec.usage
        usage = disk_usage(self._fs(rec.id))
        with self._ms.transaction(write=True) as tx:
            if self._ms.get(tx, key).id != rec.id:  # removed meanwhile (NotFound if gone)
                raise errdefs.NotFound(f'snapshot "{key}": not found')
            self._ms.set_usage(tx, rec.id, usage)
        return usage

    def mounts(self, key: str) -> list[Mount]:
        with self._ms.transaction() as tx:
            rec = self._ms.get(tx, key)
        if rec.info.kind == Kind.COMMITTED:
            raise errdefs.FailedPrecondition(
                f'mounts of snapshot "{key}": a committed snapshot has no mounts'
            )
        return self._mounts_of(rec)

    def prepare(
        self, key: str, parent: str = "", *, labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        return self._create(Kind.ACTIVE, key, parent, labels or {})

    def view(
        self, key: str, parent: str = "", *, labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        return self._create(Kind.VIEW, key, parent, labels or {})

    def _create(self, kind: Kind, key: str, parent: str, labels: Mapping[str, str]) -> list[Mount]:
        fieldpath.validate_labels(labels)
        with self._ms.transaction(write=True) as tx:
            rec = self._ms.create(tx, kind, key, parent, labels)
            final = self._dir(rec.id)
            tmp = self.root / "snapshots" / f"new-{rec.id}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(mode=0o700)
            try:
                self._populate(rec, tmp)
                if final.exists():  # left by a crash before the record committed
                    shutil.rmtree(final)
                tmp.rename(final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            return self._mounts_of(rec)

    def commit(self, name: str, key: str, *, labels: Mapping[str, str] | None = None) -> None:
        fieldpath.validate_labels(labels or {})
        with self._ms.transaction(write=True) as tx:
            self._ms.commit(tx, name, key, labels or {}, _UNMEASURED)

    #: Whether a snapshot prepared without a parent can be committed onto one (a layer's
    #: directory holds only its own changes, as on overlayfs).
    can_rebase: bool = False

    def commit_onto(
        self, name: str, key: str, parent: str, *, labels: Mapping[str, str] | None = None
    ) -> None:
        """Commit the parentless active ``key`` as ``name`` on top of the committed ``parent``
        (containerd 2's rebase on commit, for layers unpacked in parallel)."""
        if not self.can_rebase:
            raise errdefs.NotImplemented(f'commit "{key}" onto "{parent}": cannot rebase')
        fieldpath.validate_labels(labels or {})
        with self._ms.transaction(write=True) as tx:
            rec = self._ms.get(tx, key)
            if rec.info.parent:
                raise errdefs.FailedPrecondition(
                    f'commit "{key}" onto "{parent}": it has a parent already'
                )
            self._ms.set_parent(tx, key, parent)
            self._ms.commit(tx, name, key, labels or {}, _UNMEASURED)

    def remove(self, key: str) -> None:
        self.forget(key)
        self.cleanup()

    def forget(self, key: str) -> None:
        """Remove ``key``'s record and set its directory aside for :meth:`cleanup` (quick: a
        caller holding a lock deletes the files after releasing it)."""
        with self._ms.transaction(write=True) as tx:
            rec = self._ms.remove(tx, key)
            path = self._dir(rec.id)
            if path.exists():
                path.rename(self.root / "snapshots" / f"rm-{rec.id}")

    def walk(self, fn: WalkFunc, *filter_strings: str) -> None:
        match = filters.parse(*filter_strings)
        with self._ms.transaction() as tx:
            infos = self._ms.all(tx)
        for info in infos:
            if match.match(adapt_info(info)):
                fn(info)

    def cleanup(self) -> None:
        base = self.root / "snapshots"
        # Under the lock no create is populating a directory: whatever no record names is
        # renamed aside there, and deleted after.
        with self._ms.transaction() as tx:
            live = {str(i) for i in self._ms.ids(tx)}
            for entry in os.listdir(base):
                if entry not in live and not entry.startswith("rm-"):
                    os.rename(base / entry, base / f"rm-{entry}")
        for entry in os.listdir(base):
            if entry.startswith("rm-"):
                shutil.rmtree(base / entry, ignore_errors=True)

    def close(self) -> None:
        self._ms.close()


def _copy_meta(src: str, dst: str | Path, st: os.stat_result, *, link: bool = False) -> None:
    """Owner, then mode (a chown clears setuid bits), then xattrs (a chown drops
    ``security.capability``), then times."""
    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    if not link:
        os.chmod(dst, stat_mod.S_IMODE(st.st_mode))
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError:
        names = []
    for name in names:
        try:
            os.setxattr(
                dst, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False
            )
        except OSError as exc:
            if not link:  # user xattrs cannot be set on symlinks
                raise errdefs.Unknown(f"copy xattr {name} of {src}: {exc}") from exc
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def copy_tree(src: Path, dst: Path) -> None:
    """``cp -a src/. dst``: every entry with its type, mode, owner, times and xattrs, hard
    links kept as links (containerd's ``fs.CopyDir``)."""
    links: dict[tuple[int, int], str] = {}

    def walk(sdir: str, ddir: str) -> None:
        for entry in os.scandir(sdir):
            target = os.path.join(ddir, entry.name)
            est = entry.stat(follow_symlinks=False)
            if entry.is_dir(follow_symlinks=False):
                os.mkdir(target)
                walk(entry.path, target)
                _copy_meta(entry.path, target, est)
                continue
            if est.st_nlink > 1 and not entry.is_symlink():
                first = links.get((est.st_dev, est.st_ino))
                if first is not None:
                    os.link(first, target)
                    continue
                links[(est.st_dev, est.st_ino)] = target
            if entry.is_symlink():
                os.symlink(os.readlink(entry.path), target)
                _copy_meta(entry.path, target, est, link=True)
            elif entry.is_file(follow_symlinks=False):
                shutil.copyfile(entry.path, target, follow_symlinks=False)
                _copy_meta(entry.path, target, est)
            else:  # devices, fifos, sockets
                os.mknod(target, est.st_mode, est.st_rdev)
                _copy_meta(entry.path, target, est)

    walk(str(src), str(dst))
    _copy_meta(str(src), dst, os.lstat(src))

"""The local content store: blobs and ingests in one directory (containerd's ``content/local``).

Layout under the store's root (the daemon's ``<root>/content``)::

    blobs/<algorithm>/<hex>      a committed blob, read-only (0444), named by its digest
    ingest/<sha256(ref) hex>/    one ingest in progress:
        ref                        the ref, as the writer gave it
        data                       the bytes written so far
        startedat, updatedat       nanoseconds since the epoch, as decimal text
        total                      the expected size, when the writer gave one

A writer hashes (SHA-256) as it writes. Its ref is locked in this process (a table keyed by
store root and ref) and across processes (``flock`` on ``data``); a second writer of the same
ref gets :class:`~pycontainerd.errdefs.Unavailable`. Closing a writer keeps the ingest: a later
writer of the ref continues at its end, re-hashing what is there first. ``commit`` syncs the
data, checks size and digest and links the data into ``blobs/`` under its digest (never over an
existing blob), then syncs the directory and removes the ingest. Data that cannot become the
expected blob (wrong digest, or more bytes than expected) is discarded with its ingest; data
that is only short stays, so the write can resume.

The small ingest files are replaced atomically but not synced: after a power cut an ingest may
lose its progress, never its correctness, since every commit re-checks the digest.

This store has no labels and no namespaces; :mod:`pycontainerd.metadata.content` adds both.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import random
import shutil
import stat
import threading
import time
import weakref
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Final

from pycontainerd import errdefs, filters
from pycontainerd.content import Info, Status, Store, WalkFunc
from pycontainerd.content.adaptor import adapt_info, adapt_status
from pycontainerd.descriptor import Descriptor
from pycontainerd.digest import ALGORITHMS, CANONICAL, is_digest, validate_digest
from pycontainerd.durations import format_duration

__all__ = ["LocalReaderAt", "LocalStore", "LocalWriter", "validate_ref"]

log = logging.getLogger(__name__)

#: The longest ref accepted, in bytes of UTF-8.
MAX_REF_LENGTH: Final = 4096

_DIR_MODE: Final = 0o755
_FILE_MODE: Final = 0o644
_BLOB_MODE: Final = 0o444
#: The buffer for re-hashing a resumed ingest.
_HASH_BUFFER: Final = 4 << 20
#: Attempts at a locked ref before Unavailable, as containerd's local store.
_LOCK_ATTEMPTS: Final = 10

# Refs held by an open writer: (store root, ref) -> when it was taken (ns).
_locks: dict[tuple[str, str], int] = {}
_locks_mu = threading.Lock()


def _quote(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def validate_ref(ref: str) -> None:
    """Raise :class:`InvalidArgument` for a ref no ingest can have: empty, NUL, over-long."""
    if not ref:
        raise errdefs.InvalidArgument("ref must not be empty")
    if "\x00" in ref:
        raise errdefs.InvalidArgument(f"invalid ref {_quote(ref)}: it contains a NUL character")
    if len(ref.encode("utf-8", "surrogatepass")) > MAX_REF_LENGTH:
        raise errdefs.InvalidArgument(
            f"invalid ref {_quote(ref[:40])}...: longer than {MAX_REF_LENGTH} bytes"
        )


def _go_time(ns: int) -> str:
    """A time as Go prints a ``time.Time`` in UTC."""
    t = datetime.fromtimestamp(ns // 1_000_000_000, UTC)
    fraction = f"{ns % 1_000_000_000:09d}".rstrip("0")
    return t.strftime("%Y-%m-%d %H:%M:%S") + (f".{fraction}" if fraction else "") + " +0000 UTC"


def _try_lock(key: tuple[str, str]) -> None:
    with _locks_mu:
        since = _locks.get(key)
        if since is not None:
            now = time.time_ns()
            raise errdefs.Unavailable(
                f"ref {key[1]} locked for {format_duration(now - since)} (since {_go_time(since)})"
            )
        _locks[key] = time.time_ns()


def _unlock(key: tuple[str, str]) -> None:
    with _locks_mu:
        _locks.pop(key, None)


def _write_small(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, _FILE_MODE)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _read_int(path: Path) -> int:
    return int(path.read_text().strip())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _digest_of(desc: Descriptor | str) -> str:
    return desc if isinstance(desc, str) else desc.digest


class LocalStore:
    """containerd's local content store: the bytes on disk under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        try:
            for sub in ("ingest", "blobs"):
                (self.root / sub).mkdir(parents=True, exist_ok=True, mode=_DIR_MODE)
        except OSError as exc:
            raise errdefs.Unavailable(f"open content store {self.root}: {exc}") from exc
        self._lock_root = str(self.root.resolve())

    # --- paths ---------------------------------------------------------------------------

    def blob_path(self, dgst: str) -> Path:
        """Where the blob ``dgst`` lives (whether or not it is there); checks the digest."""
        validate_digest(dgst)
        algorithm, _, encoded = dgst.partition(":")
        return self.root / "blobs" / algorithm / encoded

    def ingest_path(self, ref: str) -> Path:
        """The directory of the ingest ``ref``: named by the SHA-256 of the ref."""
        return (
            self.root / "ingest" / hashlib.sha256(ref.encode("utf-8", "surrogatepass")).hexdigest()
        )

    # --- Manager -------------------------------------------------------------------------

    def info(self, dgst: str) -> Info:
        path = self.blob_path(dgst)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise errdefs.NotFound(f"content {dgst}: not found") from None
        return _info(dgst, st)

    def update(self, info: Info, *fieldpaths: str) -> Info:
        raise errdefs.FailedPrecondition(
            f"update content {info.digest}: not supported on the local content store, "
            "which keeps no labels"
        )

    def walk(self, fn: WalkFunc, *filter_strings: str) -> None:
        match = filters.parse(*filter_strings)
        for info in self._infos():
            if match.match(adapt_info(info)):
                fn(info)

    def _infos(self) -> list[Info]:
        out: list[Info] = []
        blobs = self.root / "blobs"
        for algorithm in sorted(os.listdir(blobs)):
            if algorithm not in ALGORITHMS:
                continue
            with os.scandir(blobs / algorithm) as entries:
                for entry in entries:
                    dgst = f"{algorithm}:{entry.name}"
                    if not is_digest(dgst):
                        log.warning("content store: %s is not a blob, skipping it", entry.path)
                        continue
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # deleted while we walked
                    if stat.S_ISREG(st.st_mode):
                        out.append(_info(dgst, st))
        out.sort(key=lambda i: i.digest)
        return out

    def delete(self, dgst: str) -> None:
        path = self.blob_path(dgst)
        try:
            path.unlink()
        except FileNotFoundError:
            raise errdefs.NotFound(f"content {dgst}: not found") from None

    # --- Provider ------------------------------------------------------------------------

    def reader_at(self, desc: Descriptor | str) -> LocalReaderAt:
        dgst = _digest_of(desc)
        path = self.blob_path(dgst)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise errdefs.NotFound(f"content {dgst}: not found") from None
        return LocalReaderAt(fd, os.fstat(fd).st_size)

    # --- IngestManager -------------------------------------------------------------------

    def status(self, ref: str) -> Status:
        validate_ref(ref)
        status = self._status(self.ingest_path(ref))
        if status is None or status.ref != ref:
            raise errdefs.NotFound(f"ingest ref {_quote(ref)}: not found")
        return status

    def list_statuses(self, *filter_strings: str) -> list[Status]:
        match = filters.parse(*filter_strings)
        out: list[Status] = []
        with os.scandir(self.root / "ingest") as entries:
            for entry in entries:
                status = self._status(Path(entry.path))
                if status is not None and match.match(adapt_status(status)):
                    out.append(status)
        out.sort(key=lambda s: s.ref)
        return out

    def status_refs(self) -> list[str]:
        """The ref of every ingest on disk, active or not (for garbage collection)."""
        refs = []
        with os.scandir(self.root / "ingest") as entries:
            for entry in entries:
                try:
                    refs.append((Path(entry.path) / "ref").read_text())
                except OSError:
                    continue
        return sorted(refs)

    @staticmethod
    def _status(path: Path) -> Status | None:
        """The status of the ingest in ``path``; None when it is not (or no longer) there."""
        try:
            st = (path / "data").stat()
            ref = (path / "ref").read_text()
            started = _read_int(path / "startedat")
            updated = _read_int(path / "updatedat")
        except (OSError, ValueError):
            return None
        try:
            total = _read_int(path / "total")
        except (OSError, ValueError):
            total = 0
        return Status(
            ref=ref,
            offset=st.st_size,
            total=total,
            started_at=started,
            # updatedat is written when a writer closes; the data's mtime may be newer
            updated_at=max(updated, st.st_mtime_ns),
        )

    def abort(self, ref: str) -> None:
        validate_ref(ref)
        try:
            shutil.rmtree(self.ingest_path(ref))
        except FileNotFoundError:
            raise errdefs.NotFound(f"ingest ref {_quote(ref)}: not found") from None

    # --- Ingester ------------------------------------------------------------------------

    def writer(self, ref: str, *, desc: Descriptor | None = None) -> LocalWriter:
        validate_ref(ref)
        total = desc.size if desc is not None else 0
        expected = desc.digest if desc is not None else ""
        if expected:
            validate_digest(expected)
        key = (self._lock_root, ref)
        for attempt in range(_LOCK_ATTEMPTS):
            try:
                _try_lock(key)
                break
            except errdefs.Unavailable:
                if attempt == _LOCK_ATTEMPTS - 1:
                    raise
            time.sleep(random.randrange(1 << attempt) / 1000)
        try:
            return self._writer(key, ref, max(total, 0), expected)
        except BaseException:
            _unlock(key)
            raise

    def _writer(self, key: tuple[str, str], ref: str, total: int, expected: str) -> LocalWriter:
        if expected and self.blob_path(expected).exists():
            raise errdefs.AlreadyExists(f"content {expected}: already exists")
        path = self.ingest_path(ref)
        try:
            path.mkdir(mode=_DIR_MODE)
            new = True
        except FileExistsError:
            new = False
        try:
            fd = os.open(path / "data", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)
        except FileNotFoundError:  # aborted as we opened it
            raise errdefs.Unavailable(f"ref {ref}: the ingest changed while opening it") from None
        try:
            self._flock(fd, path, ref)
            hasher = hashlib.sha256()
            resumed = None if new else self._resume(path, fd, ref, total, hasher)
            if resumed is None:
                hasher = hashlib.sha256()
                now = time.time_ns()
                os.ftruncate(fd, 0)
                _write_small(path / "ref", ref)
                _write_small(path / "startedat", str(now))
                _write_small(path / "updatedat", str(now))
                if total > 0:
                    _write_small(path / "total", str(total))
                else:
                    with contextlib.suppress(FileNotFoundError):
                        (path / "total").unlink()
                resumed = Status(ref, 0, total, "", now, now)
            elif total > 0 and resumed.total == 0:
                _write_small(path / "total", str(total))
                resumed = Status(ref, resumed.offset, total, "", resumed.started_at, time.time_ns())
        except BaseException:
            os.close(fd)
            raise
        return LocalWriter(self, key, path, fd, hasher, resumed)

    @staticmethod
    def _flock(fd: int, path: Path, ref: str) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise errdefs.Unavailable(f"ref {ref} locked by another process") from None
        try:
            same = os.stat(path / "data").st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # committed or aborted between our open and our lock
            raise errdefs.Unavailable(f"ref {ref}: the ingest changed while opening it, retry")

    @staticmethod
    def _resume(path: Path, fd: int, ref: str, total: int, hasher: hashlib._Hash) -> Status | None:
        """The status of an ingest to continue, ``hasher`` fed its data; None to start over."""
        status = LocalStore._status(path)
        if status is None:
            log.info("ingest %s: incomplete, starting it over", path)
            return None
        if status.ref != ref:
            log.warning("ingest %s holds ref %r, not %r; starting it over", path, status.ref, ref)
            return None
        if total > 0 and status.total > 0 and total != status.total:
            log.info(
                "ingest %r: total %d differs from the recorded %d; starting it over",
                ref,
                total,
                status.total,
            )
            return None
        buf = bytearray(_HASH_BUFFER)
        view = memoryview(buf)
        offset = 0
        while True:
            n = os.preadv(fd, [buf], offset)
            if n == 0:
                break
            hasher.update(view[:n])
            offset += n
        return Status(ref, offset, status.total, "", status.started_at, status.updated_at)


def _release_leaked(fd: int, key: tuple[str, str]) -> None:
    log.warning("content writer of ref %s was never closed; releasing it", key[1])
    with contextlib.suppress(OSError):
        os.close(fd)
    _unlock(key)


def _info(dgst: str, st: os.stat_result) -> Info:
    return Info(digest=dgst, size=st.st_size, created_at=st.st_mtime_ns, updated_at=st.st_mtime_ns)


class LocalReaderAt:
    """A blob open for reading."""

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self._size = size

    @property
    def size(self) -> int:
        return self._size

    def read_at(self, offset: int, size: int) -> bytes:
        if offset < 0 or size < 0:
            raise errdefs.InvalidArgument(f"read at {offset}: negative offset or size")
        if self._fd < 0:
            raise errdefs.FailedPrecondition("read from a closed reader")
        size = max(0, min(size, self._size - offset))
        data = os.pread(self._fd, size, offset)
        if len(data) < size:  # a short read on a regular file is rare; finish it
            parts = [data]
            got = len(data)
            while got < size:
                more = os.pread(self._fd, size - got, offset + got)
                if not more:
                    break
                parts.append(more)
                got += len(more)
            data = b"".join(parts)
        return data

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> LocalReaderAt:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class LocalWriter:
    """One ingest open for writing; safe to call from several threads (calls are serialized)."""

    def __init__(
        self,
        store: LocalStore,
        key: tuple[str, str],
        path: Path,
        fd: int,
        hasher: hashlib._Hash,
        status: Status,
    ) -> None:
        self._store = store
        self._key = key
        self._path = path
        self._fd = fd
        self._hasher = hasher
        self._ref = status.ref
        self._offset = status.offset
        self._total = status.total
        self._started_at = status.started_at
        self._updated_at = status.updated_at
        self._mu = threading.Lock()
        # a writer dropped without close still frees its ref (and its descriptor)
        self._finalizer = weakref.finalize(self, _release_leaked, fd, key)

    @property
    def ref(self) -> str:
        return self._ref

    def _check_open(self, what: str) -> None:
        if self._fd < 0:
            raise errdefs.FailedPrecondition(f"{what} ref {self._ref}: the writer is closed")

    def write(self, data: bytes | bytearray | memoryview) -> int:
        with self._mu:
            self._check_open("write to")
            view = memoryview(data).cast("B")
            n = len(view)
            done = 0
            while done < n:
                done += os.pwrite(self._fd, view[done:], self._offset + done)
            self._hasher.update(view)
            self._offset += n
            self._updated_at = time.time_ns()
            return n

    def digest(self) -> str:
        return f"{CANONICAL}:{self._hasher.hexdigest()}"

    def status(self) -> Status:
        return Status(
            ref=self._ref,
            offset=self._offset,
            total=self._total,
            started_at=self._started_at,
            updated_at=self._updated_at,
        )

    def truncate(self, size: int) -> None:
        with self._mu:
            self._check_open("truncate")
            if size < 0 or size > self._offset:
                raise errdefs.InvalidArgument(
                    f"truncate ref {self._ref} to {size}: only 0 to {self._offset} bytes"
                )
            os.ftruncate(self._fd, size)
            hasher = hashlib.sha256()
            if size:
                buf = bytearray(_HASH_BUFFER)
                view = memoryview(buf)
                offset = 0
                while offset < size:
                    n = os.preadv(self._fd, [view[: min(len(buf), size - offset)]], offset)
                    if n == 0:
                        break
                    hasher.update(view[:n])
                    offset += n
            self._hasher = hasher
            self._offset = size
            self._updated_at = time.time_ns()

    def commit(
        self, size: int = 0, expected: str = "", *, labels: Mapping[str, str] | None = None
    ) -> None:
        """Verify and publish the blob; labels are not kept by the local store."""
        with self._mu:
            self._check_open("commit")
            try:
                self._commit(size, expected)
            finally:
                self._release(sync=False)

    def _commit(self, size: int, expected: str) -> None:
        ref = self._ref
        if expected:
            validate_digest(expected)
        fd = self._fd
        os.fsync(fd)
        actual = os.fstat(fd).st_size
        if size > 0 and size != actual:
            if actual > size:
                self._discard()
            raise errdefs.FailedPrecondition(
                f"commit ref {_quote(ref)}: unexpected commit size {actual}, expected {size}"
            )
        dgst = self.digest()
        if expected and expected != dgst:
            self._discard()
            raise errdefs.FailedPrecondition(
                f"commit ref {_quote(ref)}: unexpected commit digest {dgst}, expected {expected}"
            )
        target = self._store.blob_path(dgst)
        target.parent.mkdir(parents=True, exist_ok=True, mode=_DIR_MODE)
        data = self._path / "data"
        os.fchmod(fd, _BLOB_MODE)
        try:
            self._publish(data, target, dgst)
        except BaseException:
            with contextlib.suppress(OSError):
                os.fchmod(fd, _FILE_MODE)
            raise
        now = time.time_ns()
        try:
            os.utime(target, ns=(now, now))
        except OSError as exc:
            log.warning("content %s: set commit time: %s", dgst, exc)
        _fsync_dir(target.parent)
        self._discard()

    def _publish(self, data: Path, target: Path, dgst: str) -> None:
        """Give ``data`` the blob's name, never replacing a blob already there."""
        try:
            os.link(data, target)
            return
        except FileExistsError:
            self._discard()
            raise errdefs.AlreadyExists(f"content {dgst}: already exists") from None
        except FileNotFoundError:
            raise errdefs.NotFound(
                f"commit ref {_quote(self._ref)}: the ingest was aborted while writing"
            ) from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
        # a filesystem without hard links: rename, after checking (one daemon per root)
        if target.exists():
            self._discard()
            raise errdefs.AlreadyExists(f"content {dgst}: already exists")
        os.rename(data, target)

    def _discard(self) -> None:
        shutil.rmtree(self._path, ignore_errors=True)

    def _release(self, *, sync: bool) -> None:
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        self._finalizer.detach()
        try:
            if sync:
                with contextlib.suppress(OSError):
                    os.fsync(fd)
                with contextlib.suppress(OSError):  # the ingest may have been aborted
                    _write_small(self._path / "updatedat", str(self._updated_at))
        finally:
            os.close(fd)
            _unlock(self._key)

    def close(self) -> None:
        """Release the ref and keep the ingest for a later writer; closing twice is fine."""
        with self._mu:
            self._release(sync=True)

    def __enter__(self) -> LocalWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


if TYPE_CHECKING:

    def _is_a_store(store: LocalStore) -> Store:  # mypy checks LocalStore against the Protocol
        return store

"""Fetching manifests and blobs as streams that resume where a connection dropped."""

from __future__ import annotations

import hashlib
import io
import logging
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import HTTPError

from pycontainerd import errdefs
from pycontainerd.descriptor import Descriptor
from pycontainerd.digest import split_digest
from pycontainerd.images import mediatypes as mt
from pycontainerd.remotes.errors import status_error
from pycontainerd.remotes.hosts import HostCapabilities, RegistryHost
from pycontainerd.remotes.session import Repository, log_trying
from pycontainerd.remotes.transport import release

__all__ = ["FetchStream", "Fetcher"]

log = logging.getLogger(__name__)

#: How many times in a row a stream reopens at the same offset before it gives up.
MAX_RESUMES = 3
_SKIP_CHUNK = 1 << 20


def _is_manifest(media_type: str) -> bool:
    return (
        mt.is_manifest_type(media_type) or mt.is_index_type(media_type) or mt.is_schema1(media_type)
    )


def _content_range_start(value: str) -> int | None:
    unit, _, spec = value.strip().partition(" ")
    if unit.lower() != "bytes":
        return None
    start = spec.partition("-")[0]
    return int(start) if start.isdigit() else None


class Fetcher:
    """Fetches the content of one repository; thread-safe (a stream is one thread's)."""

    def __init__(
        self, repository: Repository, *, follow_urls: bool = True, max_resumes: int = MAX_RESUMES
    ) -> None:
        self.repository = repository
        self.follow_urls = follow_urls
        self.max_resumes = max_resumes

    def fetch(self, desc: Descriptor, offset: int = 0, *, verify: bool = False) -> FetchStream:
        """A stream of ``desc``'s bytes from ``offset`` on.

        Manifests and indexes come from ``/manifests/``, anything else from ``/blobs/``, trying
        the descriptor's ``urls`` first and then each host that may pull. A dropped connection is
        reopened at the current offset with a ``Range`` request. With ``verify`` (only from
        offset 0) the stream checks the digest at its end; without it, the reader (the content
        store's ingest) must.
        """
        if offset < 0 or offset > desc.size:
            raise errdefs.InvalidArgument(
                f"fetch {desc.digest}: offset {offset} outside of its {desc.size} bytes"
            )
        split_digest(desc.digest)
        if verify and offset:
            raise errdefs.InvalidArgument(
                f"fetch {desc.digest}: cannot verify from offset {offset}"
            )
        stream = FetchStream(self, desc, offset, verify=verify)
        stream.open()
        return stream

    def fetch_bytes(self, desc: Descriptor, *, max_size: int = 16 << 20) -> bytes:
        """The whole of ``desc`` (a manifest, a config), digest and size checked."""
        if desc.size > max_size:
            raise errdefs.InvalidArgument(
                f"fetch {desc.digest}: {desc.size} bytes is more than the limit of {max_size}"
            )
        with self.fetch(desc, verify=True) as stream:
            return stream.readall()

    def what(self, desc: Descriptor) -> str:
        """How errors about fetching ``desc`` begin."""
        return f"fetch {desc.digest} from {self.repository.ref}"

    def open(self, desc: Descriptor, offset: int) -> tuple[urllib3.BaseHTTPResponse, str]:
        """A response positioned at ``offset`` of ``desc``, and its URL."""
        repo = self.repository
        what = self.what(desc)
        headers = {"Accept": f"{desc.media_type}, */*" if desc.media_type else "*/*"}
        if offset > 0:
            headers["Range"] = f"bytes={offset}-"
        candidates: list[tuple[RegistryHost, str, bool]] = []
        if self.follow_urls:
            for u in desc.urls:
                parts = urlsplit(u)
                if parts.scheme not in ("http", "https") or not parts.netloc:
                    log.debug("%s: skipping unsupported url %s", what, u)
                    continue
                host = RegistryHost(parts.netloc, parts.scheme, "", HostCapabilities.PULL)
                candidates.append((host, u, False))
        hosts = repo.filter_hosts(HostCapabilities.PULL)
        if not hosts and not candidates:
            raise errdefs.NotFound(f"{what}: no hosts may pull from {repo.registry}")
        kind = "manifests" if _is_manifest(desc.media_type) else "blobs"
        for host in hosts:
            candidates.append((host, repo.path(host, kind, desc.digest), True))

        first_error: errdefs.ContainerdError | None = None
        for host, url, authorize in candidates:
            full = url if not url.startswith("/") else host.base_url + url
            try:
                resp = repo.request(
                    host, "GET", url, what=what, headers=headers, authorize=authorize
                )
                if resp.status > 299:
                    raise status_error(what, resp, full)
                self._position(resp, desc, offset, full, what)
            except errdefs.NotFound as exc:
                log_trying(what, host, exc)
                continue
            except errdefs.ContainerdError as exc:
                log_trying(what, host, exc)
                if first_error is None:
                    first_error = exc
                continue
            return resp, full
        if first_error is not None:
            raise first_error
        tried = ", ".join(h.host for h, _, _ in candidates)
        raise errdefs.NotFound(f"{what}: not found on {tried}")

    def _position(
        self,
        resp: urllib3.BaseHTTPResponse,
        desc: Descriptor,
        offset: int,
        url: str,
        what: str,
    ) -> None:
        """Check the response's length and range, and skip to ``offset`` if it starts at 0."""
        length = resp.headers.get("Content-Length")
        start = 0
        if resp.status == 206:
            start = _content_range_start(resp.headers.get("Content-Range", "")) or 0
            if start != offset:
                release(resp)
                raise errdefs.Unknown(
                    f"{what}: {url}: unhandled content range "
                    f"{resp.headers.get('Content-Range')!r} for offset {offset}"
                )
        if length is not None and length.isdigit() and int(length) != desc.size - start:
            release(resp)
            raise errdefs.FailedPrecondition(
                f"{what}: {url}: the registry sends {int(length) + start} bytes, "
                f"the descriptor says {desc.size}"
            )
        skip = offset - start
        while skip > 0:  # a registry that ignores Range: read up to the offset
            try:
                data = resp.read(min(skip, _SKIP_CHUNK))
            except (HTTPError, OSError) as exc:
                release(resp)
                raise errdefs.Unavailable(
                    f"{what}: {url}: skip to offset {offset}: {exc}"
                ) from None
            if not data:
                release(resp)
                raise errdefs.Unavailable(f"{what}: {url}: unable to skip to offset {offset}")
            skip -= len(data)


class FetchStream(io.RawIOBase):
    """The bytes of one descriptor from an offset; ``offset`` tells how far it has read.

    ``read(n)`` returns up to ``n`` bytes (fewer only at the end); at ``size`` it returns
    ``b""``. A connection that drops or stalls is reopened at the current offset, up to
    ``max_resumes`` times in a row without progress; then the read fails with
    :class:`~pycontainerd.errdefs.Unavailable`. A read interrupted midway gives up what it had
    gathered, so the stream reopens after the last byte it returned: large reads go fastest,
    smaller ones lose less to a stall.
    """

    def __init__(
        self, fetcher: Fetcher, desc: Descriptor, offset: int, *, verify: bool = False
    ) -> None:
        super().__init__()
        self.fetcher = fetcher
        self.descriptor = desc
        self.size = desc.size
        self.offset = offset
        self.url = ""
        self._resp: urllib3.BaseHTTPResponse | None = None
        self._failures = 0
        self._hash = hashlib.new(desc.digest.partition(":")[0]) if verify else None

    def open(self) -> None:
        """Open the connection now (``read`` opens it when needed)."""
        if self._resp is None and self.offset < self.size:
            self._resp, self.url = self.fetcher.open(self.descriptor, self.offset)

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        if self.closed:
            raise ValueError("read of a closed fetch stream")
        while True:
            remaining = self.size - self.offset
            if remaining <= 0:
                self._finish()
                return b""
            if size == 0:
                return b""
            self.open()
            assert self._resp is not None
            try:
                data = self._resp.read(min(size, remaining))
            except (HTTPError, OSError) as exc:
                self._resume(str(exc))
                continue
            if not data:
                self._resume("connection closed early")
                continue
            self.offset += len(data)
            self._failures = 0
            if self._hash is not None:
                self._hash.update(data)
            return data

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        return n

    def readall(self) -> bytes:
        chunks = []
        while data := self.read(1 << 20):
            chunks.append(data)
        return b"".join(chunks)

    def _resume(self, reason: str) -> None:
        self._drop()
        self._failures += 1
        what = self.fetcher.what(self.descriptor)
        if self._failures > self.fetcher.max_resumes:
            raise errdefs.Unavailable(
                f"{what}: {self.url}: {reason} at offset {self.offset} of {self.size}"
            )
        transport = self.fetcher.repository.session.transport
        delay = transport.retry.delay(self._failures - 1)
        log.info("%s: %s at offset %d; resuming in %.1fs", what, reason, self.offset, delay)
        transport.sleep(delay)

    def _finish(self) -> None:
        if self._resp is not None:
            release(self._resp)
            self._resp = None
        if self._hash is not None:
            actual = f"{self._hash.name}:{self._hash.hexdigest()}"
            self._hash = None
            if actual != self.descriptor.digest:
                raise errdefs.FailedPrecondition(
                    f"{self.fetcher.what(self.descriptor)}: {self.url}: content has digest {actual}"
                )

    def _drop(self) -> None:
        if self._resp is not None:
            resp, self._resp = self._resp, None
            resp.close()
            resp.release_conn()

    def close(self) -> None:
        if not self.closed:
            if self.offset >= self.size and self._resp is not None:
                release(self._resp)
                self._resp = None
            self._drop()
        super().close()

"""Pushing blobs and manifests: existence check, cross-repository mount, upload, manifest last.

The caller pushes children before parents (layers and config, then manifests, then the index),
as containerd's push handlers do; a manifest is put under the reference's tag unless told not to.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Literal
from urllib.parse import urlencode, urljoin, urlsplit

from pycontainerd import errdefs
from pycontainerd.descriptor import Descriptor
from pycontainerd.digest import split_digest
from pycontainerd.images import mediatypes as mt
from pycontainerd.reference import Reference
from pycontainerd.remotes.errors import status_error
from pycontainerd.remotes.hosts import HostCapabilities, RegistryHost
from pycontainerd.remotes.session import Repository
from pycontainerd.remotes.transport import Reader, StreamBody, release

__all__ = [
    "DISTRIBUTION_SOURCE_LABEL",
    "MAX_MANIFEST_PUSH_SIZE",
    "PushResult",
    "Pusher",
    "append_distribution_source_label",
    "distribution_source_label_key",
    "select_repository_mount_candidate",
]

log = logging.getLogger(__name__)

#: What a push did: the content was ``uploaded``, was already there (``exists``), or was
#: ``mounted`` from another repository of the registry.
PushResult = Literal["uploaded", "exists", "mounted"]

#: Prefix of the content label naming the repositories a blob was pulled from, per registry.
DISTRIBUTION_SOURCE_LABEL = "containerd.io/distribution.source"

#: The largest manifest a pusher reads into memory.
MAX_MANIFEST_PUSH_SIZE = 16 << 20


def _hostname(locator: str) -> str:
    """The host of a locator without its port, as Go's ``url.Hostname`` gives it."""
    host = locator.partition("/")[0]
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host[1:]
    return host.partition(":")[0]


def distribution_source_label_key(registry: str) -> str:
    """The label key for a registry (``127.0.0.1:5000`` → ``...source.127.0.0.1``: containerd
    keys it by host name without the port)."""
    return f"{DISTRIBUTION_SOURCE_LABEL}.{_hostname(registry)}"


def append_distribution_source_label(original: str, repository: str) -> str:
    """Add ``repository`` to a label's comma-separated, sorted set of repositories."""
    repos = {r for r in original.split(",") if r} if original else set()
    repos.add(repository)
    return ",".join(sorted(repos))


def select_repository_mount_candidate(ref: Reference, sources: Mapping[str, str]) -> str:
    """The repository to mount a blob from: of those the registry's distribution-source label
    names, the one sharing the longest path prefix with ``ref``'s (not ``ref``'s own)."""
    value = sources.get(distribution_source_label_key(ref.hostname), "")
    if not value:
        return ""
    target = ref.repository
    components = target.split("/")
    best, match = 0, ""
    for repo in value.split(","):
        if not repo or repo == target:
            continue
        common = 0
        for a, b in zip(components, repo.split("/"), strict=False):
            if a != b:
                break
            common += 1
        if common >= best:
            best, match = common, repo
    return match


def _read_exact(reader: Reader, size: int, what: str) -> bytes:
    chunks, remaining = [], size
    while remaining > 0:
        data = reader.read(remaining)
        if not data:
            raise errdefs.FailedPrecondition(
                f"{what}: content ended after {size - remaining} of {size} bytes"
            )
        chunks.append(data)
        remaining -= len(data)
    return b"".join(chunks)


def _with_query(url: str, **params: str) -> str:
    return url + ("&" if "?" in url else "?") + urlencode(params)


class Pusher:
    """Pushes content to one repository; thread-safe.

    ``chunk_size`` uploads blobs in ``PATCH`` chunks of that many bytes; None uploads each blob
    with one ``PUT``.
    """

    def __init__(self, repository: Repository, *, chunk_size: int | None = None) -> None:
        if chunk_size is not None and chunk_size <= 0:
            raise errdefs.InvalidArgument("push: chunk size must be positive")
        self.repository = repository
        self.chunk_size = chunk_size

    def _manifest_path(self, desc: Descriptor, tag: bool) -> tuple[str, str]:
        obj = self.repository.ref.object if tag else ""
        name, at, dgst = obj.partition("@")
        if at and dgst != desc.digest:
            name = ""
        return ("manifests", name or desc.digest)

    def push(
        self,
        desc: Descriptor,
        reader: Reader,
        *,
        labels: Mapping[str, str] | None = None,
        tag: bool = True,
    ) -> PushResult:
        """Push ``desc``, reading its ``desc.size`` bytes from ``reader`` if the registry needs
        them.

        A blob the registry has is not sent again; one the ``containerd.io/distribution.source``
        label (in ``labels`` or the descriptor's annotations) places in another repository of
        the registry is mounted from there when the registry allows. A manifest or index goes
        under the reference's tag when ``tag`` (containerd's behaviour; the root is pushed last,
        so the tag ends on it), else under its digest.
        """
        repo = self.repository
        split_digest(desc.digest)
        what = f"push {desc.digest} to {repo.ref}"
        if mt.is_schema1(desc.media_type):
            raise errdefs.NotImplemented(f"{what}: schema 1 manifests are not supported")
        hosts = repo.filter_hosts(HostCapabilities.PUSH)
        if not hosts:
            raise errdefs.NotFound(f"{what}: no hosts may push to {repo.registry}")
        host = hosts[0]
        is_manifest = mt.is_manifest_type(desc.media_type) or mt.is_index_type(desc.media_type)
        parts = self._manifest_path(desc, tag) if is_manifest else ("blobs", desc.digest)

        if self._exists(host, desc, parts, what):
            return "exists"
        if is_manifest:
            return self._put_manifest(host, desc, parts, reader, what)

        sources = dict(desc.annotations)
        sources.update(labels or {})
        location = None
        uploads = repo.path(host, "blobs", "uploads/")
        if source := select_repository_mount_candidate(repo.ref, sources):
            url = _with_query(uploads, mount=desc.digest, **{"from": source})
            resp = repo.request(
                host,
                "POST",
                url,
                push=True,
                extra_scopes=(f"repository:{source}:pull",),
                what=what,
                headers={"Content-Length": "0"},
                body=b"",
            )
            if resp.status == 201:
                release(resp)
                log.debug("%s: mounted from %s", what, source)
                return "mounted"
            if resp.status in (401, 403):
                log.debug("%s: no access to mount from %s", what, source)
                release(resp)
            elif resp.status == 202:
                location = resp.headers.get("Location")
                release(resp)
            else:
                raise status_error(what, resp, host.base_url + url)
        if location is None:
            resp = repo.request(
                host,
                "POST",
                uploads,
                push=True,
                what=what,
                headers={"Content-Length": "0"},
                body=b"",
            )
            if resp.status == 201:
                release(resp)
                return "exists"
            if resp.status not in (200, 202, 204):
                raise status_error(what, resp, host.base_url + uploads)
            location = resp.headers.get("Location")
            release(resp)
        if not location:
            raise errdefs.Unknown(f"{what}: {host.host} started an upload without a location")
        location = urljoin(host.base_url + uploads, location)
        self._upload(host, desc, reader, location, what)
        return "uploaded"

    def _exists(
        self, host: RegistryHost, desc: Descriptor, parts: tuple[str, str], what: str
    ) -> bool:
        repo = self.repository
        url = repo.path(host, *parts)
        # Every manifest type: a registry that holds another type under the tag and finds it
        # not accepted may try to convert it, and fail, rather than answer.
        accept = [desc.media_type]
        if parts[0] == "manifests":
            accept += [t for t in mt.MANIFEST_MEDIA_TYPES if t != desc.media_type]
        headers = {"Accept": ", ".join([*accept, "*/*"])}
        resp = repo.request(host, "HEAD", url, push=True, what=what, headers=headers)
        if resp.status == 200:
            release(resp)
            if parts[1] == desc.digest:
                return True
            return resp.headers.get("Docker-Content-Digest") == desc.digest
        if resp.status in (401, 403):
            # As containerd: a registry may refuse the check yet accept the push.
            log.debug("%s: existence check refused (%d); pushing", what, resp.status)
            release(resp)
            return False
        if resp.status == 404:
            release(resp)
            return False
        raise status_error(what, resp, host.base_url + url)

    def _put_manifest(
        self,
        host: RegistryHost,
        desc: Descriptor,
        parts: tuple[str, str],
        reader: Reader,
        what: str,
    ) -> PushResult:
        if desc.size > MAX_MANIFEST_PUSH_SIZE:
            raise errdefs.InvalidArgument(f"{what}: manifest of {desc.size} bytes is too large")
        data = _read_exact(reader, desc.size, what)
        algorithm, _ = split_digest(desc.digest)
        actual = f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
        if actual != desc.digest:
            raise errdefs.FailedPrecondition(f"{what}: content has digest {actual}")
        repo = self.repository
        url = repo.path(host, *parts)
        resp = repo.request(
            host,
            "PUT",
            url,
            push=True,
            what=what,
            headers={"Content-Type": desc.media_type, "Content-Length": str(len(data))},
            body=data,
        )
        if resp.status not in (200, 201, 204):
            raise status_error(what, resp, host.base_url + url)
        release(resp)
        self._check_digest(resp.headers.get("Docker-Content-Digest"), desc, what)
        return "uploaded"

    def _upload(
        self, host: RegistryHost, desc: Descriptor, reader: Reader, location: str, what: str
    ) -> None:
        repo = self.repository
        # An upload sent elsewhere (a storage service) gets no registry credentials.
        same = urlsplit(location)[:2] == (host.scheme, host.host)
        octets = {"Content-Type": "application/octet-stream"}
        body: bytes | StreamBody
        if self.chunk_size is not None:
            offset = 0
            while offset < desc.size:
                n = min(self.chunk_size, desc.size - offset)
                chunk = _read_exact(reader, n, what)
                headers = {
                    **octets,
                    "Content-Range": f"{offset}-{offset + n - 1}",
                    "Content-Length": str(n),
                }
                resp = repo.request(
                    host,
                    "PATCH",
                    location,
                    push=True,
                    what=what,
                    headers=headers,
                    body=chunk,
                    authorize=same,
                )
                if resp.status not in (202, 204):
                    raise status_error(what, resp, location)
                location = urljoin(location, resp.headers.get("Location") or location)
                release(resp)
                offset += n
            body, size = b"", 0
        else:
            body, size = StreamBody(reader, desc.size, what=what), desc.size
        url = _with_query(location, digest=desc.digest)
        resp = repo.request(
            host,
            "PUT",
            url,
            push=True,
            what=what,
            headers={**octets, "Content-Length": str(size)},
            body=body,
            authorize=same,
        )
        if resp.status not in (200, 201, 204):
            err = status_error(what, resp, location)
            if "digest invalid" in str(err):
                raise errdefs.FailedPrecondition(str(err))
            raise err
        release(resp)
        self._check_digest(resp.headers.get("Docker-Content-Digest"), desc, what)

    @staticmethod
    def _check_digest(header: str | None, desc: Descriptor, what: str) -> None:
        if (
            header
            and header != desc.digest
            and header.partition(":")[0] == desc.digest.split(":")[0]
        ):
            raise errdefs.FailedPrecondition(f"{what}: the registry stored digest {header}")

"""The registry resolver: references to descriptors, and fetchers and pushers for them.

containerd's ``remotes/docker`` resolver in Python, synchronous and thread-safe: one
:class:`Resolver` may serve many worker threads, sharing connections and tokens.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from types import TracebackType

from pycontainerd import errdefs
from pycontainerd.descriptor import Descriptor
from pycontainerd.digest import ALGORITHMS, invalid_reason
from pycontainerd.images import mediatypes as mt
from pycontainerd.remotes.auth import Authorizer
from pycontainerd.remotes.credentials import Credentials
from pycontainerd.remotes.errors import Unauthorized, status_error
from pycontainerd.remotes.fetcher import Fetcher
from pycontainerd.remotes.hosts import HostCapabilities, HostsConfig, RegistryHost, RegistryHosts
from pycontainerd.remotes.pusher import Pusher
from pycontainerd.remotes.session import Repository, Session, log_trying, parse_ref
from pycontainerd.remotes.transport import RetryPolicy, Transport, release

__all__ = ["MAX_MANIFEST_SIZE", "Resolver"]

log = logging.getLogger(__name__)

#: The largest manifest or index a resolver accepts (containerd's limit).
MAX_MANIFEST_SIZE = 4 * 1048 * 1048

#: The Accept header of resolve requests: every manifest type we read, then anything (a
#: registry may answer a digest with a blob).
RESOLVE_ACCEPT = ", ".join((*mt.MANIFEST_MEDIA_TYPES, "*/*"))


def _default_user_agent() -> str:
    try:
        from pycontainerd.version import VERSION
    except ImportError:  # the native module is not built
        return "pycontainerd"
    return f"pycontainerd/{VERSION}"


def _content_type(value: str | None) -> str:
    ctype = (value or "").partition(";")[0].strip().lower()
    return mt.MEDIA_TYPE_DOCKER_SCHEMA1_MANIFEST if ctype == "text/plain" else ctype


def _sniff(body: bytes) -> str:
    """The media type a manifest's JSON declares or implies; empty if it is no manifest."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ""
    if not isinstance(doc, dict):
        return ""
    declared = doc.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    if doc.get("schemaVersion") == 1 or "fsLayers" in doc:
        return mt.MEDIA_TYPE_DOCKER_SCHEMA1_MANIFEST
    if "manifests" in doc:
        return mt.MEDIA_TYPE_IMAGE_INDEX
    if "config" in doc and "layers" in doc:
        return mt.MEDIA_TYPE_IMAGE_MANIFEST
    return ""


def _refuse_schema1(ref: str, media_type: str) -> None:
    if mt.is_schema1(media_type):
        raise errdefs.NotImplemented(
            f"resolve {ref}: schema 1 manifest ({media_type}) is not supported; "
            "push the image again in OCI or Docker schema 2 format"
        )


class Resolver:
    """Resolves references and makes fetchers and pushers for them.

    ``hosts`` says where each registry is reached (default: :class:`HostsConfig` with its
    defaults, or with ``plain_http``); ``credentials`` gives a registry host's
    ``(username, secret)``. ``headers`` go on every request; ``retry`` governs retries of 429,
    5xx and connection errors; the timeouts bound connecting and each wait for data.
    ``follow_urls`` lets fetches try a descriptor's ``urls`` (foreign layers) before the hosts.
    """

    def __init__(
        self,
        hosts: RegistryHosts | None = None,
        credentials: Credentials | None = None,
        *,
        plain_http: bool = False,
        headers: Mapping[str, str] | None = None,
        retry: RetryPolicy | None = None,
        connect_timeout: float = 30.0,
        read_timeout: float = 60.0,
        max_connections: int = 16,
        user_agent: str | None = None,
        follow_urls: bool = True,
        transport: Transport | None = None,
    ) -> None:
        self.hosts: RegistryHosts = (
            hosts if hosts is not None else HostsConfig(plain_http=plain_http)
        )
        self.transport = transport or Transport(
            retry=retry,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_connections=max_connections,
        )
        common = dict(headers or {})
        common.setdefault("User-Agent", user_agent or _default_user_agent())
        self.authorizer = Authorizer(self.transport, credentials, headers=common)
        self.session = Session(self.transport, self.authorizer, common)
        self.follow_urls = follow_urls

    def __enter__(self) -> Resolver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close pooled connections."""
        self.transport.close()

    def _repository(self, ref: str) -> Repository:
        spec = parse_ref(ref)
        return Repository(self.session, spec, self.hosts.hosts(spec.hostname))

    def fetcher(self, ref: str) -> Fetcher:
        """A fetcher for the repository of ``ref``."""
        return Fetcher(self._repository(ref), follow_urls=self.follow_urls)

    def pusher(self, ref: str, *, chunk_size: int | None = None) -> Pusher:
        """A pusher to the repository (and tag) of ``ref``; ``chunk_size`` uploads blobs in
        chunks of that many bytes rather than in one request."""
        return Pusher(self._repository(ref), chunk_size=chunk_size)

    def resolve(self, ref: str) -> tuple[str, Descriptor]:
        """The normalized name of ``ref`` and the descriptor of the manifest or index it names.

        A tag is looked up with ``HEAD`` (then ``GET`` where the registry gives no digest) on
        each host that may resolve; a digest on each host that may pull. A body fetched with
        ``GET`` is checked against ``Docker-Content-Digest`` and the reference's digest.
        """
        repo = self._repository(ref)
        name = str(repo.ref)
        dgst = repo.ref.digest
        capabilities = HostCapabilities.PULL
        if dgst:
            paths = [("manifests", dgst), ("blobs", dgst)]
        else:
            paths = [("manifests", repo.ref.tag)]
            capabilities |= HostCapabilities.RESOLVE
        hosts = repo.filter_hosts(capabilities)
        if not hosts:
            raise errdefs.NotFound(f"resolve {name}: no hosts may resolve {repo.registry}")
        what = f"resolve {name}"

        first_error: errdefs.ContainerdError | None = None
        for parts in paths:
            for host in hosts:
                try:
                    desc = self._resolve_on(repo, host, parts, name, dgst)
                except (errdefs.NotImplemented, errdefs.FailedPrecondition):
                    raise
                except errdefs.NotFound as exc:
                    log_trying(what, host, exc)
                    continue
                except errdefs.ContainerdError as exc:
                    log_trying(what, host, exc)
                    if first_error is None:
                        first_error = exc
                    continue
                return name, desc
        if first_error is not None:
            if isinstance(first_error, Unauthorized):
                detail = str(first_error).removeprefix(f"{what}: ")
                raise Unauthorized(
                    f"{what}: pull access denied, repository does not exist or may require "
                    f"authorization: {detail}"
                )
            raise first_error
        raise errdefs.NotFound(f"{what}: not found on {', '.join(h.host for h in hosts)}")

    def _resolve_on(
        self,
        repo: Repository,
        host: RegistryHost,
        parts: tuple[str, str],
        name: str,
        dgst: str,
    ) -> Descriptor:
        what = f"resolve {name}"
        url = repo.path(host, *parts)
        accept = {"Accept": RESOLVE_ACCEPT}
        resp = repo.request(host, "HEAD", url, what=what, headers=accept)
        if resp.status == 405:  # a registry without HEAD on manifests
            release(resp)
            return self._resolve_get(repo, host, url, name, dgst)
        if resp.status > 299:
            raise status_error(what, resp, host.base_url + url)
        release(resp)
        ctype = _content_type(resp.headers.get("Content-Type"))
        _refuse_schema1(name, ctype)
        length = resp.headers.get("Content-Length")
        size = int(length) if length is not None and length.isdigit() else -1
        header_digest = resp.headers.get("Docker-Content-Digest", "")
        if not dgst and header_digest and invalid_reason(header_digest) is None:
            found = header_digest
        else:
            found = dgst
        if not found or size <= 0 or ctype not in mt.MANIFEST_MEDIA_TYPES:
            return self._resolve_get(repo, host, url, name, dgst)
        if size > MAX_MANIFEST_SIZE:
            raise errdefs.NotFound(f"{what}: rejecting {size} byte manifest from {host.host}")
        return Descriptor(media_type=ctype, digest=found, size=size)

    def _resolve_get(
        self, repo: Repository, host: RegistryHost, url: str, name: str, dgst: str
    ) -> Descriptor:
        what = f"resolve {name}"
        resp = repo.request(host, "GET", url, what=what, headers={"Accept": RESOLVE_ACCEPT})
        if resp.status > 299:
            raise status_error(what, resp, host.base_url + url)
        ctype = _content_type(resp.headers.get("Content-Type"))
        try:
            _refuse_schema1(name, ctype)
            body = resp.read(MAX_MANIFEST_SIZE + 1)
        finally:
            release(resp)
        if len(body) > MAX_MANIFEST_SIZE:
            raise errdefs.NotFound(f"{what}: rejecting manifest larger than {MAX_MANIFEST_SIZE}")
        sniffed = _sniff(body)
        _refuse_schema1(name, sniffed)
        if ctype not in mt.MANIFEST_MEDIA_TYPES:
            if sniffed not in mt.MANIFEST_MEDIA_TYPES:
                raise errdefs.NotImplemented(
                    f"{what}: unsupported manifest media type {ctype or sniffed or 'unknown'!r}"
                )
            ctype = sniffed
        algorithm = dgst.partition(":")[0] if dgst else "sha256"
        if algorithm not in ALGORITHMS:
            raise errdefs.InvalidArgument(f"{what}: unsupported digest algorithm {algorithm!r}")
        actual = f"{algorithm}:{hashlib.new(algorithm, body).hexdigest()}"
        if dgst and actual != dgst:
            raise errdefs.FailedPrecondition(
                f"{what}: {host.host} served a manifest with digest {actual}, not {dgst}"
            )
        header_digest = resp.headers.get("Docker-Content-Digest", "")
        if (
            header_digest
            and header_digest.partition(":")[0] == algorithm
            and header_digest != actual
        ):
            raise errdefs.FailedPrecondition(
                f"{what}: {host.host} says digest {header_digest} for a manifest "
                f"with digest {actual}"
            )
        return Descriptor(media_type=ctype, digest=actual, size=len(body))

"""What a resolver shares with its fetchers and pushers, and one repository's requests.

:class:`Session` holds the transport, the authorizer and the common headers, and runs a request
through authentication: on a 401 it learns the challenge and tries again with credentials.
:class:`Repository` is containerd's ``dockerBase``: a reference, its repository name and the
hosts that serve it, and the URLs of its manifests and blobs on each host.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

import urllib3

from pycontainerd import errdefs
from pycontainerd.digest import invalid_reason
from pycontainerd.reference import Reference, parse, parse_docker_ref
from pycontainerd.remotes.auth import Authorizer, parse_auth_header
from pycontainerd.remotes.hosts import HostCapabilities, RegistryHost
from pycontainerd.remotes.transport import Body, RetryPolicy, Transport, release

__all__ = ["Repository", "Session", "parse_ref"]

log = logging.getLogger(__name__)


def parse_ref(ref: str) -> Reference:
    """A reference as the resolver takes it: Docker's normalization first (``busybox`` is
    ``docker.io/library/busybox:latest``), else containerd's plain ``host/path:object`` form.
    A reference with both tag and digest keeps only the digest."""
    try:
        return parse_docker_ref(ref)
    except errdefs.InvalidArgument as docker_error:
        try:
            spec = parse(ref)
        except errdefs.InvalidArgument:
            raise docker_error from None
        if not spec.object:
            raise docker_error from None
        if spec.digest and (reason := invalid_reason(spec.digest)) is not None:
            raise errdefs.InvalidArgument(f"parse reference {ref!r}: {reason}") from None
        return spec


class _AuthRecorder:
    """Gives each hop of a request its ``Authorization`` and remembers what went where."""

    def __init__(self, authorizer: Authorizer | None, scopes: Sequence[str], what: str) -> None:
        self.authorizer = authorizer
        self.scopes = scopes
        self.what = what
        self.last = ""
        self.sent: dict[str, str | None] = {}

    def __call__(self, netloc: str) -> str | None:
        self.last = netloc
        value = None
        if self.authorizer is not None:
            value = self.authorizer.authorization(netloc, self.scopes, what=self.what)
        self.sent[netloc] = value
        return value


class Session:
    """Transport, authorizer and headers shared by one resolver's requests; thread-safe."""

    def __init__(
        self, transport: Transport, authorizer: Authorizer, headers: Mapping[str, str]
    ) -> None:
        self.transport = transport
        self.authorizer = authorizer
        self.headers = dict(headers)

    def request(
        self,
        host: RegistryHost,
        method: str,
        url: str,
        *,
        scopes: Sequence[str],
        what: str,
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        retry: RetryPolicy | None = None,
        preload: bool = False,
        authorize: bool = True,
    ) -> urllib3.BaseHTTPResponse:
        """Send a request to ``host`` (``url`` absolute, or a path on the host), authenticating
        as its 401 answers ask; the response is returned whatever its status."""
        if url.startswith("/"):
            url = host.base_url + url
        hdrs = dict(self.headers)
        for key, values in host.header.items():
            hdrs[key] = ", ".join(values)
        hdrs.update(headers or {})

        tries, limit = 0, 1
        while True:
            recorder = _AuthRecorder(self.authorizer if authorize else None, scopes, what)
            resp = self.transport.request(
                method,
                url,
                tls=host.tls,
                what=what,
                headers=hdrs,
                body=body,
                authorize=recorder,
                retry=retry,
                preload=preload,
            )
            if resp.status != 401 or not authorize or tries >= limit:
                return resp
            netloc = recorder.last
            sent = recorder.sent.get(netloc)
            if tries == 0 and sent is not None:
                limit = 2  # a kept token may have expired: allow a fresh one a try as well
            challenges = parse_auth_header(resp.headers.getlist("WWW-Authenticate"))
            if not challenges or not self.authorizer.add_challenges(
                netloc, challenges, tls=host.tls, sent=sent
            ):
                return resp
            release(resp)
            tries += 1


@dataclass
class Repository:
    """A reference and the hosts of its registry (containerd's ``dockerBase``)."""

    session: Session
    ref: Reference
    hosts: list[RegistryHost]

    @property
    def registry(self) -> str:
        """The registry as the reference names it (``docker.io``)."""
        return self.ref.hostname

    @property
    def repository(self) -> str:
        """The repository name on the registry (``library/busybox``)."""
        return self.ref.repository

    def filter_hosts(self, capabilities: HostCapabilities) -> list[RegistryHost]:
        """The hosts with every capability in ``capabilities``, in order."""
        return [h for h in self.hosts if h.has(capabilities)]

    def path(self, host: RegistryHost, *parts: str) -> str:
        """``/v2/<repository>/<parts...>`` on ``host``, with ``?ns=<registry>`` for a mirror."""
        joined = posixpath.normpath(posixpath.join("/", host.path, self.repository, *parts))
        if parts and parts[-1].endswith("/"):
            joined += "/"
        if host.is_proxy(self.registry):
            joined += "?" + urlencode({"ns": self.registry})
        return joined

    def request(
        self,
        host: RegistryHost,
        method: str,
        url: str,
        *,
        push: bool = False,
        extra_scopes: Sequence[str] = (),
        what: str,
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        retry: RetryPolicy | None = None,
        preload: bool = False,
        authorize: bool = True,
    ) -> urllib3.BaseHTTPResponse:
        """A request with this repository's token scope (pull, or pull and push)."""
        scope = f"repository:{self.repository}:pull" + (",push" if push else "")
        return self.session.request(
            host,
            method,
            url,
            scopes=(scope, *extra_scopes),
            what=what,
            headers=headers,
            body=body,
            retry=retry,
            preload=preload,
            authorize=authorize,
        )


def log_trying(what: str, host: RegistryHost, error: BaseException | str) -> None:
    log.info("%s: %s: %s; trying the next host", what, host.host, error)

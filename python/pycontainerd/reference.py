"""Image references, as containerd and Docker parse them.

:func:`parse` is containerd's ``reference.Parse``: a schema-less ``host/path[:object]`` with
no normalization (``docker.io/library/redis:6``, ``localhost:5000/a/b@sha256:...``), which is
what resolvers and ``ctr`` use. :func:`parse_normalized_named` and :func:`parse_docker_ref`
are Docker's grammar and normalization (``busybox`` → ``docker.io/library/busybox:latest``),
with its validation of names, tags and digests. Both give a :class:`Reference`.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass

from pycontainerd.digest import invalid_reason
from pycontainerd.errdefs import InvalidArgument

__all__ = [
    "DEFAULT_DOMAIN",
    "DEFAULT_TAG",
    "NAME_TOTAL_LENGTH_MAX",
    "Reference",
    "parse",
    "parse_docker_ref",
    "parse_normalized_named",
    "tag_name_only",
]

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_NAME = "library"
DEFAULT_TAG = "latest"
#: The longest repository name (domain and path), in characters.
NAME_TOTAL_LENGTH_MAX = 255


@dataclass(frozen=True, slots=True)
class Reference:
    """A reference: ``locator`` (host and path) and ``object`` (``tag``, ``tag@dgst``, ``@dgst``)

    ``str()`` gives it back whole: ``docker.io/library/busybox:latest``.
    """

    locator: str
    object: str = ""

    @property
    def hostname(self) -> str:
        """The host part of the locator (``docker.io``, ``localhost:5000``)."""
        return self.locator.partition("/")[0]

    @property
    def repository(self) -> str:
        """The locator without its host (``library/busybox``)."""
        return self.locator.partition("/")[2]

    @property
    def tag(self) -> str:
        """The object up to any ``@``; empty when there is none."""
        return self.object.partition("@")[0]

    @property
    def digest(self) -> str:
        """The object after ``@`` (possibly partial, from :func:`parse`); empty when none."""
        return self.object.partition("@")[2]

    def __str__(self) -> str:
        if not self.object:
            return self.locator
        if self.object.startswith("@"):
            return self.locator + self.object
        return f"{self.locator}:{self.object}"

    def familiar_name(self) -> str:
        """The name as Docker shows it: ``docker.io/`` and ``library/`` removed."""
        domain, _, path = self.locator.partition("/")
        if domain != DEFAULT_DOMAIN:
            return self.locator
        head, _, rest = path.partition("/")
        if head == OFFICIAL_REPO_NAME and rest and "/" not in rest:
            return rest
        return path

    def familiar_string(self) -> str:
        """The whole reference as Docker shows it (``busybox:latest``)."""
        text = self.familiar_name()
        if self.tag:
            text += ":" + self.tag
        if self.digest:
            text += "@" + self.digest
        return text


def tag_name_only(ref: Reference) -> Reference:
    """Add the default tag ``latest`` to a reference that has neither tag nor digest."""
    if ref.object:
        return ref
    return Reference(ref.locator, DEFAULT_TAG)


def _error(ref: str, reason: str) -> InvalidArgument:
    return InvalidArgument(f"parse reference {_quote(ref)}: {reason}")


def _quote(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


# --- containerd's reference.Parse -------------------------------------------------------------

_HOST_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~!$&'()*+,;=:[]<>\""
)
_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_PORT_RE = re.compile(r"(?::[0-9]*)?")
_SPLIT_RE = re.compile(r"[:@]")


def parse(s: str) -> Reference:
    """Parse ``s`` as containerd's ``reference.Parse`` does: no defaults, a host required.

    As there, a ``?query`` or ``#fragment`` is dropped and ``%XX`` escapes in the path are
    decoded. Unlike there, a ``.`` or ``..`` path component is refused rather than resolved
    (it could move the locator to another host).
    """
    if "://" in s:
        raise _error(s, "invalid reference")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in s):
        raise _error(s, "invalid control character in URL")
    rest = s.partition("#")[0]
    rest = rest.partition("?")[0]
    authority, slash, path = rest.partition("/")
    path = slash + path
    host = authority.rpartition("@")[2]
    _check_host(s, host)
    if not host:
        raise _error(s, "hostname required")
    if m := _ESCAPE_RE.search(path):
        raise _error(s, f"invalid URL escape {_quote(path[m.start() : m.start() + 3])}")
    path = _unescape(path)

    obj = ""
    if m := _SPLIT_RE.search(path):
        obj = path[m.start() :]
        if obj.startswith(":"):
            obj = obj[1:]
        path = path[: m.start()]
    components = path.split("/")
    if any(c in (".", "..") for c in components):
        raise _error(s, "path components must not be . or ..")
    locator = posixpath.normpath(f"{host}/{path}") if path else host
    return Reference(locator, obj)


def _check_host(ref: str, host: str) -> None:
    if host.startswith("["):
        end = host.rfind("]")
        if end < 0:
            raise _error(ref, "missing ']' in host")
        port = host[end + 1 :]
    else:
        colon = host.rfind(":")
        port = host[colon:] if colon >= 0 else ""
    if not _PORT_RE.fullmatch(port):
        raise _error(ref, f"invalid port {_quote(port)} after host")
    for c in host:
        if c == "%":
            raise _error(ref, f"invalid URL escape in host {_quote(host)}")
        if c.isascii() and c not in _HOST_CHARS:
            raise _error(ref, f"invalid character {_quote(c)} in host name")


def _unescape(path: str) -> str:
    if "%" not in path:
        return path
    raw = bytearray()
    i = 0
    while i < len(path):
        if path[i] == "%":
            raw.append(int(path[i + 1 : i + 3], 16))
            i += 3
        else:
            raw += path[i].encode("utf-8", "surrogateescape")
            i += 1
    return raw.decode("utf-8", "surrogateescape")


# --- Docker's reference grammar (distribution/reference, as vendored by containerd) -------------

_ALPHANUMERIC = r"[a-z0-9]+"
# Docker writes the separator (?:[._]|__|[-]*); [-]+ accepts the same names without the
# ambiguity that makes a backtracking engine slow on long near-misses.
_SEPARATOR = r"(?:[._]|__|[-]+)"
_NAME_COMPONENT = rf"{_ALPHANUMERIC}(?:{_SEPARATOR}{_ALPHANUMERIC})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?"
_TAG = r"[0-9A-Za-z_][0-9A-Za-z_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,}"
_NAME = rf"(?:{_DOMAIN}/)?{_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*"

_REFERENCE_RE = re.compile(rf"({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?")
_ANCHORED_NAME_RE = re.compile(rf"(?:({_DOMAIN})/)?({_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*)")
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")


def _docker_parse(ref: str, s: str) -> Reference:
    """Docker's ``Parse`` of ``s``; errors name ``ref``, the caller's input."""
    m = _REFERENCE_RE.fullmatch(s)
    if m is None:
        if not s:
            raise _error(ref, "repository name must have at least one component")
        if _REFERENCE_RE.fullmatch(s.lower()) is not None:
            raise _error(ref, "repository name must be lowercase")
        raise _error(ref, "invalid reference format")
    name, tag, dgst = m.group(1), m.group(2) or "", m.group(3) or ""
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise _error(
            ref, f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
        )
    if dgst and (reason := invalid_reason(dgst)) is not None:
        raise _error(ref, reason)
    obj = tag
    if dgst:
        obj += "@" + dgst
    return Reference(name, obj)


def _split_docker_domain(name: str) -> tuple[str, str]:
    first, slash, rest = name.partition("/")
    if not slash or ("." not in first and ":" not in first and first != "localhost"):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, rest
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = f"{OFFICIAL_REPO_NAME}/{remainder}"
    return domain, remainder


def parse_normalized_named(s: str) -> Reference:
    """Docker's ``ParseNormalizedNamed``: add ``docker.io`` and ``library/``, keep tag and digest.

    ``busybox`` → ``docker.io/library/busybox``; ``user/img:1`` → ``docker.io/user/img:1``.
    """
    if _IDENTIFIER_RE.fullmatch(s):
        raise _error(
            s, f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
        )
    domain, remainder = _split_docker_domain(s)
    remote_name = remainder.partition(":")[0]
    if remote_name.lower() != remote_name:
        raise _error(s, "invalid reference format: repository name must be lowercase")
    return _docker_parse(s, f"{domain}/{remainder}")


def parse_docker_ref(s: str) -> Reference:
    """Docker's ``ParseDockerRef``: normalize, default the tag to ``latest``, and keep only the
    digest of a reference that has both.

    ``busybox`` → ``docker.io/library/busybox:latest``;
    ``busybox:1@sha256:...`` → ``docker.io/library/busybox@sha256:...``.
    """
    ref = parse_normalized_named(s)
    if ref.tag and ref.digest:
        return Reference(ref.locator, "@" + ref.digest)
    return tag_name_only(ref)

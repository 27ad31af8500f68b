"""Registry hosts: where a reference's registry is reached, as containerd's ``hosts.toml`` says.

A reference names a registry (``docker.io``, ``127.0.0.1:5000``); :class:`HostsConfig` turns that
name into the list of :class:`RegistryHost` endpoints to try, mirrors first and the origin last.
Each registry may have a directory under a hosts root (``/etc/pycontainerd/certs.d`` then
``/etc/containerd/certs.d``, like ctr's ``--hosts-dir``) named ``host`` or ``host_port_``, or
``_default``, holding a ``hosts.toml``::

    server = "https://registry.example.com"     # the origin; when absent, the registry itself

    [host."https://mirror.example.com"]
      capabilities = ["pull", "resolve"]        # of pull, resolve, push; all when absent
      ca = "mirror-ca.pem"                      # or a list; relative to the directory
      client = [["client.cert", "client.key"]]  # or "both.pem", or a list of such files
      skip_verify = false
      override_path = false                     # true: the URL's path is the API root
      [host."https://mirror.example.com".header]
        x-custom = "value"                      # or a list of values

A directory without ``hosts.toml`` is read the Docker way: ``*.crt`` files are CAs, ``*.cert``
files client certificates with the ``*.key`` of the same name. With no configuration at all, the
registry is reached over HTTPS, ``docker.io`` at ``registry-1.docker.io``, and a loopback
registry (``localhost``, ``127.0.0.1``, ``::1``) over plain HTTP, as containerd 1.6 does.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import os
import posixpath
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from pycontainerd import errdefs

__all__ = [
    "DEFAULT_HOSTS_DIRS",
    "HostCapabilities",
    "HostsConfig",
    "RegistryHost",
    "RegistryHosts",
    "TLSConfig",
    "host_directory",
    "host_paths",
    "is_localhost",
    "load_host_dir",
    "parse_hosts_file",
]

log = logging.getLogger(__name__)

#: Roots searched for ``<host>/hosts.toml`` when no hosts directory is given, in order.
DEFAULT_HOSTS_DIRS: tuple[str, ...] = ("/etc/pycontainerd/certs.d", "/etc/containerd/certs.d")


class HostCapabilities(enum.IntFlag):
    """What a host may be used for: ``pull`` blobs and manifests by digest, ``resolve`` tags to
    digests, ``push``."""

    NONE = 0
    PULL = 1
    RESOLVE = 2
    PUSH = 4
    ALL = PULL | RESOLVE | PUSH


@dataclass(frozen=True)
class TLSConfig:
    """How to verify a host and present ourselves to it: extra CA files (added to the system's),
    client certificate and key pairs (key ``""`` when the certificate file holds it), and
    whether to skip verification."""

    ca_files: tuple[str, ...] = ()
    client_pairs: tuple[tuple[str, str], ...] = ()
    skip_verify: bool = False


@dataclass(frozen=True)
class RegistryHost:
    """One endpoint of a registry: ``scheme://host`` + ``path`` (the API root, ``/v2``)."""

    host: str
    scheme: str = "https"
    path: str = "/v2"
    capabilities: HostCapabilities = HostCapabilities.ALL
    tls: TLSConfig = field(default_factory=TLSConfig)
    #: Extra request headers, each with one or more values.
    header: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        """``scheme://host``."""
        return f"{self.scheme}://{self.host}"

    def has(self, capabilities: HostCapabilities) -> bool:
        """Whether this host has every capability in ``capabilities``."""
        return self.capabilities & capabilities == capabilities

    def is_proxy(self, registry: str) -> bool:
        """Whether this host serves ``registry`` as a mirror (and so needs ``?ns=registry``)."""
        if registry == self.host:
            return False
        return not (registry == "docker.io" and self.host == "registry-1.docker.io")


class RegistryHosts(Protocol):
    """Anything that lists the endpoints of a registry, mirrors first."""

    def hosts(self, registry: str) -> list[RegistryHost]: ...


def is_localhost(host: str) -> bool:
    """Whether ``host`` (with or without a port) is ``localhost`` or a loopback address."""
    name = host
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else name[1:]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_directory(host: str) -> str:
    """The directory name of a host: ``host:port`` becomes ``host_port_``."""
    idx = host.rfind(":")
    if idx > 0:
        return f"{host[:idx]}_{host[idx + 1 :]}_"
    return host


def host_paths(root: str | os.PathLike[str], host: str) -> list[Path]:
    """The directories that may configure ``host`` under ``root``, most specific first."""
    root = Path(root)
    names = []
    converted = host_directory(host)
    if converted != host:
        names.append(converted)
    names.append(host)
    for name in names:
        if not name or "/" in name or "\x00" in name or name in (".", ".."):
            raise errdefs.InvalidArgument(f"invalid registry host {host!r}")
    return [root / name for name in names]


# --- hosts.toml ---------------------------------------------------------------------------------


def _abs(path: str, base: Path) -> str:
    return path if os.path.isabs(path) else str(base / path)


def _strings(value: object, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise errdefs.InvalidArgument(f"invalid type {type(value).__name__} for {what!r}")
    return list(value)


_CAPABILITIES = {
    "pull": HostCapabilities.PULL,
    "resolve": HostCapabilities.RESOLVE,
    "push": HostCapabilities.PUSH,
}


def _parse_host_config(server: str, base: Path, config: Mapping[str, object]) -> RegistryHost:
    override_path = config.get("override_path", False)
    if not isinstance(override_path, bool):
        raise errdefs.InvalidArgument("invalid type for 'override_path': want a boolean")
    scheme, host, path = "", "", ""
    if server:
        if not server.startswith("http"):
            server = "https://" + server
        parts = urlsplit(server)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise errdefs.InvalidArgument(f"unable to parse server {server!r}")
        scheme, host = parts.scheme, parts.netloc
        if parts.path:
            path = posixpath.normpath(parts.path)
            if not path.endswith("/v2") and not override_path:
                path += "/v2"
        elif not override_path:
            path = "/v2"

    capabilities = HostCapabilities.NONE
    caps = config.get("capabilities")
    if caps:
        for cap in _strings(caps, "capabilities"):
            flag = _CAPABILITIES.get(cap.lower())
            if flag is None:
                raise errdefs.InvalidArgument(f"unknown capability {cap!r}")
            capabilities |= flag
    else:
        capabilities = HostCapabilities.ALL

    skip = config.get("skip_verify")
    if skip is not None and not isinstance(skip, bool):
        raise errdefs.InvalidArgument("invalid type for 'skip_verify': want a boolean")

    ca_files: list[str] = []
    ca = config.get("ca")
    if isinstance(ca, str):
        ca_files = [_abs(ca, base)]
    elif ca is not None:
        ca_files = [_abs(p, base) for p in _strings(ca, "ca")]

    pairs: list[tuple[str, str]] = []
    client = config.get("client")
    if isinstance(client, str):
        pairs = [(_abs(client, base), "")]
    elif isinstance(client, list):
        for item in client:
            if isinstance(item, str):
                pairs.append((_abs(item, base), ""))
            elif isinstance(item, list):
                pair = _strings(item, "client")
                if len(pair) != 2:
                    raise errdefs.InvalidArgument(f"invalid pair {pair!r} for 'client'")
                pairs.append((_abs(pair[0], base), _abs(pair[1], base) if pair[1] else ""))
            else:
                raise errdefs.InvalidArgument(f"invalid type {type(item).__name__} for 'client'")
    elif client is not None:
        raise errdefs.InvalidArgument(f"invalid type {type(client).__name__} for 'client'")

    header: dict[str, tuple[str, ...]] = {}
    raw_header = config.get("header")
    if raw_header is not None:
        if not isinstance(raw_header, dict):
            raise errdefs.InvalidArgument("invalid type for 'header': want a table")
        for key, value in raw_header.items():
            if isinstance(value, str):
                header[key] = (value,)
            else:
                header[key] = tuple(_strings(value, f"header {key}"))

    return RegistryHost(
        host=host,
        scheme=scheme or "https",
        path=path,
        capabilities=capabilities,
        tls=TLSConfig(tuple(ca_files), tuple(pairs), bool(skip)),
        header=header,
    )


@dataclass(frozen=True)
class _Parsed:
    host: RegistryHost
    skip_verify_set: bool


def parse_hosts_file(base_dir: str | os.PathLike[str], text: str) -> list[RegistryHost]:
    """The hosts a ``hosts.toml`` lists: each ``[host."..."]`` in file order, then the ``server``.

    The last entry has ``host == ""`` when the file names no ``server``: the registry itself.
    Relative file names are taken relative to ``base_dir``.
    """
    return [p.host for p in _parse_hosts_file(Path(base_dir), text)]


def _parse_hosts_file(base: Path, text: str) -> list[_Parsed]:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise errdefs.InvalidArgument(f"failed to parse TOML: {exc}") from None
    tables = doc.get("host", {})
    if not isinstance(tables, dict):
        raise errdefs.InvalidArgument("invalid `host` tree")
    out: list[_Parsed] = []
    for server, config in tables.items():  # tomllib keeps the file's order
        if not isinstance(config, dict):
            raise errdefs.InvalidArgument(f"invalid table for host {server!r}")
        out.append(_Parsed(_parse_host_config(server, base, config), "skip_verify" in config))
    server = doc.get("server", "")
    if not isinstance(server, str):
        raise errdefs.InvalidArgument("invalid type for 'server': want a string")
    out.append(_Parsed(_parse_host_config(server, base, doc), "skip_verify" in doc))
    return out


def _load_cert_files(directory: Path) -> list[_Parsed]:
    ca_files: list[str] = []
    pairs: list[tuple[str, str]] = []
    try:
        entries = sorted(directory.iterdir())
    except FileNotFoundError:
        entries = []
    for entry in entries:
        if entry.is_dir():
            continue
        if entry.name.endswith(".crt"):
            ca_files.append(str(entry))
        if entry.name.endswith(".cert"):
            key = entry.with_name(entry.name[: -len(".cert")] + ".key")
            pairs.append((str(entry), str(key) if key.exists() else ""))
    host = RegistryHost(host="", path="", tls=TLSConfig(tuple(ca_files), tuple(pairs)))
    return [_Parsed(host, False)]


def load_host_dir(directory: str | os.PathLike[str]) -> list[RegistryHost]:
    """The hosts configured by one host directory (``hosts.toml``, else certificate files)."""
    return [p.host for p in _load_host_dir(Path(directory))]


def _load_host_dir(directory: Path) -> list[_Parsed]:
    try:
        text = (directory / "hosts.toml").read_text()
    except FileNotFoundError:
        text = ""
    if not text:
        return _load_cert_files(directory)
    try:
        return _parse_hosts_file(directory, text)
    except errdefs.InvalidArgument as exc:
        # As containerd: a broken hosts.toml is logged and the directory read the Docker way.
        log.error("failed to decode %s: %s", directory / "hosts.toml", exc)
        return _load_cert_files(directory)


# --- the configuration as a whole ---------------------------------------------------------------


@dataclass(frozen=True)
class HostsConfig:
    """Endpoints for registries, from hosts directories and defaults; ctr's resolver flags.

    ``hosts_dirs``: roots holding ``<host>/hosts.toml`` (ctr's ``--hosts-dir``); ``None`` means
    :data:`DEFAULT_HOSTS_DIRS`, ``()`` none. ``plain_http`` (ctr's ``--plain-http``) makes plain
    HTTP the default scheme; ``default_scheme`` sets it explicitly (``"https"`` reaches a
    loopback registry over HTTPS too). ``ca_files``, ``client_pairs`` and ``skip_verify`` (ctr's
    ``--tlscacert``, ``--tlscert``/``--tlskey``, ``--skip-verify``) apply to every host, below
    what a host directory says.
    """

    hosts_dirs: Sequence[str | os.PathLike[str]] | None = None
    plain_http: bool = False
    default_scheme: str = ""
    ca_files: Sequence[str] = ()
    client_pairs: Sequence[tuple[str, str]] = ()
    skip_verify: bool = False

    def host_dir(self, registry: str) -> Path | None:
        """The directory that configures ``registry``: the most specific name under any root
        (roots in order), then ``_default`` under any root; None when there is none."""
        roots = DEFAULT_HOSTS_DIRS if self.hosts_dirs is None else tuple(self.hosts_dirs)
        for root in roots:
            for candidate in host_paths(root, registry):
                if candidate.exists():
                    return candidate
        for root in roots:
            candidate = Path(root) / "_default"
            if candidate.exists():
                return candidate
        return None

    def hosts(self, registry: str) -> list[RegistryHost]:
        """The endpoints of ``registry`` (a reference's host), in the order to try them."""
        if self.default_scheme not in ("", "http", "https"):
            raise errdefs.InvalidArgument(f"invalid default scheme {self.default_scheme!r}")
        scheme = self.default_scheme or ("http" if self.plain_http else "")
        directory = self.host_dir(registry)
        parsed = (
            _load_host_dir(directory)
            if directory is not None
            else [_Parsed(RegistryHost(""), False)]
        )
        out: list[RegistryHost] = []
        for i, p in enumerate(parsed):
            h = p.host
            skip_set = p.skip_verify_set
            if i == len(parsed) - 1 and not h.host:
                h, forced_skip = _default_endpoint(h, registry, scheme)
                if forced_skip and not skip_set:
                    h = replace(h, tls=replace(h.tls, skip_verify=True))
                    skip_set = True
            tls = TLSConfig(
                ca_files=(*self.ca_files, *h.tls.ca_files),
                client_pairs=(*self.client_pairs, *h.tls.client_pairs),
                skip_verify=h.tls.skip_verify if skip_set else self.skip_verify,
            )
            out.append(replace(h, tls=tls))
        return out


def _default_endpoint(h: RegistryHost, registry: str, scheme: str) -> tuple[RegistryHost, bool]:
    """Fill in the origin as containerd's ``ConfigureHosts`` does; also whether it skips TLS
    verification (a loopback registry over plain HTTP does, in case it redirects to HTTPS)."""
    skip = False
    if registry == "docker.io":
        host, scheme = "registry-1.docker.io", "https"
    elif is_localhost(registry):
        host = registry
        if scheme in ("", "http"):
            scheme, skip = "http", True
    else:
        host = registry
        scheme = scheme or "https"
    return replace(h, host=host, scheme=scheme, path="/v2", capabilities=HostCapabilities.ALL), skip

"""Named networks: conflists in the CNI config directory.

A network is found by its conflist's ``name`` among the ``*.conflist`` and ``*.conf`` files of
``conf_dir`` (in file-name order, as libcni). Networks made here are written as
``pycontainerd-<name>.conflist``, each with its own bridge and subnet: the bridge plugin (the
gateway on the bridge, outbound NAT), host-local addresses, portmap for published ports (with
SNAT, so ``127.0.0.1:HOSTPORT`` reaches the container) and the firewall plugin (forwarding to
and from the container's address allowed). No tuning plugin: without settings it does nothing
but cost a process at each ADD and DEL. The network named ``bridge`` is written with the
configured defaults the first time it is asked for.
"""

from __future__ import annotations

import builtins
import contextlib
import ipaddress
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pycontainerd import errdefs
from pycontainerd.network.cni import ConfList, parse_conflist

__all__ = [
    "DEFAULT_BIN_DIRS",
    "DEFAULT_BRIDGE",
    "DEFAULT_CONF_DIR",
    "DEFAULT_NETWORK",
    "DEFAULT_SUBNET",
    "NetworkStore",
    "bridge_conflist",
]

log = logging.getLogger(__name__)

DEFAULT_CONF_DIR: Final = "/etc/cni/net.d"
DEFAULT_BIN_DIRS: Final = ("/usr/lib/cni", "/opt/cni/bin")
DEFAULT_SUBNET: Final = "10.88.0.0/16"
DEFAULT_BRIDGE: Final = "pcd0"
#: The network written with the defaults on first use.
DEFAULT_NETWORK: Final = "bridge"
#: The prefix of the conflist files this store writes (and may remove).
FILE_PREFIX: Final = "pycontainerd-"
#: Where subnets of networks created without one are taken from, a /24 each.
_AUTO_POOL: Final = ipaddress.ip_network("10.89.0.0/16")
_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_IFNAME_MAX: Final = 15


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise errdefs.InvalidArgument(
            f"network name {name!r}: must be 1 to 63 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )


def _check_bridge(bridge: str) -> None:
    if not bridge or len(bridge) > _IFNAME_MAX or "/" in bridge or any(c.isspace() for c in bridge):
        raise errdefs.InvalidArgument(
            f"bridge name {bridge!r}: must be 1 to {_IFNAME_MAX} characters without '/' or spaces"
        )


def _subnet(subnet: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        net = ipaddress.ip_network(subnet, strict=True)
    except ValueError as exc:
        raise errdefs.InvalidArgument(f"subnet {subnet!r}: {exc}") from None
    if net.num_addresses < 4:
        raise errdefs.InvalidArgument(f"subnet {subnet}: too small (at least a /30 or /126)")
    return net


def bridge_conflist(name: str, *, bridge: str, subnet: str) -> ConfList:
    """The conflist of a bridge network ``name`` on ``bridge`` with addresses from ``subnet``."""
    _check_name(name)
    _check_bridge(bridge)
    net = _subnet(subnet)
    default_route = "0.0.0.0/0" if net.version == 4 else "::/0"
    doc: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": str(net)}]],
                    "routes": [{"dst": default_route}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
            {"type": "firewall"},
        ],
    }
    return ConfList(name=name, cni_version="1.0.0", plugins=tuple(doc["plugins"]), raw=doc, path="")


@dataclass(frozen=True)
class NetworkInfo:
    """A network as listed: its name, file, bridge and subnets (when it is a bridge)."""

    name: str
    path: str
    cni_version: str
    plugins: tuple[str, ...]
    bridge: str = ""
    subnets: tuple[str, ...] = ()


def _info(conf: ConfList) -> NetworkInfo:
    bridge = ""
    subnets: list[str] = []
    for plugin in conf.plugins:
        if plugin.get("type") == "bridge":
            bridge = str(plugin.get("bridge", "cni0"))
        ipam = plugin.get("ipam")
        if isinstance(ipam, dict):
            if isinstance(ipam.get("subnet"), str):
                subnets.append(ipam["subnet"])
            for rangeset in ipam.get("ranges") or []:
                for r in rangeset if isinstance(rangeset, list) else []:
                    if isinstance(r, dict) and isinstance(r.get("subnet"), str):
                        subnets.append(r["subnet"])
    return NetworkInfo(
        name=conf.name,
        path=conf.path,
        cni_version=conf.cni_version,
        plugins=tuple(str(p["type"]) for p in conf.plugins),
        bridge=bridge,
        subnets=tuple(subnets),
    )


class NetworkStore:
    """The networks of a CNI config directory."""

    def __init__(
        self,
        conf_dir: str | Path = DEFAULT_CONF_DIR,
        *,
        default_subnet: str = DEFAULT_SUBNET,
        default_bridge: str = DEFAULT_BRIDGE,
    ) -> None:
        self.conf_dir = Path(conf_dir)
        self.default_subnet = default_subnet
        self.default_bridge = default_bridge

    def _files(self) -> list[Path]:
        try:
            entries = sorted(self.conf_dir.iterdir())
        except FileNotFoundError:
            return []
        return [p for p in entries if p.suffix in (".conflist", ".conf") and p.is_file()]

    def _scan(self) -> tuple[list[ConfList], list[tuple[Path, errdefs.ContainerdError]]]:
        good: list[ConfList] = []
        bad: list[tuple[Path, errdefs.ContainerdError]] = []
        for path in self._files():
            try:
                good.append(parse_conflist(path.read_bytes(), path=str(path)))
            except errdefs.ContainerdError as exc:
                bad.append((path, exc))
            except OSError as exc:
                bad.append((path, errdefs.Unknown(f"network config {path}: {exc.strerror}")))
        return good, bad

    def path_of(self, name: str) -> Path:
        """The file this store writes network ``name`` to."""
        return self.conf_dir / f"{FILE_PREFIX}{name}.conflist"

    def get(self, name: str) -> ConfList:
        """The conflist of network ``name``; ``bridge`` is written with the defaults when absent.

        NotFound when no file names it; InvalidArgument naming the file when the file that
        would hold it (``pycontainerd-<name>.conflist``) does not parse.
        """
        _check_name(name)
        good, bad = self._scan()
        for conf in good:
            if conf.name == name:
                return conf
        own = self.path_of(name)
        for path, exc in bad:
            if path == own or name in path.stem:
                raise exc
        if name == DEFAULT_NETWORK:
            return self._write(
                bridge_conflist(name, bridge=self.default_bridge, subnet=self.default_subnet),
                exclusive=False,
            )
        raise errdefs.NotFound(f"network {name}: not found in {self.conf_dir}")

    def list(self) -> list[NetworkInfo]:
        """Every network of the directory that parses (others are logged), by file name."""
        good, bad = self._scan()
        for path, exc in bad:
            log.warning("skipping %s: %s", path, exc)
        return [_info(c) for c in good]

    def inspect(self, name: str) -> tuple[NetworkInfo, ConfList]:
        """What :meth:`list` tells of ``name``, and its conflist."""
        conf = self.get(name)
        return _info(conf), conf

    def _used_subnets(self) -> builtins.list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        used = []
        for info in self.list():
            for s in info.subnets:
                with contextlib.suppress(ValueError):
                    used.append(ipaddress.ip_network(s, strict=False))
        with contextlib.suppress(ValueError):
            used.append(ipaddress.ip_network(self.default_subnet, strict=False))
        return used

    def create(self, name: str, *, subnet: str = "", bridge: str = "") -> ConfList:
        """Write network ``name`` as a bridge network; a free /24 of 10.89.0.0/16 and a bridge
        ``pcd-<name>`` unless given. AlreadyExists when a network of that name exists;
        InvalidArgument when the subnet overlaps another network's."""
        _check_name(name)
        good, _ = self._scan()
        if any(c.name == name for c in good) or self.path_of(name).exists():
            raise errdefs.AlreadyExists(f"network {name}: already exists")
        used = self._used_subnets()
        if subnet:
            net = _subnet(subnet)
            for other in used:
                if other.version == net.version and net.overlaps(other):
                    raise errdefs.InvalidArgument(
                        f"create network {name}: subnet {net} overlaps {other} of another network"
                    )
        else:
            for candidate in _AUTO_POOL.subnets(new_prefix=24):
                if not any(o.version == 4 and candidate.overlaps(o) for o in used):
                    subnet = str(candidate)
                    break
            else:
                raise errdefs.Unavailable(
                    f"create network {name}: no free subnet left in {_AUTO_POOL}"
                )
        if not bridge:
            bridge = f"pcd-{name}"[:_IFNAME_MAX]
        for info in self.list():
            if info.bridge == bridge:
                raise errdefs.AlreadyExists(
                    f"create network {name}: bridge {bridge} is used by network {info.name}"
                )
        return self._write(bridge_conflist(name, bridge=bridge, subnet=subnet), exclusive=True)

    def _write(self, conf: ConfList, *, exclusive: bool) -> ConfList:
        path = self.path_of(conf.name)
        self.conf_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(conf.to_json())
        try:
            if exclusive:
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    raise errdefs.AlreadyExists(f"network {conf.name}: already exists") from None
            else:
                os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return parse_conflist(path.read_bytes(), path=str(path))

    def remove(
        self, name: str, *, in_use: Callable[[str], builtins.list[str]] | None = None
    ) -> None:
        """Remove network ``name`` (a file this store wrote). FailedPrecondition while
        ``in_use(name)`` names containers attached to it; the bridge goes too when present."""
        _check_name(name)
        conf = self.get(name) if name != DEFAULT_NETWORK else None
        path = self.path_of(name)
        if conf is not None and conf.path != str(path):
            raise errdefs.FailedPrecondition(
                f"remove network {name}: {conf.path} was not written by pycontainerd"
            )
        if not path.exists():
            raise errdefs.NotFound(f"network {name}: not found in {self.conf_dir}")
        users = in_use(name) if in_use is not None else []
        if users:
            raise errdefs.FailedPrecondition(
                f"remove network {name}: in use by {', '.join(sorted(users))}"
            )
        info = _info(parse_conflist(path.read_bytes(), path=str(path)))
        path.unlink()
        if info.bridge:
            _remove_link(info.bridge)


def _remove_link(name: str) -> None:
    import subprocess

    if not Path(f"/sys/class/net/{name}").exists():
        return
    subprocess.run(["ip", "link", "delete", name], capture_output=True, check=False)

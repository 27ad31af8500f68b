"""The labels by which a container asks for a network, and the one the daemon answers with.

- ``pycontainerd.io/network``: the network's name (``bridge`` is the default network); absent,
  ``host`` or ``none`` mean no CNI (``host`` shares the host's namespace, as the spec says).
- ``pycontainerd.io/ports``: the published ports, a JSON list of CNI ``portMappings`` entries
  ``{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": ""}``.
- ``pycontainerd.io/network.result``: set by the daemon while the task is attached: JSON
  ``{"network", "interface", "mac", "ips": [{"address", "gateway"}], "ports"}``.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from pycontainerd import errdefs

__all__ = [
    "LABEL_NETWORK",
    "LABEL_PORTS",
    "LABEL_RESULT",
    "NO_NETWORK",
    "PortMapping",
    "container_labels",
    "network_result",
    "parse_port",
    "parse_ports",
]

LABEL_NETWORK: Final = "pycontainerd.io/network"
LABEL_PORTS: Final = "pycontainerd.io/ports"
LABEL_RESULT: Final = "pycontainerd.io/network.result"
#: Network label values that ask for no CNI network.
NO_NETWORK: Final = frozenset({"", "host", "none"})


@dataclass(frozen=True)
class PortMapping:
    """A published port: ``host_ip:host_port`` on the host to ``container_port`` inside."""

    host_port: int
    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""

    def __post_init__(self) -> None:
        for what, port in (("host port", self.host_port), ("container port", self.container_port)):
            if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
                raise errdefs.InvalidArgument(f"{what} {port!r}: must be 1 to 65535")
        if self.protocol not in ("tcp", "udp", "sctp"):
            raise errdefs.InvalidArgument(
                f"port {self.host_port}: protocol {self.protocol!r} is not tcp, udp or sctp"
            )
        if self.host_ip:
            try:
                ipaddress.ip_address(self.host_ip)
            except ValueError:
                raise errdefs.InvalidArgument(
                    f"port {self.host_port}: host ip {self.host_ip!r} is not an address"
                ) from None

    def to_cni(self) -> dict[str, Any]:
        """The ``portMappings`` entry."""
        return {
            "hostPort": self.host_port,
            "containerPort": self.container_port,
            "protocol": self.protocol,
            "hostIP": self.host_ip,
        }

    def __str__(self) -> str:
        host = f"[{self.host_ip}]" if ":" in self.host_ip else (self.host_ip or "0.0.0.0")
        return f"{host}:{self.host_port}/{self.protocol}"


def parse_ports(text: str) -> tuple[PortMapping, ...]:
    """The port mappings of a ``pycontainerd.io/ports`` label (empty: none)."""
    if not text:
        return ()
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise errdefs.InvalidArgument(f"not valid json: {exc}") from None
    if not isinstance(doc, list):
        raise errdefs.InvalidArgument("expected a json array of port mappings")
    out = []
    for i, entry in enumerate(doc):
        if not isinstance(entry, dict):
            raise errdefs.InvalidArgument(f"entry {i}: expected an object")
        unknown = set(entry) - {"hostPort", "containerPort", "protocol", "hostIP"}
        if unknown:
            raise errdefs.InvalidArgument(f"entry {i}: unknown keys {', '.join(sorted(unknown))}")
        out.append(
            PortMapping(
                host_port=entry.get("hostPort", 0),
                container_port=entry.get("containerPort", 0),
                protocol=str(entry.get("protocol") or "tcp").lower(),
                host_ip=str(entry.get("hostIP") or ""),
            )
        )
    seen = set()
    for p in out:
        key = (p.protocol, p.host_port)
        if key in seen:
            raise errdefs.InvalidArgument(f"host port {p.host_port}/{p.protocol} published twice")
        seen.add(key)
    return tuple(out)


def parse_port(spec: str) -> PortMapping:
    """``[HOSTIP:]HOST:CONTAINER[/tcp|udp]`` (``pyctr run -p``) as a mapping."""
    text, _, protocol = spec.partition("/")
    host_ip = ""
    parts = text.rsplit(":", 2)
    if len(parts) == 3:
        host_ip = parts[0].strip("[]")
        parts = parts[1:]
    if len(parts) != 2:
        raise errdefs.InvalidArgument(
            f"port {spec!r}: expected [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp]"
        )
    try:
        host_port, container_port = int(parts[0]), int(parts[1])
    except ValueError:
        raise errdefs.InvalidArgument(f"port {spec!r}: ports must be numbers") from None
    return PortMapping(host_port, container_port, (protocol or "tcp").lower(), host_ip)


def container_labels(
    network: str = "bridge",
    ports: Mapping[int, int] | Mapping[str, int] | Mapping[int | str, int] | None = None,
    *,
    protocol: str = "tcp",
    host_ip: str = "",
) -> dict[str, str]:
    """The labels that put a container on ``network`` with ``ports`` published.

    ``ports`` maps a host port to a container port: ``{8080: 80}``; a key may also be a
    ``pyctr run -p`` string's host part with a protocol, ``{"5353/udp": 53}``. ``host`` or
    ``none`` give no labels (no CNI).
    """
    if network in NO_NETWORK:
        if ports:
            raise errdefs.InvalidArgument(
                f"ports cannot be published with network {network or 'none'}"
            )
        return {}
    mappings = []
    for host, container in (ports or {}).items():
        proto = protocol
        if isinstance(host, str):
            text, _, p = host.partition("/")
            proto = p or protocol
            try:
                host_port = int(text)
            except ValueError:
                raise errdefs.InvalidArgument(f"host port {text!r}: not a number") from None
        else:
            host_port = host
        mappings.append(PortMapping(host_port, container, proto.lower(), host_ip).to_cni())
    labels = {LABEL_NETWORK: network}
    if mappings:
        labels[LABEL_PORTS] = json.dumps(mappings, separators=(",", ":"))
        parse_ports(labels[LABEL_PORTS])  # duplicates refused here, not at task create
    return labels


def network_result(labels: Mapping[str, str]) -> dict[str, Any] | None:
    """The daemon's attachment result from a container's labels, None while not attached."""
    text = labels.get(LABEL_RESULT)
    if not text:
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None

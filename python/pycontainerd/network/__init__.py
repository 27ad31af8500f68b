"""Container networking with CNI: networks, labels, and the daemon's network plugin.

Clients ask for a network with :func:`container_labels` (labels on the container record);
the daemon's ``io.containerd.internal.v1.network`` plugin (:mod:`pycontainerd.network.manager`)
attaches the task on create and detaches it on delete. :class:`NetworkStore` manages named
networks (conflists in the CNI config directory) on the daemon's host; :class:`CNI` runs plugins
per the CNI spec.
"""

from pycontainerd.network.cni import CNI, ConfList, load_conflist, parse_conflist
from pycontainerd.network.labels import (
    LABEL_NETWORK,
    LABEL_PORTS,
    LABEL_RESULT,
    PortMapping,
    container_labels,
    network_result,
    parse_port,
    parse_ports,
)
from pycontainerd.network.store import NetworkInfo, NetworkStore, bridge_conflist

__all__ = [
    "CNI",
    "LABEL_NETWORK",
    "LABEL_PORTS",
    "LABEL_RESULT",
    "ConfList",
    "NetworkInfo",
    "NetworkStore",
    "PortMapping",
    "bridge_conflist",
    "container_labels",
    "load_conflist",
    "network_result",
    "parse_conflist",
    "parse_port",
    "parse_ports",
]

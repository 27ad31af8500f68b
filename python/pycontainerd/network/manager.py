"""The ``io.containerd.internal.v1 network`` plugin: CNI networks for tasks.

A container asks for a network by labels on its record (see :mod:`pycontainerd.network`).
On task create, :meth:`NetworkManager.attach` makes a network namespace pinned at
``<state>/netns/<namespace>-<id>``, brings ``lo`` up (the loopback plugin), runs CNI ADD of the
network's conflist with the published ports (``portMappings``), writes ``hosts``,
``resolv.conf`` and ``hostname`` under ``<state>/etc/<namespace>/<id>/`` and returns the spec
with the namespace's path and bind mounts of those files. The result (addresses, gateway, MAC,
interface) is stored as the label ``pycontainerd.io/network.result`` on the container record.
A failed ADD is undone (DEL, namespace and files removed) before the error is raised.

:meth:`NetworkManager.detach` (task delete) runs DEL with the cached result and removes the
namespace, the files and the label; it may be repeated. Each attachment is recorded under
``<root>/attachments/``, so after a restart (or a shim that died) the manager detaches every
container that has no task any more, whether or not its record still exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pycontainerd import _native, errdefs
from pycontainerd.containers import Container, RuntimeInfo
from pycontainerd.events import Envelope, Exchange, SlowSubscriber
from pycontainerd.metadata import DB, ContainerStore
from pycontainerd.network.cni import CNI, LOOPBACK
from pycontainerd.network.labels import (
    LABEL_NETWORK,
    LABEL_PORTS,
    LABEL_RESULT,
    NO_NETWORK,
    PortMapping,
    parse_ports,
)
from pycontainerd.network.store import (
    DEFAULT_BIN_DIRS,
    DEFAULT_BRIDGE,
    DEFAULT_CONF_DIR,
    DEFAULT_SUBNET,
    NetworkStore,
)
from pycontainerd.plugin import InitContext, Registration, Type
from pycontainerd.runtime import TASK_DELETE_TOPIC, TaskManager

__all__ = ["Attachment", "Config", "NetworkManager", "registration"]

log = logging.getLogger(__name__)

#: The interface of the container's network.
IFNAME: Final = "eth0"
_HOST_RESOLV: Final = "/etc/resolv.conf"
_RESOLVED_UPSTREAM: Final = "/run/systemd/resolve/resolv.conf"


@dataclass
class Config:
    """``[plugins."io.containerd.internal.v1.network"]``."""

    #: Where networks' conflists are found (and ``pyctr network create`` writes them).
    conf_dir: str = DEFAULT_CONF_DIR
    #: Where CNI plugin executables are looked for, in order.
    bin_dirs: list[str] = field(default_factory=lambda: list(DEFAULT_BIN_DIRS))
    #: The subnet of the ``bridge`` network written on first use.
    default_subnet: str = DEFAULT_SUBNET
    #: The bridge device of that network.
    default_bridge: str = DEFAULT_BRIDGE


@dataclass(frozen=True)
class Attachment:
    """One container's attachment to a network, as recorded on disk."""

    namespace: str
    id: str
    network: str
    cni_id: str
    netns: str
    ports: tuple[PortMapping, ...] = ()
    created_at: int = 0

    def to_json(self) -> str:
        return json.dumps(
            {
                "namespace": self.namespace,
                "id": self.id,
                "network": self.network,
                "cniId": self.cni_id,
                "netns": self.netns,
                "ports": [p.to_cni() for p in self.ports],
                "createdAt": self.created_at,
            }
        )

    @staticmethod
    def from_json(text: str) -> Attachment:
        doc = json.loads(text)
        return Attachment(
            namespace=doc["namespace"],
            id=doc["id"],
            network=doc["network"],
            cni_id=doc["cniId"],
            netns=doc["netns"],
            ports=parse_ports(json.dumps(doc.get("ports") or [])),
            created_at=int(doc.get("createdAt", 0)),
        )


def cni_container_id(namespace: str, id_: str) -> str:
    """The CNI container id of ``namespace``/``id_``: unique on the host, 64 hex digits."""
    return hashlib.sha256(f"{namespace}/{id_}".encode()).hexdigest()


def summarize(
    network: str, result: Mapping[str, Any], ports: Sequence[PortMapping]
) -> dict[str, Any]:
    """The label's view of a CNI result (1.0.0 or 0.4.0): addresses, gateways, MAC, interface."""
    interfaces = result.get("interfaces") or []
    index = None
    mac = ""
    for i, iface in enumerate(interfaces):
        if isinstance(iface, dict) and iface.get("name") == IFNAME and iface.get("sandbox"):
            index, mac = i, str(iface.get("mac", ""))
    ips = []
    for ip in result.get("ips") or []:
        if not isinstance(ip, dict):
            continue
        if index is not None and ip.get("interface") not in (None, index):
            continue
        entry = {"address": str(ip.get("address", ""))}
        if ip.get("gateway"):
            entry["gateway"] = str(ip["gateway"])
        ips.append(entry)
    return {
        "network": network,
        "interface": IFNAME,
        "mac": mac,
        "ips": ips,
        "ports": [p.to_cni() for p in ports],
    }


def _set_netns(spec: dict[str, Any], path: str) -> None:
    linux = spec.setdefault("linux", {})
    namespaces = linux.setdefault("namespaces", [])
    for ns in namespaces:
        if ns.get("type") == "network":
            ns["path"] = path
            return
    namespaces.append({"type": "network", "path": path})


def _has_namespace(spec: Mapping[str, Any], kind: str) -> bool:
    linux = spec.get("linux") or {}
    return any(ns.get("type") == kind for ns in linux.get("namespaces") or [])


def _add_file_mounts(spec: dict[str, Any], files: Mapping[str, Path]) -> None:
    mounts = spec.setdefault("mounts", [])
    taken = {m.get("destination") for m in mounts}
    for destination, source in files.items():
        if destination in taken:
            continue
        mounts.append(
            {
                "destination": destination,
                "type": "bind",
                "source": str(source),
                "options": ["rbind", "rprivate", "rw"],
            }
        )


def _resolv_conf(result: Mapping[str, Any]) -> str:
    """The host's resolv.conf without loopback nameservers (unreachable from a container),
    plus what the CNI result names."""
    source = _HOST_RESOLV
    lines: list[str] = []
    try:
        text = Path(source).read_text()
    except OSError:
        text = ""
    if any(
        ln.split()[1:2] and ln.split()[1].startswith("127.")
        for ln in text.splitlines()
        if ln.startswith("nameserver")
    ) and os.path.exists(_RESOLVED_UPSTREAM):
        text = Path(_RESOLVED_UPSTREAM).read_text()
    for line in text.splitlines():
        words = line.split()
        if (
            words[:1] == ["nameserver"]
            and len(words) > 1
            and (words[1].startswith("127.") or words[1] == "::1")
        ):
            continue
        lines.append(line)
    dns = result.get("dns")
    if isinstance(dns, dict):
        for ns in dns.get("nameservers") or []:
            lines.append(f"nameserver {ns}")
        if dns.get("search"):
            lines.append("search " + " ".join(str(s) for s in dns["search"]))
    return "\n".join(lines).strip() + "\n"


def _hosts(hostname: str, summary: Mapping[str, Any]) -> str:
    lines = [
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
    ]
    for ip in summary.get("ips", []):
        lines.append(f"{str(ip['address']).split('/')[0]}\t{hostname}")
    return "\n".join(lines) + "\n"


def _check_ports_free(ports: Sequence[PortMapping], taken: Mapping[tuple[str, int], str]) -> None:
    for p in ports:
        owner = taken.get((p.protocol, p.host_port))
        if owner is not None:
            raise errdefs.AlreadyExists(
                f"publish port {p}: port is already allocated to container {owner}"
            )
        family = socket.AF_INET6 if ":" in p.host_ip else socket.AF_INET
        kind = socket.SOCK_DGRAM if p.protocol == "udp" else socket.SOCK_STREAM
        probe = socket.socket(family, kind)
        try:
            probe.bind((p.host_ip or "0.0.0.0", p.host_port))
        except OSError as exc:
            raise errdefs.AlreadyExists(
                f"publish port {p}: port is already in use on the host ({exc.strerror})"
            ) from None
        finally:
            probe.close()


class NetworkManager:
    """Attaches containers' tasks to CNI networks and detaches them."""

    def __init__(
        self,
        *,
        root: Path,
        state: Path,
        config: Config,
        containers: ContainerStore | None = None,
        runtime: TaskManager | None = None,
    ) -> None:
        self.root = root
        self.state = state
        self.config = config
        self.store = NetworkStore(
            config.conf_dir,
            default_subnet=config.default_subnet,
            default_bridge=config.default_bridge,
        )
        self.cni = CNI(config.bin_dirs, root / "results")
        self._containers = containers
        self._runtime = runtime
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._ports_lock = threading.Lock()
        self._background: set[asyncio.Task[None]] = set()

    # -- paths and records

    def _record_path(self, namespace: str, id_: str) -> Path:
        return self.root / "attachments" / namespace / f"{id_}.json"

    def _etc_dir(self, namespace: str, id_: str) -> Path:
        return self.state / "etc" / namespace / id_

    def netns_path(self, namespace: str, id_: str) -> Path:
        """Where the namespace of ``namespace``/``id_`` is pinned."""
        return self.state / "netns" / f"{namespace}-{id_}"

    def attachment(self, namespace: str, id_: str) -> Attachment | None:
        """The recorded attachment of a container, None without one."""
        try:
            return Attachment.from_json(self._record_path(namespace, id_).read_text())
        except FileNotFoundError:
            return None
        except (ValueError, KeyError) as exc:
            log.error("attachment record of %s/%s is damaged: %s", namespace, id_, exc)
            return None

    def attachments(self) -> list[Attachment]:
        """Every recorded attachment."""
        base = self.root / "attachments"
        found = []
        if not base.is_dir():
            return []
        for ns_dir in sorted(base.iterdir()):
            for rec in sorted(ns_dir.glob("*.json")) if ns_dir.is_dir() else []:
                a = self.attachment(ns_dir.name, rec.name[: -len(".json")])
                if a is not None:
                    found.append(a)
        return found

    def users(self, network: str) -> list[str]:
        """``namespace/id`` of every container attached to ``network``."""
        return [f"{a.namespace}/{a.id}" for a in self.attachments() if a.network == network]

    def _lock(self, namespace: str, id_: str) -> asyncio.Lock:
        return self._locks.setdefault((namespace, id_), asyncio.Lock())

    # -- attach

    async def attach(self, namespace: str, container: Container) -> bytes:
        """The spec to create ``container``'s task with: attached to the network its labels ask
        for (the spec as it is when they ask for none)."""
        assert container.spec is not None
        network = container.labels.get(LABEL_NETWORK, "")
        if network in NO_NETWORK:
            return container.spec.value
        try:
            ports = parse_ports(container.labels.get(LABEL_PORTS, ""))
        except errdefs.InvalidArgument as exc:
            raise errdefs.InvalidArgument(
                f"container {container.id}: label {LABEL_PORTS}: {exc.message}"
            ) from None
        try:
            spec = json.loads(container.spec.value)
        except ValueError:
            raise errdefs.InvalidArgument(f"container {container.id}: spec is not json") from None
        if not spec.get("hostname") and _has_namespace(spec, "uts"):
            spec["hostname"] = container.id  # the name /etc/hosts and /etc/hostname give it
        hostname = str(spec.get("hostname") or container.id)
        async with self._lock(namespace, container.id):
            if self._has_task(namespace, container.id):
                raise errdefs.AlreadyExists(f"task {container.id}: already exists")
            await self._detach_locked(namespace, container.id)  # what a crash may have left
            attachment, summary = await asyncio.to_thread(
                self._attach_sync, namespace, container.id, network, ports, hostname
            )
            try:
                await asyncio.to_thread(
                    self._set_label, namespace, container.id, json.dumps(summary)
                )
            except BaseException:
                await asyncio.to_thread(self._detach_sync, attachment, undo=True)
                raise
        _set_netns(spec, attachment.netns)
        etc = self._etc_dir(namespace, container.id)
        _add_file_mounts(
            spec,
            {
                "/etc/hosts": etc / "hosts",
                "/etc/resolv.conf": etc / "resolv.conf",
                "/etc/hostname": etc / "hostname",
            },
        )
        return json.dumps(spec).encode()

    def _has_task(self, namespace: str, id_: str) -> bool:
        if self._runtime is None:
            return False
        try:
            self._runtime.get(namespace, id_)
        except errdefs.NotFound:
            return False
        return True

    def _taken_ports(self, namespace: str, id_: str) -> dict[tuple[str, int], str]:
        taken = {}
        for a in self.attachments():
            if (a.namespace, a.id) == (namespace, id_):
                continue
            for p in a.ports:
                taken[(p.protocol, p.host_port)] = f"{a.namespace}/{a.id}"
        return taken

    def _attach_sync(
        self,
        namespace: str,
        id_: str,
        network: str,
        ports: tuple[PortMapping, ...],
        hostname: str,
    ) -> tuple[Attachment, dict[str, Any]]:
        conflist = self.store.get(network)
        for plugin in conflist.plugins:  # a missing plugin fails before anything is made
            self.cni.find_plugin(str(plugin["type"]))
        self.cni.find_plugin("loopback")
        netns = self.netns_path(namespace, id_)
        attachment = Attachment(
            namespace=namespace,
            id=id_,
            network=conflist.name,
            cni_id=cni_container_id(namespace, id_),
            netns=str(netns),
            ports=ports,
            created_at=time.time_ns(),
        )
        netns.parent.mkdir(parents=True, exist_ok=True, mode=0o711)
        record = self._record_path(namespace, id_)
        record.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._ports_lock:  # two containers asking for one port: the first recorded wins
            _check_ports_free(ports, self._taken_ports(namespace, id_))
            tmp = record.with_name(f".{record.name}.tmp")
            tmp.write_text(attachment.to_json())
            os.replace(tmp, record)
        try:
            _native.netns_create(str(netns))
            # lo goes with the namespace: no DEL, so no cache entry
            self.cni.add(
                LOOPBACK, container_id=attachment.cni_id, netns=str(netns), ifname="lo", cache=False
            )
            result = self.cni.add(
                conflist,
                container_id=attachment.cni_id,
                netns=str(netns),
                ifname=IFNAME,
                capability_args={"portMappings": [p.to_cni() for p in ports]} if ports else {},
            )
            summary = summarize(conflist.name, result, ports)
            etc = self._etc_dir(namespace, id_)
            etc.mkdir(parents=True, exist_ok=True, mode=0o755)
            (etc / "hostname").write_text(hostname + "\n")
            (etc / "hosts").write_text(_hosts(hostname, summary))
            (etc / "resolv.conf").write_text(_resolv_conf(result))
        except BaseException as exc:
            log.info("attach %s/%s to %s failed, undoing: %s", namespace, id_, network, exc)
            try:
                self._detach_sync(attachment, undo=True)
            except Exception as undo:
                log.error("undo attach of %s/%s: %s", namespace, id_, undo)
            if isinstance(exc, errdefs.ContainerdError):
                raise errdefs.from_code(
                    exc.code, f"attach container {id_} to network {network}: {exc.message}"
                ) from None
            raise
        return attachment, summary

    def _set_label(self, namespace: str, id_: str, value: str) -> None:
        if self._containers is None:
            return
        with contextlib.suppress(errdefs.NotFound):
            self._containers.update(
                namespace,
                Container(id=id_, runtime=RuntimeInfo(name="-"), labels={LABEL_RESULT: value}),
                f"labels.{LABEL_RESULT}",
            )

    # -- detach

    async def detach(self, namespace: str, id_: str) -> None:
        """Undo :meth:`attach` for ``namespace``/``id_``; nothing to do is no error."""
        async with self._lock(namespace, id_):
            await self._detach_locked(namespace, id_)

    async def release(self, namespace: str, id_: str) -> None:
        """:meth:`detach`, its errors logged: the attachment stays recorded, and is detached
        again on the daemon's next start (the task that held it is gone all the same)."""
        try:
            await self.detach(namespace, id_)
        except errdefs.ContainerdError as exc:
            log.error("detach %s/%s from its network: %s", namespace, id_, exc)

    async def _detach_locked(self, namespace: str, id_: str) -> None:
        attachment = self.attachment(namespace, id_)
        if attachment is None:
            netns = self.netns_path(namespace, id_)
            if netns.exists():
                await asyncio.to_thread(_native.netns_remove, str(netns))
            return
        await asyncio.to_thread(self._detach_sync, attachment)
        await asyncio.to_thread(self._set_label, attachment.namespace, attachment.id, "")

    def _detach_sync(self, a: Attachment, *, undo: bool = False) -> None:
        """DEL and remove the namespace and files; with ``undo`` (a failed ADD), everything
        goes even when a plugin's DEL fails (the error is logged)."""
        errors: list[BaseException] = []
        try:
            self.cni.delete(a.network, container_id=a.cni_id, ifname=IFNAME, force=undo)
        except errdefs.ContainerdError as exc:
            if undo:
                log.warning("DEL after failed ADD of %s/%s: %s", a.namespace, a.id, exc)
            else:
                errors.append(exc)
        try:
            self.cni.delete(LOOPBACK.name, container_id=a.cni_id, ifname="lo", force=undo)
        except errdefs.ContainerdError as exc:
            log.warning("loopback DEL of %s/%s: %s", a.namespace, a.id, exc)
        if errors:  # the record and the namespace stay: DEL is tried again later, in it
            raise errdefs.Unknown(f"detach container {a.id} from network {a.network}: {errors[0]}")
        try:
            _native.netns_remove(a.netns)
        except errdefs.ContainerdError as exc:
            errors.append(exc)
        shutil.rmtree(self._etc_dir(a.namespace, a.id), ignore_errors=True)
        if errors:
            raise errdefs.Unknown(f"detach container {a.id} from network {a.network}: {errors[0]}")
        record = self._record_path(a.namespace, a.id)
        with contextlib.suppress(FileNotFoundError):
            record.unlink()
        for empty in (record.parent, self._etc_dir(a.namespace, a.id).parent):
            with contextlib.suppress(OSError):  # the namespace's last attachment: its directory
                empty.rmdir()

    # -- checks and reconciliation

    async def check(self, namespace: str, id_: str) -> None:
        """CNI CHECK of a container's attachment."""
        a = self.attachment(namespace, id_)
        if a is None:
            raise errdefs.NotFound(f"container {id_}: not attached to a network")
        await asyncio.to_thread(self.cni.check, a.network, container_id=a.cni_id, ifname=IFNAME)

    async def reconcile(self) -> None:
        """Detach every container that has no task (after a restart, after a dead shim)."""
        for a in self.attachments():
            if self._has_task(a.namespace, a.id):
                continue
            log.info(
                "container %s/%s has no task: detaching it from %s", a.namespace, a.id, a.network
            )
            await self.release(a.namespace, a.id)
        await asyncio.to_thread(self._remove_strays)

    def _remove_strays(self) -> None:
        """Namespaces and files under the state directory that no attachment holds."""
        attached = self.attachments()
        netns_dir = self.state / "netns"
        if netns_dir.is_dir():
            recorded = {a.netns for a in attached}
            for path in netns_dir.iterdir():
                if str(path) not in recorded:
                    with contextlib.suppress(errdefs.ContainerdError):
                        _native.netns_remove(str(path))
        etc = self.state / "etc"
        if etc.is_dir():
            kept = {(a.namespace, a.id) for a in attached}
            for ns_dir in etc.iterdir():
                for d in ns_dir.iterdir() if ns_dir.is_dir() else []:
                    if (ns_dir.name, d.name) not in kept:
                        shutil.rmtree(d, ignore_errors=True)
                with contextlib.suppress(OSError):
                    ns_dir.rmdir()

    async def _watch(self, exchange: Exchange) -> None:
        # subscribed first: a task deleted while the tasks are loaded is seen either way
        subscription = exchange.subscribe(f'topic=="{TASK_DELETE_TOPIC}"')
        if self._runtime is not None:
            await self._runtime.loaded()
        await self.reconcile()
        while True:
            try:
                async for envelope in subscription:
                    await self._on_task_delete(envelope)
                return  # the exchange shut down
            except SlowSubscriber:
                log.warning("task delete events came too fast: reconciling")
                subscription = exchange.subscribe(f'topic=="{TASK_DELETE_TOPIC}"')
                await self.reconcile()

    async def _on_task_delete(self, envelope: Envelope) -> None:
        """A task was deleted (by the shim, or after the shim died): detach its container
        unless a task was created again since."""
        a = self.attachment(envelope.namespace, self._event_id(envelope))
        if a is None or a.created_at > envelope.timestamp:
            return
        if self._has_task(a.namespace, a.id):
            return
        await self.release(a.namespace, a.id)

    @staticmethod
    def _event_id(envelope: Envelope) -> str:
        decoded = envelope.decode()
        return str(getattr(decoded, "container_id", "")) if decoded is not None else ""

    def start(self, exchange: Exchange) -> None:
        """Reconcile once the runtime has loaded, then follow task deletions."""
        bg = asyncio.get_running_loop().create_task(self._watch(exchange))
        self._background.add(bg)
        bg.add_done_callback(self._background.discard)

    def close(self) -> None:
        """Stop following events."""
        for bg in list(self._background):
            bg.cancel()


def _init(ic: InitContext) -> NetworkManager:
    from pycontainerd.daemon.services.events import publisher

    config = ic.config if isinstance(ic.config, Config) else Config()
    if not isinstance(config.bin_dirs, list) or not all(
        isinstance(d, str) for d in config.bin_dirs
    ):
        raise errdefs.InvalidArgument("network config: bin_dirs: expected an array of strings")
    db = ic.get(Type.METADATA)
    assert isinstance(db, DB)
    runtime = ic.get(Type.RUNTIME_V2, "task")
    assert isinstance(runtime, TaskManager)
    ic.root.mkdir(parents=True, exist_ok=True, mode=0o711)
    ic.state.mkdir(parents=True, exist_ok=True, mode=0o711)
    manager = NetworkManager(
        root=ic.root, state=ic.state, config=config, containers=ContainerStore(db), runtime=runtime
    )
    ic.meta.exports["conf_dir"] = config.conf_dir
    ic.meta.exports["state"] = str(ic.state)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return manager
    manager.start(publisher(ic))
    return manager


registration = Registration(
    type=Type.INTERNAL,
    id="network",
    init=_init,
    requires=(Type.EVENT, Type.METADATA, Type.RUNTIME_V2),
    config=Config,
)

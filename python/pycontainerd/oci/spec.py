"""The default OCI runtime spec of a Linux container, as containerd 1.6's ``oci.GenerateSpec``.

A spec is the runtime spec's JSON as a ``dict``; options are functions that change it in place
(:data:`SpecOpt`), applied in order. Keys appear in the order Go's encoder writes them, so the
JSON reads like containerd's.

One documented difference from containerd 1.6's default: the spec also mounts the cgroup
filesystem read-only at ``/sys/fs/cgroup`` (as runc's own example spec and Docker do);
``without_mounts("/sys/fs/cgroup")`` removes it.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable, Iterable
from typing import Any, Final

from pycontainerd import errdefs
from pycontainerd.containers import SPEC_TYPE_URL, AnyValue

__all__ = [
    "DEFAULT_CAPABILITIES",
    "DEFAULT_MASKED_PATHS",
    "DEFAULT_READONLY_PATHS",
    "DEFAULT_ROOTFS_PATH",
    "DEFAULT_UNIX_ENV",
    "SPEC_TYPE_URL",
    "SPEC_VERSION",
    "Spec",
    "SpecOpt",
    "apply_opts",
    "canonical",
    "default_mounts",
    "generate_spec",
    "spec_from_any",
    "spec_to_any",
]

#: A runtime spec: its JSON document.
Spec = dict[str, Any]
#: An option: changes a spec in place, or raises an ``errdefs`` error.
SpecOpt = Callable[[Spec], None]

#: The runtime-spec version containerd 1.6 writes.
SPEC_VERSION: Final = "1.0.2-dev"
#: The root path inside a bundle.
DEFAULT_ROOTFS_PATH: Final = "rootfs"
#: ``PATH`` when the image sets no environment.
DEFAULT_UNIX_ENV: Final = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)

DEFAULT_CAPABILITIES: Final = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

DEFAULT_MASKED_PATHS: Final = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
)

DEFAULT_READONLY_PATHS: Final = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

_NAMESPACES: Final = ("pid", "ipc", "uts", "mount", "network")

_TMPFS_DEV: Final = ("nosuid", "strictatime", "mode=755", "size=65536k")


def _mount(destination: str, type_: str, source: str, *options: str) -> dict[str, Any]:
    return {"destination": destination, "type": type_, "source": source, "options": list(options)}


def default_mounts() -> list[dict[str, Any]]:
    """The mounts of a new spec: containerd's, and the cgroup filesystem read-only."""
    return [
        _mount("/proc", "proc", "proc", "nosuid", "noexec", "nodev"),
        _mount("/dev", "tmpfs", "tmpfs", *_TMPFS_DEV),
        _mount(
            "/dev/pts",
            "devpts",
            "devpts",
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ),
        _mount("/dev/shm", "tmpfs", "shm", "nosuid", "noexec", "nodev", "mode=1777", "size=65536k"),
        _mount("/dev/mqueue", "mqueue", "mqueue", "nosuid", "noexec", "nodev"),
        _mount("/sys", "sysfs", "sysfs", "nosuid", "noexec", "nodev", "ro"),
        _mount("/sys/fs/cgroup", "cgroup", "cgroup", "nosuid", "noexec", "nodev", "relatime", "ro"),
        _mount("/run", "tmpfs", "tmpfs", *_TMPFS_DEV),
    ]


def _cgroups_path(namespace: str, container_id: str) -> str:
    # Go's filepath.Join("/", ns, id): empty elements dropped, the result cleaned
    return posixpath.normpath("/" + "/".join(p for p in (namespace, container_id) if p))


def generate_spec(namespace: str, container_id: str, *opts: SpecOpt) -> Spec:
    """containerd's default Linux spec for ``container_id`` in ``namespace``, then ``opts``.

    Namespaces pid, ipc, uts, mount and network; the default mounts, capabilities, masked and
    read-only paths; ``RLIMIT_NOFILE`` 1024; every device denied; root ``rootfs``; cgroup path
    ``/<namespace>/<id>``; process ``cwd`` ``/`` as uid 0 with no new privileges.
    """
    if not namespace:
        raise errdefs.FailedPrecondition("namespace is required")
    caps = list(DEFAULT_CAPABILITIES)
    spec: Spec = {
        "ociVersion": SPEC_VERSION,
        "process": {
            "user": {"uid": 0, "gid": 0},
            "cwd": "/",
            "capabilities": {
                "bounding": list(caps),
                "effective": list(caps),
                "permitted": list(caps),
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": DEFAULT_ROOTFS_PATH},
        "mounts": default_mounts(),
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "cgroupsPath": _cgroups_path(namespace, container_id),
            "namespaces": [{"type": t} for t in _NAMESPACES],
            "maskedPaths": list(DEFAULT_MASKED_PATHS),
            "readonlyPaths": list(DEFAULT_READONLY_PATHS),
        },
    }
    apply_opts(spec, opts)
    return spec


def apply_opts(spec: Spec, opts: Iterable[SpecOpt]) -> Spec:
    """Apply ``opts`` to ``spec`` in order; returns ``spec``."""
    for opt in opts:
        opt(spec)
    return spec


# The runtime spec's objects: their fields in Go's struct order, and the kind of each field
# that is an object ("[kind" a list of them, "{}" a map, whose keys Go sorts).
_GO_FIELDS: Final[dict[str, tuple[str, dict[str, str]]]] = {
    "spec": (
        "ociVersion process root hostname domainname mounts hooks annotations linux solaris "
        "windows vm zos",
        {
            "process": "process",
            "root": "root",
            "mounts": "[mount",
            "annotations": "{}",
            "linux": "linux",
        },
    ),
    "process": (
        "terminal consoleSize user args commandLine env cwd capabilities rlimits "
        "noNewPrivileges apparmorProfile oomScoreAdj selinuxLabel",
        {"consoleSize": "box", "user": "user", "capabilities": "caps", "rlimits": "[rlimit"},
    ),
    "box": ("height width", {}),
    "user": ("uid gid umask additionalGids username", {}),
    "caps": ("bounding effective inheritable permitted ambient", {}),
    "rlimit": ("type hard soft", {}),
    "root": ("path readonly", {}),
    "mount": ("destination type source options", {}),
    "linux": (
        "uidMappings gidMappings sysctl resources cgroupsPath namespaces devices seccomp "
        "rootfsPropagation maskedPaths readonlyPaths mountLabel intelRdt personality",
        {"sysctl": "{}", "resources": "resources", "namespaces": "[ns", "devices": "[device"},
    ),
    "ns": ("type path", {}),
    "device": ("path type major minor fileMode uid gid", {}),
    "resources": (
        "devices memory cpu pids blockIO hugepageLimits network rdma unified",
        {"devices": "[devcg", "memory": "memory", "cpu": "cpu", "pids": "pids", "unified": "{}"},
    ),
    "devcg": ("allow type major minor access", {}),
    "memory": (
        "limit reservation swap kernel kernelTCP swappiness disableOOMKiller useHierarchy "
        "checkBeforeUpdate",
        {},
    ),
    "cpu": ("shares quota burst period realtimeRuntime realtimePeriod cpus mems idle", {}),
    "pids": ("limit", {}),
}


def _go_order(value: Any, kind: str) -> Any:
    if kind == "{}":
        return {k: value[k] for k in sorted(value)} if isinstance(value, dict) else value
    if kind.startswith("["):
        return [_go_order(v, kind[1:]) for v in value] if isinstance(value, list) else value
    if not isinstance(value, dict) or kind not in _GO_FIELDS:
        return value
    names, kinds = _GO_FIELDS[kind]
    order = names.split()
    rank = {name: i for i, name in enumerate(order)}
    keys = sorted(value, key=lambda k: (rank.get(k, len(order)), 0))
    return {k: _go_order(value[k], kinds.get(k, "")) for k in keys}


def canonical(spec: Spec) -> Spec:
    """A copy of ``spec`` with every known object's keys in Go's order and maps sorted, as
    containerd's tools print a spec; unknown keys are kept, after the known ones."""
    out: Spec = _go_order(spec, "spec")
    return out


def spec_to_any(spec: Spec) -> AnyValue:
    """The spec as a container record holds it: JSON (keys in Go's order) under containerd's
    type URL."""
    return AnyValue(SPEC_TYPE_URL, json.dumps(canonical(spec), separators=(",", ":")).encode())


def spec_from_any(value: AnyValue) -> Spec:
    """The spec a container record holds; :class:`errdefs.InvalidArgument` for anything else."""
    if value.type_url != SPEC_TYPE_URL:
        raise errdefs.InvalidArgument(
            f'container spec has type "{value.type_url}", expected "{SPEC_TYPE_URL}"'
        )
    try:
        spec = json.loads(value.value)
    except ValueError as exc:
        raise errdefs.InvalidArgument(f"container spec is not valid JSON: {exc}") from None
    if not isinstance(spec, dict):
        raise errdefs.InvalidArgument("container spec is not a JSON object")
    return spec

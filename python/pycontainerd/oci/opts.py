"""Spec options: containerd's ``oci.With...`` functions, each returning a :data:`SpecOpt`.

``generate_spec(ns, id, with_image_config(cfg, root), with_tty(), with_memory_limit(1 << 30))``.
Options that resolve a user or a group by name read the container's own ``/etc/passwd`` and
``/etc/group`` from ``root`` (a directory, or a :class:`~pycontainerd.oci.rootfs.RootReader`
such as :func:`~pycontainerd.oci.rootfs.root_from_mounts` of the container's snapshot); without
one, the spec's root path is used when it is absolute, as containerd does for a container
without a snapshot.

Where containerd reads the user's files only to refine a numeric user (``with_user_id``, the
supplementary groups) a missing root counts as missing files; a name that must be resolved
without a root is an error.
"""

from __future__ import annotations

import json
import os
import posixpath
import stat
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from pycontainerd import errdefs
from pycontainerd.mount import Mount
from pycontainerd.oci.rootfs import RootReader, open_root
from pycontainerd.oci.spec import DEFAULT_UNIX_ENV, Spec, SpecOpt
from pycontainerd.oci.user import Group, User, groups_from_root, users_from_root

__all__ = [
    "ALL_CAPABILITIES",
    "Root",
    "compose",
    "current_capabilities",
    "replace_or_append_env",
    "with_added_capabilities",
    "with_additional_gids",
    "with_all_current_capabilities",
    "with_all_devices_allowed",
    "with_all_known_capabilities",
    "with_annotations",
    "with_apparmor_profile",
    "with_capabilities",
    "with_cgroup",
    "with_cpu_cfs",
    "with_cpu_shares",
    "with_cpus",
    "with_cpuset_cpus",
    "with_default_path_env",
    "with_default_unix_devices",
    "with_dev_shm_size",
    "with_dropped_capabilities",
    "with_env",
    "with_host_devices",
    "with_host_hosts_file",
    "with_host_localtime",
    "with_host_namespace",
    "with_host_resolvconf",
    "with_hostname",
    "with_image_config",
    "with_linux_namespace",
    "with_masked_paths",
    "with_memory_limit",
    "with_memory_swap",
    "with_mounts",
    "with_net_host",
    "with_new_privileges",
    "with_no_new_privileges",
    "with_parent_cgroup_devices",
    "with_pids_limit",
    "with_privileged",
    "with_process_args",
    "with_process_cwd",
    "with_readonly_paths",
    "with_rootfs_path",
    "with_rootfs_readonly",
    "with_seccomp_unconfined",
    "with_selinux_label",
    "with_tty",
    "with_tty_size",
    "with_uidgid",
    "with_user",
    "with_user_id",
    "with_username",
    "with_writeable_cgroupfs",
    "with_writeable_sysfs",
    "without_mounts",
]

#: Where to read a container's ``/etc/passwd`` and ``/etc/group``.
Root = str | os.PathLike[str] | RootReader

#: Linux capabilities by number (``capability.h``), as containerd names them.
ALL_CAPABILITIES: Final = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)

#: runc (and containerd) refuse ids above this.
_MAX_ID: Final = 2**31 - 1


# --- the parts of a spec ---------------------------------------------------------------------


def _process(s: Spec) -> dict[str, Any]:
    proc: dict[str, Any] = s.setdefault("process", {})
    proc.setdefault("user", {"uid": 0, "gid": 0})
    return proc


def _linux(s: Spec) -> dict[str, Any]:
    linux: dict[str, Any] = s.setdefault("linux", {})
    return linux


def _resources(s: Spec) -> dict[str, Any]:
    res: dict[str, Any] = _linux(s).setdefault("resources", {})
    return res


def _cpu(s: Spec) -> dict[str, Any]:
    cpu: dict[str, Any] = _resources(s).setdefault("cpu", {})
    return cpu


def _caps(s: Spec) -> dict[str, Any]:
    caps: dict[str, Any] = _process(s).setdefault("capabilities", {})
    return caps


def _set_or_drop(obj: dict[str, Any], key: str, value: Any) -> None:
    """Set ``key``, or drop it for an empty value (Go's ``omitempty``)."""
    if value:
        obj[key] = value
    else:
        obj.pop(key, None)


def compose(*opts: SpecOpt) -> SpecOpt:
    """One option applying ``opts`` in order."""

    def opt(s: Spec) -> None:
        for o in opts:
            o(s)

    return opt


# --- process ---------------------------------------------------------------------------------


def replace_or_append_env(defaults: Sequence[str], overrides: Iterable[str]) -> list[str]:
    """containerd's ``replaceOrAppendEnvValues``: ``K=V`` replaces ``K`` or is appended; a bare
    ``K`` removes it."""
    results: list[str | None] = []
    index: dict[str, int] = {}
    for i, entry in enumerate(defaults):
        results.append(entry)
        index[entry.split("=", 1)[0]] = i
    for value in overrides:
        if "=" not in value:
            if value in index:
                results[index[value]] = None
            continue
        key = value.split("=", 1)[0]
        if key in index:
            results[index[key]] = value
        else:
            results.append(value)
    return [r for r in results if r]


def with_env(env: Iterable[str]) -> SpecOpt:
    """Set, replace (``K=V``) or unset (``K``) environment variables."""
    values = list(env)

    def opt(s: Spec) -> None:
        if values:
            proc = _process(s)
            proc["env"] = replace_or_append_env(proc.get("env") or [], values)

    return opt


def with_default_path_env() -> SpecOpt:
    """Set ``PATH`` to containerd's default."""
    return with_env(DEFAULT_UNIX_ENV)


def with_process_args(*args: str) -> SpecOpt:
    """Replace the process's arguments."""

    def opt(s: Spec) -> None:
        proc = _process(s)
        proc["args"] = list(args)
        proc.pop("commandLine", None)

    return opt


def with_process_cwd(cwd: str) -> SpecOpt:
    """Set the process's working directory."""

    def opt(s: Spec) -> None:
        _process(s)["cwd"] = cwd

    return opt


def with_tty() -> SpecOpt:
    """Give the process a terminal, with ``TERM=xterm``."""

    def opt(s: Spec) -> None:
        proc = _process(s)
        proc["terminal"] = True
        if "linux" in s:
            proc["env"] = [*(proc.get("env") or []), "TERM=xterm"]

    return opt


def with_tty_size(width: int, height: int) -> SpecOpt:
    """Set the terminal's initial size."""

    def opt(s: Spec) -> None:
        _process(s)["consoleSize"] = {"height": height, "width": width}

    return opt


def with_new_privileges() -> SpecOpt:
    """Let the process gain privileges (``noNewPrivileges`` off)."""

    def opt(s: Spec) -> None:
        _process(s).pop("noNewPrivileges", None)

    return opt


def with_no_new_privileges() -> SpecOpt:
    """Keep the process from gaining privileges (the default)."""

    def opt(s: Spec) -> None:
        _process(s)["noNewPrivileges"] = True

    return opt


# --- root, mounts, namespaces ---------------------------------------------------------------


def with_rootfs_path(path: str) -> SpecOpt:
    """Use an unmanaged root filesystem at ``path``."""

    def opt(s: Spec) -> None:
        s.setdefault("root", {})["path"] = path

    return opt


def with_rootfs_readonly() -> SpecOpt:
    """Make the root filesystem read-only."""

    def opt(s: Spec) -> None:
        s.setdefault("root", {})["readonly"] = True

    return opt


def _mount_json(m: Mount | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(m, Mount):
        out: dict[str, Any] = {"destination": m.target, "type": m.type, "source": m.source}
        if m.options:
            out["options"] = list(m.options)
    else:
        out = dict(m)
    if not out.get("destination"):
        raise errdefs.InvalidArgument(f"mount {json.dumps(out)}: destination is required")
    return out


def with_mounts(mounts: Iterable[Mount | Mapping[str, Any]]) -> SpecOpt:
    """Append mounts: OCI mount objects, or :class:`~pycontainerd.mount.Mount` values whose
    ``target`` is the destination inside the container."""
    items = [_mount_json(m) for m in mounts]

    def opt(s: Spec) -> None:
        s["mounts"] = [*(s.get("mounts") or []), *(dict(m) for m in items)]

    return opt


def without_mounts(*destinations: str) -> SpecOpt:
    """Remove the mounts at ``destinations`` (paths compared cleaned)."""
    dests = {posixpath.normpath(d) for d in destinations}

    def opt(s: Spec) -> None:
        s["mounts"] = [
            m
            for m in s.get("mounts") or []
            if posixpath.normpath(m.get("destination", "")) not in dests
        ]

    return opt


def with_host_namespace(ns: str) -> SpecOpt:
    """Run in the host's namespace of type ``ns`` (``network``, ``pid``...)."""

    def opt(s: Spec) -> None:
        linux = _linux(s)
        spaces = linux.get("namespaces") or []
        for i, n in enumerate(spaces):
            if n.get("type") == ns:
                del spaces[i]
                break

    return opt


def with_linux_namespace(ns: str, path: str = "") -> SpecOpt:
    """Use a namespace of type ``ns``: a new one, or the one at ``path``."""
    entry: dict[str, Any] = {"type": ns, **({"path": path} if path else {})}

    def opt(s: Spec) -> None:
        spaces = _linux(s).setdefault("namespaces", [])
        for i, n in enumerate(spaces):
            if n.get("type") == ns:
                spaces[i] = dict(entry)
                return
        spaces.append(dict(entry))

    return opt


def _host_file(path: str) -> SpecOpt:
    def opt(s: Spec) -> None:
        mount = {"destination": path, "type": "bind", "source": path, "options": ["rbind", "ro"]}
        s["mounts"] = [*(s.get("mounts") or []), mount]

    return opt


def with_host_hosts_file() -> SpecOpt:
    """Bind the host's ``/etc/hosts`` read-only."""
    return _host_file("/etc/hosts")


def with_host_resolvconf() -> SpecOpt:
    """Bind the host's ``/etc/resolv.conf`` read-only."""
    return _host_file("/etc/resolv.conf")


def with_host_localtime() -> SpecOpt:
    """Bind the host's ``/etc/localtime`` read-only."""
    return _host_file("/etc/localtime")


def with_net_host(hostname: str | None = None) -> SpecOpt:
    """What ``ctr run --net-host`` sets: the host's network namespace, its ``/etc/hosts`` and
    ``/etc/resolv.conf``, and ``HOSTNAME`` (default the host's name)."""
    name = hostname if hostname is not None else os.uname().nodename
    return compose(
        with_host_namespace("network"),
        with_host_hosts_file(),
        with_host_resolvconf(),
        with_env([f"HOSTNAME={name}"]),
    )


def with_hostname(name: str) -> SpecOpt:
    """Set the container's hostname."""

    def opt(s: Spec) -> None:
        _set_or_drop(s, "hostname", name)

    return opt


def with_cgroup(path: str) -> SpecOpt:
    """Set the cgroup path (default ``/<namespace>/<id>``)."""

    def opt(s: Spec) -> None:
        _linux(s)["cgroupsPath"] = path

    return opt


def with_annotations(annotations: Mapping[str, str]) -> SpecOpt:
    """Add or replace annotations."""
    values = dict(annotations)

    def opt(s: Spec) -> None:
        s.setdefault("annotations", {}).update(values)

    return opt


def with_dev_shm_size(kb: int) -> SpecOpt:
    """Set the size of ``/dev/shm`` in KiB."""

    def opt(s: Spec) -> None:
        for m in s.get("mounts") or []:
            if (
                posixpath.normpath(m.get("destination", "")) == "/dev/shm"
                and m.get("source") == "shm"
                and m.get("type") == "tmpfs"
            ):
                options = [o for o in m.get("options") or [] if not o.startswith("size=")]
                m["options"] = [*options, f"size={kb}k"]
                return
        raise errdefs.FailedPrecondition("no /dev/shm mount specified")

    return opt


# --- users -----------------------------------------------------------------------------------


def _reader(s: Spec, root: Root | None) -> RootReader | None:
    if root is not None:
        return open_root(root)
    path = (s.get("root") or {}).get("path", "")
    return open_root(path) if isinstance(path, str) and path.startswith("/") else None


def _need_reader(s: Spec, root: Root | None, what: str) -> RootReader:
    reader = _reader(s, root)
    if reader is None:
        raise errdefs.FailedPrecondition(
            f"resolve {what}: the container's root filesystem is required"
        )
    return reader


def _ensure_additional_gids(user: dict[str, Any]) -> None:
    gids: list[int] = user.get("additionalGids") or []
    if user.get("gid", 0) not in gids:
        user["additionalGids"] = [user.get("gid", 0), *gids]


def _user_by_name(reader: RootReader, name: str) -> User:
    try:
        users = users_from_root(reader, lambda u: u.name == name)
    except FileNotFoundError:
        raise errdefs.NotFound(
            f'user "{name}": the container has no /etc/passwd to look it up in'
        ) from None
    if not users:
        raise errdefs.NotFound(f'user "{name}": not found in the container\'s /etc/passwd')
    return users[0]


def _user_by_uid(reader: RootReader | None, uid: int) -> User | None:
    if reader is None:
        return None
    try:
        users = users_from_root(reader, lambda u: u.uid == uid)
    except FileNotFoundError:
        return None
    return users[0] if users else None


def _group_by_name(reader: RootReader, name: str) -> Group:
    try:
        groups = groups_from_root(reader, lambda g: g.name == name)
    except FileNotFoundError:
        raise errdefs.NotFound(
            f'group "{name}": the container has no /etc/group to look it up in'
        ) from None
    if not groups:
        raise errdefs.NotFound(f'group "{name}": not found in the container\'s /etc/group')
    return groups[0]


def _parse_id(text: str) -> int | None:
    if text.isascii() and text.isdigit():
        value = int(text)
        return value if value <= _MAX_ID else None
    return None


def with_uidgid(uid: int, gid: int) -> SpecOpt:
    """Run as ``uid:gid``, with no supplementary groups but ``gid``."""

    def opt(s: Spec) -> None:
        user = _process(s)["user"]
        user.pop("additionalGids", None)
        user["uid"], user["gid"] = uid, gid
        _ensure_additional_gids(user)

    return opt


def with_user_id(uid: int, root: Root | None = None) -> SpecOpt:
    """Run as ``uid`` with its group from the container's ``/etc/passwd``; 0 when the uid is
    not there (or there is no such file)."""

    def opt(s: Spec) -> None:
        user = _process(s)["user"]
        user.pop("additionalGids", None)
        found = _user_by_uid(_reader(s, root), uid)
        user["uid"], user["gid"] = (found.uid, found.gid) if found else (uid, 0)
        _ensure_additional_gids(user)

    return opt


def with_username(name: str, root: Root | None = None) -> SpecOpt:
    """Run as the user ``name`` of the container's ``/etc/passwd``, with its group."""

    def opt(s: Spec) -> None:
        user = _process(s)["user"]
        user.pop("additionalGids", None)
        found = _user_by_name(_need_reader(s, root, f'user "{name}"'), name)
        user["uid"], user["gid"] = found.uid, found.gid
        _ensure_additional_gids(user)

    return opt


def with_user(userstr: str, root: Root | None = None) -> SpecOpt:
    """Run as an OCI image ``User``: ``user``, ``uid``, ``user:group``, ``uid:gid``,
    ``uid:group`` or ``user:gid``; names resolved in the container's own files."""

    def opt(s: Spec) -> None:
        parts = userstr.split(":")
        if len(parts) == 1:
            uid = _parse_id(parts[0])
            if uid is None:
                with_username(userstr, root)(s)
            else:
                with_user_id(uid, root)(s)
            return
        if len(parts) != 2:
            raise errdefs.InvalidArgument(f"invalid USER value {userstr}")
        user = _process(s)["user"]
        user.pop("additionalGids", None)
        try:
            uid = _parse_id(parts[0])
            gid = _parse_id(parts[1])
            if uid is None or gid is None:
                reader = _need_reader(s, root, f'user "{userstr}"')
                if uid is None:
                    uid = _user_by_name(reader, parts[0]).uid
                if gid is None:
                    gid = _group_by_name(reader, parts[1]).gid
            user["uid"], user["gid"] = uid, gid
        finally:
            _ensure_additional_gids(user)

    return opt


def with_additional_gids(userstr: str, root: Root | None = None) -> SpecOpt:
    """Set the supplementary groups to those of the container's ``/etc/group`` that list the
    user (a name, or a uid looked up in ``/etc/passwd``), plus the primary group."""

    def opt(s: Spec) -> None:
        user = _process(s)["user"]
        user.pop("additionalGids", None)
        try:
            reader = _reader(s, root)
            if reader is None:
                return
            uid = _parse_id(userstr)
            if uid is not None:
                found = _user_by_uid(reader, uid)
                if found is None:
                    return
                name = found.name
            else:
                name = userstr
            try:
                groups = groups_from_root(reader, lambda g: g.name != name and name in g.members)
            except FileNotFoundError:
                return
            _set_or_drop(user, "additionalGids", [g.gid for g in groups])
        finally:
            _ensure_additional_gids(user)

    return opt


# --- the image -------------------------------------------------------------------------------


def _image_config(config: bytes | str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(config, (bytes, str)):
        try:
            doc = json.loads(config)
        except ValueError as exc:
            raise errdefs.InvalidArgument(f"image config is not valid JSON: {exc}") from None
    else:
        doc = config
    if not isinstance(doc, Mapping):
        raise errdefs.InvalidArgument("image config is not a JSON object")
    inner = doc.get("config") or {}
    if not isinstance(inner, Mapping):
        raise errdefs.InvalidArgument("image config: config is not a JSON object")
    return inner


def _strings(cfg: Mapping[str, Any], key: str) -> list[str]:
    value = cfg.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise errdefs.InvalidArgument(f"image config: {key} is not a list of strings")
    return value


def with_image_config(
    config: bytes | str | Mapping[str, Any],
    root: Root | None = None,
    *,
    args: Sequence[str] | None = None,
) -> SpecOpt:
    """containerd's ``WithImageConfigArgs``: from an image config document (the whole JSON,
    whose ``config`` object is read), ``Entrypoint`` + ``Cmd`` (or ``args``, replacing
    ``Cmd``), ``Env`` under the spec's own variables (``PATH`` by default), ``WorkingDir``
    (``/`` by default) and ``User``, resolved with the supplementary groups in ``root``."""
    cfg = _image_config(config)
    entrypoint = _strings(cfg, "Entrypoint")
    cmd = _strings(cfg, "Cmd")
    env = _strings(cfg, "Env")
    cwd = cfg.get("WorkingDir") or "/"
    user = cfg.get("User") or ""
    if not isinstance(cwd, str) or not isinstance(user, str):
        raise errdefs.InvalidArgument("image config: WorkingDir and User must be strings")
    override = list(args) if args else None

    def opt(s: Spec) -> None:
        proc = _process(s)
        proc["env"] = replace_or_append_env(env or DEFAULT_UNIX_ENV, proc.get("env") or [])
        _set_or_drop(proc, "args", [*entrypoint, *(override if override is not None else cmd)])
        proc["cwd"] = cwd
        if user:
            with_user(user, root)(s)
            with_additional_gids(str(proc["user"]["uid"]), root)(s)
        else:
            with_additional_gids("root", root)(s)

    return opt


# --- capabilities and confinement -----------------------------------------------------------


def with_capabilities(caps: Iterable[str]) -> SpecOpt:
    """Set the bounding, effective and permitted capabilities."""
    values = list(caps)

    def opt(s: Spec) -> None:
        c = _caps(s)
        for key in ("bounding", "effective", "permitted"):
            _set_or_drop(c, key, list(values))

    return opt


def with_added_capabilities(caps: Iterable[str]) -> SpecOpt:
    """Add capabilities to the bounding, effective and permitted sets."""
    values = list(caps)

    def opt(s: Spec) -> None:
        c = _caps(s)
        for key in ("bounding", "effective", "permitted"):
            current = list(c.get(key) or [])
            current += [v for v in values if v not in current]
            _set_or_drop(c, key, current)

    return opt


def with_dropped_capabilities(caps: Iterable[str]) -> SpecOpt:
    """Remove capabilities from the bounding, effective and permitted sets."""
    values = set(caps)

    def opt(s: Spec) -> None:
        c = _caps(s)
        for key in ("bounding", "effective", "permitted"):
            _set_or_drop(c, key, [v for v in c.get(key) or [] if v not in values])

    return opt


def current_capabilities() -> list[str]:
    """The effective capabilities of this process, by name (from ``/proc/self/status``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            bits = int(line.split(":", 1)[1].strip(), 16)
            return [name for i, name in enumerate(ALL_CAPABILITIES) if bits >> i & 1]
    raise errdefs.Unavailable("read capabilities: no CapEff in /proc/self/status")


def with_all_current_capabilities() -> SpecOpt:
    """Give the process every capability this process has."""

    def opt(s: Spec) -> None:
        with_capabilities(current_capabilities())(s)

    return opt


def with_all_known_capabilities() -> SpecOpt:
    """Give the process every known capability."""
    return with_capabilities(ALL_CAPABILITIES)


def with_masked_paths(paths: Iterable[str] | None) -> SpecOpt:
    """Set the masked paths (none for ``None``)."""
    values = list(paths or [])

    def opt(s: Spec) -> None:
        _set_or_drop(_linux(s), "maskedPaths", list(values))

    return opt


def with_readonly_paths(paths: Iterable[str] | None) -> SpecOpt:
    """Set the read-only paths (none for ``None``)."""
    values = list(paths or [])

    def opt(s: Spec) -> None:
        _set_or_drop(_linux(s), "readonlyPaths", list(values))

    return opt


def _writeable(kind: str) -> SpecOpt:
    def opt(s: Spec) -> None:
        for m in s.get("mounts") or []:
            if m.get("type") == kind and m.get("options"):
                m["options"] = ["rw" if o == "ro" else o for o in m["options"]]

    return opt


def with_writeable_sysfs() -> SpecOpt:
    """Make sysfs mounts writable."""
    return _writeable("sysfs")


def with_writeable_cgroupfs() -> SpecOpt:
    """Make cgroup mounts writable."""
    return _writeable("cgroup")


def with_selinux_label(label: str) -> SpecOpt:
    """Set the process's SELinux label."""

    def opt(s: Spec) -> None:
        _set_or_drop(_process(s), "selinuxLabel", label)

    return opt


def with_apparmor_profile(profile: str) -> SpecOpt:
    """Set the process's AppArmor profile."""

    def opt(s: Spec) -> None:
        _set_or_drop(_process(s), "apparmorProfile", profile)

    return opt


def with_seccomp_unconfined() -> SpecOpt:
    """Remove any seccomp profile."""

    def opt(s: Spec) -> None:
        _linux(s).pop("seccomp", None)

    return opt


def with_privileged() -> SpecOpt:
    """containerd's ``WithPrivileged``: this process's capabilities, no masked or read-only
    paths, writable sysfs and cgroup mounts, no SELinux label, AppArmor or seccomp profile.
    (``ctr run --privileged`` adds :func:`with_all_devices_allowed` and
    :func:`with_host_devices`.)"""
    return compose(
        with_all_current_capabilities(),
        with_masked_paths(None),
        with_readonly_paths(None),
        with_writeable_sysfs(),
        with_writeable_cgroupfs(),
        with_selinux_label(""),
        with_apparmor_profile(""),
        with_seccomp_unconfined(),
    )


# --- devices ---------------------------------------------------------------------------------


def _dev_rule(kind: str, major: int, minor: int | None) -> dict[str, Any]:
    rule: dict[str, Any] = {"allow": True, "type": kind, "major": major}
    if minor is not None:
        rule["minor"] = minor
    rule["access"] = "rwm"
    return rule


_DEFAULT_UNIX_DEVICES: Final = (
    ("c", 1, 3),  # /dev/null
    ("c", 1, 8),  # /dev/random
    ("c", 1, 7),  # /dev/full
    ("c", 5, 0),  # /dev/tty
    ("c", 1, 5),  # /dev/zero
    ("c", 1, 9),  # /dev/urandom
    ("c", 5, 1),  # /dev/console
    ("c", 136, None),  # /dev/pts/*
    ("c", 5, 2),  # /dev/ptmx
)


def with_default_unix_devices() -> SpecOpt:
    """Allow the standard devices (null, zero, full, random, urandom, tty, console, pts, ptmx)
    in the device cgroup, as ``ctr run`` does."""

    def opt(s: Spec) -> None:
        devices = _resources(s).setdefault("devices", [])
        devices.extend(_dev_rule(k, major, minor) for k, major, minor in _DEFAULT_UNIX_DEVICES)

    return opt


def with_all_devices_allowed() -> SpecOpt:
    """Allow every device in the device cgroup."""

    def opt(s: Spec) -> None:
        _resources(s)["devices"] = [{"allow": True, "access": "rwm"}]

    return opt


def with_parent_cgroup_devices() -> SpecOpt:
    """Inherit the parent cgroup's device rules."""

    def opt(s: Spec) -> None:
        _resources(s).pop("devices", None)

    return opt


_SKIPPED_DEV_DIRS: Final = frozenset({"pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"})


def _host_devices(path: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError:
        return out
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            if entry.name not in _SKIPPED_DEV_DIRS:
                out += _host_devices(Path(entry.path))
            continue
        if entry.name == "console":
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISCHR(st.st_mode):
            kind = "c"
        elif stat.S_ISBLK(st.st_mode):
            kind = "b"
        else:
            continue
        dev: dict[str, Any] = {
            "path": entry.path,
            "type": kind,
            "major": os.major(st.st_rdev),
            "minor": os.minor(st.st_rdev),
        }
        for key, value in (
            ("fileMode", stat.S_IMODE(st.st_mode)),
            ("uid", st.st_uid),
            ("gid", st.st_gid),
        ):
            if value:
                dev[key] = value
        out.append(dev)
    return out


def with_host_devices() -> SpecOpt:
    """Add every device node of the host's ``/dev`` (except consoles and ptys)."""

    def opt(s: Spec) -> None:
        linux = _linux(s)
        linux["devices"] = [*(linux.get("devices") or []), *_host_devices(Path("/dev"))]

    return opt


# --- resources -------------------------------------------------------------------------------


def with_memory_limit(limit: int) -> SpecOpt:
    """Limit memory to ``limit`` bytes."""

    def opt(s: Spec) -> None:
        if "linux" in s:
            _resources(s).setdefault("memory", {})["limit"] = limit

    return opt


def with_memory_swap(swap: int) -> SpecOpt:
    """Limit memory plus swap to ``swap`` bytes."""

    def opt(s: Spec) -> None:
        _resources(s).setdefault("memory", {})["swap"] = swap

    return opt


def with_pids_limit(limit: int) -> SpecOpt:
    """Limit the number of processes."""

    def opt(s: Spec) -> None:
        _resources(s)["pids"] = {"limit": limit}

    return opt


def with_cpu_shares(shares: int) -> SpecOpt:
    """Set the relative CPU weight (cgroup v1 shares)."""

    def opt(s: Spec) -> None:
        _cpu(s)["shares"] = shares

    return opt


def with_cpu_cfs(quota: int, period: int) -> SpecOpt:
    """Set the CFS quota and period in microseconds."""

    def opt(s: Spec) -> None:
        cpu = _cpu(s)
        cpu["quota"] = quota
        cpu["period"] = period

    return opt


def with_cpus(cpus: float) -> SpecOpt:
    """Limit to ``cpus`` CPUs' worth of time, as ``ctr run --cpus``: a CFS quota over a period
    of 100ms."""
    if cpus <= 0:
        raise errdefs.InvalidArgument(f"cpus must be positive, not {cpus}")
    period = 100_000
    return with_cpu_cfs(int(cpus * period), period)


def with_cpuset_cpus(cpus: str) -> SpecOpt:
    """Run on the CPUs listed (``0-2,4``): containerd's ``WithCPUs``."""

    def opt(s: Spec) -> None:
        _cpu(s)["cpus"] = cpus

    return opt

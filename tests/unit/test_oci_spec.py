"""The OCI spec builder: containerd's defaults, its options, users from the container's files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from pycontainerd import errdefs
from pycontainerd.containers import SPEC_TYPE_URL, AnyValue
from pycontainerd.mount import Mount
from pycontainerd.oci import (
    DEFAULT_CAPABILITIES,
    LayeredRoot,
    Spec,
    canonical,
    current_capabilities,
    generate_spec,
    parse_group,
    parse_passwd,
    replace_or_append_env,
    root_from_mounts,
    spec_from_any,
    spec_to_any,
    with_added_capabilities,
    with_additional_gids,
    with_all_devices_allowed,
    with_annotations,
    with_cpu_shares,
    with_cpus,
    with_cpuset_cpus,
    with_default_unix_devices,
    with_dev_shm_size,
    with_dropped_capabilities,
    with_env,
    with_host_devices,
    with_host_namespace,
    with_hostname,
    with_image_config,
    with_linux_namespace,
    with_memory_limit,
    with_mounts,
    with_net_host,
    with_new_privileges,
    with_pids_limit,
    with_privileged,
    with_process_args,
    with_process_cwd,
    with_rootfs_path,
    with_rootfs_readonly,
    with_tty,
    with_uidgid,
    with_user,
    without_mounts,
)

PASSWD = b"""root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin

web:x:1000:1001:Web Server:/home/web:/bin/sh
odd:x:notanumber:7
"""
GROUP = b"""root:x:0:
webgrp:x:1001:
extra:x:2000:web,other
audio:x:29:web
web:x:3000:web
nobody:x:65534:
"""


def _root(tmp_path: Path, passwd: bytes | None = PASSWD, group: bytes | None = GROUP) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    if passwd is not None:
        (root / "etc" / "passwd").write_bytes(passwd)
    if group is not None:
        (root / "etc" / "group").write_bytes(group)
    return root


def _user(spec: Spec) -> dict[str, Any]:
    user: dict[str, Any] = spec["process"]["user"]
    return user


# --- the default -----------------------------------------------------------------------------


def test_default_spec_is_containerds() -> None:
    s = generate_spec("ns", "c1")
    assert s["ociVersion"] == "1.0.2-dev"
    assert s["root"] == {"path": "rootfs"}
    proc = s["process"]
    assert proc["user"] == {"uid": 0, "gid": 0}
    assert proc["cwd"] == "/"
    assert proc["noNewPrivileges"] is True
    assert "env" not in proc
    assert "args" not in proc
    caps = list(DEFAULT_CAPABILITIES)
    assert proc["capabilities"] == {"bounding": caps, "effective": caps, "permitted": caps}
    assert proc["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    linux = s["linux"]
    assert [n["type"] for n in linux["namespaces"]] == ["pid", "ipc", "uts", "mount", "network"]
    assert linux["cgroupsPath"] == "/ns/c1"
    assert linux["resources"] == {"devices": [{"allow": False, "access": "rwm"}]}
    assert "/proc/kcore" in linux["maskedPaths"]
    assert "/proc/sys" in linux["readonlyPaths"]
    assert [m["destination"] for m in s["mounts"]] == [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/sys/fs/cgroup",
        "/run",
    ]
    cgroup = s["mounts"][6]
    assert (cgroup["type"], cgroup["options"][-1]) == ("cgroup", "ro")


def test_each_spec_is_fresh() -> None:
    a = generate_spec("ns", "a")
    a["process"]["capabilities"]["bounding"].append("CAP_SYS_ADMIN")
    a["mounts"].clear()
    b = generate_spec("ns", "a")
    assert "CAP_SYS_ADMIN" not in b["process"]["capabilities"]["bounding"]
    assert b["mounts"]
    assert b["process"]["capabilities"]["bounding"] is not b["process"]["capabilities"]["effective"]


def test_cgroups_path_as_go_joins_it() -> None:
    assert generate_spec("default", "")["linux"]["cgroupsPath"] == "/default"
    with pytest.raises(errdefs.FailedPrecondition, match="namespace is required"):
        generate_spec("", "x")


def test_spec_any_round_trip() -> None:
    s = generate_spec("ns", "c1", with_hostname("h"))
    a = spec_to_any(s)
    assert a.type_url == SPEC_TYPE_URL == "types.containerd.io/opencontainers/runtime-spec/1/Spec"
    assert json.loads(a.value) == s
    assert spec_from_any(a) == s
    # keys in Go's struct order, wherever an option put them
    assert list(spec_from_any(a)) == [
        "ociVersion",
        "process",
        "root",
        "hostname",
        "mounts",
        "linux",
    ]
    assert canonical(s) == s
    assert list(canonical(s)) != list(s)
    with pytest.raises(errdefs.InvalidArgument, match="expected"):
        spec_from_any(AnyValue("other", a.value))
    with pytest.raises(errdefs.InvalidArgument, match="not valid JSON"):
        spec_from_any(AnyValue(SPEC_TYPE_URL, b"{"))
    with pytest.raises(errdefs.InvalidArgument, match="not a JSON object"):
        spec_from_any(AnyValue(SPEC_TYPE_URL, b"[]"))


# --- process options -------------------------------------------------------------------------


def test_env_replace_append_unset() -> None:
    assert replace_or_append_env(["A=1", "B=2", "C=3"], ["B=20", "D=4", "A", "Z"]) == [
        "B=20",
        "C=3",
        "D=4",
    ]
    s = generate_spec("ns", "c", with_env(["X=1"]), with_env(["X=2", "Y=y=y"]))
    assert s["process"]["env"] == ["X=2", "Y=y=y"]


def test_args_cwd_tty() -> None:
    s = generate_spec(
        "ns", "c", with_env(["A=1"]), with_process_args("sh", "-c", "x"), with_process_cwd("/w")
    )
    s = generate_spec("ns", "c", with_process_args("a"), with_process_cwd("/w"), with_tty())
    proc = s["process"]
    assert proc["args"] == ["a"]
    assert proc["cwd"] == "/w"
    assert proc["terminal"] is True
    assert proc["env"] == ["TERM=xterm"]


def test_image_config(tmp_path: Path) -> None:
    config = {
        "config": {
            "Entrypoint": ["/entry"],
            "Cmd": ["--flag"],
            "Env": ["PATH=/bin", "LANG=C"],
            "WorkingDir": "/app",
        }
    }
    root = _root(tmp_path)
    s = generate_spec("ns", "c", with_env(["LANG=en", "X=1"]), with_image_config(config, root))
    proc = s["process"]
    assert proc["args"] == ["/entry", "--flag"]
    assert proc["env"] == ["PATH=/bin", "LANG=en", "X=1"]  # the spec's own variables win
    assert proc["cwd"] == "/app"
    assert proc["user"] == {"uid": 0, "gid": 0, "additionalGids": [0]}

    # args replace Cmd only; no Env means the default PATH; no WorkingDir means /
    s = generate_spec(
        "ns", "c", with_image_config(json.dumps(config).encode(), root, args=["x", "y"])
    )
    assert s["process"]["args"] == ["/entry", "x", "y"]
    s = generate_spec("ns", "c", with_image_config({"config": {"Cmd": ["sh"]}}, root))
    assert s["process"]["env"] == [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    ]
    assert s["process"]["cwd"] == "/"
    s = generate_spec("ns", "c", with_image_config({}, root))
    assert "args" not in s["process"]

    with pytest.raises(errdefs.InvalidArgument, match="not valid JSON"):
        with_image_config(b"{")
    with pytest.raises(errdefs.InvalidArgument, match="Cmd is not a list of strings"):
        with_image_config({"config": {"Cmd": "sh"}})


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("web", {"uid": 1000, "gid": 1001, "additionalGids": [1001, 2000, 29]}),
        ("1000", {"uid": 1000, "gid": 1001, "additionalGids": [1001, 2000, 29]}),
        ("1000:7", {"uid": 1000, "gid": 7, "additionalGids": [7, 2000, 29]}),
        ("web:extra", {"uid": 1000, "gid": 2000, "additionalGids": [2000, 29]}),
        ("daemon:audio", {"uid": 1, "gid": 29, "additionalGids": [29]}),
        ("4242:audio", {"uid": 4242, "gid": 29, "additionalGids": [29]}),
        ("4242", {"uid": 4242, "gid": 0, "additionalGids": [0]}),  # not in passwd
        ("0", {"uid": 0, "gid": 0, "additionalGids": [0]}),
    ],
)
def test_image_user_resolved_in_the_containers_files(
    tmp_path: Path, user: str, expected: dict[str, Any]
) -> None:
    root = _root(tmp_path)
    s = generate_spec("ns", "c", with_image_config({"config": {"User": user}}, root))
    assert _user(s) == expected


def test_user_errors(tmp_path: Path) -> None:
    root = _root(tmp_path)
    with pytest.raises(errdefs.NotFound, match='user "ghost": not found'):
        generate_spec("ns", "c", with_user("ghost", root))
    with pytest.raises(errdefs.NotFound, match='group "ghosts": not found'):
        generate_spec("ns", "c", with_user("web:ghosts", root))
    with pytest.raises(errdefs.InvalidArgument, match="invalid USER value a:b:c"):
        generate_spec("ns", "c", with_user("a:b:c", root))
    with pytest.raises(errdefs.FailedPrecondition, match="root filesystem is required"):
        generate_spec("ns", "c", with_user("web"))
    bare = _root(tmp_path / "bare", passwd=None, group=None)
    with pytest.raises(errdefs.NotFound, match="has no /etc/passwd"):
        generate_spec("ns", "c", with_user("web", bare))
    s = generate_spec("ns", "c", with_user("1000", bare), with_additional_gids("1000", bare))
    assert _user(s) == {"uid": 1000, "gid": 0, "additionalGids": [0]}
    # numeric ids need no files at all
    assert _user(generate_spec("ns", "c", with_user("5:6"))) == {
        "uid": 5,
        "gid": 6,
        "additionalGids": [6],
    }


def test_user_from_an_absolute_spec_root(tmp_path: Path) -> None:
    root = _root(tmp_path)
    s = generate_spec("ns", "c", with_rootfs_path(str(root)), with_user("web"))
    assert _user(s)["uid"] == 1000


def test_uidgid_and_huge_ids(tmp_path: Path) -> None:
    s = generate_spec("ns", "c", with_uidgid(3, 4))
    assert _user(s) == {"uid": 3, "gid": 4, "additionalGids": [4]}
    # above runc's limit a number is taken for a name, as containerd does
    with pytest.raises(errdefs.NotFound, match='user "4294967295"'):
        generate_spec("ns", "c", with_user("4294967295", _root(tmp_path)))


def test_passwd_and_group_parsing() -> None:
    users = parse_passwd(PASSWD)
    assert [(u.name, u.uid, u.gid) for u in users] == [
        ("root", 0, 0),
        ("daemon", 1, 1),
        ("web", 1000, 1001),
        ("odd", 0, 7),  # as Go's Atoi with its error ignored
    ]
    assert users[2].home == "/home/web"
    groups = parse_group(GROUP)
    assert groups[2].members == ("web", "other")
    assert groups[0].members == ()


# --- the root filesystem ---------------------------------------------------------------------


def test_symlinks_resolve_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "usr" / "lib" / "passwd").write_bytes(b"in:x:7:7::/:/bin/sh\n")
    (root / "etc" / "passwd").symlink_to("/usr/lib/passwd")  # absolute: inside the root
    (root / "etc" / "group").symlink_to("../../../../etc/hostname")  # clamps at the root
    reader = LayeredRoot([root])
    assert reader.read_file("/etc/passwd") == b"in:x:7:7::/:/bin/sh\n"
    with pytest.raises(FileNotFoundError):
        reader.read_file("/etc/group")  # the host's /etc/group is never read
    (root / "loop").symlink_to("/loop")
    with pytest.raises(OSError, match="too many levels"):
        reader.read_file("/loop")
    with pytest.raises(IsADirectoryError):
        reader.read_file("/etc")
    s = generate_spec("ns", "c", with_user("in", root))
    assert _user(s)["uid"] == 7


def test_overlay_layers_whiteouts_and_opaque_dirs(tmp_path: Path) -> None:
    upper, mid, low = (tmp_path / n for n in ("upper", "mid", "low"))
    for d in (upper, mid, low):
        (d / "etc").mkdir(parents=True)
    (low / "etc" / "passwd").write_bytes(b"low:x:1:1::/:/bin/sh\n")
    (low / "etc" / "group").write_bytes(b"low:x:1:\n")
    (low / "etc" / "hidden").write_bytes(b"low")
    (mid / "etc" / "passwd").write_bytes(b"mid:x:2:2::/:/bin/sh\n")
    os.mknod(mid / "etc" / "group", 0o600 | 0o020000, os.makedev(0, 0))  # a whiteout
    os.setxattr(upper / "etc", "trusted.overlay.opaque", b"y")
    (upper / "etc" / "hosts").write_bytes(b"upper")
    mounts = [
        Mount(
            "overlay",
            "overlay",
            options=(f"workdir={tmp_path / 'w'}", f"upperdir={upper}", f"lowerdir={mid}:{low}"),
        )
    ]
    reader = root_from_mounts(mounts)
    assert reader.layers == (upper, mid, low)
    assert reader.read_file("/etc/hosts") == b"upper"
    with pytest.raises(FileNotFoundError):
        reader.read_file("/etc/passwd")  # the opaque /etc of the upper layer hides the rest
    os.removexattr(upper / "etc", "trusted.overlay.opaque")
    assert reader.read_file("/etc/passwd") == b"mid:x:2:2::/:/bin/sh\n"
    assert reader.read_file("/etc/hidden") == b"low"
    with pytest.raises(FileNotFoundError):
        reader.read_file("/etc/group")  # whited out in the middle layer
    # a file in an upper layer hides a directory below
    (upper / "usr").write_bytes(b"file")
    (low / "usr").mkdir()
    (low / "usr" / "x").write_bytes(b"x")
    with pytest.raises((FileNotFoundError, NotADirectoryError)):
        reader.read_file("/usr/x")


def test_root_from_mounts_kinds(tmp_path: Path) -> None:
    bind = root_from_mounts([Mount("bind", str(tmp_path), options=("rbind", "ro"))])
    assert bind.layers == (tmp_path,)
    view = root_from_mounts([Mount("overlay", "overlay", options=(f"lowerdir={tmp_path}",))])
    assert view.layers == (tmp_path,)
    with pytest.raises(errdefs.NotImplemented):
        root_from_mounts([Mount("ext4", "/dev/sda1")])
    with pytest.raises(errdefs.NotImplemented):
        root_from_mounts([])
    with pytest.raises(errdefs.InvalidArgument, match="lowerdir"):
        root_from_mounts([Mount("overlay", "overlay", options=("upperdir=/x",))])


# --- the other options -----------------------------------------------------------------------


def test_mounts_and_rootfs() -> None:
    s = generate_spec(
        "ns",
        "c",
        with_mounts(
            [
                {"destination": "/data", "type": "bind", "source": "/srv", "options": ["rbind"]},
                Mount("bind", "/src", target="/dst", options=("ro",)),
            ]
        ),
        without_mounts("/run", "/sys/fs/cgroup/"),
        with_rootfs_readonly(),
    )
    dests = [m["destination"] for m in s["mounts"]]
    assert dests[-2:] == ["/data", "/dst"]
    assert "/run" not in dests
    assert "/sys/fs/cgroup" not in dests  # a trailing slash is cleaned
    assert s["mounts"][-1] == {
        "destination": "/dst",
        "type": "bind",
        "source": "/src",
        "options": ["ro"],
    }
    assert s["root"] == {"path": "rootfs", "readonly": True}
    with pytest.raises(errdefs.InvalidArgument, match="destination is required"):
        with_mounts([{"type": "bind", "source": "/x"}])


def test_net_host_as_ctr() -> None:
    s = generate_spec("ns", "c", with_net_host("myhost"))
    assert [n["type"] for n in s["linux"]["namespaces"]] == ["pid", "ipc", "uts", "mount"]
    assert s["mounts"][-2:] == [
        {
            "destination": "/etc/hosts",
            "type": "bind",
            "source": "/etc/hosts",
            "options": ["rbind", "ro"],
        },
        {
            "destination": "/etc/resolv.conf",
            "type": "bind",
            "source": "/etc/resolv.conf",
            "options": ["rbind", "ro"],
        },
    ]
    assert s["process"]["env"] == ["HOSTNAME=myhost"]
    assert generate_spec("ns", "c", with_net_host())["process"]["env"] == [
        f"HOSTNAME={os.uname().nodename}"
    ]


def test_namespaces() -> None:
    s = generate_spec(
        "ns",
        "c",
        with_host_namespace("pid"),
        with_linux_namespace("network", "/proc/1/ns/net"),
        with_linux_namespace("user"),
    )
    assert s["linux"]["namespaces"] == [
        {"type": "ipc"},
        {"type": "uts"},
        {"type": "mount"},
        {"type": "network", "path": "/proc/1/ns/net"},
        {"type": "user"},
    ]


def test_privileged() -> None:
    s = generate_spec("ns", "c", with_privileged(), with_all_devices_allowed())
    caps = current_capabilities()
    assert s["process"]["capabilities"]["bounding"] == caps
    assert "maskedPaths" not in s["linux"]
    assert "readonlyPaths" not in s["linux"]
    sysfs = next(m for m in s["mounts"] if m["type"] == "sysfs")
    cgroup = next(m for m in s["mounts"] if m["type"] == "cgroup")
    assert "rw" in sysfs["options"]
    assert "ro" not in sysfs["options"]
    assert "ro" not in cgroup["options"]
    assert s["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]


def test_host_devices() -> None:
    s = generate_spec("ns", "c", with_host_devices())
    devices = {d["path"]: d for d in s["linux"]["devices"]}
    null = devices["/dev/null"]
    assert (null["type"], null["major"], null["minor"]) == ("c", 1, 3)
    assert "/dev/console" not in devices
    assert not any(p.startswith("/dev/pts/") for p in devices)


def test_capabilities_and_privileges() -> None:
    s = generate_spec(
        "ns",
        "c",
        with_added_capabilities(["CAP_SYS_ADMIN", "CAP_CHOWN"]),
        with_dropped_capabilities(["CAP_NET_RAW"]),
        with_new_privileges(),
    )
    caps = s["process"]["capabilities"]
    assert caps["effective"][-1] == "CAP_SYS_ADMIN"
    assert caps["effective"].count("CAP_CHOWN") == 1
    assert "CAP_NET_RAW" not in caps["permitted"]
    assert "noNewPrivileges" not in s["process"]


def test_resources() -> None:
    s = generate_spec(
        "ns",
        "c",
        with_default_unix_devices(),
        with_memory_limit(64 << 20),
        with_cpus(1.5),
        with_cpu_shares(512),
        with_cpuset_cpus("0-1"),
        with_pids_limit(100),
    )
    res = s["linux"]["resources"]
    assert res["memory"] == {"limit": 64 << 20}
    assert res["cpu"] == {"quota": 150000, "period": 100000, "shares": 512, "cpus": "0-1"}
    assert res["pids"] == {"limit": 100}
    assert res["devices"][0] == {"allow": False, "access": "rwm"}
    assert {"allow": True, "type": "c", "major": 136, "access": "rwm"} in res["devices"]
    assert len(res["devices"]) == 10
    with pytest.raises(errdefs.InvalidArgument, match="cpus must be positive"):
        with_cpus(0)


def test_hostname_annotations_shm() -> None:
    s = generate_spec(
        "ns",
        "c",
        with_hostname("box"),
        with_annotations({"a": "1"}),
        with_annotations({"b": "2"}),
        with_dev_shm_size(1024),
    )
    assert s["hostname"] == "box"
    assert s["annotations"] == {"a": "1", "b": "2"}
    shm = next(m for m in s["mounts"] if m["destination"] == "/dev/shm")
    assert shm["options"][-1] == "size=1024k"
    assert sum(o.startswith("size=") for o in shm["options"]) == 1
    with pytest.raises(errdefs.FailedPrecondition, match="no /dev/shm mount"):
        generate_spec("ns", "c", without_mounts("/dev/shm"), with_dev_shm_size(1))

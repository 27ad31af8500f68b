"""Container values on the wire, and what pyctr containers parses and prints."""

from __future__ import annotations

import argparse
import json

import pytest

from pycontainerd import errdefs
from pycontainerd.cli.containers import (
    add_container_flags,
    container_info_json,
    container_spec_opts,
    parse_mount,
    runtime_from_args,
)
from pycontainerd.containers import AnyValue, Container, RuntimeInfo
from pycontainerd.containers.proto import container_from_proto, container_to_proto
from pycontainerd.oci import generate_spec, spec_to_any


def test_proto_round_trip_keeps_absent_and_empty_anys_apart() -> None:
    full = Container(
        "c",
        RuntimeInfo("r", AnyValue("t", b"")),
        spec=AnyValue("s", b"\x00"),
        labels={"a": "b"},
        image="i",
        snapshotter="overlayfs",
        snapshot_key="k",
        created_at=1_700_000_000_123_456_789,
        updated_at=1_700_000_001_000_000_000,
        extensions={"e": AnyValue("", b"")},
    )
    assert container_from_proto(container_to_proto(full)) == full
    bare = Container("c", RuntimeInfo("r"))
    msg = container_to_proto(bare)
    assert not msg.HasField("spec")
    assert not msg.runtime.HasField("options")
    assert container_from_proto(msg) == bare


def _args(*argv: str, run: bool = False) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_container_flags(p, run=run)
    return p.parse_args(list(argv))


def test_parse_mount_as_ctr() -> None:
    assert parse_mount("type=bind,src=/a,dst=/b,options=rbind:ro") == {
        "destination": "/b",
        "type": "bind",
        "source": "/a",
        "options": ["rbind", "ro"],
    }
    assert parse_mount("type=tmpfs,destination=/t,source=tmpfs") == {
        "destination": "/t",
        "type": "tmpfs",
        "source": "tmpfs",
    }
    with pytest.raises(errdefs.InvalidArgument, match="is not key=value"):
        parse_mount("type=bind,/a")
    with pytest.raises(errdefs.InvalidArgument, match="unknown field 'size'"):
        parse_mount("type=tmpfs,dst=/t,size=1")
    with pytest.raises(errdefs.InvalidArgument, match="destination"):
        parse_mount("type=bind,src=/a")


def test_flags_make_ctrs_spec_options() -> None:
    args = _args(
        "--env",
        "A=1",
        "--label",
        "l=v",
        "--mount",
        "type=bind,src=/a,dst=/b",
        "--read-only",
        "--cwd",
        "/w",
        "--tty",
        "--net-host",
        "--memory-limit",
        "1024",
    )
    s = generate_spec("ns", "c", *container_spec_opts(args))
    assert s["process"]["env"][:2] == ["A=1", "TERM=xterm"]
    assert s["process"]["cwd"] == "/w"
    assert s["root"]["readonly"] is True
    assert s["annotations"] == {"l": "v"}
    assert s["linux"]["resources"]["memory"] == {"limit": 1024}
    assert "cpu" not in s["linux"]["resources"]  # create has no cpu flags
    assert any(m["destination"] == "/b" for m in s["mounts"])
    assert runtime_from_args(args) == RuntimeInfo(
        "io.containerd.runc.v2", AnyValue("containerd.runc.v1.Options", b"")
    )
    assert runtime_from_args(_args("--runtime", "io.other.v1")) == RuntimeInfo("io.other.v1")

    run = _args("--cpus", "0.5", run=True)
    s = generate_spec("ns", "c", *container_spec_opts(run))
    assert s["linux"]["resources"]["cpu"] == {"shares": 1024, "quota": 50000, "period": 100000}


def test_info_json_as_go_prints_it() -> None:
    spec = generate_spec("ns", "c")
    c = Container(
        "c",
        RuntimeInfo("io.containerd.runc.v2", AnyValue("t", b"\x01")),
        spec=spec_to_any(spec),
        labels={"z": "1", "a<": "&"},
        created_at=1_700_000_000_120_000_000,
        updated_at=1_700_000_000_000_000_000,
    )
    text = container_info_json(c)
    doc = json.loads(text)
    assert list(doc) == [
        "ID",
        "Labels",
        "Image",
        "Runtime",
        "SnapshotKey",
        "Snapshotter",
        "CreatedAt",
        "UpdatedAt",
        "Extensions",
        "Spec",
    ]
    assert doc["CreatedAt"] == "2023-11-14T22:13:20.12Z"
    assert doc["UpdatedAt"] == "2023-11-14T22:13:20Z"
    assert doc["Runtime"] == {
        "Name": "io.containerd.runc.v2",
        "Options": {"type_url": "t", "value": "AQ=="},
    }
    assert list(doc["Labels"]) == ["a<", "z"]
    assert '"a\\u003c": "\\u0026"' in text
    assert doc["Extensions"] is None
    assert doc["Spec"] == spec
    assert json.loads(container_info_json(c, spec_only=True)) == spec
    assert "Spec" not in json.loads(container_info_json(Container("x", RuntimeInfo("r"))))

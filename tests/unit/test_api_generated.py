"""The generated API in pycontainerd.api matches containerd's on the wire and is current.

containerd's own .proto files (Debian: golang-github-containerd-containerd-dev and its
dependencies golang-github-containerd-cgroups-dev, golang-github-gogo-googleapis-dev) are
compiled at test time, with their Go-only gogoproto options removed, and every message, enum
and service in them is compared with the descriptors of our generated modules: full names,
field numbers, names, types, labels, referenced types, enum values, rpc names, streaming
flags and input/output types.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor
from google.rpc import status_pb2

ROOT = Path(__file__).resolve().parents[2]
if importlib.util.find_spec("pycontainerd") is None:  # not installed: use the source tree
    sys.path.insert(0, str(ROOT / "python"))

GOCODE = Path("/usr/share/gocode/src")
CONTAINERD = "github.com/containerd/containerd"
# Reference files, by the path other reference files import them with, and where they live.
REFERENCE_EXTRAS = {
    f"{CONTAINERD}/runtime/v2/task/shim.proto": f"{CONTAINERD}/runtime/v2/task/shim.proto",
    f"{CONTAINERD}/runtime/v2/runc/options/oci.proto": (
        f"{CONTAINERD}/runtime/v2/runc/options/oci.proto"
    ),
    "github.com/containerd/cgroups/stats/v1/metrics.proto": (
        "github.com/containerd/cgroups/stats/v1/metrics.proto"
    ),
    "github.com/containerd/cgroups/v2/stats/metrics.proto": (
        "github.com/containerd/cgroups/v2/stats/metrics.proto"
    ),
    "google/rpc/status.proto": "github.com/gogo/googleapis/google/rpc/status.proto",
}
# Files of ours with no containerd counterpart, checked against the spec by hand below.
OWN_ONLY = {"grpc/health/v1/health.proto", "ttrpc/ttrpc.proto"}

GO_ONLY_IMPORT = re.compile(
    r'^\s*import\s+(weak\s+)?"(gogoproto/gogo\.proto|'
    r'github\.com/containerd/containerd/protobuf/plugin/fieldpath\.proto)";\s*$',
    re.MULTILINE,
)
GO_ONLY_OPTION = re.compile(r"option\s*\((gogoproto|containerd\.plugin)\.\w+\)\s*=\s*[^;]*;")
GO_ONLY_BRACKET = re.compile(
    r'\s*\[\s*(\((gogoproto|containerd\.plugin)\.\w+\)\s*=\s*("[^"]*"|[\w.]+)\s*,?\s*)+\]'
)

FDP = descriptor_pb2.FieldDescriptorProto


def strip_go_options(text: str, name: str) -> str:
    text = GO_ONLY_IMPORT.sub("", text)
    text = GO_ONLY_OPTION.sub("", text)
    text = GO_ONLY_BRACKET.sub("", text)
    leftover = re.search(r"gogoproto|containerd\.plugin", text)
    assert leftover is None, f"{name}: could not strip Go-only option near {leftover.group(0)!r}"
    return text


def reference_sources() -> dict[str, Path]:
    api = GOCODE / CONTAINERD / "api"
    if not api.is_dir():
        pytest.fail(
            f"containerd's reference protos are missing: {api} does not exist "
            "(install golang-github-containerd-containerd-dev)"
        )
    sources = {p.relative_to(GOCODE).as_posix(): p for p in sorted(api.rglob("*.proto"))}
    for import_path, location in REFERENCE_EXTRAS.items():
        path = GOCODE / location
        if not path.is_file():
            pytest.fail(f"reference proto missing: {path} (install the Go dev packages)")
        sources[import_path] = path
    return sources


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> list[descriptor_pb2.FileDescriptorProto]:
    """containerd's protos, compiled without their Go-only options."""
    sources = reference_sources()
    include = tmp_path_factory.mktemp("reference")
    for import_path, path in sources.items():
        target = include / import_path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(strip_go_options(path.read_text(), str(path)))
    out = include / "reference.pb"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{include}",
            f"--descriptor_set_out={out}",
            *sorted(sources),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"compiling the reference protos failed:\n{result.stderr}"
    files = list(descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file)
    assert len(files) == len(sources)
    return files


def api_modules() -> Iterator[ModuleType]:
    package = importlib.import_module("pycontainerd.api")
    for info in pkgutil.walk_packages(package.__path__, "pycontainerd.api."):
        if info.name.endswith(("_pb2", "_pb2_grpc")):
            yield importlib.import_module(info.name)


@pytest.fixture(scope="module")
def ours() -> dict[str, FileDescriptor]:
    """Our generated files, by proto file name, all loaded into the default pool.

    google.rpc.Status is googleapis-common-protos' (a dependency), not generated here.
    """
    files = {
        module.DESCRIPTOR.name: module.DESCRIPTOR
        for module in api_modules()
        if module.__name__.endswith("_pb2")
    }
    files[status_pb2.DESCRIPTOR.name] = status_pb2.DESCRIPTOR
    return files


def walk_messages(
    prefix: str, messages: list[descriptor_pb2.DescriptorProto]
) -> Iterator[tuple[str, descriptor_pb2.DescriptorProto]]:
    for message in messages:
        name = f"{prefix}.{message.name}"
        yield name, message
        yield from walk_messages(name, list(message.nested_type))


def walk_enums(
    prefix: str,
    file_or_message: descriptor_pb2.FileDescriptorProto | descriptor_pb2.DescriptorProto,
) -> Iterator[tuple[str, descriptor_pb2.EnumDescriptorProto]]:
    for enum in file_or_message.enum_type:
        yield f"{prefix}.{enum.name}", enum
    nested = (
        file_or_message.message_type
        if isinstance(file_or_message, descriptor_pb2.FileDescriptorProto)
        else file_or_message.nested_type
    )
    for message in nested:
        yield from walk_enums(f"{prefix}.{message.name}", message)


def field_shape(field: descriptor_pb2.FieldDescriptorProto) -> tuple[object, ...]:
    return (
        field.name,
        FDP.Label.Name(field.label),
        FDP.Type.Name(field.type),
        field.type_name,
        field.oneof_index if field.HasField("oneof_index") else None,
        field.proto3_optional,
        field.options.SerializeToString(deterministic=True),
    )


def message_shape(message: descriptor_pb2.DescriptorProto) -> dict[str, object]:
    return {
        "fields": {f.number: field_shape(f) for f in message.field},
        "nested messages": sorted(m.name for m in message.nested_type),
        "nested enums": sorted(e.name for e in message.enum_type),
        "oneofs": [o.name for o in message.oneof_decl],
        "map entry": message.options.map_entry,
        "reserved": sorted((r.start, r.end) for r in message.reserved_range),
        "extension ranges": sorted((r.start, r.end) for r in message.extension_range),
    }


def enum_shape(enum: descriptor_pb2.EnumDescriptorProto) -> dict[str, int]:
    return {v.name: v.number for v in enum.value}


def service_shape(service: descriptor_pb2.ServiceDescriptorProto) -> dict[str, tuple[object, ...]]:
    return {
        m.name: (m.input_type, m.output_type, m.client_streaming, m.server_streaming)
        for m in service.method
    }


def top_level_names(file: descriptor_pb2.FileDescriptorProto) -> set[str]:
    names = [m.name for m in file.message_type]
    names += [e.name for e in file.enum_type]
    names += [s.name for s in file.service]
    return {f"{file.package}.{name}" for name in names}


def test_reference_and_ours_cover_the_same_files(
    reference: list[descriptor_pb2.FileDescriptorProto], ours: dict[str, FileDescriptor]
) -> None:
    ref_names = set().union(*(top_level_names(f) for f in reference))
    own_names: set[str] = set()
    for name, file in ours.items():
        if name in OWN_ONLY:
            continue
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        assert proto.syntax == "proto3", f"{name}: our file is not proto3"
        own_names |= top_level_names(proto)
    assert sorted(own_names - ref_names) == [], "declared by us but not by containerd"
    assert sorted(ref_names - own_names) == [], "declared by containerd but missing from ours"


@pytest.mark.usefixtures("ours")
def test_messages_match(reference: list[descriptor_pb2.FileDescriptorProto]) -> None:
    pool = descriptor_pool.Default()
    checked = 0
    for file in reference:
        assert file.syntax == "proto3", file.name
        for name, ref in walk_messages(file.package, list(file.message_type)):
            own = descriptor_pb2.DescriptorProto()
            pool.FindMessageTypeByName(name).CopyToProto(own)
            assert message_shape(own) == message_shape(ref), name
            checked += 1
    assert checked > 200


@pytest.mark.usefixtures("ours")
def test_enums_match(reference: list[descriptor_pb2.FileDescriptorProto]) -> None:
    pool = descriptor_pool.Default()
    names = []
    for file in reference:
        for name, ref in walk_enums(file.package, file):
            own = descriptor_pb2.EnumDescriptorProto()
            pool.FindEnumTypeByName(name).CopyToProto(own)
            assert enum_shape(own) == enum_shape(ref), name
            names.append(name)
    assert sorted(names) == [
        "containerd.services.content.v1.WriteAction",
        "containerd.services.snapshots.v1.Kind",
        "containerd.v1.types.Status",
    ]


@pytest.mark.usefixtures("ours")
def test_services_match(reference: list[descriptor_pb2.FileDescriptorProto]) -> None:
    pool = descriptor_pool.Default()
    names = []
    for file in reference:
        for ref in file.service:
            name = f"{file.package}.{ref.name}"
            own = descriptor_pb2.ServiceDescriptorProto()
            pool.FindServiceByName(name).CopyToProto(own)
            assert service_shape(own) == service_shape(ref), name
            names.append(name)
    assert len(names) == 13


@pytest.mark.usefixtures("ours")
def test_health_follows_the_grpc_spec() -> None:
    pool = descriptor_pool.Default()
    request = pool.FindMessageTypeByName("grpc.health.v1.HealthCheckRequest")
    response = pool.FindMessageTypeByName("grpc.health.v1.HealthCheckResponse")
    assert [(f.number, f.name, f.type) for f in request.fields] == [(1, "service", FDP.TYPE_STRING)]
    assert [(f.number, f.name, f.type) for f in response.fields] == [(1, "status", FDP.TYPE_ENUM)]
    assert response.fields[0].enum_type is not None
    assert response.fields[0].enum_type.full_name == (
        "grpc.health.v1.HealthCheckResponse.ServingStatus"
    )
    status = pool.FindEnumTypeByName("grpc.health.v1.HealthCheckResponse.ServingStatus")
    assert {v.name: v.number for v in status.values} == {
        "UNKNOWN": 0,
        "SERVING": 1,
        "NOT_SERVING": 2,
        "SERVICE_UNKNOWN": 3,
    }
    own = descriptor_pb2.ServiceDescriptorProto()
    pool.FindServiceByName("grpc.health.v1.Health").CopyToProto(own)
    assert service_shape(own) == {
        "Check": (
            ".grpc.health.v1.HealthCheckRequest",
            ".grpc.health.v1.HealthCheckResponse",
            False,
            False,
        ),
        "Watch": (
            ".grpc.health.v1.HealthCheckRequest",
            ".grpc.health.v1.HealthCheckResponse",
            False,
            True,
        ),
    }


TTRPC_TYPES = GOCODE / "github.com/containerd/ttrpc/types.go"
GO_FIELD = re.compile(r'^\s*\w+\s+[\w.*\[\]]+\s+`protobuf:"(\w+),(\d+),(opt|rep),name=(\w+)')


@pytest.mark.usefixtures("ours")
def test_ttrpc_messages_match_ttrpcs_go_types() -> None:
    """ttrpc declares its envelope in Go (struct tags), not in a .proto: compare with those."""
    if not TTRPC_TYPES.is_file():
        pytest.fail(f"{TTRPC_TYPES} is missing (install golang-github-containerd-ttrpc-dev)")
    go: dict[str, list[tuple[int, str, str, str]]] = {}
    current = ""
    for line in TTRPC_TYPES.read_text().splitlines():
        if m := re.match(r"^type (\w+) struct", line):
            current = m.group(1)
            go[current] = []
        elif m := GO_FIELD.match(line):
            wire, number, label, name = m.groups()
            go[current].append((int(number), name, wire, label))
    wire_of = {FDP.TYPE_STRING: "bytes", FDP.TYPE_BYTES: "bytes", FDP.TYPE_MESSAGE: "bytes"}
    wire_of[FDP.TYPE_INT64] = "varint"
    pool = descriptor_pool.Default()
    for name in ("Request", "Response", "KeyValue"):
        own = pool.FindMessageTypeByName(f"ttrpc.{name}")
        fields = [
            (f.number, f.name, wire_of[f.type], "rep" if f.is_repeated else "opt")
            for f in own.fields
        ]
        assert fields == go[name], name
    status = pool.FindMessageTypeByName("ttrpc.Response").fields_by_name["status"]
    assert status.message_type.full_name == "google.rpc.Status"


def test_every_service_has_a_stub_and_no_servicer_base(
    ours: dict[str, FileDescriptor],
) -> None:
    for name, file in ours.items():
        if not file.services_by_name:
            continue
        module = importlib.import_module(
            "pycontainerd.api." + name.removesuffix(".proto").replace("/", ".") + "_pb2_grpc"
        )
        for service in file.services_by_name:
            assert hasattr(module, f"{service}Stub"), f"{module.__name__}.{service}Stub"
            # The daemon serves through pycontainerd.daemon.rpc; grpcio-tools' servicer bases
            # (which only raise "not implemented") are dropped by scripts/gen-proto.
            assert not hasattr(module, f"{service}Servicer")
            assert not hasattr(module, f"add_{service}Servicer_to_server")


def test_generated_code_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen-proto"), "--check"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": sys.executable},
        check=False,
    )
    assert result.returncode == 0, result.stderr

"""Namespaces through the Python client, with containerd's status codes."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import empty_pb2

from pycontainerd import (
    AlreadyExists,
    Client,
    FailedPrecondition,
    InvalidArgument,
    Namespace,
    NotFound,
)
from pycontainerd.api.containerd.services.images.v1 import images_pb2, images_pb2_grpc
from pycontainerd.api.containerd.services.namespaces.v1 import namespace_pb2, namespace_pb2_grpc
from pycontainerd.api.containerd.types import descriptor_pb2
from tests.fixtures.daemon import Daemon

pytestmark = pytest.mark.integration

DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
def client(daemon: Daemon) -> Client:
    with Client(daemon.address) as c:
        yield c  # type: ignore[misc]


def test_create_list_label_delete(client: Client) -> None:
    ns = client.namespaces.create("ns1", {"a": "b"})
    assert ns == Namespace("ns1", {"a": "b"})
    assert Namespace("ns1", {"a": "b"}) in client.namespaces.list()
    client.namespaces.set_label("ns1", "a", "c")
    client.namespaces.set_label("ns1", "x", "y")
    assert client.namespaces.labels("ns1") == {"a": "c", "x": "y"}
    client.namespaces.set_label("ns1", "x", "")  # an empty value clears the label
    assert client.namespaces.labels("ns1") == {"a": "c"}
    client.namespaces.update("ns1", {"only": "this"})  # no field mask: replace all
    assert client.namespaces.get("ns1").labels == {"only": "this"}
    client.namespaces.delete("ns1")
    assert "ns1" not in [n.name for n in client.namespaces.list()]


def test_duplicate_create(client: Client) -> None:
    client.namespaces.create("dup")
    with pytest.raises(AlreadyExists, match='namespace "dup": already exists'):
        client.namespaces.create("dup")


@pytest.mark.parametrize("name", ["", "-bad", "a/b", "..", "a..b", "UPPER_ok_but/no", "x" * 77])
def test_invalid_names(client: Client, name: str) -> None:
    with pytest.raises(InvalidArgument, match="identifier"):
        client.namespaces.create(name)


def test_missing_namespace(client: Client) -> None:
    with pytest.raises(NotFound, match='namespace "ghost": not found'):
        client.namespaces.delete("ghost")
    with pytest.raises(NotFound, match='namespace "ghost": not found'):
        client.namespaces.get("ghost")
    with pytest.raises(NotFound, match='namespace "ghost": not found'):
        client.namespaces.set_label("ghost", "a", "b")


def test_update_of_unknown_field_is_refused(client: Client) -> None:
    client.namespaces.create("ns2")
    with pytest.raises(InvalidArgument, match='cannot update "name" field on namespace "ns2"'):
        client.namespaces.update("ns2", {}, fields=["name"])


def test_oversized_label_is_refused(client: Client) -> None:
    with pytest.raises(InvalidArgument, match=r"namespace\.Labels: label key and value greater"):
        client.namespaces.create("big", {"k": "v" * 5000})
    assert "big" not in [n.name for n in client.namespaces.list()]


def _create_image(client: Client, name: str) -> None:
    stub = images_pb2_grpc.ImagesStub(client.channel)
    client.call(
        stub.Create,
        images_pb2.CreateImageRequest(
            image=images_pb2.Image(
                name=name,
                target=descriptor_pb2.Descriptor(
                    media_type="application/vnd.oci.image.manifest.v1+json",
                    digest=DIGEST,
                    size=100,
                ),
            )
        ),
    )


def test_namespace_holding_objects_cannot_be_deleted(daemon: Daemon) -> None:
    with Client(daemon.address, namespace="busy") as c:
        _create_image(c, "example.com/app:1")  # creates the namespace on first use, as containerd
        with pytest.raises(
            FailedPrecondition, match='namespace "busy" must be empty, but it still has images'
        ):
            c.namespaces.delete("busy")
        client_images = images_pb2_grpc.ImagesStub(c.channel)
        c.call(client_images.Delete, images_pb2.DeleteImageRequest(name="example.com/app:1"))
        c.namespaces.delete("busy")


def test_missing_namespace_header(daemon: Daemon) -> None:
    channel = grpc.insecure_channel(f"unix://{daemon.address}")
    try:
        stub = images_pb2_grpc.ImagesStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.List(images_pb2.ListImagesRequest())
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
        assert info.value.details() == "namespace is required"  # type: ignore[attr-defined]
        with pytest.raises(grpc.RpcError) as info:
            stub.List(images_pb2.ListImagesRequest(), metadata=(("containerd-namespace", "a/b"),))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        # services that are not namespaced do not need it
        ns_stub = namespace_pb2_grpc.NamespacesStub(channel)
        ns_stub.List(namespace_pb2.ListNamespacesRequest())
    finally:
        channel.close()


def test_error_codes_on_the_wire(daemon: Daemon) -> None:
    channel = grpc.insecure_channel(f"unix://{daemon.address}")
    try:
        stub = namespace_pb2_grpc.NamespacesStub(channel)
        cases = [
            (
                lambda: stub.Delete(namespace_pb2.DeleteNamespaceRequest(name="nope")),
                grpc.StatusCode.NOT_FOUND,
            ),
            (
                lambda: stub.Create(
                    namespace_pb2.CreateNamespaceRequest(
                        namespace=namespace_pb2.Namespace(name="bad/name")
                    )
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
            ),
        ]
        stub.Create(
            namespace_pb2.CreateNamespaceRequest(namespace=namespace_pb2.Namespace(name="x"))
        )
        cases.append(
            (
                lambda: stub.Create(
                    namespace_pb2.CreateNamespaceRequest(
                        namespace=namespace_pb2.Namespace(name="x")
                    )
                ),
                grpc.StatusCode.ALREADY_EXISTS,
            )
        )
        for call, code in cases:
            with pytest.raises(grpc.RpcError) as info:
                call()
            assert info.value.code() == code  # type: ignore[attr-defined]
        from pycontainerd.api.containerd.services.version.v1 import version_pb2_grpc

        assert version_pb2_grpc.VersionStub(channel).Version(empty_pb2.Empty()).version
    finally:
        channel.close()


def test_labels_survive_a_restart(daemon: Daemon) -> None:
    with Client(daemon.address) as c:
        c.namespaces.create("keep", {"k": "v"})
    daemon.restart()
    with Client(daemon.address) as c:
        assert c.namespaces.get("keep").labels == {"k": "v"}


def test_plugin_filters(client: Client) -> None:
    grpc_plugins = client.plugins(["type==io.containerd.grpc.v1"])
    assert {p.id for p in grpc_plugins} >= {"version", "namespaces", "introspection", "healthcheck"}
    assert all(p.type == "io.containerd.grpc.v1" for p in grpc_plugins)
    assert [p.id for p in client.plugins(["id==version"])] == ["version"]
    both = client.plugins(["id==version", "id==namespaces"])  # ORed
    assert {p.id for p in both} == {"version", "namespaces"}
    assert [p.id for p in client.plugins([r"id~=^intro"])] == ["introspection"]
    with pytest.raises(InvalidArgument, match="filters"):
        client.plugins(["id=="])

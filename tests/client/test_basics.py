"""Version, introspection, namespaces and errors, on both daemons."""

from __future__ import annotations

import re
import uuid

import pytest

from pycontainerd import Client, errdefs
from pycontainerd.client.client import PluginInfo
from tests.client.conftest import Env, Target


def test_version_server_and_plugins(target: Target) -> None:
    with Client(target.address) as c:
        v = c.version()
        if target.is_containerd:
            assert v.version.startswith("1.6.")
        else:
            import pycontainerd

            assert v.version == pycontainerd.VERSION
        server = c.server()
        assert re.fullmatch(r"[0-9a-f-]{36}", server.uuid)
        assert c.server() == server
        plugins = c.plugins()
        ids = {(p.type, p.id) for p in plugins}
        for needed in [
            ("io.containerd.grpc.v1", "containers"),
            ("io.containerd.grpc.v1", "content"),
            ("io.containerd.grpc.v1", "images"),
            ("io.containerd.grpc.v1", "tasks"),
            ("io.containerd.snapshotter.v1", "overlayfs"),
        ]:
            assert needed in ids
        grpc_only = c.plugins(["type==io.containerd.grpc.v1"])
        assert grpc_only
        assert all(p.type == "io.containerd.grpc.v1" for p in grpc_only)
        overlay = next(p for p in plugins if p.id == "overlayfs")
        assert isinstance(overlay, PluginInfo)
        assert overlay.status == "ok"


def test_client_closes_as_a_context_manager(target: Target) -> None:
    with Client(target.address) as c:
        c.version()
    with pytest.raises(errdefs.FailedPrecondition, match=f"{target.address} is closed"):
        c.version()


def test_namespaces(env: Env) -> None:
    c = env.client
    name = f"ns-{uuid.uuid4().hex[:8]}"
    created = c.namespaces.create(name, {"team": "a"})
    try:
        assert (created.name, dict(created.labels)) == (name, {"team": "a"})
        assert name in [n.name for n in c.namespaces.list()]
        assert c.namespaces.get(name).labels == {"team": "a"}
        c.namespaces.set_label(name, "tier", "db")
        assert c.namespaces.labels(name) == {"team": "a", "tier": "db"}
        c.namespaces.set_label(name, "team", "")
        assert c.namespaces.labels(name) == {"tier": "db"}
        c.namespaces.update(name, {"x": "1"})
        assert c.namespaces.labels(name) == {"x": "1"}
        with pytest.raises(errdefs.AlreadyExists, match=name):
            c.namespaces.create(name)
    finally:
        c.namespaces.delete(name)
    assert name not in [n.name for n in c.namespaces.list()]
    with pytest.raises(errdefs.NotFound, match=name):
        c.namespaces.delete(name)


@pytest.mark.xfail_containerd("Namespaces.Get answers any name, existing or not, with no labels")
def test_get_of_a_missing_namespace_is_not_found(env: Env) -> None:
    name = f"ns-{uuid.uuid4().hex[:8]}"
    with pytest.raises(errdefs.NotFound, match=name):
        env.client.namespaces.get(name)


def test_a_namespace_in_use_cannot_be_deleted(env: Env) -> None:
    c = env.client
    c.containers.create("keep", spec={"ociVersion": "1.0.2"})
    with pytest.raises(errdefs.FailedPrecondition, match=env.namespace):
        c.namespaces.delete(env.namespace)
    c.containers.delete("keep")


def test_an_invalid_namespace_is_refused(target: Target) -> None:
    with (
        Client(target.address, namespace="Not Valid!") as c,
        pytest.raises(errdefs.InvalidArgument, match="Not Valid!"),
    ):
        c.containers.list()


def test_no_daemon_is_unavailable_naming_the_address(tmp_path: object) -> None:
    address = f"/tmp/pcd-none-{uuid.uuid4().hex[:8]}.sock"
    with (
        pytest.raises(errdefs.Unavailable, match=re.escape(address)),
        Client(address, timeout=0.5) as c,  # connects now, or on the first call
    ):
        c.version()


def test_raw_stubs_through_call(env: Env) -> None:
    from pycontainerd.api.containerd.services.containers.v1 import (
        containers_pb2,
        containers_pb2_grpc,
    )

    c = env.client
    stub = containers_pb2_grpc.ContainersStub(c.channel)
    resp = c.call(stub.List, containers_pb2.ListContainersRequest())
    assert list(resp.containers) == []
    with pytest.raises(errdefs.NotFound, match="nope"):
        c.call(stub.Get, containers_pb2.GetContainerRequest(id="nope"))

"""The Leases service through the daemon: the Python client, raw gRPC, pyctr, restarts."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator

import grpc
import pytest

from pycontainerd import Client, errdefs
from pycontainerd.api.containerd.services.leases.v1 import leases_pb2, leases_pb2_grpc
from pycontainerd.leases import LABEL_GC_EXPIRE, LABEL_GC_FLAT, Resource, parse_rfc3339
from tests.fixtures.daemon import Daemon

pytestmark = pytest.mark.integration


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def client(daemon: Daemon) -> Iterator[Client]:
    with Client(daemon.address) as c:
        yield c


def test_create_list_delete(client: Client) -> None:
    before = time.time_ns()
    lease = client.leases.create("first", labels={"a": "b"}, expire=3600, flat=True)
    assert lease.id == "first"
    assert before <= lease.created_at <= time.time_ns()
    assert lease.labels["a"] == "b"
    assert lease.labels[LABEL_GC_FLAT] == "true"
    expires = parse_rfc3339(lease.labels[LABEL_GC_EXPIRE])
    assert abs(expires - (before + 3600 * 10**9)) < 5 * 10**9
    generated = client.leases.create()
    assert re.fullmatch(r"\d+-[A-Za-z0-9_-]{4}", generated.id)
    listed = client.leases.list()
    assert [lease.id for lease in listed] == sorted([generated.id, "first"])
    assert next(x for x in listed if x.id == "first").labels == lease.labels
    assert [x.id for x in client.leases.list('labels."a"==b')] == ["first"]
    assert client.leases.get("first").id == "first"

    with pytest.raises(errdefs.AlreadyExists, match='lease "first": already exists'):
        client.leases.create("first")
    with pytest.raises(errdefs.InvalidArgument, match="control character"):
        client.leases.create("no\ttabs")
    # containerd takes any id: ctr images mount names its lease by a path
    client.leases.create("/mnt/image").delete()
    lease.delete()
    with pytest.raises(errdefs.NotFound, match='lease "first": not found'):
        client.leases.delete("first")
    with pytest.raises(errdefs.NotFound):
        client.leases.get("first")


def test_leases_are_namespaced(daemon: Daemon) -> None:
    with Client(daemon.address, namespace="one") as one, Client(daemon.address) as other:
        one.leases.create("mine")
        other.namespace = "two"
        assert other.leases.list() == []
        with pytest.raises(errdefs.NotFound):
            other.leases.delete("mine")
        # leases do not keep a namespace from being deleted; they go with it
        one.namespaces.delete("one")
        assert one.leases.list() == []


def test_resources(client: Client) -> None:
    lease = client.leases.create("holder")
    blob = _sha(b"x")
    lease.add_resource(Resource(blob, "content"))
    lease.add_resource(Resource("ref-1", "ingests"))
    lease.add_resource(Resource("snap", "snapshots/overlayfs"))
    assert lease.resources() == [
        Resource(blob, "content"),
        Resource("ref-1", "ingests"),
        Resource("snap", "snapshots/overlayfs"),
    ]
    lease.delete_resource(Resource("ref-1", "ingests"))
    assert Resource("ref-1", "ingests") not in lease.resources()
    with pytest.raises(errdefs.InvalidArgument):
        lease.add_resource(Resource("not-a-digest", "content"))
    with pytest.raises(errdefs.NotImplemented):
        lease.add_resource(Resource("c1", "containers"))
    with pytest.raises(errdefs.NotFound):
        client.leases.list_resources("nope")


def test_raw_grpc(client: Client) -> None:
    stub = leases_pb2_grpc.LeasesStub(client.channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.List(leases_pb2.ListRequest())
    assert isinstance(info.value, grpc.Call)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert info.value.details() == "namespace is required"
    md = (("containerd-namespace", "default"),)
    created = stub.Create(leases_pb2.CreateRequest(id="raw", labels={"k": "v"}), metadata=md)
    assert created.lease.id == "raw"
    assert created.lease.created_at.ToNanoseconds() > 0
    listed = stub.List(leases_pb2.ListRequest(filters=["id==raw"]), metadata=md)
    assert [(x.id, dict(x.labels)) for x in listed.leases] == [("raw", {"k": "v"})]
    stub.Delete(leases_pb2.DeleteRequest(id="raw", sync=True), metadata=md)
    assert not stub.List(leases_pb2.ListRequest(), metadata=md).leases


def test_content_written_under_a_lease(client: Client) -> None:
    with client.leases.create("pull", expire=600) as lease:
        with lease.content.writer("layer-1") as w:
            w.write(b"part")
            assert lease.resources() == [Resource("layer-1", "ingests")]
            w.write(b" two")
            w.commit()
        assert lease.resources() == [Resource(_sha(b"part two"), "content")]
        assert client.content.info(_sha(b"part two")).size == 8
    assert client.leases.list() == []  # the block deleted it


def test_with_lease_covers_every_call(client: Client) -> None:
    with client.with_lease() as lease_id:
        assert client.lease == lease_id
        with client.content.writer("r") as w:
            w.write(b"implicit")
            w.commit()
        assert client.leases.list_resources(lease_id) == [Resource(_sha(b"implicit"), "content")]
        with client.with_lease() as inner:
            assert inner == lease_id  # already under one: kept
    assert client.lease is None
    assert client.leases.list() == []
    explicit = client.leases.create("explicit")
    with client.with_lease(explicit), client.content.writer("r2") as w:
        w.write(b"explicit")
        w.commit()
    assert explicit.resources() == [Resource(_sha(b"explicit"), "content")]
    assert [x.id for x in client.leases.list()] == ["explicit"]  # not ours to delete


def test_writing_under_a_missing_lease_fails(client: Client) -> None:
    client.lease = "missing"
    with pytest.raises(errdefs.NotFound, match='lease "missing": not found'):
        client.content.writer("r")


def test_leases_survive_a_restart(daemon: Daemon) -> None:
    with Client(daemon.address) as c:
        c.leases.create("durable", labels={"k": "v"}).add_resource(Resource(_sha(b"d"), "content"))
    daemon.restart()
    with Client(daemon.address) as c:
        lease = c.leases.get("durable")
        assert lease.labels == {"k": "v"}
        assert lease.resources() == [Resource(_sha(b"d"), "content")]


def test_pyctr_leases(daemon: Daemon) -> None:
    out = daemon.pyctr("leases", "create", "--id", "cli-lease", "-x", "1h", "b=2", "a=1").stdout
    assert out == "cli-lease\n"
    generated = daemon.pyctr("leases", "create", "--expires", "0").stdout.strip()
    assert re.fullmatch(r"\d+-[A-Za-z0-9_-]{4}", generated)
    lines = daemon.pyctr("leases", "ls").stdout.splitlines()
    assert lines[0].split() == ["ID", "CREATED", "AT", "LABELS"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows[generated][2] == "-"
    assert rows["cli-lease"][2].startswith("a=1,b=2,containerd.io/gc.expire=")
    ls_q = daemon.pyctr("leases", "ls", "-q").stdout.split()
    assert sorted(ls_q) == sorted([generated, "cli-lease"])
    assert daemon.pyctr("leases", "ls", "-q", "id==cli-lease").stdout == "cli-lease\n"
    rm = daemon.pyctr("leases", "rm", "--sync", "cli-lease", generated)
    assert rm.stdout == f"cli-lease\n{generated}\n"
    assert daemon.pyctr("leases", "ls", "-q").stdout == ""
    missing = daemon.pyctr("leases", "rm", "nope", check=False)
    assert missing.returncode == 1
    assert missing.stderr == 'pyctr: lease "nope": not found\n'
    bad = daemon.pyctr("leases", "create", "-x", "soon", check=False)
    assert bad.returncode == 1
    assert "invalid duration" in bad.stderr

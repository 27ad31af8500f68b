"""The Content service on the wire, across daemon restarts and kills, and through pyctr."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator

import grpc
import pytest

from pycontainerd import Client, errdefs
from pycontainerd.api.containerd.services.content.v1 import content_pb2, content_pb2_grpc
from pycontainerd.content import read_blob
from pycontainerd.descriptor import Descriptor
from tests.fixtures.daemon import PYCTR, Daemon

pytestmark = pytest.mark.integration

NS = (("containerd-namespace", "default"),)


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def client(daemon: Daemon) -> Iterator[Client]:
    with Client(daemon.address) as c:
        yield c


@pytest.fixture
def stub(client: Client) -> content_pb2_grpc.ContentStub:
    return content_pb2_grpc.ContentStub(client.channel)


def _put(client: Client, data: bytes, ref: str = "ref") -> str:
    with client.content.writer(ref) as w:
        w.write(data)
        w.commit(len(data))
        return w.digest()


def _code(exc: grpc.RpcError) -> grpc.StatusCode:
    assert isinstance(exc, grpc.Call)
    return exc.code()


def _details(exc: grpc.RpcError) -> str:
    assert isinstance(exc, grpc.Call)
    return exc.details() or ""


W = content_pb2.WriteContentRequest


# --- Write --------------------------------------------------------------------------------


def test_write_answers_each_message(client: Client, stub: content_pb2_grpc.ContentStub) -> None:
    data = b"0123456789" * 1000
    dgst = _sha(data)
    before = time.time_ns()
    requests = [
        W(action=content_pb2.STAT, ref="wire", total=len(data), expected=dgst),
        W(action=content_pb2.WRITE, offset=0, data=data[:4000]),
        W(action=content_pb2.WRITE, offset=4000, data=data[4000:]),
        W(action=content_pb2.COMMIT, offset=len(data), labels={"a": "b"}),
    ]
    responses = list(stub.Write(iter(requests), metadata=NS))
    assert [r.action for r in responses] == [
        content_pb2.STAT,
        content_pb2.WRITE,
        content_pb2.WRITE,
        content_pb2.COMMIT,
    ]
    assert [r.offset for r in responses] == [0, 4000, len(data), len(data)]
    assert responses[0].total == len(data)
    assert responses[0].started_at.ToNanoseconds() >= before
    assert responses[0].digest == _sha(b"")
    assert responses[-1].digest == dgst
    assert responses[-1].started_at == responses[0].started_at  # kept, as containerd's
    info = client.content.info(dgst)
    assert (info.size, dict(info.labels)) == (len(data), {"a": "b"})


def test_first_message_needs_a_ref(stub: content_pb2_grpc.ContentStub) -> None:
    with pytest.raises(grpc.RpcError) as info:
        list(stub.Write(iter([W(action=content_pb2.STAT)]), metadata=NS))
    assert _code(info.value) == grpc.StatusCode.INVALID_ARGUMENT
    assert _details(info.value) == "first message must have a reference"


def test_write_at_the_wrong_offset(stub: content_pb2_grpc.ContentStub) -> None:
    requests = [
        W(action=content_pb2.WRITE, ref="off", offset=0, data=b"abc"),
        W(action=content_pb2.WRITE, offset=5, data=b"def"),
    ]
    with pytest.raises(grpc.RpcError) as info:
        list(stub.Write(iter(requests), metadata=NS))
    assert _code(info.value) == grpc.StatusCode.OUT_OF_RANGE
    assert _details(info.value) == "write @5 must occur at current offset 3"


def test_write_at_zero_starts_over(client: Client, stub: content_pb2_grpc.ContentStub) -> None:
    requests = [
        W(action=content_pb2.WRITE, ref="again", offset=0, data=b"first"),
        W(action=content_pb2.WRITE, offset=0, data=b"xyz"),
        W(action=content_pb2.COMMIT, offset=3, total=3, expected=_sha(b"xyz")),
    ]
    responses = list(stub.Write(iter(requests), metadata=NS))
    assert [r.offset for r in responses] == [5, 3, 3]
    assert read_blob(client.content, _sha(b"xyz")) == b"xyz"


def test_expected_blob_already_there(client: Client, stub: content_pb2_grpc.ContentStub) -> None:
    dgst = _put(client, b"present")
    with pytest.raises(grpc.RpcError) as info:
        list(stub.Write(iter([W(ref="dup", expected=dgst, total=7)]), metadata=NS))
    assert _code(info.value) == grpc.StatusCode.ALREADY_EXISTS
    assert _details(info.value) == f"content {dgst}: already exists"
    # it appeared while this stream was writing: the commit says so, and the ingest goes
    requests = [
        W(action=content_pb2.WRITE, ref="late", offset=0, data=b"late blob"),
        W(action=content_pb2.COMMIT, offset=9, expected=_sha(b"late blob")),
    ]
    call = stub.Write(_then(requests, lambda: _put(client, b"late blob", "other")), metadata=NS)
    with pytest.raises(grpc.RpcError) as info:
        list(call)
    assert _code(info.value) == grpc.StatusCode.ALREADY_EXISTS
    assert _details(info.value) == f"blob with expected digest {_sha(b'late blob')} exists"
    assert client.content.list_statuses() == []


def _then(
    requests: list[content_pb2.WriteContentRequest], between: object
) -> Iterator[content_pb2.WriteContentRequest]:
    """Yield the first request, call ``between``, then yield the rest."""
    yield requests[0]
    time.sleep(0.2)
    assert callable(between)
    between()
    yield from requests[1:]


def test_unknown_action(stub: content_pb2_grpc.ContentStub) -> None:
    with pytest.raises(grpc.RpcError) as info:
        list(stub.Write(iter([W(ref="odd", action=7)]), metadata=NS))  # type: ignore[arg-type]
    assert _code(info.value) == grpc.StatusCode.INVALID_ARGUMENT


def test_ref_busy_on_another_connection(daemon: Daemon) -> None:
    with Client(daemon.address) as one, Client(daemon.address) as two:
        w = one.content.writer("contended")
        try:
            with pytest.raises(errdefs.Unavailable, match="ref contended locked for"):
                two.content.writer("contended")
        finally:
            w.close()
        two.content.writer("contended").close()


def test_a_vanished_client_frees_its_ref(daemon: Daemon, client: Client) -> None:
    channel = grpc.insecure_channel(f"unix://{daemon.address}")
    stub = content_pb2_grpc.ContentStub(channel)
    call = stub.Write(iter([W(ref="orphan", action=content_pb2.WRITE, data=b"abc")]), metadata=NS)
    next(call)
    channel.close()  # gone without closing the stream
    deadline = time.monotonic() + 10
    while True:
        try:
            w = client.content.writer("orphan")
            break
        except errdefs.Unavailable:
            assert time.monotonic() < deadline, "the daemon kept the ref locked"
            time.sleep(0.1)
    with w:
        assert w.status().offset == 3


# --- Read, List, the rest ------------------------------------------------------------------


def test_read_ranges(client: Client, stub: content_pb2_grpc.ContentStub) -> None:
    data = os.urandom((5 << 20) // 2)
    dgst = _put(client, data)

    def read(offset: int, size: int) -> list[content_pb2.ReadContentResponse]:
        req = content_pb2.ReadContentRequest(digest=dgst, offset=offset, size=size)
        return list(stub.Read(req, metadata=NS))

    chunks = read(0, 0)
    assert [(c.offset, len(c.data)) for c in chunks] == [
        (0, 1 << 20),
        (1 << 20, 1 << 20),
        (2 << 20, len(data) - (2 << 20)),
    ]
    assert b"".join(c.data for c in chunks) == data
    assert [(c.offset, c.data) for c in read(100, 10)] == [(100, data[100:110])]
    assert b"".join(c.data for c in read(len(data) - 5, 100)) == data[-5:]
    assert read(len(data), 0) == []
    with pytest.raises(grpc.RpcError) as info:
        read(len(data) + 1, 0)
    assert _code(info.value) == grpc.StatusCode.OUT_OF_RANGE
    assert _details(info.value) == f"read past object length {len(data)} bytes"


def test_list_is_batched(client: Client, stub: content_pb2_grpc.ContentStub) -> None:
    with client.with_lease():  # 250 commits start a collection: the lease keeps the blobs
        digests = {_put(client, str(i).encode(), f"r{i}") for i in range(250)}
        responses = list(stub.List(content_pb2.ListContentRequest(), metadata=NS))
    assert [len(r.info) for r in responses] == [100, 100, 50]
    assert {i.digest for r in responses for i in r.info} == digests


def test_namespace_is_required(stub: content_pb2_grpc.ContentStub) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.Info(content_pb2.InfoRequest(digest=_sha(b"")))
    assert _code(info.value) == grpc.StatusCode.FAILED_PRECONDITION
    assert _details(info.value) == "namespace is required"


def test_lease_header_is_accepted(stub: content_pb2_grpc.ContentStub, client: Client) -> None:
    md = (*NS, ("containerd-lease", "my-lease"))
    requests = [W(action=content_pb2.COMMIT, ref="leased", data=b"leased blob")]
    with pytest.raises(grpc.RpcError) as info:  # the lease must exist
        list(stub.Write(iter(requests), metadata=md))
    assert _code(info.value) == grpc.StatusCode.NOT_FOUND
    client.leases.create("my-lease")
    assert list(stub.Write(iter(requests), metadata=md))[-1].digest == _sha(b"leased blob")
    assert client.content.info(_sha(b"leased blob")).size == 11
    assert [r.id for r in client.leases.list_resources("my-lease")] == [_sha(b"leased blob")]


def test_namespace_holding_blobs_cannot_be_deleted(daemon: Daemon) -> None:
    with Client(daemon.address, namespace="keeps") as c:
        dgst = _put(c, b"blob")
        with pytest.raises(errdefs.FailedPrecondition, match="still has blobs"):
            c.namespaces.delete("keeps")
        c.content.delete(dgst)
        c.namespaces.delete("keeps")


def test_plugins(client: Client) -> None:
    plugins = {(p.type, p.id): p for p in client.plugins()}
    local = plugins[("io.containerd.content.v1", "content")]
    assert local.status == "ok"
    assert local.exports["root"].endswith("/content")
    assert plugins[("io.containerd.service.v1", "content-service")].exports["policy"] == "shared"
    assert plugins[("io.containerd.grpc.v1", "content")].status == "ok"


# --- restarts and kills --------------------------------------------------------------------


def test_killed_mid_write_resumes_after_restart(daemon: Daemon) -> None:
    data = os.urandom(6 << 20)
    dgst = _sha(data)
    desc = Descriptor("application/octet-stream", dgst, len(data))
    with Client(daemon.address) as c:
        w = c.content.writer("layer-big", desc=desc)
        w.write(data[: 4 << 20])
        daemon.stop(signal.SIGKILL)
        with pytest.raises(errdefs.ContainerdError):
            w.write(data[4 << 20 :])
    daemon.start()
    with Client(daemon.address) as c:
        with pytest.raises(errdefs.NotFound):
            c.content.info(dgst)  # nothing unverified is visible
        assert c.content.status("layer-big").offset == 4 << 20
        with c.content.writer("layer-big", desc=desc) as w:
            assert w.status().offset == 4 << 20
            w.write(data[4 << 20 :])
            w.commit(len(data), dgst)
        assert read_blob(c.content, dgst) == data
        assert c.content.list_statuses() == []


def test_restart_keeps_blobs_labels_and_ingests(daemon: Daemon) -> None:
    with Client(daemon.address) as c:
        # a start collects what nothing refers to: a lease keeps the blob
        with c.with_lease(c.leases.create("keep")), c.content.writer("kept") as w:
            w.write(b"kept blob")
            w.commit(labels={"k": "v"})
        with c.content.writer("pending") as w:
            w.write(b"half")
    daemon.restart()
    with Client(daemon.address) as c:
        assert c.content.info(_sha(b"kept blob")).labels == {"k": "v"}
        assert [(s.ref, s.offset) for s in c.content.list_statuses()] == [("pending", 4)]


# --- pyctr ---------------------------------------------------------------------------------


def _pyctr(daemon: Daemon, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*PYCTR, "-a", daemon.address, "content", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
    )


def test_pyctr_content(daemon: Daemon) -> None:
    data = os.urandom(3 << 20)
    dgst = _sha(data)

    def out(*args: str, stdin: bytes = b"") -> str:
        result = _pyctr(daemon, *args, stdin=stdin)
        assert result.returncode == 0, result.stderr
        return result.stdout.decode()

    def fails(*args: str, stdin: bytes = b"") -> str:
        result = _pyctr(daemon, *args, stdin=stdin)
        assert result.returncode == 1
        return result.stderr.decode()

    size = str(len(data))
    out("ingest", "--expected-digest", dgst, "--expected-size", size, "r1", stdin=data)
    out("ingest", "--expected-digest", dgst, "r1-again", stdin=data)  # already there: fine
    rows = out("ls").splitlines()
    assert rows[0].split("\t")[0] == "DIGEST"
    assert rows[1].split("\t")[:2] == [dgst, "3.146MB"]
    assert out("ls", "-q") == f"{dgst}\n"
    assert out("label", dgst, "b=2", "a=1") == "a=1,b=2\n"
    assert out("label", dgst, "b=") == "a=1\n"
    assert out("label", dgst) == "a=1\n"
    assert out("ls", "-q", "labels.a==1") == f"{dgst}\n"
    assert out("ls", "-q", "labels.a==2") == ""
    assert _pyctr(daemon, "get", dgst).stdout == data

    with Client(daemon.address) as c, c.content.writer("in-flight") as w:
        w.write(b"x" * 2000)
        rows = [[cell for cell in row.split("\t") if cell] for row in out("active").splitlines()]
        assert rows[0] == ["REF", "SIZE", "AGE"]
        assert rows[1][:2] == ["in-flight", "2kB"]
        assert out("active", "ref==other").splitlines() == ["REF\tSIZE\tAGE\t"]

    err = fails("ingest", "--expected-digest", _sha(b"other"), "bad", stdin=b"corrupt")
    assert err.startswith('pyctr: commit ref "bad": unexpected commit digest ')
    assert fails("get", "sha256:abc") == (
        'pyctr: invalid digest "sha256:abc": invalid checksum digest length\n'
    )
    assert fails("ingest") == "pyctr: must specify a transaction reference\n"

    assert out("rm", dgst, _sha(b"missing")) == f"{dgst}\n"  # missing: skipped quietly
    assert "could not delete bogus" in fails("rm", "bogus")
    assert out("ls", "-q") == ""

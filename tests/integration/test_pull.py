"""Pulls from a real docker-registry on loopback into the real daemon: ``Client.pull`` and
``pyctr images pull``, platform choice, labels, records, resumed and corrupt downloads."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator

import pytest

from pycontainerd import Client, errdefs
from pycontainerd.client.images import PULL_LABEL
from pycontainerd.content import Info
from pycontainerd.images import mediatypes as mt
from pycontainerd.images.image import GC_REF_CONTENT
from pycontainerd.images.progress import Progress, make_ref_key
from pycontainerd.leases import LABEL_GC_EXPIRE
from pycontainerd.platforms import host
from pycontainerd.remotes import HostsConfig, Resolver, RetryPolicy, Transport
from tests.fixtures.daemon import Daemon
from tests.fixtures.images import TestImage, make_test_image, other_platform, push_image
from tests.fixtures.registry import FakeServer, Registry, Request, Response, run_registry

pytestmark = pytest.mark.integration

SOURCE = "containerd.io/distribution.source.127.0.0.1"


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    with run_registry() as reg:
        yield reg


@pytest.fixture(scope="module")
def multi(registry: Registry) -> TestImage:
    img = make_test_image("multi", multi=True)
    with Resolver(plain_http=True) as r:
        push_image(r, f"{registry.host}/test/multi:v1", img)
    return img


def blobs(client: Client) -> dict[str, Info]:
    out: dict[str, Info] = {}
    client.content.walk(lambda i: out.__setitem__(i.digest, i))
    return out


def quick_resolver() -> Resolver:
    """Plain HTTP, and retries that do not wait."""
    policy = RetryPolicy(max_attempts=2, initial_delay=0.01, max_delay=0.01)
    return Resolver(
        HostsConfig(plain_http=True), transport=Transport(retry=policy, sleep=lambda _: None)
    )


def leases_left(client: Client) -> list[str]:
    return [lease.id for lease in client.leases.list()]


def test_client_pull_picks_the_host_platform(
    daemon: Daemon, registry: Registry, multi: TestImage
) -> None:
    ref = f"{registry.host}/test/multi:v1"
    events: list[Progress] = []
    with Client(daemon.address) as c:
        img = c.pull(ref, plain_http=True, progress=events.append)
        assert multi.index is not None
        assert img.name == ref
        assert (img.target.media_type, img.target.digest, img.target.size) == (
            mt.MEDIA_TYPE_IMAGE_INDEX,
            multi.index.digest,
            multi.index.size,
        )
        assert c.images.get(ref).target.digest == multi.index.digest

        me = multi.host
        other = multi.for_platform(other_platform())
        have = blobs(c)
        assert set(have) == {multi.index.digest, *(b.digest for b in me.blobs)}
        assert not {b.digest for b in other.blobs} & set(have)

        # Labels as containerd sets them: every blob's source, and references for the collector.
        for info in have.values():
            assert info.labels[SOURCE] == "test/multi"
        assert have[multi.index.digest].labels[GC_REF_CONTENT + "m.0"] == me.manifest.digest
        assert have[multi.index.digest].labels[GC_REF_CONTENT + "m.1"] == other.manifest.digest
        man = have[me.manifest.digest].labels
        assert man[GC_REF_CONTENT + "config"] == me.config.digest
        assert [man[GC_REF_CONTENT + f"l.{i}"] for i in range(2)] == [
            layer.digest for layer in me.layers
        ]
        assert c.images.check(img).complete
        assert c.images.size(img) == multi.index.size + sum(b.size for b in me.blobs)
        assert leases_left(c) == []
        assert c.content.list_statuses() == []

    done = {e.ref for e in events if e.status == "done"}
    assert done == {make_ref_key(b.descriptor()) for b in [multi.index, *me.blobs]}
    assert [e.status for e in events[:2]] == ["resolving", "resolved"]


def test_pull_again_finds_everything_and_keeps_the_record(
    daemon: Daemon, registry: Registry, multi: TestImage
) -> None:
    ref = f"{registry.host}/test/multi:v1"
    with Client(daemon.address) as c:
        first = c.pull(ref, plain_http=True)
        events: list[Progress] = []
        second = c.pull(ref, plain_http=True, progress=events.append, labels={"k": "v"})
        assert second.created_at == first.created_at
        assert second.labels == {"k": "v"}
    statuses = {e.status for e in events if e.status not in ("waiting", "resolving", "resolved")}
    assert statuses == {"exists"}


def test_pull_other_platform_and_all(daemon: Daemon, registry: Registry, multi: TestImage) -> None:
    ref = f"{registry.host}/test/multi:v1"
    other = multi.for_platform(other_platform())
    with Client(daemon.address, namespace="other") as c:
        c.pull(ref, plain_http=True, platform=str(other_platform()))
        have = set(blobs(c))
        assert {b.digest for b in other.blobs} <= have
        assert not {b.digest for b in multi.host.layers} & have
    with Client(daemon.address, namespace="all") as c:
        c.pull(ref, plain_http=True, all_platforms=True, max_concurrent_downloads=1)
        assert set(blobs(c)) == {b.digest for b in multi.blobs}


def test_pull_docker_image_by_digest(daemon: Daemon, registry: Registry) -> None:
    img = make_test_image("docker", docker=True)
    with Resolver(plain_http=True) as r:
        push_image(r, f"{registry.host}/test/docker:v2", img)
    ref = f"{registry.host}/test/docker@{img.root.digest}"
    with Client(daemon.address) as c:
        pulled = c.pull(ref, plain_http=True)
        assert pulled.name == ref
        assert pulled.target.media_type == mt.MEDIA_TYPE_DOCKER_SCHEMA2_MANIFEST
        assert set(blobs(c)) == {b.digest for b in img.blobs}
        labels = c.content.info(img.host.manifest.digest).labels
        assert labels[GC_REF_CONTENT + "config"] == img.host.config.digest


def test_pyctr_pull(daemon: Daemon, registry: Registry, multi: TestImage) -> None:
    ref = f"{registry.host}/test/multi:v1"
    out = daemon.pyctr("images", "pull", "--plain-http", ref).stdout
    lines = out.splitlines()
    me = multi.host
    assert multi.index is not None
    for b in [multi.index, *me.blobs]:
        assert any(line.startswith(f"{make_ref_key(b.descriptor())}: done") for line in lines)
    # ctr's ending: the progress' last line, then the unpack and its time
    assert lines[-3].startswith("elapsed: ")
    assert lines[-2].startswith("unpacking linux/")
    assert lines[-1].startswith("done: ")
    assert "\x1b" not in out

    again = daemon.pyctr("images", "pull", "--plain-http", ref).stdout
    assert f"{make_ref_key(me.layers[0].descriptor())}: exists" in again

    listed = daemon.pyctr("images", "ls").stdout.splitlines()
    assert listed[0].split() == ["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"]
    row = listed[1].split()
    assert row[:3] == [ref, mt.MEDIA_TYPE_IMAGE_INDEX, multi.index.digest]
    assert row[5] == ",".join(sorted([str(host()), str(other_platform())]))
    assert daemon.pyctr("images", "ls", "-q").stdout == f"{ref}\n"


def test_pyctr_pull_errors(daemon: Daemon, registry: Registry) -> None:
    missing = daemon.pyctr(
        "images", "pull", "--plain-http", f"{registry.host}/test/nope:v1", check=False
    )
    assert missing.returncode == 1
    assert missing.stderr.startswith(
        f"pyctr: failed to resolve reference '{registry.host}/test/nope:v1': "
    )
    assert "not found" in missing.stderr
    assert daemon.pyctr("images", "pull", check=False).returncode != 0


SCHEMA1 = (
    b'{"schemaVersion":1,"name":"test/old","tag":"v1","fsLayers":[],"history":[],"signatures":[]}'
)


def test_schema1_is_refused_with_a_clear_message(daemon: Daemon, registry: Registry) -> None:
    def handler(req: Request) -> Response | None:
        if "/manifests/" in req.path:
            headers = {"Content-Type": mt.MEDIA_TYPE_DOCKER_SCHEMA1_MANIFEST}
            return Response(200, headers, SCHEMA1)
        return None

    with FakeServer(handler, registry.host) as fake:
        ref = f"{fake.host}/test/old:v1"
        result = daemon.pyctr("images", "pull", "--plain-http", ref, check=False)
    assert result.returncode == 1
    message = result.stderr.strip()
    assert message.startswith(f"pyctr: failed to resolve reference '{ref}': ")
    assert "schema 1 manifest" in message
    assert "not supported" in message
    assert "\n" not in message
    with Client(daemon.address) as c:
        assert c.images.list() == []


def test_interrupted_download_resumes_from_the_ingest(daemon: Daemon, registry: Registry) -> None:
    img = make_test_image("resume", extra_size=6 << 20)
    big = max(img.host.layers, key=lambda b: b.size)
    assert big.size > 4 << 20
    with Resolver(plain_http=True) as r:
        push_image(r, f"{registry.host}/test/resume:v1", img)
    state = {"broken": True}
    ranges: list[str | None] = []

    def handler(req: Request) -> Response | None:
        if req.method != "GET" or big.digest not in req.path:
            return None
        ranges.append(req.headers.get("Range"))
        if not state["broken"]:
            return None
        if req.headers.get("Range"):
            return Response(503, {}, b"")
        return Response(200, {}, big.data, cut_after=big.size // 2)

    with FakeServer(handler, registry.host) as fake, quick_resolver() as resolver:
        ref = f"{fake.host}/test/resume:v1"
        with Client(daemon.address) as c:
            with pytest.raises(errdefs.Unavailable, match=big.digest):
                c.pull(ref, resolver=resolver)
            with pytest.raises(errdefs.NotFound):
                c.images.get(ref)
            with pytest.raises(errdefs.NotFound):
                c.content.info(big.digest)
            [status] = [s for s in c.content.list_statuses() if big.digest in s.ref]
            assert 0 < status.offset <= big.size // 2
            # The partial download outlives the failed pull, under a lease of its own.
            [kept] = c.leases.list()
            assert kept.labels[PULL_LABEL] == ref
            assert LABEL_GC_EXPIRE in kept.labels

            state["broken"] = False
            ranges.clear()
            c.pull(ref, resolver=resolver)
            assert ranges == [f"bytes={status.offset}-"]
            assert c.content.info(big.digest).size == big.size
            assert c.content.list_statuses() == []
            assert c.images.check(c.images.get(ref)).complete
            assert leases_left(c) == []


def test_corrupt_blob_never_enters_the_store(daemon: Daemon, registry: Registry) -> None:
    img = make_test_image("corrupt")
    layer = img.host.layers[1]
    with Resolver(plain_http=True) as r:
        push_image(r, f"{registry.host}/test/corrupt:v1", img)
    bad = bytearray(layer.data)
    bad[len(bad) // 3] ^= 0x5A

    def handler(req: Request) -> Response | None:
        if req.method == "GET" and layer.digest in req.path:
            return Response(200, {"Content-Type": "application/octet-stream"}, bytes(bad))
        return None

    with FakeServer(handler, registry.host) as fake:
        ref = f"{fake.host}/test/corrupt:v1"
        result = daemon.pyctr("images", "pull", "--plain-http", ref, check=False)
        assert result.returncode == 1
        assert layer.digest in result.stderr
        assert ref in result.stderr
        with Client(daemon.address) as c:
            with pytest.raises(errdefs.NotFound):
                c.content.info(layer.digest)
            assert not [s for s in c.content.list_statuses() if layer.digest in s.ref]
            assert c.images.list() == []


def test_pull_with_basic_auth(daemon: Daemon) -> None:
    img = make_test_image("auth")
    with run_registry(auth="htpasswd", users={"alice": "s3cret"}) as reg:
        ref = f"{reg.host}/test/auth:v1"
        from pycontainerd.remotes import static_credentials

        with Resolver(credentials=static_credentials("alice", "s3cret"), plain_http=True) as r:
            push_image(r, ref, img)
        denied = daemon.pyctr("images", "pull", "--plain-http", ref, check=False)
        assert denied.returncode == 1
        assert "pull access denied" in denied.stderr or "401" in denied.stderr
        daemon.pyctr("images", "pull", "--plain-http", "--user", "alice:s3cret", ref)
    with Client(daemon.address) as c:
        assert c.images.get(ref).target.digest == img.root.digest


def test_unknown_host_is_a_clear_error(daemon: Daemon) -> None:
    with (
        Client(daemon.address) as c,
        quick_resolver() as r,
        pytest.raises(errdefs.ContainerdError) as info,
    ):
        c.pull("no-such-host.invalid/test/x:v1", resolver=r)
    assert "no-such-host.invalid/test/x:v1" in str(info.value)


def test_content_fetch(daemon: Daemon, registry: Registry, multi: TestImage) -> None:
    ref = f"{registry.host}/test/multi:v1"
    daemon.pyctr("content", "fetch", "--plain-http", "--all-platforms", ref)
    with Client(daemon.address) as c:
        assert set(blobs(c)) == {b.digest for b in multi.blobs}
        assert c.images.get(ref).target.digest == multi.root.digest
    daemon.pyctr("content", "fetch", "--plain-http", "--metadata-only", ref, namespace="meta")
    with Client(daemon.address, namespace="meta") as c:
        have = set(blobs(c))
        manifests_and_configs = {b.digest for i in multi.images for b in (i.manifest, i.config)}
        assert multi.index is not None
        assert have == {multi.index.digest} | manifests_and_configs


def test_pull_resumes_after_the_daemon_is_killed(daemon: Daemon, registry: Registry) -> None:
    """SIGKILL halfway through a blob; after a restart nothing unverified is visible, and the
    same pull resumes the ingest where the daemon left it."""
    img = make_test_image("killed", extra_size=8 << 20)
    big = max(img.host.layers, key=lambda b: b.size)
    with Resolver(plain_http=True) as r:
        push_image(r, f"{registry.host}/test/killed:v1", img)
    ranges: list[str | None] = []
    stalled = threading.Event()

    def handler(req: Request) -> Response | None:
        if req.method != "GET" or big.digest not in req.path:
            return None
        ranges.append(req.headers.get("Range"))
        if not stalled.is_set():
            stalled.set()
            return Response(200, {}, big.data, cut_after=big.size // 2, stall=5)
        return None

    transport = Transport(read_timeout=2.0, retry=RetryPolicy(max_attempts=2, initial_delay=0.01))
    errors: list[BaseException] = []
    with (
        FakeServer(handler, registry.host) as fake,
        Resolver(HostsConfig(plain_http=True), transport=transport) as resolver,
    ):
        ref = f"{fake.host}/test/killed:v1"

        def pull() -> None:
            try:
                with Client(daemon.address) as c:
                    c.pull(ref, resolver=resolver)
            except BaseException as exc:
                errors.append(exc)

        worker = threading.Thread(target=pull)
        worker.start()
        assert stalled.wait(30)
        time.sleep(0.5)  # the first half is written while the connection stalls
        daemon.stop(signal.SIGKILL)
        worker.join(60)
        assert errors, "the pull should fail when its daemon dies"

        daemon.start()
        with Client(daemon.address) as c:
            with pytest.raises(errdefs.NotFound):
                c.content.info(big.digest)
            [status] = [s for s in c.content.list_statuses() if big.digest in s.ref]
            assert status.offset > 0
            ranges.clear()
            c.pull(ref, resolver=resolver)
            assert ranges == [f"bytes={status.offset}-"]
            assert c.images.check(c.images.get(ref)).complete
            assert c.content.info(big.digest).size == big.size


def test_pyctr_pull_over_tls_with_a_hosts_dir(daemon: Daemon) -> None:
    img = make_test_image("tls")
    with run_registry(tls=True) as reg:
        assert reg.ca is not None
        ref = f"{reg.host}/test/tls:v1"
        with Resolver(HostsConfig(default_scheme="https", ca_files=(str(reg.ca.cert_path),))) as r:
            push_image(r, ref, img)
        # A loopback registry is plain HTTP unless its certs.d directory says otherwise.
        hosts = daemon.base / "certs.d"
        (hosts / reg.host).mkdir(parents=True)
        (hosts / reg.host / "hosts.toml").write_text(f'server = "https://{reg.host}"\n')
        untrusted = daemon.pyctr("images", "pull", "--hosts-dir", str(hosts), ref, check=False)
        assert untrusted.returncode == 1
        assert "certificate" in untrusted.stderr.lower()
        daemon.pyctr(
            "images", "pull", "--hosts-dir", str(hosts), "--tlscacert", str(reg.ca.cert_path), ref
        )
    with Client(daemon.address) as c:
        assert c.images.get(ref).target.digest == img.root.digest

"""What real registries do now and then: 429 and 5xx, cut connections, lies, schema 1, mirrors,
redirects. A programmable server on loopback stands in front of a real docker-registry."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pycontainerd import errdefs
from pycontainerd.descriptor import Descriptor
from pycontainerd.images import mediatypes as mt
from pycontainerd.remotes import HostsConfig, Resolver, RetryPolicy, Transport
from tests.fixtures.registry import (
    Blob,
    FakeServer,
    Image,
    Registry,
    Request,
    Response,
    make_image,
    run_registry,
    sha256,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    with run_registry() as reg:
        yield reg


@pytest.fixture(scope="module")
def image(registry: Registry) -> Image:
    img = make_image("faults", size=256 << 10)
    with Resolver() as r:
        pusher = r.pusher(f"{registry.host}/test/faults:v1")
        for b in img.blobs:
            pusher.push(desc(b), io.BytesIO(b.data))
    return img


def desc(b: Blob, **kw: object) -> Descriptor:
    return Descriptor(b.media_type, b.digest, b.size, **kw)  # type: ignore[arg-type]


class Sleeps:
    """Records the waits a transport would make, without waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def resolver_with(sleeps: Sleeps, retry: RetryPolicy | None = None, **kw: object) -> Resolver:
    policy = retry or RetryPolicy(max_attempts=4, initial_delay=0.5, jitter=0.2)
    return Resolver(transport=Transport(retry=policy, sleep=sleeps), **kw)  # type: ignore[arg-type]


def test_429_then_success_honours_retry_after(registry: Registry, image: Image) -> None:
    left = {"n": 2}

    def handler(req: Request) -> Response | None:
        if req.method == "GET" and "/blobs/" in req.path and left["n"] > 0:
            left["n"] -= 1
            return Response(429, {"Retry-After": "3"}, b'{"errors":[{"code":"TOOMANYREQUESTS"}]}')
        return None

    sleeps = Sleeps()
    with FakeServer(handler, registry.host) as fake, resolver_with(sleeps) as r:
        data = r.fetcher(f"{fake.host}/test/faults:v1").fetch_bytes(desc(image.layer))
        assert data == image.layer.data
        assert fake.count("GET", "/blobs/") == 3
    assert sleeps.delays == [3.0, 3.0]


def test_5xx_backoff_then_unavailable(registry: Registry, image: Image) -> None:
    def handler(req: Request) -> Response | None:
        if "/manifests/" in req.path:
            return Response(503, {}, b"busy")
        return None

    sleeps = Sleeps()
    policy = RetryPolicy(max_attempts=4, initial_delay=0.5, multiplier=2, jitter=0.2)
    with FakeServer(handler, registry.host) as fake, resolver_with(sleeps, policy) as r:
        with pytest.raises(errdefs.Unavailable, match="503"):
            r.resolve(f"{fake.host}/test/faults:v1")
        assert fake.count("HEAD", "/manifests/") == 4
    assert len(sleeps.delays) == 3
    for got, base in zip(sleeps.delays, [0.5, 1.0, 2.0], strict=True):
        assert base * 0.8 <= got <= base * 1.2


def test_retry_after_beyond_the_limit_gives_up(registry: Registry) -> None:
    def handler(req: Request) -> Response | None:
        return Response(429, {"Retry-After": "3600"}, b"")

    sleeps = Sleeps()
    with (
        FakeServer(handler, registry.host) as fake,
        resolver_with(sleeps) as r,
        pytest.raises(errdefs.Unavailable, match="429"),
    ):
        r.resolve(f"{fake.host}/test/faults:v1")
    assert sleeps.delays == []


def test_upload_retried_after_a_server_error(registry: Registry) -> None:
    failed = {"n": 0}

    def handler(req: Request) -> Response | None:
        if req.method == "PUT" and "/blobs/uploads/" in req.path and failed["n"] == 0:
            failed["n"] += 1
            return Response(500, {}, b"")
        return None

    img = make_image("retry-upload")
    with FakeServer(handler, registry.host) as fake, resolver_with(Sleeps()) as r:
        result = r.pusher(f"{fake.host}/test/retry-upload:v1").push(
            desc(img.layer), io.BytesIO(img.layer.data)
        )
        assert result == "uploaded"
        assert fake.count("PUT", "/blobs/uploads/") == 2
        assert r.fetcher(f"{registry.host}/test/retry-upload:v1").fetch_bytes(desc(img.layer)) == (
            img.layer.data
        )


def test_cut_connection_resumes_with_range(registry: Registry, image: Image) -> None:
    half = image.layer.size // 2
    seen: list[str | None] = []

    def handler(req: Request) -> Response | None:
        if req.method != "GET" or image.layer.digest not in req.path:
            return None
        seen.append(req.headers.get("Range"))
        if len(seen) == 1:
            headers = {"Content-Type": "application/octet-stream"}
            return Response(200, headers, image.layer.data, cut_after=half)
        return None  # the registry answers the Range request with 206

    with (
        FakeServer(handler, registry.host) as fake,
        resolver_with(Sleeps()) as r,
        r.fetcher(f"{fake.host}/test/faults:v1").fetch(desc(image.layer)) as stream,
    ):
        data = stream.readall()
    assert data == image.layer.data
    assert seen == [None, f"bytes={half}-"]


def test_stalled_connection_times_out_and_resumes(registry: Registry, image: Image) -> None:
    half = image.layer.size // 2
    seen: list[str | None] = []

    def handler(req: Request) -> Response | None:
        if req.method != "GET" or image.layer.digest not in req.path:
            return None
        seen.append(req.headers.get("Range"))
        if len(seen) == 1:
            return Response(200, {}, image.layer.data, cut_after=half, stall=3)
        return None

    start = time.monotonic()
    transport = Transport(read_timeout=0.3, sleep=Sleeps())
    with (
        FakeServer(handler, registry.host) as fake,
        Resolver(transport=transport) as r,
        r.fetcher(f"{fake.host}/test/faults:v1").fetch(desc(image.layer)) as stream,
    ):
        # Small reads: a read that times out loses what it had gathered, not what earlier
        # reads returned.
        chunks = []
        while data := stream.read(1000):
            chunks.append(data)
        assert b"".join(chunks) == image.layer.data
        assert time.monotonic() - start < 2.5
    assert seen == [None, f"bytes={half // 1000 * 1000}-"]


def test_server_ignoring_range_is_skipped_to_the_offset(registry: Registry, image: Image) -> None:
    def handler(req: Request) -> Response | None:
        if req.method == "GET" and image.layer.digest in req.path:
            return Response(200, {}, image.layer.data)  # never 206
        return None

    with FakeServer(handler, registry.host) as fake, resolver_with(Sleeps()) as r:
        fetcher = r.fetcher(f"{fake.host}/test/faults:v1")
        with fetcher.fetch(desc(image.layer), 1000) as stream:
            assert stream.read() == image.layer.data[1000:]


def test_connection_cut_every_time_gives_up(registry: Registry, image: Image) -> None:
    def handler(req: Request) -> Response | None:
        if req.method == "GET" and image.layer.digest in req.path:
            return Response(200, {}, image.layer.data, cut_after=0)
        return None

    sleeps = Sleeps()
    with FakeServer(handler, registry.host) as fake, resolver_with(sleeps) as r:
        stream = r.fetcher(f"{fake.host}/test/faults:v1").fetch(desc(image.layer))
        with stream, pytest.raises(errdefs.Unavailable, match="offset 0"):
            stream.read()


def test_wrong_bytes_are_caught(registry: Registry, image: Image) -> None:
    bad = bytes(len(image.layer.data))

    def handler(req: Request) -> Response | None:
        if req.method == "GET" and image.layer.digest in req.path:
            return Response(200, {}, bad)
        if req.method == "GET" and image.config.digest in req.path:
            return Response(200, {}, image.config.data + b"extra")
        return None

    with FakeServer(handler, registry.host) as fake, resolver_with(Sleeps()) as r:
        fetcher = r.fetcher(f"{fake.host}/test/faults:v1")
        with pytest.raises(errdefs.FailedPrecondition, match=image.layer.digest):
            fetcher.fetch_bytes(desc(image.layer))
        with (
            fetcher.fetch(desc(image.layer), verify=True) as stream,
            pytest.raises(errdefs.FailedPrecondition, match="content has digest"),
        ):
            stream.readall()
        # Without verify, the bytes come through for the reader (the content store) to check.
        with fetcher.fetch(desc(image.layer)) as stream:
            assert stream.readall() == bad
        with pytest.raises(errdefs.FailedPrecondition, match="descriptor says"):
            fetcher.fetch(desc(image.config))


SCHEMA1 = json.dumps(
    {"schemaVersion": 1, "name": "test/old", "tag": "v1", "fsLayers": [], "history": []}
).encode()


@pytest.mark.parametrize(
    ("head", "content_type"),
    [
        (200, mt.MEDIA_TYPE_DOCKER_SCHEMA1_MANIFEST),
        (405, mt.MEDIA_TYPE_DOCKER_SCHEMA1_MANIFEST_UNSIGNED),
        (405, "text/plain"),
        (200, "application/json"),  # sniffed from the body
    ],
)
def test_schema1_is_refused(registry: Registry, head: int, content_type: str) -> None:
    def handler(req: Request) -> Response | None:
        if "/manifests/" not in req.path:
            return None
        if req.method == "HEAD" and head != 200:
            return Response(head, {}, b"")
        headers = {"Content-Type": content_type, "Content-Length": str(len(SCHEMA1))}
        return Response(200, headers, SCHEMA1)

    with FakeServer(handler, registry.host) as fake, resolver_with(Sleeps()) as r:
        ref = f"{fake.host}/test/old:v1"
        with pytest.raises(errdefs.NotImplemented, match="schema 1") as info:
            r.resolve(ref)
        assert ref in str(info.value)


def test_head_without_digest_falls_back_to_get(registry: Registry, image: Image) -> None:
    def handler(req: Request) -> Response | None:
        if req.method == "HEAD" and "/manifests/" in req.path:
            return Response(405, {}, b"")
        return None

    with FakeServer(handler, registry.host) as fake, resolver_with(Sleeps()) as r:
        assert r.resolve(f"{fake.host}/test/faults:v1")[1] == desc(image.index)
        assert fake.count("GET", "/manifests/") == 1


def test_get_with_a_lying_digest_header(registry: Registry, image: Image) -> None:
    def handler(req: Request) -> Response | None:
        if "/manifests/" not in req.path:
            return None
        headers = {
            "Content-Type": image.index.media_type,
            "Docker-Content-Digest": image.manifest.digest,
        }
        if req.method == "HEAD":
            return Response(200, {"Content-Type": image.index.media_type}, b"")
        return Response(200, headers, image.index.data)

    with FakeServer(handler, registry.host) as fake, resolver_with(Sleeps()) as r:
        with pytest.raises(errdefs.FailedPrecondition, match=image.manifest.digest):
            r.resolve(f"{fake.host}/test/faults:v1")
        # By digest, the body must match the reference's digest.
        wrong = f"{fake.host}/test/faults@{image.manifest.digest}"
        with pytest.raises(errdefs.FailedPrecondition):
            r.resolve(wrong)


def _mirror_config(base: Path, registry: Registry, mirror: str) -> HostsConfig:
    d = base / f"127.0.0.1_{registry.port}_"
    d.mkdir(parents=True)
    (d / "hosts.toml").write_text(
        f'server = "http://{registry.host}"\n\n'
        f'[host."http://{mirror}"]\n  capabilities = ["pull", "resolve"]\n'
        f'  [host."http://{mirror}".header]\n    x-mirror-test = ["a", "b"]\n'
    )
    return HostsConfig(hosts_dirs=[base])


def test_mirror_first_with_namespace(registry: Registry, image: Image, tmp_path: Path) -> None:
    with FakeServer(lambda req: None, registry.host) as mirror:
        cfg = _mirror_config(tmp_path, registry, mirror.host)
        with Resolver(hosts=cfg) as r:
            name, _ = r.resolve(f"{registry.host}/test/faults:v1")
            assert r.fetcher(name).fetch_bytes(desc(image.layer)) == image.layer.data
        paths = [q.path for q in mirror.requests]
        assert paths
        assert all(f"ns=127.0.0.1%3A{registry.port}" in p for p in paths)
        assert all(q.headers.get("x-mirror-test") == "a, b" for q in mirror.requests)
        assert any(image.layer.digest in p for p in paths)


def test_mirror_missing_content_falls_back_to_origin(
    registry: Registry, image: Image, tmp_path: Path
) -> None:
    def handler(req: Request) -> Response | None:
        return Response(404, {"Content-Type": "application/json"}, b'{"errors":[]}')

    with FakeServer(handler) as mirror:
        cfg = _mirror_config(tmp_path, registry, mirror.host)
        with Resolver(hosts=cfg) as r:
            name, index = r.resolve(f"{registry.host}/test/faults:v1")
            assert index.digest == image.index.digest
            assert r.fetcher(name).fetch_bytes(desc(image.layer)) == image.layer.data
            # Pushes go to the origin only: the mirror may not push.
            img = make_image("mirror-push")
            r.pusher(f"{registry.host}/test/mirror-push:v1").push(
                desc(img.layer), io.BytesIO(img.layer.data)
            )
        assert mirror.count("HEAD", "/manifests/") == 1
        assert mirror.count("GET", "/blobs/") == 1
        assert not [q for q in mirror.requests if q.method in ("POST", "PUT")]


def test_blob_redirect_is_followed(registry: Registry, image: Image) -> None:
    def handler(req: Request) -> Response | None:
        if req.method == "GET" and "/blobs/" in req.path:
            target = f"http://{registry.host}{req.path}"
            return Response(307, {"Location": target}, b"")
        return None

    with FakeServer(handler, registry.host) as fake, resolver_with(Sleeps()) as r:
        fetcher = r.fetcher(f"{fake.host}/test/faults:v1")
        assert fetcher.fetch_bytes(desc(image.layer)) == image.layer.data
        with fetcher.fetch(desc(image.layer), 10) as stream:
            assert stream.read() == image.layer.data[10:]


def test_foreign_layer_urls(registry: Registry) -> None:
    data = b"a foreign layer" * 1000
    foreign = Blob(mt.MEDIA_TYPE_DOCKER_SCHEMA2_LAYER_FOREIGN_GZIP, data)

    def handler(req: Request) -> Response | None:
        if req.path == "/layers/foreign.tar.gz":
            return Response(200, {}, data)
        return None

    with FakeServer(handler) as site, Resolver() as r:
        d = desc(foreign, urls=("ftp://nope/x", f"http://{site.host}/layers/foreign.tar.gz"))
        fetcher = r.fetcher(f"{registry.host}/test/faults:v1")
        assert fetcher.fetch_bytes(d) == data
        assert sha256(data) == d.digest
        # Without following urls, the registry is asked, and does not have it.
        with Resolver(follow_urls=False) as r2, pytest.raises(errdefs.NotFound):
            r2.fetcher(f"{registry.host}/test/faults:v1").fetch(d)


def test_http_proxy_from_environment(
    registry: Registry, image: Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The proxy is asked for a registry by a name nobody resolves: only the proxy connects.
    seen: list[tuple[str, str]] = []

    def handler(req: Request) -> Response | None:
        seen.append((req.method, req.path))
        if not req.path.startswith("http://registry.test:5000/"):
            return Response(400, {}, b"not a proxy request")
        req.path = req.path.removeprefix("http://registry.test:5000")
        return None

    with FakeServer(handler, registry.host) as proxy:
        for name in ("https_proxy", "no_proxy", "HTTPS_PROXY", "NO_PROXY", "http_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", f"http://{proxy.host}")
        with Resolver(plain_http=True) as r:
            name, index = r.resolve("registry.test:5000/test/faults:v1")
            assert index.digest == image.index.digest
            assert r.fetcher(name).fetch_bytes(desc(image.layer)) == image.layer.data
    assert ("HEAD", "http://registry.test:5000/v2/test/faults/manifests/v1") in seen

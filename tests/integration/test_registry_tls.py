"""HTTPS to a docker-registry whose certificate comes from a CA the test makes."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pycontainerd import errdefs
from pycontainerd.descriptor import Descriptor
from pycontainerd.remotes import HostsConfig, Resolver, RetryPolicy
from tests.fixtures.registry import Blob, Registry, make_image, run_registry

pytestmark = pytest.mark.integration

FAST = RetryPolicy(max_attempts=2, initial_delay=0.01, max_delay=0.05)


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    with run_registry(tls=True) as reg:
        yield reg


def desc(b: Blob) -> Descriptor:
    return Descriptor(b.media_type, b.digest, b.size)


def hosts_dir(base: Path, registry: Registry, body: str) -> Path:
    d = base / "certs.d" / f"{registry.host.rpartition(':')[0]}_{registry.port}_"
    d.mkdir(parents=True)
    (d / "hosts.toml").write_text(body)
    return base / "certs.d"


def roundtrip(resolver: Resolver, ref: str, seed: str) -> None:
    image = make_image(seed)
    pusher = resolver.pusher(ref)
    for b in image.blobs:
        pusher.push(desc(b), io.BytesIO(b.data))
    name, index = resolver.resolve(ref)
    assert index.digest == image.index.digest
    assert resolver.fetcher(name).fetch_bytes(desc(image.layer)) == image.layer.data


def test_tls_with_ca_from_hosts_toml(registry: Registry, tmp_path: Path) -> None:
    assert registry.ca is not None
    root = hosts_dir(
        tmp_path,
        registry,
        f'server = "https://{registry.host}"\nca = "{registry.ca.cert_path}"\n',
    )
    with Resolver(hosts=HostsConfig(hosts_dirs=[root]), retry=FAST) as r:
        roundtrip(r, f"{registry.host}/test/tls:v1", "tls")


def test_tls_ca_file_in_the_host_directory(registry: Registry, tmp_path: Path) -> None:
    assert registry.ca is not None
    root = hosts_dir(tmp_path, registry, f'server = "https://{registry.host}"\nca = "ca.pem"\n')
    d = root / f"127.0.0.1_{registry.port}_"
    (d / "ca.pem").write_bytes(registry.ca.cert_path.read_bytes())
    with Resolver(hosts=HostsConfig(hosts_dirs=[root]), retry=FAST) as r:
        roundtrip(r, f"{registry.host}/test/tls-rel:v1", "tls-rel")


def test_tls_docker_style_crt_file(registry: Registry, tmp_path: Path) -> None:
    assert registry.ca is not None
    d = tmp_path / f"127.0.0.1_{registry.port}_"
    d.mkdir()
    (d / "ca.crt").write_bytes(registry.ca.cert_path.read_bytes())
    cfg = HostsConfig(hosts_dirs=[tmp_path], default_scheme="https")
    with Resolver(hosts=cfg, retry=FAST) as r:
        roundtrip(r, f"{registry.host}/test/tls-crt:v1", "tls-crt")


def test_tls_global_ca_option(registry: Registry) -> None:
    assert registry.ca is not None
    cfg = HostsConfig(hosts_dirs=(), default_scheme="https", ca_files=[str(registry.ca.cert_path)])
    with Resolver(hosts=cfg, retry=FAST) as r:
        roundtrip(r, f"{registry.host}/test/tls-global:v1", "tls-global")


def test_tls_unknown_ca_is_refused_at_once(registry: Registry, tmp_path: Path) -> None:
    root = hosts_dir(tmp_path, registry, f'server = "https://{registry.host}"\n')
    start = time.monotonic()
    with (
        Resolver(hosts=HostsConfig(hosts_dirs=[root])) as r,
        pytest.raises(errdefs.Unavailable) as info,
    ):
        r.resolve(f"{registry.host}/test/tls:v1")
    assert "certificate verify failed" in str(info.value)
    assert registry.host in str(info.value)
    assert time.monotonic() - start < 5  # not retried


def test_tls_skip_verify(registry: Registry, tmp_path: Path) -> None:
    root = hosts_dir(
        tmp_path, registry, f'server = "https://{registry.host}"\nskip_verify = true\n'
    )
    with Resolver(hosts=HostsConfig(hosts_dirs=[root]), retry=FAST) as r:
        roundtrip(r, f"{registry.host}/test/tls-skip:v1", "tls-skip")


def test_plain_http_to_a_tls_registry_fails(registry: Registry) -> None:
    with Resolver(plain_http=True, retry=FAST) as r, pytest.raises(errdefs.ContainerdError):
        r.resolve(f"{registry.host}/test/tls:v1")


def test_missing_ca_file_is_a_clear_error(registry: Registry, tmp_path: Path) -> None:
    root = hosts_dir(tmp_path, registry, f'server = "https://{registry.host}"\nca = "nope.pem"\n')
    with (
        Resolver(hosts=HostsConfig(hosts_dirs=[root]), retry=FAST) as r,
        pytest.raises(errdefs.InvalidArgument, match="nope.pem"),
    ):
        r.resolve(f"{registry.host}/test/tls:v1")


def test_tls_client_certificate(tmp_path: Path) -> None:
    with run_registry(tls=True, client_auth=True) as reg:
        assert reg.ca is not None
        assert reg.client_cert is not None
        cert, key = reg.client_cert
        server = f'server = "https://{reg.host}"\nca = "{reg.ca.cert_path}"\n'
        without = hosts_dir(tmp_path / "without", reg, server)
        with (
            Resolver(hosts=HostsConfig(hosts_dirs=[without]), retry=FAST) as r,
            pytest.raises(errdefs.Unavailable),
        ):
            r.resolve(f"{reg.host}/test/mtls:v1")
        root = hosts_dir(tmp_path / "with", reg, server + f'client = [["{cert}", "{key}"]]\n')
        with Resolver(hosts=HostsConfig(hosts_dirs=[root]), retry=FAST) as r:
            roundtrip(r, f"{reg.host}/test/mtls:v1", "mtls")

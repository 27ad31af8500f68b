"""hosts.toml and the hosts directory, as containerd's remotes/docker/config reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from pycontainerd import errdefs
from pycontainerd.remotes.hosts import (
    HostCapabilities,
    HostsConfig,
    RegistryHost,
    TLSConfig,
    host_directory,
    is_localhost,
    parse_hosts_file,
)

ALL = HostCapabilities.ALL
PULL = HostCapabilities.PULL

# containerd's TestParseHostFile, with its expectations.
HOSTS_TOML = """
server = "https://test-default.registry"
ca = "/etc/path/default"
[header]
  x-custom-1 = "custom header"

[host."https://mirror.registry"]
  capabilities = ["pull"]
  ca = "/etc/certs/mirror.pem"
  skip_verify = false
  [host."https://mirror.registry".header]
    x-custom-2 = ["value1", "value2"]

[host."https://mirror-bak.registry/us"]
  capabilities = ["pull"]
  skip_verify = true

[host."http://mirror.registry"]
  capabilities = ["pull"]

[host."https://test-1.registry"]
  capabilities = ["pull", "resolve", "push"]
  ca = ["/etc/certs/test-1-ca.pem", "/etc/certs/special.pem"]
  client = [["/etc/certs/client.cert", "/etc/certs/client.key"],["/etc/certs/client.pem", ""]]

[host."https://test-2.registry"]
  client = "/etc/certs/client.pem"

[host."https://test-3.registry"]
  client = ["/etc/certs/client-1.pem", "/etc/certs/client-2.pem"]

[host."https://noncompliantmirror.registry/v2/namespaceprefix"]
  capabilities = ["pull"]
  override_path = true

[host."https://noprefixnoncompliant.registry"]
  override_path = true
"""


def test_parse_hosts_file_like_containerd() -> None:
    hosts = parse_hosts_file("/", HOSTS_TOML)
    assert hosts == [
        RegistryHost(
            "mirror.registry",
            "https",
            "/v2",
            PULL,
            TLSConfig(("/etc/certs/mirror.pem",), (), False),
            {"x-custom-2": ("value1", "value2")},
        ),
        RegistryHost("mirror-bak.registry", "https", "/us/v2", PULL, TLSConfig((), (), True)),
        RegistryHost("mirror.registry", "http", "/v2", PULL),
        RegistryHost(
            "test-1.registry",
            "https",
            "/v2",
            ALL,
            TLSConfig(
                ("/etc/certs/test-1-ca.pem", "/etc/certs/special.pem"),
                (
                    ("/etc/certs/client.cert", "/etc/certs/client.key"),
                    ("/etc/certs/client.pem", ""),
                ),
            ),
        ),
        RegistryHost(
            "test-2.registry", "https", "/v2", ALL, TLSConfig((), (("/etc/certs/client.pem", ""),))
        ),
        RegistryHost(
            "test-3.registry",
            "https",
            "/v2",
            ALL,
            TLSConfig((), (("/etc/certs/client-1.pem", ""), ("/etc/certs/client-2.pem", ""))),
        ),
        RegistryHost("noncompliantmirror.registry", "https", "/v2/namespaceprefix", PULL),
        RegistryHost("noprefixnoncompliant.registry", "https", "", ALL),
        RegistryHost(
            "test-default.registry",
            "https",
            "/v2",
            ALL,
            TLSConfig(("/etc/path/default",)),
            {"x-custom-1": ("custom header",)},
        ),
    ]


def test_relative_files_are_taken_from_the_directory() -> None:
    text = 'server = "https://r"\nca = "ca.pem"\nclient = [["c.cert", "c.key"]]\n'
    (host,) = parse_hosts_file("/etc/containerd/certs.d/r", text)
    assert host.tls.ca_files == ("/etc/containerd/certs.d/r/ca.pem",)
    assert host.tls.client_pairs == (
        ("/etc/containerd/certs.d/r/c.cert", "/etc/containerd/certs.d/r/c.key"),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[host."https://m"]\ncapabilities = ["fly"]\n', "unknown capability"),
        ('[host."https://m"]\nca = 3\n', "invalid type"),
        ('[host."https://m"]\nclient = [["a"]]\n', "invalid pair"),
        ('[host."https://m"]\nskip_verify = "yes"\n', "skip_verify"),
        ("server = [", "failed to parse TOML"),
    ],
)
def test_parse_hosts_file_errors(text: str, message: str) -> None:
    with pytest.raises(errdefs.InvalidArgument, match=message):
        parse_hosts_file("/", text)


def test_default_hosts() -> None:
    cfg = HostsConfig(hosts_dirs=())
    assert cfg.hosts("docker.io") == [RegistryHost("registry-1.docker.io", "https", "/v2", ALL)]
    assert cfg.hosts("registry.example.com:5000") == [
        RegistryHost("registry.example.com:5000", "https", "/v2", ALL)
    ]
    # containerd 1.6: loopback registries over plain HTTP (skipping verification if redirected).
    for name in ("localhost:5000", "127.0.0.1:5000", "localhost", "[::1]:5000"):
        assert cfg.hosts(name) == [
            RegistryHost(name, "http", "/v2", ALL, TLSConfig(skip_verify=True))
        ]
    # --plain-http applies to every registry; an explicit https reaches loopback over TLS.
    assert HostsConfig(hosts_dirs=(), plain_http=True).hosts("r.example")[0].scheme == "http"
    https = HostsConfig(hosts_dirs=(), default_scheme="https").hosts("127.0.0.1:5000")
    assert https == [RegistryHost("127.0.0.1:5000", "https", "/v2", ALL)]


def test_global_tls_options_apply_below_host_settings(tmp_path: Path) -> None:
    (tmp_path / "r.example").mkdir()
    (tmp_path / "r.example" / "hosts.toml").write_text(
        '[host."https://m.example"]\nskip_verify = false\nca = "m.pem"\n'
    )
    cfg = HostsConfig(hosts_dirs=[tmp_path], ca_files=["/g.pem"], skip_verify=True)
    mirror, origin = cfg.hosts("r.example")
    assert mirror.tls == TLSConfig(("/g.pem", str(tmp_path / "r.example" / "m.pem")), (), False)
    assert origin.host == "r.example"
    assert origin.tls == TLSConfig(("/g.pem",), (), True)


def test_host_directory_names() -> None:
    assert host_directory("localhost:5000") == "localhost_5000_"
    assert host_directory("docker.io") == "docker.io"


def test_host_dir_lookup_order(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "pycontainerd", tmp_path / "containerd"
    for d in (ours / "_default", theirs / "r.example", theirs / "localhost_5000_", ours / "x.io"):
        d.mkdir(parents=True)
    cfg = HostsConfig(hosts_dirs=[ours, theirs])
    # A host's own directory under any root beats _default.
    assert cfg.host_dir("r.example") == theirs / "r.example"
    assert cfg.host_dir("localhost:5000") == theirs / "localhost_5000_"
    # The first root wins.
    (theirs / "x.io").mkdir()
    assert cfg.host_dir("x.io") == ours / "x.io"
    assert cfg.host_dir("other.example") == ours / "_default"
    assert HostsConfig(hosts_dirs=[theirs]).host_dir("other.example") is None


def test_default_dir_and_mirrors(tmp_path: Path) -> None:
    (tmp_path / "_default").mkdir()
    (tmp_path / "_default" / "hosts.toml").write_text(
        '[host."http://127.0.0.1:5001"]\ncapabilities = ["pull", "resolve"]\n'
    )
    hosts = HostsConfig(hosts_dirs=[tmp_path]).hosts("docker.io")
    assert hosts == [
        RegistryHost("127.0.0.1:5001", "http", "/v2", PULL | HostCapabilities.RESOLVE),
        RegistryHost("registry-1.docker.io", "https", "/v2", ALL),
    ]
    assert hosts[0].is_proxy("docker.io")
    assert not hosts[1].is_proxy("docker.io")


def test_server_only_directory(tmp_path: Path) -> None:
    d = tmp_path / "127.0.0.1_5000_"
    d.mkdir()
    (d / "hosts.toml").write_text('server = "https://127.0.0.1:5000"\nca = "ca.pem"\n')
    (host,) = HostsConfig(hosts_dirs=[tmp_path]).hosts("127.0.0.1:5000")
    assert host == RegistryHost(
        "127.0.0.1:5000", "https", "/v2", ALL, TLSConfig((str(d / "ca.pem"),))
    )


def test_docker_style_cert_files(tmp_path: Path) -> None:
    d = tmp_path / "r.example"
    d.mkdir()
    for name in ("ca.crt", "client.cert", "client.key", "other.cert"):
        (d / name).write_text("x")
    (host,) = HostsConfig(hosts_dirs=[tmp_path]).hosts("r.example")
    assert host.host == "r.example"
    assert host.tls.ca_files == (str(d / "ca.crt"),)
    assert host.tls.client_pairs == (
        (str(d / "client.cert"), str(d / "client.key")),
        (str(d / "other.cert"), ""),
    )


def test_broken_hosts_toml_falls_back_to_cert_files(tmp_path: Path) -> None:
    d = tmp_path / "r.example"
    d.mkdir()
    (d / "hosts.toml").write_text("server = [")
    (d / "ca.crt").write_text("x")
    (host,) = HostsConfig(hosts_dirs=[tmp_path]).hosts("r.example")
    assert host.tls.ca_files == (str(d / "ca.crt"),)


def test_path_like_hosts_are_refused(tmp_path: Path) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        HostsConfig(hosts_dirs=[tmp_path]).hosts("..")


def test_is_localhost() -> None:
    for yes in ("localhost", "localhost:5000", "127.0.0.1", "127.0.0.2:80", "[::1]:5000", "::1"):
        assert is_localhost(yes), yes
    for no in ("docker.io", "10.0.0.1:5000", "localhost.example", "[::2]:1"):
        assert not is_localhost(no), no

"""Image references: containerd's reference.Parse and Docker's normalization; digests."""

from __future__ import annotations

import hashlib
import time

import pytest

from pycontainerd import digest, reference
from pycontainerd.digest import from_bytes, is_digest, split_digest, validate_digest
from pycontainerd.errdefs import InvalidArgument
from pycontainerd.reference import (
    Reference,
    parse,
    parse_docker_ref,
    parse_normalized_named,
    tag_name_only,
)

SHA256 = "sha256:" + "f" * 64
SHA512 = "sha512:" + "f" * 128
REAL = "sha256:7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa"


# --- containerd's reference.Parse (TestReferenceParser and more) ---


@pytest.mark.parametrize(
    ("text", "locator", "obj", "normalized", "hostname", "dgst"),
    [
        (
            "docker.io/library/redis:foo?fooo=asdf",
            "docker.io/library/redis",
            "foo",
            "docker.io/library/redis:foo",
            "docker.io",
            "",
        ),
        (
            "docker.io/library/redis:foo@sha256:abcdef?fooo=asdf",
            "docker.io/library/redis",
            "foo@sha256:abcdef",
            "docker.io/library/redis:foo@sha256:abcdef",
            "docker.io",
            "sha256:abcdef",
        ),
        (
            "docker.io/library/redis@sha256:abcdef?fooo=asdf",
            "docker.io/library/redis",
            "@sha256:abcdef",
            "docker.io/library/redis@sha256:abcdef",
            "docker.io",
            "sha256:abcdef",
        ),
        (
            "docker.io/library/redis:obj@abcdef?fooo=asdf",
            "docker.io/library/redis",
            "obj@abcdef",
            "docker.io/library/redis:obj@abcdef",
            "docker.io",
            "abcdef",
        ),
        (
            "localhost:5000/library/redis:obj@abcdef?fooo=asdf",
            "localhost:5000/library/redis",
            "obj@abcdef",
            "localhost:5000/library/redis:obj@abcdef",
            "localhost:5000",
            "abcdef",
        ),
        (
            "docker.io/library/redis?fooo=asdf",
            "docker.io/library/redis",
            "",
            "docker.io/library/redis",
            "docker.io",
            "",
        ),
        (
            "sub-dom1.foo.com/bar/baz/quux:latest",
            "sub-dom1.foo.com/bar/baz/quux",
            "latest",
            None,
            "sub-dom1.foo.com",
            "",
        ),
        (
            "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
            "sub-dom1.foo.com/bar/baz/quux",
            "some-long-tag",
            None,
            "sub-dom1.foo.com",
            "",
        ),
        (
            "b.gcr.io/test.example.com/my-app:test.example.com",
            "b.gcr.io/test.example.com/my-app",
            "test.example.com",
            None,
            "b.gcr.io",
            "",
        ),
        (
            "xn--n3h.com/myimage:xn--n3h.com",
            "xn--n3h.com/myimage",
            "xn--n3h.com",
            None,
            "xn--n3h.com",
            "",
        ),
        (
            "xn--7o8h.com/myimage:xn--7o8h.com@sha512:fffffff",
            "xn--7o8h.com/myimage",
            "xn--7o8h.com@sha512:fffffff",
            None,
            "xn--7o8h.com",
            "sha512:fffffff",
        ),
        # beyond containerd's table
        ("busybox", "busybox", "", None, "busybox", ""),
        ("localhost:5000", "localhost:5000", "", None, "localhost:5000", ""),
        ("host/a//b/:t", "host/a/b", "t", "host/a/b:t", "host", ""),
        ("host/a#frag", "host/a", "", "host/a", "host", ""),
        ("host/a:t?", "host/a", "t", "host/a:t", "host", ""),
        ("host/a%2Fb:t", "host/a/b", "t", "host/a/b:t", "host", ""),
        ("host/a%3At", "host/a", "t", "host/a:t", "host", ""),
        ("user@host/a:t", "host/a", "t", "host/a:t", "host", ""),
        ("[::1]:5000/a:t", "[::1]:5000/a", "t", None, "[::1]:5000", ""),
        ("host:/a", "host:/a", "", None, "host:", ""),
        ("@host/x", "host/x", "", "host/x", "host", ""),
        ("host/a@", "host/a", "@", None, "host", ""),
    ],
)
def test_parse(
    text: str, locator: str, obj: str, normalized: str | None, hostname: str, dgst: str
) -> None:
    ref = parse(text)
    assert ref == Reference(locator, obj)
    assert str(ref) == (normalized if normalized is not None else text)
    assert ref.hostname == hostname
    assert ref.digest == dgst


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("/docker.io/library/redis:obj@abcdef?fooo=asdf", "hostname required"),
        ("http://xn--7o8h.com/myimage:xn--7o8h.com@sha512:fffffff", "invalid reference"),
        ("busybox:latest", 'invalid port ":latest" after host'),
        ("busybox@sha256:abc", 'invalid port ":abc" after host'),
        ("host:50a0/x", 'invalid port ":50a0" after host'),
        ("[::1/x", "missing ']' in host"),
        ("ho st/x", 'invalid character " " in host name'),
        ("ho{st/x", 'invalid character "{" in host name'),
        ("host/a%zz", 'invalid URL escape "%zz"'),
        ("host/a%2", 'invalid URL escape "%2"'),
        ("host/a\nb", "invalid control character in URL"),
        ("host/../evil.com/x:t", "path components must not be . or .."),
        ("host/a/./b", "path components must not be . or .."),
        ("", "hostname required"),
    ],
)
def test_parse_errors(text: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse(text)
    assert str(info.value) == f"parse reference {reference._quote(text)}: {reason}"


@pytest.mark.parametrize(
    ("ref", "tag", "dgst", "repository"),
    [
        (Reference("docker.io/library/redis", "6"), "6", "", "library/redis"),
        (Reference("docker.io/library/redis", f"6@{SHA256}"), "6", SHA256, "library/redis"),
        (Reference("docker.io/library/redis", f"@{SHA256}"), "", SHA256, "library/redis"),
        (Reference("docker.io/library/redis"), "", "", "library/redis"),
        (Reference("busybox"), "", "", ""),
    ],
)
def test_reference_parts(ref: Reference, tag: str, dgst: str, repository: str) -> None:
    assert ref.tag == tag
    assert ref.digest == dgst
    assert ref.repository == repository


def test_reference_is_frozen_and_hashable() -> None:
    ref = Reference("docker.io/library/redis", "6")
    with pytest.raises(AttributeError):
        ref.locator = "x"  # type: ignore[misc]
    assert {ref: 1}[Reference("docker.io/library/redis", "6")] == 1


# --- Docker's normalization ---


@pytest.mark.parametrize(
    ("text", "normalized", "docker_ref"),
    [
        ("busybox", "docker.io/library/busybox", "docker.io/library/busybox:latest"),
        ("nothing", "docker.io/library/nothing", "docker.io/library/nothing:latest"),
        ("library/nothing", "docker.io/library/nothing", "docker.io/library/nothing:latest"),
        ("docker.io/library/nothing", None, "docker.io/library/nothing:latest"),
        ("index.docker.io/library/nothing", "docker.io/library/nothing", None),
        ("index.docker.io/debian", "docker.io/library/debian", None),
        ("docker.io/debian", "docker.io/library/debian", None),
        ("user/img", "docker.io/user/img", "docker.io/user/img:latest"),
        ("foo/bar:baz", "docker.io/foo/bar:baz", "docker.io/foo/bar:baz"),
        ("docker.io/library/foo/bar", None, None),
        ("localhost/nothing", None, "localhost/nothing:latest"),
        ("localhost:5000/a/b:tag", None, "localhost:5000/a/b:tag"),
        ("127.0.0.1:5000/docker/docker", None, None),
        ("127.0.0.1:5000/debian", None, None),
        ("gcr.io/library/busybox", None, "gcr.io/library/busybox:latest"),
        ("gcr.io/library/busybox:1", None, None),
        ("host.example/repo@" + SHA256, None, None),
        ("host/repo@" + SHA256, "docker.io/host/repo@" + SHA256, None),
        ("Docker.io/docker", None, "Docker.io/docker:latest"),
        (
            "busybox@" + REAL,
            "docker.io/library/busybox@" + REAL,
            "docker.io/library/busybox@" + REAL,
        ),
        (
            "docker.io/library/busybox:latest@" + REAL,
            None,
            "docker.io/library/busybox@" + REAL,
        ),
        ("busybox:1@" + SHA512, "docker.io/library/busybox:1@" + SHA512, None),
        ("test_com", "docker.io/library/test_com", None),
        ("test.com:tag", "docker.io/library/test.com:tag", None),
        ("test.com:5000", "docker.io/library/test.com:5000", None),
        ("test.com/repo:tag", None, None),
        ("test:5000/repo", None, None),
        ("test:5000/repo:tag@" + SHA256, None, None),
        ("lowercase:Uppercase", "docker.io/library/lowercase:Uppercase", None),
        ("foo_bar.com:8080", "docker.io/library/foo_bar.com:8080", None),
        ("foo/foo_bar.com:8080", "docker.io/foo/foo_bar.com:8080", None),
        ("a-b--c__d/f", "docker.io/a-b--c__d/f", None),
        ("docker/docker", "docker.io/docker/docker", None),
        ("x" * 64, "docker.io/library/" + "x" * 64, None),
        ("docker.io/" + "a1" * 32, "docker.io/library/" + "a1" * 32, None),
        ("a:" + "t" * 128, "docker.io/library/a:" + "t" * 128, None),
        ("xn--7o8h.com/myimage:xn--7o8h.com@" + SHA512, None, None),
    ],
)
def test_normalize(text: str, normalized: str | None, docker_ref: str | None) -> None:
    ref = parse_normalized_named(text)
    assert str(ref) == (normalized if normalized is not None else text)
    if docker_ref is not None:
        assert str(parse_docker_ref(text)) == docker_ref
    # a normalized reference parses to itself, with both parsers
    assert parse_normalized_named(str(ref)) == ref
    assert parse(str(ref)) == ref


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "invalid reference format"),
        (":justtag", "invalid reference format"),
        ("@" + SHA256, "invalid reference format"),
        ("https://github.com/docker/docker", "invalid reference format"),
        ("docker/Docker", "invalid reference format: repository name must be lowercase"),
        ("Uppercase:tag", "invalid reference format: repository name must be lowercase"),
        (
            "test:5000/Uppercase/lowercase:tag",
            "invalid reference format: repository name must be lowercase",
        ),
        ("docker.io/docker/Docker", "invalid reference format: repository name must be lowercase"),
        ("-docker", "invalid reference format"),
        ("-docker/docker", "invalid reference format"),
        ("-docker.io/docker/docker", "invalid reference format"),
        ("docker///docker", "invalid reference format"),
        ("docker.io/docker///docker", "invalid reference format"),
        ("aa/asdf$$^/aa", "invalid reference format"),
        ("a..b", "invalid reference format"),
        ("a___b", "invalid reference format"),
        ("a/", "invalid reference format"),
        ("a:" + "t" * 129, "invalid reference format"),
        ("a:-tag", "invalid reference format"),
        ("[2001:db8::1]/repo", "invalid reference format"),
        ("host:5000/Repo", "invalid reference format: repository name must be lowercase"),
        ("Foo_bar.com/repo", "repository name must be lowercase"),
        (
            "a" * 64,
            f"invalid repository name ({'a' * 64}), cannot specify 64-byte hexadecimal strings",
        ),
        (
            "a/" * 127 + "a",
            "repository name must not be more than 255 characters",
        ),
        ("validname@invaliddigest:" + "f" * 64, "unsupported digest algorithm"),
        ("repo@sha256:" + "f" * 63, "invalid checksum digest length"),
        ("repo@sha256:" + "F" * 64, "invalid checksum digest format"),
        ("repo@sha256:" + "f" * 31, "invalid reference format"),
    ],
)
def test_normalize_errors(text: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_normalized_named(text)
    assert str(info.value) == f"parse reference {reference._quote(text)}: {reason}"
    with pytest.raises(InvalidArgument):
        parse_docker_ref(text)


def test_name_length_limit() -> None:
    name = "a" * (255 - len("docker.io/library/"))
    assert parse_normalized_named(name).locator == "docker.io/library/" + name
    with pytest.raises(InvalidArgument, match="not be more than 255"):
        parse_normalized_named(name + "a")


def test_not_slow_on_long_near_misses() -> None:
    start = time.perf_counter()
    for text in ["a" * 5000 + "!", "a-" * 3000 + "!", "a." * 3000 + "!", "a__" * 2000 + "_a"]:
        with pytest.raises(InvalidArgument):
            parse_normalized_named(text)
    assert time.perf_counter() - start < 1


@pytest.mark.parametrize(
    ("text", "familiar_name", "familiar_string"),
    [
        ("docker.io/library/ubuntu", "ubuntu", "ubuntu"),
        ("docker.io/library/ubuntu:latest", "ubuntu", "ubuntu:latest"),
        ("docker.io/dmcgowan/myapp", "dmcgowan/myapp", "dmcgowan/myapp"),
        ("docker.io/library/foo/bar:1", "library/foo/bar", "library/foo/bar:1"),
        ("localhost:5000/foo:1", "localhost:5000/foo", "localhost:5000/foo:1"),
        ("gcr.io/library/busybox", "gcr.io/library/busybox", "gcr.io/library/busybox"),
        (
            "docker.io/library/busybox:1@" + REAL,
            "busybox",
            "busybox:1@" + REAL,
        ),
        ("docker.io/library/busybox@" + REAL, "busybox", "busybox@" + REAL),
    ],
)
def test_familiar(text: str, familiar_name: str, familiar_string: str) -> None:
    ref = parse(text)
    assert ref.familiar_name() == familiar_name
    assert ref.familiar_string() == familiar_string
    if "." in text.partition("/")[0]:
        assert parse_normalized_named(ref.familiar_string()) == ref


def test_tag_name_only() -> None:
    assert tag_name_only(Reference("docker.io/library/a")) == Reference(
        "docker.io/library/a", "latest"
    )
    assert tag_name_only(Reference("docker.io/library/a", "1")) == Reference(
        "docker.io/library/a", "1"
    )
    digested = Reference("docker.io/library/a", "@" + SHA256)
    assert tag_name_only(digested) == digested


# --- digests (go-digest's TestParseDigest and more) ---


@pytest.mark.parametrize(
    "text",
    [
        "sha256:e58fcf7418d4390dec8e8fb69d88c06ec07039d651fedd3aa72af9972e7d046b",
        "sha384:d3fc7881460b7e22e3d172954463dddd7866d17597e7248453c48b3e9d26d9596bf9c4a9cf8072c9d5bad76e19af801d",
        SHA512,
        REAL,
    ],
)
def test_valid_digest(text: str) -> None:
    validate_digest(text)
    assert is_digest(text)
    algorithm, encoded = split_digest(text)
    assert f"{algorithm}:{encoded}" == text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("sha256:", "invalid checksum digest format"),
        (":", "invalid checksum digest format"),
        ("", "invalid checksum digest format"),
        (":" + "a" * 64, "invalid checksum digest format"),
        ("d41d8cd98f00b204e9800998ecf8427e", "invalid checksum digest format"),
        ("sha256:d41d8cd98f00b204e9800m98ecf8427e", "invalid checksum digest length"),
        ("sha256:abcdef0123456789", "invalid checksum digest length"),
        ("sha512:" + "abcdef0123456789" * 4, "invalid checksum digest length"),
        ("sha384:" + "a" * 64, "invalid checksum digest length"),
        ("sha256:" + "a" * 63 + "é", "invalid checksum digest length"),
        ("foo:d41d8cd98f00b204e9800998ecf8427e", "unsupported digest algorithm"),
        ("sha384__foo+bar:" + "d3" * 48, "invalid checksum digest format"),
        ("sha384.foo+bar:" + "d3" * 48, "unsupported digest algorithm"),
        ("sha384_foo+bar:" + "d3" * 48, "unsupported digest algorithm"),
        ("sha256+b64:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564", "unsupported digest algorithm"),
        (
            "sha256:" + "E58FCF7418D4390DEC8E8FB69D88C06EC07039D651FEDD3AA72AF9972E7D046B",
            "invalid checksum digest format",
        ),
        ("sha256:" + "g" * 64, "invalid checksum digest format"),
        ("SHA256:" + "a" * 64, "invalid checksum digest format"),
        (SHA256 + "\n", "invalid checksum digest length"),
    ],
)
def test_invalid_digest(text: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_digest(text)
    assert str(info.value) == f"invalid digest {reference._quote(text)}: {reason}"
    assert not is_digest(text)
    assert digest.invalid_reason(text) == reason


def test_from_bytes() -> None:
    assert from_bytes(b"") == "sha256:" + hashlib.sha256(b"").hexdigest()
    assert from_bytes(b"x", "sha512") == "sha512:" + hashlib.sha512(b"x").hexdigest()
    assert is_digest(from_bytes(b"y", "sha384"))
    with pytest.raises(InvalidArgument):
        from_bytes(b"", "md5")

"""Credentials from --user and from Docker's config.json."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from pycontainerd import errdefs
from pycontainerd.remotes.credentials import (
    chain_credentials,
    docker_config_credentials,
    docker_config_path,
    parse_user,
    static_credentials,
)


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def test_parse_user() -> None:
    assert parse_user("alice:s3cr:et") == ("alice", "s3cr:et")
    assert parse_user("alice") == ("alice", "")


def test_static_and_chain() -> None:
    creds = static_credentials("u", "p")
    assert creds("any.example") == ("u", "p")
    only = static_credentials("u", "p", hosts={"a.example"})
    assert only("b.example") is None
    assert static_credentials("", "")("x") is None
    chained = chain_credentials(None, only, static_credentials("v", "q"))
    assert chained("a.example") == ("u", "p")
    assert chained("b.example") == ("v", "q")


def test_docker_config_path(tmp_path: Path) -> None:
    assert docker_config_path({"DOCKER_CONFIG": "/cfg", "HOME": "/h"}) == Path("/cfg/config.json")
    assert docker_config_path({"HOME": "/h"}) == Path("/h/.docker/config.json")


def test_docker_config_entries(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "auths": {
                    "https://index.docker.io/v1/": {"auth": _b64("hubuser:hub:pass")},
                    "127.0.0.1:5000": {"username": "local", "password": "pw"},
                    "http://mirror.example/v2/": {"auth": _b64("m:n")},
                    "token.example": {"identitytoken": "refresh-me", "auth": _b64("x:y")},
                    "empty.example": {},
                }
            }
        )
    )
    creds = docker_config_credentials(path)
    for hub in ("docker.io", "registry-1.docker.io", "index.docker.io"):
        assert creds(hub) == ("hubuser", "hub:pass")
    assert creds("127.0.0.1:5000") == ("local", "pw")
    assert creds("mirror.example") == ("m", "n")
    assert creds("token.example") == ("", "refresh-me")
    assert creds("empty.example") is None
    assert creds("unknown.example") is None


def test_docker_config_read_at_each_call(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    creds = docker_config_credentials(environ={"DOCKER_CONFIG": str(tmp_path)})
    assert creds("r.example") is None  # no file yet
    path.write_text(json.dumps({"auths": {"r.example": {"auth": _b64("a:b")}}}))
    assert creds("r.example") == ("a", "b")


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ("{not json", errdefs.InvalidArgument),
        ('{"auths": {"r.example": {"auth": "%%%"}}}', errdefs.InvalidArgument),
        ('{"auths": {"r.example": {"auth": "' + _b64("nocolon") + '"}}}', errdefs.InvalidArgument),
    ],
)
def test_docker_config_errors(tmp_path: Path, content: str, error: type[Exception]) -> None:
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(error):
        docker_config_credentials(path)("r.example")


def _helper(directory: Path, name: str, script: str) -> None:
    exe = directory / f"docker-credential-{name}"
    exe.write_text("#!/bin/sh\n" + script)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)


def test_credential_helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    # Echo back the server asked for, so the test sees what was passed on stdin.
    _helper(
        bindir,
        "fake",
        'read server\necho "{\\"ServerURL\\": \\"$server\\", \\"Username\\": \\"u-$server\\", '
        '\\"Secret\\": \\"s\\"}"\n',
    )
    _helper(bindir, "tok", 'echo \'{"Username": "<token>", "Secret": "idtok"}\'\n')
    _helper(bindir, "none", "echo 'credentials not found in native keychain'; exit 1\n")
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "credHelpers": {"helped.example": "fake", "tok.example": "tok"},
                "auths": {"plain.example": {"auth": _b64("p:q")}},
                "credsStore": "fake",
            }
        )
    )
    creds = docker_config_credentials(path)
    assert creds("helped.example") == ("u-helped.example", "s")
    assert creds("tok.example") == ("", "idtok")
    assert creds("plain.example") == ("p", "q")  # auths before the store
    assert creds("docker.io") == ("u-https://index.docker.io/v1/", "s")  # the store
    path.write_text(json.dumps({"credsStore": "none"}))
    assert creds("any.example") is None

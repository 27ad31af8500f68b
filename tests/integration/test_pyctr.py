"""pyctr: ctr's commands and tables, --help everywhere, one-line errors."""

from __future__ import annotations

import subprocess

import pytest

from tests.fixtures.daemon import PYCTR, Daemon

pytestmark = pytest.mark.integration


def test_version(daemon: Daemon) -> None:
    out = daemon.pyctr("version").stdout
    assert out.startswith("Client:\n  Version:  ")
    assert "Server:\n  Version:  " in out
    assert "UUID: " in out


def test_namespaces_commands(daemon: Daemon) -> None:
    daemon.pyctr("namespaces", "create", "ns1", "a=b", "c=d")
    out = daemon.pyctr("namespaces", "ls").stdout.splitlines()
    assert out[0].split() == ["NAME", "LABELS"]
    assert out[1].split() == ["ns1", "a=b,c=d"]
    daemon.pyctr("ns", "label", "ns1", "a=x", "c=")
    assert daemon.pyctr("namespaces", "ls").stdout.splitlines()[1].split() == ["ns1", "a=x"]
    assert daemon.pyctr("namespaces", "ls", "-q").stdout == "ns1\n"
    assert daemon.pyctr("namespaces", "rm", "ns1").stdout == "ns1\n"
    assert daemon.pyctr("namespaces", "ls", "-q").stdout == ""


def test_errors_are_one_line_and_non_zero(daemon: Daemon) -> None:
    daemon.pyctr("namespaces", "create", "dup")
    result = daemon.pyctr("namespaces", "create", "dup", check=False)
    assert result.returncode == 1
    assert result.stderr == 'pyctr: namespace "dup": already exists\n'
    result = daemon.pyctr("namespaces", "create", "Bad/Name", check=False)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "identifier" in result.stderr


def test_plugins_ls(daemon: Daemon) -> None:
    lines = daemon.pyctr("plugins", "ls").stdout.splitlines()
    assert lines[0].split() == ["TYPE", "ID", "PLATFORMS", "STATUS"]
    rows = {tuple(line.split()[:2]): line.split()[3] for line in lines[1:]}
    assert rows[("io.containerd.grpc.v1", "version")] == "ok"
    quiet = daemon.pyctr("plugins", "ls", "-q", "type==io.containerd.metadata.v1").stdout
    assert quiet == "sqlite\n"
    detailed = daemon.pyctr("plugins", "ls", "-d", "id==namespaces").stdout
    assert "Type:          io.containerd.grpc.v1" in detailed
    assert "io.containerd.metadata.v1" in detailed  # its requirement


def test_unreachable_daemon(tmp_path: object) -> None:
    result = subprocess.run(
        [*PYCTR, "-a", "/nonexistent/pcd.sock", "--connect-timeout", "0.5", "version"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "connect to /nonexistent/pcd.sock: no such file or directory" in result.stderr
    assert result.stderr.count("\n") == 1


def test_environment_selects_address_and_namespace(daemon: Daemon) -> None:
    import os
    import sys

    env = {**os.environ, "CONTAINERD_ADDRESS": daemon.address, "CONTAINERD_NAMESPACE": "envns"}
    result = subprocess.run(
        [sys.executable, "-m", "pycontainerd.cli.main", "namespaces", "ls"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=True,
    )
    assert result.stdout.splitlines()[0].split() == ["NAME", "LABELS"]


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["version"],
        ["namespaces"],
        ["namespaces", "create"],
        ["namespaces", "ls"],
        ["namespaces", "label"],
        ["namespaces", "rm"],
        ["plugins"],
        ["plugins", "ls"],
    ],
)
def test_help_everywhere(command: list[str]) -> None:
    result = subprocess.run(
        [*PYCTR, *command, "--help"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0
    assert result.stdout.startswith("usage: pyctr")


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["namespaces", "frob"], "pyctr namespaces: argument COMMAND: invalid choice: 'frob'"),
        ([], "pyctr: the following arguments are required: COMMAND"),
        (["namespaces", "rm"], "pyctr namespaces remove: the following arguments are required"),
    ],
)
def test_usage_errors_are_one_line(command: list[str], expected: str) -> None:
    result = subprocess.run([*PYCTR, *command], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.startswith(expected)
    assert result.stderr.count("\n") == 1

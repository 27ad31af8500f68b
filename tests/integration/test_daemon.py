"""The daemon's life: socket, lock, signals, logging, config, plugins, UUID, metadata."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import stat
import subprocess
import time
from pathlib import Path

import pytest

from pycontainerd import Client, Unavailable
from tests.fixtures.daemon import DAEMON, Daemon, make_daemon, wait_for_socket

pytestmark = pytest.mark.integration


def run_daemon(d: Daemon, *extra: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a daemon that is expected to exit by itself (an error at start, a config command)."""
    return subprocess.run(d.args(*extra), capture_output=True, text=True, timeout=timeout)


def test_socket_is_0660_root_owned(daemon: Daemon) -> None:
    st = os.stat(daemon.address)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert (st.st_uid, st.st_gid) == (0, 0)


def test_refuses_a_second_daemon_on_the_same_socket(daemon: Daemon, tmp_path: Path) -> None:
    other = make_daemon(tmp_path / "other")
    try:
        other.address = daemon.address  # same socket, different root
        result = run_daemon(other)
        assert result.returncode == 1
        assert f"serve {daemon.address}: another daemon is already serving" in result.stderr
        # the first daemon still answers
        with Client(daemon.address) as c:
            assert c.version().version
    finally:
        other.cleanup()


def test_refuses_a_second_daemon_on_the_same_root(daemon: Daemon, tmp_path: Path) -> None:
    other = make_daemon(tmp_path / "other")
    try:
        other.root = daemon.root
        result = run_daemon(other)
        assert result.returncode == 1
        assert f"lock root {daemon.root}: another daemon (pid {daemon.proc.pid})" in result.stderr  # type: ignore[union-attr]
        assert not os.path.exists(other.address)
    finally:
        other.cleanup()


def test_removes_a_stale_socket(tmp_path: Path) -> None:
    d = make_daemon(tmp_path)
    try:
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(d.address)
        stale.close()  # the file stays, nobody listens
        assert os.path.exists(d.address)
        d.start()
        with Client(d.address) as c:
            assert c.version().version
        assert d.stop() == 0
        assert "removing stale socket" in d.logs()
    finally:
        d.stop()
        d.cleanup()


def test_refuses_a_path_that_is_not_a_socket(tmp_path: Path) -> None:
    d = make_daemon(tmp_path)
    try:
        Path(d.address).write_text("precious")
        result = run_daemon(d)
        assert result.returncode == 1
        assert "the path exists and is not a socket" in result.stderr
        assert Path(d.address).read_text() == "precious"
    finally:
        d.cleanup()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stops_cleanly_on_signal(tmp_path: Path, sig: int) -> None:
    d = make_daemon(tmp_path)
    try:
        d.start()
        assert d.stop(sig) == 0
        assert not os.path.exists(d.address), "socket left behind"
        assert 'level=info msg="stopped"' in d.logs()
        # the root lock is released: a new daemon starts on the same root
        d.start()
        assert d.stop() == 0
    finally:
        d.stop()
        d.cleanup()


def test_log_level(tmp_path: Path) -> None:
    d = make_daemon(tmp_path)
    try:
        d.start("-l", "debug")
        d.stop()
        assert "level=debug" in d.logs()
        d.log.unlink()
        d.start()  # default: info
        d.stop()
        logs = d.logs()
        assert "level=info" in logs
        assert "level=debug" not in logs
    finally:
        d.stop()
        d.cleanup()


def test_config_default_loads_back_unchanged(tmp_path: Path) -> None:
    default = subprocess.run(
        [*DAEMON, "config", "default"], capture_output=True, text=True, check=True
    ).stdout
    assert "version = 2" in default
    assert 'address = "/run/pycontainerd/pycontainerd.sock"' in default
    assert 'root = "/var/lib/pycontainerd"' in default
    path = tmp_path / "config.toml"
    path.write_text(default)
    dumped = subprocess.run(
        [*DAEMON, "-c", str(path), "config", "dump"], capture_output=True, text=True, check=True
    ).stdout
    assert dumped == default


def test_daemon_honours_config_file(tmp_path: Path) -> None:
    d = make_daemon(tmp_path)
    try:
        d.config.write_text(
            "version = 2\n"
            f'root = "{d.root}"\n'
            f'state = "{d.state}"\n'
            "[grpc]\n"
            f'  address = "{d.address}"\n'
            "[debug]\n"
            '  level = "debug"\n'
        )
        with open(d.log, "ab") as log:
            d.proc = subprocess.Popen([*DAEMON, "-c", str(d.config)], stdout=log, stderr=log)
        wait_for_socket(d.address, d.proc)
        assert (d.root / "metadata.db").exists()
        assert d.stop() == 0
        assert "level=debug" in d.logs()
    finally:
        d.stop()
        d.cleanup()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version = 2\n[grpc]\naddress = \n", ":3: key address: invalid value"),
        (
            "version = 2\n\n[grpc]\n  address = 5\n",
            ":4: key grpc.address: expected a string, got an integer",
        ),
        ('version = 2\nroot = "/x"\nbogus = 1\n', ":3: key bogus: unknown key"),
        (
            'version = 2\n[debug]\n  level = "loud"\n',
            ":3: key debug.level: unknown log level 'loud'",
        ),
        ("version = 1\n", ":1: key version: unsupported config version 1"),
        (
            'version = 2\ndisabled_plugins = "x"\n',
            ":2: key disabled_plugins: expected an array of strings, got a string",
        ),
    ],
)
def test_malformed_config_stops_the_daemon(tmp_path: Path, text: str, expected: str) -> None:
    d = make_daemon(tmp_path)
    try:
        d.config.write_text(text)
        result = run_daemon(d)
        assert result.returncode == 1
        assert f"config {d.config}{expected}" in result.stderr
        assert not os.path.exists(d.address)
    finally:
        d.cleanup()


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    d = make_daemon(tmp_path)
    try:
        d.config = tmp_path / "nope.toml"
        result = run_daemon(d)
        assert result.returncode == 1
        assert f"config {d.config}: no such file" in result.stderr
    finally:
        d.cleanup()


def test_server_uuid_persists_across_restarts(daemon: Daemon) -> None:
    with Client(daemon.address) as c:
        first = c.server().uuid
    daemon.restart()
    with Client(daemon.address) as c:
        assert c.server().uuid == first
    assert (daemon.root / "io.containerd.grpc.v1.introspection" / "uuid").read_text() == first


def test_metadata_is_sqlite_in_wal_mode(daemon: Daemon) -> None:
    db = daemon.root / "metadata.db"
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] >= 1
    finally:
        conn.close()


def test_a_failed_plugin_is_listed_with_its_error(tmp_path: Path) -> None:
    d = make_daemon(tmp_path)
    try:
        (d.root / "metadata.db").mkdir(parents=True)  # the database cannot be opened
        d.start()
        with Client(d.address) as c:
            assert c.version().version  # the daemon still serves what does not need it
            plugins = {f"{p.type}.{p.id}": p for p in c.plugins()}
        meta = plugins["io.containerd.metadata.v1.sqlite"]
        assert meta.status == "error"
        assert f"open metadata database {d.root / 'metadata.db'}" in (meta.error or "")
        ns = plugins["io.containerd.grpc.v1.namespaces"]
        assert ns.status == "error"
        assert "io.containerd.metadata.v1" in (ns.error or "")
        assert plugins["io.containerd.grpc.v1.version"].status == "ok"
        out = d.pyctr("plugins", "ls").stdout
        line = next(x for x in out.splitlines() if " sqlite " in x)
        assert "error: open metadata database" in line
    finally:
        d.stop()
        d.cleanup()


def test_required_plugin_that_fails_stops_the_daemon(tmp_path: Path) -> None:
    d = make_daemon(tmp_path)
    try:
        (d.root / "metadata.db").mkdir(parents=True)
        d.config.write_text(
            'version = 2\nrequired_plugins = ["io.containerd.metadata.v1.sqlite"]\n'
        )
        result = run_daemon(d)
        assert result.returncode == 1
        assert (
            "required plugin io.containerd.metadata.v1.sqlite: open metadata database"
            in result.stderr
        )
    finally:
        d.cleanup()


def test_disabled_plugin_is_not_loaded(tmp_path: Path) -> None:
    d = make_daemon(tmp_path)
    try:
        d.config.write_text('version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.images"]\n')
        d.start()
        with Client(d.address) as c:
            ids = {p.id for p in c.plugins()}
        assert "images" not in ids
        assert "namespaces" in ids
    finally:
        d.stop()
        d.cleanup()


def test_client_to_a_dead_socket_fails_within_its_timeout(tmp_path: Path) -> None:
    address = str(tmp_path / "nothing.sock")
    start = time.monotonic()
    client = Client(address, timeout=0.5)  # connects on first use
    with pytest.raises(Unavailable, match=f"connect to {address}: no such file or directory"):
        client.version()
    with pytest.raises(Unavailable, match=f"connect to {address}: no such file or directory"):
        client.connect()
    assert time.monotonic() - start < 5
    # a socket file where nobody listens
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(address)
    s.close()
    with pytest.raises(Unavailable, match=f"connect to {address}: connection refused"):
        Client(address, timeout=0.5).connect()


def test_health_check_serves(daemon: Daemon) -> None:
    from pycontainerd.api.grpc.health.v1 import health_pb2, health_pb2_grpc

    with Client(daemon.address) as c:
        stub = health_pb2_grpc.HealthStub(c.channel)
        resp = c.call(stub.Check, health_pb2.HealthCheckRequest())
        assert resp.status == health_pb2.HealthCheckResponse.SERVING

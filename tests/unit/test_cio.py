"""``pycontainerd.cio`` without a daemon: the FIFO layout, copying both ways with a thread
playing the shim, cancellation, cleanup, log URIs; and pyctr's Go ``tabwriter``."""

from __future__ import annotations

import io
import os
import stat
import threading
from pathlib import Path

import pytest

from pycontainerd import cio, errdefs
from pycontainerd.cli.tasks import go_tabwriter, go_time


def shim_writes(path: str, data: bytes) -> threading.Thread:
    """Open a FIFO for writing as the shim does, write, close."""

    def run() -> None:
        fd = os.open(path, os.O_WRONLY)
        os.write(fd, data)
        os.close(fd)

    t = threading.Thread(target=run)
    t.start()
    return t


def test_fifo_layout_and_removal(tmp_path: Path) -> None:
    tio = cio.with_streams(b"", io.BytesIO(), io.BytesIO(), fifo_dir=str(tmp_path))("web")
    cfg = tio.config
    directory = Path(cfg.stdout).parent
    assert directory.parent == tmp_path
    assert [Path(p).name for p in (cfg.stdin, cfg.stdout, cfg.stderr)] == [
        "web-stdin",
        "web-stdout",
        "web-stderr",
    ]
    assert all(stat.S_ISFIFO(os.stat(p).st_mode) for p in (cfg.stdin, cfg.stdout, cfg.stderr))
    tio.close()  # nobody ever wrote: cancelled
    assert list(tmp_path.iterdir()) == []


def test_terminal_has_no_stderr_and_missing_streams_no_fifo(tmp_path: Path) -> None:
    tio = cio.with_streams(None, io.BytesIO(), io.BytesIO(), terminal=True, fifo_dir=str(tmp_path))(
        "t"
    )
    assert (tio.config.stdin, tio.config.stderr, tio.config.terminal) == ("", "", True)
    assert tio.config.stdout.endswith("/t-stdout")
    tio.close()
    assert list(tmp_path.iterdir()) == []


def test_capture_reads_until_the_writer_closes(tmp_path: Path) -> None:
    tio = cio.capture(fifo_dir=str(tmp_path))("c")
    writers = [
        shim_writes(tio.config.stdout, b"out" * 50_000),
        shim_writes(tio.config.stderr, b"err"),
    ]
    for w in writers:
        w.join()
    assert tio.wait()
    assert (tio.stdout_data, tio.stderr_data) == (b"out" * 50_000, b"err")
    tio.close()
    assert list(tmp_path.iterdir()) == []


def test_stdin_is_closed_after_start_and_the_closer_called(tmp_path: Path) -> None:
    closed = threading.Event()
    tio = cio.with_streams(io.BytesIO(b"input data"), None, None, fifo_dir=str(tmp_path))("s")
    tio.set_stdin_closer(closed.set)
    fd = os.open(tio.config.stdin, os.O_RDONLY)  # the shim's end
    tio.start()
    data = b""
    while chunk := os.read(fd, 1024):
        data += chunk
    os.close(fd)
    assert data == b"input data"
    assert closed.wait(30)
    tio.close()


def test_output_to_a_text_stream_and_a_descriptor(tmp_path: Path) -> None:
    text = io.StringIO()
    r, w = os.pipe()
    try:
        tio = cio.with_streams(None, text, w, fifo_dir=str(tmp_path))("x")
        shim_writes(tio.config.stdout, "héllo".encode()).join()
        shim_writes(tio.config.stderr, b"to fd").join()
        assert tio.wait()
        tio.close()
        assert text.getvalue() == "héllo"
        assert os.read(r, 100) == b"to fd"
    finally:
        os.close(r)
        os.close(w)


def test_null_io_and_log_uris(tmp_path: Path) -> None:
    assert cio.null_io("x").config == cio.IOConfig()
    log = tmp_path / "logs" / "a.log"
    cfg = cio.log_file(str(log))("x").config
    assert (cfg.stdin, cfg.stdout, cfg.stderr) == ("", f"file://{log}", f"file://{log}")
    assert log.parent.is_dir()
    cfg = cio.binary_io("/usr/bin/logger", {"b": "2", "a": "1"})("x").config
    assert cfg.stdout == "binary:///usr/bin/logger?a=1&b=2"
    with pytest.raises(errdefs.InvalidArgument, match="unknown scheme"):
        cio.log_uri("http://example.com/log")
    with pytest.raises(errdefs.InvalidArgument, match="absolute"):
        cio.log_file("relative.log")


def test_load_removes_only_fifos(tmp_path: Path) -> None:
    d = tmp_path / "set"
    d.mkdir()
    os.mkfifo(d / "x-stdout")
    (d / "x-stderr").write_text("a regular file is not ours to remove")
    tio = cio.load(cio.IOConfig(stdout=str(d / "x-stdout"), stderr=str(d / "x-stderr")))
    tio.close()
    assert [p.name for p in d.iterdir()] == ["x-stderr"]
    assert cio.load(cio.IOConfig(stdout="file:///var/log/x")).config.stdout == "file:///var/log/x"


def test_go_tabwriter_as_ctr_prints() -> None:
    out = io.StringIO()
    go_tabwriter(
        ["TASK\tPID\tSTATUS\t", "web\t123\tRUNNING", "a\t7\tSTOPPED"],
        minwidth=4,
        padding=4,
        out=out,
    )
    assert out.getvalue() == (
        "TASK    PID    STATUS    \nweb     123    RUNNING\na       7      STOPPED\n"
    )
    out = io.StringIO()
    go_tabwriter(
        ["ID\tTIMESTAMP\t", "x\tnow\t", "", "METRIC\tVALUE\t", "m\t1\t"],
        minwidth=1,
        padding=4,
        out=out,
    )
    assert (
        out.getvalue()
        == "ID    TIMESTAMP    \nx     now          \n\nMETRIC    VALUE    \nm         1        \n"
    )


def test_go_time() -> None:
    assert go_time(1_700_000_000_123_450_000) == "2023-11-14 22:13:20.12345 +0000 UTC"
    assert go_time(1_700_000_000_000_000_000) == "2023-11-14 22:13:20 +0000 UTC"

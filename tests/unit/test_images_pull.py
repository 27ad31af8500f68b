"""One blob into an ingest: skip what is there, resume what was begun, refuse what is wrong;
and the progress display that reports it."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pycontainerd import errdefs
from pycontainerd.cli.transfer import ProgressDisplay, human_bytes
from pycontainerd.content import Store, read_blob
from pycontainerd.content.local import LocalStore
from pycontainerd.descriptor import Descriptor
from pycontainerd.images import mediatypes as mt
from pycontainerd.images.progress import Progress, make_ref_key
from pycontainerd.images.pull import fetch_blob
from pycontainerd.metadata import DB, ContentStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = DB(tmp_path / "metadata.db")
    yield ContentStore(db, LocalStore(tmp_path / "content")).namespaced("default")
    db.close()


class FakeFetcher:
    """Serves ``data`` from an offset; ``fail_after`` bytes in, a read raises."""

    def __init__(self, data: bytes, fail_after: int | None = None) -> None:
        self.data = data
        self.fail_after = fail_after
        self.offsets: list[int] = []

    def fetch(self, desc: Descriptor, offset: int = 0) -> io.BufferedIOBase:
        self.offsets.append(offset)
        fetcher = self

        class Stream(io.BytesIO):
            def read(self, n: int | None = -1) -> bytes:
                if fetcher.fail_after is not None and self.tell() + offset >= fetcher.fail_after:
                    raise errdefs.Unavailable("connection reset")
                return super().read(n)

        return Stream(self.data[offset:])


def layer(size: int = 3 << 20) -> tuple[bytes, Descriptor]:
    data = os.urandom(size)
    desc = Descriptor(
        mt.MEDIA_TYPE_IMAGE_LAYER_GZIP, "sha256:" + hashlib.sha256(data).hexdigest(), size
    )
    return data, desc


def test_fetch_then_exists(store: Store) -> None:
    data, desc = layer()
    events: list[Progress] = []
    assert fetch_blob(store, FakeFetcher(data), desc, progress=events.append)  # type: ignore[arg-type]
    assert read_blob(store, desc) == data
    assert events[-1] == Progress(make_ref_key(desc), "done", desc.size, desc.size, desc)
    assert [e.offset for e in events if e.status == "downloading"] == [0, 1 << 20, 2 << 20, 3 << 20]
    events.clear()
    assert not fetch_blob(store, FakeFetcher(data), desc, progress=events.append)  # type: ignore[arg-type]
    assert [e.status for e in events] == ["exists"]


def test_interrupted_fetch_resumes_from_the_ingest(store: Store) -> None:
    data, desc = layer()
    broken = FakeFetcher(data, fail_after=2 << 20)
    with pytest.raises(errdefs.Unavailable):
        fetch_blob(store, broken, desc)  # type: ignore[arg-type]
    [status] = store.list_statuses()
    assert status.ref == make_ref_key(desc)
    assert status.offset == 2 << 20
    fetcher = FakeFetcher(data)
    assert fetch_blob(store, fetcher, desc)  # type: ignore[arg-type]
    assert fetcher.offsets == [2 << 20]
    assert read_blob(store, desc) == data
    assert store.list_statuses() == []


def test_corrupt_content_is_refused_and_the_ingest_dropped(store: Store) -> None:
    data, desc = layer(1 << 20)
    bad = bytearray(data)
    bad[100] ^= 1
    with pytest.raises(errdefs.FailedPrecondition, match=desc.digest):
        fetch_blob(store, FakeFetcher(bytes(bad)), desc, what=f"fetch {desc.digest}")  # type: ignore[arg-type]
    with pytest.raises(errdefs.NotFound):
        store.info(desc.digest)
    assert store.list_statuses() == []


def test_refuses_schema1_and_empty(store: Store) -> None:
    with pytest.raises(errdefs.NotImplemented):
        fetch_blob(
            store,
            FakeFetcher(b"x"),  # type: ignore[arg-type]
            Descriptor(mt.MEDIA_TYPE_DOCKER_SCHEMA1_MANIFEST, "sha256:" + "0" * 64, 1),
        )
    with pytest.raises(errdefs.InvalidArgument, match="size of zero"):
        fetch_blob(
            store,
            FakeFetcher(b""),  # type: ignore[arg-type]
            Descriptor(mt.MEDIA_TYPE_IMAGE_LAYER, "sha256:" + "0" * 64, 0),
        )


def test_cancel_stops_a_fetch(store: Store) -> None:
    data, desc = layer()
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(errdefs.Canceled):
        fetch_blob(store, FakeFetcher(data), desc, cancel=cancel)  # type: ignore[arg-type]


def test_ref_keys() -> None:
    d = "sha256:" + "a" * 64
    assert make_ref_key(Descriptor(mt.MEDIA_TYPE_IMAGE_INDEX, d, 1)) == f"index-{d}"
    assert make_ref_key(Descriptor(mt.MEDIA_TYPE_DOCKER_SCHEMA2_MANIFEST, d, 1)) == (
        f"manifest-{d}"
    )
    assert make_ref_key(Descriptor(mt.MEDIA_TYPE_DOCKER_SCHEMA2_LAYER_GZIP, d, 1)) == f"layer-{d}"
    assert make_ref_key(Descriptor(mt.MEDIA_TYPE_IMAGE_CONFIG, d, 1)) == f"config-{d}"
    assert make_ref_key(Descriptor("application/x", d, 1)) == f"unknown-{d}"
    named = Descriptor(
        mt.MEDIA_TYPE_IMAGE_MANIFEST, d, 1, {"org.opencontainers.image.ref.name": "v1"}
    )
    assert make_ref_key(named) == f"manifest-v1@{d}"


def test_human_bytes() -> None:
    assert human_bytes(0) == "0.0 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(200 << 20) == "200.0 MiB"


class Out(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def _events(display: ProgressDisplay) -> None:
    d = "sha256:" + "b" * 64
    desc = Descriptor(mt.MEDIA_TYPE_IMAGE_LAYER_GZIP, d, 2 << 20)
    display(Progress("x", "resolving"))
    display(Progress("x", "resolved"))
    display(Progress(f"layer-{d}", "waiting", 0, desc.size, desc))
    display(Progress(f"layer-{d}", "downloading", 0, desc.size, desc))
    display(Progress(f"layer-{d}", "downloading", 1 << 20, desc.size, desc))
    display(Progress(f"config-{d}", "exists", 10, 10))
    display(Progress(f"layer-{d}", "done", desc.size, desc.size, desc))


def test_plain_progress_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    out = Out(tty=False)
    with ProgressDisplay("example.com/a:b", out) as display:
        _events(display)
    lines = out.getvalue().splitlines()
    d = "b" * 64
    assert lines[0] == f"config-sha256:{d}: exists"
    assert lines[1].startswith(f"layer-sha256:{d}: done 2.0 MiB")
    assert lines[2].startswith("elapsed: ")
    assert "\x1b" not in out.getvalue()


def test_terminal_progress_redraws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    out = Out(tty=True)
    with ProgressDisplay("example.com/a:b", out, interval=0.01) as display:
        _events(display)
        display._draw()
    text = out.getvalue()
    assert "\x1b[1A\x1b[2K\r" in text  # the previous screen is cleared
    assert "\x1b[32m+" in text  # green bars
    last = text.rsplit("\x1b[2K\r", 1)[-1].splitlines()
    assert last[0].startswith("example.com/a:b:")
    assert "resolved" in last[0]
    assert any(line.startswith("layer-sha256:bbbbbbbbbbbb:") and "done" in line for line in last)
    assert last[-1].startswith("elapsed: ")


def test_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    out = Out(tty=True)
    with ProgressDisplay("example.com/a:b", out, interval=0.01) as display:
        _events(display)
    assert "\x1b[32m" not in out.getvalue()
    assert "|++++" in out.getvalue()

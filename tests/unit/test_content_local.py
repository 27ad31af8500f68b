"""The local content store: its layout on disk, resuming after a crash, locking across processes."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pycontainerd import errdefs
from pycontainerd.content import Info, read_blob
from pycontainerd.content.local import LocalStore, _go_time
from pycontainerd.descriptor import Descriptor
from pycontainerd.durations import format_duration


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "content")


def _ingest_dir(store: LocalStore, ref: str) -> Path:
    return store.root / "ingest" / hashlib.sha256(ref.encode()).hexdigest()


def test_layout(store: LocalStore) -> None:
    data = b"x" * 1000
    with store.writer("layer-sha256:abc", desc=Descriptor("", _sha(data), 1000)) as w:
        w.write(data[:400])
        ingest = _ingest_dir(store, "layer-sha256:abc")
        assert sorted(os.listdir(ingest)) == ["data", "ref", "startedat", "total", "updatedat"]
        assert (ingest / "ref").read_text() == "layer-sha256:abc"
        assert (ingest / "total").read_text() == "1000"
        assert (ingest / "data").read_bytes() == data[:400]
        w.write(data[400:])
        w.commit(1000, _sha(data))
    blob = store.root / "blobs" / "sha256" / hashlib.sha256(data).hexdigest()
    assert store.blob_path(_sha(data)) == blob
    assert blob.read_bytes() == data
    assert stat.S_IMODE(blob.stat().st_mode) == 0o444
    assert os.listdir(store.root / "ingest") == []


def test_status_times(store: LocalStore) -> None:
    w = store.writer("r", desc=Descriptor("", "", 10))
    started = w.status().started_at
    w.write(b"12345")
    w.close()
    st = store.status("r")
    assert st.started_at == started
    assert st.updated_at >= started
    assert (st.offset, st.total) == (5, 10)


def test_resume_after_a_crash(store: LocalStore, tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    src = tmp_path / "src"
    src.write_bytes(data)
    script = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from pycontainerd.content.local import LocalStore
        from pycontainerd.descriptor import Descriptor
        data = Path({str(src)!r}).read_bytes()
        w = LocalStore(Path({str(store.root)!r})).writer(
            "crashy", desc=Descriptor("", "", len(data))
        )
        w.write(data[: 2 << 20])
        os._exit(9)  # no close, no commit: as if killed
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 9, result.stderr
    assert store.status("crashy").offset == 2 << 20
    with store.writer("crashy", desc=Descriptor("", _sha(data), len(data))) as w:
        assert w.status().offset == 2 << 20
        assert w.digest() == _sha(data[: 2 << 20])  # re-hashed what was there
        w.write(data[2 << 20 :])
        w.commit(len(data), _sha(data))
    assert read_blob(store, _sha(data)) == data


def test_another_process_holding_the_ref(store: LocalStore) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from pycontainerd.content.local import LocalStore
        w = LocalStore(Path({str(store.root)!r})).writer("shared-ref")
        print("held", flush=True)
        sys.stdin.readline()
        w.close()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "held\n"
        with pytest.raises(errdefs.Unavailable, match="ref shared-ref locked by another process"):
            store.writer("shared-ref")
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)
    store.writer("shared-ref").close()


def test_lock_is_per_root_not_per_object(store: LocalStore) -> None:
    again = LocalStore(store.root)
    with store.writer("r"), pytest.raises(errdefs.Unavailable, match="ref r locked for"):
        again.writer("r")


def test_a_writer_never_closed_frees_its_ref(store: LocalStore) -> None:
    import gc

    w = store.writer("leaky")
    w.write(b"abc")
    del w
    gc.collect()
    with store.writer("leaky") as again:
        assert again.status().offset == 3


def test_total_that_differs_starts_over(store: LocalStore) -> None:
    with store.writer("r", desc=Descriptor("", "", 100)) as w:
        w.write(b"a" * 50)
    with store.writer("r", desc=Descriptor("", "", 200)) as w:
        assert (w.status().offset, w.status().total) == (0, 200)
    with store.writer("r") as w:  # no total given: keeps the recorded one
        assert w.status().total == 200


def test_total_learned_on_resume(store: LocalStore) -> None:
    with store.writer("r") as w:
        w.write(b"abc")
    with store.writer("r", desc=Descriptor("", "", 10)) as w:
        assert (w.status().offset, w.status().total) == (3, 10)
    assert store.status("r").total == 10


def test_truncate_to_the_middle(store: LocalStore) -> None:
    with store.writer("r") as w:
        w.write(b"0123456789")
        w.truncate(4)
        assert w.status().offset == 4
        assert w.digest() == _sha(b"0123")
        w.write(b"xy")
        w.commit(6, _sha(b"0123xy"))
        with pytest.raises(errdefs.FailedPrecondition, match="closed"):
            w.write(b"more")
    with store.writer("r2") as w, pytest.raises(errdefs.InvalidArgument, match="truncate"):
        w.truncate(1)


def test_abort_while_writing(store: LocalStore) -> None:
    with store.writer("r") as w:
        w.write(b"data")
        store.abort("r")
        with pytest.raises(errdefs.NotFound, match='commit ref "r": the ingest was aborted'):
            w.commit()
    assert os.listdir(store.root / "ingest") == []


def test_commit_on_closed_writer(store: LocalStore) -> None:
    w = store.writer("r")
    w.close()
    w.close()  # twice is fine
    with pytest.raises(errdefs.FailedPrecondition, match="closed"):
        w.commit()


def test_blob_already_there_removes_the_ingest(store: LocalStore) -> None:
    with store.writer("one") as w:
        w.write(b"same")
        w.commit()
    with store.writer("two") as w:
        w.write(b"same")
        with pytest.raises(errdefs.AlreadyExists, match=_sha(b"same")):
            w.commit()
    assert os.listdir(store.root / "ingest") == []
    assert stat.S_IMODE(store.blob_path(_sha(b"same")).stat().st_mode) == 0o444


def test_walk_skips_what_is_not_a_blob(store: LocalStore) -> None:
    with store.writer("r") as w:
        w.write(b"blob")
        w.commit()
    (store.root / "blobs" / "sha256" / "not-a-digest").write_text("x")
    (store.root / "blobs" / "md5").mkdir()
    (store.root / "blobs" / "md5" / ("0" * 32)).write_text("x")
    seen: list[Info] = []
    store.walk(seen.append)
    assert [i.digest for i in seen] == [_sha(b"blob")]
    assert seen[0].size == 4


def test_incomplete_ingest_starts_over(store: LocalStore) -> None:
    ingest = _ingest_dir(store, "r")
    ingest.mkdir(parents=True)
    (ingest / "data").write_bytes(b"orphan bytes")  # no ref, no times: a crash mid-creation
    assert store.list_statuses() == []
    with store.writer("r") as w:
        assert w.status().offset == 0
        w.write(b"fresh")
        w.commit(5, _sha(b"fresh"))


def test_labels_are_not_kept(store: LocalStore) -> None:
    with store.writer("r") as w:
        w.write(b"x")
        w.commit(labels={"a": "b"})
    assert store.info(_sha(b"x")).labels == {}
    with pytest.raises(errdefs.FailedPrecondition, match="keeps no labels"):
        store.update(Info(_sha(b"x"), labels={"a": "b"}))


def test_status_refs(store: LocalStore) -> None:
    for ref in ("b", "a"):
        store.writer(ref).close()
    assert store.status_refs() == ["a", "b"]


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (999, "999ns"),
        (1_500, "1.5µs"),
        (250_000_000, "250ms"),
        (1_234_567, "1.234567ms"),
        (1_500_000_000, "1.5s"),
        (62_000_000_000, "1m2s"),
        (3_723_000_000_000, "1h2m3s"),
        (-2_000_000_000, "-2s"),
    ],
)
def test_go_duration(ns: int, text: str) -> None:
    assert format_duration(ns) == text


def test_go_time() -> None:
    assert _go_time(1_700_000_000_123_400_000) == "2023-11-14 22:13:20.1234 +0000 UTC"
    assert _go_time(1_700_000_000_000_000_000) == "2023-11-14 22:13:20 +0000 UTC"
